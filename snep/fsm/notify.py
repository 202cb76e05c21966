"""What a primary tells its peers: the filter, then the notification level.

The :class:`Filter` is conntrackd's ``Filter`` section: connections of other L4
protocols, of ignored addresses or prefixes, or (for TCP) in states not accepted are
never sent. It is applied before anything is sent, bulk dumps included.

A DESTROY passes the TCP-state filter: protocol and addresses never change during a
connection's life, but its state does, and a connection that was sent while
ESTABLISHED must not stay behind on the peers because it died in CLOSE.

The :class:`Notifier` applies the :class:`~snep.level.Level`: strong and weak pass
events on at once (weak only NEW and DESTROY); incremental keeps the newest event of
each connection in a dirty set and hands the set over once per period.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from snep.entry import Entry, Event, EventKind, Proto, TcpInfo, TcpState
from snep.errors import ConfigError
from snep.level import Level

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Filter:
    """Which connections are synchronized (None: no restriction of that kind)."""

    protocols: frozenset[int] | None = None
    ignore: tuple[Network, ...] = ()
    tcp_states: frozenset[TcpState] | None = None
    # ignore, compiled for the per-event check: address size -> ((prefix length,
    # network numbers), ...); ipaddress containment cost ~40 us per bulk entry
    _prefixes: dict[int, tuple[tuple[int, frozenset[int]], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # address -> ignored?, remembered: a dump checks two addresses per entry, and
    # firewalls see the same addresses again and again (bounded: emptied when full)
    _seen: dict[bytes, bool] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        tables: dict[int, dict[int, set[int]]] = {4: {}, 16: {}}
        for network in self.ignore:
            size = 4 if network.version == 4 else 16
            tables[size].setdefault(network.prefixlen, set()).add(int(network.network_address))
        object.__setattr__(
            self,
            "_prefixes",
            {size: tuple((plen, frozenset(nets)) for plen, nets in sorted(t.items())) for size, t in tables.items()},
        )

    @classmethod
    def build(
        cls,
        protocols: Iterable[int | str] | None = None,
        ignore: Iterable[str] = (),
        tcp_states: Iterable[TcpState | str] | None = None,
    ) -> Filter:
        """From readable values: ``Filter.build(["tcp", "udp"], ["10.0.0.0/8"], ["ESTABLISHED"])``.

        Bad values raise :class:`~snep.errors.ConfigError` naming the value.
        """
        protos = None
        if protocols is not None:
            protos = frozenset(_protocol(p) for p in protocols)
        states = None
        if tcp_states is not None:
            states = frozenset(_tcp_state(s) for s in tcp_states)
        networks = []
        for text in ignore:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ConfigError(f"filter: {text!r} is not an address or prefix") from None
        return cls(protos, tuple(networks), states)

    @property
    def passes_everything(self) -> bool:
        return self.protocols is None and not self.ignore and self.tcp_states is None

    def accepts(self, entry: Entry, kind: EventKind = EventKind.UPDATE) -> bool:
        orig = entry.orig
        if self.protocols is not None and orig.proto not in self.protocols:
            return False
        if self.ignore:
            seen = self._seen
            src = seen.get(orig.src)
            if src is None:
                src = self._remember(orig.src)
            if src:
                return False
            dst = seen.get(orig.dst)
            if dst is None:
                dst = self._remember(orig.dst)
            if dst:
                return False
        if (
            self.tcp_states is not None
            and kind is not EventKind.DESTROY
            and orig.proto == Proto.TCP
            and isinstance(entry.protoinfo, TcpInfo)
            and entry.protoinfo.state not in self.tcp_states
        ):
            return False
        return True


    def _remember(self, address: bytes) -> bool:
        seen = self._seen
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        ignored = seen[address] = _ignored(address, self._prefixes)
        return ignored


_SEEN_MAX = 1 << 16  # remembered addresses (a few MB at most)


def _protocol(value: int | str) -> int:
    if isinstance(value, str):
        try:
            return int(Proto[value.upper()])
        except KeyError:
            known = ", ".join(p.name.lower() for p in Proto)
            raise ConfigError(f"filter: unknown protocol {value!r} (known: {known})") from None
    if not 0 <= int(value) <= 255:
        raise ConfigError(f"filter: protocol number {value} is not 0..255")
    return int(value)


def _tcp_state(value: TcpState | str) -> TcpState:
    try:
        return TcpState[value.upper()] if isinstance(value, str) else TcpState(value)
    except (KeyError, ValueError):
        known = ", ".join(s.name for s in TcpState)
        raise ConfigError(f"filter: unknown TCP state {value!r} (known: {known})") from None


def _ignored(packed: bytes, prefixes: dict[int, tuple[tuple[int, frozenset[int]], ...]]) -> bool:
    bits = len(packed) * 8
    number = int.from_bytes(packed, "big")
    for plen, networks in prefixes.get(len(packed), ()):
        if (number >> (bits - plen)) << (bits - plen) in networks:
            return True
    return False


@dataclass
class Notifier:
    """Level and filter between kernel events and the STATE stream."""

    level: Level = Level.STRONG
    incremental_period: float = 1.0
    filter: Filter = field(default_factory=Filter)
    dirty: dict[object, Event] = field(default_factory=dict)
    next_flush: float | None = None
    filtered: int = 0  # events the filter or the level kept back

    def on_event(self, now: float, event: Event) -> list[Event]:
        """The events to send now (incremental: none; the event waits for the flush)."""
        return self.on_events(now, [event])

    def on_events(self, now: float, events: list[Event]) -> list[Event]:
        """The events of one kernel read to send now, in order (incremental: none; they
        wait for the flush). The very list when the level and the filter keep nothing
        back; otherwise one pass, no call per event but the filter's."""
        level = self.level
        if level is Level.STRONG and self.filter.passes_everything:
            return events
        kinds = level.event_kinds
        accepts = self.filter.accepts
        passed = [event for event in events if event[0] in kinds and accepts(event[1], event[0])]
        self.filtered += len(events) - len(passed)
        if not level.coalesces:
            return passed
        dirty = self.dirty
        for event in passed:
            dirty[event[1].key] = event  # the newest state of a connection wins
        if passed and self.next_flush is None:
            self.next_flush = now + self.incremental_period
        return []

    def flush(self, now: float) -> list[Event]:
        """Hand over the dirty set (incremental level), oldest change first."""
        events = list(self.dirty.values())
        self.dirty.clear()
        self.next_flush = None
        return events

    def reset(self) -> None:
        self.dirty.clear()
        self.next_flush = None
