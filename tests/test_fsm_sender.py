"""SyncSender: sequence numbers, the bounded resend queue, ACK/NACK, retransmission,
full-resync fallback, paced bulk dumps, ALIVE, levels and the filter."""

from __future__ import annotations

import pytest

from snep.cache import Cache
from snep.entry import Event, EventKind, Proto, TcpInfo, TcpState
from snep.errors import InvalidTransition
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, Log, SendDatagram
from snep.fsm.framer import Framer
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.fsm.sender import SenderMode, SyncSender
from snep.lab.sim import conn
from snep.level import Level
from snep.wire.codec import FLAG_BULK_END, FLAG_BULK_START, decode_frame
from snep.wire.messages import DEFAULT_MTU, Ack, MessageType, Nack

EPOCH = Epoch(1, 1)


def make(peers=(2, 3), entries=(), filter=Filter(), **params) -> SyncSender:
    defaults = dict(resend_queue=8, bulk_window=4, retransmit_timeout=0.5, alive_interval=1.0)
    defaults.update(params)
    defaults.setdefault("bulk_mtu", defaults.get("mtu", DEFAULT_MTU))  # (dumps in stream frames unless a test says)
    params = SyncParams(**defaults)
    sender = SyncSender(list(peers), params, Framer(1, Counters(), 0x5E55, mtu=params.mtu), Cache(entries), filter)
    sender.activate(0.0, EPOCH)
    return sender


def frames(out, peer=None):
    return [
        decode_frame(o.data)
        for o in out
        if isinstance(o, SendDatagram)
        for to in o.peers
        if peer is None or to == peer
    ]


def new(i):
    return Event(EventKind.NEW, conn(i))


def send_events(sender, n, now=0.0, start=0):
    out = []
    for i in range(start, start + n):
        sender.on_events(now, [new(i)], out)
    return out


def test_stream_starts_at_zero_and_goes_to_every_peer():
    sender = make()
    out = send_events(sender, 3)
    assert [f.seq for f in frames(out, 2)] == [0, 1, 2]
    assert [f.seq for f in frames(out, 3)] == [0, 1, 2]
    f = frames(out, 2)[0]
    assert (f.type, f.node_id, f.epoch) == (MessageType.STATE, 1, 1)
    assert f.messages == (new(0),)
    assert [q.seq for q in sender.queue] == [0, 1, 2]
    assert sender.counters.state_frames_sent == 3


def test_inactive_sender_sends_no_state():
    sender = make()
    sender.deactivate()
    out = send_events(sender, 2)
    assert out == [] and not sender.queue
    assert sender.mode.state is SenderMode.INACTIVE


def test_frame_leaves_queue_only_when_every_live_peer_acked():
    sender = make()
    send_events(sender, 3)
    out = []
    sender.on_ack(0.1, 2, Ack(0, 2), 1, out)
    assert [q.seq for q in sender.queue] == [0, 1, 2]  # peer 3 has not acked
    sender.on_ack(0.1, 3, Ack(0, 1), 1, out)
    assert [q.seq for q in sender.queue] == [2]
    sender.on_ack(0.1, 3, Ack(2, 2), 1, out)
    assert not sender.queue


def test_dead_peer_does_not_hold_the_queue():
    sender = make()
    send_events(sender, 3)
    sender.on_ack(0.1, 2, Ack(0, 2), 1, [])
    sender.mark_dead(3)
    assert not sender.queue


def test_no_live_peer_empties_the_queue():
    sender = make()
    send_events(sender, 3)
    sender.mark_dead(2)
    sender.mark_dead(3)
    assert not sender.queue


def test_queue_is_bounded_and_counts_what_it_drops():
    sender = make(resend_queue=8)
    send_events(sender, 20)
    assert len(sender.queue) == 8
    assert [q.seq for q in sender.queue] == list(range(12, 20))
    assert sender.counters.queue_drops == 12


def test_ack_of_an_old_epoch_is_dropped():
    sender = make()
    send_events(sender, 2)
    sender.on_ack(0.1, 2, Ack(0, 1), 0, [])
    sender.on_ack(0.1, 3, Ack(0, 1), 7, [])
    assert len(sender.queue) == 2
    assert sender.counters.stale_epoch_drops == 2


