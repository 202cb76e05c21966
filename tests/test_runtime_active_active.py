"""Active-active in the runtime: two daemons on loopback, one VRRP group each, each over
an in-memory kernel (no root). Each group instance syncs only its group's connections
(by ct mark), each node's kernel holds the other's (warm), a failure moves the group to
the survivor with nothing to commit, and the returning node gets every group's table
before it is ready.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from snep import config
from snep.entry import Proto, make_entry
from snep.errors import ConfigError
from snep.kernel.groups import Groups
from snep.kernel.memory import MemoryKernel
from snep.runtime.client import ControlError, request
from snep.runtime.daemon import Daemon
from snep.runtime.log import setup
from tests.test_runtime_node import free_port


def aa_config(tmp: Path, index: int, ports: dict[int, int], extra: str = "") -> config.Config:
    other = 2 if index == 1 else 1
    path = tmp / f"aa{index}.toml"
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
[control]
socket = "{tmp / f"ctl{index}.sock"}"
[ha]
notify_fifo = "{tmp / f"ka{index}.fifo"}"
[cluster]
mode = "active-active"
mark_mask = 0xf
groups = [{{ mark = 1, sync_group = "G1" }}, {{ mark = 2, sync_group = "G2" }}]
{extra}"""
    )
    return config.load(path)


def free_ports(groups: int = 2) -> int:
    """A base port with the next ``groups - 1`` free too (each group syncs on base + index)."""
    for _ in range(50):
        base = free_port()
        if base + groups - 1 <= 0xFFFF and all(_free(base + i) for i in range(1, groups)):
            return base
    raise AssertionError("no run of free ports")


