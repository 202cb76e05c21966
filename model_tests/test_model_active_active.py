"""The Python mirror of spec/active_active.tla: random walks of Next keep every
invariant and action property; (with TLC) some walks are behaviours of the spec itself
(spec/AATrace.tla), action for action; the mirror's defer release agrees with
snep.fsm.defer's DeferQueue (a differential Hypothesis test); and the faults the
spec's mutants plant, planted in the mirror, break the properties there too.

The walks choose an enabled action uniformly by name, then one of its choices, and
the walks that TLC checks are asserted to take every action and reach every
reachability check of the spec (a pass then says something about each).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_tests import active_active as A
from model_tests.test_model_spec import spec_constants
from model_tests.walks import assert_tlc_accepts, random_walk
from snep.fsm.defer import DeferParams, DeferQueue, FailPolicy, Reason, Verdict

needs_tlc = pytest.mark.skipif(
    not os.environ.get("TLA2TOOLS_JAR"), reason="TLA2TOOLS_JAR is not set: TLC is not available"
)

CONFIGS: dict[str, A.Consts] = {
    "2-open": A.Consts(Node=(1, 2), ConnGroups=(1, 2), MaxVersion=3, MaxTerm=6, MaxFail=3),
    "2-closed": A.Consts(Node=(1, 2), ConnGroups=(1, 2), MaxVersion=3, MaxTerm=6, MaxFail=3, FailOpen=False),
    "3-open": A.Consts(Node=(1, 2, 3), ConnGroups=(1, 2), ConnPerGroup=2, MaxVersion=3, MaxTerm=6, MaxFail=3),
    "3-closed": A.Consts(Node=(1, 2, 3), ConnGroups=(1, 3), MaxVersion=2, MaxTerm=6, MaxFail=4, FailOpen=False),
}

Walk = list[tuple[str, tuple, A.State]]


def walk(C: A.Consts, seed: int, length: int) -> Walk:
    """A random behaviour of the mirror (model_tests.walks), every step checked."""
    return random_walk(A, C, seed, length)


def taken(C: A.Consts, w: Walk) -> Counter[str]:
    """The actions a walk took, and "(reached X)" for each reachability check X it
    reached."""
    counts: Counter[str] = Counter(name for name, _args, _t in w)
    reached = {check for _n, _a, t in w for check, holds in A.REACHABILITY.items() if not holds(t, C)}
    counts.update(f"(reached {name.removesuffix('NotReached')})" for name in reached)
    return counts


MUST_TAKE = set(A.ACTIONS) | {f"(reached {name.removesuffix('NotReached')})" for name in A.REACHABILITY}
LENGTH = 120
TLC_WALKS = [(config, seed) for config in CONFIGS for seed in (1, 2)] + [("3-open", 5)]  # 5: a bound's loss


def return_home() -> tuple[A.Consts, Walk]:
    """Written by hand (random walks rarely reach it): node 1 fails, node 2 takes its
    group over and opens a connection in it (no live peer: released at once), node 1
    returns, gets both groups' dumps, node 2 resigns group 1, node 1 is elected (term 3)
    and holds the connection."""
    C = CONFIGS["2-open"]
    s, out = A.Init(C), []
    for name, *args in [("Fail", 1), ("Elect", 2, 1), ("ConnNew", 2, (1, 1)), ("DeferRelease", 2, (1, 1)),
                        ("Recover", 1), ("SendDump", 2, 1, 1), ("SendDump", 2, 1, 2), ("RecvDump", 1, 2),
                        ("RecvDump", 1, 2), ("Resign", 2, 1), ("Elect", 1, 1)]:  # fmt: skip
        t = A.ACTIONS[name](s, C, *args)
        assert t is not None, f"{name}{args} is not enabled"
        assert not A.violated(t, C) and not A.violated_step(s, t, C), (name, args)
        out.append((name, tuple(args), t))
        s = t
    assert not A.ReturnNotReached(s, C) and s.claim[1][1] == (3, 1)
    return C, out


def test_random_walks_keep_every_invariant() -> None:
    total: Counter[str] = Counter()
    for C in CONFIGS.values():
        for seed in range(10, 40):
            total += taken(C, walk(C, seed, LENGTH))
    total += taken(*return_home())
    assert MUST_TAKE <= set(total), sorted(MUST_TAKE - set(total))


def test_the_walks_tlc_checks_take_every_action() -> None:
    total: Counter[str] = Counter()
    for config, seed in TLC_WALKS:
        C = CONFIGS[config]
        total += taken(C, walk(C, seed, LENGTH))
    total += taken(*return_home())
    missing = MUST_TAKE - set(total)
    assert not missing, f"never taken by the TLC-checked walks: {sorted(missing)}"


def write_walk(path: Path, C: A.Consts, w: Walk) -> Path:
    """The walk as a trace for spec/AATrace.tla (checked from the spec's own Init)."""
    log = [{"action": name, "args": [A._json(a) for a in args], "state": t.as_json()} for name, args, t in w]
    consts = {"Node": list(C.Node), "ConnGroups": list(C.ConnGroups), "ConnPerGroup": C.ConnPerGroup,
              "MaxVersion": C.MaxVersion, "MaxTerm": C.MaxTerm, "MaxFail": C.MaxFail, "FailOpen": C.FailOpen}
    path.write_text(json.dumps({"spec": "active_active", "consts": consts, "log": log}))
    return path


def test_the_trace_configuration_binds_every_constant_of_the_spec(tmp_path: Path) -> None:
    from snep.lab.tracecheck import AA_CONSTANTS, SPECS, trace_config

    names = spec_constants(Path(__file__).resolve().parents[1] / "spec" / "active_active.tla")
    assert list(AA_CONSTANTS) == names
    data = json.loads(write_walk(tmp_path / "w.json", CONFIGS["2-open"], []).read_text())
    config = trace_config(data["consts"], tmp_path / "w.json", SPECS[data["spec"]])
    assert all(f"    {name} = " in config for name in names)


@pytest.mark.tlc
@needs_tlc
@pytest.mark.parametrize("config, seed", TLC_WALKS)
def test_tlc_accepts_the_mirror_s_walks(tmp_path: Path, config: str, seed: int) -> None:
    C = CONFIGS[config]
    assert_tlc_accepts(write_walk(tmp_path / f"aa-walk-{config}-{seed}.json", C, walk(C, seed, LENGTH)))


@pytest.mark.tlc
@needs_tlc
def test_tlc_accepts_the_return_home(tmp_path: Path) -> None:
    assert_tlc_accepts(write_walk(tmp_path / "return.json", *return_home()), timeout=300)


@pytest.mark.tlc
@needs_tlc
def test_tlc_rejects_a_step_the_spec_does_not_allow(tmp_path: Path) -> None:
    """The trace check is not vacuous: a walk whose DeferRelease happens before the
    peer's ACK (the mirror with release_before_ack planted) is not a behaviour."""
    from snep.lab.tracecheck import check_trace

    C = CONFIGS["2-open"]
    s = A.Init(C)
    t = A.ConnNew(s, C, 1, (1, 1))
    assert t is not None
    early = t.set(held=A.upd(t.held, (1, 1), A.NoHold), released=A.upd(t.released, (1, 1), "acked"))
    w: Walk = [("ConnNew", (1, (1, 1)), t), ("DeferRelease", (1, (1, 1)), early)]
    verdict = check_trace(write_walk(tmp_path / "bad.json", C, w), timeout=300)
    assert not verdict.ok and "not a step" in verdict.message, verdict.message


# ---------------------------------------------------------------------------
# The spec's mutants, planted in the mirror
# ---------------------------------------------------------------------------


def first_violation(C: A.Consts, seeds: range, length: int = LENGTH) -> set[str]:
    """The properties the first violating step of some walk breaks (empty: none)."""
    for seed in seeds:
        rng = random.Random(seed)
        s = A.Init(C)
        for _ in range(length):
            options = sorted(((name, args, t) for name, args, t in A.steps(s, C)), key=lambda x: (x[0], repr(x[1])))
            if not options:
                break
            _name, _args, t = rng.choice(options)
            broken = set(A.violated(t, C)) | set(A.violated_step(s, t, C))
            if broken:
                return broken
            s = t
    return set()


def test_release_before_ack_planted_in_the_mirror_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "DeferReleasable", lambda s, C, n, c: s.held[c].at == n)
    assert "DeferReleasedOnlyWhenHeld" in first_violation(CONFIGS["2-open"], range(200))


