"""The implementation against the model: two- and three-node clusters, every level.

Each class is a Hypothesis rule-based state machine (model_tests/machine.py): random
environment moves, every step checked against the model, and liveness at the end of
every scenario. A failure prints the shortest sequence of moves Hypothesis finds.
"""

from __future__ import annotations

from model_tests.conftest import model_settings
from model_tests.machine import machine_for


def case(size: int, level: str) -> type:
    test_case = machine_for(size, level).TestCase
    test_case.settings = model_settings()
    return test_case


TestTwoStrong = case(2, "strong")
TestTwoWeak = case(2, "weak")
TestTwoIncremental = case(2, "incremental")
TestThreeStrong = case(3, "strong")
TestThreeWeak = case(3, "weak")
TestThreeIncremental = case(3, "incremental")
