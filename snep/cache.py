"""The two caches a node keeps, keyed by the connection's identity (``Entry.key``).

- internal: what the node's own kernel holds; what a primary tells the others
  (:class:`Cache`: entries).
- external: what the primary told this node; what it commits to its kernel when it
  takes over (:class:`RecordCache`: each connection's STATE message as it came,
  decoded only where an entry is needed).

The external cache also does mark-and-sweep for bulk dumps: at BULK_START the entries
the dump answers for are marked, every STATE of that stream applied afterwards unmarks
its connection, and at BULK_END the entries still marked (gone on the primary) are
removed. The cache is never cleared up front, so a primary that dies in the middle of
a dump costs nothing acknowledged.

Owners. Each external entry remembers the stream that last wrote it: the sender's
epoch (term, node id). A dump of stream S answers for (marks, and may sweep) the
entries of S's sender, of any of its epochs, and those of epochs older than S, of any
sender (``swept_by``): a newer epoch's dump is the whole truth, what an older primary
told us and the new one does not carry is gone. Entries of another sender's stream of
S's epoch or a newer one are not S's to sweep (several live streams: active-active).
With one primary at a time a node applies only the newest epoch's stream, so every
other owner is older and a dump sweeps whatever it does not carry, as the spec's
mark-and-sweep does (docs/architecture.md, "Resync").

A cache may have a ``limit``: an event that would add an entry beyond it is refused
(the external cache's ``max_entries``, like conntrackd's HashLimit: what a peer sends
cannot grow a node's memory without bound); updates and removals always go through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, TypeVar

from snep.entry import Entry, Event, EventKind, Key
from snep.wire.codec import PLAIN_KEY, decode_records, encode_state, key_of_record_key, record_key

_T = TypeVar("_T")

#: the stream that wrote an entry: its sender's epoch, (term, node id) as
#: snep.fsm.effects.Epoch; None: no stream (an entry put there directly)
Owner = tuple[int, int]


def swept_by(owner: Owner | None, stream: Owner) -> bool:
    """Does a dump of ``stream`` answer for an entry ``owner`` wrote? Yes for its
    sender's own entries and for older epochs' (superseded: the dump is the newer
    truth); no for another sender's stream of the same or a newer epoch."""
    return owner is None or owner[1] == stream[1] or owner < stream


