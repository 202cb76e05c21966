"""The fast paths: a decoder that learns message layouts, and compiled create encoders.

Decoding is the hot path (a dump of 100,000 entries, 100,000+ events per second) and
so is creating (a commit writes 100,000 entries). Both fast paths generate Python
source from constants and compile it with ``eval``; both must give exactly what the
generic code of :mod:`.decode` and :mod:`.encode` gives (tests/test_kernel_ctnetlink.py
checks it differentially).

Layouts, one unpack_from per message: the kernel writes the messages of one kind of
connection (family, protocol, which optional attributes) with identical attribute
headers; only payloads differ. The first message of a kind is decoded by the generic
walker, and its layout recorded: every attribute header (offset, length, type) and
every payload field snep needs. From that we build a mask of the header bytes, a
big-endian struct of the payload fields and a small builder function. A later
message of the same length is checked with one masked integer comparison (its
headers must be the recorded ones, so a different layout can never be misread: it
falls back to the walker), read with one unpack_from and built into an Entry.

Everything learned or compiled lives in one :class:`FastPaths` object. Switched off
(``SNEP_NO_FASTPATH=1`` or :func:`use_fast_paths`), it learns and compiles nothing,
so every call takes the generic path.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from snep.entry import (
    ConnTuple,
    DccpInfo,
    DccpState,
    Entry,
    Family,
    SctpInfo,
    SctpState,
    SeqAdj,
    Status,
    TcpInfo,
    TcpState,
)
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
    CTA_PROTOINFO_SCTP,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
    CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE,
    CTA_PROTOINFO_TCP_WSCALE_ORIGINAL,
    CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_SEQ_ADJ_ORIG,
    CTA_SEQ_ADJ_REPLY,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    CTA_ZONE,
    HEADER_SIZE,
    MSG_CT_NEW,
    NLA,
    NLA_F_NESTED,
    NLA_TYPE_MASK,
    NLM_F_ACK,
    align,
)
from snep.kernel.ctnetlink.decode import decode_entry_generic, helper_name
from snep.wire.codec import A_META, A_ORIG_IPV4, A_TCP, ORIG4_META, ORIG4_META_TCP, decode_records
from snep.kernel.ctnetlink.encode import (
    CREATE_FLAGS,
    CREATE_STATUS_CLEAR,
    encode_create_generic,
)
from snep.kernel.ctnetlink.layout import (
    hdr_be,
    labels_from_bytes,
    tuple_kind,
    tuple_pieces,
    tuple_size,
)

MAX_LAYOUTS = 256
_MAX_TCP_INFOS = 4096
_TCP_STATES = tuple(TcpState)
_SCTP_STATES = tuple(SctpState)
_DCCP_STATES = tuple(DccpState)


class Layout(NamedTuple):
    """One learned message layout (see the module docstring)."""

    struct: struct.Struct  # the payload fields
    mask: int  # the header bytes, of the message read as a little-endian integer
    expected: int  # their recorded values
    build: Callable[[tuple[Any, ...]], Entry]  # unpacked fields -> Entry


CreateKey = tuple[int, int, bool, bool, bool, int]  # family, proto, zone?, mark?, tcp info?, address sizes
CreateEncoder = Callable[[Entry, ConnTuple, ConnTuple, Any, int, int], bytes]


class FastPaths:
    """The fast decoder and create encoder, with all they learned and compiled.

    Off, nothing is learned or compiled: ``layouts`` and ``creates`` stay empty and
    every call goes to the generic code.
    """

    __slots__ = ("enabled", "layouts", "layout_count", "creates", "record_creates", "_tcp_infos")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.layouts: dict[int, list[Layout]] = {}  # by payload length
        self.layout_count = 0
        self.creates: dict[CreateKey, CreateEncoder] = {}
        self.record_creates: dict[CreateKey, Callable[..., bytes]] = {}
        self._tcp_infos: dict[tuple[int, int, int, int, int], TcpInfo] = {}  # few distinct values

    def clear(self) -> None:
        """Forget everything learned (in place: callers may hold ``layouts.get``)."""
        self.layouts.clear()
        self.layout_count = 0
        self.creates.clear()
        self.record_creates.clear()
        self._tcp_infos.clear()

    def decode_entry(self, buf: memoryview, off: int, end: int) -> Entry:
        """:func:`decode_entry_generic` in one unpack_from when a learned layout matches."""
        layouts = self.layouts.get(end - off)
        if layouts is not None:
            whole = int.from_bytes(buf[off:end], "little")
            for s, mask, expected, build in layouts:
                if whole & mask == expected:
                    try:
                        return build(s.unpack_from(buf, off))
                    except (IndexError, ValueError):
                        break  # a state number we do not know: let the walker say so
        entry = decode_entry_generic(buf, off, end)
        self.learn(buf, off, end, entry)
        return entry

    def learn(self, buf: memoryview, off: int, end: int, entry: Entry) -> None:
        """Record the layout of a message that the generic walker just decoded as ``entry``."""
        if not self.enabled or self.layout_count >= MAX_LAYOUTS:
            return
        layout = _learn(buf, off, end, self._tcp_info)
        if layout is None:
            return
        s, mask, expected, build = layout
        if int.from_bytes(buf[off:end], "little") & mask != expected or build(s.unpack_from(buf, off)) != entry:
            return  # never install a layout that disagrees with the walker
        self.layouts.setdefault(end - off, []).append(layout)
        self.layout_count += 1

    def _tcp_info(self, state: int, wso: int, wsr: int, fo: int, fr: int) -> TcpInfo:
        key = (state, wso, wsr, fo, fr)
        info = self._tcp_infos.get(key)
        if info is None:
            info = TcpInfo(_TCP_STATES[state], wso, wsr, fo, fr)
            if len(self._tcp_infos) < _MAX_TCP_INFOS:
                self._tcp_infos[key] = info
        return info

    def encode_create(self, entry: Entry, seq: int, *, ack: bool = False) -> bytes:
        """:func:`encode_create_generic`, in one pack call for the common entries.

        Common: no NAT, sequence adjustment, labels or helper; TCP or no protocol
        info. One encoder is compiled per shape of entry (:func:`_compile_create`).
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
            enc = self.creates.get(key)
            if enc is None and self.enabled:
                enc = self.creates[key] = _compile_create(*key)
            if enc is not None:
                return enc(entry, o, plain, pi, seq, CREATE_FLAGS | NLM_F_ACK if ack else CREATE_FLAGS)
        return encode_create_generic(entry, seq, ack=ack)

    def encode_create_record(self, record: bytes, seq: int) -> bytes:
        """:meth:`encode_create` of the entry a sync record (snep.wire.codec: a STATE
        message as a backup keeps it) holds, without making the entry: a plain record
        (IPv4 ORIG and META, TCP info or none, no ICMP, no NAT bits) is read by one
        unpack and written by one pack, its fields put where the netlink layout wants
        them (the translation table of :func:`_compile_create`'s ``record`` mode)."""
        size = len(record)
        if record[3] == A_ORIG_IPV4 and record[18] == A_META and record[13] not in _ICMP and self.enabled:
            if size == 34:
                fields = ORIG4_META.unpack_from(record, 5)
                tcp = False
            elif size == 41 and record[34] == A_TCP:
                fields = ORIG4_META_TCP.unpack_from(record, 5)
                tcp = True
            else:
                fields = None
            if fields is not None and not fields[5] & _NAT_DONE:
                key = (2, fields[2], fields[8] != 0, fields[7] != 0, tcp, 8)
                enc = self.record_creates.get(key)
                if enc is None:
                    enc = self.record_creates[key] = _compile_create(*key, record=True)
                return enc(seq, CREATE_FLAGS, *fields)
        return self.encode_create(decode_records([record])[0].entry, seq)


