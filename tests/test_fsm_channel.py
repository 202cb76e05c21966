"""The sync channel: the handshake binds peer sessions, the window drops replays, frames
of other senders, addressees or sessions change nothing but a counter."""

from __future__ import annotations

from dataclasses import replace

import pytest

from snep.entry import Event, EventKind
from snep.fsm.channel import RETIRED, WINDOW, ReplayWindow
from snep.fsm.effects import Log, SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.lab.sim import conn, handshake
from snep.wire.auth import Key, Keyring
from snep.wire.codec import build_frame, decode_frame
from snep.wire.messages import Alive, Frame, Hello, MessageType
from tests.channel_helpers import Remote, session_of

KEY = Key(1, b"c" * 32)


def new_node(node_id, peers, generation=0, **options) -> SyncNode:
    n = SyncNode(node_id, list(peers), SyncParams(alive_interval=1.0, peer_dead_timeout=3.0), session=session_of(node_id, generation), **options)
    n.start(0.0)
    n.on_kernel_dump(0.0, [])
    return n


def sent(out, keyring=None):
    return [(peer, decode_frame(o.data, keyring)) for o in out if isinstance(o, SendDatagram) for peer in o.peers]


def hellos(out, keyring=None):
    return [f for _, f in sent(out, keyring) if f.type is MessageType.HELLO]


def alive_from(remote: Remote) -> bytes:
    return remote.encode(Frame(MessageType.ALIVE, remote.node_id, 0, 0, (Alive(),)))


# --- the window -------------------------------------------------------------------------


def test_the_window_accepts_each_counter_once_and_nothing_left_of_it():
    window = ReplayWindow(5000)
    assert not window.fresh(5000) and not window.fresh(4999)  # the binding HELLO's and what came before
    for counter in (5003, 5001, 5002, 5005):
        assert window.fresh(counter)
        window.mark(counter)
        assert not window.fresh(counter)
    assert window.fresh(5004)  # (reordered: still in the window)
    assert not window.fresh(5005 - WINDOW)  # left of the window (the highest is 5005)
    window.mark(5005 + WINDOW + 5)  # a jump beyond the window: everything below is left of it
    assert window.highest == 5005 + WINDOW + 5
    assert not window.fresh(5005 + 5) and window.fresh(5005 + 6)


# --- the handshake ----------------------------------------------------------------------


def test_two_nodes_bind_each_other_in_three_hellos():
    a, b = new_node(1, [2]), new_node(2, [1])
    # node 1's start HELLO (echo 0) reaches node 2, which answers, and so on
    start = a.framer.seal(build_frame(Frame(MessageType.HELLO, 1, 0, 0, (Hello(0, 0),))))
    second = b.on_datagram(0.1, start, 1)
    (answer,) = hellos(second)
    assert answer.messages[0].echo == a.channel.session and b.channel.bound(1) is None
    third = a.on_datagram(0.1, next(o.data for o in second if isinstance(o, SendDatagram)), 2)
    assert a.channel.bound(2) == b.channel.session  # node 2 proved itself over node 1's nonce
    (proof,) = hellos(third)
    assert proof.messages[0].echo == b.channel.session
    last = b.on_datagram(0.1, next(o.data for o in third if isinstance(o, SendDatagram) and o.data[3] == MessageType.HELLO), 1)
    assert b.channel.bound(1) == a.channel.session
    assert hellos(last) == []  # done: three HELLOs
    assert a.counters.sessions_bound == b.counters.sessions_bound == 1


def test_a_lost_proof_is_asked_for_again_by_a_challenge():
    a, b = new_node(1, [2]), new_node(2, [1])
    start = a.framer.seal(build_frame(Frame(MessageType.HELLO, 1, 0, 0, (Hello(0, 0),))))
    answer = b.on_datagram(0.1, start, 1)
    lost = a.on_datagram(0.1, datagram(answer), 2)  # node 1 binds node 2; its proof is lost
    assert hellos(lost) and a.channel.bound(2) == b.channel.session and b.channel.bound(1) is None
    # node 1's next frame is refused by node 2 and challenged (a HELLO, echo 0) ...
    out = b.on_datagram(1.5, a.framer.seal(_alive(a)), 1)
    assert b.counters.unbound_session == 1
    (challenge,) = hellos(out)
    assert challenge.messages[0].echo == 0
    # ... which node 1 answers with its proof: node 2 binds it
    again = a.on_datagram(1.6, datagram(out), 2)
    (proof,) = hellos(again)
    assert proof.messages[0].echo == b.channel.session
    assert hellos(b.on_datagram(1.7, datagram(again), 1)) == []  # bound, nothing more to say
    assert b.channel.bound(1) == a.channel.session


def datagram(out) -> bytes:
    """The first datagram of ``out`` (a HELLO when there is one)."""
    frames = [o.data for o in out if isinstance(o, SendDatagram)]
    return next((data for data in frames if data[3] == MessageType.HELLO), frames[0])


def _alive(n: SyncNode):
    return build_frame(Frame(MessageType.ALIVE, n.node_id, 0, 0, (Alive(),)))


def test_crossing_start_hellos_bind_both_without_more():
    a, b = new_node(1, [2]), new_node(2, [1])
    handshake(a, b, 0.1)
    assert a.channel.introduced(2) and b.channel.introduced(1)


