"""The active-active stage: every firewall forwards, one VRRP group per firewall (issue 18).

Layout (on :class:`~snep.lab.topology.Topology`'s switch, sync links and firewalls)::

    cl1 10.1.0.11 --+                                +-- server 10.2.0.10
    cl2 10.1.0.21 --+-- brc --- fw1 fw2 (fw3) --- brs --+
    (cl3 10.1.0.31)-+        (one VRRP group each)

- **Groups.** Firewall *g* is the home of group *g*: a ``vrrp_sync_group G<g>`` of a
  client-side address ``10.1.0.25<g>`` (instance ``VC<g>``) and a server-side address
  ``10.2.0.25<g>`` (``VS<g>``); its priority there is the highest (200), the others'
  lower (150 - 10 per step away), so every firewall is master of its own group and
  backup of the others'. Preemption is on: a home that returns takes its group back,
  once it is ready when a ``ready`` track script is given (an unready node loses 100).
- **Clients** are split between the groups: client *g* (namespace ``cl<g>``, address
  ``10.1.0.<10g+1>``) uses group *g*'s client-side address as its gateway.
- **Return path.** Symmetric: the server routes each client back through its group's
  server-side address. Asymmetric: through the *next* group's (client 1's replies pass
  fw2, client 2's fw1), so each firewall sees one direction of the other's connections.
- **Rules.** The primary/backup ruleset (stateful, ``tcp_loose=0``), and before it the
  group's mark: a ``prerouting`` chain at ``priority mangle - 1`` writes the group into
  ``ct mark & MARK_MASK`` of a new connection (by the client's source address: the
  group it came through) and copies the connection's mark to the packet's mark (so that
  nfnetlink_queue's ``NFQA_MARK`` names the group: this kernel has no conntrack glue).
  With ``defer_queue`` the contract's xtables NFQUEUE rules follow (a new connection's
  first packet; on asymmetric paths also the first reply, the SYN-ACK), limited to the
  connections of a group (a mark with group bits): VRRP's multicast adverts are never
  answered, so conntrack calls every one of them NEW. On asymmetric paths
  ``nf_conntrack_tcp_be_liberal = 1``: each firewall sees one direction's data only, so
  window tracking cannot follow.
- keepalived writes every transition into a notify FIFO per firewall when
  ``notify_fifo`` names one (``global_defs notify_fifo``: the snep node reads it); the
  notify command gets the state and the group's name (``notify.sh primary G1``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from snep.lab import netns
from snep.lab.topology import (
    CLIENT_NET,
    SERVER_IP,
    SERVER_NET,
    Firewall,
    Topology,
    TopologyError,
)

MARK_MASK = 0xFF  # the ct mark bits that hold the group
HOME_PRIORITY = 200
READY_WEIGHT = 100  # what an unready node loses: it cannot win against a ready one


def client_ip(group: int) -> str:
    """The address of group ``group``'s client (10.1.0.11, 10.1.0.21, ...)."""
    return f"{CLIENT_NET}.{10 * group + 1}"


def client_vip(group: int) -> str:
    return f"{CLIENT_NET}.{250 + group}"


def server_vip(group: int) -> str:
    return f"{SERVER_NET}.{250 + group}"


def sync_group(group: int) -> str:
    """keepalived's name of group ``group``'s vrrp_sync_group."""
    return f"G{group}"


def priority(fw: Firewall, group: int, firewalls: int) -> int:
    """Highest at home; then the next firewalls in turn (fw2 after fw1, fw1 after the last)."""
    step = (fw.index - group) % firewalls
    return HOME_PRIORITY if step == 0 else 150 - 10 * step


