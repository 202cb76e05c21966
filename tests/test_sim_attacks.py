"""The attacks of issue 14, in the simulation: each one fails.

The adversary sits on the sync link (snep.lab.sim.SimNetwork): it reads what every
datagram shows (the header: snep.wire.codec.HEADER; a sealed payload is secret),
captures datagrams in flight and replays them later, to any node, claiming any peer's
source address. A key holder (a peer gone rogue) is played by sealing frames with a
node's own framer: authentic, fresh frames of that node's session. Every test checks
that the caches are unchanged, that no dump started, and that the counters say why.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import pytest

from snep.entry import Event, EventKind
from snep.fsm.effects import MAX_TERM, Epoch, Log
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.lab.sim import Datagram, Simulation, conn
from snep.wire.auth import Key, Keyring
from snep.wire.codec import HEADER, build_frame, encode_frame
from snep.wire.messages import (
    DEFAULT_MTU,
    FLAG_BULK_END,
    FLAG_BULK_START,
    Frame,
    Hello,
    MessageType,
    Nack,
)

KEYRING = Keyring([Key(1, b"the cluster's pre-shared secret!")])
WRONG = Key(1, b"an attacker's guess at the key..")


class Header(NamedTuple):
    """What anyone on the link reads of a frame (sealed or not)."""

    type: int
    flags: int
    src: int
    dst: int
    session: int
    counter: int
    epoch: int
    seq: int


def header(data: bytes) -> Header:
    _, _, mtype, flags, _, _, src, dst, session, counter, epoch, seq = HEADER.unpack_from(data)
    return Header(mtype, flags, src, dst, session, counter, epoch, seq)


def of(mtype: MessageType, src: int | None = None, dst: int | None = None):
    """A capture filter: datagrams of this type (from src, to dst)."""
    return lambda d: header(d.data).type == mtype and src in (None, d.src) and dst in (None, d.dst)


def capture_all(sim: Simulation, match) -> list[Datagram]:
    """Copies of every datagram in flight that ``match`` accepts."""
    return [sim.network.capture(lambda d, order=d.order: d.order == order) for d in sorted(sim.network.in_flight) if match(d)]


def cluster(size=3, **params) -> Simulation:
    """A sealed cluster, started: every node SYNCING, the sessions bound (no primary yet)."""
    defaults = dict(resend_queue=256, peer_dead_timeout=3.0, alive_interval=0.5)
    defaults.update(params)
    sim = Simulation(size, SyncParams(**defaults), keyring=KEYRING, seed=5)
    sim.start()
    sim.run(0.2)
    return sim


def primary_with_connections(sim: Simulation, entries: int) -> list:
    for i in range(entries):
        sim.conn_new(1, conn(i))
    sim.settle()
    return [conn(i) for i in range(entries)]


def restart_backup(sim: Simulation, node: int = 2) -> Datagram:
    """``node`` restarts; the RESYNC_REQUEST its new process sends node 1, captured (it
    arrives too), once the node is in sync again."""
    sim.crash(node)
    sim.restart(node)
    request = None
    while request is None:
        sim.run(0.001)
        request = sim.network.capture(of(MessageType.RESYNC_REQUEST, src=node, dst=1))
    sim.settle()
    assert sim.node(node).ready
    return request


def counters(sim: Simulation, node: int, *names: str) -> dict[str, int]:
    values = sim.node(node).counters.as_dict()
    return {name: values[name] for name in names}


def keys(sim: Simulation, node: int) -> set:
    return {e.key for e in sim.node(node).external}


def as_key_holder(sim: Simulation, node: int, frame: Frame) -> bytes:
    """A frame sealed by ``node``'s own process: authentic and fresh (a rogue key holder)."""
    return sim.node(node).framer.seal(build_frame(frame))


# --- replays -----------------------------------------------------------------------------


