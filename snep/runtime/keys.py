"""Reading the pre-shared key file into a :class:`~snep.wire.auth.Keyring`.

Format: one key per line, ``KEY_ID HEX_SECRET`` (id 0..255, secret at least 16 bytes,
e.g. ``openssl rand -hex 32``); ``#`` starts a comment. The node sends with the
highest id and accepts all, so keys rotate by adding the new one everywhere first.
"""

from __future__ import annotations

from pathlib import Path

from snep.config import check_key_file
from snep.errors import ConfigError
from snep.wire.auth import Key, Keyring


def load_keyring(path: Path) -> Keyring:
    check_key_file(path, str(path))
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ConfigError(f"{path}:{number}: expected 'KEY_ID HEX_SECRET'")
        try:
            secret = bytes.fromhex(fields[1])
        except ValueError:
            raise ConfigError(f"{path}:{number}: the secret is not hexadecimal") from None
        try:
            keys.append(Key(int(fields[0]), secret))
        except ConfigError as error:
            raise ConfigError(f"{path}:{number}: {error}") from None
    if not keys:
        raise ConfigError(f"{path}: no key in the key file")
    return Keyring(keys)