# --- learning layouts -------------------------------------------------------------


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
            off += align(alen)
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


def _learn(buf: memoryview, off: int, end: int, tcp_info: Callable[..., TcpInfo]) -> Layout | None:
    """The layout of the message [off, end), or None if it has parts we cannot learn."""
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
        return None
    return _compile(rec, end - off, tcp_info)


def _compile(rec: _Recorder, size: int, tcp_info: Callable[..., TcpInfo]) -> Layout | None:
    """The :class:`Layout` of one recorded message (None: its pieces overlap or repeat).

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
        "TN": tuple.__new__, "E": Entry, "CT": ConnTuple, "F4": Family.IPV4, "F6": Family.IPV6, "TCPI": tcp_info,
        "SCTPI": SctpInfo, "SCTPS": _SCTP_STATES, "DCCPI": DccpInfo, "DCCPS": _DCCP_STATES,
        "SA": SeqAdj, "LBL": labels_from_bytes, "HLP": helper_name,
    }
    # tuple.__new__ skips the NamedTuples' Python-level __new__ (a third of the cost)
    build = eval(source, names)  # noqa: S307 - source built above from indices only
    return Layout(s, mask_int, expected_int, build)


def _field_fmt(pieces: list[tuple[int, str, object]], name: str) -> str:
    for _, piece, role in pieces:
        if role == name:
            return piece
    raise KeyError(name)


# --- compiled create encoders -----------------------------------------------------

_NAT_DONE = int(Status.SRC_NAT_DONE | Status.DST_NAT_DONE)
_CONFIRMED = int(Status.CONFIRMED)
_CREATE_STATUS_KEEP = ~CREATE_STATUS_CLEAR & 0xFFFFFFFF
_HEAD = struct.Struct("=IHHIIBBH")  # nlmsghdr + nfgenmsg in one
# tuple_pieces' field names as expressions of the tuple, "{}" standing for it
_TUPLE_FIELDS = {
    "src": "{}.src", "dst": "{}.dst", "proto": "{}.proto", "sport": "{}.sport", "dport": "{}.dport",
    "itype": "{}.dport >> 8", "icode": "{}.dport & 255",
}


#: ``record`` mode of _compile_create: the entry's fields as a plain sync record's
#: unpack gives them (snep.wire.codec's ORIG4_META and ORIG4_META_TCP), the reply
#: tuple the original's swapped (no NAT, no ICMP in that mode)
_RECORD_FIELDS = {
    "o.src": "src", "o.dst": "dst", "o.proto": "proto", "o.sport": "sport", "o.dport": "dport",
    "p.src": "dst", "p.dst": "src", "p.proto": "proto", "p.sport": "dport", "p.dport": "sport",
    "e.zone": "zone", "e.status": "status", "e.timeout": "timeout", "e.mark": "mark",
    "pi.state": "state", "pi.wscale_orig": "wso", "pi.wscale_reply": "wsr",
    "pi.flags_orig": "flo", "pi.flags_reply": "flr",
}
_RECORD_ARGS = "seq, flags, src, dst, proto, sport, dport, status, timeout, mark, zone, state=0, wso=0, wsr=0, flo=0, flr=0"
_FIELD = re.compile(r"\b(?:o|p|e|pi)\.\w+")
_ICMP = frozenset({1, 58})


def _compile_create(
    family: int, proto: int, zone: bool, mark: bool, tcp: bool, sizes: int, *, record: bool = False
) -> CreateEncoder:
    """The one-pack encoder of one shape of entry (see FastPaths.encode_create); with
    ``record``, of the fields of a plain sync record (FastPaths.encode_create_record)."""
    fam = Family(family)
    if sizes != 2 * fam.address_size:  # a packed "4s" would silently truncate a 16-byte address
        raise ValueError(f"address sizes do not match {fam.name}")
    kind = tuple_kind(proto)
    pieces: list[tuple[str, str]] = []  # (struct format, expression)

    def hdr(length: int, atype: int) -> None:
        a, b = hdr_be(length, atype)
        pieces.append(("HH", f"{a}, {b}"))

    def tup(atype: int, t: str) -> None:
        hdr(tuple_size(fam, kind), atype | NLA_F_NESTED)
        for piece, role in tuple_pieces(fam, kind):
            if isinstance(role, tuple):
                hdr(*role)
            else:
                pieces.append((piece, _TUPLE_FIELDS[role].format(t)))

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
    values = ", ".join(x for _, x in pieces)
    args = "e, o, p, pi, seq, flags"
    if record:
        values = _FIELD.sub(lambda m: _RECORD_FIELDS[m.group()], values)
        args = _RECORD_ARGS
    source = f"lambda {args}: HEAD({total}, {MSG_CT_NEW}, flags, seq, 0, {family}, 0, 0) + BODY({values})"
    encoder: CreateEncoder = eval(source, {"HEAD": _HEAD.pack, "BODY": body.pack})  # noqa: S307 - from constants only
    return encoder


# --- the switch -------------------------------------------------------------------

fast_paths = FastPaths(enabled=os.environ.get("SNEP_NO_FASTPATH", "") in ("", "0"))
decode_entry = fast_paths.decode_entry
encode_create = fast_paths.encode_create
encode_create_record = fast_paths.encode_create_record


def use_fast_paths(enabled: bool) -> None:
    """Switch the fast paths on or off; either way, forget what they learned."""
    fast_paths.enabled = enabled
    fast_paths.clear()
