"""Takeover with keepalived, commit on promotion vs inject-on-arrival (no commit).

keepalived brings the virtual addresses up while the notify script runs (keepalived
issue 2254): with the commit path, packets that arrive in between meet a kernel that
does not know the connections yet. ``[kernel] inject_on_arrival`` writes the states
into the backup's kernel as they arrive, so there is nothing to commit. For each mode
the demo's failover (fw1 killed, fw2 promoted by keepalived) runs ``--runs`` times and
prints: TCP connections surviving, the data gap, the promotion time and how long after
the virtual addresses came up the promotion finished.

Usage: ``python bench/bench_takeover.py [--runs 2] [--tcp 20]`` (root).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from snep.lab import netns
from snep.lab.demo import NodeOptions, failover_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tcp", type=int, default=20)
    args = parser.parse_args()
    reason = netns.available()
    if reason:
        print(f"bench_takeover: skipped: {reason}")
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
