"""Takeover: the promotion at 100,000 entries beside ``conntrackd -c``, then with keepalived.

1. Promotion of a backup holding ``--entries`` synchronized entries (in-process, its
   kernel the netlink table of a namespace), timed from the MASTER transition
   (``Driver.role_change``) to PRIMARY with the kernel complete (the moment the node
   asks for the kernel dump that loads its internal cache: the commit, if any, is
   done then), and to the end of the transition (dump loaded, bulk dump started).
   Warm: inject_on_arrival, the states are already in the kernel (target <= 5 ms).
   Cold: the commit of the external cache into an empty table, beside ``conntrackd
   -c`` of as many entries in the same run (bench_kernel's two conntrackd).
2. The keepalived failover (``--runs``; ``--no-failover`` skips it):

keepalived brings the virtual addresses up while the notify script runs (keepalived
issue 2254): with the commit path, packets that arrive in between meet a kernel that
does not know the connections yet. ``[kernel] inject_on_arrival`` writes the states
into the backup's kernel as they arrive, so there is nothing to commit. For each mode
the demo's failover (fw1 killed, fw2 promoted by keepalived) runs ``--runs`` times and
prints: TCP connections surviving, the data gap, the promotion time and how long after
the virtual addresses came up the promotion finished.

Usage: ``python bench/bench_takeover.py [--entries 100000] [--runs 2] [--tcp 20]`` (root).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bench_kernel  # (beside this file: its entries and its two-conntrackd commit)

from snep.entry import Event, EventKind
from snep.fsm.driver import Driver
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.kernel.netlink import NetlinkKernel
from snep.lab import netns
from snep.lab.demo import NodeOptions, failover_run


class TimedKernel:
    """The netlink table, with the moment the node asked for a dump (the commit before
    it is done: the promoted node is PRIMARY with its kernel complete)."""

    def __init__(self, kernel: NetlinkKernel) -> None:
        self.kernel = kernel
        self.dump_asked: float | None = None

    def apply(self, events, *, replace=False):  # type: ignore[no-untyped-def]
        return self.kernel.apply(events, replace=replace)

    def apply_records(self, records, *, replace=False):  # type: ignore[no-untyped-def]
        return self.kernel.apply_records(records, replace=replace)

    def dump(self):  # type: ignore[no-untyped-def]
        if self.dump_asked is None:
            self.dump_asked = time.perf_counter()
        return self.kernel.dump()

    def shorten_timeouts(self, timeout, keys=None):  # type: ignore[no-untyped-def]
        return self.kernel.shorten_timeouts(timeout, keys)

    def read_events(self):  # type: ignore[no-untyped-def]
        return self.kernel.read_events()

    def resync(self, known):  # type: ignore[no-untyped-def]
        return self.kernel.resync(known)


class QuietHost:
    def __init__(self, state: Path) -> None:
        self.state = state

    def send(self, peers, data) -> None:  # type: ignore[no-untyped-def]
        pass

    def persist(self, epoch) -> None:  # type: ignore[no-untyped-def]
        self.state.write_text(f"{epoch.term} {epoch.node}")  # (a write, as the daemon's)

    def report(self, output) -> None:  # type: ignore[no-untyped-def]
        pass

    def call_later(self, delay, callback) -> None:  # type: ignore[no-untyped-def]
        pass


def promote_once(ns: str, n: int, warm: bool, tmp: Path) -> tuple[float, float, int]:
    """(ms to PRIMARY with the kernel complete, ms to the end of the transition, kernel entries)."""
    entries = bench_kernel.entries(n)
    with NetlinkKernel(ns) as kernel:
        kernel.flush()
        time.sleep(0.5)  # (the kernel frees the flushed entries)
        if warm:  # inject_on_arrival: the states went into the kernel as they arrived
            assert kernel.apply([Event(EventKind.NEW, e) for e in entries]).created == n
        timed = TimedKernel(kernel)
        node = SyncNode(1, [2], SyncParams(inject_on_arrival=warm), session=1)
        driver = Driver(node, timed, QuietHost(tmp / "state"))
        driver.start(0.0)
        node.role.fire("synced")  # (a complete dump arrived: BACKUP, its external cache ...)
        node.external.replace(entries)  # (... holds the primary's n entries)
        timed.dump_asked = None
        started = time.perf_counter()
        driver.role_change(1.0, "primary")
        ended = time.perf_counter()
        assert node.state.name == "PRIMARY" and timed.dump_asked is not None
        count = kernel.count()
        kernel.flush()
    return (timed.dump_asked - started) * 1000, (ended - started) * 1000, count


def bench_promotion(n: int, runs: int) -> None:
    print(f"== promotion of a backup holding {n:,} synchronized entries ({runs} runs, median) ==")
    with netns.namespace(bench_kernel.NS_BACKUP), tempfile.TemporaryDirectory() as tmp:
        netns.conntrack_ready(bench_kernel.NS_BACKUP)
        cold_commit: list[tuple[float, float]] = []
        for warm in (True, False):
            results = []
            for _ in range(runs):
                cpu = time.process_time()
                to_primary, total, count = promote_once(bench_kernel.NS_BACKUP, n, warm, Path(tmp))
                results.append((to_primary, total))
                assert count == n, f"the kernel holds {count:,} of {n:,} after the promotion"
                if not warm:
                    cold_commit.append((to_primary / 1000, time.process_time() - cpu))
            name = "warm (inject_on_arrival)" if warm else "cold (commit)"
            print(f"  {name:<25} to PRIMARY, kernel complete: {statistics.median(r[0] for r in results):9.1f} ms"
                  f"   whole transition (internal cache dump, bulk start): {statistics.median(r[1] for r in results):8.1f} ms")
        print("  cold commit beside conntrackd -c (wall s, CPU s; snep's CPU includes the bench's set-up):")
        bench_kernel._bench_conntrackd_commit(n, bench_kernel.median_pair(cold_commit))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--promotions", type=int, default=3, help="runs of each promotion mode")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tcp", type=int, default=20)
    parser.add_argument("--no-failover", action="store_true", help="only the promotion figures")
    args = parser.parse_args()
    reason = netns.available()
    if reason:
        print(f"bench_takeover: skipped: {reason}")
        return 0
    bench_promotion(args.entries, args.promotions)
    if args.no_failover:
        return 0
    print(f"== takeover with keepalived (advert_int 1), {args.tcp} TCP connections, {args.runs} runs per mode ==")
    print(f"{'mode':<18} {'survived':>9} {'gap median s':>13} {'gap max s':>10} {'promotion ms':>13} {'after VIP ms':>13}")
    for k, inject in enumerate((False, True)):
        results = [
            failover_run(True, tcp=args.tcp, udp=0, watch=7.0, options=NodeOptions(inject_on_arrival=inject),
                         say=lambda _line: None, prefix=f"snepb-{os.getpid()}-t{k}{i}")
            for i in range(args.runs)
        ]
        survived = sum(r.flows.tcp_after for r in results)
        total = sum(r.flows.tcp_total for r in results)
        gaps = [r.flows.median_gap for r in results if r.flows.median_gap is not None]
        maxes = [r.flows.max_gap for r in results if r.flows.max_gap is not None]
        promo = [float(r.commit.get("seconds", 0)) * 1000 for r in results if r.commit]
        lags = [r.commit_lag * 1000 for r in results if r.commit_lag is not None]
        name = "inject-on-arrival" if inject else "commit on promote"

        def med(values: list[float], fmt: str) -> str:
            return format(statistics.median(values), fmt) if values else "-"

        print(f"{name:<18} {survived:>4}/{total:<4} {med(gaps, '.2f'):>13} {med(maxes, '.2f'):>10} "
              f"{med(promo, '.1f'):>13} {med(lags, '.0f'):>13}")
    print("(after VIP: when fw2's promotion finished relative to the moment its virtual addresses were")
    print(" seen up, polled every 50 ms; negative means the commit was done first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
