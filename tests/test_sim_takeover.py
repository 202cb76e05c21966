"""A node that starts or returns as backup keeps nothing stale into its next term as primary.

A former primary that restarts keeps its kernel entries (the kernel outlives the
process): connections the new primary saw end while it was away are zombies there,
at full timeouts. When the primary's first complete dump arrives, the node holds its
kernel to it (``VouchKernel``): confirmed entries take the primary's state, the
others are removed (or shortened: ``unconfirmed = "shorten"``). Through the simulation.
"""

from __future__ import annotations

import ipaddress

import pytest

from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams, Unconfirmed
from snep.fsm.role import Role
from snep.lab.sim import Simulation, conn


def plain(entries) -> dict:
    """Entries by key without the timeout (it counts down by itself)."""
    return {e.key: e._replace(timeout=0) for e in entries}


def cluster(**params) -> Simulation:
    flt = params.pop("filter", None)
    params = {
        "resend_queue": 64,
        "peer_dead_timeout": 3.0,
        "alive_interval": 0.5,
        **params,
    }
    sim = Simulation(2, SyncParams(**params), filter=flt)
    sim.start()
    sim.run(0.05)
    sim.promote(1)
    sim.settle()
    return sim


def away_and_back(sim: Simulation, reset: int = 3) -> set:
    """Node 1 (primary, 20 connections) dies; node 2 takes over and sees ``reset`` of
    them reset and 5 new ones; node 1 comes back as backup (keepalived: backup, a
    no-op). The keys of the reset connections."""
    for i in range(20):
        sim.conn_new(1, conn(i))
    sim.settle()
    sim.crash(1)
    sim.promote(2)
    for i in range(reset):
        sim.conn_destroy(2, conn(i))
    for i in range(100, 105):
        sim.conn_new(2, conn(i))
    sim.settle()
    assert {conn(i).key for i in range(reset)} <= sim.kernel_keys(
        1
    )  # what the old code kept
    sim.restart(1)
    sim.demote(1)  # keepalived repeats itself: already a backup
    sim.settle()
    assert sim.roles() == {1: "BACKUP", 2: "PRIMARY"}
    return {conn(i).key for i in range(reset)}


@pytest.mark.parametrize("inject", [False, True], ids=["commit", "inject_on_arrival"])
def test_connections_reset_while_away_are_no_zombies_in_the_next_term(inject):
    sim = cluster(inject_on_arrival=inject)
    zombies = away_and_back(sim)
    assert not sim.kernel_keys(1) & zombies
    survivors = sim.kernel_keys(1)
    # what it kept has the primary's state
    primary = plain(sim.kernel(2).dump())
    assert all(
        entry == primary[key] for key, entry in plain(sim.kernel(1).dump()).items()
    )
    assert sim.node(1).counters.vouch_unconfirmed == 3
    # node 2 fails; node 1 takes over: nothing of the zombies in its kernel or its
    # internal cache, so nothing of them for the backup that returns
    sim.crash(2)
    sim.promote(1)
    assert sim.role(1) is Role.PRIMARY
    assert not sim.kernel_keys(1) & zombies
    assert not {e.key for e in sim.node(1).internal} & zombies
    assert sim.kernel_keys(1) >= survivors
    sim.restart(2)
    sim.settle()
    assert not sim.external_keys(2) & zombies
    assert plain(sim.node(2).external) == plain(sim.kernel(1).dump())


def test_shorten_leaves_the_unconfirmed_entries_to_expire():
    sim = cluster(unconfirmed=Unconfirmed.SHORTEN)
    zombies = away_and_back(sim)
    timeouts = {e.key: e.timeout for e in sim.kernel(1).dump()}
    assert zombies <= set(timeouts)
    assert all(timeouts[key] <= 60 for key in zombies)
    confirmed = set(timeouts) - zombies
    assert confirmed and all(
        timeouts[key] > 60 for key in confirmed
    )  # the primary's state
    sim.run(65.0)
    assert not sim.kernel_keys(1) & zombies  # expired
    assert sim.kernel_keys(1) >= confirmed


