"""NFQUEUE over raw netlink: packets the firewall's rules queue, and their verdicts.

Active-active's deferral (snep.fsm.defer) holds a new connection's first packet in the
kernel until the peers have its state. The kernel side is nfnetlink_queue
(linux/netfilter/nfnetlink_queue.h, subsystem NFNL_SUBSYS_QUEUE on the same
NETLINK_NETFILTER socket family as ctnetlink); a rule sends the packets to a queue
number (xtables ``-j NFQUEUE --queue-num N --queue-bypass``, or nftables ``queue num N
bypass`` where the kernel has nft_queue; docs/active-active.md).

Two halves, like the conntrack adapter:

- the codec (sans-I/O): :func:`encode_config_cmd` ... :func:`encode_verdict` build
  requests, :func:`decode_packet` turns an NFQNL_MSG_PACKET into a :class:`Packet`.
  The packet's connection comes from the kernel where it can attach it
  (NFQA_CFG_F_CONNTRACK: NFQA_CT is a nested set of CTA_* attributes, decoded by
  ctnetlink's entry decoder), and then no packet bytes are copied (NFQNL_COPY_META).
  Kernels built without CONFIG_NETFILTER_NETLINK_GLUE_CT (this project's test machine;
  distribution kernels are expected to have it) refuse the flag: then the first
  :data:`HEADER_COPY` bytes are copied and :func:`decode_headers` reads the tuple
  from the IP and L4 headers (a NEW packet queued before NAT: its original tuple);
- :class:`NfQueue`: one socket bound to one queue, in this or a named namespace.

Failures while running are counted (:class:`NfQueueCounters`) and never crash the
caller: a malformed message is skipped, a verdict the kernel refuses (an unknown
packet id) comes back as an NLMSG_ERROR and is counted. Setting up raises KernelError
with the reason (no nfnetlink_queue, the queue bound by another process, no root).
"""

from __future__ import annotations

import errno as errno_mod
import os
import select
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Self

from snep.entry import ConnTuple, Entry, Family, Proto, Status, TcpInfo, TcpState
from snep.errors import DecodeError, KernelError
from snep.fsm.defer import Verdict
from snep.kernel import ctnetlink as ct
from snep.kernel import namespace
from snep.kernel.netlink import netfilter_socket, set_rcvbuf

# --- linux/netfilter/nfnetlink_queue.h -------------------------------------------------

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
MSG_PACKET = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
MSG_VERDICT = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT
MSG_CONFIG = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG
MSG_VERDICT_BATCH = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH

# enum nfqnl_attr_type
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_TIMESTAMP = 4
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_PAYLOAD = 10
NFQA_CT = 11
NFQA_CT_INFO = 12
NFQA_CAP_LEN = 13

# enum nfqnl_attr_config
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5

NFQA_CFG_F_FAIL_OPEN = 1 << 0  # a full kernel queue accepts instead of dropping
NFQA_CFG_F_CONNTRACK = 1 << 1  # attach the packet's conntrack (NFQA_CT, NFQA_CT_INFO)

PACKET_HDR = struct.Struct(">IHB")  # packet_id, hw_protocol, hook (packed)
VERDICT_HDR = struct.Struct(">II")  # verdict, packet id
CONFIG_CMD = struct.Struct(">BxH")  # command, pad, pf
CONFIG_PARAMS = struct.Struct(">IB")  # copy_range, copy_mode (packed)

#: the largest copy_range the kernel takes (NFQNL_MAX_COPY_RANGE)
MAX_COPY_RANGE = 0xFFFF
#: bytes copied when the kernel cannot attach the conntrack: an IPv4 header with
#: options (60) or an IPv6 header (40), and a TCP header with its options (60: the
#: window scale and SACK permission of a SYN, which the connection's entry records)
HEADER_COPY = 120

_RECV_SIZE = 1 << 17
_RCVBUF = 8 * 1024 * 1024  # a burst of queued packets must not overrun the socket