def test_ack_of_a_seq_never_sent_is_refused():
    sender = make()
    send_events(sender, 2)
    sender.on_ack(0.1, 2, Ack(0, 5), 1, [])
    assert sender.peers[2].acked == 0
    assert sender.counters.bad_acks == 1


def test_nack_retransmits_the_range_to_that_peer():
    sender = make()
    send_events(sender, 5)
    out = []
    sender.on_nack(0.2, 2, [Nack(1, 3)], 1, out)
    assert [f.seq for f in frames(out, 2)] == [1, 2, 3]
    assert frames(out, 3) == []
    assert sender.counters.retransmissions == 3
    assert sender.peers[2].acked == 1  # everything before the gap was applied


def test_nack_older_than_the_queue_falls_back_to_a_full_resync():
    sender = make(resend_queue=4, entries=[conn(100), conn(101)])
    send_events(sender, 10)
    out = []
    sender.on_nack(0.2, 2, [Nack(2, 9)], 1, out)
    sent = frames(out, 2)
    assert sender.counters.resync_fallbacks == 1 and sender.counters.resyncs == 1
    assert sent[0].flags & FLAG_BULK_START and sent[-1].flags & FLAG_BULK_END
    assert {e.entry for f in sent for e in f.messages} == {conn(100), conn(101)}


def test_nack_of_an_old_epoch_is_dropped():
    sender = make()
    send_events(sender, 3)
    out = []
    sender.on_nack(0.2, 2, [Nack(0, 1)], 5, out)
    assert out == [] and sender.counters.stale_epoch_drops == 1


def test_sequence_numbers_wrap():
    sender = make()
    sender.next_seq = 0xFFFFFFFE
    out = send_events(sender, 4)
    assert [f.seq for f in frames(out, 2)] == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    for peer in (2, 3):
        sender.peers[peer].acked = 0xFFFFFFFE
    retransmit = []
    sender.on_nack(0.1, 2, [Nack(0xFFFFFFFF, 0)], 1, retransmit)
    assert [f.seq for f in frames(retransmit)] == [0xFFFFFFFF, 0]
    sender.on_ack(0.1, 2, Ack(0xFFFFFFFE, 1), 1, [])
    sender.on_ack(0.1, 3, Ack(0xFFFFFFFE, 0), 1, [])
    assert [q.seq for q in sender.queue] == [1]


def test_retransmit_timer_resends_unacked_frames_after_the_timeout():
    sender = make(peers=(2,))
    send_events(sender, 3, now=0.0)
    sender.on_ack(0.1, 2, Ack(0, 0), 1, [])
    assert sender.retransmit_deadline() == pytest.approx(0.5)
    early = []
    sender.on_retransmit_timer(0.4, early)
    assert early == []
    out = []
    sender.on_retransmit_timer(0.5, out)
    assert [f.seq for f in frames(out, 2)] == [1, 2]
    assert sender.counters.retransmissions == 2
    assert sender.retransmit_deadline() == pytest.approx(1.0)


def test_alive_on_an_idle_channel_carries_the_newest_seq():
    sender = make()
    send_events(sender, 3, now=0.0)
    quiet = []
    sender.on_alive_timer(0.5, quiet)
    assert quiet == []
    out = []
    sender.on_alive_timer(1.0, out)
    alive = frames(out)
    assert [(f.type, f.seq, f.epoch) for f in alive] == [(MessageType.ALIVE, 2, 1)] * 2
    assert sender.next_deadline(1.0) == pytest.approx(2.0) or sender.next_deadline(1.0) <= 1.5


def test_alive_of_a_non_primary_claims_no_epoch():
    sender = make()
    sender.deactivate()
    out = []
    sender.on_alive_timer(5.0, out)
    assert {(f.type, f.epoch) for f in frames(out)} == {(MessageType.ALIVE, 0)}


def test_resync_request_to_a_non_primary_is_ignored():
    sender = make()
    sender.deactivate()
    out = []
    sender.on_resync_request(0.0, 2, out)
    assert out == [] and sender.counters.resync_requests_ignored == 1


