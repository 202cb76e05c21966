"""Where the runtime meets the sans-I/O node and the kernel adapter.

The daemon (snep.runtime.daemon) owns sockets, timers and signals; this module holds
the few translations between it and :class:`snep.fsm.node.SyncNode`: building the node
from the config, carrying out each output value (snep.fsm.effects), passing role
changes and operator commands, and reading status. Peers are identified by the
configured address of their main link, whatever link a datagram came in on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from snep.config import Config, Endpoint
from snep.errors import InvalidTransition, SnepError
from snep.fsm import effects
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.kernel.base import EventOverrun
from snep.runtime.keys import load_keyring as _load_keyring
from snep.runtime.log import log, notice
from snep.wire.auth import Keyring

if TYPE_CHECKING:
    from snep.fsm.node import SyncNode
    from snep.runtime.daemon import Daemon

#: operator commands the control socket passes to the node (besides status & co)
COMMANDS = ("commit", "flush", "resync", "bulk", "request-resync", "shorten-timeouts")


def load_keyring(cfg: Config) -> Keyring | None:
    return _load_keyring(cfg.sync.key_file) if cfg.sync.key_file is not None else None


class PeerTable:
    """Configured peers: datagram source address (per link) <-> peer id.

    A peer's id is its main-link endpoint as text; the n-th peer of the second link is
    the same node as the n-th of the main link. Datagrams from addresses that are not
    configured peers are refused (counted by the daemon). With multicast, peers are
    still configured (they say who may speak), and sending to any of them means
    sending to the group.
    """

    def __init__(self, cfg: Config) -> None:
        links = [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else [])
        self.multicast = cfg.sync.link.multicast
        self.ids: list[str] = [str(p) for p in cfg.sync.link.peers]
        self._by_source: dict[tuple[int, str, int], str] = {}
        self._by_host: dict[tuple[int, str], str] = {}
        self._address: dict[tuple[str, int], tuple] = {}
        for index, link in enumerate(links):
            for n, peer in enumerate(link.peers):
                if n >= len(self.ids):
                    break
                peer_id = self.ids[n]
                self._by_source[(index, peer.host, peer.port)] = peer_id
                self._by_host[(index, peer.host)] = peer_id
                self._address[(peer_id, index)] = peer.sockaddr

    def identify(self, address: tuple, link: int) -> str | None:
        host, port = address[0], address[1]
        if "%" in host:
            host = host.split("%", 1)[0]
        return self._by_source.get((link, host, port)) or self._by_host.get((link, host))

    def address(self, peer: Any, link: int) -> tuple | None:
        if self.multicast:
            return None  # the group
        return self._address.get((peer, link))


def open_kernel(cfg: Config, kernel: Any = None) -> Any:
    """The netlink adapter of this namespace (or ``kernel``), subscribed to the level's events."""
    if kernel is None:
        from snep.kernel.netlink import NetlinkKernel

        kernel = NetlinkKernel(buffer_size=cfg.kernel.netlink_buffer, buffer_max_growth=cfg.kernel.netlink_buffer_max)
    kernel.subscribe(cfg.sync.level)
    return kernel


def sync_filter(cfg: Config) -> Filter:
    """The configured filter, plus the sync links' own addresses: the sync traffic is
    conntracked like any other, and must not be synchronized itself."""
    links = [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else [])
    hosts = {ep.host for link in links for ep in (link.listen, *link.peers)}
    own = tuple(ipaddress.ip_network(host) for host in sorted(hosts))
    extra = tuple(net for net in own if net not in cfg.filter.ignore)
    return dataclasses.replace(cfg.filter, ignore=cfg.filter.ignore + extra)


def params(cfg: Config) -> SyncParams:
    s = cfg.sync
    return SyncParams(
        mtu=s.mtu,
        queue_size=s.resend_queue,
        ack_window=s.ack_window,
        ack_delay=s.ack_delay,
        alive_interval=s.alive_interval,
        dead_timeout=s.peer_dead_timeout,
        shorten_timeout=cfg.kernel.shorten_timeout,
        level=s.level,
        period=s.incremental_period,
        filter=sync_filter(cfg),
        inject_external=cfg.kernel.inject_on_arrival,
    )


def make_node(cfg: Config, keyring: Keyring | None, epoch: tuple[int, int], now: float) -> SyncNode:
    from snep.fsm.node import SyncNode

    return SyncNode(cfg.node_id, PeerTable(cfg).ids, params(cfg), keyring=keyring, newest_epoch=effects.Epoch(*epoch))


def start(node: SyncNode, kernel: Any, now: float) -> list[Any]:
    return list(node.start(now))


