"""The real kernel only: real connections through a veth pair, the attributes that need
kernel features (helpers, labels, sequence adjustment), namespaces, and decoding
robustness. The behaviour both kernels share is in test_kernel_contract.py.
"""

from __future__ import annotations

import socket
import struct

import pytest

from snep.entry import (
    Entry,
    Event,
    EventKind,
    Proto,
    SeqAdj,
    Status,
    TcpInfo,
    TcpState,
    make_entry,
    make_tuple,
)
from snep.errors import DecodeError, KernelError
from snep.kernel import ctnetlink as ct
from snep.kernel.memory import as_created
from snep.kernel.namespace import NamespaceError
from snep.kernel.netlink import NetlinkKernel
from snep.lab import netns
from snep.level import Level
from snep.wire.codec import encode_state
from tests.kernel_harness import (
    CLIENT_V4,
    CLIENT_V6,
    SERVER_V4,
    SERVER_V6,
    NetlinkHarness,
    without_timeout,
)

pytestmark = pytest.mark.root

LABEL_RULESET = """
table inet snep_labels {
    chain out {
        type filter hook output priority 0
        ct label set 3
    }
}
"""


@pytest.fixture(scope="module")
def net():  # type: ignore[no-untyped-def]
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)
    h = NetlinkHarness("nl")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def h(net: NetlinkHarness) -> NetlinkHarness:
    net.reset()
    return net


def tcp_connection(h: NetlinkHarness, family: int, client: str, server: str, port: int):  # type: ignore[no-untyped-def]
    """An established TCP connection client -> server across the veth (sockets in each ns)."""
    lsock = netns.call_in(h.server, lambda: socket.socket(family, socket.SOCK_STREAM))
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((server, port))
    lsock.listen(1)
    csock = netns.call_in(h.client, lambda: socket.socket(family, socket.SOCK_STREAM))
    csock.settimeout(2)
    csock.connect((server, port))
    ssock, _ = lsock.accept()
    lsock.close()
    csock.sendall(b"hello")
    assert ssock.recv(5) == b"hello"
    ssock.sendall(b"world")
    assert csock.recv(5) == b"world"
    return csock, ssock


def of(orig, events: list[Event]) -> list[Event]:  # type: ignore[no-untyped-def]
    return [ev for ev in events if ev.entry.orig == orig]


def in_state(events: list[Event], states: set[TcpState]) -> bool:
    return any(ev.entry.protoinfo is not None and ev.entry.protoinfo.state in states for ev in events)


def find(entries: list[Entry], orig) -> Entry:  # type: ignore[no-untyped-def]
    matches = [e for e in entries if e.orig == orig]
    assert len(matches) == 1, entries
    return matches[0]


@pytest.mark.parametrize("family,client,server", [(socket.AF_INET, CLIENT_V4, SERVER_V4),
                                                  (socket.AF_INET6, CLIENT_V6, SERVER_V6)])
def test_real_tcp_connection_makes_events_and_round_trips(h: NetlinkHarness, family, client, server) -> None:  # type: ignore[no-untyped-def]
    csock, ssock = tcp_connection(h, family, client, server, 8080)
    try:
        sport = csock.getsockname()[1]
        orig = make_tuple(client, server, Proto.TCP, sport, 8080)
        events = of(orig, h.events(until=lambda evs: in_state(of(orig, evs), {TcpState.ESTABLISHED})))
        kinds = [ev.kind for ev in events]
        assert kinds[0] is EventKind.NEW and EventKind.UPDATE in kinds
        assert events[0].entry.protoinfo.state is TcpState.SYN_SENT
        states = [ev.entry.protoinfo.state for ev in events[1:] if ev.entry.protoinfo is not None]
        assert TcpState.ESTABLISHED in states
        live = find(h.k.dump(), orig)
        assert live.protoinfo.state is TcpState.ESTABLISHED and live.status & Status.ASSURED
        assert live.protoinfo.flags_orig & 0x01 and live.protoinfo.wscale_orig > 0  # real window scaling

        # round trip of a real entry: delete, re-create from the value, identical
        h.k.apply([Event(EventKind.DESTROY, live)])
        assert h.k.count() == 0
        assert h.k.apply([Event(EventKind.NEW, live)]).created == 1
        again = find(h.k.dump(), orig)
        assert again._replace(timeout=0) == live._replace(timeout=0), (str(again), again.status, again.protoinfo, again.mark, str(live), live.status, live.protoinfo, live.mark)
        # and the connection carries on through the re-created entry
        csock.sendall(b"again")
        assert ssock.recv(5) == b"again"
    finally:
        csock.close()
        ssock.close()
    closing = {TcpState.FIN_WAIT, TcpState.TIME_WAIT, TcpState.CLOSE_WAIT, TcpState.LAST_ACK}
    assert in_state(of(orig, h.events(until=lambda evs: in_state(of(orig, evs), closing))), closing)