def test_entries_the_node_can_vouch_for_stay():
    """Born in its kernel since it became backup (live traffic), or kept out by the
    filter (the primary never sends them, so its dump says nothing of them): kept."""
    local = conn(7000)
    sim = cluster(
        filter=Filter.build(ignore=[str(ipaddress.ip_address(local.orig.src))])
    )
    for i in range(10):
        sim.conn_new(1, conn(i))
    sim.conn_new(1, local)
    sim.settle()
    assert local.key not in sim.external_keys(2)
    sim.crash(1)
    sim.promote(2)
    sim.conn_destroy(2, conn(0))
    sim.settle()
    sim.restart(1)
    sim.conn_new(1, conn(5000))  # before the primary's dump is complete
    sim.settle()
    keys = sim.kernel_keys(1)
    assert conn(0).key not in keys
    assert {local.key, conn(5000).key} <= keys


def test_a_swept_entry_leaves_an_injecting_backups_kernel():
    """inject_on_arrival: what a dump's sweep removes from the external cache leaves the
    kernel too. The outage outlasts the resend queue, so only a dump repairs it."""
    sim = cluster(resend_queue=16, inject_on_arrival=True)
    for i in range(20):
        sim.conn_new(1, conn(i))
    sim.settle()
    assert sim.kernel_keys(2) == sim.external_keys(2) == sim.kernel_keys(1)
    sim.network.link_down(1, 2)
    for i in range(20):
        sim.conn_destroy(1, conn(i))
    for i in range(100, 140):
        sim.conn_new(1, conn(i))
    sim.run(5.0)
    sim.network.link_up(1, 2)
    sim.settle()
    assert sim.node(1).counters.resync_fallbacks >= 1
    assert sim.external_keys(2) == sim.kernel_keys(1)
    assert sim.kernel_keys(2) == sim.external_keys(2)  # no stale entry in the kernel


def test_a_warm_promotion_writes_only_what_the_kernel_lacks():
    """inject_on_arrival: the backup's kernel already holds the states, so promotion
    writes nothing before it is primary; the dump that loads its internal cache shows
    what the kernel lost or refused, and only that is written."""
    sim = cluster(inject_on_arrival=True)
    for i in range(20):
        sim.conn_new(1, conn(i))
    sim.settle()
    assert sim.kernel_keys(2) == sim.kernel_keys(1)
    sim.conn_destroy(2, conn(3))  # lost from the backup's kernel (refused, expired ...)
    sim.crash(1)
    written = sim.driver(2).counters.entries_written
    sim.promote(2)
    assert sim.role(2) is Role.PRIMARY
    assert sim.driver(2).counters.entries_written - written == 1
    assert conn(3).key in sim.kernel_keys(2) and len(sim.node(2).internal) == 20


@pytest.mark.parametrize("inject", [False, True], ids=["commit", "inject_on_arrival"])
def test_a_flushed_backup_holds_its_kernel_to_the_refilling_dump(inject):
    """`snep ctl commit` then `snep ctl flush` on a backup: the kernel keeps what the commit
    wrote while the caches forget it. Connections that ended on the primary while the
    backup could not hear it must not survive the dump that refills the caches (found by
    the model tests: KernelVouched, three nodes, incremental)."""
    sim = cluster(resend_queue=16, inject_on_arrival=inject)
    for i in range(20):
        sim.conn_new(1, conn(i))
    sim.settle()
    sim.command(2, "commit")
    sim.settle()
    assert sim.kernel_keys(2) == sim.kernel_keys(1)
    sim.network.link_down(1, 2)
    for i in range(5):
        sim.conn_destroy(1, conn(i))  # the backup never hears of these
    sim.command(2, "flush")
    sim.run(5.0)
    sim.network.link_up(1, 2)
    sim.settle()
    assert sim.role(2) is Role.BACKUP and sim.external_keys(2) == sim.kernel_keys(1)
    assert not sim.kernel_keys(2) & {conn(i).key for i in range(5)}  # no zombie
    assert sim.kernel_keys(2) == sim.kernel_keys(1)
