"""The implementation against the model: two- and three-node clusters, every level.

Each class is a Hypothesis rule-based state machine (model_tests/machine.py): random
environment moves, every step checked against the model, and liveness at the end of
every scenario. A failure prints the shortest sequence of moves Hypothesis finds.
"""

from __future__ import annotations

from model_tests.machine import machine_for

TestTwoStrong = machine_for(2, "strong").TestCase
TestTwoWeak = machine_for(2, "weak").TestCase
TestTwoIncremental = machine_for(2, "incremental").TestCase
TestThreeStrong = machine_for(3, "strong").TestCase
TestThreeWeak = machine_for(3, "weak").TestCase
TestThreeIncremental = machine_for(3, "incremental").TestCase
