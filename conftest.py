"""Suite-wide rules.

1. Tests marked ``root`` skip, with the reason, when the suite does not run as root
   (a user's ``make test``): they build network namespaces and write the kernel's
   conntrack table.
2. In CI, only the TLC tests may skip. CI runs as root on a real kernel with every
   Debian package the Makefile installs, so a test that skips there for want of root,
   namespaces, nftables, conntrackd, graphviz or IPv6 would hide a real failure. TLC is
   the one thing CI truly lacks (no registry has it; users bring tla2tools.jar through
   TLA2TOOLS_JAR).
3. Hypothesis has no deadline (the ``snep`` profile, loaded here for every suite). No
   test here checks how fast one example runs, and on a shared, loaded machine any
   example can take ten times its usual time: a deadline would only make such a run
   fail (DeadlineExceeded, or Flaky when the replay is fast). Without a deadline,
   Hypothesis' too_slow health check allows 30 s of data generation for the first ten
   examples instead of 1 s (its limit is 5 x the deadline, 30 s without one), so it
   still catches a runaway strategy but not a busy machine. The model tests' profiles
   (model_tests/conftest.py) are their own and apply to their machines only.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("snep", deadline=None)
settings.load_profile("snep")

ALLOWED_IN_CI = ("TLA2TOOLS_JAR", "TLC")
NEEDS_ROOT = (
    "needs root: builds network namespaces and writes the kernel's conntrack table "
    "(run the suite as root, e.g. `sudo make test`, as CI does)"
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not any(word in reason for word in ALLOWED_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {reason}"
