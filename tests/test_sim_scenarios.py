"""The five failure scenarios (docs/architecture.md), and more, through the deterministic simulation.

Each test checks the outcome: which connections each node's kernel and caches hold
afterwards, that nothing acknowledged is lost, and that stale primaries are fenced.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from snep.entry import Entry, TcpInfo, TcpState
from snep.fsm.effects import Epoch, RoleChanged
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.lab.sim import Simulation, conn
from snep.level import Level
from snep.wire.codec import decode_frame
from snep.wire.messages import MessageType


def plain(entries) -> dict:
    """Entries by key without the timeout (it counts down by itself)."""
    return {e.key: e._replace(timeout=0) for e in entries}


def cluster(size=2, **kw) -> Simulation:
    kw.setdefault("params", SyncParams(resend_queue=64, peer_dead_timeout=3.0, alive_interval=0.5))
    sim = Simulation(size, **kw)
    sim.start()
    sim.run(0.05)
    sim.promote(1)
    sim.settle()
    assert sim.roles() == {n: ("PRIMARY" if n == 1 else "BACKUP") for n in range(1, size + 1)}
    return sim


def traffic(sim: Simulation, node: int, start: int, count: int) -> list[Entry]:
    return [sim.conn_new(node, conn(i)) for i in range(start, start + count)]


def assert_in_sync(sim: Simulation, primary: int) -> None:
    table = plain(sim.kernel(primary).dump())
    assert table, "the primary has connections"
    for n in sim.hosts:
        if n != primary and sim.hosts[n].up:
            assert plain(sim.node(n).external) == table, f"node {n} differs from primary {primary}"
            assert sim.role(n) is Role.BACKUP


WARM_OR_COLD = pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])


def warm_or_cold(warm: bool) -> SyncParams:
    """The scenarios' parameters, the backup's kernel written as states arrive (warm, the
    default) or at the takeover (cold)."""
    return SyncParams(resend_queue=64, peer_dead_timeout=3.0, alive_interval=0.5, inject_on_arrival=warm)


@WARM_OR_COLD
def test_scenario_1_primary_fails_backup_takes_over(warm):
    sim = cluster(params=warm_or_cold(warm))
    traffic(sim, 1, 0, 40)
    sim.run(0.2)  # acked
    acked = sim.external_keys(2)
    assert acked == sim.kernel_keys(1) and sim.node(1).sender.in_flight() == 0
    sim.crash(1)
    sim.run(0.5)
    # warm: the backup's kernel had them before the takeover; cold: it had none
    assert sim.kernel_keys(2) == (acked if warm else set())
    sim.promote(2)
    assert sim.kernel_keys(2) >= acked  # committed: nothing acknowledged is lost
    assert sim.node(2).newest == Epoch(2, 2) and sim.hosts[2].persisted == Epoch(2, 2)
    # it carries on as primary: new connections are its own
    sim.conn_new(2, conn(500))
    assert conn(500).key in {e.key for e in sim.node(2).internal}
    sim.settle()
    assert sim.primaries() == [2]


def test_scenario_1_mid_stream_with_loss_loses_nothing_acknowledged():
    sim = cluster(loss=0.2, seed=3)
    for i in range(60):
        sim.conn_new(1, conn(i))
        sim.run(0.003)
    # whatever the backup applied (and so may have acknowledged) must survive
    acked = sim.external_keys(2)
    assert acked
    sim.crash(1)
    sim.promote(2)
    assert sim.kernel_keys(2) >= acked


def test_scenario_2_backup_fails_and_resynchronizes():
    sim = cluster()
    entries = traffic(sim, 1, 0, 30)
    sim.settle()
    sim.crash(2)
    for entry in entries[:10]:
        sim.conn_destroy(1, entry)
    traffic(sim, 1, 100, 20)
    sim.run(5.0)
    assert not sim.node(1).alive[2]
    sim.restart(2)
    assert sim.role(2) is Role.SYNCING and sim.external_keys(2) == set()
    sim.settle()
    assert sim.role(2) is Role.BACKUP
    assert_in_sync(sim, 1)
    assert len(sim.external_keys(2)) == 40


def test_scenario_3_backup_dead_for_good_primary_memory_stays_bounded():
    sim = cluster(params=SyncParams(resend_queue=32, peer_dead_timeout=2.0, alive_interval=0.5))
    traffic(sim, 1, 0, 5)
    sim.settle()
    sim.crash(2)
    sender = sim.node(1).sender
    longest = 0
    for i in range(5, 400):
        sim.conn_new(1, conn(i))
        longest = max(longest, len(sender.queue))
        if i % 50 == 0:
            sim.run(0.5)
    assert longest <= 32
    assert sim.role(1) is Role.PRIMARY
    assert sim.node(1).counters.state_frames_sent >= 400
    sim.run(3.0)
    assert not sim.node(1).alive[2]
    assert len(sender.queue) <= 32


def test_scenario_4_former_primary_returns_as_backup():
    sim = cluster()
    old = traffic(sim, 1, 0, 20)
    sim.settle()
    sim.crash(1)
    sim.promote(2)
    for entry in old[:5]:
        sim.conn_destroy(2, entry)  # gone on the new primary ...
    traffic(sim, 2, 100, 10)
    sim.settle()
    assert sim.kernel_keys(1) >= {e.key for e in old}  # ... still in the old one's kernel
    sim.restart(1)
    sim.settle()
    assert sim.roles() == {1: "BACKUP", 2: "PRIMARY"}
    assert sim.node(1).newest == Epoch(2, 2)
    # its stale kernel entries never reached the new primary
    assert not sim.kernel_keys(2) & {e.key for e in old[:5]}
    assert_in_sync(sim, 2)


@WARM_OR_COLD
def test_scenario_4_stale_primary_across_a_partition_is_fenced(warm):
    sim = cluster(params=warm_or_cold(warm))
    traffic(sim, 1, 0, 10)
    sim.settle()
    sim.network.link_down(1, 2)
    sim.run(4.0)  # no ALIVE: the HA manager promotes 2 as well (split brain)
    sim.promote(2)
    assert sorted(sim.primaries()) == [1, 2]
    stale = traffic(sim, 1, 200, 5)  # the stale primary goes on
    sim.conn_destroy(2, conn(0))
    traffic(sim, 2, 300, 5)
    sim.network.link_up(1, 2)
    sim.settle()
    assert sim.primaries() == [2]
    assert sim.role(1) is Role.BACKUP
    assert sim.node(1).counters.fenced == 1
    assert any(o.trigger == "fenced" for o in sim.events_of(1, RoleChanged))
    assert sim.node(2).counters.stale_epoch_drops > 0  # its frames were refused
    assert not sim.kernel_keys(2) & {e.key for e in stale}  # never applied
    assert not {e.key for e in sim.node(2).external} & {e.key for e in stale}
    # its kernel is held to the new primary's dump: what that confirms has its state,
    # the rest (its own stale connections, the one the new primary destroyed) is gone;
    # warm, it also holds the new primary's connections (cold: only in its external cache)
    confirmed = sim.kernel_keys(2) - (set() if warm else {conn(i).key for i in range(300, 305)})
    assert sim.kernel_keys(1) == confirmed
    assert plain(sim.kernel(1).dump()) == {k: v for k, v in plain(sim.kernel(2).dump()).items() if k in confirmed}
    assert_in_sync(sim, 2)


def test_scenario_5a_short_link_outage_is_repaired_by_retransmission():
    sim = cluster(params=SyncParams(resend_queue=64, peer_dead_timeout=3.0, alive_interval=0.5))
    traffic(sim, 1, 0, 10)
    sim.settle()
    sim.network.link_down(1, 2)
    traffic(sim, 1, 10, 10)
    sim.conn_destroy(1, conn(0))
    sim.network.link_up(1, 2)
    sim.conn_new(1, conn(99))  # arrives beyond the gap: detected at once
    sim.settle()
    counters = sim.node(1).counters
    assert sim.node(2).counters.nacks_sent >= 1
    assert counters.retransmissions >= 11 and counters.resync_fallbacks == 0
    assert_in_sync(sim, 1)


def test_scenario_5b_long_outage_beyond_the_queue_needs_a_full_resync():
    sim = cluster(params=SyncParams(resend_queue=16, peer_dead_timeout=3.0, alive_interval=0.5))
    entries = traffic(sim, 1, 0, 10)
    sim.settle()
    sim.network.link_down(1, 2)
    traffic(sim, 1, 10, 40)
    for entry in entries[:4]:
        sim.conn_destroy(1, entry)
    sim.run(5.0)
    sim.network.link_up(1, 2)
    sim.settle()
    assert sim.node(1).counters.resync_fallbacks >= 1
    assert sim.node(2).counters.bulk_completed >= 2
    assert_in_sync(sim, 1)
    assert not sim.external_keys(2) & {e.key for e in entries[:4]}  # swept


def test_three_nodes_two_failures():
    sim = cluster(3)
    traffic(sim, 1, 0, 20)
    sim.settle()
    assert_in_sync(sim, 1)
    sim.crash(1)
    sim.promote(2)
    sim.settle()
    assert sim.roles() == {1: "DOWN", 2: "PRIMARY", 3: "BACKUP"}
    assert sim.kernel_keys(2) >= {conn(i).key for i in range(20)}
    traffic(sim, 2, 100, 10)
    sim.conn_destroy(2, conn(1))
    sim.settle()
    assert_in_sync(sim, 2)
    acked = sim.external_keys(3)
    sim.crash(2)
    sim.promote(3)
    assert sim.kernel_keys(3) >= acked
    traffic(sim, 3, 200, 5)
    sim.restart(1)
    sim.restart(2)
    sim.settle()
    assert sim.roles() == {1: "BACKUP", 2: "BACKUP", 3: "PRIMARY"}
    assert sim.node(1).newest == sim.node(2).newest == Epoch(3, 3)
    assert_in_sync(sim, 3)
    assert conn(1).key not in sim.kernel_keys(3)


def old_primary_told_only_node_3(sim: Simulation) -> set:
    """Node 1 (epoch 1.1) tells node 3 of five connections node 2 never gets, then
    fails; node 2 takes over (2.2). The five's keys."""
    traffic(sim, 1, 0, 10)
    sim.settle()
    sim.network.link_down(1, 2)
    only_3 = {e.key for e in traffic(sim, 1, 10, 5)}
    sim.run(0.2)
    assert only_3 <= sim.external_keys(3) and not only_3 & sim.external_keys(2)
    assert {sim.node(3).external.owner(k) for k in sim.external_keys(3)} == {Epoch(1, 1)}
    sim.crash(1)
    sim.promote(2)
    sim.settle()
    assert sim.roles() == {1: "DOWN", 2: "PRIMARY", 3: "BACKUP"}
    return only_3


