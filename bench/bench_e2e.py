"""End-to-end figures of snep beside conntrackd (FT-FW over UDP), same machine, same run.

1. Event sync latency under a steady load: UDP flows created through fw1 (the client
   sends to a new server port every 1/rate s) -> the flow is in fw2's external cache.
   Median and 99th percentile. The backup's external cache size is polled over its
   control socket (snep) or ``conntrackd -s`` (conntrackd); the poll period is printed
   as the resolution of the figure.
2. Resync: N existing flows (``conntrack -R``) in fw1's kernel, primary running; a
   freshly started backup on fw2 until its external cache holds all N: from process
   start, and from the resync request (snep requests one at start; conntrackd is sent
   ``-n`` once its socket answers).

CPU time (user+system, from /proc) of both daemons is printed for each phase.
Usage: ``python bench/bench_e2e.py [--sizes 10000,100000] [--rate 1000] [--seconds 5]``
(root; network namespaces prefixed snepb-).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from snep.lab import netns
from snep.lab.conformance.impls import ConntrackdImpl
from snep.lab.demo import NodeOptions, SnepCluster
from snep.lab.topology import CLIENT_VIP, SERVER_VIP, Firewall, Topology
from snep.runtime.client import ControlError, request

CLK_TCK = os.sysconf("SC_CLK_TCK")

GENERATOR = r"""
import json, socket, sys, time
server, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", (server, 19999))  # resolve the gateway first
n = int(rate * seconds)
times = []
start = time.time()
for i in range(n):
    due = start + i / rate
    delay = due - time.time()
    if delay > 0:
        time.sleep(delay)
    times.append(time.time())  # before: the entry is made during sendto (softirq)
    s.sendto(b"x", (server, 20000 + i))
print(json.dumps(times))
"""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def take_vips(topo: Topology, fw: Firewall) -> None:
    topo.exec(fw.ns, ["ip", "addr", "add", f"{CLIENT_VIP}/24", "dev", "c0"])
    topo.exec(fw.ns, ["ip", "addr", "add", f"{SERVER_VIP}/24", "dev", "s0"])


def load_flows(topo: Topology, fw: Firewall, n: int) -> float:
    """N established TCP entries in fw's kernel (client side 10.1.x.y, server 10.2.z.1)."""
    path = fw.dir / f"flows-{n}.txt"
    lines = []
    for i in range(n):
        a, b = divmod(i, 60000)
        lines.append(
            f"-I -s 10.1.{100 + a}.{1 + (b % 250)} -d 10.2.{1 + b // 250}.1 -p tcp --sport {1024 + i % 60000} "
            f"--dport 80 --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED"
        )
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    topo.exec(fw.ns, ["conntrack", "-R", str(path)], timeout=300)
    return time.monotonic() - started


class Snep:
    name = "snep"

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.cluster = SnepCluster(topo, NodeOptions(alive_interval=0.5, peer_dead_timeout=2.0))

    def start(self, fw: Firewall) -> int:
        return self.cluster.start(fw).pid

    def make_primary(self, fw: Firewall) -> None:
        self.cluster.ctl(fw, "notify", "primary")

    def make_backup(self, fw: Firewall) -> None:
        self.cluster.ctl(fw, "notify", "backup")

    def started(self, fw: Firewall) -> bool:
        return True  # start() returns once the control socket answers

    def request_resync(self, fw: Firewall) -> None:
        pass  # a starting snep node requests a resync by itself

    def external(self, fw: Firewall) -> int:
        return int(request(self.cluster.socket(fw), "status", timeout=5)["external"])

    def stop(self, fw: Firewall) -> None:
        self.cluster.stop(fw)


class Conntrackd:
    name = "conntrackd"

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.impl = ConntrackdImpl()

    def start(self, fw: Firewall) -> int:
        self.impl.start(self.topo, fw)
        return fw.procs["sync"].pid

    def started(self, fw: Firewall) -> bool:
        return self.topo.exec(fw.ns, ["conntrackd", "-C", str(self.impl.conf_path(fw)), "-s"], check=False).returncode == 0

    def make_primary(self, fw: Firewall) -> None:
        pass

    def make_backup(self, fw: Firewall) -> None:
        pass

    def request_resync(self, fw: Firewall) -> None:
        self.topo.exec(fw.ns, ["conntrackd", "-C", str(self.impl.conf_path(fw)), "-n"])

    def external(self, fw: Firewall) -> int:
        out = subprocess.run(["conntrackd", "-C", str(self.impl.conf_path(fw)), "-s", "cache"],
                             capture_output=True, text=True).stdout
        match = re.search(r"cache:external\s+active objects:\s+(\d+)", out)
        return int(match.group(1)) if match else 0

    def stop(self, fw: Firewall) -> None:
        self.topo.kill(fw, "sync")


