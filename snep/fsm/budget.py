"""Token buckets: how much work a peer may cause, per kind of work.

A peer's NACKs make retransmissions and its RESYNC_REQUESTs make dumps: work that
costs this node far more than the frame that asked for it. Each peer gets a bucket
per kind: it holds at most ``capacity`` tokens and gains ``rate`` per second; a unit
of work takes a token, and none is done while the bucket is empty. A legitimate peer
never empties it (the capacities are chosen for that: snep.fsm.sender); a peer that
asks for more, a key holder gone rogue or a bug, is held to the rate.

Time is an argument (sans-I/O).
"""

from __future__ import annotations


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; starts full."""

    __slots__ = ("capacity", "rate", "_tokens", "_at")

    def __init__(self, capacity: float, rate: float) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError(f"a token bucket needs a capacity of at least 1 and a positive rate, not {capacity}, {rate}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._tokens = float(capacity)
        self._at: float | None = None

    def tokens(self, now: float) -> float:
        """The tokens there are at ``now``."""
        if self._at is not None and now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        return self._tokens

    def take(self, now: float, count: int = 1) -> bool:
        """Take ``count`` tokens if there are that many."""
        if self.tokens(now) < count:
            return False
        self._tokens -= count
        return True
