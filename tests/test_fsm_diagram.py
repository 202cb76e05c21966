"""``snep diagram`` draws the live machines: every state and trigger of the tables appears.

The committed drawings (docs/diagrams) are compared as graphs, never as bytes: each
NAME.gv (the DOT source ``snep diagram`` writes next to the image) must have the states,
edges and labels of the live tables, and each NAME.svg must draw that graph. Another
graphviz version lays the image out differently; it draws the same graph.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from snep.cli import main
from snep.cmd.diagram import graphs
from snep.fsm.receiver import RECEIVER_TABLE, ReceiverMode
from snep.fsm.role import TRIGGERS, Role
from snep.fsm.sender import SENDER_TABLE, SenderMode

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "diagrams"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")


# ----------------------------------------------------------------- the graph of a drawing


@dataclass(frozen=True)
class Drawing:
    """What a state diagram says: its title, its states and its labelled edges."""

    label: tuple[str, ...]
    nodes: frozenset[tuple[str, tuple[str, ...]]]  # (name, label lines)
    edges: Counter[tuple[str, str, tuple[str, ...]]]  # (source, destination, label lines)

    def differences(self, other: Drawing, mine: str = "this", theirs: str = "that") -> list[str]:
        out = []
        if self.label != other.label:
            out.append(f"title: {mine} {self.label}, {theirs} {other.label}")
        out += [f"state only in {mine}: {n}" for n in sorted(self.nodes - other.nodes)]
        out += [f"state only in {theirs}: {n}" for n in sorted(other.nodes - self.nodes)]
        out += [f"edge only in {mine}: {e}" for e in sorted((self.edges - other.edges).elements())]
        out += [f"edge only in {theirs}: {e}" for e in sorted((other.edges - self.edges).elements())]
        return out


def lines(label: str) -> tuple[str, ...]:
    """A label's lines, however DOT or SVG breaks them (newline, \\n, \\l, \\r)."""
    return tuple(part.strip() for part in re.split(r"\n|\\[nlr]", label) if part.strip())


_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|(?P<tok>"(?:[^"\\]|\\.)*"|->|[\[\]{};=,]|[^\s\[\]{};=,"]+)', re.S)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match is not None, f"not DOT at {text[pos:pos + 40]!r}"
        if match.group("tok") is not None:
            out.append(match.group("tok"))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return token[1:-1].replace("\\\n", "").replace('\\"', '"')
    return token


def parse_dot(text: str) -> Drawing:
    """The graph of the DOT that `transitions` and the graphviz package write (statements
    of nodes, edges and attributes; no subgraphs)."""
    toks = _tokens(text)
    i = toks.index("{") + 1
    graph: dict[str, str] = {}
    nodes: dict[str, str] = {}
    edges: Counter[tuple[str, str, tuple[str, ...]]] = Counter()

    def attributes(i: int) -> tuple[dict[str, str], int]:
        attrs: dict[str, str] = {}
        if i < len(toks) and toks[i] == "[":
            i += 1
            while toks[i] != "]":
                if toks[i] in (",", ";"):
                    i += 1
                    continue
                assert toks[i + 1] == "=", f"attribute without a value near {toks[i:i + 3]}"
                attrs[_unquote(toks[i])] = _unquote(toks[i + 2])
                i += 3
            i += 1
        return attrs, i

    while toks[i] != "}":
        token = toks[i]
        assert token != "{" and token.lower() != "subgraph", "subgraphs are not expected here"
        if token in (";", ","):
            i += 1
        elif token in ("graph", "node", "edge") and toks[i + 1] == "[":
            attrs, i = attributes(i + 1)
            if token == "graph":
                graph.update(attrs)
        elif toks[i + 1] == "=":
            graph[_unquote(token)] = _unquote(toks[i + 2])
            i += 3
        elif toks[i + 1] == "->":
            chain = [_unquote(token)]
            i += 1
            while toks[i] == "->":
                chain.append(_unquote(toks[i + 1]))
                i += 2
            attrs, i = attributes(i)
            for source, destination in zip(chain, chain[1:]):
                nodes.setdefault(source, source)
                nodes.setdefault(destination, destination)
                edges[(source, destination, lines(attrs.get("label", "")))] += 1
        else:
            name = _unquote(token)
            attrs, i = attributes(i + 1)
            nodes[name] = attrs.get("label", nodes.get(name, name))
    return Drawing(lines(graph.get("label", "")), frozenset((n, lines(label)) for n, label in nodes.items()), edges)