def test_three_nodes_a_new_primarys_dump_sweeps_what_only_the_old_primary_told():
    """Issue 14, item 4: the new primary's dump does not carry what only node 3 got
    from node 1. Those entries are an older epoch's, so the dump sweeps them though
    another node sent them: node 3 holds what the new primary holds, and its own
    takeover commits none of them."""
    sim = cluster(3)
    only_3 = old_primary_told_only_node_3(sim)
    assert_in_sync(sim, 2)
    assert not only_3 & sim.external_keys(3)
    assert {sim.node(3).external.owner(k) for k in sim.external_keys(3)} == {Epoch(2, 2)}
    sim.crash(2)
    sim.promote(3)
    assert sim.kernel_keys(3) == {conn(i).key for i in range(10)}


def test_the_mutation_sweep_own_entries_only_is_caught():
    """The code mutation "sweep own entries only" (model_tests/mutations.py): node 3
    keeps node 1's leftovers and commits them when it takes over."""
    from model_tests.mutations import sweep_own_entries_only

    with sweep_own_entries_only():
        sim = cluster(3)
        only_3 = old_primary_told_only_node_3(sim)
        sim.crash(2)
        sim.promote(3)
    assert only_3 <= sim.kernel_keys(3)


@pytest.mark.parametrize("level", list(Level))
def test_lossy_duplicating_reordering_network_converges(level):
    params = SyncParams(resend_queue=128, level=level, incremental_period=0.2, peer_dead_timeout=3.0, alive_interval=0.5)
    sim = cluster(3, params=params, seed=13, loss=0.15, duplication=0.1, jitter=0.02)  # (a seed that loses STATE frames at every level)
    live: list[Entry] = []
    rng = sim.rng
    for i in range(150):
        roll = rng.random()
        if live and roll < 0.2:
            sim.conn_destroy(1, live.pop(rng.randrange(len(live))))
        elif live and roll < 0.5:
            entry = live[rng.randrange(len(live))]
            sim.conn_update(1, entry._replace(protoinfo=TcpInfo(TcpState.FIN_WAIT), mark=i))
        else:
            live.append(sim.conn_new(1, conn(i)))
        sim.run(0.01)
    sim.network.loss = sim.network.duplication = 0.0
    sim.settle()
    counters = [sim.node(n).counters for n in (2, 3)]
    assert sum(c.replays for c in counters) > 0  # the network's copies: the channel drops them
    assert sum(c.nacks_sent for c in counters) > 0
    if level is Level.WEAK:
        table = sim.kernel_keys(1)
        assert sim.external_keys(2) == sim.external_keys(3) == table
    else:
        assert_in_sync(sim, 1)


