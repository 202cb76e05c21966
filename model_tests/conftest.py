"""Hypothesis profiles for the model tests, and the run's figures.

- ``ci`` (default when CI is set, and the default here too): the whole model_tests
  directory in a few minutes on a shared 2-core machine, derandomized (the same
  scenarios every run: a CI failure replays locally).
- ``dev``: fewer, random scenarios for a quick local check.
- ``deep`` (``make model-tests-deep``): many more and longer random scenarios.

Select one with HYPOTHESIS_PROFILE=name. The profile applies to the model tests'
machines only (model_settings), never globally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                       HealthCheck.data_too_large])  # fmt: skip
settings.register_profile("ci", max_examples=400, stateful_step_count=50, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=20, stateful_step_count=30, **_COMMON)
settings.register_profile(
    "deep", max_examples=2000, stateful_step_count=100, phases=[Phase.explicit, Phase.reuse, Phase.generate,
                                                                  Phase.target, Phase.shrink], **_COMMON)  # fmt: skip


def model_settings() -> settings:
    """The selected profile, for the model tests' machines only: loading it globally
    would change every other suite's Hypothesis tests when all run in one pytest."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    try:
        return settings.get_profile(name)
    except Exception:  # a profile of another suite: the model tests run with "ci"
        return settings.get_profile("ci")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    from model_tests.machine import MUTATION_STATS, STATS

    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if STATS["scenarios"]:
        terminalreporter.write_line(
            f"model tests ({profile} profile): {STATS['scenarios']} scenarios, {STATS['steps']} checked steps, "
            f"{STATS['converged']} convergence runs passed"
        )
    if MUTATION_STATS["scenarios"]:
        terminalreporter.write_line(
            f"mutation check: {MUTATION_STATS['scenarios']} scenarios, {MUTATION_STATS['steps']} checked steps"
        )
