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


NO_DEFER = "[cluster.defer]\nenabled = false\n"  # (the defer tests give their own queue)


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
{extra or NO_DEFER}
"""
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
            # (fw1 resigned as it stopped; fw2 claims at once, or once that news is in)
            await c.stop(1)
            written = c.daemons[2].instances[1].driver.counters.entries_written
            took = await c.ctl(2, "notify", "primary", "1")
            assert took["role"] in ("PRIMARY", "BACKUP")
            await c.until(lambda: c.daemons[2].instances[1].node.state.name == "PRIMARY")
            assert c.daemons[2].instances[1].driver.counters.entries_written == written  # nothing to commit
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
            # (the home claims it once it applied fw2's stream up to the last frame fw2
            # named when it resigned: at once, or a moment later when the news is on its way)
            await c.ctl(2, "notify", "backup", "1")
            back = await c.ctl(1, "notify", "primary", "1")
            assert back["role"] in ("PRIMARY", "BACKUP")
            await c.until(lambda: d1.instances[1].node.state.name == "PRIMARY")
            assert d1.instances[1].node.counters.reasserts + (back["role"] == "PRIMARY") == 1
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


# --- defer, with a stand-in for the kernel's queue ---------------------------------------


class FakeQueue:
    """What Deferral needs of NfQueue: packets to read (``put``), the verdicts given."""

    def __init__(self, queue: int, **options: object) -> None:
        import socket as socket_module

        self.number = queue
        self.options = options
        self._wake, self._ring = socket_module.socketpair()
        self._wake.setblocking(False)
        self.packets: list = []
        self.given: list[tuple[int, int]] = []
        self.closed = False

    def put(self, packet) -> None:
        self.packets.append(packet)
        self._ring.send(b"x")

    def fileno(self) -> int:
        return self._wake.fileno()

    def receive(self, max_packets: int = 1024) -> list:
        try:
            self._wake.recv(4096)
        except BlockingIOError:
            pass
        out, self.packets = self.packets, []
        return out

    def verdicts(self, items) -> None:
        self.given.extend((packet_id, int(verdict)) for packet_id, verdict in items)

    def close(self) -> None:
        self.closed = True
        self._wake.close()
        self._ring.close()

    @property
    def counters(self):
        from snep.kernel.nfqueue import NfQueueCounters

        return NfQueueCounters()


def queued(packet_id: int, src: str, dst: str, sport: int, dport: int, flags: int, mark: int):
    """A queued TCP packet as this machine's kernel gives it (no NFQA_CT: headers copied)."""
    import socket as socket_module
    import struct

    from snep.kernel import nfqueue

    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 64240, 0, 0)
    data = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                       socket_module.inet_aton(src), socket_module.inet_aton(dst)) + tcp
    return nfqueue.Packet(0, packet_id, 0x0800, 0, None, None, mark, 0, 0, data, len(data), nfqueue.decode_headers(data))


class DeferCluster(Cluster):
    """The cluster with defer on: each daemon's queue is a FakeQueue."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.queues: dict[int, FakeQueue] = {}

    async def start(self, i: int) -> Daemon:
        def open_queue(queue: int, **options: object) -> FakeQueue:
            self.queues[i] = FakeQueue(queue, **options)
            return self.queues[i]

        extra = "[cluster.defer]\nqueue = 3\nbound = 0.1\nfail = \"closed\"\n"
        cfg = aa_config(self.tmp, i, self.ports, extra)
        daemon = self.daemons[i] = Daemon(cfg, self.kernels[i], deferral_options={"open_queue": open_queue})
        self.tasks[i] = asyncio.create_task(daemon.run())
        await self.until(lambda: daemon.control is not None and (self.tmp / f"ctl{i}.sock").exists())
        return daemon


def test_defer_holds_a_new_connection_until_the_peer_has_it_and_reports_an_asymmetric_reply(tmp_path):
    setup("warning")
    SYN, SYN_ACK = 0x02, 0x12

    async def go() -> None:
        async with DeferCluster(tmp_path) as c:
            q1, q2 = c.queues[1], c.queues[2]
            assert q1.number == 3 and q1.options["fail_open"] is False  # (fail = "closed")
            await c.ctl(1, "notify", "primary", "1")
            await c.ctl(1, "notify", "backup", "2")
            await c.ctl(2, "notify", "primary", "2")
            await c.ctl(2, "notify", "backup", "1")
            await c.until(lambda: c.daemons[1].ready()["ready"] and c.daemons[2].ready()["ready"])

            # a client's SYN through fw1 (group 1): held until fw2 has the connection
            q1.put(queued(11, "10.1.0.10", "10.2.0.10", 40000, 80, SYN, 1))
            await c.until(lambda: (11, 1) in q1.given)
            held = conn(0, 1)._replace(orig=conn(0, 1).orig._replace(sport=40000))
            assert held.key in c.keys(2)  # fw2's kernel had it before the SYN went on
            gate = c.daemons[1].deferral.gates[1]
            assert gate.queue.counters.held == 1 and gate.waits.count == 1

            # its SYN-ACK comes back through fw2 (an asymmetric path): fw2 reports it to
            # fw1 and holds it until fw1 wrote it into its kernel
            sent = {e.key: e for e in c.kernels[2].dump()}[held.key]
            assert sent.protoinfo.state.name == "SYN_SENT"  # (built from the SYN)
            c.kernels[1].conn_new(sent)  # (fw1's kernel confirmed the connection at the verdict)
            q2.put(queued(21, "10.2.0.10", "10.1.0.10", 80, 40000, SYN_ACK, 1))
            await c.until(lambda: (21, 1) in q2.given)
            state = {e.key: e for e in c.kernels[1].dump()}[held.key]
            assert state.protoinfo.state.name == "SYN_RECV"  # fw1 has the reply's state

            # a packet of no group, and one whose connection cannot be read: accepted at once
            q1.put(queued(12, "10.1.0.10", "10.2.0.10", 40001, 80, SYN, 7))
            q1.put(queued(13, "10.1.0.10", "10.2.0.10", 40002, 80, 0x10, 1))  # a bare ACK
            await c.until(lambda: (12, 1) in q1.given and (13, 1) in q1.given)
            status = await c.ctl(1, "status")
            assert status["defer"]["ungrouped_packets"] == 1 and status["defer"]["unreadable_packets"] == 1

            # fw2 cut off: fail-closed drops at the bound of 0.1 s (before fw2 counts as dead,
            # at peer_dead_timeout: its packets would then be released as its peer gone)
            c.daemons[2].instances[1].transport.close()
            q1.put(queued(14, "10.1.0.10", "10.2.0.10", 40003, 80, SYN, 1))
            await c.until(lambda: any(p == 14 for p, _ in q1.given), timeout=5)
            assert (14, 0) in q1.given  # dropped: the bound passed, fail = "closed"

    asyncio.run(go())