def _free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def conn(n: int, mark: int):
    return make_entry("10.1.0.10", "10.2.0.10", Proto.TCP, 10000 + n, 80, timeout=3600, mark=mark)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {1: free_ports(), 2: free_ports()}
        self.kernels = {1: MemoryKernel(), 2: MemoryKernel()}
        self.daemons: dict[int, Daemon] = {}
        self.tasks: dict[int, asyncio.Task[int]] = {}

    async def start(self, i: int) -> Daemon:
        daemon = self.daemons[i] = Daemon(aa_config(self.tmp, i, self.ports), self.kernels[i])
        self.tasks[i] = asyncio.create_task(daemon.run())
        await self.until(lambda: daemon.control is not None and (self.tmp / f"ctl{i}.sock").exists())
        return daemon

    async def stop(self, i: int) -> None:
        daemon = self.daemons.pop(i)
        assert daemon.stopping is not None
        daemon.stopping.set()
        assert await self.tasks.pop(i) == 0

    async def __aenter__(self) -> Cluster:
        for i in (1, 2):
            await self.start(i)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for i in list(self.daemons):
            await self.stop(i)

    async def ctl(self, index: int, command: str, *argv: str):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, request, self.tmp / f"ctl{index}.sock", command, {"argv": list(argv)}, 5.0)

    @staticmethod
    async def until(condition, timeout: float = 8.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    def keys(self, i: int, mark: int | None = None) -> set:
        return {e.key for e in self.kernels[i].dump() if mark is None or e.mark == mark}


def test_each_node_owns_its_group_and_holds_the_others(tmp_path):
    setup("warning")

    async def go() -> None:
        async with Cluster(tmp_path) as c:
            k1, k2 = c.kernels[1], c.kernels[2]
            # each node is master of its own group, backup of the other's
            assert (await c.ctl(1, "notify", "primary", "1"))["role"] == "PRIMARY"
            assert (await c.ctl(1, "notify", "backup", "2"))["role"] in ("SYNCING", "BACKUP")  # (until its dump)
            await c.ctl(2, "notify", "primary", "2")
            await c.ctl(2, "notify", "backup", "1")
            await c.until(lambda: (c.daemons[1].ready()["ready"] and c.daemons[2].ready()["ready"]))

            for n in range(5):
                k1.conn_new(conn(n, 1))  # through fw1: group 1
                k2.conn_new(conn(100 + n, 2))  # through fw2: group 2
            k1.conn_new(conn(200, 0))  # marked by no group: not synchronized
            k1.conn_new(conn(201, 5))
            await c.until(lambda: len(c.keys(2, 1)) == 5 and len(c.keys(1, 2)) == 5)
            assert c.keys(2) == c.keys(2, 1) | c.keys(2, 2)  # nothing ungrouped arrived

            status = await c.ctl(1, "status")
            assert status["mode"] == "active-active" and status["owned_groups"] == [1]
            assert status["entries"] == {"owned": 5, "peers": 5}
            assert status["groups"]["1"]["role"] == "PRIMARY" and status["groups"]["2"]["role"] == "BACKUP"
            assert status["ungrouped_events"] == 2
            stats = await c.ctl(2, "stats")
            assert stats["groups"]["1"]["external_entries"] == 5 and stats["groups"]["2"]["internal_entries"] == 5

            # a destroy of fw2's connection reaches fw1's kernel through group 2's stream
            k2.conn_destroy(conn(100, 2))
            await c.until(lambda: conn(100, 2).key not in c.keys(1))

            # fw1 fails: fw2 takes group 1 with nothing to commit (its kernel has them)
            await c.stop(1)
            took = await c.ctl(2, "notify", "primary", "1")
            assert took["role"] == "PRIMARY" and took["committed"] == 0
            k2.conn_new(conn(300, 1))  # a new connection of group 1, now through fw2
            assert len(c.keys(2, 1)) == 6

            # fw1 returns with an empty kernel: both groups' dumps before it is ready
            k1.flush()
            d1 = await c.start(1)
            await c.ctl(1, "notify", "backup", "1")
            await c.ctl(1, "notify", "backup", "2")
            await c.until(lambda: d1.ready()["ready"])
            assert c.keys(1) == c.keys(2, 1) | c.keys(2, 2)
            assert conn(300, 1).key in c.keys(1)

            # and takes its group back: fw2 resigns it first, then fw1 claims it
            await c.ctl(2, "notify", "backup", "1")
            back = await c.ctl(1, "notify", "primary", "1")
            assert back["role"] == "PRIMARY"
            k1.conn_new(conn(400, 1))
            await c.until(lambda: conn(400, 1).key in c.keys(2))
            assert conn(300, 1).key in c.keys(2)  # the survivor's connections stay

    asyncio.run(go())


def test_notify_names_the_group_and_commands_reach_every_group(tmp_path):
    setup("warning")

    async def go() -> None:
        async with Cluster(tmp_path) as c:
            with pytest.raises(ControlError, match="say which group"):
                await c.ctl(1, "notify", "primary")
            with pytest.raises(ControlError, match="no group '7'"):
                await c.ctl(1, "notify", "primary", "7")
            with pytest.raises(ControlError, match="no group 'x'"):
                await c.ctl(1, "notify", "primary", "x")
            answer = await c.ctl(1, "resync")
            assert answer["done"] == "resync" and set(answer["groups"]) == {"1", "2"}
            counters = (await c.ctl(1, "stats"))["control_bad_requests"]
            assert counters == 0

    asyncio.run(go())


def test_keepalived_fifo_lines_go_to_their_group(tmp_path):
    setup("warning")

    async def go() -> None:
        async with Cluster(tmp_path) as c:
            import os

            fifo = os.open(tmp_path / "ka1.fifo", os.O_WRONLY | os.O_NONBLOCK)
            os.write(fifo, b'GROUP "G2" MASTER 100\nGROUP "G1" BACKUP 50\nGROUP "G3" MASTER 100\n')
            os.close(fifo)
            d1 = c.daemons[1]
            await c.until(lambda: d1.instances[2].node.state.name == "PRIMARY")
            assert d1.instances[1].node.state.name in ("SYNCING", "BACKUP")
            assert d1.fifo is not None and d1.fifo.counters["ha_fifo_ignored"] == 1

    asyncio.run(go())


def test_group_views_split_events_dumps_and_sweeps_by_mark():
    kernel = MemoryKernel()
    groups = Groups(kernel, [1, 2], 0x0F)
    kernel.subscribe(config.SyncParams().level)
    for n, mark in enumerate((1, 2, 0x11, 3, 0)):
        kernel.conn_new(conn(n, mark))
    read, touched = groups.read()
    assert read == 5 and [v.mark for v in touched] == [1, 2]
    one, two = groups.views[1], groups.views[2]
    assert [e[1].key for e in one.read_events()] == [conn(0, 1).key, conn(2, 0x11).key]  # 0x11 & 0xf == 1
    assert one.read_events() == []
    assert [e.key for e in two.dump()] == [conn(1, 2).key]
    assert [[e.key for e in part] for part in two.dump_parts()] == [[conn(1, 2).key]]
    assert groups.counters.ungrouped == 2  # marks 3 and 0
    # a sweep of every entry touches the group's only
    assert one.shorten_timeouts(5) == 2
    assert {e.key: e.timeout for e in kernel.dump()}[conn(1, 2).key] == 3600


def test_active_active_config_is_checked(tmp_path):
    ports = {1: 4000, 2: 4000}
    base = aa_config(tmp_path, 1, ports)
    assert [g.mark for g in base.cluster.groups] == [1, 2] and base.sync.params.inject_on_arrival
    group = config.group_config(base, 1)
    assert group.sync.link.listen.port == 4001 and group.sync.link.peers[0].address.port == 4001
    assert str(group.state_file).endswith("state1.2") and group.ha.follow == ("GROUP", "G2")

    def bad(extra: str, cluster: str | None = None) -> str:
        text = (tmp_path / "aa1.toml").read_text()
        if cluster is not None:
            text = text.split("[cluster]")[0] + cluster
        path = tmp_path / "bad.toml"
        path.write_text(text + extra)
        with pytest.raises(ConfigError) as caught:
            config.load(path)
        return str(caught.value)

    assert "bits outside mark_mask" in bad("", '[cluster]\nmode = "active-active"\nmark_mask = 3\ngroups = [{ mark = 4, instance = "A" }]\n')
    assert "same mark twice" in bad("", '[cluster]\nmode = "active-active"\ngroups = [{ mark = 1, instance = "A" }, { mark = 1, instance = "B" }]\n')
    assert "exactly one of sync_group and instance" in bad("", '[cluster]\nmode = "active-active"\ngroups = [{ mark = 1 }]\n')
    assert "only for mode" in bad("", '[cluster]\ngroups = [{ mark = 1, instance = "A" }]\n')
    assert "inject_on_arrival" in bad("[kernel]\ninject_on_arrival = false\n")
    assert "groups: missing" in bad("", '[cluster]\nmode = "active-active"\n')
    assert "unknown value 'active'" in bad("", '[cluster]\nmode = "active"\n')
    text = (tmp_path / "aa1.toml").read_text().replace('[ha]\nnotify_fifo = "' + str(tmp_path / "ka1.fifo") + '"\n', "")
    (tmp_path / "nofifo.toml").write_text(text)
    with pytest.raises(ConfigError, match="notify_fifo"):
        config.load(tmp_path / "nofifo.toml")
