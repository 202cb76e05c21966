"""spec/sync_protocol.tla in Python: its state, its actions, its Next, its properties.

Read it beside the .tla file: the same sections, the same names, the same order.
Each action is a function ``Action(s, C, params...) -> State | None``: the successor
state, or None when the action is not enabled with these parameters (a TLA+
``\\E msg \\in ...`` or ``\\E c \\in ...`` becomes a parameter; :func:`steps`
enumerates every enabled choice, which is ``Next``).

Values are plain and immutable enough to hash: tables are dicts ``conn -> version``
(0 = absent) that are copied, never mutated; the message bag is a dict
``Msg -> copies``; the resend queue is a tuple of :class:`Frame`. Nothing here knows
the implementation: model_tests/abstraction.py maps the implementation onto this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------
# 1. Constants
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Consts:
    Node: tuple[int, ...]
    Conn: tuple[str, ...]
    Level: str = "strong"  # "strong", "weak" or "incremental"
    MaxVersion: int = 1 << 30
    MaxTerm: int = 1 << 30
    QueueBound: int = 4
    MaxFail: int = 1 << 30
    MaxHA: int = 1 << 30
    MaxCut: int = 1 << 30
    MaxLoss: int = 1 << 30
    MaxDup: int = 1 << 30
    SplitBrain: bool = True  # may the HA manager promote while a primary is alive?


NoConn = "NoConn"

DOWN, SYNCING, BACKUP, PRIMARY, FAULT = "DOWN", "SYNCING", "BACKUP", "PRIMARY", "FAULT"
Role = (DOWN, SYNCING, BACKUP, PRIMARY, FAULT)
Receiving = frozenset({SYNCING, BACKUP, FAULT})


def Up(r: str) -> bool:
    return r != DOWN


MSG_STATE, MSG_ALIVE, MSG_ACK, MSG_NACK = "STATE", "ALIVE", "ACK", "NACK"
MSG_HELLO, MSG_RESYNC = "HELLO", "RESYNC_REQUEST"

Table = dict  # Conn -> version, 0 = absent


def EmptyTable(C: Consts) -> dict[str, int]:
    return {c: 0 for c in C.Conn}


def Present(t: dict[str, int]) -> frozenset[str]:
    return frozenset(c for c, v in t.items() if v != 0)


NoEpoch = (0, 0)


def EpochLT(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])


class Frame(NamedTuple):
    """A frame of the resend queue (a STATE frame without its destination)."""

    seq: int
    conn: str
    ver: int
    start: bool
    end: bool


class Msg(NamedTuple):
    type: str
    src: int
    dst: int
    term: int
    enode: int
    seq: int = 0
    conn: str = NoConn
    ver: int = 0
    start: bool = False
    end: bool = False
    lo: int = 0
    hi: int = 0


def MsgEpoch(msg: Msg) -> tuple[int, int]:
    return (msg.term, msg.enode)


# ---------------------------------------------------------------------------
# 2. Variables
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class State:
    # environment
    role: dict[int, str]
    linkUp: frozenset[frozenset[int]]
    env: dict[str, int]
    # tables
    kernel: dict[int, dict[str, int]]
    internal: dict[int, dict[str, int]]
    external: dict[int, dict[str, int]]
    # epochs
    epoch: dict[int, tuple[int, int]]
    # sender
    nextSeq: dict[int, int]
    queue: dict[int, tuple[Frame, ...]]
    peerAck: dict[int, dict[int, int]]
    peerLive: dict[int, dict[int, bool]]
    bulk: dict[int, str]
    todo: dict[int, frozenset[str]]
    dirty: dict[int, frozenset[str]]
    behind: dict[int, dict[int, bool]]
    resume: dict[int, dict[int, int]]
    ackedRecently: dict[int, dict[int, bool]]
    # receiver
    expect: dict[int, int]
    ackFrom: dict[int, int]
    inBulk: dict[int, bool]
    marked: dict[int, frozenset[str]]
    needSync: dict[int, bool]
    # network
    msgs: dict[Msg, int] = field(default_factory=dict)
    # ghosts
    lastVer: dict[str, int] = field(default_factory=dict)
    born: dict[str, int] = field(default_factory=dict)
    ackd: dict[int, frozenset[str]] = field(default_factory=dict)
    failedAs: dict[int, str] = field(default_factory=dict)
    fenced: bool = False
    repairs: frozenset[str] = frozenset()

    def set(self, **changes: Any) -> State:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        """The state as plain JSON values (trace export; TLC reads it back)."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        if value and isinstance(next(iter(value)), Msg):
            return sorted(([m._asdict(), n] for m, n in value.items()), key=repr)
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, Frame):
        return value._asdict()
    if isinstance(value, (frozenset, set)):
        return sorted((_json(v) for v in value), key=repr)
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def upd(f: dict, key: Any, value: Any) -> dict:
    """``[f EXCEPT ![key] = value]``"""
    g = dict(f)
    g[key] = value
    return g


# ---------------------------------------------------------------------------
# 3. Helpers
# ---------------------------------------------------------------------------


def Pair(a: int, b: int) -> frozenset[int]:
    return frozenset({a, b})


def Reachable(s: State, a: int, b: int) -> bool:
    return a != b and Pair(a, b) in s.linkUp and Up(s.role[a]) and Up(s.role[b])


def Peers(C: Consts, n: int) -> tuple[int, ...]:
    return tuple(m for m in C.Node if m != n)


def Primaries(s: State) -> list[int]:
    return [n for n, r in s.role.items() if r == PRIMARY]


def MsgOf(s: State, t: str, src: int, dst: int, **extra: Any) -> Msg:
    return Msg(t, src, dst, s.epoch[src][0], s.epoch[src][1], **extra)