def wait_started(impl, fw: Firewall, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if impl.started(fw):
            return
        time.sleep(0.01)
    raise RuntimeError(f"{impl.name} on {fw.name} did not start")


def poll_until(impl, fw: Firewall, target: int, timeout: float, period: float = 0.001) -> tuple[float | None, list[tuple[float, int]]]:
    """Poll the external cache size until it reaches target; (time reached, samples)."""
    samples = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            count = impl.external(fw)
        except ControlError:
            count = -1
        now = time.time()
        samples.append((now, count))
        if count >= target:
            return now, samples
        time.sleep(period)
    return None, samples


def latency(impl_class, rate: float, seconds: float, prefix: str) -> dict[str, float]:
    with Topology(firewalls=2, prefix=prefix) as topo:
        fw1, fw2 = topo.fw(1), topo.fw(2)
        impl = impl_class(topo)
        pids = [impl.start(fw1), impl.start(fw2)]
        wait_started(impl, fw1)
        wait_started(impl, fw2)
        impl.make_primary(fw1)
        impl.make_backup(fw2)
        take_vips(topo, fw1)
        time.sleep(1.0)
        base = impl.external(fw2)
        n = int(rate * seconds)
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        # what polling alone costs the backup (its control socket / conntrackd -s)
        idle0 = cpu_seconds(pids[1])
        poll_until(impl, fw2, 1 << 30, 1.0)
        poll_cost = cpu_seconds(pids[1]) - idle0
        cpu0 = [cpu_seconds(p) for p in pids]
        t0 = time.time()

        def poller() -> None:
            while not done.is_set():
                before = time.time()
                try:
                    count = impl.external(fw2)
                except ControlError:
                    continue
                samples.append(((before + time.time()) / 2, count))  # the count is of mid-request
                time.sleep(0.001)

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        gen = topo.exec(topo.client, [sys.executable, "-c", GENERATOR, topo.server_ip, str(rate), str(seconds)],
                        timeout=seconds + 60)
        sent = json.loads(gen.stdout)
        reached, _ = poll_until(impl, fw2, base + 1 + n, 30)
        done.set()
        thread.join()
        cpu1 = [cpu_seconds(p) for p in pids]
        polled = time.time() - t0
        lat = []
        j = 0
        for i, t in enumerate(sent):
            while j < len(samples) and samples[j][1] < base + 1 + i + 1:  # + the warm-up flow
                j += 1
            if j == len(samples):
                break
            lat.append(samples[j][0] - t)
        periods = [b[0] - a[0] for a, b in zip(samples, samples[1:])]
        lat.sort()
        return {
            "flows": n,
            "arrived": len(lat),
            "median_ms": statistics.median(lat) * 1000 if lat else float("nan"),
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
            "poll_ms": statistics.median(periods) * 1000 if periods else float("nan"),
            "cpu_primary": cpu1[0] - cpu0[0],
            "cpu_backup": max(cpu1[1] - cpu0[1] - poll_cost * polled, 0.0),
            "complete": reached is not None,
        }


def resync(impl_class, n: int, prefix: str) -> dict[str, float]:
    with Topology(firewalls=2, prefix=prefix) as topo:
        fw1, fw2 = topo.fw(1), topo.fw(2)
        impl = impl_class(topo)
        load_s = load_flows(topo, fw1, n)
        p1 = impl.start(fw1)
        wait_started(impl, fw1)
        impl.make_primary(fw1)
        time.sleep(3.0)  # the primary runs alone (its peer is dead) when the backup starts
        cpu_p0 = cpu_seconds(p1)
        started = time.time()
        p2 = impl.start(fw2)
        wait_started(impl, fw2)
        up = time.time()
        impl.request_resync(fw2)
        requested = time.time()
        reached, _ = poll_until(impl, fw2, n, 60, period=0.002)
        final = impl.external(fw2)
        return {
            "flows": n,
            "load_s": load_s,
            "from_start_s": (reached - started) if reached else float("nan"),
            "from_request_s": (reached - requested) if reached else float("nan"),
            "startup_s": up - started,
            "arrived": final,
            "cpu_primary": cpu_seconds(p1) - cpu_p0,
            "cpu_backup": cpu_seconds(p2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rate", type=float, default=1000.0, help="new flows per second (steady load)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--impls", default="snep,conntrackd")
    args = parser.parse_args()
    reason = netns.available()
    if reason:
        print(f"bench_e2e: skipped: {reason}")
        return 0
    impls = {"snep": Snep, "conntrackd": Conntrackd}
    chosen = [impls[name] for name in args.impls.split(",")]
    tag = f"snepb-{os.getpid()}"

    print(f"== event sync latency: {args.rate:g} new UDP flows/s for {args.seconds:g} s, fw1 -> fw2's external cache ==")
    print("(CPU: user+system seconds of each daemon during the load; the backup's figure has the cost of")
    print(" the polling, measured alone beforehand, subtracted)")
    print(f"{'impl':<11} {'median ms':>10} {'p99 ms':>8} {'arrived':>12} {'poll ms':>8} {'CPU prim s':>10} {'CPU back s':>10}")
    for k, impl in enumerate(chosen):
        r = latency(impl, args.rate, args.seconds, f"{tag}-l{k}")
        print(f"{impl.name:<11} {r['median_ms']:>10.2f} {r['p99_ms']:>8.2f} {r['arrived']:>5}/{r['flows']:<6} "
              f"{r['poll_ms']:>8.2f} {r['cpu_primary']:>10.2f} {r['cpu_backup']:>10.2f}")

    print()
    print("== resync of existing flows to a freshly started backup ==")
    print("(from start: process start -> all flows in the external cache; from request: resync request ->")
    print(" all flows; CPU: primary during the resync, backup since its start, polling every 2 ms included)")
    print(f"{'impl':<11} {'flows':>7} {'from start s':>12} {'from request s':>14} {'arrived':>8} {'CPU prim s':>10} {'CPU back s':>10}")
    for n in (int(x) for x in args.sizes.split(",")):
        for k, impl in enumerate(chosen):
            r = resync(impl, n, f"{tag}-r{k}")
            print(f"{impl.name:<11} {n:>7} {r['from_start_s']:>12.3f} {r['from_request_s']:>14.3f} {r['arrived']:>8} "
                  f"{r['cpu_primary']:>10.2f} {r['cpu_backup']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