def test_the_seq_0_bulk_frame_replayed_to_another_node_sweeps_nothing():
    """Issue 14: node 1's 36-byte seq-0 frame of its epoch (an empty dump: BULK_START and
    BULK_END) replayed to node 3 from node 2's address took node 3's external cache from
    100 entries to 0, and a takeover by node 3 then had none of them."""
    sim = cluster()
    sim.promote(1)
    (seq0,) = capture_all(sim, lambda d: header(d.data).type == MessageType.STATE and d.dst == 3)
    assert header(seq0.data).flags & (FLAG_BULK_START | FLAG_BULK_END) == FLAG_BULK_START | FLAG_BULK_END
    assert header(seq0.data).seq == 0
    live = primary_with_connections(sim, 100)
    assert len(keys(sim, 3)) == 100
    before = counters(sim, 3, "wrong_node", "replays", "bulk_completed")
    resyncs = sim.node(1).counters.resyncs
    sim.network.replay(seq0, to=3, as_from=2)  # "from node 2's address"
    sim.network.replay(seq0, to=3, as_from=1)  # and from node 1's own
    sim.network.replay(seq0, to=2, as_from=1)
    sim.run(1.0)
    assert keys(sim, 3) == keys(sim, 2) == {e.key for e in live}
    after = counters(sim, 3, "wrong_node", "replays", "bulk_completed")
    assert after == {"wrong_node": before["wrong_node"] + 1, "replays": before["replays"] + 1, "bulk_completed": before["bulk_completed"]}
    assert sim.node(1).counters.resyncs == resyncs and sim.role(3) is Role.BACKUP
    # node 3 takes over: every connection goes into its kernel
    sim.crash(1)
    sim.promote(3)
    assert sim.kernel_keys(3) >= {e.key for e in live}


def test_an_old_dump_replayed_resurrects_nothing_and_sweeps_nothing():
    """Issue 14: replaying an old 86-frame dump left 3000 closed connections and none of
    the live ones. The frames are refused: replays in the session that sent them, and
    stale_session once that process is gone."""
    sim = cluster(bulk_window=32, bulk_mtu=DEFAULT_MTU)  # (a dump of many frames, as in the issue)
    sim.promote(1)
    old = primary_with_connections(sim, 600)
    sim.command(1, "bulk")
    dump = capture_all(sim, of(MessageType.STATE, src=1, dst=2))
    while sim.node(1).sender.bulk_active or sim.network.in_flight:
        sim.run(0.005)
        dump += capture_all(sim, of(MessageType.STATE, src=1, dst=2))
    assert len(dump) > 10 and header(dump[0].data).flags & FLAG_BULK_START
    for entry in old:
        sim.conn_destroy(1, entry)
    live = [sim.conn_new(1, conn(10_000 + i)) for i in range(50)]
    sim.settle()
    assert keys(sim, 2) == {e.key for e in live}
    replays = sim.node(2).counters.replays
    for datagram in dump:
        sim.network.replay(datagram, to=2, as_from=1)
    sim.run(1.0)
    assert keys(sim, 2) == {e.key for e in live}
    assert sim.node(2).counters.replays == replays + len(dump)
    # the primary's process restarts: the old dump is of a dead session now
    sim.crash(1)
    sim.restart(1)
    sim.run(0.5)
    sim.promote(1)
    sim.settle()
    stale = sim.node(2).counters.stale_session
    for datagram in dump:
        sim.network.replay(datagram, to=2, as_from=1)
    sim.run(1.0)
    assert sim.node(2).counters.stale_session == stale + len(dump)
    assert keys(sim, 2) == {e.key for e in live}


def test_a_replayed_resync_request_starts_no_dump():
    """Issue 14: a backup's RESYNC_REQUEST was byte-identical forever: 20 replays of 39
    bytes made 20 full dumps."""
    sim = cluster()
    sim.promote(1)
    primary_with_connections(sim, 200)
    request = restart_backup(sim)
    primary = sim.node(1).counters
    resyncs, sent, replays = primary.resyncs, primary.bytes_sent, primary.replays
    for _ in range(20):
        sim.network.replay(request, to=1, as_from=2)
    sim.run(0.5)
    assert primary.resyncs == resyncs and primary.replays == replays + 20
    assert primary.bytes_sent - sent < 2000  # keep-alives, no dump (one would be ~9 kB)


