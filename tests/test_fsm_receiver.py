"""SyncReceiver: strict in-order apply, ACK only after apply, NACK on a gap, duplicates,
new epochs, bulk dumps with mark-and-sweep, ALIVE, wrap-around."""

from __future__ import annotations

import pytest

from snep.cache import Cache
from snep.entry import Event, EventKind
from snep.errors import InvalidTransition
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, SendDatagram
from snep.fsm.framer import Framer
from snep.fsm.params import SyncParams
from snep.fsm.receiver import ReceiverMode, SyncReceiver
from snep.lab.sim import conn
from snep.wire.codec import FLAG_BULK_END, FLAG_BULK_START, decode_frame
from snep.wire.messages import Ack, Alive, Frame, MessageType, Nack, ResyncRequest

PRIMARY = Epoch(1, 1)


def make(external=None, **params) -> SyncReceiver:
    defaults = dict(ack_window=3, ack_delay=0.05, nack_interval=0.1)
    defaults.update(params)
    return SyncReceiver(1, SyncParams(**defaults), Framer(2, Counters(), 0x5E55), external if external is not None else Cache())


def state(seq, *entries, flags=0, epoch=PRIMARY.term, kind=EventKind.NEW) -> Frame:
    return Frame(MessageType.STATE, PRIMARY.node, epoch, seq, tuple(Event(kind, e) for e in entries), flags)


def sent(out):
    return [decode_frame(o.data).messages[0] for o in out if isinstance(o, SendDatagram)]


def test_in_order_frames_are_applied_then_acked_after_the_window():
    receiver = make()
    out = []
    for seq in range(3):
        receiver.on_state(0.0, state(seq, conn(seq)), PRIMARY, out)
    assert set(receiver.external.keys()) == {conn(i).key for i in range(3)}
    assert sent(out) == [Ack(0, 2)]
    assert receiver.expected == 3
    assert receiver.counters.state_messages_applied == 3


def test_ack_after_the_delay():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(0, conn(0)), PRIMARY, out)
    assert out == [] and receiver.ack_deadline() == pytest.approx(0.05)
    receiver.on_ack_timer(0.04, out)
    assert out == []
    receiver.on_ack_timer(0.05, out)
    assert sent(out) == [Ack(0, 0)]
    (frame,) = [decode_frame(o.data) for o in out]
    assert frame.type is MessageType.ACK and frame.epoch == PRIMARY.term  # names the stream


def test_gap_is_dropped_and_nacked_and_never_acked():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(0, conn(0)), PRIMARY, out)
    receiver.on_state(0.0, state(3, conn(3)), PRIMARY, out)
    assert conn(3).key not in receiver.external
    assert sent(out) == [Nack(1, 2)]
    assert receiver.mode.state is ReceiverMode.GAP
    assert receiver.counters.gap_drops == 1
    receiver.on_ack_timer(1.0, out)
    assert sent(out)[-1] == Ack(0, 0)  # the dropped frame is not acknowledged


def test_nack_is_not_repeated_within_the_interval():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(2, conn(2)), PRIMARY, out)
    receiver.on_state(0.05, state(3, conn(3)), PRIMARY, out)
    assert sent(out) == [Nack(0, 1)]
    receiver.on_state(0.1, state(4, conn(4)), PRIMARY, out)
    assert sent(out) == [Nack(0, 1), Nack(0, 3)]


def test_retransmission_repairs_the_gap():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(1, conn(1)), PRIMARY, out)
    receiver.on_state(0.1, state(0, conn(0)), PRIMARY, out)
    receiver.on_state(0.1, state(1, conn(1)), PRIMARY, out)
    assert receiver.mode.state is ReceiverMode.IN_ORDER
    assert receiver.expected == 2 and len(receiver.external) == 2


def test_duplicate_is_dropped_and_acknowledged_again():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(0, conn(0)), PRIMARY, out)
    receiver.on_ack_timer(0.1, out)
    receiver.external.apply(Event(EventKind.DESTROY, conn(0)))  # (to see that it is not re-applied)
    receiver.on_state(0.2, state(0, conn(0)), PRIMARY, out)
    assert conn(0).key not in receiver.external
    assert receiver.counters.duplicates == 1
    receiver.on_ack_timer(0.3, out)
    assert sent(out) == [Ack(0, 0), Ack(0, 0)]


def test_a_new_epoch_is_a_new_stream_from_zero():
    receiver = make()
    out = []
    for seq in range(5):
        receiver.on_state(0.0, state(seq, conn(seq)), PRIMARY, out)
    newer = Epoch(2, 3)
    receiver.on_state(0.1, state(0, conn(9), epoch=2), newer, out)
    assert receiver.stream == newer and receiver.expected == 1
    assert conn(9).key in receiver.external


