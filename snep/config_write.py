"""Writing a snep.toml: the documents snep writes itself (the conntrackd importer's
output, the example of snep.toml(5)).

A :class:`Document` is sections of ``key = value  # comment`` lines, in the order
they are added. Two values are written by one function each, because their format is
the config's and not the writer's: the peers of a link (:func:`peers_value`) and how
a node authenticates its sync traffic (:func:`auth_entries`). Whatever writes a
config goes through them, so a change of those keys' format is made here, once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Raw:
    """A value already in TOML syntax (peers_value's)."""

    text: str


@dataclass(frozen=True)
class Peer:
    """A peer of a sync link: its node id (the peer's [node] id) and ADDRESS:PORT."""

    id: int
    address: str


def value(item: Any) -> str:
    """A Python value in TOML syntax (strings, numbers, booleans, arrays of them)."""
    if isinstance(item, Raw):
        return item.text
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(x) for x in item) + "]"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def peers_value(peers: Sequence[Peer]) -> Raw:
    """[sync] peers (and [sync.second_link] peers): each a node id and its address,
    the second link's matched by id."""
    return Raw("[" + ", ".join(f"{{ id = {peer.id}, address = {value(peer.address)} }}" for peer in peers) + "]")


def auth_entries(key_file: str | None) -> list[tuple[str, Any, str]]:
    """[sync]'s authentication as (key, value, comment) lines: the key file, or an
    explicit insecure = true (a node without a key refuses to start otherwise)."""
    if key_file:
        return [("key_file", key_file, "'KEYID HEXSECRET' lines, mode 0600")]
    return [("insecure", True, "conntrackd had no authentication: give --key-file")]


@dataclass
class Document:
    """A snep.toml being written: a header comment, then sections of keys."""

    header: list[str] = field(default_factory=list)
    sections: dict[str, list[tuple[str, Any, str]]] = field(default_factory=dict)

    def set(self, section: str, key: str, item: Any, comment: str = "") -> None:
        """Set (or replace, keeping its place) ``section.key``."""
        entries = self.sections.setdefault(section, [])
        for index, (name, _old, old_comment) in enumerate(entries):
            if name == key:
                entries[index] = (key, item, comment or old_comment)
                return
        entries.append((key, item, comment))

    def get(self, section: str, key: str) -> Any:
        return next((item for name, item, _ in self.sections.get(section, []) if name == key), None)

    def render(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.header]
        for section, entries in self.sections.items():
            if not entries:
                continue
            lines += ["", f"[{section}]"]
            for key, item, comment in entries:
                text = f"{key} = {value(item)}"
                if len(text) > 79 and isinstance(item, (list, tuple)):  # one item a line
                    lines.append(f"{key} = [" + (f"  # {comment}" if comment else ""))
                    lines += [f"    {value(x)}," for x in item] + ["]"]
                    continue
                lines.append(f"{text:<39} # {comment}" if comment else text)
        return "\n".join(lines).lstrip("\n") + "\n"
