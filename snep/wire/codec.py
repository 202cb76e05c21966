"""The sync protocol's byte format: frames, messages and attributes (docs/wire.md).

A frame is a 40-byte header, a payload of messages, and (when sealed) a 16-byte
AEAD tag: the payload is then encrypted, and header and payload authenticated
(ChaCha20-Poly1305, snep.wire.auth). A message is a 3-byte header (kind, length) and type-length-value
attributes of 1-byte type and 1-byte length. Bit 7 of an attribute type is the
*critical* bit: a decoder that does not know a critical attribute rejects the
message; one that does not know a non-critical attribute skips it (forward
compatibility). Which attributes a message must hold is fixed per message type.

The layout is chosen for speed in pure Python and for size: an entry's common
fields travel in a few fixed-layout attributes that one precompiled ``struct``
call each packs or unpacks (the whole original tuple with ports; status, timeout,
mark and zone together; TCP state with window scales and flags), the reply tuple
is left out when it is the inverted original (no NAT), and optional fields are
left out when they hold their default.

Decoding is strict: anything malformed raises :class:`~snep.errors.DecodeError`
(:class:`~snep.errors.AuthError` for sealing problems) with the offset and the reason,
nothing is returned half-decoded, and nothing else escapes. Encoding a value that
does not fit the format (an address of the wrong length, a port above 65535 ...)
raises ``ValueError``: that is a bug of the caller, not bad input from the network.
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate
from typing import NamedTuple

from snep.entry import (
    ICMP_PROTOS,
    ConnTuple,
    DccpInfo,
    DccpState,
    Entry,
    Event,
    EventKind,
    Family,
    Key as ConnKey,
    SctpInfo,
    SctpState,
    SeqAdj,
    TcpInfo,
    TcpState,
)
from snep.errors import AuthError, DecodeError
from snep.wire.auth import TAG_SIZE, InvalidTag, Key, Keyring, frame_aead, nonce
from snep.wire.messages import (
    EVERY_PEER,
    FLAG_ACK_NOW,
    FLAG_BULK_END,
    FLAG_BULK_START,
    FLAG_SEALED,
    MESSAGE_TYPE_OF,
    PROTOCOL_VERSION,
    Ack,
    Alive,
    Frame,
    Hello,
    Message,
    MessageType,
    Nack,
    Report,
    ReportAck,
    ResyncRequest,
)

# --- frame header ---------------------------------------------------------------

MAGIC = b"SN"
# magic, version, type, flags, key id, payload length, src node id, dst node id,
# session, counter, epoch, seq: 40 bytes, the AEAD's associated data
HEADER = struct.Struct(">2sBBBBHIIQQII")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 0xFFFF

_KNOWN_FLAGS = FLAG_SEALED | FLAG_BULK_START | FLAG_BULK_END | FLAG_ACK_NOW
_BUILD_FLAGS = FLAG_BULK_START | FLAG_BULK_END | FLAG_ACK_NOW
_BULK_FLAGS = FLAG_BULK_START | FLAG_BULK_END
_STATE_FLAGS = _BULK_FLAGS | FLAG_ACK_NOW  # (the flags only a STATE frame may carry)

# --- message header and attributes ----------------------------------------------

MSG_HEADER = struct.Struct(">BH")  # kind (EventKind for STATE, else 0), length
MSG_HEADER_SIZE = MSG_HEADER.size
CRITICAL = 0x80  # attribute type bit 7: a decoder must understand it or reject

# Attribute types (the whole byte, critical bit included). One namespace for all
# message types; each message type says which of them it allows.
A_ORIG_IPV4 = 0x81
A_ORIG_IPV6 = 0x82
A_REPLY_IPV4 = 0x83
A_REPLY_IPV6 = 0x84
A_META = 0x85
A_TCP = 0x86
A_SCTP = 0x87
A_DCCP = 0x88
A_SEQADJ_ORIG = 0x89
A_SEQADJ_REPLY = 0x8A
A_LABELS = 0x0B
A_HELPER = 0x0C
A_RANGE = 0x8D
A_NODE = 0x8E
A_FLAGS = 0x0F  # HELLO: bit 0 = live
A_VERSION = 0x90
A_ECHO = 0x91  # HELLO: the addressee's session the sender answers (0: none)
A_REPORT = 0x92  # REPORT, REPORT_ACK: the report's id

ATTRIBUTE_NAMES = {
    A_ORIG_IPV4: "ORIG_IPV4",
    A_ORIG_IPV6: "ORIG_IPV6",
    A_REPLY_IPV4: "REPLY_IPV4",
    A_REPLY_IPV6: "REPLY_IPV6",
    A_META: "META",
    A_TCP: "TCP",
    A_SCTP: "SCTP",
    A_DCCP: "DCCP",
    A_SEQADJ_ORIG: "SEQADJ_ORIG",
    A_SEQADJ_REPLY: "SEQADJ_REPLY",
    A_LABELS: "LABELS",
    A_HELPER: "HELPER",
    A_RANGE: "RANGE",
    A_NODE: "NODE",
    A_FLAGS: "FLAGS",
    A_VERSION: "VERSION",
    A_ECHO: "ECHO",
    A_REPORT: "REPORT",
}

_TUPLE4 = struct.Struct(">4s4sBHH")  # src, dst, proto, sport, dport: 13 bytes
_TUPLE6 = struct.Struct(">16s16sBHH")  # 37 bytes
_META = struct.Struct(">IIIH")  # status, timeout, mark, zone: 14 bytes
_TCP = struct.Struct(">BBBBB")  # state, wscale orig/reply, flags orig/reply
_ORIG4_META = ORIG4_META = struct.Struct(">4s4sBHHxxIIIH")  # ORIG_IPV4 value, META header, value
# The whole of the two commonest messages after their header, as the encoder lays them
# out: ORIG_IPV4 and META (UDP, 31 bytes), and TCP after them (TCP, 38 bytes).
_ORIG4_META_TCP = ORIG4_META_TCP = struct.Struct(">4s4sBHHxxIIIHxxBBBBB")
_SCTP = struct.Struct(">BII")  # state, vtag orig, vtag reply
_DCCP = struct.Struct(">BBQ")  # state, role, handshake seq
_SEQADJ = struct.Struct(">III")  # correction pos, offset before, offset after
_RANGE = struct.Struct(">II")  # first, last
_NODE = struct.Struct(">II")  # node id, epoch
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
LABELS_SIZE = 16

# Encoding: type and length bytes packed by the same struct call as the value.
_E_ORIG4_META = struct.Struct(">BB4s4sBHHBBIIIH")
_E_ORIG6_META = struct.Struct(">BB16s16sBHHBBIIIH")
_E_TUPLE4 = struct.Struct(">BB4s4sBHH")
_E_TUPLE6 = struct.Struct(">BB16s16sBHH")
_E_TCP = struct.Struct(">BBBBBBB")
_E_SCTP = struct.Struct(">BBBII")
_E_DCCP = struct.Struct(">BBBBQ")
_E_SEQADJ = struct.Struct(">BBIII")
_E_RANGE = struct.Struct(">BBII")
_E_NODE = struct.Struct(">BBII")
_E_U64 = struct.Struct(">BBQ")
_U64 = struct.Struct(">Q")
HELLO_LIVE = 0x1  # A_FLAGS of a HELLO: the sender follows a live primary of its newest epoch
HELLO_RESIGNED = 0x2  # ... the sender resigned its newest epoch; the header's seq is its stream's last
_E_U32 = struct.Struct(">BBI")
_E_U16 = struct.Struct(">BBH")

#: Marks a DecodeError that a missing explicit check let through (a bug to fix).
DECODER_BUG = "malformed payload that the decoder failed to check explicitly"

_IPV4 = Family.IPV4
_IPV6 = Family.IPV6
_new = tuple.__new__
_EVENT_KINDS = (None, EventKind.NEW, EventKind.UPDATE, EventKind.DESTROY)
_TCP_STATES = tuple(TcpState)
_SCTP_STATES = tuple(SctpState)
_DCCP_STATES = tuple(DccpState)
_MESSAGE_TYPES = (None,) + tuple(MessageType)
_MAX_TYPE = len(_MESSAGE_TYPES) - 1


def _attr_name(atype: int) -> str:
    return ATTRIBUTE_NAMES.get(atype, f"0x{atype:02x}")


# --- encoding ---------------------------------------------------------------------


def _tuple_attr(atype4: int, t: ConnTuple) -> bytes:
    family, src, dst, proto, sport, dport = t
    if family == 2:
        if len(src) != 4 or len(dst) != 4:
            raise ValueError(f"IPv4 tuple with address lengths {len(src)}/{len(dst)}: {t!r}")
        return _E_TUPLE4.pack(atype4, 13, src, dst, proto, sport, dport)
    if family == 10:
        if len(src) != 16 or len(dst) != 16:
            raise ValueError(f"IPv6 tuple with address lengths {len(src)}/{len(dst)}: {t!r}")
        return _E_TUPLE6.pack(atype4 + 1, 37, src, dst, proto, sport, dport)
    raise ValueError(f"tuple of unknown family {family!r}")


def _encode_event(event: Event) -> bytes:
    kind, entry = event
    orig, reply, zone, status, timeout, mark, pinfo, sa_orig, sa_reply, labels, helper = entry
    family, src, dst, proto, sport, dport = orig
    if family == 2:
        if len(src) != 4 or len(dst) != 4:
            raise ValueError(f"IPv4 tuple with address lengths {len(src)}/{len(dst)}")
        body = _E_ORIG4_META.pack(
            A_ORIG_IPV4, 13, src, dst, proto, sport, dport, A_META, 14, status, timeout, mark, zone
        )
    elif family == 10:
        if len(src) != 16 or len(dst) != 16:
            raise ValueError(f"IPv6 tuple with address lengths {len(src)}/{len(dst)}")
        body = _E_ORIG6_META.pack(
            A_ORIG_IPV6, 37, src, dst, proto, sport, dport, A_META, 14, status, timeout, mark, zone
        )
    else:
        raise ValueError(f"entry of unknown family {family!r}")
    if pinfo is not None:
        ptype = type(pinfo)
        if ptype is TcpInfo:
            body += _E_TCP.pack(A_TCP, 5, *pinfo)
        elif ptype is SctpInfo:
            body += _E_SCTP.pack(A_SCTP, 9, *pinfo)
        elif ptype is DccpInfo:
            body += _E_DCCP.pack(A_DCCP, 10, *pinfo)
        else:
            raise ValueError(f"unknown protoinfo {pinfo!r}")
    if reply != orig.inverted():
        if reply[0] != family:
            raise ValueError(f"reply family {reply[0]!r} differs from original family {family!r}")
        body += _tuple_attr(A_REPLY_IPV4, reply)
    if sa_orig is not None:
        body += _E_SEQADJ.pack(A_SEQADJ_ORIG, 12, *sa_orig)
    if sa_reply is not None:
        body += _E_SEQADJ.pack(A_SEQADJ_REPLY, 12, *sa_reply)
    if labels:
        body += bytes((A_LABELS, LABELS_SIZE)) + labels.to_bytes(LABELS_SIZE, "big")
    if helper:
        name = helper.encode("utf-8")
        if len(name) > 255:
            raise ValueError(f"helper name of {len(name)} bytes (at most 255)")
        body += bytes((A_HELPER, len(name))) + name
    if not 1 <= kind <= 3:
        raise ValueError(f"unknown event kind {kind!r}")
    return MSG_HEADER.pack(kind, len(body)) + body


def _encode_control(message: Message) -> bytes:
    mtype = type(message)
    if mtype is Ack or mtype is Nack:
        body = _E_RANGE.pack(A_RANGE, 8, message.first, message.last)  # type: ignore[union-attr]
    elif mtype is Hello:
        body = _E_NODE.pack(A_NODE, 8, message.newest_owner, message.newest_term)  # type: ignore[union-attr]
        body += _E_U16.pack(A_VERSION, 2, message.version)  # type: ignore[union-attr]
        body += _E_U64.pack(A_ECHO, 8, message.echo)  # type: ignore[union-attr]
        flags = (HELLO_LIVE if message.live else 0) | (HELLO_RESIGNED if message.resigned else 0)  # type: ignore[union-attr]
        if flags:
            body += _E_U32.pack(A_FLAGS, 4, flags)
    elif mtype is Report:
        # the id, then the entry as one STATE message (an UPDATE): one entry codec
        body = _E_U32.pack(A_REPORT, 4, message.report_id) + _encode_event(Event(EventKind.UPDATE, message.entry))  # type: ignore[union-attr]
    elif mtype is ReportAck:
        body = _E_U32.pack(A_REPORT, 4, message.report_id)  # type: ignore[union-attr]
    else:  # ResyncRequest, Alive: no attributes
        body = b""
    return MSG_HEADER.pack(0, len(body)) + body


def encode_message(mtype: MessageType, message: Message) -> bytes:
    """One message (header and attributes) of a frame of type ``mtype``."""
    if MESSAGE_TYPE_OF.get(type(message)) is not mtype:
        raise ValueError(f"{type(message).__name__} message in a {mtype.name} frame")
    try:
        if mtype is MessageType.STATE:
            return _encode_event(message)  # type: ignore[arg-type]
        return _encode_control(message)
    except (struct.error, OverflowError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot encode {message!r}: {exc}") from exc


def _check_header_fields(mtype: MessageType, node_id: int, dst: int, epoch: int, seq: int, flags: int) -> None:
    if flags & ~_BUILD_FLAGS:
        raise ValueError(f"unknown or sealing frame flags {flags:#x} (sealing is seal()'s)")
    if flags & _STATE_FLAGS and mtype is not MessageType.STATE:
        raise ValueError(f"STATE-only flags {flags & _STATE_FLAGS:#x} on a {mtype.name} frame")
    if (node_id | dst | epoch | seq) >> 32:  # (a negative one too: its shift is -1)
        for name, value in (("node id", node_id), ("dst", dst), ("epoch", epoch), ("seq", seq)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} {value} does not fit 32 bits")


class Built(NamedTuple):
    """A frame built once and sealed at each transmission: every header field but the
    sealing ones (session, counter, key id, SEALED), and the plaintext payload.

    The resend queue keeps these: a retransmission seals the frame again with the
    next counter of the session, so that no counter (AEAD nonce) is ever reused."""

    type: int
    flags: int
    node_id: int
    dst: int
    epoch: int
    seq: int
    payload: bytes


def seal(built: Built, session: int, counter: int, key: Key | None = None) -> bytes:
    """The datagram of ``built``, numbered ``counter`` in the sender's ``session``:
    encrypted and authenticated with the frame key of ``key`` (SEALED), or plain
    without one. The header is the AEAD's associated data."""
    mtype, flags, node_id, dst, epoch, seq, payload = built
    try:
        if key is None:
            return HEADER.pack(MAGIC, PROTOCOL_VERSION, mtype, flags, 0, len(payload), node_id, dst, session, counter, epoch, seq) + payload
        header = HEADER.pack(
            MAGIC, PROTOCOL_VERSION, mtype, flags | FLAG_SEALED, key.key_id, len(payload), node_id, dst, session, counter, epoch, seq
        )
    except struct.error as exc:
        raise ValueError(f"cannot seal a frame with session {session}, counter {counter}: {exc}") from None
    return header + frame_aead(key, node_id, session).encrypt(nonce(counter), payload, header)


