"""SyncNode: outputs in order, epochs and fencing, bad input counted, timers, commands."""

from __future__ import annotations

import pytest

from snep.entry import Event, EventKind
from snep.errors import InvalidTransition
from snep.fsm.effects import (
    DumpKernel,
    Epoch,
    KernelOps,
    Log,
    PersistEpoch,
    RoleChanged,
    SendDatagram,
    ShortenTimeouts,
)
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.lab.sim import conn
from snep.wire.auth import Key, Keyring
from snep.wire.codec import FLAG_BULK_END, FLAG_BULK_START, decode_frame, encode_state
from snep.wire.messages import Alive, Frame, Hello, MessageType, ResyncRequest
from tests.channel_helpers import Remote, handshake, remote, session_of

KEY = Key(1, b"k" * 32)


def new_node(node_id, peers, params=None, **options) -> SyncNode:
    return SyncNode(node_id, list(peers), params or SyncParams(), session=session_of(node_id, 7), **options)


def node(node_id=2, peers=(1,), **params) -> SyncNode:
    return new_node(node_id, peers, SyncParams(**params))


def datagrams(out, keyring=None):
    return [(peer, decode_frame(o.data, keyring)) for o in out if isinstance(o, SendDatagram) for peer in o.peers]


def state_frame(seq, *entries, term=1, sender=1, flags=0) -> bytes:
    messages = tuple(Event(EventKind.NEW, e) for e in entries)
    return remote(sender).encode(Frame(MessageType.STATE, sender, term, seq, messages, flags))


def from_peer(frame: Frame) -> bytes:
    """``frame`` as its sender (a peer the test plays) sends it."""
    return remote(frame.node_id).encode(frame)


def started(n: SyncNode, now=0.0, bind=True):
    """Started, its kernel dump in, and (``bind``) every peer's session bound."""
    out = n.start(now)
    out += n.on_kernel_dump(now, [])
    if bind:
        for peer in n.peers:
            out += remote(peer).bind(n, now)
    return out


def test_start_dumps_the_kernel_says_hello_and_asks_for_a_resync_once_bound():
    n = node()
    out = n.start(0.0)
    assert isinstance(out[0], RoleChanged) and (out[0].old, out[0].new) == ("down", "syncing")
    assert DumpKernel() in out
    (hello,) = [f for _, f in datagrams(out)]  # the peer knows not our session: no request yet
    assert hello.type is MessageType.HELLO and hello.dst == 0 and hello.messages[0].echo == 0
    assert hello.session == n.channel.session
    assert n.need_sync and not n.ready
    # the peer answers (it proves itself over our session): we bind it, answer it with our
    # proof, and ask it for the dump right behind
    out = remote(1).bind(n, 0.1)
    answer, request = [f for _, f in datagrams(out)]
    assert answer.type is MessageType.HELLO and answer.messages[0].echo == remote(1).session and answer.dst == 1
    assert request.type is MessageType.RESYNC_REQUEST and request.dst == 1
    assert answer.counter < request.counter and n.channel.introduced(1)


def test_promotion_order_commit_epoch_dump_hello_then_bulk():
    # a cold backup (its kernel written at the takeover); a warm one commits nothing here
    n = new_node(2, [1], SyncParams(inject_on_arrival=False), newest_epoch=Epoch(4, 1))
    started(n)
    n.external.apply(Event(EventKind.NEW, conn(1)))
    out = n.promote(1.0)
    kinds = [type(o).__name__ for o in out]
    assert kinds[:5] == ["RoleChanged", "KernelOps", "Log", "PersistEpoch", "DumpKernel"]
    # a commit replaces existing kernel entries (stale window tracking must not survive)
    assert out[1] == KernelOps((), replace=True, records=(encode_state(Event(EventKind.NEW, conn(1))),))  # (as kept)
    assert out[3] == PersistEpoch(Epoch(5, 2))
    assert [f.type for _, f in datagrams(out)] == [MessageType.HELLO]  # no STATE yet:
    assert n.sender.bulk_phase == "start"  # the dump is due, and waits for the kernel dump
    assert not [f for _, f in datagrams(n.on_timer(1.0)) if f.type is MessageType.STATE]
    assert n.next_timer(1.0) > 1.0  # (nothing due until it arrives: no busy loop)
    bulk = n.on_kernel_dump(1.0, [conn(1), conn(2)])  # the dump arrives: now the bulk
    frames = [f for _, f in datagrams(bulk)]
    assert frames[0].flags & FLAG_BULK_START and frames[-1].flags & FLAG_BULK_END
    assert (frames[0].seq, frames[0].epoch, frames[0].node_id) == (0, 5, 2)