def test_icmp_echo_through_the_veth(h: NetlinkHarness) -> None:
    raw = netns.call_in(h.client, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    try:
        raw.settimeout(2)
        echo = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"snep")
        csum = sum(struct.unpack("!6H", bytes(echo))) 
        csum = (csum & 0xFFFF) + (csum >> 16)
        struct.pack_into("!H", echo, 2, ~csum & 0xFFFF)
        raw.sendto(bytes(echo), (SERVER_V4, 0))
        reply = raw.recv(200)
        assert reply[20] == 0  # echo reply
    finally:
        raw.close()
    events = h.events(until=lambda evs: any(ev.entry.orig.proto == Proto.ICMP for ev in evs))
    icmp = [ev for ev in events if ev.entry.orig.proto == Proto.ICMP]
    assert icmp and icmp[0].kind is EventKind.NEW
    assert icmp[0].entry.orig.icmp_type == 8 and icmp[0].entry.reply.icmp_type == 0


def test_destroy_events_of_real_traffic_after_flush_by_another_process(h: NetlinkHarness) -> None:
    h.udp_exchange(41000, 5001)
    h.events(until=lambda evs: any(ev.entry.orig.dport == 5001 and ev.entry.status & Status.SEEN_REPLY for ev in evs))
    netns.run_in(h.server, ["conntrack", "-D", "-p", "udp", "--dport", "5001"])
    (event,) = h.events()
    assert event.kind is EventKind.DESTROY and event.entry.orig.dport == 5001


def test_helper_labels_and_sequence_adjustment_round_trip(h: NetlinkHarness) -> None:
    netns.load_ruleset(h.server, LABEL_RULESET)  # labels need a ruleset that uses them
    e = make_entry(
        "10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 21, helper="ftp", labels=(1 << 3) | (1 << 100),
        seqadj_orig=SeqAdj(1000, 5, 7), seqadj_reply=SeqAdj(2000, 0, 3),
    )
    assert h.other.apply([Event(EventKind.NEW, e)]).created == 1
    (dumped,) = h.k.dump()
    assert without_timeout([dumped]) == without_timeout([as_created(e)])
    assert dumped.status & Status.HELPER and dumped.status & Status.SEQ_ADJUST
    (event,) = h.events()
    assert (event.entry.helper, event.entry.labels, event.entry.seqadj_orig) == ("ftp", e.labels, e.seqadj_orig)
    h.k.apply([Event(EventKind.DESTROY, dumped)])
    assert h.k.apply([Event(EventKind.NEW, dumped)]).created == 1
    assert without_timeout(h.k.dump()) == without_timeout([dumped])


def test_own_requests_are_tagged_with_our_port_id(h: NetlinkHarness) -> None:
    """The kernel puts the requester's port id into the event: the filter relies on it."""
    raw = netns.call_in(h.server, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ct.NETLINK_NETFILTER))
    try:
        raw.bind((0, 1 << (ct.NFNLGRP_CONNTRACK_NEW - 1)))
        raw.settimeout(1)
        h.k.apply([Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 1, 2))])
        n = raw.recv_into(buf := bytearray(65536))
        (msg,) = list(ct.iter_messages(memoryview(buf), n))
        assert msg.pid == h.k.portid != 0  # type: ignore[attr-defined]
    finally:
        raw.close()
    assert h.events() == []


def test_opening_inside_the_namespace_needs_no_argument(h: NetlinkHarness) -> None:
    """What `ip netns exec NS snep run` does: the adapter just uses its own namespace."""
    e = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 1, 2)
    h.k.apply([Event(EventKind.NEW, e)])
    inside = netns.call_in(h.server, lambda: NetlinkKernel())
    try:
        assert [x.key for x in inside.dump()] == [e.key]
    finally:
        inside.close()
    with NetlinkKernel() as host:  # the host's table is another one
        assert e.key not in {x.key for x in host.dump()}


