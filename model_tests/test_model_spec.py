"""The Python mirror of the spec on its own: random walks of Next keep every invariant
and action property, and (with TLC) the walks are behaviours of
spec/sync_protocol.tla itself, which checks every action of model.py against the
.tla file, action for action (the implementation-driven traces of test_trace.py
never take most of them: Resign, Reassert, Capture, Replay, Reject, Bind ...).

A test that never takes an action proves nothing about it: the walks choose an
enabled action uniformly by name (then one of its choices), with budgets for every
fault, both meanings of SplitBrain, 2 and 3 nodes, the three levels and a network
small enough to overflow; and the walks that TLC checks are asserted to take every
action of Next, and every branch that has no name of its own (Retake, an overflow).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from model_tests import model as M
from model_tests.walks import random_walk

needs_tlc = pytest.mark.skipif(
    not os.environ.get("TLA2TOOLS_JAR"), reason="TLA2TOOLS_JAR is not set: TLC is not available"
)

BUDGETS = dict(MaxVersion=3, MaxTerm=4, QueueBound=2, MaxFail=2, MaxHA=2, MaxCut=2, MaxLoss=2, MaxDup=2,
               MaxReplay=2, MaxInFlight=12)  # fmt: skip


def consts(nodes: int, level: str = "strong", split: bool = True, **more: Any) -> M.Consts:
    return M.Consts(Node=tuple(range(1, nodes + 1)), Conn=("c0", "c1"), Level=level, SplitBrain=split,
                    **{**BUDGETS, **more})  # fmt: skip


# The configurations the walks run in: (name, constants). "flood": a network of 5
# messages, so that sends overflow (Put's other branch).
CONFIGS: dict[str, M.Consts] = {
    "2-strong-split": consts(2),
    "2-strong-nosplit": consts(2, split=False),
    "3-strong-split": consts(3),
    "3-strong-nosplit": consts(3, split=False),
    "2-weak-split": consts(2, "weak"),
    "3-incremental-nosplit": consts(3, "incremental", split=False),
    "2-incremental-split": consts(2, "incremental"),
    "3-strong-flood": consts(3, MaxInFlight=5),
}

Walk = list[tuple[str, tuple, M.State]]


def walk(C: M.Consts, seed: int, length: int) -> Walk:
    """A random behaviour of the mirror (model_tests.walks), every step checked."""
    return random_walk(M, C, seed, length)


def taken(C: M.Consts, w: Walk) -> Counter[str]:
    """The actions a walk took, and the branches without a name of their own:
    "(Retake)": a primary took a term above news (HearEpoch, in Bind or RecvHello);
    "(overflow)": a send did not fit the network; "(StepDown by Bind)"; "(reached X)":
    a state of the reachability check X of the spec."""
    counts: Counter[str] = Counter()
    s = M.Init(C)
    reached = set()
    for name, _args, t in w:
        counts[name] += 1
        if name in ("Bind", "RecvHello") and any(M.IsRetake(s, t, n) for n in C.Node):
            counts["(Retake)"] += 1
        if name == "Bind" and any(s.role[n] == M.PRIMARY and t.role[n] == M.SYNCING for n in C.Node):
            counts["(StepDown by Bind)"] += 1
        if t.overflow and not s.overflow:
            counts["(overflow)"] += 1
        for check, holds in M.REACHABILITY.items():
            if not holds(t, C):
                reached.add(check)
        s = t
    counts.update(f"(reached {name.removesuffix('NotReached')})" for name in reached)
    return counts


# The walks TLC checks: (config, seed), LENGTH steps each.
TLC_WALKS = [(config, seed) for config in CONFIGS for seed in (1, 2, 4)]
LENGTH = 200
MUST_TAKE = set(M.ACTIONS) | {"(Retake)", "(overflow)", "(StepDown by Bind)"}


def test_random_walks_keep_every_invariant() -> None:
    """Many more walks than TLC checks, every invariant and action property at each step."""
    total: Counter[str] = Counter()
    for config, C in CONFIGS.items():
        for seed in range(10, 22):
            total += taken(C, walk(C, seed, LENGTH))
    assert MUST_TAKE <= set(total), sorted(MUST_TAKE - set(total))


def test_the_walks_tlc_checks_take_every_action() -> None:
    """The walks of test_tlc_accepts_the_mirror_s_walks and the scripts of
    test_tlc_accepts_the_scripts, together, take every action of Next and every
    nameless branch: a TLC pass then says something about each."""
    total: Counter[str] = Counter()
    for config, seed in TLC_WALKS:
        C = CONFIGS[config]
        total += taken(C, walk(C, seed, LENGTH))
    for script in SCRIPTS.values():
        sc = script()
        total += taken(sc.C, sc.steps)
    missing = MUST_TAKE - set(total)
    assert not missing, f"never taken by the TLC-checked walks: {sorted(missing)}"
    print("\n" + ", ".join(f"{name} {k}" for name, k in sorted(total.items())))


def _arg(a: object) -> object:
    if isinstance(a, frozenset):
        return sorted(a)
    return M._json(a)


def write_walk(path: Path, C: M.Consts, w: Walk) -> Path:
    """The walk as a trace for spec/Trace.tla. No "set" record: the first action is
    checked from the spec's own Init, so the mirror's Init is checked too."""
    log = [{"action": name, "args": [_arg(a) for a in args], "state": t.as_json()} for name, args, t in w]
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in C.__dict__.items()}
    data["NoConn"] = M.NoConn
    path.write_text(json.dumps({"consts": data, "log": log}))
    return path


SPEC = Path(__file__).resolve().parents[1] / "spec" / "sync_protocol.tla"


def spec_constants(spec: Path = SPEC) -> list[str]:
    """The names of the CONSTANTS block of a spec module (sync_protocol.tla), in its order."""
    text = spec.read_text()
    block = text[text.index("\nCONSTANTS\n") + len("\nCONSTANTS\n"): text.index("\nASSUME")]
    lines = [line.strip() for line in block.splitlines()]
    return [line.split()[0].rstrip(",") for line in lines if line and not line.startswith("\\*")]


def test_consts_and_the_trace_configuration_bind_every_constant_of_the_spec(tmp_path: Path) -> None:
    from snep.errors import SnepError
    from snep.lab.tracecheck import SPEC_CONSTANTS, trace_config

    names = spec_constants()
    assert "MaxReplay" in names and "MaxInFlight" in names
    assert list(SPEC_CONSTANTS) == names
    assert [f for f in M.Consts.__dataclass_fields__] == [n for n in names if n != "NoConn"]
    data = json.loads(write_walk(tmp_path / "w.json", CONFIGS["2-strong-split"], []).read_text())
    config = trace_config(data["consts"], tmp_path / "w.json")
    assert all(f"    {name} = " in config for name in names)
    del data["consts"]["MaxReplay"]
    with pytest.raises(SnepError, match="missing: MaxReplay"):
        trace_config(data["consts"], tmp_path / "w.json")


@pytest.mark.tlc
@needs_tlc
@pytest.mark.parametrize("config, seed", TLC_WALKS)
def test_tlc_accepts_the_mirror_s_walks(tmp_path: Path, config: str, seed: int) -> None:
    from snep.lab.tracecheck import check_trace

    C = CONFIGS[config]
    path = write_walk(tmp_path / f"walk-{config}-{seed}.json", C, walk(C, seed, LENGTH))
    verdict = check_trace(path, timeout=600)
    assert verdict.ok, verdict.message + "\n" + verdict.output[-3000:]


# ---------------------------------------------------------------------------
# Steps the random walks find rarely, spelt out (each also checked by TLC)
# ---------------------------------------------------------------------------


class Script:
    """A behaviour written by hand: each step must be enabled and keep every property."""

    def __init__(self, C: M.Consts) -> None:
        self.C, self.s, self.steps = C, M.Init(C), []

    def do(self, name: str, *args: Any) -> M.State:
        t = M.ACTIONS[name](self.s, self.C, *args)
        assert t is not None, f"{name}{args} is not enabled"
        assert not M.violated(t, self.C), (name, args, M.violated(t, self.C))
        assert not M.violated_step(self.s, t, self.C), (name, args, M.violated_step(self.s, t, self.C))
        self.steps.append((name, args, t))
        self.s = t
        return t

    def recv(self, name: str, n: int, m: int, **fields: Any) -> M.State:
        msg = next(x for x in M.Receivable(self.s, n, m, M.RECEIVE[name])
                   if all(getattr(x, k) == v for k, v in fields.items()))  # fmt: skip
        return self.do(name, n, m, msg)


def vouched_hello() -> Script:
    """Three nodes, VRRP split: node 1 primary alone; node 3 primary of a newer epoch,
    followed by node 2. The link 1-2 heals: node 2 answers 1's stale ALIVE with a HELLO
    vouching for the live primary 3 (live, not a claim): node 1 steps down, still
    keepalived's master."""
    sc = Script(consts(3, MaxTerm=4, MaxCut=3))
    sc.do("LinkDown", 1, 2)
    sc.do("LinkDown", 1, 3)
    sc.do("Promote", 1)
    sc.do("Promote", 2)
    sc.recv("RecvHello", 3, 2)
    sc.do("Demote", 2)
    sc.do("Promote", 3)
    sc.recv("RecvHello", 2, 3)
    sc.do("LinkUp", 1, 2)
    sc.do("SendAlive", 1)
    sc.recv("RecvAlive", 2, 1)
    t = sc.recv("RecvHello", 1, 2, live=True, claims=False)
    assert t.role[1] == M.SYNCING and t.master[1] and t.epoch[1] == (2, 3)
    return sc


