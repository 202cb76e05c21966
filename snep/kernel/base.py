"""The kernel interface: what snep asks of a connection-tracking table.

Two implementations share it: :class:`snep.kernel.netlink.NetlinkKernel` (the real
table, through ctnetlink) and :class:`snep.kernel.memory.MemoryKernel` (a table in
memory for the simulation and the model tests). One contract test suite runs against
both (tests/test_kernel_contract.py).

Events. ``subscribe(level)`` joins the netlink groups the notification level needs
(``Level.event_kinds``); ``read_events()`` then returns what is queued, without
blocking, and ``fileno()`` is what an asyncio loop watches (``add_reader``).
Events caused by this handle's own ``apply``/``flush``/``shorten_timeouts`` are not
returned (conntrackd's origin tracking: what a node injects is not echoed back to its
peers); they are counted in ``counters.own_filtered``. The incremental level's
coalescing is the sync sender's business, not the kernel's.

UPDATE events are partial, like the kernel's: protoinfo and sequence adjustment are
present only when they changed (``None`` otherwise) and labels only when they
changed (0 otherwise). :func:`snep.entry.complete_update` merges such an event into the
previous value of the entry; DESTROY events carry the identity (tuples, zone) and
whatever the kernel still reports (no timeout).

Overrun. When events were lost (the kernel's ENOBUFS on the event socket), the
adapter counts it (``counters.overruns``), grows its receive buffer like conntrackd
(NetlinkBufferSize doubled up to NetlinkBufferSizeMaxGrowth) and ``read_events``
raises :class:`EventOverrun` at the point of the loss (events read before it are
returned first). The owner then calls ``resync(known)``, which discards the queued
events, dumps the table and returns the events that turn ``known`` into the dump.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import NamedTuple

from snep.entry import Entry, Event, EventKind, Key, complete_update
from snep.level import Level

# The event socket's receive buffer, and how far it grows on overruns (conntrackd's
# NetlinkBufferSize / NetlinkBufferSizeMaxGrowth; conntrackd's 2 / 8 MiB defaults lost
# events at tens of thousands of new connections per second here).
DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024
DEFAULT_BUFFER_MAX_GROWTH = 64 * 1024 * 1024

#: entries per part of a dump read in parts (Kernel.dump_parts)
DUMP_PART = 4096


@dataclasses.dataclass
class Counters:
    """What went wrong or was absorbed, per kernel handle (monotonic)."""

    overruns: int = 0  # event losses detected (ENOBUFS)
    resyncs: int = 0  # dumps taken to recover from an overrun
    eexist: int = 0  # creates that found the entry (turned into updates)
    enoent: int = 0  # deletes/updates that found no entry (ignored / created)
    errors: int = 0  # operations the kernel refused, after the retry above
    decode_errors: int = 0  # messages from the kernel we could not decode
    own_filtered: int = 0  # events caused by our own requests, not returned
    buffer_size: int = 0  # current event receive buffer size (bytes)


@dataclasses.dataclass
class ApplyResult:
    """Outcome of one ``apply`` batch."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    eexist: int = 0
    enoent: int = 0
    replaced: int = 0  # entries deleted and created again (``replace``)
    errors: int = 0
    failures: list[tuple[Event, int]] = dataclasses.field(default_factory=list)  # (event, errno), first few

    MAX_FAILURES = 16

    def fail(self, event: Event, errno: int) -> None:
        self.errors += 1
        if len(self.failures) < self.MAX_FAILURES:
            self.failures.append((event, errno))


class KernelStats(NamedTuple):
    """The kernel's conntrack statistics (summed over CPUs)."""

    entries: int
    max_entries: int
    found: int = 0
    invalid: int = 0
    insert: int = 0
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    error: int = 0
    search_restart: int = 0
    clash_resolve: int = 0
    chain_toolong: int = 0