class ConfigCmd(IntEnum):
    NONE = 0
    BIND = 1
    UNBIND = 2
    PF_BIND = 3  # kernels before 3.8 register the queue handler per family; later ones ignore it
    PF_UNBIND = 4


class CopyMode(IntEnum):
    NONE = 0
    META = 1  # metadata only (packet id, hook, conntrack): what deferral needs
    PACKET = 2  # and the first copy_range bytes of the packet


class Hook(IntEnum):
    PRE_ROUTING = 0
    LOCAL_IN = 1
    FORWARD = 2
    LOCAL_OUT = 3
    POST_ROUTING = 4


class CtInfo(IntEnum):
    """enum ip_conntrack_info: how the packet relates to its connection."""

    ESTABLISHED = 0
    RELATED = 1
    NEW = 2
    ESTABLISHED_REPLY = 3
    RELATED_REPLY = 4
    UNTRACKED = 7


@dataclass(frozen=True, slots=True)
class Packet:
    """One queued packet, as the deferral needs it."""

    queue: int
    packet_id: int
    hw_protocol: int  # ethertype (0x0800 IPv4, 0x86dd IPv6)
    hook: int  # Hook (an int: a future hook number must not fail decoding)
    ct: Entry | None  # its connection (NFQA_CFG_F_CONNTRACK), None when untracked
    ct_info: int | None  # CtInfo
    mark: int = 0
    indev: int = 0
    outdev: int = 0
    payload: bytes = b""  # the first copy_range bytes (CopyMode.PACKET)
    length: int = 0  # the packet's whole length (NFQA_CAP_LEN when truncated, else the payload's)
    headers: ConnTuple | None = None  # read from the payload's headers, when copied

    @property
    def orig(self) -> ConnTuple | None:
        """The connection's original tuple: the kernel's, else (for a connection's first
        packet, queued before NAT) the packet's own headers."""
        return self.ct.orig if self.ct is not None else self.headers


# --- codec ---------------------------------------------------------------------------------


def _config(queue: int, seq: int, body: bytes) -> bytes:
    return ct.message(MSG_CONFIG, ct.NLM_F_REQUEST | ct.NLM_F_ACK, seq, socket.AF_UNSPEC, body, res_id=queue)


def encode_config_cmd(queue: int, seq: int, cmd: ConfigCmd, pf: int = socket.AF_UNSPEC) -> bytes:
    """BIND/UNBIND ``queue`` (PF_BIND/PF_UNBIND: a family, on old kernels)."""
    return _config(queue, seq, ct.nla(NFQA_CFG_CMD, CONFIG_CMD.pack(cmd, pf)))


def encode_config_params(queue: int, seq: int, mode: CopyMode, copy_range: int = 0) -> bytes:
    if not 0 <= copy_range <= MAX_COPY_RANGE:
        raise ValueError(f"copy_range {copy_range} outside 0..{MAX_COPY_RANGE}")
    return _config(queue, seq, ct.nla(NFQA_CFG_PARAMS, CONFIG_PARAMS.pack(copy_range, mode)))


def encode_config_maxlen(queue: int, seq: int, max_len: int) -> bytes:
    """The kernel's queue length: beyond it packets are dropped (or accepted: FAIL_OPEN)."""
    return _config(queue, seq, ct.nla(NFQA_CFG_QUEUE_MAXLEN, ct.U32.pack(max_len)))


def encode_config_flags(queue: int, seq: int, flags: int, mask: int) -> bytes:
    """Set the ``mask`` bits of the queue's flags to those of ``flags``."""
    return _config(queue, seq, ct.nla(NFQA_CFG_FLAGS, ct.U32.pack(flags)) + ct.nla(NFQA_CFG_MASK, ct.U32.pack(mask)))


