"""Bounded work: what one frame can make a node do. NACK ranges merged and resent once,
within a per-peer retransmission budget; dumps within a per-peer budget; the external
cache within max_entries; terms within 32 bits with room to promote; log lines within
one per reason per second."""

from __future__ import annotations

import pytest

from snep.cache import Cache
from snep.entry import Event, EventKind
from snep.errors import InvalidTransition
from snep.fsm.budget import TokenBucket
from snep.fsm.counters import Counters
from snep.fsm.effects import MAX_TERM, Epoch, KernelOps, Log, PersistEpoch, SendDatagram
from snep.fsm.framer import Framer
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.fsm.ratelog import RateLog
from snep.fsm.receiver import SyncReceiver
from snep.fsm.role import Role
from snep.fsm.sender import DUMP_BURST, SyncSender
from snep.lab.sim import conn
from snep.wire.codec import decode_frame, decode_records
from snep.wire.messages import Ack, Frame, Hello, MessageType, Nack
from tests.channel_helpers import remote, session_of

EPOCH = Epoch(1, 1)


def sender_with(frames: int, peers=(2, 3), **params) -> SyncSender:
    defaults = dict(resend_queue=4096, bulk_window=64, retransmit_timeout=0.5)
    defaults.update(params)
    p = SyncParams(**defaults)
    sender = SyncSender(list(peers), p, Framer(1, Counters(), 0x5E55, mtu=p.mtu), Cache([conn(i) for i in range(50)]))
    sender.activate(0.0, EPOCH)
    for i in range(frames):
        sender.on_events(0.0, [Event(EventKind.NEW, conn(1000 + i))], [])
    return sender


def seqs(out, peer=2):
    return [decode_frame(o.data).seq for o in out if isinstance(o, SendDatagram) and peer in o.peers]


# --- retransmissions ----------------------------------------------------------------------


def test_overlapping_and_repeated_nack_ranges_resend_each_frame_once():
    sender = sender_with(20)
    out = []
    sender.on_nack(0.1, 2, [Nack(5, 9), Nack(7, 12), Nack(5, 9), Nack(15, 16), Nack(8, 8)], 1, out)
    assert seqs(out) == [5, 6, 7, 8, 9, 10, 11, 12, 15, 16]
    assert sender.counters.retransmissions == 10 and seqs(out, 3) == []


def test_every_resend_takes_a_fresh_counter():
    sender = sender_with(3)
    out = []
    sender.on_nack(0.1, 2, [Nack(0, 2)], 1, out)
    sender.on_nack(0.2, 2, [Nack(0, 2)], 1, out)
    counters = [decode_frame(o.data).counter for o in out if isinstance(o, SendDatagram)]
    assert len(counters) == 6 and len(set(counters)) == 6 and counters == sorted(counters)


def test_one_huge_nack_frame_costs_at_most_the_peers_budget():
    sender = sender_with(3000, bulk_window=64)
    capacity = 2 * 64
    nacks = [Nack(0, 2999)] * 5000  # one frame of 5,000 messages, each naming the whole queue
    out = []
    sender.on_nack(0.1, 2, nacks, 1, out)
    assert len(seqs(out)) == capacity == sender.counters.retransmissions
    assert seqs(out) == list(range(capacity))  # oldest first, each once
    assert sender.counters.retransmit_budget_hits == 3000 - capacity
    logs = [o for o in out if isinstance(o, Log)]
    assert len(logs) == 1 and "retransmission budget of peer 2 spent" in logs[0].message
    # the next NACK a moment later finds the budget still spent (it refills at 2 * 64 per 0.5 s)
    more = []
    sender.on_nack(0.11, 2, nacks, 1, more)
    assert len(seqs(more)) <= 3  # 0.01 s of refill
    assert len([o for o in more if isinstance(o, Log)]) == 0  # (one line a second)
    # the other peer's budget is its own
    other = []
    sender.on_nack(0.11, 3, [Nack(0, 9)], 1, other)
    assert seqs(other, 3) == list(range(10))


def test_the_retransmission_timer_draws_from_the_same_budget_and_waits_when_spent():
    sender = sender_with(400, peers=(2,), bulk_window=64)
    out = []
    sender.on_nack(0.1, 2, [Nack(0, 399)], 1, out)  # spends the budget (128)
    timer = []
    sender.on_retransmit_timer(0.6, timer)  # 0.5 s later: 128 more tokens, 64 per call
    assert 0 < len(seqs(timer)) <= 64
    assert sender.next_deadline(0.6) > 0.6  # what waits does not make the timer spin


def test_a_legitimate_repair_of_a_window_per_timeout_goes_through():
    sender = sender_with(1000, peers=(2,), bulk_window=64)
    for i in range(1, 11):  # a gap of a window every retransmission timeout
        now = i * 0.5
        out = []
        first = i * 64
        sender.on_nack(now, 2, [Nack(first, first + 63)], 1, out)
        assert len(seqs(out)) == 64
    assert sender.counters.retransmit_budget_hits == 0


# --- dumps ---------------------------------------------------------------------------------


def test_dumps_a_peer_may_start_are_budgeted():
    sender = sender_with(0, peers=(2,), resync_retry=2.0, bulk_window=4096)
    for now in (0.0, 0.1, 0.2, 0.3):
        out = []
        sender.on_resync_request(now, 2, out)
        # each dump of 50 entries fits the window: it completes at once, so the next
        # request needs a new one
        sender.on_ack(now, 2, Ack(0, sender.newest_seq), 1, [])
    assert sender.counters.resyncs == DUMP_BURST and sender.counters.dumps_refused == 2
    sender.on_resync_request(2.3, 2, [])  # one more per resync_retry
    assert sender.counters.resyncs == DUMP_BURST + 1


