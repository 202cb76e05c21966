"""ctnetlink codec: the one place where kernel messages and :class:`Entry` values meet.

Sans-I/O: bytes in, values out, and values in, bytes out. The netlink adapter owns
the sockets; this module owns every byte layout (``nlmsghdr``, ``nfgenmsg`` and the
``CTA_*`` attributes of linux/netfilter/nfnetlink_conntrack.h).

Decoding is the hot path (a dump of 100,000 entries, 100,000+ events per second), so
it reads with precompiled ``struct`` objects over a ``memoryview`` and decodes only
what :class:`Entry` holds. A tuple attribute is read in one ``unpack_from`` against a
template of its usual layout (the attribute headers are part of the unpacked values
and must match the template, otherwise the generic walker takes over), so odd or
future layouts stay correct and only the common ones are fast.

Header words of netlink attributes are host-endian and payloads big-endian. The
templates read everything big-endian and compare header words with their host-endian
values read as big-endian, so one format string serves both.

Round trip: ``decode(dump of e)`` -> entry -> ``encode_create(entry)`` creates a
connection that dumps back as ``e`` (modulo the timeout countdown).
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator
from typing import NamedTuple

from snep.entry import (
    ConnTuple,
    DccpInfo,
    DccpState,
    Entry,
    EventKind,
    Family,
    Proto,
    SctpInfo,
    SctpState,
    SeqAdj,
    Status,
    TcpInfo,
    TcpState,
)
from snep.errors import DecodeError

# --- netlink ------------------------------------------------------------------------

NETLINK_NETFILTER = 12
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_BROADCAST_ERROR = 4
NETLINK_NO_ENOBUFS = 5
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# --- nfnetlink / ctnetlink ------------------------------------------------------------

NFNETLINK_V0 = 0
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
IPCTNL_MSG_CT_GET_STATS_CPU = 4
IPCTNL_MSG_CT_GET_STATS = 5

MSG_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
MSG_CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
MSG_CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
MSG_CT_GET_STATS_CPU = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU
MSG_CT_GET_STATS = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS

# multicast groups (enum nfnetlink_groups)
NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3
GROUP_OF_KIND = {
    EventKind.NEW: NFNLGRP_CONNTRACK_NEW,
    EventKind.UPDATE: NFNLGRP_CONNTRACK_UPDATE,
    EventKind.DESTROY: NFNLGRP_CONNTRACK_DESTROY,
}

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_HELP = 5
CTA_NAT_SRC = 6
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_USE = 11
CTA_ID = 12
CTA_NAT_DST = 13
CTA_TUPLE_MASTER = 14
CTA_SEQ_ADJ_ORIG = 15
CTA_SEQ_ADJ_REPLY = 16
CTA_SECMARK = 17
CTA_ZONE = 18
CTA_SECCTX = 19
CTA_TIMESTAMP = 20
CTA_MARK_MASK = 21
CTA_LABELS = 22
CTA_LABELS_MASK = 23
CTA_SYNPROXY = 24
CTA_FILTER = 25
CTA_STATUS_MASK = 26

CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTO_ICMP_TYPE = 5
CTA_PROTO_ICMP_CODE = 6
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTO_ICMPV6_TYPE = 8
CTA_PROTO_ICMPV6_CODE = 9

CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_DCCP = 2
CTA_PROTOINFO_SCTP = 3
CTA_PROTOINFO_TCP_STATE = 1
CTA_PROTOINFO_TCP_WSCALE_ORIGINAL = 2
CTA_PROTOINFO_TCP_WSCALE_REPLY = 3
CTA_PROTOINFO_TCP_FLAGS_ORIGINAL = 4
CTA_PROTOINFO_TCP_FLAGS_REPLY = 5
CTA_PROTOINFO_DCCP_STATE = 1
CTA_PROTOINFO_DCCP_ROLE = 2
CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ = 3
CTA_PROTOINFO_SCTP_STATE = 1
CTA_PROTOINFO_SCTP_VTAG_ORIGINAL = 2
CTA_PROTOINFO_SCTP_VTAG_REPLY = 3

CTA_SEQADJ_CORRECTION_POS = 1
CTA_SEQADJ_OFFSET_BEFORE = 2
CTA_SEQADJ_OFFSET_AFTER = 3

CTA_HELP_NAME = 1

CTA_NAT_V4_MINIP = 1
CTA_NAT_V4_MAXIP = 2
CTA_NAT_PROTO = 3
CTA_NAT_V6_MINIP = 4
CTA_NAT_V6_MAXIP = 5
CTA_PROTONAT_PORT_MIN = 1
CTA_PROTONAT_PORT_MAX = 2

# CTA_STATS_* of IPCTNL_MSG_CT_GET_STATS_CPU (per CPU) and _GET_STATS (global)
STATS_CPU_NAMES = {
    1: "searched",
    2: "found",
    3: "new",
    4: "invalid",
    5: "ignore",
    6: "delete",
    7: "delete_list",
    8: "insert",
    9: "insert_failed",
    10: "drop",
    11: "early_drop",
    12: "error",
    13: "search_restart",
    14: "clash_resolve",
    15: "chain_toolong",
}
STATS_GLOBAL_NAMES = {1: "entries", 2: "max_entries"}

# Status bits the kernel manages itself and refuses (EBUSY) or ignores from userspace.
# On create the kernel starts from CONFIRMED (it refuses EBUSY a status without it).
_CREATE_STATUS_CLEAR = int(Status.DYING | Status.EXPECTED | Status.TEMPLATE | Status.UNTRACKED)

NLMSGHDR = struct.Struct("=IHHII")
NLMSGERR = struct.Struct("=iIHHII")  # error, then the offending nlmsghdr
NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big-endian in the kernel, 0 here)
NLA = struct.Struct("=HH")
U8 = struct.Struct(">B")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")

HEADER_SIZE = NLMSGHDR.size + NFGENMSG.size  # 20

_NATIVE_LITTLE = sys.byteorder == "little"
_PORT_PROTOS = frozenset(
    {Proto.TCP, Proto.UDP, Proto.UDPLITE, Proto.SCTP, Proto.DCCP, Proto.GRE}
)


def _hdr_be(length: int, atype: int) -> tuple[int, int]:
    """An attribute header (host-endian) as read by a big-endian format."""
    return U16.unpack(struct.pack("=H", length))[0], U16.unpack(struct.pack("=H", atype))[0]


def _align(n: int) -> int:
    return (n + 3) & ~3


# --- decoding ---------------------------------------------------------------------


class Message(NamedTuple):
    """One netlink message as the adapter needs it (payload by offset, no copy)."""

    type: int
    flags: int
    seq: int
    pid: int
    offset: int  # of the payload, after nlmsghdr
    end: int


def iter_messages(buf: memoryview, length: int) -> Iterator[Message]:
    """Split a received datagram into messages; raise DecodeError on bad lengths."""
    off = 0
    unpack = NLMSGHDR.unpack_from
    while off + 16 <= length:
        mlen, mtype, mflags, mseq, mpid = unpack(buf, off)
        if mlen < 16 or off + mlen > length:
            raise DecodeError(f"netlink message length {mlen} at {off} exceeds datagram {length}")
        yield Message(mtype, mflags, mseq, mpid, off + 16, off + mlen)
        off += _align(mlen)


def decode_error(buf: memoryview, msg: Message) -> tuple[int, int]:
    """An NLMSG_ERROR: (errno, seq of the request); errno 0 is an ACK."""
    if msg.end - msg.offset < 4:
        raise DecodeError("truncated NLMSG_ERROR")
    (err,) = struct.unpack_from("=i", buf, msg.offset)
    seq = msg.seq
    if msg.end - msg.offset >= NLMSGERR.size:
        seq = NLMSGERR.unpack_from(buf, msg.offset)[4]
    return -err, seq


def event_kind(msg: Message) -> EventKind | None:
    """The conntrack event a multicast message reports (None: not a conntrack event)."""
    if msg.type == MSG_CT_NEW:
        return EventKind.NEW if msg.flags & (NLM_F_CREATE | NLM_F_EXCL) else EventKind.UPDATE
    if msg.type == MSG_CT_DELETE:
        return EventKind.DESTROY
    return None


class _TupleTemplate(NamedTuple):
    """A usual tuple layout: one unpack_from reads headers and values."""

    struct: struct.Struct
    headers: tuple[int, ...]  # expected header values (positions given by header_index)
    header_get: object  # operator.itemgetter of the header positions
    family: Family
    kind: str  # "ports", "icmp", "none"


def _tuple_templates() -> dict[int, list[_TupleTemplate]]:
    import operator

    templates: dict[int, list[_TupleTemplate]] = {}
    for family in (Family.IPV4, Family.IPV6):
        asize = family.address_size
        ip_src, ip_dst = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if family is Family.IPV4 else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        ip_len = 4 + 2 * (4 + asize)
        for kind in ("ports", "icmp", "none"):
            # (format, header or None) pieces, in order
            parts: list[tuple[str, tuple[int, int] | None]] = []
            parts.append(("HH", (ip_len, CTA_TUPLE_IP)))
            parts.append(("HH", (4 + asize, ip_src)))
            parts.append((f"{asize}s", None))
            parts.append(("HH", (4 + asize, ip_dst)))
            parts.append((f"{asize}s", None))
            if kind == "ports":
                proto_len = 4 + 8 + 8 + 8
                body = [("HH", (5, CTA_PROTO_NUM)), ("B3x", None), ("HH", (6, CTA_PROTO_SRC_PORT)), ("H2x", None),
                        ("HH", (6, CTA_PROTO_DST_PORT)), ("H2x", None)]
            elif kind == "icmp":
                proto_len = 4 + 8 + 8 + 8 + 8
                if family is Family.IPV4:
                    i_id, i_type, i_code = CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE
                else:
                    i_id, i_type, i_code = CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE
                body = [("HH", (5, CTA_PROTO_NUM)), ("B3x", None), ("HH", (6, i_id)), ("H2x", None),
                        ("HH", (5, i_type)), ("B3x", None), ("HH", (5, i_code)), ("B3x", None)]
            else:
                proto_len = 4 + 8
                body = [("HH", (5, CTA_PROTO_NUM)), ("B3x", None)]
            for nested in (True, False):
                flag = NLA_F_NESTED if nested else 0
                fmt = ">"
                headers: list[int] = []
                header_pos: list[int] = []
                pos = 0
                seq = [("HH", (ip_len, CTA_TUPLE_IP | flag))] + parts[1:] + [("HH", (proto_len, CTA_TUPLE_PROTO | flag))] + body
                for piece, header in seq:
                    fmt += piece
                    if header is not None:
                        headers.extend(_hdr_be(*header))
                        header_pos.extend((pos, pos + 1))
                        pos += 2
                    else:
                        pos += 1
                s = struct.Struct(fmt)
                total = 4 + s.size
                templates.setdefault(total, []).append(
                    _TupleTemplate(s, tuple(headers), operator.itemgetter(*header_pos), family, kind)
                )
    return templates


_TUPLE_TEMPLATES = _tuple_templates()


def decode_tuple(buf: memoryview, off: int, end: int) -> ConnTuple:
    """A CTA_TUPLE_* attribute's payload [off, end) -> ConnTuple."""
    for t in _TUPLE_TEMPLATES.get(end - off + 4, ()):
        v = t.struct.unpack_from(buf, off)
        if t.header_get(v) == t.headers:  # type: ignore[operator]
            if t.kind == "ports":
                return ConnTuple(t.family, v[4], v[7], v[12], v[15], v[18])
            if t.kind == "icmp":
                return ConnTuple(t.family, v[4], v[7], v[12], v[15], (v[18] << 8) | v[21])
            return ConnTuple(t.family, v[4], v[7], v[12], 0, 0)
    return _decode_tuple_generic(buf, off, end)


