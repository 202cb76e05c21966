"""Active-active's groups over one conntrack table: each group instance sees its own part.

In active-active (docs/active-active.md) a node runs one primary/backup instance per
VRRP group, and a connection belongs to the group its conntrack mark names
(``mark & mark_mask``): the firewall's rules set it on the connection's first packet, and
it travels with the entry to every peer. The instances share the kernel: one event
socket, one command socket. :class:`Groups` reads the events once and hands each to its
group's :class:`GroupView`; a view is what the group's driver takes for its kernel
(snep.fsm.driver.KernelTable): its events, its dumps and its sweeps hold only the
group's entries, so that one group's resync never touches another's connections.
Entries whose mark names no group are not synchronized (counted: ``ungrouped``).

Writes pass through unchanged: a group instance writes only what its own stream
carries (its owner's entries, with their mark). An overrun of the shared event socket
(events lost) takes one dump for every group: each view then answers its driver's
``resync`` from its part of that dump.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from snep.entry import Entry, Event, EventKind, Key
from snep.errors import EventOverrun
from snep.kernel.base import Kernel, diff

#: events read from the shared socket per wake-up at most (the driver's READ_MAX)
READ_MAX = 4096


@dataclass
class GroupsCounters:
    ungrouped: int = 0  # events of connections whose mark names no group (not synchronized)
    overruns: int = 0  # losses of the shared event socket (each: one dump for every group)


class GroupView:
    """One group's part of the shared table, as its driver's kernel."""

    def __init__(self, kernel: Kernel, mark: int, mark_mask: int) -> None:
        self.kernel = kernel
        self.mark = mark
        self.mark_mask = mark_mask
        self.pending: list[Event] = []  # its events, read from the shared socket
        self._after_overrun: list[Entry] | None = None  # its part of the dump after a loss
        # writes pass through (the netlink kernel also writes records as they came)
        self.apply = kernel.apply
        if hasattr(kernel, "apply_records"):
            self.apply_records = kernel.apply_records

    def owns(self, entry: Entry) -> bool:
        return entry.mark & self.mark_mask == self.mark

    def mine(self, entries: Iterable[Entry]) -> list[Entry]:
        mask, mark = self.mark_mask, self.mark
        return [e for e in entries if e.mark & mask == mark]

    # --- events

    def read_events(self, max_events: int = READ_MAX) -> list[Event]:
        """The group's events read so far; then the overrun, if there was one."""
        if self.pending:
            events, self.pending = self.pending[:max_events], self.pending[max_events:]
            return events
        if self._after_overrun is not None:
            raise EventOverrun("kernel events lost (shared event socket)")
        return []

    def resync(self, known: Mapping[Key, Entry]) -> list[Event]:
        """After an overrun: the events that turn ``known`` into the group's part of the dump."""
        entries = self._after_overrun
        if entries is None:  # (asked without an overrun: a dump of its own)
            entries = self.mine(self.kernel.dump())
        self._after_overrun = None
        return diff(known, entries)

    def overrun(self, entries: list[Entry]) -> None:
        """The shared socket lost events: what is queued is void, this is the table now."""
        self.pending = []
        self._after_overrun = entries

    # --- dumps and writes

    def dump(self) -> list[Entry]:
        return self.mine(self.kernel.dump())

    def dump_parts(self) -> Iterator[list[Entry]]:
        for part in self.kernel.dump_parts():
            mine = self.mine(part)
            if mine:
                yield mine

    def shorten_timeouts(self, seconds: int, keys: Collection[Key] | None = None) -> int:
        if keys is None:  # every entry: the group's only
            keys = [e.key for e in self.dump()]
        return self.kernel.shorten_timeouts(seconds, keys)


class Groups:
    """The shared event socket, read once and dispatched by mark to the group views."""

    def __init__(self, kernel: Kernel, marks: Iterable[int], mark_mask: int) -> None:
        self.kernel = kernel
        self.mark_mask = mark_mask
        self.views = {mark: GroupView(kernel, mark, mark_mask) for mark in marks}
        self.counters = GroupsCounters()

    def read(self, max_events: int = READ_MAX) -> tuple[int, list[GroupView]]:
        """Read what the kernel has queued (up to ``max_events``): how many events, and
        the views that got something (events, or the news of an overrun), in group order."""
        views, mask = self.views, self.mark_mask
        try:
            events = self.kernel.read_events(max_events)
        except EventOverrun:
            self.counters.overruns += 1
            dump = [event[1] for event in self.kernel.resync({}) if event[0] is EventKind.NEW]
            for view in views.values():
                view.overrun(view.mine(dump))
            return len(dump), list(views.values())
        touched: set[int] = set()
        for event in events:
            group = views.get(event[1].mark & mask)
            if group is None:
                self.counters.ungrouped += 1
                continue
            group.pending.append(event)
            touched.add(group.mark)
        return len(events), [views[mark] for mark in views if mark in touched]
