"""Every action of spec/sync_protocol.tla's Next has a Python counterpart, and back.

The action names are parsed out of the spec itself: starting from ``Next``, every
operator it refers to is followed; an operator whose body primes a variable (``x'``)
or says UNCHANGED is an action, one that does neither is a grouping (``Environment``,
``Protocol``) and is followed further. The code declares its counterparts with ``@spec_action`` /
``spec_map.register`` (snep.fsm.spec_map). spec/README.md holds the same table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from snep.lab import spec_table

SPEC = Path(__file__).resolve().parent.parent / "spec" / "sync_protocol.tla"

_DEFINITION = re.compile(r"^([A-Za-z_]\w*)\s*(\([^)]*\))?\s*==", re.MULTILINE)
_IDENT = re.compile(r"\b([A-Za-z_]\w*)\b")


def _strip_comments(text: str) -> str:
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.DOTALL)
    return re.sub(r"\\\*[^\n]*", " ", text)


def definitions(text: str) -> dict[str, str]:
    """Top-level operator definitions: name -> body (up to the next one)."""
    text = _strip_comments(text)
    text = text.split("\n====")[0]
    found = list(_DEFINITION.finditer(text))
    bodies = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        bodies[match.group(1)] = text[match.end() : end]
    return bodies


def _is_action(body: str) -> bool:
    """An action says what the next state is: it primes a variable or keeps some UNCHANGED."""
    return "'" in body or "UNCHANGED" in body


def next_actions(text: str) -> set[str]:
    """The actions ``Next`` is made of (groupings followed, helpers not)."""
    defs = definitions(text)
    if "Next" not in defs:
        raise AssertionError("spec has no Next definition")
    actions: set[str] = set()
    seen = {"Next"}
    todo = ["Next"]
    while todo:
        body = defs[todo.pop()]
        for name in _IDENT.findall(body):
            if name in seen or name not in defs:
                continue
            seen.add(name)
            if _is_action(defs[name]):
                actions.add(name)
            else:
                todo.append(name)
    return actions


def test_parser_finds_actions_and_skips_groupings():
    spec = """
---- MODULE m ----
VARIABLE x
Helper(a) == a + 1
Inc == x' = Helper(x)   \\* an action
Dec(n) == x' = x - n
Keep == UNCHANGED x
Group == Inc \\/ \\E n \\in {1} : Dec(n) \\/ Keep
Next == Group
Spec == Init /\\ [][Next]_x
====
"""
    assert next_actions(spec) == {"Inc", "Dec", "Keep"}


@pytest.fixture(scope="module")
def spec_actions() -> set[str]:
    assert SPEC.exists(), f"{SPEC} is missing: the spec is the source of truth"
    actions = next_actions(SPEC.read_text())
    assert len(actions) >= 10, f"suspiciously few actions parsed: {sorted(actions)}"
    return actions


@pytest.fixture(scope="module")
def registry() -> dict[str, list[str]]:
    return spec_table.load_all()


def test_every_spec_action_has_a_counterpart(spec_actions, registry):
    missing = sorted(spec_actions - set(registry))
    assert not missing, f"spec actions without a Python counterpart: {missing}"


def test_every_counterpart_is_a_spec_action(spec_actions, registry):
    extra = {action: registry[action] for action in sorted(set(registry) - spec_actions)}
    assert not extra, f"registered counterparts of actions the spec's Next lacks: {extra}"


def test_counterparts_exist(registry):
    """Every registered name resolves to a real attribute (no table of dead names)."""
    import snep.fsm.channel as channel_module
    import snep.fsm.node as node_module
    import snep.fsm.receiver as receiver_module
    import snep.fsm.role as role_module
    import snep.fsm.sender as sender_module
    import snep.kernel.memory as memory_module
    import snep.lab.sim as sim_module

    owners = {
        "SyncNode": node_module.SyncNode,
        "Channel": channel_module.Channel,
        "SyncSender": sender_module.SyncSender,
        "SyncReceiver": receiver_module.SyncReceiver,
        "RoleMachine": role_module.RoleMachine,
        "Simulation": sim_module.Simulation,
        "SimNetwork": sim_module.SimNetwork,
        "MemoryKernel": memory_module.MemoryKernel,
    }
    for action, names in registry.items():
        for qualname in names:
            owner, _, attribute = qualname.partition(".")
            assert owner in owners, f"{action}: unknown owner in {qualname}"
            assert callable(getattr(owners[owner], attribute, None)), f"{action}: {qualname} does not exist"


def test_readme_table_names_every_action(spec_actions):
    """spec/README.md (the spec engineer's) lists each action in its table."""
    readme = SPEC.parent / "README.md"
    if not readme.exists():
        pytest.fail("spec/README.md is missing")
    text = readme.read_text()
    missing = sorted(a for a in spec_actions if not re.search(rf"\b{a}\b", text))
    assert not missing, f"spec/README.md does not mention: {missing}"


def test_the_architecture_docs_table_is_the_registry(registry):
    """docs/architecture.md lists where each spec action lives: the same as the code says."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", doc, re.MULTILINE))
    shown = {action: sorted(re.findall(r"`([\w.]+)`", cell)) for action, cell in rows.items()}
    assert shown == {action: sorted(names) for action, names in registry.items()}
