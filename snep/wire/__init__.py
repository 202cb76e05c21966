"""The sync protocol on the wire, sans-I/O (byte format: docs/wire.md).

- :mod:`snep.wire.messages`: frame and message values;
- :mod:`snep.wire.codec`: ``build_frames`` (packing to an MTU) and ``seal`` (a built
  frame numbered and sealed for one transmission), ``encode_frame``,
  ``decode_frame`` (strict: only ``DecodeError``/``AuthError`` escape);
- :mod:`snep.wire.auth`: pre-shared keys, keyring, per-session frame keys (HKDF),
  ChaCha20-Poly1305;
- :mod:`snep.wire.serial`: RFC 1982 arithmetic for the 32-bit sequence numbers.
"""
