"""End-to-end figures of snep beside conntrackd (FT-FW over UDP), same machine, same run.

1. Event sync latency under a steady load: UDP flows created through fw1 (the client
   sends to a new server port every 1/rate s) -> the flow is in fw2's external cache.
   Median and 99th percentile. The backup's external cache size is polled over its
   control socket, by both the same way (one request per connection; conntrackd's is
   what ``conntrackd -s cache`` sends, without starting a process for each); the poll
   period is printed as the resolution of the figure. The CPU figures are of a first
   load that nobody polls (a poll costs the backup CPU), the latency of a second.
2. Resync: N existing flows (``conntrack -R``) in fw1's kernel, primary running; a
   freshly started backup on fw2 until its external cache holds all N: from process
   start, and from the resync request (snep requests one at start; conntrackd is sent
   ``-n`` once its socket answers).

3. Resync on request: the backup's external cache emptied (``snep ctl flush external``,
   ``conntrackd -f external``) and a resync requested (snep's flush asks by itself,
   conntrackd is sent ``-n``), until it holds all N again. This is the figure "from
   request": a freshly started conntrackd is complete before its socket answers (it
   asks at start), so the fresh start's "from request" says nothing about it.
4. Highest sustained rate: new flows/s in steps, each step's flows all in the
   backup's external cache within a few seconds, nothing lost; the generator's own
   rate is printed (it shares the two cores).
5. Control latency (snep): ``snep ctl ready`` round trips, every 10 ms, on both
   nodes while the backup takes a resync of N, and on the primary while it dumps
   its kernel's N entries (``snep ctl resync``): the worst and the 99th percentile.

CPU time (user+system, from /proc) of both daemons is printed for each phase, and
per event; datagrams and bytes are the sync interface's counters (y0). Ratios are
snep / conntrackd, same run (below 1: snep does better).
Usage: ``python bench/bench_e2e.py [--sizes 100000,200000] [--rates 2000,20000]
[--seconds 5] [--ladder 5000,10000,20000,40000]`` (root; namespaces prefixed snepb-).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from snep.lab import netns
from snep.lab.conformance.impls import ConntrackdImpl, conntrackd_socket
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
    if i and i % 40000 == 0:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another source port: new tuples
    times.append(time.time())  # before: the entry is made during sendto (softirq)
    s.sendto(b"x", (server, 20000 + i % 40000))
print(json.dumps(times))
"""


def wakeups(pid: int) -> int:
    """The process's voluntary context switches so far: each a sleep ended by a wake-up
    (an fd readable, a timer), the cost a paced or batched read saves."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
    return int(match.group(1)) if match else 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def link_counters(topo: Topology, fw: Firewall) -> tuple[int, int]:
    """(datagrams, bytes) sent on ``fw``'s sync interface so far."""
    out = topo.exec(fw.ns, ["cat", "/sys/class/net/y0/statistics/tx_packets", "/sys/class/net/y0/statistics/tx_bytes"]).stdout
    packets, octets = out.split()
    return int(packets), int(octets)


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

    #: like conntrackd's FT-FW with its external cache: the backup's kernel is not written
    #: before a takeover (``snep-warm``: snep's default, a kernel write per event on the backup)
    warm = False
    #: sync.mtu and sync.bulk_mtu (--mtu, --bulk-mtu; None: the defaults)
    mtu: int | None = None
    bulk_mtu: int | None = None

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        options = NodeOptions(alive_interval=0.5, peer_dead_timeout=2.0, inject_on_arrival=self.warm, mtu=self.mtu,
                              bulk_mtu=self.bulk_mtu)
        self.cluster = SnepCluster(topo, options)

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

    def flush_and_request(self, fw: Firewall) -> None:
        # (conntrackd -f external: the external cache emptied, and a dump asked for; a
        # plain flush would also empty the internal cache and dump this kernel, which
        # in the lab's namespaces walks the primary's entries too: one table for all)
        self.cluster.ctl(fw, "flush", "external")

    def external(self, fw: Firewall) -> int:
        return int(request(self.cluster.socket(fw), "status", timeout=5)["external"])

    def stop(self, fw: Firewall) -> None:
        self.cluster.stop(fw)


