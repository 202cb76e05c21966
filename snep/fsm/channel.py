"""The sync channel: which frames count. Peer sessions, the handshake, anti-replay.

Sealing (snep.wire.auth) proves that a frame was made by a key holder; it does not
prove that the frame is new. This module decides that, per peer, as IPsec ESP and
WireGuard do:

- Every node process draws a random 64-bit *session* at start (an input: the daemon
  passes os.urandom, the simulation a seeded generator) and numbers every frame it
  sends with a strictly increasing 64-bit *counter*; both travel in the header,
  under the AEAD.
- A peer's frames count only in the session this node has *bound* for it. Binding
  is a challenge-response over this node's own session: node n binds m's session S
  when a HELLO of session S from m echoes n's current session (``Hello.echo``). The
  AEAD covers the echo, so only a key holder who saw n's fresh nonce can make it:
  a frame captured from an earlier process of either node never binds anything.
- A HELLO is answered (a HELLO to its sender, echoing its session) unless it is the
  answer to ours for a session we answered already; answers to a session that has
  just proved itself go at once, all others at most once per ``alive_interval`` per
  peer. At start a node says HELLO (echo 0) to every peer, so each side binds the
  other in three messages: HELLO(S_n, 0), HELLO(S_m, echo S_n), HELLO(S_n, echo S_m).
- Until a peer is bound, its other frames are rejected (``unbound_session``) and
  answered by a challenge (rate-limited as above): a HELLO echoing the frame's
  session if we never answered it (the peer binds us and proves itself), else a
  HELLO with echo 0 (our answer or its proof was lost: prove yourself). Frames of a
  session other than the bound one (an earlier process of the peer) are rejected
  (``stale_session``) and never answered, nor are the HELLOs of a session it had
  before (kept, the last :data:`RETIRED` per peer): they cannot be bound again.
- Within the bound session a sliding window over the counters (the highest seen and
  a bitmap of the :data:`WINDOW` below it) rejects a counter seen before or left of
  the window (``replays``). Binding starts the window at the binding HELLO's counter,
  everything up to it seen: frames the peer's process sent before it proved itself to
  this process (to a former process of this node, say) are replays here.
- A frame whose header names another sender than the peer at its source address
  (``wrong_node``), or another addressee than this node or every peer
  (``misdirected``), is rejected before anything else.

Rejected frames change nothing but a counter (and the challenge above). Binding a
new session of a peer means the peer restarted: the node forgets what its former
acknowledgements said (SyncSender.peer_introduced).

In insecure mode (no keys) all of this still runs: it stops accidental replays and
strays (a frame delivered twice, a restarted peer's late frames), not an attacker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from snep.fsm.counters import Counters
from snep.fsm.effects import PeerId
from snep.fsm.spec_map import spec_action
from snep.wire.messages import EVERY_PEER, Frame, Hello, MessageType

#: counters the anti-replay window remembers below the highest seen (RFC 4303 suggests
#: at least 64; WireGuard keeps 2048): reordering deeper than this drops frames
WINDOW = 1024
_MASK = (1 << WINDOW) - 1

#: earlier sessions of a peer remembered (per peer): never bound again, never answered
RETIRED = 64

#: the reasons a frame is rejected: each is the name of its counter
REASONS = ("wrong_node", "misdirected", "unbound_session", "stale_session", "replays")


class ReplayWindow:
    """The counters seen in one peer session: the highest, and a bitmap below it.

    It starts at the counter of the HELLO that bound the session, with every counter
    up to it taken as seen: what the peer sent before it proved itself (to this
    process, or to an earlier process of this node) never counts here."""

    __slots__ = ("highest", "_seen")

    def __init__(self, counter: int) -> None:
        self.highest = counter
        self._seen = _MASK  # bit i: highest - i was seen

    def fresh(self, counter: int) -> bool:
        """Not seen before and not left of the window."""
        if counter > self.highest:
            return True
        behind = self.highest - counter
        return behind < WINDOW and not (self._seen >> behind) & 1

    def mark(self, counter: int) -> None:
        """``counter`` was accepted: slide the window to it, or tick it off below."""
        if counter > self.highest:
            ahead = counter - self.highest
            self._seen = ((self._seen << ahead) | 1) & _MASK if ahead < WINDOW else 1
            self.highest = counter
        else:
            self._seen |= 1 << (self.highest - counter)


@dataclass(slots=True)
class PeerSession:
    """What the channel knows of one peer."""

    bound: int | None = None  # the peer's session whose frames count
    window: ReplayWindow | None = None  # over the bound session's counters
    answered: int | None = None  # the peer session we last answered (echoed)
    answered_at: float = float("-inf")  # when we last sent it a HELLO echoing one of its sessions
    asked_at: float = float("-inf")  # when we last sent it a HELLO with echo 0 (prove yourself)
    proved: int | None = None  # the bound session we sent our proof to (it binds ours)
    retired: deque[int] = field(default_factory=lambda: deque(maxlen=RETIRED))


class Admission(NamedTuple):
    """The channel's verdict on one frame."""

    accepted: bool
    reason: str | None = None  # the counter of a rejection
    bound: bool = False  # it bound a new session of the peer (the peer restarted)
    answer: int | None = None  # send the peer a HELLO echoing this session (0: a challenge)


_ACCEPTED = Admission(True)


