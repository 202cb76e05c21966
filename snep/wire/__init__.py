"""The sync protocol on the wire, sans-I/O (byte format: docs/wire.md).

- :mod:`snep.wire.messages`: frame and message values;
- :mod:`snep.wire.codec`: ``encode_frame``, ``encode_frames`` (packing to an MTU),
  ``decode_frame`` (strict: only ``DecodeError``/``AuthError`` escape);
- :mod:`snep.wire.auth`: pre-shared keys, keyring, the frame MAC;
- :mod:`snep.wire.serial`: RFC 1982 arithmetic for the 32-bit sequence numbers.
"""