def test_without_the_replay_window_a_replayed_resync_request_starts_a_second_dump():
    """The code mutation "no replay window" (model_tests/mutations.py) is caught."""
    from model_tests.mutations import no_replay_window

    with no_replay_window():
        sim = cluster()
        sim.promote(1)
        primary_with_connections(sim, 50)
        request = restart_backup(sim)
        resyncs = sim.node(1).counters.resyncs
        sim.network.replay(request, to=1, as_from=2)
        sim.run(0.5)
        assert sim.node(1).counters.resyncs == resyncs + 1


def test_resync_requests_replayed_every_200_ms_do_not_keep_a_restarted_backup_from_readiness():
    """Issue 14: replaying a RESYNC_REQUEST every 0.2 s kept a restarted backup with 60,000
    entries from ever becoming ready (each replay restarted the dump)."""
    sim = cluster(bulk_window=16)
    sim.promote(1)
    primary_with_connections(sim, 2000)
    request = restart_backup(sim)
    resyncs = sim.node(1).counters.resyncs
    sim.crash(2)
    sim.restart(2)  # it restarts again; the captured request (of its former process) is replayed
    ready_at = None
    for step in range(40):
        sim.network.replay(request, to=1, as_from=2)
        sim.run(0.2)
        if ready_at is None and sim.node(2).ready:
            ready_at = step * 0.2
    assert ready_at is not None and ready_at < 3.0, "the backup never became ready"
    assert sim.node(1).counters.resyncs == resyncs + 1  # its own request's dump, once
    assert sim.node(1).counters.stale_session >= 39
    assert len(keys(sim, 2)) == 2000


def test_an_old_nack_replayed_resends_nothing_and_dumps_nothing():
    """Issue 14: 5 replays of an old NACK gave 5 full dumps."""
    sim = cluster()
    sim.promote(1)
    primary_with_connections(sim, 20)
    sim.conn_new(1, conn(100))
    assert sim.network.lose(of(MessageType.STATE, src=1, dst=2))
    sim.conn_new(1, conn(101))  # the gap shows: node 2 NACKs
    nack = None
    while nack is None:
        sim.run(0.001)
        nack = sim.network.capture(of(MessageType.NACK, src=2, dst=1))
    sim.settle()
    assert conn(100).key in keys(sim, 2)
    primary = sim.node(1).counters
    before = (primary.retransmissions, primary.resyncs, primary.replays)
    for _ in range(5):
        sim.network.replay(nack, to=1, as_from=2)
    sim.run(0.5)
    assert (primary.retransmissions, primary.resyncs, primary.replays) == (before[0], before[1], before[2] + 5)


# --- a key holder -----------------------------------------------------------------------


def test_one_huge_nack_frame_of_a_key_holder_costs_a_bounded_resend():
    """Issue 14: one 65,501-byte NACK frame of 5,037 messages produced 1,506,063
    datagrams (2.19 GB) in one call, 2.36 s of CPU."""
    sim = cluster(resend_queue=4096)
    sim.promote(1)
    sim.settle()
    sim.network.link_down(1, 3)  # node 3 acknowledges nothing: the frames stay queued for it
    for i in range(2000):
        sim.conn_new(1, conn(i))
    sim.run(0.1)
    primary = sim.node(1)
    assert len(primary.sender.queue) == 2000
    low, high = primary.sender.queue.first, primary.sender.newest_seq
    nacks = tuple(Nack(low, high) for _ in range(5000))
    huge = as_key_holder(sim, 2, Frame(MessageType.NACK, 2, primary.own.term, 0, nacks, dst=1))
    assert len(huge) > 65000
    sent, retransmissions = primary.counters.bytes_sent, primary.counters.retransmissions
    started = time.process_time()
    sim.network.replay(Datagram(0, 0, 2, 1, huge), to=1, as_from=2)
    sim.run(0.002)
    cpu = time.process_time() - started
    budget = 2 * primary.params.bulk_window
    assert primary.counters.retransmissions - retransmissions <= budget
    assert primary.counters.bytes_sent - sent <= budget * primary.params.mtu
    assert primary.counters.retransmit_budget_hits > 0
    assert cpu < 1.0
    logs = [o.message for _, n, o in sim.log if n == 1 and isinstance(o, Log) and "retransmission budget" in o.message]
    assert len(logs) == 1


