"""``snep diagram [--format svg|png|gv] [--out DIR]``: draw the state machines.

The drawings come from the live machine objects of a SyncNode (the role machine's
table and the sync sender's and receiver's mode tables, run by `transitions`), never
from a hand-drawn copy: change a table and the diagram follows.

Each machine's DOT source (``NAME.gv``) is written next to its image: it is the
committed, comparable form of the drawing (tests/test_fsm_diagram.py compares its
graph, the states, edges and labels, with the live tables; the image's bytes depend on
the graphviz version). ``--format gv`` writes the source alone and needs no ``dot``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from snep.errors import SnepError

FORMATS = ("svg", "png", "gv")  # gv: the DOT source only


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="svg", help="image format; the DOT source NAME.gv is always written, gv writes it alone (default: svg)")
    parser.add_argument("--out", default="docs/diagrams", metavar="DIR", help="directory to write to (default: docs/diagrams)")


def graphs() -> dict[str, Any]:
    """name -> graphviz graph of each machine, from one live SyncNode."""
    from snep.fsm.node import SyncNode
    from snep.lab import spec_table

    node = SyncNode(1, [2], session=1, graph=True)  # (drawn, never run: any session)
    receiver = next(iter(node.receivers.values()))
    drawn = {
        "role": (node.role.graph(), "RoleMachine"),
        "sync_sender": (node.sender.mode.graph(), "SyncSender"),
        "sync_receiver": (receiver.mode.graph(), "SyncReceiver"),
    }
    registry = spec_table.load_all()
    result = {}
    for name, (graph, owner) in drawn.items():
        handlers = sorted(
            f"{action} = {qualname.split('.', 1)[1]}"
            for action, qualnames in registry.items()
            for qualname in qualnames
            if qualname.startswith(owner + ".")
        )
        title = graph.graph_attr.get("label", name)
        graph.attr(label=f"{title}\nspec actions: " + "; ".join(handlers), labelloc="b", fontsize="11")
        result[name] = graph
    return result


def render(out: Path, fmt: str = "svg") -> list[Path]:
    """Write each machine's DOT source (NAME.gv) and, unless ``fmt`` is gv, its image."""
    if fmt != "gv" and shutil.which("dot") is None:
        raise SnepError("graphviz's `dot` is not installed (Debian package graphviz; `make deps` installs it)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, graph in graphs().items():
        source = out / f"{name}.gv"
        source.write_text(graph.source)
        written.append(source)
        if fmt != "gv":
            path = out / f"{name}.{fmt}"
            path.write_bytes(graph.pipe(format=fmt))
            written.append(path)
    return written


def main(args: argparse.Namespace) -> int:
    for path in render(Path(args.out), args.format):
        print(path)
    return 0
