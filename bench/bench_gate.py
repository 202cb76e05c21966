"""What the defer gate's protocol work costs a new connection, sans-I/O (no kernel, no
sockets): CPU time per connection on the owner and on each peer.

Two or three SyncNodes in one process, their datagrams handed over directly. Per new
connection: the owner builds its entry from a queued SYN's headers
(``nfqueue.entry_of_packet``), ``gate.on_new`` holds it and sends the state (FLAG_ACK_NOW),
each peer takes the frame (decode, external cache, the kernel write as an output,
the ACK at once), the owner takes the ACKs and ``gate.after_input`` releases the
packet. Printed: microseconds per connection (wall time of a CPU-bound process: run it
on a quiet machine), the owner's and a peer's, and
connections per second one core sustains that way; with one connection at a time
(each released before the next) and in bursts (many held at once). Figures, no asserts.

    python bench/bench_gate.py [--connections 20000] [--peers 1] [--burst 64]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from snep.entry import Proto
from snep.fsm.defer import DeferParams, Reason
from snep.fsm.effects import SendDatagram
from snep.fsm.gate import DeferGate
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.kernel import ctnetlink as ct
from snep.kernel import nfqueue as nfq
from snep.lab.sim import handshake

#: a Linux SYN's TCP options: MSS, SACK permitted, timestamps, NOP, window scale 7
SYN_OPTIONS = bytes([2, 4, 5, 0xB4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7])


def syn_packet(i: int) -> nfq.Packet:
    """The i-th new connection's SYN as NfQueue hands it over (header copy, no NFQA_CT)."""
    tcp = struct.pack(">HHIIBBHHH", 1024 + i % 60000, 80, 1, 0, 10 << 4, 0x02, 64240, 0, 0) + SYN_OPTIONS
    src = bytes((10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, Proto.TCP, 0, src, bytes((192, 0, 2, 80)))
    attrs = ct.nla(nfq.NFQA_PACKET_HDR, nfq.PACKET_HDR.pack(i, 0x0800, 0)) + ct.nla(nfq.NFQA_PAYLOAD, ip + tcp)
    data = ct.message(nfq.MSG_PACKET, 0, 0, 2, attrs, res_id=0)
    view = memoryview(data)
    (msg,) = list(ct.iter_messages(view, len(data)))
    return nfq.decode_packet(view, msg)


def cluster(peers: int) -> tuple[SyncNode, list[SyncNode]]:
    ids = list(range(1, peers + 2))
    nodes = [SyncNode(i, [j for j in ids if j != i], SyncParams(), session=0x5E55 << 32 | i) for i in ids]
    for n in nodes:
        n.start(0.0)
        n.on_kernel_dump(0.0, [])
    for a in nodes:
        for b in nodes:
            if a.node_id < b.node_id:
                handshake(a, b)
    owner = nodes[0]
    owner.promote(0.0)
    owner.on_kernel_dump(0.0, [])
    settle(owner, nodes[1:], 0.0)
    return owner, nodes[1:]


def deliver(outputs: list, sender: int, to: dict[int, SyncNode], now: float) -> list[tuple[int, list]]:
    """Hand each datagram to its addressees; what they answer, by who answers."""
    answers = []
    for output in outputs:
        if type(output) is SendDatagram:
            for peer in output.peers:
                if peer in to:
                    answers.append((peer, to[peer].on_datagram(now, output.data, sender)))
    return answers


def settle(owner: SyncNode, peers: list[SyncNode], now: float) -> None:
    """Run the start-up dumps and their ACKs to the end."""
    by_id = {p.node_id: p for p in peers}
    for _ in range(50):
        outputs = owner.on_timer(now + 0.1)
        for peer in peers:
            for sender, answer in deliver(peer.on_timer(now + 0.1), peer.node_id, {owner.node_id: owner}, now):
                outputs += answer
        for peer_id, answer in deliver(outputs, owner.node_id, by_id, now):
            deliver(answer, peer_id, {owner.node_id: owner}, now)
        now += 0.1


def run(connections: int, peers: int, burst: int) -> dict[str, float]:
    owner, others = cluster(peers)
    gate = DeferGate(owner, DeferParams(bound=60.0, max_held=max(burst, 1) * 2))
    by_id = {p.node_id: p for p in others}
    packets = [syn_packet(i) for i in range(connections)]
    owner_cpu = peer_cpu = 0.0
    released = 0
    now = 1000.0
    clock = time.perf_counter  # (process_time costs ~100 us a call on this VM: more than what it measures)
    start = time.perf_counter()
    for first in range(0, connections, burst):
        t0 = clock()
        outputs = []
        for packet in packets[first : first + burst]:
            entry = nfq.entry_of_packet(packet, 1)
            out, releases = gate.on_new(now, packet.packet_id, entry)
            outputs += out
            assert not releases
        t1 = clock()
        answers = deliver(outputs, owner.node_id, by_id, now)
        t2 = clock()
        for peer_id, answer in answers:
            deliver(answer, peer_id, {owner.node_id: owner}, now)
        done = gate.after_input(now)
        t3 = clock()
        assert all(r.reason is Reason.ACKED for r in done), done[:3]
        released += len(done)
        owner_cpu += (t1 - t0) + (t3 - t2)
        peer_cpu += (t2 - t1) / peers
        now += 0.0001
    wall = time.perf_counter() - start
    assert released == connections, (released, connections)
    return {
        "owner_us": owner_cpu / connections * 1e6,
        "peer_us": peer_cpu / connections * 1e6,
        "per_second": connections / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--peers", type=int, default=1)
    parser.add_argument("--burst", type=int, default=64)
    args = parser.parse_args()
    print(f"defer gate, sans-I/O: {args.connections} new TCP connections, {args.peers} peer(s), CPython {sys.version.split()[0]}")
    for burst in (1, args.burst):
        r = run(args.connections, args.peers, burst)
        what = "one at a time" if burst == 1 else f"bursts of {burst} held at once"
        print(
            f"  {what:>28}: owner {r['owner_us']:6.1f} us/connection, each peer {r['peer_us']:6.1f} us; "
            f"{r['per_second']:8.0f} connections/s in one process (owner and peers on one core)"
        )


if __name__ == "__main__":
    main()