def bind_to_a_primary() -> Script:
    """Two nodes, VRRP split: node 2 restarts and is elected alone, above node 1's
    epoch; the link heals and node 1's handshake with it (Bind: node 2 is primary)
    makes node 1 step down, still master; keepalived then resolves the two masters."""
    sc = Script(consts(2, MaxTerm=4))
    sc.do("Promote", 1)
    sc.recv("RecvHello", 2, 1)
    sc.do("LinkDown", 1, 2)
    sc.do("Fail", 2)
    sc.do("Recover", 2)
    sc.do("Promote", 2)
    sc.do("LinkUp", 1, 2)
    t = sc.do("Bind", 1, 2)
    assert t.role[1] == M.SYNCING and t.master[1] and t.epoch[1] == (2, 2)
    sc.do("Resign", 1)
    return sc


def reassert() -> Script:
    """Two nodes, VRRP split: both elected; the link heals, node 1 is fenced by node 2's
    ALIVE (a newer claim) and stays keepalived's master; node 2 resigns (two masters);
    node 1, master and hearing of no primary, takes over again (Reassert)."""
    sc = Script(consts(2))
    sc.do("Promote", 1)
    sc.recv("RecvHello", 2, 1)
    sc.do("LinkDown", 1, 2)
    sc.do("Promote", 2)
    sc.do("LinkUp", 1, 2)
    sc.do("SendAlive", 2)
    t = sc.recv("RecvAlive", 1, 2)
    assert t.role[1] == M.SYNCING and t.master[1]
    sc.do("Resign", 2)
    t = sc.do("Reassert", 1)
    assert t.role[1] == M.PRIMARY and t.epoch[1] == (3, 1) and not M.ReassertNotReached(t, sc.C)
    return sc