def test_bulk_dump_is_paced_by_the_flight_window():
    entries = [conn(i) for i in range(40)]
    sender = make(peers=(2,), entries=entries, resend_queue=16, bulk_window=2, mtu=300)
    out = []
    sender.on_resync_request(0.0, 2, out)
    first = frames(out, 2)
    assert len(first) == 2 and sender.in_flight() == 2
    assert first[0].flags & FLAG_BULK_START
    assert sender.bulk_active and sender.bulk_room() == 0
    sent = list(first)
    now = 0.0
    while sender.bulk_active:
        now += 0.01
        more = []
        sender.on_ack(now, 2, Ack(0, sender.newest_seq), 1, more)
        assert len(frames(more)) <= 2
        sent += frames(more)
    assert sent[-1].flags & FLAG_BULK_END
    assert [f.seq for f in sent] == list(range(len(sent)))
    assert {e.entry for f in sent for e in f.messages} == set(entries)
    assert sender.mode.state is SenderMode.STREAMING


def test_empty_dump_is_one_frame_with_both_flags():
    sender = make()
    out = []
    sender.start_bulk(0.0, out)
    (frame,) = frames(out, 2)
    assert frame.flags & FLAG_BULK_START and frame.flags & FLAG_BULK_END
    assert frame.messages == ()


def test_resync_request_during_a_dump_restarts_it():
    sender = make(peers=(2,), entries=[conn(i) for i in range(30)], bulk_window=1, mtu=200)
    out = []
    sender.start_bulk(0.0, out)
    assert sender.mode.state is SenderMode.BULK_RUN
    again = []
    sender.on_resync_request(0.1, 2, again)
    assert sender.counters.resyncs == 2
    sender.on_ack(0.2, 2, Ack(0, sender.newest_seq), 1, again)
    assert any(f.flags & FLAG_BULK_START for f in frames(again))


def test_dump_sends_current_values_and_skips_destroyed():
    internal = Cache([conn(1), conn(2), conn(3)])
    sender = SyncSender([2], SyncParams(bulk_window=1, mtu=90, bulk_mtu=90), Framer(1, Counters(), 0x5E55, mtu=90), internal)
    sender.activate(0.0, EPOCH)
    out = []
    sender.start_bulk(0.0, out)  # BULK_START frame with the first entry only (one fits the MTU)
    internal.apply(Event(EventKind.DESTROY, conn(2)))
    newer = conn(3)._replace(mark=7)
    internal.apply(Event(EventKind.UPDATE, newer))
    while sender.bulk_active:
        sender.on_ack(0.1, 2, Ack(0, sender.newest_seq), 1, out)
    entries = [e.entry for f in frames(out) for e in f.messages]
    assert conn(2) not in entries and newer in entries


def test_filter_keeps_connections_back_from_events_and_dumps():
    only_udp = Filter.build(protocols=["udp"])
    udp = conn(5, Proto.UDP)
    sender = make(peers=(2,), entries=[conn(1), udp], filter=only_udp)
    out = []
    sender.on_events(0.0, [new(1)], out)
    assert out == [] and sender.counters.filtered == 1
    sender.start_bulk(0.0, out)
    assert [e.entry for f in frames(out) for e in f.messages] == [udp]


def test_weak_level_sends_only_new_and_destroy():
    sender = make(peers=(2,), level=Level.WEAK)
    out = []
    sender.on_events(0.0, [Event(EventKind.NEW, conn(1))], out)
    sender.on_events(0.0, [Event(EventKind.UPDATE, conn(1))], out)
    sender.on_events(0.0, [Event(EventKind.DESTROY, conn(1))], out)
    assert [e.kind for f in frames(out) for e in f.messages] == [EventKind.NEW, EventKind.DESTROY]


