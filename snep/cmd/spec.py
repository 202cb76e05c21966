"""``snep spec``: model-check the TLA+ spec (spec/) with TLC.

- ``snep spec list``: the models of spec/models.toml and what TLC must say;
- ``snep spec check [MODEL ...]``: run TLC on them (all but the slow ones when none is
  named; ``--all`` includes the slow ones) and report per model and per property;
- ``snep spec trace-check TRACE.json``: is a trace of the model tests a behaviour of
  the spec (spec/Trace.tla; snep/lab/tracecheck.py)?

Exit status: 0 when every model gave its expected verdict, 1 when one did not,
3 when TLC cannot run (TLA2TOOLS_JAR unset, missing or unreadable; no java).
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
        print(f"{model.name}: running TLC ({model.module}.tla, {model.config}) ...", flush=True)
        result = tlc.check_model(
            model, jar=jar, workers=args.workers, heap=args.heap, timeout=args.timeout
        )
        _report(result)
        failed += not result.ok
    print(f"{len(selected) - failed}/{len(selected)} models as expected")
    return 1 if failed else 0


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