def build_frame(frame: Frame) -> Built:
    """The unsealed frame of ``frame`` (its session, counter and SEALED flag aside).

    Does not split: a frame whose messages exceed the 65535-byte payload limit is a
    ``ValueError``. Use :func:`build_frames` to pack messages up to an MTU.
    """
    mtype = MessageType(frame.type)
    flags = frame.flags & ~FLAG_SEALED
    _check_header_fields(mtype, frame.node_id, frame.dst, frame.epoch, frame.seq, flags)
    payload = b"".join([encode_message(mtype, m) for m in frame.messages])
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    return Built(mtype, flags, frame.node_id, frame.dst, frame.epoch, frame.seq, payload)


def encode_frame(frame: Frame, key: Key | None = None) -> bytes:
    """The datagram of one frame, with its own session and counter; sealed with ``key``."""
    return seal(build_frame(frame), frame.session, frame.counter, key)


_typeof = type  # build_frames' parameter ``type`` (the API's name) shadows the builtin


def frame_overhead(sealed: bool = False) -> int:
    """Bytes a frame adds around its messages: header, and tag when sealed."""
    return HEADER_SIZE + (TAG_SIZE if sealed else 0)


def build_frames(
    type: MessageType,  # noqa: A002 - the API's name (team notes)
    node_id: int,
    epoch: int,
    first_seq: int,
    messages: Iterable[Message],
    *,
    mtu: int,
    sealed: bool = False,
    flags: int = 0,
    dst: int = EVERY_PEER,
) -> list[Built]:
    """Pack ``messages`` into as few frames as fit ``mtu`` bytes once sealed (or not), in order.

    STATE frames get consecutive sequence numbers from ``first_seq`` (wrapping at
    2**32); other frames all carry ``first_seq``. ``FLAG_BULK_START`` goes on the
    first frame only, ``FLAG_BULK_END`` on the last only, other flags on every frame.
    No messages give one frame without messages (an empty dump's BULK_END).
    """
    mtype = MessageType(type)
    _check_header_fields(mtype, node_id, dst, epoch, first_seq, flags)
    room = min(mtu - frame_overhead(sealed), MAX_PAYLOAD)
    if room < MSG_HEADER_SIZE:
        raise ValueError(f"an MTU of {mtu} leaves no room for a message")
    if mtype is MessageType.STATE:
        encoded: Iterable[bytes] = map(encode_state, messages)
    else:
        encoded = (encode_message(mtype, message) for message in messages)
    return _pack(mtype, node_id, epoch, first_seq, encoded, room, mtu, flags, dst)


