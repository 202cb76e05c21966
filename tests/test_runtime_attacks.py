"""The attacks of issue 14 against real daemons: three nodes on loopback (127.0.0.1-3),
sealed sync link, in-memory conntrack tables, one event loop.

The attacker captures what the daemons send (their records of every datagram) and
sends datagrams from any address it likes: a raw socket writes the IPv4 and UDP
headers itself, so a replay "from node 2's address" comes from 127.0.0.2 and node 2's
port, exactly as a spoofing host on the sync link would send it (root only). A key
holder is played by sealing with a daemon's own framer (a fresh, authentic frame of
its session). Each attack fails: caches unchanged, no dump, the counters say why, and
the log says it once a second at most, naming the real source address and port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from snep import config
from snep.entry import Event, EventKind, Proto, make_entry
from snep.fsm.effects import MAX_TERM, SendDatagram
from snep.kernel.memory import MemoryKernel
from snep.runtime.client import request
from snep.runtime.daemon import Daemon
from snep.runtime.log import setup
from snep.runtime.statefile import read_epoch
from snep.wire.auth import Key
from snep.wire.codec import HEADER, build_frame, encode_frame
from snep.wire.messages import (
    FLAG_BULK_END,
    FLAG_BULK_START,
    Frame,
    Hello,
    MessageType,
    Nack,
)
from tests.test_runtime_node import Pair

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="spoofing source addresses needs a raw socket (root)")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spoof(source: tuple[str, int], to: tuple[str, int], payload: bytes) -> None:
    """One UDP datagram from ``source`` (any address and port) to ``to``."""
    udp = struct.pack("!HHHH", source[1], to[1], 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(source[0]), socket.inet_aton(to[0]))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp, (to[0], 0))


def entry(n: int):
    return make_entry("10.1.0.10", "10.2.0.10", Proto.TCP, 10000 + n, 80, timeout=3600)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Cluster:
    """Three daemons on 127.0.0.1-3, a shared key, each node's record of what it sent."""

    def __init__(self, tmp: Path, size: int = 3, inject: bool = False, bulk_window: int = 256) -> None:
        self.tmp = tmp
        self.size = size
        self.key = tmp / "key"
        self.key.write_text(f"1 {secrets.token_hex(32)}\n")
        self.key.chmod(0o600)
        self.ports = {i: free_port(f"127.0.0.{i}") for i in range(1, size + 1)}
        self.inject = inject
        self.bulk_window = bulk_window
        self.kernels = {i: MemoryKernel() for i in self.ports}
        self.records: dict[int, list[Any]] = {i: [] for i in self.ports}
        self.daemons: dict[int, Daemon] = {}
        self.tasks: dict[int, asyncio.Task[int]] = {}

    def address(self, i: int) -> tuple[str, int]:
        return (f"127.0.0.{i}", self.ports[i])

    def config(self, i: int) -> config.Config:
        peers = ", ".join(f'{{ id = {p}, address = "127.0.0.{p}:{self.ports[p]}" }}' for p in self.ports if p != i)
        path = self.tmp / f"node{i}.toml"
        path.write_text(
            f'[node]\nid = {i}\nstate_file = "{self.tmp / f"state{i}"}"\n'
            f'[sync]\nlisten = "127.0.0.{i}:{self.ports[i]}"\npeers = [{peers}]\nkey_file = "{self.key}"\n'
            f"alive_interval = 0.2\npeer_dead_timeout = 2.0\nresync_retry = 1.0\nbulk_window = {self.bulk_window}\n"
            f"[kernel]\ninject_on_arrival = {'true' if self.inject else 'false'}\n"
            f'[control]\nsocket = "{self.tmp / f"ctl{i}.sock"}"\n'
        )
        return config.load(path)

    async def start(self, i: int) -> Daemon:
        self.records[i] = []
        daemon = Daemon(self.config(i), self.kernels[i], record=self.records[i])
        self.daemons[i] = daemon
        self.tasks[i] = asyncio.create_task(daemon.run())
        await self.until(lambda: daemon.control is not None and (self.tmp / f"ctl{i}.sock").exists())
        return daemon

    async def stop(self, i: int) -> None:
        daemon = self.daemons.pop(i)
        assert daemon.stopping is not None
        daemon.stopping.set()
        assert await self.tasks.pop(i) == 0

    async def __aenter__(self) -> Cluster:
        for i in self.ports:
            await self.start(i)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for i in list(self.daemons):
            await self.stop(i)

    async def ctl(self, i: int, command: str, *argv: str) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, request, self.tmp / f"ctl{i}.sock", command, {"argv": list(argv)}, 5.0)

    def stats(self, i: int) -> dict[str, Any]:
        return self.daemons[i].stats()

    def sent(self, i: int, mtype: MessageType, to: int | None = None) -> list[bytes]:
        """What node ``i`` sent (as captured on the link): datagrams of this type (to ``to``)."""
        return [
            o.data for o in self.records[i]
            if isinstance(o, SendDatagram) and o.data[3] == mtype and (to is None or to in o.peers)
        ]

    @staticmethod
    async def until(condition, timeout: float = 10.0) -> None:
        await Pair.until(condition, timeout)

    async def quiet(self, seconds: float = 0.5) -> None:
        await asyncio.sleep(seconds)


