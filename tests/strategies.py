"""Hypothesis strategies for snep's values: tuples, entries, events, messages, frames.

Reusable by every test suite (``from tests.strategies import entries, events``).
They cover the whole value space the wire format promises to carry: IPv4 and IPv6,
every L4 protocol conntrack tracks (and unknown protocol numbers), ICMP/ICMPv6
id-type-code, NAT (SNAT, DNAT, both, arbitrary reply tuples), sequence adjustment,
labels up to 128 bits, helper names, and the extreme values of every field.
"""

from __future__ import annotations

from hypothesis import strategies as st

from snep.entry import (
    ConnTuple,
    DccpInfo,
    DccpState,
    Entry,
    Event,
    EventKind,
    Family,
    Proto,
    SctpInfo,
    SctpState,
    SeqAdj,
    TcpInfo,
    TcpState,
)
from snep.wire.messages import (
    Ack,
    Alive,
    Frame,
    Hello,
    MessageType,
    Nack,
    Report,
    ReportAck,
    ResyncRequest,
)

U8 = 0xFF
U16 = 0xFFFF
U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1


def uint(maximum: int) -> st.SearchStrategy[int]:
    """Integers 0..maximum, with the edges (0, 1, max-1, max) drawn often."""
    return st.one_of(st.sampled_from([0, 1, maximum - 1, maximum]), st.integers(0, maximum))


def addresses(family: Family) -> st.SearchStrategy[bytes]:
    size = family.address_size
    return st.one_of(
        st.binary(min_size=size, max_size=size),
        st.sampled_from([b"\x00" * size, b"\xff" * size]),
    )


families = st.sampled_from(list(Family))
_KNOWN_PROTOS = frozenset(int(p) for p in Proto)
known_protos = st.sampled_from(sorted(_KNOWN_PROTOS))
protos = st.one_of(known_protos, known_protos, st.integers(0, U8))


def icmp_port_fields(proto: int) -> st.SearchStrategy[tuple[int, int]]:
    """(id, type << 8 | code), with the echo and query types that invert drawn often."""
    types = st.one_of(st.sampled_from([0, 8, 13, 14, 128, 129, 139, 140]), st.integers(0, U8))
    return st.tuples(uint(U16), st.builds(lambda t, c: (t << 8) | c, types, uint(U8)))


@st.composite
def conn_tuples(draw, family: Family | None = None, proto: int | None = None) -> ConnTuple:
    """One direction: any family, protocol, addresses and port fields."""
    family = draw(families) if family is None else family
    proto = draw(protos) if proto is None else proto
    src = draw(addresses(family))
    dst = draw(addresses(family))
    if proto in (Proto.ICMP, Proto.ICMPV6):
        sport, dport = draw(icmp_port_fields(proto))
    elif proto == Proto.GRE or proto not in _KNOWN_PROTOS:
        sport, dport = draw(st.one_of(st.just((0, 0)), st.tuples(uint(U16), uint(U16))))
    else:
        sport, dport = draw(uint(U16)), draw(uint(U16))
    return ConnTuple(family, src, dst, int(proto), sport, dport)


@st.composite
def reply_tuples(draw, orig: ConnTuple) -> ConnTuple:
    """The reply of ``orig``: plain (no NAT) most often, else SNAT, DNAT, both, or anything."""
    plain = orig.inverted()
    how = draw(st.sampled_from(["plain", "plain", "snat", "dnat", "both", "any"]))
    if how == "plain":
        return plain
    addr = addresses(orig.family)
    if how == "snat":
        return plain._replace(dst=draw(addr), dport=draw(uint(U16)))
    if how == "dnat":
        return plain._replace(src=draw(addr), sport=draw(uint(U16)))
    if how == "both":
        return plain._replace(src=draw(addr), dst=draw(addr), sport=draw(uint(U16)), dport=draw(uint(U16)))
    return draw(conn_tuples(family=orig.family))


def tcp_infos() -> st.SearchStrategy[TcpInfo]:
    return st.builds(TcpInfo, st.sampled_from(list(TcpState)), uint(U8), uint(U8), uint(U8), uint(U8))


def sctp_infos() -> st.SearchStrategy[SctpInfo]:
    return st.builds(SctpInfo, st.sampled_from(list(SctpState)), uint(U32), uint(U32))


