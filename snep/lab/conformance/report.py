"""Verdicts as numbers: a Markdown table (implementations side by side) and JSON."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from snep.lab.conformance.harness import Result
from snep.lab.conformance.profile import PROFILES


def _seconds(value: float | None, never: str = "-") -> str:
    return f"{value:g} s" if value is not None else never


def _ready(f: Any) -> str:
    return "?" if f.events_lost else _seconds(f.ready_s, "never")


def _tracked(f: Any) -> str:
    """The tracked and the churn connections' shares of the invalid drops, when there were any."""
    return f" ({f.tracked_invalid_drops} tracked, {f.churn_invalid_drops} churn)" if f.invalid_drops else ""


def _failover_cell(f: Any) -> str:
    late = f" ({f.late_tcp} late)" if f.late_tcp else ""
    return (f"{f.tcp_alive}/{f.tcp_total} gap {_seconds(f.gap_max_s)}{late} "
            f"ready {_ready(f)} invalid {f.invalid_drops}{_tracked(f)} "
            f"lost {f.entries_lost}")


def cell(result: Result) -> str:
    """One implementation's verdict for one scenario, compact."""
    if result.status == "n/a":
        return "n/a"
    if result.status == "error":
        return f"ERROR: {result.reason[:80]}"
    parts = [_failover_cell(f) for f in result.failovers]
    parts += [f"{c.label.split(' (')[0]}: {c.detail}" for c in result.checks
              if not c.ok or c.label.startswith(("memory", "primary unaffected", "first-packet", "deferral"))]
    return f"**{result.status.upper()}** " + "; ".join(parts)


def side_by_side(results: Sequence[Result]) -> str:
    """Scenario rows, implementation columns."""
    impls = list(dict.fromkeys(r.impl for r in results))
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    by = {(r.scenario, r.impl): r for r in results}
    lines = ["| scenario | " + " | ".join(impls) + " |",
             "|---|" + "---|" * len(impls)]
    for name in scenarios:
        cells = [cell(by[(name, i)]) if (name, i) in by else "" for i in impls]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(results: Sequence[Result]) -> str:
    """Every failover and check with all its numbers."""
    lines = ["| scenario | impl | step | TCP alive | UDP alive | takeover | notify | kernel ready | gap median / max | late | entries lost | invalid drops |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    blank = " |" * 9
    for r in results:
        for f in r.failovers:
            gap = (f"{f.gap_median_s:g} / {f.gap_max_s:g} s" if f.gap_max_s is not None else "-")
            lines.append(f"| {r.scenario} | {r.impl} | {f.label} -> {f.new_primary} | "
                         f"{f.tcp_alive}/{f.tcp_total} | {f.udp_alive}/{f.udp_total} | "
                         f"{f.takeover_s:g} s | {_seconds(f.notify_s)} | "
                         f"{_ready(f)} | {gap} | {f.late_tcp} | "
                         f"{f.entries_lost}/{f.entries_before} | {f.invalid_drops}{_tracked(f)} |")
        for c in r.checks:
            lines.append(f"| {r.scenario} | {r.impl} | {c.label}: {'ok' if c.ok else 'FAILED'} | "
                         f"{c.detail} |" + blank[2:])
        if r.status in ("n/a", "error"):
            lines.append(f"| {r.scenario} | {r.impl} | {r.status}: {r.reason} |" + blank)
    return "\n".join(lines)


def _never(fos: Sequence[Any]) -> str:
    """How many kernels were never complete, or not known to be (events lost)."""
    never = sum(1 for f in fos if f.ready_s is None and not f.events_lost)
    unknown = sum(1 for f in fos if f.events_lost)
    notes = [f"{never} never"] * bool(never) + [f"{unknown} unknown"] * bool(unknown)
    return f" ({', '.join(notes)})" if notes else ""


def summary(results: Sequence[Result]) -> str:
    """Per implementation, over all its failovers: how many went late or met invalid
    drops, and the ranges of takeover, kernel ready and gap (issue 15's figures)."""
    lines = ["| impl | failovers | late (connections) | with invalid drops | takeover | kernel ready | gap max |",
             "|---|---|---|---|---|---|---|"]

    def span(values: list[float]) -> str:
        return f"{min(values):g} .. {max(values):g} s" if values else "-"

    for impl in dict.fromkeys(r.impl for r in results):
        fos = [f for r in results if r.impl == impl for f in r.failovers]
        if not fos:
            continue
        late = [f for f in fos if f.late_tcp]
        lines.append(
            f"| {impl} | {len(fos)} | {len(late)} ({sum(f.late_tcp for f in late)}) | "
            f"{sum(1 for f in fos if f.invalid_drops)} ({sum(f.invalid_drops for f in fos)} packets, "
            f"{sum(f.tracked_invalid_drops for f in fos)} tracked, "
            f"{sum(f.churn_invalid_drops for f in fos)} churn) | "
            f"{span([f.takeover_s for f in fos])} | "
            f"{span([f.ready_s for f in fos if f.ready_s is not None])}"
            f"{_never(fos)} | "
            f"{span([f.gap_max_s for f in fos if f.gap_max_s is not None])} |")
    return "\n".join(lines)


def markdown(results: Sequence[Result], profile: str) -> str:
    return "\n".join([
        f"# snep conformance ({profile} profile, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"kernel {platform.release()})",
        "",
        "Each cell: verdict, then per failover `TCP alive/total`, the longest silence of a "
        "surviving connection (gap; `late`: connections whose silence went past the first "
        "TCP retransmission after the takeover), when the new primary's kernel held every "
        "tracked connection relative to its virtual addresses coming up (ready; negative: "
        "before), the packets it dropped as invalid after the failure, and the established "
        "entries of the failed primary missing on the new one (lost). A scenario passes only "
        "when every connection established before a failure survives it and no entry is "
        "lost (and, in a profile with a gap bound, every gap is within it).",
        "",
        side_by_side(results),
        "",
        "## Failovers per implementation",
        "",
        summary(results),
        "",
        "## Details",
        "",
        details(results),
        "",
    ])


def to_json(results: Sequence[Result], profile: str) -> dict[str, Any]:
    return {"profile": profile, "settings": asdict(PROFILES[profile]) if profile in PROFILES else {},
            "kernel": platform.release(), "time": time.time(),
            "results": [r.to_json() for r in results]}


def write(results: Sequence[Result], profile: str, directory: Path) -> tuple[Path, Path]:
    """Write ``conformance.md`` and ``conformance.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / "conformance.md"
    js = directory / "conformance.json"
    md.write_text(markdown(results, profile))
    js.write_text(json.dumps(to_json(results, profile), indent=2))
    return md, js
