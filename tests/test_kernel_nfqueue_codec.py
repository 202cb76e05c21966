"""The NFQUEUE codec (snep.kernel.nfqueue), without a kernel: the bytes of requests,
queued-packet messages with an attached conntrack (NFQA_CT, which this project's test
kernel cannot attach: CONFIG_NETFILTER_NETLINK_GLUE_CT unset), and header parsing."""

from __future__ import annotations

import socket
import struct

import pytest

from snep.entry import Family, Proto, Status, TcpInfo, TcpState, make_entry, make_tuple
from snep.errors import DecodeError
from snep.fsm.defer import Verdict
from snep.kernel import ctnetlink as ct
from snep.kernel import nfqueue as nfq


def packet_message(*attrs: bytes, queue: int = 5) -> tuple[memoryview, ct.Message]:
    data = ct.message(nfq.MSG_PACKET, 0, 0, socket.AF_INET, b"".join(attrs), res_id=queue)
    view = memoryview(data)
    (msg,) = ct.iter_messages(view, len(data))
    return view, msg


def u32(atype: int, value: int) -> bytes:
    return ct.nla(atype, ct.U32.pack(value))


def test_a_verdict_names_the_queue_big_endian_and_the_packet() -> None:
    data = nfq.encode_verdict(0x0102, 77, Verdict.DROP)
    assert struct.unpack_from("=HH", data, 4) == (nfq.MSG_VERDICT, ct.NLM_F_REQUEST)
    assert data[18:20] == b"\x01\x02"  # nfgenmsg.res_id, network order
    assert data[20:24] == struct.pack("=HH", 12, nfq.NFQA_VERDICT_HDR)
    assert struct.unpack(">II", data[24:32]) == (0, 77)  # NF_DROP, id
    assert struct.unpack_from("=H", nfq.encode_verdict(1, 9, Verdict.ACCEPT, batch=True), 4)[0] == nfq.MSG_VERDICT_BATCH


def test_config_requests_ask_for_an_ack() -> None:
    data = nfq.encode_config_cmd(3, 42, nfq.ConfigCmd.BIND)
    assert struct.unpack_from("=IHHI", data) == (len(data), nfq.MSG_CONFIG, ct.NLM_F_REQUEST | ct.NLM_F_ACK, 42)
    assert data[24:28] == bytes([nfq.ConfigCmd.BIND, 0, 0, 0])
    with pytest.raises(ValueError):
        nfq.encode_config_params(3, 1, nfq.CopyMode.PACKET, 1 << 16)


def test_a_packet_with_its_conntrack_decodes_to_the_entry() -> None:
    entry = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 4000, 53, status=8, timeout=30, mark=0x11)
    ct_attrs = ct.encode_tuple(ct.CTA_TUPLE_ORIG, entry.orig) + ct.encode_tuple(ct.CTA_TUPLE_REPLY, entry.reply)
    ct_attrs += u32(ct.CTA_STATUS, 8) + u32(ct.CTA_TIMEOUT, 30) + u32(ct.CTA_MARK, 0x11)
    view, msg = packet_message(
        ct.nla(nfq.NFQA_PACKET_HDR, nfq.PACKET_HDR.pack(1234, 0x0800, nfq.Hook.FORWARD)),
        u32(nfq.NFQA_MARK, 7),
        u32(nfq.NFQA_IFINDEX_INDEV, 3),
        ct.nest(nfq.NFQA_CT, ct_attrs),
        u32(nfq.NFQA_CT_INFO, nfq.CtInfo.NEW),
    )
    p = nfq.decode_packet(view, msg)
    assert (p.queue, p.packet_id, p.hw_protocol, p.hook) == (5, 1234, 0x0800, nfq.Hook.FORWARD)
    assert (p.mark, p.indev, p.ct_info) == (7, 3, nfq.CtInfo.NEW)
    assert p.ct == entry and p.orig == entry.orig
    assert p.payload == b"" and p.headers is None


def test_malformed_packets_raise_decode_error() -> None:
    hdr = ct.nla(nfq.NFQA_PACKET_HDR, nfq.PACKET_HDR.pack(1, 0x0800, 1))
    for attrs in [
        (),  # no packet header
        (ct.nla(nfq.NFQA_PACKET_HDR, b"\0\0\0"),),  # truncated header
        (hdr, ct.nla(nfq.NFQA_CT_INFO, b"\0")),  # truncated u32
        (hdr, ct.nest(nfq.NFQA_CT, u32(ct.CTA_STATUS, 1))),  # a conntrack without tuples
    ]:
        view, msg = packet_message(*attrs)
        with pytest.raises(DecodeError):
            nfq.decode_packet(view, msg)


def ipv4(proto: int, l4: bytes, *, frag: int = 0) -> bytes:
    return ipv4_between("10.0.0.1", "10.0.0.2", proto, l4, frag=frag)


def ipv4_between(src: str, dst: str, proto: int, l4: bytes, *, frag: int = 0) -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, frag, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + l4


