"""``snep conformance``: replay the failure scenarios on real kernels, per implementation.

Needs root (network namespaces, nftables, keepalived). Prints the side-by-side table;
``--report DIR`` also writes it as Markdown and JSON. Exit status 1 when a scenario
broke (error) or when an implementation other than ``none`` failed one (``none`` is
expected to fail: it proves that the suite can).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from snep.lab.conformance import report
from snep.lab.conformance.impls import IMPLS
from snep.lab.conformance.profile import PROFILES
from snep.lab.conformance.scenarios import NAMES, SCENARIOS, run_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", action="append", choices=list(IMPLS),
                        help="implementation under test; repeat for several (default: snep)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="scenario to run; repeat for several (default: all). "
                             f"Known: {', '.join(NAMES)}")
    parser.add_argument("--no-netem", action="store_true",
                        help="skip the +netem variants when running all scenarios")
    parser.add_argument("--profile", choices=list(PROFILES), default="ci",
                        help="traffic and phase lengths (default ci)")
    parser.add_argument("--full", action="store_true", help="same as --profile full")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write conformance.md and conformance.json into DIR")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep each run's directory (configs, daemon logs) in /tmp")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")


def main(args: argparse.Namespace) -> int:
    if args.list:
        for s in SCENARIOS.values():
            also = "" if s.active_active else f"; also {s.name}+netem"
            print(f"{s.name:24} {s.summary} ({s.firewalls} firewalls{also})")
        return 0
    if os.geteuid() != 0:
        print("snep conformance: needs root (network namespaces, nftables, keepalived)",
              file=sys.stderr)
        return 2
    impls = args.impl or ["snep"]
    names = args.scenario or [n for n in NAMES if not (args.no_netem and n.endswith("+netem"))]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"snep conformance: unknown scenario {unknown[0]!r} (known: {', '.join(NAMES)})",
              file=sys.stderr)
        return 2
    profile = PROFILES["full" if args.full else args.profile]
    results = []
    for name in names:
        for impl in impls:
            result = run_scenario(name, impl, profile, keep_logs=args.keep_logs)
            results.append(result)
            print(f"{name:32} {impl:11} {result.status:5} {result.duration_s:6.1f} s  "
                  f"{report.cell(result)}", flush=True)
            if result.status == "error":
                print(result.logs, file=sys.stderr)
    print()
    print(report.side_by_side(results))
    if args.report:
        md, js = report.write(results, profile.name, args.report)
        print(f"\nreport: {md} {js}")
    bad = [r for r in results if r.status == "error" or (r.status == "fail" and r.impl != "none")]
    return 1 if bad else 0
