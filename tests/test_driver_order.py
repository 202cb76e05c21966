"""The simulation and the daemon carry out a node's outputs in the same order.

Both run their nodes through snep.fsm.driver.Driver; this test holds them to it. One
input sequence (two nodes start with connections in node 1's kernel, node 1 is
promoted, then operator commands) is fed to a Simulation and to two Daemons on
loopback over in-memory kernels, and the outputs each input caused are compared, in
order: frames decoded (a peer is its node id in both; the sessions and frame
counters, random in the daemon, are left out), kernel operations, dumps, epochs
persisted, role changes and log records. (What the daemons' timers and datagrams
cause in between depends on wall-clock timing, and is not compared.)
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from snep import config
from snep.entry import Event
from snep.fsm.driver import Input
from snep.fsm.effects import KernelOps, SendDatagram
from snep.kernel.memory import MemoryKernel, MemoryTable
from snep.lab.sim import Simulation, conn
from snep.runtime.client import request
from snep.runtime.daemon import Daemon
from snep.wire.codec import decode_frame, decode_records

CONNS = [conn(i, timeout=3600) for i in range(5)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timeless(message: Any) -> Any:
    """The clocks differ: an entry's remaining timeout is the one value that may."""
    return Event(message.kind, message.entry._replace(timeout=0)) if isinstance(message, Event) else message


def by_input(record: list[Any]) -> list[tuple[tuple[str, str], list[Any]]]:
    """The record cut at its input markers, each output made comparable."""
    cut: list[tuple[tuple[str, str], list[Any]]] = []
    for item in record:
        if isinstance(item, Input):
            cut.append(((item.kind, item.detail), []))
        elif isinstance(item, SendDatagram):
            frame = decode_frame(item.data)
            frame = replace(frame, messages=tuple(timeless(m) for m in frame.messages), session=0, counter=0)
            cut[-1][1].append(("send", item.peers, frame))
        elif isinstance(item, KernelOps):
            events = item.events + tuple(decode_records(item.records))  # (a commit's records, as events)
            cut[-1][1].append(replace(item, events=tuple(timeless(e) for e in events), records=()))
        else:
            cut[-1][1].append(item)
    return cut


def inputs_of(cut: list[tuple[tuple[str, str], list[Any]]], kind: str) -> list[tuple[str, list[Any]]]:
    return [(detail, outputs) for (k, detail), outputs in cut if k == kind]


def simulated() -> dict[int, list[Any]]:
    sim = Simulation(2, expire_interval=1e9)
    sim.records = {}
    for entry in CONNS:
        sim.conn_new(1, entry)
    sim.start(1)
    sim.start(2)
    sim.run(0.5)
    sim.promote(1)
    sim.run(0.5)
    sim.command(1, "bulk")
    sim.run(0.5)
    sim.command(2, "commit")
    sim.command(2, "flush")
    sim.run(0.5)
    return sim.records


async def daemons(tmp: Path) -> dict[int, list[Any]]:
    ports = {1: free_port(), 2: free_port()}
    records: dict[int, list[Any]] = {1: [], 2: []}
    kernels = {i: MemoryKernel(MemoryTable()) for i in (1, 2)}
    for entry in CONNS:
        kernels[1].conn_new(entry)
    nodes = {}
    for i, other in ((1, 2), (2, 1)):
        path = tmp / f"node{i}.toml"
        path.write_text(
            f'[node]\nid = {i}\nstate_file = "{tmp / f"state{i}"}"\n'
            f'[sync]\nlisten = "127.0.0.{i}:{ports[i]}"\npeers = [{{ id = {other}, address = "127.0.0.{other}:{ports[other]}" }}]\n'
            f"insecure = true\n"
            f'[control]\nsocket = "{tmp / f"ctl{i}.sock"}"\n'
        )
        nodes[i] = Daemon(config.load(path), kernels[i], record=records[i])
    loop = asyncio.get_running_loop()

    async def ctl(i: int, command: str, *argv: str) -> Any:
        return await loop.run_in_executor(None, request, tmp / f"ctl{i}.sock", command, {"argv": list(argv)}, 5.0)

    async def until(condition: Any) -> None:
        deadline = loop.time() + 10
        while not condition():
            assert loop.time() < deadline, "condition not met within 10 s"
            await asyncio.sleep(0.01)

    tasks = []
    for i in (1, 2):
        tasks.append(asyncio.create_task(nodes[i].run()))
        await until(lambda i=i: nodes[i].control is not None and (tmp / f"ctl{i}.sock").exists())
    await ctl(1, "notify", "primary")
    await until(lambda: nodes[2].node.ready)
    await ctl(1, "bulk")
    await until(lambda: nodes[1].node.sender.in_flight() == 0 and not nodes[1].node.sender.bulk_active)
    await ctl(2, "commit")
    await ctl(2, "flush")
    await until(lambda: nodes[2].node.ready and len(nodes[2].node.external) == len(CONNS))
    for daemon in nodes.values():
        assert daemon.stopping is not None
        daemon.stopping.set()
    assert await asyncio.gather(*tasks) == [0, 0]
    return records


def test_the_simulation_and_the_daemon_carry_out_the_same_outputs_in_the_same_order(tmp_path: Path) -> None:
    sim_records = simulated()
    daemon_records = asyncio.run(daemons(tmp_path))
    for n in (1, 2):
        sim_cut = by_input(sim_records[n])
        daemon_cut = by_input(daemon_records[n])
        for kind in ("start", "role", "command"):
            assert inputs_of(sim_cut, kind) == inputs_of(daemon_cut, kind), f"node {n}, {kind}"
    # What the comparison covers: the promotion carried out its epoch, commit log,
    # dump, HELLO and bulk frames, in that order, in both.
    (_, promotion), = inputs_of(by_input(sim_records[1]), "role")
    kinds = [type(o).__name__ if not isinstance(o, tuple) else o[2].type.name for o in promotion]
    assert kinds[:2] == ["PersistEpoch", "RoleChanged"]
    assert kinds.index("DumpKernel") < kinds.index("HELLO") < kinds.index("STATE")
    assert sum(1 for k in kinds if k == "STATE") >= 1