def test_incremental_level_coalesces_until_the_flush():
    sender = make(peers=(2,), level=Level.INCREMENTAL, incremental_period=1.0)
    sender.last_sent = 0.0  # (no ALIVE due before the flush)
    out = []
    closing = conn(1)._replace(protoinfo=TcpInfo(TcpState.FIN_WAIT))
    sender.on_events(0.0, [Event(EventKind.NEW, conn(1))], out)
    sender.on_events(0.2, [Event(EventKind.UPDATE, closing)], out)
    sender.on_events(0.3, [Event(EventKind.NEW, conn(2))], out)
    assert out == []
    assert sender.next_deadline(0.3) == pytest.approx(1.0)
    sender.on_flush_timer(0.9, out)
    assert out == []
    sender.on_flush_timer(1.0, out)
    sent = [e for f in frames(out) for e in f.messages]
    assert sent == [Event(EventKind.UPDATE, closing), Event(EventKind.NEW, conn(2))]


def test_mode_changes_follow_the_table():
    sender = make()
    with pytest.raises(InvalidTransition, match="'activate' is not allowed in mode STREAMING"):
        sender.activate(0.0, Epoch(2, 1))
    assert sender.mode.state is SenderMode.STREAMING and sender.epoch == EPOCH


def test_a_restarted_peer_stale_ack_does_not_block_its_dump():
    """A peer that acked up to 5 restarts (back at 0) and NACKs: the dump it needs
    must go out, paced from its BULK_START, not wait for acks it can never send."""
    sender = make(peers=(2,), entries=[conn(i) for i in range(12)], resend_queue=8, bulk_window=2, mtu=200)
    send_events(sender, 6, start=100)
    sender.on_ack(0.1, 2, Ack(0, 4), 1, [])  # acked 0..4; frame 5 in flight
    out = []
    sender.on_nack(0.2, 2, [Nack(0, 5)], 1, out)  # restarted: needs everything
    sent = frames(out)
    assert sent and sent[0].flags & FLAG_BULK_START
    assert sender.peers[2].behind and sender.peers[2].resume == sent[0].seq
    assert sender.in_flight() == len(sent) <= 2  # paced from its BULK_START
    more = []
    sender.on_ack(0.3, 2, Ack(sent[0].seq, sent[-1].seq), 1, more)
    assert not sender.peers[2].behind and frames(more)


def test_resync_request_paces_the_dump_for_the_requester():
    sender = make(peers=(2,), entries=[conn(i) for i in range(12)], resend_queue=8, bulk_window=2, mtu=200)
    send_events(sender, 3, start=100)
    out = []
    sender.on_resync_request(0.0, 2, out)
    assert len(frames(out)) == 2 and sender.bulk_room() == 0


# --- one dump per need (a peer's repeated requests and late NACKs do not restart it) ---


def test_repeated_resync_request_of_a_peer_its_dump_serves_does_not_restart_it():
    sender = make(peers=(2,), entries=[conn(i) for i in range(30)], resend_queue=64, bulk_window=2, mtu=200)
    out = []
    sender.on_resync_request(0.0, 2, out)
    start = frames(out)[0].seq
    assert frames(out)[0].flags & FLAG_BULK_START and sender.peers[2].resume == start
    again = []
    sender.on_resync_request(0.5, 2, again)  # its retry, sent before the BULK_START arrived
    assert again == [] and sender.counters.resyncs == 1 and sender.counters.resync_joined == 1
    assert sender.bulk_phase == "run"


def test_late_nack_of_a_peer_its_dump_serves_resends_from_the_bulk_start():
    """A NACK sent before the peer saw its dump's BULK_START (older than the queue) is
    answered from that BULK_START, not with yet another dump; a lost BULK_START too."""
    sender = make(peers=(2,), entries=[conn(i) for i in range(30)], resend_queue=8, bulk_window=2, mtu=200)
    send_events(sender, 10, start=100)  # seqs 0..9, the queue keeps 2..9
    sender.on_ack(0.0, 2, Ack(0, 9), 1, [])
    out = []
    sender.on_resync_request(0.1, 2, out)
    start = frames(out)[0].seq
    late = []
    sender.on_nack(0.2, 2, [Nack(0, 9)], 1, late)  # sent by a restarted receiver before the dump
    assert late == [] and sender.counters.resyncs == 1 and sender.counters.resync_fallbacks == 0
    lost = []
    sender.on_nack(0.3, 2, [Nack(0, start)], 1, lost)  # its BULK_START was lost
    assert [f.seq for f in frames(lost)] == [start] and frames(lost)[0].flags & FLAG_BULK_START
    assert sender.counters.resyncs == 1


