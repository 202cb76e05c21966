"""snep through the active-active scenarios on real kernels (issue 18).

Each passes only when every connection, through every group, got established and echoed
before the first failure; every tracked connection survives each firewall's failure and
its return (its group handed back); no entry is lost; and no packet of a tracked
connection is dropped as invalid on any firewall over the whole run. The first-packet
latency (connect time) of new connections is reported.

The same scenario on asymmetric paths with the deferral off must fail: a reply that
comes back through the firewall that does not own the connection meets no state there.
That is the check that the scenario can fail.
"""

from __future__ import annotations

import pytest

from snep.lab.conformance.harness import Result
from snep.lab.conformance.scenarios import run_scenario

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _summary(result: Result) -> str:
    return "\n".join(
        [f"{result.status}: {result.reason}"]
        + [f"  {f.label}: TCP {f.tcp_alive}/{f.tcp_total}, lost {f.entries_lost}/{f.entries_before}, "
           f"gap {f.gap_max_s} s, takeover {f.takeover_s} s, kernel ready {f.ready_s} s, "
           f"invalid {f.invalid_drops} ({f.tracked_invalid_drops} tracked)" for f in result.failovers]
        + [f"  {c.label}: {'ok' if c.ok else 'FAILED'} {c.detail}" for c in result.checks]
        + [result.logs])


@pytest.mark.parametrize("name", ["aa-symmetric", "aa-asymmetric", "aa-three"])
def test_snep_active_active(real_kernel: None, profile, name: str) -> None:
    result = run_scenario(name, "snep", profile)
    summary = _summary(result)
    assert result.status == "pass", summary
    moves = 2 if name == "aa-three" else 4  # each failure and each return
    assert len(result.failovers) == moves, summary
    for move in result.failovers:
        assert move.tcp_total == profile.tcp and move.entries_before > 0, summary
        assert move.tracked_invalid_drops == 0, summary
    checks = {c.label: c for c in result.checks}
    assert checks["every connection established, through every group"].numbers["tcp_alive"] == profile.tcp
    latency = checks["first-packet latency (connect time)"].numbers
    assert latency["connects"] > 0 and latency["median_ms"] > 0, summary
    # the deferral worked: new connections were held and released on the peers' ACKs
    held = checks["deferral"].numbers["defer"]
    assert sum(c.get("acked", 0) for c in held.values()) > 0, summary


def test_asymmetric_paths_without_the_deferral_fail(real_kernel: None, profile) -> None:
    result = run_scenario("aa-asymmetric-no-defer", "snep", profile)
    summary = _summary(result)
    assert result.status == "fail", summary
    failed = {c.label for c in result.checks if not c.ok} | {f.label for f in result.failovers if not f.ok}
    # the replies meet no state: connections do not start, or their packets are dropped as invalid
    assert failed & {"every connection established, through every group",
                     "no invalid drops of tracked traffic"}, summary
