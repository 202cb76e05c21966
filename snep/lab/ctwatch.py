"""Record a namespace's conntrack NEW and DESTROY events of one TCP port, as lines of
``conntrack -E -o timestamp`` (what :func:`snep.lab.conformance.measure.parse_ct_events`
reads), for the conformance suite's kernel-ready figure.

Why not ``conntrack -E`` itself: conntrack-tools 1.4.7 reports ENOBUFS and loses events
when a takeover's commit creates a few thousand entries at once, whatever its buffer
(measured on kernel 6.18: 264 of 500 NEW events of the watched port, with a 128 MiB
buffer), while snep's own event socket receives every one of them. This recorder is that
socket (snep.kernel.netlink), filtering the port itself; an overrun is written as a line
with ``ENOBUFS``, which makes the figure unknown rather than wrong.

Run in the namespace: ``python -m snep.lab.ctwatch --dport 5001`` (until SIGTERM).
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import signal
import sys
import time
from typing import TextIO

from snep.entry import Entry, Proto
from snep.errors import EventOverrun
from snep.kernel.netlink import NetlinkKernel
from snep.level import Level

BUFFER = 64 << 20  # a socket buffer for a whole commit's events
SUBSCRIBED = "# subscribed"  # the first line: events from here on are recorded


def line(when: float, kind: str, entry: Entry) -> str:
    """One event as ``conntrack -E -o timestamp`` writes it (the fields the parser reads)."""
    o, r = entry.orig, entry.reply
    return (f"[{when:.6f}]\t[{kind}] tcp      6 src={ipaddress.ip_address(o.src)} dst={ipaddress.ip_address(o.dst)} "
            f"sport={o.sport} dport={o.dport} src={ipaddress.ip_address(r.src)} dst={ipaddress.ip_address(r.dst)} "
            f"sport={r.sport} dport={r.dport}")


def record(dport: int, out: TextIO, running: list[bool]) -> None:
    kernel = NetlinkKernel(buffer_size=BUFFER, buffer_max_growth=BUFFER)
    kernel.subscribe(Level.WEAK)  # NEW and DESTROY
    print(SUBSCRIBED, file=out, flush=True)
    try:
        while running[0]:
            select.select([kernel.fileno()], [], [], 0.2)
            try:
                events = kernel.read_events()
            except EventOverrun:
                print("ENOBUFS: events lost", file=out, flush=True)
                continue
            now = time.time()
            lines = [line(now, event.kind.name, event.entry) for event in events
                     if event.entry.orig.proto == Proto.TCP and event.entry.orig.dport == dport]
            if lines:
                print("\n".join(lines), file=out, flush=True)
    finally:
        kernel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dport", type=int, required=True, help="the TCP port whose connections are recorded")
    args = parser.parse_args(argv)
    running = [True]

    def stop(signum: int, frame: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    record(args.dport, sys.stdout, running)
    return 0


if __name__ == "__main__":
    sys.exit(main())