def parse_svg(text: str) -> Drawing:
    """The graph graphviz drew: the <title> of each node and edge group, and its texts."""
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(text)
    top = root.find("svg:g", ns)
    assert top is not None, "no graph group in the SVG"

    def texts(group: ET.Element) -> tuple[str, ...]:
        return tuple(t.text.strip() for t in group.findall("svg:text", ns) if t.text and t.text.strip())

    nodes, edges = set(), Counter()
    for group in top.iter("{http://www.w3.org/2000/svg}g"):
        kind, title = group.get("class"), group.findtext("svg:title", default="", namespaces=ns)
        if kind == "node":
            nodes.add((title, texts(group)))
        elif kind == "edge":
            source, destination = title.split("->")
            edges[(source, destination, texts(group))] += 1
    return Drawing(texts(top), frozenset(nodes), edges)


def live() -> dict[str, Drawing]:
    return {name: parse_dot(graph.source) for name, graph in graphs().items()}


# ----------------------------------------------------------------- the committed drawings


def test_committed_sources_are_the_live_tables():
    """docs/diagrams/NAME.gv must be re-rendered (make diagrams) when a table changes."""
    for name, drawing in live().items():
        committed = COMMITTED / f"{name}.gv"
        assert committed.exists(), f"docs/diagrams/{name}.gv is missing: run make diagrams"
        differences = parse_dot(committed.read_text()).differences(drawing, "the committed .gv", "the live tables")
        assert not differences, f"docs/diagrams/{name}.gv is stale (make diagrams):\n" + "\n".join(differences)


def test_committed_images_draw_the_committed_sources():
    for name in live():
        source = parse_dot((COMMITTED / f"{name}.gv").read_text())
        image = parse_svg((COMMITTED / f"{name}.svg").read_text())
        differences = image.differences(source, f"{name}.svg", f"{name}.gv")
        assert not differences, f"docs/diagrams/{name}.svg does not draw {name}.gv (make diagrams):\n" + "\n".join(
            differences
        )


def test_the_comparison_sees_a_changed_label_an_edge_and_a_state():
    """The comparison is not vacuous: a table change shows as a difference."""
    role = live()["role"]
    source = (COMMITTED / "role.gv").read_text()
    assert parse_dot(source).differences(role) == []
    assert parse_dot(source.replace("3. TakeEpoch", "3. TakeEpochLater", 1)).differences(role)
    assert parse_dot(source.replace("FAULT -> DOWN", "FAULT -> SYNCING", 1)).differences(role)
    assert parse_dot(source.replace("BACKUP [label=", "STANDBY [label=", 1)).differences(role)
    assert len(role.edges) > 10 and len(role.nodes) == len(Role)


# ----------------------------------------------------------------- rendering


def test_gv_format_writes_the_sources_without_dot(tmp_path: Path):
    assert main(["diagram", "--format", "gv", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["role.gv", "sync_receiver.gv", "sync_sender.gv"]
    assert parse_dot((tmp_path / "role.gv").read_text()) == live()["role"]


@needs_dot
def test_diagrams_render_from_the_live_tables(tmp_path: Path):
    assert main(["diagram", "--out", str(tmp_path)]) == 0
    role = (tmp_path / "role.svg").read_text()
    sender = (tmp_path / "sync_sender.svg").read_text()
    receiver = (tmp_path / "sync_receiver.svg").read_text()
    assert all(state.name in role for state in Role)
    assert all(trigger in role for trigger in TRIGGERS)
    assert "6. BulkSendToPeers" in role  # actions in order on the promote edge
    assert all(mode.name in sender for mode in SenderMode) and all(r.trigger in sender for r in SENDER_TABLE)
    assert all(mode.name in receiver for mode in ReceiverMode) and all(r.trigger in receiver for r in RECEIVER_TABLE)
    assert "RecvNack = on_nack" in sender and "RecvState = on_state" in receiver
    for name, drawing in live().items():  # what is drawn is the graph of the source beside it
        assert parse_svg((tmp_path / f"{name}.svg").read_text()).differences(drawing) == []
        assert parse_dot((tmp_path / f"{name}.gv").read_text()) == drawing


@needs_dot
def test_png(tmp_path: Path):
    assert main(["diagram", "--format", "png", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "role.png").read_bytes().startswith(b"\x89PNG")
