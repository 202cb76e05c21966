"""Trace validation: is a trace exported by the model tests a behaviour of the spec?

The model tests (model_tests/, with ``SNEP_TRACE_DIR`` set) write each scenario as a
JSON file: ``{"consts": {...}, "log": [...]}``, where the log alternates the
abstraction of the implementation's state and the spec actions that explain each
move, each with the state model_tests/model.py computed. spec/Trace.tla replays the
log in TLC (a trace that says ``"spec": "active_active"``, a walk of
model_tests/active_active.py, is replayed by spec/AATrace.tla): every action record must be a step of the named spec action leading
exactly to the logged state. TLC runs through :func:`snep.lab.tlc.run_tlc`; the trace is
accepted when the ``Done`` invariant is violated (the end of the log was reached).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from snep.errors import SnepError
from snep.lab import tlc


@dataclass(frozen=True)
class TraceVerdict:
    ok: bool
    records: int
    message: str
    seconds: float
    output: str = ""


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "{" + ", ".join(_value(x) for x in v) + "}"
    raise SnepError(f"trace: constant value {v!r} has no TLC form")


# The CONSTANTS of spec/sync_protocol.tla, in its order: a trace must bind every one.
SPEC_CONSTANTS = (
    "Node", "Conn", "NoConn", "Level", "MaxVersion", "MaxTerm", "QueueBound", "MaxFail", "MaxHA",
    "MaxCut", "MaxLoss", "MaxDup", "MaxReplay", "MaxInFlight", "SplitBrain",
)  # fmt: skip
# The same for spec/active_active.tla.
AA_CONSTANTS = ("Node", "ConnGroups", "ConnPerGroup", "MaxVersion", "MaxTerm", "MaxFail", "FailOpen")


@dataclass(frozen=True)
class TraceSpec:
    """The spec a trace is checked against: its trace module and its constants."""

    module: str
    constants: tuple[str, ...]


# A trace names its spec ("spec": ...); without one, sync_protocol.
SPECS = {
    "sync_protocol": TraceSpec("Trace", SPEC_CONSTANTS),
    "active_active": TraceSpec("AATrace", AA_CONSTANTS),
}


def trace_config(consts: dict[str, object], trace_path: Path, spec: TraceSpec = SPECS["sync_protocol"]) -> str:
    """The TLC configuration that checks ``trace_path`` against the spec's trace module."""
    names = spec.constants
    missing = [name for name in names if name not in consts]
    unknown = [name for name in consts if name not in names]
    if missing or unknown:
        raise SnepError(f"{trace_path}: the trace's constants do not match the spec's"
                        f" (missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'})")
    lines = ["CONSTANTS"]
    for name in names:
        lines.append(f"    {name} = {_value(consts[name])}")
    lines.append(f"    TraceFile = {json.dumps(str(trace_path.resolve()))}")
    lines += ["INIT TraceInit", "NEXT TraceNext", "INVARIANT Done", ""]
    return "\n".join(lines)


def load(trace_path: Path) -> tuple[dict[str, object], int, TraceSpec]:
    try:
        data = json.loads(trace_path.read_text())
        consts, log = data["consts"], data["log"]
        name = data.get("spec", "sync_protocol")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SnepError(f"{trace_path}: not a snep trace ({error})") from None
    if name not in SPECS:
        raise SnepError(f"{trace_path}: unknown spec {name!r} (known: {', '.join(SPECS)})")
    return consts, len(log), SPECS[name]


def check_trace(trace_path: Path, *, jar: Path | None = None, timeout: float | None = None) -> TraceVerdict:
    """Run TLC on the trace (raises tlc.TlcUnavailable when TLC cannot run)."""
    consts, records, spec = load(trace_path)
    output, seconds = tlc.run_tlc(
        spec.module,
        "TraceCheck.cfg",
        jar=jar,
        workers=1,
        heap="1g",
        timeout=timeout,
        extra_files={"TraceCheck.cfg": trace_config(consts, trace_path, spec)},
    )
    outcome = tlc.parse_output(output)
    if outcome.violated_invariant == "Done":
        return TraceVerdict(True, records, f"accepted: all {records} records are steps of the spec", seconds, output)
    if outcome.deadlock:
        depth = outcome.depth
        where = f" (record {depth})" if depth else ""
        return TraceVerdict(False, records, f"rejected: a record is not a step of the spec{where}", seconds, output)
    errors = "; ".join(outcome.errors) or "TLC stopped without a verdict"
    return TraceVerdict(False, records, f"rejected: {errors}", seconds, output)


def main(args: argparse.Namespace) -> int:
    """``snep spec trace-check TRACE.json``: 0 accepted, 1 rejected, 3 TLC unavailable."""
    path = Path(args.trace)
    try:
        tlc.find_jar()
        tlc.find_java()
    except tlc.TlcUnavailable as error:
        print(f"snep spec trace-check: cannot run TLC: {error}", file=sys.stderr)
        return 3
    try:
        result = check_trace(path, timeout=args.timeout)
    except SnepError as error:
        print(f"snep spec trace-check: {error}", file=sys.stderr)
        return 1
    print(f"{path}: {result.message} ({result.seconds:.1f} s)")
    if not result.ok:
        tail = "\n".join(result.output.splitlines()[-40:])
        print(tail, file=sys.stderr)
    return 0 if result.ok else 1
