"""Speaking to a SyncNode as its peers do: each peer process has a session and numbers
its frames, and a node counts a peer's frames only once the peer proved its session
by the handshake (snep.fsm.channel)."""

from __future__ import annotations

import itertools
from dataclasses import replace

from snep.fsm.effects import Output
from snep.fsm.node import SyncNode
from snep.lab.sim import handshake  # noqa: F401 - (the tests import it from here too)
from snep.wire.auth import Key
from snep.wire.codec import encode_frame
from snep.wire.messages import Frame, Hello, MessageType

_counters = itertools.count(1)


def session_of(node_id: int, generation: int = 0) -> int:
    """The session a test gives node ``node_id`` (in its ``generation``-th process)."""
    return 0x5E55_0000_0000_0000 | generation << 32 | node_id


class Remote:
    """A peer process the test plays: its node id, session and frame counter."""

    def __init__(self, node_id: int, session: int | None = None, key: Key | None = None) -> None:
        self.node_id = node_id
        self.session = session if session is not None else session_of(node_id)
        self.key = key

    def encode(self, frame: Frame) -> bytes:
        """``frame`` as this peer sends it: its node id, session and next counter."""
        return encode_frame(
            replace(frame, node_id=self.node_id, session=self.session, counter=next(_counters)), self.key
        )

    def hello(self, to: SyncNode, *, term: int = 0, owner: int = 0, live: bool = False, epoch: int = 0, echo: int | None = None) -> bytes:
        """A HELLO to ``to`` that answers its session (the proof), with this news."""
        echo = to.channel.session if echo is None else echo
        return self.encode(Frame(MessageType.HELLO, self.node_id, epoch, 0, (Hello(term, owner, live, echo=echo),), dst=to.node_id))

    def bind(self, to: SyncNode, now: float = 0.0) -> list[Output]:
        """The handshake: ``to`` binds this peer's session (and answers with its proof)."""
        return to.on_datagram(now, self.hello(to), self.node_id)


REMOTES: dict[int, Remote] = {}


def remote(node_id: int) -> Remote:
    """The test's peer process of node ``node_id`` (one per id, sessions fixed)."""
    if node_id not in REMOTES:
        REMOTES[node_id] = Remote(node_id)
    return REMOTES[node_id]