def bag_add(bag: dict[Msg, int], items: Any) -> dict[Msg, int]:
    out = dict(bag)
    for msg in items:
        out[msg] = out.get(msg, 0) + 1
    return out


def bag_remove(bag: dict[Msg, int], msg: Msg) -> dict[Msg, int]:
    out = dict(bag)
    if out.get(msg, 0) <= 1:
        out.pop(msg, None)
    else:
        out[msg] -= 1
    return out


def DropAll(bag: dict[Msg, int], P: Callable[[Msg], bool]) -> dict[Msg, int]:
    """Every copy of the messages that satisfy P goes (a cut link, a dead process)."""
    return {msg: k for msg, k in bag.items() if not P(msg)}


def Send(s: State, S: Any) -> dict[Msg, int]:
    """Sending on a link that is down, or to a node that is down, loses it (a set: one copy each)."""
    return bag_add(s.msgs, {m for m in S if Reachable(s, m.src, m.dst)})


def Consume(s: State, msg: Msg) -> dict[Msg, int]:
    return bag_remove(s.msgs, msg)


def ConsumeAndSend(s: State, msg: Msg, S: Any) -> dict[Msg, int]:
    return bag_add(Consume(s, msg), {x for x in S if Reachable(s, x.src, x.dst)})


def InFlight(s: State, n: int, m: int, t: str) -> bool:
    return any(msg.src == n and msg.dst == m and msg.type == t for msg in s.msgs)


AckWindow = 2


def ToPeers(s: State, C: Consts, t: str, n: int) -> set[Msg]:
    return {MsgOf(s, t, n, m) for m in Peers(C, n)}


def StateMsg(s: State, n: int, m: int, f: Frame) -> Msg:
    return MsgOf(s, MSG_STATE, n, m, seq=f.seq, conn=f.conn, ver=f.ver, start=f.start, end=f.end)


def LiveAck(C: Consts, n: int, pa: dict[int, int], pl: dict[int, bool]) -> set[int]:
    return {pa[m] for m in Peers(C, n) if pl[m]}


def Trim(C: Consts, q: tuple[Frame, ...], n: int, pa: dict[int, int], pl: dict[int, bool]) -> tuple[Frame, ...]:
    """The resend queue: a frame leaves when every live peer acknowledged it."""
    acks = LiveAck(C, n, pa, pl)
    if not acks:
        return ()
    low = min(acks)
    return tuple(f for f in q if f.seq >= low)


def EmitFrame(s: State, C: Consts, n: int, f: Frame) -> dict[str, Any]:
    """Send one STATE frame to all peers; a full queue drops its oldest frame."""
    q = s.queue[n]
    q = q[1:] if len(q) >= C.QueueBound else q
    return {
        "queue": upd(s.queue, n, q + (f,)),
        "nextSeq": upd(s.nextSeq, n, s.nextSeq[n] + 1),
        "msgs": Send(s, {StateMsg(s, n, m, f) for m in Peers(C, n)}),
    }


def NewFrame(s: State, n: int, c: str, v: int) -> Frame:
    return Frame(s.nextSeq[n], c, v, False, False)


def StartBulk(s: State, n: int) -> dict[str, Any]:
    return {"bulk": upd(s.bulk, n, "start")}


NoSeq = -1  # resume[n][m] of a peer whose dump's BULK_START is yet to be sent


def upd2(f: dict, n: Any, m: Any, value: Any) -> dict:
    """``[f EXCEPT ![n][m] = value]``"""
    return upd(f, n, upd(f[n], m, value))


def Position(s: State, n: int, m: int) -> int:
    """One dump per need: the first seq m still needs from the queue (NoSeq: only a dump helps)."""
    return s.resume[n][m] if s.behind[n][m] else s.peerAck[n][m]


def QueueFirst(s: State, n: int) -> int:
    return s.queue[n][0].seq if s.queue[n] else s.nextSeq[n]


def DumpServes(s: State, n: int, b: bool, r: int) -> bool:
    """A dump under way serves the peer (b, r: its behind, resume), one it can still get whole."""
    if not b:
        return False
    if r == NoSeq:
        return s.bulk[n] == "start"
    return bool(s.queue[n]) and r >= s.queue[n][0].seq


def NeedsDump(s: State, n: int, m: int, b: bool, r: int) -> dict[str, Any]:
    """Only a dump repairs m: it joins the one that serves it, else a dump (re)starts."""
    if DumpServes(s, n, b, r):
        return {"behind": upd2(s.behind, n, m, b), "resume": upd2(s.resume, n, m, r)}
    u: dict[str, Any] = {"behind": upd2(s.behind, n, m, True), "resume": upd2(s.resume, n, m, NoSeq)}
    if s.bulk[n] != "start":
        u.update(StartBulk(s, n))
    return u


def ResetPeers(s: State, n: int) -> dict[str, Any]:
    """No peer waits for a dump of n, none acknowledged a moment ago."""
    return {
        "behind": upd(s.behind, n, {m: False for m in s.role}),
        "resume": upd(s.resume, n, {m: NoSeq for m in s.role}),
        "ackedRecently": upd(s.ackedRecently, n, {m: False for m in s.role}),
    }


def ClearSender(s: State, n: int) -> dict[str, Any]:
    return {
        "queue": upd(s.queue, n, ()),
        "bulk": upd(s.bulk, n, "idle"),
        "todo": upd(s.todo, n, frozenset()),
        "dirty": upd(s.dirty, n, frozenset()),
        **ResetPeers(s, n),
    }


def ResetReceiver(s: State, n: int) -> dict[str, Any]:
    return {
        "expect": upd(s.expect, n, 0),
        "ackFrom": upd(s.ackFrom, n, 0),
        "inBulk": upd(s.inBulk, n, False),
        "marked": upd(s.marked, n, frozenset()),
    }