def test_unknown_namespace_is_a_clear_error() -> None:
    with pytest.raises(NamespaceError, match="snepk-does-not-exist"):
        NetlinkKernel("snepk-does-not-exist")


def test_malformed_messages_raise_decode_error_only() -> None:
    body = ct.encode_tuple(ct.CTA_TUPLE_ORIG, make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2))
    good = body + ct.encode_tuple(ct.CTA_TUPLE_REPLY, make_tuple("10.0.0.2", "10.0.0.1", Proto.TCP, 2, 1))
    assert ct.decode_entry(memoryview(good), 0, len(good)).orig.sport == 1
    for bad in (good[:-3], body, good[:7] + b"\xff" + good[8:], b"\x03\x00\x01\x00" + good):
        with pytest.raises(DecodeError):
            ct.decode_entry(memoryview(bad), 0, len(bad))
    with pytest.raises(DecodeError):
        list(ct.iter_messages(memoryview(b"\xff\x00\x00\x00" + bytes(12)), 16))


def test_every_tuple_layout_decodes_through_fast_and_generic_paths() -> None:
    for t in [
        make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2),
        make_tuple("fd00::1", "fd00::2", Proto.SCTP, 3, 4),
        make_tuple("10.0.0.1", "10.0.0.2", Proto.ICMP, 9, (8 << 8) | 1),
        make_tuple("fd00::1", "fd00::2", Proto.ICMPV6, 9, 128 << 8),
        make_tuple("10.0.0.1", "10.0.0.2", 99),
        make_tuple("fd00::1", "fd00::2", 99),
    ]:
        attr = ct.encode_tuple(ct.CTA_TUPLE_ORIG, t)
        view = memoryview(attr)
        assert ct.decode_tuple(view, 4, len(attr)) == t
        assert ct.decode_tuple_generic(view, 4, len(attr)) == t


def test_update_that_would_clear_assured_keeps_the_kernel_bits(h: NetlinkHarness) -> None:
    e = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 5, 6)
    h.k.apply([Event(EventKind.NEW, e)])
    r = h.k.apply([Event(EventKind.UPDATE, e._replace(status=int(Status.CONFIRMED), mark=3))])
    assert (r.updated, r.errors) == (1, 0), r.failures
    (dumped,) = h.k.dump()
    assert dumped.mark == 3 and dumped.status & Status.ASSURED


def test_a_commit_of_sync_records_creates_them_and_replaces_what_is_there(h: NetlinkHarness) -> None:
    es = [make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 5 + i, 6, mark=i) for i in range(3)]
    es += [make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 7, 8, zone=3), make_entry("10.0.0.1", "10.0.0.2", Proto.ICMP, 9, 8 << 8)]
    h.k.apply([Event(EventKind.NEW, es[0]._replace(mark=99))])  # (there already, another value)
    r = h.k.apply_records([encode_state(Event(EventKind.NEW, e)) for e in es], replace=True)
    assert (r.created, r.replaced, r.eexist, r.errors) == (5, 1, 1, 0), r.failures
    dumped = {e.key: e for e in h.k.dump()}
    assert {key: e.mark for key, e in dumped.items()} == {e.key: e.mark for e in es}
    assert without_timeout(list(dumped.values())) == without_timeout([as_created(e) for e in es])


def test_records_written_as_they_arrive_update_what_is_there(h: NetlinkHarness) -> None:
    """inject_on_arrival writes a dump's records: an entry the kernel holds is updated
    (EEXIST, then the update, which keeps the status bits the kernel will not clear:
    not deleted, not created twice)."""
    es = [make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 5 + i, 6, mark=i + 1) for i in range(3)]
    h.k.apply([Event(EventKind.NEW, es[0]._replace(mark=99))])  # (ASSURED)
    es[0] = es[0]._replace(status=int(Status.CONFIRMED))  # (the kernel refuses to clear ASSURED: EBUSY)
    r = h.k.apply_records([encode_state(Event(EventKind.NEW, e)) for e in es])
    assert (r.created, r.updated, r.replaced, r.eexist, r.errors) == (2, 1, 0, 1, 0), r.failures
    assert {e.key: e.mark for e in h.k.dump()} == {e.key: e.mark for e in es}


def test_kernel_refusal_is_counted_not_raised(h: NetlinkHarness) -> None:
    bad = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 5, 6, helper="no-such-helper")
    r = h.k.apply([Event(EventKind.NEW, bad)])
    assert r.errors == 1 and r.failures[0][1] != 0 and h.k.counters.errors >= 1