def _iter_attrs(buf: memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload offset, payload end) of each attribute in [off, end)."""
    unpack = NLA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4 or off + alen > end:
            raise DecodeError(f"attribute length {alen} at {off} overruns its container")
        yield atype & NLA_TYPE_MASK, off + 4, off + alen
        off += _align(alen)


def _decode_tuple_generic(buf: memoryview, off: int, end: int) -> ConnTuple:
    family = None
    src = dst = b""
    proto = sport = dport = icmp_type = icmp_code = 0
    for atype, a, b in _iter_attrs(buf, off, end):
        if atype == CTA_TUPLE_IP:
            for itype, x, y in _iter_attrs(buf, a, b):
                if itype in (CTA_IP_V4_SRC, CTA_IP_V4_DST) and y - x == 4:
                    family = Family.IPV4
                elif itype in (CTA_IP_V6_SRC, CTA_IP_V6_DST) and y - x == 16:
                    family = Family.IPV6
                else:
                    raise DecodeError(f"bad tuple address attribute {itype} of {y - x} bytes")
                if itype in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    src = bytes(buf[x:y])
                else:
                    dst = bytes(buf[x:y])
        elif atype == CTA_TUPLE_PROTO:
            for ptype, x, y in _iter_attrs(buf, a, b):
                if ptype == CTA_PROTO_NUM:
                    proto = _u8(buf, x, y)
                elif ptype in (CTA_PROTO_SRC_PORT, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID):
                    sport = _u16(buf, x, y)
                elif ptype == CTA_PROTO_DST_PORT:
                    dport = _u16(buf, x, y)
                elif ptype in (CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_TYPE):
                    icmp_type = _u8(buf, x, y)
                elif ptype in (CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMPV6_CODE):
                    icmp_code = _u8(buf, x, y)
    if family is None or not src or not dst:
        raise DecodeError("tuple without addresses")
    if proto in (Proto.ICMP, Proto.ICMPV6):
        dport = (icmp_type << 8) | icmp_code
    return ConnTuple(family, src, dst, proto, sport, dport)


def _u8(buf: memoryview, a: int, b: int) -> int:
    if b - a < 1:
        raise DecodeError("truncated u8 attribute")
    return buf[a]


def _u16(buf: memoryview, a: int, b: int) -> int:
    if b - a < 2:
        raise DecodeError("truncated u16 attribute")
    return U16.unpack_from(buf, a)[0]


def _u32(buf: memoryview, a: int, b: int) -> int:
    if b - a < 4:
        raise DecodeError("truncated u32 attribute")
    return U32.unpack_from(buf, a)[0]


_TCP_INFO = {}  # cache of TcpInfo values: there are few distinct ones


def _decode_protoinfo(buf: memoryview, off: int, end: int) -> TcpInfo | SctpInfo | DccpInfo | None:
    for ptype, a, b in _iter_attrs(buf, off, end):
        if ptype == CTA_PROTOINFO_TCP:
            key = bytes(buf[a:b])
            info = _TCP_INFO.get(key)
            if info is None:
                state = wso = wsr = fo = fr = 0
                for t, x, y in _iter_attrs(buf, a, b):
                    if t == CTA_PROTOINFO_TCP_STATE:
                        state = _u8(buf, x, y)
                    elif t == CTA_PROTOINFO_TCP_WSCALE_ORIGINAL:
                        wso = _u8(buf, x, y)
                    elif t == CTA_PROTOINFO_TCP_WSCALE_REPLY:
                        wsr = _u8(buf, x, y)
                    elif t == CTA_PROTOINFO_TCP_FLAGS_ORIGINAL:
                        fo = _u8(buf, x, y)
                    elif t == CTA_PROTOINFO_TCP_FLAGS_REPLY:
                        fr = _u8(buf, x, y)
                try:
                    tstate = TcpState(state)
                except ValueError:
                    raise DecodeError(f"unknown TCP state {state}") from None
                info = TcpInfo(tstate, wso, wsr, fo, fr)
                if len(_TCP_INFO) < 4096:
                    _TCP_INFO[key] = info
            return info
        if ptype == CTA_PROTOINFO_SCTP:
            state = vo = vr = 0
            for t, x, y in _iter_attrs(buf, a, b):
                if t == CTA_PROTOINFO_SCTP_STATE:
                    state = _u8(buf, x, y)
                elif t == CTA_PROTOINFO_SCTP_VTAG_ORIGINAL:
                    vo = _u32(buf, x, y)
                elif t == CTA_PROTOINFO_SCTP_VTAG_REPLY:
                    vr = _u32(buf, x, y)
            try:
                return SctpInfo(SctpState(state), vo, vr)
            except ValueError:
                raise DecodeError(f"unknown SCTP state {state}") from None
        if ptype == CTA_PROTOINFO_DCCP:
            state = role = seq = 0
            for t, x, y in _iter_attrs(buf, a, b):
                if t == CTA_PROTOINFO_DCCP_STATE:
                    state = _u8(buf, x, y)
                elif t == CTA_PROTOINFO_DCCP_ROLE:
                    role = _u8(buf, x, y)
                elif t == CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ:
                    if y - x < 8:
                        raise DecodeError("truncated DCCP handshake seq")
                    seq = U64.unpack_from(buf, x)[0]
            try:
                return DccpInfo(DccpState(state), role, seq)
            except ValueError:
                raise DecodeError(f"unknown DCCP state {state}") from None
    return None


def _decode_seqadj(buf: memoryview, off: int, end: int) -> SeqAdj:
    pos = before = after = 0
    for t, x, y in _iter_attrs(buf, off, end):
        if t == CTA_SEQADJ_CORRECTION_POS:
            pos = _u32(buf, x, y)
        elif t == CTA_SEQADJ_OFFSET_BEFORE:
            before = _u32(buf, x, y)
        elif t == CTA_SEQADJ_OFFSET_AFTER:
            after = _u32(buf, x, y)
    return SeqAdj(pos, before, after)


def labels_from_bytes(data: bytes) -> int:
    """CTA_LABELS is the kernel's bitmap of unsigned longs: label i is bit i."""
    if _NATIVE_LITTLE:
        return int.from_bytes(data, "little")
    value = 0
    for i in range(0, len(data) - len(data) % 8, 8):
        value |= int.from_bytes(data[i : i + 8], "big") << (8 * i)
    return value


