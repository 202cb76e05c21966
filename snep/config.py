"""The node's configuration: a TOML file, validated completely at start-up.

Every problem is reported as a :class:`~snep.errors.ConfigError` naming the file, the
key (``section.key``) and the reason, so that a firewall never starts half-configured.
Unknown keys are errors (a typo must not silently fall back to a default). The
defaults are the safe ones for a real firewall: strong level, large socket buffers
(conntrackd loses entries with 1.2 MB ones at 200,000 flows), metrics off, loopback
and link-local traffic ignored.

:data:`SETTINGS` lists every key with its default, unit and meaning; the protocol's
tunables take their names and defaults from :class:`~snep.fsm.params.SyncParams`,
the kernel's from :mod:`snep.kernel.base`, so a default is defined once. The man
page, contrib/snep.toml and the docs are checked against this table.

The result is a tree of frozen dataclasses; nothing else in snep reads TOML.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from snep.entry import Proto, TcpState
from snep.errors import ConfigError
from snep.fsm.defer import DeferParams, FailPolicy
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams, Unconfirmed
from snep.kernel.base import DEFAULT_BUFFER_MAX_GROWTH, DEFAULT_BUFFER_SIZE
from snep.level import Level
from snep.paths import CONTROL_SOCKET as DEFAULT_CONTROL_SOCKET
from snep.paths import STATE_FILE as DEFAULT_STATE_FILE
from snep.wire.messages import MAX_UDP_PAYLOAD

DEFAULT_PORT = 3780
LOG_LEVELS = ("debug", "info", "notice", "warning", "error")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A UDP endpoint: IPv4 or IPv6 address (scope id allowed for link-local) and port."""

    host: str
    port: int
    scope: str = ""  # interface name of a link-local IPv6 address (fe80::1%sync0)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sockaddr(self) -> tuple:
        if self.family == socket.AF_INET6:
            scope_id = socket.if_nametoindex(self.scope) if self.scope else 0
            return (self.host, self.port, 0, scope_id)
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"{self.host}%{self.scope}" if self.scope else self.host
        return f"[{host}]:{self.port}" if self.family == socket.AF_INET6 else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Peer:
    """A configured peer on one link: its node id and its address there."""

    node_id: int
    address: Endpoint


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One sync link: where to listen and whom to send to (unicast peers or a group)."""

    listen: Endpoint
    peers: tuple[Peer, ...] = ()  # who may speak (and, unicast, where frames go)
    multicast_group: str = ""  # when set, frames go to the group instead
    interface: str = ""  # the dedicated sync interface (multicast, failover checks)

    @property
    def multicast(self) -> bool:
        return bool(self.multicast_group)

    def destinations(self) -> tuple[Endpoint, ...]:
        if self.multicast:
            return (Endpoint(self.multicast_group, self.listen.port),)
        return tuple(peer.address for peer in self.peers)


#: SO_RCVBUF / SO_SNDBUF of the sync sockets: a bulk dump of 200,000 entries fits
SOCKET_BUFFER = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SyncConfig:
    link: LinkConfig
    second_link: LinkConfig | None = None
    key_file: Path | None = None
    insecure: bool = False  # no key: frames are neither sealed nor authenticated (said explicitly)
    socket_buffer: int = SOCKET_BUFFER
    params: SyncParams = field(default_factory=SyncParams)  # the protocol's tunables


#: Seconds between two reads of kernel events while they keep coming (0: each read as
#: soon as the socket is readable). At 2,000 new connections per second a read finds
#: one event: every event then costs a wake-up, a frame and a datagram on each side,
#: which is what a primary's CPU goes to (bench/README.md); read a millisecond apart,
#: they travel a few per frame, for at most that much more latency. A read that finds
#: nothing ends the pacing: an isolated event is read at once.
DEFAULT_EVENT_BATCH = 0.001


@dataclass(frozen=True, slots=True)
class KernelConfig:
    # event socket receive buffer, doubled on each overrun up to the max (conntrackd's
    # NetlinkBufferSize / NetlinkBufferSizeMaxGrowth)
    netlink_buffer: int = DEFAULT_BUFFER_SIZE
    netlink_buffer_max: int = DEFAULT_BUFFER_MAX_GROWTH
    # seconds: while events keep coming, they are read together at most this often
    event_batch: float = DEFAULT_EVENT_BATCH



#: The default filter: every protocol and TCP state, loopback traffic ignored.
DEFAULT_IGNORE = ("127.0.0.0/8", "::1/128")
DEFAULT_FILTER = Filter(protocols=None, ignore=tuple(ipaddress.ip_network(n) for n in DEFAULT_IGNORE), tcp_states=None)


@dataclass(frozen=True, slots=True)
class ControlConfig:
    socket: Path = Path(DEFAULT_CONTROL_SOCKET)


@dataclass(frozen=True, slots=True)
class HaConfig:
    """keepalived's notify FIFO, and the sync group or instance (``follow``) whose
    transitions the node acts on (snep.runtime.keepalived); off without a FIFO."""

    notify_fifo: Path | None = None
    follow: tuple[str, str] | None = None  # ("GROUP" or "INSTANCE", name)


class ClusterMode(Enum):
    """How the cluster's nodes share the traffic (docs/active-active.md)."""

    PRIMARY_BACKUP = "primary-backup"  # one node forwards, the others wait with its states
    ACTIVE_ACTIVE = "active-active"  # every node forwards: one VRRP group each


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """One VRRP group of an active-active cluster: the ct mark its connections carry,
    and the keepalived sync group or instance whose MASTER makes this node their owner."""

    mark: int
    follow: tuple[str, str]  # ("GROUP" or "INSTANCE", name)


