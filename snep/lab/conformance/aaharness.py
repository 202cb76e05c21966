"""One run of an active-active scenario: every firewall forwards its own group's clients.

The stage is :class:`~snep.lab.aa_topology.AATopology` (one VRRP group per firewall,
clients split between the groups, symmetric or asymmetric return paths). The harness
measures what :class:`~snep.lab.conformance.harness.Harness` measures for a failover,
for each move of a group: a firewall's failure (its group goes to a survivor) and its
return (the survivor hands the group back once the home is ready). And over the run:

- every long-lived connection must get established and echo before the first failure
  (on asymmetric paths a firewall drops a reply it has no state for: the connection
  never starts, which a count of survivors alone would not see);
- no packet of a tracked connection is dropped as invalid on any firewall, over the
  whole run (counters inserted before the traffic starts);
- the first-packet latency of new connections: the connect time (SYN to SYN-ACK) of
  the churn connections, median and p99 (what a deferral adds shows there), outside
  the moves; a connection attempted while a group moved waits for VRRP (its SYN is
  retransmitted after 1 and 3 s), so those are counted apart.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from snep.lab import traffic
from snep.lab.aa_topology import AATopology, client_ip
from snep.lab.conformance.harness import Check, Failover, Harness, Result
from snep.lab.conformance.impls import Impl, NotApplicable
from snep.lab.conformance.profile import Profile
from snep.lab.topology import Firewall, Topology

DEFER_QUEUE = 0  # the NFQUEUE number of the defer rules


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class AAHarness(Harness):
    """Topology + traffic + implementation for one active-active run."""

    topo: AATopology

    def __init__(self, impl: Impl, profile: Profile, result: Result, *, firewalls: int = 2,
                 asymmetric: bool = False, defer: bool = True, keep_logs: bool = False,
                 workdir: Path | None = None) -> None:
        if impl.name == "snep-commit":
            raise NotApplicable("active-active keeps the peers' states in the kernel: no commit")
        self.asymmetric = asymmetric
        self.defer = defer and impl.defers
        super().__init__(impl, profile, result, firewalls=firewalls, keep_logs=keep_logs,
                         workdir=workdir)
        self.moves: list[tuple[float, float]] = []  # (start, end) of each move, wall clock

    def make_topology(self, firewalls: int, **kwargs: Any) -> Topology:
        kwargs.pop("sync_links", None)
        return AATopology(firewalls, asymmetric=self.asymmetric,
                          defer_queue=DEFER_QUEUE if self.defer else None,
                          ready=self.impl.ready_command, **kwargs)

    # ---- start-up ----

    def start(self) -> None:
        """Daemons everywhere, every firewall master of its own group, then traffic
        through every group; the connections must all start."""
        topo, impl, p = self.topo, self.impl, self.profile
        for fw in topo.firewalls:
            impl.start(topo, fw)
        for fw in topo.firewalls:
            impl.wait_started(topo, fw)
        for fw in topo.firewalls:  # counted over the whole run
            topo.watch_invalid(fw, traffic.TCP_PORT)
            topo.watch_invalid(fw, traffic.CHURN_PORT)
        for fw in topo.firewalls:
            topo.start_keepalived(fw)
        for g in topo.groups:
            topo.wait_owner(g, topo.fw(g), timeout=10 + 5 * p.advert_int)
        for fw in topo.firewalls:
            self.wait_in_sync(fw)
        started = time.time()
        self.traffic = traffic.start_many(topo, [(topo.clients[g], client_ip(g)) for g in topo.groups],
                                          tcp=p.tcp, udp=p.udp, interval=p.interval)
        self._track(self.traffic.snap())
        self.churn(p.churn)
        time.sleep(p.sync_wait)
        check = self.check_alive("every connection established, through every group", started)
        check.ok = check.ok and len(self.tracked) == p.tcp
        check.detail = f"{len(self.tracked)}/{p.tcp} connected, {check.detail}"
        self.result.checks.append(check)

    # ---- moves ----

    def move(self, *args: Any, **kwargs: Any) -> Failover:
        """The base's move, its span noted: the connects that start in it are set apart."""
        start = time.time()
        try:
            return super().move(*args, **kwargs)
        finally:
            self.moves.append((start, time.time()))

    def fail(self, victim: Firewall, how: str = "crash", label: str = "") -> Failover:
        """``victim`` fails; the groups it held go to survivors (VRRP priorities)."""
        topo = self.topo
        groups = [g for g in topo.groups if topo.owner(g) is victim]
        acts = {"crash": topo.crash, "links": topo.fail_links}

        def act() -> None:
            acts[how](victim)
            self.down.append(victim)

        def takeover() -> Firewall:
            owners = [topo.wait_owner(g, exclude=self.down, timeout=10 + 5 * self.profile.advert_int)
                      for g in groups]
            return owners[0]

        return self.move(victim, act, takeover,
                         vips=[vip for g in groups for vip in topo.vips(g)],
                         candidates=[fw for fw in topo.firewalls if fw not in self.down and fw is not victim],
                         label=label or f"{victim.name} {'crashed' if how == 'crash' else 'links cut'}")

    def comes_back(self, home: Firewall, label: str = "") -> Failover:
        """``home`` returns as after a reboot (empty kernel, daemon and keepalived started
        anew) and takes its group back from the survivor that held it, once ready."""
        topo, impl = self.topo, self.impl
        group = home.index
        source = topo.owner(group)
        if source is None:
            raise NotApplicable(f"group {group} has no owner to hand it back")

        def act() -> None:
            topo.reboot_state(home)
            topo.heal_links(home)
            impl.start(topo, home)
            impl.wait_started(topo, home)
            topo.start_keepalived(home)
            self.down.remove(home)

        return self.move(source, act,
                         lambda: topo.wait_owner(group, home, timeout=45 + 5 * self.profile.advert_int),
                         vips=topo.vips(group), candidates=[home],
                         label=label or f"{home.name} returns: group {group} back from {source.name}")

    # ---- over the run ----

    def conclude(self) -> None:
        """The run's own checks: no invalid drop of tracked traffic anywhere, and the
        first-packet latency of the new connections (reported)."""
        assert self.traffic is not None
        topo = self.topo
        drops = {fw.name: topo.invalid_drops(fw, traffic.TCP_PORT) for fw in topo.firewalls}
        total = sum(drops.values())
        self.result.checks.append(Check(
            "no invalid drops of tracked traffic", total == 0,
            f"{total} packets of tracked connections dropped as invalid "
            f"({', '.join(f'{k} {v}' for k, v in drops.items())})", {"tracked_invalid_drops": drops}))
        connects: list[float] = []
        moving: list[float] = []
        for at, seconds in self.traffic.latency():
            in_move = any(start <= at <= end for start, end in self.moves)
            (moving if in_move else connects).append(seconds)
        churn = self.traffic.snap()["churn"]
        numbers: dict[str, Any] = {"connects": len(connects), "connects_in_moves": len(moving),
                                   "churn_failed": churn["failed"]}
        if connects:
            numbers.update(median_ms=round(statistics.median(connects) * 1e3, 2),
                           p99_ms=round(percentile(connects, 99) * 1e3, 2))
            detail = (f"median {numbers['median_ms']} ms, p99 {numbers['p99_ms']} ms over "
                      f"{len(connects)} new connections")
        else:
            detail = "no new connection got through outside the moves"
        if moving:
            numbers["in_moves_p99_ms"] = round(percentile(moving, 99) * 1e3, 2)
            detail += f"; during the moves {len(moving)}, p99 {numbers['in_moves_p99_ms']} ms"
        detail += f"; {churn['failed']} failed"
        self.result.checks.append(Check("first-packet latency (connect time)", True, detail, numbers))
        held = {fw.name: self.impl.defer_counters(topo, fw) for fw in topo.firewalls if fw not in self.down}
        if any(held.values()):  # how the held packets were released, since each daemon started
            shown = ("held", "acked", "bound_accepted", "bound_dropped", "peer_gone", "no_peers")
            self.result.checks.append(Check(
                "deferral", True, "; ".join(f"{name}: " + ", ".join(f"{k} {c.get(k, 0)}" for k in shown)
                                            for name, c in held.items() if c), {"defer": held}))