def labels_to_bytes(labels: int, size: int = 16) -> bytes:
    if _NATIVE_LITTLE:
        return labels.to_bytes(size, "little")
    return b"".join(((labels >> (8 * i)) & (2**64 - 1)).to_bytes(8, "big") for i in range(0, size, 8))


_UNPACK_NLA = NLA.unpack_from
_UNPACK_U32 = U32.unpack_from
_UNPACK_U16 = U16.unpack_from


def decode_entry_generic(buf: memoryview, off: int, end: int) -> Entry:
    """:func:`decode_entry` by walking every attribute (any layout; the reference)."""
    orig = reply = None
    zone = status = timeout = mark = labels = 0
    protoinfo = seqadj_orig = seqadj_reply = None
    helper = ""
    unpack = _UNPACK_NLA
    u32 = _UNPACK_U32
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        nxt = off + ((alen + 3) & ~3)
        if alen < 4 or off + alen > end:
            raise DecodeError(f"attribute length {alen} at {off} overruns the message")
        atype &= NLA_TYPE_MASK
        if atype == CTA_TUPLE_ORIG:
            orig = decode_tuple(buf, off + 4, off + alen)
        elif atype == CTA_TUPLE_REPLY:
            reply = decode_tuple(buf, off + 4, off + alen)
        elif atype == CTA_STATUS:
            if alen < 8:
                raise DecodeError("truncated CTA_STATUS")
            status = u32(buf, off + 4)[0]
        elif atype == CTA_TIMEOUT:
            if alen < 8:
                raise DecodeError("truncated CTA_TIMEOUT")
            timeout = u32(buf, off + 4)[0]
        elif atype == CTA_MARK:
            if alen < 8:
                raise DecodeError("truncated CTA_MARK")
            mark = u32(buf, off + 4)[0]
        elif atype == CTA_PROTOINFO:
            protoinfo = _decode_protoinfo(buf, off + 4, off + alen)
        elif atype == CTA_ZONE:
            if alen < 6:
                raise DecodeError("truncated CTA_ZONE")
            zone = _UNPACK_U16(buf, off + 4)[0]
        elif atype == CTA_SEQ_ADJ_ORIG:
            seqadj_orig = _decode_seqadj(buf, off + 4, off + alen)
        elif atype == CTA_SEQ_ADJ_REPLY:
            seqadj_reply = _decode_seqadj(buf, off + 4, off + alen)
        elif atype == CTA_LABELS:
            labels = labels_from_bytes(bytes(buf[off + 4 : off + alen]))
        elif atype == CTA_HELP:
            for t, x, y in _iter_attrs(buf, off + 4, off + alen):
                if t == CTA_HELP_NAME:
                    helper = bytes(buf[x:y]).split(b"\0", 1)[0].decode("ascii", "replace")
        off = nxt
    if orig is None or reply is None:
        raise DecodeError("conntrack message without both tuples")
    return Entry(orig, reply, zone, status, timeout, mark, protoinfo, seqadj_orig, seqadj_reply, labels, helper)