def encode_verdict(queue: int, packet_id: int, verdict: Verdict, seq: int = 0, *, batch: bool = False) -> bytes:
    """A verdict on one packet; ``batch``: on every packet of the queue up to ``packet_id``.

    No ACK is asked: the kernel answers only a refusal (an NLMSG_ERROR), which the
    receiving side counts.
    """
    mtype = MSG_VERDICT_BATCH if batch else MSG_VERDICT
    body = ct.nla(NFQA_VERDICT_HDR, VERDICT_HDR.pack(int(verdict), packet_id))
    return ct.message(mtype, ct.NLM_F_REQUEST, seq, socket.AF_UNSPEC, body, res_id=queue)


def decode_packet(buf: memoryview, msg: ct.Message) -> Packet:
    """An NFQNL_MSG_PACKET -> Packet (DecodeError when malformed)."""
    if msg.end - msg.offset < ct.NFGENMSG.size:
        raise DecodeError("truncated nfgenmsg")
    queue = socket.ntohs(ct.NFGENMSG.unpack_from(buf, msg.offset)[2])
    header = None
    entry = None
    ct_info = None
    mark = indev = outdev = cap_len = 0
    payload = b""
    for atype, a, b in ct.iter_attrs(buf, msg.offset + ct.NFGENMSG.size, msg.end):
        if atype == NFQA_PACKET_HDR:
            if b - a < PACKET_HDR.size:
                raise DecodeError("truncated NFQA_PACKET_HDR")
            header = PACKET_HDR.unpack_from(buf, a)
        elif atype == NFQA_CT:
            entry = ct.decode_entry(buf, a, b)
        elif atype in (NFQA_CT_INFO, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV, NFQA_CAP_LEN):
            if b - a < 4:
                raise DecodeError(f"truncated nfqueue attribute {atype}")
            value = ct.U32.unpack_from(buf, a)[0]
            if atype == NFQA_CT_INFO:
                ct_info = value
            elif atype == NFQA_MARK:
                mark = value
            elif atype == NFQA_IFINDEX_INDEV:
                indev = value
            elif atype == NFQA_IFINDEX_OUTDEV:
                outdev = value
            else:
                cap_len = value
        elif atype == NFQA_PAYLOAD:
            payload = bytes(buf[a:b])
    if header is None:
        raise DecodeError("queued packet without NFQA_PACKET_HDR")
    packet_id, hw_protocol, hook = header
    return Packet(
        queue, packet_id, hw_protocol, hook, entry, ct_info, mark, indev, outdev, payload,
        cap_len or len(payload), decode_headers(payload) if payload else None,
    )


_ICMP_QUERIES = {8, 0, 13, 14, 15, 16, 17, 18}  # echo, timestamp, info, mask: they carry an id
_ICMPV6_QUERIES = {128, 129, 130, 131, 132, 139, 140}


def _ip_header(data: bytes) -> tuple[Family, int, bytes, bytes, int, bool] | None:
    """family, L4 protocol, addresses, the L4 header's offset, and whether this is a
    later fragment (no L4 header); None when the IP header is cut short."""
    if len(data) < 20:
        return None
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl:
            return None
        later = bool(struct.unpack_from(">H", data, 6)[0] & 0x1FFF)
        return Family.IPV4, data[9], data[12:16], data[16:20], ihl, later
    if version == 6 and len(data) >= 40:
        return Family.IPV6, data[6], data[8:24], data[24:40], 40, False
    return None


def decode_headers(data: bytes) -> ConnTuple | None:
    """The tuple of an IP packet's headers as conntrack writes it (ports, or the ICMP
    id and ``type << 8 | code``); None when the headers are cut short or are not
    what conntrack keys by ports (IPv6 extension headers, later fragments)."""
    ip = _ip_header(data)
    if ip is None:
        return None
    family, proto, src, dst, l4, later = ip
    if later:  # a later fragment: no L4 header
        return ConnTuple(family, src, dst, proto, 0, 0)
    if proto in _PORT_PROTOS:
        if len(data) < l4 + 4:
            return None
        sport, dport = struct.unpack_from(">HH", data, l4)
        return ConnTuple(family, src, dst, proto, sport, dport)
    if proto in (Proto.ICMP, Proto.ICMPV6):
        if len(data) < l4 + 6:
            return None
        icmp_type, code = data[l4], data[l4 + 1]
        queries = _ICMP_QUERIES if proto == Proto.ICMP else _ICMPV6_QUERIES
        ident = struct.unpack_from(">H", data, l4 + 4)[0] if icmp_type in queries else 0
        return ConnTuple(family, src, dst, proto, ident, (icmp_type << 8) | code)
    if family is Family.IPV6 and proto in (0, 43, 44, 50, 51, 60, 135, 139, 140):
        return None  # an extension header first: the L4 protocol is further in
    return ConnTuple(family, src, dst, proto, 0, 0)


