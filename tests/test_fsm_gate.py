"""The defer gate with real SyncNodes over the simulated network (snep.lab.sim): a
held packet goes only when every live peer applied the frame of its state (or its
report was applied by the owner), or at the bound, with the fail policy."""

from __future__ import annotations

import random

import pytest

from snep.entry import Entry, Status, TcpInfo, TcpState
from snep.fsm.defer import DeferParams, FailPolicy, Reason, Release, Verdict
from snep.fsm.effects import SendDatagram
from snep.fsm.gate import DeferGate
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.lab.sim import Datagram, Simulation, conn
from snep.wire.codec import FLAG_ACK_NOW, HEADER, decode_frame
from snep.wire.messages import DEFAULT_MTU, Frame, MessageType, Report

LATENCY = 0.001


def syn(i: int) -> Entry:
    """A new connection's entry as its first packet shows it (SYN_SENT)."""
    return conn(i, protoinfo=TcpInfo(TcpState.SYN_SENT), status=int(Status.CONFIRMED), timeout=120)


def syn_ack(entry: Entry) -> Entry:
    """The same connection as its first reply (the SYN-ACK) leaves a kernel."""
    return entry._replace(protoinfo=TcpInfo(TcpState.SYN_RECV), status=entry.status | Status.SEEN_REPLY, timeout=60)


def frame_type(datagram: Datagram) -> int:
    return HEADER.unpack_from(datagram.data)[2]


def flagged(datagram: Datagram) -> bool:
    return frame_type(datagram) == MessageType.STATE and bool(HEADER.unpack_from(datagram.data)[3] & FLAG_ACK_NOW)


class Cluster:
    """A simulated cluster, node 1 primary, a gate on every node; the test loop asks
    each gate after every step (as the runtime does after every input)."""

    def __init__(self, size: int = 3, defer: DeferParams | None = None, **params) -> None:
        self.sim = Simulation(size, SyncParams(**params), latency=LATENCY)
        self.sim.start()
        self.sim.promote(1)
        self.sim.settle()
        assert self.sim.roles() == {1: "PRIMARY", **{i: "BACKUP" for i in range(2, size + 1)}}
        self.defer = defer or DeferParams()
        self.gates = {i: DeferGate(self.sim.node(i), self.defer) for i in self.sim.hosts}
        self.released: list[tuple[int, Release]] = []
        #: at each release on acknowledgements: which nodes' kernels held the entry
        self.on_release = None

    def new(self, node: int, packet_id: int, entry: Entry) -> list[Release]:
        out, releases = self.gates[node].on_new(self.sim.now, packet_id, entry)
        self.sim.driver(node).run(self.sim.now, out)
        self._took(node, releases)
        return releases

    def reply(self, node: int, packet_id: int, entry: Entry) -> list[Release]:
        out, releases = self.gates[node].on_reply(self.sim.now, packet_id, entry)
        self.sim.driver(node).run(self.sim.now, out)
        self._took(node, releases)
        return releases

    def _took(self, node: int, releases: list[Release]) -> None:
        for release in releases:
            if self.on_release is not None:
                self.on_release(node, release)
            self.released.append((node, release))

    def restart_gate(self, node: int) -> None:
        self.gates[node] = DeferGate(self.sim.node(node), self.defer)

    def run(self, duration: float) -> None:
        sim = self.sim
        end = sim.now + duration
        while True:
            times = [sim.next_event()]
            times += [g.next_deadline() for g in self.gates.values() if g.next_deadline() is not None]
            due = min(t for t in times if t is not None)
            if due > end:
                break
            sim.now = max(sim.now, due)
            sim.step()
            for node, gate in self.gates.items():
                if not sim.hosts[node].up or sim.hosts[node].node is not gate.node:
                    continue
                self._took(node, gate.after_input(sim.now))
                out, releases = gate.expire(sim.now)
                sim.driver(node).run(sim.now, out)
                self._took(node, releases)
        sim.now = end

    def releases_of(self, packet_id: int, node: int = 1) -> list[Release]:
        return [r for n, r in self.released if n == node and r.packet_id == packet_id]