class Cache:
    """Entries by key; applying events is create-or-update and delete-if-present."""

    def __init__(self, entries: Iterable[Entry] = (), *, limit: int | None = None) -> None:
        self._entries: dict[Key, Entry] = {entry.key: entry for entry in entries}
        #: owners of the entries whose owner is not ``_common`` (None: no stream)
        self._owners: dict[Key, Owner | None] = {}
        #: the owner of every entry not in ``_owners``: the stream that wrote into the
        #: empty cache, so that one stream's dump costs no owner per entry
        self._common: Owner | None = None
        self._marks: dict[Owner, set[Key]] = {}  # by the stream whose dump is under way
        self.limit = limit
        self.missing_deletes = 0  # DESTROY of a connection we did not have
        #: where the entries a replace or a clear lets go are put (None: freed at once);
        #: the daemon frees them a part at a time (hundreds of thousands of entries take
        #: 50 ms to free, and its control socket answers between the parts)
        self.retire: Callable[[dict[Key, Entry]], None] | None = None

    def apply(self, event: Event, owner: Owner | None = None) -> bool:
        """Apply one event (``owner``: the stream it came in); False when it was refused
        (a new entry beyond the limit)."""
        return not self.apply_all((event,), owner)

    def apply_all(self, events: Iterable[Event], owner: Owner | None = None) -> list[Event]:
        """``apply`` for each event in order (a frame's worth, without a call per entry);
        the events refused (new entries beyond the limit; normally none)."""
        events = events if isinstance(events, (list, tuple)) else list(events)
        destroy = EventKind.DESTROY
        # (entry.key, and the entry, or None: removed)
        return self._apply(events, [((e[0], e[2]), None if k is destroy else e) for k, e in events], owner)

    def _apply(self, items: Sequence[_T], changes: list[tuple[Any, Any]], owner: Owner | None) -> list[_T]:
        """The one rule of applying, for either representation: ``changes[i]`` is what
        ``items[i]`` does (its key, and the value to hold or None: removed); the items
        refused (new entries beyond the limit)."""
        entries = self._entries
        owners = self._owners
        if not entries:
            self._common = owner  # (nothing to own yet: the owner of what follows)
        common = self._common
        marked = self._marks.get(owner) if owner is not None else None
        limit = self.limit
        refused: list[_T] = []
        for item, (key, value) in zip(items, changes):
            if marked is not None:
                marked.discard(key)
            if value is None:
                if entries.pop(key, None) is None:
                    self.missing_deletes += 1
                elif owners:
                    owners.pop(key, None)
            elif limit is not None and len(entries) >= limit and key not in entries:
                refused.append(item)
            else:
                entries[key] = value
                if owner != common:
                    owners[key] = owner
                elif owners:
                    owners.pop(key, None)
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
        self._owners = {}
        self._common = None
        self._marks = {}

    def clear(self) -> None:
        if self.retire is not None:
            self.retire(self._entries)
            self._entries = {}
        else:
            self._entries.clear()
        self._owners.clear()
        self._common = None
        self._marks.clear()

    # mark-and-sweep (per stream) -------------------------------------------------
    def mark(self, stream: Owner) -> None:
        """BULK_START of ``stream``: mark the entries its dump answers for (``swept_by``)."""
        kept = self._kept(stream)
        if kept:
            owner = self._owners.get
            common = self._common
            self._marks[stream] = {key for key in self._entries if owner(key, common) not in kept}
        else:  # (one primary at a time: every entry)
            self._marks[stream] = set(self._entries)

    def sweep(self, stream: Owner) -> list[Entry]:
        """BULK_END of ``stream``: remove (and return) the entries still marked that
        the dump still answers for (another stream may have written one since); end
        the marking."""
        entries = self._entries
        owners = self._owners
        common = self._common
        kept = self._kept(stream)
        removed: list[Any] = []
        for key in self._marks.pop(stream, ()):
            if key in entries and not (kept and owners.get(key, common) in kept):
                removed.append(entries.pop(key))
                owners.pop(key, None)
        return self._entries_of(removed)

    def _entries_of(self, values: list[Any]) -> list[Entry]:
        """Held values as entries (here they are)."""
        return values

    def _kept(self, stream: Owner) -> set[Owner]:
        """The owners whose entries ``stream``'s dump does not answer for (the streams
        in the cache are few: one per epoch a peer streamed in)."""
        owners = set(self._owners.values())
        if len(self._entries) > len(self._owners):
            owners.add(self._common)
        return {owner for owner in owners if not swept_by(owner, stream)}

    def unmark(self, stream: Owner) -> None:
        """Abandon ``stream``'s marking without sweeping (its dump will not complete)."""
        self._marks.pop(stream, None)

    def marked(self, stream: Owner) -> frozenset[Key]:
        """What ``stream``'s dump has marked and not yet refreshed (empty: no marking)."""
        return frozenset(self._marks.get(stream, ()))

    # reading --------------------------------------------------------------------
    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def getter(self) -> Callable[[Key], Entry | None]:
        """``get`` without a call of its own, for a loop over many keys (good until the
        cache is next replaced or cleared: take it again each time)."""
        return self._entries.get

    def owner(self, key: Key) -> Owner | None:
        """The stream that last wrote the entry (None: none, or no such entry)."""
        return self._owners.get(key, self._common) if key in self._entries else None

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


