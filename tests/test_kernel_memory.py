"""The memory kernel only: what stands for packets and for time (the simulation's knobs)."""

from __future__ import annotations

import select

import pytest

from snep.entry import (
    Event,
    EventKind,
    Proto,
    Status,
    TcpInfo,
    TcpState,
    complete_update,
    make_entry,
)
from snep.errors import KernelError
from snep.kernel.base import apply_to
from snep.kernel.memory import MemoryKernel, MemoryTable
from snep.level import Level


@pytest.fixture
def k() -> MemoryKernel:
    k = MemoryKernel()
    k.subscribe(Level.STRONG)
    return k


def test_expiry_is_driven_by_now_only(k: MemoryKernel) -> None:
    short = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 1, 2, timeout=30)
    long_ = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2, timeout=300)
    k.conn_new(short)
    k.conn_new(long_)
    assert k.next_deadline() == 30
    assert k.expire(29.5) == 0 and {e.timeout for e in k.dump()} == {0, 270}
    assert k.expire(30) == 1
    assert [e.key for e in k.dump()] == [long_.key]
    events = k.read_events()
    assert [ev.kind for ev in events] == [EventKind.NEW, EventKind.NEW, EventKind.DESTROY]
    assert events[-1].entry.key == short.key
    with pytest.raises(ValueError):
        k.expire(10)


def test_traffic_updates_are_partial_like_the_kernel_and_complete_update_restores(k: MemoryKernel) -> None:
    e = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2, protoinfo=TcpInfo(TcpState.SYN_SENT),
                   status=int(Status.CONFIRMED))
    k.conn_new(e)
    k.conn_update(e._replace(protoinfo=TcpInfo(TcpState.ESTABLISHED), status=int(Status.CONFIRMED | Status.SEEN_REPLY)))
    k.conn_update(e._replace(protoinfo=TcpInfo(TcpState.ESTABLISHED), mark=7,
                             status=int(Status.CONFIRMED | Status.SEEN_REPLY)))
    new, state_change, mark_change = k.read_events()
    assert state_change.entry.protoinfo == TcpInfo(TcpState.ESTABLISHED)
    assert mark_change.entry.protoinfo is None and mark_change.entry.mark == 7  # unchanged: not reported
    cache: dict = {}
    apply_to(cache, [new, state_change, mark_change])
    (value,) = cache.values()
    assert value.protoinfo == TcpInfo(TcpState.ESTABLISHED) and value.mark == 7
    assert complete_update(None, mark_change.entry) is mark_change.entry


def test_traffic_on_missing_or_existing_connections_is_an_error(k: MemoryKernel) -> None:
    e = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 1, 2)
    with pytest.raises(KernelError):
        k.conn_update(e)
    k.conn_new(e)
    with pytest.raises(KernelError):
        k.conn_new(e)
    assert k.conn_destroy(e) and not k.conn_destroy(e)


def test_fileno_is_readable_exactly_when_events_are_queued(k: MemoryKernel) -> None:
    fd = k.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    k.conn_new(make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 1, 2))
    assert select.select([fd], [], [], 0)[0] == [fd]
    assert len(k.read_events()) == 1
    assert select.select([fd], [], [], 0)[0] == []
    k.close()


def test_handles_share_a_table_and_max_entries_is_enforced() -> None:
    table = MemoryTable(max_entries=2)
    a, b = MemoryKernel(table), MemoryKernel(table)
    entries = [make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, i, 2) for i in range(3)]
    r = a.apply([Event(EventKind.NEW, e) for e in entries])
    assert (r.created, r.errors) == (2, 1) and b.count() == 2 and b.stats().insert_failed == 1


def test_shorten_then_expire_removes_stale_entries(k: MemoryKernel) -> None:
    """What a node that becomes backup relies on: stale entries go within the short timeout."""
    k.apply([Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, i, 80)) for i in range(5)])
    assert k.shorten_timeouts(60) == 5
    k.expire(61)
    assert k.count() == 0
