"""Frame authentication: pre-shared keys and the MAC of a frame.

A frame sent with a :class:`Key` carries the key's id in its header and a 16-byte MAC
after its payload: HMAC-SHA256 over header and payload, truncated to 128 bits
(RFC 2104 section 5 allows truncation to half the hash length). The key id lets a
cluster rotate keys without a flag day: every node's :class:`Keyring` accepts all
the keys it holds and sends with one of them; add the new key everywhere, switch the
sending key node by node, then remove the old key.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from snep.errors import ConfigError

MAC_SIZE = 16
MIN_SECRET_SIZE = 16
KEY_ID_MAX = 255

_digest = hmac.digest


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

    def mac(self, data: bytes) -> bytes:
        """The frame MAC of ``data`` (header and payload)."""
        return _digest(self.secret, data, "sha256")[:MAC_SIZE]


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
        """The key this node authenticates its own frames with."""
        return self._keys[self._send_id]

    def get(self, key_id: int) -> Key | None:
        return self._keys.get(key_id)

    @property
    def key_ids(self) -> frozenset[int]:
        return frozenset(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={sorted(self._keys)}, send_id={self._send_id})"
