"""Amplification: bytes a node sends per byte it receives, for each kind of frame an
attacker can send it (issue 14).

    .venv/bin/python bench/bench_amplification.py [ENTRIES]

A primary (node 1, ENTRIES connections, default 20,000) and its backup (node 2), sealed,
sans-I/O (no sockets: what the node answers to one input is exactly the datagrams
that input returns). For each frame: the bytes in, the bytes the primary sends in
answer, and their ratio. Frames that are not fresh and authentic must cost 0; a fresh
authentic NACK or RESYNC_REQUEST (a key holder's) costs what the per-peer budgets let
it (snep.fsm.sender), printed beside the bound.
"""

from __future__ import annotations

import sys

from snep.entry import Event, EventKind
from snep.fsm.effects import Output, SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.fsm.sender import DUMP_BURST
from snep.lab.sim import conn, handshake
from snep.wire.auth import Key, Keyring
from snep.wire.codec import build_frame, encode_frame
from snep.wire.messages import Ack, Frame, Hello, MessageType, Nack, ResyncRequest

KEY = Key(1, b"bench: the cluster's secret key!")
KEYRING = Keyring([KEY])
NOW = 10.0


def out_bytes(outputs: list[Output]) -> int:
    return sum(len(o.data) * len(o.peers) for o in outputs if isinstance(o, SendDatagram))


def sent_to(outputs: list[Output], peer: int) -> list[bytes]:
    return [o.data for o in outputs if isinstance(o, SendDatagram) and peer in o.peers]


