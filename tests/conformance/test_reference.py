"""The suite can fail (no sync: connections die) and the conntrackd column is produced.

One ``snep conformance`` run with ``--impl conntrackd --impl none``: the reference must
keep every connection through the primary's crash, no synchronization must lose them
all, and the report must put both side by side. Three firewalls are not applicable to
conntrackd's FT-FW (one peer), which the report must say rather than fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_none_loses_connections_and_conntrackd_keeps_them(real_kernel: None, tmp_path: Path,
                                                          profile) -> None:
    if shutil.which("conntrackd") is None:
        pytest.skip("conntrackd not installed (make debs)")
    out = subprocess.run(
        [sys.executable, "-m", "snep.cli", "conformance", "--impl", "conntrackd", "--impl", "none",
         "--scenario", "primary-killed", "--scenario", "three-fw-two-failures",
         "--profile", profile.name, "--report", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr  # none failing is expected, not an error
    results = {(r["scenario"], r["impl"]): r
               for r in json.loads((tmp_path / "conformance.json").read_text())["results"]}

    reference = results[("primary-killed", "conntrackd")]
    assert reference["status"] == "pass", reference
    (fo,) = reference["failovers"]
    assert fo["tcp_alive"] == fo["tcp_total"] == profile.tcp
    assert fo["entries_lost"] == 0 and fo["entries_before"] == profile.tcp

    nosync = results[("primary-killed", "none")]
    assert nosync["status"] == "fail", nosync
    (fo,) = nosync["failovers"]
    assert fo["tcp_alive"] == 0 and fo["tcp_total"] == profile.tcp
    assert fo["entries_lost"] == profile.tcp

    assert results[("three-fw-two-failures", "conntrackd")]["status"] == "n/a"
    three = results[("three-fw-two-failures", "none")]
    assert three["status"] == "fail" and three["failovers"][0]["tcp_alive"] == 0

    table = (tmp_path / "conformance.md").read_text()
    assert "| scenario | conntrackd | none |" in table
    assert "| primary-killed | **PASS** " in table and "**FAIL** 0/" in table