def test_a_new_connection_is_released_once_every_live_peer_acked_the_frame_of_its_state():
    c = Cluster(3)
    entry = syn(1)
    seen = {}

    def check(node, release):
        seen[release.packet_id] = {n for n in (2, 3) if entry.key in c.sim.kernel_keys(n)}

    c.on_release = check
    assert c.new(1, 7, entry) == []  # held
    assert len(c.gates[1].queue) == 1
    c.run(0.0015)  # the state reached the peers, their ACKs are on the way
    assert c.releases_of(7) == []
    c.run(0.01)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.ACKED and release.verdict is Verdict.ACCEPT
    assert seen[7] == {2, 3}  # both peers' kernels held the state when it went
    # the flagged frame was acknowledged at once: one round trip, not ack_delay (20 ms)
    assert release.waited == pytest.approx(2 * LATENCY)
    assert release.waited < c.sim.params.ack_delay
    assert all(c.sim.node(n).counters.acks_at_once == 1 for n in (2, 3))
    counters = c.gates[1].as_dict()
    assert counters["held"] == 1 and counters["acked"] == 1 and counters["new_packets"] == 1
    assert c.sim.node(1).counters.held_states_sent == 1


def test_without_the_flag_the_ack_waits_for_ack_delay_and_the_bound_passes(monkeypatch):
    # the flag is what makes the ACK come at once: without it (the receiver ignoring
    # it, as if it were not set) a 5 ms bound passes before the 20 ms ACK
    c = Cluster(2)
    monkeypatch.setattr(Frame, "ack_now", property(lambda self: False))
    c.new(1, 7, syn(1))
    c.run(0.05)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.BOUND


@pytest.mark.parametrize("fail", [FailPolicy.OPEN, FailPolicy.CLOSED])
def test_a_lost_ack_leaves_the_packet_to_the_bound_and_its_fail_policy(fail):
    c = Cluster(3, DeferParams(bound=0.005, fail=fail))
    entry = syn(1)
    c.new(1, 7, entry)
    c.run(0.0011)  # the flagged frame arrived; peer 2's ACK is in flight
    assert c.sim.network.lose(lambda d: d.src == 2 and frame_type(d) == MessageType.ACK)
    c.run(0.003)
    assert c.releases_of(7) == []  # peer 3 acked, peer 2's ACK was lost
    c.run(0.003)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.BOUND and release.waited == pytest.approx(0.005)
    assert release.verdict is fail.verdict
    counters = c.gates[1].as_dict()
    if fail is FailPolicy.OPEN:
        assert counters["bound_accepted"] == 1 and counters["withdrawn"] == 0
        c.run(1.0)
        assert entry.key in c.sim.kernel_keys(2)
    else:
        # the kernel entry died unconfirmed with the packet: its state is withdrawn
        assert counters["bound_dropped"] == 1 and counters["withdrawn"] == 1
        c.run(1.0)
        assert entry.key not in c.sim.kernel_keys(2) and entry.key not in c.sim.kernel_keys(3)


def test_an_ack_of_an_earlier_frame_releases_nothing():
    c = Cluster(2, DeferParams(bound=0.05))
    c.sim.conn_new(1, conn(50))  # a frame before the held state's
    c.new(1, 7, syn(1))
    seq = c.gates[1]._held[("state", syn(1).key)].seq
    assert c.sim.network.lose(lambda d: d.dst == 2 and flagged(d))  # the held state's frame
    c.run(0.03)  # the peer acknowledges the earlier frame (after ack_delay)
    assert c.sim.node(1).acked(2) == seq  # everything before the held state's frame
    assert c.releases_of(7) == []
    c.run(0.03)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.BOUND


def test_a_destroy_s_ack_does_not_release_the_re_created_connection():
    c = Cluster(2, DeferParams(bound=0.05))
    entry = syn(1)
    c.new(1, 7, entry)
    c.run(0.01)
    assert c.releases_of(7)[0].reason is Reason.ACKED
    c.sim.conn_new(1, entry)  # the kernel confirmed it after the verdict: NEW event, streamed
    c.sim.conn_destroy(1, entry)  # and it ended: DESTROY, streamed
    c.new(1, 8, entry)  # the same tuple again: a new incarnation, held
    assert c.sim.network.lose(lambda d: d.dst == 2 and flagged(d))
    c.run(0.04)
    assert c.releases_of(8) == []  # the DESTROY's frame was acked, not the new state's
    c.run(0.02)
    assert c.releases_of(8)[0].reason is Reason.BOUND


