"""The sync protocol's messages and frames, as values.

A *frame* is one datagram: a fixed header (who sends to whom, in which session and
epoch, with which counter and sequence number) and one or more *messages* of the
frame's type. STATE frames are
the reliable stream: each carries its own sequence number, is kept in the sender's
resend queue until acknowledged, and packs as many STATE messages as the MTU allows.
Every other frame is control traffic: it is never retransmitted, and its header's
sequence number is the sender's newest data sequence number sent so far, so that
a receiver also notices a lost tail on an otherwise idle channel.

This module holds values only; ``snep.wire.codec`` turns them into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Union

from snep.entry import Entry, Event

PROTOCOL_VERSION = 2

#: Default MTU: a 1500-byte Ethernet frame less the IPv4 (20) and UDP (8) headers.
DEFAULT_MTU = 1500 - 20 - 8
#: Default payload of a bulk dump's frames: eleven Ethernet frames' worth once the
#: kernel fragments it (bench/README.md, "Larger frames": a resync's per-frame work
#: is most of its cost; at 16 KiB it meets conntrackd's time).
DEFAULT_BULK_MTU = 16384
#: The largest UDP payload over IPv4 (65535 less the IPv4 and UDP headers).
MAX_UDP_PAYLOAD = 65535 - 20 - 8

# Frame header flags.
FLAG_SEALED = 0x01  # payload encrypted, a 16-byte tag follows; the key id byte names the key
FLAG_BULK_START = 0x02  # first frame of a bulk dump (STATE only)
FLAG_BULK_END = 0x04  # last frame of a bulk dump (STATE only)
#: acknowledge this frame at once (STATE only): it carries the state of a connection
#: whose first packet its owner holds until every live peer has it (active-active's
#: defer, docs/active-active.md); the ACK must not wait for ack_window or ack_delay
FLAG_ACK_NOW = 0x08


class MessageType(IntEnum):
    """The type of a frame and of every message it holds."""

    STATE = 1
    ACK = 2
    NACK = 3
    RESYNC_REQUEST = 4
    ALIVE = 5
    HELLO = 6
    REPORT = 7
    REPORT_ACK = 8


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver has applied every data frame from ``first`` to ``last`` (inclusive,
    serial-number arithmetic: the range may wrap)."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Nack:
    """The receiver detected a gap: data frames ``first`` .. ``last`` never arrived."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """Ask the receiver for a full dump of its internal cache (a bulk send)."""


@dataclass(frozen=True, slots=True)
class Alive:
    """Keep-alive on an idle channel; the frame header carries the newest data seq."""


@dataclass(frozen=True, slots=True)
class Hello:
    """A node tells the newest epoch it has seen: at start-up, on a new epoch of its
    own, and to a primary whose frames are stale. Whether the sender is primary of
    that epoch is its frame header's claim; ``live`` says it follows a primary of
    that epoch heard lately (so the news is vouched for, not just remembered).

    It is also the handshake of the sync channel (snep.fsm.channel): ``echo`` is the
    addressee's session the sender answers (0: none), which proves the sender holds
    the key over a nonce the addressee chose."""

    newest_term: int
    newest_owner: int
    live: bool = False
    version: int = PROTOCOL_VERSION
    echo: int = 0
    #: the sender was the primary of ``newest`` and resigned it: its frame header's seq
    #: is its stream's last (active-active's Drained: the next owner applies up to it first)
    resigned: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    """A node that does not own a connection tells its owner (the primary of the
    connection's group) a state its own kernel gave the connection: the first reply
    of an asymmetric path (SYN_RECV), which the owner's kernel must hold before the
    client's next packet reaches it. Unsequenced, like HELLO: a lost one is the
    defer bound's case. ``report_id`` names it in the answer."""

    report_id: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class ReportAck:
    """The owner applied report ``report_id`` to its kernel (or held its state already)."""

    report_id: int


#: A STATE message is a conntrack :class:`~snep.entry.Event` (kind and entry) as is.
Message = Union[Event, Ack, Nack, ResyncRequest, Alive, Hello, Report, ReportAck]

MESSAGE_TYPE_OF: dict[type, MessageType] = {
    Event: MessageType.STATE,
    Ack: MessageType.ACK,
    Nack: MessageType.NACK,
    ResyncRequest: MessageType.RESYNC_REQUEST,
    Alive: MessageType.ALIVE,
    Hello: MessageType.HELLO,
    Report: MessageType.REPORT,
    ReportAck: MessageType.REPORT_ACK,
}


#: ``dst`` of a frame for every peer (STATE, ALIVE, a HELLO to all)
EVERY_PEER = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One datagram: header fields and the messages it carries (all of ``type``).

    ``node_id`` is the sender (the header's src), ``dst`` the addressee (0: every
    peer); ``session`` and ``counter`` number the frame in its sender's process
    (the AEAD nonce, the receiver's anti-replay window)."""

    type: MessageType
    node_id: int
    epoch: int
    seq: int
    messages: tuple[Message, ...]
    flags: int = 0
    dst: int = EVERY_PEER
    session: int = 0
    counter: int = 0
    #: a STATE frame decoded as records (decode_frame's ``records``): its plain
    #: messages as bytes, ``messages`` then empty; None: ``messages`` holds them
    records: tuple[bytes, ...] | None = None

    @property
    def starts_dump(self) -> bool:
        """The first frame of a bulk dump (BULK_START): mark the peer's entries."""
        return bool(self.flags & FLAG_BULK_START)

    @property
    def ack_now(self) -> bool:
        """A STATE frame to acknowledge at once (FLAG_ACK_NOW): a held packet waits for it."""
        return bool(self.flags & FLAG_ACK_NOW)

    @property
    def ends_dump(self) -> bool:
        """The last frame of a bulk dump (BULK_END): sweep what it did not touch."""
        return bool(self.flags & FLAG_BULK_END)
