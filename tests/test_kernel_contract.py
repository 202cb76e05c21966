"""The kernel contract: one suite, run on the in-memory kernel and on the real one.

The real kernel runs in namespaces the fixture creates (marked ``root``); whatever
the memory kernel is checked for here, the real kernel is checked for too, so the
simulation and model tests build on behaviour measured on Linux.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snep.entry import (
    ConnTuple,
    Entry,
    Event,
    EventKind,
    Family,
    Proto,
    SctpInfo,
    SctpState,
    Status,
    TcpInfo,
    TcpState,
    make_entry,
)
from snep.errors import EventOverrun, KernelError
from snep.kernel.base import apply_to, diff, same_state
from snep.kernel.memory import as_created
from snep.level import Level
from tests.kernel_harness import (
    Harness,
    harness_fixture,
    kinds_and_keys,
    sample_entries,
    without_timeout,
)

harness_module, harness = harness_fixture("ct")


def load(h: Harness, entries):  # type: ignore[no-untyped-def]
    result = h.other.apply([Event(EventKind.NEW, e) for e in entries])
    assert (result.created, result.errors) == (len(entries), 0), result.failures
    return result


def test_create_then_dump_gives_back_every_kind_of_entry(harness: Harness) -> None:
    entries = sample_entries()
    result = harness.k.apply([Event(EventKind.NEW, e) for e in entries])
    assert (result.created, result.errors) == (len(entries), 0), result.failures
    dumped = harness.k.dump()
    assert without_timeout(dumped) == without_timeout([as_created(e) for e in entries])
    assert harness.k.count() == len(entries)
    # NAT: the kernel's status says which translation applies
    by_key = {e.key: e for e in dumped}
    snat, dnat = entries[10], entries[11]
    assert by_key[snat.key].status & Status.SRC_NAT and not by_key[snat.key].status & Status.DST_NAT
    assert by_key[dnat.key].status & Status.DST_NAT and not by_key[dnat.key].status & Status.SRC_NAT
    assert by_key[snat.key].nat().snat is not None


def test_timeouts_count_down_from_the_created_value(harness: Harness) -> None:
    e = make_entry("10.1.0.1", "10.2.0.1", Proto.UDP, 1, 2, timeout=300)
    harness.k.apply([Event(EventKind.NEW, e)])
    (dumped,) = harness.k.dump()
    assert 298 <= dumped.timeout <= 300


def test_round_trip_dump_delete_recreate_dumps_identical(harness: Harness) -> None:
    load(harness, sample_entries())
    before = harness.k.dump()
    result = harness.k.apply([Event(EventKind.DESTROY, e) for e in before])
    assert (result.deleted, harness.k.count()) == (len(before), 0)
    result = harness.k.apply([Event(EventKind.NEW, e) for e in before])
    assert (result.created, result.errors) == (len(before), 0), result.failures
    assert without_timeout(harness.k.dump()) == without_timeout(before)


def test_events_from_another_handle_are_seen_own_are_not(harness: Harness) -> None:
    a, b = sample_entries()[2], sample_entries()[4]
    load(harness, [a])
    harness.other.apply([Event(EventKind.UPDATE, a._replace(mark=0x99))])
    harness.other.apply([Event(EventKind.DESTROY, a)])
    events = harness.events()
    assert kinds_and_keys(events) == [(EventKind.NEW, a.key), (EventKind.UPDATE, a.key), (EventKind.DESTROY, a.key)]
    assert events[0].entry._replace(timeout=0) == as_created(a)._replace(timeout=0)
    assert events[1].entry.mark == 0x99
    # our own writes are not echoed (they would go back to the peers)
    own = harness.k.counters.own_filtered
    harness.k.apply([Event(EventKind.NEW, b)])
    harness.k.flush()
    assert harness.events() == []
    assert harness.k.counters.own_filtered >= own + 2


def test_weak_level_does_not_subscribe_to_updates(harness: Harness) -> None:
    harness.k.subscribe(Level.WEAK)
    a = sample_entries()[2]
    load(harness, [a])
    harness.other.apply([Event(EventKind.UPDATE, a._replace(mark=1)), Event(EventKind.DESTROY, a)])
    assert [ev.kind for ev in harness.events()] == [EventKind.NEW, EventKind.DESTROY]


def test_update_changes_state_and_keeps_nat(harness: Harness) -> None:
    snat = sample_entries()[10]
    load(harness, [snat])
    closing = snat._replace(protoinfo=TcpInfo(TcpState.FIN_WAIT), mark=5, timeout=100)
    result = harness.k.apply([Event(EventKind.UPDATE, closing)])
    assert (result.updated, result.errors) == (1, 0), result.failures
    (dumped,) = harness.k.dump()
    assert dumped.protoinfo.state is TcpState.FIN_WAIT and dumped.mark == 5
    assert dumped.reply == snat.reply and dumped.status & Status.SRC_NAT
    assert 98 <= dumped.timeout <= 100


def test_create_of_existing_updates_and_counts_eexist(harness: Harness) -> None:
    a = sample_entries()[0]
    load(harness, [a])
    result = harness.k.apply([Event(EventKind.NEW, a._replace(mark=42))])
    assert (result.eexist, result.updated, result.created, result.errors) == (1, 1, 0, 0)
    assert harness.k.dump()[0].mark == 42
    assert harness.k.counters.eexist >= 1


def test_create_with_replace_deletes_and_creates_the_existing_entry(harness: Harness) -> None:
    """A commit replaces stale entries: no kernel-only state (TCP window tracking) of
    the old entry survives, as an update in place would let it (conformance scenario 4)."""
    a, b = sample_entries()[0], sample_entries()[2]
    load(harness, [a])
    result = harness.other.apply([Event(EventKind.NEW, a._replace(mark=42)), Event(EventKind.NEW, b)], replace=True)
    assert (result.eexist, result.replaced, result.created, result.updated, result.errors) == (1, 1, 2, 0, 0)
    seen = kinds_and_keys(harness.events())
    # per key (the two kernels order the retried replacement differently)
    assert [kind for kind, key in seen if key == a.key] == [EventKind.NEW, EventKind.DESTROY, EventKind.NEW]
    assert [kind for kind, key in seen if key == b.key] == [EventKind.NEW]
    assert {e.key: e.mark for e in harness.k.dump()} == {a.key: 42, b.key: b.mark}


def test_delete_of_missing_is_ignored_and_counted_enoent(harness: Harness) -> None:
    a, b = sample_entries()[0], sample_entries()[2]
    load(harness, [a])
    result = harness.k.apply([Event(EventKind.DESTROY, b), Event(EventKind.DESTROY, a)])
    assert (result.enoent, result.deleted, result.errors) == (1, 1, 0)
    assert harness.k.count() == 0


def test_update_of_missing_creates_it(harness: Harness) -> None:
    a = sample_entries()[4]
    result = harness.k.apply([Event(EventKind.UPDATE, a)])
    assert (result.enoent, result.created, result.errors) == (1, 1, 0)
    assert without_timeout(harness.k.dump()) == without_timeout([as_created(a)])


def test_flush_all(harness: Harness) -> None:
    load(harness, sample_entries())
    harness.k.flush()
    assert harness.k.dump() == [] and harness.k.count() == 0


def test_flush_by_mark_and_mask(harness: Harness) -> None:
    base = make_entry("10.1.0.1", "10.2.0.1", Proto.UDP, 1, 2)
    entries = [base._replace(orig=base.orig._replace(sport=i), reply=base.reply._replace(dport=i), mark=m)
               for i, m in enumerate([0, 0x100, 0x101, 0x200], start=1)]
    load(harness, entries)
    harness.k.flush(mark=0x100, mark_mask=0xF00)
    assert sorted(e.mark for e in harness.k.dump()) == [0, 0x200]
    harness.k.flush(mark=0x200)
    assert [e.mark for e in harness.k.dump()] == [0]


def test_flush_by_zone(harness: Harness) -> None:
    tcp, tcp_zone7 = sample_entries()[0], sample_entries()[1]
    v6_zone3 = sample_entries()[4]
    load(harness, [tcp, tcp_zone7, v6_zone3])
    harness.k.flush(zone=7)
    assert sorted(e.zone for e in harness.k.dump()) == [0, 3]


def test_shorten_timeouts_lowers_only_longer_ones(harness: Harness) -> None:
    long_ = make_entry("10.1.0.1", "10.2.0.1", Proto.TCP, 1, 2, timeout=3600)
    short = make_entry("10.1.0.1", "10.2.0.1", Proto.UDP, 1, 2, timeout=20)
    load(harness, [long_, short])
    assert harness.k.shorten_timeouts(60) == 1
    timeouts = {e.orig.proto: e.timeout for e in harness.k.dump()}
    assert 58 <= timeouts[Proto.TCP] <= 60 and 18 <= timeouts[Proto.UDP] <= 20


def test_shorten_timeouts_of_some_entries(harness: Harness) -> None:
    """A backup shortens only the entries the primary's dump did not confirm."""
    kept = make_entry("10.1.0.1", "10.2.0.1", Proto.TCP, 1, 2, timeout=3600)
    doomed = make_entry("10.1.0.2", "10.2.0.1", Proto.TCP, 1, 2, timeout=3600)
    load(harness, [kept, doomed])
    assert harness.k.shorten_timeouts(60, frozenset({doomed.key})) == 1
    timeouts = {e.key: e.timeout for e in harness.k.dump()}
    assert timeouts[kept.key] > 3000 and 58 <= timeouts[doomed.key] <= 60