def test_demotion_shortens_timeouts_and_requests_a_resync():
    n = node()
    started(n)
    n.promote(0.0)
    out = n.demote(1.0)
    assert out[0] == RoleChanged("primary", "syncing", "demote")
    assert ShortenTimeouts(60) in out
    assert [f.type for _, f in datagrams(out)] == [MessageType.RESYNC_REQUEST]
    assert not n.sender.active and n.own is None


def test_stale_state_is_dropped_counted_and_never_applied():
    n = new_node(3, [1, 2], newest_epoch=Epoch(5, 2))
    started(n)
    out = n.on_datagram(1.0, state_frame(0, conn(1), term=4, sender=1), 1)
    assert n.counters.stale_epoch_drops == 1 and len(n.external) == 0
    # the stale primary is told the newest epoch, so that it steps down
    assert [(p, f.type, f.messages[0].newest_owner, f.messages[0].newest_term) for p, f in datagrams(out)] == [
        (1, MessageType.HELLO, 2, 5)
    ]
    stale_alive = from_peer(Frame(MessageType.ALIVE, 1, 4, 9, (Alive(),)))
    n.on_datagram(1.0, stale_alive, 1)
    assert n.counters.stale_epoch_drops == 2


def test_newer_epoch_is_adopted_and_persisted_and_a_new_stream_applied():
    n = node()
    started(n)
    out = n.on_datagram(1.0, state_frame(0, conn(1), term=3, sender=1, flags=FLAG_BULK_START | FLAG_BULK_END), 1)
    assert PersistEpoch(Epoch(3, 1)) in out
    assert n.newest == Epoch(3, 1) and conn(1).key in n.external
    assert RoleChanged("syncing", "backup", "synced") in out and n.ready and not n.need_sync


def test_primary_hearing_a_newer_epoch_is_fenced():
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    assert n.own == Epoch(1, 1)
    hello = from_peer(Frame(MessageType.HELLO, 2, 2, 0, (Hello(2, 2),)))
    out = n.on_datagram(1.0, hello, 2)
    assert n.state is Role.SYNCING and n.counters.fenced == 1
    assert RoleChanged("primary", "syncing", "fenced") in out
    assert ShortenTimeouts(60) in out
    assert any(isinstance(o, Log) and "fenced" in o.message for o in out)
    assert [f.type for _, f in datagrams(out)].count(MessageType.RESYNC_REQUEST) == 1


def test_a_newer_epoch_merely_heard_of_makes_a_primary_take_a_term_above_it():
    """A backup's HELLO tells of epoch 7.2 (it remembers it; nobody vouches that its
    primary lives): the primary is not deposed, it retakes 8.1 and dumps again."""
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    n.on_kernel_dump(0.0, [])
    hello = from_peer(Frame(MessageType.HELLO, 2, 0, 0, (Hello(7, 2),)))  # a backup's HELLO
    out = n.on_datagram(1.0, hello, 2)
    assert n.state is Role.PRIMARY and n.own == Epoch(8, 1) == n.newest
    assert n.counters.retakes == 1 and n.counters.fenced == 0
    assert PersistEpoch(Epoch(8, 1)) in out
    sent = [f for _, f in datagrams(out)]
    assert sent[0].type is MessageType.HELLO and sent[0].epoch == 8
    assert any(f.type is MessageType.STATE and f.starts_dump and f.epoch == 8 and f.seq == 0 for f in sent)