class SnepWarm(Snep):
    """snep as it runs by default: the peers' states go into the backup's kernel as they arrive."""

    name = "snep-warm"
    warm = True


class BigConntrackd(ConntrackdImpl):
    """The conformance suite's conntrackd, with room for the largest resync (HashLimit)."""

    def write_conf(self, topo: Topology, fw: Firewall) -> Path:
        path = super().write_conf(topo, fw)
        path.write_text(re.sub(r"HashLimit \d+", "HashLimit 1048576", path.read_text()))
        return path


#: conntrackd's UNIX socket request for ``conntrackd -s cache`` (the request is one
#: native int; the answer is text until the daemon closes the connection)
CONNTRACKD_STATS_CACHE = 29


class Conntrackd:
    name = "conntrackd"

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.impl = BigConntrackd()

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

    def flush_and_request(self, fw: Firewall) -> None:
        self.topo.exec(fw.ns, ["conntrackd", "-C", str(self.impl.conf_path(fw)), "-f", "external"])
        self.request_resync(fw)

    def external(self, fw: Firewall) -> int:
        # (spoken directly, as snep's is: ``conntrackd -s cache`` starts a process per
        # poll, 5 ms, which would make conntrackd's latency the coarser figure)
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(conntrackd_socket(fw)))
                sock.sendall(struct.pack("=i", CONNTRACKD_STATS_CACHE))
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise ControlError(f"conntrackd's socket: {error}") from error
        match = re.search(r"cache:external\s+active objects:\s+(\d+)", b"".join(chunks).decode(errors="replace"))
        if match is None:
            raise ControlError("conntrackd's cache statistics without the external cache")
        return int(match.group(1))

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


def generate(topo: Topology, rate: float, seconds: float) -> list[float]:
    """New UDP flows through the primary at ``rate``/s; the send times."""
    gen = topo.exec(topo.client, [sys.executable, "-c", GENERATOR, topo.server_ip, str(rate), str(seconds)],
                    timeout=seconds + 60)
    return json.loads(gen.stdout)


