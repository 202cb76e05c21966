"""spec/sync_protocol.tla in Python: its state, its actions, its Next, its properties.

Read it beside the .tla file: the same sections, the same names, the same order.
Each action is a function ``Action(s, C, params...) -> State | None``: the successor
state, or None when the action is not enabled with these parameters (a TLA+
``\\E msg \\in ...`` or ``\\E c \\in ...`` becomes a parameter; :func:`steps`
enumerates every enabled choice, which is ``Next``). A TLA+ operator that sets some
primed variables (``Put``, ``StepDown``, ``ClearSender`` ...) is a function that
returns those variables' new values as a dict, which the action merges into
``s.set(...)``; every variable it leaves out is UNCHANGED.

Values are plain and immutable enough to hash: tables are dicts ``conn -> version``
(0 = absent) that are copied, never mutated; the message bag is a dict
``Msg -> copies``; the resend queue is a tuple of :class:`Frame`; an epoch is a
tuple ``(term, node)``. Two field names of the spec are Python keywords: a
message's ``for`` is ``Msg.for_`` and a promotion's ``from`` is ``Promoted.from_``
(the JSON export writes them without the underscore). Nothing here knows the
implementation: model_tests/abstraction.py maps the implementation onto this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------
# 1. Constants
# ---------------------------------------------------------------------------

UNBOUNDED = 1 << 30


@dataclass(frozen=True)
class Consts:
    Node: tuple[int, ...]  # node ids: natural numbers (they break epoch ties)
    Conn: tuple[str, ...]  # connection identities
    Level: str = "strong"  # "strong", "weak" or "incremental"
    MaxVersion: int = UNBOUNDED  # versions 1..MaxVersion per connection
    MaxTerm: int = UNBOUNDED  # promotions take terms 1..MaxTerm
    QueueBound: int = 4  # frames the resend queue holds at most
    MaxFail: int = UNBOUNDED  # how many times nodes fail (process dies)
    MaxHA: int = UNBOUNDED  # how many Fault/Demote decisions the HA manager makes
    MaxCut: int = UNBOUNDED  # how many times a link goes down
    MaxLoss: int = UNBOUNDED  # how many messages the network loses
    MaxDup: int = UNBOUNDED  # how many messages the network duplicates
    MaxReplay: int = UNBOUNDED  # how many captured frames the adversary replays
    MaxInFlight: int = UNBOUNDED  # messages the network holds at most (beyond: lost, overflow)
    SplitBrain: bool = True  # does VRRP share the sync links (a partition: two masters)?


NoConn = "NoConn"  # "no entry" in a STATE frame (an empty bulk dump)

# Roles. SYNCING: up, joined as backup, dump not complete (not ready).
# FAULT: the HA manager says fault: receives like a backup, not ready.
DOWN, SYNCING, BACKUP, PRIMARY, FAULT = "DOWN", "SYNCING", "BACKUP", "PRIMARY", "FAULT"
Role = (DOWN, SYNCING, BACKUP, PRIMARY, FAULT)


def Up(r: str) -> bool:
    return r != DOWN


Receiving = frozenset({SYNCING, BACKUP, FAULT})

# Message types. Only the primary sends STATE and ALIVE.
MSG_STATE, MSG_ALIVE, MSG_ACK, MSG_NACK = "STATE", "ALIVE", "ACK", "NACK"
MSG_HELLO, MSG_RESYNC = "HELLO", "RESYNC_REQUEST"
MsgType = (MSG_STATE, MSG_ALIVE, MSG_ACK, MSG_NACK, MSG_HELLO, MSG_RESYNC)

Table = dict  # a table (kernel, internal or external cache): Conn -> version, 0 = absent
Epoch = tuple[int, int]


def EmptyTable(C: Consts) -> dict[str, int]:
    return {c: 0 for c in C.Conn}


def Present(t: dict[str, int]) -> frozenset[str]:
    return frozenset(c for c, v in t.items() if v != 0)


def SameTable(C: Consts, t: dict[str, int], u: dict[str, int]) -> bool:
    """The same table, as far as the level tells (weak: the same connections exist)."""
    return Present(t) == Present(u) if C.Level == "weak" else t == u


NoEpoch = (0, 0)  # an epoch is (term, node), compared lexicographically; (0, 0) = none


def EpochLT(a: Epoch, b: Epoch) -> bool:
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])


BulkPhase = ("idle", "start", "run")  # bulk dump progress: idle, start requested, running

NoSeq = -1  # resume[n][m] of a peer whose dump's BULK_START is yet to be sent


class Frame(NamedTuple):
    """A frame of the resend queue (a STATE frame without its destination)."""

    seq: int
    conn: str
    ver: int
    start: bool
    end: bool


def Session(C: Consts) -> range:
    """A process incarnation: 1 at Init, + 1 at each Recover."""
    return range(1, C.MaxFail + 2)


class Msg(NamedTuple):
    """Every message has every field; unused fields are 0 / NoConn / False.
    src, sess: the sender and its session; for_ (``for``): the recipient the frame is
    sealed for (0: every peer, STATE and ALIVE); dst: where the network delivers this
    copy. term, enode: the epoch the message is about (STATE, ALIVE: the sender's
    claim; HELLO: the newest the sender has seen, claims = True when it is primary of
    it; ACK, NACK: the stream answered). live (HELLO): the sender follows a primary of
    that epoch it heard lately. seq: STATE: its own seq; ALIVE: the sender's next seq.
    lo..hi: the range of an ACK or NACK."""

    type: str
    src: int
    sess: int
    for_: int
    dst: int
    term: int
    enode: int
    claims: bool = False
    live: bool = False
    seq: int = 0
    conn: str = NoConn
    ver: int = 0
    start: bool = False
    end: bool = False
    lo: int = 0
    hi: int = 0


class Stashed(NamedTuple):
    """A frame the adversary captured, with the nodes whose replay window for its
    sender started after it (they bound the sender since: the copy is spent for them)."""

    msg: Msg
    spent: frozenset[int] = frozenset()


class Promoted(NamedTuple):
    """promoted[n]: how n last became primary (ghost)."""

    ready: bool  # was it BACKUP
    from_: Epoch  # the epoch it followed (``from``)
    how: str  # "none", "elected", "reasserted"


# ---------------------------------------------------------------------------
# 2. Variables
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class State:
    # environment: what the HA manager and the network decide
    role: dict[int, str]
    master: dict[int, bool]  # keepalived's VRRP instance of n is MASTER
    linkUp: frozenset[frozenset[int]]
    env: dict[str, int]  # how much of each fault budget is used
    # tables
    kernel: dict[int, dict[str, int]]
    internal: dict[int, dict[str, int]]
    external: dict[int, dict[str, int]]
    # epochs
    epoch: dict[int, Epoch]  # newest epoch n has seen (persisted)
    # channel: sessions and which one each peer accepts
    sess: dict[int, int]  # n's current session
    bound: dict[int, dict[int, int]]  # bound[n][m]: the session of m whose frames n accepts (0: none)
    # sender (meaningful on a primary)
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
    # receiver (meaningful on a non-primary)
    expect: dict[int, int]
    ackFrom: dict[int, int]
    inBulk: dict[int, bool]
    marked: dict[int, frozenset[str]]
    needSync: dict[int, bool]
    # network and adversary
    msgs: dict[Msg, int]  # bag of messages in flight
    stash: frozenset[Stashed]  # frames the adversary captured
    # ghosts: only the properties read them
    lastVer: dict[str, int]
    born: dict[str, int]
    owed: dict[int, frozenset[tuple[Epoch, str]]]  # (epoch, c): n's ACK of c reached that epoch's primary
    promoted: dict[int, Promoted]
    dead: dict[int, dict[str, int]]  # newest version of c n has seen destroyed in its stream
    dumped: dict[int, bool]  # n applied a whole dump since it last started or stopped being primary
    overflow: bool  # a send did not fit the network
    failedAs: dict[int, str]
    fenced: bool
    repairs: frozenset[str]

    def set(self, **changes: Any) -> State:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        """The state as plain JSON values (trace export; TLC reads it back)."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        if value and isinstance(next(iter(value)), Msg):
            return sorted(([_json(m), n] for m, n in value.items()), key=repr)
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # Msg, Frame, Promoted
        return {k.rstrip("_"): _json(v) for k, v in value._asdict().items()}
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


