"""Active-active's hand-over of a group (spec/active_active.tla: Resign, Drained, Elect),
through the simulation: the returning home claims its group only once it has applied
the survivor's stream up to the last frame the survivor named when it resigned.

Without it (``drain=False``, the primary/backup behaviour) the home's claim makes the
survivor's last frames stale: a connection born at the survivor just before the
hand-over never reaches the home, and the home's dump sweeps it from the survivor.
"""

from __future__ import annotations

import pytest

from snep.fsm.params import SyncParams, Unconfirmed
from snep.fsm.role import Role
from snep.lab.sim import Simulation, conn
from snep.wire.codec import decode_frame
from snep.wire.messages import MessageType


def returned(drain: bool) -> Simulation:
    """Node 2 (the survivor) owns the group; node 1 (its home) is back, in sync."""
    sim = Simulation(2, SyncParams(alive_interval=0.2, peer_dead_timeout=1.0, unconfirmed=Unconfirmed.REMOVE), drain=drain)
    sim.start()
    sim.run(0.05)
    sim.promote(2)
    sim.demote(1)
    sim.settle()
    assert sim.role(1) is Role.BACKUP and sim.role(2) is Role.PRIMARY
    return sim


def kind(datagram) -> MessageType:
    return decode_frame(datagram.data).type


@pytest.mark.parametrize("drain", [True, False])
def test_the_home_takes_its_group_back_only_once_drained(drain):
    sim = returned(drain)
    late = conn(7)
    sim.conn_new(2, late)  # born at the survivor just before the hand-over ...
    on_its_way = lambda d: d.dst == 1 and kind(d) is MessageType.STATE  # noqa: E731
    held = sim.network.capture(on_its_way)  # ... its frame still on its way to the home
    assert held is not None and sim.network.lose(on_its_way)
    sim.promote(1)  # keepalived: the home is master again ...
    sim.demote(2)  # ... and the survivor backup (in either order; here the home first)
    sim.run(0.005)  # (the survivor's resignation arrives)
    if drain:
        assert sim.role(1) is Role.BACKUP  # waiting: the survivor resigned, its last frame is missing
        assert sim.node(1).counters.promotions_waited == 1 and sim.node(1).counters.resigns_heard == 1
    sim.network.replay(held, to=1, as_from=2, delay=0.01)  # the late frame arrives
    sim.settle()
    assert sim.role(1) is Role.PRIMARY and sim.role(2) is Role.BACKUP
    if drain:
        # the home claimed the group with the connection, and its dump kept it everywhere
        assert late.key in sim.kernel_keys(1) and late.key in sim.kernel_keys(2)
    else:
        # the fault the spec's take_back_undrained mutant plants: the frame was stale on
        # arrival, and the home's dump swept the connection from the survivor
        assert late.key not in sim.kernel_keys(1) and late.key not in sim.kernel_keys(2)


def test_a_failed_owner_is_not_waited_for():
    sim = returned(True)
    sim.crash(2)
    sim.promote(1)
    assert sim.role(1) is Role.BACKUP  # (heard of lately: it may be resigning)
    sim.run(0.5)  # two alive intervals of silence: it failed
    assert sim.role(1) is Role.PRIMARY and sim.node(1).counters.reasserts == 1


def test_a_live_owner_that_never_resigns_is_fenced_after_the_bound():
    sim = returned(True)
    sim.promote(1)  # split brain: keepalived made both masters; the owner stays primary
    sim.run(0.5)
    assert sim.role(1) is Role.BACKUP  # the owner is heard: still waiting
    sim.run(1.0)  # peer_dead_timeout: the bound
    sim.settle()
    assert sim.role(1) is Role.PRIMARY and sim.role(2) is not Role.PRIMARY  # fenced by the newer epoch