def retake() -> Script:
    """Two nodes, VRRP not split: node 2 is elected, its HELLO is lost, it fails; node 1
    is elected in an older epoch; node 2 returns with its newer epoch. Node 1's
    handshake with it is news, not a claim: node 1 takes a term above (Retake) and
    stays primary; node 2 follows it and is BACKUP after its dump (the Retake model's
    scenario)."""
    sc = Script(consts(2, split=False))
    sc.do("Promote", 2)
    sc.do("LoseMsg", next(iter(sc.s.msgs)))
    sc.do("Fail", 2)
    sc.do("Promote", 1)
    sc.do("Recover", 2)
    t = sc.do("Bind", 1, 2)
    assert M.IsRetake(sc.steps[-2][2], t, 1) and t.epoch[1] == (2, 1)
    sc.do("Bind", 2, 1)
    sc.do("SendBulk", 1, M.NoConn)
    t = sc.recv("RecvState", 2, 1)
    assert t.role[2] == M.BACKUP and not M.RetakeNotReached(t, sc.C)
    return sc


SCRIPTS = {"vouched_hello": vouched_hello, "bind_to_a_primary": bind_to_a_primary, "reassert": reassert,
           "retake": retake}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_scripts_keep_every_property(name: str) -> None:
    """A primary steps down when told of a primary by a HELLO vouching for a live one,
    or by the handshake with one (StepsDownOnlyForAPrimary holds: it did not before
    these were named in it); a fenced master takes over again."""
    SCRIPTS[name]()


@pytest.mark.tlc
@needs_tlc
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_tlc_accepts_the_scripts(tmp_path: Path, name: str) -> None:
    from snep.lab.tracecheck import check_trace

    sc = SCRIPTS[name]()
    verdict = check_trace(write_walk(tmp_path / f"{name}.json", sc.C, sc.steps), timeout=300)
    assert verdict.ok, verdict.message + "\n" + verdict.output[-3000:]
