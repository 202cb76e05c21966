"""The report puts implementations side by side and a verdict follows from the numbers."""

import json

from snep.lab.conformance import report
from snep.lab.conformance.harness import Check, Failover, Result


def _failover(alive: int, lost: int) -> Failover:
    return Failover(label="fw1 crashed", victim="fw1", new_primary="fw2", takeover_s=2.9,
                    notify_s=0.05, tcp_alive=alive, tcp_total=50, udp_alive=10, udp_total=10,
                    gap_median_s=3.2 if alive else None, gap_max_s=3.3 if alive else None,
                    entries_before=50, entries_lost=lost)


def test_verdict_needs_every_connection_and_no_lost_entry():
    ok = Result("primary-killed", "snep", "ci", failovers=[_failover(50, 0)])
    ok.finish()
    one_dead = Result("primary-killed", "x", "ci", failovers=[_failover(49, 0)])
    one_dead.finish()
    one_lost = Result("primary-killed", "y", "ci", failovers=[_failover(50, 1)])
    one_lost.finish()
    bad_check = Result("backup-dead-long", "z", "ci", checks=[Check("memory bounded", False, "+1 GiB")])
    bad_check.finish()
    assert ok.status == "pass"
    assert [r.status for r in (one_dead, one_lost, bad_check)] == ["fail"] * 3
    assert "memory bounded" in bad_check.reason


def test_side_by_side_has_one_column_per_implementation(tmp_path):
    results = [Result("primary-killed", "snep", "ci", failovers=[_failover(50, 0)]),
               Result("primary-killed", "none", "ci", failovers=[_failover(0, 50)]),
               Result("three-fw-two-failures", "conntrackd", "ci", status="n/a", reason="one peer")]
    for r in results[:2]:
        r.finish()
    table = report.side_by_side(results)
    assert table.splitlines()[0] == "| scenario | snep | none | conntrackd |"
    assert ("| primary-killed | **PASS** 50/50 gap 3.3 s ready never invalid 0 lost 0 | "
            "**FAIL** 0/50 gap - ready never invalid 0 lost 50 |  |") in table
    assert "| three-fw-two-failures |  |  | n/a |" in table
    md, js = report.write(results, "ci", tmp_path)
    data = json.loads(js.read_text())
    assert data["settings"]["tcp"] == 50
    assert [r["status"] for r in data["results"]] == ["pass", "fail", "n/a"]
    assert data["results"][1]["failovers"][0]["ok"] is False
    assert "## Details" in md.read_text()


def test_gap_bound_and_new_figures():
    late = _failover(50, 0)
    late.ready_s, late.invalid_drops, late.late_tcp, late.gap_max_s = 0.21, 37, 12, 6.6
    late.tracked_invalid_drops, late.churn_invalid_drops = 30, 5
    assert late.ok  # survival decides without a bound
    late.gap_bound_s = 1.0
    assert not late.ok
    fast = _failover(50, 0)
    fast.gap_max_s, fast.gap_bound_s, fast.ready_s = 0.62, 1.0, -0.3
    assert fast.ok
    assert report._failover_cell(late) == "50/50 gap 6.6 s (12 late) ready 0.21 s invalid 37 (30 tracked, 5 churn) lost 0"
    assert report._failover_cell(fast) == "50/50 gap 0.62 s ready -0.3 s invalid 0 lost 0"
    row = report.details([Result("primary-killed", "snep", "fast", failovers=[late])]).splitlines()[2]
    assert row.count("|") == 13 and "| 0.21 s | 3.2 / 6.6 s | 12 | 0/50 | 37 (30 tracked, 5 churn) |" in row


def test_summary_counts_late_failovers_and_invalid_drops_per_implementation():
    a, b, c = _failover(50, 0), _failover(50, 0), _failover(50, 0)
    b.late_tcp, b.invalid_drops, b.gap_max_s, b.ready_s = 50, 40, 6.6, 0.3
    b.tracked_invalid_drops, b.churn_invalid_drops = 38, 1
    a.ready_s, c.ready_s = -2.9, None
    d = _failover(50, 0)
    d.events_lost = True
    assert report._failover_cell(d).startswith("50/50 gap 3.3 s ready ? invalid")
    results = [Result("primary-killed", "snep", "ci", failovers=[a, b]),
               Result("primary-killed", "conntrackd", "ci", failovers=[c, d]),
               Result("three-fw-two-failures", "conntrackd", "ci", status="n/a")]
    lines = report.summary(results).splitlines()
    assert lines[2] == "| snep | 2 | 1 (50) | 1 (40 packets, 38 tracked, 1 churn) | 2.9 .. 2.9 s | -2.9 .. 0.3 s | 3.3 .. 6.6 s |"
    assert lines[3] == ("| conntrackd | 2 | 0 (0) | 0 (0 packets, 0 tracked, 0 churn) | 2.9 .. 2.9 s | - (1 never, 1 unknown) "
                        "| 3.3 .. 3.3 s |")