class Channel:
    """The sessions and replay windows of one node's peers."""

    def __init__(self, node_id: int, session: int, peers: Iterable[PeerId], answer_interval: float, counters: Counters) -> None:
        if not 1 <= session < 1 << 64:
            raise ValueError(f"session {session}: must be 1 .. 2**64-1 (0 means none)")
        self.node_id = node_id
        self.session = session
        self.answer_interval = answer_interval
        self.counters = counters
        self.peers: dict[PeerId, PeerSession] = {peer: PeerSession() for peer in peers}

    def bound(self, peer: PeerId) -> int | None:
        """The peer's session whose frames count (None: none yet)."""
        return self.peers[peer].bound

    def introduced(self, peer: PeerId) -> bool:
        """Have we answered the peer's bound session? Then it binds ours (when that
        HELLO arrives): what we send it from now on counts."""
        state = self.peers[peer]
        return state.bound is not None and state.proved == state.bound

    def admit(self, now: float, peer: PeerId, frame: Frame) -> Admission:
        """Does this (authentic) frame from ``peer`` count? And what must be answered."""
        if frame.node_id != peer:
            return self.reject("wrong_node")
        if frame.dst != EVERY_PEER and frame.dst != self.node_id:
            return self.reject("misdirected")
        state = self.peers[peer]
        if frame.type is MessageType.HELLO:
            return self._hello(now, peer, state, frame)
        session = frame.session
        if session != state.bound:
            if state.bound is not None and session not in state.retired and session == state.answered:
                # A new process of the peer that we answered: it bound us, but its
                # proof never reached us, and we still hold its former session. Ask
                # again (echo 0), or it streams to us in vain for ever.
                return self.reject("stale_session", self._challenge(now, state))
            if state.bound is None:
                # A session we never answered: the challenge answers it (echoes it), so
                # that the peer, if that is its current session, binds us and proves
                # itself at once. (An echo-0 challenge would spend the rate limit that
                # the answer to the peer's own HELLO needs: two peers whose timers tick
                # together then challenge each other forever.) One we answered: our
                # answer or the peer's proof was lost; echo 0 asks for the proof.
                echo = session if session != state.answered else 0
                return self.reject("unbound_session", self._challenge(now, state, echo))
            return self.reject("stale_session")
        assert state.window is not None
        if not state.window.fresh(frame.counter):
            return self.reject("replays")
        state.window.mark(frame.counter)
        return _ACCEPTED

    def _hello(self, now: float, peer: PeerId, state: PeerSession, frame: Frame) -> Admission:
        session, counter = frame.session, frame.counter
        first = frame.messages[0] if frame.messages else None
        echo = first.echo if isinstance(first, Hello) else 0
        proof = echo == self.session
        bound = False
        if proof and session != state.bound and session not in state.retired:
            self.bind(peer, session, counter)
            bound = True
        elif session == state.bound:
            assert state.window is not None
            if not state.window.fresh(counter):
                return self.reject("replays")
            state.window.mark(counter)
        elif session in state.retired:
            return self.reject("stale_session")
        else:
            # A session we cannot believe yet (a peer's first HELLO, or a replay of one
            # we never bound): its news waits for the proof; answering it is the challenge.
            return Admission(False, None, False, self._challenge(now, state, session))
        answer = None
        if not (proof and state.answered == session):
            # (the first answer to a session that just proved itself goes at once)
            answer = self._answer(now, state, session, urgent=proof)
        return Admission(True, None, bound, answer)

    def _answer(self, now: float, state: PeerSession, session: int, *, urgent: bool = False) -> int | None:
        if not urgent and now < state.answered_at + self.answer_interval:
            return None
        state.answered = session
        state.answered_at = now
        if session == state.bound:
            state.proved = session
        return session

    def _challenge(self, now: float, state: PeerSession, session: int = 0) -> int | None:
        """A HELLO that asks the peer to prove itself over our session (rate-limited):
        echoing ``session`` (an answer, also a proof of ours) or 0. Answers and echo-0
        requests have a rate limit each: two peers whose timers tick together must not
        spend, with their requests, the limit of the answers that bind them."""
        if session:
            if now < state.answered_at + self.answer_interval:
                return None
            state.answered_at = now
            state.answered = session
            return session
        if now < state.asked_at + self.answer_interval:
            return None
        state.asked_at = now
        return 0

    @spec_action("Bind")
    def bind(self, peer: PeerId, session: int, counter: int) -> None:
        """``peer`` proved the key over our session in ``session``: from now on its
        frames of that session count, from ``counter`` on (an earlier one is retired)."""
        state = self.peers[peer]
        if state.bound is not None:
            state.retired.append(state.bound)
        state.bound = session
        state.window = ReplayWindow(counter)
        state.proved = session if state.answered == session else None  # (answered before it proved itself)
        self.counters.sessions_bound += 1

    @spec_action("Reject")
    def reject(self, reason: str, answer: int | None = None) -> Admission:
        """A frame that changes nothing but its counter (and maybe earns a challenge)."""
        setattr(self.counters, reason, getattr(self.counters, reason) + 1)
        return Admission(False, reason, False, answer)

    def status(self, peer: PeerId) -> dict[str, object]:
        state = self.peers[peer]
        return {
            "session": f"{state.bound:016x}" if state.bound is not None else None,
            "introduced": self.introduced(peer),
        }
