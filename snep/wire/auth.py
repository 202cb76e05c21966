"""Sealing frames: pre-shared keys, per-session frame keys, ChaCha20-Poly1305.

A sealed frame is encrypted and authenticated (AEAD) in one mode, ChaCha20-Poly1305
(RFC 8439): conntrack state tells an on-path observer who talks to whom, so it is
kept secret as well as authentic. The AEAD key of a frame is derived from the
pre-shared key and the sender's session, never used directly:

    frame key = HKDF-SHA256(ikm = secret, salt = session (8 bytes),
                            info = b"snep/2 frame " + src node id (4 bytes))

A sender draws a fresh random session at every start and numbers its frames with a
strictly increasing 64-bit counter, which is the AEAD nonce (4 zero bytes, then the
counter): a (key, nonce) pair is never used twice, even when a process restarts,
because its new session gives it a new key. The key belongs to the sender's session,
not to a pair of nodes, so one sealed frame serves every peer (multicast, or the
same bytes unicast to each).

The key id in the frame header lets a cluster rotate keys without a flag day: every
node's :class:`Keyring` accepts all the keys it holds and sends with one of them
(the highest id by default); add the new key everywhere, switch the sending key node
by node, then remove the old key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from snep.errors import ConfigError

TAG_SIZE = 16
MIN_SECRET_SIZE = 16
KEY_ID_MAX = 255
INFO = b"snep/2 frame "

#: frame keys kept derived: (key, sender, session) triples. A node needs one per peer
#: session and key id it hears, and one for itself; forged frames of random sessions
#: cost a derivation each and push out nothing a node needs for long.
FRAME_KEY_CACHE = 256

__all__ = ["InvalidTag", "Key", "Keyring", "TAG_SIZE", "frame_aead", "nonce"]


@dataclass(frozen=True, slots=True)
class Key:
    """One pre-shared key: its id (0..255, written in the frame header) and secret."""

    key_id: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, int) or not 0 <= self.key_id <= KEY_ID_MAX:
            raise ConfigError(f"key id {self.key_id!r}: must be an integer 0..{KEY_ID_MAX}")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_SIZE:
            raise ConfigError(
                f"key {self.key_id}: the secret must be at least {MIN_SECRET_SIZE} bytes"
            )


@lru_cache(maxsize=FRAME_KEY_CACHE)
def frame_aead(key: Key, src: int, session: int) -> ChaCha20Poly1305:
    """The AEAD of the frames node ``src`` sends in ``session`` under ``key``."""
    derived = HKDF(
        algorithm=SHA256(),
        length=32,
        salt=session.to_bytes(8, "big"),
        info=INFO + src.to_bytes(4, "big"),
    ).derive(key.secret)
    return ChaCha20Poly1305(derived)


def nonce(counter: int) -> bytes:
    """The AEAD nonce of the frame numbered ``counter`` in its session."""
    return b"\0\0\0\0" + counter.to_bytes(8, "big")


class Keyring:
    """The keys a node accepts (by id) and the one it sends with."""

    __slots__ = ("_keys", "_send_id")

    def __init__(self, keys: Iterable[Key], send_id: int | None = None) -> None:
        self._keys: dict[int, Key] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ConfigError(f"key id {key.key_id} appears twice in the keyring")
            self._keys[key.key_id] = key
        if not self._keys:
            raise ConfigError("a keyring needs at least one key")
        if send_id is None:
            send_id = max(self._keys)
        if send_id not in self._keys:
            raise ConfigError(f"send key id {send_id} is not in the keyring")
        self._send_id = send_id

    @property
    def send_key(self) -> Key:
        """The key this node seals its own frames with."""
        return self._keys[self._send_id]

    def get(self, key_id: int) -> Key | None:
        return self._keys.get(key_id)

    @property
    def key_ids(self) -> frozenset[int]:
        return frozenset(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={sorted(self._keys)}, send_id={self._send_id})"
