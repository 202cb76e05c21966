"""What NFQUEUE with a verdict from Python costs a connection's first packet.

Two namespaces joined by a veth pair; the server's input hook queues UDP to one port
(the first packet of each connection only) and not to another. The client sends one
datagram from a fresh source port (a new connection) and waits for the kernel's ICMP
port unreachable, with and without the queue; the queue's listener (a separate
process, as the daemon would be: snep.kernel.nfqueue) accepts every packet at once.
Printed: the first packet's added round-trip latency (median, p99), the listener's CPU
time per queued packet, and the packets per second it sustains under a flood (every
packet queued), with one verdict per packet and with batch verdicts. Root only;
figures, no asserts.

    python bench/bench_defer.py [--samples 500] [--flood 30000]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from snep.fsm.defer import Verdict
from snep.kernel.nfqueue import NfQueue
from snep.lab import netns

CLIENT, SERVER = "10.79.0.1", "10.79.0.2"
PORT_QUEUED, PORT_PLAIN, PORT_FLOOD = 9, 11, 10
Q_NEW, Q_FLOOD = 21, 22


def worker(queue: int, ns: str, batch: bool) -> None:
    """The listener: accept everything at once; on a line (or EOF) on stdin, report."""
    q = NfQueue(queue, ns, max_len=8192)
    print("ready", flush=True)
    packets = 0
    first = last = 0.0
    cpu0 = time.process_time()
    while True:
        ready = select.select([q, sys.stdin], [], [])[0]
        if sys.stdin in ready:
            break
        got = q.receive()
        if not got:
            continue
        now = time.perf_counter()
        if not packets:
            first = now
        last = now
        packets += len(got)
        if batch:
            q.verdict_batch(max(p.packet_id for p in got), Verdict.ACCEPT)
        else:
            q.verdicts([(p.packet_id, Verdict.ACCEPT) for p in got])
    cpu = time.process_time() - cpu0
    print(json.dumps({"packets": packets, "cpu": cpu, "span": last - first, **q.counters.as_dict()}), flush=True)
    q.close()


def start_worker(queue: int, ns: str, batch: bool) -> subprocess.Popen[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--worker", str(queue), "--netns", ns]
    if batch:
        argv.append("--batch")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("the listener did not start")
    return proc


def stop_worker(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate("stop\n", timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def udp_sockets(count: int) -> list[socket.socket]:
    return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]


def round_trips(client: str, port: int, n: int) -> list[float]:
    """Seconds from sending a datagram (a new connection) to its ICMP port unreachable,
    for each of ``n`` new connections (one lost in 2 s is left out)."""
    out = []
    for start in range(0, n, 100):
        count = min(100, n - start)
        socks = netns.call_in(client, functools.partial(udp_sockets, count))
        for s in socks:
            s.settimeout(2)
            s.connect((SERVER, port))
            t0 = time.perf_counter()
            s.send(b"x")
            try:
                s.recv(10)
            except ConnectionRefusedError:
                out.append(time.perf_counter() - t0)
            except TimeoutError:
                pass  # lost: not counted
            s.close()
    return out


def flood(client: str, n: int) -> float:
    s = netns.call_in(client, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.connect((SERVER, PORT_FLOOD))
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            s.send(b"x" * 16)
        except ConnectionRefusedError:
            pass
    s.close()
    return time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--flood", type=int, default=30000)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--netns", help=argparse.SUPPRESS)
    parser.add_argument("--batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.netns, args.batch)
        return
    reason = netns.available()
    if reason is not None:
        print(f"bench_defer: skipped ({reason})")
        return
    client, server = f"snepb-c{os.getpid()}", f"snepb-s{os.getpid()}"
    procs: list[subprocess.Popen[str]] = []
    try:
        netns.create(client)
        netns.create(server)
        netns.veth(client, "vc", server, "vs")
        netns.address(client, "vc", CLIENT + "/24")
        netns.address(server, "vs", SERVER + "/24")
        netns.conntrack_ready(server)
        for key, value in (("net.ipv4.icmp_ratelimit", 0), ("net.ipv4.icmp_msgs_per_sec", 1000000)):
            netns.run_in(server, ["sysctl", "-q", "-w", f"{key}={value}"], check=False)
        backend = netns.queue_rule(server, Q_NEW, dport=PORT_QUEUED)
        netns.queue_rule(server, Q_FLOOD, dport=PORT_FLOOD, new_only=False)
        print(f"NFQUEUE, verdicts from Python ({backend} rule; python {sys.version.split()[0]}; "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

        procs.append(start_worker(Q_NEW, server, batch=False))
        plain: list[float] = []
        queued: list[float] = []
        for start in range(0, args.samples, 100):  # interleaved: the load changes as we go
            plain += round_trips(client, PORT_PLAIN, min(100, args.samples - start))
            queued += round_trips(client, PORT_QUEUED, min(100, args.samples - start))
        stats = stop_worker(procs.pop())
        added_median = statistics.median(queued) - statistics.median(plain)
        added_p99 = pct(queued, 99) - pct(plain, 99)
        print(f"  first packet round trip, {args.samples} new connections each "
              f"({args.samples - len(plain)} and {args.samples - len(queued)} lost):")
        print(f"    not queued: median {statistics.median(plain) * 1e6:.0f} us, p99 {pct(plain, 99) * 1e6:.0f} us")
        print(f"    queued:     median {statistics.median(queued) * 1e6:.0f} us, p99 {pct(queued, 99) * 1e6:.0f} us")
        print(f"    added:      median {added_median * 1e6:.0f} us, p99 {added_p99 * 1e6:.0f} us")
        print(f"  listener CPU per queued packet, one at a time: "
              f"{stats['cpu'] / max(1, stats['packets']) * 1e6:.0f} us ({stats['packets']:.0f} packets)")

        for batch in (False, True):
            procs.append(start_worker(Q_FLOOD, server, batch=batch))
            sent_time = flood(client, args.flood)
            time.sleep(0.5)  # the last verdicts
            stats = stop_worker(procs.pop())
            rate = stats["packets"] / stats["span"] if stats["span"] else 0.0
            how = "batch verdicts" if batch else "one verdict per packet"
            print(f"  flood of {args.flood} packets ({args.flood / sent_time:,.0f}/s sent), {how}: "
                  f"{stats['packets']:.0f} queued and accepted, {rate:,.0f} packets/s, "
                  f"CPU {stats['cpu'] / max(1, stats['packets']) * 1e6:.1f} us/packet, "
                  f"overruns {stats['overruns']:.0f}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        netns.delete(client)
        netns.delete(server)


if __name__ == "__main__":
    main()
