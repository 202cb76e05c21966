"""The environment as a Hypothesis rule-based state machine over a checked cluster.

Rules are the environment's moves (model_tests/harness.py checks each one against the
model): traffic on a primary, deliver / lose / duplicate any datagram in flight (any
order: the network reorders), the clock, the nodes' timers, crash and restart, the HA
manager (promote, demote, fault), links down and up, operator commands. At the end of
every scenario (teardown) the links heal and the protocol runs alone for a bounded
virtual time: every live receiving node must then hold the primary's table (liveness).

:func:`machine_for` builds one machine class per cluster configuration.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from model_tests import model as M
from model_tests.harness import Cluster, Config

#: figures for the run summary (conftest prints them): the model tests proper, and
#: the runs of the mutation check (counted apart)
STATS: dict[str, int] = {"scenarios": 0, "steps": 0, "converged": 0}
MUTATION_STATS: dict[str, int] = {"scenarios": 0, "steps": 0, "converged": 0}


class ClusterMachine(RuleBasedStateMachine):
    cfg: Config = Config()

    def __init__(self) -> None:
        super().__init__()
        trace = [] if os.environ.get("SNEP_TRACE_DIR") else None
        self.c = Cluster(self.cfg, trace=trace)
        self.nodes = self.c.C.Node
        STATS["scenarios"] += 1

    # --- helpers ------------------------------------------------------------------
    def up(self, n: int) -> bool:
        return self.c.sim.hosts[n].node is not None

    def _pick(self, i: int) -> Any:
        flight = sorted(self.c.sim.network.in_flight)
        return flight[i % len(flight)]

    def _has_flight(self) -> bool:
        return bool(self.c.sim.network.in_flight)

    # --- start-up -----------------------------------------------------------------
    @initialize()
    def boot(self) -> None:
        self.c.promote(self.nodes[0])  # (the cluster starts as the spec's Init: all SYNCING)

    # --- traffic ------------------------------------------------------------------
    @rule(data=st.data(), kind=st.sampled_from(["new", "update", "destroy"]))
    def traffic(self, data: st.DataObject, kind: str) -> None:
        primaries = self.c.primaries()
        if not primaries:
            return
        n = data.draw(st.sampled_from(primaries), label="primary")
        kernel = self.c.state.kernel[n]
        want_present = kind != "new"
        choices = [c for c in self.c.C.Conn if (kernel[c] != 0) == want_present]
        if not choices:
            return
        c = data.draw(st.sampled_from(choices), label="conn")
        self.c.traffic(n, c, kind)

    @rule(data=st.data(), k=st.integers(3, 6))
    def burst(self, data: st.DataObject, k: int) -> None:
        """A burst of traffic: more frames than the resend queue holds, when unacked."""
        for _ in range(k):
            self.traffic(data, data.draw(st.sampled_from(["new", "update", "update", "destroy"]), label="kind"))

    # --- the network --------------------------------------------------------------
    @precondition(lambda self: self._has_flight())
    @rule(i=st.integers(0, 63))
    def deliver(self, i: int) -> None:
        self.c.deliver(self._pick(i))

    @precondition(lambda self: self._has_flight())
    @rule(i=st.integers(0, 63))
    def deliver_first(self, i: int) -> None:
        """The oldest datagram in flight (the common, in-order case)."""
        self.c.deliver(self._pick(0))

    @precondition(lambda self: self._has_flight())
    @rule(i=st.integers(0, 63))
    def lose(self, i: int) -> None:
        self.c.lose(self._pick(i))

    @precondition(lambda self: self._has_flight())
    @rule(i=st.integers(0, 63))
    def duplicate(self, i: int) -> None:
        self.c.duplicate(self._pick(i))

    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        a, b = data.draw(st.sampled_from([(a, b) for a in self.nodes for b in self.nodes if a < b]), label="link")
        self.c.link(a, b, not self.c.sim.network.is_up(a, b))

    # --- time ---------------------------------------------------------------------
    @rule(dt=st.sampled_from([0.06, 0.3, 0.6, 1.1, 4.5]))
    def advance(self, dt: float) -> None:
        self.c.advance(dt)

    @rule(data=st.data())
    def timers(self, data: st.DataObject) -> None:
        due = [n for n in self.nodes if self.up(n) and (self.c.node(n).next_timer(self.c.sim.now) or 1e18) <= self.c.sim.now]
        if due:
            self.c.timer(data.draw(st.sampled_from(due), label="node"))

    @rule()
    def run_a_while(self) -> None:
        """Deliver everything in flight in order and fire due timers, one checked step each."""
        for _ in range(12):
            if self._has_flight():
                self.c.deliver(self._pick(0))
        for n in self.nodes:
            if self.up(n) and (self.c.node(n).next_timer(self.c.sim.now) or 1e18) <= self.c.sim.now:
                self.c.timer(n)

    # --- failures -----------------------------------------------------------------
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        up = [n for n in self.nodes if self.up(n)]
        if up:
            self.c.crash(data.draw(st.sampled_from(up), label="node"))

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        down = [n for n in self.nodes if not self.up(n)]
        if down:
            self.c.start(data.draw(st.sampled_from(down), label="node"))

    # --- the HA manager -----------------------------------------------------------
    # keepalived as the spec has it: each decision only where the spec's HA action is
    # enabled (VRRP elects a node that hears no master; two masters that hear each
    # other resolve; demote and fault at any time).
    def _able(self, action: str) -> list[int]:
        s, C = self.c.state, self.c.C
        return [n for n in self.nodes if M.ACTIONS[action](s, C, n) is not None]

    @rule(data=st.data())
    def promote(self, data: st.DataObject) -> None:
        able = self._able("Promote")
        if able:
            self.c.promote(data.draw(st.sampled_from(able), label="node"))

    @rule(data=st.data())
    def resign(self, data: st.DataObject) -> None:
        able = self._able("Resign")
        if able:
            self.c.resign(data.draw(st.sampled_from(able), label="node"))

    @rule(data=st.data())
    def demote(self, data: st.DataObject) -> None:
        able = self._able("Demote")
        if able:
            self.c.demote(data.draw(st.sampled_from(able), label="node"))

    @rule(data=st.data())
    def fault(self, data: st.DataObject) -> None:
        able = self._able("Fault")
        if able:
            self.c.fault(data.draw(st.sampled_from(able), label="node"))

    # --- the operator -------------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(["bulk", "request-resync", "resync", "commit", "flush"]))
    def operator(self, data: st.DataObject, name: str) -> None:
        s = self.c.state
        if name == "bulk":
            able = [n for n in self.nodes if s.role[n] == M.PRIMARY]
        elif name in ("commit", "flush", "request-resync"):
            able = [n for n in self.nodes if s.role[n] in M.Receiving]
        else:
            able = [n for n in self.nodes if self.up(n)]
        if not able:
            return
        n = data.draw(st.sampled_from(able), label="node")
        self.c.command(n, name)
        if name == "flush":
            self.c.command(n, "request-resync")  # the operator's procedure: flush, then resync

    def teardown(self) -> None:
        STATS["steps"] += self.c.steps
        trace_dir = os.environ.get("SNEP_TRACE_DIR")
        try:
            self.c.converge()
            STATS["converged"] += 1
        finally:
            if trace_dir and self.c.trace is not None:
                from model_tests.trace import write_trace

                write_trace(trace_dir, self.cfg, self.c.trace)


def machine_for(size: int, level: str, **extra: Any) -> type[ClusterMachine]:
    cfg = Config(size=size, level=level, **extra)
    return type(f"Cluster{size}{level.capitalize()}", (ClusterMachine,), {"cfg": cfg})