# --- layouts: one unpack_from per message ---------------------------------------
#
# The kernel writes the messages of one kind of connection (family, protocol, which
# optional attributes) with identical attribute headers; only payloads differ. The
# first message of a kind is decoded by the generic walker, which also records its
# layout: every attribute header (offset, length, type) and every payload field snep
# needs. From that we build a mask of the header bytes, a big-endian struct of the
# payload fields and a small builder function. A later message of the same length is
# checked with one masked integer comparison (its headers must be the recorded ones,
# so a different layout can never be misread: it falls back to the walker), read with
# one unpack_from and built into an Entry.

_MAX_LAYOUTS = 256
_LAYOUTS: dict[int, list[tuple[struct.Struct, int, int, object]]] = {}
_layout_count = 0
_TCP_STATES = tuple(TcpState)
_SCTP_STATES = tuple(SctpState)
_DCCP_STATES = tuple(DccpState)


class _Unlearnable(Exception):
    pass


class _Recorder:
    """Collects (offset, format, role) pieces of one message while walking it."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.pieces: list[tuple[int, str, object]] = []  # (offset, fmt, header value or field name)

    def header(self, buf: memoryview, off: int) -> tuple[int, int]:
        alen, atype = NLA.unpack_from(buf, off)
        raw = bytes(buf[off : off + 4])
        self.pieces.append((off - self.base, "HH", struct.unpack(">HH", raw)))
        return alen, atype

    def field(self, off: int, fmt: str, name: str) -> None:
        self.pieces.append((off - self.base, fmt, name))

    def nested(self, buf: memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Children of a nest, headers recorded; (type, payload off, payload end)."""
        while off + 4 <= end:
            alen, atype = self.header(buf, off)
            if alen < 4 or off + alen > end:
                raise _Unlearnable
            yield atype & NLA_TYPE_MASK, off + 4, off + alen
            off += _align(alen)
        if off != end and off - end >= 4:
            raise _Unlearnable


def _record_tuple(rec: _Recorder, buf: memoryview, off: int, end: int, prefix: str) -> None:
    for atype, a, b in rec.nested(buf, off, end):
        if atype == CTA_TUPLE_IP:
            for itype, x, y in rec.nested(buf, a, b):
                if itype in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    rec.field(x, f"{y - x}s", prefix + "src")
                elif itype in (CTA_IP_V4_DST, CTA_IP_V6_DST):
                    rec.field(x, f"{y - x}s", prefix + "dst")
                else:
                    raise _Unlearnable
        elif atype == CTA_TUPLE_PROTO:
            for ptype, x, y in rec.nested(buf, a, b):
                name = {
                    CTA_PROTO_NUM: ("B", "proto"),
                    CTA_PROTO_SRC_PORT: ("H", "sport"),
                    CTA_PROTO_DST_PORT: ("H", "dport"),
                    CTA_PROTO_ICMP_ID: ("H", "sport"),
                    CTA_PROTO_ICMPV6_ID: ("H", "sport"),
                    CTA_PROTO_ICMP_TYPE: ("B", "itype"),
                    CTA_PROTO_ICMPV6_TYPE: ("B", "itype"),
                    CTA_PROTO_ICMP_CODE: ("B", "icode"),
                    CTA_PROTO_ICMPV6_CODE: ("B", "icode"),
                }.get(ptype)
                if name is None:
                    raise _Unlearnable
                rec.field(x, name[0], prefix + name[1])
        else:
            raise _Unlearnable