def upd2(f: dict, n: Any, m: Any, value: Any) -> dict:
    """``[f EXCEPT ![n][m] = value]``"""
    return upd(f, n, upd(f[n], m, value))


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


# STATE and ALIVE are sealed for every peer; the others for their addressee.
Broadcast = frozenset({MSG_STATE, MSG_ALIVE})


def MsgOf(s: State, t: str, src: int, dst: int, **extra: Any) -> Msg:
    return Msg(t, src, s.sess[src], 0 if t in Broadcast else dst, dst, s.epoch[src][0], s.epoch[src][1], **extra)


def MsgEpoch(msg: Msg) -> Epoch:
    return (msg.term, msg.enode)


def BagCardinality(bag: dict[Msg, int]) -> int:
    return sum(bag.values())


def bag_add(bag: dict[Msg, int], items: Iterable[Msg]) -> dict[Msg, int]:
    """``bag (+) SetToBag(items)`` (or one copy per item listed)"""
    out = dict(bag)
    for msg in items:
        out[msg] = out.get(msg, 0) + 1
    return out


def Deliverable(s: State, S: Iterable[Msg]) -> frozenset[Msg]:
    return frozenset(msg for msg in S if Reachable(s, msg.src, msg.dst))


def Fits(bag: dict[Msg, int], S: frozenset[Msg], C: Consts) -> bool:
    return BagCardinality(bag) + len(S) <= C.MaxInFlight


def Put(s: State, C: Consts, bag: dict[Msg, int], S: frozenset[Msg]) -> dict[str, Any]:
    """The network holds at most MaxInFlight messages: what does not fit is lost, and
    the model says so (overflow)."""
    fits = Fits(bag, S, C)
    return {"msgs": bag_add(bag, S) if fits else bag, "overflow": s.overflow or not fits}


def Send(s: State, C: Consts, S: Iterable[Msg]) -> dict[str, Any]:
    """Sending on a link that is down, or to a node that is down, loses it."""
    return Put(s, C, s.msgs, Deliverable(s, S))


def Consume(s: State, msg: Msg) -> dict[Msg, int]:
    out = dict(s.msgs)
    if out.get(msg, 0) <= 1:
        out.pop(msg, None)
    else:
        out[msg] -= 1
    return out


def DropAll(s: State, P: Callable[[Msg], bool]) -> dict[Msg, int]:
    """Every copy of the messages in flight that satisfy P goes (a cut link, a dead process)."""
    return {msg: k for msg, k in s.msgs.items() if not P(msg)}


def ConsumeAndSend(s: State, C: Consts, msg: Msg, S: Iterable[Msg]) -> dict[str, Any]:
    return Put(s, C, Consume(s, msg), Deliverable(s, S))


def InFlight(s: State, n: int, m: int, t: str) -> bool:
    return any(msg.src == n and msg.dst == m and msg.type == t for msg in s.msgs)


def Accepts(s: State, n: int, msg: Msg) -> bool:
    """The channel: n accepts a frame sealed for n (or every peer) from the session of
    its sender that n has bound."""
    return msg.for_ in (0, n) and msg.sess == s.bound[n][msg.src]


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
        **Send(s, C, {StateMsg(s, n, m, f) for m in Peers(C, n)}),
    }


def NewFrame(s: State, n: int, c: str, v: int) -> Frame:
    return Frame(s.nextSeq[n], c, v, False, False)


def StartBulk(s: State, n: int) -> dict[str, Any]:
    return {"bulk": upd(s.bulk, n, "start")}


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
    """Reset the sender side (a node that stops being primary)."""
    return {
        "queue": upd(s.queue, n, ()),
        "bulk": upd(s.bulk, n, "idle"),
        "todo": upd(s.todo, n, frozenset()),
        "dirty": upd(s.dirty, n, frozenset()),
        **ResetPeers(s, n),
    }


def ResetReceiver(s: State, n: int) -> dict[str, Any]:
    """The receiver's stream state for a new epoch of its peer."""
    return {
        "expect": upd(s.expect, n, 0),
        "ackFrom": upd(s.ackFrom, n, 0),
        "inBulk": upd(s.inBulk, n, False),
        "marked": upd(s.marked, n, frozenset()),
    }


# ---------------------------------------------------------------------------
# Initial state: every process just started (SYNCING, must sync), empty tables, all
# links up, no epoch yet, VRRP all backups. The processes' first handshakes are done
# (each bound the others' first session); a process that restarts binds again (Bind).
# ---------------------------------------------------------------------------


def AllLinks(C: Consts) -> frozenset[frozenset[int]]:
    return frozenset(Pair(a, b) for a in C.Node for b in C.Node if a != b)


NotPromoted = Promoted(ready=False, from_=NoEpoch, how="none")


def Init(C: Consts) -> State:
    N = C.Node
    return State(
        role={n: SYNCING for n in N},
        master={n: False for n in N},
        linkUp=AllLinks(C),
        env={"fail": 0, "ha": 0, "cut": 0, "loss": 0, "dup": 0, "replay": 0, "restart": 0},
        kernel={n: EmptyTable(C) for n in N},
        internal={n: EmptyTable(C) for n in N},
        external={n: EmptyTable(C) for n in N},
        epoch={n: NoEpoch for n in N},
        sess={n: 1 for n in N},
        bound={n: {m: 0 if m == n else 1 for m in N} for n in N},
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
        stash=frozenset(),
        lastVer={c: 0 for c in C.Conn},
        born={c: 0 for c in C.Conn},
        owed={n: frozenset() for n in N},
        promoted={n: NotPromoted for n in N},
        dead={n: EmptyTable(C) for n in N},
        dumped={n: False for n in N},
        overflow=False,
        failedAs={n: "none" for n in N},
        fenced=False,
        repairs=frozenset(),
    )


# ---------------------------------------------------------------------------
# 4. The HA manager (environment): keepalived, one VRRP instance per node
# ---------------------------------------------------------------------------


def Hears(s: State, C: Consts, n: int, m: int) -> bool:
    """Whose VRRP adverts n hears: with SplitBrain, VRRP shares the sync links (a cut
    link splits it too: two masters); without, VRRP never splits."""
    return Reachable(s, n, m) if C.SplitBrain else Up(s.role[m])


def Ready(s: State, n: int) -> bool:
    """keepalived's track script (`snep ctl ready`): in sync."""
    return s.role[n] == BACKUP


def HelloClaim(s: State, C: Consts, n: int, e: Epoch) -> set[Msg]:
    return {MsgOf(s, MSG_HELLO, n, m)._replace(term=e[0], enode=e[1], claims=True) for m in Peers(C, n)}


def FollowsLive(s: State, C: Consts, n: int) -> bool:
    """n follows a live primary: the owner of its newest epoch is primary of it and n hears it."""
    o = s.epoch[n][1]
    return o in Peers(C, n) and s.role[o] == PRIMARY and s.epoch[o] == s.epoch[n] and Reachable(s, n, o)


def HelloNews(s: State, C: Consts, n: int, m: int) -> Msg:
    """What n says of its newest epoch in a HELLO to m."""
    return MsgOf(s, MSG_HELLO, n, m)._replace(claims=s.role[n] == PRIMARY, live=FollowsLive(s, C, n))