class Bench:
    def __init__(self, entries: int) -> None:
        self.params = SyncParams()
        self.primary = self.node(1, 101)
        self.backup = self.node(2, 201)
        handshake(self.primary, self.backup, 0.0)
        self.primary.promote(0.0)
        self.settle(self.primary.on_kernel_dump(0.0, [conn(i) for i in range(entries)]), 0.0)
        assert self.backup.ready
        self.rows: list[tuple[str, int, int, str]] = []

    def node(self, node_id: int, session: int) -> SyncNode:
        n = SyncNode(node_id, [3 - node_id], self.params, session=session, keyring=KEYRING)
        n.start(0.0)
        n.on_kernel_dump(0.0, [])
        return n

    def settle(self, outputs: list[Output], now: float) -> int:
        """Deliver the primary's frames to the backup and its answers back until both are
        quiet (acknowledged at once, no clock); the bytes the primary sent meanwhile."""
        pending = outputs
        sent = 0
        while pending:
            answers: list[Output] = []
            for data in sent_to(pending, 2):
                answers += self.backup.on_datagram(now, data, 1)
            answers += self.backup.on_timer(now + 1.0)
            pending = []
            for data in sent_to(answers, 1):
                pending += self.primary.on_datagram(now, data, 2)
            sent += out_bytes(pending)
        return sent

    def feed(self, name: str, data: bytes, note: str = "", now: float = NOW, follow: bool = False) -> int:
        """The primary receives ``data``: the bytes it sends in answer (``follow``: and
        afterwards, paced by the backup's acknowledgements, as a dump is)."""
        answer = self.primary.on_datagram(now, data, 2)
        sent = out_bytes(answer) + (self.settle(answer, now) if follow else 0)
        self.rows.append((name, len(data), sent, note))
        return sent

    def fresh(self, frame: Frame) -> bytes:
        """A frame as the backup's process seals it: authentic and fresh (a key holder)."""
        return self.backup.framer.seal(build_frame(frame))

    def report(self) -> None:
        print(f"{'frame':55} {'in (B)':>7} {'out (B)':>10} {'factor':>8}  bound")
        for name, size, sent, note in self.rows:
            print(f"{name:55} {size:>7,} {sent:>10,} {sent / size:>8,.0f}  {note}")


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    b = Bench(entries)
    p = b.params
    term = b.primary.own.term  # type: ignore[union-attr]
    queue = b.primary.sender.queue
    budget = 2 * p.bulk_window
    # the primary streams 20,000 events the backup has not acknowledged yet: kept for resending
    stream = b.primary.on_kernel_events(NOW, [Event(EventKind.UPDATE, conn(i)._replace(mark=1)) for i in range(20_000)])
    print(
        f"primary with {entries:,} entries ({len(queue)} frames not yet acknowledged), one backup, sealed; "
        f"bulk_window {p.bulk_window}, retransmit_timeout {p.retransmit_timeout:g} s, resync_retry {p.resync_retry:g} s\n"
    )

    # -- fresh and authentic (a key holder's frames): bounded by the per-peer budgets
    whole = Nack(queue.first, b.primary.sender.newest_seq)
    nack = b.fresh(Frame(MessageType.NACK, 2, term, 0, (whole,), dst=1))
    b.feed("fresh NACK naming every kept frame", nack,
           f"<= {budget} frames x {p.mtu} B at once, {budget / p.retransmit_timeout:,.0f} frames/s after (per peer)")
    huge = b.fresh(Frame(MessageType.NACK, 2, term, 0, (whole,) * 5000, dst=1))
    b.feed("the same 0.5 s later, as 5,000 messages in one frame", huge,
           f"the same budget, refilled: {budget} frames, each once", NOW + p.retransmit_timeout)
    requests = []
    b.settle(stream, NOW)  # (now the backup gets the stream)
    for i in range(DUMP_BURST + 1):  # each one after the previous dump completed
        request = b.fresh(Frame(MessageType.RESYNC_REQUEST, 2, 0, 0, (ResyncRequest(),), dst=1))
        requests.append(request)
        b.feed(
            f"fresh RESYNC_REQUEST #{i + 1} (the whole dump)", request,
            f"a dump of {entries:,} entries each; {DUMP_BURST} at once, then 1 per {p.resync_retry:g} s (per peer)"
            if i < DUMP_BURST else "refused (dump budget): 0",
            NOW + 0.01 * (i + 1), follow=True,
        )

    # -- not fresh: replays of frames captured on the link
    captured = {
        "ACK": b.fresh(Frame(MessageType.ACK, 2, term, 0, (Ack(0, 0),), dst=1)),
        "ALIVE": b.fresh(Frame(MessageType.ALIVE, 2, 0, 0, (), dst=0)),
        "HELLO": b.fresh(Frame(MessageType.HELLO, 2, 0, 0, (Hello(term, 1, echo=b.primary.channel.session),), dst=1)),
    }
    for data in captured.values():
        b.primary.on_datagram(NOW + 1, data, 2)  # (delivered once, fresh)
    replayed = {"NACK": nack, "RESYNC_REQUEST": requests[0], **captured}
    for name, data in replayed.items():
        b.feed(f"replayed {name}", data, "0", NOW + 2)

    # -- forged: no key, a wrong key, garbage
    forged = Frame(MessageType.RESYNC_REQUEST, 2, 0, 0, (ResyncRequest(),), dst=1, session=0xBAD, counter=1)
    b.feed("forged RESYNC_REQUEST, not sealed", encode_frame(forged), "0", NOW + 2)
    b.feed("forged RESYNC_REQUEST, sealed with a wrong key", encode_frame(forged, Key(1, b"w" * 32)), "0", NOW + 2)
    b.feed("forged: 1,400 bytes of garbage", bytes(range(256)) * 5 + bytes(120), "0", NOW + 2)

    # -- an old session: the backup restarts; its former process's frames are replayed
    b.backup = b.node(2, 202)
    handshake(b.primary, b.backup, NOW + 3)
    for name, data in replayed.items():
        b.feed(f"{name} of the backup's former process", data, "0", NOW + 4)

    b.report()
    print(
        f"\nbounds per peer: a NACK frame, whatever it names, resends at most {budget} frames ({budget * p.mtu:,} B) "
        f"at once and {budget / p.retransmit_timeout:,.0f} frames/s sustained; dumps: {DUMP_BURST} at once, then one per "
        f"{p.resync_retry:g} s; frames that are not fresh and authentic: nothing (factor 0)"
    )
    zero = [row for row in b.rows if row[3].endswith("0")]
    assert all(sent == 0 for _, _, sent, _ in zero), [row for row in zero if row[2]]
    assert all(0 < sent <= budget * p.mtu for _, _, sent, _ in b.rows[:2])


if __name__ == "__main__":
    main()
