"""UDP transport of the sync protocol: unicast or multicast, IPv4 or IPv6, one or two links.

Each link is one non-blocking UDP socket read straight from the event loop
(``add_reader``, draining up to a batch per wake-up): no per-datagram protocol objects,
because a bulk dump is tens of thousands of datagrams per second.

With a second (redundant) link, frames are sent on the *active* link only and received
on both. The active link changes when sending on it fails (interface down, no route),
or when it has been silent for ``silence`` seconds while the other link was heard
(the peers moved), or, when nothing is heard at all, alternately, so that two nodes
whose main link broke meet on the second one. This is conntrackd's channel failover,
driven by liveness because a link cut elsewhere on the path raises no local error.

The main link is the one to be on: while on the second link, a node sends an empty
datagram (a probe: no frame, the node never sees it) on the main link every half
``silence``, and moves back as soon as a peer is heard there (its probes or its
frames), the main link's interface being up. Peers that moved back are heard on the
main link, so the others follow.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from snep.config import Endpoint, LinkConfig
from snep.errors import SnepError
from snep.runtime.log import log

Receive = Callable[[bytes, tuple, int], None]  # (data, source address, link index)

#: errors of sendto that mean "this link cannot carry traffic now"
LINK_ERRORS = {errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENODEV}
#: errors of sendto that mean "momentarily full": the frame is lost, the protocol repairs it
TRANSIENT_ERRORS = {errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED, errno.EPERM}

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # (Linux value; Python names it only on some builds)

RECV_BATCH = 256
#: seconds of datagram handling per wake-up at most: a dump's ACKs each start a step of
#: the dump, so that a full batch of them could hold the loop (and the control socket)
#: too long; what is left is read at the next wake-up (the socket stays readable). A
#: control request waits for a few wake-ups (accept, read, answer): at 10 ms a backup
#: taking a 200,000-entry resync answered `ready` in up to 135-143 ms, at 4 ms 56-88 ms
RECV_TIME = 0.004
MAX_DATAGRAM = 65535


class TransportError(SnepError):
    """A sync socket could not be opened (bad address, port in use, no interface)."""


@dataclass
class LinkStats:
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    send_errors: int = 0
    last_heard: float = -1.0


class Link:
    def __init__(self, index: int, config: LinkConfig, buffer: int) -> None:
        self.index = index
        self.config = config
        self.buffer = buffer
        self.stats = LinkStats()
        self.destinations = [d.sockaddr for d in config.destinations()]
        self.sock: socket.socket | None = None
        # multicast: ancillary data that pins the source address to ``listen`` (otherwise
        # the kernel picks one, e.g. the link-local address for ff02::, and the peers,
        # which know us by our configured address, would not recognise us)
        self._pktinfo: list[tuple[int, int, bytes]] | None = None

    @property
    def name(self) -> str:
        return "main" if self.index == 0 else "second"

    def open(self) -> None:
        listen = self.config.listen
        family = listen.family
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _set_buffer(sock, socket.SO_RCVBUF, 33, self.buffer)  # 33 = SO_RCVBUFFORCE
            _set_buffer(sock, socket.SO_SNDBUF, 32, self.buffer)  # 32 = SO_SNDBUFFORCE
            if self.config.multicast:
                self._open_multicast(sock, listen)
            else:
                sock.bind(listen.sockaddr)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise TransportError(f"sync link {self.name}: cannot open UDP socket on {listen}: {error.strerror}") from None
        self.sock = sock

    def _open_multicast(self, sock: socket.socket, listen: Endpoint) -> None:
        group = self.config.multicast_group
        try:
            ifindex = socket.if_nametoindex(self.config.interface)
        except OSError:
            raise TransportError(f"sync link {self.name}: no interface {self.config.interface!r}") from None
        if listen.family == socket.AF_INET:
            sock.bind((group, listen.port))  # only the group's datagrams
            mreqn = socket.inet_aton(group) + socket.inet_aton(listen.host) + struct.pack("@i", ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            # struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            info = struct.pack("@i", ifindex) + socket.inet_aton(listen.host) + bytes(4)
            self._pktinfo = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
        else:
            sock.bind(("::", listen.port, 0, 0))
            mreq = ipaddress.IPv6Address(group).packed + struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            self.destinations = [(group, listen.port, 0, ifindex)]
            # struct in6_pktinfo { in6_addr ipi6_addr; unsigned int ipi6_ifindex; }
            info = ipaddress.IPv6Address(listen.host).packed + struct.pack("@I", ifindex)
            self._pktinfo = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data: bytes) -> int | None:
        """Send to every destination; returns a link errno or None."""
        failure = None
        for address in self.destinations:
            failure = self.send_to(data, address) or failure
        return failure

    def send_to(self, data: bytes, address: tuple) -> int | None:
        """One datagram to ``address`` (the event path's: one per frame and peer);
        returns a link errno or None."""
        sock = self.sock
        assert sock is not None
        try:
            if self._pktinfo is None:
                sock.sendto(data, address)
            else:
                sock.sendmsg((data,), self._pktinfo, 0, address)
        except OSError as error:
            self.stats.send_errors += 1
            if error.errno in LINK_ERRORS:
                return error.errno
            if error.errno not in TRANSIENT_ERRORS:
                log.warning("sync link %s: sendto %s: %s", self.name, address, error.strerror)
            return None
        stats = self.stats
        stats.sent += 1
        stats.sent_bytes += len(data)
        return None

    def interface_up(self) -> bool:
        """False only when the configured sync interface is known to be down."""
        name = self.config.interface
        if not name:
            return True
        try:
            return Path(f"/sys/class/net/{name}/operstate").read_text().strip() not in ("down", "lowerlayerdown")
        except OSError:
            return False


def _set_buffer(sock: socket.socket, option: int, force_option: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_option, size)  # root: beyond rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)


class Transport:
    """The node's sync links and the choice of the active one."""

    def __init__(
        self,
        links: list[LinkConfig],
        buffer: int,
        receive: Receive,
        silence: float,
        after_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.links = [Link(i, cfg, buffer) for i, cfg in enumerate(links)]
        self.receive = receive
        self.after_batch = after_batch  # once per wake-up, after the datagrams it read
        self.silence = silence
        self.active = 0
        self.failovers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_switch = 0.0
        self._searching = False  # alternating because no peer is heard anywhere
        self._probed_at = float("-inf")  # the last probe sent on the main link
        self.failbacks = 0

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        try:
            for link in self.links:
                link.open()
                assert link.sock is not None
                loop.add_reader(link.sock.fileno(), self._readable, link)
        except BaseException:
            self.close()
            raise
        self._last_switch = loop.time()

    def close(self) -> None:
        for link in self.links:
            if link.sock is not None and self._loop is not None:
                try:
                    self._loop.remove_reader(link.sock.fileno())
                except (ValueError, RuntimeError):
                    pass
            link.close()

    def _readable(self, link: Link) -> None:
        sock = link.sock
        if sock is None:
            return
        deadline = time.monotonic() + RECV_TIME
        for _ in range(RECV_BATCH):
            if time.monotonic() > deadline:
                break
            try:
                data, address = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:  # e.g. ICMP port unreachable reported on the socket
                if error.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    log.warning("sync link %s: recvfrom: %s", link.name, error.strerror)
                break
            link.stats.received += 1
            link.stats.received_bytes += len(data)
            self.receive(data, address, link.index)
        self.after_batch()

    def send(self, data: bytes, route: Sequence[tuple | None] | None = None) -> None:
        """Send on the active link, to ``route[link index]`` (a peer's address on each
        link, None where it has none) or, without ``route``, to all destinations.

        A link error (interface down, no route) fails over to the other link at once and
        sends the datagram there.
        """
        failure = self._send_on(self.links[self.active], data, route)
        if failure is not None and len(self.links) > 1:
            self._switch(f"send failed: {errno.errorcode.get(failure, failure)}")
            self._send_on(self.links[self.active], data, route)

    @staticmethod
    def _send_on(link: Link, data: bytes, route: Sequence[tuple | None] | None) -> int | None:
        if route is None:
            return link.send(data)
        address = route[link.index]
        if address is None:
            return None  # (the peer has no address on this link)
        return link.send_to(data, address)

    def heard(self, link: int, now: float) -> None:
        """A configured peer spoke on ``link`` (strangers do not keep a link alive)."""
        self.links[link].stats.last_heard = now
        self._searching = False

    def check(self, now: float) -> None:
        """Periodic liveness check (call every alive interval): fail over when silent,
        back to the main link when it carries again."""
        if len(self.links) < 2:
            return
        main = self.links[0]
        if self.active != 0 and main.interface_up():
            if now - self._probed_at >= self.silence / 2:
                self._probed_at = now
                main.send(b"")  # (errors: the main link still does not carry)
            if now - main.stats.last_heard <= self.silence and now - self._last_switch >= self.silence:
                self.failbacks += 1
                self._switch("the main link carries again: a peer is heard on it", now)
                return
        if now - self._last_switch < self.silence:
            return
        active = self.links[self.active]
        other = self.links[1 - self.active]
        active_silent = now - active.stats.last_heard > self.silence
        if not active.interface_up() and other.interface_up():
            self._switch("interface down", now)
        elif active_silent and now - other.stats.last_heard <= self.silence:
            self._switch("peers are heard on the other link", now)
        elif active_silent and other.interface_up():
            # no peer anywhere: alternate, so that peers whose main link broke meet us on
            # the other one; said once, not every few seconds while the peers are down
            self._switch("nothing heard", now, quiet=self._searching)
            self._searching = True

    def _switch(self, reason: str, now: float | None = None, quiet: bool = False) -> None:
        old = self.links[self.active]
        self.active = 1 - self.active
        self.failovers += 1
        self._last_switch = now if now is not None else (self._loop.time() if self._loop else 0.0)
        if not quiet:
            self._searching = False
            log.warning("sync link failover: %s -> %s (%s)", old.name, self.links[self.active].name, reason)
        else:
            log.debug("sync link: %s -> %s (still nothing heard)", old.name, self.links[self.active].name)

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {
            "active_link": self.links[self.active].name,
            "link_failovers": self.failovers,
            "link_failbacks": self.failbacks,
        }
        for link in self.links:
            s = link.stats
            out[link.name] = {
                "sent": s.sent,
                "sent_bytes": s.sent_bytes,
                "received": s.received,
                "received_bytes": s.received_bytes,
                "send_errors": s.send_errors,
            }
        return out