def test_event_buffer_grows_on_overrun_up_to_the_maximum(h: NetlinkHarness) -> None:
    k = NetlinkKernel(h.server, buffer_size=4096, buffer_max_growth=16384)
    try:
        k.subscribe(Level.STRONG)
        start = k.counters.buffer_size
        flows = [make_entry("10.8.0.1", "10.9.0.1", Proto.UDP, i, 2) for i in range(1, 500)]
        h.other.apply([Event(EventKind.NEW, e) for e in flows])
        with pytest.raises(KernelError):  # EventOverrun is a KernelError
            while k.read_events():
                pass
        assert k.counters.overruns == 1 and k.counters.buffer_size > start
        for _ in range(5):
            h.other.apply([Event(EventKind.DESTROY, e) for e in flows])
            try:
                k.read_events()
            except KernelError:
                pass
            h.other.apply([Event(EventKind.NEW, e) for e in flows])
        assert k.counters.overruns > 1
        assert k.counters.buffer_size <= 2 * 16384  # the kernel doubles what it is given
    finally:
        k.close()


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recv"])
@pytest.mark.parametrize("reliable", [False, True], ids=["default", "reliable"])
def test_event_reading_paths_and_reliable_mode(h: NetlinkHarness, batched: bool, reliable: bool) -> None:
    """Both receive paths (recvmmsg, and plain recv where it is missing) and the
    NETLINK_BROADCAST_ERROR/NO_ENOBUFS mode decode the same events."""
    k = NetlinkKernel(h.server, reliable=reliable)
    try:
        k.subscribe(Level.STRONG)
        if not batched:
            k._batch_receiver = None
        flows = [make_entry("10.8.1.1", "10.9.1.1", Proto.UDP, i, 53) for i in range(1, 301)]
        h.other.apply([Event(EventKind.NEW, e) for e in flows])
        h.other.apply([Event(EventKind.DESTROY, e) for e in flows[:100]])
        events = []
        while batch := k.read_events(max_events=128):
            events.extend(batch)
        assert [(ev.kind, ev.entry.key) for ev in events] == [(EventKind.NEW, e.key) for e in flows] + [
            (EventKind.DESTROY, e.key) for e in flows[:100]
        ]
        assert k.counters.overruns == 0 and k.counters.decode_errors == 0
    finally:
        k.close()


def test_memory_kernel_events_match_the_real_kernel_events(h: NetlinkHarness) -> None:
    """Differential: the same requests on both tables give the same events (modulo timeout)."""
    from snep.kernel.memory import MemoryKernel, MemoryTable
    from tests.kernel_harness import sample_entries

    netns.load_ruleset(h.server, LABEL_RULESET)
    special = make_entry(
        "10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 21, helper="ftp", labels=1 << 3, mark=7, zone=2,
        seqadj_orig=SeqAdj(1000, 5, 7), seqadj_reply=SeqAdj(2000, 0, 3),
        protoinfo=TcpInfo(TcpState.ESTABLISHED, 7, 7, 0x23, 0x23),
    )
    entries = sample_entries() + [special]
    table = MemoryTable()
    mem_watch, mem_other = MemoryKernel(table), MemoryKernel(table)
    mem_watch.subscribe(Level.STRONG)

    def scenario(other) -> None:  # type: ignore[no-untyped-def]
        other.apply([Event(EventKind.NEW, e) for e in entries])
        other.apply([Event(EventKind.UPDATE, e._replace(mark=e.mark + 1)) for e in entries[::2] + [special]])
        other.apply([Event(EventKind.DESTROY, e) for e in entries[1::3]])
        other.shorten_timeouts(60)
        other.flush(zone=7)
        other.flush(mark=0x1234)
        other.flush()

    scenario(h.other)
    scenario(mem_other)
    real = [(ev.kind, ev.entry._replace(timeout=0)) for ev in h.events()]
    mem = [(ev.kind, ev.entry._replace(timeout=0)) for ev in mem_watch.read_events()]
    # the kernel walks its hash table in its own order for flushes and timeouts: compare as multisets per step
    only_real = sorted(set(map(repr, real)) - set(map(repr, mem)))
    only_mem = sorted(set(map(repr, mem)) - set(map(repr, real)))
    assert (only_real, only_mem) == ([], [])
    assert sorted(map(repr, real)) == sorted(map(repr, mem))
    assert [k for k, _ in real] == [k for k, _ in mem]
