"""The reliable STATE stream's sending side: one SyncSender per node (FT-FW-like).

Only a PRIMARY streams. Each STATE frame gets the next sequence number of the
epoch's sequence space (starting at 0, 32-bit, serial arithmetic), is sent to every
peer, and is kept, built (sealed afresh at every transmission), in a bounded resend
queue. Each peer's acknowledged position is tracked; a frame leaves the queue once
every live peer that can still be served from the queue acked it, or when the bound
is hit (the oldest goes: a dead backup never blocks the primary nor grows its
memory). A NACK is answered from the queue, or, when it reaches back further than
the queue holds, by a bulk dump (full resync). Bulk dumps are paced: at most
``bulk_window`` unacked frames in flight, and read the internal cache only once it is
loaded: while it awaits a kernel dump (on promotion, after a flush or ``-R``) a due
dump waits in BULK_START, and requesters join it.

Bounded work. A NACK frame's ranges are merged, and each frame they name is resent
at most once per NACK frame; resends to a peer (NACKed or timed out) draw from its
retransmission budget, a token bucket of ``2 * bulk_window`` frames refilled at
``2 * bulk_window`` frames per ``retransmit_timeout`` (twice what repairing a whole
window per timeout takes; 512 frames, 1,024 frames/s by default): beyond it resends
wait, counted (``retransmit_budget_hits``). A peer starts at most
:data:`DUMP_BURST` dumps at once and one more per ``resync_retry``; requests beyond
are refused (``dumps_refused``) and the peer asks again on its own timer. Requests
that a running dump serves join it (one dump in flight for everyone).

Control frames (ALIVE) carry the newest data seq in the header so that a receiver
also notices a lost tail on an idle channel. Every node sends ALIVE when it has sent
nothing for ``alive_interval``, so that silence means a dead peer.

Methods named ``on_*`` are the counterparts of the spec's actions (see spec_map).
Each appends its outputs to the ``out`` list it is given and returns nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import islice

from snep.cache import Cache
from snep.entry import Entry, Event, EventKind, Key
from snep.fsm.budget import TokenBucket
from snep.fsm.bulk import BulkDump
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, Output, PeerId
from snep.fsm.framer import Framer
from snep.fsm.modes import ModeMachine, ModeRow
from snep.fsm.notify import Filter, Notifier
from snep.fsm.params import SyncParams
from snep.fsm.ratelog import RateLog
from snep.fsm.records import Records
from snep.fsm.resend import ResendQueue
from snep.fsm.spec_map import spec_action
from snep.wire.codec import Built, encode_state
from snep.wire.messages import Ack, Alive, MessageType, Nack
from snep.wire.serial import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt


class SenderMode(Enum):
    INACTIVE = "inactive"  # not primary: no STATE
    STREAMING = "streaming"  # primary: events become STATE frames
    BULK_START = "bulk_start"  # a dump is due: its first frame (BULK_START) goes next
    BULK_RUN = "bulk_run"  # a dump is running (events still flow between its frames)


_I, _S, _BS, _BR = SenderMode
SENDER_TABLE = (
    ModeRow("activate", (_I,), _S, "TakeEpoch: seq 0, empty queue"),
    ModeRow("deactivate", (_S, _BS, _BR), _I, "StopSending: queue dropped"),
    ModeRow("start_bulk", (_S, _BR), _BS, "StartBulk (restarts a running dump)"),
    ModeRow("first_frame", (_BS,), _BR, "SendBulk: BULK_START"),
    ModeRow("last_frame", (_BS, _BR), _S, "SendBulk: BULK_END"),
)


_DESTROY = EventKind.DESTROY

#: dump frames one input sends at most: a dump that no peer's window holds back (its
#: peers dead, or a large window) goes on at the next timer instead of all at once, so
#: that the loop serves its other inputs (the control socket) between the steps
BULK_STEP = 16
#: a dump frame above the stream's MTU that a peer missed this many times (NACKed it,
#: or left it unacknowledged for the retransmission timeout while it was heard from),
#: while no such frame ever reached that peer, was lost, not only overtaken (a
#: reordering costs one NACK at most): the path does not carry them, dumps go back to
#: sync.mtu. A peer that is away (not heard from) proves nothing; once a peer
#: acknowledged a large frame, its losses are repaired as any other (resent).
LARGE_FRAME_LOST = 2

#: dumps a peer may start at once (then one more per resync_retry)
DUMP_BURST = 2

#: the latest dumps whose bounds the sender remembers (snep.fsm.gate reads them)
DUMP_BOUNDS = 64


def _resend_budget(params: SyncParams) -> TokenBucket:
    """Twice what a repair of a whole window per retransmission timeout takes."""
    return TokenBucket(2 * params.bulk_window, 2 * params.bulk_window / params.retransmit_timeout)


@dataclass(slots=True)
class PeerTx:
    """What the sender knows about one peer."""

    resends: TokenBucket  # its retransmission budget (frames)
    dumps: TokenBucket  # the dumps it may start
    acked: int = 0  # the first seq this peer has not acknowledged
    acked_at: float = float("-inf")  # when ``acked`` last moved (-inf: it may have restarted since)
    alive: bool = True
    behind: bool = False  # it needs a dump (NACK older than the queue, RESYNC_REQUEST)
    carries_large: bool = False  # it acknowledged a frame above the stream's MTU: the path carries them
    resume: int | None = None  # ... and will follow from that dump's BULK_START seq

    def position(self) -> int | None:
        """The first seq this peer still needs from the queue (None: only a dump helps)."""
        if self.behind:
            return self.resume
        return self.acked


class SyncSender:
    def __init__(
        self,
        peers: Iterable[PeerId],
        params: SyncParams,
        framer: Framer,
        internal: Cache,
        filter: Filter | None = None,
        *,
        graph: bool = False,
        logs: RateLog | None = None,
    ) -> None:
        self.params = params
        self.framer = framer
        self.counters: Counters = framer.counters
        self.internal = internal
        self.logs = logs or RateLog()
        self.peers: dict[PeerId, PeerTx] = {
            peer: PeerTx(_resend_budget(params), TokenBucket(DUMP_BURST, 1.0 / params.resync_retry)) for peer in peers
        }
        self.mode = ModeMachine("sync sender", SenderMode, SENDER_TABLE, SenderMode.INACTIVE, graph=graph)
        self.notifier = Notifier(params.level, params.incremental_period, filter or Filter())
        self.epoch: Epoch | None = None
        self.queue = ResendQueue(params.resend_queue)
        self.last_sent = float("-inf")
        self.dump = BulkDump(framer.mtu - framer.overhead)
        #: dumps go in frames of sync.bulk_mtu (fragmented by the kernel) until a peer
        #: shows that the path drops them; then in the stream's MTU until the next term
        self.large_dumps = False  # (each term starts with them: activate)
        self.dump_mtu = framer.mtu  # (the running dump's frames)
        self._first_large: int | None = None  # the seq of this term's first frame above the MTU
        #: when each peer was last heard from (the node's; empty: never)
        self.heard: dict[PeerId, float] = {}
        self.records = Records()  # each entry's message, kept for dumps (while active)
        self.loading = False  # the internal cache awaits a kernel dump: no dump reads it
        #: states sent from held packets whose kernel event has not come yet (active-
        #: active's defer: the kernel confirms a connection after its packet's verdict),
        #: by key, with when they were sent. Dumps carry them: a dump without them would
        #: sweep them from the peers that acknowledged them. The node keeps it.
        self.unconfirmed: dict[Key, tuple[Entry, float]] = {}
        #: [BULK_START seq, BULK_END seq or None] of this stream's latest dumps: what a
        #: peer's ACK proves depends on them (snep.fsm.gate)
        self.dump_bounds: deque[list[int | None]] = deque(maxlen=DUMP_BOUNDS)

    # --- mode changes -----------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.epoch is not None

    @property
    def term(self) -> int:
        """The header epoch of our frames: our term while primary, else 0 (no claim)."""
        return self.epoch.term if self.epoch is not None else 0

    @property
    def newest_seq(self) -> int:
        """The newest data seq sent (control frames carry it)."""
        return self.queue.newest_seq

    @property
    def next_seq(self) -> int:
        """The seq of the next STATE frame (the spec's ``nextSeq``)."""
        return self.queue.next_seq

    @next_seq.setter
    def next_seq(self, seq: int) -> None:
        self.queue.next_seq = seq

    def activate(self, now: float, epoch: Epoch) -> None:
        """TakeEpoch: a new sequence space from 0, nothing queued, nothing acked."""
        self.mode.fire("activate")
        self.epoch = epoch
        self.queue.restart()
        self.records.clear()
        self.dump_bounds.clear()
        self.large_dumps = self.params.bulk_mtu > self.framer.mtu
        self._first_large = None
        for peer in self.peers.values():
            peer.acked, peer.acked_at = 0, float("-inf")
            peer.carries_large = False
            peer.behind, peer.resume = False, None
        self.notifier.reset()

    def deactivate(self) -> None:
        """StopSending: leave the sequence space; nothing queued is sent again."""
        if self.mode.state is SenderMode.INACTIVE:
            return
        self.mode.fire("deactivate")
        self.epoch = None
        self.queue.clear()
        self.dump.clear()
        self.records.clear()
        self.unconfirmed.clear()
        self.dump_bounds.clear()
        self.notifier.reset()

    def cache_loading(self) -> None:
        """A kernel dump will replace the internal cache: until it is in, the cache may
        lack what the kernel holds (the connections a promotion committed, all of them
        after a flush), and a dump of it would make backups sweep them at its BULK_END."""
        self.loading = True

    def cache_loaded(self, now: float, out: list[Output]) -> None:
        """The kernel dump is in: a dump that waited for it goes on."""
        self.loading = False
        self.records.renew()  # (the dump's entries are new values: records are taken back where only timeouts moved)
        self.on_bulk_step(now, out)

    def mark_dead(self, peer: PeerId) -> None:
        self.peers[peer].alive = False
        self._trim()

    def mark_alive(self, peer: PeerId) -> None:
        self.peers[peer].alive = True

    # --- the stream -------------------------------------------------------------------
    @spec_action("Notify")
    def on_events(self, now: float, events: list[Event], out: list[Output]) -> None:
        """Kernel events on the primary (one netlink read): through filter and level into
        STATE frames, packed into as few frames as fit."""
        if self.epoch is None:
            return
        forget = self.records.forget
        for event in events:
            if event[0] is _DESTROY:
                forget(event[1].key)
        passed = self.notifier.on_events(now, events)
        self.counters.filtered = self.notifier.filtered
        if passed:
            self._send_state(now, passed, out)

    @spec_action("FlushIncremental")
    def on_flush_timer(self, now: float, out: list[Output]) -> None:
        """Incremental level: send the newest state of every connection changed this period."""
        due = self.notifier.next_flush
        if self.epoch is None or due is None or now < due:
            return
        events = self.notifier.flush(now)
        if events:
            self._send_state(now, events, out)

    def send_now(self, now: float, events: list[Event], out: list[Output], *, ack_now: bool = False) -> int:
        """Stream ``events`` at once, past the notification level: the state of a
        connection whose first packet is held (``ack_now``: its receivers acknowledge
        it at once), or its withdrawal. Returns the seq of the first frame (one entry:
        the frame that carries it). Not recorded for dumps: the kernel's own event
        follows (after the verdict) and is streamed and recorded as usual."""
        assert self.epoch is not None
        seq = self.next_seq
        frames = self.framer.state_messages(self.epoch.term, seq, [encode_state(event) for event in events], ack_now=ack_now)
        self._queue_frames(now, frames, len(events), out)
        return seq

    def _send_state(self, now: float, events: list[Event], out: list[Output]) -> None:
        assert self.epoch is not None
        stream = self.records.stream
        frames = self.framer.state_messages(self.epoch.term, self.next_seq, [stream(event) for event in events])
        self._queue_frames(now, frames, len(events), out)

    def _queue_frames(self, now: float, frames: list[Built], messages: int, out: list[Output]) -> None:
        """Frames built from ``next_seq`` on: queued, and sent to every peer."""
        self.queue.push(now, frames)
        peers = tuple(self.peers)
        transmit = self.framer.transmit
        for built in frames:
            transmit(out, peers, built)
        self.counters.state_frames_sent += len(frames)
        self.counters.state_messages_sent += messages
        self.last_sent = now
        # Within the bound: the oldest frames go, acked or not (a drop some live peer
        # had not acknowledged is counted).
        if len(self.queue) > self.queue.bound:
            self.counters.queue_drops += self.queue.drop_excess([p.acked for p in self.peers.values() if p.alive])

    def _low(self) -> int | None:
        """The oldest seq some servable peer still needs, or None: of the live peers
        that the queue can still serve (their next frame is queued; a peer that needs
        a dump stands at the dump's BULK_START), the one furthest behind. (Asked after
        every input, by the timer: one pass, no list.)"""
        first = self.queue.first
        next_seq = self.next_seq
        low = None
        furthest = -1
        for p in self.peers.values():
            if p.alive:
                position = p.position()
                if position is not None and seq_ge(position, first):
                    behind = seq_diff(next_seq, position)
                    if behind > furthest:
                        low, furthest = position, behind
        return low

    def _trim(self) -> None:
        """Drop the frames every live peer acknowledged (all of them when none is live)."""
        queue = self.queue
        live = [p.acked for p in self.peers.values() if p.alive]
        if not live:
            queue.clear()  # nobody to serve: a dead backup costs nothing
            return
        queue.drop_before(max(live, key=lambda seq: seq_diff(self.next_seq, seq)))  # the oldest

    def in_flight(self) -> int:
        """Queued frames that some holding peer has not acknowledged yet."""
        low = self._low()
        return 0 if low is None else seq_diff(self.next_seq, low)

    # --- acknowledgements -------------------------------------------------------------
    def _current(self, term: int) -> bool:
        """Is an ACK/NACK (which names the term of the stream it answers) about ours?"""
        if self.epoch is None or term != self.epoch.term:
            self.counters.stale_epoch_drops += 1
            return False
        return True

    @spec_action("RecvAck")
    def on_ack(self, now: float, peer: PeerId, ack: Ack, term: int, out: list[Output]) -> bool:
        """The peer applied everything up to ``ack.last``: its frames may leave the queue.
        Returns whether the ACK is of this stream (its range: frames the peer applied)."""
        self.counters.acks_received += 1
        if not self._current(term):
            return False
        if not self.queue.was_sent(ack.last):
            self.counters.bad_acks += 1
            return False
        state = self.peers[peer]
        self._advance(now, state, seq_add(ack.last, 1))
        if not state.carries_large and self._first_large is not None:
            state.carries_large = self._acked_large(ack)
        self._trim()
        self.on_bulk_step(now, out)
        return True

    @staticmethod
    def _advance(now: float, state: PeerTx, after: int) -> None:
        """The peer applied everything before ``after`` (an ACK, or the start of a NACK)."""
        if seq_gt(after, state.acked):
            state.acked = after
            state.acked_at = now
            if state.behind and state.resume is not None and seq_gt(after, state.resume):
                state.behind, state.resume = False, None  # it applied the dump's BULK_START

    def _dump_serves(self, state: PeerTx) -> bool:
        """Is a dump already under way for this peer, one it can still get whole?

        Either its BULK_START is about to go out, or it went out (at ``resume``, after
        the peer's need arose) and is still in the resend queue, so that whatever of
        that dump the peer misses can be resent (NACK, retransmission timer). Only when
        that frame has left the queue does the peer need a new dump.
        """
        if not state.behind:
            return False
        if state.resume is None:
            return self.mode.state is SenderMode.BULK_START
        return bool(self.queue) and seq_ge(state.resume, self.queue.first)

    def _needs_dump(self, now: float, peer: PeerId, out: list[Output]) -> None:
        """The peer can only be repaired by a dump: one starts, unless one serves it
        already, or the peer has spent its dump budget (it will ask again)."""
        state = self.peers[peer]
        if self._dump_serves(state):
            self.counters.resync_joined += 1
            return
        if not state.dumps.take(now):
            self.counters.dumps_refused += 1
            self.logs(
                now, out, "dumps_refused", "warning",
                f"peer {peer} asks for more dumps than its budget allows ({DUMP_BURST} at once, "
                f"one per {self.params.resync_retry:g} s): refused, it will ask again",
            )
            return
        state.behind, state.resume = True, None  # it follows from the next BULK_START
        self.start_bulk(now, out)

    @spec_action("RecvNack")
    def on_nack(self, now: float, peer: PeerId, nacks: Sequence[Nack], term: int, out: list[Output]) -> None:
        """One NACK frame: the peer misses its ranges. Each is resent from the queue,
        or, when it reaches back further than the queue holds, dumped; the ranges are
        merged, so each frame goes at most once, within the peer's budget."""
        self.counters.nacks_received += len(nacks)
        if not self._current(term):
            return
        valid = []
        for nack in nacks:
            if self.queue.was_sent(nack.last) and seq_le(nack.first, nack.last):
                valid.append(nack)
            else:
                self.counters.bad_acks += 1
        spans: list[tuple[int, int]] = []
        next_seq = self.next_seq
        for nack in sorted(valid, key=lambda n: seq_diff(n.first, next_seq)):  # oldest first
            self._nack_range(now, peer, nack.first, nack.last, spans, out)
        self._resend(now, peer, spans, out)

    def _nack_range(self, now: float, peer: PeerId, first: int, last: int, spans: list[tuple[int, int]], out: list[Output]) -> None:
        """One range of a NACK: what to resend (added to ``spans``), or a dump."""
        state = self.peers[peer]
        if seq_gt(first, state.acked):
            self._advance(now, state, first)  # everything before the gap was applied
        elif self._late_copy(now, state, first):
            # Sent before the ACK/NACK that moved the peer past it (reordered,
            # duplicated): only what the peer has not acknowledged may need resending,
            # and that is no reason for a dump.
            self.counters.stale_nacks += 1
            first = state.acked
            if seq_gt(first, last):
                return
        if self._dump_serves(state):
            # It waits for a dump it can still get whole (it has not acknowledged that
            # dump's BULK_START, or the NACK would have cleared ``behind``): nothing
            # before that BULK_START is of use to it, and no new dump is needed.
            resume = state.resume
            if resume is None or seq_gt(resume, first):
                self.counters.resync_joined += 1
                if resume is None or seq_gt(resume, last):
                    return  # the BULK_START is yet to go out, or the gap is all before it
                first = resume
            self._span(first, last, spans)
            return
        if not self.queue or seq_gt(self.queue.first, first):
            # Older than the queue holds: only a full resync can repair it. (A restarted
            # peer is back at seq 0: what it acked before no longer holds the window.)
            self.counters.resync_fallbacks += 1
            self._needs_dump(now, peer, out)
            return
        self._span(first, last, spans)

    def _span(self, first: int, last: int, spans: list[tuple[int, int]]) -> None:
        span = self.queue.span(first, last)
        if span is not None:
            spans.append(span)

    def _late_copy(self, now: float, state: PeerTx, first: int) -> bool:
        """Is a NACK starting at ``first``, which the queue no longer holds, a late copy?

        Only when the peer acknowledged past ``first`` a moment ago (within
        ``retransmit_timeout``) and no new session of it was bound since, and
        ``first`` is not 0: a receiver never goes back, except to 0 when it starts
        over, and a restarted process, whatever it acknowledged in its former life,
        needs a dump. (NACKs the queue can serve are served as they are.)
        """
        if first == 0 or not seq_lt(first, state.acked):
            return False
        if self.queue and seq_ge(first, self.queue.first):
            return False
        return now - state.acked_at <= self.params.retransmit_timeout

    def peer_introduced(self, peer: PeerId) -> None:
        """A new session of ``peer`` was bound (snep.fsm.channel): it restarted, its former
        acknowledgements no longer tell what it holds (NACKs below them are not taken
        for late copies)."""
        self.peers[peer].acked_at = float("-inf")
        self.peers[peer].carries_large = False  # (its path may be another now)

    def _resend(self, now: float, peer: PeerId, spans: list[tuple[int, int]], out: list[Output]) -> None:
        """Send the queued frames at these positions again to ``peer``: each once, oldest
        first, while its retransmission budget lasts (the rest waits for the timer)."""
        if not spans:
            return
        merged: list[list[int]] = []
        for start, stop in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        state = self.peers[peer]
        budget = state.resends
        transmit, oversize = self.framer.transmit, self.framer.oversize
        frames = iter(self.queue)  # (one pass over the queue, however many ranges)
        position = 0
        sent = 0
        spent = False
        large = False
        for start, stop in merged:
            for item in islice(frames, start - position, stop - position):
                if not budget.take(now):
                    spent = True
                    break
                transmit(out, (peer,), item.data)
                item.sent_at = now
                item.missed += 1
                sent += 1
                large = large or (item.missed >= LARGE_FRAME_LOST and oversize(item.data))
            if spent:
                break
            position = stop
        self.counters.retransmissions += sent
        if sent:
            self.last_sent = now
        if spent:
            self._budget_hit(now, peer, sum(stop - start for start, stop in merged) - sent, out)
        if large and not state.carries_large and self.large_dumps:
            self._large_frame_lost(now, out)

    @spec_action("RestartBulk")
    def _large_frame_lost(self, now: float, out: list[Output]) -> None:
        """A peer that is there missed a frame larger than the link's MTU again, and none
        ever reached it: the path drops fragments (or loses too many: a frame is lost
        whole when one of its fragments is). The rest of the term's dumps go in frames
        of the stream's MTU; the running dump starts again in them (a receiver that
        misses a large frame jumps to the new BULK_START, which carries everything), so
        that no repair waits on a frame the path cannot carry."""
        if not self.large_dumps:
            return
        self.large_dumps = False
        self.counters.bulk_mtu_fallbacks += 1
        self.logs(
            now, out, "bulk_mtu", "warning",
            f"a dump frame of up to {self.params.bulk_mtu} bytes (sync.bulk_mtu) was lost: dumps go in frames of "
            f"{self.framer.mtu} bytes (sync.mtu) until the next term (IP fragments dropped on the sync path?)",
        )
        if self.mode.state is SenderMode.BULK_START:
            self.dump_mtu = self.framer.mtu  # (its first frame is yet to go)
        elif not (self.bulk_active and self.dump_mtu <= self.framer.mtu):
            self.start_bulk(now, out)

    def _budget_hit(self, now: float, peer: PeerId, held: int, out: list[Output]) -> None:
        self.counters.retransmit_budget_hits += held
        self.logs(
            now, out, "retransmit_budget", "warning",
            f"retransmission budget of peer {peer} spent ({self.peers[peer].resends.capacity:.0f} frames, "
            f"{self.peers[peer].resends.rate:.0f}/s): {held} resends wait for the retransmission timer",
        )

    @spec_action("Retransmit")
    def on_retransmit_timer(self, now: float, out: list[Output]) -> None:
        """Frames unacked for ``retransmit_timeout`` go again to the live peers missing them."""
        if self.epoch is None or not self.queue:
            return
        first = self.queue.first
        holding = []
        for peer, p in self.peers.items():
            position = p.position() if p.alive else None
            if position is not None and seq_ge(position, first):
                holding.append((peer, position))
        if not holding:
            return
        rto = self.params.retransmit_timeout
        budget = self.params.bulk_window
        large = False
        for item in self.queue:
            if budget <= 0:
                break
            if item.sent_at + rto > now:  # (the deadline's own sum: no rounding surprise)
                continue
            wanting = [peer for peer, position in holding if seq_ge(item.seq, position)]
            if not wanting:
                continue
            targets = [peer for peer in wanting if self.peers[peer].resends.take(now)]
            for peer in wanting:
                if peer not in targets:
                    self._budget_hit(now, peer, 1, out)
            item.sent_at = now  # (a resend held back by a budget waits another timeout)
            if not targets:
                continue
            self.framer.transmit(out, targets, item.data)
            self.counters.retransmissions += 1
            self.last_sent = now
            budget -= 1
            if self.large_dumps and self.framer.oversize(item.data) and self._missing_large(now, targets):
                item.missed += 1
                large = large or item.missed >= LARGE_FRAME_LOST
        if large:
            self._large_frame_lost(now, out)

    def _acked_large(self, ack: Ack) -> bool:
        """Does the ACK's range (frames the peer applied) hold a frame above the MTU?"""
        span = self.queue.span(ack.first, ack.last)
        if span is None:
            return False
        oversize = self.framer.oversize
        return any(oversize(item.data) for item in islice(self.queue, span[0], span[1]))

    def _missing_large(self, now: float, peers: list[PeerId]) -> bool:
        """Does one of ``peers`` miss a large frame though it is there (heard from within
        the retransmission timeout) and has never acknowledged one (not a peer that is
        away, not a path that carries them)?"""
        rto, heard, states = self.params.retransmit_timeout, self.heard, self.peers
        return any(not states[p].carries_large and now - heard.get(p, float("-inf")) <= rto for p in peers)

    def retransmit_deadline(self) -> float | None:
        low = self._low()
        if self.epoch is None or low is None or low == self.next_seq:
            return None
        # The oldest frame a holding peer misses; the timer resends every overdue one.
        oldest = self.queue.at(low)
        return None if oldest is None else oldest.sent_at + self.params.retransmit_timeout

    # --- keepalive --------------------------------------------------------------------
    @spec_action("SendAlive")
    def on_alive_timer(self, now: float, out: list[Output]) -> None:
        """Nothing sent for ``alive_interval``: say we are here (and our newest seq)."""
        if self.last_sent + self.params.alive_interval > now:
            return
        data = self.framer.control(MessageType.ALIVE, self.term, self.newest_seq, Alive())
        self.framer.send(out, self.peers, data)
        self.counters.alives_sent += 1
        self.last_sent = now

    # --- bulk dumps -------------------------------------------------------------------
    @spec_action("RecvResyncRequest")
    def on_resync_request(self, now: float, peer: PeerId, out: list[Output]) -> None:
        """A peer wants everything: a bulk dump (to all peers, in the one sequence space)."""
        self.counters.resync_requests_received += 1
        if self.epoch is None:
            self.counters.resync_requests_ignored += 1
            return
        self._needs_dump(now, peer, out)

    def start_bulk(self, now: float, out: list[Output]) -> None:
        """StartBulk: a dump is due (a running one restarts: its BULK_START is what a
        lagging receiver jumps to); nothing changes when one is about to start anyway."""
        if self.epoch is None or self.mode.state is SenderMode.BULK_START:
            return
        self.mode.fire("start_bulk")
        self.dump.clear()
        self.dump_mtu = self.params.bulk_mtu if self.large_dumps else self.framer.mtu
        self.counters.resyncs += 1
        self.on_bulk_step(now, out)

    @property
    def bulk_active(self) -> bool:
        return self.mode.state in (SenderMode.BULK_START, SenderMode.BULK_RUN)

    @property
    def bulk_phase(self) -> str:
        """The spec's ``bulk[n]``: "idle", "start" (BULK_START goes next) or "run"."""
        return {SenderMode.BULK_START: "start", SenderMode.BULK_RUN: "run"}.get(self.mode.state, "idle")

    @property
    def bulk_todo(self) -> tuple[Key, ...]:
        """The spec's ``todo[n]``: keys the running dump has yet to send."""
        return self.dump.todo

    def bulk_room(self) -> int:
        """Frames the dump may send now: at most ``bulk_window`` unacked by a peer the
        queue can serve. (Frames that no live peer can use any more do not count: a
        peer that lags behind the queue needs this very dump, so it must not wait.)"""
        return self.params.bulk_window - self.in_flight()

    @spec_action("SendBulk")
    def on_bulk_step(self, now: float, out: list[Output]) -> None:
        """Send the next part of the dump, as much as the window and the queue allow.

        The first frame (BULK_START) snapshots the internal cache's keys; each key is
        sent with its value at the time it goes out (a connection destroyed since is
        skipped), the last frame carries BULK_END; an empty dump is one empty frame
        with both flags. Frames are filled up to the MTU (the number of messages per
        frame is estimated from the sizes seen, and fewer are taken when they do not
        fit the window), so that a window refilled by each ACK is not spent on frames
        of a message or two.
        """
        if not self.bulk_active or self.loading:
            return
        accepts = self.notifier.filter.accepts
        get = self.internal.getter()
        unconfirmed = self.unconfirmed
        if unconfirmed:
            cached = get

            def get(key: Key) -> Entry | None:  # (the states of held packets too)
                entry = cached(key)
                if entry is None and key in unconfirmed:
                    return unconfirmed[key][0]
                return entry

        records = self.records

        def messages_of(keys: list[Key]) -> tuple[list[bytes], list[Key]]:
            return records.dump_messages(keys, get, accepts)

        dump = self.dump
        dump_mtu = self.dump_mtu
        # (per input: the rest goes on at the next timer, which is due now; the same
        # bytes per step whatever the frames' size)
        budget = max(1, BULK_STEP * self.framer.mtu // dump_mtu)
        room = min(self.bulk_room(), budget)
        while room > 0:
            first = self.mode.state is SenderMode.BULK_START
            if first:
                keys = self.internal.keys()
                if unconfirmed:
                    internal = self.internal
                    keys += [key for key in unconfirmed if key not in internal]
                dump.snapshot(keys, dump_mtu - self.framer.overhead)
            messages, taken = dump.take(room, messages_of)
            while True:
                last = dump.done
                frames = (
                    self.framer.state_messages(
                        self.term, self.next_seq, messages, dump_start=first, dump_end=last, mtu=dump_mtu
                    )
                    if messages or first or last
                    else []
                )
                if len(frames) <= room:
                    break
                # Larger messages than estimated: give back what does not fit the window.
                keep = max(1, len(messages) * room // len(frames) - 1)
                dump.give_back(taken[keep:])
                del messages[keep:], taken[keep:]
            if frames:
                dump.learn(frames, len(messages))
                if self._first_large is None and dump_mtu > self.framer.mtu:
                    self._first_large = next((f.seq for f in frames if self.framer.oversize(f)), None)
                if first:
                    for peer in self.peers.values():
                        if peer.behind:
                            peer.resume = self.next_seq  # it jumps to this BULK_START
                    self.dump_bounds.append([self.next_seq, None])
                self._queue_frames(now, frames, len(messages), out)
                self.counters.bulk_messages_sent += len(messages)
                if dump.done and self.dump_bounds:
                    self.dump_bounds[-1][1] = frames[-1].seq
            if dump.done:
                self.mode.fire("last_frame")
                return
            if first:
                self.mode.fire("first_frame")
            budget -= len(frames)
            room = min(self.bulk_room(), budget)

    # --- timers -----------------------------------------------------------------------
    def next_deadline(self, now: float) -> float:
        deadline = self.last_sent + self.params.alive_interval
        if self.epoch is not None:
            flush = self.notifier.next_flush
            if flush is not None and flush < deadline:
                deadline = flush
            if self.bulk_active and not self.loading and self.bulk_room() > 0 and now < deadline:
                deadline = now
            retransmit = self.retransmit_deadline()
            if retransmit is not None and retransmit < deadline:
                deadline = retransmit
        return deadline