class RecordCache(Cache):
    """The external cache as records: each connection's STATE message as it arrived
    (bytes), by its ``record_key`` (bytes); decoded into entries only where they are
    needed (a commit, injection, the operator's view, the tests).

    A backup takes a resync of hundreds of thousands of entries: as records, a frame of
    plain messages is checked and cut by one regular expression (snep.wire.codec's
    ``split_plain``) and stored by a few dict operations, with no object per field and
    nothing the garbage collector tracks (bytes are not). Keys and values are bytes
    inside; every method that takes or gives a key or an entry speaks ``Entry.key``
    and :class:`Entry`, as :class:`Cache` does. Mark-and-sweep and owners are Cache's.
    """

    _entries: dict[bytes, bytes]  # type: ignore[assignment]

    def __init__(self, entries: Iterable[Entry] = (), *, limit: int | None = None) -> None:
        super().__init__(limit=limit)
        self.replace(entries)

    def apply_all(self, events: Iterable[Event], owner: Owner | None = None) -> list[Event]:
        """Events decoded the general way (or put here directly): each kept as its record."""
        events = events if isinstance(events, (list, tuple)) else list(events)
        destroy = EventKind.DESTROY
        changes = [
            (record_key(event[1][0], event[1][2]), None if event[0] is destroy else encode_state(event)) for event in events
        ]
        return self._apply(events, changes, owner)

    def apply_records(self, records: Sequence[bytes], owner: Owner) -> list[bytes]:
        """Plain NEW and UPDATE records (``split_plain``'s) that ``owner``'s stream
        brought, in order; the records refused (new entries beyond the limit)."""
        where = PLAIN_KEY
        keys = [record[where] for record in records]
        entries = self._entries
        if self.limit is not None and len(entries) + len(keys) > self.limit:
            return self._apply(records, list(zip(keys, records)), owner)  # (one at a time)
        if not entries:
            self._common = owner  # (as _apply)
        entries.update(zip(keys, records))  # (in order: a later one of a key wins)
        owners = self._owners
        if owner != self._common:
            owners.update(zip(keys, repeat(owner)))
        elif owners:
            for key in keys:
                owners.pop(key, None)
        marked = self._marks.get(owner)
        if marked:
            marked.difference_update(keys)
        return []

    def replace(self, entries: Iterable[Entry] | dict[Key, Entry]) -> None:
        """Become exactly ``entries`` (each kept as its NEW record)."""
        values = entries.values() if isinstance(entries, dict) else entries
        new = EventKind.NEW
        super().replace({record_key(e[0], e[2]): encode_state(Event(new, e)) for e in values})

    def _entries_of(self, values: list[Any]) -> list[Entry]:
        return [event[1] for event in decode_records(values)]

    def records(self) -> dict[bytes, bytes]:
        """The records by key (a copy)."""
        return dict(self._entries)

    def messages(self) -> tuple[bytes, ...]:
        """Every record (a commit's)."""
        return tuple(self._entries.values())

    def detach(self) -> dict[bytes, bytes]:
        """The records by key, taken away: the cache is empty afterwards (``clear``
        without a copy or a retirement: the caller holds them now)."""
        records = self._entries
        self._entries = {}
        self.clear()
        return records

    # reading (in entries and keys) ---------------------------------------------------
    def _record_key(self, key: object) -> bytes | None:
        try:
            orig, zone = key  # type: ignore[misc]
            return record_key(orig, zone)
        except (TypeError, ValueError):
            return None

    def getter(self) -> Callable[[Key], Entry | None]:
        return self.get

    def get(self, key: Key) -> Entry | None:
        record = self._entries.get(self._record_key(key))  # type: ignore[arg-type]
        return None if record is None else self._entries_of([record])[0]

    def owner(self, key: Key) -> Owner | None:
        return super().owner(self._record_key(key))  # type: ignore[arg-type]

    def marked(self, stream: Owner) -> frozenset[Key]:
        return frozenset(map(key_of_record_key, self._marks.get(stream, ())))

    def keys(self) -> list[Key]:
        return list(map(key_of_record_key, self._entries))

    def entries(self) -> list[Entry]:
        return self._entries_of(list(self._entries.values()))

    def __contains__(self, key: object) -> bool:
        return self._record_key(key) in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def as_dict(self) -> dict[Key, Entry]:
        return {(entry[0], entry[2]): entry for entry in self.entries()}