def _learn(buf: memoryview, off: int, end: int, entry: Entry) -> None:
    """Record the layout of a message that the generic walker just decoded as ``entry``."""
    global _layout_count
    if _layout_count >= _MAX_LAYOUTS:
        return
    rec = _Recorder(off)
    try:
        for atype, a, b in rec.nested(buf, off, end):
            if atype == CTA_TUPLE_ORIG:
                _record_tuple(rec, buf, a, b, "o_")
            elif atype == CTA_TUPLE_REPLY:
                _record_tuple(rec, buf, a, b, "r_")
            elif atype in (CTA_STATUS, CTA_TIMEOUT, CTA_MARK):
                rec.field(a, "I", {CTA_STATUS: "status", CTA_TIMEOUT: "timeout", CTA_MARK: "mark"}[atype])
            elif atype == CTA_ZONE:
                rec.field(a, "H", "zone")
            elif atype == CTA_PROTOINFO:
                for ptype, x, y in rec.nested(buf, a, b):
                    names = {
                        CTA_PROTOINFO_TCP: {1: ("B", "tcp_state"), 2: ("B", "tcp_wso"), 3: ("B", "tcp_wsr"),
                                            4: ("B", "tcp_fo"), 5: ("B", "tcp_fr")},
                        CTA_PROTOINFO_SCTP: {1: ("B", "sctp_state"), 2: ("I", "sctp_vo"), 3: ("I", "sctp_vr")},
                        CTA_PROTOINFO_DCCP: {1: ("B", "dccp_state"), 2: ("B", "dccp_role"), 3: ("Q", "dccp_seq")},
                    }.get(ptype)
                    if names is None:
                        raise _Unlearnable
                    for t, p, q in rec.nested(buf, x, y):
                        field = names.get(t)
                        if field is None:
                            raise _Unlearnable
                        rec.field(p, field[0], field[1])
            elif atype in (CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY):
                prefix = "sao_" if atype == CTA_SEQ_ADJ_ORIG else "sar_"
                for t, p, q in rec.nested(buf, a, b):
                    if t not in (1, 2, 3):
                        raise _Unlearnable
                    rec.field(p, "I", prefix + str(t))
            elif atype == CTA_LABELS:
                rec.field(a, f"{b - a}s", "labels")
            elif atype == CTA_HELP:
                for t, p, q in rec.nested(buf, a, b):
                    if t == CTA_HELP_NAME:
                        rec.field(p, f"{q - p}s", "helper")
            # anything else (id, use, counters, timestamps, ...): header checked, payload skipped
    except _Unlearnable:
        return
    layout = _compile(rec, end - off)
    if layout is None:
        return
    s, mask, expected, build = layout
    if int.from_bytes(buf[off:end], "little") & mask != expected or build(s.unpack_from(buf, off)) != entry:
        return  # never install a layout that disagrees with the walker
    _LAYOUTS.setdefault(end - off, []).append(layout)
    _layout_count += 1


def _tcp_info(state: int, wso: int, wsr: int, fo: int, fr: int) -> TcpInfo:
    key = (state, wso, wsr, fo, fr)
    info = _TCP_INFO.get(key)
    if info is None:
        info = TcpInfo(_TCP_STATES[state], wso, wsr, fo, fr)
        if len(_TCP_INFO) < 4096:
            _TCP_INFO[key] = info
    return info


def _compile(rec: _Recorder, size: int):  # type: ignore[no-untyped-def]
    """(data struct, header mask, expected headers, builder) for one recorded layout.

    Validation is one big-integer operation: the message read as an integer, masked to
    the bytes of its attribute headers, must equal the recorded headers. Only payload
    fields are unpacked.
    """
    pieces = sorted(rec.pieces, key=lambda p: p[0])
    fmt = ">"
    pos = 0
    index = 0
    mask = bytearray(size)
    expected = bytearray(size)
    fields: dict[str, int] = {}
    for offset, piece, role in pieces:
        width = struct.calcsize(">" + piece)
        if offset < pos or offset + width > size:
            return None
        if isinstance(role, tuple):
            mask[offset : offset + 4] = b"\xff\xff\xff\xff"
            expected[offset : offset + 4] = struct.pack(">HH", *role)
            continue
        if offset > pos:
            fmt += f"{offset - pos}x"
        fmt += piece
        pos = offset + width
        if role in fields:
            return None
        fields[str(role)] = index
        index += 1
    s = struct.Struct(fmt)
    mask_int = int.from_bytes(mask, "little")
    expected_int = int.from_bytes(expected, "little")

    def f(name: str, default: str = "0") -> str:
        return f"v[{fields[name]}]" if name in fields else default

    def tuple_expr(prefix: str) -> str | None:
        src, dst = prefix + "src", prefix + "dst"
        if src not in fields or dst not in fields or prefix + "proto" not in fields:
            return None
        family = "F4" if s.size and struct.calcsize(">" + _field_fmt(pieces, src)) == 4 else "F6"
        dport = f(prefix + "dport")
        if prefix + "itype" in fields:
            dport = f"({f(prefix + 'itype')} << 8 | {f(prefix + 'icode')})"
        return f"TN(CT, ({family}, {f(src)}, {f(dst)}, {f(prefix + 'proto')}, {f(prefix + 'sport')}, {dport}))"

    orig, reply = tuple_expr("o_"), tuple_expr("r_")
    if orig is None or reply is None:
        return None
    protoinfo = "None"
    if "tcp_state" in fields:
        protoinfo = (f"TCPI({f('tcp_state')}, {f('tcp_wso')}, {f('tcp_wsr')}, {f('tcp_fo')}, {f('tcp_fr')})")
    elif "sctp_state" in fields:
        protoinfo = f"SCTPI(SCTPS[{f('sctp_state')}], {f('sctp_vo')}, {f('sctp_vr')})"
    elif "dccp_state" in fields:
        protoinfo = f"DCCPI(DCCPS[{f('dccp_state')}], {f('dccp_role')}, {f('dccp_seq')})"
    sao = f"SA({f('sao_1')}, {f('sao_2')}, {f('sao_3')})" if "sao_1" in fields else "None"
    sar = f"SA({f('sar_1')}, {f('sar_2')}, {f('sar_3')})" if "sar_1" in fields else "None"
    labels = f"LBL({f('labels')})" if "labels" in fields else "0"
    helper = f"HLP({f('helper')})" if "helper" in fields else "''"
    source = (
        f"lambda v: TN(E, ({orig}, {reply}, {f('zone')}, {f('status')}, {f('timeout')}, {f('mark')}, "
        f"{protoinfo}, {sao}, {sar}, {labels}, {helper}))"
    )
    names = {
        "TN": tuple.__new__, "E": Entry, "CT": ConnTuple, "F4": Family.IPV4, "F6": Family.IPV6, "TCPI": _tcp_info,
        "SCTPI": SctpInfo, "SCTPS": _SCTP_STATES, "DCCPI": DccpInfo, "DCCPS": _DCCP_STATES,
        "SA": SeqAdj, "LBL": labels_from_bytes, "HLP": _helper_name,
    }
    # tuple.__new__ skips the NamedTuples' Python-level __new__ (a third of the cost)
    build = eval(source, names)  # noqa: S307 - source built above from indices only
    return s, mask_int, expected_int, build


def _field_fmt(pieces: list[tuple[int, str, object]], name: str) -> str:
    for _, piece, role in pieces:
        if role == name:
            return piece
    raise KeyError(name)