def test_take_back_unsynced_planted_in_the_mirror_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    ready = A.Ready
    monkeypatch.setattr(A, "Ready", lambda s, C, n: s.alive[n] if n == 1 else ready(s, C, n))  # home 1 never waits
    C = A.Consts(Node=(1, 2), ConnGroups=(1,), MaxVersion=1, MaxTerm=4, MaxFail=1)
    assert "NoAckedStateLostOnOwnerFailure" in first_violation(C, range(2000), 20)


# ---------------------------------------------------------------------------
# The mirror's defer against snep.fsm.defer.DeferQueue (differential)
# ---------------------------------------------------------------------------

OWNER = 1
DIFF = A.Consts(Node=(1, 2, 3, 4), ConnGroups=(1,), ConnPerGroup=4, MaxVersion=4, MaxTerm=3, MaxFail=6)
BOUND = 1.0

events = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(1, DIFF.ConnPerGroup)),
        st.tuples(st.just("deliver"), st.sampled_from(DIFF.Node[1:])),
        st.tuples(st.just("fail"), st.sampled_from(DIFF.Node[1:])),
        st.tuples(st.just("recover"), st.sampled_from(DIFF.Node[1:])),
        st.tuples(st.just("bound"), st.integers(1, DIFF.ConnPerGroup)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(events, st.sampled_from(FailPolicy))
def test_defer_queue_releases_what_the_spec_s_defer_releases(script: list[tuple[str, int]], fail: FailPolicy) -> None:
    """Owner node 1 holds new connections' first packets; peers acknowledge (their
    STATE received, their ACK back), fail, return; bounds pass. After every event the
    packets DeferQueue released on acknowledgements (ACKED, PEER_GONE, NO_PEERS) are
    exactly the connections the spec's DeferRelease is enabled for, and its bound
    releases are exactly the spec's DeferBound steps, with the fail policy's verdict."""
    C = A.Consts(**{**DIFF.__dict__, "FailOpen": fail is FailPolicy.OPEN})
    s = A.Init(C)
    q = DeferQueue(DeferParams(bound=BOUND, fail=fail, max_held=64))
    now, packet, arrival, ids = 0.0, 0, {}, {}
    for kind, x in script:
        now += 0.001
        out = []
        if kind == "new":
            c = (1, x)
            t = A.ConnNew(s, C, OWNER, c)
            if t is None:
                continue
            packet += 1
            out = q.hold(packet, c, now, A.LivePeers(s, C, OWNER))
            ids[packet], arrival[c] = c, now
            s = t
        elif kind == "deliver":  # the peer applies the head frame, its ACK comes back
            m = x
            t = A.RecvState(s, C, m, OWNER)
            if t is None:
                continue
            s = t
            while s.chan[m][OWNER]:
                # the runtime gives DeferQueue the ACK of the frame that carried the held
                # state (not of a DESTROY or an older incarnation's frame of the same key)
                ack = s.chan[m][OWNER][0]
                carried = s.held[ack.c].at == OWNER and s.held[ack.c].ver == ack.v
                s = A.RecvAck(s, C, OWNER, m)
                if carried:
                    out += q.ack(ack.c, m, now)
        elif kind == "fail":
            t = A.Fail(s, C, x)
            if t is None:
                continue
            s = t
            out = q.peer_down(x, now)
        elif kind == "recover":
            t = A.Recover(s, C, x)
            if t is None:
                continue
            s = t
        elif kind == "bound":
            c = (1, x)
            if s.held[c].at != OWNER:
                continue
            now = max(now, arrival[c] + BOUND)
            out = q.expire(now)
            bounded = {ids[r.packet_id] for r in out}
            assert bounded == {b for b in C.Conn if s.held[b].at == OWNER and arrival[b] + BOUND <= now}
            assert c in bounded and all(r.reason is Reason.BOUND and r.verdict is fail.verdict for r in out)
            for b in sorted(bounded):
                s = A.DeferBound(s, C, OWNER, b)
            out = []
        released = {ids[r.packet_id] for r in out}
        assert all(r.verdict is Verdict.ACCEPT for r in out)
        assert released == {c for c in C.Conn if A.DeferReleasable(s, C, OWNER, c)}, (kind, x)
        for c in sorted(released):
            t = A.DeferRelease(s, C, OWNER, c)
            assert t is not None and not A.violated_step(s, t, C)
            s = t
    assert len(q) == sum(1 for c in C.Conn if s.held[c].at == OWNER)
