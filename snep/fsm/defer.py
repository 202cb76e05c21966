"""Deferral of a new connection's first packets (active-active, pfsync's "defer").

A connection's first packet through this node is held until every peer that was live
when it arrived acknowledged the connection's state, so that a reply coming back
through another node finds the state there; or until a bound passes, then it is
accepted (fail-open) or dropped (fail-closed) as configured.

Sans-I/O: time is an argument, the outputs are :class:`Release` values (packet id and
verdict); the kernel adapter (snep.kernel.nfqueue) turns them into NFQUEUE verdicts.
The caller holds only packets of connections whose state its peers have not
acknowledged yet, and calls :meth:`DeferQueue.expire` at :meth:`DeferQueue.next_deadline`.
Memory is bounded: beyond ``max_held`` packets, a new packet gets the fail policy at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum


class Verdict(IntEnum):
    """What happens to a held packet. The values are netfilter's NF_DROP and NF_ACCEPT,
    so the kernel adapter passes them through."""

    DROP = 0
    ACCEPT = 1


class FailPolicy(Enum):
    """The verdict when the peers did not acknowledge in time (or no room to hold)."""

    OPEN = "open"  # accept: availability first; a reply through a peer may be dropped there
    CLOSED = "closed"  # drop: the sender retransmits; nothing passes unsynchronized

    @property
    def verdict(self) -> Verdict:
        return Verdict.ACCEPT if self is FailPolicy.OPEN else Verdict.DROP


class Reason(Enum):
    """Why a packet was released."""

    ACKED = "acked"  # every peer it waited for acknowledged its connection
    NO_PEERS = "no-peers"  # no live peer to wait for: accepted at once
    BOUND = "bound"  # the bound passed first: the fail policy
    FULL = "full"  # max_held packets were held already: the fail policy at once
    PEER_GONE = "peer-gone"  # the last peer it waited for is no longer live (acked by the rest)
    ENDED = "ended"  # what it waited for can no longer come (the stream that carried its state ended): the fail policy
    # released at once by the gate (snep.fsm.gate), never held:
    NOT_OWNER = "not-owner"  # a new connection at a node that is not its group's primary
    OWNER = "owner"  # a reply at its connection's owner: nothing to report
    NO_OWNER = "no-owner"  # a reply at a non-owner that knows no live owner to report to
    FILTERED = "filtered"  # a connection the filter keeps from the peers: nothing to wait for


@dataclass(frozen=True, slots=True)
class DeferParams:
    #: seconds a packet is held at most (pfsync's default defer is a few milliseconds)
    bound: float = 0.005
    fail: FailPolicy = FailPolicy.OPEN
    #: packets held at once at most
    max_held: int = 4096

    def __post_init__(self) -> None:
        if self.bound < 0 or self.max_held < 0:
            raise ValueError("bound and max_held must not be negative")


@dataclass(frozen=True, slots=True)
class Release:
    """One output: give ``packet_id`` this verdict."""

    packet_id: int
    verdict: Verdict
    reason: Reason
    waited: float  # seconds between arrival and release


@dataclass(slots=True)
class DeferCounters:
    held: int = 0  # packets taken in (not counting those released at once)
    acked: int = 0
    no_peers: int = 0
    bound_accepted: int = 0
    bound_dropped: int = 0
    full_accepted: int = 0  # the memory bound's counter, by verdict
    full_dropped: int = 0
    peer_gone: int = 0
    ended_accepted: int = 0  # abandon(): what they waited for can no longer come, by verdict
    ended_dropped: int = 0
    unknown_acks: int = 0  # acks of keys nothing is held for (late, duplicate, or not ours)
    duplicate_ids: int = 0  # a packet id already held: the older one is kept

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Pending:
    """The packets of one connection and the peers they still wait for."""

    waiting: set[Hashable]
    packets: dict[int, float] = field(default_factory=dict)  # packet id -> arrival


class DeferQueue:
    """Held packets by connection key; releases on acknowledgement or at the bound."""

    def __init__(self, params: DeferParams | None = None) -> None:
        self.params = params or DeferParams()
        self.counters = DeferCounters()
        self._by_key: dict[Hashable, _Pending] = {}
        self._key_of: dict[int, Hashable] = {}  # packet id -> key
        self._deadlines: list[tuple[float, int]] = []  # (deadline, packet id); stale entries skipped

    def __len__(self) -> int:
        """Packets held now."""
        return len(self._key_of)

    def hold(self, packet_id: int, key: Hashable, now: float, peers: Iterable[Hashable]) -> list[Release]:
        """A new connection's packet arrived; ``peers`` are the live peers whose
        acknowledgement releases it. Returns the packet's release if it is not held."""
        if packet_id in self._key_of:
            self.counters.duplicate_ids += 1
            return []
        pending = self._by_key.get(key)
        if pending is None:
            waiting = set(peers)
            if not waiting:
                self.counters.no_peers += 1
                return [Release(packet_id, Verdict.ACCEPT, Reason.NO_PEERS, 0.0)]
        if len(self._key_of) >= self.params.max_held:
            verdict = self.params.fail.verdict
            if verdict is Verdict.ACCEPT:
                self.counters.full_accepted += 1
            else:
                self.counters.full_dropped += 1
            return [Release(packet_id, verdict, Reason.FULL, 0.0)]
        if pending is None:
            # a later packet of the same connection joins: it waits for the same peers
            pending = self._by_key[key] = _Pending(waiting)
        pending.packets[packet_id] = now
        self._key_of[packet_id] = key
        heapq.heappush(self._deadlines, (now + self.params.bound, packet_id))
        self.counters.held += 1
        return []

    def __contains__(self, key: Hashable) -> bool:
        """Packets of connection ``key`` are held now."""
        return key in self._by_key

    def waiting_for(self, key: Hashable) -> frozenset[Hashable]:
        """The peers the packets of ``key`` still wait for (empty: none held)."""
        pending = self._by_key.get(key)
        return frozenset(pending.waiting) if pending is not None else frozenset()

    def waits(self, key: Hashable, peer: Hashable) -> bool:
        """Packets of ``key`` wait for ``peer``'s acknowledgement."""
        pending = self._by_key.get(key)
        return pending is not None and peer in pending.waiting

    def abandon(self, key: Hashable, now: float) -> list[Release]:
        """What the packets of ``key`` wait for can no longer come (the stream that
        carried its state ended: this node is no longer the primary): the fail policy."""
        pending = self._by_key.pop(key, None)
        if pending is None:
            return []
        verdict = self.params.fail.verdict
        out = []
        for packet_id, arrived in pending.packets.items():
            del self._key_of[packet_id]
            out.append(Release(packet_id, verdict, Reason.ENDED, now - arrived))
        if verdict is Verdict.ACCEPT:
            self.counters.ended_accepted += len(out)
        else:
            self.counters.ended_dropped += len(out)
        return out

    def ack(self, key: Hashable, peer: Hashable, now: float) -> list[Release]:
        """``peer`` acknowledged the state of connection ``key``."""
        pending = self._by_key.get(key)
        if pending is None or peer not in pending.waiting:
            self.counters.unknown_acks += 1
            return []
        pending.waiting.discard(peer)
        if pending.waiting:
            return []
        return self._release_key(key, now, Reason.ACKED)

    def peer_down(self, peer: Hashable, now: float) -> list[Release]:
        """``peer`` is no longer live: nothing waits for it any more."""
        out: list[Release] = []
        for key in [k for k, p in self._by_key.items() if peer in p.waiting]:
            pending = self._by_key[key]
            pending.waiting.discard(peer)
            if not pending.waiting:
                out += self._release_key(key, now, Reason.PEER_GONE)
        return out

    def expire(self, now: float) -> list[Release]:
        """Release, with the fail policy, every packet whose bound has passed."""
        out: list[Release] = []
        verdict = self.params.fail.verdict
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, packet_id = heapq.heappop(deadlines)
            if not self._current(deadline, packet_id):
                continue  # released before its bound
            key = self._key_of.pop(packet_id)
            pending = self._by_key[key]
            arrived = pending.packets.pop(packet_id)
            if not pending.packets:
                del self._by_key[key]
            if verdict is Verdict.ACCEPT:
                self.counters.bound_accepted += 1
            else:
                self.counters.bound_dropped += 1
            out.append(Release(packet_id, verdict, Reason.BOUND, now - arrived))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to do next (None: nothing held)."""
        deadlines = self._deadlines
        while deadlines and not self._current(*deadlines[0]):
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else None

    def _current(self, deadline: float, packet_id: int) -> bool:
        """Whether a heap entry is the bound of a packet held now (not of one released
        before, whose id the kernel may have given again: ids restart with the queue)."""
        key = self._key_of.get(packet_id)
        return key is not None and self._by_key[key].packets[packet_id] + self.params.bound == deadline

    def _release_key(self, key: Hashable, now: float, reason: Reason) -> list[Release]:
        pending = self._by_key.pop(key)
        out = []
        for packet_id, arrived in pending.packets.items():
            del self._key_of[packet_id]
            out.append(Release(packet_id, Verdict.ACCEPT, reason, now - arrived))
        if reason is Reason.ACKED:
            self.counters.acked += len(out)
        else:
            self.counters.peer_gone += len(out)
        return out
