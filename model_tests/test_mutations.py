"""Proof that the model tests bite: each injected fault is caught within the CI budget.

One realistic fault at a time (model_tests/mutations.py) is monkeypatched into the
implementation, and the same rule-based state machines as test_model_cluster.py run
derandomized (a fixed sequence of scenarios) until they find a failure. The test
passes when the model tests *fail* with a RefinementError (a step the model does
not allow, an invariant, a message check, or liveness), and prints which check
caught the fault (pytest -s). The control runs the same configurations without a
fault and must find nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from model_tests.harness import RefinementError
from model_tests.machine import MUTATION_STATS, STATS, machine_for
from model_tests.mutations import MUTATIONS

# The cluster each fault is searched in (the fault's natural habitat; every one of
# them is also caught by the other configurations, only later).
WHERE = {
    "ignore_nack": (2, "strong"),
    "skip_epoch_check": (3, "strong"),
    "no_commit_on_promotion": (2, "strong"),
    "ack_before_apply": (2, "strong"),
    "unbounded_queue": (2, "strong"),
    "serial_off_by_one": (2, "strong"),
    "no_sweep": (2, "weak"),
    "reuse_term_on_promotion": (3, "strong"),
    "no_vouch": (2, "strong"),
}

# Faults whose habitat is a story too long for the random search's budget: the
# regression replay (model_tests/test_regressions.py) that tells it must catch them.
SCRIPTED = {
    "news_deposes": "test_a_live_primary_takes_a_term_above_news_nobody_vouches_for",
}

BUDGET = settings(
    max_examples=1000,  # a fault is usually found in the first hundred scenarios
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # finding is enough; no shrinking
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)

CAUGHT: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _count_apart() -> object:
    """The mutation runs' figures go to MUTATION_STATS, not to the model tests' own."""
    before = dict(STATS)
    yield
    for key in STATS:
        MUTATION_STATS[key] += STATS[key] - before[key]
        STATS[key] = before[key]


def find(name: str) -> str:
    """Run the model tests with fault ``name`` injected; the first line of what caught
    it, or an AssertionError when nothing did."""
    if name in SCRIPTED:
        from model_tests import test_regressions

        with MUTATIONS[name]():
            with pytest.raises(RefinementError) as caught:
                getattr(test_regressions, SCRIPTED[name])()
        return str(caught.value).splitlines()[0]
    size, level = WHERE[name]
    machine = machine_for(size, level)
    with MUTATIONS[name]():
        with pytest.raises(RefinementError) as caught:
            run_state_machine_as_test(machine, settings=BUDGET)
    return str(caught.value).splitlines()[0]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_fault_is_caught(name: str) -> None:
    """Each fault in a fresh interpreter: a fault is injected into a clean process, and
    what earlier tests of a long pytest run left behind cannot change the search
    (a full `make test` once missed a fault that the same search finds alone)."""
    script = (
        "import json, sys\n"
        "from model_tests.test_mutations import find\n"
        "from model_tests.machine import STATS\n"
        f"line = find({name!r})\n"
        "print(json.dumps({'caught': line, 'stats': STATS}))\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{name} was not caught:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key, value in report["stats"].items():
        MUTATION_STATS[key] += value
    CAUGHT[name] = report["caught"]
    print(f"{name}: caught: {report['caught']}"[:1500])


@pytest.mark.parametrize("size, level", sorted(set(WHERE.values())))
def test_no_fault_no_failure(size: int, level: str) -> None:
    """The same budget without a fault finds nothing: the catches above are the faults'."""
    run_state_machine_as_test(machine_for(size, level), settings=settings(BUDGET, max_examples=400))
