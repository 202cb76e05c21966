"""A bulk dump of the internal cache, in portions that fill frames to the MTU.

A dump snapshots the cache's keys when its first frame (BULK_START) goes out, and
reads each entry when its turn comes: a connection changed since is sent as it is
now, one destroyed since is skipped (the spec's SendBulk). Its messages are the
sender's records (snep.fsm.records: bytes kept from the stream, encoded once
otherwise). How many messages a frame
holds is estimated from the sizes encoded so far, so that the window a dump may use
(snep.fsm.sender paces it) is spent on full frames, not on frames of one message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from snep.entry import Key
from snep.wire.codec import Built

#: bytes of a typical STATE message (TCP over IPv4), before anything was measured
TYPICAL_MESSAGE = 48


class BulkDump:
    """The keys a running dump has yet to send, and its frame packing estimate."""

    def __init__(self, payload: int) -> None:
        self.payload = payload  # bytes of messages a full frame holds
        self.per_frame = max(1, payload // TYPICAL_MESSAGE)
        self._keys: list[Key] = []
        self._next = 0  # (the keys before it are sent: a list read in slices, not a key at a time)

    def snapshot(self, keys: Iterable[Key], payload: int | None = None) -> None:
        """The dump starts (its BULK_START goes out now): these keys will be sent, in
        frames of ``payload`` bytes of messages (when it changes: sync.bulk_mtu)."""
        self._keys = list(keys)
        self._next = 0
        if payload is not None and payload != self.payload:
            self.payload = payload
            self.per_frame = max(1, payload // TYPICAL_MESSAGE)

    def clear(self) -> None:
        self._keys = []
        self._next = 0

    @property
    def todo(self) -> tuple[Key, ...]:
        """The keys not sent yet (the spec's ``todo``)."""
        return tuple(self._keys[self._next :])

    @property
    def done(self) -> bool:
        return self._next >= len(self._keys)

    def take(
        self, frames: int, messages: Callable[[list[Key]], tuple[list[bytes], list[Key]]]
    ) -> tuple[list[bytes], list[Key]]:
        """The next messages for about ``frames`` full frames, and their keys (to give
        back what did not fit): ``messages`` gives those of a slice of keys (the NEW
        messages of the entries still present that the filter accepts)."""
        keys = self._keys
        want = frames * self.per_frame
        found: list[bytes] = []
        taken: list[Key] = []
        while self._next < len(keys) and len(found) < want:
            start = self._next
            self._next = min(len(keys), start + want - len(found))
            more, keys_of = messages(keys[start : self._next])
            found += more
            taken += keys_of
        return found, taken

    def give_back(self, keys: list[Key]) -> None:
        """Keys taken that did not fit: they go first next time."""
        self._keys[self._next : self._next] = keys

    def learn(self, frames: list[Built], messages: int) -> None:
        """Messages per full frame, from the average message size of what was built."""
        if messages < 8:
            return
        payload = sum(len(frame.payload) for frame in frames)
        if payload > 0:
            self.per_frame = max(1, self.payload * messages // payload)
