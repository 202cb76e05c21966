"""Byte layouts that decoding and encoding share: the usual tuple layout and labels.

A tuple attribute is read (and written) in one ``struct`` call against a template of
its usual layout: the attribute headers are part of the unpacked values and must
match the template, otherwise the generic walker takes over, so odd or future
layouts stay correct and only the common ones are fast.

The templates read everything big-endian and compare header words (host-endian)
with their values read as big-endian, so one format string serves both.
"""

from __future__ import annotations

import operator
import struct
import sys
from collections.abc import Callable
from typing import Literal, NamedTuple

from snep.entry import Family, Proto
from snep.kernel.ctnetlink.constants import (
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_ICMP_CODE,
    CTA_PROTO_ICMP_ID,
    CTA_PROTO_ICMP_TYPE,
    CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID,
    CTA_PROTO_ICMPV6_TYPE,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_TUPLE_IP,
    CTA_TUPLE_PROTO,
    NLA_F_NESTED,
    NLA_TYPE_MASK,
    U16,
)

TupleKind = Literal["ports", "icmp", "none"]
TUPLE_KINDS: tuple[TupleKind, ...] = ("ports", "icmp", "none")
PORT_PROTOS = frozenset({Proto.TCP, Proto.UDP, Proto.UDPLITE, Proto.SCTP, Proto.DCCP, Proto.GRE})
_PROTO_NEST_SIZE = {"ports": 28, "icmp": 36, "none": 12}


def hdr_be(length: int, atype: int) -> tuple[int, int]:
    """An attribute header (host-endian) as read by a big-endian format."""
    return U16.unpack(struct.pack("=H", length))[0], U16.unpack(struct.pack("=H", atype))[0]


def tuple_kind(proto: int) -> TupleKind:
    if proto in PORT_PROTOS:
        return "ports"
    if proto == Proto.ICMP or proto == Proto.ICMPV6:
        return "icmp"
    return "none"


def tuple_pieces(family: Family, kind: TupleKind) -> list[tuple[str, tuple[int, int] | str]]:
    """A tuple's payload in its usual layout, nests flagged NLA_F_NESTED.

    Pieces are (struct format, attribute header (length, type) or field name); the
    ICMP type and code fields are ``itype`` and ``icode``.
    """
    asize = family.address_size
    v6 = family is Family.IPV6
    pieces: list[tuple[str, tuple[int, int] | str]] = [
        ("HH", (4 + 2 * (4 + asize), CTA_TUPLE_IP | NLA_F_NESTED)),
        ("HH", (4 + asize, CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC)),
        (f"{asize}s", "src"),
        ("HH", (4 + asize, CTA_IP_V6_DST if v6 else CTA_IP_V4_DST)),
        (f"{asize}s", "dst"),
        ("HH", (_PROTO_NEST_SIZE[kind], CTA_TUPLE_PROTO | NLA_F_NESTED)),
        ("HH", (5, CTA_PROTO_NUM)),
        ("B3x", "proto"),
    ]
    if kind == "ports":
        pieces += [
            ("HH", (6, CTA_PROTO_SRC_PORT)), ("H2x", "sport"),
            ("HH", (6, CTA_PROTO_DST_PORT)), ("H2x", "dport"),
        ]
    elif kind == "icmp":
        pieces += [
            ("HH", (6, CTA_PROTO_ICMPV6_ID if v6 else CTA_PROTO_ICMP_ID)), ("H2x", "sport"),
            ("HH", (5, CTA_PROTO_ICMPV6_TYPE if v6 else CTA_PROTO_ICMP_TYPE)), ("B3x", "itype"),
            ("HH", (5, CTA_PROTO_ICMPV6_CODE if v6 else CTA_PROTO_ICMP_CODE)), ("B3x", "icode"),
        ]
    return pieces


class TupleTemplate(NamedTuple):
    """A usual tuple layout: one unpack_from reads headers and values."""

    struct: struct.Struct
    headers: tuple[int, ...]  # expected header values, at the positions header_get picks
    header_get: Callable[[tuple[object, ...]], tuple[int, ...]]
    family: Family
    kind: TupleKind


def _template(family: Family, kind: TupleKind, nested: bool) -> TupleTemplate:
    fmt = ">"
    headers: list[int] = []
    header_pos: list[int] = []
    pos = 0  # index in the unpacked values
    for piece, role in tuple_pieces(family, kind):
        fmt += piece
        if isinstance(role, tuple):
            length, atype = role
            headers.extend(hdr_be(length, atype if nested else atype & NLA_TYPE_MASK))
            header_pos.extend((pos, pos + 1))
            pos += 2
        else:
            pos += 1
    return TupleTemplate(struct.Struct(fmt), tuple(headers), operator.itemgetter(*header_pos), family, kind)


def _tuple_templates() -> dict[int, list[TupleTemplate]]:
    """Templates by attribute size (header included); NLA_F_NESTED first, then without."""
    templates: dict[int, list[TupleTemplate]] = {}
    for family in (Family.IPV4, Family.IPV6):
        for kind in TUPLE_KINDS:
            for nested in (True, False):
                t = _template(family, kind, nested)
                templates.setdefault(4 + t.struct.size, []).append(t)
    return templates


TUPLE_TEMPLATES = _tuple_templates()
# what the encoders write: the NLA_F_NESTED variant
NESTED_TUPLE_TEMPLATES = {(f, k): _template(f, k, True) for f in Family for k in TUPLE_KINDS}


def tuple_size(family: Family, kind: TupleKind) -> int:
    """The size of a CTA_TUPLE_* attribute in the usual layout, header included."""
    return 4 + NESTED_TUPLE_TEMPLATES[(family, kind)].struct.size


_NATIVE_LITTLE = sys.byteorder == "little"


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
