"""Reading the pre-shared key file into a :class:`~snep.wire.auth.Keyring`.

Format: one key per line, ``KEY_ID HEX_SECRET`` (id 0..255, secret at least 16 bytes,
e.g. ``openssl rand -hex 32``); ``#`` starts a comment. The node seals with the
highest id and accepts all, so keys rotate by adding the new one everywhere first.
The file must be of mode 0600 or 0400 and owned by root or by the daemon's user
(snep.config.check_key_file). Every error names the file, the config key and the line.
"""

from __future__ import annotations

from pathlib import Path

from snep.config import check_key_file
from snep.errors import ConfigError
from snep.wire.auth import Key, Keyring

WHERE = "sync.key_file"


def load_keyring(path: Path) -> Keyring:
    check_key_file(path, WHERE)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{WHERE}: key file {path}: not UTF-8 text (byte {error.start}): expected 'KEY_ID HEX_SECRET' lines") from None
    except OSError as error:
        raise ConfigError(f"{WHERE}: key file {path} cannot be read: {error.strerror}") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ConfigError(f"{WHERE}: key file {path}, line {number}: expected 'KEY_ID HEX_SECRET'")
        try:
            secret = bytes.fromhex(fields[1])
        except ValueError:
            raise ConfigError(f"{WHERE}: key file {path}, line {number}: the secret is not hexadecimal") from None
        try:
            keys.append(Key(int(fields[0]), secret))
        except ConfigError as error:
            raise ConfigError(f"{WHERE}: key file {path}, line {number}: {error}") from None
    if not keys:
        raise ConfigError(f"{WHERE}: key file {path}: no key in it")
    try:
        return Keyring(keys)
    except ConfigError as error:
        raise ConfigError(f"{WHERE}: key file {path}: {error}") from None
