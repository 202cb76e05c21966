"""A conntrackd.conf turned into the equivalent snep.toml, and what did not carry over.

Every statement of the file is answered for, by its place in the file (its *path*,
``General.Filter.Protocol``): :data:`HANDLERS` carry a value into snep's config (or
decide from the value), :data:`NOT_CARRIED` and :data:`NOTED` say why nothing is
written. Each answer that is not a plain translation becomes a :class:`Note` with the
line it is about, so the operator sees, line by line, what changes.

What maps to what, and why (docs/migration.md has the table):

- ``Mode FTFW``, ``ALARM`` and ``NOTRACK`` all become snep's one reliable protocol
  (level ``strong``): ALARM's periodic re-sending and NOTRACK's best effort are what
  acknowledgements, NACKs and resyncs replace;
- the ``UDP``, ``TCP`` and ``Multicast`` sections are the sync links (``Default`` or
  the first one: ``[sync]``; the next: ``[sync.second_link]``; snep has two);
  snep speaks UDP only, so a TCP link becomes a UDP link on the same addresses;
- ``Filter`` becomes ``[filter]`` (snep lists the protocols and TCP states it
  accepts, so an ``Ignore`` list is written as its complement; it can only ignore
  addresses, so ``Address Accept`` has no equivalent);
- buffers and timeouts map to the keys of the same meaning; what conntrackd does that
  snep does otherwise (logging, locking, scheduling) says where that went.

conntrackd has no node ids, no peers on a multicast link and no authentication: the
caller gives them (:class:`Options`), or the output says what it assumed and, for a
missing peer, writes a placeholder from the documentation ranges (RFC 5737, RFC
3849) that the report names. The result is validated by :func:`snep.config.parse`
before it is returned: the importer never hands out a config snep would refuse.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from snep import __version__, config
from snep.config_write import Document, Peer, auth_entries, peers_value, value
from snep.entry import Proto, TcpState
from snep.errors import ConfigError
from snep.migrate.conntrackd_conf import SWITCHES, Statement, Word, parse
from snep.paths import CONTROL_SOCKET

#: kinds of notes, in the order the report lists them per line
NOT_CARRIED, PLACEHOLDER, NOTE = "not carried", "placeholder", "note"

#: documentation addresses (RFC 5737, RFC 3849): a placeholder never names a real host
PLACEHOLDER_PEER = {4: "192.0.2.2", 6: "2001:db8::2"}
PLACEHOLDER_LISTEN = {6: "2001:db8::1"}


@dataclass(frozen=True)
class Note:
    line: int
    kind: str
    text: str


@dataclass(frozen=True)
class Options:
    """What conntrackd.conf does not say and snep needs, from the command line."""

    node_id: int | None = None  # conntrackd has no node ids
    peers: tuple[str, ...] = ()  # ADDRESS[:PORT] of the peers on the main link
    second_link_peers: tuple[str, ...] = ()
    port: int | None = None  # instead of conntrackd's (to run beside it)
    key_file: str | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # section -> key -> value


@dataclass
class Imported:
    toml: str
    config: config.Config
    notes: list[Note]

    def report(self, source: str) -> list[str]:
        """One line per note: ``FILE:LINE: KIND: TEXT`` (line 0: the file as a whole)."""
        order = {NOT_CARRIED: 0, PLACEHOLDER: 1, NOTE: 2}
        return [
            f"{source}:{n.line}: {n.kind}: {n.text}" if n.line else f"{source}: {n.kind}: {n.text}"
            for n in sorted(self.notes, key=lambda n: (n.line, order[n.kind]))
        ]


# ---------------------------------------------------------------------------- answers

_TIMEOUT = "snep commits each entry with the timeout the primary's kernel gave it; no fixed timeout"
_OBSOLETE = "obsolete in conntrackd (it ignores it)"
_REFRESH = "ALARM's periodic re-sending of every entry: snep's acknowledged protocol needs none"

#: path -> why nothing is written (the behaviour differs; a note of kind NOT_CARRIED)
NOT_CARRIED_WHY: dict[str, str] = {
    "Stats": "conntrackd's statistics mode (connection logging): snep does not log connections",
    "Helper": "user-space conntrack helpers: not snep's job (keep conntrackd for them, or use the kernel's helpers)",
    "StripNAT": _OBSOLETE,
    "Sync.Mode.CommitTimeout": _TIMEOUT,
    "Sync.CommitTimeout": _TIMEOUT,
    "Sync.Mode.ResendQueueSize": "counts entries; snep's [sync] resend_queue counts frames (many entries "
    "each) and keeps its default",
    "Sync.Mode.ResendBufferSize": "counts bytes; snep's [sync] resend_queue counts frames and keeps its default",
    "Sync.Mode.ACKWindowSize": "counts messages (one entry each); snep's [sync] ack_window counts frames "
    "and keeps its default",
    "Sync.Mode.RefreshTime": _REFRESH,
    "Sync.Mode.CacheTimeout": _REFRESH,
    "Sync.RefreshTime": _REFRESH,
    "Sync.CacheTimeout": _REFRESH,
    "Sync.Mode.RelaxTransitions": _OBSOLETE,
    "Sync.Mode.DelayDestroyMessages": _OBSOLETE,
    "Sync.RelaxTransitions": _OBSOLETE,
    "Sync.DelayDestroyMessages": _OBSOLETE,
    "Sync.ListenTo": _OBSOLETE,
    "Sync.DestroyTimeout": _OBSOLETE,
    "Sync.Multicast.Backlog": _OBSOLETE,
    "Sync.Multicast.IPv6_interface": _OBSOLETE,
    "Sync.TCP.ErrorQueueLength": "a TCP transport setting; snep syncs over UDP",
    "General.Nice": "set Nice= in the systemd unit (snep.service)",
    "General.Scheduler": "set CPUSchedulingPolicy= and CPUSchedulingPriority= in the systemd unit",
    "General.HashLimit": "snep's caches have no limit of their own: the kernel's nf_conntrack_max bounds "
    "what they hold",
    "General.PollSecs": "snep follows kernel events only; it has no polling mode",
    "General.UNIX.Backlog": _OBSOLETE,
    "General.Family": _OBSOLETE,
}

#: path -> why nothing needs to be written (snep does it by design; a note of kind NOTE)
NOTED_WHY: dict[str, str] = {
    "General.Systemd": "snep.service runs snep as Type=simple; nothing to set",
    "General.HashSize": "snep's caches size themselves; nothing to set",
    "General.LockFile": "snep needs no lock file: a second node on the same control socket refuses to start",
    "General.EventIterationLimit": "snep reads kernel events in batches between its other work; nothing to set",
}


@dataclass
class _Link:
    kind: str  # Multicast, UDP, TCP
    line: int
    default: bool
    group: Word | None = None  # Multicast: IPv4_address / IPv6_address
    local: Word | None = None  # UDP/TCP: IPv4_address; Multicast: IPv4_interface
    peer: Word | None = None  # UDP/TCP: IPv*_Destination_Address
    port: int | None = None
    interface: Word | None = None
    buffer: int = 0  # the larger of SndSocketBuffer and RcvSocketBuffer
    buffer_line: int = 0


_PROTOCOLS = {p.name.lower(): p for p in Proto} | {"ipv6-icmp": Proto.ICMPV6}
#: conntrackd's TCP state names -> the kernel's (snep's): LISTEN is the kernel's SYN_SENT2
_STATES = {s.name: s for s in TcpState if s is not TcpState.NONE} | {
    "CLOSED": TcpState.CLOSE,
    "LISTEN": TcpState.SYN_SENT2,
}


class _Converter:
    def __init__(self, source: str, options: Options) -> None:
        self.source = source
        self.options = options
        self.notes: list[Note] = []
        self.doc = Document()
        self.links: list[_Link] = []
        self.mode: Statement | None = None
        self.protocols_accept: list[tuple[Word, Proto]] | None = None
        self.protocols_ignore: list[tuple[Word, Proto]] = []
        self.ignore: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
        self.address_policy = "Ignore"
        self.states_accept: set[TcpState] | None = None
        self.states_ignore: set[TcpState] = set()
        self.has_sync = False

    # ---- helpers

    def note(self, line: int, kind: str, text: str) -> None:
        self.notes.append(Note(line, kind, text))

    def error(self, line: int, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}:{line}: {reason}")

    def number(self, st: Statement, low: int = 0) -> int:
        """The statement's number (the grammar checked that it is one), at least ``low``."""
        if int(st.arg()) < low:
            raise self.error(st.line, f"{st.keyword}: {st.arg()} is less than {low}")
        return int(st.arg())

    @staticmethod
    def switch(st: Statement) -> bool:
        return SWITCHES.get(st.arg().lower(), True)  # (a grammar that allows a path or number: on)

    def address(self, word: Word, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return ipaddress.ip_address(word.text)
        except ValueError:
            raise self.error(word.line, f"{what}: {word.text!r} is an address prefix, not an address") from None

    def bounded(self, section: str, key: str, value: int, line: int, what: str) -> int:
        """``value`` within the range config.SETTINGS gives ``section.key`` (noted when clamped)."""
        setting = next(s for s in config.SETTINGS if s.section == section and s.key == key)
        assert setting.low is not None and setting.high is not None
        clamped = min(max(value, int(setting.low)), int(setting.high))
        if clamped != value:
            self.note(line, NOTE, f"{what} {value}: out of snep's range for {section}.{key} "
                                  f"({int(setting.low)}..{int(setting.high)}), written as {clamped}")
        return clamped

    # ---- the walk

    def walk(self, statements: list[Statement]) -> None:
        for st in statements:
            if st.path in NOT_CARRIED_WHY:
                self.note(st.line, NOT_CARRIED, f"{st.text()}: {NOT_CARRIED_WHY[st.path]}")
                continue  # nothing inside it is carried either
            if st.path in NOTED_WHY:
                self.note(st.line, NOTE, f"{st.text()}: {NOTED_WHY[st.path]}")
                continue
            handler = HANDLERS.get(st.path)
            if handler is None:  # the grammar knows it, nobody answers for it: a bug
                raise AssertionError(f"no answer for conntrackd's {st.path}")
            handler(self, st)
            if st.body is not None:
                self.walk(st.body)

    # ---- Sync

    def sync(self, st: Statement) -> None:
        self.has_sync = True

    def mode_(self, st: Statement) -> None:
        self.mode = st
        name = st.arg().upper()
        if name in ("ALARM", "PERSISTENT"):
            self.note(st.line, NOTE, "Mode ALARM: snep's protocol is acknowledged (NACKs, resends, resyncs), "
                                     "so nothing needs re-sending periodically: level strong")
        elif name == "NOTRACK":
            self.note(st.line, NOTE, "Mode NOTRACK: snep has no best-effort mode; its acknowledged protocol "
                                     "delivers what NOTRACK may lose: level strong")

    def container(self, st: Statement) -> None:
        """A section whose statements carry the values (General, Options, UNIX ...)."""

    def link(self, st: Statement) -> None:
        default = [a.text for a in st.args]
        if default and default != ["Default"]:
            raise self.error(st.line, f"{st.text()}: expected {st.keyword} [Default] {{")
        self.links.append(_Link(st.keyword, st.line, bool(default)))
        if st.keyword == "TCP":
            self.note(st.line, NOTE, "TCP: snep syncs over UDP (its protocol is reliable): "
                                     "a UDP link on the same addresses and port")

    def link_address(self, st: Statement) -> None:
        link = self.links[-1]
        word = st.args[0]
        self.address(word, st.keyword)
        if link.kind == "Multicast":
            link.group = word
        else:
            link.local = word

    def link_local(self, st: Statement) -> None:
        self.address(st.args[0], st.keyword)
        self.links[-1].local = st.args[0]

    def link_peer(self, st: Statement) -> None:
        self.address(st.args[0], st.keyword)
        self.links[-1].peer = st.args[0]

    def link_port(self, st: Statement) -> None:
        port = self.number(st, 1)
        if port > 65535:
            raise self.error(st.line, f"{st.keyword}: {port} is not a UDP port")
        self.links[-1].port = port

    def link_interface(self, st: Statement) -> None:
        self.links[-1].interface = st.args[0]

    def link_buffer(self, st: Statement) -> None:
        link = self.links[-1]
        link.buffer, link.buffer_line = max(link.buffer, self.number(st)), link.buffer_line or st.line

    def checksum(self, st: Statement) -> None:
        self.note(st.line, NOTE, f"{st.text()}: snep's frames always carry the UDP checksum "
                                 "(and, with a key file, a MAC); nothing to set")

    def purge(self, st: Statement) -> None:
        seconds = self.bounded("kernel", "shorten_timeout", self.number(st), st.line, st.keyword)
        self.doc.set("kernel", "shorten_timeout", seconds, f"{st.keyword} (line {st.line})")

    def external_cache(self, st: Statement) -> None:
        on = self.switch(st)
        if st.keyword == "CacheWriteThrough":
            self.note(st.line, NOTE, "CacheWriteThrough: conntrackd's old name of DisableExternalCache")
        self.doc.set("kernel", "inject_on_arrival", on, f"{st.keyword} {st.arg()} (line {st.line})")

    def internal_cache(self, st: Statement) -> None:
        if self.switch(st):
            self.note(st.line, NOT_CARRIED, f"{st.text()}: snep always keeps its internal cache "
                                            "(it answers the peers' resync requests from it)")

    def startup_resync(self, st: Statement) -> None:
        if self.switch(st):
            self.note(st.line, NOTE, f"{st.text()}: snep always asks for a resync when it starts")
        else:
            self.note(st.line, NOT_CARRIED, f"{st.text()}: snep always asks for a resync when it starts")

    def window_tracking(self, st: Statement) -> None:
        self.note(st.line, NOTE, f"{st.text()}: snep writes each entry with the TCP flags and window scales "
                                 "the primary's kernel had, and the kernel tracks windows from there; "
                                 "nothing to set")

    def expectations(self, st: Statement) -> None:
        if st.items is None and not self.switch(st):
            return
        self.note(st.line, NOT_CARRIED, f"{st.text()}{' {...}' if st.items is not None else ''}: snep synchronizes "
                                        "connections, not expectations: a helper's related connection (FTP data, "
                                        "SIP media) opened after a takeover needs its control connection to "
                                        "pass again")

    def replicate(self, st: Statement) -> None:  # Replicate ESTABLISHED TIME_WAIT for TCP (old syntax)
        states = self.states(st.args, st.line, st.keyword)
        self.states_accept = (self.states_accept or set()) | states

    # ---- General

    def logfile(self, st: Statement) -> None:
        if not self.switch(st):
            return
        self.note(st.line, NOT_CARRIED, f"{st.text()}: snep logs to stderr, the journal under systemd "
                                        "(journalctl -u snep)")

    def syslog(self, st: Statement) -> None:
        if not self.switch(st):
            return
        self.note(st.line, NOTE, f"{st.text()}: journald passes snep's records on to syslog")

    def unix_path(self, st: Statement) -> None:
        """snep's socket goes where conntrackd's was, named snep.sock (never the same file:
        the two daemons may run side by side during a migration); in /run or /var/run,
        conntrackd's place, that is snep's own default, which snep.service creates."""
        path = PurePosixPath(st.arg())
        socket = CONTROL_SOCKET if str(path.parent) in ("/run", "/var/run") else str(path.parent / "snep.sock")
        self.doc.set("control", "socket", socket, f"UNIX Path (line {st.line})")
        self.note(st.line, NOTE, f"{st.text()}: snep's control socket is {socket} "
                                 f"(snep ctl --socket, snep notify --socket)")
        if not socket.startswith("/run/snep/"):
            self.note(st.line, NOTE, f"snep.service lets snep write only /run/snep and /var/lib/snep: "
                                     f"add ReadWritePaths={path.parent} to the unit, or keep the socket in /run/snep")

    def netlink_buffer(self, st: Statement) -> None:
        size = self.bounded("kernel", "netlink_buffer", self.number(st), st.line, st.keyword)
        self.doc.set("kernel", "netlink_buffer", size, f"{st.keyword} (line {st.line})")

    def netlink_buffer_max(self, st: Statement) -> None:
        size = self.bounded("kernel", "netlink_buffer_max", self.number(st), st.line, st.keyword)
        self.doc.set("kernel", "netlink_buffer_max", size, f"{st.keyword} (line {st.line})")

    def overrun_resync(self, st: Statement) -> None:
        if not self.switch(st):
            self.note(st.line, NOT_CARRIED, f"{st.text()}: snep always resyncs from the kernel after lost events")
            return
        self.note(st.line, NOTE, f"{st.text()}: snep resyncs from the kernel at once after lost events "
                                 "(and doubles the buffer); no delay to set")

    def events_reliable(self, st: Statement) -> None:
        if self.switch(st):
            self.note(st.line, NOT_CARRIED, f"{st.text()}: snep does not ask the kernel for reliable events; "
                                            "it detects lost ones and resyncs from the kernel")

    # ---- filters

    def filter(self, st: Statement) -> None:
        where = [a.text for a in st.args]
        if where not in ([], ["From", "Userspace"], ["From", "Kernelspace"]):
            raise self.error(st.line, f"{st.text()}: expected Filter [From Userspace|Kernelspace] {{")
        if where[-1:] == ["Kernelspace"]:
            self.note(st.line, NOTE, "Filter From Kernelspace: snep filters in user space; "
                                     "the same connections are synchronized")

    def policy(self, st: Statement) -> str:
        if st.arg() not in ("Accept", "Ignore"):
            raise self.error(st.line, f"{st.keyword}: {st.arg()!r} is not Accept or Ignore")
        return st.arg()

    def protocol(self, st: Statement) -> None:
        chosen = []
        ignore = st.keyword == "IgnoreProtocol" or self.policy(st) == "Ignore"
        for word in st.items or []:
            proto = _PROTOCOLS.get(word.text.lower())
            if proto is None and word.text.isdigit() and int(word.text) in {int(p) for p in Proto}:
                proto = Proto(int(word.text))
            if proto is None:
                if not ignore:  # (ignored: snep's list of accepted ones leaves it out as well)
                    self.note(word.line, NOT_CARRIED, f"protocol {word.text}: snep's filter knows "
                                                      f"{', '.join(sorted(_PROTOCOLS))}: its connections "
                                                      "are not synchronized")
                continue
            chosen.append((word, proto))
        if ignore:
            self.protocols_ignore += chosen
        else:
            self.protocols_accept = (self.protocols_accept or []) + chosen

    def address_block(self, st: Statement) -> None:
        self.address_policy = "Ignore" if st.keyword == "IgnoreTrafficFor" else self.policy(st)

    def filter_address(self, st: Statement) -> None:
        word = st.args[0]
        try:
            network = ipaddress.ip_network(word.text, strict=False)
        except ValueError:
            raise self.error(word.line, f"{st.keyword}: {word.text!r} is not an address or prefix") from None
        if str(network) != word.text and "/" in word.text:
            self.note(word.line, NOTE, f"{word.text}: written as the prefix {network}")
        if self.address_policy == "Accept":
            self.note(word.line, NOT_CARRIED, f"Address Accept {word.text}: snep can only ignore addresses; "
                                              "connections of every other address are synchronized too")
            return
        self.ignore.append((word.line, network))

    def state(self, st: Statement) -> None:
        states = self.states(st.items or [], st.line, f"State {st.arg()}")
        if self.policy(st) == "Accept":
            self.states_accept = (self.states_accept or set()) | states
        else:
            self.states_ignore |= states

    def states(self, words: Sequence[Word], line: int, what: str) -> set[TcpState]:
        """``STATE ... for TCP`` -> the kernel's TCP states."""
        if len(words) < 2 or words[-2].text != "for" or words[-1].text != "TCP":
            raise self.error(line, f"{what}: expected 'STATE ... for TCP'")
        chosen: set[TcpState] = set()
        for word in words[:-2]:
            if word.text not in _STATES:
                raise self.error(word.line, f"{what}: unknown TCP state {word.text!r} "
                                            f"(conntrackd's: {', '.join(sorted(_STATES))})")
            if word.text == "LISTEN":
                self.note(word.line, NOTE, "LISTEN: the kernel's name of this TCP state is SYN_SENT2")
            chosen.add(_STATES[word.text])
        return chosen

    # ---- the snep config

    def document(self) -> Document:
        if not self.has_sync:
            raise ConfigError(f"{self.source}: no Sync section: this conntrackd does not synchronize "
                              "(statistics mode, or helpers only), so there is nothing for snep to take over")
        if not self.links:
            raise ConfigError(f"{self.source}: the Sync section has no UDP, TCP or Multicast section: "
                              "no sync link to carry over")
        opts = self.options
        doc = self.doc
        doc.header = [
            f"snep config imported from {self.source} by `snep config import-conntrackd` (snep {__version__}).",
            "Keys not set here have their defaults (snep.toml(5)); each comment names the conntrackd line.",
        ]
        node_id = opts.node_id if opts.node_id is not None else 1
        doc.sections = {"node": [], "sync": [], "sync.second_link": [], "kernel": doc.sections.get("kernel", []),
                        "filter": [], "control": doc.sections.get("control", [])}
        doc.set("node", "id", node_id, "unique in the cluster" if opts.node_id is not None else "ASSUMED: give --node-id")
        if opts.node_id is None:
            self.note(0, NOTE, "node.id = 1: conntrackd has no node ids; give each node its own (--node-id N)")
        links = sorted(self.links, key=lambda link: not link.default)  # Default first, else file order
        for extra in links[2:]:
            self.note(extra.line, NOT_CARRIED, f"{extra.kind}: snep has two sync links; this third one is dropped")
        peer_ids: list[int] = []
        for index, link in enumerate(links[:2]):
            section = "sync" if index == 0 else "sync.second_link"
            given = opts.peers if index == 0 else opts.second_link_peers
            peer_ids = self.write_link(doc, section, link, given, node_id, peer_ids)
            if index == 0:
                for key, item, comment in auth_entries(opts.key_file):
                    doc.set("sync", key, item, comment)
                mode = self.mode.arg().upper() if self.mode else "(none)"
                doc.set("sync", "level", "strong", f"Mode {mode} (line {self.mode.line if self.mode else links[0].line})")
                self.write_buffer(doc, links[:2])
        if opts.key_file is None:
            self.note(0, NOTE, "no key file (conntrackd has no authentication): written as insecure = true, "
                               "which leaves the sync link open to forgery; create one (openssl rand -hex 32) "
                               "and give --key-file")
        if self.mode is None:
            self.note(links[0].line, NOTE, "no Mode in Sync: level strong")
        self.write_kernel(doc)
        self.write_filter(doc)
        for section, entries in opts.overrides.items():
            for key, item in entries.items():
                doc.set(section, key, item, "set by the caller")
        return doc

    def write_buffer(self, doc: Document, links: Sequence[_Link]) -> None:
        """[sync] socket_buffer: snep's one size for every link, the largest conntrackd gave."""
        sized = [link for link in links if link.buffer]
        if not sized:
            return
        link = max(sized, key=lambda link: link.buffer)
        size = self.bounded("sync", "socket_buffer", link.buffer, link.buffer_line, "SndSocketBuffer/RcvSocketBuffer")
        doc.set("sync", "socket_buffer", size, f"Snd/RcvSocketBuffer (line {link.buffer_line})")
        if size < config.SOCKET_BUFFER:
            self.note(link.buffer_line, NOTE, f"socket_buffer = {size} (conntrackd's): snep's default, "
                                              f"{config.SOCKET_BUFFER}, holds a bulk dump of 200,000 entries")

    def write_link(self, doc: Document, section: str, link: _Link, given: Sequence[str], node_id: int,
                   known_ids: list[int]) -> list[int]:
        """One sync link; the peers' ids (the main link's, reused by the second link)."""
        port = self.options.port or link.port or config.DEFAULT_PORT
        if link.port is None and not self.options.port:
            self.note(link.line, NOTE, f"{link.kind}: no {'Group' if link.kind == 'Multicast' else 'Port'}: "
                                       f"port {config.DEFAULT_PORT}")
        if self.options.port and self.options.port != link.port:
            self.note(link.line, NOTE, f"{link.kind}: port {self.options.port} instead of conntrackd's "
                                       f"{link.port or config.DEFAULT_PORT} (--port)")
        elif section == "sync":
            self.note(link.line, NOTE, f"{link.kind}: snep takes conntrackd's port ({port}): stop conntrackd "
                                       "before snep starts, or give --port to run them side by side "
                                       "(docs/migration.md)")
        scope = link.interface.text if link.interface else ""
        version = 4
        for word in (link.local, link.peer, link.group):
            if word is not None:
                version = ipaddress.ip_address(word.text).version
        if link.local is not None:
            local = self.address(link.local, "address")
            listen = self.endpoint(local, port, scope)
        elif link.kind == "Multicast" and version == 6:
            listen = self.endpoint(ipaddress.ip_address(PLACEHOLDER_LISTEN[6]), port, "")
            self.note(link.line, PLACEHOLDER, f"[{section}] listen = {value(listen)}: conntrackd's IPv6 multicast "
                                              "has no local address and snep sends from one: put this node's "
                                              "address on the sync link")
        else:
            listen = f"0.0.0.0:{port}" if version == 4 else f"[::]:{port}"
            self.note(link.line, NOTE, f"{link.kind}: no local address: snep listens on every address ({listen})")
        doc.set(section, "listen", listen, f"{link.kind} (line {link.line})")
        addresses = self.peer_addresses(section, link, given, port, version)
        ids = _peer_ids(node_id, len(addresses), known_ids)
        doc.set(section, "peers", peers_value([Peer(i, a) for i, a in zip(ids, addresses)]),
                "--peer" if given else (f"{link.kind} (line {link.line})" if link.peer else "PLACEHOLDER"))
        if link.kind == "Multicast":
            if link.group is None:
                raise self.error(link.line, "Multicast: no IPv4_address or IPv6_address (the group)")
            group = self.address(link.group, "group")
            if not group.is_multicast:
                raise self.error(link.group.line, f"{link.group.text} is not a multicast address")
            doc.set(section, "multicast_group", str(group), f"Multicast IPv{group.version}_address (line {link.group.line})")
            if link.interface is None:
                raise self.error(link.line, "Multicast: no Interface (snep needs the sync interface for a group)")
        if link.interface is not None:
            doc.set(section, "interface", link.interface.text, f"Interface (line {link.interface.line})")
        return ids

    def endpoint(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, scope: str) -> str:
        if address.version == 4:
            return f"{address}:{port}"
        zone = f"%{scope}" if scope and address.is_link_local else ""
        return f"[{address}{zone}]:{port}"

    def peer_addresses(self, section: str, link: _Link, given: Sequence[str], port: int, version: int) -> list[str]:
        if given:
            out = []
            for text in given:
                try:
                    endpoint = config.parse_endpoint(text, port)
                except ValueError as error:
                    raise ConfigError(f"--peer {text!r}: {error}") from None
                out.append(str(endpoint))
            return out
        if link.peer is not None:
            return [self.endpoint(self.address(link.peer, "peer"), port, link.interface.text if link.interface else "")]
        placeholder = self.endpoint(ipaddress.ip_address(PLACEHOLDER_PEER[version]), port, "")
        why = ("conntrackd's multicast names no peers and snep needs them (who may speak)"
               if link.kind == "Multicast" else f"{link.kind} has no IPv{version}_Destination_Address")
        option = "--peer" if section == "sync" else "--second-link-peer"
        self.note(link.line, PLACEHOLDER, f"[{section}] peers: {value(placeholder)} stands in: {why}: put the "
                                          f"other nodes' addresses on this link there, or give {option} ADDRESS")
        return [placeholder]

    def write_kernel(self, doc: Document) -> None:
        size = doc.get("kernel", "netlink_buffer")
        most = doc.get("kernel", "netlink_buffer_max")
        if size is not None and size > (most if most is not None else config.DEFAULT_BUFFER_MAX_GROWTH):
            doc.set("kernel", "netlink_buffer_max", size, "raised to netlink_buffer")
            self.note(0, NOTE, f"netlink_buffer_max raised to netlink_buffer ({size}): the buffer grows, never shrinks")
        if doc.get("kernel", "inject_on_arrival") is None:
            self.note(0, NOTE, "no DisableExternalCache: conntrackd keeps the peers' states out of the kernel until "
                               "a commit; snep writes them as they arrive (inject_on_arrival, its default), so a "
                               "takeover writes nothing (inject_on_arrival = false for conntrackd's way)")

    def write_filter(self, doc: Document) -> None:
        if self.protocols_accept is not None or self.protocols_ignore:
            accepted = [p for _, p in self.protocols_accept] if self.protocols_accept is not None else list(Proto)
            ignored = {p for _, p in self.protocols_ignore}
            names = sorted({p.name.lower() for p in accepted if p not in ignored})
            doc.set("filter", "protocols", names, "Protocol Accept/Ignore")
            if self.protocols_ignore:
                line = self.protocols_ignore[0][0].line
                self.note(line, NOTE, "Protocol Ignore: snep lists the protocols it accepts: every one it knows but "
                                      "these (connections of protocols it does not know are not synchronized)")
        if self.ignore:
            networks = [net for _, net in self.ignore]
            for text in config.DEFAULT_IGNORE:
                default = ipaddress.ip_network(text)
                if not any(default.version == n.version and default.subnet_of(n) for n in networks):  # type: ignore[arg-type]
                    networks.append(default)
            unique = list(dict.fromkeys(networks))
            doc.set("filter", "ignore", [str(n) for n in unique], "Address Ignore, and loopback")
        if self.states_accept is not None or self.states_ignore:
            chosen = self.states_accept if self.states_accept is not None else set(_STATES.values())
            states = sorted(chosen - self.states_ignore)
            doc.set("filter", "tcp_states", [s.name for s in states], "State Accept/Ignore")


def _peer_ids(node_id: int, count: int, known: Sequence[int]) -> list[int]:
    """The peers' node ids: the main link's again for the second link (same order), else
    the smallest ids that are not this node's (conntrackd has none: 1 and 2 for a pair)."""
    ids = list(known[:count])
    candidate = 1
    while len(ids) < count:
        if candidate != node_id and candidate not in ids:
            ids.append(candidate)
        candidate += 1
    return ids


Handler = Callable[[_Converter, Statement], None]

_C = _Converter
#: path -> what carries it (or decides from its value)
HANDLERS: dict[str, Handler] = {
    "Sync": _C.sync,
    "General": _C.container,
    "IgnoreProtocol": _C.protocol,
    "IgnoreTrafficFor": _C.address_block,
    "IgnoreTrafficFor.IPv4_address": _C.filter_address,
    "IgnoreTrafficFor.IPv6_address": _C.filter_address,
    "Sync.Mode": _C.mode_,
    "Sync.Mode.PurgeTimeout": _C.purge,
    "Sync.PurgeTimeout": _C.purge,
    "Sync.Mode.DisableExternalCache": _C.external_cache,
    "Sync.CacheWriteThrough": _C.external_cache,
    "Sync.Mode.DisableInternalCache": _C.internal_cache,
    "Sync.Mode.StartupResync": _C.startup_resync,
    "Sync.Checksum": _C.checksum,
    "Sync.Replicate": _C.replicate,
    "Sync.Options": _C.container,
    "Sync.Options.TCPWindowTracking": _C.window_tracking,
    "Sync.Options.ExpectationSync": _C.expectations,
    "General.LogFile": _C.logfile,
    "General.Syslog": _C.syslog,
    "General.UNIX": _C.container,
    "General.UNIX.Path": _C.unix_path,
    "General.NetlinkBufferSize": _C.netlink_buffer,
    "General.SocketBufferSize": _C.netlink_buffer,
    "General.NetlinkBufferSizeMaxGrowth": _C.netlink_buffer_max,
    "General.SocketBufferSizeMaxGrown": _C.netlink_buffer_max,
    "General.SocketBufferSizeMaxGrowth": _C.netlink_buffer_max,
    "General.NetlinkOverrunResync": _C.overrun_resync,
    "General.NetlinkEventsReliable": _C.events_reliable,
    "General.Filter": _C.filter,
    "General.Filter.Protocol": _C.protocol,
    "General.Filter.Address": _C.address_block,
    "General.Filter.Address.IPv4_address": _C.filter_address,
    "General.Filter.Address.IPv6_address": _C.filter_address,
    "General.Filter.State": _C.state,
}
for _kind in ("Multicast", "UDP", "TCP"):
    HANDLERS |= {
        f"Sync.{_kind}": _C.link,
        f"Sync.{_kind}.IPv4_address": _C.link_address,
        f"Sync.{_kind}.IPv6_address": _C.link_address,
        f"Sync.{_kind}.Interface": _C.link_interface,
        f"Sync.{_kind}.SndSocketBuffer": _C.link_buffer,
        f"Sync.{_kind}.RcvSocketBuffer": _C.link_buffer,
        f"Sync.{_kind}.McastSndSocketBuffer": _C.link_buffer,
        f"Sync.{_kind}.McastRcvSocketBuffer": _C.link_buffer,
        f"Sync.{_kind}.Checksum": _C.checksum,
    }
HANDLERS |= {
    "Sync.Multicast.IPv4_interface": _C.link_local,
    "Sync.Multicast.Group": _C.link_port,
    "Sync.UDP.Port": _C.link_port,
    "Sync.TCP.Port": _C.link_port,
    "Sync.UDP.IPv4_Destination_Address": _C.link_peer,
    "Sync.UDP.IPv6_Destination_Address": _C.link_peer,
    "Sync.TCP.IPv4_Destination_Address": _C.link_peer,
    "Sync.TCP.IPv6_Destination_Address": _C.link_peer,
}


def import_text(text: str, source: str = "conntrackd.conf", options: Options | None = None) -> Imported:
    """conntrackd.conf text -> snep.toml text (validated) and the notes, by line."""
    converter = _Converter(source, options or Options())
    converter.walk(parse(text, source))
    toml = converter.document().render()
    try:
        cfg = config.parse(tomllib.loads(toml), f"snep.toml imported from {source}", check_files=False)
    except ConfigError as error:
        raise ConfigError(f"{source}: the imported config is not valid: {error}") from None
    return Imported(toml, cfg, converter.notes)


def import_file(path: str | Path, options: Options | None = None) -> Imported:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read: {error}") from None
    return import_text(text, str(path), options)
