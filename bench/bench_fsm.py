"""Figures of the sans-I/O sync path (one core, no sockets): how fast a primary turns
kernel events into datagrams, how fast a backup applies them, and a bulk dump.

Run: .venv/bin/python bench/bench_fsm.py [N]
"""

from __future__ import annotations

import sys
import time

from snep.entry import Event, EventKind
from snep.fsm.effects import SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.sim import conn


def pair(params: SyncParams) -> tuple[SyncNode, SyncNode]:
    primary, backup = SyncNode(1, [2], params), SyncNode(2, [1], params)
    for node in (primary, backup):
        node.start(0.0)
        node.on_kernel_dump(0.0, [])
    setup = primary.promote(0.0) + primary.on_kernel_dump(0.0, [])
    deliver(backup, setup, 0.0)  # HELLO and the (empty) dump: the backup follows the stream
    return primary, backup


def deliver(node: SyncNode, outputs, now: float) -> int:
    count = 0
    for output in outputs:
        if isinstance(output, SendDatagram):
            node.on_datagram(now, output.data, 1)
            count += 1
    return count


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    params = SyncParams(queue_size=1 << 16, bulk_window=1 << 15)
    events = [Event(EventKind.NEW, conn(i)) for i in range(n)]

    for batch in (1, 64):
        primary, backup = pair(params)
        t0 = time.process_time()
        outs = []
        for i in range(0, n, batch):
            outs.append(primary.on_kernel_events(1.0, events[i : i + batch]))
        t1 = time.process_time()
        frames = sum(deliver(backup, out, 1.0) for out in outs)
        t2 = time.process_time()
        assert len(backup.external) == n
        print(
            f"events in batches of {batch:>2}: primary {n / (t1 - t0):>9,.0f} events/s, "
            f"backup {n / (t2 - t1):>9,.0f} events/s ({frames} frames, {n / frames:.1f} entries/frame)"
        )

    primary, backup = pair(params)
    entries = [conn(i) for i in range(n)]
    t0 = time.process_time()
    out = primary.on_kernel_dump(2.0, entries)
    out += primary.bulk_send(2.0)
    t1 = time.process_time()
    frames = deliver(backup, out, 2.0)
    t2 = time.process_time()
    assert len(backup.external) == n
    print(f"bulk dump of {n:,} entries: primary {t1 - t0:.3f} s, backup {t2 - t1:.3f} s ({frames} frames)")


if __name__ == "__main__":
    main()
