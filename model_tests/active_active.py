"""spec/active_active.tla in Python: its state, its actions, its Next, its properties.

Read it beside the .tla file: the same sections, the same names, the same order (as
model_tests/model.py mirrors sync_protocol.tla). Each action is a function
``Action(s, C, params...) -> State | None``: the successor, or None when the action is
not enabled with these parameters; :func:`steps` enumerates every enabled choice,
which is ``Next``. Every action is deterministic once its parameters are chosen (a
channel is FIFO: a receive takes its head).

Values: a connection is ``(group, i)``; a table is a dict ``conn -> version`` (0 =
absent), copied, never mutated; a channel is a tuple of :class:`Msg`; an epoch is
``(term, node)``. :meth:`State.as_json` writes what spec/AATrace.tla reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

from model_tests.model import upd, upd2  # [f EXCEPT ![k] = v], [f EXCEPT ![n][m] = v]

# ---------------------------------------------------------------------------
# 1. Constants
# ---------------------------------------------------------------------------

Conn = tuple[int, int]
Epoch = tuple[int, int]


@dataclass(frozen=True)
class Consts:
    Node: tuple[int, ...]  # node ids; node g is the home of VRRP group g
    ConnGroups: tuple[int, ...]  # the groups connections are created through
    ConnPerGroup: int = 1  # connection identities per group
    MaxVersion: int = 2  # versions 1..MaxVersion per connection
    MaxTerm: int = 3  # elections take terms 1..MaxTerm (per group)
    MaxFail: int = 1  # how many times nodes fail
    FailOpen: bool = True  # the bound's verdict: accept (True) or drop

    @property
    def Group(self) -> tuple[int, ...]:
        return self.Node

    @property
    def Conn(self) -> tuple[Conn, ...]:
        return tuple((g, i) for g in self.ConnGroups for i in range(1, self.ConnPerGroup + 1))


def GroupOf(c: Conn) -> int:
    return c[0]


NoConn: Conn = (0, 0)
NoEpoch: Epoch = (0, 0)


def EpochLT(a: Epoch, b: Epoch) -> bool:
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])


def EmptyTable(C: Consts) -> dict[Conn, int]:
    return {c: 0 for c in C.Conn}


MSG_STATE, MSG_ACK, MSG_DUMP = "STATE", "ACK", "DUMP"


class Msg(NamedTuple):
    """Every message has every field; unused: NoConn, 0. ``tab`` is a DUMP's table as
    (conn, version) pairs over every connection (hashable); a STATE or ACK has none
    (``()``: the spec's EmptyTable)."""

    type: str
    g: int
    e: Epoch
    c: Conn
    v: int
    tab: tuple[tuple[Conn, int], ...]


class Hold(NamedTuple):
    """A connection's deferred first packet: held at ``at`` (0: nothing held)."""

    at: int
    ver: int
    wait: frozenset[int]


NoHold = Hold(0, 0, frozenset())
Release = ("none", "held", "acked", "bound", "dropped", "lost")

# ---------------------------------------------------------------------------
# 2. Variables
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    alive: dict[int, bool]
    claim: dict[int, dict[int, Epoch]]  # claim[n][g]: the epoch n owns g in; NoEpoch: not
    epoch: dict[int, dict[int, Epoch]]  # newest epoch of g n has seen (persisted)
    synced: dict[int, frozenset[int]]  # groups n received a whole dump of since it came up
    kernel: dict[int, dict[Conn, int]]
    chan: dict[int, dict[int, tuple[Msg, ...]]]  # chan[a][b]: messages a -> b, in order
    held: dict[Conn, Hold]
    failures: int
    lastVer: dict[Conn, int]  # ghost
    released: dict[Conn, str]  # ghost

    def set(self, **changes: Any) -> State:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        """The state as plain JSON values (spec/AATrace.tla reads it back)."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: Any) -> Any:
    if isinstance(value, Msg):
        return {**{k: _json(v) for k, v in value._asdict().items() if k != "tab"},
                "tab": [[list(c), v] for c, v in value.tab]}  # fmt: skip
    if isinstance(value, Hold):
        return {"at": value.at, "ver": value.ver, "wait": sorted(value.wait)}
    if isinstance(value, dict):
        if value and isinstance(next(iter(value)), tuple):  # keyed by connection
            return [[list(k), _json(v)] for k, v in sorted(value.items())]
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# 3. Helpers
# ---------------------------------------------------------------------------


def Peers(C: Consts, n: int) -> tuple[int, ...]:
    return tuple(m for m in C.Node if m != n)


def LivePeers(s: State, C: Consts, n: int) -> frozenset[int]:
    return frozenset(m for m in Peers(C, n) if s.alive[m])


def Owns(s: State, n: int, g: int) -> bool:
    return s.claim[n][g] != NoEpoch


def Owners(s: State, C: Consts, g: int) -> frozenset[int]:
    return frozenset(n for n in C.Node if s.alive[n] and Owns(s, n, g))


def Ready(s: State, C: Consts, n: int) -> bool:
    return s.alive[n] and all(Owns(s, n, g) or g in s.synced[n] for g in C.Group)


def StateMsg(g: int, e: Epoch, c: Conn, v: int) -> Msg:
    return Msg(MSG_STATE, g, e, c, v, ())


def AckMsg(g: int, e: Epoch, c: Conn, v: int) -> Msg:
    return Msg(MSG_ACK, g, e, c, v, ())


def DumpMsg(s: State, C: Consts, n: int, g: int, e: Epoch) -> Msg:
    """A dump of group g: the owner's entries of that group (the others 0)."""
    tab = tuple((c, s.kernel[n][c] if GroupOf(c) == g else 0) for c in C.Conn)
    return Msg(MSG_DUMP, g, e, NoConn, 0, tab)


def SendTo(s: State, n: int, S: frozenset[int], msg: Msg) -> dict:
    return upd(s.chan, n, {b: q + (msg,) if b in S else q for b, q in s.chan[n].items()})


def Broadcast(s: State, C: Consts, n: int, c: Conn, v: int) -> dict:
    g = GroupOf(c)
    return SendTo(s, n, LivePeers(s, C, n), StateMsg(g, s.claim[n][g], c, v))


def Head1(s: State, m: int, n: int, t: str) -> bool:
    return bool(s.chan[m][n]) and s.chan[m][n][0].type == t


def Pop(s: State, m: int, n: int) -> dict:
    return upd2(s.chan, m, n, s.chan[m][n][1:])


def Stale(s: State, n: int, msg: Msg) -> bool:
    return EpochLT(msg.e, s.epoch[n][msg.g])


def Adopt(s: State, n: int, g: int, e: Epoch) -> dict[str, Any]:
    """Adopt a newer epoch of g; an older claim of n's own is fenced."""
    newer = EpochLT(s.epoch[n][g], e)
    return {
        "epoch": upd2(s.epoch, n, g, e) if newer else s.epoch,
        "claim": upd2(s.claim, n, g, NoEpoch) if EpochLT(s.claim[n][g], e) else s.claim,
    }


def Init(C: Consts) -> State:
    return State(
        alive={n: True for n in C.Node},
        claim={n: {g: (1, n) if g == n else NoEpoch for g in C.Group} for n in C.Node},
        epoch={n: {g: (1, g) for g in C.Group} for n in C.Node},
        synced={n: frozenset(C.Group) - {n} for n in C.Node},
        kernel={n: EmptyTable(C) for n in C.Node},
        chan={a: {b: () for b in C.Node} for a in C.Node},
        held={c: NoHold for c in C.Conn},
        failures=0,
        lastVer={c: 0 for c in C.Conn},
        released={c: "none" for c in C.Conn},
    )


# ---------------------------------------------------------------------------
# 4. The HA manager and failures
# ---------------------------------------------------------------------------


def Fail(s: State, C: Consts, n: int) -> State | None:
    if not (s.alive[n] and s.failures < C.MaxFail):
        return None
    return s.set(
        failures=s.failures + 1,
        alive=upd(s.alive, n, False),
        claim=upd(s.claim, n, {g: NoEpoch for g in C.Group}),
        synced=upd(s.synced, n, frozenset()),
        kernel=upd(s.kernel, n, EmptyTable(C)),
        chan={a: {b: () if n in (a, b) else q for b, q in row.items()} for a, row in s.chan.items()},
        held={c: NoHold if h.at == n else h._replace(wait=h.wait - {n}) for c, h in s.held.items()},
        released={c: "lost" if s.held[c].at == n or (r == "acked" and not any(
            s.kernel[m][c] for m in LivePeers(s, C, n))) else r for c, r in s.released.items()},
    )


def Recover(s: State, C: Consts, n: int) -> State | None:
    if s.alive[n]:
        return None
    return s.set(alive=upd(s.alive, n, True))


def Drained(s: State, C: Consts, n: int, g: int) -> bool:
    return all(msg.g != g for m in C.Node for msg in s.chan[m][n])


def Elect(s: State, C: Consts, n: int, g: int) -> State | None:
    if not (
        s.alive[n] and (Ready(s, C, n) or not any(Ready(s, C, m) for m in C.Node)) and not Owns(s, n, g) and s.epoch[n][g][0] < C.MaxTerm
        and not Owners(s, C, g) and (n == g or not Ready(s, C, g)) and Drained(s, C, n, g)
    ):  # fmt: skip
        return None
    e = (s.epoch[n][g][0] + 1, n)
    dump = DumpMsg(s, C, n, g, e)
    cold = not Ready(s, C, n)  # ghost: a cold start loses the acknowledged connections of g it lacks
    released = {c: "lost" if cold and GroupOf(c) == g and r == "acked" and s.kernel[n][c] == 0 else r
                for c, r in s.released.items()}  # fmt: skip
    return s.set(claim=upd2(s.claim, n, g, e), epoch=upd2(s.epoch, n, g, e),
                 chan=SendTo(s, n, LivePeers(s, C, n), dump), released=released)


def Resign(s: State, C: Consts, n: int, g: int) -> State | None:
    if not (s.alive[n] and Owns(s, n, g) and n != g and Ready(s, C, g)):
        return None
    return s.set(claim=upd2(s.claim, n, g, NoEpoch))


# ---------------------------------------------------------------------------
# 5. Traffic on the owner, and defer
# ---------------------------------------------------------------------------


def _owner_traffic(s: State, n: int, c: Conn) -> bool:
    return s.alive[n] and Owns(s, n, GroupOf(c))


def ConnNew(s: State, C: Consts, n: int, c: Conn) -> State | None:
    if not (_owner_traffic(s, n, c) and s.kernel[n][c] == 0 and s.held[c] == NoHold
            and s.lastVer[c] < C.MaxVersion):  # fmt: skip
        return None
    v = s.lastVer[c] + 1
    return s.set(
        kernel=upd2(s.kernel, n, c, v),
        lastVer=upd(s.lastVer, c, v),
        held=upd(s.held, c, Hold(n, v, LivePeers(s, C, n))),
        released=upd(s.released, c, "held"),
        chan=Broadcast(s, C, n, c, v),
    )


def ConnUpdate(s: State, C: Consts, n: int, c: Conn) -> State | None:
    if not (_owner_traffic(s, n, c) and s.kernel[n][c] != 0 and s.held[c] == NoHold
            and s.lastVer[c] < C.MaxVersion):  # fmt: skip
        return None
    v = s.lastVer[c] + 1
    return s.set(kernel=upd2(s.kernel, n, c, v), lastVer=upd(s.lastVer, c, v), chan=Broadcast(s, C, n, c, v))


def ConnDestroy(s: State, C: Consts, n: int, c: Conn) -> State | None:
    if not (_owner_traffic(s, n, c) and s.kernel[n][c] != 0 and s.held[c] == NoHold):
        return None
    return s.set(kernel=upd2(s.kernel, n, c, 0), released=upd(s.released, c, "none"),
                 chan=Broadcast(s, C, n, c, 0))  # fmt: skip


def DeferReleasable(s: State, C: Consts, n: int, c: Conn) -> bool:
    """The release condition: held at n, waiting for no peer (snep.fsm.defer's ACKED,
    PEER_GONE and NO_PEERS releases; model_tests/test_model_active_active.py compares
    them)."""
    return s.held[c].at == n and not s.held[c].wait


def DeferRelease(s: State, C: Consts, n: int, c: Conn) -> State | None:
    if not DeferReleasable(s, C, n, c):
        return None
    return s.set(held=upd(s.held, c, NoHold), released=upd(s.released, c, "acked"))


def DeferBound(s: State, C: Consts, n: int, c: Conn) -> State | None:
    if s.held[c].at != n:
        return None
    t = s.set(held=upd(s.held, c, NoHold))
    if C.FailOpen:
        return t.set(released=upd(s.released, c, "bound"))
    return t.set(released=upd(s.released, c, "dropped"), kernel=upd2(s.kernel, n, c, 0),
                 chan=Broadcast(s, C, n, c, 0))  # fmt: skip


# ---------------------------------------------------------------------------
# 6. The stream
# ---------------------------------------------------------------------------


def SendDump(s: State, C: Consts, n: int, m: int, g: int) -> State | None:
    if not (s.alive[n] and Owns(s, n, g) and m != n and s.alive[m] and g not in s.synced[m]
            and not any(x.type == MSG_DUMP and x.g == g for x in s.chan[n][m])):  # fmt: skip
        return None
    return s.set(chan=upd2(s.chan, n, m, s.chan[n][m] + (DumpMsg(s, C, n, g, s.claim[n][g]),)))


def RecvState(s: State, C: Consts, n: int, m: int) -> State | None:
    if not Head1(s, m, n, MSG_STATE):
        return None
    msg = s.chan[m][n][0]
    if Stale(s, n, msg):
        return s.set(chan=Pop(s, m, n))
    chan = Pop(s, m, n)
    chan = upd2(chan, n, m, chan[n][m] + (AckMsg(msg.g, msg.e, msg.c, msg.v),))
    return s.set(kernel=upd2(s.kernel, n, msg.c, msg.v), chan=chan, **Adopt(s, n, msg.g, msg.e))


def RecvDump(s: State, C: Consts, n: int, m: int) -> State | None:
    if not Head1(s, m, n, MSG_DUMP):
        return None
    msg = s.chan[m][n][0]
    if Stale(s, n, msg):
        return s.set(chan=Pop(s, m, n))
    tab = dict(msg.tab)
    kernel = {c: tab[c] if GroupOf(c) == msg.g else v for c, v in s.kernel[n].items()}
    return s.set(chan=Pop(s, m, n), kernel=upd(s.kernel, n, kernel),
                 synced=upd(s.synced, n, s.synced[n] | {msg.g}), **Adopt(s, n, msg.g, msg.e))  # fmt: skip


def RecvAck(s: State, C: Consts, n: int, m: int) -> State | None:
    if not Head1(s, m, n, MSG_ACK):
        return None
    msg = s.chan[m][n][0]
    h = s.held[msg.c]
    held = upd(s.held, msg.c, h._replace(wait=h.wait - {m})) if h.at == n and h.ver == msg.v else s.held
    return s.set(chan=Pop(s, m, n), held=held)


# ---------------------------------------------------------------------------
# 7. Next
# ---------------------------------------------------------------------------

Step = tuple[str, tuple[Any, ...], State]
NODE_ACTIONS = ("Fail", "Recover")
GROUP_ACTIONS = ("Elect", "Resign")
CONN_ACTIONS = ("ConnNew", "ConnUpdate", "ConnDestroy", "DeferRelease", "DeferBound")
PAIR_ACTIONS = ("RecvState", "RecvDump", "RecvAck")
ACTIONS: dict[str, Callable[..., State | None]] = {
    name: globals()[name] for name in NODE_ACTIONS + GROUP_ACTIONS + CONN_ACTIONS + PAIR_ACTIONS + ("SendDump",)
}


def params(C: Consts, name: str) -> Iterator[tuple[Any, ...]]:
    """Every choice of the action's parameters (the TLA+ existential quantifiers)."""
    N = C.Node
    if name in NODE_ACTIONS:
        yield from ((n,) for n in N)
    elif name in GROUP_ACTIONS:
        yield from ((n, g) for n in N for g in C.Group)
    elif name in CONN_ACTIONS:
        yield from ((n, c) for n in N for c in C.Conn)
    elif name in PAIR_ACTIONS:
        yield from ((n, m) for n in N for m in N)
    elif name == "SendDump":
        yield from ((n, m, g) for n in N for m in N for g in C.Group)
    else:
        raise KeyError(name)


def steps(s: State, C: Consts) -> Iterator[Step]:
    """Next: every enabled action with every choice, and its successor."""
    for name, action in ACTIONS.items():
        for args in params(C, name):
            t = action(s, C, *args)
            if t is not None:
                yield name, args, t


# ---------------------------------------------------------------------------
# 8. Properties
# ---------------------------------------------------------------------------


def TypeOK(s: State, C: Consts) -> bool:
    conns, nodes = set(C.Conn), set(C.Node)
    return (
        set(s.alive) == nodes
        and all(set(s.kernel[n]) == conns and all(0 <= v <= C.MaxVersion for v in s.kernel[n].values()) for n in nodes)
        and all(s.synced[n] <= set(C.Group) for n in nodes)
        and all(h.wait <= nodes and (h.at in nodes or h == NoHold) for h in s.held.values())
        and 0 <= s.failures <= C.MaxFail
        and all(r in Release for r in s.released.values())
        and all(0 <= e[0] <= C.MaxTerm for n in nodes for e in s.epoch[n].values())
    )  # fmt: skip


def AtMostOneOwner(s: State, C: Consts) -> bool:
    for c in C.Conn:
        g = GroupOf(c)
        owners = Owners(s, C, g)
        if len(owners) > 1 or any(s.claim[n][g][1] != n or s.claim[n][g] != s.epoch[n][g] for n in owners):
            return False
    return True


def NoAckedStateLostOnOwnerFailure(s: State, C: Consts) -> bool:
    return all(
        s.kernel[n][c] != 0
        for c in C.Conn
        for n in C.Node
        if s.released[c] == "acked" and s.alive[n] and Owns(s, n, GroupOf(c))
    )


INVARIANTS: dict[str, Callable[[State, Consts], bool]] = {
    "TypeOK": TypeOK,
    "AtMostOneOwner": AtMostOneOwner,
    "NoAckedStateLostOnOwnerFailure": NoAckedStateLostOnOwnerFailure,
}


def DeferReleasedOnlyWhenHeldStep(s: State, t: State, C: Consts) -> bool:
    for c in C.Conn:
        h = s.held[c]
        if h != NoHold and t.released[c] == "acked":
            for m in Peers(C, h.at):
                if t.alive[m] and GroupOf(c) in t.synced[m] and t.kernel[m][c] != h.ver:
                    return False
    return True


def EpochMonotonicStep(s: State, t: State, C: Consts) -> bool:
    return not any(EpochLT(t.epoch[n][g], s.epoch[n][g]) for n in C.Node for g in C.Group)


ACTION_PROPERTIES: dict[str, Callable[[State, State, Consts], bool]] = {
    "DeferReleasedOnlyWhenHeld": DeferReleasedOnlyWhenHeldStep,
    "EpochMonotonic": EpochMonotonicStep,
}


def violated(s: State, C: Consts) -> list[str]:
    return [name for name, inv in INVARIANTS.items() if not inv(s, C)]


def violated_step(s: State, t: State, C: Consts) -> list[str]:
    return [name for name, prop in ACTION_PROPERTIES.items() if not prop(s, t, C)]


# Reachability (the spec's "... not reached" checks)


def TakeoverNotReached(s: State, C: Consts) -> bool:
    return not any(
        n != g and not s.alive[g] and s.alive[n] and Owns(s, n, g)
        and any(GroupOf(c) == g and s.released[c] == "acked" and s.kernel[n][c] != 0 for c in C.Conn)
        for n in C.Node for g in C.Node
    )  # fmt: skip


def ReturnNotReached(s: State, C: Consts) -> bool:
    return not any(
        Owners(s, C, g) == {g} and s.claim[g][g][0] >= 3
        and any(GroupOf(c) == g and s.released[c] == "acked" and s.kernel[g][c] != 0 for c in C.Conn)
        for g in C.Node
    )  # fmt: skip


def BoundStateLostNotReached(s: State, C: Consts) -> bool:
    return not any(
        s.released[c] == "bound" and s.alive[n] and Owns(s, n, GroupOf(c)) and s.kernel[n][c] == 0
        for c in C.Conn for n in C.Node
    )  # fmt: skip


def BoundReleaseNotReached(s: State, C: Consts) -> bool:
    return all(r not in ("bound", "dropped") for r in s.released.values())


def AckReleaseNotReached(s: State, C: Consts) -> bool:
    return not any(
        s.released[c] == "acked" and s.alive[n] and Owns(s, n, GroupOf(c))
        and any(s.kernel[m][c] != 0 for m in LivePeers(s, C, n))
        for c in C.Conn for n in C.Node
    )  # fmt: skip


REACHABILITY: dict[str, Callable[[State, Consts], bool]] = {
    "TakeoverNotReached": TakeoverNotReached,
    "ReturnNotReached": ReturnNotReached,
    "BoundStateLostNotReached": BoundStateLostNotReached,
    "BoundReleaseNotReached": BoundReleaseNotReached,
    "AckReleaseNotReached": AckReleaseNotReached,
}
