"""The active-active demo: both firewalls forward; one fails, its connections live on, it returns.

World (:mod:`snep.lab.aa_topology`): two firewalls, each the home of one VRRP group
(fw1 the gateway of client 10.1.0.11, fw2 of 10.1.0.21) and the backup of the other's;
a snep node on each, configured as the conformance suite's (``[cluster] mode =
"active-active"``, one group per firewall, keepalived's notify FIFO, the deferral on,
``snep ctl ready`` as keepalived's track script). Both clients keep TCP connections and
UDP flows busy. Then fw1 dies: fw2 takes group 1 over and, holding its peer's states in
its kernel already, carries fw1's connections on; fw1 comes back with an empty kernel,
gets the table, and takes its group back once ready. The second run does the same
without snep: fw1's connections die with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snep.errors import SnepError
from snep.lab import traffic
from snep.lab.aa_topology import AATopology, client_ip
from snep.lab.conformance.impls import Impl, SnepImpl
from snep.lab.demo import alive, watch_until

DEFER_QUEUE = 0


@dataclass
class Phase:
    """The TCP connections alive per group after one step."""

    label: str
    alive: dict[int, int]
    total: dict[int, int]

    def line(self) -> str:
        parts = [f"group {g} {self.alive[g]}/{self.total[g]}" for g in sorted(self.total)]
        return f"  TCP connections alive {self.label}: " + ", ".join(parts)

    @property
    def all_alive(self) -> bool:
        return self.alive == self.total


@dataclass
class AARunResult:
    with_snep: bool
    phases: list[Phase]
    takeover_s: float | None = None
    back_s: float | None = None  # fw1's return -> it holds group 1 again

    @property
    def survived(self) -> tuple[int, int]:
        last = self.phases[-1]
        return sum(last.alive.values()), sum(last.total.values())


def _phase(label: str, snap: dict[str, Any], since: float, groups: list[int]) -> Phase:
    by_src = {client_ip(g): g for g in groups}
    tcp = [f for f in snap["flows"] if f["kind"] == "tcp"]
    return Phase(label,
                 {g: sum(1 for f in tcp if by_src[f["src"]] == g and alive(f, since)) for g in groups},
                 {g: sum(1 for f in tcp if by_src[f["src"]] == g) for g in groups})


def run(with_snep: bool, *, tcp: int = 20, udp: int = 4, watch: float = 6.0,
        say: Callable[[str], None] = print, prefix: str | None = None,
        advert_int: float = 1.0) -> AARunResult:
    impl: Impl = SnepImpl() if with_snep else Impl()
    prefix = prefix or f"snepa-{os.getpid()}-{'s' if with_snep else 'n'}"
    topo: AATopology

    with AATopology(2, defer_queue=DEFER_QUEUE if with_snep else None,
                    ready=impl.ready_command, notify=lambda fw: impl.notify(topo, fw),
                    notify_fifo=impl.notify_fifo, prefix=prefix, advert_int=advert_int) as topo:
        fw1, fw2 = topo.fw(1), topo.fw(2)
        for fw in topo.firewalls:
            impl.start(topo, fw)
        for fw in topo.firewalls:
            impl.wait_started(topo, fw)
        if with_snep:
            say("  snep running on fw1 and fw2: one sync instance per group, the peer's states in the kernel")
        for fw in topo.firewalls:
            topo.start_keepalived(fw)
        for g in topo.groups:
            topo.wait_owner(g, topo.fw(g), timeout=20)
        _wait_ready(impl, topo)
        say(f"  fw1 forwards group 1 (client {client_ip(1)}), fw2 group 2 (client {client_ip(2)}); "
            f"opening {tcp} TCP connections and {udp} UDP flows, half through each")
        flows = traffic.start_many(topo, [(topo.clients[g], client_ip(g)) for g in topo.groups],
                                   tcp=tcp, udp=udp, interval=0.05, stall=0.2)
        if flows.hello.get("errors"):
            raise SnepError(f"{flows.hello['errors']} connections could not be opened")
        time.sleep(2.0)
        held = {fw.name: len(topo.conntrack_tcp(fw, dport=traffic.TCP_PORT)) for fw in topo.firewalls}
        say(f"  TCP entries of the connections in each kernel: fw1 {held['fw1']}, fw2 {held['fw2']}"
            f" (of {tcp}{': each holds its own and its peer' + chr(39) + 's' if with_snep else ''})")
        held = impl.defer_counters(topo, fw1)
        if held:
            say(f"  fw1 held the first packet of {held.get('held', 0)} new connections until fw2 had their state "
                f"({held.get('acked', 0)} released on fw2's acknowledgement, {held.get('bound_accepted', 0)} by the bound)")
        phases = [_phase("before the failure", flows.snap(), time.time() - 1.0, topo.groups)]
        say(phases[-1].line())
        say("  failing fw1 (processes killed, cables cut) ...")
        failed_at = time.time()
        topo.crash(fw1)
        result = AARunResult(with_snep, phases)
        took_at = None
        try:
            topo.wait_owner(1, fw2, timeout=15, exclude=[fw1])
            took_at = time.time()
            result.takeover_s = took_at - failed_at
            say(f"  fw2 took over group 1 after {result.takeover_s:.1f} s; it now forwards both groups")
        except SnepError:
            say("  fw2 did not take over group 1 within 15 s")
        settled = time.time() + 1.0
        time.sleep(max(watch_until(failed_at, took_at, watch) - time.time(), 2.0))
        phases.append(_phase("after the failure", flows.snap(), settled, topo.groups))
        say(phases[-1].line())
        if with_snep:
            say("  fw1 comes back as after a reboot (empty kernel) ...")
            back_at = time.time()
            topo.reboot_state(fw1)
            topo.heal_links(fw1)
            impl.start(topo, fw1)
            impl.wait_started(topo, fw1)
            topo.start_keepalived(fw1)
            topo.wait_owner(1, fw1, timeout=45)
            result.back_s = time.time() - back_at
            say(f"  fw1 got the table, was ready, and took group 1 back after {result.back_s:.1f} s")
            settled = time.time() + 1.0
            time.sleep(3.0)
            phases.append(_phase("after fw1's return", flows.snap(), settled, topo.groups))
            say(phases[-1].line())
        flows.command("quit")
        return result


def _wait_ready(impl: Impl, topo: AATopology, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(impl.in_sync(topo, fw) in (None, True) for fw in topo.firewalls):
            return
        time.sleep(0.2)
    raise SnepError(f"the nodes did not report ready within {timeout:g} s")


def run_demo(*, tcp: int = 20, udp: int = 4, watch: float = 6.0, compare: bool = True,
             advert_int: float = 1.0, say: Callable[[str], None] = print) -> list[AARunResult]:
    """Both runs, printed as they go; returns the results."""
    say("snep demo --active-active: two stateful firewalls BOTH forward (keepalived: one VRRP group")
    say("each, master of its own, backup of the other's); clients are split between them.")
    say("fw1 dies mid-stream; fw2 takes its group over. Does fw2 know fw1's connections?")
    say("")
    say("== 1. active-active WITH snep ==")
    results = [run(True, tcp=tcp, udp=udp, watch=watch, say=say, advert_int=advert_int)]
    if compare:
        say("")
        say("== 2. the same failure WITHOUT snep ==")
        results.append(run(False, tcp=tcp, udp=udp, watch=watch, say=say, advert_int=advert_int))
    say("")
    parts = []
    for r in results:
        ok, total = r.survived
        steps = "the failure and the return" if r.with_snep else "the failure"
        parts.append(f"{'with' if r.with_snep else 'without'} snep: {ok}/{total} TCP connections survived {steps}")
    say("== result: " + "; ".join(parts) + " ==")
    return results