def mark_ruleset(groups: int) -> str:
    """The group in the conntrack mark (new connections, by source: clients 10.1.0.<g>x
    belong to group g), and the connection's mark on every packet (for NFQA_MARK)."""
    keep = 0xFFFFFFFF & ~MARK_MASK
    rules = [f"        ct state new ip saddr {CLIENT_NET}.{10 * g}-{CLIENT_NET}.{10 * g + 9} "
             f"ct mark set ct mark and {keep:#010x} or {g:#x}" for g in range(1, groups + 1)]
    return ("table inet snepaa {\n"
            "    chain group {\n"
            "        type filter hook prerouting priority mangle - 1; policy accept;\n"
            + "\n".join(rules) + "\n"
            "        meta mark set ct mark\n"
            "    }\n"
            "}\n")


def queue_rules(queue: int, *, reply: bool) -> list[list[str]]:
    """The contract's defer rules (xtables NFQUEUE, which this kernel has; nft's ``queue``
    needs nft_queue): a new connection's first packet, and with ``reply`` the first reply
    (SYN-ACK), of connections that belong to a group (the packet's mark, copied from the
    connection's, has group bits: VRRP's adverts, which conntrack calls NEW every time,
    are not queued). ``--queue-bypass``: with no daemon bound to the queue, packets pass."""
    target = ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
    grouped = ["-m", "mark", "!", "--mark", f"0/{MARK_MASK:#x}"]
    rules = [[*grouped, "-m", "conntrack", "--ctstate", "NEW", *target]]
    if reply:
        rules.append(["-p", "tcp", *grouped, "-m", "conntrack", "--ctstate", "ESTABLISHED",
                      "--ctdir", "REPLY", "--tcp-flags", "SYN,ACK", "SYN,ACK", *target])
    return [["iptables", "-w", "-t", "mangle", "-A", "PREROUTING", *rule] for rule in rules]


