"""The import graph keeps the layers (docs/architecture.md): the core imports nothing
above it, the product never imports the lab, and no modules import each other in a
circle. Imports are read from the source (every ``import``, also inside functions,
except those under ``if TYPE_CHECKING:``), so a lazy import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "snep"

#: the sans-I/O core and the values it speaks
CORE = ("snep.entry", "snep.cache", "snep.level", "snep.errors", "snep.paths", "snep.wire", "snep.fsm")
#: what is not part of a node
LAB = ("snep.lab",)
#: the command line may import everything (it is the top); nothing imports it
TOP = ("snep.cli", "snep.cmd", "snep.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str) -> set[str]:
    """The snep modules ``path`` imports (``from snep.x import y`` names snep.x.y when
    that is a module, else snep.x)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("snep"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("snep"):
                    for alias in child.names:
                        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read() -> None:
    assert "snep.fsm.node" in GRAPH and "snep.fsm.sender" in GRAPH["snep.fsm.node"]
    assert "snep.lab.sim" in GRAPH and "snep.fsm.driver" in GRAPH["snep.lab.sim"]


def test_the_core_imports_nothing_above_it() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if within(name, CORE)
        for target in targets
        if not within(target, CORE)
    )
    assert not bad, "\n".join(bad)


def test_the_product_never_imports_the_lab_or_the_command_line() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if not within(name, LAB + TOP)
        for target in targets
        if within(target, LAB + TOP)
    )
    assert not bad, "\n".join(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    found = cycles(GRAPH)
    assert not found, f"import circles: {found}"


@pytest.mark.parametrize("package", ["snep.wire", "snep.fsm"])
def test_the_core_does_no_io(package: str) -> None:
    """Sans-I/O: no sockets, clocks, threads, subprocesses or asyncio in the core."""
    forbidden = {"socket", "time", "asyncio", "threading", "subprocess", "select", "selectors"}
    bad = []
    for name, path in MODULES.items():
        if not within(name, (package,)):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad += [f"{name}: import {a.name}" for a in node.names if a.name.split(".")[0] in forbidden]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in forbidden:
                bad.append(f"{name}: from {node.module} import ...")
    assert not bad, "\n".join(bad)