def test_partitioned_backup_does_not_block_the_others_and_catches_up_after_heal():
    sim = cluster(3, params=SyncParams(resend_queue=16, peer_dead_timeout=2.0, alive_interval=0.5))
    sim.network.link_down(1, 3)
    traffic(sim, 1, 0, 30)
    sim.run(5.0)
    assert plain(sim.node(2).external) == plain(sim.kernel(1).dump())
    assert not sim.node(1).alive[3] and sim.node(1).alive[2]
    assert len(sim.node(1).sender.queue) <= 16
    sim.network.link_up(1, 3)
    sim.settle()
    assert_in_sync(sim, 1)


# --- regressions found by tests/test_sim_random.py -----------------------------------


@pytest.mark.parametrize("lose_hellos", [False, True])
def test_regression_primary_of_an_overtaken_epoch_is_told_and_takes_a_term_above(lose_hellos):
    """Node 3 took epoch (2,3) and crashed before node 1 heard of it; node 1 was then
    promoted into (2,1), older. The restarted nodes know (2,3) and drop node 1's
    frames: they must tell it, or it streams into the void forever. Nobody vouches
    that a primary of (2,3) lives (both restarted), so node 1 is not deposed: it
    takes a term above, (3,1), and the others follow it."""
    sim = cluster(3)
    sim.demote(1)
    sim.crash(2)
    sim.promote(3)
    sim.crash(3)
    sim.network.link_down(3, 1)
    sim.promote(1)
    assert sim.node(1).own == Epoch(2, 1) and sim.hosts[3].persisted == Epoch(2, 3)
    sim.network.link_up(3, 1)
    sim.restart(2)
    sim.restart(3)
    if lose_hellos:  # then only the answer to its stale frames can tell node 1
        while sim.network.lose(lambda d: d.dst == 1 and decode_frame(d.data).type is MessageType.HELLO):
            pass
    sim.run(3.0)
    one = sim.node(1)
    assert (one.counters.retakes, one.counters.fenced) == (1, 0)
    assert one.own == Epoch(3, 1) and sim.primaries() == [1]
    traffic(sim, 1, 0, 3)
    sim.settle()
    assert_in_sync(sim, 1)