def OwnStream(s: State, C: Consts, n: int) -> dict[str, Any]:
    """A primary's own sequence space from 0, its first dump due ("start")."""
    return {
        "nextSeq": upd(s.nextSeq, n, 0),
        "queue": upd(s.queue, n, ()),
        "peerAck": upd(s.peerAck, n, {m: 0 for m in C.Node}),
        "bulk": upd(s.bulk, n, "start"),
        "todo": upd(s.todo, n, frozenset()),
        "dirty": upd(s.dirty, n, frozenset()),
        **ResetPeers(s, n),
    }


def BecomePrimary(s: State, C: Consts, n: int, how: str) -> dict[str, Any]:
    """snep's promote: commit the external cache into the kernel (and empty it), take
    the new epoch, internal cache from a kernel dump, HELLO (a claim), bulk send."""
    committed = {c: s.external[n][c] if s.external[n][c] != 0 else s.kernel[n][c] for c in C.Conn}
    e = (s.epoch[n][0] + 1, n)
    return {
        "kernel": upd(s.kernel, n, committed),
        "internal": upd(s.internal, n, dict(committed)),
        "external": upd(s.external, n, EmptyTable(C)),
        "epoch": upd(s.epoch, n, e),
        **Send(s, C, HelloClaim(s, C, n, e)),
        "role": upd(s.role, n, PRIMARY),
        "promoted": upd(s.promoted, n, Promoted(ready=s.role[n] == BACKUP, from_=s.epoch[n], how=how)),
        **OwnStream(s, C, n),
        "needSync": upd(s.needSync, n, False),
        **ResetReceiver(s, n),
    }


def StepBack(s: State, n: int, r: str) -> dict[str, Any]:
    """Stop being primary (or a backup told so): request a resync, a dump before ready."""
    return {
        "role": upd(s.role, n, r),
        "needSync": upd(s.needSync, n, True),
        "dumped": upd(s.dumped, n, False),
        **ClearSender(s, n),
    }


def Promote(s: State, C: Consts, n: int) -> State | None:
    """VRRP elects n master: n hears no master, and n is ready or no ready candidate is heard."""
    if not (s.role[n] in (SYNCING, BACKUP) and not s.master[n] and s.epoch[n][0] < C.MaxTerm):
        return None
    if any(s.master[m] and Hears(s, C, n, m) for m in Peers(C, n)):
        return None
    if not (Ready(s, n) or not any(Ready(s, m) and not s.master[m] and Hears(s, C, n, m) for m in Peers(C, n))):
        return None
    return s.set(master=upd(s.master, n, True), **BecomePrimary(s, C, n, "elected"))


def Resign(s: State, C: Consts, n: int) -> State | None:
    """Two masters hear each other: either may go backup."""
    if not (s.master[n] and any(s.master[m] and Hears(s, C, n, m) for m in Peers(C, n))):
        return None
    u: dict[str, Any] = {"master": upd(s.master, n, False)}
    if s.role[n] == PRIMARY:
        u.update(StepBack(s, n, SYNCING))
    return s.set(**u)


def Demote(s: State, C: Consts, n: int) -> State | None:
    """keepalived says backup (from master or fault) for another reason."""
    if not (s.role[n] in (PRIMARY, FAULT) and s.env["ha"] < C.MaxHA):
        return None
    return s.set(
        env=upd(s.env, "ha", s.env["ha"] + 1),
        master=upd(s.master, n, False),
        **StepBack(s, n, SYNCING),
    )


def Fault(s: State, C: Consts, n: int) -> State | None:
    """keepalived says fault: not primary, keeps receiving, not ready."""
    if not (s.role[n] in (PRIMARY, SYNCING, BACKUP) and s.env["ha"] < C.MaxHA):
        return None
    return s.set(
        env=upd(s.env, "ha", s.env["ha"] + 1),
        master=upd(s.master, n, False),
        **StepBack(s, n, FAULT),
    )


def Fail(s: State, C: Consts, n: int) -> State | None:
    """The node dies: caches and queues are gone; kernel and persisted epoch stay."""
    if not (Up(s.role[n]) and s.env["fail"] < C.MaxFail):
        return None
    return s.set(
        env=upd(s.env, "fail", s.env["fail"] + 1),
        role=upd(s.role, n, DOWN),
        master=upd(s.master, n, False),
        internal=upd(s.internal, n, EmptyTable(C)),
        external=upd(s.external, n, EmptyTable(C)),
        **ClearSender(s, n),
        **ResetReceiver(s, n),
        needSync=upd(s.needSync, n, False),
        msgs=DropAll(s, lambda msg: msg.dst == n),
        failedAs=upd(s.failedAs, n, s.role[n]),
        dumped=upd(s.dumped, n, False),
    )


def Recover(s: State, C: Consts, n: int) -> State | None:
    """Process start: a new session (no peer's bound yet), internal cache from a kernel
    dump, external empty, SYNCING. Its first RequestResync is the start's HELLO +
    RESYNC_REQUEST."""
    if s.role[n] != DOWN:
        return None
    return s.set(
        role=upd(s.role, n, SYNCING),
        sess=upd(s.sess, n, s.sess[n] + 1),
        bound=upd(s.bound, n, {m: 0 for m in C.Node}),
        internal=upd(s.internal, n, dict(s.kernel[n])),
        external=upd(s.external, n, EmptyTable(C)),
        needSync=upd(s.needSync, n, True),
        dead=upd(s.dead, n, EmptyTable(C)),
        **ResetReceiver(s, n),
    )


def HearsOfPrimary(s: State, C: Consts, n: int) -> bool:
    """n hears of a live primary, from it or from a node that follows it."""
    return any(
        Reachable(s, n, p)
        or any(Reachable(s, n, b) and s.epoch[b] == s.epoch[p] and FollowsLive(s, C, b) for b in Peers(C, n))
        for p in Primaries(s)
    )


def Reassert(s: State, C: Consts, n: int) -> State | None:
    """keepalived made n master, n is not primary (fenced since) and hears of no primary."""
    if not (s.master[n] and s.role[n] in (SYNCING, BACKUP) and s.epoch[n][0] < C.MaxTerm):
        return None
    if HearsOfPrimary(s, C, n):
        return None
    return s.set(**BecomePrimary(s, C, n, "reasserted"))


# ---------------------------------------------------------------------------
# 5. The network, the adversary, the channel
# ---------------------------------------------------------------------------


def LinkDown(s: State, C: Consts, a: int, b: int) -> State | None:
    if not (a < b and Pair(a, b) in s.linkUp and s.env["cut"] < C.MaxCut):
        return None
    return s.set(
        env=upd(s.env, "cut", s.env["cut"] + 1),
        linkUp=s.linkUp - {Pair(a, b)},
        msgs=DropAll(s, lambda msg: Pair(msg.src, msg.dst) == Pair(a, b)),
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
    if not (s.env["dup"] < C.MaxDup and BagCardinality(s.msgs) < C.MaxInFlight and msg in s.msgs):
        return None
    return s.set(msgs=bag_add(s.msgs, [msg]), env=upd(s.env, "dup", s.env["dup"] + 1))


def RestartBulk(s: State, C: Consts, n: int) -> State | None:
    """The primary (re)starts a dump on its own (large frames its path drops): a
    reaction to losses, at most MaxLoss of them."""
    if not (s.role[n] == PRIMARY and s.bulk[n] != "start" and s.env["restart"] < C.MaxLoss):
        return None
    return s.set(env=upd(s.env, "restart", s.env["restart"] + 1), **StartBulk(s, n))


def Capture(s: State, C: Consts, msg: Msg) -> State | None:
    """The adversary (no key) keeps a copy of a frame it sees."""
    if not (len(s.stash) < C.MaxReplay and msg in s.msgs and all(e.msg != msg for e in s.stash)):
        return None
    return s.set(stash=s.stash | {Stashed(msg)})


def Replay(s: State, C: Consts, e: Stashed, d: int) -> State | None:
    """... and later sends it to any node d (it cannot reseal it) whose window for the
    frame's sender has not started since."""
    if not (s.env["replay"] < C.MaxReplay and BagCardinality(s.msgs) < C.MaxInFlight):
        return None
    if not (e in s.stash and d != e.msg.src and d not in e.spent and Up(s.role[d])):
        return None
    return s.set(msgs=bag_add(s.msgs, [e.msg._replace(dst=d)]), env=upd(s.env, "replay", s.env["replay"] + 1))


def Reject(s: State, C: Consts, n: int, msg: Msg) -> State | None:
    """A frame the channel refuses (an earlier session, or sealed for another node)."""
    if not (Up(s.role[n]) and msg in s.msgs and msg.dst == n and not Accepts(s, n, msg)):
        return None
    return s.set(msgs=Consume(s, msg))


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
        kernel=upd2(s.kernel, n, c, s.lastVer[c] + 1),
        lastVer=upd(s.lastVer, c, s.lastVer[c] + 1),
        born=upd(s.born, c, s.lastVer[c] + 1),
    )