def test_a_peer_that_dies_is_not_waited_for():
    c = Cluster(3, DeferParams(bound=30.0))
    c.sim.crash(3)
    c.new(1, 7, syn(1))  # node 3 still counts as live: the packet waits for it
    assert c.gates[1].queue.waiting_for(("state", syn(1).key)) == frozenset({2, 3})
    c.run(1.0)
    assert c.releases_of(7) == []
    c.run(c.sim.params.peer_dead_timeout)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.PEER_GONE and release.verdict is Verdict.ACCEPT
    # once dead it is not waited for at all
    c.new(1, 8, syn(2))
    assert c.gates[1].queue.waiting_for(("state", syn(2).key)) == frozenset({2})


def test_a_peer_that_restarts_does_not_hold_the_packet():
    c = Cluster(3, DeferParams(bound=30.0))
    c.new(1, 7, syn(1))
    assert c.sim.network.lose(lambda d: d.dst == 3 and flagged(d))
    c.run(0.01)
    assert c.releases_of(7) == []  # node 2 acked, node 3 never got it
    c.sim.crash(3)
    c.sim.start(3)  # a new process: a new session, nothing of what it held before
    c.run(0.1)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.PEER_GONE


def test_a_primary_that_steps_down_releases_with_the_fail_policy():
    c = Cluster(2, DeferParams(bound=30.0, fail=FailPolicy.CLOSED))
    c.new(1, 7, syn(1))
    assert c.sim.network.lose(lambda d: d.dst == 2 and flagged(d))
    c.sim.demote(1)
    c.run(0.001)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.ENDED and release.verdict is Verdict.DROP
    assert c.gates[1].as_dict()["ended_dropped"] == 1


def test_packets_released_at_once():
    c = Cluster(2)
    assert [r.reason for r in c.new(2, 1, syn(1))] == [Reason.NOT_OWNER]  # node 2 is no primary
    assert [r.reason for r in c.reply(1, 2, syn_ack(syn(1)))] == [Reason.OWNER]  # the reply at its owner
    c.sim.node(1).set_filter(Filter.build(protocols=["udp"]))
    assert [r.reason for r in c.new(1, 3, syn(1))] == [Reason.FILTERED]
    c.sim.node(1).set_filter(Filter())
    c.sim.crash(2)
    c.run(c.sim.params.peer_dead_timeout + 0.5)
    assert [r.reason for r in c.new(1, 4, syn(1))] == [Reason.NO_PEERS]
    assert all(r.verdict is Verdict.ACCEPT and r.waited == 0 for _, r in c.released)
    counters = c.gates[1].as_dict()
    assert (counters["owner_replies"], counters["filtered"], counters["no_peers"]) == (1, 1, 1)
    assert c.gates[2].as_dict()["not_owner"] == 1


def test_later_packets_of_a_held_connection_wait_with_the_first():
    c = Cluster(2)
    c.new(1, 7, syn(1))
    c.new(1, 8, syn(1))  # its SYN again (a retransmission): nothing is sent again
    assert c.sim.node(1).counters.held_states_sent == 1
    c.run(0.01)
    assert [r.packet_id for _, r in c.released] == [7, 8]
    assert c.gates[1].as_dict()["joined"] == 1


def test_a_report_round_trip_releases_the_reply():
    c = Cluster(3)
    entry = syn(1)
    c.new(1, 7, entry)
    c.run(0.01)
    c.sim.conn_new(1, entry)  # the owner's kernel confirmed it (the NEW event, read)
    c.run(0.01)
    seen = {}

    def check(node, release):  # the owner's kernel at the moment of the release
        seen[release.packet_id] = {e.key: e for e in c.sim.kernel(1).dump()}.get(entry.key)

    c.on_release = check
    assert c.reply(2, 70, syn_ack(entry)) == []  # held at the non-owner while it reports
    c.run(0.01)
    (release,) = c.releases_of(70, node=2)
    assert release.reason is Reason.ACKED and release.waited == pytest.approx(2 * LATENCY)
    assert seen[70].protoinfo.state is TcpState.SYN_RECV  # in the owner's kernel before the release
    assert seen[70].status & Status.SEEN_REPLY
    assert c.sim.node(1).counters.reports_applied == 1
    assert c.sim.node(2).counters.reports_sent == 1
    # the owner streams the change like its own: the third node's kernel follows
    c.run(0.05)
    third = {e.key: e for e in c.sim.kernel(3).dump()}[entry.key]
    assert third.protoinfo.state is TcpState.SYN_RECV


