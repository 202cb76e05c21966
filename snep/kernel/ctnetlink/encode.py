"""Encoding: :class:`Entry` values and requests into ctnetlink messages, attribute by
attribute. These are the reference encoders; :mod:`snep.kernel.ctnetlink.fast` compiles
a faster create encoder for the common entries that must give the same bytes.

Round trip: ``decode(dump of e)`` -> entry -> ``encode_create(entry)`` creates a
connection that dumps back as ``e`` (modulo the timeout countdown).
"""

from __future__ import annotations

import socket

from snep.entry import (
    ConnTuple,
    DccpInfo,
    Entry,
    Family,
    SctpInfo,
    SeqAdj,
    Status,
    TcpInfo,
)
from snep.kernel.ctnetlink.constants import (
    CTA_HELP,
    CTA_HELP_NAME,
    CTA_LABELS,
    CTA_LABELS_MASK,
    CTA_MARK,
    CTA_MARK_MASK,
    CTA_NAT_DST,
    CTA_NAT_PROTO,
    CTA_NAT_SRC,
    CTA_NAT_V4_MAXIP,
    CTA_NAT_V4_MINIP,
    CTA_NAT_V6_MAXIP,
    CTA_NAT_V6_MINIP,
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
    CTA_PROTONAT_PORT_MAX,
    CTA_PROTONAT_PORT_MIN,
    CTA_SEQ_ADJ_ORIG,
    CTA_SEQ_ADJ_REPLY,
    CTA_SEQADJ_CORRECTION_POS,
    CTA_SEQADJ_OFFSET_AFTER,
    CTA_SEQADJ_OFFSET_BEFORE,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_REPLY,
    CTA_ZONE,
    HEADER_SIZE,
    MSG_CT_DELETE,
    MSG_CT_GET,
    MSG_CT_GET_STATS,
    MSG_CT_GET_STATS_CPU,
    MSG_CT_NEW,
    NFGENMSG,
    NFNETLINK_V0,
    NLA,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_NOOP,
    NLMSGHDR,
    U16,
    U32,
    U64,
    align,
)
from snep.kernel.ctnetlink.layout import (
    NESTED_TUPLE_TEMPLATES,
    PORT_PROTOS,
    labels_to_bytes,
    tuple_kind,
)

# Status bits the kernel manages itself and refuses (EBUSY) or ignores from userspace.
# On create the kernel starts from CONFIRMED (it refuses EBUSY a status without it).
CREATE_STATUS_CLEAR = int(Status.DYING | Status.EXPECTED | Status.TEMPLATE | Status.UNTRACKED)
CREATE_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL


def nla(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return NLA.pack(n, atype) + payload + b"\0" * (align(n) - n)


def nest(atype: int, *children: bytes) -> bytes:
    body = b"".join(children)
    return NLA.pack(4 + len(body), atype | NLA_F_NESTED) + body


def message(mtype: int, flags: int, seq: int, family: int, body: bytes, pid: int = 0, res_id: int = 0) -> bytes:
    """nlmsghdr + nfgenmsg + attributes. ``res_id`` is the nfgenmsg's resource id
    (network byte order on the wire): 0 for ctnetlink, the queue number for nfqueue."""
    return (
        NLMSGHDR.pack(HEADER_SIZE + len(body), mtype, flags, seq, pid)
        + NFGENMSG.pack(family, NFNETLINK_V0, socket.htons(res_id))
        + body
    )


# the decoding templates pack tuples too (their header values are the attribute headers)
_TUPLE_ENCODERS = {key: (t.struct, t.headers) for key, t in NESTED_TUPLE_TEMPLATES.items()}


def encode_tuple(atype: int, t: ConnTuple) -> bytes:
    """A CTA_TUPLE_ORIG/REPLY attribute."""
    kind = tuple_kind(t.proto)
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


def encode_create_generic(entry: Entry, seq: int, *, ack: bool = False) -> bytes:
    """IPCTNL_MSG_CT_NEW that creates ``entry`` (EEXIST if it exists), NAT included.

    NAT is the difference between the reply tuple and the inverted original tuple:
    SNAT rewrote the source (the reply goes to the translated address), DNAT the
    destination (the reply comes from it); it is sent as CTA_NAT_SRC/CTA_NAT_DST.
    Any entry, attribute by attribute: the reference of the compiled encoder.
    """
    status = (entry.status | Status.CONFIRMED) & ~CREATE_STATUS_CLEAR
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
    with_port = entry.orig.proto in PORT_PROTOS
    if snat is not None:
        parts.append(_nat_attr(CTA_NAT_SRC, entry.orig.family, snat[0], snat[1], with_port))
    if dnat is not None:
        parts.append(_nat_attr(CTA_NAT_DST, entry.orig.family, dnat[0], dnat[1], with_port))
    flags = CREATE_FLAGS | (NLM_F_ACK if ack else 0)
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