def flags(data: bytes) -> int:
    return HEADER.unpack_from(data)[3]


def keys(daemon: Daemon) -> set:
    return {e.key for e in daemon.node.external}


def test_replayed_frames_change_nothing(tmp_path):
    setup("warning")

    async def go() -> None:
        async with Cluster(tmp_path) as c:
            d1, d2, d3 = (c.daemons[i] for i in (1, 2, 3))
            await c.ctl(1, "notify", "primary")  # an empty kernel: its dump is one seq-0 frame
            await c.until(lambda: d2.node.ready and d3.node.ready)
            (seq0,) = [d for d in c.sent(1, MessageType.STATE, to=3) if flags(d) & FLAG_BULK_START and HEADER.unpack_from(d)[11] == 0]
            assert flags(seq0) & FLAG_BULK_END
            for n in range(100):
                c.kernels[1].conn_new(entry(n))
            await c.until(lambda: len(d2.node.external) == len(d3.node.external) == 100)
            live = keys(d3)

            # -- the seq-0 frame (BULK_START + BULK_END, no messages) replayed to node 3 from
            # node 2's address, then from node 1's: refused, nothing swept
            before = c.stats(3)
            spoof(c.address(2), c.address(3), seq0)
            spoof(c.address(1), c.address(3), seq0)
            await c.until(lambda: c.stats(3)["replays"] == before["replays"] + 1 and c.stats(3)["wrong_node"] == before["wrong_node"] + 1)
            assert keys(d3) == live and d3.node.ready and c.stats(3)["bulk_completed"] == before["bulk_completed"]

            # -- a RESYNC_REQUEST replayed 20 times: no dump
            await c.ctl(2, "request-resync")
            await c.until(lambda: bool(c.sent(2, MessageType.RESYNC_REQUEST, to=1)) and d1.node.sender.in_flight() == 0 and not d1.node.sender.bulk_active)
            request_bytes = c.sent(2, MessageType.RESYNC_REQUEST, to=1)[-1]
            before = c.stats(1)
            for _ in range(20):
                spoof(c.address(2), c.address(1), request_bytes)
            await c.until(lambda: c.stats(1)["replays"] == before["replays"] + 20)
            assert c.stats(1)["resyncs"] == before["resyncs"]

            # -- node 1's stream so far, its dumps included, replayed to node 2: nothing
            # resurrected, nothing swept
            stream = c.sent(1, MessageType.STATE, to=2)
            assert sum(1 for d in stream if flags(d) & FLAG_BULK_START) >= 2
            before = c.stats(2)
            for data in stream:
                spoof(c.address(1), c.address(2), data)
            await c.until(lambda: c.stats(2)["replays"] == before["replays"] + len(stream))
            assert keys(d2) == live and c.stats(2)["bulk_completed"] == before["bulk_completed"]

            # -- an old NACK replayed 5 times: node 2 misses a frame (dropped on its way in),
            # NACKs the gap, gets it; then its NACK is replayed
            receive = d2.instance._on_datagram
            dropped: list[bytes] = []

            def lossy(data: bytes, address: tuple, link: int) -> None:
                if not dropped and data[3] == MessageType.STATE:
                    dropped.append(data)
                    return
                receive(data, address, link)

            d2.transport.receive = lossy  # type: ignore[union-attr]
            c.kernels[1].conn_new(entry(200))
            c.kernels[1].conn_new(entry(201))
            await c.until(lambda: entry(201).key in keys(d2) and entry(200).key in keys(d2))
            nack = c.sent(2, MessageType.NACK, to=1)[0]
            await c.quiet()
            before = c.stats(1)
            for _ in range(5):
                spoof(c.address(2), c.address(1), nack)
            await c.until(lambda: c.stats(1)["replays"] == before["replays"] + 5)
            after = c.stats(1)  # (the sender never saw them: no resend, no dump)
            assert (after["nacks_received"], after["resyncs"]) == (before["nacks_received"], before["resyncs"])

            # -- node 2 restarts; its former process's RESYNC_REQUEST is replayed every 0.2 s:
            # the new process still becomes ready, node 1 dumps once, for the new request
            for n in range(1000, 6000):
                c.kernels[1].conn_new(entry(n))
            await c.until(lambda: len(d3.node.external) == 5102, 20)
            await c.stop(2)
            before = c.stats(1)
            restarted = await c.start(2)
            replayed = 0
            for _ in range(100):
                spoof(c.address(2), c.address(1), request_bytes)
                replayed += 1
                if restarted.node.ready:
                    break
                await asyncio.sleep(0.2)
            assert restarted.node.ready and len(restarted.node.external) == 5102
            # each replay refused: a replay while node 1 still knew the former process, a
            # frame of a dead session once the new one was bound
            await c.until(lambda: c.stats(1)["stale_session"] + c.stats(1)["replays"] == before["stale_session"] + before["replays"] + replayed)
            after = c.stats(1)
            assert after["resyncs"] - before["resyncs"] in (1, 2)  # the new process's own request (and its retry)
            assert after["resync_requests_received"] - before["resync_requests_received"] <= 3
            # ... and what node 1 sent node 2's former process, replayed to the new one:
            # node 1's session, but counters before the HELLO that bound it there
            for data in stream:
                spoof(c.address(1), c.address(2), data)
            await c.until(lambda: c.stats(2)["replays"] == len(stream))
            assert len(restarted.node.external) == 5102

    asyncio.run(go())