def test_regression_restarted_backup_stale_ack_does_not_block_the_dump():
    """Node 2 acked the first frames, crashed and restarted (expecting seq 0): its old
    acked position must not hold the dump's flight window shut."""
    sim = cluster(3, params=SyncParams(resend_queue=8, bulk_window=4, peer_dead_timeout=1.5, alive_interval=0.3))
    traffic(sim, 1, 0, 4)
    sim.crash(2)
    sim.restart(2)
    sim.settle()
    assert_in_sync(sim, 1)


@pytest.mark.parametrize("where", [1, 2])
def test_operator_flush_refills_the_caches(where):
    sim = cluster()
    traffic(sim, 1, 0, 10)
    sim.settle()
    sim.command(where, "flush")
    sim.settle()
    assert len(sim.node(1).internal) == 10
    assert_in_sync(sim, 1)
    sim.conn_destroy(1, conn(0))  # and the primary's dumps still know everything
    sim.command(1, "bulk")
    sim.settle()
    assert_in_sync(sim, 1)


def test_authenticated_cluster_and_a_node_with_the_wrong_key():
    from snep.wire.auth import Key, Keyring

    good = Keyring([Key(1, b"s" * 32)])
    sim = cluster(3, keyring=good)
    sim.crash(3)
    sim.keyring = Keyring([Key(1, b"x" * 32)])  # node 3 comes back with the wrong key
    sim.restart(3)
    traffic(sim, 1, 0, 10)
    sim.run(2.0)
    assert plain(sim.node(2).external) == plain(sim.kernel(1).dump())
    assert sim.external_keys(3) == set() and sim.role(3) is Role.SYNCING
    assert sim.node(3).counters.auth_failures > 0 and sim.node(1).counters.auth_failures > 0


