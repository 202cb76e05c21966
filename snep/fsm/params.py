"""The sync protocol's tunables, with defaults that are safe on a real firewall."""

from __future__ import annotations

from dataclasses import dataclass, field

from snep.fsm.notify import Filter
from snep.level import Level
from snep.wire.messages import DEFAULT_MTU


@dataclass(frozen=True)
class SyncParams:
    mtu: int = DEFAULT_MTU
    queue_size: int = 4096  # resend queue bound, in STATE frames (each at most one MTU)
    bulk_window: int = 256  # a bulk dump keeps at most this many unacked frames in flight
    ack_window: int = 64  # a receiver acks after this many applied frames ...
    ack_delay: float = 0.05  # ... or this long after the first unacked one (seconds)
    nack_interval: float = 0.1  # a receiver repeats a NACK for the same gap at most this often
    retransmit_timeout: float = 0.5  # unacked frames are resent after this long
    alive_interval: float = 1.0  # ALIVE after this long without sending anything
    dead_timeout: float = 4.0  # a peer silent this long is dead (its acks hold nothing)
    resync_retry: float = 2.0  # a node that needs a dump asks again after this long
    shorten_timeout: int = 60  # kernel timeouts cut to this on becoming backup (seconds)
    level: Level = Level.STRONG
    period: float = 1.0  # incremental level: flush period (seconds)
    filter: Filter = field(default_factory=Filter)
    inject_external: bool = False  # write peers' states into the kernel as they arrive

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.bulk_window < 1 or self.ack_window < 1:
            raise ValueError("queue_size, bulk_window and ack_window must be at least 1")
        if self.bulk_window > self.queue_size:
            object.__setattr__(self, "bulk_window", self.queue_size)