def ConnUpdate(s: State, C: Consts, n: int, c: str) -> State | None:
    if not (s.role[n] == PRIMARY and Settled(s, n) and s.kernel[n][c] != 0 and s.lastVer[c] < C.MaxVersion):
        return None
    return s.set(kernel=upd2(s.kernel, n, c, s.lastVer[c] + 1), lastVer=upd(s.lastVer, c, s.lastVer[c] + 1))


def ConnDestroy(s: State, C: Consts, n: int, c: str) -> State | None:
    """No longer owed to anyone; the primary has seen this version die."""
    if not (s.role[n] == PRIMARY and Settled(s, n) and s.kernel[n][c] != 0):
        return None
    return s.set(
        kernel=upd2(s.kernel, n, c, 0),
        owed={m: frozenset(x for x in o if x[1] != c) for m, o in s.owed.items()},
        dead=upd2(s.dead, n, c, max(s.kernel[n][c], s.dead[n][c])),
    )


def KernelExpire(s: State, C: Consts, n: int, c: str) -> State | None:
    """On a node that is not primary, kernel entries time out."""
    if not (s.role[n] != PRIMARY and s.kernel[n][c] != 0):
        return None
    return s.set(kernel=upd2(s.kernel, n, c, 0))


# ---------------------------------------------------------------------------
# 7. The sender (a primary)
# ---------------------------------------------------------------------------


def Notify(s: State, C: Consts, n: int, c: str) -> State | None:
    """A kernel event: the internal cache follows; the level decides what is sent."""
    if not (s.role[n] == PRIMARY and s.internal[n][c] != s.kernel[n][c]):
        return None
    internal = upd2(s.internal, n, c, s.kernel[n][c])
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
    """(Python only, for :func:`params`) what the dump has left that was destroyed
    since it started: SendBulk's ``gone``."""
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
    rest = left - ({c} | drop)
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
    if not (s.role[n] == PRIMARY and m in Peers(C, n)):
        return None
    if not (s.peerLive[n][m] and Reachable(s, n, m)):
        return None
    if InFlight(s, n, m, MSG_STATE) or InFlight(s, m, n, MSG_ACK):  # (a timeout exceeds a round trip)
        return None
    frames = Unacked(s, n, m)
    if not frames:
        return None
    return s.set(**Send(s, C, {StateMsg(s, n, m, f) for f in frames}))


def SendAlive(s: State, C: Consts, n: int) -> State | None:
    """ALIVE on an idle channel: carries the next seq."""
    if s.role[n] != PRIMARY:
        return None
    idle = [
        m
        for m in Peers(C, n)
        if Reachable(s, n, m) and not InFlight(s, n, m, MSG_STATE) and not InFlight(s, n, m, MSG_ALIVE)
        and not (s.peerLive[n][m] and Unacked(s, n, m))
    ]  # fmt: skip
    if not idle:
        return None
    return s.set(**Send(s, C, {MsgOf(s, MSG_ALIVE, n, m, seq=s.nextSeq[n]) for m in idle}))


def Newer(s: State, n: int, msg: Msg) -> bool:
    return EpochLT(s.epoch[n], MsgEpoch(msg))


def Stale(s: State, n: int, msg: Msg) -> bool:
    return EpochLT(MsgEpoch(msg), s.epoch[n])


def Receivable(s: State, n: int, m: int, t: str) -> list[Msg]:
    return [msg for msg in s.msgs if msg.dst == n and msg.src == m and msg.type == t and Accepts(s, n, msg)]


def StepDown(s: State, C: Consts, n: int, e: Epoch) -> dict[str, Any]:
    """Adopt a newer epoch; a primary steps down."""
    u: dict[str, Any] = {
        "epoch": upd(s.epoch, n, e),
        "role": upd(s.role, n, SYNCING if s.role[n] == PRIMARY else s.role[n]),
        "needSync": upd(s.needSync, n, s.needSync[n] or s.role[n] == PRIMARY),
        "dumped": upd(s.dumped, n, s.dumped[n] and s.role[n] != PRIMARY),
        "dead": upd(s.dead, n, EmptyTable(C)),
        **ResetReceiver(s, n),
    }
    if s.role[n] == PRIMARY:
        u.update(ClearSender(s, n))
    return u


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


def Owe(s: State, o: frozenset, e: Epoch, fs: set[Frame], n: int) -> frozenset[tuple[Epoch, str]]:
    """What an ACK of the frames fs makes owed to m (ghost): per connection, the newest
    covered frame counts: a current incarnation the primary still has is owed, a
    DESTROY (version 0) is not."""
    conns = {f.conn for f in fs} - {NoConn}

    def newest(c: str) -> Frame:
        return max((f for f in fs if f.conn == c), key=lambda f: f.seq)

    def keeps(c: str) -> bool:
        return newest(c).ver != 0 and s.kernel[n][c] != 0 and newest(c).ver >= s.born[c]

    return frozenset(x for x in o if x[0] != e or x[1] not in conns) | {(e, c) for c in conns if keeps(c)}


