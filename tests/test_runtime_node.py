"""Two daemons in one event loop on loopback, each over an in-memory kernel (no root).

Every control command goes through the real control socket and the real UDP
transport; only the conntrack table is the in-memory one (snep.kernel.memory), which
also lets a test overflow the event queue to check the overrun -> resync path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from snep import config
from snep.entry import Proto, make_entry
from snep.errors import KernelError
from snep.kernel.memory import MemoryKernel
from snep.runtime.client import ControlError, request
from snep.runtime.daemon import Daemon
from snep.runtime.log import setup


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_config(tmp: Path, index: int, ports: dict[int, int], extra: str = "", sync_extra: str = "") -> config.Config:
    other = 2 if index == 1 else 1
    path = tmp / f"node{index}.toml"
    path.write_text(
        f"""
[node]
id = {index}
state_file = "{tmp / f"state{index}"}"
[sync]
listen = "127.0.0.{index}:{ports[index]}"
peers = [{{ id = {other}, address = "127.0.0.{other}:{ports[other]}" }}]
insecure = true
alive_interval = 0.1
peer_dead_timeout = 0.5
{sync_extra}[control]
socket = "{tmp / f"ctl{index}.sock"}"
{extra}"""
    )
    return config.load(path)


class Pair:
    def __init__(self, tmp: Path, capacity: int = 1 << 20, extra: str = "[kernel]\ninject_on_arrival = false\n",
                 sync_extra: dict[int, str] | None = None) -> None:
        """Two daemons on loopback; cold backups by default (their kernels written only at a
        commit), so that each test sees what the control commands write."""
        ports = {1: free_port(), 2: free_port()}
        self.tmp = tmp
        self.kernels = {1: MemoryKernel(event_capacity=capacity, event_capacity_max=capacity), 2: MemoryKernel()}
        sync_extra = sync_extra or {}
        self.daemons = {i: Daemon(node_config(tmp, i, ports, extra, sync_extra.get(i, "")), self.kernels[i]) for i in (1, 2)}
        self.tasks: list[asyncio.Task[int]] = []

    async def __aenter__(self) -> Pair:
        for daemon in self.daemons.values():
            self.tasks.append(asyncio.create_task(daemon.run()))
        for i in (1, 2):
            await self.until(lambda i=i: self.daemons[i].control is not None and (self.tmp / f"ctl{i}.sock").exists())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for daemon in self.daemons.values():
            if daemon.stopping is not None:
                daemon.stopping.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        assert all(r == 0 for r in results), results

    async def ctl(self, index: int, command: str, *argv: str):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, request, self.tmp / f"ctl{index}.sock", command, {"argv": list(argv)}, 5.0)

    @staticmethod
    async def until(condition, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)


def entry(n: int):
    return make_entry("10.1.0.10", "10.2.0.10", Proto.TCP, 10000 + n, 80, timeout=3600)


def test_control_commands_end_to_end(tmp_path):
    setup("warning")

    async def go() -> None:
        async with Pair(tmp_path) as pair:
            k1, k2 = pair.kernels[1], pair.kernels[2]
            d1, d2 = pair.daemons[1], pair.daemons[2]
            assert (await pair.ctl(1, "notify", "primary"))["role"] == "PRIMARY"
            await pair.ctl(2, "notify", "backup")
            await pair.until(lambda: d2.node.ready)
            for n in range(5):
                k1.conn_new(entry(n))
            await pair.until(lambda: len(d2.node.external) == 5)
            assert k2.count() == 0

            # commit: the external cache goes into the backup's kernel
            answer = await pair.ctl(2, "commit")
            assert answer["done"] == "commit" and k2.count() == 5

            # shorten-timeouts: explicit seconds, and a bad argument refused clearly
            await pair.ctl(2, "shorten-timeouts", "7")
            assert all(e.timeout <= 7 for e in k2.dump())
            with pytest.raises(ControlError, match="shorten-timeouts takes a number of seconds"):
                await pair.ctl(2, "shorten-timeouts", "soon")

            # flush empties both caches and refills them: internal from the kernel, external
            # from the primary's dump
            flushed = await pair.ctl(2, "flush")
            assert flushed["external"] == 0 and flushed["internal"] == k2.count() == 5
            await pair.until(lambda: len(d2.node.external) == 5)

            # request-resync: one more complete dump from the primary
            completed = d2.node.counters.bulk_completed
            await pair.ctl(2, "request-resync")
            await pair.until(lambda: d2.node.counters.bulk_completed > completed)
            assert len(d2.node.external) == 5

            # flush of one cache (conntrackd -f external), and a bad argument refused clearly
            flushed = await pair.ctl(2, "flush", "external")
            assert flushed["external"] == 0 and flushed["internal"] == 5
            # (its third dump within seconds: beyond the peer's budget, it asks again 2 s later)
            await pair.until(lambda: len(d2.node.external) == 5 and d2.node.ready, timeout=10.0)
            with pytest.raises(ControlError, match="flush takes one of all, internal, external"):
                await pair.ctl(2, "flush", "everything")

            # bulk from the primary: one more complete dump arrives
            completed = d2.node.counters.bulk_completed
            await pair.ctl(1, "bulk")
            await pair.until(lambda: d2.node.counters.bulk_completed == completed + 1)
            with pytest.raises(ControlError, match="only a PRIMARY"):
                await pair.ctl(2, "bulk")

            # resync: the primary's internal cache is rebuilt from its kernel
            k1.conn_new(entry(99))
            d1.node.internal.clear()
            await pair.ctl(1, "resync")
            assert len(d1.node.internal) == 6

            # listings, ready, status, stats
            listing = await pair.ctl(2, "external")
            assert listing["count"] == len(listing["entries"]) >= 5
            assert any("10.2.0.10:80" in line for line in listing["entries"])
            assert (await pair.ctl(2, "ready"))["ready"] is True
            status = await pair.ctl(2, "status")
            assert status["role"] == "BACKUP" and status["epoch"] == [1, 1]
            assert status["peers"]["1"]["alive"] is True and status["peers"]["1"]["introduced"] is True
            stats = await pair.ctl(1, "stats")
            assert stats["state_messages_sent"] >= 5 and stats["transport"]["main"]["sent"] > 0

            # unknown commands and bad role names: clear errors, counted
            with pytest.raises(ControlError, match="unknown command 'frobnicate'"):
                await pair.ctl(1, "frobnicate")
            with pytest.raises(ControlError, match="primary, backup or fault"):
                await pair.ctl(1, "notify", "master")
            assert (await pair.ctl(1, "stats"))["control_unknown_commands"] == 1
            with pytest.raises(ControlError, match="takes no arguments"):
                await pair.ctl(1, "commit", "now")

    asyncio.run(go())
    # the epoch survives in the state file, written atomically
    assert (tmp_path / "state1").read_text().strip() == '{"term": 1, "node_id": 1}'


def test_event_overrun_resyncs_from_the_kernel(tmp_path):
    setup("error")

    async def go() -> None:
        async with Pair(tmp_path, capacity=8) as pair:
            k1 = pair.kernels[1]
            d1, d2 = pair.daemons[1], pair.daemons[2]
            await pair.ctl(1, "notify", "primary")
            await pair.until(lambda: d2.node.ready)
            for n in range(100):  # more events than the queue holds, before the loop reads any
                k1.conn_new(entry(n))
            await pair.until(lambda: len(d2.node.external) == 100)
            assert d1.driver.counters.netlink_overruns >= 1
            assert len(d1.node.internal) == 100

    asyncio.run(go())


def test_events_that_keep_coming_are_read_together_and_a_lone_one_at_once(tmp_path):
    """kernel.event_batch: after a read that found events, the next read waits that long
    (what came meanwhile travels in one frame); a read that finds nothing ends it."""
    setup("error")
    batch = 0.5  # (long: the test tells "at once" from "paced" without timing closely)

    async def go() -> None:
        async with Pair(tmp_path, extra=f"[kernel]\nevent_batch = {batch}\n") as pair:
            k1 = pair.kernels[1]
            d1, d2 = pair.daemons[1], pair.daemons[2]
            loop = asyncio.get_running_loop()
            await pair.ctl(1, "notify", "primary")
            await pair.until(lambda: d2.node.ready)
            await asyncio.sleep(2 * batch)  # (the start's reads are over: the socket is watched again)

            started = loop.time()
            k1.conn_new(entry(0))  # alone: read at once
            await pair.until(lambda: len(d1.node.internal) == 1)
            assert loop.time() - started < batch * 0.8
            frames = d1.node.counters.state_frames_sent
            for n in range(1, 10):  # keep coming, one every 10 ms: read together, one frame
                k1.conn_new(entry(n))
                await asyncio.sleep(0.01)
            await pair.until(lambda: len(d2.node.external) == 10)
            assert d1.node.counters.state_frames_sent == frames + 1

            await asyncio.sleep(2 * batch)  # a read found nothing: the socket is watched again
            started = loop.time()
            k1.conn_new(entry(10))
            await pair.until(lambda: len(d1.node.internal) == 11)
            assert loop.time() - started < batch * 0.8

    asyncio.run(go())


def test_a_refused_kernel_dump_is_retried_and_the_promotion_dump_follows(tmp_path):
    """The node holds its dumps until its cache is loaded: a failed kernel dump must not hold them forever."""
    setup("error")

    async def go() -> None:
        async with Pair(tmp_path) as pair:
            k1 = pair.kernels[1]
            d1, d2 = pair.daemons[1], pair.daemons[2]
            await pair.ctl(2, "notify", "backup")
            for n in range(3):
                k1.conn_new(entry(n))
            real_dump = k1.dump
            refusals = []

            def refusing_dump():
                if not refusals:
                    refusals.append(1)
                    raise KernelError("dump: Operation not permitted", errno=1)
                return real_dump()

            k1.dump = refusing_dump  # type: ignore[method-assign]
            await pair.ctl(1, "notify", "primary")
            await pair.until(lambda: len(d2.node.external) == 3 and d2.node.ready)
            assert refusals == [1]
            assert d1.driver.counters.kernel_dump_retries == 1 and d1.driver.counters.kernel_errors == 1

    asyncio.run(go())


def test_reload_applies_a_new_filter(tmp_path):
    setup("error")

    async def go() -> None:
        async with Pair(tmp_path) as pair:
            k1 = pair.kernels[1]
            d1, d2 = pair.daemons[1], pair.daemons[2]
            await pair.ctl(1, "notify", "primary")
            await pair.until(lambda: d2.node.ready)
            k1.conn_new(entry(1))
            await pair.until(lambda: len(d2.node.external) == 1)
            path = tmp_path / "node1.toml"
            path.write_text(path.read_text() + '[filter]\nignore = ["10.2.0.0/16"]\n')
            assert (await pair.ctl(1, "reload"))["filter"] == "reloaded"
            k1.conn_new(entry(2))  # to 10.2.0.10: now ignored
            k1.conn_new(make_entry("10.1.0.10", "10.3.0.10", Proto.UDP, 5, 53))
            # the UDP entry came after entry(2): once the peer has applied it (frames are
            # applied in sequence), entry(2) would be there too had it been sent
            await pair.until(lambda: any(e.orig.dport == 53 for e in d2.node.external.entries()))
            assert sorted(e.orig.dport for e in d2.node.external.entries()) == [53, 80]
            assert d1.counters["reloads"] == 1
            # what a reload does not apply is named, not silently ignored
            text = path.read_text()
            path.write_text(text.replace("alive_interval = 0.1", "alive_interval = 0.2"))
            answer = await pair.ctl(1, "reload")
            assert answer["restart_needed"] == ["sync"] and d1.node.params.alive_interval == 0.1
            path.write_text(text)
            assert (await pair.ctl(1, "reload"))["restart_needed"] == []
            # a broken config is refused as a whole: the running filter stays
            path.write_text(path.read_text() + "bogus = 1\n")
            with pytest.raises(ControlError, match="filter.bogus: unknown key"):
                await pair.ctl(1, "reload")

    asyncio.run(go())


def test_ctl_ready_exit_status_follows_the_role(tmp_path):
    """keepalived's track_script: `snep ctl ready` exits 0 only in BACKUP (in sync) or PRIMARY."""
    import subprocess
    import sys

    setup("error")

    def ready(index: int) -> int:
        return subprocess.run([sys.executable, "-m", "snep.cli", "ctl", "--socket", str(tmp_path / f"ctl{index}.sock"),
                               "ready"], capture_output=True, timeout=30).returncode

    async def go() -> None:
        loop = asyncio.get_running_loop()
        async with Pair(tmp_path) as pair:
            d2 = pair.daemons[2]
            assert await loop.run_in_executor(None, ready, 2) == 1  # SYNCING: no primary yet
            await pair.ctl(1, "notify", "primary")
            assert await loop.run_in_executor(None, ready, 1) == 0  # PRIMARY
            await pair.until(lambda: d2.node.ready)
            assert await loop.run_in_executor(None, ready, 2) == 0  # BACKUP, in sync
            await pair.ctl(2, "notify", "fault")
            assert await loop.run_in_executor(None, ready, 2) == 1  # FAULT
            await pair.ctl(2, "notify", "backup")  # back: resyncs first, then ready again
            await pair.until(lambda: d2.node.ready)
            assert await loop.run_in_executor(None, ready, 2) == 0

    asyncio.run(go())



def test_a_config_warning_is_logged_at_start(tmp_path):
    """What ``snep run --check`` warns of (snep.config.warnings) the daemon logs as it starts."""
    setup("warning")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("snep").addHandler(handler)

    async def go() -> None:
        async with Pair(tmp_path, sync_extra={1: "socket_buffer = 65536\n"}):
            pass

    try:
        asyncio.run(go())
    finally:
        logging.getLogger("snep").removeHandler(handler)
    warned = [line for line in seen if line.startswith("config: sync.socket_buffer (65536 bytes) is smaller")]
    assert len(warned) == 1, seen  # (node 1's only: node 2 runs on the defaults)