def ipv6(next_header: int, l4: bytes) -> bytes:
    return struct.pack(">IHBB16s16s", 6 << 28, len(l4), next_header, 64,
                       socket.inet_pton(socket.AF_INET6, "fd00::1"), socket.inet_pton(socket.AF_INET6, "fd00::2")) + l4


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (ipv4(Proto.UDP, struct.pack(">HHHH", 4000, 53, 8, 0)), make_tuple("10.0.0.1", "10.0.0.2", Proto.UDP, 4000, 53)),
        (ipv4(Proto.TCP, struct.pack(">HHII", 40000, 80, 1, 0)), make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)),
        (ipv4(Proto.ICMP, struct.pack(">BBHHH", 8, 0, 0, 77, 1)), make_tuple("10.0.0.1", "10.0.0.2", Proto.ICMP, 77, 8 << 8)),
        (ipv4(Proto.GRE, b"\0" * 8), make_tuple("10.0.0.1", "10.0.0.2", Proto.GRE)),
        (ipv4(Proto.UDP, b"", frag=5), make_tuple("10.0.0.1", "10.0.0.2", Proto.UDP)),  # a later fragment
        (ipv6(Proto.UDP, struct.pack(">HHHH", 1000, 2000, 8, 0)), make_tuple("fd00::1", "fd00::2", Proto.UDP, 1000, 2000)),
        (ipv6(Proto.ICMPV6, struct.pack(">BBHHH", 128, 0, 0, 5, 1)), make_tuple("fd00::1", "fd00::2", Proto.ICMPV6, 5, 128 << 8)),
        (ipv6(0, b"\0" * 8), None),  # hop-by-hop options first
        (ipv4(Proto.UDP, b"\0\1"), None),  # ports cut short
        (b"\x45" + b"\0" * 10, None),
        (b"\x70" + b"\0" * 40, None),  # not IP
    ],
    ids=["udp", "tcp", "icmp-echo", "gre", "fragment", "udp6", "icmp6-echo", "ext-header", "short-ports",
         "short-ip", "not-ip"],
)
def test_the_tuple_from_the_headers(data: bytes, expected: object) -> None:
    assert nfq.decode_headers(data) == expected


def test_a_copied_packet_gives_its_tuple() -> None:
    data = ipv4(Proto.UDP, struct.pack(">HHHH", 4000, 53, 12, 0) + b"ping")
    view, msg = packet_message(
        ct.nla(nfq.NFQA_PACKET_HDR, nfq.PACKET_HDR.pack(9, 0x0800, 1)),
        ct.nla(nfq.NFQA_PAYLOAD, data[:30]),
        u32(nfq.NFQA_CAP_LEN, len(data)),
    )
    p = nfq.decode_packet(view, msg)
    assert p.ct is None and p.orig == make_tuple("10.0.0.1", "10.0.0.2", Proto.UDP, 4000, 53)
    assert p.orig.family is Family.IPV4 and (len(p.payload), p.length) == (30, len(data))


# --- the entry of a queued packet ------------------------------------------------------


def tcp(sport: int, dport: int, flags: int, options: bytes = b"") -> bytes:
    """A TCP header with these flags and options (padded to 4 bytes)."""
    options += b"\0" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, 64240, 0, 0) + options


#: a Linux SYN's options: MSS, SACK permitted, timestamps, NOP, window scale 7
LINUX_SYN_OPTIONS = bytes([2, 4, 5, 0xB4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7])


def queued_packet(data: bytes, packet_id: int = 9, *, ct_attrs: bytes | None = None) -> nfq.Packet:
    attrs = [ct.nla(nfq.NFQA_PACKET_HDR, nfq.PACKET_HDR.pack(packet_id, 0x0800, 0))]
    if ct_attrs is not None:
        attrs.append(ct.nest(nfq.NFQA_CT, ct_attrs))
    if data:
        attrs.append(ct.nla(nfq.NFQA_PAYLOAD, data[: nfq.HEADER_COPY]))
    return nfq.decode_packet(*packet_message(*attrs))


def test_a_syn_gives_a_syn_sent_entry_with_its_window_scale_and_sack_permission() -> None:
    p = queued_packet(ipv4(Proto.TCP, tcp(40000, 80, 0x02, LINUX_SYN_OPTIONS)))
    e = nfq.entry_of_packet(p, 0x102)
    orig = make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)
    assert (e.orig, e.reply, e.zone, e.mark) == (orig, orig.inverted(), 0, 0x102)
    assert e.status == Status.CONFIRMED and e.timeout == nfq.TCP_SYN_SENT_TIMEOUT == 120
    flags = nfq.CT_TCP_FLAG_WINDOW_SCALE | nfq.CT_TCP_FLAG_SACK_PERM
    assert e.protoinfo == TcpInfo(TcpState.SYN_SENT, 7, 0, flags, 0)
    # IPv6: the 120 bytes copied hold its 40-byte header and the whole TCP header
    p6 = queued_packet(ipv6(Proto.TCP, tcp(40000, 80, 0x02, LINUX_SYN_OPTIONS)))
    assert nfq.entry_of_packet(p6, 1).protoinfo == TcpInfo(TcpState.SYN_SENT, 7, 0, flags, 0)