def test_a_report_before_the_kernel_event_is_applied_from_the_held_state():
    # the REPORT may arrive before the owner read its kernel's NEW event: the state it
    # sent from the held packet is what it knows
    c = Cluster(2)
    entry = syn(1)
    c.new(1, 7, entry)
    c.run(0.01)
    c.reply(2, 70, syn_ack(entry))
    c.run(0.01)
    assert c.releases_of(70, node=2)[0].reason is Reason.ACKED
    assert c.sim.node(1).counters.reports_applied == 1


def test_a_report_of_an_unknown_connection_is_counted_and_left_to_the_bound():
    c = Cluster(2, DeferParams(bound=0.005))
    c.reply(2, 70, syn_ack(syn(9)))  # another group's connection, or none: the owner knows nothing of it
    c.run(0.01)
    assert c.releases_of(70, node=2)[0].reason is Reason.BOUND
    assert c.sim.node(1).counters.reports_unknown == 1
    assert c.sim.node(1).counters.report_acks_sent == 0


def test_a_report_that_is_late_is_answered_without_writing():
    c = Cluster(2)
    entry = syn(1)
    c.sim.conn_new(1, syn_ack(entry))  # the owner's kernel saw the reply itself
    c.run(0.01)
    c.reply(2, 70, syn_ack(entry))
    c.run(0.01)
    assert c.releases_of(70, node=2)[0].reason is Reason.ACKED
    assert (c.sim.node(1).counters.reports_late, c.sim.node(1).counters.reports_applied) == (1, 0)


def test_a_report_to_a_node_that_is_not_the_primary_is_counted_and_dropped():
    c = Cluster(3)
    entry = syn(1)
    c.sim.conn_new(1, entry)
    c.run(0.01)
    two, three = c.sim.node(2), c.sim.node(3)
    data = two.framer.control(MessageType.REPORT, two.newest.term, 0, Report(5, syn_ack(entry)), 3)
    out = three.on_datagram(c.sim.now, data, 2)
    assert three.counters.reports_refused == 1 and three.counters.reports_applied == 0
    assert not [o for o in out if isinstance(o, SendDatagram)]  # no answer
    # a report naming an older epoch of the primary is refused there too
    one = c.sim.node(1)
    data = two.framer.control(MessageType.REPORT, one.own.term - 1, 0, Report(6, syn_ack(entry)), 1)
    one.on_datagram(c.sim.now, data, 2)
    assert one.counters.reports_refused == 1 and one.counters.reports_applied == 0


def test_a_malformed_report_is_counted_never_raised():
    c = Cluster(2)
    one = c.sim.node(1)
    good = c.sim.node(2).framer.control(MessageType.REPORT, one.own.term, 0, Report(5, syn_ack(syn(1))), 1)
    assert decode_frame(good).messages[0].report_id == 5
    for bad in (good[:-1], good[:40] + b"\x00\x00\x00" + good[43:], good[:43] + b"\x81" + good[44:]):
        before = one.counters.malformed
        one.on_datagram(c.sim.now, bad, 2)
        assert one.counters.malformed == before + 1
    assert one.counters.reports_received == 0


def test_a_report_answer_from_another_peer_releases_nothing():
    c = Cluster(3, DeferParams(bound=0.005))
    entry = syn(1)
    c.sim.conn_new(1, entry)
    c.run(0.01)
    c.reply(2, 70, syn_ack(entry))
    assert c.sim.network.lose(lambda d: d.dst == 1 and frame_type(d) == MessageType.REPORT)
    report_id = c.gates[2]._held[("report", entry.key)].report_id
    c.sim.node(2).report_answers.append((3, report_id))  # node 3 is not whom it went to
    c.run(0.01)
    assert c.releases_of(70, node=2)[0].reason is Reason.BOUND
    assert c.gates[2].as_dict()["unknown_answers"] == 1