_PORT_PROTOS = frozenset(p for p in Proto if p.has_ports)


# --- the entry of a queued packet's connection ---------------------------------------------

#: the kernel's default timeouts (seconds) of a connection's first states
#: (nf_conntrack_proto_tcp.c tcp_timeouts, _udp.c udp_timeouts, _icmp.c, _icmpv6.c,
#: _gre.c, _generic.c): what its entry shows before its own event could say otherwise
TCP_SYN_SENT_TIMEOUT = 120
TCP_SYN_RECV_TIMEOUT = 60
UDP_UNREPLIED_TIMEOUT = 30
ICMP_TIMEOUT = 30
GRE_UNREPLIED_TIMEOUT = 30
GENERIC_TIMEOUT = 600

_TH_SYN, _TH_ACK = 0x02, 0x10
#: struct nf_ct_tcp_flags bits the kernel sets from a SYN's options (tcp_options())
CT_TCP_FLAG_WINDOW_SCALE = 0x01
CT_TCP_FLAG_SACK_PERM = 0x02
_MAX_WSCALE = 14  # (TCP_MAX_WSCALE: the kernel caps a larger shift)
_TIMEOUTS: dict[int, int] = {
    Proto.UDP: UDP_UNREPLIED_TIMEOUT,
    Proto.UDPLITE: UDP_UNREPLIED_TIMEOUT,
    Proto.ICMP: ICMP_TIMEOUT,
    Proto.ICMPV6: ICMP_TIMEOUT,
    Proto.GRE: GRE_UNREPLIED_TIMEOUT,
}


def _tcp_flags_and_options(data: bytes, l4: int) -> tuple[int, int, int]:
    """A TCP header's flags, and what conntrack keeps of its options: the window
    scale and the nf_ct_tcp_flags bits (WINDOW_SCALE, SACK_PERM). Options cut short
    by the copy are read as far as they go."""
    if len(data) < l4 + 14:
        raise DecodeError(f"TCP header cut short: {len(data)} bytes copied, flags at {l4 + 13}")
    flags = data[l4 + 13]
    end = min(len(data), l4 + max(20, (data[l4 + 12] >> 4) * 4))
    at = l4 + 20
    wscale = ctflags = 0
    while at < end:
        kind = data[at]
        if kind == 0:  # end of options
            break
        if kind == 1:  # no-op
            at += 1
            continue
        if at + 1 >= end or data[at + 1] < 2:
            break  # (cut short, or malformed: the kernel stops there too)
        length = data[at + 1]
        if kind == 3 and length == 3 and at + 2 < end:  # window scale
            wscale = min(data[at + 2], _MAX_WSCALE)
            ctflags |= CT_TCP_FLAG_WINDOW_SCALE
        elif kind == 4 and length == 2:  # SACK permitted
            ctflags |= CT_TCP_FLAG_SACK_PERM
        at += length
    return flags, wscale, ctflags


