"""Random walks of a Python mirror of a spec (model.py for sync_protocol.tla,
active_active.py for active_active.tla): the behaviours the mirror tests check, and
TLC replays.

A mirror is a module with ``Init(C)``, ``steps(s, C)`` (Next: every enabled action with
every choice and its successor), ``violated(s, C)`` and ``violated_step(s, t, C)``.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

Walk = list[tuple[str, tuple, Any]]


def random_walk(spec: ModuleType, C: Any, seed: int, length: int) -> Walk:
    """A random behaviour: Init, then an enabled action of Next chosen uniformly by
    name, then one of its choices. Every step keeps every invariant and action
    property. Deterministic for a seed (choices are sorted, not in hash order)."""
    rng = random.Random(seed)
    s = spec.Init(C)
    out: Walk = []
    for _ in range(length):
        enabled: dict[str, list[tuple[tuple, Any]]] = {}
        for name, args, t in spec.steps(s, C):
            enabled.setdefault(name, []).append((args, t))
        if not enabled:
            break
        name = rng.choice(sorted(enabled))
        args, t = rng.choice(sorted(enabled[name], key=lambda x: repr(x[0])))
        assert not spec.violated(t, C), (seed, len(out), name, args, spec.violated(t, C))
        assert not spec.violated_step(s, t, C), (seed, len(out), name, args, spec.violated_step(s, t, C))
        out.append((name, args, t))
        s = t
    return out


def assert_tlc_accepts(path: Any, timeout: float = 600) -> None:
    """TLC replays the trace at ``path`` (snep spec trace-check) to its end."""
    from snep.lab.tracecheck import check_trace

    verdict = check_trace(path, timeout=timeout)
    assert verdict.ok, verdict.message + "\n" + verdict.output[-3000:]
