"""Sync links on the real kernel: IPv4 multicast main link, IPv6 unicast second link,
failover when the main link's cable is cut; Prometheus metrics on HTTP.

Two namespaces (snepr-...), each with conntrack active; entries are created with
``conntrack -I`` on the primary and must show up in the backup's external cache.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snep.lab import netns
from snep.runtime import client
from snep.runtime.client import ControlError, request
from tests.processes import stop

pytestmark = pytest.mark.root

reason = netns.available()
if reason:
    pytestmark = [pytest.mark.root, pytest.mark.skip(reason=f"network namespaces unavailable: {reason}")]


MAIN_LINKS = {
    "ipv4-multicast": ('"10.96.0.{i}:3790"', '"10.96.0.{p}:3790"', "225.0.0.96"),
    "ipv6-multicast": ('"[fd96::{i}]:3790"', '"[fd96::{p}]:3790"', "ff02::96"),
}


def config(index: int, peer: int, tmp: Path, key: Path, main: str = "ipv4-multicast") -> Path:
    listen, peer_address, group = MAIN_LINKS[main]
    text = f"""
[node]
id = {index}
state_file = "{tmp}/state{index}"
[sync]
listen = {listen.format(i=index)}
peers = [{{ id = {peer}, address = {peer_address.format(p=peer)} }}]
multicast_group = "{group}"
interface = "y0"
key_file = "{key}"
alive_interval = 0.2
peer_dead_timeout = 1.0
[sync.second_link]
listen = "[fd97::{index}]:3791"
peers = [{{ id = {peer}, address = "[fd97::{peer}]:3791" }}]
interface = "z0"
[control]
socket = "{tmp}/ctl{index}.sock"
[metrics]
listen = "127.0.0.1:{9470 + index}"
"""
    path = tmp / f"node{index}.toml"
    path.write_text(text)
    return path


def insert(ns: str, sport: int) -> None:
    netns.run_in(ns, ["conntrack", "-I", "-s", "10.50.0.1", "-d", "10.60.0.1", "-p", "tcp", "--sport", str(sport),
                      "--dport", "443", "--state", "ESTABLISHED", "-t", "300", "-u", "SEEN_REPLY,ASSURED"])


def wait(what, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if what():
                return True
        except ControlError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(params=["ipv4-multicast"])
def pair(request, tmp_path):
    tag = f"snepr-{os.getpid()}-{secrets.token_hex(2)}"
    a, b = f"{tag}-a", f"{tag}-b"
    procs: list[subprocess.Popen[bytes]] = []
    key = tmp_path / "key"
    key.write_text(f"3 {secrets.token_hex(32)}\n")
    key.chmod(0o600)
    try:
        netns.create(a)
        netns.create(b)
        netns.veth(a, "y0", b, "y0")
        netns.veth(a, "z0", b, "z0")
        for ns, i in ((a, 1), (b, 2)):
            netns.address(ns, "y0", f"10.96.0.{i}/24")
            netns.address(ns, "y0", f"fd96::{i}/64")
            netns.address(ns, "z0", f"fd97::{i}/64")
            netns.load_ruleset(ns)
        for ns, i, peer in ((a, 1, 2), (b, 2, 1)):
            log = open(tmp_path / f"node{i}.log", "wb")
            procs.append(netns.popen_in(ns, [sys.executable, "-m", "snep.cli", "run", "--config",
                                             str(config(i, peer, tmp_path, key, request.param))],
                                            stdout=log, stderr=log))
        for i in (1, 2):
            assert wait(lambda: client.request(tmp_path / f"ctl{i}.sock", "status")), (tmp_path / f"node{i}.log").read_text()
        yield a, b, tmp_path
    finally:
        for proc in procs:
            stop(proc, grace=5)
        for i in (1, 2):
            log = tmp_path / f"node{i}.log"
            if log.exists():
                print(f"--- node {i} ---\n{log.read_text()[-3000:]}")
        netns.delete(a)
        netns.delete(b)


def external(tmp: Path, index: int = 2) -> list[str]:
    return request(tmp / f"ctl{index}.sock", "external")["entries"]


def test_multicast_main_link_ipv6_second_link_failover_and_metrics(pair):
    a, b, tmp = pair
    request(tmp / "ctl1.sock", "notify", {"argv": ["primary"]})
    assert wait(lambda: request(tmp / "ctl2.sock", "ready")["ready"])

    insert(a, 1001)
    assert wait(lambda: any(":1001 " in line for line in external(tmp))), external(tmp)
    assert request(tmp / "ctl1.sock", "status")["active_link"] == "main"
    stats = request(tmp / "ctl2.sock", "stats")
    assert stats["transport"]["main"]["received"] > 0

    # cut the main link's cable: both nodes move to the IPv6 second link
    netns.link_set(a, "y0", up=False)
    insert(a, 1002)
    assert wait(lambda: any(":1002 " in line for line in external(tmp)), 15), (
        request(tmp / "ctl1.sock", "stats")["transport"], request(tmp / "ctl2.sock", "stats")["transport"])
    for i in (1, 2):
        assert wait(lambda: request(tmp / f"ctl{i}.sock", "status")["active_link"] == "second", 5)
    assert request(tmp / "ctl2.sock", "stats")["transport"]["link_failovers"] >= 1

    # the counters in Prometheus text format, from inside the backup's namespace
    text = netns.run_in(b, [sys.executable, "-c",
                            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9472/metrics').read().decode())"])
    assert "snep_state_messages_applied " in text
    assert "snep_ready 1" in text and "snep_external_entries 2\n" in text  # the sync traffic is not synced
    assert "snep_transport_link_failovers 1" in text or "snep_transport_link_failovers 2" in text
    missing = netns.run_in(b, [sys.executable, "-c",
                               "import urllib.request, urllib.error\n"
                               "try: urllib.request.urlopen('http://127.0.0.1:9472/other')\n"
                               "except urllib.error.HTTPError as e: print(e.code)"])
    assert missing.strip() == "404"


@pytest.mark.parametrize("pair", ["ipv6-multicast"], indirect=True)
def test_ipv6_multicast_main_link(pair):
    a, b, tmp = pair
    request(tmp / "ctl1.sock", "notify", {"argv": ["primary"]})
    assert wait(lambda: request(tmp / "ctl2.sock", "ready")["ready"])
    insert(a, 2001)
    assert wait(lambda: any(":2001 " in line for line in external(tmp))), external(tmp)
    stats = request(tmp / "ctl2.sock", "stats")
    assert stats["transport"]["active_link"] == "main" and stats["transport"]["main"]["received"] > 0
    assert stats["auth_failures"] == 0 and stats["malformed"] == 0
    assert stats["unknown_sources"] == 0  # frames carry the configured source, not fe80::


def test_the_sync_link_moves_back_to_the_main_link_when_it_recovers(pair):
    a, _b, tmp = pair
    request(tmp / "ctl1.sock", "notify", {"argv": ["primary"]})
    assert wait(lambda: request(tmp / "ctl2.sock", "ready")["ready"])
    netns.link_set(a, "y0", up=False)
    for i in (1, 2):
        assert wait(lambda i=i: request(tmp / f"ctl{i}.sock", "status")["active_link"] == "second", 15)
    netns.link_set(a, "y0", up=True)
    for i in (1, 2):
        assert wait(lambda i=i: request(tmp / f"ctl{i}.sock", "status")["active_link"] == "main", 15), (
            request(tmp / f"ctl{i}.sock", "stats")["transport"])
    received = request(tmp / "ctl2.sock", "stats")["transport"]["main"]["received"]
    insert(a, 3001)
    assert wait(lambda: any(":3001 " in line for line in external(tmp))), external(tmp)
    stats = request(tmp / "ctl2.sock", "stats")
    assert stats["transport"]["main"]["received"] > received and stats["transport"]["link_failbacks"] >= 1
    assert stats["malformed"] == 0  # the probes never reach the node