def test_reordered_nack_below_the_acknowledged_position_is_no_resync():
    sender = make(peers=(2,), resend_queue=16)
    send_events(sender, 10)
    sender.on_nack(0.1, 2, [Nack(6, 9)], 1, [])  # the newer NACK first: 0..5 applied
    sender.on_ack(0.1, 2, Ack(6, 7), 1, [])  # ... and 6..7; 0..7 leave the queue
    out = []
    sender.on_nack(0.2, 2, [Nack(3, 9)], 1, out)  # the older NACK, reordered
    assert [f.seq for f in frames(out)] == [8, 9]
    assert sender.counters.resyncs == 0 and sender.counters.stale_nacks == 1


def test_request_after_the_dump_left_the_queue_gets_a_new_dump():
    """Only a dump the peer can still get whole serves it: once its BULK_START has been
    pushed out of the queue (the peer lagged, events filled the queue), a new one starts."""
    sender = make(peers=(2,), entries=[conn(i) for i in range(3)], resend_queue=4, bulk_window=2, mtu=200)
    out = []
    sender.on_resync_request(0.0, 2, out)
    sender.mark_dead(2)  # silent: its acks no longer hold the queue ...
    send_events(sender, 6, start=100)  # ... which the stream fills past the dump
    sender.mark_alive(2)
    again = []
    sender.on_resync_request(3.0, 2, again)
    assert sender.counters.resyncs == 2 and frames(again)[0].flags & FLAG_BULK_START


def test_dump_frames_are_full_when_the_window_is_refilled_ack_by_ack():
    """Each ACK frees a little of the window: the dump still sends full frames (it used
    to send as many messages as free frames, down to frames of a single entry)."""
    entries = [conn(i) for i in range(400)]
    sender = make(peers=(2,), entries=entries, resend_queue=64, bulk_window=8)
    out = []
    sender.start_bulk(0.0, out)
    sent = frames(out)
    while sender.bulk_active:
        more = []
        sender.on_ack(0.1, 2, Ack(sender.newest_seq, sender.newest_seq), 1, more)  # one frame acked
        assert sender.in_flight() <= 8
        sent += frames(more)
    sizes = [len(f.messages) for f in sent]
    assert sum(sizes) == 400 and {e.entry for f in sent for e in f.messages} == set(entries)
    full = max(sizes)
    assert full > 20 and len(sent) <= 400 // full + 2
    assert sum(size < full for size in sizes[:-1]) <= 1  # (one while it learns the sizes)


def test_nack_below_an_old_acknowledgement_is_a_restarted_peer_that_needs_a_dump():
    """Below what the peer acknowledged, but long after (or after its HELLO): not a late
    copy but a receiver that started over; what the queue lost only a dump repairs."""
    for hello in (False, True):
        sender = make(peers=(2,), entries=[conn(1)], resend_queue=4)
        send_events(sender, 10, start=100)
        sender.on_ack(0.1, 2, Ack(0, 8), 1, [])  # the queue keeps 9 only
        if hello:
            sender.peer_introduced(2)
        out = []
        sender.on_nack(0.2 if hello else 5.0, 2, [Nack(3, 9)], 1, out)
        assert sender.counters.resyncs == 1 and frames(out)[0].flags & FLAG_BULK_START


def test_dump_of_larger_messages_than_estimated_keeps_the_window():
    """IPv6 entries with helpers are larger than the first estimate: what does not fit
    the window goes back to the dump's keys, nothing is lost or sent twice."""
    from snep.entry import make_entry

    big = [make_entry(f"2001:db8::{i:x}", "2001:db8:1::1", Proto.TCP, 1024 + i, 21, helper="ftp" * 20)
           for i in range(120)]
    entries = big + [conn(i) for i in range(120)]
    sender = make(peers=(2,), entries=entries, resend_queue=64, bulk_window=3)
    out = []
    sender.start_bulk(0.0, out)
    sent = frames(out)
    assert len(sent) <= 3
    while sender.bulk_active:
        more = []
        sender.on_ack(0.1, 2, Ack(sender.newest_seq, sender.newest_seq), 1, more)
        assert len(frames(more)) <= 3 and sender.in_flight() <= 3
        sent += frames(more)
    dumped = [e.entry for f in sent for e in f.messages]
    assert sorted(dumped) == sorted(entries)