def test_stats_count_entries_and_inserts(harness: Harness) -> None:
    before = harness.k.stats()
    load(harness, sample_entries()[:3])
    after = harness.k.stats()
    assert after.entries == 3 and after.max_entries > 0
    assert after.insert - before.insert == 3


def test_traffic_makes_new_then_update_events(harness: Harness) -> None:
    entry = harness.udp_exchange(40123, 5000)
    assert entry.status & Status.SEEN_REPLY

    def mine(events: list[Event]) -> list[Event]:
        return [ev for ev in events if ev.entry.key == entry.key]

    events = mine(harness.events(until=lambda evs: len(mine(evs)) >= 2))
    assert [ev.kind for ev in events][:2] == [EventKind.NEW, EventKind.UPDATE]
    assert not events[0].entry.status & Status.SEEN_REPLY
    assert events[1].entry.status & Status.SEEN_REPLY


def test_overrun_is_detected_counted_and_resynced_to_the_table(harness: Harness) -> None:
    """Flood events into a tiny buffer: the loss is noticed, and a resync repairs it."""
    harness.k.close()
    tiny = _tiny_kernel(harness)
    try:
        cache: dict = {}
        base = make_entry("10.5.0.0", "10.6.0.1", Proto.UDP, 1, 2)
        flood = [Event(EventKind.NEW, base._replace(orig=base.orig._replace(sport=i), reply=base.reply._replace(dport=i)))
                 for i in range(1, 3001)]
        harness.other.apply(flood)
        # some go away again: the resync must also see what vanished
        harness.other.apply([Event(EventKind.DESTROY, ev.entry) for ev in flood[::3]])
        overruns = 0
        for _ in range(1000):
            try:
                events = tiny.read_events()
            except EventOverrun:
                overruns += 1
                apply_to(cache, tiny.resync(cache))
                continue
            if not events:
                break
            apply_to(cache, events)
        assert overruns >= 1
        assert tiny.counters.overruns >= 1 and tiny.counters.resyncs == overruns
        table = {e.key: e for e in tiny.dump()}
        assert cache.keys() == table.keys() and len(table) == 2000
        assert all(same_state(cache[k], table[k]) for k in table)
        assert diff(cache, table.values()) == []
    finally:
        tiny.close()
        harness.k = _reopen(harness)


