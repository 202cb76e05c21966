"""The defer gate of one group instance (active-active, docs/active-active.md "Defer").

Between a queued packet and its verdict, everything that is not I/O: a
:class:`~snep.fsm.defer.DeferQueue` around the group's :class:`~snep.fsm.node.SyncNode`.

- **A new connection's first packet** (the spec's ConnNew, DeferRelease, DeferBound) at
  the group's primary is held, its state (built from the packet: the kernel's NEW event
  comes only after the verdict) is sent at once in the group's stream, in a frame
  flagged for immediate acknowledgement, and the packet is released when every peer
  that was live acknowledged *that frame* (an ACK whose range holds its seq, in the
  stream of this epoch: a DESTROY's ACK or an earlier incarnation's releases nothing),
  when such a peer dies or restarts (a new session), or at the bound (the fail policy). When its packet is
  dropped at the bound (fail-closed), the state that was sent is withdrawn (DESTROY).
- **The first reply through a non-owner** (an asymmetric path's SYN-ACK, which moved
  this node's kernel entry to SYN_RECV) is held while a REPORT of the entry goes to the
  group's primary, and released on its REPORT_ACK (the primary wrote it into its
  kernel), on the primary's death, or at the bound. Not in the spec: an optimisation of
  the first reply, whose loss is the bound's case.

Sans-I/O, one gate per group instance; the runtime calls, with that group's node::

    outputs, releases = gate.on_new(now, packet_id, entry)    # a NEW packet of the group
    outputs, releases = gate.on_reply(now, packet_id, entry)  # its first reply (SYN-ACK)
    releases = gate.after_input(now)   # after each input the node took (datagram, timer, role)
    outputs, releases = gate.expire(now)   # at gate.next_deadline()

carries the outputs out with the group's Driver (``driver.run(now, outputs)``, before
the verdicts; ``after_input`` after *every* input, since the node keeps at most 4,096 ACK
ranges and report answers between two calls, and a range lost leaves its packet to the
bound) and gives each :class:`~snep.fsm.defer.Release` to NfQueue
(``verdicts((r.packet_id, r.verdict) for r in releases)``). :attr:`DeferGate.counters`
and :meth:`DeferGate.status` are the metrics: packets by what happened to them, and
the wait of the held ones (a histogram, and the recent waits for median and p99).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from snep.entry import Entry, EventKind
from snep.fsm.defer import DeferParams, DeferQueue, Reason, Release, Verdict
from snep.fsm.effects import Epoch, Output, PeerId
from snep.fsm.node import SyncNode
from snep.fsm.role import Role
from snep.wire.serial import seq_diff, seq_range_len

#: upper bounds (seconds) of the wait histogram's buckets (the last one: everything above)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
#: the most recent waits kept, for exact percentiles over them
RECENT_WAITS = 4096
#: ACK ranges the node keeps between two after_input calls
ACK_RANGES_MAX = 4096

_STATE = "state"  # a new connection's packet: waits for the peers' ACKs of its frame
_REPORT = "report"  # a reply's packet at a non-owner: waits for the owner's REPORT_ACK
_HELD_REASONS = frozenset({Reason.ACKED, Reason.BOUND, Reason.PEER_GONE, Reason.ENDED})


@dataclass(slots=True)
class _Held:
    """What the held packets of one connection wait for."""

    kind: str  # _STATE or _REPORT
    entry: Entry
    seq: int = 0  # _STATE: the frame that carries its state ...
    epoch: Epoch | None = None  # ... in the stream of this epoch
    report_id: int = 0  # _REPORT: the report ...
    owner: PeerId | None = None  # ... and whom it went to
    accepted: bool = False  # one of its packets was accepted (its kernel entry lives)


@dataclass(slots=True)
class GateCounters:
    """Packets by what happened to them (the DeferQueue's counters complete them)."""

    new_packets: int = 0  # on_new calls
    reply_packets: int = 0  # on_reply calls
    not_owner: int = 0  # new connections at a node not the group's primary: released at once
    owner_replies: int = 0  # replies at the connection's owner: released at once
    no_owner: int = 0  # replies at a non-owner that knows no live owner: released at once
    filtered: int = 0  # connections the filter keeps from the peers: released at once
    joined: int = 0  # packets of a connection already held (a retransmission): wait with it
    withdrawn: int = 0  # states withdrawn (DESTROY) after their packet was dropped at the bound
    unknown_answers: int = 0  # REPORT_ACKs of no held report (late, or not from its owner)
    duplicate_packets: int = 0  # a packet id held already: ignored (the kernel's ids are unique)


class _Frames:
    """The frames that carry held states in one epoch's stream, in seq order, so that
    an ACK is matched against the frames its range names only, not against every held
    connection (a flood holds thousands)."""

    def __init__(self, epoch: Epoch, base: int) -> None:
        self.epoch = epoch
        self.base = base  # positions are seqs counted from here (serial arithmetic)
        self.positions: list[int] = []  # ascending; released ones are trimmed now and then
        self.keys: dict[int, Hashable] = {}  # position -> queue key, while held

    def add(self, seq: int, key: Hashable) -> None:
        position = seq_diff(seq, self.base)
        self.positions.append(position)
        self.keys[position] = key

    def remove(self, seq: int) -> None:
        self.keys.pop(seq_diff(seq, self.base), None)
        if len(self.positions) > 2 * len(self.keys) + 64:
            self.positions = [p for p in self.positions if p in self.keys]

    def held_by(self, first: int, last: int, dumps: Iterable[list[int | None]]) -> list[Hashable]:
        """The keys of the held frames that an ACK of ``first .. last`` shows the peer
        applied: a receiver applies in order, but it may jump over a gap to a dump's
        BULK_START, and it acknowledges again a duplicate of a frame it jumped over (the
        spec's receiver does: a re-ack from the duplicate's seq). So the range proves
        only its part from its last BULK_START on; and a dump's BULK_END in that part
        proves every frame sent before the dump's BULK_START (the dump carries their
        states: SyncSender.unconfirmed)."""
        start = seq_diff(first, self.base)
        stop = start + seq_range_len(first, last)  # (exclusive)
        bounds = [(seq_diff(b, self.base), None if e is None else seq_diff(e, self.base)) for b, e in dumps if b is not None]
        proven = start  # (what comes before the range's last BULK_START may be a re-ack)
        for dump_start, _ in bounds:
            if start < dump_start < stop:
                proven = max(proven, dump_start)
        positions, keys = self.positions, self.keys
        found = positions[bisect.bisect_left(positions, proven) : bisect.bisect_left(positions, stop)]
        whole = [b for b, e in bounds if e is not None and proven <= e < stop]
        if whole:  # a dump applied whole: the frames sent before its BULK_START
            found = positions[: bisect.bisect_left(positions, min(max(whole), proven))] + found
        return [keys[p] for p in found if p in keys]


class WaitStats:
    """The wait of the held packets: a cumulative histogram (Prometheus's, with
    :data:`WAIT_BUCKETS`), its count and sum, and the recent waits for percentiles."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(WAIT_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.recent: deque[float] = deque(maxlen=RECENT_WAITS)

    def add(self, waited: float) -> None:
        self.buckets[bisect.bisect_left(WAIT_BUCKETS, waited)] += 1
        self.count += 1
        self.sum += waited
        self.recent.append(waited)

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0..100) of the recent waits (nearest rank; None: none)."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        rank = max(1, -(-len(ordered) * p // 100))  # (ceil)
        return ordered[int(rank) - 1]

    def as_dict(self) -> dict[str, Any]:
        cumulative = []
        total = 0
        for bound, n in zip((*WAIT_BUCKETS, float("inf")), self.buckets):
            total += n
            cumulative.append(("+Inf" if bound == float("inf") else bound, total))
        return {
            "count": self.count,
            "sum": self.sum,
            "p50": self.percentile(50),
            "p99": self.percentile(99),
            "buckets": cumulative,
        }


class DeferGate:
    """Held packets of one group instance, released by its node's stream and reports."""

    def __init__(self, node: SyncNode, params: DeferParams | None = None) -> None:
        self.node = node
        self.queue = DeferQueue(params)
        self.counters = GateCounters()
        self.waits = WaitStats()
        self._held: dict[Hashable, _Held] = {}  # by queue key: (kind, connection key)
        self._frames: _Frames | None = None  # the held states' frames of the current stream
        if node.ack_ranges is None:
            node.ack_ranges = deque(maxlen=ACK_RANGES_MAX)  # (the node keeps its ACK ranges for us)
        self._packets: dict[int, Hashable] = {}  # packet id -> queue key, while held
        self._reports: dict[int, Hashable] = {}  # report id -> queue key, while held
        self._next_report = 0
        #: each peer's bound session and liveness when last looked at: a change releases
        #: what waits for it (it died, or restarted and lost what it had acknowledged)
        self._peers: dict[PeerId, tuple[bool, int | None]] = {}
        self._look_at_peers(0.0, [])

    @property
    def params(self) -> DeferParams:
        return self.queue.params

    # --- packets -----------------------------------------------------------------------
    def on_new(self, now: float, packet_id: int, entry: Entry) -> tuple[list[Output], list[Release]]:
        """A new connection's first packet (``entry`` built from it, with the group's
        mark): held at the group's primary while its state goes to the live peers;
        released at once elsewhere, when no peer is live, or when the filter keeps it."""
        self.counters.new_packets += 1
        releases = self._peers_gone(now)
        releases += self._settle(now, self._stream_ended(now), [])
        node = self.node
        if node.state is not Role.PRIMARY or not node.sender.active:
            self.counters.not_owner += 1
            return [], releases + [Release(packet_id, Verdict.ACCEPT, Reason.NOT_OWNER, 0.0)]
        key = (_STATE, entry.key)
        if key in self._held:
            return [], releases + self._join(now, packet_id, key)
        if not node.filter.accepts(entry, EventKind.NEW):
            self.counters.filtered += 1
            return [], releases + [Release(packet_id, Verdict.ACCEPT, Reason.FILTERED, 0.0)]
        at_once = self._hold(now, packet_id, key, node.defer_peers())
        if at_once is not None:
            return [], releases + at_once  # (no live peer, or no room: nothing is sent)
        out, seq = node.send_held(now, entry)
        assert seq is not None  # (primary, active, accepted by the filter: checked above)
        self._held[key] = _Held(_STATE, entry, seq=seq, epoch=node.own)
        if self._frames is None:
            assert node.own is not None  # (the primary holds an epoch)
            self._frames = _Frames(node.own, seq)
        self._frames.add(seq, key)
        return out, releases

    def on_reply(self, now: float, packet_id: int, entry: Entry) -> tuple[list[Output], list[Release]]:
        """The first reply of a connection (an asymmetric path's SYN-ACK; ``entry`` its
        new state, SYN_RECV) through this node: at a non-owner, held while its REPORT
        goes to the group's primary; at the owner, or with no owner to tell, released."""
        self.counters.reply_packets += 1
        releases = self._peers_gone(now)
        node = self.node
        if node.state is Role.PRIMARY:
            self.counters.owner_replies += 1
            return [], releases + [Release(packet_id, Verdict.ACCEPT, Reason.OWNER, 0.0)]
        key = (_REPORT, entry.key)
        if key in self._held:
            return [], releases + self._join(now, packet_id, key)
        owner = node.report_target()
        if owner is None:
            self.counters.no_owner += 1
            return [], releases + [Release(packet_id, Verdict.ACCEPT, Reason.NO_OWNER, 0.0)]
        at_once = self._hold(now, packet_id, key, (owner,))
        if at_once is not None:
            return [], releases + at_once
        self._next_report = (self._next_report + 1) & 0xFFFFFFFF
        report_id = self._next_report
        out, sent_to = node.send_report(now, report_id, entry)
        assert sent_to == owner
        self._held[key] = _Held(_REPORT, entry, report_id=report_id, owner=owner)
        self._reports[report_id] = key
        return out, releases

    def _hold(self, now: float, packet_id: int, key: Hashable, peers: tuple[PeerId, ...]) -> list[Release] | None:
        """Hold a connection's first packet; its release instead when it is not held."""
        if packet_id in self._packets:
            self.counters.duplicate_packets += 1
            return []
        at_once = self.queue.hold(packet_id, key, now, peers)
        if at_once:
            return at_once
        self._packets[packet_id] = key
        return None

    def _join(self, now: float, packet_id: int, key: Hashable) -> list[Release]:
        """A later packet of a held connection waits with the first (nothing is sent again)."""
        at_once = self._hold(now, packet_id, key, ())
        if at_once is None:
            self.counters.joined += 1
            return []
        return self._settle(now, at_once, [])

    # --- what the node learned ---------------------------------------------------------
    def after_input(self, now: float) -> list[Release]:
        """After the node took an input (datagrams, timers, a role change): the packets
        whose frame every peer acknowledged, whose report was answered, whose peers died
        or restarted, or whose stream ended (the node is no longer that epoch's primary:
        the fail policy) are released."""
        releases: list[Release] = []
        self._look_at_peers(now, releases)
        releases += self._stream_ended(now)
        node = self.node
        queue = self.queue
        frames = self._frames
        ranges = node.take_ack_ranges()
        if frames is not None:
            term = frames.epoch.term
            dumps = node.sender.dump_bounds
            for peer, acked_term, first, last in ranges:
                # (an ACK names the frames the peer applied: never a key alone, never a
                # position, which a jump over a gap to a dump moves past frames not applied)
                if acked_term == term:
                    for key in frames.held_by(first, last, dumps):
                        if queue.waits(key, peer):
                            releases += queue.ack(key, peer, now)
        for peer, report_id in node.take_report_answers():
            key = self._reports.get(report_id)
            held = self._held.get(key) if key is not None else None
            if held is None or held.owner != peer:
                self.counters.unknown_answers += 1
                continue
            releases += queue.ack(key, peer, now)
        return self._settle(now, releases, [])

    def _stream_ended(self, now: float) -> list[Release]:
        """The node is no longer the primary of the epoch whose stream carried the held
        states (demoted, fenced, a retake): what they wait for cannot come."""
        frames = self._frames
        if frames is None or frames.epoch == self.node.own:
            return []
        self._frames = None
        releases: list[Release] = []
        for key in frames.keys.values():
            releases += self.queue.abandon(key, now)
        return releases

    def _peers_gone(self, now: float) -> list[Release]:
        """:meth:`_look_at_peers`, its releases settled."""
        releases: list[Release] = []
        self._look_at_peers(now, releases)
        return self._settle(now, releases, [])

    def _look_at_peers(self, now: float, releases: list[Release]) -> None:
        """Release what waits for a peer that died or restarted since last looked at."""
        node = self.node
        for peer in node.peers:
            seen = (node.alive[peer], node.channel.bound(peer))
            before = self._peers.get(peer)
            if before is not None and before != seen and (not seen[0] or seen[1] != before[1]):
                releases += self.queue.peer_down(peer, now)
            self._peers[peer] = seen

    # --- the clock ------------------------------------------------------------------------
    def expire(self, now: float) -> tuple[list[Output], list[Release]]:
        """The packets whose bound passed get the fail policy; a new connection whose
        packets were all dropped has its state withdrawn from the peers (DESTROY)."""
        out: list[Output] = []
        releases = self._settle(now, self.queue.expire(now), out)
        return out, releases

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to do (None: nothing held)."""
        return self.queue.next_deadline()

    def _settle(self, now: float, releases: list[Release], out: list[Output]) -> list[Release]:
        """Bookkeeping of released packets: their connection leaves when none of its
        packets is held any more; waits are recorded."""
        if not releases:
            return releases
        done: dict[Hashable, _Held] = {}
        for release in releases:
            if release.reason in _HELD_REASONS:
                self.waits.add(release.waited)
            key = self._packets.pop(release.packet_id, None)
            held = self._held.get(key) if key is not None else None
            if held is None:
                continue
            if release.verdict is Verdict.ACCEPT:
                held.accepted = True
            if key not in self.queue:
                done[key] = held
        for key, held in done.items():
            del self._held[key]
            if held.kind is _REPORT:
                self._reports.pop(held.report_id, None)
                continue
            if self._frames is not None and held.epoch == self._frames.epoch:
                self._frames.remove(held.seq)
            if not held.accepted and held.epoch == self.node.own:
                # its packets were dropped: the kernel entry died unconfirmed with them
                out += self.node.withdraw_held(now, held.entry)
                self.counters.withdrawn += 1
        return releases

    # --- status ---------------------------------------------------------------------------
    def as_dict(self) -> dict[str, int]:
        """Every counter, the gate's and its queue's (metric names)."""
        counters = {f.name: getattr(self.counters, f.name) for f in fields(self.counters)}
        counters.update(self.queue.counters.as_dict())
        return counters

    def status(self) -> dict[str, Any]:
        """What ``snep ctl status`` shows of the group's defer."""
        return {"held": len(self.queue), "counters": self.as_dict(), "wait": self.waits.as_dict()}
