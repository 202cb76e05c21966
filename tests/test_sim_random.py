"""Random failure scenarios through the simulation (Hypothesis stateful test).

Traffic, loss, duplication, link cuts, crashes, restarts and HA decisions in any
order; after every step the safety properties hold, and once the faults stop and
links heal every backup converges to the primary's table. (model_tests/ checks every
step against the spec's mirror; this is the quicker end-to-end check of the fsm.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from snep.entry import TcpInfo, TcpState
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.lab.sim import Simulation, conn
from snep.level import Level

NODES = (1, 2, 3)
PARAMS = SyncParams(resend_queue=8, bulk_window=4, peer_dead_timeout=1.5, alive_interval=0.3, resync_retry=1.0)


class Cluster(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulation(3, PARAMS, seed=7)
        self.sim.start()
        self.sim.run(0.05)
        self.sim.promote(1)
        self.sim.settle()
        self.next_conn = 0
        self.crashes = 0

    # --- environment ---------------------------------------------------------------
    def primary(self) -> int | None:
        primaries = self.sim.primaries()
        return primaries[0] if len(primaries) == 1 else None

    @precondition(lambda self: self.primary() is not None)
    @rule(count=st.integers(1, 6))
    def connections_open(self, count):
        p = self.primary()
        for _ in range(count):
            self.sim.conn_new(p, conn(self.next_conn))
            self.next_conn += 1

    @precondition(lambda self: self.primary() is not None)
    @rule(data=st.data(), destroy=st.booleans())
    def connection_changes(self, data, destroy):
        p = self.primary()
        entries = self.sim.kernel(p).dump()
        if not entries:
            return
        entry = data.draw(st.sampled_from(sorted(entries, key=lambda e: e.orig.src)))
        if destroy:
            self.sim.conn_destroy(p, entry)
        else:
            self.sim.conn_update(p, entry._replace(protoinfo=TcpInfo(TcpState.FIN_WAIT), mark=entry.mark + 1))

    @rule(seconds=st.sampled_from([0.005, 0.05, 0.3, 1.0, 3.0]))
    def time_passes(self, seconds):
        self.sim.run(seconds)

    @rule()
    def lose_one(self):
        self.sim.network.lose()

    @rule()
    def duplicate_one(self):
        self.sim.network.duplicate(delay=0.01)

    @rule(a=st.sampled_from(NODES), b=st.sampled_from(NODES))
    def link_down(self, a, b):
        if a != b:
            self.sim.network.link_down(a, b)

    @rule(a=st.sampled_from(NODES), b=st.sampled_from(NODES))
    def link_up(self, a, b):
        self.sim.network.link_up(a, b)

    @precondition(lambda self: self.crashes < 3)
    @rule(n=st.sampled_from(NODES))
    def crash(self, n):
        if self.sim.hosts[n].up:
            self.sim.crash(n)
            self.crashes += 1

    @rule(n=st.sampled_from(NODES))
    def restart(self, n):
        if not self.sim.hosts[n].up:
            self.sim.restart(n)

    @rule(n=st.sampled_from(NODES))
    def ha_promotes(self, n):
        """VRRP promotes only a node that hears no primary (ready ones first)."""
        sim = self.sim
        if sim.role(n) not in (Role.SYNCING, Role.BACKUP, Role.FAULT):
            return
        if any(sim.network.is_up(n, p) for p in sim.primaries()):
            return
        ready = [m for m in NODES if sim.role(m) is Role.BACKUP and m != n]
        if sim.role(n) is not Role.BACKUP and any(not any(sim.network.is_up(m, p) for p in sim.primaries()) for m in ready):
            return
        sim.promote(n)

    @rule(n=st.sampled_from(NODES), fault=st.booleans())
    def ha_demotes(self, n, fault):
        role = self.sim.role(n)
        if fault and role in (Role.PRIMARY, Role.BACKUP, Role.SYNCING):
            self.sim.fault(n)
        elif not fault and role in (Role.PRIMARY, Role.FAULT):
            self.sim.demote(n)

    @rule(n=st.sampled_from(NODES), command=st.sampled_from(
        ["commit", "flush", "resync", "bulk", "request-resync", "shorten-timeouts"]))
    def operator(self, n, command):
        if not self.sim.hosts[n].up or (command == "bulk" and self.sim.role(n) is not Role.PRIMARY):
            return
        self.sim.command(n, command)

    # --- properties -----------------------------------------------------------------
    @invariant()
    def one_primary_per_epoch(self):
        owned = [self.sim.node(p).own for p in self.sim.primaries()]
        assert all(e is not None and e.node == p for e, p in zip(owned, self.sim.primaries()))
        assert len(set(owned)) == len(owned)

    @invariant()
    def queues_bounded(self):
        for host in self.sim.hosts.values():
            if host.node is not None:
                assert len(host.node.sender.queue) <= PARAMS.resend_queue

    def teardown(self):
        """Faults stop, links heal, HA settles on one primary: everyone converges."""
        sim = self.sim
        sim.network.down.clear()
        for n in NODES:
            if not sim.hosts[n].up:
                sim.restart(n)
        for _ in range(5):  # the HA manager: one primary, the others backups
            sim.run(3.0)  # stale primaries hear the newest epoch and step down
            if len(sim.primaries()) == 1:
                break
            if not sim.primaries():
                candidates = [n for n in NODES if sim.role(n) is Role.BACKUP] or list(NODES)
                sim.promote(candidates[0])
        for n in NODES:
            if sim.role(n) is Role.FAULT:
                sim.demote(n)
        sim.settle(limit=120)
        (p,) = sim.primaries()
        def view(entries):  # weak level: the same connections; otherwise the same states
            if PARAMS.level is Level.WEAK:
                return {e.key for e in entries}
            return {e.key: e._replace(timeout=0) for e in entries}

        table = view(sim.kernel(p).dump())
        for n in NODES:
            if n != p:
                assert sim.role(n) is Role.BACKUP, sim.roles()
                assert view(sim.node(n).external) == table, f"node {n} differs from primary {p}"


TestRandomScenarios = Cluster.TestCase
TestRandomScenarios.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
