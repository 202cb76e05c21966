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


def make(external=None, peer=1, **params) -> SyncReceiver:
    defaults = {"ack_window": 3, "ack_delay": 0.05, "nack_interval": 0.1}
    defaults.update(params)
    external = external if external is not None else Cache()
    return SyncReceiver(peer, SyncParams(**defaults), Framer(9, Counters(), 0x5E55), external)


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


def stream(receiver, claim, seq, *entries, flags=0, kind=EventKind.NEW):
    frame = Frame(MessageType.STATE, claim.node, claim.term, seq, tuple(Event(kind, e) for e in entries), flags)
    return receiver.on_state(0.0, frame, claim, [])


def two_streams():
    """One external cache, two peers' receivers (issue 14, item 4: node 3 holds what
    node 1's and node 2's streams told it); 1 and 2 came from peer 1, 5 and 6 from 2."""
    external = Cache()
    one, two = make(external, peer=1), make(external, peer=2)
    stream(one, Epoch(2, 1), 0, conn(1), conn(2))
    stream(two, Epoch(2, 2), 0, conn(5), conn(6))
    return external, one, two


def test_a_peers_dump_sweeps_only_what_its_stream_owns():
    external, one, _ = two_streams()
    stream(one, Epoch(2, 1), 1, conn(1), flags=FLAG_BULK_START)
    result = stream(one, Epoch(2, 1), 2, flags=FLAG_BULK_END)
    assert result.bulk_completed and result.swept == (conn(2),)
    assert set(external.keys()) == {conn(1).key, conn(5).key, conn(6).key}


def test_a_dump_takes_over_what_it_carries_and_sweeps_older_epochs():
    """The new primary's dump is the whole truth: what an older epoch wrote (whoever
    its sender) and the dump does not carry is gone; what it carries is now its own."""
    external, one, _ = two_streams()
    newer = Epoch(3, 1)
    stream(one, newer, 0, conn(5), flags=FLAG_BULK_START)
    result = stream(one, newer, 1, conn(7), flags=FLAG_BULK_END)
    assert {e.key for e in result.swept} == {conn(1).key, conn(2).key, conn(6).key}
    assert set(external.keys()) == {conn(5).key, conn(7).key}
    assert external.owner(conn(5).key) == newer


def test_interleaved_dumps_of_two_peers_keep_their_own_markings():
    """Peer 1's dump (2.1) sweeps only its own entries; peer 2's (2.2, the newer
    epoch) also what 2.1 wrote and 2.2 does not carry, though 2.1 refreshed it."""
    external, one, two = two_streams()
    stream(two, Epoch(2, 2), 1, conn(5), flags=FLAG_BULK_START)
    stream(one, Epoch(2, 1), 1, conn(2), flags=FLAG_BULK_START)
    stream(two, Epoch(2, 2), 2, conn(8))  # peer 2's stream goes on meanwhile
    swept_one = stream(one, Epoch(2, 1), 2, flags=FLAG_BULK_END).swept
    assert swept_one == (conn(1),)
    assert set(external.keys()) == {conn(2).key, conn(5).key, conn(6).key, conn(8).key}
    swept_two = stream(two, Epoch(2, 2), 3, flags=FLAG_BULK_END).swept
    assert {e.key for e in swept_two} == {conn(2).key, conn(6).key}
    assert set(external.keys()) == {conn(5).key, conn(8).key}


def test_a_new_epoch_of_one_peer_abandons_only_its_own_dump():
    external, one, two = two_streams()
    stream(two, Epoch(2, 2), 1, conn(5), flags=FLAG_BULK_START)
    stream(one, Epoch(2, 1), 1, flags=FLAG_BULK_START)
    one.follow(Epoch(3, 1))  # peer 1's next epoch: its dump will not complete
    assert not one.marking and two.marking
    result = stream(two, Epoch(2, 2), 2, flags=FLAG_BULK_END)
    assert result.bulk_completed and set(external.keys()) == {conn(5).key}


def test_the_mutation_sweep_all_owners_is_caught():
    """The code mutation "sweep all owners" (model_tests/mutations.py): peer 1's dump
    then removes what peer 2's stream (a newer epoch) told us."""
    from model_tests.mutations import sweep_all_owners

    with sweep_all_owners():
        external, one, _ = two_streams()
        stream(one, Epoch(2, 1), 1, conn(1), flags=FLAG_BULK_START)
        result = stream(one, Epoch(2, 1), 2, flags=FLAG_BULK_END)
    assert {e.key for e in result.swept} == {conn(2).key, conn(5).key, conn(6).key}
    assert set(external.keys()) == {conn(1).key}


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