def test_a_syn_ack_gives_the_connection_in_syn_recv_from_its_reply_side() -> None:
    p = queued_packet(ipv4(Proto.TCP, tcp(80, 40000, 0x12, bytes([4, 2, 1, 3, 3, 9]))))
    e = nfq.entry_of_packet(p, 3, reply=True)
    reply = make_tuple("10.0.0.1", "10.0.0.2", Proto.TCP, 80, 40000)  # the packet's own tuple
    assert (e.orig, e.reply) == (reply.inverted(), reply)
    assert e.status == Status.CONFIRMED | Status.SEEN_REPLY and e.timeout == nfq.TCP_SYN_RECV_TIMEOUT == 60
    flags = nfq.CT_TCP_FLAG_WINDOW_SCALE | nfq.CT_TCP_FLAG_SACK_PERM
    assert e.protoinfo == TcpInfo(TcpState.SYN_RECV, 0, 9, 0, flags)


def test_udp_icmp_and_other_protocols_give_unreplied_entries_with_the_kernel_s_timeouts() -> None:
    cases = [
        (ipv4(Proto.UDP, struct.pack(">HHHH", 4000, 53, 8, 0)), nfq.UDP_UNREPLIED_TIMEOUT),
        (ipv4(Proto.ICMP, struct.pack(">BBHHH", 8, 0, 0, 77, 1)), nfq.ICMP_TIMEOUT),
        (ipv6(Proto.ICMPV6, struct.pack(">BBHHH", 128, 0, 0, 5, 1)), nfq.ICMP_TIMEOUT),
        (ipv4(Proto.GRE, b"\0" * 8), nfq.GRE_UNREPLIED_TIMEOUT),
        (ipv4(99, b"\0" * 8), nfq.GENERIC_TIMEOUT),
    ]
    for data, timeout in cases:
        p = queued_packet(data)
        e = nfq.entry_of_packet(p, 5)
        assert (e.orig, e.reply, e.status, e.timeout, e.mark, e.protoinfo) == (
            p.headers, p.headers.inverted(), Status.CONFIRMED, timeout, 5, None
        )


def test_the_kernel_s_attached_entry_is_taken_as_it_is() -> None:
    entry = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 4000, 53, status=0, timeout=30, mark=0x11)
    ct_attrs = ct.encode_tuple(ct.CTA_TUPLE_ORIG, entry.orig) + ct.encode_tuple(ct.CTA_TUPLE_REPLY, entry.reply)
    ct_attrs += u32(ct.CTA_STATUS, 0) + u32(ct.CTA_TIMEOUT, 30) + u32(ct.CTA_MARK, 0x11)
    p = queued_packet(b"", ct_attrs=ct_attrs)
    assert nfq.entry_of_packet(p, 0x99) == entry._replace(status=Status.CONFIRMED)  # its own mark


@pytest.mark.parametrize(
    ("data", "reply", "reason"),
    [
        (ipv4(Proto.TCP, tcp(40000, 80, 0x10)), False, "must be a SYN"),
        (ipv4(Proto.TCP, tcp(40000, 80, 0x12)), False, "must be a SYN"),
        (ipv4(Proto.TCP, tcp(80, 40000, 0x02)), True, "must be a SYN-ACK"),
        (ipv4(Proto.UDP, struct.pack(">HHHH", 4000, 53, 8, 0)), True, "only a TCP SYN-ACK"),
        (ipv4(Proto.SCTP, b"\0" * 12), False, "SCTP needs the kernel's NFQA_CT"),
        (ipv4(Proto.DCCP, b"\0" * 16), False, "DCCP needs the kernel's NFQA_CT"),
        (ipv4(Proto.ICMP, struct.pack(">BBHHH", 3, 1, 0, 0, 0)), False, "ICMP type 3 starts no connection"),
        (ipv4(Proto.TCP, b"", frag=5), False, "a later fragment"),
        (ipv4(Proto.TCP, tcp(40000, 80, 0x02)[:12]), False, "TCP header cut short"),
        (b"", False, "no NFQA_CT and no whole IP header"),
    ],
    ids=["ack", "syn-ack-as-new", "syn-as-reply", "udp-reply", "sctp", "dccp", "icmp-error", "fragment",
         "short-tcp", "nothing-copied"],
)
def test_a_packet_that_gives_no_entry_raises_decode_error_with_the_reason(data: bytes, reply: bool, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        nfq.entry_of_packet(queued_packet(data), 1, reply=reply)


def test_options_cut_short_are_read_as_far_as_they_go() -> None:
    data = ipv4(Proto.TCP, tcp(40000, 80, 0x02, bytes([4, 2, 1, 3])))  # window scale cut by the padding
    assert nfq.entry_of_packet(queued_packet(data), 1).protoinfo.flags_orig == nfq.CT_TCP_FLAG_SACK_PERM
    data = ipv4(Proto.TCP, tcp(40000, 80, 0x02, bytes([3, 0, 3, 3, 5])))  # a zero length: stop there
    assert nfq.entry_of_packet(queued_packet(data), 1).protoinfo == TcpInfo(TcpState.SYN_SENT)