def build_state_frames(
    node_id: int,
    epoch: int,
    first_seq: int,
    messages: Iterable[bytes],
    *,
    mtu: int,
    sealed: bool = False,
    flags: int = 0,
    dst: int = EVERY_PEER,
) -> list[Built]:
    """:func:`build_frames` of STATE messages encoded already (:func:`encode_state`):
    a sender that keeps each entry's message packs a dump without encoding it again."""
    _check_header_fields(MessageType.STATE, node_id, dst, epoch, first_seq, flags)
    room = min(mtu - frame_overhead(sealed), MAX_PAYLOAD)
    if room < MSG_HEADER_SIZE:
        raise ValueError(f"an MTU of {mtu} leaves no room for a message")
    return _pack(MessageType.STATE, node_id, epoch, first_seq, messages, room, mtu, flags, dst)


def encode_state(event: Message) -> bytes:
    """One STATE message (header and attributes) of ``event``, as a STATE frame carries it."""
    if _typeof(event) is not Event:
        raise ValueError(f"{_typeof(event).__name__} message in a STATE frame")
    try:
        return _encode_event(event)  # type: ignore[arg-type]
    except (struct.error, OverflowError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot encode {event!r}: {exc}") from exc


def _pack(
    mtype: MessageType,
    node_id: int,
    epoch: int,
    first_seq: int,
    messages: Iterable[bytes],
    room: int,
    mtu: int,
    flags: int,
    dst: int,
) -> list[Built]:
    """Encoded messages, in order, into as few payloads of ``room`` bytes as they fit
    (cut where the running total of sizes passes each payload's end: work per frame,
    not per message)."""
    parts = messages if isinstance(messages, list) else list(messages)
    ends = list(accumulate(map(len, parts)))  # (ends[i]: bytes up to and with message i)
    payloads: list[bytes] = []
    first = 0
    used = 0
    while first < len(parts):
        stop = bisect_right(ends, used + room, first)
        if stop == first:
            raise ValueError(f"a {len(parts[first])}-byte message does not fit an MTU of {mtu}")
        payloads.append(b"".join(parts[first:stop]))
        used = ends[stop - 1]
        first = stop
    if not payloads:
        payloads.append(b"")
    last = len(payloads) - 1
    base = flags & ~_BULK_FLAGS
    frames = []
    is_state = mtype is MessageType.STATE
    for i, payload in enumerate(payloads):
        f = base
        if i == 0:
            f |= flags & FLAG_BULK_START
        if i == last:
            f |= flags & FLAG_BULK_END
        seq = (first_seq + i) & 0xFFFFFFFF if is_state else first_seq
        frames.append(_new(Built, (mtype, f, node_id, dst, epoch, seq, payload)))
    return frames


def encode_frames(
    type: MessageType,  # noqa: A002 - the API's name (team notes)
    node_id: int,
    epoch: int,
    first_seq: int,
    messages: Iterable[Message],
    *,
    mtu: int,
    key: Key | None = None,
    flags: int = 0,
    dst: int = EVERY_PEER,
    session: int = 0,
    first_counter: int = 0,
) -> list[bytes]:
    """:func:`build_frames`, each frame sealed at once: counters from ``first_counter``."""
    built = build_frames(type, node_id, epoch, first_seq, messages, mtu=mtu, sealed=key is not None, flags=flags, dst=dst)
    return [seal(frame, session, first_counter + i, key) for i, frame in enumerate(built)]


# --- decoding ---------------------------------------------------------------------


def decode_frame(data: bytes, keyring: Keyring | None = None, *, records: bool = False) -> Frame:
    """The frame in ``data``, or :class:`DecodeError` / :class:`AuthError`.

    With a ``keyring``, only frames sealed with one of its keys are accepted (and
    opened). Without one, sealed frames are rejected too (they cannot be opened).
    ``records``: a STATE frame whose messages are all plain NEW or UPDATE records
    (:func:`split_plain`) is not decoded into events: its ``records`` are those
    messages, as bytes, and its ``messages`` are empty (the backup keeps records).
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"frame must be bytes, not {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size >= 3 and data[:2] == MAGIC and data[2] != PROTOCOL_VERSION:
        # (before the size check: a frame of another version has another header size)
        raise DecodeError(f"protocol version {data[2]}; this node speaks {PROTOCOL_VERSION}")
    if size < HEADER_SIZE:
        raise DecodeError(f"truncated frame: {size} bytes, the header alone is {HEADER_SIZE}")
    magic, version, mtype, flags, key_id, plen, node_id, dst, session, counter, epoch, seq = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {magic.hex()} (expected {MAGIC.hex()})")
    if not 1 <= mtype <= _MAX_TYPE:
        raise DecodeError(f"unknown message type {mtype}")
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"unknown flag bits {flags & ~_KNOWN_FLAGS:#04x} in flags {flags:#04x}")
    if flags & _STATE_FLAGS and mtype != MessageType.STATE:
        raise DecodeError(f"STATE-only flags {flags & _STATE_FLAGS:#04x} on a {_MESSAGE_TYPES[mtype].name} frame")
    sealed = flags & FLAG_SEALED
    end = HEADER_SIZE + plen
    expected = end + TAG_SIZE if sealed else end
    if size != expected:
        if size < expected:
            raise DecodeError(
                f"truncated frame: {size} bytes, header says {expected} "
                f"({plen} payload{' + tag' if sealed else ''})"
            )
        raise DecodeError(f"{size - expected} bytes of trailing garbage after {expected}-byte frame")
    if sealed:
        if keyring is None:
            raise AuthError(f"sealed frame (key id {key_id}) but no keys are configured")
        key = keyring.get(key_id)
        if key is None:
            raise AuthError(f"unknown key id {key_id}")
        header = data[:HEADER_SIZE]
        try:
            payload = frame_aead(key, node_id, session).decrypt(nonce(counter), data[HEADER_SIZE:], header)
        except InvalidTag:
            raise AuthError(f"bad tag (key id {key_id}): forged, corrupted or sealed with another key") from None
    else:
        if key_id:
            raise DecodeError(f"key id {key_id} set on a frame without FLAG_SEALED")
        if keyring is not None:
            raise AuthError("frame not sealed, but keys are configured")
        payload = data[HEADER_SIZE:end] if records and mtype == 1 else b""
    if records and mtype == 1:
        found = split_plain(payload)
        if found is not None:
            return Frame(MessageType.STATE, node_id, epoch, seq, (), flags, dst, session, counter, tuple(found))
    if sealed:
        data = data[:HEADER_SIZE] + payload  # (offsets in errors stay the frame's)
    try:
        if mtype == 1:
            messages: tuple[Message, ...] = tuple(_decode_state(data, HEADER_SIZE, end))
        elif mtype == MessageType.REPORT:
            messages = tuple(_decode_reports(data, HEADER_SIZE, end))
        else:
            messages = tuple(_decode_control(_MESSAGE_TYPES[mtype], data, HEADER_SIZE, end))
    except (struct.error, ValueError, IndexError, TypeError, OverflowError) as exc:
        # Every check above is explicit; this net keeps the contract (only DecodeError
        # escapes) should one be missing. The fuzz target and the tests fail on it.
        raise DecodeError(f"{DECODER_BUG}: {exc!r}") from exc
    return Frame(_MESSAGE_TYPES[mtype], node_id, epoch, seq, messages, flags, dst, session, counter)


def _decode_state(buf: bytes, off: int, end: int, fast: bool = True) -> list[Event]:
    """Every STATE message in ``buf[off:end]``, as events.

    ``fast``: messages laid out exactly as the encoder lays out plain IPv4 TCP and UDP
    entries (no NAT, nothing optional) are read by one ``struct`` call each; the tests
    hold that path equal to the general one (``fast=False``)."""
    events: list[Event] = []
    append = events.append
    unpack_tuple4 = _TUPLE4.unpack_from
    unpack_meta = _META.unpack_from
    unpack_tcp = _TCP.unpack_from
    msg_header = MSG_HEADER.unpack_from
    unpack_orig4_meta = _ORIG4_META.unpack_from
    unpack_whole_tcp = _ORIG4_META_TCP.unpack_from
    ipv4 = _IPV4
    kinds = _EVENT_KINDS
    tcp_states = _TCP_STATES
    n_tcp_states = len(tcp_states)
    icmp = ICMP_PROTOS
    while off < end:
        if off + 3 > end:
            raise DecodeError(f"truncated message header at offset {off}: {end - off} bytes left")
        start = off
        kind, mlen = msg_header(buf, off)
        off += 3
        mend = off + mlen
        if mend > end:
            raise DecodeError(f"message at offset {start}: length {mlen} overruns the payload by {mend - end}")
        if not 1 <= kind <= 3:
            raise DecodeError(f"message at offset {start}: unknown event kind {kind}")
        if (
            fast
            and (mlen == 38 or mlen == 31)
            and buf[off] == A_ORIG_IPV4
            and buf[off + 1] == 13
            and buf[off + 15] == A_META
            and buf[off + 16] == 14
        ):
            plain: TcpInfo | None = None
            if mlen == 31:
                src, dst, proto, sport, dport, status, timeout, mark, zone = unpack_orig4_meta(buf, off + 2)
                whole = True
            elif buf[off + 31] == A_TCP and buf[off + 32] == 5:
                src, dst, proto, sport, dport, status, timeout, mark, zone, state, ws_o, ws_r, fl_o, fl_r = (
                    unpack_whole_tcp(buf, off + 2)
                )
                if state >= n_tcp_states:
                    raise DecodeError(f"TCP attribute at offset {off + 31}: unknown TCP state {state}")
                plain = _new(TcpInfo, (tcp_states[state], ws_o, ws_r, fl_o, fl_r))
                whole = True
            else:
                whole = False  # (another attribute after META: the general path)
            if whole:
                forward: ConnTuple = _new(ConnTuple, (ipv4, src, dst, proto, sport, dport))
                backward = forward.inverted() if proto in icmp else _new(ConnTuple, (ipv4, dst, src, proto, dport, sport))
                entry = _new(Entry, (forward, backward, zone, status, timeout, mark, plain, None, None, 0, ""))
                append(_new(Event, (kinds[kind], entry)))
                off = mend
                continue
        orig = reply = pinfo = sa_orig = sa_reply = meta = None
        labels = 0
        helper = ""
        seen = 0
        # Fast path: the encoder puts ORIG and META first; one unpack reads both.
        if mlen >= 31 and buf[off] == A_ORIG_IPV4 and buf[off + 1] == 13 and buf[off + 15] == A_META and buf[off + 16] == 14:
            src, dst, proto, sport, dport, status, timeout, mark, zone = unpack_orig4_meta(buf, off + 2)
            orig = _new(ConnTuple, (ipv4, src, dst, proto, sport, dport))
            meta = (status, timeout, mark, zone)
            off += 31
        while off < mend:
            if off + 2 > mend:
                raise DecodeError(f"truncated attribute header at offset {off} in message at offset {start}")
            atype = buf[off]
            alen = buf[off + 1]
            body = off + 2
            off = body + alen
            if off > mend:
                raise DecodeError(
                    f"attribute {_attr_name(atype)} at offset {body - 2}: length {alen} "
                    f"overruns its message by {off - mend}"
                )
            if atype == A_ORIG_IPV4:
                if alen != 13:
                    raise _bad_length(atype, body, alen, 13)
                if orig is not None:
                    raise _two_tuples(start)
                orig = _new(ConnTuple, (ipv4, *unpack_tuple4(buf, body)))
            elif atype == A_META:
                if alen != 14:
                    raise _bad_length(atype, body, alen, 14)
                if meta is not None:
                    raise _twice(atype, start)
                meta = unpack_meta(buf, body)
            elif atype == A_TCP:
                if alen != 5:
                    raise _bad_length(atype, body, alen, 5)
                if pinfo is not None:
                    raise _two_protoinfos(start)
                state, ws_o, ws_r, fl_o, fl_r = unpack_tcp(buf, body)
                if state >= len(_TCP_STATES):
                    raise DecodeError(f"TCP attribute at offset {body - 2}: unknown TCP state {state}")
                pinfo = _new(TcpInfo, (_TCP_STATES[state], ws_o, ws_r, fl_o, fl_r))
            else:
                value = _decode_rare(atype, alen, buf, body, start)
                if value is None:
                    continue
                bit = 1 << (atype & 0x7F)
                if seen & bit:
                    raise _twice(atype, start)
                seen |= bit
                if atype == A_ORIG_IPV6:
                    if orig is not None:
                        raise _two_tuples(start)
                    orig = value
                elif atype == A_REPLY_IPV4 or atype == A_REPLY_IPV6:
                    if reply is not None:
                        raise DecodeError(f"two reply tuples in message at offset {start}")
                    reply = value
                elif atype == A_SCTP or atype == A_DCCP:
                    if pinfo is not None:
                        raise _two_protoinfos(start)
                    pinfo = value
                elif atype == A_SEQADJ_ORIG:
                    sa_orig = value
                elif atype == A_SEQADJ_REPLY:
                    sa_reply = value
                elif atype == A_LABELS:
                    labels = value
                elif atype == A_HELPER:
                    helper = value
        if orig is None:
            raise DecodeError(f"STATE message at offset {start} lacks the required ORIG tuple")
        if meta is None:
            raise DecodeError(f"STATE message at offset {start} lacks the required META attribute")
        if reply is None:
            reply = orig.inverted()
        elif reply[0] is not orig[0]:
            raise DecodeError(f"STATE message at offset {start}: reply tuple family differs from the original's")
        status, timeout, mark, zone = meta
        append(
            _new(
                Event,
                (
                    _EVENT_KINDS[kind],
                    _new(Entry, (orig, reply, zone, status, timeout, mark, pinfo, sa_orig, sa_reply, labels, helper)),
                ),
            )
        )
    return events


# --- records: STATE messages kept as bytes -----------------------------------------
#
# A backup keeps each connection's STATE message as it arrived (its *record*), keyed
# by the bytes of the connection's identity (:func:`record_key`), and decodes it only
# where an Entry is needed (commit, injection, the operator's view). Most messages are
# plain: IPv4, no NAT, zone 0, nothing optional (UDP and TCP as the encoder lays them
# out), and a frame of them is checked and cut into records by one regular expression
# (C code), with no object per field.

#: one plain NEW or UPDATE message: ORIG_IPV4 and META of zone 0 (34 bytes), or with
#: TCP after them (41 bytes; the TCP state known); what _decode_state accepts of them
_PLAIN_RECORD = re.compile(
    rb"[\x01\x02]\x00(?:\x1f\x81\x0d.{13}\x85\x0e.{12}\x00\x00"
    rb"|\x26\x81\x0d.{13}\x85\x0e.{12}\x00\x00\x86\x05[\x00-\x%02x].{4})" % (len(TcpState) - 1),
    re.S,
)
#: where a plain record's key (the ORIG_IPV4 value) lies
PLAIN_KEY = slice(5, 18)
_KEY4, _KEY4Z, _KEY6, _KEY6Z = 13, 15, 37, 39


def split_plain(payload: bytes) -> list[bytes] | None:
    """The messages of a STATE payload as records, when every one is a plain NEW or
    UPDATE message (None otherwise: decode it the general way). Matches that do not
    overlap and add up to the payload's length tile it: they are its messages."""
    found: list[bytes] = _PLAIN_RECORD.findall(payload)
    return found if sum(map(len, found)) == len(payload) else None


def record_key(orig: ConnTuple, zone: int) -> bytes:
    """The bytes that identify a connection (``Entry.key``) in a record cache: the
    original tuple as ORIG_IPV4 or ORIG_IPV6 holds it, and the zone when not 0 (the
    lengths tell the four cases apart). A plain record's ``PLAIN_KEY`` slice is it."""
    family, src, dst, proto, sport, dport = orig
    if family == 2 and len(src) == 4 and len(dst) == 4:
        key = _TUPLE4.pack(src, dst, proto, sport, dport)
    elif family == 10 and len(src) == 16 and len(dst) == 16:
        key = _TUPLE6.pack(src, dst, proto, sport, dport)
    else:
        raise ValueError(f"no record key for {orig!r}")
    return key + _U16.pack(zone) if zone else key


def key_of_record_key(data: bytes) -> ConnKey:
    """``Entry.key`` of :func:`record_key`'s bytes."""
    size = len(data)
    if size == _KEY4 or size == _KEY4Z:
        orig = _new(ConnTuple, (_IPV4, *_TUPLE4.unpack_from(data)))
    elif size == _KEY6 or size == _KEY6Z:
        orig = _new(ConnTuple, (_IPV6, *_TUPLE6.unpack_from(data)))
    else:
        raise ValueError(f"not a record key: {data.hex()}")
    zone = _U16.unpack_from(data, size - 2)[0] if size in (_KEY4Z, _KEY6Z) else 0
    return (orig, zone)


def with_timeout(record: bytes, timeout: int) -> bytes:
    """A STATE message of this encoder (ORIG, then META) with META's timeout replaced."""
    at = MSG_HEADER_SIZE + (15 if record[MSG_HEADER_SIZE] == A_ORIG_IPV4 else 39) + 6  # (META's value: status, timeout)
    if record[at - 6] != A_META:
        raise ValueError("not a message of this encoder: META does not follow ORIG")
    return record[:at] + _U32.pack(timeout) + record[at + 4 :]


def decode_records(records: Iterable[bytes]) -> list[Event]:
    """The events of records (messages a STATE frame carried, checked when they came):
    their kinds as they came."""
    data = b"".join(records)
    try:
        return _decode_state(data, 0, len(data))
    except (struct.error, ValueError, IndexError, TypeError, OverflowError) as exc:
        raise DecodeError(f"{DECODER_BUG}: {exc!r}") from exc


def _bad_length(atype: int, body: int, alen: int, want: int) -> DecodeError:
    return DecodeError(f"attribute {_attr_name(atype)} at offset {body - 2}: length {alen}, expected {want}")


def _twice(atype: int, start: int) -> DecodeError:
    return DecodeError(f"attribute {_attr_name(atype)} twice in message at offset {start}")


def _two_tuples(start: int) -> DecodeError:
    return DecodeError(f"two original tuples in message at offset {start}")


def _two_protoinfos(start: int) -> DecodeError:
    return DecodeError(f"two protocol-info attributes in message at offset {start}")


_FIXED_SIZES = {
    A_ORIG_IPV6: 37,
    A_REPLY_IPV4: 13,
    A_REPLY_IPV6: 37,
    A_SCTP: 9,
    A_DCCP: 10,
    A_SEQADJ_ORIG: 12,
    A_SEQADJ_REPLY: 12,
    A_LABELS: LABELS_SIZE,
}


def _decode_rare(atype: int, alen: int, buf: bytes, body: int, start: int) -> object:
    """The less common STATE attributes; None for an unknown non-critical one (skip)."""
    want = _FIXED_SIZES.get(atype)
    if want is not None and alen != want:
        raise _bad_length(atype, body, alen, want)
    if atype == A_ORIG_IPV6 or atype == A_REPLY_IPV6:
        return _new(ConnTuple, (_IPV6, *_TUPLE6.unpack_from(buf, body)))
    if atype == A_REPLY_IPV4:
        return _new(ConnTuple, (_IPV4, *_TUPLE4.unpack_from(buf, body)))
    if atype == A_SCTP:
        state, vtag_o, vtag_r = _SCTP.unpack_from(buf, body)
        if state >= len(_SCTP_STATES):
            raise DecodeError(f"SCTP attribute at offset {body - 2}: unknown SCTP state {state}")
        return SctpInfo(_SCTP_STATES[state], vtag_o, vtag_r)
    if atype == A_DCCP:
        state, role, hseq = _DCCP.unpack_from(buf, body)
        if state >= len(_DCCP_STATES):
            raise DecodeError(f"DCCP attribute at offset {body - 2}: unknown DCCP state {state}")
        return DccpInfo(_DCCP_STATES[state], role, hseq)
    if atype == A_SEQADJ_ORIG or atype == A_SEQADJ_REPLY:
        return SeqAdj(*_SEQADJ.unpack_from(buf, body))
    if atype == A_LABELS:
        return int.from_bytes(buf[body : body + LABELS_SIZE], "big")
    if atype == A_HELPER:
        if alen == 0:
            raise DecodeError(f"HELPER attribute at offset {body - 2} is empty")
        try:
            return buf[body : body + alen].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"HELPER attribute at offset {body - 2}: not UTF-8 ({exc.reason})") from None
    return _unknown(atype, body, start, "STATE")


