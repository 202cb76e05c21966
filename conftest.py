"""Suite-wide rule: in CI, only the TLC tests may skip.

CI runs as root on a real kernel with every Debian package the Makefile installs, so
a test that skips there for want of root, namespaces, nftables, conntrackd, graphviz
or IPv6 would hide a real failure. TLC is the one thing CI truly lacks (no registry
has it; users bring tla2tools.jar through TLA2TOOLS_JAR).
"""

from __future__ import annotations

import os

import pytest

ALLOWED_IN_CI = ("TLA2TOOLS_JAR", "TLC")


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
