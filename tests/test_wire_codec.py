"""The codec: round trips, sizes, MTU packing, and strict rejection of bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
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
    SeqAdj,
    TcpInfo,
    make_entry,
    make_tuple,
)
from snep.errors import DecodeError
from snep.wire import codec
from snep.wire.codec import (
    A_FLAGS,
    A_HELPER,
    A_META,
    A_NODE,
    A_ORIG_IPV4,
    A_RANGE,
    A_REPLY_IPV4,
    A_REPLY_IPV6,
    A_TCP,
    A_VERSION,
    FLAG_BULK_END,
    FLAG_BULK_START,
    FLAG_SEALED,
    HEADER_SIZE,
    decode_frame,
    encode_frame,
    encode_frames,
    encode_message,
)
from snep.wire.messages import (
    DEFAULT_MTU,
    Ack,
    Alive,
    Frame,
    Hello,
    MessageType,
    Nack,
    ResyncRequest,
)
from tests import strategies as s
from tests.wire_helpers import assert_valid, attr, decode_or_none, msg, raw_frame

STATE = MessageType.STATE
TCP4 = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)
TCP6 = make_entry("fd00::1", "fd00::2", Proto.TCP, 40000, 80)

ORIG4 = attr(A_ORIG_IPV4, bytes([10, 0, 0, 1, 10, 0, 0, 2, 6]) + struct.pack(">HH", 40000, 80))
META = attr(A_META, struct.pack(">IIIH", 14, 120, 0, 0))


# --- round trips ------------------------------------------------------------------


@given(s.frames())
@settings(max_examples=300)
def test_every_frame_round_trips(frame):
    assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("family", list(Family))
@pytest.mark.parametrize("proto", list(Proto))
@given(data=st.data())
@settings(max_examples=15)
def test_state_round_trips_for_every_family_and_protocol(family, proto, data):
    events = data.draw(st.lists(s.events(family=family, proto=proto), min_size=1, max_size=5))
    frame = Frame(STATE, 7, 3, 11, tuple(events))
    decoded = decode_frame(encode_frame(frame))
    assert decoded == frame
    for event in decoded.messages:
        assert len(event.entry.orig.src) == family.address_size
        assert event.entry.orig.family is family


@given(s.events(natted=True))
def test_natted_entries_carry_their_reply_tuple(event):
    entry = event.entry
    plain = Event(event.kind, entry._replace(reply=entry.orig.inverted()))
    tuple_attr = 15 if entry.orig.family is Family.IPV4 else 39
    assert len(encode_message(STATE, event)) == len(encode_message(STATE, plain)) + tuple_attr
    assert decode_frame(encode_frame(Frame(STATE, 1, 1, 1, (event,)))).messages == (event,)


@given(s.events(natted=False))
def test_plain_reply_tuples_are_left_out(event):
    data = encode_message(STATE, event)
    ((decoded,),) = [decode_frame(encode_frame(Frame(STATE, 1, 1, 1, (event,)))).messages]
    assert decoded == event
    tuple_size = 15 if event.entry.orig.family is Family.IPV4 else 39
    no_reply = len(data) - 3 - tuple_size - 16
    optional = 0
    entry = event.entry
    if entry.protoinfo is not None:
        optional += {TcpInfo: 7, SctpInfo: 11}.get(type(entry.protoinfo), 12)
    optional += 14 * (entry.seqadj_orig is not None) + 14 * (entry.seqadj_reply is not None)
    optional += 18 * bool(entry.labels) + (2 + len(entry.helper.encode())) * bool(entry.helper)
    assert no_reply == optional


def test_control_messages_round_trip():
    for message in (Ack(0, 2**32 - 1), Nack(2**32 - 1, 0), ResyncRequest(), Alive()):
        frame = Frame(codec.MESSAGE_TYPE_OF[type(message)], 2**32 - 1, 2**32 - 1, 2**32 - 1, (message,))
        assert decode_frame(encode_frame(frame)) == frame
    for hello in (Hello(9, 3, live=True, version=1), Hello(9, 3), Hello(9, 3, echo=2**64 - 1), Hello(9, 3, resigned=True), Hello(9, 3, live=True, resigned=True)):
        assert decode_frame(encode_frame(Frame(MessageType.HELLO, 3, 9, 0, (hello,)))).messages == (hello,)


def test_hello_not_live_omits_the_flags_attribute():
    data = encode_message(MessageType.HELLO, Hello(2, 1))
    assert bytes([A_FLAGS]) not in data[3 + 10 + 4 :]
    assert len(data) == 3 + 10 + 4 + 10  # NODE, VERSION, ECHO


def test_empty_state_frame_is_valid():
    frame = Frame(STATE, 1, 2, 3, (), FLAG_BULK_START | FLAG_BULK_END)
    assert decode_frame(encode_frame(frame)) == frame


def test_decoded_values_are_the_enum_members():
    (event,) = decode_frame(encode_frame(Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4),)))).messages
    assert event.kind is EventKind.NEW
    assert event.entry.orig.family is Family.IPV4
    assert type(event.entry.protoinfo.state).__name__ == "TcpState"


# --- sizes ------------------------------------------------------------------------


def test_bytes_per_synchronized_tcp_entry():
    # docs/wire.md "Size": 41 bytes (IPv4) and 65 (IPv6), against conntrackd's 68 and 92.
    assert len(encode_message(STATE, Event(EventKind.UPDATE, TCP4))) == 41
    assert len(encode_message(STATE, Event(EventKind.UPDATE, TCP6))) == 65


def test_a_default_mtu_frame_holds_34_plain_tcp_ipv4_entries_sealed_or_not():
    from snep.wire.auth import Key, Keyring

    events = [Event(EventKind.UPDATE, TCP4._replace(mark=i)) for i in range(100)]
    frames = encode_frames(STATE, 1, 1, 0, events, mtu=DEFAULT_MTU)
    assert [len(decode_frame(f).messages) for f in frames] == [34, 34, 32]
    key = Key(1, b"k" * 32)
    sealed = encode_frames(STATE, 1, 1, 0, events, mtu=DEFAULT_MTU, key=key)
    assert [len(decode_frame(f, Keyring([key])).messages) for f in sealed] == [34, 34, 32]


# --- packing across the MTU -------------------------------------------------------


@given(
    st.lists(s.events(), max_size=40),
    st.integers(HEADER_SIZE + 16 + 250, 3000),
    st.sampled_from([0, 5, 2**32 - 3, 2**32 - 1]),
    st.sampled_from([0, FLAG_BULK_START, FLAG_BULK_END, FLAG_BULK_START | FLAG_BULK_END]),
    st.booleans(),
)
@settings(max_examples=150)
def test_messages_are_packed_into_as_few_frames_as_fit(events, mtu, first_seq, flags, auth):
    from snep.wire.auth import Key, Keyring

    key = Key(4, b"k" * 32) if auth else None
    keyring = Keyring([key]) if auth else None
    frames = encode_frames(STATE, 9, 8, first_seq, events, mtu=mtu, key=key, flags=flags)
    decoded = [decode_frame(f, keyring) for f in frames]
    assert all(len(f) <= mtu for f in frames)
    assert [m for d in decoded for m in d.messages] == events
    assert [d.seq for d in decoded] == [(first_seq + i) % 2**32 for i in range(len(frames))]
    # greedy in order: the next frame's first message would not have fitted
    for f, nxt in zip(frames, decoded[1:]):
        assert len(f) + len(encode_message(STATE, nxt.messages[0])) > mtu
    assert all(d.messages for d in decoded) or len(frames) == 1
    # bulk flags mark only the first and the last frame
    starts = [bool(d.flags & FLAG_BULK_START) for d in decoded]
    ends = [bool(d.flags & FLAG_BULK_END) for d in decoded]
    assert starts == [bool(flags & FLAG_BULK_START)] + [False] * (len(frames) - 1)
    assert ends == [False] * (len(frames) - 1) + [bool(flags & FLAG_BULK_END)]
    assert all(bool(d.flags & FLAG_SEALED) == auth for d in decoded)


def test_control_frames_split_but_keep_their_seq():
    acks = [Ack(i, i + 1) for i in range(300)]
    frames = encode_frames(MessageType.ACK, 1, 1, 77, acks, mtu=200)
    decoded = [decode_frame(f) for f in frames]
    assert len(frames) > 1 and all(d.seq == 77 for d in decoded)
    assert [m for d in decoded for m in d.messages] == acks


def test_no_messages_give_one_empty_frame():
    (frame,) = encode_frames(STATE, 1, 1, 5, [], mtu=DEFAULT_MTU, flags=FLAG_BULK_END)
    assert decode_frame(frame) == Frame(STATE, 1, 1, 5, (), FLAG_BULK_END)


def test_a_message_larger_than_the_mtu_is_refused():
    big = Event(EventKind.NEW, TCP6._replace(helper="x" * 200))
    with pytest.raises(ValueError, match="does not fit"):
        encode_frames(STATE, 1, 1, 0, [big], mtu=200)
    with pytest.raises(ValueError, match="no room"):
        encode_frames(STATE, 1, 1, 0, [], mtu=HEADER_SIZE)


# --- encoding refuses what the format cannot carry ---------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        Frame(STATE, 1, 1, 1, (Ack(1, 2),)),
        Frame(MessageType.ACK, 1, 1, 1, (Event(EventKind.NEW, TCP4),)),
        Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4._replace(orig=TCP4.orig._replace(src=b"\x01" * 16))),)),
        Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4._replace(reply=TCP6.reply)),)),
        Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4._replace(orig=TCP4.orig._replace(sport=70000))),)),
        Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4._replace(labels=1 << 128)),)),
        Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4._replace(helper="h" * 256)),)),
        Frame(STATE, 1, 1, 1, (Event(9, TCP4),)),
        Frame(STATE, 2**32, 1, 1, ()),
        Frame(MessageType.ACK, 1, 1, 1, (), FLAG_BULK_START),
        Frame(STATE, 1, 1, 1, (), 0x80),
        Frame(STATE, 1, 1, 1, (), session=2**64),
        Frame(STATE, 1, 1, 1, (), counter=-1),
        Frame(STATE, 1, 1, 1, (), dst=2**32),
    ],
)
def test_encoding_refuses_values_the_format_cannot_carry(frame):
    with pytest.raises(ValueError):
        encode_frame(frame)


# --- strict decoding: precise errors ------------------------------------------------

GOOD_STATE = msg(1, ORIG4, META)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "truncated frame: 0 bytes"),
        (raw_frame(1, b"")[:39], "truncated frame: 39 bytes"),
        (raw_frame(1, b"", magic=b"XX"), "bad magic 5858"),
        (raw_frame(1, b"", version=1), "protocol version 1; this node speaks 2"),
        (raw_frame(1, b"", version=1)[:20], "protocol version 1; this node speaks 2"),
        (raw_frame(1, b"", version=3), "protocol version 3; this node speaks 2"),
        (raw_frame(0, b""), "unknown message type 0"),
        (raw_frame(9, b""), "unknown message type 9"),
        (raw_frame(1, b"", flags=0x10), "unknown flag bits 0x10"),
        (raw_frame(2, b"", flags=FLAG_BULK_END), "STATE-only flags 0x04 on a ACK frame"),
        (raw_frame(7, b"", flags=codec.FLAG_ACK_NOW), "STATE-only flags 0x08 on a REPORT frame"),
        (raw_frame(8, msg(0)), "REPORT_ACK message at offset 40 lacks the required REPORT"),
        (raw_frame(8, msg(0, attr(codec.A_REPORT, bytes(8)))), "REPORT at offset 43: length 8, expected 4"),
        (raw_frame(7, msg(0, GOOD_STATE)), "does not start with a 4-byte REPORT attribute"),
        (raw_frame(7, msg(1, attr(codec.A_REPORT, bytes(4)), msg(2, ORIG4, META))), "REPORT message at offset 40: kind 1, must be 0"),
        (raw_frame(7, msg(0, attr(codec.A_REPORT, bytes(4)), msg(1, ORIG4, META))), "exactly one UPDATE message, not 1"),
        (raw_frame(7, msg(0, attr(codec.A_REPORT, bytes(4)))), "exactly one UPDATE message, not 0"),
        (raw_frame(7, msg(0, attr(codec.A_REPORT, bytes(4)), msg(2, ORIG4, META), msg(2, ORIG4, META))), "exactly one UPDATE message, not 2"),
        (raw_frame(7, msg(0, attr(codec.A_REPORT, bytes(4)), msg(2, ORIG4))), "lacks the required META"),
        (raw_frame(1, b"", key_id=3), "key id 3 set on a frame without FLAG_SEALED"),
        (raw_frame(1, GOOD_STATE) + b"\x00", "1 bytes of trailing garbage"),
        (raw_frame(1, GOOD_STATE, length=len(GOOD_STATE) + 1), "truncated frame"),
        (raw_frame(1, GOOD_STATE[:-1], length=len(GOOD_STATE) - 1), "overruns the payload by 1"),
        (raw_frame(1, b"\x01\x00"), "truncated message header at offset 40"),
        (raw_frame(1, msg(0, ORIG4, META)), "unknown event kind 0"),
        (raw_frame(1, msg(4, ORIG4, META)), "unknown event kind 4"),
        (raw_frame(1, msg(1, ORIG4)), "lacks the required META"),
        (raw_frame(1, msg(1, META)), "lacks the required ORIG"),
        (raw_frame(1, msg(1, ORIG4, META, ORIG4)), "two original tuples"),
        (raw_frame(1, msg(1, ORIG4, META, META)), "META twice"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_HELPER, b"ftp"), attr(A_HELPER, b"ftp"))), "HELPER twice"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_TCP, bytes(5)), attr(A_TCP, bytes(5)))), "two protocol-info"),
        (raw_frame(1, msg(1, attr(A_ORIG_IPV4, ORIG4[2:-1]), META)), "ORIG_IPV4 at offset 43: length 12, expected 13"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_TCP, bytes(6)))), "TCP at offset .*: length 6, expected 5"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_TCP, b"\x0a" + bytes(4)))), "unknown TCP state 10"),
        (raw_frame(1, msg(1, ORIG4, META, attr(codec.A_SCTP, b"\x0a" + bytes(8)))), "unknown SCTP state 10"),
        (raw_frame(1, msg(1, ORIG4, META, attr(codec.A_DCCP, b"\x0a" + bytes(9)))), "unknown DCCP state 10"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_REPLY_IPV6, bytes(37)))), "reply tuple family differs"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_HELPER, b""))), "HELPER attribute at offset .* is empty"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_HELPER, b"\xff"))), "not UTF-8"),
        (raw_frame(1, msg(1, ORIG4, META, attr(0xC0, b"new"))), "unknown critical attribute 0xc0"),
        (raw_frame(1, msg(1, ORIG4, META, attr(A_RANGE, bytes(8)))), "RANGE .* does not belong in a STATE"),
        (raw_frame(2, msg(0, attr(A_ORIG_IPV4, bytes(13)))), "ORIG_IPV4 .* does not belong in a ACK"),
        # an attribute whose length runs past its message (nested lengths that lie)
        (raw_frame(1, msg(1, ORIG4, META)[:3] + ORIG4[:1] + b"\x20" + ORIG4[2:] + META), "overruns its message"),
        (raw_frame(1, struct.pack(">BH", 1, 1) + b"\x81"), "truncated attribute header"),
        (raw_frame(2, msg(1, attr(A_RANGE, bytes(8)))), "ACK message at offset 40: kind 1, must be 0"),
        (raw_frame(2, msg(0)), "ACK message at offset 40 lacks the required RANGE"),
        (raw_frame(3, msg(0, attr(A_RANGE, bytes(7)))), "RANGE at offset 43: length 7, expected 8"),
        (raw_frame(3, msg(0, attr(A_RANGE, bytes(8)), attr(A_RANGE, bytes(8)))), "RANGE twice"),
        (raw_frame(6, msg(0, attr(A_NODE, bytes(8)), attr(codec.A_ECHO, bytes(8)))), "lacks the required VERSION"),
        (raw_frame(6, msg(0, attr(A_VERSION, bytes(2)), attr(codec.A_ECHO, bytes(8)))), "lacks the required NODE"),
        (raw_frame(6, msg(0, attr(A_NODE, bytes(8)), attr(A_VERSION, bytes(2)))), "lacks the required ECHO"),
        (raw_frame(6, msg(0, attr(A_NODE, bytes(8)), attr(A_VERSION, bytes(2)), attr(codec.A_ECHO, bytes(4)))), "ECHO at offset .*: length 4, expected 8"),
        (raw_frame(5, msg(0, attr(0x81, bytes(13)))), "ORIG_IPV4 .* does not belong in a ALIVE"),
        (raw_frame(4, msg(0, attr(0xFF, b""))), "unknown critical attribute 0xff"),
    ],
)
def test_malformed_frames_are_rejected_with_a_precise_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_frame(data)


def test_unknown_non_critical_attributes_are_skipped():
    frame = decode_frame(raw_frame(1, msg(2, attr(0x7F, b"future"), ORIG4, attr(0x40, b""), META)))
    (event,) = frame.messages
    assert event.kind is EventKind.UPDATE
    assert event.entry.orig == make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)
    assert event.entry.reply == event.entry.orig.inverted()
    hello = decode_frame(
        raw_frame(6, msg(0, attr(0x33, b"x" * 200), attr(A_NODE, bytes(8)), attr(A_VERSION, b"\x00\x01"), attr(codec.A_ECHO, bytes(7) + b"\x09")))
    )
    assert hello.messages == (Hello(0, 0, False, 1, 9),)


def test_attributes_in_any_order_and_an_explicit_plain_reply_decode_the_same():
    plain_reply = attr(A_REPLY_IPV4, bytes([10, 0, 0, 2, 10, 0, 0, 1, 6]) + struct.pack(">HH", 80, 40000))
    a = decode_frame(raw_frame(1, msg(1, ORIG4, META)))
    b = decode_frame(raw_frame(1, msg(1, META, plain_reply, ORIG4)))
    assert a == b


def test_an_unexpected_error_inside_the_decoder_still_surfaces_as_decode_error(monkeypatch):
    def broken(*args):
        raise IndexError("a check the decoder forgot")

    data = encode_frame(Frame(MessageType.ACK, 1, 1, 1, (Ack(1, 2),)))
    monkeypatch.setattr(codec, "_decode_control", broken)
    with pytest.raises(DecodeError, match=codec.DECODER_BUG):
        decode_frame(data)


def test_decoder_accepts_bytearray_and_memoryview_but_not_text():
    data = encode_frame(Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, TCP4),)))
    assert decode_frame(bytearray(data)) == decode_frame(memoryview(data)) == decode_frame(data)
    with pytest.raises(DecodeError, match="must be bytes"):
        decode_frame("SN")  # type: ignore[arg-type]


# --- strict decoding: properties --------------------------------------------------


@given(s.frames())
@settings(max_examples=60)
def test_every_truncation_and_extension_is_rejected(frame):
    data = encode_frame(frame)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_frame(data[:cut])
    with pytest.raises(DecodeError, match="trailing garbage"):
        decode_frame(data + b"\x00")


@given(st.binary(max_size=200))
@example(b"")
@example(raw_frame(1, b""))
def test_any_bytes_decode_to_a_valid_frame_or_raise_decode_error(data):
    frame = decode_or_none(data)
    if frame is not None:
        assert_valid(frame)


@given(st.sampled_from(list(MessageType)), st.integers(0, 15), st.binary(max_size=300))
def test_any_payload_behind_a_valid_header_decodes_or_raises(mtype, flags, payload):
    frame = decode_or_none(raw_frame(mtype, payload, flags=flags & ~FLAG_SEALED))
    if frame is not None:
        assert_valid(frame)


attribute_soup = st.lists(
    st.one_of(
        st.builds(attr, st.sampled_from(sorted(codec.ATTRIBUTE_NAMES)), st.binary(max_size=40)),
        st.builds(attr, st.integers(0, 255), st.binary(max_size=40)),
        st.builds(
            lambda a, n: attr(a, bytes(n)),
            st.sampled_from(sorted(codec.ATTRIBUTE_NAMES)),
            st.sampled_from([2, 4, 5, 8, 9, 10, 12, 13, 14, 16, 37]),
        ),
    ),
    max_size=8,
)


@given(st.sampled_from(list(MessageType)), st.lists(st.tuples(st.integers(0, 4), attribute_soup), max_size=4))
@settings(max_examples=300)
def test_well_framed_messages_of_any_attributes_decode_or_raise(mtype, messages):
    payload = b"".join(msg(kind, *attrs) for kind, attrs in messages)
    frame = decode_or_none(raw_frame(mtype, payload))
    if frame is not None:
        assert_valid(frame)


@given(s.frames(), st.data())
@settings(max_examples=300)
def test_any_single_byte_mutation_decodes_to_a_valid_frame_or_raises(frame, data):
    raw = encode_frame(frame)
    position = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = raw[:position] + bytes([value]) + raw[position + 1 :]
    decoded = decode_or_none(mutated)
    if decoded is not None:
        assert_valid(decoded)


def test_entries_are_values_the_rest_of_snep_understands():
    # NAT, seqadj, labels and helper in one entry, checked field by field.
    entry = make_entry(
        "10.0.0.1",
        "192.0.2.10",
        Proto.TCP,
        1025,
        21,
        reply=ConnTuple(Family.IPV4, bytes([10, 1, 1, 1]), bytes([203, 0, 113, 5]), 6, 21, 61000),
        labels=(1 << 127) | 5,
        helper="ftp",
        seqadj_orig=SeqAdj(1, 2, 3),
        zone=7,
        mark=0xDEADBEEF,
    )
    (event,) = decode_frame(encode_frame(Frame(STATE, 1, 1, 1, (Event(EventKind.NEW, entry),)))).messages
    assert event.entry == entry
    assert event.entry.nat().snat == (bytes([203, 0, 113, 5]), 61000)
    assert event.entry.nat().dnat == (bytes([10, 1, 1, 1]), 21)
    assert isinstance(event.entry, Entry)


def test_sctp_entry_round_trips():
    entry = make_entry("fd00::1", "fd00::2", Proto.SCTP, 5000, 5001, protoinfo=SctpInfo(SctpState.ESTABLISHED, 1, 2**32 - 1))
    frame = Frame(STATE, 1, 1, 1, (Event(EventKind.DESTROY, entry),))
    assert decode_frame(encode_frame(frame)) == frame


# --- the examples in docs/wire.md are what the codec produces ------------------------


def _doc_example(after: str) -> bytes:
    """The bytes of the first code block after the line starting with ``after``."""
    import re
    from pathlib import Path

    text = Path(__file__).parent.parent.joinpath("docs", "wire.md").read_text()
    block = text[text.index(after) :].split("```", 2)[1]
    hex_bytes = [m.group(1) for m in (re.match(r"((?:[0-9a-f]{2} )*[0-9a-f]{2})( {2,}|$)", line) for line in block.splitlines()) if m]
    return bytes.fromhex(" ".join(hex_bytes))


def test_documented_examples_match_the_codec():
    from snep.wire.auth import Key, Keyring

    state = Frame(STATE, 1, 5, 42, (Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)),),
                  session=0x0102030405060708, counter=9)
    assert _doc_example("Worked example") == encode_frame(state)
    key = Key(1, b"0123456789abcdef")
    ack = Frame(MessageType.ACK, 2, 5, 42, (Ack(40, 42),), dst=1, session=0x1122334455667788, counter=3)
    assert _doc_example("Example (ACK") == encode_frame(ack, key)
    assert decode_frame(_doc_example("Example (ACK"), Keyring([key])).messages == (Ack(40, 42),)


# --- the fixed-layout decoding of plain IPv4 TCP and UDP messages ------------------


def _plain(entry: Entry) -> Entry:
    return entry._replace(seqadj_orig=None, seqadj_reply=None, labels=0, helper="")


# the fixed layouts (plain IPv4 TCP and UDP) and their neighbours (ICMP, NAT, extras)
plain_events = st.builds(
    Event,
    s.event_kinds,
    st.sampled_from([Proto.TCP, Proto.UDP, Proto.ICMP]).flatmap(
        lambda proto: s.entries(family=Family.IPV4, proto=proto, natted=False).map(_plain)
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(plain_events, s.events()), max_size=8), st.data())
def test_the_fixed_layout_path_decodes_as_the_general_path(evs, data):
    """_decode_state's one-struct path for plain IPv4 TCP/UDP messages against the
    general attribute walk, on valid payloads and on payloads with a byte changed:
    the same events, or a DecodeError from both."""
    from snep.wire.codec import _decode_state, encode_state

    payload = bytearray(b"".join(encode_state(e) for e in evs))
    if payload and data.draw(st.booleans()):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    buf = bytes(payload)
    results = []
    for fast in (True, False):
        try:
            results.append(_decode_state(buf, 0, len(buf), fast=fast))
        except DecodeError:
            results.append(DecodeError)
    assert results[0] == results[1]
    if results[0] is not DecodeError:
        assert [type(v) for e in results[0] for v in e.entry] == [type(v) for e in results[1] for v in e.entry]


def test_the_fixed_layout_path_is_taken_for_plain_tcp_and_udp():
    from snep.wire.codec import _decode_state, encode_state

    evs = [Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 80)),
           Event(EventKind.UPDATE, make_entry("10.0.0.1", "10.0.0.3", Proto.UDP, 1000, 53)),
           Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.3", Proto.ICMP, 7, 8 << 8))]
    buf = b"".join(encode_state(e) for e in evs)
    assert _decode_state(buf, 0, len(buf)) == evs