def test_a_newer_epoch_vouched_for_as_live_fences_a_primary():
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    hello = from_peer(Frame(MessageType.HELLO, 2, 0, 0, (Hello(7, 3, live=True),)))
    n.on_datagram(1.0, hello, 2)
    assert n.state is Role.SYNCING and n.newest == Epoch(7, 3) and n.counters.fenced == 1


def test_state_to_a_primary_or_without_epoch_is_unexpected():
    n = node()
    started(n)
    n.on_datagram(0.5, state_frame(0, conn(1), term=0), 1)
    assert n.counters.unexpected == 1 and len(n.external) == 0


def test_bad_input_is_counted_never_raised():
    n = node()
    started(n)
    out = n.on_datagram(1.0, b"\x00garbage", 1)
    assert n.counters.malformed == 1 and isinstance(out[0], Log)
    n.on_datagram(1.0, state_frame(0, conn(1)), 99)
    assert n.counters.unknown_peer == 1
    assert len(n.external) == 0


def test_authentication_failures_are_counted():
    n = new_node(2, [1], keyring=Keyring([KEY]))
    started(n, bind=False)
    sealed = Remote(1, session_of(1, 3), KEY)
    sealed.bind(n)
    n.on_datagram(1.0, state_frame(0, conn(1)), 1)  # not sealed
    wrong = Remote(1, sealed.session, Key(1, b"x" * 32)).encode(Frame(MessageType.STATE, 1, 1, 0, (Event(EventKind.NEW, conn(1)),)))
    n.on_datagram(1.0, wrong, 1)
    assert n.counters.auth_failures == 2 and len(n.external) == 0
    good = sealed.encode(Frame(MessageType.STATE, 1, 1, 0, (Event(EventKind.NEW, conn(1)),)))
    n.on_datagram(1.0, good, 1)
    assert conn(1).key in n.external
    assert all(decode_frame(d.data, Keyring([KEY])) for d in n.on_timer(5.0) if isinstance(d, SendDatagram))


def test_inject_external_writes_states_into_the_kernel_as_they_arrive():
    n = node(inject_on_arrival=True)
    started(n)
    out = n.on_datagram(1.0, state_frame(0, conn(1)), 1)
    assert KernelOps((), records=(encode_state(Event(EventKind.NEW, conn(1))),)) in out  # (as it came)


@pytest.mark.parametrize("update_at", [0, 1, 2])
def test_inject_writes_a_frame_with_an_update_as_updates_not_as_creations(update_at):
    """A frame of NEW records goes to the kernel from its bytes (creations); one UPDATE
    among them, wherever it is, makes the frame's records go the general way (the
    kernel's update of an entry it holds, no creation first)."""
    n = node(inject_on_arrival=True)
    started(n)
    events = [Event(EventKind.UPDATE if i == update_at else EventKind.NEW, conn(i)) for i in range(3)]
    out = n.on_datagram(1.0, remote(1).encode(Frame(MessageType.STATE, 1, 1, 0, tuple(events))), 1)
    (ops,) = [o for o in out if isinstance(o, KernelOps)]
    assert ops.records == () and [e.kind for e in ops.events] == [e.kind for e in events]


def test_peer_silence_marks_it_dead_and_hearing_it_revives_it():
    n = node(node_id=1, peers=(2,), peer_dead_timeout=3.0, alive_interval=1.0)
    started(n, now=0.0)
    assert n.next_timer(0.0) <= 1.0
    n.on_timer(2.9)
    assert n.alive[2]
    out = n.on_timer(3.0)
    assert not n.alive[2] and n.counters.peer_deaths == 1
    assert any(isinstance(o, Log) and "marked dead" in o.message for o in out)
    n.on_datagram(4.0, from_peer(Frame(MessageType.ALIVE, 2, 0, 0, (Alive(),))), 2)
    assert n.alive[2] and n.counters.peer_revivals == 1


def test_lost_resync_request_is_asked_again():
    n = node(resync_retry=2.0)
    out = started(n)
    assert [f.type for _, f in datagrams(out)].count(MessageType.RESYNC_REQUEST) == 1
    assert n.next_timer(0.0) <= 2.0
    again = n.on_timer(2.0)
    assert [f.type for _, f in datagrams(again)].count(MessageType.RESYNC_REQUEST) == 1