# ---------------------------------------------------------------------------
# Initial state: every process just started (SYNCING, must sync), empty tables,
# all links up, no epoch yet.
# ---------------------------------------------------------------------------


def AllLinks(C: Consts) -> frozenset[frozenset[int]]:
    return frozenset(Pair(a, b) for a in C.Node for b in C.Node if a != b)


def Init(C: Consts) -> State:
    N = C.Node
    return State(
        role={n: SYNCING for n in N},
        linkUp=AllLinks(C),
        env={"fail": 0, "ha": 0, "cut": 0, "loss": 0, "dup": 0},
        kernel={n: EmptyTable(C) for n in N},
        internal={n: EmptyTable(C) for n in N},
        external={n: EmptyTable(C) for n in N},
        epoch={n: NoEpoch for n in N},
        nextSeq={n: 0 for n in N},
        queue={n: () for n in N},
        peerAck={n: {m: 0 for m in N} for n in N},
        peerLive={n: {m: True for m in N} for n in N},
        bulk={n: "idle" for n in N},
        todo={n: frozenset() for n in N},
        dirty={n: frozenset() for n in N},
        behind={n: {m: False for m in N} for n in N},
        resume={n: {m: NoSeq for m in N} for n in N},
        ackedRecently={n: {m: False for m in N} for n in N},
        expect={n: 0 for n in N},
        ackFrom={n: 0 for n in N},
        inBulk={n: False for n in N},
        marked={n: frozenset() for n in N},
        needSync={n: True for n in N},
        msgs={},
        lastVer={c: 0 for c in C.Conn},
        born={c: 0 for c in C.Conn},
        ackd={n: frozenset() for n in N},
        failedAs={n: "none" for n in N},
        fenced=False,
        repairs=frozenset(),
    )


# ---------------------------------------------------------------------------
# 4. The HA manager (environment)
# ---------------------------------------------------------------------------


def Promote(s: State, C: Consts, n: int) -> State | None:
    if not (s.role[n] in Receiving and s.epoch[n][0] < C.MaxTerm):
        return None
    if C.SplitBrain:
        if any(Reachable(s, n, p) for p in Primaries(s)):
            return None
    elif Primaries(s):
        return None
    committed = {c: s.external[n][c] if s.external[n][c] != 0 else s.kernel[n][c] for c in C.Conn}
    e = (s.epoch[n][0] + 1, n)
    hellos = {Msg(MSG_HELLO, n, m, e[0], e[1]) for m in Peers(C, n)}
    return s.set(
        kernel=upd(s.kernel, n, committed),
        internal=upd(s.internal, n, committed),
        epoch=upd(s.epoch, n, e),
        msgs=bag_add(s.msgs, {msg for msg in hellos if Reachable(s, msg.src, msg.dst)}),
        role=upd(s.role, n, PRIMARY),
        nextSeq=upd(s.nextSeq, n, 0),
        queue=upd(s.queue, n, ()),
        peerAck=upd(s.peerAck, n, {m: 0 for m in C.Node}),
        bulk=upd(s.bulk, n, "start"),
        todo=upd(s.todo, n, frozenset()),
        dirty=upd(s.dirty, n, frozenset()),
        **ResetPeers(s, n),
        needSync=upd(s.needSync, n, False),
        **ResetReceiver(s, n),
    )


def Demote(s: State, C: Consts, n: int) -> State | None:
    if not (s.role[n] in (PRIMARY, FAULT) and s.env["ha"] < C.MaxHA):
        return None
    return s.set(
        env=upd(s.env, "ha", s.env["ha"] + 1),
        role=upd(s.role, n, SYNCING),
        needSync=upd(s.needSync, n, True),
        **ClearSender(s, n),
    )


def Fault(s: State, C: Consts, n: int) -> State | None:
    if not (s.role[n] in (PRIMARY, SYNCING, BACKUP) and s.env["ha"] < C.MaxHA):
        return None
    return s.set(
        env=upd(s.env, "ha", s.env["ha"] + 1),
        role=upd(s.role, n, FAULT),
        needSync=upd(s.needSync, n, True),
        **ClearSender(s, n),
    )


def Fail(s: State, C: Consts, n: int) -> State | None:
    if not (Up(s.role[n]) and s.env["fail"] < C.MaxFail):
        return None
    msgs = DropAll(s.msgs, lambda m: m.dst == n)
    return s.set(
        env=upd(s.env, "fail", s.env["fail"] + 1),
        role=upd(s.role, n, DOWN),
        internal=upd(s.internal, n, EmptyTable(C)),
        external=upd(s.external, n, EmptyTable(C)),
        **ClearSender(s, n),
        **ResetReceiver(s, n),
        needSync=upd(s.needSync, n, False),
        msgs=msgs,
        failedAs=upd(s.failedAs, n, s.role[n]),
        ackd=upd(s.ackd, n, frozenset()),
    )


def Recover(s: State, C: Consts, n: int) -> State | None:
    """Its first RequestResync is the start's HELLO + RESYNC_REQUEST."""
    if s.role[n] != DOWN:
        return None
    return s.set(
        role=upd(s.role, n, SYNCING),
        internal=upd(s.internal, n, dict(s.kernel[n])),
        external=upd(s.external, n, EmptyTable(C)),
        needSync=upd(s.needSync, n, True),
        **ResetReceiver(s, n),
    )


# ---------------------------------------------------------------------------
# 5. The network
# ---------------------------------------------------------------------------


