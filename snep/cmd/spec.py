"""``snep spec``: model-check the TLA+ spec (spec/) with TLC.

- ``snep spec list``: the models of spec/models.toml and what TLC must say;
- ``snep spec check [MODEL ...]``: run TLC on them (all but the slow ones when none is
  named; ``--all`` includes the slow ones) and report per model and per property;
- ``snep spec mutants [MUTANT ...]``: plant each fault of spec/mutants/ in a scratch
  copy of the spec and run the models that must catch it (snep/lab/mutants.py);
- ``snep spec trace-check TRACE.json``: is a trace of the model tests a behaviour of
  the spec (spec/Trace.tla; snep/lab/tracecheck.py)?

Exit status: 0 when every model gave its expected verdict (every mutant was caught),
1 when one did not, 3 when TLC cannot run (TLA2TOOLS_JAR unset, missing or
unreadable; no java).
"""

from __future__ import annotations

import argparse
import sys

from snep.lab import tlc

EXIT_UNAVAILABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the models and their expected verdicts")
    check = sub.add_parser("check", help="run TLC on the models")
    check.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: all)")
    check.add_argument("--all", action="store_true", help="include the slow models")
    check.add_argument("--workers", type=int, default=2, help="TLC worker threads (default 2)")
    check.add_argument("--heap", default="2g", help="Java heap for TLC (default 2g)")
    check.add_argument(
        "--timeout", type=float, default=None, help="seconds before a TLC run is killed"
    )
    mutants = sub.add_parser("mutants", help="plant the spec's mutants and check that the models catch each")
    mutants.add_argument("mutants", nargs="*", metavar="MUTANT", help="mutant names (default: all)")
    mutants.add_argument("--workers", type=int, default=2, help="TLC worker threads (default 2)")
    mutants.add_argument("--heap", default="2g", help="Java heap for TLC (default 2g)")
    mutants.add_argument("--timeout", type=float, default=None, help="seconds before a TLC run is killed")
    trace = sub.add_parser(
        "trace-check", help="check a model-test trace (JSON) against the spec (spec/Trace.tla)"
    )
    trace.add_argument("trace", metavar="TRACE.json", help="a trace written by the model tests")
    trace.add_argument("--timeout", type=float, default=None, help="seconds before TLC is killed")


def main(args: argparse.Namespace) -> int:
    if args.action == "trace-check":
        from snep.lab import tracecheck

        return tracecheck.main(args)
    models = tlc.load_models()
    if args.action == "list":
        return _list(models)
    if args.action == "mutants":
        return _mutants(args, models)
    selected = tlc.select(models, args.models)
    if not args.models and not args.all:
        selected = [model for model in selected if not model.slow]
    try:
        jar = tlc.find_jar()
        tlc.find_java()
    except tlc.TlcUnavailable as error:
        print(f"snep spec check: cannot run TLC: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    failed = 0
    for model in selected:
        print(f"{model.name}: running TLC ({model.module}.tla, {model.specification}) ...", flush=True)
        result = tlc.check_model(
            model, jar=jar, workers=args.workers, heap=args.heap, timeout=args.timeout
        )
        _report(result)
        failed += not result.ok
    print(f"{len(selected) - failed}/{len(selected)} models as expected")
    return 1 if failed else 0


def _mutants(args: argparse.Namespace, models: list[tlc.Model]) -> int:
    from snep.lab import mutants as mutation

    planted = mutation.load_mutants()
    if args.mutants:
        by_name = {mutant.name: mutant for mutant in planted}
        unknown = [name for name in args.mutants if name not in by_name]
        if unknown:
            print(f"snep spec mutants: unknown mutant(s) {', '.join(unknown)}", file=sys.stderr)
            return 1
        planted = [by_name[name] for name in args.mutants]
    try:
        jar = tlc.find_jar()
        tlc.find_java()
    except tlc.TlcUnavailable as error:
        print(f"snep spec mutants: cannot run TLC: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    caught = 0
    for mutant in planted:
        print(f"{mutant.name}: {mutant.about}", flush=True)
        result = mutation.check_mutant(
            mutant, models, jar=jar, workers=args.workers, heap=args.heap, timeout=args.timeout
        )
        for name, run in result.runs:
            out = run.outcome
            states = f"{out.distinct:,} states" if out.distinct is not None else "states unknown"
            print(f"    {name}: {run.summary} ({states}, {run.seconds:.0f} s)")
        if result.broken:
            print(f"    BROKEN: the mutated spec could not be checked: {result.broken}")
        elif result.caught:
            print(f"    caught by {result.caught_by}")
            caught += 1
        else:
            print("    ALIVE: no model caught it")
    print(f"{caught}/{len(planted)} mutants caught")
    return 0 if caught == len(planted) else 1


def _list(models: list[tlc.Model]) -> int:
    width = max(len(model.name) for model in models)
    for model in models:
        expect = (
            "pass"
            if model.expect is tlc.Expect.PASS
            else f"must violate {model.invariant or model.temporal_property}"
        )
        slow = " [slow]" if model.slow else ""
        print(f"{model.name:<{width}}  {expect}{slow}  {model.about}")
    return 0


def _report(result: tlc.ModelResult) -> None:
    out = result.outcome
    figures = ", ".join(
        part
        for part in (
            f"{out.distinct:,} distinct states" if out.distinct is not None else "",
            f"depth {out.depth}" if out.depth is not None else "",
            f"TLC: {out.finished_in}" if out.finished_in else "",
            f"{result.seconds:.0f} s",
        )
        if part
    )
    print(f"{result.model.name}: {result.summary} ({figures})")
    for name, state in result.properties:
        print(f"    {name}: {state}")
    if out.liveness_checked and out.completed:
        print("    (liveness checked on the complete state graph)")
    elif out.liveness_checked:
        print("    (liveness checked on the part of the state graph TLC explored)")