def test_update_events_are_completed_before_they_are_kept_and_sent():
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    n.on_kernel_dump(0.0, [])
    full = conn(1)
    n.on_kernel_events(0.1, [Event(EventKind.NEW, full)])
    partial = full._replace(protoinfo=None, mark=9)
    out = n.on_kernel_events(0.2, [Event(EventKind.UPDATE, partial)])
    sent = [m for _, f in datagrams(out) for m in f.messages]
    assert sent == [Event(EventKind.UPDATE, full._replace(mark=9))]
    assert n.internal.get(full.key) == full._replace(mark=9)


def test_operator_commands():
    n = node(node_id=1, peers=(2,))
    started(n)
    n.external.apply(Event(EventKind.NEW, conn(1)))
    assert KernelOps((), replace=True, records=(encode_state(Event(EventKind.NEW, conn(1))),)) in n.commit(0.0)
    assert n.shorten_timeouts(0.0) == [ShortenTimeouts(60)]
    assert n.resync_from_kernel(0.0) == [DumpKernel()]
    assert [f.type for _, f in datagrams(n.request_resync(0.0))] == [MessageType.RESYNC_REQUEST]
    with pytest.raises(InvalidTransition, match="only a PRIMARY"):
        n.bulk_send(0.0)
    flushed = n.flush(0.0)
    assert len(n.external) == len(n.internal) == 0
    assert DumpKernel() in flushed  # refilled at once
    assert [f.type for _, f in datagrams(flushed)] == [MessageType.RESYNC_REQUEST]
    assert n.status(0.0)["role"] == "SYNCING" and n.counters.resync_requests_sent == 3


def test_flush_of_one_cache_leaves_the_other_and_refills_what_it_emptied():
    """conntrackd -f internal / -f external: one cache emptied and refilled, the other
    kept; the external one from the primary's dump, so the node is not ready meanwhile."""
    n = node(node_id=2, peers=(1,))
    started(n)
    n.on_datagram(1.0, state_frame(0, conn(1), flags=FLAG_BULK_START | FLAG_BULK_END), 1)
    n.internal.apply(Event(EventKind.NEW, conn(9)))
    assert n.ready and len(n.external) == len(n.internal) == 1
    out = n.flush(2.0, "external")
    assert len(n.external) == 0 and len(n.internal) == 1 and DumpKernel() not in out
    assert [f.type for _, f in datagrams(out)] == [MessageType.RESYNC_REQUEST] and not n.ready
    n.on_datagram(2.1, state_frame(1, conn(1), flags=FLAG_BULK_START | FLAG_BULK_END), 1)
    assert n.ready and len(n.external) == 1
    out = n.flush(3.0, "internal")
    assert len(n.internal) == 0 and len(n.external) == 1 and DumpKernel() in out
    assert not datagrams(out) and n.ready
    with pytest.raises(ValueError, match="not one of all, internal, external"):
        n.flush(4.0, "both")


def test_a_down_node_ignores_everything():
    n = node()
    assert n.on_datagram(0.0, state_frame(0, conn(1)), 1) == []
    assert n.on_timer(10.0) == [] and n.next_timer(10.0) is None
    assert n.on_kernel_events(0.0, [Event(EventKind.NEW, conn(1))]) == []


def test_an_abandoned_dump_of_an_old_primary_does_not_stop_resync_requests():
    n = node(3, [1, 2], resync_retry=1.0)
    started(n)
    n.on_datagram(0.1, state_frame(0, conn(1), term=1, sender=1, flags=FLAG_BULK_START), 1)
    assert n._dump_arriving()
    n.on_timer(1.5)  # a dump is arriving: no new request
    promoted = from_peer(Frame(MessageType.HELLO, 2, 2, 0, (Hello(2, 2),)))
    n.on_datagram(1.6, promoted, 2)  # node 2 took over; node 1's dump will never end
    assert n.newest == Epoch(2, 2) and not n._dump_arriving()
    assert not n.receivers[1].marking and n.external.marked(Epoch(1, 1)) == frozenset()  # (as the spec)
    out = n.on_timer(3.0)
    assert [(peer, f.type) for peer, f in datagrams(out) if f.type is MessageType.RESYNC_REQUEST] == [
        (2, MessageType.RESYNC_REQUEST)
    ]
    assert conn(1).key in n.external  # nothing was cleared up front


