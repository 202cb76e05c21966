"""The stage itself: the ruleset is stateful, VRRP elects fw1, and teardown is complete."""

from __future__ import annotations

import subprocess
import sys

import pytest

from snep.lab import netns
from snep.lab.topology import Topology

pytestmark = [pytest.mark.root]

CONNECT = ("import socket,sys; s=socket.socket(); s.settimeout(2); "
           "s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')")
LISTEN = ("import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('0.0.0.0', 7000)); s.listen(); print('up', flush=True); "
          "[s.accept() for _ in range(3)]")


def _connects(topo: Topology, ns: str, ip: str) -> bool:
    result = topo.exec(ns, [sys.executable, "-c", CONNECT, ip, "7000"], check=False)
    return "connected" in result.stdout


def test_stateful_ruleset_and_vrrp_and_teardown(real_kernel: None) -> None:
    with Topology(firewalls=2) as topo:
        names = [topo.sw, topo.client, topo.server] + [fw.ns for fw in topo.firewalls]
        assert all(netns.exists(n) for n in names)
        for fw in topo.firewalls:
            topo.start_keepalived(fw)
        assert topo.wait_master(timeout=15) is topo.fw(1)
        for ns in (topo.client, topo.server):
            topo.spawn(ns, [sys.executable, "-c", LISTEN], name=f"listen-{ns}",
                       stdout=subprocess.PIPE).stdout.readline()
        # new connections only from the client side
        assert _connects(topo, topo.client, topo.server_ip)
        assert not _connects(topo, topo.server, topo.client_ip)
        established = topo.conntrack_tcp(topo.fw(1), dport=7000)
        assert ("10.1.0.10", "10.2.0.10") in {k[:2] for k in established}
        assert topo.exec(topo.fw(1).ns, ["sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"]
                         ).stdout.strip() == "0"
        procs = [p for fw in topo.firewalls for p in fw.procs.values()]
    assert not any(netns.exists(n) for n in names)
    assert all(p.poll() is not None for p in procs)


def test_teardown_also_when_the_body_raises(real_kernel: None) -> None:
    with pytest.raises(RuntimeError):
        with Topology(firewalls=1) as topo:
            names = [topo.sw, topo.client, topo.fw(1).ns]
            raise RuntimeError("scenario broke")
    assert not any(netns.exists(n) for n in names)


def test_three_firewalls_with_two_sync_links(real_kernel: None) -> None:
    with Topology(firewalls=3, sync_links=2) as topo:
        fw3 = topo.fw(3)
        assert fw3.sync_ips == ("10.99.0.3", "10.98.0.3")
        addrs = topo.exec(fw3.ns, ["ip", "-4", "-o", "addr", "show"]).stdout
        assert " 10.99.0.3/24 " in addrs and " 10.98.0.3/24 " in addrs
        reach = [sys.executable, "-c",
                 "import socket,sys; s=socket.create_connection((sys.argv[1], 7001), 1)"]
        topo.spawn(topo.fw(1).ns, [sys.executable, "-c", LISTEN.replace("7000", "7001")],
                   name="listen", stdout=subprocess.PIPE).stdout.readline()
        assert topo.exec(fw3.ns, [*reach, "10.98.0.1"], check=False).returncode == 0
        topo.cut_sync(fw3)  # both sync links of fw3 go dark
        assert topo.exec(fw3.ns, [*reach, "10.98.0.1"], check=False).returncode != 0
        assert topo.exec(fw3.ns, [*reach, "10.99.0.1"], check=False).returncode != 0