def _helper_name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def decode_entry(buf: memoryview, off: int, end: int) -> Entry:
    """The attributes of one conntrack message [off, end) (after nfgenmsg) -> Entry.

    Attributes the kernel did not send keep the Entry defaults: an UPDATE event
    carries protoinfo only when it changed, so there ``protoinfo is None`` means
    "unchanged", not "none" (see snep.kernel.base.complete_update).
    """
    layouts = _LAYOUTS.get(end - off)
    if layouts is not None:
        whole = int.from_bytes(buf[off:end], "little")
        for s, mask, expected, build in layouts:
            if whole & mask == expected:  # type: ignore[operator]
                try:
                    return build(s.unpack_from(buf, off))  # type: ignore[operator]
                except (IndexError, ValueError):
                    break  # a state number we do not know: let the walker say so
    entry = decode_entry_generic(buf, off, end)
    _learn(buf, off, end, entry)
    return entry


def decode_stats(buf: memoryview, msg: Message, names: dict[int, str]) -> dict[str, int]:
    """A stats message (per-CPU or global) -> {name: value}."""
    out: dict[str, int] = {}
    for t, x, y in _iter_attrs(buf, msg.offset + NFGENMSG.size, msg.end):
        name = names.get(t)
        if name is not None:
            out[name] = _u32(buf, x, y)
    return out


# --- encoding ---------------------------------------------------------------------


