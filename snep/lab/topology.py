"""A firewall cluster in network namespaces: the stage for the conformance suite and the demo.

Layout (every namespace name starts with a prefix unique to the run, so parallel runs
never collide; interface names live inside the namespaces, so they can be fixed)::

    client (10.1.0.10) --+                           +-- server (10.2.0.10)
                         |  "sw" namespace: bridges  |
             brc 10.1.0.0/24                 brs 10.2.0.0/24
              |       |       |                 |       |       |
             fw1     fw2     fw3  ...  (c0 = 10.1.0.N, s0 = 10.2.0.N)
              |       |       |
             bry 10.99.0.0/24 (sync link y0; optional second sync link z0 on brz 10.98.0.0/24)

The virtual gateways 10.1.0.254 (client side) and 10.2.0.254 (server side) are held by
keepalived (VRRP, one sync group), which runs a notify command on each transition.
Every firewall runs the same stateful nftables ruleset: established/related accepted,
new TCP only with a bare SYN from the client side, invalid dropped, and
``nf_conntrack_tcp_loose=0`` so that a mid-stream packet never creates an entry: a
firewall that does not know a connection kills it, which is what the suite detects.

Failures are done on the switch side (the peer of the firewall's interface goes down),
like a pulled cable: the firewall sees no carrier, keepalived goes to FAULT.

Use::

    with Topology(firewalls=2, notify=lambda fw: "/usr/bin/true") as topo:
        topo.start_keepalived()
        topo.wait_master(1)
        topo.exec(topo.client, ["ping", "-c1", topo.server_ip])
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Self

from snep.errors import SnepError
from snep.lab import netns

CLIENT_NET = "10.1.0"
SERVER_NET = "10.2.0"
SYNC_NETS = ("10.99.0", "10.98.0")
CLIENT_IP = f"{CLIENT_NET}.10"
SERVER_IP = f"{SERVER_NET}.10"
CLIENT_VIP = f"{CLIENT_NET}.254"
SERVER_VIP = f"{SERVER_NET}.254"
SYNC_IFACES = ("y0", "z0")

#: the stateful ruleset of every firewall (c0 faces the clients, s0 the servers)
RULESET = """\
table inet snepfw {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid counter drop
        ct state established,related counter accept
        iifname "c0" oifname "s0" tcp flags & (fin|syn|rst|ack) == syn ct state new counter accept
        iifname "c0" oifname "s0" meta l4proto { udp, icmp } ct state new counter accept
        counter drop
    }
}
"""

_run_counter = itertools.count()


class TopologyError(SnepError):
    """A namespace, link or process of the topology could not be set up."""


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capture its output; a failure is a TopologyError."""
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                                input=input)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TopologyError(f"{shlex.join(cmd)}: {error}") from error
    if check and result.returncode != 0:
        raise TopologyError(f"{shlex.join(cmd)}: exit {result.returncode}: "
                            f"{result.stderr.strip() or result.stdout.strip()}")
    return result


@dataclass
class Firewall:
    """One firewall: its index (1-based), namespace and addresses."""

    index: int
    ns: str
    client_ip: str
    server_ip: str
    sync_ips: tuple[str, ...]
    priority: int
    dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"fw{self.index}"


