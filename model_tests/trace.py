"""Trace export: a scenario of the model tests as JSON for spec/Trace.tla.

Set ``SNEP_TRACE_DIR`` and run the model tests: every scenario is written there as
``trace-<config>-<n>.json``; check one with ``snep spec trace-check FILE``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from model_tests.harness import Config

_COUNTER = itertools.count(1)


def consts_json(cfg: Config) -> dict[str, Any]:
    C = cfg.consts()
    return {
        "Node": list(C.Node),
        "Conn": list(C.Conn),
        "NoConn": "NoConn",
        "Level": C.Level,
        "MaxVersion": C.MaxVersion,
        "MaxTerm": C.MaxTerm,
        "QueueBound": C.QueueBound,
        "MaxFail": C.MaxFail,
        "MaxHA": C.MaxHA,
        "MaxCut": C.MaxCut,
        "MaxLoss": C.MaxLoss,
        "MaxDup": C.MaxDup,
        "MaxReplay": C.MaxReplay,
        "MaxInFlight": C.MaxInFlight,
        "SplitBrain": C.SplitBrain,
    }


def write_trace(directory: str | Path, cfg: Config, log: list[dict[str, Any]]) -> Path:
    path = Path(directory) / f"trace-{cfg.size}{cfg.level}-{next(_COUNTER)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"consts": consts_json(cfg), "log": log}))
    return path