def test_a_dump_due_while_the_cache_awaits_its_kernel_dump_waits_and_is_joined():
    """While the internal cache awaits its kernel dump, a NACK older than the queue and a
    RESYNC_REQUEST find the due dump (BULK_START) and join it; nothing is dumped until the
    cache is loaded, then one dump of the loaded cache serves both peers."""
    sender = make(resend_queue=4)
    sender.cache_loading()
    send_events(sender, 10)  # kernel events still stream
    out = []
    sender.on_nack(0.2, 2, [Nack(2, 9)], 1, out)
    sender.on_resync_request(0.2, 3, out)
    sender.on_bulk_step(0.3, out)
    assert not [f for f in frames(out) if f.flags & (FLAG_BULK_START | FLAG_BULK_END)]
    assert sender.bulk_phase == "start" and sender.counters.resyncs == 1
    assert sender.next_deadline(0.3) > 0.3  # (no busy loop while it waits)
    sender.internal.replace([conn(100), conn(101)])
    out = []
    sender.cache_loaded(0.4, out)
    sent = frames(out, 2)
    assert sent[0].flags & FLAG_BULK_START and sent[-1].flags & FLAG_BULK_END
    assert {e.entry for f in sent for e in f.messages} == {conn(100), conn(101)}
    assert sender.counters.resyncs == 1
    assert sender.peers[2].resume == sender.peers[3].resume == sent[0].seq


# --- sync.bulk_mtu: dumps in frames larger than the stream's -----------------------------
def _sizes(out) -> list[int]:
    return [len(o.data) for o in out if isinstance(o, SendDatagram)]


def _dump_with_bulk_mtu(**params):
    entries = [conn(i) for i in range(1000)]
    sender = make(peers=(2,), entries=entries, resend_queue=64, bulk_window=8, mtu=600, bulk_mtu=6000, **params)
    out = []
    sender.start_bulk(0.0, out)
    for _ in range(3):  # (a frame per step at this size: the same bytes per step as 16 of mtu's)
        sender.on_bulk_step(0.0, out)
    assert len(frames(out)) == 4
    return sender, entries, out


def test_a_dump_goes_in_bulk_mtu_frames_and_the_stream_in_mtu_frames():
    sender, entries, out = _dump_with_bulk_mtu()
    sent = frames(out)
    assert max(_sizes(out)) > 600 and max(_sizes(out)) <= 6000
    while sender.bulk_active:
        more = []
        sender.on_ack(0.1, 2, Ack(0, sender.newest_seq), 1, more)
        sent += frames(more)
        assert max(_sizes(more), default=0) <= 6000
    assert {e.entry for f in sent for e in f.messages} == set(entries)
    assert len(sent) <= 1000 * 48 // 5000 + 2  # (about a tenth of the frames of mtu 600)
    stream = send_events(sender, 200, start=1000)  # one input each: small frames
    batch = []
    sender.on_events(0.2, [new(2000 + i) for i in range(100)], batch)  # many at once: still the stream's MTU
    assert max(_sizes(stream) + _sizes(batch)) <= 600 and len(frames(batch)) > 1