def test_a_token_bucket_refills_at_its_rate_up_to_its_capacity():
    bucket = TokenBucket(2, 0.5)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert not bucket.take(1.9) and bucket.take(2.0)
    assert bucket.tokens(100.0) == 2


# --- the external cache ---------------------------------------------------------------------


def test_new_entries_beyond_max_entries_are_refused_counted_and_never_injected():
    params = SyncParams(max_entries=3, inject_on_arrival=True)
    n = SyncNode(2, [1], params, session=session_of(2, 1))
    n.start(0.0)
    n.on_kernel_dump(0.0, [])
    remote(1).bind(n)
    events = tuple(Event(EventKind.NEW, conn(i)) for i in range(5))
    out = n.on_datagram(0.1, remote(1).encode(Frame(MessageType.STATE, 1, 1, 0, events)), 1)
    assert len(n.external) == 3 and n.counters.external_full == 2
    (ops,) = [o for o in out if isinstance(o, KernelOps)]
    assert [e.entry for e in ops.events + tuple(decode_records(ops.records))] == [conn(i) for i in range(3)]
    assert any(isinstance(o, Log) and "external cache full (3 entries" in o.message for o in out)
    # updates of what it holds and removals still go through
    changes = (Event(EventKind.UPDATE, conn(0)._replace(mark=7)), Event(EventKind.DESTROY, conn(1)), Event(EventKind.NEW, conn(4)))
    n.on_datagram(0.2, remote(1).encode(Frame(MessageType.STATE, 1, 1, 1, changes)), 1)
    assert n.external.get(conn(0).key).mark == 7 and conn(4).key in n.external and len(n.external) == 3


def test_a_receiver_counts_only_what_it_applied():
    external = Cache(limit=1)
    receiver = SyncReceiver(1, SyncParams(), Framer(2, Counters(), 0x5E55), external)
    frame = Frame(MessageType.STATE, 1, 1, 0, (Event(EventKind.NEW, conn(1)), Event(EventKind.NEW, conn(2))))
    result = receiver.on_state(0.0, frame, EPOCH, [])
    assert result.applied == (Event(EventKind.NEW, conn(1)),) and receiver.counters.state_messages_applied == 1


# --- terms ------------------------------------------------------------------------------------


def started(node_id=1, peers=(2,), **options) -> SyncNode:
    n = SyncNode(node_id, list(peers), SyncParams(), session=session_of(node_id, 2), **options)
    n.start(0.0)
    n.on_kernel_dump(0.0, [])
    for peer in peers:
        remote(peer).bind(n)
    return n


@pytest.mark.parametrize("term", [MAX_TERM + 1, 2**32 - 1])
def test_a_claim_that_leaves_no_room_to_promote_is_refused(term):
    n = started()
    n.promote(0.1)
    n.on_kernel_dump(0.1, [])
    hello = remote(2).encode(Frame(MessageType.HELLO, 2, term, 0, (Hello(term, 2, live=True),)))
    out = n.on_datagram(0.2, hello, 2)
    news = remote(2).encode(Frame(MessageType.HELLO, 2, 0, 0, (Hello(term, 2, live=True),)))
    out += n.on_datagram(0.3, news, 2)
    assert n.counters.epoch_overflow == 2 and n.state is Role.PRIMARY and n.newest == Epoch(1, 1)
    assert not [o for o in out if isinstance(o, PersistEpoch)]
    assert any(isinstance(o, Log) and f"term {term} leaves no room to promote" in o.message for o in out)


def test_the_last_term_can_be_held_but_not_promoted_above():
    n = started(newest_epoch=Epoch(MAX_TERM - 1, 2))
    out = n.promote(0.1)
    assert n.own == Epoch(MAX_TERM, 1) and PersistEpoch(Epoch(MAX_TERM, 1)) in out
    n.demote(0.2)
    with pytest.raises(InvalidTransition, match="no term is left above epoch"):
        n.promote(0.3)
    assert n.state is Role.SYNCING and n.newest == Epoch(MAX_TERM, 1)  # unchanged, never half done


def test_a_primary_that_finds_no_term_above_news_steps_down_instead_of_retaking():
    n = started(newest_epoch=Epoch(MAX_TERM - 2, 1))
    n.promote(0.1)  # holds MAX_TERM - 1
    n.on_kernel_dump(0.1, [])
    news = remote(2).encode(Frame(MessageType.HELLO, 2, 0, 0, (Hello(MAX_TERM, 2),)))  # news nobody vouches for
    n.on_datagram(0.2, news, 2)
    assert n.state is Role.SYNCING and n.counters.fenced == 1 and n.counters.retakes == 0


def test_a_node_refuses_an_epoch_it_could_not_act_on():
    with pytest.raises(ValueError, match="the term must be 0"):
        SyncNode(1, [2], session=1, newest_epoch=Epoch(2**32 - 1, 2))


# --- logs ---------------------------------------------------------------------------------------


def test_a_flood_makes_one_line_per_reason_per_second_and_says_how_many_were_held():
    logs = RateLog()
    out: list = []
    for i in range(5000):
        logs(i * 0.0001, out, "auth_failures", "warning", f"frame {i} rejected")
    logs(0.2, out, "replays", "warning", "a replay")
    logs(1.5, out, "auth_failures", "warning", "frame again rejected")
    assert [o.message for o in out] == [
        "frame 0 rejected",
        "a replay",
        "frame again rejected (4999 more since 1.5 s ago not logged)",
    ]
