"""The ctnetlink codec's generated fast paths against its generic (reference) code.

The learned-layout decoder and the compiled create encoder are code built with
``eval``: they must give exactly what the generic decoder and encoder give, on
every entry and every message. Each differential test uses a fresh
:class:`FastPaths`, so what one example learned never decides another's path.
Messages are built as the kernel writes them, and read from a real kernel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snep.entry import (
    ConnTuple,
    Entry,
    Event,
    EventKind,
    Proto,
    SctpInfo,
    SctpState,
    Status,
    TcpInfo,
    TcpState,
    make_entry,
)
from snep.kernel import ctnetlink as ct
from snep.kernel.ctnetlink import FastPaths
from snep.kernel.ctnetlink.decode import helper_name
from snep.kernel.ctnetlink.layout import tuple_kind
from snep.lab import netns
from tests.kernel_harness import NetlinkHarness, sample_entries, without_timeout
from snep.wire.codec import encode_state
from tests.strategies import U32, entries

H = ct.HEADER_SIZE
_NAT_DONE = int(Status.SRC_NAT_DONE | Status.DST_NAT_DONE)


def outcome(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """What a call gives: its value, or the type of what it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the type is the outcome
        return type(exc)


def more_entries() -> list[Entry]:
    """Shapes sample_entries() lacks: ICMP with a zone, unknown protocol, TCP info."""
    return [
        make_entry("10.0.0.1", "10.0.0.2", Proto.ICMP, 5, 8 << 8, zone=4, mark=3),
        make_entry("fd00::1", "fd00::2", Proto.ICMPV6, 6, 128 << 8, mark=9),
        make_entry("10.0.0.1", "10.0.0.2", 99),
        make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1, 2, protoinfo=TcpInfo(TcpState.SYN_SENT, 7, 7, 0x23, 0x01)),
    ]


# --- messages as the kernel writes them --------------------------------------------


def _u32(atype: int, value: int) -> bytes:
    return ct.nla(atype, ct.U32.pack(value))


def _u64(atype: int, value: int) -> bytes:
    return ct.nla(atype, ct.U64.pack(value))


def kernel_message(e: Entry, *, mark_always: bool = True, extras: bool = True, nested: bool = True) -> bytes:
    """``e`` as ctnetlink_fill_info writes it: its attribute order, ID, use count,
    counters and timestamps (``extras``), CTA_MARK even when 0 (``mark_always``, as
    in dumps) and nests flagged NLA_F_NESTED (``nested``; older kernels did not)."""
    parts = [ct.encode_tuple(ct.CTA_TUPLE_ORIG, e.orig), ct.encode_tuple(ct.CTA_TUPLE_REPLY, e.reply)]
    if e.zone:
        parts.append(ct.nla(ct.CTA_ZONE, ct.U16.pack(e.zone)))
    parts.append(_u32(ct.CTA_STATUS, e.status))
    if e.mark or mark_always:
        parts.append(_u32(ct.CTA_MARK, e.mark))
    if extras:
        parts += [_u32(ct.CTA_ID, 0x5EED), _u32(ct.CTA_USE, 1)]
    for atype, adj in ((ct.CTA_SEQ_ADJ_ORIG, e.seqadj_orig), (ct.CTA_SEQ_ADJ_REPLY, e.seqadj_reply)):
        if adj is not None:
            parts.append(ct.nest(atype, _u32(1, adj.correction_pos), _u32(2, adj.offset_before),
                                 _u32(3, adj.offset_after)))
    if extras:
        parts += [ct.nest(atype, _u64(1, 12), _u64(2, 3456)) for atype in (ct.CTA_COUNTERS_ORIG, ct.CTA_COUNTERS_REPLY)]
        parts.append(ct.nest(ct.CTA_TIMESTAMP, _u64(1, 1_700_000_000_000_000_000)))
    if e.labels:
        parts.append(ct.nla(ct.CTA_LABELS, ct.labels_to_bytes(e.labels)))
    parts.append(_u32(ct.CTA_TIMEOUT, e.timeout))
    if e.protoinfo is not None:
        parts.append(ct.encode_protoinfo(e.protoinfo))
    if e.helper:
        parts.append(ct.nest(ct.CTA_HELP, ct.nla(ct.CTA_HELP_NAME, e.helper.encode() + b"\0")))
    msg = bytearray(ct.message(ct.MSG_CT_NEW, ct.NLM_F_MULTI, 1, e.orig.family, b"".join(parts)))
    if not nested:
        _clear_nested_flags(msg, H, len(msg))
    return bytes(msg)