def test_bulk_marks_and_sweeps():
    external = Cache([conn(1), conn(2), conn(3)])
    receiver = make(external)
    out = []
    r1 = receiver.on_state(0.0, state(0, conn(1), flags=FLAG_BULK_START), PRIMARY, out)
    assert not r1.bulk_completed and receiver.marking
    r2 = receiver.on_state(0.0, state(1, conn(4), flags=FLAG_BULK_END), PRIMARY, out)
    assert r2.bulk_completed
    assert set(external.keys()) == {conn(1).key, conn(4).key}
    assert receiver.counters.bulk_completed == 1
    assert sent(out)[-1] == Ack(0, 1)  # a completed dump is acknowledged at once


def test_bulk_end_without_its_start_completes_nothing():
    external = Cache([conn(1)])
    receiver = make(external)
    receiver.on_state(0.0, state(0, conn(2)), PRIMARY, [])
    result = receiver.on_state(0.0, state(1, conn(3), flags=FLAG_BULK_END), PRIMARY, [])
    assert not result.bulk_completed and conn(1).key in external


def test_events_during_a_dump_are_not_swept():
    external = Cache([conn(1), conn(2)])
    receiver = make(external)
    receiver.on_state(0.0, state(0, flags=FLAG_BULK_START), PRIMARY, [])
    receiver.on_state(0.0, state(1, conn(2), kind=EventKind.UPDATE), PRIMARY, [])
    receiver.on_state(0.0, state(2, flags=FLAG_BULK_END), PRIMARY, [])
    assert set(external.keys()) == {conn(2).key}


def test_bulk_start_beyond_a_gap_restarts_the_stream_there():
    external = Cache([conn(1)])
    receiver = make(external)
    out = []
    receiver.on_state(0.0, state(0, conn(0)), PRIMARY, out)
    receiver.on_state(0.0, state(7, conn(7)), PRIMARY, out)  # gap
    receiver.on_state(0.0, state(9, conn(2), flags=FLAG_BULK_START), PRIMARY, out)
    assert receiver.expected == 10 and receiver.mode.state is ReceiverMode.IN_ORDER
    result = receiver.on_state(0.0, state(10, flags=FLAG_BULK_END), PRIMARY, out)
    assert result.bulk_completed
    assert set(external.keys()) == {conn(2).key}


def test_a_dump_interrupted_by_a_new_epoch_sweeps_nothing():
    external = Cache([conn(1), conn(2)])
    receiver = make(external)
    receiver.on_state(0.0, state(0, conn(1), flags=FLAG_BULK_START), PRIMARY, [])
    receiver.on_state(0.0, state(0, conn(3), flags=FLAG_BULK_END, epoch=2), Epoch(2, 3), [])
    assert set(external.keys()) == {conn(1).key, conn(2).key, conn(3).key}


def test_alive_ahead_of_us_means_a_lost_tail():
    receiver = make()
    out = []
    receiver.on_state(0.0, state(0, conn(0)), PRIMARY, out)
    alive = Frame(MessageType.ALIVE, 1, 1, 0, (Alive(),))
    receiver.on_alive(0.1, alive, PRIMARY, out)
    assert not [m for m in sent(out) if isinstance(m, Nack)]
    receiver.on_alive(0.2, Frame(MessageType.ALIVE, 1, 1, 3, (Alive(),)), PRIMARY, out)
    assert sent(out)[-1] == Nack(1, 3)


def test_sequence_numbers_wrap():
    receiver = make(ack_window=10)
    receiver.follow(PRIMARY)
    receiver.expected = 0xFFFFFFFE
    out = []
    for seq in (0xFFFFFFFE, 0xFFFFFFFF, 0, 1):
        receiver.on_state(0.0, state(seq, conn(seq & 0xFF)), PRIMARY, out)
    assert receiver.expected == 2
    receiver.on_state(0.0, state(0xFFFFFFFF, conn(9)), PRIMARY, out)  # old: duplicate
    assert receiver.counters.duplicates == 1
    receiver.on_state(0.0, state(4, conn(4)), PRIMARY, out)
    assert sent(out) == [Nack(2, 3)]
    receiver.on_ack_timer(1.0, out)
    assert sent(out)[-1] == Ack(0xFFFFFFFE, 1)


def test_request_resync():
    receiver = make()
    out = []
    receiver.request_resync(0.0, 0, out)
    assert sent(out) == [ResyncRequest()]
    assert receiver.counters.resync_requests_sent == 1


def test_mode_table_refuses_what_it_lacks():
    receiver = make()
    with pytest.raises(InvalidTransition, match="'repaired' is not allowed in mode IDLE"):
        receiver.mode.fire("repaired")
    assert receiver.mode.state is ReceiverMode.IDLE
