"""Cache.retire: what a replace or a clear lets go is handed over (the daemon frees it a
part at a time), and the cache is the same as without it."""

from __future__ import annotations

from snep.cache import Cache
from snep.entry import Event, EventKind
from snep.fsm.records import Records
from snep.lab.sim import conn


def test_replace_and_clear_hand_over_what_they_let_go() -> None:
    retired: list[dict] = []
    cache = Cache([conn(i) for i in range(3)])
    cache.retire = retired.append
    cache.replace([conn(7)])
    assert [len(d) for d in retired] == [3] and cache.keys() == [conn(7).key]
    cache.replace({conn(8).key: conn(8)})  # (a dict by key: taken as it is)
    assert cache.entries() == [conn(8)] and [len(d) for d in retired] == [3, 1]
    cache.clear()
    assert len(cache) == 0 and [len(d) for d in retired] == [3, 1, 1]
    cache.apply(Event(EventKind.NEW, conn(9)))
    assert cache.entries() == [conn(9)] and len(retired[-1]) == 1  # (the retired dict is not the cache's)


def test_records_clear_hands_over_its_records() -> None:
    retired: list[dict] = []
    records = Records()
    records.retire = retired.append
    records.stream(Event(EventKind.NEW, conn(1)))
    records.clear()
    assert len(records) == 0 and [len(d) for d in retired] == [1]