def _tiny_kernel(harness: Harness):  # type: ignore[no-untyped-def]
    if harness.name == "memory":
        from snep.kernel.memory import MemoryKernel

        k = MemoryKernel(harness.other.table, event_capacity=64, event_capacity_max=256)  # type: ignore[attr-defined]
    else:
        from snep.kernel.netlink import NetlinkKernel

        k = NetlinkKernel(harness.server, buffer_size=8192, buffer_max_growth=32768)  # type: ignore[attr-defined]
    k.subscribe(Level.STRONG)
    return k


def _reopen(harness: Harness):  # type: ignore[no-untyped-def]
    if harness.name == "memory":
        from snep.kernel.memory import MemoryKernel

        k = MemoryKernel(harness.other.table)  # type: ignore[attr-defined]
    else:
        from snep.kernel.netlink import NetlinkKernel

        k = NetlinkKernel(harness.server)  # type: ignore[attr-defined]
    k.subscribe(Level.STRONG)
    return k


def test_read_events_before_subscribe_is_a_clear_error(harness: Harness) -> None:
    k = _unsubscribed(harness)
    try:
        with pytest.raises(KernelError):
            k.read_events()
        with pytest.raises(KernelError):
            k.fileno()
    finally:
        k.close()


def _unsubscribed(harness: Harness):  # type: ignore[no-untyped-def]
    if harness.name == "memory":
        from snep.kernel.memory import MemoryKernel

        return MemoryKernel(harness.other.table)  # type: ignore[attr-defined]
    from snep.kernel.netlink import NetlinkKernel

    return NetlinkKernel(harness.server)  # type: ignore[attr-defined]


