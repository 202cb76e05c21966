"""The sync protocol's tunables: the one place their defaults are defined.

The config file's ``[sync]`` and ``[kernel]`` keys of the same names, contrib/snep.toml,
the man page and the docs all take their defaults from here (a test fails when one
of them disagrees). The defaults are the safe ones for a real firewall.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from snep.level import Level
from snep.wire.messages import DEFAULT_BULK_MTU, DEFAULT_MTU


class Unconfirmed(Enum):
    """What a node that became backup does with the kernel entries the primary's first
    complete dump does not confirm (a former primary's, connections reset while it was
    away): they must not outlive it into its next term as primary."""

    REMOVE = "remove"  # delete them at that dump: precise, nothing stale is left
    SHORTEN = "shorten"  # lower their timeouts to shorten_timeout (conntrackd's way)


@dataclass(frozen=True)
class SyncParams:
    #: bytes of UDP payload per frame
    mtu: int = DEFAULT_MTU
    #: bytes of UDP payload per frame of a bulk dump, at least ``mtu``: above the link's
    #: MTU the kernel fragments them (fewer, larger frames: the per-frame work of a
    #: resync shrinks); a lost one makes the rest of the term's dumps use ``mtu``
    bulk_mtu: int = DEFAULT_BULK_MTU
    #: STATE frames kept for retransmission (each at most one MTU): the bound on a
    #: primary's memory for a dead or slow backup
    resend_queue: int = 16384
    #: a bulk dump keeps at most this many unacknowledged frames in flight
    bulk_window: int = 256
    #: a receiver acknowledges after this many applied frames ...
    ack_window: int = 64
    #: ... or this many seconds after the first unacknowledged one
    ack_delay: float = 0.02
    #: seconds: a receiver repeats a NACK for the same gap at most this often
    nack_interval: float = 0.1
    #: seconds: unacknowledged frames are sent again after this long
    retransmit_timeout: float = 0.5
    #: seconds: an ALIVE goes out after this long without sending anything
    alive_interval: float = 1.0
    #: seconds: a peer silent this long is dead (its acknowledgements hold nothing)
    peer_dead_timeout: float = 3.0
    #: seconds: a node that needs a dump asks again after this long
    resync_retry: float = 2.0
    #: seconds left to the kernel's entries when the node becomes a backup
    shorten_timeout: int = 60
    #: the kernel entries of a node that became backup that the primary's dump does not confirm
    unconfirmed: Unconfirmed = Unconfirmed.REMOVE
    #: which conntrack events are synchronized (strong, weak, incremental)
    level: Level = Level.STRONG
    #: seconds between the incremental level's flushes
    incremental_period: float = 1.0
    #: write the peers' states into the kernel as they arrive, so a takeover writes
    #: nothing (docs/architecture.md, "Warm or cold backup kernel": the measured trade-off)
    inject_on_arrival: bool = True
    #: entries the external cache holds at most: new ones beyond are refused and
    #: counted (conntrackd's HashLimit), so no peer can grow a node's memory without bound
    max_entries: int = 4_194_304

    def __post_init__(self) -> None:
        if self.resend_queue < 1 or self.bulk_window < 1 or self.ack_window < 1 or self.max_entries < 1:
            raise ValueError("resend_queue, bulk_window, ack_window and max_entries must be at least 1")
        if self.bulk_window > self.resend_queue:
            object.__setattr__(self, "bulk_window", self.resend_queue)
        if self.bulk_mtu < self.mtu:  # (a bulk frame is never smaller than a stream frame)
            object.__setattr__(self, "bulk_mtu", self.mtu)