def pair(topo: Topology, impl_class):  # type: ignore[no-untyped-def]
    """Both daemons started, fw1 primary with the addresses, fw2 backup; (impl, pids)."""
    fw1, fw2 = topo.fw(1), topo.fw(2)
    for fw in (fw1, fw2):  # unreplied UDP entries live long enough for every step
        topo.exec(fw.ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"], check=False)
    impl = impl_class(topo)
    pids = [impl.start(fw1), impl.start(fw2)]
    wait_started(impl, fw1)
    wait_started(impl, fw2)
    impl.make_primary(fw1)
    impl.make_backup(fw2)
    take_vips(topo, fw1)
    time.sleep(1.0)
    return impl, pids


def latency(impl_class, rate: float, seconds: float, prefix: str) -> dict[str, float]:
    """The load twice, each time new flows: first alone, for the CPU figures (a poll of
    the backup costs it CPU: nobody polls it until the generator is done), then with
    the backup polled all along, for the latency."""
    with Topology(firewalls=2, prefix=prefix) as topo:
        fw1, fw2 = topo.fw(1), topo.fw(2)
        impl, pids = pair(topo, impl_class)
        n = int(rate * seconds)
        base = impl.external(fw2)
        cpu0 = [cpu_seconds(p) for p in pids]
        wake0 = wakeups(pids[0])
        link0 = link_counters(topo, fw1)
        loaded = generate(topo, rate, seconds)
        reached, _ = poll_until(impl, fw2, base + 1 + n, 30, period=0.05)  # (+ the warm-up flow)
        cpu1 = [cpu_seconds(p) for p in pids]
        wake1 = wakeups(pids[0])
        link1 = link_counters(topo, fw1)

        base = impl.external(fw2)
        samples: list[tuple[float, int]] = []
        done = threading.Event()

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
        sent = generate(topo, rate, seconds)
        reached_too, _ = poll_until(impl, fw2, base + 1 + n, 30)
        done.set()
        thread.join()
        lat = []
        j = 0
        for i, t in enumerate(sent):
            while j < len(samples) and samples[j][1] < base + 1 + i + 1:  # + the warm-up flow
                j += 1
            if j == len(samples):
                break
            lat.append(samples[j][0] - t)
        periods = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
        lat.sort()
        return {
            "flows": n,
            "arrived": len(lat),
            "median_ms": statistics.median(lat) * 1000 if lat else float("nan"),
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
            "poll_ms": statistics.median(periods) * 1000 if periods else float("nan"),
            "cpu_primary": cpu1[0] - cpu0[0],
            "cpu_backup": cpu1[1] - cpu0[1],
            "datagrams": link1[0] - link0[0],
            "wakeups_primary": wake1 - wake0,
            "gen_rate": (len(loaded) - 1) / (loaded[-1] - loaded[0]) if len(loaded) > 1 else float("nan"),
            "complete": reached is not None and reached_too is not None,
        }


def ladder(impl_class, rates: list[float], seconds: float, prefix: str) -> list[tuple[float, float, bool]]:
    """Steps of rising rate in one pair: (rate, generator's rate, all arrived)."""
    results = []
    with Topology(firewalls=2, prefix=prefix) as topo:
        fw2 = topo.fw(2)
        impl, _ = pair(topo, impl_class)
        for rate in rates:
            base = impl.external(fw2)
            sent = generate(topo, rate, seconds)
            reached, _ = poll_until(impl, fw2, base + len(sent), 5.0, period=0.01)
            gen_rate = (len(sent) - 1) / (sent[-1] - sent[0])
            results.append((rate, gen_rate, reached is not None))
            if reached is None:
                break
            time.sleep(0.5)
    return results


def control_sampler(sock: Path, stop: threading.Event, out: list[float]) -> threading.Thread:
    """``ready`` round trips every 10 ms into ``out`` (seconds) until ``stop``."""

    def run() -> None:
        while not stop.is_set():
            before = time.monotonic()
            try:
                request(sock, "ready", timeout=10)
            except ControlError:
                pass
            out.append(time.monotonic() - before)
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def resync(impl_class, n: int, prefix: str, control: bool, poll: float = 0.002) -> dict[str, float]:
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
        reached, _ = poll_until(impl, fw2, n, 60, period=poll)
        result = {
            "flows": n,
            "load_s": load_s,
            "from_start_s": (reached - started) if reached else float("nan"),
            "fresh_request_s": (reached - requested) if reached else float("nan"),
            "startup_s": up - started,
            "cpu_primary": cpu_seconds(p1) - cpu_p0,
            "cpu_backup": cpu_seconds(p2),
        }
        time.sleep(1.0)
        # the resync on request: the backup's external cache emptied, a dump asked for
        cpu0 = [cpu_seconds(p1), cpu_seconds(p2)]
        link0 = link_counters(topo, fw1)
        requested = time.time()
        impl.flush_and_request(fw2)
        reached, _ = poll_until(impl, fw2, n, 60, period=poll)
        link1 = link_counters(topo, fw1)
        result.update({
            "request_s": (reached - requested) if reached else float("nan"),
            "req_cpu_primary": cpu_seconds(p1) - cpu0[0],
            "req_cpu_backup": cpu_seconds(p2) - cpu0[1],
            "bytes_per_entry": (link1[1] - link0[1]) / n,
            "arrived": impl.external(fw2),
        })
        if control:  # (snep) control latency while the backup takes a resync, then while the primary dumps its kernel
            time.sleep(1.0)
            stop = threading.Event()
            rtts: list[float] = []
            threads = [control_sampler(impl.cluster.socket(fw), stop, rtts) for fw in (fw1, fw2)]
            impl.flush_and_request(fw2)
            poll_until(impl, fw2, n, 60, period=0.01)
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
            dump_rtts: list[float] = []
            stop = threading.Event()
            thread = control_sampler(impl.cluster.socket(fw1), stop, dump_rtts)
            time.sleep(0.05)
            impl.cluster.ctl(fw1, "resync")
            time.sleep(0.2)
            stop.set()
            thread.join()
            rtts.sort()
            result.update({
                "ctl_resync_max_ms": max(rtts) * 1000,
                "ctl_resync_p99_ms": rtts[int(len(rtts) * 0.99) - 1] * 1000,
                "ctl_kernel_dump_max_ms": max(dump_rtts) * 1000,
            })
        return result


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,200000", help="flows of the resync runs ('' for none)")
    parser.add_argument("--rates", default="2000,20000", help="new flows per second (steady load), one run each")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ladder", default="5000,10000,20000,40000", help="rates of the sustained-rate steps ('' for none)")
    parser.add_argument("--impls", default="snep,conntrackd", help="of snep, snep-warm, conntrackd")
    parser.add_argument("--mtu", type=int, default=None,
                        help="snep's sync.mtu (default: the config's); above the link's 1500 the frames are IP-fragmented")
    parser.add_argument("--bulk-mtu", type=int, default=None,
                        help="snep's sync.bulk_mtu, the frames of a dump (default: the config's, 16384; 1472: never fragmented)")
    parser.add_argument("--poll", type=float, default=0.002,
                        help="seconds between polls of the backup's external cache in the resync runs (snep answers each "
                             "poll in its own loop: at 0.002 s the polls take a tenth of its core, conntrackd's answer in C)")
    args = parser.parse_args()
    reason = netns.available()
    if reason:
        print(f"bench_e2e: skipped: {reason}")
        return 0
    Snep.mtu, Snep.bulk_mtu = args.mtu, args.bulk_mtu
    impls = {"snep": Snep, "snep-warm": SnepWarm, "conntrackd": Conntrackd}
    chosen = [impls[name] for name in args.impls.split(",")]
    tag = f"snepb-{os.getpid()}"
    print(f"bench_e2e {time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename} ({os.uname().release}, {os.cpu_count()} CPUs)"
          + (f", snep's sync.mtu {args.mtu}" if args.mtu else "")
          + (f", snep's sync.bulk_mtu {args.bulk_mtu}" if args.bulk_mtu else ""))

    for rate in (float(x) for x in args.rates.split(",") if x):
        print()
        print(f"== event sync: {rate:g} new UDP flows/s for {args.seconds:g} s, fw1 -> fw2's external cache ==")
        print("(CPU: user+system of each daemon during a first load, nobody polling the backup; latency: a second")
        print(" load, new flows, the backup polled all along; CPU per event in us; datagrams: sent on the primary's")
        print(" sync interface, per event; wake/ev: the primary's voluntary context switches per event)")
        print(f"{'impl':<11} {'median ms':>9} {'p99 ms':>7} {'arrived':>13} {'poll ms':>7} {'gen/s':>7} "
              f"{'CPU prim s':>10} {'CPU back s':>10} {'us/ev prim':>10} {'us/ev back':>10} {'dgram/ev':>8} {'wake/ev':>7}")
        rows = {}
        for k, impl in enumerate(chosen):
            r = latency(impl, rate, args.seconds, f"{tag}-l{k}")
            n = max(r["flows"], 1)
            r["us_primary"], r["us_backup"] = r["cpu_primary"] / n * 1e6, r["cpu_backup"] / n * 1e6
            rows[impl.name] = r
            print(f"{impl.name:<11} {r['median_ms']:>9.2f} {r['p99_ms']:>7.2f} {r['arrived']:>6}/{r['flows']:<6} "
                  f"{r['poll_ms']:>7.2f} {r['gen_rate']:>7.0f} {r['cpu_primary']:>10.2f} {r['cpu_backup']:>10.2f} "
                  f"{r['us_primary']:>10.1f} {r['us_backup']:>10.1f} {r['datagrams'] / n:>8.3f} {r['wakeups_primary'] / n:>7.3f}")
        if "snep" in rows and "snep-warm" in rows:
            s, w = rows["snep"], rows["snep-warm"]
            print(f"ratio snep-warm/snep: CPU per event primary {ratio(w['us_primary'], s['us_primary'])}, "
                  f"backup {ratio(w['us_backup'], s['us_backup'])} (the backup's kernel writes)")
        if "snep" in rows and "conntrackd" in rows:
            s, c = rows["snep"], rows["conntrackd"]
            print(f"ratio snep/conntrackd: CPU per event primary {ratio(s['us_primary'], c['us_primary'])}, "
                  f"backup {ratio(s['us_backup'], c['us_backup'])}, median latency {ratio(s['median_ms'], c['median_ms'])}")

    rates = [float(x) for x in args.ladder.split(",") if x]
    if rates:
        print()
        print(f"== highest sustained rate: steps of {args.ladder} new flows/s, 3 s each; a step passes when all")
        print("   its flows are in the backup's external cache within 5 s ==")
        best = {}
        for k, impl in enumerate(chosen):
            steps = ladder(impl, rates, 3.0, f"{tag}-s{k}")
            passed = [gen for rate, gen, ok in steps if ok]
            best[impl.name] = max(passed) if passed else 0.0
            shown = ", ".join(f"{rate:g} (gen {gen:.0f}/s) {'ok' if ok else 'LOST'}" for rate, gen, ok in steps)
            print(f"{impl.name:<11} highest with nothing lost: {best[impl.name]:.0f}/s   [{shown}]")
        if "snep" in best and "conntrackd" in best:
            print(f"ratio snep/conntrackd: highest sustained rate {ratio(best['snep'], best['conntrackd'])} (above 1: snep does better)")

    sizes = [int(x) for x in args.sizes.split(",") if x]
    if not sizes:
        return 0
    print()
    print("== resync of N existing flows ==")
    print("(fresh: a backup started while the primary holds N: from process start, and from the moment its")
    print(" socket answers; request: the backup's external cache emptied and a resync asked for, until all N")
    print(" are back, CPU of each side during it, bytes sent on the sync interface per entry;")
    print(f" the backup polled every {args.poll * 1000:g} ms)")
    print(f"{'impl':<11} {'flows':>7} {'fresh s':>8} {'fresh req s':>11} {'request s':>9} {'CPU prim s':>10} "
          f"{'CPU back s':>10} {'bytes/entry':>11} {'arrived':>8}")
    for n in sizes:
        rows = {}
        for k, impl in enumerate(chosen):
            r = resync(impl, n, f"{tag}-r{k}", control=issubclass(impl, Snep), poll=args.poll)
            rows[impl.name] = r
            print(f"{impl.name:<11} {n:>7} {r['from_start_s']:>8.3f} {r['fresh_request_s']:>11.3f} {r['request_s']:>9.3f} "
                  f"{r['req_cpu_primary']:>10.2f} {r['req_cpu_backup']:>10.2f} {r['bytes_per_entry']:>11.1f} {r['arrived']:>8}")
        if "snep" in rows:
            r = rows["snep"]
            print(f"snep control latency (ready): during the resync of {n}: max {r['ctl_resync_max_ms']:.1f} ms, "
                  f"p99 {r['ctl_resync_p99_ms']:.1f} ms; during the primary's kernel dump of {n}: max {r['ctl_kernel_dump_max_ms']:.1f} ms")
        if "snep" in rows and "conntrackd" in rows:
            s, c = rows["snep"], rows["conntrackd"]
            print(f"ratio snep/conntrackd ({n}): resync from request {ratio(s['request_s'], c['request_s'])}, "
                  f"fresh from start {ratio(s['from_start_s'], c['from_start_s'])}, "
                  f"CPU primary {ratio(s['req_cpu_primary'], c['req_cpu_primary'])}, backup {ratio(s['req_cpu_backup'], c['req_cpu_backup'])}, "
                  f"bytes/entry {ratio(s['bytes_per_entry'], c['bytes_per_entry'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