def test_a_restarted_peer_is_bound_anew_and_its_former_session_is_dead():
    a = new_node(1, [2])
    old = new_node(2, [1])
    handshake(a, old, 0.1)
    a.promote(0.2)
    a.sender.peers[2].acked_at = 0.2
    old_alive = Remote(2, old.channel.session).encode(Frame(MessageType.ALIVE, 2, 0, 0, (Alive(),)))
    new = new_node(2, [1], generation=1)  # node 2's process restarts: a new session
    handshake(a, new, 1.0)
    assert a.channel.bound(2) == new.channel.session
    assert a.sender.peers[2].acked_at == float("-inf")  # what it acknowledged before says nothing now
    a.on_datagram(1.1, old_alive, 2)
    assert a.counters.stale_session == 1
    # the old process's proof (a HELLO echoing node 1's session), replayed: never bound again
    old_proof = Remote(2, old.channel.session).hello(a)
    out = a.on_datagram(1.2, old_proof, 2)
    assert a.channel.bound(2) == new.channel.session and a.counters.stale_session == 2
    assert sent(out) == []  # and not answered


def test_frames_sent_to_a_former_process_of_this_node_never_count():
    """Node 2 restarts; node 1's process goes on. What node 1 sent node 2's former
    process (captured) has node 1's current session, and counters below the HELLO that
    binds it in node 2's new process: replays."""
    one = new_node(1, [2])
    two = new_node(2, [1])
    handshake(one, two, 0.1)
    one.promote(0.2)
    dump = [o.data for o in one.on_kernel_dump(0.2, [conn(1)]) if isinstance(o, SendDatagram)]
    for data in dump:
        two.on_datagram(0.3, data, 1)
    assert conn(1).key in two.external
    again = new_node(2, [1], generation=1)
    handshake(one, again, 1.0)
    for data in dump:
        again.on_datagram(1.1, data, 1)
    assert again.counters.replays == len(dump) and len(again.external) == 0


def test_sessions_a_peer_had_are_remembered_up_to_a_bound():
    a = new_node(1, [2])
    for generation in range(RETIRED + 2):
        Remote(2, session_of(2, 100 + generation)).bind(a, float(generation))
    retired = a.channel.peers[2].retired
    assert len(retired) == RETIRED and session_of(2, 100) not in retired and session_of(2, 100 + RETIRED) in retired


def test_unbound_frames_are_refused_and_challenged_at_most_once_per_interval():
    a = new_node(1, [2])
    stranger = Remote(2, session_of(2, 9))
    outs = [a.on_datagram(0.1 * i, alive_from(stranger), 2) for i in range(1, 6)]
    assert a.counters.unbound_session == 5
    # in the interval: one answer (echoing the stranger's session, never answered before)
    # and one request (echo 0: the answer is out, prove yourself); each has its own limit
    echoes = [hello.messages[0].echo for out in outs for hello in hellos(out)]
    assert len(echoes) == 2 and echoes[0] != 0 and echoes[1] == 0
    assert len(hellos(a.on_datagram(1.2, alive_from(stranger), 2))) == 1  # and one more after it


def test_a_replayed_frame_is_dropped_and_never_answered():
    a = new_node(1, [2], keyring=Keyring([KEY]))
    peer = Remote(2, session_of(2, 5), KEY)
    peer.bind(a, 0.1)
    hello = peer.encode(Frame(MessageType.HELLO, 2, 0, 0, (Hello(0, 0),)))
    first = a.on_datagram(1.2, hello, 2)
    assert len(hellos(first, Keyring([KEY]))) == 1  # a fresh HELLO (echo 0) is answered (once a second at most)
    again = a.on_datagram(5.0, hello, 2)
    assert a.counters.replays == 1 and sent(again) == []
    assert any(isinstance(o, Log) and "a replay" in o.message for o in again)


def test_frames_of_another_sender_or_for_another_node_change_nothing():
    a = new_node(3, [1, 2])
    one, two = Remote(1, session_of(1, 5)), Remote(2, session_of(2, 5))
    one.bind(a)
    two.bind(a)
    state = Frame(MessageType.STATE, 1, 1, 0, (Event(EventKind.NEW, conn(1)),))
    a.on_datagram(0.1, one.encode(state), 2)  # node 1's frame, from node 2's address
    assert a.counters.wrong_node == 1 and len(a.external) == 0
    a.on_datagram(0.1, one.encode(replace(state, dst=2)), 1)  # for node 2
    assert a.counters.misdirected == 1 and len(a.external) == 0
    a.on_datagram(0.1, one.encode(replace(state, dst=3)), 1)  # for this node: applied
    assert len(a.external) == 1


@pytest.mark.parametrize("keyed", [False, True])
def test_the_channel_works_the_same_without_a_key(keyed):
    """Insecure mode: no sealing, but sessions and windows still drop accidental replays."""
    keyring = Keyring([KEY]) if keyed else None
    a = new_node(1, [2], keyring=keyring)
    peer = Remote(2, session_of(2, 6), KEY if keyed else None)
    peer.bind(a)
    data = peer.encode(Frame(MessageType.STATE, 2, 1, 0, (Event(EventKind.NEW, conn(1)),)))
    a.on_datagram(0.1, data, 2)
    a.on_datagram(0.2, data, 2)
    assert len(a.external) == 1 and a.counters.replays == 1
