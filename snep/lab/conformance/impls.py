"""The synchronization under test, pluggable: snep, conntrackd (the reference), or none.

On the active-active stage (:class:`~snep.lab.aa_topology.AATopology`) each writes its
active-active setup: snep ``[cluster] mode = "active-active"`` with one group per
firewall and the deferral when the stage queues; conntrackd as its manual's
"Active-Active setup" has it (FT-FW with ``DisableExternalCache On``: the peers' states
go straight into the kernel, no fail-over script; ``StartupResync`` so that a returning
node gets the table).

An implementation writes its per-firewall configuration, starts its daemon in the
firewall's namespace (the process is registered as ``fw.procs["sync"]``, so a crash
kills it), gives keepalived the command to run on transitions, and says when a node is
in sync. Every notify goes through a small wrapper script that logs the transition with
a timestamp (``notify.log``), so the harness can tell when a takeover's notify finished.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from snep.lab.aa_topology import AATopology, sync_group
from snep.lab.conformance.profile import Profile
from snep.lab.demo import command_line, peers_toml, snep_argv
from snep.lab.topology import (
    CLIENT_VIP,
    SERVER_VIP,
    SYNC_IFACES,
    Firewall,
    Topology,
    TopologyError,
)

SYNC_PORT = 3780
DEFER_BOUND = 0.05  # seconds: the lab's 2 shared cores hold a queued packet for ms at p99


class NotApplicable(Exception):
    """This implementation cannot run this scenario (e.g. conntrackd FT-FW with 3 nodes)."""


def _ignored(topo: Topology) -> list[str]:
    """Addresses whose connections are not synchronized: our own and the virtual ones."""
    addrs = ["127.0.0.1", CLIENT_VIP, SERVER_VIP]
    if isinstance(topo, AATopology):
        addrs += [vip for g in topo.groups for vip in topo.vips(g)]
    for fw in topo.firewalls:
        addrs += [fw.client_ip, fw.server_ip, *fw.sync_ips]
    return addrs


def _write_notify_wrapper(fw: Firewall, body: str) -> str:
    """A shell script ``notify.sh STATE [GROUP]``: log the transition, then run ``body``."""
    script = fw.dir / "notify.sh"
    log = fw.dir / "notify.log"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$(date +%s.%N) start $1 $2" >> {log}\n'
        f"{body}\n"
        f'echo "$(date +%s.%N) done $1 $2 $rc" >> {log}\n'
    )
    script.chmod(0o755)
    return str(script)


def notify_log(fw: Firewall) -> list[tuple[float, str, str]]:
    """(time, "start"|"done", state) for every notify keepalived ran on ``fw``."""
    path = fw.dir / "notify.log"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            try:
                events.append((float(parts[0]), parts[1], parts[2]))
            except ValueError:
                continue
    return events


def rss_kib(proc: subprocess.Popen[bytes] | None) -> int | None:
    """Resident memory of a process (KiB), None when it is gone."""
    if proc is None or proc.poll() is not None:
        return None
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def conntrackd_socket(fw: Firewall) -> Path:
    """Where conntrackd of ``fw`` answers its control requests (``conntrackd -s``, ``-c``...)."""
    return fw.dir / "conntrackd.ctl"


def conntrackd_conf(topo: Topology, fw: Firewall) -> str:
    """conntrackd.conf of ``fw``: FT-FW over UDP to the other firewall (one UDP section
    per sync link, the first the Default): the reference's setup, and what the migration
    scenario imports into snep's config."""
    peer = next(p for p in topo.firewalls if p is not fw)
    channels = []
    for k, (ip, peer_ip) in enumerate(zip(fw.sync_ips, peer.sync_ips)):
        channels.append(f"""    UDP {"Default" if k == 0 else ""} {{
        IPv4_address {ip}
        IPv4_Destination_Address {peer_ip}
        Port {SYNC_PORT}
        Interface {SYNC_IFACES[k]}
        SndSocketBuffer 8388608
        RcvSocketBuffer 8388608
        Checksum on
    }}""")
    ignore = "\n".join(f"                IPv4_address {a}" for a in _ignored(topo))
    # the manual's Active-Active setup: the external cache disabled (states straight into
    # the kernel); a node that comes back asks its peer for the table
    mode = ("DisableExternalCache On\n        StartupResync On" if isinstance(topo, AATopology)
            else "DisableExternalCache Off")
    return f"""Sync {{
    Mode FTFW {{
        {mode}
    }}
{chr(10).join(channels)}
}}
General {{
    HashSize 32768
    HashLimit 131072
    LogFile {fw.dir / "conntrackd.log"}
    LockFile {fw.dir / "conntrackd.lock"}
    UNIX {{
        Path {conntrackd_socket(fw)}
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
        }}
        Address Ignore {{
{ignore}
        }}
    }}
}}
"""


