"""UDP transport on loopback: IPv4 and IPv6 unicast, batches, link failover."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from snep.config import LinkConfig, Peer, parse_endpoint
from snep.runtime.transport import Transport, TransportError


def free_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def link(host: str, port: int, peer_port: int) -> LinkConfig:
    fmt = "[{}]:{}" if ":" in host else "{}:{}"
    return LinkConfig(listen=parse_endpoint(fmt.format(host, port)), peers=(Peer(2, parse_endpoint(fmt.format(host, peer_port))),))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (datagrams on loopback are not delivered within send())."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def exchange(host: str, family: int) -> list[tuple[bytes, int]]:
    loop = asyncio.get_running_loop()
    pa, pb = free_port(family), free_port(family)
    got: list[tuple[bytes, int]] = []
    a = Transport([link(host, pa, pb)], 1 << 20, lambda d, addr, i: None, silence=1.0)
    b = Transport([link(host, pb, pa)], 1 << 20, lambda d, addr, i: got.append((d, addr[1])), silence=1.0)
    a.open(loop)
    b.open(loop)
    try:
        for n in range(500):
            a.send(n.to_bytes(4, "big") * 10)
        await until(lambda: len(got) == 500)
    finally:
        a.close()
        b.close()
    assert a.stats()["main"]["sent"] == 500
    return got


def test_ipv4_unicast():
    got = asyncio.run(exchange("127.0.0.1", socket.AF_INET))
    assert [int.from_bytes(d[:4], "big") for d, _ in got] == list(range(500))


def test_ipv6_unicast():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    got = asyncio.run(exchange("::1", socket.AF_INET6))
    assert len(got) == 500


def test_port_in_use_is_a_clear_error():
    async def go():
        port = free_port()
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.2", port))
        try:
            t = Transport([link("127.0.0.3", port, port)], 1 << 20, lambda *a: None, 1.0)
            t.open(asyncio.get_running_loop())
            t.close()
            bad = Transport([LinkConfig(listen=parse_endpoint("192.0.2.1:9"), peers=())], 1 << 20, lambda *a: None, 1.0)
            with pytest.raises(TransportError, match="cannot open UDP socket on 192.0.2.1:9"):
                bad.open(asyncio.get_running_loop())
        finally:
            holder.close()

    asyncio.run(go())


def test_failover_follows_the_link_where_peers_are_heard():
    """Silence is measured on the clock given to heard() and check(): a virtual one here
    (the real one plus an offset the test moves), so that no sleep has to outlast the
    silence timeout and the outcome does not depend on how busy the machine is."""

    async def go():
        loop = asyncio.get_running_loop()
        p = [free_port() for _ in range(4)]
        got: list[int] = []
        offset = 0.0

        def now() -> float:
            return loop.time() + offset

        def receiver(transport_of, base):
            def receive(data, addr, i):
                got.append(base + i)
                transport_of().heard(i, now())
            return receive

        a = Transport([link("127.0.0.1", p[0], p[1]), link("127.0.0.1", p[2], p[3])], 1 << 20,
                      receiver(lambda: a, 0), silence=0.2)
        b = Transport([link("127.0.0.1", p[1], p[0]), link("127.0.0.1", p[3], p[2])], 1 << 20,
                      receiver(lambda: b, 10), silence=0.2)
        a.open(loop)
        b.open(loop)
        try:
            a.send(b"x")
            await until(lambda: len(got) == 1)
            assert got == [10]  # b heard a on the main link
            # the main link "breaks" for b: nothing more on it for longer than the silence
            offset += 0.25
            b.check(now())
            assert b.active == 1 and b.failovers == 1
            b.send(b"y")
            await until(lambda: len(got) == 2)
            assert got[-1] == 1  # a hears b on the second link ...
            a.check(now())
            assert a.active == 1  # ... and follows it there, where peers are heard
            a.send(b"z")
            await until(lambda: len(got) == 3)
            assert got[-1] == 11
            assert a.stats()["active_link"] == "second"
        finally:
            a.close()
            b.close()

    asyncio.run(go())
