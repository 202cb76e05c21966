"""Building raw (possibly malformed) frames by hand, for the wire tests."""

from __future__ import annotations

from snep.errors import DecodeError
from snep.wire.codec import (
    DECODER_BUG,
    HEADER,
    MAGIC,
    MSG_HEADER,
    decode_frame,
    encode_frame,
)
from snep.wire.messages import PROTOCOL_VERSION, Frame


def attr(atype: int, value: bytes) -> bytes:
    return bytes((atype, len(value))) + value


def msg(kind: int, *attrs: bytes) -> bytes:
    body = b"".join(attrs)
    return MSG_HEADER.pack(kind, len(body)) + body


def raw_frame(
    mtype: int,
    payload: bytes,
    *,
    flags: int = 0,
    key_id: int = 0,
    node_id: int = 1,
    dst: int = 0,
    session: int = 0,
    counter: int = 0,
    epoch: int = 1,
    seq: int = 0,
    magic: bytes = MAGIC,
    version: int = PROTOCOL_VERSION,
    length: int | None = None,
) -> bytes:
    plen = len(payload) if length is None else length
    return HEADER.pack(magic, version, mtype, flags, key_id, plen, node_id, dst, session, counter, epoch, seq) + payload


def assert_valid(frame: Frame, keyring=None) -> None:
    """A decoded frame is valid: it re-encodes, and that decodes to the same frame."""
    key = keyring.send_key if keyring is not None else None
    assert decode_frame(encode_frame(frame, key), keyring) == frame


def decode_or_none(data: bytes, keyring=None) -> Frame | None:
    """The decoded frame, or None when the decoder rejected it with an explicit reason."""
    try:
        return decode_frame(data, keyring)
    except DecodeError as error:
        assert DECODER_BUG not in str(error), f"a check is missing in the decoder: {error}"
        return None