class Impl:
    """No synchronization: keepalived moves the addresses and nothing else happens."""

    name = "none"
    max_firewalls = 9
    proc = "sync"  # the daemon's name among the firewall's processes (fw.procs)
    defers = False  # holds a new connection's first packet until the peers have its state

    def ready_command(self, fw: Firewall) -> str | None:
        """keepalived's track script on the active-active stage (exit 0: in sync), if any."""
        return None

    def notify_body(self, topo: Topology, fw: Firewall) -> str:
        return "rc=0"

    def notify(self, topo: Topology, fw: Firewall) -> str:
        return _write_notify_wrapper(fw, self.notify_body(topo, fw))

    def notify_fifo(self, fw: Firewall) -> Path | None:
        """keepalived's notify FIFO when the daemon reads transitions from it (then the
        notify command only timestamps them); None: the notify command does the work."""
        return None

    def start(self, topo: Topology, fw: Firewall) -> None:
        """Start the daemon on ``fw`` (before its keepalived)."""

    def wait_started(self, topo: Topology, fw: Firewall, timeout: float = 10.0) -> None:
        """Wait until the daemon answers its control channel."""

    def in_sync(self, topo: Topology, fw: Firewall) -> bool | None:
        """Whether a backup says it is in sync; None when the daemon cannot tell."""
        return None

    def daemon(self, fw: Firewall) -> subprocess.Popen[bytes] | None:
        return fw.procs.get(self.proc)

    def counters(self, topo: Topology, fw: Firewall) -> dict[str, object]:
        """Named counters of the daemon (flattened ``a.b`` keys), empty when it has none."""
        return {}

    def defer_counters(self, topo: Topology, fw: Firewall) -> dict[str, int]:
        """The deferral's counters of the daemon (summed over its groups), empty without one."""
        return {}