@pytest.mark.parametrize("term", [2**32 - 1, MAX_TERM + 1])
def test_a_hello_claiming_the_last_terms_is_refused(term):
    """Issue 14: a HELLO claiming term 2**32-1 fenced the primary, was persisted, and
    `notify primary` then failed ("does not fit 32 bits") leaving the role PRIMARY; the
    poisoned epoch survived a restart."""
    sim = cluster(size=2)
    sim.promote(1)
    sim.settle()
    claim = as_key_holder(sim, 2, Frame(MessageType.HELLO, 2, term, 0, (Hello(term, 2, live=True),), dst=1))
    news = as_key_holder(sim, 2, Frame(MessageType.HELLO, 2, 0, 0, (Hello(term, 2, live=True),), dst=1))
    for data in (claim, news):
        sim.network.replay(Datagram(0, 0, 2, 1, data), to=1, as_from=2)
    sim.run(0.5)
    assert sim.role(1) is Role.PRIMARY and sim.node(1).counters.epoch_overflow == 2
    assert sim.hosts[1].persisted == Epoch(1, 1)
    sim.demote(1)
    sim.promote(1)  # the HA manager can still move it: the next term fits
    assert sim.node(1).own == Epoch(2, 1)
    sim.crash(1)
    sim.restart(1)  # nothing poisoned survives
    assert sim.node(1).newest == Epoch(2, 1)


# --- no key -------------------------------------------------------------------------------


@pytest.mark.parametrize("inject", [False, True])
def test_a_forged_state_frame_from_a_spoofed_address_fences_nothing_and_injects_nothing(inject):
    """Issue 14: one forged 61-byte STATE frame from a spoofed peer address fenced the live
    primary and, with inject_on_arrival, put the attacker's entry into the kernel."""
    sim = cluster(size=2, inject_on_arrival=inject)
    sim.promote(1)
    primary_with_connections(sim, 10)
    hole = conn(666)
    forged = Frame(MessageType.STATE, 1, 99, 0, (Event(EventKind.NEW, hole),), session=0x0BAD, counter=1)
    for data in (encode_frame(forged), encode_frame(forged, WRONG)):  # no key, a wrong key
        sim.network.replay(Datagram(0, 0, 1, 2, data), to=2, as_from=1)
        sim.network.replay(Datagram(0, 0, 2, 1, data), to=1, as_from=2)
    sim.run(0.5)
    assert sim.role(1) is Role.PRIMARY and sim.node(2).newest == Epoch(1, 1)
    assert hole.key not in keys(sim, 2) and hole.key not in sim.kernel_keys(2)
    assert sim.node(2).counters.auth_failures == 2 and sim.node(1).counters.auth_failures == 2


def test_5000_forged_frames_make_5000_counts_and_a_line_or_two():
    sim = cluster(size=2)
    sim.promote(1)
    sim.settle()
    forged = encode_frame(Frame(MessageType.ALIVE, 1, 1, 0, (), session=7, counter=1), WRONG)
    lines = len(sim.log)
    for _ in range(5000):
        sim.network.replay(Datagram(0, 0, 1, 2, forged), to=2, as_from=1)
    sim.run(0.1)
    assert sim.node(2).counters.auth_failures == 5000
    logged = [o for _, n, o in sim.log[lines:] if n == 2 and isinstance(o, Log) and "rejected" in o.message]
    assert 1 <= len(logged) <= 2 and "node 1" in logged[0].message
