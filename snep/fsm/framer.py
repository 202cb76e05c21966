"""Turning the machines' messages into datagrams: build, seal, count.

The sender and the receivers make frames through one :class:`Framer` per node, so
that node id, session, frame counter, key, MTU and the byte and frame counters live
in one place. Building (messages packed into a payload) and sealing (numbered with
the session's next counter, encrypted with the session's frame key) are apart: the
resend queue keeps built frames, and every transmission seals one afresh, so no
counter is used twice under a key. Encoding is the wire codec's (never a second one
here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from snep.fsm.counters import Counters
from snep.fsm.effects import Output, PeerId, SendDatagram
from snep.wire.auth import Key
from snep.wire.codec import (
    Built,
    build_frame,
    build_frames,
    build_state_frames,
    frame_overhead,
    seal,
)
from snep.wire.messages import (
    DEFAULT_MTU,
    EVERY_PEER,
    FLAG_ACK_NOW,
    FLAG_BULK_END,
    FLAG_BULK_START,
    Frame,
    Message,
    MessageType,
)

_COUNTER_END = 1 << 64


class Framer:
    def __init__(
        self, node_id: int, counters: Counters, session: int, key: Key | None = None, mtu: int = DEFAULT_MTU
    ) -> None:
        self.node_id = node_id
        self.counters = counters
        self.session = session
        self.counter = 0  # the next frame's: strictly increasing in the session
        self.key = key
        self.mtu = mtu

    def seal(self, built: Built) -> bytes:
        """``built`` as one datagram, numbered with the session's next counter."""
        counter = self.counter
        if counter >= _COUNTER_END:  # pragma: no cover - 2**64 frames: never
            raise OverflowError("the session's frame counter is spent: restart the node")
        self.counter = counter + 1
        return seal(built, self.session, counter, self.key)

    def control(self, mtype: MessageType, epoch: int, seq: int, message: Message, dst: PeerId = EVERY_PEER) -> bytes:
        """One control frame (never retransmitted), for ``dst`` (0: every peer)."""
        return self.seal(build_frame(Frame(mtype, self.node_id, epoch, seq, (message,), dst=dst)))  # type: ignore[arg-type]

    @property
    def overhead(self) -> int:
        """Bytes a frame adds around its messages (header, tag)."""
        return frame_overhead(self.key is not None)

    def state(
        self, epoch: int, first_seq: int, events: Sequence[Message], *, dump_start: bool = False, dump_end: bool = False
    ) -> list[Built]:
        """STATE frames with consecutive seqs from ``first_seq``, packed up to the MTU;
        the first one starts a bulk dump, the last one ends it, when so asked."""
        flags = (FLAG_BULK_START if dump_start else 0) | (FLAG_BULK_END if dump_end else 0)
        return build_frames(
            MessageType.STATE, self.node_id, epoch, first_seq, events, mtu=self.mtu, sealed=self.key is not None, flags=flags
        )

    def state_messages(
        self,
        epoch: int,
        first_seq: int,
        messages: Sequence[bytes],
        *,
        dump_start: bool = False,
        dump_end: bool = False,
        ack_now: bool = False,
        mtu: int | None = None,
    ) -> list[Built]:
        """:meth:`state` of messages encoded already (the sender's records); ``ack_now``:
        the receivers acknowledge them at once (FLAG_ACK_NOW: a held packet waits);
        ``mtu``: frames of this size instead (a dump's, sync.bulk_mtu)."""
        flags = (FLAG_BULK_START if dump_start else 0) | (FLAG_BULK_END if dump_end else 0) | (FLAG_ACK_NOW if ack_now else 0)
        return build_state_frames(
            self.node_id, epoch, first_seq, messages, mtu=mtu or self.mtu, sealed=self.key is not None, flags=flags
        )

    def oversize(self, built: Built) -> bool:
        """Is this frame larger than the stream's MTU (a bulk frame the kernel fragments)?"""
        return len(built.payload) > self.mtu - self.overhead

    def send(self, out: list[Output], peers: Iterable[PeerId], data: bytes) -> None:
        peers = tuple(peers)
        if peers:
            out.append(SendDatagram(peers, data))
            self.counters.frames_sent += len(peers)
            self.counters.bytes_sent += len(data) * len(peers)

    def transmit(self, out: list[Output], peers: Iterable[PeerId], built: Built) -> None:
        """Seal ``built`` once and send the same bytes to every one of ``peers``."""
        peers = tuple(peers)
        if peers:
            self.send(out, peers, self.seal(built))