class Kernel(abc.ABC):
    """A connection-tracking table snep reads, watches and writes."""

    counters: Counters

    @abc.abstractmethod
    def dump(self) -> list[Entry]:
        """Every entry, IPv4 and IPv6, all zones."""

    def dump_parts(self) -> Iterator[list[Entry]]:
        """The dump in parts as it is read, so that a caller can do other work between
        them (the driver yields to the event loop); here: the whole dump, cut."""
        entries = self.dump()
        for start in range(0, len(entries), DUMP_PART):
            yield entries[start : start + DUMP_PART]

    @abc.abstractmethod
    def subscribe(self, level: Level) -> None:
        """Start receiving the event kinds ``level`` needs (``Level.event_kinds``)."""

    @abc.abstractmethod
    def read_events(self, max_events: int = 65536) -> list[Event]:
        """Queued events, oldest first, without blocking; EventOverrun on loss."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """A descriptor that is readable when events are queued (after subscribe)."""

    @abc.abstractmethod
    def apply(self, events: Iterable[Event], *, replace: bool = False) -> ApplyResult:
        """Write events into the table in batches.

        NEW and UPDATE make the entry exist with this value (create, or update when
        it exists: EEXIST / ENOENT are absorbed and counted); DESTROY deletes it (a
        missing entry is ENOENT, counted and ignored). With ``replace``, a NEW that
        finds the entry deletes and creates it instead of updating it, so that no
        kernel-only state (TCP window tracking) of the old entry survives: what a
        commit on takeover needs.
        """

    @abc.abstractmethod
    def flush(self, *, mark: int | None = None, mark_mask: int = 0xFFFFFFFF, zone: int | None = None) -> None:
        """Delete all entries, or those whose mark (under mask) / zone match."""

    @abc.abstractmethod
    def shorten_timeouts(self, seconds: int, keys: Collection[Key] | None = None) -> int:
        """Lower every timeout above ``seconds`` to it (``conntrackd -t``), or only those
        of the entries of ``keys``; how many changed."""

    @abc.abstractmethod
    def count(self) -> int:
        """Number of entries in the table."""

    @abc.abstractmethod
    def stats(self) -> KernelStats:
        """The kernel's conntrack statistics."""

    @abc.abstractmethod
    def _drain_events(self) -> None:
        """Discard queued events and any pending overrun (before a resync dump)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release sockets; the handle is unusable afterwards."""

    def resync(self, known: Mapping[Key, Entry]) -> list[Event]:
        """After an EventOverrun: the events that turn ``known`` into the table now."""
        self._drain_events()
        self.counters.resyncs += 1
        return diff(known, self.dump())

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_entry(entry: Entry) -> None:
    """ValueError unless the kernel's table could hold ``entry`` (field ranges, sizes).

    The netlink encoder refuses the same values (it cannot express them); the memory
    kernel calls this so that both refuse alike.
    """
    for t in (entry.orig, entry.reply):
        size = t.family.address_size
        if len(t.src) != size or len(t.dst) != size:
            raise ValueError(f"address size does not match {t.family.name}")
        if not (0 <= t.proto <= 0xFF and 0 <= t.sport <= 0xFFFF and 0 <= t.dport <= 0xFFFF):
            raise ValueError("protocol or port out of range")
    if entry.reply.family != entry.orig.family or entry.reply.proto != entry.orig.proto:
        raise ValueError("reply tuple of another family or protocol")
    if not 0 <= entry.zone <= 0xFFFF:
        raise ValueError("zone out of range")
    for value in (entry.status, entry.timeout, entry.mark):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError("status, timeout or mark out of range")
    if not 0 <= entry.labels < 1 << 128:
        raise ValueError("labels out of range")
    entry.helper.encode("ascii")


def same_state(a: Entry, b: Entry) -> bool:
    """Equal except for the timeout, which counts down by itself."""
    return a._replace(timeout=0) == b._replace(timeout=0)


def diff(known: Mapping[Key, Entry], current: Iterable[Entry]) -> list[Event]:
    """Events that turn ``known`` into ``current``: NEW, UPDATE (state changed), DESTROY."""
    events: list[Event] = []
    seen: set[Key] = set()
    for entry in current:
        key = entry.key
        seen.add(key)
        old = known.get(key)
        if old is None:
            events.append(Event(EventKind.NEW, entry))
        elif not same_state(old, entry):
            events.append(Event(EventKind.UPDATE, entry))
    for key, old in known.items():
        if key not in seen:
            events.append(Event(EventKind.DESTROY, old))
    return events


def apply_to(cache: dict[Key, Entry], events: Iterable[Event]) -> None:
    """Fold events into a key -> entry map (how a cache follows the kernel)."""
    for kind, entry in events:
        if kind is EventKind.DESTROY:
            cache.pop(entry.key, None)
        elif kind is EventKind.UPDATE:
            cache[entry.key] = complete_update(cache.get(entry.key), entry)
        else:
            cache[entry.key] = entry