# --- the round-trip property over generated entries the kernel accepts -----------

V4 = st.builds(lambda a, b: bytes((10, a, b, 1)), st.integers(0, 255), st.integers(0, 255))
V6 = st.builds(lambda a: b"\xfd" + bytes(13) + a.to_bytes(2, "big"), st.integers(1, 0xFFFF))


@st.composite
def kernel_entries(draw):  # type: ignore[no-untyped-def]
    family = draw(st.sampled_from([Family.IPV4, Family.IPV6]))
    addr = V4 if family is Family.IPV4 else V6
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP, Proto.SCTP, Proto.UDPLITE, Proto.GRE,
                                  Proto.ICMP if family is Family.IPV4 else Proto.ICMPV6]))
    src, dst = draw(addr), draw(addr)
    if proto.is_icmp:
        sport, dport = draw(st.integers(0, 0xFFFF)), ((8 if proto is Proto.ICMP else 128) << 8)
    else:
        sport, dport = draw(st.integers(1, 0xFFFF)), draw(st.integers(1, 0xFFFF))
    orig = ConnTuple(family, src, dst, int(proto), sport, dport)
    reply = orig.inverted()
    nat = draw(st.sampled_from(["none", "none", "snat", "dnat"])) if proto.has_ports else "none"
    if nat == "snat":
        reply = reply._replace(dst=draw(addr), dport=draw(st.integers(1024, 0xFFFF)))
    elif nat == "dnat":
        reply = reply._replace(src=draw(addr), sport=draw(st.integers(1, 0xFFFF)))
    protoinfo = None
    if proto is Proto.TCP:
        protoinfo = TcpInfo(draw(st.sampled_from([TcpState.SYN_SENT, TcpState.ESTABLISHED, TcpState.FIN_WAIT,
                                                  TcpState.TIME_WAIT, TcpState.CLOSE_WAIT])),
                            draw(st.integers(0, 14)), draw(st.integers(0, 14)),
                            draw(st.sampled_from([0, 0x01, 0x03, 0x23])), draw(st.sampled_from([0, 0x01, 0x03, 0x23])))
    elif proto is Proto.SCTP:
        protoinfo = SctpInfo(SctpState.ESTABLISHED, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))
    status = int(Status.CONFIRMED | draw(st.sampled_from([0, Status.SEEN_REPLY, Status.SEEN_REPLY | Status.ASSURED])))
    return Entry(orig, reply, zone=draw(st.sampled_from([0, 0, 1, 65535])), status=status,
                 timeout=draw(st.integers(10, 10**6)), mark=draw(st.sampled_from([0, 1, 2**32 - 1])),
                 protoinfo=protoinfo)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(kernel_entries(), min_size=1, max_size=8, unique_by=lambda e: e.key))
def test_round_trip_property(harness: Harness, entries) -> None:  # type: ignore[no-untyped-def]
    harness.k.flush()
    load(harness, entries)
    first = harness.k.dump()
    # the kernel keeps what it was given (and the memory kernel models exactly that)
    assert without_timeout(first) == without_timeout([as_created(e) for e in entries])
    harness.k.apply([Event(EventKind.DESTROY, e) for e in first])
    result = harness.k.apply([Event(EventKind.NEW, e) for e in first])
    assert result.created == len(entries), result.failures
    assert without_timeout(harness.k.dump()) == without_timeout(first)
    harness.k.flush()


def test_an_entry_the_kernel_cannot_hold_is_counted_and_the_rest_applied(harness: Harness) -> None:
    good = sample_entries()[:2]
    bad = good[0]._replace(orig=good[0].orig._replace(src=bytes(16)), zone=9)  # IPv4 tuple, 16-byte address
    result = harness.k.apply([Event(EventKind.NEW, good[0]), Event(EventKind.NEW, bad), Event(EventKind.NEW, good[1])])
    assert (result.created, result.errors) == (2, 1)
    assert result.failures[0][0].entry == bad
    assert harness.k.counters.errors >= 1
    assert {e.key for e in harness.k.dump()} == {e.key for e in good}