def _unknown(atype: int, body: int, start: int, where: str) -> None:
    """An attribute ``where`` does not know: skip it (None) unless it must be understood."""
    if atype in ATTRIBUTE_NAMES:
        raise DecodeError(f"attribute {_attr_name(atype)} at offset {body - 2} does not belong in a {where} message")
    if atype & CRITICAL:
        raise DecodeError(
            f"unknown critical attribute {_attr_name(atype)} at offset {body - 2} "
            f"in {where} message at offset {start}"
        )
    return None


_CONTROL_ATTRS: dict[MessageType, dict[int, int]] = {
    # allowed attribute -> its fixed size
    MessageType.ACK: {A_RANGE: 8},
    MessageType.NACK: {A_RANGE: 8},
    MessageType.RESYNC_REQUEST: {},
    MessageType.ALIVE: {},
    MessageType.HELLO: {A_NODE: 8, A_VERSION: 2, A_FLAGS: 4, A_ECHO: 8},
    MessageType.REPORT_ACK: {A_REPORT: 4},
}


def _control_message_header(mtype: MessageType, buf: bytes, off: int, end: int) -> tuple[int, int, int]:
    """The header of the message at ``off`` of a frame other than STATE (kind 0): its
    start, where its body starts and where it ends."""
    if off + 3 > end:
        raise DecodeError(f"truncated message header at offset {off}: {end - off} bytes left")
    kind, mlen = MSG_HEADER.unpack_from(buf, off)
    mend = off + 3 + mlen
    if mend > end:
        raise DecodeError(f"message at offset {off}: length {mlen} overruns the payload by {mend - end}")
    if kind != 0:
        raise DecodeError(f"{mtype.name} message at offset {off}: kind {kind}, must be 0")
    return off, off + 3, mend


