"""Defaults are defined once (SyncParams, the kernel adapter) and everything that
shows them agrees: the config parser's table, contrib/snep.toml, the docs."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from snep import config
from snep.fsm.params import SyncParams

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "snep.toml"
PEERS = [{"id": 2, "address": "10.0.0.2"}]


def test_every_tunable_is_a_config_key_of_the_same_name_and_default() -> None:
    keys = {s.key: s for s in config.SETTINGS if s.section in ("sync", "kernel")}
    for f in fields(SyncParams):
        assert f.name in keys, f"SyncParams.{f.name} has no config key"
        default = getattr(SyncParams(), f.name)
        shown = keys[f.name].default
        assert shown == (default.value if hasattr(default, "value") else default), f.name


def test_a_config_with_every_key_at_its_default_gives_the_defaults() -> None:
    """Parse a file that sets every scalar key to the table's default: the result is
    what an empty file gives (the parser reads what the table says)."""
    doc: dict[str, dict] = {"node": {"id": 1}, "sync": {"listen": "10.0.0.1", "peers": PEERS, "key_file": "/k"}}
    for s in config.SETTINGS:
        if s.default is not None and s.section in ("sync", "kernel"):
            doc.setdefault(s.section, {})[s.key] = s.default
    explicit = config.parse(doc, check_files=False)
    implicit = config.parse({"node": {"id": 1}, "sync": {"listen": "10.0.0.1", "peers": PEERS, "key_file": "/k"}}, check_files=False)
    assert explicit.sync == implicit.sync and explicit.kernel == implicit.kernel
    assert explicit.sync.params == SyncParams()


@pytest.mark.parametrize("setting", [s for s in config.SETTINGS if s.low is not None], ids=lambda s: s.name)
def test_out_of_range_values_are_refused_by_name(setting: config.Setting) -> None:
    doc: dict[str, dict] = {"node": {"id": 1}, "sync": {"listen": "10.0.0.1", "peers": PEERS, "insecure": True}}
    section = doc
    for part in setting.section.split("."):
        section = section.setdefault(part, {})
    assert setting.high is not None
    too_big = setting.high * 2 + 1
    section[setting.key] = int(too_big) if isinstance(setting.default, int) or setting.default is None else too_big
    with pytest.raises(config.ConfigError, match=re.escape(setting.name)):
        config.parse(doc, check_files=False)


def contrib_lines() -> dict[str, tuple[str, bool]]:
    """section.key -> (value text, marked example) for every key line, commented or not."""
    found: dict[str, tuple[str, bool]] = {}
    section = ""
    for line in CONTRIB.read_text().splitlines():
        header = re.match(r"^#?\s*\[([\w.]+)\]\s*$", line)
        if header:
            section = header.group(1)
            continue
        pair = re.match(r"^#?\s*(\w+)\s*=\s*(.*?)\s*(#\s*(.*))?$", line)
        if pair and section:
            comment = pair.group(4) or ""
            found[f"{section}.{pair.group(1)}"] = (pair.group(2), comment.startswith("example"))
    return found


def test_contrib_config_shows_every_key_with_its_default() -> None:
    shown = contrib_lines()
    missing = [s.name for s in config.SETTINGS if s.name not in shown]
    assert not missing, f"contrib/snep.toml lacks {missing}"
    unknown = sorted(set(shown) - {s.name for s in config.SETTINGS})
    assert not unknown, f"contrib/snep.toml shows keys the config does not have: {unknown}"
    for s in config.SETTINGS:
        text, example = shown[s.name]
        if example or s.default is None:
            continue
        value = tomllib.loads(f"v = {text}")["v"]
        assert value == s.default, f"contrib/snep.toml: {s.name} = {text}, the default is {s.default!r}"


def test_contrib_config_is_a_valid_config() -> None:
    cfg = config.load(CONTRIB, check_files=False)
    assert cfg.node_id == 1 and cfg.sync.params == SyncParams()
