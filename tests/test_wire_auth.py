"""Sealed frames: ChaCha20-Poly1305 under per-session frame keys, key ids, rotation,
and rejection of everything else."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snep.entry import (
    Event,
    EventKind,
    Proto,
    SctpInfo,
    SctpState,
    make_entry,
    make_tuple,
)
from snep.errors import AuthError, ConfigError, DecodeError
from snep.wire.auth import TAG_SIZE, Key, Keyring
from snep.wire.codec import (
    FLAG_BULK_END,
    FLAG_BULK_START,
    FLAG_SEALED,
    HEADER_SIZE,
    decode_frame,
    encode_frame,
    encode_frames,
)
from snep.wire.messages import (
    Ack,
    Alive,
    Frame,
    Hello,
    MessageType,
    Nack,
    ResyncRequest,
)
from tests.wire_helpers import assert_valid, decode_or_none

K1 = Key(1, b"one-secret-of-32-bytes-exactly!!")
K1_OTHER = Key(1, b"another-secret-but-the-same-id!!")
K2 = Key(2, b"\x00" * 16)
FRAME = Frame(
    MessageType.STATE,
    1,
    5,
    42,
    (Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 80)),),
)


def test_sealed_frame_round_trips_and_says_so():
    data = encode_frame(FRAME, K1)
    assert len(data) == len(encode_frame(FRAME)) + TAG_SIZE
    assert data[5] == 1  # key id in the header
    decoded = decode_frame(data, Keyring([K1]))
    assert decoded.flags & FLAG_SEALED
    assert decoded == replace(FRAME, flags=FLAG_SEALED)


def test_a_sealed_payload_is_secret():
    """What an on-path observer sees of a sealed STATE frame: the header, not the entry."""
    plain = encode_frame(FRAME)
    sealed = encode_frame(FRAME, K1)
    assert sealed[HEADER_SIZE:-TAG_SIZE] != plain[HEADER_SIZE:]
    for value in (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), (1000).to_bytes(2, "big")):
        assert value in plain[HEADER_SIZE:] and value not in sealed[HEADER_SIZE:]


def test_every_counter_and_session_gives_other_bytes():
    """The counter is the nonce and the session salts the frame key: the same frame sealed
    twice never repeats a keystream."""
    first = encode_frame(replace(FRAME, session=1, counter=1), K1)
    again = encode_frame(replace(FRAME, session=1, counter=2), K1)
    other = encode_frame(replace(FRAME, session=2, counter=1), K1)
    bodies = {first[HEADER_SIZE:], again[HEADER_SIZE:], other[HEADER_SIZE:]}
    assert len(bodies) == 3


def test_the_header_is_authenticated_too():
    """Changing who sent it, its addressee, session or counter breaks the tag."""
    ring = Keyring([K1])
    data = encode_frame(replace(FRAME, dst=2, session=7, counter=9), K1)
    assert decode_frame(data, ring).counter == 9
    for offset in (8, 12, 16, 24, 32, 36):  # src, dst, session, counter, epoch, seq
        forged = data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]
        with pytest.raises(AuthError, match="bad tag"):
            decode_frame(forged, ring)


def test_wrong_secret_is_rejected():
    with pytest.raises(AuthError, match="bad tag"):
        decode_frame(encode_frame(FRAME, K1_OTHER), Keyring([K1]))


def test_an_unsealed_frame_is_rejected_when_keys_are_configured():
    with pytest.raises(AuthError, match="not sealed, but keys are configured"):
        decode_frame(encode_frame(FRAME), Keyring([K1]))


def test_unknown_key_id_is_rejected():
    with pytest.raises(AuthError, match="unknown key id 2"):
        decode_frame(encode_frame(FRAME, K2), Keyring([K1]))


def test_sealed_frame_without_keys_is_rejected():
    with pytest.raises(AuthError, match="no keys are configured"):
        decode_frame(encode_frame(FRAME, K1))


def test_stripped_or_truncated_tag_is_a_decode_error():
    data = encode_frame(FRAME, K1)
    with pytest.raises(DecodeError, match="truncated"):
        decode_frame(data[:-1], Keyring([K1]))
    with pytest.raises(DecodeError, match="truncated"):
        decode_frame(data[:-TAG_SIZE], Keyring([K1]))


def test_clearing_the_sealed_flag_does_not_help_a_forger():
    data = bytearray(encode_frame(FRAME, K1))
    data[4] &= ~FLAG_SEALED
    with pytest.raises(DecodeError):
        decode_frame(bytes(data), Keyring([K1]))
    data[5] = 0
    with pytest.raises(DecodeError):  # now an unsealed frame with 16 trailing bytes
        decode_frame(bytes(data), Keyring([K1]))


def test_key_rotation_with_two_keys_in_the_ring():
    old = Keyring([K1])
    both = Keyring([K1, K2], send_id=2)
    assert both.send_key is K2
    # a node that already has the new key accepts frames of the old and the new one
    assert decode_frame(encode_frame(FRAME, old.send_key), both).messages == FRAME.messages
    assert decode_frame(encode_frame(FRAME, both.send_key), both).messages == FRAME.messages
    # a node that does not have it yet refuses the new key's frames
    with pytest.raises(AuthError, match="unknown key id 2"):
        decode_frame(encode_frame(FRAME, both.send_key), old)
    # sending with the highest id by default
    assert Keyring([K1, K2]).send_key is K2


def test_mtu_accounts_for_the_tag():
    acks = [Ack(i, i) for i in range(100)]
    frames = encode_frames(MessageType.ACK, 1, 1, 0, acks, mtu=HEADER_SIZE + TAG_SIZE + 13 * 3, key=K1)
    assert all(len(f) == HEADER_SIZE + TAG_SIZE + 13 * 3 for f in frames[:-1])
    ring = Keyring([K1])
    assert [m for f in frames for m in decode_frame(f, ring).messages] == acks


@pytest.mark.parametrize(
    "key_id, secret",
    [(-1, b"x" * 16), (256, b"x" * 16), (1, b"short"), (1, "not-bytes-but-text!!")],
)
def test_bad_keys_are_configuration_errors(key_id, secret):
    with pytest.raises(ConfigError):
        Key(key_id, secret)


def test_bad_keyrings_are_configuration_errors():
    with pytest.raises(ConfigError, match="at least one key"):
        Keyring([])
    with pytest.raises(ConfigError, match="twice"):
        Keyring([K1, K1_OTHER])
    with pytest.raises(ConfigError, match="not in the keyring"):
        Keyring([K1], send_id=2)


def test_secrets_stay_out_of_repr():
    assert K1.secret.decode() not in repr(K1)
    assert K1.secret.decode() not in repr(Keyring([K1]))


# Frames of every type, encoded once. The property below is about the tag, which covers
# every byte whatever the frame carries, so the frames need not be drawn: drawing them
# (tests.strategies.frames(): up to four entries with every field) was most of this
# test's time, enough for Hypothesis' too_slow health check on a loaded machine.
AUTH_RING = Keyring([K1, K2])
AUTH_FRAMES = tuple(
    encode_frame(frame, K1)
    for frame in (
        FRAME,
        Frame(MessageType.STATE, 7, 0xFFFFFFFF, 0xFFFFFFFF, (
            Event(EventKind.UPDATE, make_entry("fd00::1", "2001:db8::7", Proto.UDP, 1234, 53,
                                               reply=make_tuple("fd03::8", "2001:db8::1", Proto.UDP, 5353, 2345),
                                               mark=0x1234, zone=3, labels=1 << 100)),
            Event(EventKind.DESTROY, make_entry("10.1.0.1", "10.2.0.1", Proto.SCTP, 3868, 3868,
                                                protoinfo=SctpInfo(SctpState.ESTABLISHED, 0x1111, 0x2222))),
            Event(EventKind.NEW, make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 21, helper="ftp")),
        ), FLAG_BULK_START | FLAG_BULK_END),
        Frame(MessageType.STATE, 1, 5, 43, ()),
        Frame(MessageType.ACK, 2, 5, 0, (Ack(1, 42), Ack(0xFFFFFFFF, 3))),
        Frame(MessageType.NACK, 2, 5, 0, (Nack(7, 9),)),
        Frame(MessageType.RESYNC_REQUEST, 2, 0, 0, (ResyncRequest(),)),
        Frame(MessageType.ALIVE, 1, 5, 42, (Alive(),)),
        Frame(MessageType.HELLO, 1, 5, 0, (Hello(5, 1, live=True),)),
    )
)


def test_every_bit_flip_of_a_sealed_frame_is_rejected():
    """Every position of every frame above, each of its 8 bits: deterministic, ~0.1 s."""
    for raw in AUTH_FRAMES:
        assert decode_frame(raw, AUTH_RING)  # the frame itself is fine
        for position in range(len(raw)):
            for bit in range(8):
                mutated = raw[:position] + bytes([raw[position] ^ (1 << bit)]) + raw[position + 1 :]
                with pytest.raises(DecodeError):
                    decode_frame(mutated, AUTH_RING)


@given(st.sampled_from(AUTH_FRAMES), st.data())
@settings(max_examples=300)
def test_any_single_byte_change_of_a_sealed_frame_is_rejected(raw, data):
    """Any new value at any position (the bit flips above, and every other value)."""
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    change = data.draw(st.integers(1, 255), label="xor")  # never 0: the byte always changes
    mutated = raw[:position] + bytes([raw[position] ^ change]) + raw[position + 1 :]
    with pytest.raises(DecodeError):
        decode_frame(mutated, AUTH_RING)


@given(st.binary(max_size=120))
def test_any_bytes_with_a_keyring_decode_or_raise(data):
    ring = Keyring([K1])
    frame = decode_or_none(data, ring)
    if frame is not None:
        assert_valid(frame, ring)  # pragma: no cover - a forged tag would land here