def nla(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return NLA.pack(n, atype) + payload + b"\0" * (_align(n) - n)


def nest(atype: int, *children: bytes) -> bytes:
    body = b"".join(children)
    return NLA.pack(4 + len(body), atype | NLA_F_NESTED) + body


def message(mtype: int, flags: int, seq: int, family: int, body: bytes, pid: int = 0) -> bytes:
    """nlmsghdr + nfgenmsg + attributes."""
    return NLMSGHDR.pack(HEADER_SIZE + len(body), mtype, flags, seq, pid) + NFGENMSG.pack(family, NFNETLINK_V0, 0) + body


def _tuple_encoder(family: Family, kind: str) -> tuple[struct.Struct, tuple[int, ...]]:
    """The decoding template of this tuple shape (NLA_F_NESTED variant) packs it too."""
    nested_ip = _hdr_be(0, CTA_TUPLE_IP | NLA_F_NESTED)[1]
    for t in _TUPLE_TEMPLATES[_tuple_size(family, kind)]:
        if t.family is family and t.kind == kind and t.headers[1] == nested_ip:
            return t.struct, t.headers
    raise AssertionError("no tuple template")  # pragma: no cover


def _tuple_size(family: Family, kind: str) -> int:
    asize = family.address_size
    proto = {"ports": 28, "icmp": 36, "none": 12}[kind]
    return 4 + 4 + 2 * (4 + asize) + proto


def _tuple_kind(proto: int) -> str:
    if proto in _PORT_PROTOS:
        return "ports"
    if proto == Proto.ICMP or proto == Proto.ICMPV6:
        return "icmp"
    return "none"


_TUPLE_ENCODERS = {
    (family, kind): _tuple_encoder(family, kind) for family in Family for kind in ("ports", "icmp", "none")
}
_TUPLE_HDR_CACHE: dict[tuple[int, int], bytes] = {}


def encode_tuple(atype: int, t: ConnTuple) -> bytes:
    """A CTA_TUPLE_ORIG/REPLY attribute."""
    kind = _tuple_kind(t.proto)
    s, h = _TUPLE_ENCODERS[(t.family, kind)]
    if len(t.src) != t.family.address_size or len(t.dst) != t.family.address_size:
        raise ValueError(f"address size does not match family in {t!r}")
    if kind == "ports":
        body = s.pack(h[0], h[1], h[2], h[3], t.src, h[4], h[5], t.dst, h[6], h[7], h[8], h[9], t.proto,
                      h[10], h[11], t.sport, h[12], h[13], t.dport)
    elif kind == "icmp":
        body = s.pack(h[0], h[1], h[2], h[3], t.src, h[4], h[5], t.dst, h[6], h[7], h[8], h[9], t.proto,
                      h[10], h[11], t.sport, h[12], h[13], t.dport >> 8, h[14], h[15], t.dport & 0xFF)
    else:
        body = s.pack(h[0], h[1], h[2], h[3], t.src, h[4], h[5], t.dst, h[6], h[7], h[8], h[9], t.proto)
    return NLA.pack(4 + len(body), atype | NLA_F_NESTED) + body


def _u32_attr(atype: int, value: int) -> bytes:
    return NLA.pack(8, atype) + U32.pack(value & 0xFFFFFFFF)


def _zone_attr(zone: int) -> bytes:
    return NLA.pack(6, CTA_ZONE) + U16.pack(zone) + b"\0\0"


def encode_protoinfo(info: TcpInfo | SctpInfo | DccpInfo) -> bytes:
    if isinstance(info, TcpInfo):
        return nest(
            CTA_PROTOINFO,
            nest(
                CTA_PROTOINFO_TCP,
                nla(CTA_PROTOINFO_TCP_STATE, bytes((info.state,))),
                nla(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, bytes((info.wscale_orig,))),
                nla(CTA_PROTOINFO_TCP_WSCALE_REPLY, bytes((info.wscale_reply,))),
                nla(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, bytes((info.flags_orig, 0xFF))),
                nla(CTA_PROTOINFO_TCP_FLAGS_REPLY, bytes((info.flags_reply, 0xFF))),
            ),
        )
    if isinstance(info, SctpInfo):
        return nest(
            CTA_PROTOINFO,
            nest(
                CTA_PROTOINFO_SCTP,
                nla(CTA_PROTOINFO_SCTP_STATE, bytes((info.state,))),
                nla(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, U32.pack(info.vtag_orig)),
                nla(CTA_PROTOINFO_SCTP_VTAG_REPLY, U32.pack(info.vtag_reply)),
            ),
        )
    return nest(
        CTA_PROTOINFO,
        nest(
            CTA_PROTOINFO_DCCP,
            nla(CTA_PROTOINFO_DCCP_STATE, bytes((info.state,))),
            nla(CTA_PROTOINFO_DCCP_ROLE, bytes((info.role,))),
            nla(CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ, U64.pack(info.handshake_seq)),
        ),
    )


_PROTOINFO_CACHE: dict[object, bytes] = {}


def _protoinfo_attr(info: TcpInfo | SctpInfo | DccpInfo) -> bytes:
    data = _PROTOINFO_CACHE.get(info)
    if data is None:
        data = encode_protoinfo(info)
        if len(_PROTOINFO_CACHE) < 4096:
            _PROTOINFO_CACHE[info] = data
    return data


def _seqadj_attr(atype: int, s: SeqAdj) -> bytes:
    return nest(
        atype,
        _u32_attr(CTA_SEQADJ_CORRECTION_POS, s.correction_pos),
        _u32_attr(CTA_SEQADJ_OFFSET_BEFORE, s.offset_before),
        _u32_attr(CTA_SEQADJ_OFFSET_AFTER, s.offset_after),
    )


def _nat_attr(atype: int, family: Family, address: bytes, port: int, with_port: bool) -> bytes:
    if family is Family.IPV4:
        parts = [nla(CTA_NAT_V4_MINIP, address), nla(CTA_NAT_V4_MAXIP, address)]
    else:
        parts = [nla(CTA_NAT_V6_MINIP, address), nla(CTA_NAT_V6_MAXIP, address)]
    if with_port:
        parts.append(
            nest(CTA_NAT_PROTO, nla(CTA_PROTONAT_PORT_MIN, U16.pack(port)), nla(CTA_PROTONAT_PORT_MAX, U16.pack(port)))
        )
    return nest(atype, *parts)


def _key_attrs(entry: Entry) -> bytes:
    data = encode_tuple(CTA_TUPLE_ORIG, entry.orig)
    if entry.zone:
        data += _zone_attr(entry.zone)
    return data


def _state_attrs(entry: Entry, status: int, with_helper: bool) -> list[bytes]:
    parts = [_u32_attr(CTA_STATUS, status), _u32_attr(CTA_TIMEOUT, max(entry.timeout, 1))]
    if entry.mark:
        parts.append(_u32_attr(CTA_MARK, entry.mark))
    if entry.protoinfo is not None:
        parts.append(_protoinfo_attr(entry.protoinfo))
    if entry.seqadj_orig is not None:
        parts.append(_seqadj_attr(CTA_SEQ_ADJ_ORIG, entry.seqadj_orig))
    if entry.seqadj_reply is not None:
        parts.append(_seqadj_attr(CTA_SEQ_ADJ_REPLY, entry.seqadj_reply))
    if entry.labels:
        parts.append(nla(CTA_LABELS, labels_to_bytes(entry.labels)))
        parts.append(nla(CTA_LABELS_MASK, labels_to_bytes((1 << 128) - 1)))
    if with_helper and entry.helper:
        parts.append(nest(CTA_HELP, nla(CTA_HELP_NAME, entry.helper.encode("ascii") + b"\0")))
    return parts


_NAT_DONE = int(Status.SRC_NAT_DONE | Status.DST_NAT_DONE)
_CONFIRMED = int(Status.CONFIRMED)
_CREATE_STATUS_KEEP = ~_CREATE_STATUS_CLEAR & 0xFFFFFFFF
_CREATE_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
_FAST_CREATE: dict[tuple[int, int, bool, bool, bool, int], object] = {}
_HEAD = struct.Struct("=IHHIIBBH")  # nlmsghdr + nfgenmsg in one


def encode_create(entry: Entry, seq: int, *, ack: bool = False) -> bytes:
    """IPCTNL_MSG_CT_NEW that creates ``entry`` (EEXIST if it exists), NAT included.

    NAT is the difference between the reply tuple and the inverted original tuple:
    SNAT rewrote the source (the reply goes to the translated address), DNAT the
    destination (the reply comes from it); it is sent as CTA_NAT_SRC/CTA_NAT_DST.

    The common entries (no NAT, sequence adjustment, labels or helper; TCP or no
    protocol info) go through an encoder compiled per shape: one pack call for the
    whole body (a commit writes 100,000 of them). The output is byte for byte the
    generic encoder's (tests/test_kernel_netlink.py checks it).
    """
    o = entry.orig
    plain = o.inverted()
    pi = entry.protoinfo
    if (
        entry.reply == plain
        and not entry.status & _NAT_DONE
        and entry.seqadj_orig is None
        and entry.seqadj_reply is None
        and not entry.labels
        and not entry.helper
        and (pi is None or pi.__class__ is TcpInfo)
    ):
        key = (o.family, o.proto, entry.zone != 0, entry.mark != 0, pi is not None, len(o.src) + len(o.dst))
        enc = _FAST_CREATE.get(key)
        if enc is None:
            enc = _FAST_CREATE[key] = _compile_create(*key)
        return enc(entry, o, plain, pi, seq, _CREATE_FLAGS | NLM_F_ACK if ack else _CREATE_FLAGS)  # type: ignore[operator]
    return encode_create_generic(entry, seq, ack=ack)


def _compile_create(family: int, proto: int, zone: bool, mark: bool, tcp: bool, sizes: int):  # type: ignore[no-untyped-def]
    """Build the one-pack encoder for one shape of entry (see encode_create)."""
    fam = Family(family)
    asize = fam.address_size
    if sizes != 2 * asize:  # a packed "4s" would silently truncate a 16-byte address
        raise ValueError(f"address sizes do not match {fam.name}")
    kind = _tuple_kind(proto)
    pieces: list[tuple[str, str]] = []

    def hdr(length: int, atype: int) -> None:
        a, b = _hdr_be(length, atype)
        pieces.append(("HH", f"{a}, {b}"))

    def tup(atype: int, t: str) -> None:
        hdr(_tuple_size(fam, kind), atype | NLA_F_NESTED)
        src, dst = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if fam is Family.IPV4 else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        hdr(4 + 2 * (4 + asize), CTA_TUPLE_IP | NLA_F_NESTED)
        hdr(4 + asize, src)
        pieces.append((f"{asize}s", f"{t}.src"))
        hdr(4 + asize, dst)
        pieces.append((f"{asize}s", f"{t}.dst"))
        hdr({"ports": 28, "icmp": 36, "none": 12}[kind], CTA_TUPLE_PROTO | NLA_F_NESTED)
        hdr(5, CTA_PROTO_NUM)
        pieces.append(("B3x", f"{t}.proto"))
        if kind == "ports":
            hdr(6, CTA_PROTO_SRC_PORT)
            pieces.append(("H2x", f"{t}.sport"))
            hdr(6, CTA_PROTO_DST_PORT)
            pieces.append(("H2x", f"{t}.dport"))
        elif kind == "icmp":
            v6 = fam is Family.IPV6
            hdr(6, CTA_PROTO_ICMPV6_ID if v6 else CTA_PROTO_ICMP_ID)
            pieces.append(("H2x", f"{t}.sport"))
            hdr(5, CTA_PROTO_ICMPV6_TYPE if v6 else CTA_PROTO_ICMP_TYPE)
            pieces.append(("B3x", f"{t}.dport >> 8"))
            hdr(5, CTA_PROTO_ICMPV6_CODE if v6 else CTA_PROTO_ICMP_CODE)
            pieces.append(("B3x", f"{t}.dport & 255"))

    tup(CTA_TUPLE_ORIG, "o")
    tup(CTA_TUPLE_REPLY, "p")
    if zone:
        hdr(6, CTA_ZONE)
        pieces.append(("H2x", "e.zone"))
    hdr(8, CTA_STATUS)
    pieces.append(("I", f"(e.status | {_CONFIRMED}) & {_CREATE_STATUS_KEEP}"))
    hdr(8, CTA_TIMEOUT)
    pieces.append(("I", "e.timeout or 1"))
    if mark:
        hdr(8, CTA_MARK)
        pieces.append(("I", "e.mark"))
    if tcp:
        hdr(48, CTA_PROTOINFO | NLA_F_NESTED)
        hdr(44, CTA_PROTOINFO_TCP | NLA_F_NESTED)
        hdr(5, CTA_PROTOINFO_TCP_STATE)
        pieces.append(("B3x", "pi.state"))
        hdr(5, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL)
        pieces.append(("B3x", "pi.wscale_orig"))
        hdr(5, CTA_PROTOINFO_TCP_WSCALE_REPLY)
        pieces.append(("B3x", "pi.wscale_reply"))
        hdr(6, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL)
        pieces.append(("BB2x", "pi.flags_orig, 255"))
        hdr(6, CTA_PROTOINFO_TCP_FLAGS_REPLY)
        pieces.append(("BB2x", "pi.flags_reply, 255"))
    body = struct.Struct(">" + "".join(f for f, _ in pieces))
    total = HEADER_SIZE + body.size
    source = (
        f"lambda e, o, p, pi, seq, flags: HEAD({total}, {MSG_CT_NEW}, flags, seq, 0, {family}, 0, 0)"
        f" + BODY({', '.join(x for _, x in pieces)})"
    )
    return eval(source, {"HEAD": _HEAD.pack, "BODY": body.pack})  # noqa: S307 - built from constants only


def encode_create_generic(entry: Entry, seq: int, *, ack: bool = False) -> bytes:
    """:func:`encode_create` for any entry, attribute by attribute (the reference)."""
    status = (entry.status | Status.CONFIRMED) & ~_CREATE_STATUS_CLEAR
    plain = entry.orig.inverted()
    parts = [
        encode_tuple(CTA_TUPLE_ORIG, entry.orig),
        encode_tuple(CTA_TUPLE_REPLY, plain),
    ]
    if entry.zone:
        parts.append(_zone_attr(entry.zone))
    parts.extend(_state_attrs(entry, status, True))
    snat = dnat = None
    if entry.reply != plain:
        # As conntrackd does (NFCT_SOPT_SETUP_REPLY): the plain reply tuple plus the NAT
        # ranges, so that the kernel translates the reply tuple itself and sets the
        # SRC_NAT/DST_NAT bits that make it rewrite packets. Sending the translated
        # reply tuple instead creates an entry that looks right but NATs nothing.
        snat, dnat = entry.nat()
    # A "done" bit without a translation is the kernel's null binding (NAT hooks saw
    # the connection and left it alone): an identity range recreates exactly that.
    if snat is None and entry.status & Status.SRC_NAT_DONE:
        snat = (entry.orig.src, entry.orig.sport)
    if dnat is None and entry.status & Status.DST_NAT_DONE:
        dnat = (entry.orig.dst, entry.orig.dport)
    with_port = entry.orig.proto in _PORT_PROTOS
    if snat is not None:
        parts.append(_nat_attr(CTA_NAT_SRC, entry.orig.family, snat[0], snat[1], with_port))
    if dnat is not None:
        parts.append(_nat_attr(CTA_NAT_DST, entry.orig.family, dnat[0], dnat[1], with_port))
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (NLM_F_ACK if ack else 0)
    return message(MSG_CT_NEW, flags, seq, entry.orig.family, b"".join(parts))


def encode_update(entry: Entry, seq: int, *, with_status: bool = True, ack: bool = False) -> bytes:
    """IPCTNL_MSG_CT_NEW without NLM_F_CREATE: change an existing entry (ENOENT if none).

    NAT cannot change on an existing entry (the kernel answers EOPNOTSUPP), so it is
    left out; the status keeps CONFIRMED, which the kernel refuses to see cleared.
    """
    status = (entry.status | Status.CONFIRMED) & ~int(Status.DYING | Status.TEMPLATE | Status.UNTRACKED)
    parts = [_key_attrs(entry)]
    state = _state_attrs(entry, int(status), bool(entry.helper))
    if not with_status:
        state = state[1:]
    parts.extend(state)
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return message(MSG_CT_NEW, flags, seq, entry.orig.family, b"".join(parts))


def encode_timeout(entry: Entry, timeout: int, seq: int) -> bytes:
    """Set only the timeout of an existing entry (what ``conntrackd -t`` does)."""
    body = _key_attrs(entry) + _u32_attr(CTA_TIMEOUT, timeout)
    return message(MSG_CT_NEW, NLM_F_REQUEST, seq, entry.orig.family, body)


def encode_delete(entry: Entry, seq: int, *, ack: bool = False) -> bytes:
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return message(MSG_CT_DELETE, flags, seq, entry.orig.family, _key_attrs(entry))


def encode_dump(seq: int, family: int = socket.AF_UNSPEC) -> bytes:
    return message(MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, b"")


def encode_flush(seq: int, *, mark: int | None = None, mark_mask: int = 0xFFFFFFFF, zone: int | None = None) -> bytes:
    """Delete all entries, or those matching mark/zone (the kernel filters)."""
    parts = []
    if mark is not None:
        parts.append(_u32_attr(CTA_MARK, mark))
        parts.append(_u32_attr(CTA_MARK_MASK, mark_mask))
    if zone is not None:
        parts.append(_zone_attr(zone))
    return message(MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, socket.AF_UNSPEC, b"".join(parts))


def encode_noop(seq: int) -> bytes:
    """NLMSG_NOOP: holds the place (and sequence number) of a request we could not encode."""
    return NLMSGHDR.pack(16, NLMSG_NOOP, NLM_F_REQUEST, seq, 0)


def encode_stats(seq: int, *, per_cpu: bool) -> bytes:
    if per_cpu:
        return message(MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, seq, socket.AF_UNSPEC, b"")
    return message(MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, seq, socket.AF_UNSPEC, b"")