class ConntrackdImpl(Impl):
    """conntrack-tools' conntrackd in FT-FW mode over UDP, with primary-backup.sh semantics."""

    name = "conntrackd"
    max_firewalls = 2  # FT-FW over UDP unicast: one peer; 3 nodes are not supported

    def __init__(self, proc: str = "sync") -> None:
        if shutil.which("conntrackd") is None:
            raise TopologyError("conntrackd is not installed (Debian package conntrackd)")
        self.proc = proc

    def conf_path(self, fw: Firewall) -> Path:
        return fw.dir / "conntrackd.conf"

    def write_conf(self, topo: Topology, fw: Firewall) -> Path:
        path = self.conf_path(fw)
        path.write_text(conntrackd_conf(topo, fw))
        return path

    def _ctl(self, fw: Firewall) -> str:
        return f"conntrackd -C {self.conf_path(fw)}"

    def notify_body(self, topo: Topology, fw: Firewall) -> str:
        if isinstance(topo, AATopology):
            return "rc=0"  # active-active: the states are in the kernel already, no script
        c = self._ctl(fw)
        # conntrack-tools' primary-backup.sh, minus its restart of a dead daemon
        return (f'case "$1" in\n'
                f"  primary) {c} -c; {c} -f; {c} -R; {c} -B; rc=$? ;;\n"
                f"  backup) {c} -t; {c} -n; rc=$? ;;\n"
                f"  fault) {c} -t; rc=$? ;;\n"
                f"  *) rc=1 ;;\n"
                f"esac")

    def start(self, topo: Topology, fw: Firewall) -> None:
        conf = self.write_conf(topo, fw)
        (fw.dir / "conntrackd.lock").unlink(missing_ok=True)
        topo.spawn(fw.ns, ["conntrackd", "-C", str(conf)], name=self.proc, fw=fw)

    def wait_started(self, topo: Topology, fw: Firewall, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topo.exec(fw.ns, ["conntrackd", "-C", str(self.conf_path(fw)), "-s"],
                         check=False).returncode == 0:
                return
            if (proc := self.daemon(fw)) is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        raise TopologyError(f"conntrackd on {fw.name} did not start; see {fw.dir}/{self.proc}.log")


class SnepImpl(Impl):
    """snep as deployed for a fast takeover: ``snep run --config`` per firewall, the peers'
    states written into the backup's kernel as they arrive (``inject_on_arrival``: a
    promotion writes nothing) and keepalived's transitions read from its notify FIFO
    (``[ha] notify_fifo``: no process per transition)."""

    name = "snep"
    max_firewalls = 9
    fifo = True  # [ha] notify_fifo; False: keepalived runs ``snep notify``
    inject_on_arrival = True
    defers = True

    def __init__(self, resend_queue: int = 16384) -> None:
        self.resend_queue = resend_queue
        self.snep = str(Path(sys.executable).with_name("snep"))
        if not Path(self.snep).exists():
            self.snep = shutil.which("snep") or ""
        if not self.snep:
            raise TopologyError("the snep command is not installed (pip install -e .)")

    def sock(self, fw: Firewall) -> Path:
        return fw.dir / "snep.sock"

    @staticmethod
    def key_file(topo: Topology) -> Path:
        """The cluster's pre-shared key (one for all firewalls of the topology)."""
        path = topo.dir / "snep.key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(f"1 {secrets.token_hex(32)}\n")
        return path

    def write_conf(self, topo: Topology, fw: Firewall) -> Path:
        def link(k: int) -> list[str]:
            peers = peers_toml((p.index, f"{p.sync_ips[k]}:{SYNC_PORT}") for p in topo.firewalls if p is not fw)
            return [f'listen = "{fw.sync_ips[k]}:{SYNC_PORT}"', f"peers = {peers}",
                    f'interface = "{SYNC_IFACES[k]}"']

        ignore = ", ".join(f'"{a}/32"' for a in _ignored(topo))
        lines = ["[node]", f"id = {fw.index}", f'state_file = "{fw.dir / "snep.state"}"',
                 "", "[sync]", *link(0), f'key_file = "{self.key_file(topo)}"',
                 f"resend_queue = {self.resend_queue}"]
        if topo.sync_links > 1:
            lines += ["", "[sync.second_link]", *link(1)]
        lines += ["", "[kernel]", f"inject_on_arrival = {str(self.inject_on_arrival).lower()}"]
        if isinstance(topo, AATopology):
            lines += ["", *self.cluster_toml(topo, fw)]
        elif (fifo := self.notify_fifo(fw)) is not None:
            lines += ["", "[ha]", f'notify_fifo = "{fifo}"', 'sync_group = "G"']
        lines += ["", "[filter]", f'ignore = ["127.0.0.0/8", {ignore}]',
                  "", "[control]", f'socket = "{self.sock(fw)}"', ""]
        path = fw.dir / "snep.toml"
        path.write_text("\n".join(lines))
        return path

    def cluster_toml(self, topo: AATopology, fw: Firewall) -> list[str]:
        """The contract's active-active keys: one group per firewall (group g: mark g,
        keepalived's sync group G<g>, followed in the notify FIFO, which active-active
        needs); the deferral when the stage queues new connections (``topo.defer_queue``)."""
        groups = ", ".join(f'{{ mark = {g}, sync_group = "{sync_group(g)}" }}' for g in topo.groups)
        defer = topo.defer_queue is not None
        return ["[ha]", f'notify_fifo = "{fw.dir / "keepalived.fifo"}"', "",
                "[cluster]", 'mode = "active-active"', "mark_mask = 255", f"groups = [{groups}]",
                "", "[cluster.defer]", f"enabled = {str(defer).lower()}",
                *([f"queue = {topo.defer_queue}", f"bound = {DEFER_BOUND}", 'fail = "open"']
                  if defer else [])]

    def notify_fifo(self, fw: Firewall) -> Path | None:
        return fw.dir / "keepalived.fifo" if self.fifo else None

    def ready_command(self, fw: Firewall) -> str | None:
        return command_line(snep_argv("ctl", "--socket", str(self.sock(fw)), "--timeout", "2", "ready"))

    def notify_body(self, topo: Topology, fw: Firewall) -> str:
        if self.fifo:
            return "rc=0"  # the daemon reads the FIFO; this only timestamps the transition
        return f'{self.snep} notify --socket {self.sock(fw)} "$1"; rc=$?'

    def start(self, topo: Topology, fw: Firewall) -> None:
        conf = self.write_conf(topo, fw)
        self.sock(fw).unlink(missing_ok=True)
        topo.spawn(fw.ns, [self.snep, "run", "--config", str(conf)], name="sync", fw=fw)

    def _ctl(self, topo: Topology, fw: Firewall, *args: str) -> subprocess.CompletedProcess[str]:
        opts = [a for a in args if a.startswith("--")]
        rest = [a for a in args if not a.startswith("--")]
        return topo.exec(fw.ns, [self.snep, "ctl", "--socket", str(self.sock(fw)), *opts, *rest],
                         check=False)

    def wait_started(self, topo: Topology, fw: Firewall, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ctl(topo, fw, "status").returncode == 0:
                return
            if (proc := self.daemon(fw)) is not None and proc.poll() is not None:
                break
            time.sleep(0.1)
        raise TopologyError(f"snep on {fw.name} did not start; see {fw.dir}/sync.log")

    def in_sync(self, topo: Topology, fw: Firewall) -> bool | None:
        return self._ctl(topo, fw, "ready").returncode == 0

    def counters(self, topo: Topology, fw: Firewall) -> dict[str, object]:
        out = self._ctl(topo, fw, "--json", "stats")
        try:
            data = json.loads(out.stdout) if out.returncode == 0 else {}
        except ValueError:
            return {}
        flat: dict[str, object] = {}

        def walk(tree: dict[str, object], prefix: str) -> None:
            for key, value in tree.items():
                if isinstance(value, dict):
                    walk(value, f"{prefix}{key}.")
                else:
                    flat[f"{prefix}{key}"] = value

        walk(data if isinstance(data, dict) else {}, "")
        return flat


    def defer_counters(self, topo: Topology, fw: Firewall) -> dict[str, int]:
        out = self._ctl(topo, fw, "--json", "status")
        try:
            groups = json.loads(out.stdout)["defer"]["groups"] if out.returncode == 0 else {}
        except (ValueError, KeyError, TypeError):
            return {}
        total: dict[str, int] = {}
        for group in groups.values():
            for key, value in group.get("counters", {}).items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
        return total


class SnepCommitImpl(SnepImpl):
    """snep as before issue 15: the backup's kernel is written at the takeover, by one
    ``snep notify primary`` that keepalived runs (for comparison with ``snep``)."""

    name = "snep-commit"
    fifo = False
    inject_on_arrival = False


class ImportedSnepImpl(SnepImpl):
    """snep configured the way docs/migration.md says: `snep config import-conntrackd` of the
    firewall's conntrackd.conf, on its own port while conntrackd holds the usual one (its
    [kernel] follows conntrackd's; keepalived runs ``snep notify``, as conntrackd's script)."""

    fifo = False

    def __init__(self, resend_queue: int, port: int) -> None:
        super().__init__(resend_queue)
        self.port = port
        #: firewalls whose imported config is then switched to snep's warm kernel (the
        #: migration's step 4: conntrackd's ``DisableExternalCache Off`` imports as off)
        self.warm: set[str] = set()

    def write_conf(self, topo: Topology, fw: Firewall) -> Path:
        from snep.migrate.conntrackd import Options, import_text

        source = fw.dir / "conntrackd.conf"
        lab: dict[str, dict[str, Any]] = {"node": {"state_file": str(fw.dir / "snep.state")},
                                          "sync": {"resend_queue": self.resend_queue}}
        if fw.name in self.warm:
            lab["kernel"] = {"inject_on_arrival": True}
        imported = import_text(conntrackd_conf(topo, fw), str(source),
                               Options(node_id=fw.index, port=self.port, overrides=lab))
        if imported.config.control.socket != self.sock(fw):
            raise TopologyError(f"the imported control socket is {imported.config.control.socket}, "
                                f"not {self.sock(fw)}")
        (fw.dir / "import-conntrackd.log").write_text("\n".join(imported.report(str(source))) + "\n")
        path = fw.dir / "snep.toml"
        path.write_text(imported.toml)
        return path


class MigrationImpl(Impl):
    """A cluster that starts on conntrackd and moves to snep one firewall at a time
    (docs/migration.md). Each firewall runs conntrackd, snep beside conntrackd (while it
    is the backup that takes over next), or snep alone; its notify follows: with both, a
    takeover first commits conntrackd's external cache into the kernel, then snep takes
    the primary role."""

    name = "snep"  # the implementation under test is the one migrated to
    max_firewalls = 2  # conntrackd's FT-FW: one peer
    port = SYNC_PORT + 1  # snep's, while conntrackd holds SYNC_PORT

    def __init__(self, resend_queue: int = 16384) -> None:
        self.conntrackd = ConntrackdImpl(proc="conntrackd")
        self.snep = ImportedSnepImpl(resend_queue, self.port)
        self.running: dict[str, set[str]] = {}

    def daemons(self, fw: Firewall) -> set[str]:
        """What runs on ``fw``: {"conntrackd"} at the start."""
        return self.running.setdefault(fw.name, {"conntrackd"})

    def _impls(self, fw: Firewall) -> list[Impl]:
        return [impl for impl in (self.conntrackd, self.snep) if impl.name in self.daemons(fw)]

    def notify_body(self, topo: Topology, fw: Firewall) -> str:
        if self.daemons(fw) == {"conntrackd"}:
            return self.conntrackd.notify_body(topo, fw)
        body = self.snep.notify_body(topo, fw)
        if "conntrackd" in self.daemons(fw):
            return f'if [ "$1" = primary ]; then {self.conntrackd._ctl(fw)} -c; fi\n{body}'
        return body

    def start(self, topo: Topology, fw: Firewall) -> None:
        for impl in self._impls(fw):
            impl.start(topo, fw)

    def wait_started(self, topo: Topology, fw: Firewall, timeout: float = 10.0) -> None:
        for impl in self._impls(fw):
            impl.wait_started(topo, fw, timeout)

    def in_sync(self, topo: Topology, fw: Firewall) -> bool | None:
        return self.snep.in_sync(topo, fw) if "snep" in self.daemons(fw) else None

    def daemon(self, fw: Firewall) -> subprocess.Popen[bytes] | None:
        return self.snep.daemon(fw) or self.conntrackd.daemon(fw)

    def counters(self, topo: Topology, fw: Firewall) -> dict[str, object]:
        return self.snep.counters(topo, fw) if "snep" in self.daemons(fw) else {}

    # ---- the migration's steps (docs/migration.md)

    def add_snep(self, topo: Topology, fw: Firewall, *, warm: bool = False) -> None:
        """Start snep on ``fw`` (beside conntrackd, if it runs) and hand keepalived's notify to
        it; ``warm``: with the imported config switched to a warm kernel (``inject_on_arrival``)."""
        if warm:
            self.snep.warm.add(fw.name)
        self.daemons(fw).add("snep")
        self.snep.start(topo, fw)
        self.snep.wait_started(topo, fw)
        self.notify(topo, fw)  # keepalived runs the wrapper anew on each transition

    def commit_conntrackd(self, topo: Topology, fw: Firewall) -> None:
        """``conntrackd -c``: its external cache into the kernel, ahead of a hand-over."""
        topo.exec(fw.ns, ["conntrackd", "-C", str(self.conntrackd.conf_path(fw)), "-c"])

    def stop_conntrackd(self, topo: Topology, fw: Firewall) -> None:
        topo.kill(fw, self.conntrackd.proc, signal.SIGTERM)
        self.daemons(fw).discard("conntrackd")
        self.notify(topo, fw)


IMPLS: dict[str, type[Impl]] = {"snep": SnepImpl, "snep-commit": SnepCommitImpl,
                                 "conntrackd": ConntrackdImpl, "none": Impl}


def make(name: str, profile: Profile | None = None, *, migration: bool = False) -> Impl:
    """The implementation ``name``; with ``migration``, a cluster that starts on conntrackd
    and moves to it (snep only: the migration is to snep)."""
    if name not in IMPLS:
        raise TopologyError(f"unknown implementation {name!r} (known: {', '.join(IMPLS)})")
    if migration:
        if name != "snep":
            raise NotApplicable("a migration from conntrackd to snep: only the snep column applies")
        return MigrationImpl(profile.resend_queue if profile is not None else 16384)
    cls = IMPLS[name]
    if issubclass(cls, SnepImpl) and profile is not None:
        return cls(resend_queue=profile.resend_queue)
    return cls()