def test_wait_statistics_give_count_sum_and_percentiles():
    c = Cluster(2)
    for i in range(20):
        c.new(1, 100 + i, syn(i))
        c.run(0.01)
    status = c.gates[1].status()
    wait = status["wait"]
    assert wait["count"] == 20 and wait["sum"] == pytest.approx(20 * 2 * LATENCY)
    assert wait["p50"] == pytest.approx(2 * LATENCY) and wait["p99"] == pytest.approx(2 * LATENCY)
    assert dict(wait["buckets"])["+Inf"] == 20 and dict(wait["buckets"])[0.001] == 0
    assert dict(wait["buckets"])[0.0025] == 20
    assert status["held"] == 0 and status["counters"]["acked"] == 20


@pytest.mark.parametrize("ack_window", [1, 64])
def test_a_flagged_frame_is_acknowledged_at_once_after_its_kernel_write(ack_window):
    # (ack_window 1: the frame also fills the window; its ACK still waits for the write)
    c = Cluster(2, ack_window=ack_window)
    one, two = c.sim.node(1), c.sim.node(2)
    out, seq = one.send_held(c.sim.now, syn(1))
    (datagram,) = [o for o in out if isinstance(o, SendDatagram)]
    assert decode_frame(datagram.data).ack_now and decode_frame(datagram.data).seq == seq
    answer = two.on_datagram(c.sim.now, datagram.data, 1)
    kinds = [type(o).__name__ for o in answer]
    assert kinds == ["KernelOps", "SendDatagram"]  # written into the kernel, then acknowledged
    ack = decode_frame(answer[1].data)
    assert ack.type is MessageType.ACK and ack.messages[0].last == seq
    if ack_window > 1:  # an unflagged frame waits for ack_delay
        data = one.framer.seal(one.framer.state_messages(one.own.term, one.sender.next_seq, [])[0])
        assert not [o for o in two.on_datagram(c.sim.now, data, 1) if isinstance(o, SendDatagram)]


def test_many_held_at_once_each_released_when_its_own_frame_is_acked_everywhere():
    c = Cluster(3, DeferParams(bound=0.05))
    entries = [syn(i) for i in range(12)]
    seen = {}

    def check(node, release):
        entry = entries[release.packet_id]
        seen[release.packet_id] = {n for n in (2, 3) if entry.key in c.sim.kernel_keys(n)}

    c.on_release = check
    for i, entry in enumerate(entries):
        c.new(1, i, entry)
    # the frames of connections 4 and 9 do not reach node 3 at first (a NACK brings them later)
    assert c.sim.network.lose(lambda d: d.dst == 3 and flagged(d) and decode_frame(d.data).seq == c.gates[1]._held[("state", entries[4].key)].seq)
    assert c.sim.network.lose(lambda d: d.dst == 3 and flagged(d) and decode_frame(d.data).seq == c.gates[1]._held[("state", entries[9].key)].seq)
    c.run(0.004)
    early = {r.packet_id for _, r in c.released}
    assert early == {0, 1, 2, 3}  # node 3 applies in order: nothing after the gap until it is repaired
    c.run(1.0)
    reasons = {r.packet_id: r.reason for _, r in c.released}
    assert sorted(reasons) == list(range(12))
    assert reasons[4] is Reason.ACKED  # the NACK of the gap brought it
    # node 3 dropped the frames after the gap (it applies in order, and its NACK named
    # the gap only): they come again with the retransmission timer, after the bound
    assert {i for i, reason in reasons.items() if reason is Reason.BOUND} == set(range(5, 12))
    assert all(seen[i] == {2, 3} for i, reason in reasons.items() if reason is Reason.ACKED)
    assert len(c.gates[1].queue) == 0 and c.gates[1]._held == {}