def test_acks_go_only_to_the_newest_primary():
    n = node(3, [1, 2], ack_delay=0.05)
    started(n)
    n.on_datagram(0.1, state_frame(0, conn(1), term=1, sender=1), 1)
    n.on_datagram(0.2, from_peer(Frame(MessageType.HELLO, 2, 2, 0, (Hello(2, 2),))), 2)
    out = n.on_timer(1.0)
    assert not [f for _, f in datagrams(out) if f.type is MessageType.ACK]


def test_a_stopped_node_started_again_is_a_fresh_process():
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    n.on_kernel_dump(0.0, [conn(1)])
    assert n.sender.queue
    n.stop(1.0)
    assert n.state is Role.DOWN
    started(n, now=2.0)
    assert n.state is Role.SYNCING and not n.sender.queue and n.sender.next_seq == 0
    assert all(r.stream is None for r in n.receivers.values())


def test_set_filter_applies_to_what_is_sent_from_now_on():
    from snep.entry import Proto
    from snep.fsm.notify import Filter

    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    n.on_kernel_dump(0.0, [])
    n.set_filter(Filter.build(protocols=["udp"]))
    assert datagrams(n.on_kernel_events(0.1, [Event(EventKind.NEW, conn(1))])) == []
    udp = conn(2, Proto.UDP)
    sent = [m for _, f in datagrams(n.on_kernel_events(0.2, [Event(EventKind.NEW, udp)])) for m in f.messages]
    assert sent == [Event(EventKind.NEW, udp)]


def _deliver(out, to: SyncNode, src: int, now: float) -> list:
    """The datagrams of ``out`` addressed to ``to``, received from ``src``."""
    more = []
    for o in out:
        if isinstance(o, SendDatagram) and to.node_id in o.peers:
            more += to.on_datagram(now, o.data, src)
    return more


def test_a_resync_request_before_the_promotions_kernel_dump_joins_the_promotion_dump():
    """A newly promoted primary's internal cache is loaded by the kernel dump it asked
    for; until it is in, no dump may be read from it: a backup would sweep, at its
    BULK_END, the connections the primary committed (and, ready, could take over
    without them). A RESYNC_REQUEST meanwhile joins the promotion's dump (the spec's
    NeedsDump with bulk = "start")."""
    peers = {2: (1, 3), 3: (1, 2)}
    b2, b3 = (new_node(i, peers[i]) for i in (2, 3))
    for b in (b2, b3):
        started(b, bind=False)
        remote(1).bind(b, 0.4)
    handshake(b2, b3, 0.45)
    old_primary_dump = state_frame(0, conn(1), term=1, sender=1, flags=FLAG_BULK_START | FLAG_BULK_END)
    for b in (b2, b3):
        b.on_datagram(0.5, old_primary_dump, 1)
        assert b.state is Role.BACKUP and conn(1).key in b.external
    promoted = b2.promote(1.0)
    assert DumpKernel() in promoted  # not answered yet (a runtime may take its time)
    _deliver(promoted, b3, 2, 1.01)  # HELLO: node 3 learns the new epoch
    request = b3.request_resync(1.1)
    out = b2.on_datagram(1.2, next(o.data for o in request if isinstance(o, SendDatagram) and 2 in o.peers), 3)
    out += b2.on_timer(1.2)
    assert not [f for _, f in datagrams(out) if f.type is MessageType.STATE], "a dump of the unloaded cache"
    _deliver(out, b3, 2, 1.21)
    assert conn(1).key in b3.external
    assert b2.sender.bulk_phase == "start" and b2.sender.peers[3].behind  # it waits for the due dump

    dumped = b2.on_kernel_dump(1.3, [conn(1)])  # the committed connection is in the kernel
    frames = [f for peer, f in datagrams(dumped) if peer == 3 and f.type is MessageType.STATE]
    assert frames[0].flags & FLAG_BULK_START and frames[-1].flags & FLAG_BULK_END and frames[0].seq == 0
    assert [m.entry for f in frames for m in f.messages] == [conn(1)]
    assert b2.counters.resyncs == 1 and b2.sender.peers[3].resume == 0  # one dump, joined
    _deliver(dumped, b3, 2, 1.31)
    assert conn(1).key in b3.external and b3.state is Role.BACKUP


