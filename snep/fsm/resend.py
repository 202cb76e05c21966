"""The primary's resend queue: its epoch's STATE frames, numbered, kept for resending.

One sequence space per epoch: frames get consecutive 32-bit sequence numbers from 0
(serial arithmetic, RFC 1982). Each frame is kept built but not sealed (every
transmission seals it with a fresh counter: snep.fsm.framer) until every peer that
can still be served acknowledged it, or until the bound pushes it out (the oldest
goes first: a dead backup never grows the primary's memory). What to keep and whom
to serve is the sender's policy (snep.fsm.sender); this is the numbered store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from snep.wire.codec import Built
from snep.wire.serial import SEQ_MAX, seq_between, seq_diff, seq_ge, seq_gt

_HALF = 1 << 31


@dataclass(slots=True)
class Queued:
    """One frame of the queue: its seq, the frame (built, not sealed), when it last went
    out, and how many times it was sent again for a peer that is there (a NACK, or the
    retransmission timer while the peer is heard from)."""

    seq: int
    data: Built
    sent_at: float
    missed: int = 0


class ResendQueue:
    """The frames of the current sequence space still kept, oldest first."""

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("the resend queue's bound must be at least 1")
        self.bound = bound
        self._frames: deque[Queued] = deque()
        self.next_seq = 0  # the seq the next frame gets
        self.sent_count = 0  # frames numbered in this space (saturates below 2**31)

    def restart(self) -> None:
        """A new sequence space (a new epoch): from seq 0, nothing kept."""
        self._frames.clear()
        self.next_seq = 0
        self.sent_count = 0

    def clear(self) -> None:
        self._frames.clear()

    # --- numbering --------------------------------------------------------------------
    @property
    def newest_seq(self) -> int:
        """The newest seq numbered (control frames carry it)."""
        return (self.next_seq - 1) & SEQ_MAX

    @property
    def first(self) -> int:
        """The oldest seq still kept (``next_seq`` when nothing is)."""
        return self._frames[0].seq if self._frames else self.next_seq

    def was_sent(self, seq: int) -> bool:
        """Was ``seq`` numbered in this sequence space?"""
        return 0 < seq_diff(self.next_seq, seq) <= self.sent_count

    def holds(self, seq: int) -> bool:
        """Is the frame ``seq`` still kept?"""
        return bool(self._frames) and seq_ge(seq, self._frames[0].seq) and seq_gt(self.next_seq, seq)

    def push(self, now: float, frames: Iterable[Built]) -> int:
        """Keep ``frames``, numbered from ``next_seq`` on; how many there were."""
        append = self._frames.append
        seq = self.next_seq
        count = 0
        for data in frames:
            append(Queued(seq, data, now))
            seq = (seq + 1) & SEQ_MAX
            count += 1
        self.next_seq = seq
        self.sent_count = min(self.sent_count + count, _HALF - 1)
        return count

    # --- forgetting -------------------------------------------------------------------
    def drop_before(self, seq: int) -> None:
        """Forget the frames older than ``seq`` (everyone who needs them acknowledged them)."""
        frames = self._frames
        while frames and seq_gt(seq, frames[0].seq):
            frames.popleft()

    def drop_excess(self, needed_from: Iterable[int]) -> int:
        """Keep within the bound: the oldest frames go, acknowledged or not. Returns how
        many of them some position in ``needed_from`` still needed."""
        excess = len(self._frames) - self.bound
        if excess <= 0:
            return 0
        positions = list(needed_from)
        lost = 0
        for _ in range(excess):
            item = self._frames.popleft()
            if any(seq_ge(item.seq, position) for position in positions):
                lost += 1
        return lost

    # --- reading ----------------------------------------------------------------------
    def between(self, first: int, last: int) -> Iterator[Queued]:
        """The kept frames ``first..last`` (serial order)."""
        for item in self._frames:
            if seq_between(item.seq, first, last):
                yield item

    def span(self, first: int, last: int) -> tuple[int, int] | None:
        """The positions (``start``, ``stop``) in the queue of the kept frames of
        ``first..last``, or None when it holds none: O(1), the frames are consecutive."""
        frames = self._frames
        if not frames or seq_diff(last, first) < 0:
            return None
        oldest = frames[0].seq
        start = max(seq_diff(first, oldest), 0)
        stop = min(seq_diff(last, oldest) + 1, len(frames))
        return (start, stop) if start < stop else None

    def item(self, index: int) -> Queued:
        """The frame at ``index`` (0: the oldest kept)."""
        return self._frames[index]

    def at(self, seq: int) -> Queued | None:
        """The kept frame ``seq``, if any."""
        if not self._frames:
            return None
        index = seq_diff(seq, self._frames[0].seq)
        if 0 <= index < len(self._frames):
            return self._frames[index]
        return None

    def __iter__(self) -> Iterator[Queued]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __bool__(self) -> bool:
        return bool(self._frames)