class AATopology(Topology):
    """N firewalls, all forwarding: group g's clients through fw g, which backs up the others."""

    def __init__(self, firewalls: int = 2, *, asymmetric: bool = False,
                 defer_queue: int | None = None,
                 ready: Callable[[Firewall], str | None] | None = None, **kwargs: Any) -> None:
        if firewalls < 2:
            raise TopologyError("active-active needs at least two firewalls")
        super().__init__(firewalls, **kwargs)
        self.asymmetric = asymmetric
        self.defer_queue = defer_queue
        self.ready = ready
        self.groups = list(range(1, firewalls + 1))
        self.clients = {g: f"{self.prefix}-cl{g}" for g in self.groups}
        self.client = self.clients[1]
        self.client_ip = client_ip(1)

    # ---- building ----

    def return_group(self, group: int) -> int:
        """The group whose server-side address carries the replies to ``group``'s client."""
        return group % self.n + 1 if self.asymmetric else group

    def build_ends(self) -> None:
        for g in self.groups:
            self.add_host(self.clients[g], client_ip(g), "brc", f"cl{g}", via=client_vip(g))
        self.add_host(self.server, SERVER_IP, "brs", "sv")
        for g in self.groups:
            netns.route(self.server, f"{client_ip(g)}/32", via=server_vip(self.return_group(g)))

    def build_firewall(self, fw: Firewall) -> None:
        super().build_firewall(fw)
        netns.load_ruleset(fw.ns, mark_ruleset(self.n))
        if self.defer_queue is not None:
            for argv in queue_rules(self.defer_queue, reply=self.asymmetric):
                self.exec(fw.ns, argv)
        if self.asymmetric:
            netns.sysctl(fw.ns, "net.netfilter.nf_conntrack_tcp_be_liberal", 1)

    # ---- keepalived ----

    def keepalived_conf(self, fw: Firewall) -> str:
        notify = self.notify(fw) if self.notify else "/bin/true"
        lines = self.global_defs(fw)
        script = self.ready(fw) if self.ready is not None else None
        if script is not None:
            lines += ["vrrp_script snep_ready {",
                      f'    script "{script}"',
                      "    interval 1", "    timeout 2", "    fall 1", "    rise 1",
                      f"    weight -{READY_WEIGHT}", "}"]
        for g in self.groups:
            name = sync_group(g)
            lines += [
                f"vrrp_sync_group {name} {{",
                "    group {", f"        VC{g}", f"        VS{g}", "    }",
                *(["    sync_group_tracking_weight"] if script is not None else []),
                f'    notify_master "{notify} primary {name}"',
                f'    notify_backup "{notify} backup {name}"',
                f'    notify_fault "{notify} fault {name}"',
                "}",
            ]
            for inst, iface, vrid, vip in ((f"VC{g}", "c0", 60 + g, client_vip(g)),
                                           (f"VS{g}", "s0", 70 + g, server_vip(g))):
                lines += [
                    f"vrrp_instance {inst} {{",
                    "    state BACKUP",
                    f"    interface {iface}",
                    f"    virtual_router_id {vrid}",
                    f"    priority {priority(fw, g, self.n)}",
                    f"    advert_int {self.advert_int:g}",
                    *(["    track_script {", "        snep_ready", "    }"] if script else []),
                    "    virtual_ipaddress {",
                    f"        {vip}/24 dev {iface}",
                    "    }",
                    "}",
                ]
        return "\n".join(lines) + "\n"

    # ---- who owns what ----

    def holds_group(self, fw: Firewall, group: int) -> bool:
        out = self.exec(fw.ns, ["ip", "-4", "-o", "addr", "show"], check=False).stdout
        return f" {client_vip(group)}/" in out and f" {server_vip(group)}/" in out

    def holds_vip(self, fw: Firewall) -> bool:
        """Whether ``fw`` holds its own group (the primary/backup notion of "master")."""
        return self.holds_group(fw, fw.index)

    def owner(self, group: int) -> Firewall | None:
        """The reachable firewall that holds both of ``group``'s addresses, if any."""
        for fw in self.firewalls:
            if self.links_up(fw) and self.holds_group(fw, group):
                return fw
        return None

    def wait_owner(self, group: int, fw: Firewall | None = None, timeout: float = 20.0,
                   exclude: Sequence[Firewall] = ()) -> Firewall:
        """Wait until ``fw`` (or any reachable firewall not in ``exclude``) holds ``group``
        alone: a hand-over is over when the former owner let the addresses go."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holders = [c for c in self.firewalls if self.links_up(c) and self.holds_group(c, group)]
            if len(holders) == 1 and holders[0] not in exclude and fw in (None, holders[0]):
                return holders[0]
            time.sleep(0.05)
        raise TopologyError(f"group {group}: no single owner{' ' + fw.name if fw else ''} "
                            f"after {timeout:g} s")

    def vips(self, group: int) -> tuple[str, str]:
        return client_vip(group), server_vip(group)

    def reboot_state(self, fw: Firewall) -> None:
        for g in self.groups:
            for vip, iface in ((client_vip(g), "c0"), (server_vip(g), "s0")):
                self.exec(fw.ns, ["ip", "addr", "del", f"{vip}/24", "dev", iface], check=False)
        self.exec(fw.ns, ["conntrack", "-F"], check=False)

    def group_marks(self, fw: Firewall, *, dport: int | None = None) -> dict[tuple[str, str, int, int], int]:
        """The group (``mark & MARK_MASK``) of each TCP entry in ``fw``'s kernel."""
        cmd = ["conntrack", "-L", "-p", "tcp", *(["--dport", str(dport)] if dport else [])]
        marks: dict[tuple[str, str, int, int], int] = {}
        for line in self.exec(fw.ns, cmd, check=False).stdout.splitlines():
            kv: dict[str, str] = {}
            for word in line.split():
                k, sep, v = word.partition("=")
                if sep:
                    kv.setdefault(k, v)
            try:
                key = (kv["src"], kv["dst"], int(kv["sport"]), int(kv["dport"]))
                marks[key] = int(kv.get("mark", "0")) & MARK_MASK
            except (KeyError, ValueError):
                continue
        return marks

