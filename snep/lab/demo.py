"""The failover demo: long-lived connections survive a firewall failure with snep, die without.

World (snep.lab.topology): a client, a server, two firewalls fw1 (VRRP primary) and fw2
(backup) with a stateful nftables ruleset and ``nf_conntrack_tcp_loose=0``, a
dedicated sync link, keepalived on both, and (first run) a snep node on each firewall
whose keepalived notify script is ``snep notify``. The client keeps TCP connections
and UDP flows busy through the firewalls (snep.lab.traffic). Then fw1 dies (processes
killed, cables cut), keepalived promotes fw2, and the connections are watched.

The second run does the same without snep: fw2 does not know the TCP connections,
drops their mid-stream packets as invalid, and they stall until they die.

``SnepCluster`` (snep nodes on a Topology) is shared with the runtime tests and the
end-to-end benchmark.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snep.errors import SnepError
from snep.fsm.params import SyncParams
from snep.lab import traffic
from snep.lab.conformance.measure import data_gap
from snep.lab.topology import CLIENT_VIP, SERVER_VIP, SYNC_NETS, Firewall, Topology
from snep.runtime.client import ControlError, request

SYNC_PORT = 3780


def peers_toml(peers: Iterable[tuple[int, str]]) -> str:
    """``peers = ...`` of a node config: ``[{ id = N, address = "ADDRESS:PORT" }, ...]``."""
    return "[" + ", ".join(f"{{ id = {node_id}, address = {json.dumps(address)} }}" for node_id, address in peers) + "]"


def snep_argv(*args: str) -> list[str]:
    """How to run the ``snep`` command of this very installation."""
    return [sys.executable, "-m", "snep.cli", *args]


def command_line(argv: list[str]) -> str:
    """``argv`` as one command for keepalived (a script or notify line), with this
    process's PYTHONPATH made absolute: keepalived runs its scripts in an environment of
    its own, where a relative path, or none, would run another copy of snep."""
    path = os.environ.get("PYTHONPATH")
    if not path:
        return shlex.join(argv)
    absolute = os.pathsep.join(os.path.abspath(p) for p in path.split(os.pathsep) if p)
    return shlex.join(["env", f"PYTHONPATH={absolute}", *argv])


@dataclass
class NodeOptions:
    level: str = "strong"
    #: None: the product's default (the key is not written), as a deployment would run
    inject_on_arrival: bool | None = None
    key: bool = True
    alive_interval: float = 0.5
    peer_dead_timeout: float = 2.0
    extra: str = ""  # more TOML appended to each node's config
    #: sync.mtu and sync.bulk_mtu (None: the defaults): frames beyond the link's MTU
    #: are IP-fragmented
    mtu: int | None = None
    bulk_mtu: int | None = None


class SnepCluster:
    """snep nodes on the firewalls of a Topology: configs, processes, control calls."""

    def __init__(self, topo: Topology, options: NodeOptions | None = None) -> None:
        self.topo = topo
        self.options = options or NodeOptions()
        self.key_file = topo.dir / "snep.key"
        if self.options.key:
            self.key_file.write_text(f"1 {secrets.token_hex(32)}\n")
            self.key_file.chmod(0o600)

    def socket(self, fw: Firewall) -> Path:
        return fw.dir / "ctl.sock"

    def config_path(self, fw: Firewall) -> Path:
        return fw.dir / "snep.toml"

    def ready_command(self, fw: Firewall) -> str:
        """keepalived's track_script: exit 0 only when the node is in sync."""
        return command_line(snep_argv("ctl", "--socket", str(self.socket(fw)), "--timeout", "2", "ready"))

    def notify_command(self, fw: Firewall) -> str:
        """What keepalived runs on a transition (it appends primary/backup/fault)."""
        return command_line(snep_argv("notify", "--socket", str(self.socket(fw))))

    def peers(self, fw: Firewall, link: int) -> str:
        """The TOML array of ``fw``'s peers on sync link ``link``: node id and address."""
        return peers_toml((other.index, f"{other.sync_ips[link]}:{SYNC_PORT}") for other in self.topo.firewalls if other is not fw)

    def write_config(self, fw: Firewall) -> Path:
        o = self.options
        lines = [
            "[node]",
            f"id = {fw.index}",
            f'state_file = "{fw.dir / "state"}"',
            'log_level = "info"',
            "[sync]",
            f'listen = "{fw.sync_ips[0]}:{SYNC_PORT}"',
            f"peers = {self.peers(fw, 0)}",
            'interface = "y0"',
            f'level = "{o.level}"',
            f"alive_interval = {o.alive_interval}",
            f"peer_dead_timeout = {o.peer_dead_timeout}",
        ]
        if o.mtu is not None:
            lines.append(f"mtu = {o.mtu}")
        if o.bulk_mtu is not None:
            lines.append(f"bulk_mtu = {o.bulk_mtu}")
        if o.key:
            lines.append(f'key_file = "{self.key_file}"')
        else:
            lines.append("insecure = true")
        if len(fw.sync_ips) > 1:
            lines += [
                "[sync.second_link]",
                f'listen = "{fw.sync_ips[1]}:{SYNC_PORT}"',
                f"peers = {self.peers(fw, 1)}",
                'interface = "z0"',
            ]
        # the firewalls' own and virtual addresses (the sync links are ignored anyway)
        ignore = ["127.0.0.0/8", "::1/128", f"{CLIENT_VIP}/32", f"{SERVER_VIP}/32"]
        ignore += [f"{net}.0/24" for net in SYNC_NETS]
        ignore += [f"{each.client_ip}/32" for each in self.topo.firewalls]
        ignore += [f"{each.server_ip}/32" for each in self.topo.firewalls]
        if o.inject_on_arrival is not None:
            lines += ["[kernel]", f"inject_on_arrival = {'true' if o.inject_on_arrival else 'false'}"]
        lines += [
            "[filter]",
            'protocols = ["tcp", "udp", "icmp"]',
            f"ignore = {json.dumps(ignore)}",
            "[control]",
            f'socket = "{self.socket(fw)}"',
        ]
        path = self.config_path(fw)
        path.write_text("\n".join(lines) + "\n" + o.extra)
        return path

    def start(self, fw: Firewall, wait: float = 15.0) -> subprocess.Popen[bytes]:
        """Start ``snep run`` in ``fw``'s namespace and wait until its control socket answers."""
        config = self.write_config(fw)
        proc = self.topo.spawn(fw.ns, snep_argv("run", "--config", str(config)), name="snep", fw=fw)
        deadline = time.monotonic() + wait
        while True:
            try:
                self.ctl(fw, "status", timeout=2.0)
                return proc
            except ControlError:
                if proc.poll() is not None:
                    raise SnepError(f"snep on {fw.name} exited with {proc.returncode}: {self.log(fw)[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise SnepError(f"snep on {fw.name} did not answer within {wait:g} s: {self.log(fw)[-2000:]}") from None
                time.sleep(0.05)

    def log(self, fw: Firewall) -> str:
        try:
            return (fw.dir / "snep.log").read_text(errors="replace")
        except OSError:
            return ""

    def ctl(self, fw: Firewall, command: str, *argv: str, timeout: float = 30.0) -> Any:
        return request(self.socket(fw), command, {"argv": list(argv)}, timeout=timeout)

    def stop(self, fw: Firewall, sig: int = signal.SIGTERM) -> None:
        self.topo.kill(fw, "snep", sig)

    def wait_for(self, what: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if what():
                    return True
            except ControlError:
                pass
            time.sleep(step)
        return False


class TrackedTopology(Topology):
    """The topology, with keepalived tracking ``snep ctl ready`` on each firewall.

    A node that is not in sync loses 100 priority points, so it cannot win an election
    against one that is (at start, when no node is in sync yet, the usual priorities
    decide). ``sync_group_tracking_weight`` makes keepalived apply the weight to the
    members of the sync group instead of forcing them to FAULT.
    """

    def __init__(self, *args: Any, ready: Callable[[Firewall], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = ready

    def keepalived_conf(self, fw: Firewall) -> str:
        conf = super().keepalived_conf(fw)
        if self.ready is None:
            return conf
        script = (
            "vrrp_script snep_ready {\n"
            f'    script "{self.ready(fw)}"\n'
            "    interval 1\n    timeout 2\n    fall 1\n    rise 1\n    weight -100\n}\n"
        )
        conf = conf.replace("vrrp_sync_group G {", script + "vrrp_sync_group G {\n    sync_group_tracking_weight", 1)
        return conf.replace("    advert_int", "    track_script {\n        snep_ready\n    }\n    advert_int")


# ------------------------------------------------------------------ measuring traffic


@dataclass
class FlowReport:
    """What the traffic did around one failover."""

    tcp_before: int
    udp_before: int
    tcp_after: int
    udp_after: int
    tcp_total: int
    udp_total: int
    max_gap: float | None  # longest stall of a surviving TCP connection across the failover (s)
    median_gap: float | None


#: the retransmission timeout of the lab's TCP connections, at most: Linux's least
#: (TCP_RTO_MIN, 200 ms: their round trips are far below it) and its variance term
LAB_RTO = 0.25
#: a resumed connection's first echo, and the snapshot's own delay, take less than this (s)
ECHO_MARGIN = 0.5


def watch_until(failed_at: float, takeover_at: float | None, watch: float) -> float:
    """When to look at the connections after a failure: ``watch`` seconds after it, and
    not before a connection silenced by the failure has been heard again after the
    takeover. TCP doubles its retransmission timeout: a connection whose last segment
    was acknowledged at the failure sends again RTO·(2^k - 1) after it (0.2, 0.6, 1.4,
    3.0-3.2, 6.3-6.7 s in the lab), so a takeover that just missed one waits for the next,
    less than twice the outage and one RTO after the failure. Looked at sooner, the
    connections of a takeover 3.3 s after the failure (keepalived's 3 adverts and its
    skew: 2.5-3.5 s) look dead though they carry on at 6.5 s."""
    if takeover_at is None:
        return failed_at + watch
    resent = failed_at + 2 * (takeover_at - failed_at) + LAB_RTO
    return max(failed_at + watch, resent + ECHO_MARGIN)


def alive(flow: dict[str, Any], since: float) -> bool:
    """A flow is alive when it has no error and got an echo after ``since``."""
    return not flow["error"] and flow["last_rx"] > since


def report(before: dict[str, Any], after: dict[str, Any], failed_at: float, settled_at: float) -> FlowReport:
    tcp = [f for f in after["flows"] if f["kind"] == "tcp"]
    udp = [f for f in after["flows"] if f["kind"] == "udp"]
    start = before["time"] - 1.0
    gaps = []
    for flow in tcp:
        if not alive(flow, settled_at):
            continue
        gaps.append(data_gap(flow["stalls"], failed_at))
    gaps.sort()
    return FlowReport(
        tcp_before=sum(alive(f, start) for f in before["flows"] if f["kind"] == "tcp"),
        udp_before=sum(alive(f, start) for f in before["flows"] if f["kind"] == "udp"),
        tcp_after=sum(alive(f, settled_at) for f in tcp),
        udp_after=sum(alive(f, settled_at) for f in udp),
        tcp_total=len(tcp),
        udp_total=len(udp),
        max_gap=gaps[-1] if gaps else None,
        median_gap=gaps[len(gaps) // 2] if gaps else None,
    )


@dataclass
class RunResult:
    with_snep: bool
    flows: FlowReport
    synced: int = 0  # entries in fw2's external cache before the failure
    takeover: float | None = None  # failure -> fw2 holds the virtual addresses (s)
    # fw2's promotion (commit included) finished this long after its virtual addresses
    # came up (positive: packets met a kernel without the connections in between)
    commit_lag: float | None = None
    inject: bool = False
    commit: dict[str, Any] = field(default_factory=dict)
    role_after: str = ""


# ------------------------------------------------------------------ one run


def failover_run(
    with_snep: bool,
    *,
    tcp: int = 20,
    udp: int = 4,
    watch: float = 8.0,
    options: NodeOptions | None = None,
    say: Callable[[str], None] = print,
    prefix: str | None = None,
    advert_int: float = 1.0,
) -> RunResult:
    prefix = prefix or f"snepd-{os.getpid()}-{'s' if with_snep else 'n'}"
    cluster: SnepCluster | None = None

    def notify(fw: Firewall) -> str:
        return cluster.notify_command(fw) if cluster is not None else "/bin/true"

    def ready(fw: Firewall) -> str:
        return cluster.ready_command(fw) if cluster is not None else "/bin/true"

    with TrackedTopology(
        firewalls=2, notify=notify, prefix=prefix, ready=ready if with_snep else None, advert_int=advert_int
    ) as topo:
        fw1, fw2 = topo.fw(1), topo.fw(2)
        if with_snep:
            cluster = SnepCluster(topo, options)
            cluster.start(fw1)
            cluster.start(fw2)
            say("  snep running on fw1 and fw2 (authenticated sync link 10.99.0.0/24)")
        topo.start_keepalived(fw1)
        topo.wait_master(fw1, timeout=20)
        topo.start_keepalived(fw2)
        if cluster is not None:
            cluster.wait_for(lambda: cluster.ctl(fw1, "status")["role"] == "PRIMARY", 10)
        say(f"  fw1 is the VRRP master; opening {tcp} TCP connections and {udp} UDP flows client -> server")
        flows = traffic.start(topo, tcp=tcp, udp=udp, interval=0.05, stall=0.2)
        if flows.hello.get("errors"):
            raise SnepError(f"{flows.hello['errors']} connections could not be opened")
        time.sleep(2.0)
        synced = 0
        if cluster is not None:
            cluster.wait_for(lambda: cluster.ctl(fw2, "external")["count"] >= tcp + udp, 5)
            synced = int(cluster.ctl(fw2, "external")["count"])
            say(f"  fw2's snep knows {synced} connections from fw1 (external cache)")
        before = flows.snap()
        say("  failing fw1 (processes killed, cables cut) ...")
        failed_at = time.time()
        topo.crash(fw1)
        takeover = vip_at = None
        try:
            topo.wait_master(fw2, timeout=15)
            vip_at = time.time()
            takeover = vip_at - failed_at
            say(f"  fw2 took over the virtual addresses after {takeover:.1f} s")
        except SnepError:
            say("  fw2 did not take over within 15 s")
        commit: dict[str, Any] = {}
        role = ""
        if cluster is not None:
            cluster.wait_for(lambda: cluster.ctl(fw2, "status")["role"] == "PRIMARY", 10)
            status = cluster.ctl(fw2, "status")
            role = status["role"]
            commit = status.get("last_commit") or {}
        settled_at = time.time() + 1.0
        until = watch_until(failed_at, vip_at, watch)
        time.sleep(max(until - time.time(), 2.0))
        after = flows.snap()
        lag = None
        if commit.get("finished_at") and vip_at is not None:
            lag = float(commit["finished_at"]) - vip_at
        chosen = options.inject_on_arrival if options is not None else None
        inject = SyncParams().inject_on_arrival if chosen is None else chosen
        result = RunResult(
            with_snep,
            report(before, after, failed_at, settled_at),
            synced=synced,
            takeover=takeover,
            commit=commit,
            role_after=role,
            commit_lag=lag,
            inject=inject,
        )
        flows.command("quit")
        return result


def run_demo(
    *,
    tcp: int = 20,
    udp: int = 4,
    watch: float = 8.0,
    compare: bool = True,
    inject: bool | None = None,
    advert_int: float = 1.0,
    say: Callable[[str], None] = print,
) -> list[RunResult]:
    """Both runs, with the numbers printed as they come; returns the results."""
    results = []
    say("snep demo: a client and a server talk through two stateful firewalls (fw1 primary, fw2")
    say("backup, keepalived/VRRP, nftables dropping packets of connections a firewall does not know).")
    say("fw1 dies mid-stream; fw2 takes over. Does fw2 know the connections?")
    say("")
    say("== 1. failover WITH snep ==")
    options = NodeOptions(inject_on_arrival=inject)
    results.append(failover_run(True, tcp=tcp, udp=udp, watch=watch, options=options, say=say, advert_int=advert_int))
    say(describe(results[-1]))
    if compare:
        say("")
        say("== 2. the same failover WITHOUT snep ==")
        results.append(failover_run(False, tcp=tcp, udp=udp, watch=watch, say=say, advert_int=advert_int))
        say(describe(results[-1]))
    say("")
    say(summary(results))
    return results


def describe(result: RunResult) -> str:
    f = result.flows
    lines = [
        f"  TCP connections alive: {f.tcp_before}/{f.tcp_total} before, {f.tcp_after}/{f.tcp_total} after the failover",
        f"  UDP flows alive:       {f.udp_before}/{f.udp_total} before, {f.udp_after}/{f.udp_total} after",
    ]
    if f.max_gap is not None:
        lines.append(f"  data gap of the surviving TCP connections: median {f.median_gap:.2f} s, max {f.max_gap:.2f} s")
        if result.takeover is not None:
            lines.append(f"    (of which {result.takeover:.1f} s until keepalived on fw2 noticed and took the addresses)")
    if result.with_snep:
        lines.append(f"  entries synchronized to fw2 before the failure: {result.synced}")
        if result.inject:
            lines.append("  fw2's kernel already held the connections (inject_on_arrival, the default): no commit needed")
        if result.commit:
            lines.append(
                f"  promotion of fw2 (commit included): {result.commit.get('entries', '?')} entries written in "
                f"{float(result.commit.get('seconds', 0)) * 1000:.1f} ms"
            )
    return "\n".join(lines)


def summary(results: list[RunResult]) -> str:
    parts = []
    for r in results:
        parts.append(f"{'with' if r.with_snep else 'without'} snep: {r.flows.tcp_after}/{r.flows.tcp_total} TCP connections survived")
    return "== result: " + "; ".join(parts) + " =="