def _attrs(buf: bytes | bytearray, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(header offset, length, type with flags) of each attribute in [off, end)."""
    while off + 4 <= end:
        alen, atype = ct.NLA.unpack_from(buf, off)
        yield off, alen, atype
        off += ct.align(alen)


def _clear_nested_flags(buf: bytearray, off: int, end: int) -> None:
    for at, alen, atype in _attrs(buf, off, end):
        if atype & ct.NLA_F_NESTED:
            ct.NLA.pack_into(buf, at, alen, atype & ~ct.NLA_F_NESTED)
            _clear_nested_flags(buf, at + 4, at + alen)


def _protocol_state_offset(msg: bytes) -> int | None:
    """Where the TCP/SCTP/DCCP state byte is (CTA_PROTOINFO_*_STATE is 1 in each)."""
    for at, alen, atype in _attrs(msg, H, len(msg)):
        if atype & ct.NLA_TYPE_MASK == ct.CTA_PROTOINFO:
            for nat, nlen, _ in _attrs(msg, at + 4, at + alen):
                for sat, _, stype in _attrs(msg, nat + 4, nat + nlen):
                    if stype == 1:
                        return sat + 4
    return None


@st.composite
def kernel_messages(draw: st.DrawFn) -> bytes:
    # the protocols with protocol info drawn often: their layouts have the most fields
    e = draw(entries(proto=draw(st.sampled_from([None, None, Proto.TCP, Proto.SCTP, Proto.DCCP]))))
    return kernel_message(e, mark_always=draw(st.booleans()), extras=draw(st.booleans()), nested=draw(st.booleans()))


def with_other_values(msg: bytes, mask: int, noise: bytes) -> bytes:
    """``msg`` with every payload byte outside ``mask`` (the attribute headers of a
    learned layout) taken from ``noise``: the same layout, other values. The state
    byte stays small, mostly a known state (an unknown one takes the generic path)."""
    out = bytearray(msg)
    for i, byte in enumerate(noise[: len(msg) - H]):
        if not (mask >> 8 * i) & 0xFF:
            out[H + i] = byte
    state = _protocol_state_offset(msg)
    if state is not None:
        out[state] %= 16
    return bytes(out)


def check_decoders_agree(msg: bytes, noise: bytes) -> None:
    """A fresh fast decoder: learns msg's layout, reads msg through it, and reads
    msg with other values through it, always as the generic decoder does."""
    fp = FastPaths()
    view, n = memoryview(msg), len(msg)
    reference = ct.decode_entry_generic(view, H, n)
    assert fp.decode_entry(view, H, n) == reference  # the walker, which learns the layout
    (layout,) = fp.layouts[n - H]  # learned, and it agreed with the walker on msg
    assert fp.decode_entry(view, H, n) == reference  # through the layout
    other = memoryview(with_other_values(msg, layout.mask, noise))
    assert int.from_bytes(other[H:], "little") & layout.mask == layout.expected
    assert outcome(fp.decode_entry, other, H, n) == outcome(ct.decode_entry_generic, other, H, n)


# --- the create encoder ------------------------------------------------------------

# the entries the compiled encoder takes: no NAT, sequence adjustment, labels or helper; TCP or no info
common_entries = entries(natted=False).map(
    lambda e: e._replace(
        status=e.status & ~_NAT_DONE, seqadj_orig=None, seqadj_reply=None, labels=0, helper="",
        protoinfo=e.protoinfo if isinstance(e.protoinfo, TcpInfo) else None,
    )
)


@given(st.lists(common_entries, min_size=1, max_size=6), st.integers(0, U32), st.booleans())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_create_encoder_writes_the_generic_bytes(es: list[Entry], seq: int, ack: bool) -> None:
    fp = FastPaths()
    for e in es:
        expected = ct.encode_create_generic(e, seq, ack=ack)
        assert fp.encode_create(e, seq, ack=ack) == expected  # compiles this shape
        assert fp.encode_create(e, seq, ack=ack) == expected  # the compiled encoder, again
    assert len(fp.creates) >= 1


@given(entries(), st.integers(0, U32), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_create_encoder_gives_what_the_generic_one_gives_for_any_entry(e: Entry, seq: int, ack: bool) -> None:
    """NAT, labels, helpers (even ones ASCII cannot spell) go to the generic encoder."""
    fp = FastPaths()
    assert outcome(fp.encode_create, e, seq, ack=ack) == outcome(ct.encode_create_generic, e, seq, ack=ack)


def sync_record(e: Entry) -> bytes | None:
    """The record a backup keeps of ``e`` (snep.cache.RecordCache); None: the wire cannot carry it."""
    try:
        return encode_state(Event(EventKind.NEW, e))
    except ValueError:
        return None


@given(st.lists(common_entries, min_size=1, max_size=6), st.integers(0, U32))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_a_create_from_a_sync_record_is_the_create_of_its_entry(es: list[Entry], seq: int) -> None:
    """A commit writes the external cache's records without making entries: the bytes
    must be those of the entry path (the translation table of each record layout)."""
    fp = FastPaths()
    for e in es:
        record = sync_record(e)
        if record is not None:
            assert outcome(fp.encode_create_record, record, seq) == outcome(ct.encode_create_generic, e, seq)


@given(entries(), st.integers(0, U32), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_create_from_any_sync_record_is_the_create_of_its_entry(e: Entry, seq: int, enabled: bool) -> None:
    """NAT, ICMP, IPv6, labels, helpers: records the translation does not take are decoded."""
    record = sync_record(e)
    if record is not None:
        fp = FastPaths(enabled=enabled)
        assert outcome(fp.encode_create_record, record, seq) == outcome(ct.encode_create_generic, e, seq)


# --- the decoder -------------------------------------------------------------------


@given(kernel_messages(), st.binary(min_size=1024, max_size=1024))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_learned_layouts_read_what_the_generic_decoder_reads(msg: bytes, noise: bytes) -> None:
    check_decoders_agree(msg, noise)


@given(entries())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_kernel_messages_decode_to_their_entry(e: Entry) -> None:
    """The message builder above is faithful (so agreement on its messages means something)."""
    msg = kernel_message(e)
    decoded = ct.decode_entry_generic(memoryview(msg), H, len(msg))
    carried = e._replace(orig=_as_carried(e.orig), reply=_as_carried(e.reply), helper=helper_name(e.helper.encode()))
    assert decoded == carried


def _as_carried(t: ConnTuple) -> ConnTuple:
    """A tuple as ctnetlink carries it: no port fields for protocols without ports."""
    return t if tuple_kind(t.proto) != "none" else t._replace(sport=0, dport=0)


@given(st.lists(kernel_messages(), min_size=2, max_size=10))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_one_fast_decoder_over_many_layouts(msgs: list[bytes]) -> None:
    """Layouts of one length but other headers, learned side by side, never mix."""
    fp = FastPaths()
    for _ in range(2):
        for msg in msgs:
            view = memoryview(msg)
            assert fp.decode_entry(view, H, len(msg)) == ct.decode_entry_generic(view, H, len(msg))
    assert fp.layout_count >= 1


def test_sample_entries_through_both_paths() -> None:
    fp = FastPaths()
    for e in sample_entries() + more_entries():
        assert fp.encode_create(e, 7) == ct.encode_create_generic(e, 7)
        for msg in (ct.encode_create_generic(e, 7), kernel_message(e)):
            view = memoryview(msg)
            first = fp.decode_entry(view, H, len(msg))  # generic walk, learns the layout
            again = fp.decode_entry(view, H, len(msg))  # compiled layout
            assert first == again == ct.decode_entry_generic(view, H, len(msg))


# --- the switch --------------------------------------------------------------------


@pytest.fixture
def fast_paths_off() -> Iterator[None]:
    ct.use_fast_paths(False)
    try:
        yield
    finally:
        ct.use_fast_paths(True)


def test_switched_off_nothing_is_learned_or_compiled(fast_paths_off: None) -> None:
    for e in sample_entries() + more_entries():
        assert ct.encode_create(e, 7) == ct.encode_create_generic(e, 7)
        msg = kernel_message(e)
        for _ in range(2):
            assert ct.decode_entry(memoryview(msg), H, len(msg)) == ct.decode_entry_generic(memoryview(msg), H, len(msg))
    assert (ct.fast_paths.layouts, ct.fast_paths.layout_count, ct.fast_paths.creates) == ({}, 0, {})
    ct.use_fast_paths(True)  # and back on, both fast paths work again
    e = sample_entries()[0]
    msg = kernel_message(e)
    ct.decode_entry(memoryview(msg), H, len(msg))
    ct.encode_create(e, 7)
    assert ct.fast_paths.layouts[len(msg) - H] and ct.fast_paths.creates


def test_the_environment_switch_is_read_at_import() -> None:
    root = Path(__file__).resolve().parent.parent
    code = (
        "from snep.entry import make_entry, Proto; from snep.kernel import ctnetlink as ct\n"
        "e = make_entry('10.0.0.1', '10.0.0.2', Proto.UDP, 1, 2); m = ct.encode_create(e, 1)\n"
        "for _ in range(2): ct.decode_entry(memoryview(m), ct.HEADER_SIZE, len(m))\n"
        "print(ct.fast_paths.enabled, len(ct.fast_paths.layouts), len(ct.fast_paths.creates))"
    )
    for value, expected in (("1", "False 0 0"), ("", "True 1 1"), ("0", "True 1 1")):
        env = {**os.environ, "SNEP_NO_FASTPATH": value, "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
        assert out.stdout.split("\n")[0] == expected, (value, out.stdout, out.stderr)


# --- a real kernel's messages ------------------------------------------------------


def _receive(sock: socket.socket) -> list[bytes]:
    """The conntrack messages (headers included) on ``sock`` until NLMSG_DONE or a timeout."""
    out: list[bytes] = []
    buf = bytearray(1 << 16)
    while True:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            return out
        view = memoryview(buf)
        for msg in ct.iter_messages(view, n):
            if msg.type == ct.NLMSG_DONE:
                return out
            if msg.type in (ct.MSG_CT_NEW, ct.MSG_CT_DELETE):
                out.append(bytes(view[msg.offset - 16 : msg.end]))


@pytest.fixture(scope="module")
def kernel_messages_seen() -> Iterator[list[bytes]]:
    """Dump and event messages of a real table: entries snep created, and real traffic."""
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)
    h = NetlinkHarness("ct")
    events = dump = None
    try:
        events = netns.call_in(h.server, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ct.NETLINK_NETFILTER))
        events.bind((0, sum(1 << (g - 1) for g in ct.GROUP_OF_KIND.values())))
        events.settimeout(0.5)
        made = sample_entries() + more_entries() + [
            make_entry("10.1.0.1", "10.2.0.1", Proto.SCTP, 9, 9, protoinfo=SctpInfo(SctpState.COOKIE_WAIT, 1, 2)),
            make_entry("10.1.0.1", "10.2.0.1", Proto.TCP, 7, 8, protoinfo=TcpInfo(TcpState.ESTABLISHED, 7, 7, 0x23, 0x23)),
        ]
        assert h.other.apply([Event(EventKind.NEW, e) for e in made]).created == len(made)
        h.udp_exchange(40000, 5300)
        dump = netns.call_in(h.server, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ct.NETLINK_NETFILTER))
        dump.settimeout(2)
        dump.send(ct.encode_dump(1))
        dumped = _receive(dump)
        assert len(dumped) >= len(made) + 1
        h.other.apply([Event(EventKind.DESTROY, e) for e in made])
        seen = _receive(events)
        assert {ct.NLMSGHDR.unpack_from(m)[1] for m in seen} == {ct.MSG_CT_NEW, ct.MSG_CT_DELETE}  # events of each kind
        yield dumped + seen
    finally:
        for sock in (events, dump):
            if sock is not None:
                sock.close()
        h.close()


@pytest.mark.root
def test_real_kernel_messages_through_both_decoders(kernel_messages_seen: list[bytes]) -> None:
    fp = FastPaths()
    for msg in kernel_messages_seen:
        check_decoders_agree(msg, bytes(len(msg)))  # other values: all zero
        for _ in range(2):  # and all through one decoder
            view = memoryview(msg)
            assert fp.decode_entry(view, H, len(msg)) == ct.decode_entry_generic(view, H, len(msg))


@pytest.mark.root
@given(st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_real_kernel_layouts_with_other_values(kernel_messages_seen: list[bytes], data: st.DataObject) -> None:
    msg = data.draw(st.sampled_from(kernel_messages_seen))
    check_decoders_agree(msg, data.draw(st.binary(min_size=len(msg), max_size=len(msg))))


@pytest.mark.root
def test_dump_is_the_same_with_the_fast_paths_off() -> None:
    """NetlinkKernel.dump inlines the fast decoder; switched off, it reads the same."""
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)
    h = NetlinkHarness("ctoff")
    try:
        made = sample_entries() + more_entries()
        assert h.other.apply([Event(EventKind.NEW, e) for e in made]).created == len(made)
        fast = h.k.dump()
        ct.use_fast_paths(False)
        try:
            generic = h.k.dump()
            assert ct.fast_paths.layouts == {}
        finally:
            ct.use_fast_paths(True)
        assert without_timeout(fast) == without_timeout(generic) and len(fast) == len(made)
    finally:
        h.close()