def dccp_infos() -> st.SearchStrategy[DccpInfo]:
    return st.builds(DccpInfo, st.sampled_from(list(DccpState)), uint(U8), uint(U64))


def protoinfos(proto: int) -> st.SearchStrategy[TcpInfo | SctpInfo | DccpInfo | None]:
    """The protocol info that goes with ``proto`` (or None, which the kernel also allows)."""
    matching = {Proto.TCP: tcp_infos(), Proto.SCTP: sctp_infos(), Proto.DCCP: dccp_infos()}.get(proto)
    if matching is None:
        return st.none()
    return st.one_of(matching, matching, st.none())


seqadjs = st.one_of(st.none(), st.builds(SeqAdj, uint(U32), uint(U32), uint(U32)))
labels = st.one_of(st.just(0), st.sampled_from([1, 1 << 127, (1 << 128) - 1]), st.integers(0, (1 << 128) - 1))
helper_names = st.one_of(
    st.just(""),
    st.sampled_from(["ftp", "sip", "tftp", "irc", "pptp", "amanda", "h323", "snmp", "netbios-ns"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=15),
    # anything UTF-8 that fits the one-byte attribute length (4 bytes a code point at most)
    st.text(min_size=1, max_size=63).filter(lambda s: len(s.encode("utf-8")) <= 255),
)


@st.composite
def entries(
    draw,
    family: Family | None = None,
    proto: int | None = None,
    natted: bool | None = None,
) -> Entry:
    """Any entry; ``family``, ``proto`` and ``natted`` pin those aspects."""
    orig = draw(conn_tuples(family=family, proto=proto))
    if natted is None:
        reply = draw(reply_tuples(orig))
    elif natted:
        reply = draw(reply_tuples(orig).filter(lambda r: r != orig.inverted()))
    else:
        reply = orig.inverted()
    return Entry(
        orig=orig,
        reply=reply,
        zone=draw(uint(U16)),
        status=draw(uint(U32)),
        timeout=draw(uint(U32)),
        mark=draw(uint(U32)),
        protoinfo=draw(protoinfos(orig.proto)),
        seqadj_orig=draw(seqadjs) if orig.proto == Proto.TCP else None,
        seqadj_reply=draw(seqadjs) if orig.proto == Proto.TCP else None,
        labels=draw(labels),
        helper=draw(helper_names),
    )


event_kinds = st.sampled_from(list(EventKind))


def events(**entry_args) -> st.SearchStrategy[Event]:
    """STATE messages: an event kind and an entry (``entry_args`` go to :func:`entries`)."""
    return st.builds(Event, event_kinds, entries(**entry_args))


seqs = uint(U32)
acks = st.builds(Ack, seqs, seqs)
nacks = st.builds(Nack, seqs, seqs)
hellos = st.builds(Hello, uint(U32), uint(U32), st.booleans(), uint(U16))
reports = st.builds(Report, uint(U32), entries())
report_acks = st.builds(ReportAck, uint(U32))

MESSAGES_OF = {
    MessageType.STATE: events(),
    MessageType.ACK: acks,
    MessageType.NACK: nacks,
    MessageType.RESYNC_REQUEST: st.just(ResyncRequest()),
    MessageType.ALIVE: st.just(Alive()),
    MessageType.HELLO: hellos,
    MessageType.REPORT: reports,
    MessageType.REPORT_ACK: report_acks,
}

message_types = st.sampled_from(list(MessageType))


@st.composite
def frames(draw, mtype: MessageType | None = None, max_messages: int = 4) -> Frame:
    """A frame of any (or the given) type with 0..max_messages messages of its type."""
    from snep.wire.codec import FLAG_ACK_NOW, FLAG_BULK_END, FLAG_BULK_START

    mtype = draw(message_types) if mtype is None else mtype
    messages = tuple(draw(st.lists(MESSAGES_OF[mtype], max_size=max_messages)))
    flags = 0
    if mtype is MessageType.STATE:
        flags = draw(st.sampled_from([0, FLAG_BULK_START, FLAG_BULK_END, FLAG_BULK_START | FLAG_BULK_END]))
        flags |= draw(st.sampled_from([0, FLAG_ACK_NOW]))
    return Frame(mtype, draw(uint(U32)), draw(uint(U32)), draw(seqs), messages, flags)