def test_a_flushed_primary_dumps_only_once_its_cache_is_reloaded():
    """After a flush (conntrackd -f) the internal cache is empty until the kernel dump is
    in: a dump asked for meanwhile (RESYNC_REQUEST) waits for it, or the backups would
    sweep every connection the primary holds."""
    n = node(node_id=1, peers=(2,))
    started(n)
    n.promote(0.0)
    n.on_kernel_dump(0.0, [conn(1), conn(2)])
    assert len(n.internal) == 2
    n.flush(1.0)
    request = from_peer(Frame(MessageType.RESYNC_REQUEST, 2, 0, 0, (ResyncRequest(),)))
    out = n.on_datagram(1.1, request, 2) + n.on_timer(1.1)
    assert not [f for _, f in datagrams(out) if f.type is MessageType.STATE], "a dump of the flushed cache"
    assert n.sender.bulk_phase == "start"
    dumped = n.on_kernel_dump(1.2, [conn(1), conn(2)])
    frames = [f for _, f in datagrams(dumped) if f.type is MessageType.STATE]
    assert frames[0].flags & FLAG_BULK_START and frames[-1].flags & FLAG_BULK_END
    assert sorted(m.entry.key for f in frames for m in f.messages) == sorted([conn(1).key, conn(2).key])


def _exchange(a: SyncNode, b: SyncNode, out: list, now: float, src: SyncNode) -> None:
    """``out`` (of ``src``) delivered, and what it brings, back and forth until quiet."""
    pending = [(src, out)]
    for _ in range(1000):
        if not pending:
            return
        frm, outs = pending.pop(0)
        to = b if frm is a else a
        more = _deliver(outs, to, frm.node_id, now)
        if more:
            pending.append((to, more))
    raise AssertionError("the two nodes never went quiet")


def test_an_operators_resync_refused_for_the_dump_budget_is_asked_again():
    """conntrackd -n beyond the primary's dump budget (DUMP_BURST at once, one more per
    resync_retry): the primary refuses it, and the backup, in sync already, asks again
    until a dump has come; it does not stay unanswered."""
    primary, backup = new_node(1, (2,)), new_node(2, (1,))
    for n in (primary, backup):
        n.start(0.0)
        n.on_kernel_dump(0.0, [])
    handshake(primary, backup)
    _exchange(primary, backup, primary.promote(0.1) + primary.on_kernel_dump(0.1, [conn(1)]), 0.1, primary)
    assert backup.state is Role.BACKUP and conn(1).key in backup.external and not backup.need_sync
    resyncs = primary.counters.resyncs
    for k in range(3):  # within a second: the third is beyond the budget
        _exchange(primary, backup, backup.request_resync(1.0 + k / 100), 1.0 + k / 100, backup)
    assert primary.counters.resyncs == resyncs + 2 and primary.counters.dumps_refused == 1
    now = 1.02
    while primary.counters.resyncs < resyncs + 3 and now < 10.0:
        now = max(backup.next_timer(now), primary.next_timer(now), now + 0.01)
        _exchange(primary, backup, backup.on_timer(now), now, backup)
        _exchange(primary, backup, primary.on_timer(now), now, primary)
    assert not backup.need_sync and primary.counters.resyncs == resyncs + 3
    assert now < 1.02 + 2 * backup.params.resync_retry
    assert conn(1).key in backup.external and backup.state is Role.BACKUP