def _decode_reports(buf: bytes, off: int, end: int) -> list[Report]:
    """Every message of a REPORT frame: kind 0, the REPORT attribute (the id) first,
    then exactly one STATE message of kind UPDATE (the entry), filling the message."""
    reports: list[Report] = []
    while off < end:
        start, off, mend = _control_message_header(MessageType.REPORT, buf, off, end)
        if mend - off < 6 or buf[off] != A_REPORT or buf[off + 1] != 4:
            raise DecodeError(f"REPORT message at offset {start} does not start with a 4-byte REPORT attribute")
        (report_id,) = _U32.unpack_from(buf, off + 2)
        events = _decode_state(buf, off + 6, mend)
        if len(events) != 1 or events[0][0] is not EventKind.UPDATE:
            raise DecodeError(f"REPORT message at offset {start} must hold exactly one UPDATE message, not {len(events)} messages")
        reports.append(Report(report_id, events[0][1]))
        off = mend
    return reports


def _decode_control(mtype: MessageType, buf: bytes, off: int, end: int) -> list[Message]:
    """Every message of a control frame in ``buf[off:end]``."""
    allowed = _CONTROL_ATTRS[mtype]
    messages: list[Message] = []
    while off < end:
        start, off, mend = _control_message_header(mtype, buf, off, end)
        attrs: dict[int, int] = {}
        while off < mend:
            if off + 2 > mend:
                raise DecodeError(f"truncated attribute header at offset {off} in message at offset {start}")
            atype = buf[off]
            alen = buf[off + 1]
            body = off + 2
            off = body + alen
            if off > mend:
                raise DecodeError(
                    f"attribute {_attr_name(atype)} at offset {body - 2}: length {alen} "
                    f"overruns its message by {off - mend}"
                )
            want = allowed.get(atype)
            if want is None:
                _unknown(atype, body, start, mtype.name)
                continue
            if alen != want:
                raise _bad_length(atype, body, alen, want)
            if atype in attrs:
                raise _twice(atype, start)
            attrs[atype] = body
        messages.append(_control_message(mtype, attrs, buf, start))
    return messages


