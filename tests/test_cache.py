"""The caches: create-or-update and delete-if-present, the limit, and mark-and-sweep
per stream (owners: which peer's epoch last wrote an entry, and whose dump may sweep it)."""

from __future__ import annotations

import pytest

from snep.cache import Cache, RecordCache, swept_by
from snep.entry import Event, EventKind
from snep.fsm.effects import Epoch
from snep.lab.sim import conn

OLD = Epoch(1, 1)  # a former primary's stream
P1 = Epoch(2, 1)  # two streams that coexist in one external cache
P2 = Epoch(2, 2)


@pytest.fixture(params=[Cache, RecordCache], ids=["entries", "records"])
def make(request):
    """Both representations hold the same rules (the external cache keeps records)."""
    return request.param


def new(*indices: int) -> list[Event]:
    return [Event(EventKind.NEW, conn(i)) for i in indices]


def keys(*indices: int) -> set:
    return {conn(i).key for i in indices}


def test_entries_remember_the_stream_that_wrote_them_last(make):
    cache = make()
    cache.apply_all(new(1, 2), OLD)
    cache.apply(Event(EventKind.UPDATE, conn(2)), P2)
    assert cache.owner(conn(1).key) == OLD and cache.owner(conn(2).key) == P2
    cache.apply(Event(EventKind.DESTROY, conn(2)), P2)
    cache.apply(Event(EventKind.NEW, conn(1)))  # (written by no stream)
    assert cache.owner(conn(2).key) is None and cache.owner(conn(1).key) is None


def test_the_rule():
    # the sender's own, of any epoch of it
    assert swept_by(P1, P1) and swept_by(Epoch(1, 1), P1)
    # older epochs', whoever sent them
    assert swept_by(OLD, P2) and swept_by(P1, P2)
    # not another sender's of the same epoch or a newer one
    assert not swept_by(P2, P1) and not swept_by(Epoch(3, 2), P1)
    # no stream wrote it: any dump answers for it
    assert swept_by(None, P1)


def test_a_peers_dump_sweeps_its_own_entries_not_another_live_streams(make):
    cache = make()
    cache.apply_all(new(1, 2), P1)
    cache.apply_all(new(5, 6), P2)
    cache.mark(P1)
    assert cache.marked(P1) == keys(1, 2)
    cache.apply_all(new(1), P1)  # P1's dump carries 1, not 2
    assert [e.key for e in cache.sweep(P1)] == [conn(2).key]
    assert set(cache.keys()) == keys(1, 5, 6)


def test_a_newer_epochs_dump_sweeps_what_older_epochs_wrote_whoever_their_sender(make):
    cache = make([conn(0)])  # (no owner)
    cache.apply_all(new(1, 2), OLD)
    cache.apply_all(new(3), P1)
    cache.mark(P2)
    cache.apply_all(new(2, 4), P2)  # the new primary's dump: 2 is taken over, 4 is new
    swept = cache.sweep(P2)
    assert {e.key for e in swept} == keys(0, 1, 3)
    assert set(cache.keys()) == keys(2, 4) and cache.owner(conn(2).key) == P2


def test_markings_of_two_streams_are_independent(make):
    cache = make()
    cache.apply_all(new(1, 2), P1)
    cache.apply_all(new(5, 6), P2)
    cache.mark(P1)
    cache.mark(P2)
    cache.apply_all(new(7), P2)  # P2's stream goes on during P1's dump
    cache.apply_all(new(1), P1)
    cache.unmark(P1)  # P1's dump is abandoned (a new epoch of P1): P2's marking stays
    cache.apply_all(new(6), P2)
    assert cache.marked(P1) == frozenset() and cache.marked(P2) == keys(1, 2, 5)
    assert {e.key for e in cache.sweep(P2)} == keys(1, 2, 5)
    assert set(cache.keys()) == keys(6, 7)


def test_a_marked_entry_another_live_stream_takes_over_is_not_swept(make):
    cache = make()
    cache.apply_all(new(1, 2), P1)
    cache.mark(P1)
    cache.apply_all(new(2), P2)  # P2 (newer) writes 2 during P1's dump
    assert cache.sweep(P1) == [conn(1)]
    assert set(cache.keys()) == keys(2)


def test_a_clear_ends_every_marking_and_forgets_the_owners(make):
    cache = make()
    cache.apply_all(new(1), P1)
    cache.mark(P1)
    cache.clear()
    cache.apply_all(new(2))
    assert cache.sweep(P1) == [] and cache.owner(conn(2).key) is None


def test_the_limit_refuses_new_entries_only(make):
    cache = make(limit=2)
    assert cache.apply_all(new(1, 2, 3), P1) == new(3)
    assert cache.owner(conn(3).key) is None and len(cache) == 2
    assert cache.apply(Event(EventKind.UPDATE, conn(1)), P2)
    assert cache.owner(conn(1).key) == P2
    assert cache.apply(Event(EventKind.DESTROY, conn(5)), P2)
    assert cache.missing_deletes == 1


def test_owners_stay_right_when_the_first_streams_owner_is_kept_for_all(make):
    """The stream that wrote into the empty cache owns its entries without an owner per
    entry; writes of others (another stream, none) are owned apart, and given back."""
    cache = make()
    cache.apply_all(new(1, 2, 3), P1)  # (P1: every entry's owner, none kept apart)
    cache.apply_all(new(2), P2)
    cache.apply(Event(EventKind.NEW, conn(3)))  # (no stream)
    assert [cache.owner(conn(i).key) for i in (1, 2, 3, 4)] == [P1, P2, None, None]
    cache.apply_all(new(2, 3), P1)  # (P1's again)
    assert [cache.owner(conn(i).key) for i in (1, 2, 3)] == [P1, P1, P1]
    cache.mark(P1)  # (P1's dump answers for all of them)
    assert cache.marked(P1) == keys(1, 2, 3)
    cache.unmark(P1)
    cache.apply_all([Event(EventKind.DESTROY, conn(i)) for i in (1, 2, 3)], P1)
    cache.apply_all(new(5), P2)  # (empty again: P2 owns what follows)
    cache.mark(P1)
    assert cache.marked(P1) == frozenset() and cache.owner(conn(5).key) == P2
