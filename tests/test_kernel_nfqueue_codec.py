"""The NFQUEUE codec (snep.kernel.nfqueue), without a kernel: the bytes of requests,
queued-packet messages with an attached conntrack (NFQA_CT, which this project's test
kernel cannot attach: CONFIG_NETFILTER_NETLINK_GLUE_CT unset), and header parsing."""

from __future__ import annotations

import socket
import struct

import pytest

from snep.entry import Family, Proto, make_entry, make_tuple
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
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, frag, 64, proto, 0,
                       socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")) + l4


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