def _require(attrs: dict[int, int], atype: int, mtype: MessageType, start: int) -> int:
    body = attrs.get(atype)
    if body is None:
        raise DecodeError(f"{mtype.name} message at offset {start} lacks the required {_attr_name(atype)} attribute")
    return body


def _control_message(mtype: MessageType, attrs: dict[int, int], buf: bytes, start: int) -> Message:
    if mtype is MessageType.ACK or mtype is MessageType.NACK:
        first, last = _RANGE.unpack_from(buf, _require(attrs, A_RANGE, mtype, start))
        return Ack(first, last) if mtype is MessageType.ACK else Nack(first, last)
    if mtype is MessageType.HELLO:
        owner, term = _NODE.unpack_from(buf, _require(attrs, A_NODE, mtype, start))
        (version,) = _U16.unpack_from(buf, _require(attrs, A_VERSION, mtype, start))
        (echo,) = _U64.unpack_from(buf, _require(attrs, A_ECHO, mtype, start))
        flags = _U32.unpack_from(buf, attrs[A_FLAGS])[0] if A_FLAGS in attrs else 0
        return Hello(term, owner, bool(flags & HELLO_LIVE), version, echo, bool(flags & HELLO_RESIGNED))
    if mtype is MessageType.REPORT_ACK:
        return ReportAck(_U32.unpack_from(buf, _require(attrs, A_REPORT, mtype, start))[0])
    if mtype is MessageType.ALIVE:
        return Alive()
    return ResyncRequest()


__all__ = [
    "FLAG_ACK_NOW",
    "FLAG_BULK_END",
    "FLAG_BULK_START",
    "FLAG_SEALED",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "Built",
    "build_frame",
    "build_frames",
    "build_state_frames",
    "decode_frame",
    "decode_records",
    "encode_frame",
    "encode_frames",
    "encode_message",
    "encode_state",
    "frame_overhead",
    "key_of_record_key",
    "record_key",
    "seal",
    "split_plain",
    "with_timeout",
]

