"""Config files for tests that run ``snep`` as a command: contrib/snep.toml as shipped,
with its key file (``/etc/snep/key``, absent on a test machine) replaced by a real one;
and what tests read of a parsed config's peers."""

from __future__ import annotations

import secrets
from pathlib import Path

from snep.config import LinkConfig

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "snep.toml"


def key_file(directory: Path) -> Path:
    """A valid key file (mode 0600) in ``directory``."""
    key = directory / "key"
    key.write_text(f"1 {secrets.token_hex(32)}\n")
    key.chmod(0o600)
    return key


def contrib_config(directory: Path) -> Path:
    """contrib/snep.toml with its key file pointing at a fresh one in ``directory``."""
    text = CONTRIB.read_text()
    assert '"/etc/snep/key"' in text, "contrib/snep.toml no longer names /etc/snep/key"
    path = directory / "snep.toml"
    path.write_text(text.replace('"/etc/snep/key"', f'"{key_file(directory)}"'))
    return path


def peer_addresses(link: LinkConfig) -> list[str]:
    """ADDRESS:PORT of each peer of a parsed link, in order (the one place tests read how
    a link holds its peers)."""
    return [str(peer.address) for peer in link.peers]
