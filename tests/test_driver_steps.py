"""The driver's long kernel work in steps (snep.fsm.driver, rule 5): a kernel dump and
a commit carried out a few entries at a time, with the host's loop running between
the steps, give the very outputs, in the very order, of the run at once; the inputs
that arrive meanwhile wait for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from snep.entry import Event, EventKind
from snep.fsm import driver as driver_module
from snep.fsm.driver import Driver
from snep.fsm.effects import Epoch, Log, PeerId, RoleChanged
from snep.fsm.node import SyncNode
from snep.kernel import base
from snep.kernel.memory import MemoryKernel
from snep.lab.sim import conn


class Host:
    """A host that records; with ``stepping``, it runs the driver's steps when asked."""

    def __init__(self, stepping: bool) -> None:
        self.sent: list[tuple[tuple[PeerId, ...], bytes]] = []
        self.reports: list[RoleChanged | Log] = []
        self.soon: list[Callable[[float], None]] = []
        self.steps = 0
        if stepping:
            self.resume_soon = self.soon.append  # (only a stepping host has it)

    def send(self, peers: tuple[PeerId, ...], data: bytes) -> None:
        self.sent.append((peers, data))

    def persist(self, epoch: Epoch) -> None:
        pass

    def report(self, output: RoleChanged | Log) -> None:
        self.reports.append(output)

    def call_later(self, delay: float, callback: Callable[[float], None]) -> None:
        raise AssertionError("no retries here")

    def loop(self, now: float) -> None:
        """What the event loop does: the steps, until the run is complete."""
        while self.soon:
            self.steps += 1
            self.soon.pop(0)(now)


def scenario(stepping: bool) -> tuple[list[Any], MemoryKernel, Host]:
    kernel = MemoryKernel()
    for i in range(40):
        kernel.conn_new(conn(i, timeout=3600))
    node = SyncNode(1, [2], session=7)
    host = Host(stepping)
    record: list[Any] = []
    driver = Driver(node, kernel, host, record=record)
    kernel.subscribe(node.params.level)
    driver.start(0.0)  # a dump of 40
    for i in range(40, 70):  # what a primary told this node: committed on promotion
        node.external.apply(Event(EventKind.NEW, conn(i, timeout=3600)))
    driver.role_change(1.0, "primary")  # commit 30, dump 70
    driver.on_datagram(1.5, b"not a frame", 2)  # (arrives during the promotion's work)
    driver.command(1.6, "resync")  # (so does this)
    assert driver.busy is stepping
    host.loop(2.0)
    assert not driver.busy
    driver.command(3.0, "resync")
    host.loop(3.0)
    return record, kernel, host


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "STEP", 7)
    monkeypatch.setattr(base, "DUMP_PART", 5)


@pytest.mark.usefixtures("small_steps")
def test_kernel_work_in_steps_gives_the_outputs_of_the_run_at_once() -> None:
    at_once, kernel_at_once, host_at_once = scenario(stepping=False)
    in_steps, kernel_in_steps, host_in_steps = scenario(stepping=True)
    assert host_in_steps.steps > 10  # (it did yield, many times)
    assert host_at_once.steps == 0
    assert in_steps == at_once
    assert host_in_steps.sent == host_at_once.sent
    assert [str(r) for r in host_in_steps.reports] == [str(r) for r in host_at_once.reports]
    assert sorted(kernel_in_steps.dump()) == sorted(kernel_at_once.dump())
    assert len(kernel_in_steps.dump()) == 70


@pytest.mark.usefixtures("small_steps")
def test_a_refused_write_in_steps_is_reported_once_with_every_refusal() -> None:
    kernel = MemoryKernel()
    node = SyncNode(1, [2], session=7)
    host = Host(True)
    driver = Driver(node, kernel, host)
    kernel.subscribe(node.params.level)
    driver.start(0.0)
    host.loop(0.0)
    gone = [Event(EventKind.DESTROY, conn(i)) for i in range(20)]  # (not in the kernel: refused)
    driver.run(1.0, [driver_module.KernelOps(tuple(gone))])
    host.loop(1.0)
    assert driver.counters.entries_written == 20
    refused = [r for r in host.reports if isinstance(r, Log) and "refused" in r.message]
    assert len(refused) <= 1
    assert driver.counters.kernel_refused_entries == (20 if refused else 0)
