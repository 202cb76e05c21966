"""Trace export and trace validation: a model-test run written as JSON is a behaviour
of the TLA+ spec (spec/Trace.tla, checked by TLC through `snep spec trace-check`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from model_tests import model as M
from model_tests.harness import Cluster, Config
from model_tests.machine import machine_for
from model_tests.trace import write_trace

needs_tlc = pytest.mark.skipif(
    not os.environ.get("TLA2TOOLS_JAR"), reason="TLA2TOOLS_JAR is not set: TLC (tla2tools.jar) is not available"
)


def scenario_trace(tmp_path: Path, level: str = "strong") -> Path:
    """Traffic, delivery, a timer, a crash of the primary and a takeover, as a trace."""
    cfg = Config(size=2, level=level)
    log: list = []
    c = Cluster(cfg, trace=log)
    c.promote(1)
    for conn, kind in (("c0", "new"), ("c1", "new"), ("c0", "update")):
        c.traffic(1, conn, kind)
    for _ in range(40):
        flight = sorted(c.sim.network.in_flight)
        if not flight:
            break
        c.deliver(flight[0])
    c.advance(1.1)
    for n in (1, 2):
        if c.node(n).next_timer(c.sim.now) <= c.sim.now:
            c.timer(n)
    c.crash(1)
    c.promote(2)
    return write_trace(tmp_path, cfg, log)


def test_exported_trace_names_spec_actions_with_states(tmp_path: Path) -> None:
    data = json.loads(scenario_trace(tmp_path).read_text())
    assert data["consts"]["Node"] == [1, 2] and data["consts"]["Level"] == "strong"
    actions = [r["action"] for r in data["log"] if "action" in r]
    assert {"Promote", "ConnNew", "Notify", "RecvState", "Fail", "SendBulk"} <= set(actions)
    assert set(actions) <= set(M.ACTIONS)
    assert all("state" in r for r in data["log"] if "action" in r)


def test_trace_check_without_tlc_says_so(tmp_path: Path) -> None:
    path = scenario_trace(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "TLA2TOOLS_JAR"}
    done = subprocess.run([sys.executable, "-m", "snep.cli", "spec", "trace-check", str(path)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "TLA2TOOLS_JAR" in done.stderr


@pytest.mark.tlc
@needs_tlc
@pytest.mark.parametrize("level", ["strong", "incremental"])
def test_tlc_accepts_the_trace(tmp_path: Path, level: str) -> None:
    from snep.lab.tracecheck import check_trace

    verdict = check_trace(scenario_trace(tmp_path, level), timeout=120)
    assert verdict.ok, verdict.message + "\n" + verdict.output[-3000:]


@pytest.mark.tlc
@needs_tlc
def test_tlc_rejects_a_forged_step(tmp_path: Path) -> None:
    """A trace whose implementation applied a version no frame carried is refused."""
    from snep.lab.tracecheck import check_trace

    path = scenario_trace(tmp_path)
    data = json.loads(path.read_text())
    record = next(r for r in data["log"] if r.get("action") == "RecvState" and r["args"][2]["conn"] != "NoConn")
    record["state"]["external"][str(record["args"][0])][record["args"][2]["conn"]] += 7
    path.write_text(json.dumps(data))
    verdict = check_trace(path, timeout=120)
    assert not verdict.ok and "not a step" in verdict.message


@pytest.mark.tlc
@needs_tlc
def test_tlc_accepts_random_scenarios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few random three-node scenarios, exported and replayed in TLC."""
    from snep.lab.tracecheck import check_trace

    monkeypatch.setenv("SNEP_TRACE_DIR", str(tmp_path))
    run_state_machine_as_test(
        machine_for(3, "strong"),
        settings=settings(max_examples=3, stateful_step_count=25, derandomize=True, database=None,
                          phases=[Phase.generate], deadline=None, suppress_health_check=list(HealthCheck)),
    )  # fmt: skip
    traces = sorted(tmp_path.glob("trace-*.json"))
    assert traces
    for path in traces:
        verdict = check_trace(path, timeout=120)
        assert verdict.ok, f"{path.name}: {verdict.message}\n{verdict.output[-3000:]}"