def test_ipv6_and_other_protocols_sync():
    from snep.entry import Proto, make_entry

    sim = cluster()
    entries = [
        make_entry("fd00::1", "2001:db8::80", Proto.TCP, 40000, 443),
        make_entry("fd00::2", "2001:db8::53", Proto.UDP, 5353, 53),
        make_entry("10.0.0.9", "192.0.2.1", Proto.ICMP, 7, 8 << 8),
        make_entry("fd00::3", "2001:db8::1", Proto.ICMPV6, 9, 128 << 8, zone=3, mark=0x10),
    ]
    for entry in entries:
        sim.conn_new(1, entry)
    sim.settle()
    assert_in_sync(sim, 1)
    sim.crash(1)
    sim.promote(2)
    assert sim.kernel_keys(2) == {e.key for e in entries}


@pytest.mark.parametrize("bulk_mtu", [None, 1472], ids=["bulk_mtu", "mtu"])
@pytest.mark.parametrize("gap", [0.3, 2.5])
def test_regression_backup_started_after_a_promotion_gets_one_dump(gap, bulk_mtu):
    """A backup starts while (0.3 s) or after (2.5 s: its peer already dead) the new
    primary dumps; datagrams are reordered. Its late NACKs (sent before it saw the
    dump's BULK_START, or overtaken by newer ones) used to restart the dump each time:
    tens of dumps, and it never got in sync. One dump per need: the promotion's and the
    backup's request (or one, when the backup's request reaches the primary while the
    promotion's dump still runs: that dump serves it)."""
    n = 2000
    params = SyncParams(resend_queue=4096, bulk_window=64, peer_dead_timeout=2.0, alive_interval=0.5, ack_delay=0.02)
    if bulk_mtu is not None:
        params = replace(params, bulk_mtu=bulk_mtu)
    sim = Simulation(2, params=params, latency=0.001, jitter=0.01)
    for i in range(n):
        sim.kernel(1).conn_new(conn(i))
    sim.start(1)
    sim.run(0.05)
    sim.promote(1)
    sim.run(gap)
    sim.start(2)
    sim.settle(limit=30)
    counters = sim.node(1).counters
    assert counters.resyncs in (1, 2) and counters.resync_fallbacks == 0
    assert counters.bulk_messages_sent <= 2 * n
    assert_in_sync(sim, 1)


def test_flush_on_a_backup_in_the_middle_of_its_dump_still_ends_in_sync():
    """The flushed backup's new request is not a restart (the running dump serves it),
    but what that dump sent before the flush is gone: its end must not count, and the
    backup gets a new dump after it."""
    sim = cluster(params=SyncParams(resend_queue=256, bulk_window=4, mtu=300, bulk_mtu=300, peer_dead_timeout=3.0, alive_interval=0.5))
    traffic(sim, 1, 0, 300)
    sim.settle()
    sim.command(2, "request-resync")
    sim.run(0.02)
    assert sim.node(2).receivers[1].marking  # the dump is under way
    sim.command(2, "flush")
    sim.settle()
    assert_in_sync(sim, 1)


