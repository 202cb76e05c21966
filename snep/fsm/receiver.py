"""The reliable STATE stream's receiving side: one SyncReceiver per peer.

A receiver follows one stream: the peer's epoch (its claim as primary) and the next
sequence number it expects. STATE frames are applied strictly in order: applied to
the external cache first, then counted for the ACK (never ack what is not applied).
An ACK(first, last) goes out after ``ack_window`` frames or ``ack_delay`` seconds.

- a frame beyond the expected seq is a gap: dropped, and NACK(expected, seq - 1) is
  sent (repeated for the same gap at most every ``nack_interval``);
- a frame before it is a duplicate: dropped and counted;
- a frame with BULK_START beyond the gap restarts the stream there: a complete dump
  follows, and mark-and-sweep makes the lost frames irrelevant;
- an ALIVE whose newest seq is at or beyond the expected one means a lost tail: NACK;
- a new epoch of the peer is a new stream: the expected seq goes back to 0.

Mark-and-sweep: at BULK_START the external cache's entries this stream's dump answers
for are marked (its sender's, and older epochs': snep.cache.swept_by), what follows
unmarks what it touches and takes it over (the entry's owner becomes this stream),
and at BULK_END the still-marked entries are removed. Another peer's entries of the
same or a newer epoch are left alone: one peer's dump must not sweep another's live
stream. A dump that completed in order (its BULK_START seen) is what makes a SYNCING
node ready.
Epoch checks (stale claims) are the node's job: a receiver sees only current claims.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from snep.cache import Cache, RecordCache
from snep.entry import Entry, Event
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, Output, PeerId
from snep.fsm.framer import Framer
from snep.fsm.modes import ModeMachine, ModeRow
from snep.fsm.params import SyncParams
from snep.fsm.ratelog import RateLog
from snep.fsm.spec_map import spec_action
from snep.wire.messages import Ack, Frame, MessageType, Nack, ResyncRequest
from snep.wire.serial import seq_add, seq_diff


class ReceiverMode(Enum):
    IDLE = "idle"  # no stream from this peer yet
    IN_ORDER = "in_order"  # applying frames as they come
    GAP = "gap"  # a frame is missing: NACKed, waiting for the retransmission


_IDLE, _IN, _GAP = ReceiverMode
RECEIVER_TABLE = (
    ModeRow("new_stream", (_IDLE, _IN, _GAP), _IN, "new epoch: expect seq 0"),
    ModeRow("gap", (_IN,), _GAP, "NACK(expected, seq-1)"),
    ModeRow("repaired", (_GAP,), _IN, "expected frame applied"),
    ModeRow("jump", (_IN, _GAP), _IN, "BULK_START beyond the gap"),
)


class Received(NamedTuple):
    """What applying one STATE frame did."""

    applied: tuple[Event, ...] = ()
    bulk_completed: bool = False  # a dump ended whose start we applied too
    swept: tuple[Entry, ...] = ()  # what that dump's sweep removed
    records: tuple[bytes, ...] = ()  # applied as records (plain NEW and UPDATE messages)


NOTHING = Received()


class SyncReceiver:
    def __init__(
        self,
        peer: PeerId,
        params: SyncParams,
        framer: Framer,
        external: Cache | RecordCache,
        *,
        graph: bool = False,
        logs: RateLog | None = None,
    ) -> None:
        self.peer = peer
        self.logs = logs or RateLog()
        self.params = params
        self.framer = framer
        self.counters: Counters = framer.counters
        self.external = external
        self.mode = ModeMachine("sync receiver", ReceiverMode, RECEIVER_TABLE, ReceiverMode.IDLE, graph=graph)
        self.stream: Epoch | None = None
        self.expected = 0
        self.marking = False  # we applied this stream's current BULK_START
        self._ack_first: int | None = None
        self._ack_count = 0
        self._ack_due: float | None = None
        self._nack_expected: int | None = None
        self._nack_at = float("-inf")

    # --- the stream -------------------------------------------------------------------
    def follow(self, claim: Epoch) -> None:
        """A new epoch of the peer: a new sequence space, from 0."""
        self.abandon_dump()
        self.stream = claim
        self.expected = 0
        self._ack_first = None
        self._ack_count = 0
        self._ack_due = None
        self._nack_expected = None
        self.mode.fire("new_stream")

    def abandon_dump(self) -> None:
        """This stream's dump will not complete whole: the external cache was emptied in
        the middle of it (operator flush: what it sent before is gone, so its BULK_END
        must not count; the node asks again, the sender starts a new dump once we
        acknowledged this one), or a newer epoch made the stream stale (its marking
        would only linger, as the spec forgets it)."""
        if self.marking:
            assert self.stream is not None
            self.external.unmark(self.stream)
            self.marking = False

    @spec_action("RecvState")
    def on_state(self, now: float, frame: Frame, claim: Epoch, out: list[Output]) -> Received:
        """Apply the frame if it is the expected one; NACK a gap; drop a duplicate."""
        if claim != self.stream:
            self.follow(claim)
        seq = frame.seq
        ahead = seq_diff(seq, self.expected)
        if ahead < 0:
            # Our ACK may have been lost (the sender retransmitted): acknowledge again
            # from this seq with the next ACK.
            self.counters.duplicates += 1
            if self._ack_first is None or seq_diff(seq, self._ack_first) < 0:
                self._ack_first = seq
            if self._ack_due is None:
                self._ack_due = now + self.params.ack_delay
            return NOTHING
        if ahead > 0:
            if not frame.starts_dump:
                self.counters.gap_drops += 1
                self._nack(now, seq_add(seq, -1), out)
                return NOTHING
            # A dump starts beyond the gap: it carries everything; restart from it.
            self.mode.fire("jump")
            self._flush_ack(now, out)
            self.expected = seq
            self._nack_expected = None
        elif self.mode.state is ReceiverMode.GAP:
            self.mode.fire("repaired")
            self._nack_expected = None
        if frame.starts_dump:
            self.external.mark(claim)
            self.marking = True
        external = self.external
        applied: tuple[Event, ...] = ()
        records = frame.records
        if records is not None:  # (kept as they came: snep.cache.RecordCache)
            refused: list = external.apply_records(records, claim)  # type: ignore[attr-defined]
        else:
            applied = frame.messages  # type: ignore[assignment]
            refused = external.apply_all(applied, claim)
        if refused:
            self._refused(now, refused, out)
            gone = {id(item) for item in refused}
            if records is not None:
                records = tuple(record for record in records if id(record) not in gone)
            else:
                applied = tuple(event for event in applied if id(event) not in gone)
        self.counters.state_messages_applied += len(applied) if records is None else len(records)
        self.expected = seq_add(seq, 1)
        # Counted for the ACK only now that it is applied.
        if self._ack_first is None:
            self._ack_first = seq
            self._ack_due = now + self.params.ack_delay
        self._ack_count += 1
        completed = False
        swept: tuple[Entry, ...] = ()
        if frame.ends_dump:
            if self.marking:
                swept = tuple(external.sweep(claim))
                self.marking = False
                completed = True
                self.counters.bulk_completed += 1
            self._flush_ack(now, out)
        elif self._ack_count >= self.params.ack_window and not frame.ack_now:
            self._flush_ack(now, out)  # (a FLAG_ACK_NOW frame's ACK goes after the kernel write: the node's)
        return Received(applied, completed, swept, records or ())

    def _refused(self, now: float, refused: list, out: list[Output]) -> None:
        self.counters.external_full += len(refused)
        self.logs(
            now, out, "external_full", "warning",
            f"external cache full ({self.external.limit} entries, sync max_entries): "
            f"{len(refused)} new entries from peer {self.peer} refused",
        )

    @spec_action("RecvAlive")
    def on_alive(self, now: float, frame: Frame, claim: Epoch, out: list[Output]) -> None:
        """The primary's keepalive carries its newest seq: behind it means a lost tail."""
        if claim != self.stream:
            self.follow(claim)
        newest = frame.seq
        if seq_diff(newest, self.expected) >= 0:
            self._nack(now, newest, out)

    def _nack(self, now: float, last: int, out: list[Output]) -> None:
        if self.mode.state is ReceiverMode.IN_ORDER:
            self.mode.fire("gap")
        if self._nack_expected == self.expected and now - self._nack_at < self.params.nack_interval:
            return
        assert self.stream is not None
        self._nack_expected = self.expected
        self._nack_at = now
        data = self.framer.control(MessageType.NACK, self.stream.term, 0, Nack(self.expected, last), self.peer)
        self.framer.send(out, (self.peer,), data)
        self.counters.nacks_sent += 1

    # --- acknowledgements -------------------------------------------------------------
    def _flush_ack(self, now: float, out: list[Output]) -> None:
        if self._ack_first is None:
            return
        self._send_ack(now, self._ack_first, seq_add(self.expected, -1), out)
        self._ack_first = None
        self._ack_count = 0
        self._ack_due = None

    def ack_at_once(self, now: float, out: list[Output]) -> None:
        """Acknowledge what is applied now (a FLAG_ACK_NOW frame: a packet is held for
        it). The node calls this after its kernel write, so that the ACK means the
        state is in this node's kernel."""
        self._flush_ack(now, out)

    def _send_ack(self, now: float, first: int, last: int, out: list[Output]) -> None:
        assert self.stream is not None
        data = self.framer.control(MessageType.ACK, self.stream.term, 0, Ack(first, last), self.peer)
        self.framer.send(out, (self.peer,), data)
        self.counters.acks_sent += 1

    @spec_action("SendAck")
    def on_ack_timer(self, now: float, out: list[Output]) -> None:
        """Acknowledge the applied frames once ``ack_delay`` has passed."""
        if self._ack_due is not None and now >= self._ack_due:
            self._flush_ack(now, out)

    def ack_deadline(self) -> float | None:
        return self._ack_due

    # --- resync -----------------------------------------------------------------------
    @spec_action("RequestResync")
    def request_resync(self, now: float, own_term: int, out: list[Output]) -> None:
        """Ask this peer for a bulk dump (only a primary answers)."""
        data = self.framer.control(MessageType.RESYNC_REQUEST, own_term, 0, ResyncRequest(), self.peer)
        self.framer.send(out, (self.peer,), data)
        self.counters.resync_requests_sent += 1