def entry_of_packet(packet: Packet, mark: int, *, reply: bool = False) -> Entry:
    """The Entry of a queued packet's connection, as the kernel's event will show it
    once the connection is confirmed (it comes only after the verdict, so a held
    packet's state is sent from this):

    - ``reply`` False: a new connection's first packet: a TCP SYN (SYN_SENT, its
      window scale and SACK permission), UDP, an ICMP query or another protocol,
      unreplied, with the kernel's default timeout of that state;
    - ``reply`` True: a TCP connection's first reply, its SYN-ACK, at a node whose
      kernel holds the connection (an asymmetric path's non-owner): the original
      tuple is the packet's inverted, the state SYN_RECV, its reply seen.

    From the kernel's own entry when it attached one (NFQA_CT; its mark is the
    connection's), else from the copied headers: then the tuple is the packet's before
    NAT (the rule sits before NAT), the zone 0, and ``mark`` is the connection's ct
    mark (the packet's NFQA_MARK, which ``meta mark set ct mark`` copied: it names the
    group). DecodeError, with the reason, when the packet cannot give the entry:
    headers cut short, a later fragment, a TCP packet that is not a SYN (a SYN-ACK for
    ``reply``), SCTP or DCCP without NFQA_CT (their state is not in one header)."""
    if packet.ct is not None:
        return packet.ct._replace(status=packet.ct.status | Status.CONFIRMED)
    ip = _ip_header(packet.payload) if packet.payload else None
    t = packet.headers
    if ip is None or t is None:
        raise DecodeError(f"packet {packet.packet_id}: no NFQA_CT and no whole IP header copied")
    _, proto, _, _, l4, later = ip
    if later:
        raise DecodeError(f"packet {packet.packet_id}: a later fragment, its connection is not in its headers")
    status = int(Status.CONFIRMED)
    if proto == Proto.TCP:
        flags, wscale, ctflags = _tcp_flags_and_options(packet.payload, l4)
        syn_ack = flags & (_TH_SYN | _TH_ACK)
        if reply:
            if syn_ack != _TH_SYN | _TH_ACK:
                raise DecodeError(f"packet {packet.packet_id}: a TCP first reply must be a SYN-ACK (flags {flags:#04x})")
            info = TcpInfo(TcpState.SYN_RECV, 0, wscale, 0, ctflags)
            status |= Status.SEEN_REPLY
            return Entry(t.inverted(), t, 0, status, TCP_SYN_RECV_TIMEOUT, mark, info)
        if syn_ack != _TH_SYN:
            raise DecodeError(f"packet {packet.packet_id}: a new TCP connection's first packet must be a SYN (flags {flags:#04x})")
        info = TcpInfo(TcpState.SYN_SENT, wscale, 0, ctflags, 0)
        return Entry(t, t.inverted(), 0, status, TCP_SYN_SENT_TIMEOUT, mark, info)
    if reply:
        raise DecodeError(f"packet {packet.packet_id}: only a TCP SYN-ACK is reported as a first reply (protocol {proto})")
    if proto in (Proto.SCTP, Proto.DCCP):
        raise DecodeError(f"packet {packet.packet_id}: {Proto(proto).name} needs the kernel's NFQA_CT (its state is not in the headers)")
    if proto in (Proto.ICMP, Proto.ICMPV6) and (t.dport >> 8) not in (_ICMP_QUERIES if proto == Proto.ICMP else _ICMPV6_QUERIES):
        raise DecodeError(f"packet {packet.packet_id}: ICMP type {t.dport >> 8} starts no connection (only queries do)")
    return Entry(t, t.inverted(), 0, status, _TIMEOUTS.get(proto, GENERIC_TIMEOUT), mark)


def is_first_reply(packet: Packet) -> bool:
    """Is this queued packet a TCP connection's first reply, its SYN-ACK (the asymmetric
    path's rule queues those), rather than a new connection's first packet? From the
    kernel's ctinfo when it attached the connection, else from the copied TCP flags."""
    if packet.ct_info is not None:
        return packet.ct_info == CtInfo.ESTABLISHED_REPLY
    ip = _ip_header(packet.payload) if packet.payload else None
    if ip is None or ip[1] != Proto.TCP or ip[5] or len(packet.payload) < ip[4] + 14:
        return False
    return packet.payload[ip[4] + 13] & (_TH_SYN | _TH_ACK) == _TH_SYN | _TH_ACK