def LinkDown(s: State, C: Consts, a: int, b: int) -> State | None:
    if not (a < b and Pair(a, b) in s.linkUp and s.env["cut"] < C.MaxCut):
        return None
    return s.set(
        env=upd(s.env, "cut", s.env["cut"] + 1),
        linkUp=s.linkUp - {Pair(a, b)},
        msgs=DropAll(s.msgs, lambda m: Pair(m.src, m.dst) == Pair(a, b)),
    )


def LinkUp(s: State, C: Consts, a: int, b: int) -> State | None:
    if not (a < b and Pair(a, b) not in s.linkUp):
        return None
    return s.set(linkUp=s.linkUp | {Pair(a, b)})


def LoseMsg(s: State, C: Consts, msg: Msg) -> State | None:
    if not (s.env["loss"] < C.MaxLoss and msg in s.msgs):
        return None
    return s.set(msgs=Consume(s, msg), env=upd(s.env, "loss", s.env["loss"] + 1))


def DuplicateMsg(s: State, C: Consts, msg: Msg) -> State | None:
    if not (s.env["dup"] < C.MaxDup and msg in s.msgs):
        return None
    return s.set(msgs=bag_add(s.msgs, [msg]), env=upd(s.env, "dup", s.env["dup"] + 1))


# ---------------------------------------------------------------------------
# 6. Traffic on the primary, and the kernels of the others
# ---------------------------------------------------------------------------


def Settled(s: State, n: int) -> bool:
    """The kernel reports its events one at a time (one pending event at most)."""
    return s.internal[n] == s.kernel[n]



def ConnNew(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] == PRIMARY and Settled(s, n) and s.kernel[n][c] == 0 and s.lastVer[c] < C.MaxVersion):
        return None
    return s.set(
        kernel=upd(s.kernel, n, upd(s.kernel[n], c, s.lastVer[c] + 1)),
        lastVer=upd(s.lastVer, c, s.lastVer[c] + 1),
        born=upd(s.born, c, s.lastVer[c] + 1),
    )


def ConnUpdate(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] == PRIMARY and Settled(s, n) and s.kernel[n][c] != 0 and s.lastVer[c] < C.MaxVersion):
        return None
    return s.set(
        kernel=upd(s.kernel, n, upd(s.kernel[n], c, s.lastVer[c] + 1)), lastVer=upd(s.lastVer, c, s.lastVer[c] + 1)
    )


def ConnDestroy(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] == PRIMARY and Settled(s, n) and s.kernel[n][c] != 0):
        return None
    return s.set(
        kernel=upd(s.kernel, n, upd(s.kernel[n], c, 0)), ackd={m: a - {c} for m, a in s.ackd.items()}
    )


def KernelExpire(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] != PRIMARY and s.kernel[n][c] != 0):
        return None
    return s.set(kernel=upd(s.kernel, n, upd(s.kernel[n], c, 0)))


# ---------------------------------------------------------------------------
# 7. The sender (a primary)
# ---------------------------------------------------------------------------


def Notify(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] == PRIMARY and s.internal[n][c] != s.kernel[n][c]):
        return None
    internal = upd(s.internal, n, upd(s.internal[n], c, s.kernel[n][c]))
    crucial = s.internal[n][c] == 0 or s.kernel[n][c] == 0
    if C.Level == "strong" or (C.Level == "weak" and crucial):
        return s.set(internal=internal, **EmitFrame(s, C, n, NewFrame(s, n, c, s.kernel[n][c])))
    dirty = upd(s.dirty, n, s.dirty[n] | {c}) if C.Level == "incremental" else s.dirty
    return s.set(internal=internal, dirty=dirty)


