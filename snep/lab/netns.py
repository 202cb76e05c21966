"""Network-namespace topology helpers for tests, the demo and the conformance suite.

Everything here shells out to iproute2 and nftables (the tools an operator would use),
so that what a test builds is what a person can inspect with ``ip netns exec``.
Nothing here is on snep's data path.

Typical use::

    with netns.namespace("snepk-a") as a, netns.namespace("snepk-b") as b:
        netns.veth(a, "va", b, "vb")
        netns.address(a, "va", "10.9.0.1/24")
        netns.address(b, "vb", "10.9.0.2/24")
        netns.load_ruleset(a, netns.CONNTRACK_RULESET)

Namespaces and processes are removed on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence

from snep.errors import SnepError
from snep.kernel.namespace import NETNS_DIR, call_in, setns

__all__ = ["call_in", "setns"]  # (re-exported: the lab's tests enter namespaces too)

# A ruleset that makes conntrack active in a namespace (any rule using `ct` does)
# and registers the NAT hooks, so that NAT entries can be created and used.
CONNTRACK_RULESET = """
table inet snep_ct {
    chain pre {
        type filter hook prerouting priority -150
        ct state new counter accept
    }
    chain out {
        type filter hook output priority -150
        ct state new counter accept
    }
}
table ip snep_nat {
    chain post {
        type nat hook postrouting priority 100
    }
    chain pre {
        type nat hook prerouting priority -100
    }
}
table ip6 snep_nat6 {
    chain post {
        type nat hook postrouting priority 100
    }
    chain pre {
        type nat hook prerouting priority -100
    }
}
"""



class NetnsError(SnepError):
    """A topology command failed (with the command and its stderr)."""


def available() -> str | None:
    """None when namespaces can be built here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.exists("/proc/net/netfilter") and not os.path.exists("/proc/sys/net/netfilter"):
        return "kernel without netfilter"
    return None


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; raise NetnsError with stderr on failure."""
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command inside a namespace."""
    return run(exec_argv(ns, argv), input=input, check=check)


def popen_in(ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a background process inside a namespace (the caller stops it by PID)."""
    return subprocess.Popen(exec_argv(ns, argv), **kwargs)  # type: ignore[call-overload]


def exists(ns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, ns))


def create(ns: str) -> str:
    """Create a fresh namespace (removing a leftover of the same name) with lo up."""
    if exists(ns):
        delete(ns)
    run(["ip", "netns", "add", ns])
    run_in(ns, ["ip", "link", "set", "lo", "up"])
    return ns


def delete(ns: str, attempts: int = 5) -> None:
    """Remove a namespace; killing nothing: its processes must be stopped by their owner.
    ``ip netns del`` can fail for a moment (the namespace file still busy while a process
    that used it exits): tried again, then NetnsError says why it stayed."""
    for attempt in range(attempts):
        if not exists(ns):
            return
        proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if proc.returncode == 0 and not exists(ns):
            return
        time.sleep(0.1 * (attempt + 1))
    if exists(ns):
        raise NetnsError(f"ip netns del {ns}: the namespace stays: {proc.stderr.strip() or 'no reason given'}")


@contextlib.contextmanager
def namespace(ns: str) -> Iterator[str]:
    """A namespace for the duration of a ``with`` block."""
    create(ns)
    try:
        yield ns
    finally:
        delete(ns)


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, *, up: bool = True) -> None:
    """A veth pair with one end in each namespace."""
    run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])
    if up:
        link_set(ns_a, name_a, up=True)
        link_set(ns_b, name_b, up=True)


def link_set(ns: str, dev: str, *, up: bool) -> None:
    run_in(ns, ["ip", "link", "set", dev, "up" if up else "down"])


def address(ns: str, dev: str, cidr: str) -> None:
    """Add an address (IPv6 without duplicate address detection, usable at once)."""
    argv = ["ip", "addr", "add", cidr, "dev", dev]
    if ":" in cidr:
        argv.append("nodad")
    run_in(ns, argv)


def route(ns: str, prefix: str, via: str | None = None, dev: str | None = None) -> None:
    argv = ["ip", "route", "add", prefix]
    if via:
        argv += ["via", via]
    if dev:
        argv += ["dev", dev]
    run_in(ns, argv)


def sysctl(ns: str, key: str, value: str | int) -> None:
    run_in(ns, ["sysctl", "-q", "-w", f"{key}={value}"])


def load_ruleset(ns: str, ruleset: str = CONNTRACK_RULESET) -> None:
    """Load an nftables ruleset (text) into a namespace."""
    run_in(ns, ["nft", "-f", "-"], input=ruleset)


def conntrack_ready(ns: str) -> None:
    """Make conntrack active in ``ns``: the default ruleset plus forwarding."""
    load_ruleset(ns)


def queue_rule(
    ns: str, queue: int, *, proto: str = "udp", dport: int, new_only: bool = True, bypass: bool = True
) -> str:
    """Send IPv4 ``proto`` packets to local port ``dport`` (only a connection's first
    packets with ``new_only``) to NFQUEUE ``queue``, in ``ns``'s input hook.

    nftables' ``queue`` where the kernel has nft_queue; else xtables' NFQUEUE target
    (``iptables``), which kernels without nft_queue still have. Returns which was used:
    "nft" or "xtables". ``bypass``: with no program bound to the queue, packets pass.
    """
    flag = " bypass" if bypass else ""
    state = " ct state new" if new_only else ""
    ruleset = (
        "table ip snep_queue {\n"
        "    chain input {\n"
        "        type filter hook input priority 0\n"
        f"        {proto} dport {dport}{state} queue num {queue}{flag}\n"
        "    }\n"
        "}\n"
    )
    try:
        load_ruleset(ns, ruleset)
        return "nft"
    except NetnsError as nft_error:
        if shutil.which("iptables") is None:
            raise NetnsError(f"nft has no queue here ({nft_error}) and iptables is not installed") from None
    argv = ["iptables", "-w", "-A", "INPUT", "-p", proto, "--dport", str(dport)]
    if new_only:
        argv += ["-m", "conntrack", "--ctstate", "NEW"]
    argv += ["-j", "NFQUEUE", "--queue-num", str(queue)]
    if bypass:
        argv.append("--queue-bypass")
    run_in(ns, argv)
    return "xtables"
