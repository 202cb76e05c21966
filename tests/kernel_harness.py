"""The two kernels behind one harness, so that one contract suite runs on both.

A harness holds the kernel under test (``k``, subscribed), a second handle on the same
table (``other``: its requests produce events that ``k`` sees, like another process
would), and a way to make traffic: on the real kernel, packets through a veth pair
between a client namespace and the namespace whose table is under test; on the memory
kernel, the traffic methods that stand for those packets.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from snep.entry import (
    Entry,
    Event,
    EventKind,
    Proto,
    SctpInfo,
    SctpState,
    Status,
    make_entry,
    make_tuple,
)
from snep.kernel.base import Kernel
from snep.kernel.memory import MemoryKernel, MemoryTable
from snep.lab import netns
from snep.level import Level

CLIENT_V4, SERVER_V4 = "10.77.0.1", "10.77.0.2"
CLIENT_V6, SERVER_V6 = "fd77::1", "fd77::2"


class Harness(abc.ABC):
    name: str
    k: Kernel
    other: Kernel

    def events(self, until: Callable[[list[Event]], bool] | None = None, timeout: float = 5.0) -> list[Event]:
        """Everything ``k`` has queued now; with ``until``, and what comes next until
        ``until(events so far)`` holds (or ``timeout`` passes: the caller's assertions
        then say what is missing).

        A request's events are queued before the kernel answers it (netlink multicast
        is delivered inside the sender's system call), so ``events()`` right after a
        request has them all, and an empty answer means there are none. Packets are
        handled in softirq context, which a loaded machine may defer: a test that makes
        traffic says what it waits for.
        """
        events = self.k.read_events()
        if until is None:
            return events
        deadline = time.monotonic() + timeout
        while not until(events) and time.monotonic() < deadline:
            time.sleep(0.01)
            events += self.k.read_events()
        return events

    def reset(self) -> None:
        self.k.flush()
        self.k.subscribe(Level.STRONG)

    @abc.abstractmethod
    def udp_exchange(self, sport: int, dport: int) -> Entry:
        """A UDP request and its reply from the client to the server: NEW, then UPDATE."""

    def close(self) -> None:
        self.k.close()
        self.other.close()


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self) -> None:
        self.table = MemoryTable()
        self.k = MemoryKernel(self.table)
        self.other = MemoryKernel(self.table)
        self.k.subscribe(Level.STRONG)

    def udp_exchange(self, sport: int, dport: int) -> Entry:
        e = make_entry(CLIENT_V4, SERVER_V4, Proto.UDP, sport, dport, status=int(Status.CONFIRMED), timeout=30)
        assert isinstance(self.k, MemoryKernel)
        self.k.conn_new(e)
        return self.k.conn_update(e._replace(status=int(Status.CONFIRMED | Status.SEEN_REPLY), timeout=30))


class NetlinkHarness(Harness):
    """Two namespaces joined by a veth pair; the table under test is the server's."""

    def __init__(self, tag: str) -> None:
        from snep.kernel.netlink import NetlinkKernel

        self.name = "netlink"
        self.client = f"snepk-{tag}-c{os.getpid()}"
        self.server = f"snepk-{tag}-s{os.getpid()}"
        netns.create(self.client)
        try:
            netns.create(self.server)
            netns.veth(self.client, "vc", self.server, "vs")
            netns.address(self.client, "vc", CLIENT_V4 + "/24")
            netns.address(self.server, "vs", SERVER_V4 + "/24")
            netns.address(self.client, "vc", CLIENT_V6 + "/64")
            netns.address(self.server, "vs", SERVER_V6 + "/64")
            netns.conntrack_ready(self.server)
            self.k = NetlinkKernel(self.server)
            self.other = NetlinkKernel(self.server)
            self.k.subscribe(Level.STRONG)
        except BaseException:
            self.delete_namespaces()
            raise

    def delete_namespaces(self) -> None:
        netns.delete(self.client)
        netns.delete(self.server)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.delete_namespaces()

    def udp_exchange(self, sport: int, dport: int) -> Entry:
        srv = netns.call_in(self.server, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        cli = netns.call_in(self.client, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        try:
            srv.bind((SERVER_V4, dport))
            cli.bind((CLIENT_V4, sport))
            srv.settimeout(2)
            cli.settimeout(2)
            cli.sendto(b"ping", (SERVER_V4, dport))
            data, peer = srv.recvfrom(100)
            srv.sendto(b"pong", peer)
            assert cli.recvfrom(100)[0] == b"pong"
        finally:
            srv.close()
            cli.close()
        orig = make_tuple(CLIENT_V4, SERVER_V4, Proto.UDP, sport, dport)
        for entry in self.k.dump():
            if entry.orig == orig:
                return entry
        raise AssertionError("the UDP exchange left no conntrack entry")


def make_harness(kind: str, tag: str) -> Harness:
    if kind == "memory":
        return MemoryHarness()
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"real kernel tests: {reason}")
    return NetlinkHarness(tag)


KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("netlink", id="netlink", marks=pytest.mark.root),
]


