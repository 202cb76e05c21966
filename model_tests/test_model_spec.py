"""The Python mirror of the spec on its own: random walks of Next keep every invariant,
and (with TLC) the walks are behaviours of spec/sync_protocol.tla itself, which checks
every action of model.py (also those the implementation-driven traces never use:
Retransmit, SendAlive, PeerTimeout, RequestResync ...) against the .tla file."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from model_tests import model as M

SMALL = M.Consts(
    Node=(1, 2, 3), Conn=("c0", "c1"), Level="strong", MaxVersion=3, MaxTerm=3, QueueBound=2,
    MaxFail=2, MaxHA=2, MaxCut=2, MaxLoss=2, MaxDup=2, SplitBrain=True,
)  # fmt: skip


def walk(C: M.Consts, seed: int, length: int) -> list[tuple[str, tuple, M.State]]:
    """A random behaviour: Init, then uniformly chosen enabled actions of Next."""
    rng = random.Random(seed)
    s = M.Init(C)
    out = []
    for _ in range(length):
        choices = list(M.steps(s, C))
        if not choices:
            break
        name, args, t = rng.choice(choices)
        assert not M.violated(t, C), (name, args, M.violated(t, C))
        assert not M.violated_step(s, t, C), (name, args, M.violated_step(s, t, C))
        out.append((name, args, t))
        s = t
    return out


@pytest.mark.parametrize("level", ["strong", "weak", "incremental"])
def test_random_walks_keep_every_invariant(level: str) -> None:
    C = M.Consts(**{**SMALL.__dict__, "Level": level})
    names = set()
    for seed in range(12):
        names |= {name for name, _, _ in walk(C, seed, 120)}
    # the walks reach deep into the protocol (not just the environment)
    assert {"Promote", "SendBulk", "RecvState", "RecvAck", "Notify"} <= names


def _arg(a: object) -> object:
    if isinstance(a, frozenset):
        return sorted(a)
    return a._asdict() if isinstance(a, M.Msg) else a


def write_walk(path: Path, C: M.Consts, seed: int, length: int) -> Path:
    log: list[dict] = [{"set": M.Init(C).as_json()}]
    for name, args, t in walk(C, seed, length):
        log.append({"action": name, "args": [_arg(a) for a in args],
                    "state": t.as_json()})  # fmt: skip
    consts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in C.__dict__.items()}
    consts["NoConn"] = M.NoConn
    path.write_text(json.dumps({"consts": consts, "log": log}))
    return path


@pytest.mark.tlc
@pytest.mark.skipif(not os.environ.get("TLA2TOOLS_JAR"), reason="TLA2TOOLS_JAR is not set: TLC is not available")
@pytest.mark.parametrize("level, seed", [("strong", 1), ("weak", 2), ("incremental", 3)])
def test_tlc_accepts_the_mirror_s_walks(tmp_path: Path, level: str, seed: int) -> None:
    from snep.lab.tracecheck import check_trace

    C = M.Consts(**{**SMALL.__dict__, "Level": level})
    path = write_walk(tmp_path / f"walk-{level}.json", C, seed, 150)
    verdict = check_trace(path, timeout=180)
    assert verdict.ok, verdict.message + "\n" + verdict.output[-3000:]