def FlushIncremental(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (C.Level == "incremental" and s.role[n] == PRIMARY and c in s.dirty[n]):
        return None
    return s.set(
        **EmitFrame(s, C, n, NewFrame(s, n, c, s.internal[n][c])), dirty=upd(s.dirty, n, s.dirty[n] - {c})
    )


def Holding(s: State, C: Consts, n: int) -> set[int]:
    """Positions of the live peers the queue can still serve."""
    first = QueueFirst(s, n)
    return {Position(s, n, m) for m in Peers(C, n) if s.peerLive[n][m] and Position(s, n, m) >= first}


def InFlightFrames(s: State, C: Consts, n: int) -> int:
    held = Holding(s, C, n)
    return s.nextSeq[n] - min(held) if held else 0


def BulkRoom(s: State, C: Consts, n: int) -> bool:
    """The dump's window (QueueBound), counted for the peers the queue serves."""
    return InFlightFrames(s, C, n) < C.QueueBound


def BulkGone(s: State, n: int) -> frozenset[str]:
    """What the dump has left that was destroyed since it started (skipped)."""
    left = Present(s.internal[n]) if s.bulk[n] == "start" else s.todo[n]
    return frozenset(c for c in left if s.internal[n][c] == 0)


def SendBulk(s: State, C: Consts, n: int, c: str, drop: frozenset[str] = frozenset()) -> State | None:
    """``c``: the connection this step sends (NoConn: the empty last frame); ``drop``:
    the connections destroyed since the dump started that this step skips."""
    if not (s.role[n] == PRIMARY and s.bulk[n] != "idle" and BulkRoom(s, C, n)):
        return None
    first = s.bulk[n] == "start"
    left = Present(s.internal[n]) if first else s.todo[n]
    gone = frozenset(x for x in left if s.internal[n][x] == 0)
    u: dict[str, Any] = {}
    if first:
        u["resume"] = upd(s.resume, n, {m: s.nextSeq[n] if s.behind[n][m] else r for m, r in s.resume[n].items()})
    if not (left - gone):
        if c != NoConn or drop:
            return None
        return s.set(
            **EmitFrame(s, C, n, NewFrame(s, n, NoConn, 0)._replace(start=first, end=True)),
            bulk=upd(s.bulk, n, "idle"),
            todo=upd(s.todo, n, frozenset()),
            **u,
        )
    if c not in left - gone or not drop <= gone:
        return None
    rest = left - {c} - drop
    return s.set(
        **EmitFrame(s, C, n, NewFrame(s, n, c, s.internal[n][c])._replace(start=first, end=not rest)),
        bulk=upd(s.bulk, n, "run" if rest else "idle"),
        todo=upd(s.todo, n, rest),
        **u,
    )


def Unacked(s: State, n: int, m: int) -> set[Frame]:
    """What a peer the queue serves has not acknowledged (waiting for a dump: from its BULK_START)."""
    p = Position(s, n, m)
    if p < QueueFirst(s, n):
        return set()
    return {f for f in s.queue[n] if f.seq >= p}


def Retransmit(s: State, C: Consts, n: int, m: int) -> State | None:
    """``m``: the peer the queued frames go to again."""
    if not (s.role[n] == PRIMARY and m != n):
        return None
    frames = Unacked(s, n, m)
    if not (s.peerLive[n][m] and Reachable(s, n, m) and frames):
        return None
    if InFlight(s, n, m, MSG_STATE) or InFlight(s, m, n, MSG_ACK):  # (a timeout exceeds a round trip)
        return None
    return s.set(msgs=Send(s, {StateMsg(s, n, m, f) for f in frames}))


def SendAlive(s: State, C: Consts, n: int) -> State | None:
    if s.role[n] != PRIMARY:
        return None
    idle = [
        m
        for m in Peers(C, n)
        if Reachable(s, n, m) and not InFlight(s, n, m, MSG_STATE) and not InFlight(s, n, m, MSG_ALIVE)
        and not (s.peerLive[n][m] and Unacked(s, n, m))
    ]
    if not idle:
        return None
    return s.set(msgs=Send(s, {MsgOf(s, MSG_ALIVE, n, m, seq=s.nextSeq[n]) for m in idle}))


def Newer(s: State, n: int, msg: Msg) -> bool:
    return EpochLT(s.epoch[n], MsgEpoch(msg))


def Stale(s: State, n: int, msg: Msg) -> bool:
    return EpochLT(MsgEpoch(msg), s.epoch[n])


def StepDown(s: State, n: int, msg: Msg) -> dict[str, Any]:
    """A control frame that fences a primary: adopt the epoch, step down."""
    u: dict[str, Any] = {
        "epoch": upd(s.epoch, n, MsgEpoch(msg)),
        "role": upd(s.role, n, SYNCING if s.role[n] == PRIMARY else s.role[n]),
        "needSync": upd(s.needSync, n, s.needSync[n] or s.role[n] == PRIMARY),
        "ackd": upd(s.ackd, n, frozenset()),
        **ResetReceiver(s, n),
    }
    if s.role[n] == PRIMARY:
        u.update(ClearSender(s, n))
    return u


def Receivable(s: State, n: int, m: int, t: str) -> list[Msg]:
    return [msg for msg in s.msgs if msg.dst == n and msg.src == m and msg.type == t]


def Advance(s: State, n: int, m: int, after: int) -> dict[str, Any]:
    """m applied every frame before ``after``: acknowledged a moment ago; past the
    BULK_START it waited for, it follows the stream again."""
    if after <= s.peerAck[n][m]:
        return {}
    u: dict[str, Any] = {"peerAck": upd2(s.peerAck, n, m, after), "ackedRecently": upd2(s.ackedRecently, n, m, True)}
    if s.behind[n][m] and s.resume[n][m] != NoSeq and after > s.resume[n][m]:
        u["behind"] = upd2(s.behind, n, m, False)
        u["resume"] = upd2(s.resume, n, m, NoSeq)
    return u


def RecvAck(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_ACK)):
        return None
    u: dict[str, Any] = {"msgs": Consume(s, msg), "peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True))}
    if Newer(s, n, msg):
        u.update(StepDown(s, n, msg))
    elif s.role[n] == PRIMARY and MsgEpoch(msg) == s.epoch[n]:
        pa = upd(s.peerAck, n, upd(s.peerAck[n], m, max(msg.hi + 1, s.peerAck[n][m])))
        pl = upd(s.peerLive, n, upd(s.peerLive[n], m, True))
        u.update(Advance(s, n, m, msg.hi + 1))
        u["queue"] = upd(s.queue, n, Trim(C, s.queue[n], n, pa[n], pl[n]))
    return s.set(**u)


def RecvNack(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """A late copy gets the frames from the acknowledged position; a peer a dump serves
    gets those from its BULK_START; one older than the queue, a dump; else retransmit."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_NACK)):
        return None
    held = s.queue[n]
    serve = s.role[n] == PRIMARY and MsgEpoch(msg) == s.epoch[n]
    u: dict[str, Any] = {"peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True))}
    if Newer(s, n, msg):
        u.update(StepDown(s, n, msg))
        u["msgs"] = Consume(s, msg)
        return s.set(**u)
    if not serve:
        u["msgs"] = Consume(s, msg)
        return s.set(**u)
    ack = s.peerAck[n][m]
    adv = msg.lo > ack
    b = s.behind[n][m] and not (adv and s.resume[n][m] != NoSeq and msg.lo > s.resume[n][m])
    r = s.resume[n][m] if b else NoSeq

    def in_queue(x: int) -> bool:
        return bool(held) and x >= held[0].seq

    late = not adv and msg.lo != 0 and msg.lo < ack and not in_queue(msg.lo) and s.ackedRecently[n][m]
    first = ack if late else msg.lo

    def resend(lo: int) -> dict[Msg, int]:
        return ConsumeAndSend(s, msg, {StateMsg(s, n, m, g) for g in held if lo <= g.seq <= msg.hi})

    u["peerAck"] = upd2(s.peerAck, n, m, msg.lo if adv else ack)
    u["ackedRecently"] = upd2(s.ackedRecently, n, m, s.ackedRecently[n][m] or adv)
    keep = {"behind": upd2(s.behind, n, m, b), "resume": upd2(s.resume, n, m, r)}
    if late and first > msg.hi:
        u["msgs"] = Consume(s, msg)
    elif DumpServes(s, n, b, r):
        u.update(keep)
        if r == NoSeq or r > msg.hi:
            u["msgs"] = Consume(s, msg)
        else:
            u["msgs"] = resend(max(r, first))
            u["repairs"] = s.repairs | {"retransmit"}
    elif not in_queue(first):
        u["msgs"] = Consume(s, msg)
        u.update(NeedsDump(s, n, m, b, r))
        u["repairs"] = s.repairs | {"resync"}
    else:
        u.update(keep)
        u["msgs"] = resend(first)
        u["repairs"] = s.repairs | {"retransmit"}
    return s.set(**u)


def RecvResyncRequest(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_RESYNC)):
        return None
    u: dict[str, Any] = {"msgs": Consume(s, msg), "peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True))}
    if Newer(s, n, msg):
        u.update(StepDown(s, n, msg))
    elif s.role[n] == PRIMARY:
        u.update(NeedsDump(s, n, m, s.behind[n][m], s.resume[n][m]))
    return s.set(**u)


def AckAges(s: State, C: Consts, n: int, m: int) -> State | None:
    """The retransmit timeout passes: m's acknowledgement is no longer a moment ago."""
    if not s.ackedRecently[n][m]:
        return None
    return s.set(ackedRecently=upd2(s.ackedRecently, n, m, False))


def PeerTimeout(s: State, C: Consts, n: int, m: int) -> State | None:
    if not (s.role[n] == PRIMARY and m != n and s.peerLive[n][m] and not Reachable(s, n, m)):
        return None
    pl = upd(s.peerLive, n, upd(s.peerLive[n], m, False))
    return s.set(peerLive=pl, queue=upd(s.queue, n, Trim(C, s.queue[n], n, s.peerAck[n], pl[n])))


# ---------------------------------------------------------------------------
# 8. The receiver (a non-primary)
# ---------------------------------------------------------------------------


class R0(NamedTuple):
    """The receiver after adopting a newer epoch (if any)."""

    expect: int
    ackFrom: int
    role: str
    needSync: bool
    inBulk: bool
    marked: frozenset[str]


def ApplyState(s: State, n: int, msg: Msg, r0: R0) -> dict[str, Any]:
    ext0 = s.external[n]
    mk0 = Present(ext0) if msg.start else r0.marked
    ib = msg.start or r0.inBulk
    ext1 = ext0 if msg.conn == NoConn else upd(ext0, msg.conn, msg.ver)
    mk1 = mk0 - {msg.conn}
    sweep = msg.end and ib
    ext2 = {c: 0 if c in mk1 else v for c, v in ext1.items()} if sweep else ext1
    return {
        "external": upd(s.external, n, ext2),
        "marked": upd(s.marked, n, frozenset() if sweep else mk1),
        "inBulk": upd(s.inBulk, n, ib and not sweep),
        "expect": upd(s.expect, n, msg.seq + 1),
        "needSync": upd(s.needSync, n, False if sweep else r0.needSync),
        "role": upd(s.role, n, BACKUP if sweep and r0.role == SYNCING else r0.role),
    }


def Applied(s: State, n: int, msg: Msg, r0: R0) -> dict[str, int]:
    """The external cache ApplyState leaves."""
    return ApplyState(s, n, msg, r0)["external"][n]


def AckedSet(s: State, n: int, m: int, ext: dict[str, int]) -> frozenset[str]:
    """What an ACK of n to the primary m acknowledges (ghost): the connections of n's
    external cache that m has, in the incarnation m has."""
    return frozenset(
        c for c in Present(ext) if s.role[m] == PRIMARY and s.kernel[m][c] != 0 and ext[c] >= s.born[c]
    )


def AckOnPause(s: State, n: int, m: int, msg: Msg, af: int, ex: int, ext: dict[str, int],
               ackd0: frozenset[str]) -> dict[str, Any]:  # fmt: skip
    """The ack delay: when no further frame of the stream is in flight, the frames
    applied and not yet acknowledged are acknowledged at once (af..ex-1)."""
    rest = Consume(s, msg)
    pause = not any(x.src == m and x.dst == n and x.type == MSG_STATE for x in rest)
    ack = Msg(MSG_ACK, n, m, msg.term, msg.enode, lo=af, hi=ex - 1)
    if pause and af < ex:
        return {
            "msgs": bag_add(rest, {ack} if Reachable(s, n, m) else set()),
            "ackFrom": upd(s.ackFrom, n, ex),
            "ackd": upd(s.ackd, n, AckedSet(s, n, m, ext)),
        }
    return {"msgs": rest, "ackFrom": upd(s.ackFrom, n, af), "ackd": upd(s.ackd, n, ackd0)}


def RecvState(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_STATE)):
        return None
    adopt = Newer(s, n, msg)
    r0 = R0(
        expect=0 if adopt else s.expect[n],
        ackFrom=0 if adopt else s.ackFrom[n],
        role=SYNCING if adopt and s.role[n] == PRIMARY else s.role[n],
        needSync=s.needSync[n] or (adopt and s.role[n] == PRIMARY),
        inBulk=False if adopt else s.inBulk[n],
        marked=frozenset() if adopt else s.marked[n],
    )
    wasPrimary = adopt and s.role[n] == PRIMARY
    ackd0 = frozenset() if adopt else s.ackd[n]
    u: dict[str, Any] = {
        "peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True)),
        "epoch": upd(s.epoch, n, MsgEpoch(msg)) if adopt else s.epoch,
    }
    if wasPrimary:
        u.update(ClearSender(s, n))
    if Stale(s, n, msg) or (s.role[n] == PRIMARY and not adopt):
        u["msgs"] = Consume(s, msg)  # fenced: never applied
        u["fenced"] = s.fenced or Stale(s, n, msg)
        u["ackd"] = upd(s.ackd, n, ackd0)
    elif msg.seq == r0.expect or (msg.start and msg.seq > r0.expect):
        u.update(ApplyState(s, n, msg, r0))
        af = msg.seq if msg.seq > r0.expect else r0.ackFrom
        u.update(AckOnPause(s, n, m, msg, af, msg.seq + 1, Applied(s, n, msg, r0), ackd0))
    elif msg.seq > r0.expect:  # gap: drop it, NACK what is missing
        nack = Msg(MSG_NACK, n, m, msg.term, msg.enode, lo=r0.expect, hi=msg.seq - 1)
        u["msgs"] = ConsumeAndSend(s, msg, {nack} if not InFlight(s, n, m, MSG_NACK) else set())
        u["expect"] = upd(s.expect, n, r0.expect)
        u["ackFrom"] = upd(s.ackFrom, n, r0.ackFrom)
        u["role"] = upd(s.role, n, r0.role)
        u["needSync"] = upd(s.needSync, n, r0.needSync)
        u["inBulk"] = upd(s.inBulk, n, False) if adopt else s.inBulk
        u["marked"] = upd(s.marked, n, frozenset()) if adopt else s.marked
        u["ackd"] = upd(s.ackd, n, ackd0)
    else:  # duplicate: drop, acknowledge again from its seq
        af = msg.seq if msg.seq < r0.ackFrom else r0.ackFrom
        u.update(AckOnPause(s, n, m, msg, af, r0.expect, s.external[n], ackd0))
    return s.set(**u)


def RecvAlive(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_ALIVE)):
        return None
    u: dict[str, Any] = {"peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True))}
    if Stale(s, n, msg):
        u["msgs"] = Consume(s, msg)
        u["fenced"] = True
        return s.set(**u)
    adopt = Newer(s, n, msg)
    exp = 0 if adopt else s.expect[n]
    if adopt:
        u.update(StepDown(s, n, msg))
    if (s.role[n] != PRIMARY or adopt) and msg.seq > exp:
        nack = Msg(MSG_NACK, n, m, msg.term, msg.enode, lo=exp, hi=msg.seq - 1)
        u["msgs"] = ConsumeAndSend(s, msg, {nack} if not InFlight(s, n, m, MSG_NACK) else set())
    else:
        u["msgs"] = Consume(s, msg)
    return s.set(**u)


def SendAck(s: State, C: Consts, n: int, m: int) -> State | None:
    """The ack window: after AckWindow applied frames (the ack delay is AckOnPause)."""
    if not (s.role[n] in Receiving and s.epoch[n][1] == m and m != n and s.expect[n] - s.ackFrom[n] >= AckWindow):
        return None
    ack = MsgOf(s, MSG_ACK, n, m, lo=s.ackFrom[n], hi=s.expect[n] - 1)
    return s.set(
        msgs=Send(s, {ack}),
        ackFrom=upd(s.ackFrom, n, s.expect[n]),
        ackd=upd(s.ackd, n, AckedSet(s, n, m, s.external[n])),
    )


def RequestResync(s: State, C: Consts, n: int, m: int) -> State | None:
    if not (s.role[n] in Receiving and s.needSync[n] and not s.inBulk[n] and m != n):
        return None
    if not (s.epoch[n][1] in (m, 0, n) and Reachable(s, n, m)):
        return None
    if InFlight(s, n, m, MSG_RESYNC) or InFlight(s, m, n, MSG_STATE):
        return None
    return s.set(msgs=Send(s, {MsgOf(s, MSG_RESYNC, n, m)}))


def RecvHello(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_HELLO)):
        return None
    u: dict[str, Any] = {"msgs": Consume(s, msg), "peerLive": upd(s.peerLive, n, upd(s.peerLive[n], m, True))}
    if Newer(s, n, msg):
        u.update(StepDown(s, n, msg))
    else:  # it may have restarted: its acknowledgements tell no late copy any more
        u["ackedRecently"] = upd2(s.ackedRecently, n, m, False)
    return s.set(**u)


