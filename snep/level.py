"""Event notification levels: which conntrack events a primary synchronizes.

- strong: every event (NEW, UPDATE, DESTROY) is sent as it happens;
- weak: only the crucial ones, NEW and DESTROY;
- incremental: every event counts, but changes are coalesced per connection and the
  newest state is sent once per period.

This is the one place that says which event kinds a level sends: the kernel adapter
uses it to subscribe only to the netlink groups it needs, the sync sender to filter.
"""

from __future__ import annotations

from enum import Enum

from snep.entry import EventKind


class Level(Enum):
    STRONG = "strong"
    WEAK = "weak"
    INCREMENTAL = "incremental"

    @property
    def event_kinds(self) -> frozenset[EventKind]:
        """The kernel event kinds this level needs to see."""
        return _EVENT_KINDS[self]

    def sends(self, kind: EventKind) -> bool:
        return kind in _EVENT_KINDS[self]

    @property
    def coalesces(self) -> bool:
        """Whether changes are batched per connection and flushed periodically."""
        return self is Level.INCREMENTAL


#: the event kinds of each level, computed once (a primary asks for each event)
_EVENT_KINDS: dict[Level, frozenset[EventKind]] = {
    level: frozenset({EventKind.NEW, EventKind.DESTROY}) if level is Level.WEAK else frozenset(EventKind)
    for level in Level
}
