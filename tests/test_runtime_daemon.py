"""The daemon on the real kernel, in network namespaces (namespaces prefixed snepr-).

Two scenarios, each in its own topology (client, server, fw1, fw2, sync link):

1. fw1 primary with real traffic: fw2's node learns every connection; fw1 dies; fw2 is
   promoted and commits; the TCP connections carry on; the new epoch is persisted.
2. fw2's node is SIGKILLed and restarted: it recovers its internal cache from its
   kernel and its external cache from fw1. Then fw2 gets a wrong key (SIGHUP reload):
   fw1's frames are rejected and counted, nothing is applied. Malformed datagrams at
   its port are counted and change nothing. SIGTERM stops it cleanly.

The virtual addresses are moved by hand (no keepalived here: the demo test covers it),
which keeps the failover deterministic and fast.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from snep.lab import netns, traffic
from snep.lab.demo import SYNC_PORT, NodeOptions, SnepCluster, snep_argv
from snep.lab.topology import CLIENT_VIP, SERVER_VIP, Topology

pytestmark = pytest.mark.root

reason = netns.available()
if reason:
    pytestmark = [pytest.mark.root, pytest.mark.skip(reason=f"network namespaces unavailable: {reason}")]


def take_vips(topo: Topology, fw) -> None:
    """fw becomes the gateway: it holds the virtual addresses; neighbours re-resolve."""
    topo.exec(fw.ns, ["ip", "addr", "add", f"{CLIENT_VIP}/24", "dev", "c0"])
    topo.exec(fw.ns, ["ip", "addr", "add", f"{SERVER_VIP}/24", "dev", "s0"])
    for ns in (topo.client, topo.server):
        topo.exec(ns, ["ip", "neigh", "flush", "all"], check=False)


def external_ports(cluster: SnepCluster, fw, port: int) -> int:
    return sum(f":{port} " in line for line in cluster.ctl(fw, "external")["entries"])


def internal_ports(cluster: SnepCluster, fw, port: int) -> int:
    return sum(f":{port} " in line for line in cluster.ctl(fw, "internal")["entries"])


@pytest.fixture
def world():
    prefix = f"snepr-{os.getpid()}-{secrets.token_hex(2)}"
    with Topology(firewalls=2, prefix=prefix) as topo:
        # cold backups: the tests below check what the takeover's commit writes
        cluster = SnepCluster(topo, NodeOptions(alive_interval=0.3, peer_dead_timeout=1.5, inject_on_arrival=False))
        try:
            yield topo, cluster
        finally:
            for fw in topo.firewalls:
                log = cluster.log(fw)
                if log:
                    print(f"--- snep log of {fw.name} ---\n{log[-3000:]}")


def test_sync_real_traffic_and_failover_keeps_tcp_alive(world):
    topo, cluster = world
    fw1, fw2 = topo.fw(1), topo.fw(2)
    cluster.start(fw1)
    cluster.start(fw2)
    assert cluster.ctl(fw1, "notify", "primary")["role"] == "PRIMARY"
    cluster.ctl(fw2, "notify", "backup")
    assert cluster.wait_for(lambda: cluster.ctl(fw2, "ready")["ready"], 10), "fw2 never became ready"
    take_vips(topo, fw1)

    flows = traffic.start(topo, tcp=8, udp=2, interval=0.05, stall=0.2)
    assert flows.hello["errors"] == 0
    assert cluster.wait_for(lambda: external_ports(cluster, fw2, traffic.TCP_PORT) >= 8, 10), cluster.ctl(fw2, "external")
    assert cluster.wait_for(lambda: external_ports(cluster, fw2, traffic.UDP_PORT) >= 2, 10), cluster.ctl(fw2, "external")
    # the external cache is not in fw2's kernel until the commit (inject_on_arrival off)
    assert not topo.conntrack_tcp(fw2, dport=traffic.TCP_PORT)
    epoch_before = cluster.ctl(fw2, "status")["epoch"]

    failed_at = time.time()
    topo.crash(fw1)
    take_vips(topo, fw2)
    answer = cluster.ctl(fw2, "notify", "primary")
    assert answer["role"] == "PRIMARY"
    assert answer["committed"] >= 10
    assert len(topo.conntrack_tcp(fw2, dport=traffic.TCP_PORT)) >= 8

    # every connection answers again through fw2 (an echo received a second after the
    # failure, not one that was on its way), or one fails: whichever comes first
    def tcp_flows() -> list[dict]:
        return [f for f in flows.snap()["flows"] if f["kind"] == "tcp"]

    def dead(flows_now: list[dict]) -> list[dict]:
        return [f for f in flows_now if f["error"] or f["last_rx"] < failed_at + 1.0]

    cluster.wait_for(lambda: not dead(now := tcp_flows()) or any(f["error"] for f in now), 20)
    assert not dead(tcp_flows()), f"connections died across the failover: {dead(tcp_flows())}"

    status = cluster.ctl(fw2, "status")
    assert status["role"] == "PRIMARY" and status["ready"]
    assert tuple(status["epoch"]) > tuple(epoch_before) and status["epoch"][1] == 2
    saved = json.loads((fw2.dir / "state").read_text())
    assert [saved["term"], saved["node_id"]] == status["epoch"]


def test_restart_wrong_key_malformed_and_shutdown(world):
    topo, cluster = world
    fw1, fw2 = topo.fw(1), topo.fw(2)
    cluster.start(fw1)
    cluster.start(fw2)
    cluster.ctl(fw1, "notify", "primary")
    take_vips(topo, fw1)
    flows = traffic.start(topo, tcp=5, udp=1, interval=0.1, stall=0.5)
    assert cluster.wait_for(lambda: external_ports(cluster, fw2, traffic.TCP_PORT) >= 5, 10)

    # -- a crashed node restarts: internal cache from its kernel, external from the peer;
    # an entry of its earlier life that the primary's dump does not confirm leaves both
    topo.exec(fw2.ns, ["conntrack", "-I", "-s", "10.1.0.77", "-d", "10.2.0.77", "-p", "tcp", "--sport", "1234",
                       "--dport", "80", "--state", "ESTABLISHED", "-t", "600", "-u", "SEEN_REPLY,ASSURED"])
    cluster.stop(fw2, signal.SIGKILL)
    cluster.start(fw2)
    assert cluster.wait_for(lambda: cluster.ctl(fw2, "ready")["ready"], 10), cluster.ctl(fw2, "status")
    assert external_ports(cluster, fw2, traffic.TCP_PORT) >= 5
    assert cluster.ctl(fw2, "stats")["vouch_unconfirmed"] >= 1  # (it was in the internal cache)
    assert not any("10.1.0.77:1234" in line for line in cluster.ctl(fw2, "internal")["entries"])
    assert "10.1.0.77" not in topo.exec(fw2.ns, ["conntrack", "-L", "-p", "tcp", "--sport", "1234"], check=False).stdout
    assert cluster.ctl(fw2, "status")["role"] in ("BACKUP", "SYNCING")

    # -- wrong key (reloaded with SIGHUP): frames rejected and counted, no state applied
    before = cluster.ctl(fw2, "stats")
    key = fw2.dir / "other.key"
    key.write_text(f"1 {secrets.token_hex(32)}\n")
    key.chmod(0o600)
    config = cluster.config_path(fw2)
    config.write_text(config.read_text().replace(str(cluster.key_file), str(key)))
    fw2.procs["snep"].send_signal(signal.SIGHUP)
    assert cluster.wait_for(lambda: cluster.ctl(fw2, "stats")["reloads"] == before["reloads"] + 1, 10)
    known = cluster.ctl(fw2, "external")["count"]
    flows.open(tcp=3)
    assert cluster.wait_for(lambda: cluster.ctl(fw2, "stats")["auth_failures"] > before["auth_failures"], 10)
    # fw1 has sent the 3 new connections once they are in its internal cache (a primary
    # sends a kernel event's frames as it reads it); that they were not applied is
    # checked below, once fw2 has provably read everything fw1 sent
    assert cluster.wait_for(lambda: internal_ports(cluster, fw1, traffic.TCP_PORT) >= 8, 10), cluster.ctl(fw1, "internal")

    # -- malformed datagrams at the port: counted, the node carries on
    stats = cluster.ctl(fw2, "stats")
    garbage = [b"", b"\x00", b"SNEP" * 3, secrets.token_bytes(40), secrets.token_bytes(1400)]
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], int(sys.argv[3])))\n"
        "for h in sys.argv[4:]: s.sendto(bytes.fromhex(h), (sys.argv[2], int(sys.argv[3])))\n"
    )
    cluster.stop(fw1)  # free fw1's sync port: the garbage comes from a configured peer
    topo.exec(fw1.ns, [sys.executable, "-c", script, fw1.sync_ips[0], fw2.sync_ips[0], str(SYNC_PORT), *(g.hex() for g in garbage)])
    # fw1's frames fail authentication, never decoding: "malformed" counts the garbage
    # alone. The garbage left after fw1 had stopped, on the same link to the same
    # socket, which fw2 reads in order: once it is counted, fw2 has read every frame fw1
    # sent, the 3 new connections' among them.
    assert cluster.wait_for(lambda: cluster.ctl(fw2, "stats")["malformed"] >= stats["malformed"] + len(garbage) - 1, 10), \
        (stats, cluster.ctl(fw2, "stats"))
    status = cluster.ctl(fw2, "status")
    assert status["external"] == known  # nothing of fw1's with the wrong key was applied
    assert external_ports(cluster, fw2, traffic.TCP_PORT) == 5

    # -- unknown control command: clear error, counted
    with pytest.raises(Exception, match="unknown command 'frob'"):
        cluster.ctl(fw2, "frob")
    assert cluster.ctl(fw2, "stats")["control_unknown_commands"] == 1

    # -- SIGTERM: clean exit, control socket removed
    proc = fw2.procs["snep"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not cluster.socket(fw2).exists()
    assert "shutting down" in cluster.log(fw2)


def test_start_without_key_warns_and_bad_configs_fail(tmp_path):
    with Topology(firewalls=2, prefix=f"snepr-{os.getpid()}-k") as topo:
        cluster = SnepCluster(topo, NodeOptions(key=False))
        fw = topo.fw(1)
        cluster.start(fw)
        assert "frames are neither encrypted nor authenticated" in cluster.log(fw)
        assert cluster.ctl(fw, "status")["sealed"] is False
        # a second node on the same control socket refuses to start, clearly
        second = topo.exec(fw.ns, snep_argv("run", "--config", str(cluster.config_path(fw))), check=False)
        assert second.returncode == 1 and "is in use" in second.stderr
        cluster.stop(fw)
    # a state file that cannot be written: refused at start, not at the first promotion
    unwritable = tmp_path / "unwritable.toml"
    unwritable.write_text(
        f'[node]\nid = 1\nstate_file = "/proc/snep/state"\n[sync]\nlisten = "127.0.0.1:3799"\n'
        f'peers = [{{ id = 2, address = "127.0.0.2:3799" }}]\ninsecure = true\n[control]\nsocket = "{tmp_path}/ctl.sock"\n'
    )
    result = subprocess.run([sys.executable, "-m", "snep.cli", "run", "--config", str(unwritable)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot write the state file /proc/snep/state" in result.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "nope" }]\n')
    result = subprocess.run([sys.executable, "-m", "snep.cli", "run", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{bad}: sync.peers[0].address: bad address 'nope'" in result.stderr
    # no key and no explicit insecure = true: refused, saying why
    keyless = tmp_path / "keyless.toml"
    keyless.write_text('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\n')
    result = subprocess.run([sys.executable, "-m", "snep.cli", "run", "--config", str(keyless)], capture_output=True, text=True)
    assert result.returncode == 1 and f"{keyless}: sync.key_file: missing: frames must be sealed" in result.stderr