# ---------------------------------------------------------------------------
# Operator commands: not actions of the spec (the spec has no operator). A bulk
# send on a primary (conntrackd -B) does what a RESYNC_REQUEST does; the tests use
# this to explain it, and check commit/flush by the invariants only.
# ---------------------------------------------------------------------------


def OperatorBulkSend(s: State, C: Consts, n: int) -> State | None:
    if s.role[n] != PRIMARY:
        return None
    return s.set(**StartBulk(s, n)) if s.bulk[n] != "start" else s


# ---------------------------------------------------------------------------
# 9. Next
# ---------------------------------------------------------------------------

Step = tuple[str, tuple[Any, ...], State]

ENVIRONMENT = (
    "Promote", "Demote", "Fault", "Fail", "Recover", "LinkDown", "LinkUp", "LoseMsg", "DuplicateMsg",
    "ConnNew", "ConnUpdate", "ConnDestroy", "KernelExpire",
)  # fmt: skip
PROTOCOL = (
    "Notify", "FlushIncremental", "SendBulk", "Retransmit", "SendAlive", "RecvAck", "RecvNack",
    "RecvResyncRequest", "PeerTimeout", "AckAges", "RecvState", "RecvAlive", "SendAck", "RequestResync", "RecvHello",
)  # fmt: skip
ACTIONS: dict[str, Callable[..., State | None]] = {name: globals()[name] for name in ENVIRONMENT + PROTOCOL}
EXTENSIONS: dict[str, Callable[..., State | None]] = {"OperatorBulkSend": OperatorBulkSend}
RECEIVE = {
    "RecvAck": MSG_ACK, "RecvNack": MSG_NACK, "RecvResyncRequest": MSG_RESYNC, "RecvState": MSG_STATE,
    "RecvAlive": MSG_ALIVE, "RecvHello": MSG_HELLO,
}  # fmt: skip