def execute(daemon: Daemon, output: Any) -> list[Any] | None:
    """Carry out one output; returns further outputs (a dump's consequences)."""
    if isinstance(output, effects.SendDatagram):
        if daemon.peers.multicast:
            if output.data is daemon._last_multicast:  # the same frame for every peer: once to the group
                return None
            daemon._last_multicast = output.data
        daemon.send(output.data, output.peer)
        return None
    daemon._last_multicast = None
    node = daemon.node
    if isinstance(output, effects.KernelOps):
        result = daemon.kernel.apply(output.events, replace=output.replace)
        daemon.applied += len(output.events)
        if result.errors:
            log.warning(
                "kernel refused %d of %d operations (first: %s)", result.errors, len(output.events), result.failures[:1]
            )
        return None
    if isinstance(output, effects.DumpKernel):
        entries = daemon.kernel.dump()
        return list(node.on_kernel_dump(daemon.loop.time(), entries) or ())  # type: ignore[union-attr]
    if isinstance(output, effects.ShortenTimeouts):
        changed = daemon.kernel.shorten_timeouts(output.timeout)
        log.info("shortened the timeouts of %d kernel entries to %d s", changed, output.timeout)
        return None
    if isinstance(output, effects.PersistEpoch):
        daemon.persist_epoch((output.epoch.term, output.epoch.node))
        return None
    if isinstance(output, effects.RoleChanged):
        notice("role %s -> %s (%s)", output.old.upper(), output.new.upper(), output.trigger)
        return None
    if isinstance(output, effects.Log):
        log.log(_LOG_LEVELS.get(output.level.lower(), 20), "%s", output.message)
        return None
    raise SnepError(f"unknown node output {output!r}")


_LOG_LEVELS = {"debug": 10, "info": 20, "notice": 25, "warning": 30, "error": 40, "critical": 50}


def kernel_events(daemon: Daemon, now: float) -> list[Any]:
    """Read the kernel's queued events into the node until none are left (a loss is
    reported after the events queued before it); on overrun, resync from a dump."""
    node = daemon.node
    outputs: list[Any] = []
    for _ in range(READS_PER_WAKEUP):
        try:
            events = daemon.kernel.read_events()
        except EventOverrun:
            daemon.counters["netlink_overruns"] += 1
            log.warning("netlink event socket overrun: events lost; resynchronizing the internal cache from the kernel")
            known = {entry.key: entry for entry in node.internal.entries()}
            events = daemon.kernel.resync(known)
            if events:
                outputs.extend(node.on_kernel_events(now, events) or ())
            break
        if not events:
            break
        outputs.extend(node.on_kernel_events(now, events) or ())
    return outputs


#: event reads per wake-up of the netlink socket (each up to 65536 events)
READS_PER_WAKEUP = 4


def role_change(node: SyncNode, kernel: Any, role: str, now: float) -> list[Any]:
    if role == "primary":
        return list(node.promote(now))
    if role == "backup":
        return list(node.demote(now))
    return list(node.fault(now))


def stop(node: SyncNode, now: float) -> list[Any]:
    try:
        return list(node.stop(now))
    except InvalidTransition:
        return []


def command(node: SyncNode, kernel: Any, name: str, now: float, argv: list[str] | None = None, cfg: Config | None = None) -> list[Any]:
    argv = argv or []
    if name == "shorten-timeouts":
        if argv:
            if not argv[0].isdigit() or int(argv[0]) < 1:
                raise SnepError("shorten-timeouts takes a number of seconds (at least 1)")
            return [effects.ShortenTimeouts(int(argv[0]))]
        return list(node.shorten_timeouts(now))
    if argv:
        raise SnepError(f"{name} takes no arguments")
    method = {
        "commit": node.commit,
        "flush": node.flush,
        "resync": node.resync_from_kernel,
        "bulk": node.bulk_send,
        "request-resync": node.request_resync,
    }[name]
    return list(method(now))


def cache(node: SyncNode, which: str) -> list[Any]:
    return (node.internal if which == "internal" else node.external).entries()


def cache_size(node: SyncNode, which: str) -> int:
    return len(node.internal if which == "internal" else node.external)


def ready(node: SyncNode) -> bool:
    return bool(node.ready)


def role_name(node: SyncNode) -> str:
    return node.state.name


def newest_epoch(node: SyncNode) -> tuple[int, int]:
    return (node.newest.term, node.newest.node)


def peers_status(node: SyncNode, now: float) -> dict[str, Any]:
    return {
        str(peer): {
            "alive": node.alive.get(peer, False),
            "node_id": node.peer_node.get(peer),
            "last_heard": round(now - node.last_heard[peer], 3) if peer in node.last_heard else None,
        }
        for peer in node.peers
    }


def node_stats(node: SyncNode) -> dict[str, Any]:
    out: dict[str, Any] = node.counters.as_dict()
    out["resend_queue"] = len(node.sender.queue)
    return out


def kernel_stats(kernel: Any) -> dict[str, Any]:
    if kernel is None:
        return {}
    out: dict[str, Any] = dict(vars(kernel.counters))
    try:
        stats = kernel.stats()
        out["entries"] = stats.entries
        out["max_entries"] = stats.max_entries
    except SnepError:
        pass
    return out


def set_keyring(node: SyncNode, keyring: Keyring | None) -> None:
    node.set_keyring(keyring)


def set_filter(node: SyncNode, flt: Filter) -> None:
    """A new filter (SIGHUP) for the events and bulk dumps sent from now on."""
    new = dataclasses.replace(node.params, filter=flt)
    node.params = new
    node.sender.params = new
    node.sender.notifier.filter = flt
    for receiver in node.receivers.values():
        receiver.params = new