class Topology:
    """Namespaces, links, rules and processes of one run; torn down on exit, always."""

    def __init__(self, firewalls: int = 2, *, sync_links: int = 1,
                 notify: Callable[[Firewall], str] | None = None,
                 notify_fifo: Callable[[Firewall], Path | None] | None = None,
                 advert_int: float = 1.0, prefix: str | None = None,
                 workdir: Path | None = None, keep_logs: bool = False) -> None:
        if not 1 <= firewalls <= 9:
            raise TopologyError("firewalls must be between 1 and 9")
        if sync_links not in (1, 2):
            raise TopologyError("sync_links must be 1 or 2")
        self.prefix = prefix or f"snepc-{os.getpid()}-{next(_run_counter)}"
        self.n = firewalls
        self.sync_links = sync_links
        self.notify = notify
        self.notify_fifo = notify_fifo
        self.advert_int = advert_int
        self.keep_logs = keep_logs
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.sw = f"{self.prefix}-sw"
        self.client = f"{self.prefix}-cl"
        self.server = f"{self.prefix}-sv"
        self.client_ip, self.server_ip = CLIENT_IP, SERVER_IP
        self.client_vip, self.server_vip = CLIENT_VIP, SERVER_VIP
        self.firewalls = [
            Firewall(index=i, ns=f"{self.prefix}-fw{i}", client_ip=f"{CLIENT_NET}.{i}",
                     server_ip=f"{SERVER_NET}.{i}",
                     sync_ips=tuple(f"{net}.{i}" for net in SYNC_NETS[:sync_links]),
                     priority=200 - 10 * i, dir=self.dir / f"fw{i}")
            for i in range(1, firewalls + 1)
        ]
        self._namespaces: list[str] = []
        self._down_ports: set[str] = set()
        self._watched: set[tuple[str, int]] = set()  # (firewall, port) of watch_invalid
        self._procs: list[subprocess.Popen[bytes]] = []
        self._old_handlers: dict[int, object] = {}

    # ---- context manager: set up, tear down (also on failure, SIGINT, SIGTERM) ----

    def __enter__(self) -> Self:
        self._install_signal_handlers()
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _install_signal_handlers(self) -> None:
        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[signum] = signal.signal(signum, interrupt)
            except ValueError:  # not the main thread: the caller handles signals
                pass

    def close(self) -> None:
        """Stop every process we started (by PID), delete our namespaces and files.

        A second Ctrl-C or SIGTERM while this runs (an impatient user, a test's
        timeout) must not leave half of the stage behind: the signals wait until
        everything is gone, and one step's error does not stop the next.
        """
        for signum in self._old_handlers:
            signal.signal(signum, signal.SIG_IGN)
        for proc in reversed(self._procs):
            try:
                self._stop(proc)
            except Exception:  # (best effort: the namespaces must still go)
                pass
        self._procs.clear()
        for ns in reversed(self._namespaces):
            try:
                netns.delete(ns)
            except Exception as error:  # (said, so that a leftover namespace has a reason)
                print(f"snep lab: cleanup: {error}", file=sys.stderr)
        self._namespaces.clear()
        if self._own_dir and not self.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()

    # ---- building ----

    def _add_ns(self, ns: str) -> None:
        self._namespaces.append(ns)
        netns.create(ns)

    def _veth(self, ns: str, ifname: str, bridge: str, port: str) -> None:
        netns.veth(ns, ifname, self.sw, port, up=False)
        run(["ip", "-n", self.sw, "link", "set", port, "master", bridge, "up"])
        netns.link_set(ns, ifname, up=True)

    def build(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._add_ns(self.sw)
        bridges = ["brc", "brs", "bry", "brz"][: 3 + (self.sync_links - 1)]
        for br in bridges:
            run(["ip", "-n", self.sw, "link", "add", br, "type", "bridge",
                 "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0"])
            run(["ip", "-n", self.sw, "link", "set", br, "up"])
        self.build_ends()
        for fw in self.firewalls:
            self.build_firewall(fw)

    def build_ends(self) -> None:
        """The client and the server, each with a virtual gateway as its default route."""
        for ns, ip, vip, br in ((self.client, CLIENT_IP, CLIENT_VIP, "brc"),
                                (self.server, SERVER_IP, SERVER_VIP, "brs")):
            self.add_host(ns, ip, br, "cl" if br == "brc" else "sv", via=vip)

    def add_host(self, ns: str, ip: str, bridge: str, port: str, via: str | None = None) -> None:
        """A namespace with one interface ``e0`` on ``bridge`` (switch port ``port``)."""
        self._add_ns(ns)
        self._veth(ns, "e0", bridge, port)
        netns.address(ns, "e0", f"{ip}/24")
        if via is not None:
            netns.route(ns, "default", via=via)

    def build_firewall(self, fw: Firewall) -> None:
        """``fw``'s namespace, its links and addresses, the stateful ruleset, forwarding."""
        fw.dir.mkdir(parents=True, exist_ok=True)
        self._add_ns(fw.ns)
        self._veth(fw.ns, "c0", "brc", f"{fw.name}c")
        self._veth(fw.ns, "s0", "brs", f"{fw.name}s")
        netns.address(fw.ns, "c0", f"{fw.client_ip}/24")
        netns.address(fw.ns, "s0", f"{fw.server_ip}/24")
        for k, ip in enumerate(fw.sync_ips):
            iface, br = SYNC_IFACES[k], ("bry", "brz")[k]
            self._veth(fw.ns, iface, br, f"{fw.name}{iface[0]}")
            netns.address(fw.ns, iface, f"{ip}/24")
        netns.load_ruleset(fw.ns, RULESET)
        # the ruleset uses ct: now the namespace's conntrack is active and the knob exists
        netns.sysctl(fw.ns, "net.ipv4.ip_forward", 1)
        netns.sysctl(fw.ns, "net.netfilter.nf_conntrack_tcp_loose", 0)

    # ---- access ----

    def fw(self, index: int) -> Firewall:
        """Firewall ``index`` (1-based, as in the namespace name)."""
        return self.firewalls[index - 1]

    def exec(self, ns: str, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in namespace ``ns`` and wait for it."""
        return run(netns.exec_argv(ns, cmd), check=check, timeout=timeout, input=input)

    def spawn(self, ns: str, cmd: Sequence[str], *, name: str, fw: Firewall | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process in ``ns``; it is stopped (by PID) at teardown."""
        log = log or (fw.dir if fw else self.dir) / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(netns.exec_argv(ns, cmd), stdin=stdin,
                                    stdout=stdout if stdout is not None else out,
                                    stderr=out, start_new_session=True)
        self._procs.append(proc)
        if fw is not None:
            fw.procs[name] = proc
        return proc

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
              grace: float = 3.0) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # its own session: the process and its children only
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(grace)

    def kill(self, fw: Firewall, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one named process of ``fw`` (and its children) with ``sig``."""
        proc = fw.procs.pop(name, None)
        if proc is not None:
            self._stop(proc, sig)

    # ---- keepalived ----

    def keepalived_conf(self, fw: Firewall) -> str:
        """One sync group G (instances VC, VS). The notify command runs on every transition
        (it also timestamps them); ``notify_fifo`` adds keepalived's FIFO, which a daemon
        reads without a process per transition. VRRPv2 counts adverts in whole seconds:
        a shorter ``advert_int`` needs VRRPv3 (centiseconds)."""
        notify = self.notify(fw) if self.notify else "/bin/true"
        lines = [
            *self.global_defs(fw),
            "vrrp_sync_group G {",
            "    group {",
            "        VC",
            "        VS",
            "    }",
            f'    notify_master "{notify} primary"',
            f'    notify_backup "{notify} backup"',
            f'    notify_fault "{notify} fault"',
            "}",
        ]
        for inst, iface, vrid, vip in (("VC", "c0", 51, CLIENT_VIP), ("VS", "s0", 52, SERVER_VIP)):
            lines += [
                f"vrrp_instance {inst} {{",
                "    state BACKUP",
                "    nopreempt",
                f"    interface {iface}",
                f"    virtual_router_id {vrid}",
                f"    priority {fw.priority}",
                f"    advert_int {self.advert_int:g}",
                "    virtual_ipaddress {",
                f"        {vip}/24 dev {iface}",
                "    }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def global_defs(self, fw: Firewall) -> list[str]:
        """keepalived's global_defs of ``fw``: its FIFO, VRRPv3 for sub-second adverts,
        gratuitous ARPs that make a takeover seen at once."""
        fifo = self.notify_fifo(fw) if self.notify_fifo else None
        return [
            "global_defs {",
            f"    router_id {self.prefix}-{fw.name}",
            "    script_user root",
            *([f"    notify_fifo {fifo}"] if fifo else []),
            *(["    vrrp_version 3"] if self.advert_int != int(self.advert_int) else []),
            "    vrrp_garp_master_delay 1",
            "    vrrp_garp_master_repeat 3",
            "    vrrp_garp_master_refresh 1",
            "}",
        ]

    def start_keepalived(self, fw: Firewall) -> None:
        conf = fw.dir / "keepalived.conf"
        conf.write_text(self.keepalived_conf(fw))
        self.spawn(fw.ns, ["keepalived", "-n", "-l", "-D", "-P", "-G", "-f", str(conf),
                           "-p", str(fw.dir / "keepalived.pid"),
                           "-r", str(fw.dir / "vrrp.pid"),
                           "-c", str(fw.dir / "checkers.pid")],
                   name="keepalived", fw=fw)

    def holds_vip(self, fw: Firewall) -> bool:
        out = self.exec(fw.ns, ["ip", "-4", "-o", "addr", "show"], check=False).stdout
        return f" {CLIENT_VIP}/" in out and f" {SERVER_VIP}/" in out

    def master(self) -> Firewall | None:
        """The firewall that holds both virtual addresses and is reachable, if any."""
        for fw in self.firewalls:
            if self.links_up(fw) and self.holds_vip(fw):
                return fw
        return None

    def wait_master(self, fw: Firewall | None = None, timeout: float = 20.0,
                    exclude: Sequence[Firewall] = ()) -> Firewall:
        """Wait until ``fw`` (or any firewall not in ``exclude``) is the VRRP master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for cand in self.firewalls:
                if cand in exclude or (fw is not None and cand is not fw):
                    continue
                if self.links_up(cand) and self.holds_vip(cand):
                    return cand
            time.sleep(0.05)
        raise TopologyError(f"no VRRP master{' ' + fw.name if fw else ''} after {timeout:g} s")

    # ---- faults ----

    def _set_port(self, port: str, up: bool) -> None:
        run(["ip", "-n", self.sw, "link", "set", port, "up" if up else "down"])
        (self._down_ports.discard if up else self._down_ports.add)(port)

    def links_up(self, fw: Firewall) -> bool:
        """Whether ``fw``'s client and server cables are connected."""
        return not {f"{fw.name}c", f"{fw.name}s"} & self._down_ports

    def fail_links(self, fw: Firewall, *, sync: bool = True) -> None:
        """Cut ``fw``'s cables (client, server and, with ``sync``, the sync links)."""
        for port in self._ports(fw, sync=sync):
            self._set_port(port, False)

    def heal_links(self, fw: Firewall, *, sync: bool = True) -> None:
        for port in self._ports(fw, sync=sync):
            self._set_port(port, True)

    def cut_sync(self, fw: Firewall, links: Sequence[int] | None = None) -> None:
        """Cut ``fw``'s sync links (all, or those numbered in ``links``: 0 = y0, 1 = z0);
        it keeps forwarding and doing VRRP."""
        for k in range(self.sync_links) if links is None else links:
            self._set_port(f"{fw.name}{SYNC_IFACES[k][0]}", False)

    def heal_sync(self, fw: Firewall, links: Sequence[int] | None = None) -> None:
        for k in range(self.sync_links) if links is None else links:
            self._set_port(f"{fw.name}{SYNC_IFACES[k][0]}", True)

    def _ports(self, fw: Firewall, *, sync: bool) -> list[str]:
        ports = [f"{fw.name}c", f"{fw.name}s"]
        if sync:
            ports += [f"{fw.name}{iface[0]}" for iface in SYNC_IFACES[: self.sync_links]]
        return ports

    def crash(self, fw: Firewall) -> None:
        """The node dies: every process on it is SIGKILLed (nothing of ours runs any
        more: no notify), then its cables go dark."""
        for name in list(fw.procs):
            self.kill(fw, name, signal.SIGKILL)
        self.fail_links(fw)

    def step_down(self, fw: Firewall) -> None:
        """A planned hand-over: ``fw``'s keepalived stops (SIGTERM: it sends priority 0 and
        removes the virtual addresses, so a backup takes over at once); the rest runs on."""
        self.kill(fw, "keepalived", signal.SIGTERM)

    def reboot_state(self, fw: Firewall) -> None:
        """What a reboot leaves behind: no virtual addresses, an empty conntrack table."""
        for vip, iface in ((CLIENT_VIP, "c0"), (SERVER_VIP, "s0")):
            self.exec(fw.ns, ["ip", "addr", "del", f"{vip}/24", "dev", iface], check=False)
        self.exec(fw.ns, ["conntrack", "-F"], check=False)

    def netem_available(self) -> bool:
        """Whether this kernel has the netem qdisc (some cloud kernels are built without)."""
        probe = self.exec(self.sw, ["tc", "qdisc", "add", "dev", "lo", "root", "netem"],
                          check=False)
        if probe.returncode == 0:
            self.exec(self.sw, ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
        return probe.returncode == 0

    def impair_sync(self, *, loss: int = 5, duplicate: int = 5, reorder: int = 25) -> str:
        """Loss, duplication and reordering (percent) on every firewall's sync links.

        With netem: ``tc qdisc ... netem`` on each firewall's sync interfaces. Without
        (kernels built without sch_netem): on the switch, nftables drops and duplicates
        (``numgen random``, ``dup to`` the bridge) and sends a share of the frames through
        a slow HTB class, so that later frames overtake them. Returns what was used.
        """
        if self.netem_available():
            spec = (f"loss {loss}% duplicate {duplicate}% delay 2ms "
                    f"reorder {reorder}% 50%")
            for fw in self.firewalls:
                for iface in SYNC_IFACES[: self.sync_links]:
                    self.exec(fw.ns, ["tc", "qdisc", "replace", "dev", iface, "root", "netem",
                                      *spec.split()])
            return f"tc netem {spec}"
        chains = []
        for fw in self.firewalls:
            for k, iface in enumerate(SYNC_IFACES[: self.sync_links]):
                port, bridge = f"{fw.name}{iface[0]}", ("bry", "brz")[k]
                chains.append(f"""    chain {port} {{
        type filter hook ingress device "{port}" priority 0; policy accept;
        meta l4proto udp numgen random mod 100 < {loss} counter drop
        meta l4proto udp numgen random mod 100 < {duplicate} counter dup to "{bridge}"
        meta l4proto udp numgen random mod 100 < {reorder} counter meta priority set 1:20
    }}""")
                for cmd in (["qdisc", "replace", "dev", port, "root", "handle", "1:", "htb",
                             "default", "10", "r2q", "1000"],
                            ["class", "add", "dev", port, "parent", "1:", "classid", "1:10",
                             "htb", "rate", "1gbit"],
                            ["class", "add", "dev", port, "parent", "1:", "classid", "1:20",
                             "htb", "rate", "2mbit", "ceil", "2mbit", "burst", "1600",
                             "cburst", "1600"]):
                    self.exec(self.sw, ["tc", *cmd])
        self.exec(self.sw, ["nft", "-f", "-"],
                  input="table netdev snep_impair {\n" + "\n".join(chains) + "\n}\n")
        return (f"nftables+htb (no netem in this kernel): loss {loss}% duplicate {duplicate}% "
                f"reorder {reorder}% through a 2 Mbit/s class")

    def watch_invalid(self, fw: Firewall, port: int) -> None:
        """From now on, count apart the invalid packets of TCP port ``port`` (either
        direction) that ``fw``'s ruleset drops (:meth:`invalid_drops` with ``port``).
        Once per firewall and port: the counters then run for the rest of the run."""
        if (fw.name, port) in self._watched:
            return
        self._watched.add((fw.name, port))
        rules = "".join(f'insert rule inet snepfw forward ct state invalid tcp {end} {port} counter '
                        f'comment "invalid-{port}"\n' for end in ("dport", "sport"))
        self.exec(fw.ns, ["nft", "-f", "-"], input=rules)

    def invalid_drops(self, fw: Firewall, port: int | None = None) -> int:
        """Packets ``fw``'s ruleset dropped as ct state invalid (e.g. unknown mid-stream TCP);
        with ``port``, those of that TCP port since :meth:`watch_invalid`."""
        return self.invalid_drop_counts(fw, (port,))[0]

    def invalid_drop_counts(self, fw: Firewall, ports: Sequence[int | None]) -> tuple[int, ...]:
        """:meth:`invalid_drops` for each of ``ports`` (None: all), from one reading of the
        counters, so that the parts never add up to more than the whole."""
        out = self.exec(fw.ns, ["nft", "list", "chain", "inet", "snepfw", "forward"],
                        check=False).stdout
        totals = []
        for port in ports:
            total = 0
            for line in out.splitlines():
                mine = f'"invalid-{port}"' in line if port is not None else line.rstrip().endswith("drop")
                if "ct state invalid" in line and "packets" in line and mine:
                    words = line.split()
                    total += int(words[words.index("packets") + 1])
            totals.append(total)
        return tuple(totals)

    # ---- conntrack ----

    def conntrack_tcp(self, fw: Firewall, *, dport: int | None = None) -> dict[tuple[str, str, int, int], str]:
        """The TCP entries of ``fw``'s kernel: (src, dst, sport, dport) -> TCP state."""
        cmd = ["conntrack", "-L", "-p", "tcp"]
        if dport is not None:
            cmd += ["--dport", str(dport)]
        out = self.exec(fw.ns, cmd, check=False).stdout
        entries: dict[tuple[str, str, int, int], str] = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 4 or fields[0] != "tcp":
                continue
            kv: dict[str, str] = {}
            for f in fields:
                if "=" in f:
                    k, _, v = f.partition("=")
                    kv.setdefault(k, v)  # first occurrence: the original direction
            try:
                key = (kv["src"], kv["dst"], int(kv["sport"]), int(kv["dport"]))
            except (KeyError, ValueError):
                continue
            entries[key] = fields[3]
        return entries
