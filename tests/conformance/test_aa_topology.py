"""The active-active stage itself (root): both firewalls forward their own group, the
group is in the ct mark, an asymmetric path without synchronization breaks (what the
deferral is for), and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from snep.lab import netns
from snep.lab.aa_topology import AATopology
from tests.conformance.test_topology import CONNECT, LISTEN

pytestmark = [pytest.mark.root]


def _connects(topo: AATopology, group: int) -> bool:
    out = topo.exec(topo.clients[group], [sys.executable, "-c", CONNECT, topo.server_ip, "7000"], check=False)
    return "connected" in out.stdout


def _stage(topo: AATopology) -> None:
    for fw in topo.firewalls:
        topo.start_keepalived(fw)
    for g in topo.groups:
        assert topo.wait_owner(g, timeout=20) is topo.fw(g)
    topo.spawn(topo.server, [sys.executable, "-c", LISTEN], name="listen",
               stdout=subprocess.PIPE).stdout.readline()


def test_each_firewall_forwards_its_group_with_the_group_in_the_mark(real_kernel: None) -> None:
    with AATopology(2, defer_queue=0) as topo:
        names = [topo.sw, topo.server, *topo.clients.values(), *(fw.ns for fw in topo.firewalls)]
        _stage(topo)
        # the queue rules are in place, and with no daemon bound the packets pass (bypass)
        assert "--queue-num 0 --queue-bypass" in topo.exec(topo.fw(1).ns, ["iptables", "-t", "mangle", "-S"]).stdout
        assert _connects(topo, 1) and _connects(topo, 2)
        for g in topo.groups:
            marks = topo.group_marks(topo.fw(g), dport=7000)
            other = topo.group_marks(topo.fw(3 - g), dport=7000)
            assert set(marks.values()) == {g} and not set(other.values()) & {g}
        assert topo.exec(topo.fw(1).ns, ["sysctl", "-n", "net.netfilter.nf_conntrack_tcp_be_liberal"]
                         ).stdout.strip() == "0"
        procs = [p for fw in topo.firewalls for p in fw.procs.values()]
    assert not any(netns.exists(n) for n in names)
    assert all(p.poll() is not None for p in procs)


def test_an_asymmetric_path_without_state_on_the_reply_side_breaks(real_kernel: None) -> None:
    with AATopology(2, asymmetric=True) as topo:
        _stage(topo)
        assert not _connects(topo, 1)  # fw2 has no state for the SYN-ACK of fw1's connection
        assert topo.invalid_drops(topo.fw(2)) > 0
        assert topo.exec(topo.fw(2).ns, ["sysctl", "-n", "net.netfilter.nf_conntrack_tcp_be_liberal"]
                         ).stdout.strip() == "1"
        # once one firewall holds both groups the path is symmetric again: it works
        topo.crash(topo.fw(2))
        assert topo.wait_owner(2, exclude=[topo.fw(2)], timeout=20) is topo.fw(1)
        assert _connects(topo, 1) and _connects(topo, 2)


def test_teardown_also_when_the_body_raises(real_kernel: None) -> None:
    with pytest.raises(RuntimeError), AATopology(3, asymmetric=True, defer_queue=0) as topo:
        names = [topo.sw, topo.server, *topo.clients.values(), *(fw.ns for fw in topo.firewalls)]
        assert all(netns.exists(n) for n in names)
        raise RuntimeError("scenario broke")
    assert not any(netns.exists(n) for n in names)
    assert not topo.dir.exists()
