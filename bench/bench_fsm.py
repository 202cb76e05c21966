"""Figures of the sans-I/O sync path (one core, no sockets): how fast a primary turns
kernel events into datagrams, how fast a backup applies them, and a bulk dump: all at
once, and paced as on the wire (flight window, ACKs, sealed frames, a filter
like the demo's, the daemon's GC thresholds).

Run: .venv/bin/python bench/bench_fsm.py [N]
"""

from __future__ import annotations

import gc
import sys
import time

from snep.entry import Event, EventKind
from snep.fsm.effects import SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.lab.sim import conn, handshake
from snep.runtime.daemon import GC_THRESHOLDS
from snep.wire.auth import Key, Keyring


def pair(params: SyncParams) -> tuple[SyncNode, SyncNode]:
    primary, backup = SyncNode(1, [2], params, session=1), SyncNode(2, [1], params, session=2)
    for node in (primary, backup):
        node.start(0.0)
        node.on_kernel_dump(0.0, [])
    handshake(primary, backup)
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
    params = SyncParams(resend_queue=1 << 16, bulk_window=1 << 15)
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
    while primary.sender.bulk_active:  # (a dump sends BULK_STEP frames per input, the rest at its timers)
        out += primary.on_timer(2.0)
    t1 = time.process_time()
    frames = deliver(backup, out, 2.0)
    t2 = time.process_time()
    assert len(backup.external) == n
    print(f"bulk dump of {n:,} entries: primary {t1 - t0:.3f} s, backup {t2 - t1:.3f} s ({frames} frames)")
    paced(n)


def paced(n: int) -> None:
    """A dump answered frame by frame: the backup applies what arrives and acks, the
    primary sends what the window allows. CPU seconds of each side."""
    gc.set_threshold(*GC_THRESHOLDS)
    def demo_filter() -> Filter:
        return Filter.build(["tcp", "udp", "icmp"], ["127.0.0.0/8", "::1/128", "10.99.0.0/24", "10.0.1.100/32"])

    flt = demo_filter()
    keyring = Keyring([Key(1, bytes(32))])
    params = SyncParams()
    primary = SyncNode(1, [2], params, session=1, keyring=keyring, filter=flt)
    backup = SyncNode(2, [1], params, session=2, keyring=keyring, filter=flt)
    for node in (primary, backup):
        node.start(0.0)
        node.on_kernel_dump(0.0, [])
    handshake(primary, backup)
    entries = [conn(i) for i in range(n)]
    check = demo_filter()  # (its own: the node's filter remembers addresses)
    wanted = sum(check.accepts(e) for e in entries)  # (a few of the generated addresses are ignored)
    pending = [o for o in primary.promote(0.0) + primary.on_kernel_dump(0.0, entries) if isinstance(o, SendDatagram)]
    cpu = [0.0, 0.0]
    frames = 0
    now = 1.0
    while pending:
        now += 0.001
        t0 = time.process_time()
        answers = []
        for output in pending:
            answers += backup.on_datagram(now, output.data, 1)
        answers += backup.on_timer(now)
        frames += len(pending)
        t1 = time.process_time()
        pending = []
        for output in answers:
            if isinstance(output, SendDatagram):
                pending += [o for o in primary.on_datagram(now, output.data, 2) if isinstance(o, SendDatagram)]
        pending += [o for o in primary.on_timer(now) if isinstance(o, SendDatagram)]
        cpu[0] += time.process_time() - t1
        cpu[1] += t1 - t0
    assert len(backup.external) == wanted and backup.ready
    print(f"paced dump of {n:,} entries (window {params.bulk_window}, ACK every {params.ack_window} frames, sealed): "
          f"primary {cpu[0]:.3f} s, backup {cpu[1]:.3f} s CPU ({frames} frames, {n / frames:.1f} entries/frame)")


if __name__ == "__main__":
    main()
