"""Failing scenarios the model tests found, kept as explicit replays (each a short,
readable story; every step is checked against the model as in the random runs)."""

from __future__ import annotations

from model_tests.harness import Cluster, Config


def drain(c: Cluster, limit: int = 60) -> None:
    """Deliver everything in flight, oldest first, one checked step each."""
    for _ in range(limit):
        flight = sorted(c.sim.network.in_flight)
        if not flight:
            return
        c.deliver(flight[0])


def test_primary_back_from_fault_expires_its_shortened_entries_to_the_backups() -> None:
    """Weak level: a primary goes FAULT (its kernel timeouts are shortened), back to
    backup and is elected again, and its entries expire while it is primary: the DESTROY must reach the backup
    (found when kernel expiry did not run during the convergence phase)."""
    c = Cluster(Config(size=2, level="weak"))
    c.promote(1)
    c.traffic(1, "c0", "new")
    c.fault(1)
    c.demote(1)  # keepalived: FAULT -> BACKUP -> MASTER
    c.promote(1)
    drain(c)
    c.advance(4.5)  # past the shortened timeout: ConnDestroy + Notify on the primary
    assert c.state.kernel[1]["c0"] == 0
    drain(c)
    c.converge()
    assert c.sim.external_keys(2) == set() and c.sim.roles()[2] == "BACKUP"


def test_backup_flushed_by_the_operator_owes_nothing_and_resyncs() -> None:
    """An operator flush empties a backup's caches (outside the spec): what it had
    acknowledged is no longer owed, its promotion loses nothing it still claims, and a
    resync request brings it back (found as a false NoAckedStateLost)."""
    c = Cluster(Config(size=3, level="strong"))
    c.promote(3)
    for conn in ("c0", "c2"):
        c.traffic(3, conn, "new")
    drain(c)
    c.advance(0.06)
    for n in (1, 2):
        c.timer(n)
    drain(c)
    assert c.state.owed[1], "node 1's acknowledgement of the primary's connections reached it"
    c.command(1, "flush")
    assert not c.state.owed[1] and c.state.role[1] == "SYNCING", "flushed: owes nothing, not ready"
    c.crash(3)
    c.crash(2)
    c.promote(1)  # (the only node left: VRRP elects it although it is not ready)
    c.start(2)
    c.converge()


def test_dump_restarted_by_a_second_resync_request_is_paced_past_a_full_queue() -> None:
    """Incremental level, three nodes: two RESYNC_REQUESTs while the first dump's frames
    fill the resend queue. The second dump restarts (every waiting peer follows it) and
    is sent although the queue is full; its middle frames look like incremental flushes
    (found as frames no model action explained)."""
    c = Cluster(Config(size=3, level="incremental"))
    c.promote(1)
    for conn in ("c0", "c1", "c2"):
        c.traffic(1, conn, "new")
    drain(c)
    c.converge()


def test_stale_primary_fenced_by_a_hello_with_the_newest_epoch() -> None:
    """Three nodes: the primary is cut off, another node is promoted, and on heal the
    old primary learns the newer epoch from a HELLO (which carries the full newest
    epoch) or a claim, steps down and resynchronizes."""
    c = Cluster(Config(size=3, level="weak"))
    c.promote(1)
    c.traffic(1, "c1", "new")
    drain(c)
    c.link(1, 2, False)
    c.link(1, 3, False)
    c.promote(2)
    c.traffic(2, "c2", "new")
    drain(c)
    c.link(1, 2, True)
    c.link(1, 3, True)
    c.converge()
    assert c.sim.primaries() == [2]
    assert c.sim.external_keys(1) == c.sim.kernel_keys(2)


def test_dump_skips_a_connection_destroyed_while_it_runs() -> None:
    """Weak level: a paced dump has started, a connection it has yet to send is
    destroyed; the implementation skips it and ends the dump with an empty BULK_END
    frame, where the spec would send its absence (found by a deep run)."""
    c = Cluster(Config(size=2, level="weak", queue_size=2))
    c.promote(1)
    drain(c)
    for conn in ("c0", "c1", "c2"):
        c.traffic(1, conn, "new")
    drain(c)
    c.command(2, "request-resync")
    resync = next(d for d in sorted(c.sim.network.in_flight) if d.dst == 1)
    c.deliver(resync)
    sender = c.node(1).sender
    assert sender.bulk_phase == "run" and sender.bulk_todo, "the dump is paced: some keys wait"
    waiting = c.conns[sender.bulk_todo[-1]]
    c.traffic(1, waiting, "destroy")
    for _ in range(6):
        drain(c)
        c.advance(0.06)
        for n in (1, 2):
            if c.node(n).next_timer(c.sim.now) <= c.sim.now:
                c.timer(n)
    c.converge()
    assert c.sim.external_keys(2) == c.sim.kernel_keys(1)


def test_a_live_primary_takes_a_term_above_news_nobody_vouches_for() -> None:
    """Issue 13's epoch bug: node 2 is elected (epoch 1.2) but its claim never reaches
    node 1 (link cut) and it dies; node 1 is elected with an epoch that ties on the term
    and loses on the node id (1.1). Node 2 restarts with its persisted 1.2 and its HELLO
    tells node 1 of it: nobody vouches for 1.2 (its primary is gone), so the live
    primary must not step down: it takes a term above (2.1) and stays primary."""
    c = Cluster(Config(size=2, level="strong"))
    c.link(1, 2, False)
    c.promote(2)
    c.crash(2)
    c.promote(1)
    c.traffic(1, "c0", "new")
    c.start(2)
    c.link(1, 2, True)
    for _ in range(4):  # the handshake, as the nodes' timers retry it
        drain(c)
        c.advance(1.1)
        for n in (1, 2):
            c.timer(n)
    drain(c)
    assert c.state.role[1] == "PRIMARY" and c.state.epoch[1] == (2, 1), c.state.epoch
    c.converge()
    assert c.sim.primaries() == [1] and c.sim.external_keys(2) == c.sim.kernel_keys(1)


def test_a_former_primary_back_as_backup_keeps_no_zombie() -> None:
    """Issue 15: a primary dies; while it is away the new primary's three connections
    are reset; it restarts as backup with them still in its kernel. The new primary's
    first dump vouches for its kernel (VouchKernel): they go, so they cannot come back
    at its next term as primary (KernelVouched)."""
    c = Cluster(Config(size=2, level="strong"))
    c.promote(1)
    for conn in ("c0", "c1", "c2"):
        c.traffic(1, conn, "new")
    drain(c)
    c.crash(1)
    c.promote(2)  # commits what node 1 had told it
    for conn in ("c0", "c1", "c2"):
        c.traffic(2, conn, "destroy")
    assert all(c.state.kernel[1][conn] for conn in ("c0", "c1", "c2")), "the stale entries are in node 1's kernel"
    c.start(1)
    for _ in range(4):
        drain(c)
        c.advance(1.1)
        for n in (1, 2):
            c.timer(n)
    drain(c)
    assert c.state.role[1] == "BACKUP" and not any(c.state.kernel[1].values()), c.state.kernel[1]
    c.converge()