def test_a_lost_bulk_frame_restarts_the_dump_in_stream_frames_until_the_next_term():
    sender, entries, out = _dump_with_bulk_mtu()
    first = frames(out)
    assert first[0].flags & FLAG_BULK_START and len(first) >= 2
    repair = []
    sender.on_nack(0.1, 2, [Nack(first[1].seq, first[1].seq)], 1, repair)  # lost, or overtaken
    assert sender.counters.retransmissions == 1 and sender.counters.bulk_mtu_fallbacks == 0
    assert max(_sizes(repair)) > 600  # (resent as it was)
    repair = []
    sender.on_nack(0.2, 2, [Nack(first[1].seq, first[1].seq)], 1, repair)  # lost again
    assert sender.counters.bulk_mtu_fallbacks == 1 and sender.counters.resyncs == 2
    assert any(isinstance(o, Log) and "bulk_mtu" in o.message for o in repair)
    restarted = [f for f in frames(repair) if f.flags & FLAG_BULK_START]
    assert restarted and restarted[0].seq > first[-1].seq  # the receiver jumps to it
    sent = [f for f in frames(repair) if f.seq >= restarted[0].seq]
    while sender.bulk_active:
        more = []
        sender.on_ack(0.2, 2, Ack(0, sender.newest_seq), 1, more)
        assert max(_sizes(more), default=0) <= 600
        sent += frames(more)
    assert {e.entry for f in sent for e in f.messages} == set(entries)  # the new dump carries all
    again = []
    sender.on_nack(0.3, 2, [Nack(first[1].seq, first[1].seq)], 1, again)  # the same loss, late: once a term
    assert sender.counters.bulk_mtu_fallbacks == 1
    later = []
    sender.start_bulk(0.4, later)
    assert max(_sizes(later)) <= 600
    sender.deactivate()
    sender.activate(1.0, Epoch(2, 1))  # the next term tries large frames again
    fresh = []
    sender.start_bulk(1.0, fresh)
    assert max(_sizes(fresh)) > 600


def test_the_retransmission_timer_alone_keeps_the_bulk_mtu():
    """A peer that acknowledges nothing may be away (not started yet): that says nothing
    of the path. Its NACKs do: the receiver gets frames around the lost one."""
    sender, _, out = _dump_with_bulk_mtu()
    for now in (0.6, 1.2, 1.8):
        sender.on_retransmit_timer(now, [])
    assert sender.counters.retransmissions >= 3 and sender.counters.bulk_mtu_fallbacks == 0
    second = frames(out)[1].seq
    for now in (2.0, 2.2):
        sender.on_nack(now, 2, [Nack(second, second)], 1, [])
    assert sender.counters.bulk_mtu_fallbacks == 1


def test_a_lost_stream_frame_keeps_the_bulk_mtu():
    sender, _, _ = _dump_with_bulk_mtu()
    while sender.bulk_active:
        sender.on_ack(0.1, 2, Ack(0, sender.newest_seq), 1, [])
    send_events(sender, 3, now=0.2, start=1000)
    out = []
    sender.on_nack(0.3, 2, [Nack(sender.newest_seq, sender.newest_seq)], 1, out)
    assert sender.counters.retransmissions == 1 and sender.counters.bulk_mtu_fallbacks == 0


def test_a_bulk_mtu_below_the_mtu_means_the_mtu():
    assert SyncParams(mtu=9000, bulk_mtu=1472).bulk_mtu == 9000
    sender = make(peers=(2,), entries=[conn(i) for i in range(50)], mtu=600, bulk_mtu=600)
    out = []
    sender.start_bulk(0.0, out)
    assert max(_sizes(out)) <= 600 and not sender.large_dumps


def test_a_peer_that_acknowledged_a_bulk_frame_gets_lost_ones_resent_as_they_are():
    """The path carries large frames (one was acknowledged): a later loss is a loss like
    any other, repaired by resending, not a reason to give up large frames."""
    sender, _, out = _dump_with_bulk_mtu()
    sent = frames(out)
    assert max(_sizes(out[1:2])) > 600
    sender.on_ack(0.1, 2, Ack(0, sent[1].seq), 1, [])  # the first large frame arrived
    lost = sent[3].seq
    for now in (0.2, 0.4, 0.6):
        repair = []
        sender.on_nack(now, 2, [Nack(lost, lost)], 1, repair)
        assert [f.seq for f in frames(repair)] == [lost]
    assert sender.counters.bulk_mtu_fallbacks == 0 and sender.large_dumps
    sender.peer_introduced(2)  # it restarted: its path is to be proved again
    for now in (0.8, 1.0):
        sender.on_nack(now, 2, [Nack(lost, lost)], 1, [])
    assert sender.counters.bulk_mtu_fallbacks == 1
