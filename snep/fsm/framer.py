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
from snep.wire.codec import encode_frame, encode_frames, frame_overhead
from snep.wire.messages import (
    DEFAULT_MTU,
    FLAG_BULK_END,
    FLAG_BULK_START,
    Frame,
    Message,
    MessageType,
)


class Framer:
    def __init__(self, node_id: int, counters: Counters, key: Key | None = None, mtu: int = DEFAULT_MTU) -> None:
        self.node_id = node_id
        self.counters = counters
        self.key = key
        self.mtu = mtu

    def control(self, mtype: MessageType, epoch: int, seq: int, message: Message) -> bytes:
        """One control frame (never retransmitted)."""
        return encode_frame(Frame(mtype, self.node_id, epoch, seq, (message,)), self.key)

    @property
    def overhead(self) -> int:
        """Bytes a frame adds around its messages (header, MAC)."""
        return frame_overhead(self.key)

    def state(
        self, epoch: int, first_seq: int, events: Sequence[Message], *, dump_start: bool = False, dump_end: bool = False
    ) -> list[bytes]:
        """STATE frames with consecutive seqs from ``first_seq``, packed up to the MTU;
        the first one starts a bulk dump, the last one ends it, when so asked."""
        flags = (FLAG_BULK_START if dump_start else 0) | (FLAG_BULK_END if dump_end else 0)
        return encode_frames(
            MessageType.STATE, self.node_id, epoch, first_seq, events, mtu=self.mtu, key=self.key, flags=flags
        )

    def send(self, out: list[Output], peers: Iterable[PeerId], data: bytes) -> None:
        peers = tuple(peers)
        if peers:
            out.append(SendDatagram(peers, data))
            self.counters.frames_sent += len(peers)
            self.counters.bytes_sent += len(data) * len(peers)
