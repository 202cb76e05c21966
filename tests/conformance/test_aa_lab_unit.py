"""The active-active stage's configuration, without building it (no root): keepalived's
groups and priorities, the marking and queue rules, each implementation's setup, and the
traffic clients driven as one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from snep.lab import traffic
from snep.lab.aa_topology import AATopology, mark_ruleset, priority, queue_rules
from snep.lab.conformance.impls import ConntrackdImpl, Impl, SnepImpl, conntrackd_conf
from snep.lab.conformance.profile import CI
from snep.lab.conformance.scenarios import NAMES, SCENARIOS, run_scenario
from snep.lab.topology import TopologyError


def test_every_firewall_is_the_home_of_its_group_and_the_next_one_backs_it_up(tmp_path: Path):
    topo = AATopology(3, workdir=tmp_path)
    table = {(fw.index, g): priority(fw, g, 3) for fw in topo.firewalls for g in topo.groups}
    assert [table[(g, g)] for g in (1, 2, 3)] == [200, 200, 200]
    assert table[(2, 1)] > table[(3, 1)] and table[(3, 2)] > table[(1, 2)] and table[(1, 3)] > table[(2, 3)]
    # an unready home (200 - 100) loses against any ready backup
    assert 200 - 100 < min(v for (fw, g), v in table.items() if fw != g)


def test_keepalived_conf_has_one_sync_group_per_firewall_with_the_fifo_and_track_script(tmp_path: Path):
    topo = AATopology(2, workdir=tmp_path, ready=lambda fw: f"/ready {fw.name}",
                      notify=lambda fw: "/notify", notify_fifo=lambda fw: fw.dir / "k.fifo")
    conf = topo.keepalived_conf(topo.fw(2))
    assert conf.count("vrrp_sync_group ") == 2 and "vrrp_sync_group G1 {" in conf
    assert 'notify_master "/notify primary G2"' in conf
    assert f"notify_fifo {tmp_path / 'fw2' / 'k.fifo'}" in conf
    assert 'script "/ready fw2"' in conf and conf.count("        snep_ready\n") == 4
    assert "nopreempt" not in conf  # a returning home takes its group back
    assert "10.1.0.252/24 dev c0" in conf and "10.2.0.251/24 dev s0" in conf
    without = AATopology(2, workdir=tmp_path, ready=lambda fw: None).keepalived_conf(topo.fw(1))
    assert "vrrp_script" not in without and "track_script" not in without


def test_asymmetric_paths_send_the_replies_through_the_next_group(tmp_path: Path):
    assert [AATopology(2, workdir=tmp_path).return_group(g) for g in (1, 2)] == [1, 2]
    assert [AATopology(2, asymmetric=True, workdir=tmp_path).return_group(g) for g in (1, 2)] == [2, 1]
    assert [AATopology(3, asymmetric=True, workdir=tmp_path).return_group(g) for g in (1, 2, 3)] == [2, 3, 1]
    with pytest.raises(TopologyError):
        AATopology(1, workdir=tmp_path)


def test_the_group_goes_into_the_ct_mark_and_the_queue_rules_are_the_contracts():
    rules = mark_ruleset(2)
    assert "priority mangle - 1" in rules
    assert "ct state new ip saddr 10.1.0.20-10.1.0.29 ct mark set ct mark and 0xffffff00 or 0x2" in rules
    assert "meta mark set ct mark" in rules
    new, reply = queue_rules(3, reply=True)
    assert new[:6] == ["iptables", "-w", "-t", "mangle", "-A", "PREROUTING"]
    assert new[6:] == ["-m", "mark", "!", "--mark", "0/0xff", "-m", "conntrack", "--ctstate", "NEW",
                       "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"]
    assert reply[6:14] == ["-p", "tcp", "-m", "mark", "!", "--mark", "0/0xff", "-m"]
    assert reply[-5:] == ["-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"]
    assert ["--ctdir", "REPLY", "--tcp-flags", "SYN,ACK", "SYN,ACK"] == reply[reply.index("--ctdir"):reply.index("--ctdir") + 5]
    assert len(queue_rules(3, reply=False)) == 1


def test_snep_writes_the_contracts_active_active_keys(tmp_path: Path):
    topo = AATopology(2, workdir=tmp_path, defer_queue=0)
    fw = topo.fw(1)
    fw.dir.mkdir(parents=True)
    snep = SnepImpl.__new__(SnepImpl)
    snep.resend_queue = 256
    text = snep.write_conf(topo, fw).read_text()
    assert 'mode = "active-active"' in text and "mark_mask = 255" in text
    assert 'groups = [{ mark = 1, sync_group = "G1" }, { mark = 2, sync_group = "G2" }]' in text
    assert "[cluster.defer]\nenabled = true\nqueue = 0\n" in text
    assert f'notify_fifo = "{fw.dir / "keepalived.fifo"}"' in text
    assert 'sync_group = "G"' not in text  # ([ha] sync_group is primary/backup's)
    assert '"10.1.0.251/32"' in text  # the groups' addresses are not synchronized
    off = AATopology(2, workdir=tmp_path, defer_queue=None)
    assert "[cluster.defer]\nenabled = false\n" in snep.write_conf(off, off.fw(1)).read_text()
    assert "snep.cli ctl --socket" in (snep.ready_command(fw) or "")
    assert Impl().ready_command(fw) is None


def test_conntrackd_as_its_manual_has_active_active(tmp_path: Path):
    topo = AATopology(2, workdir=tmp_path)
    conf = conntrackd_conf(topo, topo.fw(1))
    assert "DisableExternalCache On" in conf and "StartupResync On" in conf
    impl = ConntrackdImpl.__new__(ConntrackdImpl)
    impl.proc = "sync"
    topo = AATopology(2, workdir=tmp_path)
    assert impl.notify_body(topo, topo.fw(1)) == "rc=0"
    assert not impl.defers


@pytest.mark.parametrize("impl, name, why", [("conntrackd", "aa-three", "at most 2 firewalls"),
                                              ("conntrackd", "aa-asymmetric-no-defer", "no deferral"),
                                              ("none", "aa-asymmetric-no-defer", "no deferral")])
def test_not_applicable_runs_say_why_without_building_anything(impl: str, name: str, why: str):
    if impl == "conntrackd" and shutil.which("conntrackd") is None:
        pytest.skip("conntrackd not installed")
    result = run_scenario(name, impl, CI)
    assert result.status == "n/a" and why in result.reason


def test_active_active_scenarios_are_listed_without_netem_variants():
    aa = [n for n in NAMES if SCENARIOS[n.partition("+")[0]].active_active]
    assert aa == ["aa-symmetric", "aa-asymmetric", "aa-asymmetric-no-defer", "aa-three"]


class FakeClient:
    def __init__(self, flows: list[dict[str, Any]], latency: list[tuple[float, float]]) -> None:
        self.flows, self.times, self.opened, self.rates = flows, latency, [], []
        self.hello = {"ready": True, "opened": len(flows), "errors": 1}

    def snap(self) -> dict[str, Any]:
        return {"time": 5.0, "flows": [dict(f) for f in self.flows], "churn": {"ok": 2, "failed": 1}}

    def open(self, tcp: int = 0, udp: int = 0) -> list[int]:
        self.opened.append((tcp, udp))
        return list(range(len(self.flows), len(self.flows) + tcp + udp))

    def churn(self, rate: float) -> None:
        self.rates.append(rate)

    def latency(self) -> list[tuple[float, float]]:
        return self.times


def test_several_clients_are_driven_as_one():
    a = FakeClient([{"id": 0, "src": "10.1.0.11"}, {"id": 1, "src": "10.1.0.11"}], [(5.0, 0.001)])
    b = FakeClient([{"id": 0, "src": "10.1.0.21"}], [(4.0, 0.002), (6.0, 0.003)])
    both = traffic.Clients([a, b])  # type: ignore[list-item]
    snap = both.snap()
    assert [f["id"] for f in snap["flows"]] == [0, 1, traffic.Clients.ID_SPAN]
    assert snap["churn"] == {"ok": 4, "failed": 2} and both.hello["errors"] == 2
    assert both.open(tcp=3) == [2, 3, traffic.Clients.ID_SPAN + 1] and a.opened == [(2, 0)] and b.opened == [(1, 0)]
    both.churn(20)
    assert a.rates == b.rates == [10]
    assert both.latency() == [(5.0, 0.001), (4.0, 0.002), (6.0, 0.003)]
    assert traffic.split(5, 2) == [3, 2] and traffic.split(1, 3) == [1, 0, 0]


def test_the_contrib_pair_agrees(tmp_path: Path):
    """contrib's active-active snep.toml loads, and its groups follow the sync groups its
    keepalived.conf defines, through the FIFO that file names."""
    from snep.config import load

    root = Path(__file__).resolve().parents[2] / "contrib"
    cfg = load(root / "snep-active-active.toml", check_files=False)
    conf = (root / "keepalived-active-active.conf").read_text()
    assert cfg.cluster.active_active and [g.mark for g in cfg.cluster.groups] == [1, 2]
    for group in cfg.cluster.groups:
        assert group.follow is not None and f"vrrp_sync_group {group.follow[1]} {{" in conf
    assert f"notify_fifo {cfg.ha.notify_fifo}\n" in conf
