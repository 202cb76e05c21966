"""Log lines that a flood cannot multiply: at most one per reason per interval.

Every rejected frame is counted; a line in the log is for the operator, who needs to
know that it happens, from where, and how often, not one line per frame (5,000
forged frames must not make 5,000 lines). The first of a burst is logged; the rest
are held back and counted, and the next line of that reason says how many there
were. Time is an argument (sans-I/O).
"""

from __future__ import annotations

from snep.fsm.effects import Log, Output

#: seconds between two lines of one reason
INTERVAL = 1.0


class RateLog:
    """Logs outputs, at most one per reason per ``interval``."""

    __slots__ = ("interval", "_last", "_held")

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, now: float, out: list[Output], reason: str, level: str, message: str) -> bool:
        """Append the line to ``out`` unless one of ``reason`` went out within the
        interval (then it is only counted); True when it went out."""
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._held[reason] = self._held.get(reason, 0) + 1
            return False
        held = self._held.pop(reason, 0)
        if held:
            message += f" ({held} more since {now - last:.1f} s ago not logged)"  # type: ignore[operator]
        self._last[reason] = now
        out.append(Log(level, message))
        return True
