"""What active-active costs a new connection: snep with the deferral on and off.

The active-active stage (snep.lab.aa_topology: two firewalls, one VRRP group each,
symmetric paths) with, in turn: no synchronization, conntrackd (FT-FW,
DisableExternalCache: its manual's active-active setup), snep with ``[cluster.defer]
enabled = false`` and snep with the deferral on (the contract's NFQUEUE rule on every
firewall: a new connection's first packet waits at its owner until the peer acknowledged
its state). Client 1's connections pass fw1 (group 1's owner). Printed for each:

- first-packet latency: the connect time (SYN sent to SYN-ACK received) of new TCP
  connections made one at a time, median and p99;
- new connections/s: as many as ``--concurrency`` connections at a time can make for
  ``--seconds`` (each opened and closed at once), and how many failed;
- CPU per new connection: the sync daemons' CPU time (both firewalls, user + system)
  during that burst, divided by the connections made.

Root only; figures, no asserts. Each configuration builds its own stage (~15 s).

    python bench/bench_aa.py [--samples 300] [--seconds 10] [--concurrency 32] [--only snep-defer ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from snep.lab import netns, traffic
from snep.lab.aa_topology import AATopology, client_ip
from snep.lab.conformance.aaharness import DEFER_QUEUE, percentile
from snep.lab.conformance.impls import ConntrackdImpl, Impl, SnepImpl
from snep.lab.topology import Topology

CONFIGS = ("none", "conntrackd", "snep-no-defer", "snep-defer")


# ------------------------------------------------------------------ in the client namespace

@dataclass(frozen=True)
class Load:
    """What one load run made: each connect's seconds, the failures, how long it took."""

    times: list[float]
    failed: int
    span: float


async def _connections(server: str, port: int, *, count: int | None, seconds: float | None,
                       concurrency: int) -> Load:
    times: list[float] = []
    failed = 0
    end = time.monotonic() + seconds if seconds else None
    left = [count] if count is not None else None

    async def worker() -> None:
        nonlocal failed
        while True:
            if end is not None and time.monotonic() >= end:
                return
            if left is not None:
                if left[0] <= 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(server, port), 3.0)
                times.append(time.perf_counter() - started)
                writer.close()
            except (OSError, TimeoutError):
                failed += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Load(times, failed, time.monotonic() - t0)


def load(server: str, port: int, count: int | None, seconds: float | None, concurrency: int) -> None:
    made = asyncio.run(_connections(server, port, count=count, seconds=seconds, concurrency=concurrency))
    print(json.dumps(asdict(made)), flush=True)


def run_load(topo: Topology, ns: str, *, count: int | None = None, seconds: float | None = None,
             concurrency: int = 1) -> Load:
    argv = [sys.executable, os.path.abspath(__file__), "--load", topo.server_ip,
            "--concurrency", str(concurrency)]
    argv += ["--count", str(count)] if count is not None else ["--seconds", str(seconds)]
    out = topo.exec(ns, argv, timeout=600).stdout
    return Load(**json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------ one configuration

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def make_impl(config: str) -> Impl:
    if config == "conntrackd":
        return ConntrackdImpl()
    return SnepImpl() if config.startswith("snep") else Impl()


def measure(config: str, args: argparse.Namespace) -> dict[str, float]:
    impl = make_impl(config)
    topo: AATopology
    defer = config == "snep-defer"
    with AATopology(2, defer_queue=DEFER_QUEUE if defer else None, ready=impl.ready_command,
                    notify=lambda fw: impl.notify(topo, fw), notify_fifo=impl.notify_fifo,
                    prefix=f"snepba-{os.getpid()}-{config}") as topo:
        for fw in topo.firewalls:
            impl.start(topo, fw)
        for fw in topo.firewalls:
            impl.wait_started(topo, fw)
        for fw in topo.firewalls:
            topo.start_keepalived(fw)
        for g in topo.groups:
            topo.wait_owner(g, topo.fw(g), timeout=30)
        deadline = time.monotonic() + 30
        while not all(impl.in_sync(topo, fw) in (None, True) for fw in topo.firewalls):
            if time.monotonic() > deadline:
                raise SystemExit(f"{config}: the nodes did not get ready")
            time.sleep(0.2)
        traffic.start_server(topo)
        client = topo.clients[1]
        run_load(topo, client, count=20)  # warm up (ARP, the daemons' first events)
        one = run_load(topo, client, count=args.samples)
        pids = {fw.name: proc.pid for fw in topo.firewalls if (proc := impl.daemon(fw)) is not None}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        burst = run_load(topo, client, seconds=args.seconds, concurrency=args.concurrency)
        cpu = sum(cpu_seconds(pid) - cpu0[name] for name, pid in pids.items())
        counters = impl.counters(topo, topo.fw(1))  # (flattened status: defer.groups.1.wait.p50 ...)
        made = len(burst.times)
        nan = float("nan")
        result = {
            "median_us": statistics.median(one.times) * 1e6 if one.times else nan,
            "p99_us": percentile(one.times, 99) * 1e6 if one.times else nan,
            "lost": float(args.samples - len(one.times)),
            "rate": made / burst.span if burst.span else nan,
            "failed": float(burst.failed),
            "cpu_us": cpu / made * 1e6 if made and pids else nan,
        }
        held = impl.defer_counters(topo, topo.fw(1))
        if held:
            wait = {p: counters.get(f"defer.groups.1.wait.{p}") for p in ("p50", "p99")}
            print(f"    fw1 held {held.get('held', 0)} first packets: {held.get('acked', 0)} released on the "
                  f"peer's ACK, {held.get('bound_accepted', 0)} by the bound; wait p50 "
                  f"{_ms(wait['p50'])}, p99 {_ms(wait['p99'])}; "
                  f"{counters.get('defer.ungrouped_packets', 0)} queued packets of no group")
        return result


def _ms(seconds: object) -> str:
    return f"{float(seconds) * 1e3:.1f} ms" if isinstance(seconds, (int, float)) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="connections made one at a time")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--concurrency", type=int, default=32, help="connections at a time in the burst")
    parser.add_argument("--only", action="append", choices=CONFIGS, help="run only these (repeat)")
    parser.add_argument("--load", metavar="SERVER", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args.load, traffic.CHURN_PORT, args.count, args.seconds if args.count is None else None,
             args.concurrency)
        return
    reason = netns.available()
    if reason is not None:
        print(f"bench_aa: skipped ({reason})")
        return
    configs = args.only or list(CONFIGS)
    if "conntrackd" in configs and shutil.which("conntrackd") is None:
        configs.remove("conntrackd")
        print("(conntrackd not installed: left out)")
    print(f"active-active, 2 firewalls, client {client_ip(1)} through fw1 (python {sys.version.split()[0]}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print(f"  {'':14} {'connect median':>15} {'p99':>10} {'new conn/s':>11} {'failed':>7} {'daemon CPU/conn':>16}")
    for config in configs:
        r = measure(config, args)
        cpu = f"{r['cpu_us']:>13.0f} us" if r["cpu_us"] == r["cpu_us"] else f"{'-':>16}"  # (nan: no daemon)
        print(f"  {config:14} {r['median_us']:>12.0f} us {r['p99_us']:>7.0f} us {r['rate']:>11,.0f} "
              f"{r['failed']:>7.0f} {cpu}", flush=True)


if __name__ == "__main__":
    main()
