"""Decoding: datagrams into messages, and the reference decoder of conntrack entries.

:func:`decode_entry_generic` walks every attribute, so it reads any layout; the fast
decoder (:mod:`snep.kernel.ctnetlink.fast`) learns layouts from it and must agree
with it. It decodes only what :class:`Entry` holds, reading with precompiled
``struct`` objects over a ``memoryview``.
"""

from __future__ import annotations

import struct
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
    TcpInfo,
    TcpState,
)
from snep.errors import DecodeError
from snep.kernel.ctnetlink.constants import (
    CTA_HELP,
    CTA_HELP_NAME,
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_LABELS,
    CTA_MARK,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_ICMP_CODE,
    CTA_PROTO_ICMP_ID,
    CTA_PROTO_ICMP_TYPE,
    CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID,
    CTA_PROTO_ICMPV6_TYPE,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_PROTOINFO,
    CTA_PROTOINFO_DCCP,
    CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
    CTA_PROTOINFO_DCCP_ROLE,
    CTA_PROTOINFO_DCCP_STATE,
    CTA_PROTOINFO_SCTP,
    CTA_PROTOINFO_SCTP_STATE,
    CTA_PROTOINFO_SCTP_VTAG_ORIGINAL,
    CTA_PROTOINFO_SCTP_VTAG_REPLY,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
    CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE,
    CTA_PROTOINFO_TCP_WSCALE_ORIGINAL,
    CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_SEQ_ADJ_ORIG,
    CTA_SEQ_ADJ_REPLY,
    CTA_SEQADJ_CORRECTION_POS,
    CTA_SEQADJ_OFFSET_AFTER,
    CTA_SEQADJ_OFFSET_BEFORE,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    CTA_ZONE,
    MSG_CT_DELETE,
    MSG_CT_NEW,
    NFGENMSG,
    NFNLGRP_CONNTRACK_DESTROY,
    NFNLGRP_CONNTRACK_NEW,
    NFNLGRP_CONNTRACK_UPDATE,
    NLA,
    NLA_TYPE_MASK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLMSGERR,
    NLMSGHDR,
    U16,
    U32,
    U64,
    align,
)
from snep.kernel.ctnetlink.layout import TUPLE_TEMPLATES, labels_from_bytes

GROUP_OF_KIND = {
    EventKind.NEW: NFNLGRP_CONNTRACK_NEW,
    EventKind.UPDATE: NFNLGRP_CONNTRACK_UPDATE,
    EventKind.DESTROY: NFNLGRP_CONNTRACK_DESTROY,
}


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
        off += align(mlen)


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


def decode_tuple(buf: memoryview, off: int, end: int) -> ConnTuple:
    """A CTA_TUPLE_* attribute's payload [off, end) -> ConnTuple."""
    for t in TUPLE_TEMPLATES.get(end - off + 4, ()):
        v = t.struct.unpack_from(buf, off)
        if t.header_get(v) == t.headers:
            if t.kind == "ports":
                return ConnTuple(t.family, v[4], v[7], v[12], v[15], v[18])
            if t.kind == "icmp":
                return ConnTuple(t.family, v[4], v[7], v[12], v[15], (v[18] << 8) | v[21])
            return ConnTuple(t.family, v[4], v[7], v[12], 0, 0)
    return decode_tuple_generic(buf, off, end)


def iter_attrs(buf: memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload offset, payload end) of each attribute in [off, end)."""
    unpack = NLA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4 or off + alen > end:
            raise DecodeError(f"attribute length {alen} at {off} overruns its container")
        yield atype & NLA_TYPE_MASK, off + 4, off + alen
        off += align(alen)


def decode_tuple_generic(buf: memoryview, off: int, end: int) -> ConnTuple:
    """:func:`decode_tuple` attribute by attribute (any layout; the reference)."""
    family = None
    src = dst = b""
    proto = sport = dport = icmp_type = icmp_code = 0
    for atype, a, b in iter_attrs(buf, off, end):
        if atype == CTA_TUPLE_IP:
            for itype, x, y in iter_attrs(buf, a, b):
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
            for ptype, x, y in iter_attrs(buf, a, b):
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


_TCP_INFO: dict[bytes, TcpInfo] = {}  # by payload: there are few distinct values


def _decode_protoinfo(buf: memoryview, off: int, end: int) -> TcpInfo | SctpInfo | DccpInfo | None:
    for ptype, a, b in iter_attrs(buf, off, end):
        if ptype == CTA_PROTOINFO_TCP:
            key = bytes(buf[a:b])
            info = _TCP_INFO.get(key)
            if info is None:
                state = wso = wsr = fo = fr = 0
                for t, x, y in iter_attrs(buf, a, b):
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
            for t, x, y in iter_attrs(buf, a, b):
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
            for t, x, y in iter_attrs(buf, a, b):
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
    for t, x, y in iter_attrs(buf, off, end):
        if t == CTA_SEQADJ_CORRECTION_POS:
            pos = _u32(buf, x, y)
        elif t == CTA_SEQADJ_OFFSET_BEFORE:
            before = _u32(buf, x, y)
        elif t == CTA_SEQADJ_OFFSET_AFTER:
            after = _u32(buf, x, y)
    return SeqAdj(pos, before, after)


def helper_name(raw: bytes) -> str:
    """CTA_HELP_NAME: a NUL-terminated name."""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


_UNPACK_NLA = NLA.unpack_from
_UNPACK_U32 = U32.unpack_from
_UNPACK_U16 = U16.unpack_from


def decode_entry_generic(buf: memoryview, off: int, end: int) -> Entry:
    """The attributes of one conntrack message [off, end) (after nfgenmsg) -> Entry.

    Walks every attribute, so any layout decodes (the reference of the fast decoder).
    Attributes the kernel did not send keep the Entry defaults: an UPDATE event
    carries protoinfo only when it changed, so there ``protoinfo is None`` means
    "unchanged", not "none" (see snep.kernel.base.complete_update).
    """
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
            for t, x, y in iter_attrs(buf, off + 4, off + alen):
                if t == CTA_HELP_NAME:
                    helper = helper_name(bytes(buf[x:y]))
        off = nxt
    if orig is None or reply is None:
        raise DecodeError("conntrack message without both tuples")
    return Entry(orig, reply, zone, status, timeout, mark, protoinfo, seqadj_orig, seqadj_reply, labels, helper)


def decode_stats(buf: memoryview, msg: Message, names: dict[int, str]) -> dict[str, int]:
    """A stats message (per-CPU or global) -> {name: value}."""
    out: dict[str, int] = {}
    for t, x, y in iter_attrs(buf, msg.offset + NFGENMSG.size, msg.end):
        name = names.get(t)
        if name is not None:
            out[name] = _u32(buf, x, y)
    return out

