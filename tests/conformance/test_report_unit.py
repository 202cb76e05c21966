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
    assert "| primary-killed | **PASS** 50/50 gap 3.3 s lost 0 | **FAIL** 0/50 gap - lost 50 |  |" in table
    assert "| three-fw-two-failures |  |  | n/a |" in table
    md, js = report.write(results, "ci", tmp_path)
    data = json.loads(js.read_text())
    assert data["settings"]["tcp"] == 50
    assert [r["status"] for r in data["results"]] == ["pass", "fail", "n/a"]
    assert data["results"][1]["failovers"][0]["ok"] is False
    assert "## Details" in md.read_text()
