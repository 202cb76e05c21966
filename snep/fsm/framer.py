"""Turning the machines' messages into datagrams: encode, authenticate, count.

The sender and the receivers build frames through one :class:`Framer` per node, so that
node id, key, MTU and the byte and frame counters live in one place. Encoding is the
wire codec's (never a second one here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from snep.fsm.counters import Counters
from snep.fsm.effects import Output, PeerId, SendDatagram
from snep.wire.auth import Key
from snep.wire.codec import encode_frame, encode_frames
from snep.wire.messages import DEFAULT_MTU, Frame, Message, MessageType


class Framer:
    def __init__(self, node_id: int, counters: Counters, key: Key | None = None, mtu: int = DEFAULT_MTU) -> None:
        self.node_id = node_id
        self.counters = counters
        self.key = key
        self.mtu = mtu

    def control(self, mtype: MessageType, epoch: int, seq: int, message: Message) -> bytes:
        """One control frame (never retransmitted)."""
        return encode_frame(Frame(mtype, self.node_id, epoch, seq, (message,)), self.key)

    def state(self, epoch: int, first_seq: int, events: Sequence[Message], flags: int = 0) -> list[bytes]:
        """STATE frames with consecutive seqs from ``first_seq``, packed up to the MTU."""
        return encode_frames(
            MessageType.STATE, self.node_id, epoch, first_seq, events, mtu=self.mtu, key=self.key, flags=flags
        )

    def send(self, out: list[Output], peers: Iterable[PeerId], data: bytes) -> None:
        for peer in peers:
            out.append(SendDatagram(peer, data))
            self.counters.frames_sent += 1
            self.counters.bytes_sent += len(data)