def test_regression_a_live_primary_is_never_deposed_by_a_node_that_restarted_with_a_newer_epoch():
    """Found by TLC in the spec before epochs were split into claims and news:
    node 2 is promoted (epoch 1.2) and dies before node 1 hears of it; node 1 is
    promoted (1.1: it ties on the term and loses on the node id); node 2 restarts
    with its persisted 1.2 and says so. The only live primary used to step down, and
    both nodes then stayed SYNCING. Now node 1 takes a term above (2.1) and node 2
    follows it."""
    params = SyncParams(resend_queue=64, peer_dead_timeout=3.0, alive_interval=0.5)
    sim = Simulation(2, params=params)
    sim.start()
    sim.run(0.05)
    sim.network.link_down(1, 2)
    sim.promote(2)
    assert sim.hosts[2].persisted == Epoch(1, 2)
    sim.crash(2)
    sim.network.link_up(1, 2)
    sim.promote(1)
    assert sim.node(1).own == Epoch(1, 1)
    entries = traffic(sim, 1, 0, 5)
    sim.run(1.0)
    sim.start(2)
    sim.settle()
    assert sim.primaries() == [1]
    assert sim.node(1).own == Epoch(2, 1) == sim.node(2).newest
    assert sim.node(1).counters.retakes == 1 and sim.node(1).counters.fenced == 0
    assert sim.roles()[2] == "BACKUP"
    assert sim.external_keys(2) == {e.key for e in entries}


def test_keepalived_master_fenced_by_another_primary_takes_over_again_once_it_is_gone():
    """Split VRRP: both nodes are masters and primaries (1.1, then 2.2). On heal the
    older one is fenced by the newer one's claim; keepalived then sends node 2 to
    backup (priorities), and keeps node 1 master without a new notify. Node 1,
    master and hearing of no primary, takes over again (reassert): one primary."""
    params = SyncParams(resend_queue=64, peer_dead_timeout=2.0, alive_interval=0.5)
    sim = cluster(params=params)
    entries = traffic(sim, 1, 0, 3)
    sim.settle()
    sim.network.link_down(1, 2)
    sim.promote(2)  # (split brain: node 2's keepalived hears no master)
    sim.run(1.0)
    sim.network.link_up(1, 2)
    sim.run(1.0)
    assert sim.roles()[2] == "PRIMARY" and sim.roles()[1] in ("SYNCING", "BACKUP")
    assert sim.node(1).counters.fenced == 1
    sim.demote(2)  # keepalived resolves the two masters: node 1 keeps the VIPs
    sim.run(params.peer_dead_timeout + 1.0)
    assert sim.primaries() == [1] and sim.node(1).counters.reasserts == 1
    sim.settle()
    assert sim.roles() == {1: "PRIMARY", 2: "BACKUP"}
    assert {e.key for e in entries} <= sim.external_keys(2)


@pytest.mark.parametrize("path", ["carries large frames", "drops fragments", "loses 30%"])
def test_a_resync_in_bulk_mtu_frames_completes_whatever_the_path_does_with_them(path):
    """sync.bulk_mtu: a dump goes in frames far above the link's MTU (the kernel
    fragments them). Over a path that drops every fragmented datagram (a black hole
    for them) or loses some, the first lost one makes the dump start again in
    frames of the stream's MTU, and the resync still completes; over a clean path
    it stays in large frames (a tenth of the frames). Over a lossy path that carries
    them, lost ones are resent as any other."""
    params = SyncParams(resend_queue=256, peer_dead_timeout=3.0, alive_interval=0.5, bulk_mtu=16384)
    sim = cluster(params=params, seed=7)
    traffic(sim, 1, 0, 2000)
    sim.settle()
    if path == "drops fragments":
        sim.network.max_datagram = params.mtu
    elif path == "loses 30%":
        sim.network.loss = 0.3
    sent = sim.node(1).counters.state_frames_sent
    sim.command(2, "flush")  # (a flush asks for a resync)
    sim.settle()
    sim.network.loss = 0.0
    sim.settle()
    assert_in_sync(sim, 1)
    counters = sim.node(1).counters
    frames = counters.state_frames_sent - sent
    if path == "carries large frames":
        assert counters.bulk_mtu_fallbacks == 0 and frames <= 2000 * 48 // 16000 + 2
    elif path == "drops fragments":
        assert counters.bulk_mtu_fallbacks == 1 and counters.resyncs >= 2
        assert sim.node(1).sender.dump_mtu == params.mtu
    else:  # (lost frames are resent, large or not; only a path that never carried one falls back)
        assert counters.retransmissions > 0