def test_forged_frames_and_a_key_holders_frames_are_bounded(tmp_path):
    setup("warning")
    log = logging.getLogger("snep")
    collect = Collect()
    log.addHandler(collect)

    async def go() -> None:
        async with Cluster(tmp_path, inject=True, bulk_window=16) as c:  # (a retransmission budget of 32 frames)
            d1, d2 = c.daemons[1], c.daemons[2]
            await c.ctl(1, "notify", "primary")
            await c.until(lambda: d2.node.ready and c.daemons[3].node.ready)
            for n in range(10):
                c.kernels[1].conn_new(entry(n))
            await c.until(lambda: len(d2.node.external) == 10)

            # -- one forged STATE from node 1's address: no key, and a wrong key. Nothing
            # applied, nothing in the kernel (inject_on_arrival), the primary not fenced.
            hole = make_entry("10.1.0.66", "10.2.0.66", Proto.TCP, 6666, 22, timeout=3600)
            forged = Frame(MessageType.STATE, 1, 999, 0, (Event(EventKind.NEW, hole),), session=0xBAD, counter=1)
            before = c.stats(2)
            spoof(c.address(1), c.address(2), encode_frame(forged))
            spoof(c.address(1), c.address(2), encode_frame(forged, Key(1, b"a guess at the key, 32 bytes ...")))
            await c.until(lambda: c.stats(2)["auth_failures"] == before["auth_failures"] + 2)
            assert hole.key not in keys(d2) and hole.key not in {e.key for e in c.kernels[2].dump()}
            assert d1.node.state.name == "PRIMARY" and d2.node.newest.term == 1

            # -- 5,000 forged frames from node 2's address: counted, logged a line or two,
            # naming the real source address and port
            collect.lines.clear()
            before = c.stats(1)
            bad = encode_frame(Frame(MessageType.ALIVE, 2, 0, 0, (), session=0xBAD, counter=1), Key(1, b"x" * 32))
            for _ in range(5000):
                spoof(c.address(2), c.address(1), bad)
            await c.until(lambda: c.stats(1)["auth_failures"] >= before["auth_failures"] + 4900, 20)
            lines = [line for line in collect.lines if "rejected" in line]
            assert 1 <= len(lines) <= 3, lines
            assert f"127.0.0.2:{c.ports[2]}" in lines[0]
            # ... and from a configured host on another port: an unknown source
            spoof(("127.0.0.2", 4444), c.address(1), bad)
            await c.until(lambda: c.stats(1)["unknown_sources"] == before["unknown_sources"] + 1)
            assert any("127.0.0.2:4444" in line and "not a configured peer" in line for line in collect.lines)

            # -- a key holder's NACK frame of 5,000 messages, each naming everything: at most
            # the peer's retransmission budget goes out
            # (node 3 goes deaf, so that node 1 keeps what it sends queued for it)
            d3_receive = c.daemons[3].transport.receive  # type: ignore[union-attr]
            c.daemons[3].transport.receive = lambda data, address, link: None  # type: ignore[union-attr]
            for n in range(100, 3100):
                c.kernels[1].conn_new(entry(n))
            await c.until(lambda: len(d2.node.external) == 3010)
            assert len(d1.node.sender.queue) > 64
            queue = d1.node.sender.queue
            nacks = tuple(Nack(queue.first, d1.node.sender.newest_seq) for _ in range(5000))
            huge = d2.node.framer.seal(build_frame(Frame(MessageType.NACK, 2, 1, 0, nacks, dst=1)))
            assert len(huge) > 65000
            before = c.stats(1)
            started = time.process_time()
            spoof(c.address(2), c.address(1), huge)
            await c.until(lambda: c.stats(1)["nacks_received"] == before["nacks_received"] + 5000)
            cpu = time.process_time() - started
            after = c.stats(1)
            budget = 2 * d1.cfg.sync.params.bulk_window
            assert 0 < after["retransmissions"] - before["retransmissions"] <= 1.5 * budget  # (refilled meanwhile)
            assert after["retransmit_budget_hits"] > before["retransmit_budget_hits"]
            assert cpu < 2.0
            c.daemons[3].transport.receive = d3_receive  # type: ignore[union-attr]

            # -- a key holder's HELLO claiming term 2**32-1: refused, nothing persisted, and
            # the HA manager can still move the primary
            for term in (2**32 - 1, MAX_TERM + 1):
                hello = d2.node.framer.seal(build_frame(Frame(MessageType.HELLO, 2, term, 0, (Hello(term, 2, live=True),), dst=1)))
                spoof(c.address(2), c.address(1), hello)
            await c.until(lambda: c.stats(1)["epoch_overflow"] == 2)
            assert d1.node.state.name == "PRIMARY" and read_epoch(tmp_path / "state1") == (1, 1)
            await c.ctl(1, "notify", "backup")
            assert (await c.ctl(1, "notify", "primary"))["role"] == "PRIMARY"
            assert read_epoch(tmp_path / "state1") == (2, 1)

    try:
        asyncio.run(go())
    finally:
        log.removeHandler(collect)