_D = DeferParams()


@dataclass(frozen=True, slots=True)
class DeferConfig:
    """Active-active's defer: a new connection's first packet, queued by the firewall's
    rules to NFQUEUE ``queue``, waits until every live peer has its state (snep.fsm.defer)."""

    enabled: bool = True
    queue: int = 0
    params: DeferParams = _D


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    mode: ClusterMode = ClusterMode.PRIMARY_BACKUP
    mark_mask: int = 0xFF  # the ct mark bits that name a connection's group
    groups: tuple[GroupConfig, ...] = ()  # active-active: the same list, same order, on every node
    defer: DeferConfig = field(default_factory=DeferConfig)

    @property
    def active_active(self) -> bool:
        return self.mode is ClusterMode.ACTIVE_ACTIVE


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: Endpoint | None = None  # off by default


@dataclass(frozen=True, slots=True)
class Config:
    node_id: int
    sync: SyncConfig
    kernel: KernelConfig = field(default_factory=KernelConfig)
    filter: Filter = DEFAULT_FILTER
    control: ControlConfig = field(default_factory=ControlConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    state_file: Path = Path(DEFAULT_STATE_FILE)
    log_level: str = "info"
    source: Path | None = None  # the file this came from


def warnings(cfg: Config) -> list[str]:
    """Settings that are valid but work against each other: the node runs with them,
    and says so at start (``snep run --check`` prints them too)."""
    found = []
    params = cfg.sync.params
    in_flight = params.bulk_window * params.bulk_mtu
    if cfg.sync.socket_buffer < in_flight:
        found.append(
            f"sync.socket_buffer ({cfg.sync.socket_buffer} bytes) is smaller than what a dump keeps in flight "
            f"(sync.bulk_window {params.bulk_window} x sync.bulk_mtu {params.bulk_mtu} = {in_flight} bytes): a peer "
            f"that reads more slowly than the dump comes drops frames, which are resent, and the resync takes longer"
        )
    return found


def restart_needed(running: Config, fresh: Config) -> list[str]:
    """The sections of ``fresh`` that differ from ``running`` in keys a reload does not
    apply (a reload applies ``sync.key_file``, ``sync.insecure``, the filter and
    ``node.log_level``; the rest takes effect at the next start), so that the operator
    is told instead of left to believe the change is live."""
    sections = []
    if (running.node_id, running.state_file) != (fresh.node_id, fresh.state_file):
        sections.append("node")
    if replace(running.sync, key_file=None, insecure=False) != replace(fresh.sync, key_file=None, insecure=False):
        sections.append("sync")
    sections += [name for name in ("kernel", "control", "ha", "metrics", "cluster") if getattr(running, name) != getattr(fresh, name)]
    return sections


# ---------------------------------------------------------------------------
# every key, with its default, unit and meaning


@dataclass(frozen=True, slots=True)
class Setting:
    """One config key: what the man page, contrib/snep.toml and the parser agree on."""

    section: str  # "sync", "sync.second_link", "kernel" ...
    key: str
    default: Any  # None: no default (required, or off when absent)
    about: str
    unit: str = ""  # seconds, bytes, frames ...
    low: float | None = None  # range of a number
    high: float | None = None
    choices: tuple[str, ...] = ()  # the words a string may be
    required: bool = False

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


_P = SyncParams()


def _tunable(section: str, key: str, unit: str, low: float, high: float, about: str) -> Setting:
    """A protocol tunable: its name and default are SyncParams'."""
    return Setting(section, key, getattr(_P, key), about, unit, low, high)


SETTINGS: tuple[Setting, ...] = (
    Setting("node", "id", None, "this node's id, unique in the cluster", "", 1, 0xFFFF_FFFF, required=True),
    Setting("node", "state_file", DEFAULT_STATE_FILE, "where the newest epoch seen is persisted across restarts", "path"),
    Setting("node", "log_level", "info", "the least severe records logged", choices=LOG_LEVELS),
    Setting("sync", "listen", None, "this node's address on the sync link", "ADDRESS:PORT", required=True),
    Setting("sync", "peers", None, "the peers: node id and address (with multicast_group too: who may speak)", "[{ id = N, address = ADDRESS:PORT }, ...]", required=True),
    Setting("sync", "multicast_group", None, "send frames to this group instead of each peer", "address"),
    Setting("sync", "interface", None, "the dedicated sync interface (required with multicast_group)", "name"),
    Setting("sync", "key_file", None, "pre-shared keys ('KEYID HEXSECRET' lines, mode 0600 or 0400, owned by root or the daemon's user); required unless insecure = true", "path"),
    Setting("sync", "insecure", False, "run without a key: frames are neither encrypted nor authenticated, and anyone on the sync link can inject kernel entries and fence the primary (docs/security.md)"),
    Setting("sync", "level", _P.level.value, "which events are synchronized", choices=tuple(level.value for level in Level)),
    _tunable("sync", "incremental_period", "seconds", 0.01, 3600, "the incremental level's flush period"),
    _tunable("sync", "mtu", "bytes", 576, MAX_UDP_PAYLOAD, "UDP payload per frame of the stream (events, acknowledgements, keep-alives): at most the sync link's MTU less the IP and UDP headers"),
    _tunable("sync", "bulk_mtu", "bytes", 576, MAX_UDP_PAYLOAD, "UDP payload per frame of a bulk dump (a resync), at least mtu: above the link's MTU the kernel fragments each frame, so a resync does its per-frame work for many entries at once; one lost fragment loses the frame, and a peer that is there and misses one twice (NACKs, or no acknowledgement within the retransmission timeout) before it ever acknowledged one makes the term's dumps go in frames of mtu (counter bulk_mtu_fallbacks); set it to mtu never to fragment"),
    _tunable("sync", "resend_queue", "frames", 16, 10_000_000, "STATE frames kept for retransmission (bounded)"),
    _tunable("sync", "bulk_window", "frames", 1, 1_000_000, "unacknowledged frames a bulk dump keeps in flight"),
    _tunable("sync", "ack_window", "frames", 1, 65536, "frames acknowledged together"),
    _tunable("sync", "ack_delay", "seconds", 0.0, 10, "delay before a partial window is acknowledged"),
    _tunable("sync", "nack_interval", "seconds", 0.001, 60, "a NACK for the same gap is repeated at most this often"),
    _tunable("sync", "retransmit_timeout", "seconds", 0.01, 600, "unacknowledged frames are sent again after this long"),
    _tunable("sync", "alive_interval", "seconds", 0.01, 3600, "keep-alive interval on an idle link"),
    _tunable("sync", "peer_dead_timeout", "seconds", 0.02, 36000, "silence after which a peer counts as dead"),
    _tunable("sync", "resync_retry", "seconds", 0.1, 3600, "a node that needs a dump asks again after this long"),
    _tunable("sync", "max_entries", "entries", 1, 1 << 32, "entries the external cache holds at most (new ones beyond are refused and counted)"),
    Setting("sync", "socket_buffer", SOCKET_BUFFER, "SO_RCVBUF/SO_SNDBUF of the sync sockets; less than bulk_window x bulk_mtu (what a dump keeps in flight) is warned of", "bytes", 65536, 1 << 30),
    Setting("sync.second_link", "listen", None, "this node's address on the redundant link", "ADDRESS:PORT"),
    Setting("sync.second_link", "peers", None, "the peers on the redundant link, by node id (a peer of sync.peers may be missing)", "[{ id = N, address = ADDRESS:PORT }, ...]"),
    Setting("sync.second_link", "multicast_group", None, "the redundant link's multicast group", "address"),
    Setting("sync.second_link", "interface", None, "the redundant link's interface", "name"),
    Setting("kernel", "netlink_buffer", DEFAULT_BUFFER_SIZE, "event socket buffer; an overrun resyncs from the kernel and doubles it", "bytes", 65536, 1 << 30),
    Setting("kernel", "netlink_buffer_max", DEFAULT_BUFFER_MAX_GROWTH, "the event socket buffer grows up to this", "bytes", 65536, 1 << 30),
    Setting("kernel", "event_batch", DEFAULT_EVENT_BATCH, "while kernel events keep coming, they are read together at most this often (fewer wake-ups, frames and datagrams per event; an event waits at most this long; a read that finds nothing ends it); 0: each read at once", "seconds", 0.0, 1.0),
    Setting("kernel", "inject_on_arrival", _P.inject_on_arrival, "write the peers' states into the kernel as they arrive: a takeover commits nothing before the node is primary (then only what its kernel dump shows missing)"),
    _tunable("kernel", "shorten_timeout", "seconds", 1, 1 << 31, "timeout left to kernel entries when the node becomes backup"),
    Setting("kernel", "unconfirmed", _P.unconfirmed.value, "a node that starts or returns as backup: what becomes of its kernel entries that the primary's first complete dump does not confirm (those it confirms take the primary's state): remove them, or shorten their timeouts to shorten_timeout (conntrackd's way; they go unless traffic refreshes them). Entries the filter keeps out are left alone", choices=tuple(u.value for u in Unconfirmed)),
    Setting("filter", "protocols", None, "synchronize only these protocols (absent: all)", "[name, ...]"),
    Setting("filter", "ignore", list(DEFAULT_IGNORE), "addresses and prefixes never synchronized (the sync links' own are added)", "[prefix, ...]"),
    Setting("filter", "tcp_states", None, "synchronize TCP connections only in these states (absent: all)", "[STATE, ...]"),
    Setting("control", "socket", DEFAULT_CONTROL_SOCKET, "the control socket (mode 0600)", "path"),
    Setting("ha", "notify_fifo", None, "read keepalived's transitions from this FIFO (its global_defs notify_fifo), made with mode 0600 if absent; absent: off (keepalived runs snep notify instead)", "path"),
    Setting("ha", "sync_group", None, "with notify_fifo: the vrrp_sync_group whose transitions the node follows (this or instance)", "name"),
    Setting("ha", "instance", None, "with notify_fifo: the vrrp_instance whose transitions the node follows (this or sync_group)", "name"),
    Setting("metrics", "listen", None, "serve Prometheus text on /metrics here (absent: off)", "ADDRESS:PORT"),
    Setting("cluster", "mode", ClusterMode.PRIMARY_BACKUP.value, "primary-backup: one node forwards, the others keep its states; active-active: every node forwards, one VRRP group each, and keeps the others' states in its kernel (docs/active-active.md)", choices=tuple(m.value for m in ClusterMode)),
    Setting("cluster", "mark_mask", 0xFF, "active-active: the bits of the conntrack mark that name a connection's group (the firewall's rules set them on the connection's first packet)", "", 1, 0xFFFF_FFFF),
    Setting("cluster", "groups", None, "active-active: the VRRP groups, each the ct mark its connections carry and the keepalived sync_group or instance whose MASTER makes this node their owner; the same list in the same order on every node; the group at index i syncs on the sync ports + i", "[{ mark = N, sync_group = NAME }, ...]"),
    Setting("cluster.defer", "enabled", True, "active-active: hold a new connection's first packet (queued by the firewall's rules) until every live peer has its state, so that its reply may come back through another node"),
    Setting("cluster.defer", "queue", 0, "the NFQUEUE number the firewall's rules queue new connections to", "", 0, 65535),
    Setting("cluster.defer", "bound", _D.bound, "seconds a packet is held at most; then the fail policy", "seconds", 0.0, 1.0),
    Setting("cluster.defer", "fail", _D.fail.value, "the verdict when the bound passes (or max_held packets wait already): open accepts (availability first), closed drops (the sender retransmits)", choices=tuple(f.value for f in FailPolicy)),
    Setting("cluster.defer", "max_held", _D.max_held, "packets held at once at most (beyond: the fail policy at once)", "packets", 1, 1 << 20),
)

#: the SyncParams numbers and switches each section sets (same names end to end)
_PARAMS_OF = {
    section: [s for s in SETTINGS if s.section == section and s.key in {f.name for f in fields(SyncParams)} and not s.choices]
    for section in ("sync", "kernel")
}


# ---------------------------------------------------------------------------
# validation helpers: each raises ConfigError(file, key, reason)


class _Reader:
    """Reads one table, remembering which keys were consumed, to reject the rest."""

    def __init__(self, path: str, section: str, table: Any) -> None:
        self.path = path
        self.section = section
        if not isinstance(table, dict):
            raise self.error(None, f"must be a table, not {_type(table)}")
        self.table = table
        self.seen: set[str] = set()

    def name(self, key: str | None) -> str:
        return f"{self.section}.{key}" if key else self.section

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.name(key)}: {reason}")

    def has(self, key: str) -> bool:
        return key in self.table

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise self.error(key, "missing (required)")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"must be {_kinds(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise self.error(key, f"must be {_kinds(kinds)}, not {_type(value)}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int, required: bool = False) -> int:
        value = self.get(key, int, default, required)
        if not low <= value <= high:
            raise self.error(key, f"{value} is out of range {low}..{high}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = float(self.get(key, (int, float), default))
        if not low <= value <= high:
            raise self.error(key, f"{value:g} is out of range {low:g}..{high:g}")
        return value

    def sub(self, key: str) -> _Reader | None:
        if key not in self.table:
            self.seen.add(key)
            return None
        self.seen.add(key)
        return _Reader(self.path, self.name(key), self.table[key])

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key" + _suggest(unknown[0], self.seen))


def _suggest(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _kinds(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "an array", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_endpoint(text: str, default_port: int | None = DEFAULT_PORT) -> Endpoint:
    """``"10.0.0.1:3780"``, ``"[fd00::1]:3780"``, ``"fe80::1%sync0"`` -> Endpoint.

    Raises ValueError with the reason.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    scope = ""
    if "%" in host:
        host, scope = host.split("%", 1)
        if not scope:
            raise ValueError("empty interface name after '%'")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv4 or IPv6 address") from None
    if scope and address.version != 6:
        raise ValueError("an interface scope ('%IF') is only valid on IPv6 addresses")
    if port_text:
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} is not a number")
        port = int(port_text)
    elif default_port is None:
        raise ValueError("missing ':PORT'")
    else:
        port = default_port
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1..65535")
    return Endpoint(str(address), port, scope)


def _endpoint(reader: _Reader, key: str, value: Any, default_port: int | None) -> Endpoint:
    if not isinstance(value, str):
        raise reader.error(key, f"must be a string \"ADDRESS:PORT\", not {_type(value)}")
    try:
        return parse_endpoint(value, default_port)
    except ValueError as error:
        raise reader.error(key, f"bad address {value!r}: {error}") from None


def _interface(reader: _Reader, key: str, required: bool = False) -> str:
    name = reader.get(key, str, "", required)
    if name and (len(name) > 15 or "/" in name or " " in name):
        raise reader.error(key, f"{name!r} is not a valid interface name")
    return name


def _link(reader: _Reader) -> LinkConfig:
    listen = _endpoint(reader, "listen", reader.get("listen", str, required=True), DEFAULT_PORT)
    if listen.family == socket.AF_INET and ipaddress.ip_address(listen.host).is_multicast:
        raise reader.error("listen", "must be a local unicast address (use multicast_group for the group)")
    peers_raw = reader.get("peers", list, [])
    group = reader.get("multicast_group", str, "")
    interface = _interface(reader, "interface")
    peers: list[Peer] = []
    for index, raw in enumerate(peers_raw):
        where = f"peers[{index}]"
        if not isinstance(raw, dict):
            raise reader.error(where, f"must be a table {{ id = N, address = \"ADDRESS:PORT\" }}, not {_type(raw)} {raw!r}")
        unknown = sorted(set(raw) - {"id", "address"})
        if unknown:
            raise reader.error(f"{where}.{unknown[0]}", "unknown key (a peer has id and address)")
        node_id = raw.get("id")
        if not isinstance(node_id, int) or isinstance(node_id, bool) or not 1 <= node_id <= 0xFFFF_FFFF:
            raise reader.error(f"{where}.id", f"must be the peer's node id, an integer 1..4294967295, not {node_id!r}")
        if "address" not in raw:
            raise reader.error(f"{where}.address", "missing (required)")
        address = _endpoint(reader, f"{where}.address", raw["address"], listen.port)
        if address.family != listen.family:
            raise reader.error(f"{where}.address", f"{raw['address']!r} is not of the same address family as listen ({listen})")
        if ipaddress.ip_address(address.host).is_multicast:
            raise reader.error(f"{where}.address", f"{raw['address']!r} is a multicast address; use multicast_group")
        if address == listen:
            raise reader.error(f"{where}.address", f"{raw['address']!r} is this node's own listen address")
        peers.append(Peer(node_id, address))
    if len({p.node_id for p in peers}) != len(peers):
        raise reader.error("peers", "lists the same node id twice")
    if len({p.address for p in peers}) != len(peers):
        raise reader.error("peers", "lists the same address twice")
    if not peers:
        raise reader.error(
            "peers",
            "missing: give peers = [{ id = N, address = \"ADDRESS:PORT\" }, ...] (with multicast_group too: they say who may speak)",
        )
    if group:
        try:
            address = ipaddress.ip_address(group)
        except ValueError:
            raise reader.error("multicast_group", f"{group!r} is not an IPv4 or IPv6 address") from None
        if not address.is_multicast:
            raise reader.error("multicast_group", f"{group!r} is not a multicast address")
        if (address.version == 6) != (listen.family == socket.AF_INET6):
            raise reader.error("multicast_group", f"{group!r} is not of the same address family as listen ({listen})")
        if not interface:
            raise reader.error("interface", "missing (required with multicast_group: the sync interface)")
        group = str(address)
    return LinkConfig(listen=listen, peers=tuple(peers), multicast_group=group, interface=interface)


def _not_self(reader: _Reader, link: LinkConfig, node_id: int) -> None:
    for index, peer in enumerate(link.peers):
        if peer.node_id == node_id:
            raise reader.error(f"peers[{index}].id", f"{node_id} is this node's own id (node.id)")


def check_key_file(path: Path, where: str) -> None:
    """The key file must exist, be a regular readable file of mode 0600 or 0400 (no
    access for group and others), owned by root or by the user the daemon runs as."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: key file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"{where}: key file {path} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{where}: key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{where}: key file {path} has mode {mode:04o}: group or others may access it; chmod 600 (or 400) it"
        )
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{where}: key file {path} is owned by uid {info.st_uid}, neither root nor this user ({os.geteuid()}): "
            f"whoever owns it can change the key"
        )
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: key file {path} is not readable by this user")


_PROTOCOL_NAMES = {p.name.lower(): int(p) for p in Proto}


def _filter(reader: _Reader | None) -> Filter:
    default = DEFAULT_FILTER
    if reader is None:
        return default
    protocols = default.protocols
    raw = reader.get("protocols", list, None)
    if raw is not None:
        chosen = set()
        for index, name in enumerate(raw):
            if not isinstance(name, str) or name.lower() not in _PROTOCOL_NAMES:
                raise reader.error(
                    f"protocols[{index}]", f"unknown protocol {name!r} (known: {', '.join(sorted(_PROTOCOL_NAMES))})"
                )
            chosen.add(_PROTOCOL_NAMES[name.lower()])
        protocols = frozenset(chosen)
    ignore = default.ignore
    raw = reader.get("ignore", list, None)
    if raw is not None:
        networks = []
        for index, text in enumerate(raw):
            if not isinstance(text, str):
                raise reader.error(f"ignore[{index}]", f"must be a string, not {_type(text)}")
            try:
                networks.append(ipaddress.ip_network(text, strict=True))
            except ValueError as error:
                raise reader.error(f"ignore[{index}]", f"bad address or prefix {text!r}: {error}") from None
        ignore = tuple(networks)
    states = default.tcp_states
    raw = reader.get("tcp_states", list, None)
    if raw is not None:
        chosen_states = set()
        for index, name in enumerate(raw):
            try:
                chosen_states.add(TcpState[str(name).upper()])
            except KeyError:
                raise reader.error(
                    f"tcp_states[{index}]", f"unknown TCP state {name!r} (known: {', '.join(s.name for s in TcpState)})"
                ) from None
        states = frozenset(chosen_states)
    reader.done()
    return Filter(protocols=protocols, ignore=ignore, tcp_states=states)


def _setting(section: str, key: str) -> Setting:
    return next(s for s in SETTINGS if s.section == section and s.key == key)


def _read(reader: _Reader, setting: Setting) -> Any:
    """A scalar setting's value: its type and range are the table's, absent is its default."""
    default = setting.default
    if isinstance(default, bool):
        return reader.get(setting.key, bool, default)
    assert setting.low is not None and setting.high is not None
    if isinstance(default, int):
        return reader.integer(setting.key, default, int(setting.low), int(setting.high))
    return reader.number(setting.key, default, setting.low, setting.high)


def _choice(reader: _Reader, setting: Setting) -> str:
    """A word of ``setting.choices`` (case-insensitive); anything else names the known ones."""
    value = reader.get(setting.key, str, setting.default).lower()
    if value not in setting.choices:
        raise reader.error(setting.key, f"unknown value {value!r} (known: {', '.join(setting.choices)})")
    return value


def _read_all(reader: _Reader, settings: list[Setting]) -> dict[str, Any]:
    return {setting.key: _read(reader, setting) for setting in settings}


def parse(data: dict[str, Any], path: str = "<config>", check_files: bool = True) -> Config:
    """Validate a parsed TOML document."""
    top = _Reader(path, "", data)
    top.name = lambda key: key or "(top level)"  # type: ignore[method-assign]

    node = top.sub("node")
    if node is None:
        raise ConfigError(f"{path}: node: missing section [node] (with id = N)")
    node_id = node.integer("id", None, 1, 0xFFFF_FFFF, required=True)
    state_text = node.get("state_file", str, DEFAULT_STATE_FILE)
    if not state_text.strip():
        raise node.error("state_file", "is empty: give the path where the newest epoch is kept")
    state_file = Path(state_text)
    log_level = node.get("log_level", str, "info").lower()
    if log_level not in LOG_LEVELS:
        raise node.error("log_level", f"unknown level {log_level!r} (known: {', '.join(LOG_LEVELS)})")
    node.done()

    sync = top.sub("sync")
    if sync is None:
        raise ConfigError(f"{path}: sync: missing section [sync] (with listen and peers)")
    link = _link(sync)
    _not_self(sync, link, node_id)
    second_reader = sync.sub("second_link")
    second = _link(second_reader) if second_reader is not None else None
    if second_reader is not None:
        assert second is not None
        second_reader.done()
        if second.listen == link.listen:
            raise second_reader.error("listen", "is the same endpoint as sync.listen")
        _not_self(second_reader, second, node_id)
        main_ids = {p.node_id for p in link.peers}
        for index, peer in enumerate(second.peers):
            if peer.node_id not in main_ids:
                raise second_reader.error(f"peers[{index}].id", f"node {peer.node_id} is not a peer of sync.peers")
    key_file = sync.get("key_file", str, "")
    key_path = Path(key_file) if key_file else None
    insecure = sync.get("insecure", bool, False)
    if key_path is None and not insecure:
        raise sync.error(
            "key_file",
            "missing: frames must be sealed with a pre-shared key (see contrib/snep.toml); to run without one, "
            "say insecure = true, knowing that anyone on the sync link can then put entries into this "
            "firewall's kernel and fence its primary",
        )
    if key_path is not None and insecure:
        raise sync.error("insecure", "is true, but key_file is set: choose one")
    if key_path is not None and check_files:
        check_key_file(key_path, f"{path}: sync.key_file")
    level_name = sync.get("level", str, _P.level.value)
    try:
        level = Level(level_name.lower())
    except ValueError:
        raise sync.error("level", f"unknown level {level_name!r} (known: {', '.join(l.value for l in Level)})") from None
    tunables: dict[str, Any] = {"level": level}
    tunables.update(_read_all(sync, _PARAMS_OF["sync"]))
    if tunables["peer_dead_timeout"] <= tunables["alive_interval"]:
        raise sync.error(
            "peer_dead_timeout",
            f"{tunables['peer_dead_timeout']:g} must be longer than alive_interval ({tunables['alive_interval']:g})",
        )
    buffer = _read(sync, _setting("sync", "socket_buffer"))
    sync.done()

    kernel = top.sub("kernel") or _Reader(path, "kernel", {})
    tunables.update(_read_all(kernel, _PARAMS_OF["kernel"]))
    tunables["unconfirmed"] = Unconfirmed(_choice(kernel, _setting("kernel", "unconfirmed")))
    kernel_config = KernelConfig(
        netlink_buffer=_read(kernel, _setting("kernel", "netlink_buffer")),
        netlink_buffer_max=_read(kernel, _setting("kernel", "netlink_buffer_max")),
        event_batch=_read(kernel, _setting("kernel", "event_batch")),
    )
    kernel.done()
    if kernel_config.netlink_buffer_max < kernel_config.netlink_buffer:
        raise kernel.error("netlink_buffer_max", "is smaller than netlink_buffer")
    sync_config = SyncConfig(
        link=link,
        second_link=second,
        key_file=key_path,
        insecure=insecure,
        socket_buffer=buffer,
        params=SyncParams(**tunables),
    )

    filter_config = _filter(top.sub("filter"))

    control_config = ControlConfig()
    control = top.sub("control")
    if control is not None:
        socket_path = control.get("socket", str, DEFAULT_CONTROL_SOCKET)
        if not socket_path.startswith("/"):
            raise control.error("socket", f"{socket_path!r} must be an absolute path")
        if len(socket_path.encode()) > 107:
            raise control.error("socket", "path is longer than a UNIX socket address allows (107 bytes)")
        control_config = ControlConfig(Path(socket_path))
        control.done()

    cluster_config = _cluster(top.sub("cluster"))
    ha_config = _ha(top.sub("ha"), cluster_config, path)
    if cluster_config.active_active:
        _active_active(top, cluster_config, sync_config)
        sync_config = replace(sync_config, params=replace(sync_config.params, inject_on_arrival=True))

    metrics_config = MetricsConfig()
    metrics = top.sub("metrics")
    if metrics is not None:
        listen = metrics.get("listen", str, "")
        if listen:
            metrics_config = MetricsConfig(_endpoint(metrics, "listen", listen, 9477))
        metrics.done()

    top.done()
    return Config(
        node_id=node_id,
        sync=sync_config,
        kernel=kernel_config,
        filter=filter_config,
        control=control_config,
        ha=ha_config,
        metrics=metrics_config,
        cluster=cluster_config,
        state_file=state_file,
        log_level=log_level,
        source=Path(path),
    )


def _ha(ha: _Reader | None, cluster: ClusterConfig, path: str) -> HaConfig:
    """[ha]: a FIFO path, and exactly one of sync_group and instance with it (in
    active-active: neither, each group names its own, and the FIFO is required)."""
    if ha is None:
        if cluster.active_active:
            raise ConfigError(f"{path}: ha: missing section [ha] with notify_fifo: active-active follows keepalived's transitions of every group through it")
        return HaConfig()
    fifo = ha.get("notify_fifo", str, "")
    group = ha.get("sync_group", str, "")
    instance = ha.get("instance", str, "")
    ha.done()
    if not fifo:
        if cluster.active_active:
            raise ha.error("notify_fifo", "missing: active-active follows keepalived's transitions of every group through it")
        if group or instance:
            raise ha.error("sync_group" if group else "instance", "is set, but notify_fifo is not: it only names what the FIFO's lines are followed for")
        return HaConfig()
    if not fifo.startswith("/"):
        raise ha.error("notify_fifo", f"{fifo!r} must be an absolute path")
    if cluster.active_active:
        if group or instance:
            raise ha.error("sync_group" if group else "instance", "is not used in active-active: each of cluster.groups names the sync_group or instance it follows")
        return HaConfig(Path(fifo))
    if bool(group) == bool(instance):
        raise ha.error("notify_fifo", "needs exactly one of sync_group and instance: whose transitions to follow")
    return HaConfig(Path(fifo), _follow(ha, "", {"sync_group": group, "instance": instance}))


def _follow(reader: _Reader, where: str, table: dict[str, Any]) -> tuple[str, str]:
    """A keepalived sync group or instance (``where``: the table's key, "" for the
    section itself), exactly one of the two, named without spaces or quotes."""
    group, instance = table.get("sync_group", ""), table.get("instance", "")
    for key, name in (("sync_group", group), ("instance", instance)):
        named = f"{where}.{key}" if where else key
        if not isinstance(name, str):
            raise reader.error(named, f"must be a string, not {_type(name)}")
        if name and (any(c.isspace() for c in name) or '"' in name):
            raise reader.error(named, f"{name!r}: keepalived's names have no spaces or quotes")
    if bool(group) == bool(instance):
        raise reader.error(where, "needs exactly one of sync_group and instance: whose MASTER makes this node the group's owner")
    return ("GROUP", group) if group else ("INSTANCE", instance)


def _cluster(cluster: _Reader | None) -> ClusterConfig:
    """[cluster] and [cluster.defer]; the groups and defer only in active-active."""
    if cluster is None:
        return ClusterConfig()
    mode_name = _choice(cluster, _setting("cluster", "mode"))
    mode = ClusterMode(mode_name)
    mask = _read(cluster, _setting("cluster", "mark_mask"))
    raw_groups = cluster.get("groups", list, [])
    defer_reader = cluster.sub("defer")
    cluster.done()
    defer = DeferConfig()
    if defer_reader is not None:
        params = DeferParams(
            bound=_read(defer_reader, _setting("cluster.defer", "bound")),
            fail=FailPolicy(_choice(defer_reader, _setting("cluster.defer", "fail"))),
            max_held=_read(defer_reader, _setting("cluster.defer", "max_held")),
        )
        defer = DeferConfig(
            enabled=_read(defer_reader, _setting("cluster.defer", "enabled")),
            queue=_read(defer_reader, _setting("cluster.defer", "queue")),
            params=params,
        )
        defer_reader.done()
    if mode is ClusterMode.PRIMARY_BACKUP:
        for key, present in (("groups", bool(raw_groups)), ("defer", defer_reader is not None), ("mark_mask", cluster.has("mark_mask"))):
            if present:
                raise cluster.error(key, 'is only for mode = "active-active"')
        return ClusterConfig()
    if not raw_groups:
        raise cluster.error("groups", "missing: active-active needs the VRRP groups, [{ mark = N, sync_group = NAME }, ...], one per node")
    groups: list[GroupConfig] = []
    for index, raw in enumerate(raw_groups):
        where = f"groups[{index}]"
        if not isinstance(raw, dict):
            raise cluster.error(where, f"must be a table {{ mark = N, sync_group = NAME }}, not {_type(raw)} {raw!r}")
        unknown = sorted(set(raw) - {"mark", "sync_group", "instance"})
        if unknown:
            raise cluster.error(f"{where}.{unknown[0]}", "unknown key (a group has mark, and sync_group or instance)")
        mark = raw.get("mark")
        if not isinstance(mark, int) or isinstance(mark, bool) or not 1 <= mark <= 0xFFFF_FFFF:
            raise cluster.error(f"{where}.mark", f"must be an integer 1..4294967295, not {mark!r}")
        if mark & ~mask:
            raise cluster.error(f"{where}.mark", f"{mark:#x} has bits outside mark_mask {mask:#x}")
        groups.append(GroupConfig(mark, _follow(cluster, where, raw)))
    if len({g.mark for g in groups}) != len(groups):
        raise cluster.error("groups", "gives the same mark twice")
    if len({g.follow for g in groups}) != len(groups):
        raise cluster.error("groups", "follows the same sync_group or instance twice")
    return ClusterConfig(mode, mask, tuple(groups), defer)


def _active_active(top: _Reader, cluster: ClusterConfig, sync: SyncConfig) -> None:
    """What active-active needs of the other sections: a port per group, a warm kernel."""
    links = [sync.link] + ([sync.second_link] if sync.second_link else [])
    last = len(cluster.groups) - 1
    for link in links:
        for endpoint in (link.listen, *(p.address for p in link.peers)):
            if endpoint.port + last > 0xFFFF:
                raise top.error("cluster.groups", f"{len(cluster.groups)} groups need the ports {endpoint.port}..{endpoint.port + last} of {endpoint.host}: beyond 65535")
    if not sync.params.inject_on_arrival:
        raise top.error("kernel.inject_on_arrival", "is false, but active-active keeps the peers' states in the kernel (a packet of any connection may arrive at any node)")


def group_config(cfg: Config, index: int) -> Config:
    """The config of active-active's group ``index`` as one primary/backup instance:
    the sync ports + index on every link, its own epoch file, its keepalived group."""
    group = cfg.cluster.groups[index]

    def shifted(endpoint: Endpoint) -> Endpoint:
        return replace(endpoint, port=endpoint.port + index)

    def link_of(link: LinkConfig) -> LinkConfig:
        return replace(link, listen=shifted(link.listen), peers=tuple(replace(p, address=shifted(p.address)) for p in link.peers))

    second = cfg.sync.second_link
    sync = replace(cfg.sync, link=link_of(cfg.sync.link), second_link=link_of(second) if second else None)
    return replace(
        cfg,
        sync=sync,
        state_file=Path(f"{cfg.state_file}.{group.mark}"),
        ha=replace(cfg.ha, follow=group.follow),
    )


def sync_filter(cfg: Config) -> Filter:
    """The configured filter, plus the sync links' own addresses: the sync traffic is
    conntracked like any other, and must not be synchronized itself."""
    links = [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else [])
    hosts = {ep.host for link in links for ep in (link.listen, *(p.address for p in link.peers))}
    own = tuple(ipaddress.ip_network(host) for host in sorted(hosts))
    extra = tuple(net for net in own if net not in cfg.filter.ignore)
    return Filter(cfg.filter.protocols, cfg.filter.ignore + extra, cfg.filter.tcp_states)


def load(path: str | os.PathLike[str], check_files: bool = True) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except OSError as error:
        raise ConfigError(f"{path}: config file cannot be read: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax error: {error}") from None
    return parse(data, str(path), check_files)