def params(s: State, C: Consts, name: str) -> Iterator[tuple[Any, ...]]:
    """Every choice of the action's parameters (the TLA+ existential quantifiers)."""
    N = C.Node
    if name in ("Promote", "Demote", "Fault", "Fail", "Recover", "SendAlive"):
        yield from ((n,) for n in N)
    elif name in ("LinkDown", "LinkUp"):
        yield from ((a, b) for a in N for b in N)
    elif name in ("LoseMsg", "DuplicateMsg"):
        yield from ((msg,) for msg in s.msgs)
    elif name in ("ConnNew", "ConnUpdate", "ConnDestroy", "KernelExpire", "Notify", "FlushIncremental"):
        yield from ((n, c) for n in N for c in C.Conn)
    elif name == "SendBulk":
        for n in N:
            gone = sorted(BulkGone(s, n)) if s.bulk[n] != "idle" else []
            drops = [frozenset(x for i, x in enumerate(gone) if k >> i & 1) for k in range(1 << len(gone))]
            yield from ((n, c, d) for c in C.Conn + (NoConn,) for d in drops)
    elif name in ("Retransmit", "PeerTimeout", "SendAck", "RequestResync", "AckAges"):
        yield from ((n, m) for n in N for m in N)
    elif name in RECEIVE:
        yield from ((msg.dst, msg.src, msg) for msg in s.msgs if msg.type == RECEIVE[name])
    else:
        raise KeyError(name)


