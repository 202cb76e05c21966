"""`snep demo` runs end to end: connections survive with snep, die without; nothing is left."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from snep.lab import netns
from tests.processes import stop

pytestmark = [pytest.mark.root, pytest.mark.slow]

reason = netns.available()
if reason:
    pytestmark.append(pytest.mark.skip(reason=f"network namespaces unavailable: {reason}"))


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def pids_in(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return out.split()


def test_demo_connections_survive_with_snep_and_die_without():
    proc = subprocess.Popen(
        [sys.executable, "-m", "snep.cli", "demo", "--tcp", "8", "--udp", "2", "--watch", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    with_snep, without = out.split("WITHOUT snep")
    assert "TCP connections alive: 8/8 before, 8/8 after the failover" in with_snep
    synced = int(re.search(r"entries synchronized to fw2 before the failure: (\d+)", with_snep).group(1))
    assert synced >= 10
    gap = float(re.search(r"data gap of the surviving TCP connections: median [\d.]+ s, max ([\d.]+) s", with_snep).group(1))
    assert gap < 10
    assert "TCP connections alive: 8/8 before, 0/8 after the failover" in without
    assert "with snep: 8/8 TCP connections survived; without snep: 0/8" in out
    assert namespaces(f"snepd-{proc.pid}-") == []


def traffic_client_in(ns: str) -> bool:
    """Is the demo's traffic client running in ``ns``? (Not any process: while the stage
    is built, short-lived commands run there too.)"""
    for pid in pids_in(ns):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"snep.lab.traffic" in f.read():
                    return True
        except OSError:
            continue
    return False


def test_demo_cleans_up_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "snep.cli", "demo", "--no-compare"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    prefix = f"snepd-{proc.pid}-"
    try:
        # in the middle of the run: the traffic client runs (it starts after the nodes
        # and keepalived) in the client namespace of the first run (with snep)
        client = f"{prefix}s-cl"
        deadline = time.monotonic() + 90
        while not traffic_client_in(client) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if proc.poll() is not None:
            raise AssertionError(f"the demo ended before its traffic started: {namespaces(prefix)}\n"
                                 f"{proc.communicate(timeout=30)[0]}")
        assert traffic_client_in(client), f"the demo never started its traffic: {namespaces(prefix)}"
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        stop(proc, signal.SIGINT, 60)  # (a Ctrl-C first: a SIGKILL would leave the stage behind)
    assert proc.returncode == 130
    assert namespaces(prefix) == []


def test_active_active_demo_fw1s_connections_live_on_fw2_and_it_returns():
    proc = subprocess.Popen(
        [sys.executable, "-m", "snep.cli", "demo", "--active-active", "--tcp", "8", "--udp", "2", "--watch", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    with_snep, without = out.split("WITHOUT snep")
    assert "TCP connections alive before the failure: group 1 4/4, group 2 4/4" in with_snep
    assert "TCP connections alive after the failure: group 1 4/4, group 2 4/4" in with_snep
    assert "TCP connections alive after fw1's return: group 1 4/4, group 2 4/4" in with_snep
    assert "fw2 took over group 1 after" in with_snep and "took group 1 back after" in with_snep
    acked = re.search(r"fw1 held the first packet of (\d+) new connections until fw2 had their state "
                      r"\((\d+) released on fw2's acknowledgement", with_snep)
    assert acked and int(acked.group(2)) > 0, with_snep  # the deferral worked
    assert "TCP connections alive after the failure: group 1 0/4, group 2 4/4" in without
    assert ("with snep: 8/8 TCP connections survived the failure and the return; "
            "without snep: 4/8 TCP connections survived the failure") in out
    assert namespaces(f"snepa-{proc.pid}-") == []