def harness_fixture(tag: str):  # type: ignore[no-untyped-def]
    """A module-scoped harness per kernel kind; each test starts from an empty table."""

    @pytest.fixture(scope="module", params=KINDS)
    def harness_module(request: pytest.FixtureRequest) -> Iterator[Harness]:
        h = make_harness(request.param, tag)
        try:
            yield h
        finally:
            h.close()

    @pytest.fixture
    def harness(harness_module: Harness) -> Harness:
        harness_module.reset()
        return harness_module

    return harness_module, harness


def sample_entries() -> list[Entry]:
    """One of each kind snep must carry: families, protocols, NAT, marks, zones."""
    tcp = make_entry("10.1.0.1", "10.2.0.1", Proto.TCP, 40000, 80)
    return [
        tcp,
        tcp._replace(zone=7),  # same tuple, another zone: another connection
        make_entry("10.1.0.1", "10.2.0.1", Proto.UDP, 5353, 53, mark=0x1234),
        make_entry("10.1.0.1", "10.2.0.1", Proto.ICMP, 77, 8 << 8),
        make_entry("fd00::1", "fd00::2", Proto.TCP, 40001, 443, mark=0x10, zone=3),
        make_entry("fd00::1", "fd00::2", Proto.UDP, 1000, 2000),
        make_entry("fd00::1", "fd00::2", Proto.ICMPV6, 5, 128 << 8),
        make_entry(
            "10.1.0.1", "10.2.0.1", Proto.SCTP, 3868, 3868,
            protoinfo=SctpInfo(SctpState.ESTABLISHED, 0x1111, 0x2222),
        ),
        make_entry("10.1.0.1", "10.2.0.1", Proto.UDPLITE, 7, 8),
        make_entry("10.1.0.1", "10.2.0.1", Proto.GRE, 0, 0),
        # SNAT: 10.1.0.5:41000 leaves as 192.0.2.1:61000
        make_entry(
            "10.1.0.5", "198.51.100.7", Proto.TCP, 41000, 443,
            reply=make_tuple("198.51.100.7", "192.0.2.1", Proto.TCP, 443, 61000),
        ),
        # DNAT: a public service 192.0.2.80:80 forwarded to 10.3.0.8:8080
        make_entry(
            "198.51.100.9", "192.0.2.80", Proto.TCP, 50000, 80,
            reply=make_tuple("10.3.0.8", "198.51.100.9", Proto.TCP, 8080, 50000),
        ),
        # both, IPv6 UDP
        make_entry(
            "fd01::5", "2001:db8::7", Proto.UDP, 1234, 53,
            reply=make_tuple("fd03::8", "2001:db8::1", Proto.UDP, 5353, 2345),
        ),
    ]


def without_timeout(entries: list[Entry]) -> dict:
    return {e.key: e._replace(timeout=0) for e in entries}


def kinds_and_keys(events: list[Event]) -> list[tuple[EventKind, object]]:
    return [(ev.kind, ev.entry.key) for ev in events]