@pytest.mark.parametrize("seed", range(16))
def test_random_walks_release_on_acks_only_when_every_waited_peer_s_kernel_holds_the_state(seed):
    """Loss, duplication, reordering, peers crashing and coming back: a release on
    acknowledgements finds the state in the kernel of every peer it waited for that
    still runs the process it waited for (the spec's DeferReleasedOnlyWhenHeld); every
    packet gets exactly one verdict; nothing stays behind."""
    rng = random.Random(seed)
    fail = rng.choice(list(FailPolicy))
    c = Cluster(3, DeferParams(bound=rng.choice([0.003, 0.02, 0.2]), fail=fail))
    c.sim.network.loss, c.sim.network.jitter, c.sim.network.duplication = 0.05, 0.002, 0.05
    one = c.sim.node(1)
    waited: dict[int, tuple[Entry, dict[int, int | None]]] = {}
    verdicts: dict[int, Release] = {}

    def check(node, release):
        if node != 1:
            return
        assert release.packet_id not in verdicts, "a packet released twice"
        verdicts[release.packet_id] = release
        if release.reason is Reason.ACKED:
            entry, peers = waited[release.packet_id]
            for peer, session in peers.items():
                if c.sim.hosts[peer].up and one.channel.bound(peer) == session:
                    assert entry.key in c.sim.kernel_keys(peer), f"released before peer {peer} held it"

    c.on_release = check
    sent = 0
    for _ in range(80):
        roll = rng.random()
        if roll < 0.6:
            entry = syn(sent)
            waited[sent] = (entry, {p: one.channel.bound(p) for p in one.defer_peers()})
            c.new(1, sent, entry)
            sent += 1
        elif roll < 0.66:
            peer = rng.choice([2, 3])
            if c.sim.hosts[peer].up:
                c.sim.crash(peer)
            else:
                c.sim.start(peer)
                c.restart_gate(peer)
        c.run(rng.choice([0.0005, 0.002, 0.01]))
    c.run(5.0)
    assert sorted(verdicts) == list(range(sent))
    assert len(c.gates[1].queue) == 0 and c.gates[1]._held == {} and c.gates[1]._packets == {}
    counters = c.gates[1].as_dict()
    assert counters["acked"] + counters["peer_gone"] + counters["no_peers"] + counters["bound_accepted"] + counters["bound_dropped"] == sent


def test_a_re_ack_of_a_frame_jumped_over_releases_nothing_until_the_dump_that_carries_it_is_applied():
    # A peer that misses the held state's frame and jumps to a dump's BULK_START beyond
    # the gap acknowledges the missed frame again when a late copy of it comes (the
    # spec's receiver re-acks a duplicate from its seq): that ACK names the frame, but
    # the peer never applied it; the dump carries the state, once applied whole.
    c = Cluster(3, DeferParams(bound=1.0), bulk_mtu=DEFAULT_MTU)  # (a dump of several frames)
    for i in range(100, 160):  # enough entries for a dump of more than one frame
        c.sim.conn_new(1, conn(i))
    c.run(0.1)
    entry = syn(1)
    c.new(1, 7, entry)
    net = c.sim.network
    late_state = net.capture(lambda d: d.dst == 2 and flagged(d))
    assert net.lose(lambda d: d.dst == 2 and flagged(d))
    c.sim.command(1, "bulk")  # a dump starts after the held state's frame
    starts = lambda d: d.dst == 2 and frame_type(d) == MessageType.STATE and decode_frame(d.data).starts_dump  # noqa: E731
    ends = lambda d: d.dst == 2 and frame_type(d) == MessageType.STATE and decode_frame(d.data).ends_dump  # noqa: E731
    assert net._pick(starts) is not None and net._pick(starts) is not net._pick(ends)
    late_end = net.capture(ends)
    assert net.lose(ends)
    c.run(0.0015)  # node 2 jumped to the BULK_START (nothing after it arrives: the end is lost)
    assert entry.key not in c.sim.kernel_keys(2)
    net.replay(late_state, to=2, as_from=1)  # the late copy of the frame it jumped over
    c.run(0.03)  # its re-ack (the held frame's seq .. the BULK_START's) reached node 1
    assert c.sim.node(2).counters.duplicates >= 1
    assert c.releases_of(7) == []  # held: node 2 does not have the state
    net.replay(late_end, to=2, as_from=1)
    c.run(0.03)
    (release,) = c.releases_of(7)
    assert release.reason is Reason.ACKED and entry.key in c.sim.kernel_keys(2)