# --- the socket ------------------------------------------------------------------------------


@dataclass(slots=True)
class NfQueueCounters:
    packets: int = 0  # received and decoded
    decode_errors: int = 0  # messages skipped as malformed
    overruns: int = 0  # ENOBUFS: packet messages lost (the kernel keeps those packets queued)
    verdicts: int = 0  # verdict messages sent (a batch verdict counts once)
    verdict_errors: int = 0  # verdicts the kernel refused (NLMSG_ERROR: an unknown id ...)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class NfQueue:
    """One NFQUEUE queue, bound in this or a named network namespace.

    ``copy_range`` 0 copies no packet bytes (NFQNL_COPY_META); more copies that many.
    ``conntrack``: each packet's connection, from the kernel (NFQA_CT) where it can
    (``has_conntrack``), else from the first :data:`HEADER_COPY` bytes (``Packet.orig``).
    ``fail_open``: a full kernel queue (``max_len``) accepts the packets it cannot
    queue instead of dropping them. The socket is non-blocking: :meth:`receive`
    returns what is there, :meth:`wait` waits for more (or use :meth:`fileno`).
    """

    def __init__(
        self,
        queue: int,
        netns: str | None = None,
        *,
        copy_range: int = 0,
        max_len: int = 1024,
        fail_open: bool = False,
        conntrack: bool = True,
    ) -> None:
        if not 0 <= queue <= 0xFFFF:
            raise ValueError(f"queue number {queue} outside 0..65535")
        self.queue = queue
        self.netns = netns
        self.counters = NfQueueCounters()
        self._seq = 0
        self._buf = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buf)
        self._early: list[Packet] = []  # packets that arrived while a request waited for its ACK
        self._sock = namespace.call_in(netns, _open)
        try:
            self._configure(copy_range, max_len, fail_open, conntrack)
        except BaseException:
            self._sock.close()
            raise

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _configure(self, copy_range: int, max_len: int, fail_open: bool, conntrack: bool) -> None:
        q = self.queue
        for pf in (socket.AF_INET, socket.AF_INET6):
            # kernels before 3.8 need a handler per family; later ones answer 0 and do nothing
            try:
                self._request(encode_config_cmd(q, self._next_seq(), ConfigCmd.PF_BIND, pf), "PF_BIND")
            except KernelError:
                pass
        self._request(encode_config_cmd(q, self._next_seq(), ConfigCmd.BIND), "bind")
        mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK
        flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
        self.has_conntrack = False
        if conntrack:
            try:
                self._request(encode_config_flags(q, self._next_seq(), flags | NFQA_CFG_F_CONNTRACK, mask), "flags")
                self.has_conntrack = True
            except KernelError as exc:
                if exc.errno != errno_mod.EOPNOTSUPP:
                    raise
                # built without CONFIG_NETFILTER_NETLINK_GLUE_CT: the tuple from the headers
        if not self.has_conntrack:
            self._request(encode_config_flags(q, self._next_seq(), flags, mask), "flags")
            if conntrack:
                copy_range = max(copy_range, HEADER_COPY)
        mode = CopyMode.PACKET if copy_range else CopyMode.META
        self._request(encode_config_params(q, self._next_seq(), mode, copy_range), "copy mode")
        self._request(encode_config_maxlen(q, self._next_seq(), max_len), "queue length")

    def _request(self, data: bytes, what: str) -> None:
        """Send one configuration request and wait for its ACK (KernelError on refusal)."""
        seq = struct.unpack_from("=I", data, 8)[0]
        self._send(data)
        self._sock.setblocking(True)
        try:
            while True:
                try:
                    n = self._sock.recv_into(self._buf)
                except OSError as exc:
                    if exc.errno == errno_mod.ENOBUFS:
                        self.counters.overruns += 1
                        continue
                    raise KernelError(f"nfqueue {what}: {exc.strerror}", exc.errno or 0) from exc
                for msg in ct.iter_messages(self._view, n):
                    if msg.type == ct.NLMSG_ERROR:
                        err, eseq = ct.decode_error(self._view, msg)
                        if eseq == seq:
                            if err:
                                raise KernelError(f"nfqueue {what} (queue {self.queue}): {_reason(err)}", err)
                            return
                        if err:
                            self.counters.verdict_errors += 1
                    elif msg.type == MSG_PACKET:
                        # the kernel delivers a queued packet once: kept for receive()
                        self._decode_into(msg, self._early)
        finally:
            self._sock.setblocking(False)

    def _decode_into(self, msg: ct.Message, out: list[Packet]) -> None:
        try:
            out.append(decode_packet(self._view, msg))
            self.counters.packets += 1
        except DecodeError:
            self.counters.decode_errors += 1

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise KernelError(f"nfqueue send: {exc.strerror}", exc.errno or 0) from exc

    def fileno(self) -> int:
        return self._sock.fileno()

    def wait(self, timeout: float | None) -> bool:
        """Whether packets (or errors) are ready within ``timeout`` seconds."""
        if self._early:
            return True
        return bool(select.select([self._sock], [], [], timeout)[0])

    def receive(self, max_packets: int = 1024) -> list[Packet]:
        """The queued packets ready now (without waiting), at most about ``max_packets``."""
        out, self._early = self._early, []
        view = self._view
        counters = self.counters
        while len(out) < max_packets:
            try:
                n = self._sock.recv_into(self._buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno_mod.ENOBUFS:
                    counters.overruns += 1
                    continue
                raise KernelError(f"nfqueue receive: {exc.strerror}", exc.errno or 0) from exc
            try:
                for msg in ct.iter_messages(view, n):
                    if msg.type == MSG_PACKET:
                        self._decode_into(msg, out)
                    elif msg.type == ct.NLMSG_ERROR and ct.decode_error(view, msg)[0]:
                        counters.verdict_errors += 1
            except DecodeError:
                counters.decode_errors += 1
        return out

    def verdict(self, packet_id: int, verdict: Verdict) -> None:
        self._send(encode_verdict(self.queue, packet_id, verdict))
        self.counters.verdicts += 1

    def verdicts(self, items: Iterable[tuple[int, Verdict]]) -> None:
        """Verdicts on several packets in one system call."""
        q = self.queue
        msgs = [encode_verdict(q, packet_id, verdict) for packet_id, verdict in items]
        if msgs:
            self._send(b"".join(msgs))
            self.counters.verdicts += len(msgs)

    def verdict_batch(self, up_to: int, verdict: Verdict) -> None:
        """One verdict on every packet of the queue whose id is at most ``up_to``."""
        self._send(encode_verdict(self.queue, up_to, verdict, batch=True))
        self.counters.verdicts += 1

    def close(self) -> None:
        """Unbind (the kernel then drops, or with --queue-bypass passes, what comes) and close."""
        try:
            self._send(encode_config_cmd(self.queue, self._next_seq(), ConfigCmd.UNBIND))
        except KernelError:
            pass
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open() -> socket.socket:
    sock = netfilter_socket("nfqueue")
    try:
        set_rcvbuf(sock, _RCVBUF)
        sock.setsockopt(ct.SOL_NETLINK, ct.NETLINK_CAP_ACK, 1)  # errors without the request echoed
        sock.bind((0, 0))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise KernelError(f"nfqueue socket: {exc.strerror}", exc.errno or 0) from exc
    return sock


def _reason(err: int) -> str:
    hints = {
        # the kernel answers EPERM both ways (nfqnl_recv_config)
        errno_mod.EPERM: "the queue is bound by another socket, or no CAP_NET_ADMIN",
        errno_mod.EOPNOTSUPP: "not in this kernel's nfnetlink_queue, or it has none",
    }
    hint = hints.get(err)
    return os.strerror(err) + (f" ({hint})" if hint else "")