def steps(s: State, C: Consts, names: Any = ENVIRONMENT + PROTOCOL) -> Iterator[Step]:
    """Next: every enabled action (of ``names``) with every choice, and its successor."""
    for name in names:
        action = ACTIONS[name]
        for args in params(s, C, name):
            t = action(s, C, *args)
            if t is not None:
                yield name, args, t


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


def TypeOK(s: State, C: Consts) -> bool:
    return (
        all(r in Role for r in s.role.values())
        and all(set(t) == set(C.Conn) and all(0 <= v <= C.MaxVersion for v in t.values())
                for tables in (s.kernel, s.internal, s.external) for t in tables.values())
        and all(f.seq >= 0 for q in s.queue.values() for f in q)
        and all(b in ("idle", "start", "run") for b in s.bulk.values())
        and all(r == NoSeq or r >= 0 for rs in s.resume.values() for r in rs.values())
        and all(k > 0 for k in s.msgs.values())
    )  # fmt: skip


def OnePrimaryPerEpoch(s: State, C: Consts) -> bool:
    P = Primaries(s)
    return all(s.epoch[n][1] == n for n in P) and all(s.epoch[n] != s.epoch[m] for n in P for m in P if n != m)


def NoAckedStateLost(s: State, C: Consts) -> bool:
    return all(s.kernel[n][c] != 0 for n in Primaries(s) for c in s.ackd[n])


def QueueBounded(s: State, C: Consts) -> bool:
    return all(len(q) <= C.QueueBound for q in s.queue.values())


INVARIANTS: dict[str, Callable[[State, Consts], bool]] = {
    "TypeOK": TypeOK,
    "OnePrimaryPerEpoch": OnePrimaryPerEpoch,
    "NoAckedStateLost": NoAckedStateLost,
    "QueueBounded": QueueBounded,
}


def Consumed(s: State, t: State, msg: Msg) -> bool:
    return t.msgs.get(msg, 0) < s.msgs.get(msg, 0)


def NoStaleStateStep(s: State, t: State, C: Consts) -> bool:
    return all(
        any(msg.dst == n and msg.type == MSG_STATE and Consumed(s, t, msg) and not Stale(s, n, msg) for msg in s.msgs)
        for n in C.Node
        if Up(s.role[n]) and Up(t.role[n]) and t.external[n] != s.external[n]
    )


def EpochMonotonicStep(s: State, t: State, C: Consts) -> bool:
    return all(not EpochLT(t.epoch[n], s.epoch[n]) for n in C.Node)


ACTION_PROPERTIES: dict[str, Callable[[State, State, Consts], bool]] = {
    "NoStaleState": NoStaleStateStep,
    "EpochMonotonic": EpochMonotonicStep,
}


def SameTable(C: Consts, t: dict[str, int], u: dict[str, int]) -> bool:
    return Present(t) == Present(u) if C.Level == "weak" else t == u


def Synced(s: State, C: Consts) -> bool:
    """Convergence: every receiving node holds the primary's table and is not SYNCING."""
    return all(
        SameTable(C, s.external[b], s.kernel[p]) and s.role[b] != SYNCING
        for p in Primaries(s)
        for b in C.Node
        if s.role[b] in Receiving
    )


def violated(s: State, C: Consts) -> list[str]:
    return [name for name, inv in INVARIANTS.items() if not inv(s, C)]


def violated_step(s: State, t: State, C: Consts) -> list[str]:
    return [name for name, prop in ACTION_PROPERTIES.items() if not prop(s, t, C)]