def RecvAck(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """ACK(lo, hi): cumulative; the queue is trimmed. Another epoch's: nothing."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_ACK)):
        return None
    u: dict[str, Any] = {"msgs": Consume(s, msg), "peerLive": upd2(s.peerLive, n, m, True)}
    if s.role[n] == PRIMARY and MsgEpoch(msg) == s.epoch[n]:
        pa = upd2(s.peerAck, n, m, max(msg.hi + 1, s.peerAck[n][m]))
        pl = upd2(s.peerLive, n, m, True)
        fs = {f for f in s.queue[n] if msg.lo <= f.seq <= msg.hi}
        u.update(Advance(s, n, m, msg.hi + 1))
        u["queue"] = upd(s.queue, n, Trim(C, s.queue[n], n, pa[n], pl[n]))
        u["owed"] = upd(s.owed, m, Owe(s, s.owed[m], s.epoch[n], fs, n))
    return s.set(**u)


def RecvNack(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """A late copy gets the frames from the acknowledged position; a peer a dump serves
    gets those from its BULK_START; one older than the queue, a dump; else retransmit.
    A NACK about another epoch's stream changes nothing."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_NACK)):
        return None
    held = s.queue[n]
    serve = s.role[n] == PRIMARY and MsgEpoch(msg) == s.epoch[n]
    ack = s.peerAck[n][m]
    adv = msg.lo > ack
    # whether m waits for a dump, and from where, after Advance
    b = s.behind[n][m] and not (adv and s.resume[n][m] != NoSeq and msg.lo > s.resume[n][m])
    r = s.resume[n][m] if b else NoSeq

    def inQueue(x: int) -> bool:
        return bool(held) and x >= held[0].seq

    late = not adv and msg.lo != 0 and msg.lo < ack and not inQueue(msg.lo) and s.ackedRecently[n][m]
    first = ack if late else msg.lo

    def Resend(lo: int) -> dict[str, Any]:
        return ConsumeAndSend(s, C, msg, {StateMsg(s, n, m, g) for g in held if lo <= g.seq <= msg.hi})

    u: dict[str, Any] = {"peerLive": upd2(s.peerLive, n, m, True)}
    if not serve:
        return s.set(msgs=Consume(s, msg), **u)
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
            u.update(Resend(max(r, first)))
            u["repairs"] = s.repairs | {"retransmit"}
    elif not inQueue(first):
        u["msgs"] = Consume(s, msg)
        u.update(NeedsDump(s, n, m, b, r))
        u["repairs"] = s.repairs | {"resync"}
    else:
        u.update(Resend(first))
        u.update(keep)
        u["repairs"] = s.repairs | {"retransmit"}
    return s.set(**u)


def RecvResyncRequest(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """A primary answers with a dump unless one under way serves the requester."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_RESYNC)):
        return None
    u: dict[str, Any] = {"msgs": Consume(s, msg), "peerLive": upd2(s.peerLive, n, m, True)}
    if s.role[n] == PRIMARY:
        u.update(NeedsDump(s, n, m, s.behind[n][m], s.resume[n][m]))
    return s.set(**u)


def AckAges(s: State, C: Consts, n: int, m: int) -> State | None:
    """The retransmit timeout passes: m's acknowledgement is no longer a moment ago."""
    if not s.ackedRecently[n][m]:
        return None
    return s.set(ackedRecently=upd2(s.ackedRecently, n, m, False))


def PeerTimeout(s: State, C: Consts, n: int, m: int) -> State | None:
    """A peer silent for the dead timeout (really unreachable): its acks no longer hold the queue."""
    if not (s.role[n] == PRIMARY and m != n and s.peerLive[n][m] and not Reachable(s, n, m)):
        return None
    pl = upd2(s.peerLive, n, m, False)
    return s.set(peerLive=pl, queue=upd(s.queue, n, Trim(C, s.queue[n], n, s.peerAck[n], pl[n])))


# ---------------------------------------------------------------------------
# 8. The receiver (a non-primary)
# ---------------------------------------------------------------------------


class R0(NamedTuple):
    """RecvState's r0: the receiver after adopting a newer epoch (if any)."""

    expect: int
    ackFrom: int
    role: str
    needSync: bool
    dumped: bool
    dead: dict[str, int]
    inBulk: bool
    marked: frozenset[str]


def Applied(s: State, n: int, msg: Msg, r0: R0) -> dict[str, int]:
    """The external cache after one in-order STATE frame (mark and sweep)."""
    ext0 = s.external[n]
    mk0 = Present(ext0) if msg.start else r0.marked
    ib = msg.start or r0.inBulk
    ext1 = ext0 if msg.conn == NoConn else upd(ext0, msg.conn, msg.ver)
    mk1 = mk0 - {msg.conn}
    sweep = msg.end and ib
    return {c: 0 if c in mk1 else v for c, v in ext1.items()} if sweep else ext1


def ApplyState(s: State, n: int, msg: Msg, r0: R0) -> dict[str, Any]:
    """What the stream removes (a DESTROY, a sweep) leaves the node's kernel too; the
    first whole dump since the node became a backup vouches for its kernel: confirmed
    entries take the primary's state, the others go (VouchKernel)."""
    mk0 = Present(s.external[n]) if msg.start else r0.marked
    ib = msg.start or r0.inBulk
    sweep = msg.end and ib
    ext2 = Applied(s, n, msg, r0)
    gone = {c for c in Present(s.external[n]) if ext2[c] == 0}
    vouch = sweep and not r0.dumped
    if vouch:
        kernel = {c: ext2[c] if v != 0 else 0 for c, v in s.kernel[n].items()}
    else:
        kernel = {c: 0 if c in gone else v for c, v in s.kernel[n].items()}
    return {
        "external": upd(s.external, n, ext2),
        "kernel": upd(s.kernel, n, kernel),
        "dead": upd(s.dead, n, {
            c: s.external[n][c] if c in gone and s.external[n][c] > r0.dead[c] else r0.dead[c] for c in r0.dead
        }),
        "marked": upd(s.marked, n, frozenset() if sweep else mk0 - {msg.conn}),
        "inBulk": upd(s.inBulk, n, ib and not sweep),
        "expect": upd(s.expect, n, msg.seq + 1),
        "needSync": upd(s.needSync, n, False if sweep else r0.needSync),
        "dumped": upd(s.dumped, n, r0.dumped or sweep),
        "role": upd(s.role, n, BACKUP if sweep and r0.role == SYNCING else r0.role),
    }  # fmt: skip


def AckOnPause(s: State, C: Consts, n: int, m: int, msg: Msg, af: int, ex: int) -> dict[str, Any]:
    """The ack delay: when no further frame of the stream is in flight, the frames
    applied and not yet acknowledged are acknowledged at once (af..ex-1)."""
    rest = Consume(s, msg)
    pause = not any(x.src == m and x.dst == n and x.type == MSG_STATE for x in rest)
    ack = MsgOf(s, MSG_ACK, n, m)._replace(term=msg.term, enode=msg.enode, lo=af, hi=ex - 1)
    if pause and af < ex:
        return {**Put(s, C, rest, Deliverable(s, {ack})), "ackFrom": upd(s.ackFrom, n, ex)}
    return {"msgs": rest, "ackFrom": upd(s.ackFrom, n, af)}


def RecvState(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """STATE: strictly in order; a gap is dropped and NACKed; a duplicate is dropped and
    re-acknowledged; a stale epoch's frame is dropped, never applied."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_STATE)):
        return None
    adopt = Newer(s, n, msg)
    wasPrimary = adopt and s.role[n] == PRIMARY
    r0 = R0(
        expect=0 if adopt else s.expect[n],
        ackFrom=0 if adopt else s.ackFrom[n],
        role=SYNCING if wasPrimary else s.role[n],
        needSync=s.needSync[n] or wasPrimary,
        dumped=s.dumped[n] and not wasPrimary,
        dead=EmptyTable(C) if adopt else s.dead[n],
        inBulk=False if adopt else s.inBulk[n],
        marked=frozenset() if adopt else s.marked[n],
    )
    u: dict[str, Any] = {
        "peerLive": upd2(s.peerLive, n, m, True),
        "epoch": upd(s.epoch, n, MsgEpoch(msg)) if adopt else s.epoch,
    }
    if wasPrimary:
        u.update(ClearSender(s, n))
    if Stale(s, n, msg) or (s.role[n] == PRIMARY and not adopt):
        # fenced: never applied; the stale sender is told the newest
        hello = {HelloNews(s, C, n, m)} if not InFlight(s, n, m, MSG_HELLO) else set()
        u.update(ConsumeAndSend(s, C, msg, hello))
        u["fenced"] = s.fenced or Stale(s, n, msg)
    elif msg.seq == r0.expect or (msg.start and msg.seq > r0.expect):
        u.update(ApplyState(s, n, msg, r0))
        u.update(AckOnPause(s, C, n, m, msg, msg.seq if msg.seq > r0.expect else r0.ackFrom, msg.seq + 1))
    elif msg.seq > r0.expect:  # gap: drop it, NACK what is missing
        nack = MsgOf(s, MSG_NACK, n, m)._replace(term=msg.term, enode=msg.enode, lo=r0.expect, hi=msg.seq - 1)
        u.update(ConsumeAndSend(s, C, msg, {nack} if not InFlight(s, n, m, MSG_NACK) else set()))
        u["expect"] = upd(s.expect, n, r0.expect)
        u["ackFrom"] = upd(s.ackFrom, n, r0.ackFrom)
        u["role"] = upd(s.role, n, r0.role)
        u["needSync"] = upd(s.needSync, n, r0.needSync)
        u["dumped"] = upd(s.dumped, n, r0.dumped)
        u["dead"] = upd(s.dead, n, r0.dead)
        u["inBulk"] = upd(s.inBulk, n, r0.inBulk)
        u["marked"] = upd(s.marked, n, r0.marked)
    else:  # duplicate: drop, acknowledge again from its seq
        u.update(AckOnPause(s, C, n, m, msg, msg.seq if msg.seq < r0.ackFrom else r0.ackFrom, r0.expect))
    return s.set(**u)


def RecvAlive(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """ALIVE carries the primary's next seq: a receiver that is behind NACKs."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_ALIVE)):
        return None
    u: dict[str, Any] = {"peerLive": upd2(s.peerLive, n, m, True)}
    if Stale(s, n, msg):
        hello = {HelloNews(s, C, n, m)} if not InFlight(s, n, m, MSG_HELLO) else set()
        return s.set(**u, **ConsumeAndSend(s, C, msg, hello), fenced=True)
    adopt = Newer(s, n, msg)
    exp = 0 if adopt else s.expect[n]
    if adopt:
        u.update(StepDown(s, C, n, MsgEpoch(msg)))
    if (s.role[n] != PRIMARY or adopt) and msg.seq > exp:
        nack = MsgOf(s, MSG_NACK, n, m)._replace(term=msg.term, enode=msg.enode, lo=exp, hi=msg.seq - 1)
        u.update(ConsumeAndSend(s, C, msg, {nack} if not InFlight(s, n, m, MSG_NACK) else set()))
    else:
        u["msgs"] = Consume(s, msg)
    return s.set(**u)


def SendAck(s: State, C: Consts, n: int, m: int) -> State | None:
    """The ack window: after AckWindow applied frames (the ack delay is AckOnPause)."""
    if not (s.role[n] in Receiving and s.epoch[n][1] == m and m != n and s.expect[n] - s.ackFrom[n] >= AckWindow):
        return None
    ack = MsgOf(s, MSG_ACK, n, m, lo=s.ackFrom[n], hi=s.expect[n] - 1)
    return s.set(**Send(s, C, {ack}), ackFrom=upd(s.ackFrom, n, s.expect[n]))


def RequestResync(s: State, C: Consts, n: int, m: int) -> State | None:
    """Ask the known primary (or everyone) for a dump; retried when none is in flight."""
    if not (s.role[n] in Receiving and s.needSync[n] and not s.inBulk[n] and m != n):
        return None
    if not (s.epoch[n][1] in (m, 0, n) and Reachable(s, n, m)):
        return None
    if InFlight(s, n, m, MSG_RESYNC) or InFlight(s, m, n, MSG_STATE):
        return None
    return s.set(**Send(s, C, {MsgOf(s, MSG_RESYNC, n, m)}))


def HearEpoch(s: State, C: Consts, n: int, e: Epoch, claims: bool, live: bool, bag: dict[Msg, int],
              reset: int) -> dict[str, Any]:  # fmt: skip
    """n hears of epoch e from a peer. Newer and vouched for (claims or live), or n is
    not primary: adopted (a primary steps down). Newer but merely heard of, on a
    primary: it takes a term above (Retake). bag: the messages in flight (the HELLO
    consumed); reset: the peer whose former acknowledgements no longer count, or 0."""
    if EpochLT(s.epoch[n], e) and (claims or live or s.role[n] != PRIMARY):
        return {**StepDown(s, C, n, e), "msgs": bag}
    if EpochLT(s.epoch[n], e) and e[0] < C.MaxTerm:  # Retake
        e2 = (e[0] + 1, n)
        return {
            "epoch": upd(s.epoch, n, e2),
            **Put(s, C, bag, Deliverable(s, HelloClaim(s, C, n, e2))),
            **OwnStream(s, C, n),
        }
    u: dict[str, Any] = {"msgs": bag}
    if reset != 0:
        u["ackedRecently"] = upd2(s.ackedRecently, n, reset, False)
    return u


def RecvHello(s: State, C: Consts, n: int, m: int, msg: Msg) -> State | None:
    """HELLO: a node announces the newest epoch it has seen (HearEpoch)."""
    if not (Up(s.role[n]) and msg in Receivable(s, n, m, MSG_HELLO)):
        return None
    return s.set(
        peerLive=upd2(s.peerLive, n, m, True),
        **HearEpoch(s, C, n, MsgEpoch(msg), msg.claims, msg.live, Consume(s, msg), 0),
    )


def Bind(s: State, C: Consts, n: int, m: int) -> State | None:
    """The handshake, as one step: n binds m's current session; n's replay window for
    m starts after it (what m sent n before, in flight or captured, is refused); m's
    HELLO tells its newest epoch (HearEpoch); m may have restarted: its former acks are
    not recent."""
    if not (m != n and Up(s.role[n]) and Reachable(s, n, m) and s.bound[n][m] != s.sess[m]):
        return None
    stash = frozenset(e._replace(spent=e.spent | {n}) if e.msg.src == m else e for e in s.stash)
    dropped = DropAll(s, lambda x: x.src == m and x.dst == n)
    return s.set(
        bound=upd2(s.bound, n, m, s.sess[m]),
        stash=stash,
        **HearEpoch(s, C, n, s.epoch[m], s.role[m] == PRIMARY, FollowsLive(s, C, m), dropped, m),
    )


def IsRetake(s: State, t: State, n: int) -> bool:
    """(Python only: the tests count it) a step of HearEpoch's Retake branch on n."""
    return s.role[n] == PRIMARY and t.role[n] == PRIMARY and t.epoch[n] != s.epoch[n]


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
# 9. Next state (fairness: spec only)
# ---------------------------------------------------------------------------

Step = tuple[str, tuple[Any, ...], State]

HA_MANAGER = ("Promote", "Resign", "Demote", "Fault", "Fail", "Recover")
ENVIRONMENT = HA_MANAGER + (
    "LinkDown", "LinkUp", "LoseMsg", "DuplicateMsg", "Capture", "Replay", "RestartBulk",
    "ConnNew", "ConnUpdate", "ConnDestroy", "KernelExpire",
)  # fmt: skip
PROTOCOL = (
    "Notify", "FlushIncremental", "SendBulk", "Retransmit", "SendAlive", "Reassert", "Reject",
    "RecvAck", "RecvNack", "RecvResyncRequest", "PeerTimeout", "AckAges", "Bind",
    "RecvState", "RecvAlive", "SendAck", "RequestResync", "RecvHello",
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
    if name in HA_MANAGER or name in ("SendAlive", "Reassert", "RestartBulk"):
        yield from ((n,) for n in N)
    elif name in ("LinkDown", "LinkUp"):
        yield from ((a, b) for a in N for b in N)
    elif name in ("LoseMsg", "DuplicateMsg", "Capture"):
        yield from ((msg,) for msg in s.msgs)
    elif name == "Replay":
        yield from ((msg, d) for msg in sorted(s.stash) for d in N)
    elif name == "Reject":
        yield from ((msg.dst, msg) for msg in s.msgs)
    elif name in ("ConnNew", "ConnUpdate", "ConnDestroy", "KernelExpire", "Notify", "FlushIncremental"):
        yield from ((n, c) for n in N for c in C.Conn)
    elif name == "SendBulk":
        for n in N:
            gone = sorted(BulkGone(s, n)) if s.bulk[n] != "idle" else []
            drops = [frozenset(x for i, x in enumerate(gone) if k >> i & 1) for k in range(1 << len(gone))]
            yield from ((n, c, d) for c in C.Conn + (NoConn,) for d in drops)
    elif name in ("Retransmit", "PeerTimeout", "SendAck", "RequestResync", "AckAges", "Bind"):
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
    N, Conn = set(C.Node), set(C.Conn)

    def table(t: dict[str, int]) -> bool:
        return set(t) == Conn and all(0 <= v <= C.MaxVersion for v in t.values())

    def epoch(e: Epoch) -> bool:
        return 0 <= e[0] <= C.MaxTerm and (e[1] in N or e[1] == 0)

    def per_node(f: dict, ok: Callable[[Any], bool]) -> bool:
        return set(f) == N and all(ok(v) for v in f.values())

    def per_pair(f: dict, ok: Callable[[Any], bool]) -> bool:
        return per_node(f, lambda g: per_node(g, ok))

    def frame(f: Frame) -> bool:
        return f.seq >= 0 and (f.conn in Conn or f.conn == NoConn) and 0 <= f.ver <= C.MaxVersion

    def msg(x: Msg) -> bool:
        return (
            x.type in MsgType and x.src in N and x.sess in Session(C) and (x.for_ in N or x.for_ == 0)
            and x.dst in N and x.term >= 0 and (x.enode in N or x.enode == 0) and x.seq >= 0
            and (x.conn in Conn or x.conn == NoConn) and 0 <= x.ver <= C.MaxVersion and x.lo >= 0 and x.hi >= 0
        )  # fmt: skip

    return (
        per_node(s.role, lambda r: r in Role)
        and per_node(s.master, lambda b: isinstance(b, bool))
        and s.linkUp <= {Pair(a, b) for a in N for b in N}
        and set(s.env) == {"fail", "ha", "cut", "loss", "dup", "replay", "restart"}
        and 0 <= s.env["fail"] <= C.MaxFail and 0 <= s.env["ha"] <= C.MaxHA and 0 <= s.env["cut"] <= C.MaxCut
        and 0 <= s.env["loss"] <= C.MaxLoss and 0 <= s.env["dup"] <= C.MaxDup
        and 0 <= s.env["replay"] <= C.MaxReplay and 0 <= s.env["restart"] <= C.MaxLoss
        and all(per_node(t, table) for t in (s.kernel, s.internal, s.external))
        and per_node(s.epoch, epoch)
        and per_node(s.sess, lambda x: x in Session(C))
        and per_pair(s.bound, lambda x: x == 0 or x in Session(C))
        and per_node(s.nextSeq, lambda x: x >= 0)
        and per_node(s.queue, lambda q: all(frame(f) for f in q))
        and per_pair(s.peerAck, lambda x: x >= 0)
        and per_pair(s.peerLive, lambda b: isinstance(b, bool))
        and per_node(s.bulk, lambda b: b in BulkPhase)
        and per_node(s.todo, lambda x: x <= Conn) and per_node(s.dirty, lambda x: x <= Conn)
        and per_pair(s.behind, lambda b: isinstance(b, bool))
        and per_pair(s.resume, lambda r: r == NoSeq or r >= 0)
        and per_pair(s.ackedRecently, lambda b: isinstance(b, bool))
        and per_node(s.expect, lambda x: x >= 0) and per_node(s.ackFrom, lambda x: x >= 0)
        and per_node(s.inBulk, lambda b: isinstance(b, bool)) and per_node(s.marked, lambda x: x <= Conn)
        and per_node(s.needSync, lambda b: isinstance(b, bool))
        and all(k > 0 and msg(x) for x, k in s.msgs.items())
        and all(msg(x.msg) and x.spent <= set(C.Node) for x in s.stash)
        and set(s.lastVer) == Conn and all(0 <= v <= C.MaxVersion for v in s.lastVer.values())
        and set(s.born) == Conn and all(0 <= v <= C.MaxVersion for v in s.born.values())
        and per_node(s.owed, lambda o: all(epoch(x[0]) and x[1] in Conn for x in o))
        and per_node(s.promoted, lambda p: epoch(p.from_) and p.how in ("none", "elected", "reasserted"))
        and per_node(s.dead, table)
        and per_node(s.dumped, lambda b: isinstance(b, bool))
        and isinstance(s.overflow, bool)
        and per_node(s.failedAs, lambda r: r in Role or r == "none")
        and isinstance(s.fenced, bool)
        and s.repairs <= {"retransmit", "resync"}
    )  # fmt: skip


def OnePrimaryPerEpoch(s: State, C: Consts) -> bool:
    """No two primaries in the same epoch; a primary's epoch is its own."""
    P = Primaries(s)
    return all(s.epoch[n][1] == n for n in P) and all(s.epoch[n] != s.epoch[m] for n in P for m in P if n != m)


def OnePrimary(s: State, C: Consts) -> bool:
    """When VRRP cannot split, at most one node is primary."""
    return C.SplitBrain or len(Primaries(s)) <= 1


def PrimaryIsMaster(s: State, C: Consts) -> bool:
    """A primary is the node keepalived made master."""
    return all(s.master[n] for n in Primaries(s))


def NoAckedStateLost(s: State, C: Consts) -> bool:
    """A node that took over while in sync holds in its kernel every connection it
    acknowledged to the primary it followed, unless destroyed since."""
    return all(
        s.kernel[n][x[1]] != 0
        for n in Primaries(s)
        if s.promoted[n].ready
        for x in s.owed[n]
        if x[0] == s.promoted[n].from_
    )


def AckCoversApplied(s: State, C: Consts) -> bool:
    """A BACKUP the primary's book shows has acknowledged every frame holds its table."""
    return all(
        SameTable(C, s.external[b], s.internal[p])
        for p in Primaries(s)
        for b in C.Node
        if b != p and s.role[b] == BACKUP and s.epoch[b] == s.epoch[p]
        and s.peerLive[p][b] and not s.behind[p][b] and s.nextSeq[p] > 0
        and s.peerAck[p][b] == s.nextSeq[p]
        and s.bulk[p] == "idle" and not s.dirty[p] and Settled(s, p)
    )  # fmt: skip


def NoResurrection(s: State, C: Consts) -> bool:
    """Never again a version of a connection seen destroyed in the stream followed."""
    return all(
        (s.role[n] != PRIMARY or s.kernel[n][c] == 0 or s.kernel[n][c] > s.dead[n][c])
        and (s.role[n] not in Receiving or s.external[n][c] == 0 or s.external[n][c] > s.dead[n][c])
        for n in C.Node
        for c in C.Conn
    )


def ReadyMeansSynced(s: State, C: Consts) -> bool:
    """Ready (BACKUP) only after a whole dump since the node last started or stopped
    being primary or was told fault."""
    return all(s.dumped[n] for n in C.Node if s.role[n] == BACKUP)


def KernelVouched(s: State, C: Consts) -> bool:
    """No zombie in a backup's kernel: a ready backup's kernel holds only what its
    primary's stream vouches for."""
    return all(s.external[n][c] != 0 for n in C.Node if s.role[n] == BACKUP for c in C.Conn if s.kernel[n][c] != 0)


def QueueBounded(s: State, C: Consts) -> bool:
    return all(len(q) <= C.QueueBound for q in s.queue.values())


def NoOverflow(s: State, C: Consts) -> bool:
    """The protocol never floods the network beyond MaxInFlight messages."""
    return not s.overflow


# The safety invariants (spec/models.toml: [sets].safety); NoOverflow is checked
# only by the model that bounds the network for it (Start).
INVARIANTS: dict[str, Callable[[State, Consts], bool]] = {
    "TypeOK": TypeOK,
    "OnePrimaryPerEpoch": OnePrimaryPerEpoch,
    "OnePrimary": OnePrimary,
    "PrimaryIsMaster": PrimaryIsMaster,
    "NoAckedStateLost": NoAckedStateLost,
    "AckCoversApplied": AckCoversApplied,
    "NoResurrection": NoResurrection,
    "ReadyMeansSynced": ReadyMeansSynced,
    "KernelVouched": KernelVouched,
    "QueueBounded": QueueBounded,
}


def Consumed(s: State, t: State, msg: Msg) -> bool:
    return t.msgs.get(msg, 0) < s.msgs.get(msg, 0)


def NoStaleStateStep(s: State, t: State, C: Consts) -> bool:
    """Every step that changes the external cache of a node that receives before and
    after consumes a STATE message whose epoch is not older than the node's newest."""
    return all(
        any(msg.dst == n and msg.type == MSG_STATE and Consumed(s, t, msg) and not Stale(s, n, msg) for msg in s.msgs)
        for n in C.Node
        if s.role[n] in Receiving and t.role[n] in Receiving and t.external[n] != s.external[n]
    )


def EpochMonotonicStep(s: State, t: State, C: Consts) -> bool:
    """Epochs only grow."""
    return all(not EpochLT(t.epoch[n], s.epoch[n]) for n in C.Node)


def ToldOfAPrimary(s: State, t: State, C: Consts, n: int) -> bool:
    """In the step s -> t, n was told of a primary: a claim (STATE, ALIVE, a primary's
    HELLO) or a HELLO vouching for a live primary, consumed, or the handshake with a
    primary or with a node that follows a live one (Bind)."""
    return any(
        msg.dst == n and Consumed(s, t, msg) and (msg.type in Broadcast or msg.claims or msg.live)
        for msg in s.msgs
    ) or any(
        t.bound[n][m] != s.bound[n][m] and (s.role[m] == PRIMARY or FollowsLive(s, C, m))
        for m in Peers(C, n)
    )


def StepsDownOnlyForAPrimaryStep(s: State, t: State, C: Consts) -> bool:
    """A live primary is never deposed by a node that is down or behind: it steps down
    only when told of a primary (or when keepalived takes its master role away)."""
    return all(
        ToldOfAPrimary(s, t, C, n)
        for n in C.Node
        if s.role[n] == PRIMARY and t.role[n] == SYNCING and t.master[n]
    )


def KernelKeptStep(s: State, t: State, C: Consts) -> bool:
    """A primary's kernel changes only by its own traffic, and one that steps down
    keeps its kernel as it is."""
    return all(
        (not (s.role[n] == PRIMARY and t.role[n] == PRIMARY and t.kernel[n] != s.kernel[n])
         or t.internal[n] == s.internal[n])
        and (not (s.role[n] == PRIMARY and t.role[n] in Receiving and not t.dumped[n]) or t.kernel[n] == s.kernel[n])
        for n in C.Node
    )  # fmt: skip


# The action properties (spec/models.toml: [sets].steps).
ACTION_PROPERTIES: dict[str, Callable[[State, State, Consts], bool]] = {
    "NoStaleState": NoStaleStateStep,
    "EpochMonotonic": EpochMonotonicStep,
    "StepsDownOnlyForAPrimary": StepsDownOnlyForAPrimaryStep,
    "KernelKept": KernelKeptStep,
}


# Liveness (checked by TLC; the model tests check the states they end in):
# Converges == <>[]AllLinksUp => <>[]Synced; ElectsPrimary == <>[]AllLinksUp => <>[](Primaries # {}).
def AllLinksUp(s: State, C: Consts) -> bool:
    return s.linkUp == AllLinks(C)


def Synced(s: State, C: Consts) -> bool:
    """Every receiving node holds the primary's table and is not SYNCING."""
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


# ---------------------------------------------------------------------------
# Reachability: the five failure scenarios of docs/architecture.md happen in the
# model (each "not reached" invariant must be violated by TLC), and the
# reachability checks of spec/models/MCSafety.tla.
# ---------------------------------------------------------------------------


def Scenario1NotReached(s: State, C: Consts) -> bool:
    """1. The primary fails; the backup is promoted while in sync, commits its external
    cache (an acknowledged connection is in its kernel), serves."""
    return not any(
        s.role[n] == PRIMARY and s.role[m] == DOWN and s.failedAs[m] == PRIMARY and s.promoted[n].ready
        and any(x[0] == s.promoted[n].from_ and s.kernel[n][x[1]] != 0 for x in s.owed[n])
        for n in C.Node for m in C.Node
    )  # fmt: skip


def Scenario2NotReached(s: State, C: Consts) -> bool:
    """2. The backup fails and comes back: it starts empty and resynchronizes."""
    return not any(
        s.failedAs[n] in (BACKUP, SYNCING) and s.role[n] == BACKUP
        and s.role[p] == PRIMARY and Present(s.kernel[p]) and SameTable(C, s.external[n], s.kernel[p])
        for n in C.Node for p in C.Node
    )  # fmt: skip


def Scenario3NotReached(s: State, C: Consts) -> bool:
    """3. The backup fails and stays dead: the primary has sent more frames since the
    backup's last ack than the queue holds, and goes on."""
    return not any(
        s.role[p] == PRIMARY and s.role[b] == DOWN and s.failedAs[b] in (BACKUP, SYNCING)
        and not s.peerLive[p][b] and s.nextSeq[p] > s.peerAck[p][b] + C.QueueBound
        for p in C.Node for b in C.Node
    )  # fmt: skip


def Scenario4NotReached(s: State, C: Consts) -> bool:
    """4. The former primary comes back: fenced, joined the new primary's epoch as
    backup and resynchronized."""
    return not any(
        s.failedAs[m] == PRIMARY and s.role[m] == BACKUP and s.role[p] == PRIMARY and s.epoch[m] == s.epoch[p]
        and s.fenced and SameTable(C, s.external[m], s.kernel[p])
        for m in C.Node for p in C.Node
    )  # fmt: skip


def Scenario5NotReached(s: State, C: Consts, how: str) -> bool:
    """5. Link down with both alive; on heal the gap is detected (NACK) and repaired:
    by retransmission (5a) or by a full resync (5b)."""
    return not any(
        s.failedAs[b] == "none" and s.failedAs[p] == "none" and s.role[b] == BACKUP and s.role[p] == PRIMARY
        and how in s.repairs and Present(s.kernel[p]) and SameTable(C, s.external[b], s.kernel[p])
        for b in C.Node for p in C.Node
    )  # fmt: skip


def Scenario5aNotReached(s: State, C: Consts) -> bool:
    return Scenario5NotReached(s, C, "retransmit")


def Scenario5bNotReached(s: State, C: Consts) -> bool:
    return Scenario5NotReached(s, C, "resync")


def TwoTakeoversNotReached(s: State, C: Consts) -> bool:
    """(MCSafety) after two failures the last node took over in sync, holding a
    connection it acknowledged."""
    return not any(
        s.role[n] == PRIMARY and s.env["fail"] == 2 and s.promoted[n].ready
        and any(x[0] == s.promoted[n].from_ and s.kernel[n][x[1]] != 0 for x in s.owed[n])
        for n in C.Node
    )  # fmt: skip


def RejoinNotReached(s: State, C: Consts) -> bool:
    """(MCSafety) a failed process came back and is BACKUP in the new primary's epoch
    with its table."""
    return not any(
        s.failedAs[b] != "none" and s.role[b] == BACKUP and s.role[p] == PRIMARY and s.epoch[b] == s.epoch[p]
        and s.epoch[p][0] >= 2 and Present(s.kernel[p]) and SameTable(C, s.external[b], s.kernel[p])
        for b in C.Node for p in C.Node
    )  # fmt: skip


def RetakeNotReached(s: State, C: Consts) -> bool:
    """(MCSafety) a primary took a term above an epoch it merely heard of, and a node
    that failed follows it."""
    return not any(
        s.role[n] == PRIMARY and s.epoch[n][0] > s.promoted[n].from_[0] + 1
        and any(s.failedAs[m] != "none" and s.role[m] == BACKUP and s.epoch[m] == s.epoch[n] for m in Peers(C, n))
        for n in C.Node
    )  # fmt: skip


def ReassertNotReached(s: State, C: Consts) -> bool:
    """(MCSafety) keepalived's master, fenced by another primary since gone, took over again."""
    return not any(s.role[n] == PRIMARY and s.promoted[n].how == "reasserted" for n in C.Node)


REACHABILITY: dict[str, Callable[[State, Consts], bool]] = {
    name: globals()[name]
    for name in (
        "Scenario1NotReached", "Scenario2NotReached", "Scenario3NotReached", "Scenario4NotReached",
        "Scenario5aNotReached", "Scenario5bNotReached",
        "TwoTakeoversNotReached", "RejoinNotReached", "RetakeNotReached", "ReassertNotReached",
    )
}  # fmt: skip
