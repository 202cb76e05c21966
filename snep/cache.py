"""The two caches a node keeps, keyed by the connection's identity (``Entry.key``).

- internal: what the node's own kernel holds; what a primary tells the others.
- external: what the primary told this node; what it commits to its kernel when it
  takes over.

The external cache also does mark-and-sweep for bulk dumps: at BULK_START every entry
is marked, every STATE applied afterwards unmarks its connection, and at BULK_END the
entries still marked (gone on the primary) are removed. The cache is never cleared up
front, so a primary that dies in the middle of a dump costs nothing acknowledged.

A cache may have a ``limit``: an event that would add an entry beyond it is refused
(the external cache's ``max_entries``, like conntrackd's HashLimit: what a peer sends
cannot grow a node's memory without bound); updates and removals always go through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from snep.entry import Entry, Event, EventKind, Key


class Cache:
    """Entries by key; applying events is create-or-update and delete-if-present."""

    def __init__(self, entries: Iterable[Entry] = (), *, limit: int | None = None) -> None:
        self._entries: dict[Key, Entry] = {entry.key: entry for entry in entries}
        self._marked: set[Key] | None = None
        self.limit = limit
        self.missing_deletes = 0  # DESTROY of a connection we did not have
        #: where the entries a replace or a clear lets go are put (None: freed at once);
        #: the daemon frees them a part at a time (hundreds of thousands of entries take
        #: 50 ms to free, and its control socket answers between the parts)
        self.retire: Callable[[dict[Key, Entry]], None] | None = None

    def apply(self, event: Event) -> bool:
        """Apply one event; False when it was refused (a new entry beyond the limit)."""
        key = event.entry.key
        if self._marked is not None:
            self._marked.discard(key)
        if event.kind is EventKind.DESTROY:
            if self._entries.pop(key, None) is None:
                self.missing_deletes += 1
        elif self.limit is not None and len(self._entries) >= self.limit and key not in self._entries:
            return False
        else:
            self._entries[key] = event.entry
        return True

    def apply_all(self, events: Iterable[Event]) -> list[Event]:
        """``apply`` for each event in order (a frame's worth, without a call per entry);
        the events refused (new entries beyond the limit; normally none)."""
        entries = self._entries
        marked = self._marked
        destroy = EventKind.DESTROY
        limit = self.limit
        refused: list[Event] = []
        for event in events:
            kind, entry = event
            key = (entry[0], entry[2])  # entry.key: (orig, zone)
            if marked is not None:
                marked.discard(key)
            if kind is destroy:
                if entries.pop(key, None) is None:
                    self.missing_deletes += 1
            elif limit is not None and len(entries) >= limit and key not in entries:
                refused.append(event)
            else:
                entries[key] = entry
        return refused

    def replace(self, entries: Iterable[Entry] | dict[Key, Entry]) -> None:
        """Become exactly ``entries`` (a kernel dump); a dict of them by key is taken as
        it is (the driver builds it while it reads the dump, a part at a time)."""
        old = self._entries
        if isinstance(entries, dict):
            self._entries = entries
        else:
            self._entries = {(entry[0], entry[2]): entry for entry in entries}  # (entry.key, without a call each)
        if self.retire is not None:
            self.retire(old)
        self._marked = None

    def clear(self) -> None:
        if self.retire is not None:
            self.retire(self._entries)
            self._entries = {}
        else:
            self._entries.clear()
        self._marked = None

    # mark-and-sweep -------------------------------------------------------------
    def mark(self) -> None:
        self._marked = set(self._entries)

    @property
    def marking(self) -> bool:
        return self._marked is not None

    def sweep(self) -> list[Entry]:
        """Remove (and return) the entries still marked; end the marking."""
        removed = [self._entries.pop(key) for key in self._marked or () if key in self._entries]
        self._marked = None
        return removed

    def unmark(self) -> None:
        """Abandon a marking without sweeping (the dump will not complete)."""
        self._marked = None

    # reading --------------------------------------------------------------------
    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def keys(self) -> list[Key]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def as_dict(self) -> dict[Key, Entry]:
        return dict(self._entries)
