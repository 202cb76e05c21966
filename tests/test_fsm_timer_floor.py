"""SyncNode.kernel_events_floor: a kernel read adds no deadline before it.

The daemon skips ``next_timer`` after a kernel read when its timer is due by the floor
(snep.runtime.instance.Instance.tick): were the floor too late, a resend, an ALIVE or
an incremental flush would wait for a timer armed for something later. Random runs of
a primary and its backup (frames lost, acknowledged late, timers, every level) check
that after each read the node's next deadline is no earlier than the one before it
or the floor.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from snep.entry import Event, EventKind
from snep.fsm.effects import SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.lab.sim import conn, handshake
from snep.level import Level


def _pair(params: SyncParams) -> tuple[SyncNode, SyncNode]:
    primary, backup = SyncNode(1, [2], params, session=1), SyncNode(2, [1], params, session=2)
    for node in (primary, backup):
        node.start(0.0)
        node.on_kernel_dump(0.0, [])
    handshake(primary, backup)
    return primary, backup


def _frames(outputs: list) -> list[bytes]:
    return [o.data for o in outputs if isinstance(o, SendDatagram)]


def _run(seed: int, level: Level) -> int:
    """One random run; how many kernel reads were checked on the primary."""
    rng = random.Random(seed)
    params = replace(
        SyncParams(level=level),
        retransmit_timeout=rng.choice([0.05, 0.2, 0.5]),
        alive_interval=rng.choice([0.1, 1.0]),
        incremental_period=rng.choice([0.03, 1.0]),
        ack_delay=rng.choice([0.0, 0.02, 0.3]),
    )
    primary, backup = _pair(params)
    now = 0.0
    to_backup = _frames(primary.promote(now) + primary.on_kernel_dump(now, []))
    to_primary: list[bytes] = []
    live: list[int] = []
    checked = 0
    for step in range(400):
        now += rng.choice([0.0, 0.001, 0.01, 0.1, 0.4])
        action = rng.random()
        if action < 0.5:
            before = primary.next_timer(now)
            floor = primary.kernel_events_floor(now)
            events = []
            for _ in range(rng.randint(1, 6)):
                if live and rng.random() < 0.4:
                    i = rng.choice(live)
                    kind = rng.choice([EventKind.UPDATE, EventKind.DESTROY])
                    if kind is EventKind.DESTROY:
                        live.remove(i)
                else:
                    i, kind = step * 8 + len(events), EventKind.NEW
                    live.append(i)
                events.append(Event(kind, conn(i)))
            to_backup += _frames(primary.on_kernel_events(now, events))
            after = primary.next_timer(now)
            assert before is not None and after is not None
            assert after >= min(before, floor), (seed, level, step, before, floor, after)
            checked += 1
        elif action < 0.75:  # the backup takes what came, some of it lost
            for data in to_backup:
                if rng.random() < 0.9:
                    to_primary += _frames(backup.on_datagram(now, data, 1))
            to_backup = []
        elif action < 0.9:  # the primary takes the acknowledgements
            for data in to_primary:
                to_backup += _frames(primary.on_datagram(now, data, 2))
            to_primary = []
        else:  # the timers that are due
            if now >= (primary.next_timer(now) or float("inf")):
                to_backup += _frames(primary.on_timer(now))
            if now >= (backup.next_timer(now) or float("inf")):
                to_primary += _frames(backup.on_timer(now))
    return checked


@pytest.mark.parametrize("level", list(Level))
def test_no_deadline_before_the_floor_after_a_kernel_read(level: Level) -> None:
    checked = sum(_run(seed, level) for seed in range(12))
    assert checked > 1000  # (the runs read events, they do not only wait)


def test_no_floor_off_primary() -> None:
    """A backup's reads are not the primary's: it has no floor (its acknowledgement
    deadlines follow the stream, not its kernel)."""
    primary, backup = _pair(SyncParams())
    assert backup.kernel_events_floor(5.0) == 5.0
    primary.promote(0.0)
    assert primary.kernel_events_floor(5.0) == 5.0 + min(SyncParams().retransmit_timeout, SyncParams().alive_interval)
