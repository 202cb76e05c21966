"""What the sans-I/O machines ask the outside world to do, as plain values.

Two families:

- *role actions* (:data:`RoleAction`): what entering a role means, in the order the
  node must carry them out (commit, take an epoch, dump the kernel, ...). The role
  machine returns them; :class:`snep.fsm.node.SyncNode` turns them into outputs.
- *outputs* (:data:`Output`): what the runtime (or the simulation) must do with
  sockets, the kernel and its state file. :class:`SyncNode` returns lists of them.

Values only: nothing here performs anything.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple, Union

from snep.entry import Event, Key

# --- role actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitExternal:
    """Write the external cache (what the peers told us) into the kernel table."""


@dataclass(frozen=True, slots=True)
class TakeEpoch:
    """Take the epoch (newest term + 1, own id) and start a new sequence space."""


@dataclass(frozen=True, slots=True)
class ResyncInternalFromKernel:
    """Rebuild the internal cache from a dump of the kernel table."""


@dataclass(frozen=True, slots=True)
class ClearExternal:
    """Start with an empty external cache (process start)."""


@dataclass(frozen=True, slots=True)
class SendHello:
    """Introduce ourselves (and our epoch) to every peer."""


@dataclass(frozen=True, slots=True)
class BulkSendToPeers:
    """Send the whole internal cache to every peer (BULK_START .. BULK_END)."""


@dataclass(frozen=True, slots=True)
class ShortenKernelTimeouts:
    """Shorten the kernel entries' timeouts: stale ones of a former primary expire."""


@dataclass(frozen=True, slots=True)
class VouchKernel:
    """Hold the kernel to the primary's next complete dump: what this node kept from an
    earlier life (a former primary's entries, connections reset while it was away) must
    not outlive it into its next term as primary. At that dump the entries the dump
    confirms take the primary's state; the others are removed or shortened
    (``SyncParams.unconfirmed``)."""


@dataclass(frozen=True, slots=True)
class RequestResync:
    """Ask the peers for a bulk dump (RESYNC_REQUEST)."""


@dataclass(frozen=True, slots=True)
class StopSending:
    """Leave the primary's sequence space: no more STATE frames, drop the resend queue."""


RoleAction = Union[
    CommitExternal,
    TakeEpoch,
    ResyncInternalFromKernel,
    ClearExternal,
    SendHello,
    BulkSendToPeers,
    ShortenKernelTimeouts,
    VouchKernel,
    RequestResync,
    StopSending,
]


# --- outputs ----------------------------------------------------------------------

PeerId = Hashable


#: the highest term a node takes or believes. Terms are 32-bit on the wire; a claim
#: above this (or HELLO news of one) is refused, so that every epoch a node holds,
#: persists or adopts is one it can act on: a promotion above it still fits. (A
#: cluster runs out of terms after 4,294,967,293 promotions; forged or corrupt terms
#: near 2**32 cannot make it run out.)
MAX_TERM = 2**32 - 3


class Epoch(NamedTuple):
    """(term, owner node id), ordered lexicographically: who is the newest primary."""

    term: int
    node: int

    def __str__(self) -> str:
        return f"{self.term}.{self.node}"


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``data`` (one encoded frame) to each of ``peers`` (a multicast link sends it
    once, to the group)."""

    peers: tuple[PeerId, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class KernelOps:
    """Apply these events to the kernel table, in order.

    NEW/UPDATE: create the entry, or update it when it exists; DESTROY: delete it,
    ignoring a missing entry. Entries written this way must not be echoed back as
    events of our own (the kernel adapter tags them).
    """

    events: tuple[Event, ...]
    #: Replace entries that exist (delete, then create) instead of updating them.
    #: A commit does this: an entry left from an earlier life of this node (a former
    #: primary back as backup) keeps its kernel-only TCP window tracking through an
    #: update, and the kernel then drops the connection's packets as invalid. A
    #: created entry learns the window from the next packets instead.
    replace: bool = False
    #: NEW events as sync records (snep.cache.RecordCache's bytes), after ``events``:
    #: a commit writes the external cache without making an Entry of each record
    records: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class DumpKernel:
    """Dump the kernel table and hand the entries to ``SyncNode.on_kernel_dump``."""


@dataclass(frozen=True, slots=True)
class ShortenTimeouts:
    """Set the kernel entries' timeouts to at most ``timeout`` seconds: every entry's,
    or (``keys``) only those entries'."""

    timeout: int
    keys: frozenset[Key] | None = None


@dataclass(frozen=True, slots=True)
class PersistEpoch:
    """Write the newest epoch seen to the state file (it must survive a restart)."""

    epoch: Epoch


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """The role changed (for logs, readiness checks and the HA manager's scripts)."""

    old: str
    new: str
    trigger: str


@dataclass(frozen=True, slots=True)
class Log:
    """A log record: ``level`` is a :mod:`logging` level name."""

    level: str
    message: str


Output = Union[SendDatagram, KernelOps, DumpKernel, ShortenTimeouts, PersistEpoch, RoleChanged, Log]

__all__ = [
    "BulkSendToPeers",
    "ClearExternal",
    "CommitExternal",
    "DumpKernel",
    "Epoch",
    "KernelOps",
    "Log",
    "MAX_TERM",
    "Output",
    "PeerId",
    "PersistEpoch",
    "RequestResync",
    "ResyncInternalFromKernel",
    "RoleAction",
    "RoleChanged",
    "SendDatagram",
    "SendHello",
    "ShortenKernelTimeouts",
    "ShortenTimeouts",
    "StopSending",
    "TakeEpoch",
    "VouchKernel",
]
