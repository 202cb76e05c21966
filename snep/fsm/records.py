"""The primary's STATE records: each entry's message, encoded once and kept as bytes.

The primary encodes an entry when its kernel event streams out and keeps the bytes
(by the connection's key, with the entry they encode), so that a bulk dump joins
stored records instead of encoding every entry again (the dump of a large table is
what a restarted backup waits for). A record counts only for the very entry it was
made of (``is``: entries are immutable values, so its bytes stay right); an entry
changed since is encoded afresh at its turn and kept. Records are of entries the
filter accepted: a new filter drops them all. Bounded by the internal cache: a
DESTROY drops its connection's record, and a kernel dump (whose entries are new
values) sets them all aside (``renew``): the next dump takes back the record of an
entry that changed in nothing but its timeout (which counts down by itself), the
timeout rewritten in the bytes (snep.wire.codec's ``with_timeout``), and the rest go
at the next renewal. So a takeover's or an operator's kernel dump does not make the
next dump encode every entry again.
"""

from __future__ import annotations

from collections.abc import Callable

from snep.entry import Entry, Event, EventKind, Key
from snep.wire.codec import encode_state, with_timeout

_event = tuple.__new__  # Event without the NamedTuple __new__: one per record made
_NEW = EventKind.NEW
_DESTROY = EventKind.DESTROY
_NEW_KIND = bytes((int(EventKind.NEW),))  # a message's first byte is its event kind


class Records:
    """Encoded NEW messages by key, each with the entry it encodes."""

    def __init__(self) -> None:
        self._records: dict[Key, tuple[Entry, bytes]] = {}
        #: the records of the entries before the last kernel dump (``renew``)
        self._aside: dict[Key, tuple[Entry, bytes]] = {}
        #: where the records a clear lets go are put (None: freed at once; as Cache.retire)
        self.retire: Callable[[dict[Key, tuple[Entry, bytes]]], None] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def _let_go(self, records: dict[Key, tuple[Entry, bytes]]) -> None:
        if self.retire is not None and records:
            self.retire(records)

    def clear(self) -> None:
        self._let_go(self._aside)
        self._aside = {}
        if self.retire is not None and self._records:
            self.retire(self._records)
            self._records = {}
        else:
            self._records.clear()

    def renew(self) -> None:
        """The internal cache's entries are new values (a kernel dump): every record is
        set aside, for the dumps to take back where only the timeout changed; what was
        set aside before goes."""
        self._let_go(self._aside)
        self._aside = self._records
        self._records = {}

    def stream(self, event: Event) -> bytes:
        """The message of an event that streams out now; its entry's record is kept."""
        data = encode_state(event)
        kind, entry = event
        key = (entry[0], entry[2])  # entry.key: (orig, zone)
        if self._aside:
            self._aside.pop(key, None)
        if kind is _DESTROY:
            self._records.pop(key, None)
        else:
            self._records[key] = (entry, data if kind is _NEW else _NEW_KIND + data[1:])
        return data

    def forget(self, key: Key) -> None:
        """The connection is gone (a DESTROY the filter or the level kept back)."""
        self._records.pop(key, None)
        if self._aside:
            self._aside.pop(key, None)

    def dump_messages(
        self, keys: list[Key], get: Callable[[Key], Entry | None], accepts: Callable[[Entry], bool]
    ) -> tuple[list[bytes], list[Key]]:
        """:meth:`dump_message` of the entries of ``keys`` still present (``get``: the
        internal cache's), and the keys of the messages: the dump's join of records,
        one loop without a call per record."""
        messages: list[bytes] = []
        taken: list[Key] = []
        records = self._records
        aside = self._aside
        for key, entry, kept in zip(keys, map(get, keys), map(records.get, keys)):
            if entry is None:
                continue
            if kept is not None and kept[0] is entry:
                messages.append(kept[1])
            else:
                old = aside.pop(key, None) if aside else None
                if old is not None and _same_but_timeout(old[0], entry):
                    data = old[1] if old[0][4] == entry[4] else with_timeout(old[1], entry[4])
                    records[key] = (entry, data)
                else:
                    data = self._encode(key, entry, accepts)
                    if data is None:
                        continue
                messages.append(data)
            taken.append(key)
        return messages, taken

    def dump_message(self, key: Key, entry: Entry, accepts: Callable[[Entry], bool]) -> bytes | None:
        """The NEW message of ``entry`` for a dump: its record, or encoded and kept now;
        None when the filter refuses it."""
        messages, _ = self.dump_messages([key], {key: entry}.get, accepts)
        return messages[0] if messages else None

    def _encode(self, key: Key, entry: Entry, accepts: Callable[[Entry], bool]) -> bytes | None:
        """Encoded and kept now; None when the filter refuses it."""
        if not accepts(entry):
            return None
        data = encode_state(_event(Event, (_NEW, entry)))
        self._records[key] = (entry, data)
        return data


def _same_but_timeout(was: Entry, entry: Entry) -> bool:
    """Equal in every field but the timeout (field 4), which counts down by itself."""
    return (
        was[3] == entry[3] and was[6] == entry[6] and was[0] == entry[0] and was[1] == entry[1]
        and was[2] == entry[2] and was[5] == entry[5] and was[7] == entry[7] and was[8] == entry[8]
        and was[9] == entry[9] and was[10] == entry[10]
    )
