"""NFQUEUE on the real kernel (snep.kernel.nfqueue): a client namespace sends UDP over a
veth pair to a server namespace whose input hook queues a connection's first packets;
the queue client sees each with its conntrack tuple and decides whether it arrives.

Skips only when the kernel lacks NFQUEUE (no nfnetlink_queue, or no queue target in
either nftables or xtables), with the reason; CI (conftest.py) fails such a skip.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator

import pytest

from snep.entry import Event, EventKind, Proto, Status, TcpState, make_tuple
from snep.errors import KernelError
from snep.fsm.defer import Verdict
from snep.kernel.netlink import NetlinkKernel
from snep.kernel.nfqueue import (
    HEADER_COPY,
    CtInfo,
    Hook,
    NfQueue,
    Packet,
    entry_of_packet,
)
from snep.kernel.nfqueue import decode_headers as decode
from snep.lab import netns

pytestmark = pytest.mark.root

CLIENT, SERVER = "10.78.0.1", "10.78.0.2"
PORT_QUEUED, PORT_BYPASS, PORT_NO_BYPASS, PORT_TCP = 7001, 7002, 7003, 7004
Q_QUEUED, Q_BYPASS, Q_NO_BYPASS, Q_TCP = 11, 12, 13, 14
ETH_P_IP = 0x0800


class Net:
    def __init__(self) -> None:
        tag = os.getpid()
        self.client = netns.create(f"snepq-c{tag}")
        self.server = f"snepq-s{tag}"
        try:
            netns.create(self.server)
            netns.veth(self.client, "vc", self.server, "vs")
            netns.address(self.client, "vc", CLIENT + "/24")
            netns.address(self.server, "vs", SERVER + "/24")
            netns.conntrack_ready(self.server)
            self.backend = self._rules()
        except BaseException:
            self.close()
            raise
        self._port = 20000

    def _rules(self) -> str:
        try:
            backend = netns.queue_rule(self.server, Q_QUEUED, dport=PORT_QUEUED)
        except netns.NetnsError as exc:
            if "No chain/target/match" in str(exc) or "Extension NFQUEUE" in str(exc):
                pytest.skip(f"the kernel has no NFQUEUE target (nft queue nor xt_NFQUEUE): {exc}")
            raise
        netns.queue_rule(self.server, Q_BYPASS, dport=PORT_BYPASS, bypass=True)
        netns.queue_rule(self.server, Q_NO_BYPASS, dport=PORT_NO_BYPASS, bypass=False)
        netns.queue_rule(self.server, Q_TCP, proto="tcp", dport=PORT_TCP)
        return backend

    def close(self) -> None:
        netns.delete(self.client)
        netns.delete(self.server)

    def sockets(self, port: int) -> tuple[socket.socket, socket.socket, int]:
        """A server socket on ``port`` and a client socket on a fresh source port."""
        srv = netns.call_in(self.server, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        srv.bind((SERVER, port))
        return (srv, *self.client_socket())

    def client_socket(self) -> tuple[socket.socket, int]:
        """A fresh source port, so a fresh connection: its first packet is NEW."""
        self._port += 1
        cli = netns.call_in(self.client, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        cli.bind((CLIENT, self._port))
        return cli, self._port

    def queue(self, number: int, **kwargs: object) -> NfQueue:
        try:
            return NfQueue(number, self.server, **kwargs)  # type: ignore[arg-type]
        except KernelError as exc:
            if exc.errno == errno.EOPNOTSUPP and "bind" in str(exc):
                pytest.skip(f"the kernel has no nfnetlink_queue: {exc}")
            raise


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"real kernel tests: {reason}")
    n = Net()
    try:
        yield n
    finally:
        n.close()


def received(sock: socket.socket, timeout: float) -> bytes | None:
    sock.settimeout(timeout)
    try:
        return sock.recv(100)
    except TimeoutError:
        return None


def queued(q: NfQueue, count: int = 1, timeout: float = 5.0) -> list[Packet]:
    out: list[Packet] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        if q.wait(max(0.0, deadline - time.monotonic())):
            out += q.receive()
    assert len(out) == count, f"{len(out)} packets queued of {count}; counters {q.counters}"
    return out


def test_a_queued_packet_carries_its_connection_and_arrives_on_accept(net: Net) -> None:
    srv, cli, sport = net.sockets(PORT_QUEUED)
    with srv, cli, net.queue(Q_QUEUED) as q:
        cli.sendto(b"ping", (SERVER, PORT_QUEUED))
        (p,) = queued(q)
        assert p.orig == make_tuple(CLIENT, SERVER, Proto.UDP, sport, PORT_QUEUED)
        assert (p.hook, p.hw_protocol, p.queue) == (Hook.LOCAL_IN, ETH_P_IP, Q_QUEUED)
        if q.has_conntrack:  # the kernel attached the connection (CONFIG_NETFILTER_NETLINK_GLUE_CT)
            assert p.ct is not None and p.ct.orig == p.orig and p.ct.reply == p.orig.inverted()
            assert p.ct_info == CtInfo.NEW
            assert p.payload == b""  # NFQNL_COPY_META: the deferral needs no packet bytes
        else:  # the tuple from the copied headers
            assert p.ct is None and p.headers == p.orig and 28 <= len(p.payload) <= HEADER_COPY
        assert received(srv, 0.2) is None  # held in the kernel until the verdict
        q.verdict(p.packet_id, Verdict.ACCEPT)
        assert received(srv, 5) == b"ping"
        assert q.counters.verdict_errors == 0


def test_a_dropped_packet_does_not_arrive(net: Net) -> None:
    srv, cli, _ = net.sockets(PORT_QUEUED)
    with srv, cli, net.queue(Q_QUEUED) as q:
        cli.sendto(b"ping", (SERVER, PORT_QUEUED))
        (p,) = queued(q)
        q.verdict(p.packet_id, Verdict.DROP)
        assert received(srv, 0.5) is None


def test_a_batch_verdict_releases_every_packet_up_to_its_id(net: Net) -> None:
    srv, cli, _ = net.sockets(PORT_QUEUED)
    cli2, _ = net.client_socket()
    with srv, cli, cli2, net.queue(Q_QUEUED, copy_range=64) as q:
        cli.sendto(b"one", (SERVER, PORT_QUEUED))
        cli2.sendto(b"two", (SERVER, PORT_QUEUED))
        packets = queued(q, 2)
        assert {p.payload[28:] for p in packets} == {b"one", b"two"}  # IPv4 + UDP headers, then data
        assert all(p.length == 31 for p in packets)
        q.verdict_batch(max(p.packet_id for p in packets), Verdict.ACCEPT)
        assert {received(srv, 5), received(srv, 5)} == {b"one", b"two"}


def test_a_verdict_the_kernel_refuses_is_counted_not_raised(net: Net) -> None:
    with net.queue(Q_QUEUED) as q:
        q.verdict(0xFFFFFFF0, Verdict.ACCEPT)  # no such packet
        assert q.wait(5)
        assert q.receive() == []
        assert q.counters.verdict_errors == 1


def test_a_queue_bound_elsewhere_is_a_clear_error(net: Net) -> None:
    with net.queue(Q_QUEUED), pytest.raises(KernelError, match="bound by another") as info:
        net.queue(Q_QUEUED)
    assert info.value.errno == errno.EPERM


def test_with_bypass_and_no_listener_traffic_passes(net: Net) -> None:
    srv, cli, _ = net.sockets(PORT_BYPASS)
    with srv, cli:
        cli.sendto(b"ping", (SERVER, PORT_BYPASS))
        assert received(srv, 5) == b"ping"


def test_without_bypass_and_no_listener_traffic_is_dropped(net: Net) -> None:
    """The other side of the bypass test: the rule does queue, and no listener drops."""
    srv, cli, _ = net.sockets(PORT_NO_BYPASS)
    with srv, cli:
        cli.sendto(b"ping", (SERVER, PORT_NO_BYPASS))
        assert received(srv, 0.5) is None


def kernel_entry(k: NetlinkKernel, key: object, until: object = None, timeout: float = 5.0):
    """The kernel's entry of ``key`` (waiting up to ``timeout`` for ``until(entry)``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {e.key: e for e in k.dump()}.get(key)
        if (found is not None and (until is None or until(found))) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_the_entry_of_a_queued_syn_is_the_kernel_s_and_a_peer_kernel_takes_it(net: Net) -> None:
    """A held SYN's entry (the state its owner sends before the kernel confirms the
    connection) agrees with the kernel's own once confirmed, and a peer's kernel
    creates it through the adapter; the SYN-ACK's entry then updates it to SYN_RECV
    there (what the owner does with a non-owner's report)."""
    from tests.test_kernel_nfqueue_codec import ipv4_between, tcp

    srv = netns.call_in(net.server, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    cli = netns.call_in(net.client, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    peer = netns.create(f"snepq-p{os.getpid()}")
    try:
        srv.bind((SERVER, PORT_TCP))
        srv.listen()
        cli.setblocking(False)
        with net.queue(Q_TCP) as q, NetlinkKernel(net.server) as server_kernel, NetlinkKernel(peer) as peer_kernel:
            cli.connect_ex((SERVER, PORT_TCP))
            (p,) = queued(q)
            entry = entry_of_packet(p, 0x101)
            assert entry.protoinfo.state is TcpState.SYN_SENT and entry.mark == 0x101
            assert entry.orig == make_tuple(CLIENT, SERVER, Proto.TCP, cli.getsockname()[1], PORT_TCP)
            q.verdict(p.packet_id, Verdict.ACCEPT)
            confirmed = kernel_entry(server_kernel, entry.key)
            assert confirmed is not None, "the accepted SYN made no connection"
            assert (confirmed.orig, confirmed.reply) == (entry.orig, entry.reply)
            # what the SYN's options told (Linux sends window scale and SACK permission)
            assert confirmed.protoinfo.wscale_orig == entry.protoinfo.wscale_orig
            assert confirmed.protoinfo.flags_orig & 0x03 == entry.protoinfo.flags_orig == 0x03

            result = peer_kernel.apply([Event(EventKind.NEW, entry)])
            assert result.errors == 0, result
            created = kernel_entry(peer_kernel, entry.key)
            assert created is not None
            # (a window scale the kernel takes only once both sides announced one: nlattr_to_tcp)
            plain = entry.protoinfo._replace(wscale_orig=0)
            assert created._replace(timeout=0) == entry._replace(timeout=0, protoinfo=plain)
            assert 0 < created.timeout <= entry.timeout

            syn_ack = ipv4_between(SERVER, CLIENT, Proto.TCP, tcp(PORT_TCP, entry.orig.sport, 0x12, bytes([4, 2, 1, 3, 3, 7])))
            reply = entry_of_packet(Packet(Q_TCP, 2, 0x0800, 0, None, None, 0x101, payload=syn_ack, headers=decode(syn_ack)), 0x101, reply=True)
            assert reply.key == entry.key
            result = peer_kernel.apply([Event(EventKind.UPDATE, reply)])
            assert result.errors == 0, result
            updated = kernel_entry(peer_kernel, entry.key)
            assert updated.protoinfo.state is TcpState.SYN_RECV and updated.status & Status.SEEN_REPLY
            assert updated.mark == 0x101 and 0 < updated.timeout <= reply.timeout
    finally:
        cli.close()
        srv.close()
        netns.delete(peer)
