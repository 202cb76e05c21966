"""The abstraction function: a running simulation (snep.lab.sim) seen as a state of the model.

What maps to what (model variable <- implementation):

- role[n]      <- the node's RoleMachine state (DOWN when the process is down)
- master[n]    <- keepalived's last word to the node was "master" (``ha_role``)
- sess[n], bound[n][m] <- the node's channel: its own session and the session it
                  bound for m, numbered per node in the order the processes started
                  (``sessions``: the implementation's random nonce -> 1, 2, ...; the
                  spec's Init is every node's first process); a node that is down
                  keeps the model's values (the spec's Fail leaves them)
- linkUp       <- every pair not in SimNetwork.down
- kernel[n]    <- the MemoryTable of host n: connection -> version, where the test's
                  connections are named (``conns``: entry key -> name) and an entry's
                  version is its conntrack *mark* (the tests write version = mark)
- internal[n], external[n] <- the node's caches, the same way (empty when down;
                  weak level: a connection's version in the internal cache is the
                  kernel's, since that level receives no UPDATE events)
- epoch[n]     <- SyncNode.newest (the persisted epoch while the process is down)
- nextSeq, queue, peerAck, peerLive, bulk, todo, dirty <- the SyncSender: its next
                  seq, its resend queue (each queued frame *decoded with the real
                  codec*), each peer's acked position and liveness, the bulk dump's
                  phase and what it has left, the incremental level's dirty set
- behind, resume, ackedRecently <- each PeerTx's ``behind`` and ``resume`` (None:
                  NoSeq), and whether ``acked_at`` is within retransmit_timeout of
                  the simulation's clock (a HELLO sets it to -inf); all reset while
                  the node does not send (the spec's ClearSender)
- expect, ackFrom, inBulk, marked <- the SyncReceiver that follows the stream of the
                  node's newest epoch (none: 0 / not in a dump), and the external
                  cache's mark-and-sweep set
- needSync[n]  <- SyncNode.need_sync
- msgs         <- every datagram in flight, decoded with the real codec (see :func:`msg_of`)
- ghosts (lastVer, born, owed, promoted, dead, dumped, overflow, failedAs, fenced,
  repairs), the environment's budgets and the adversary's stash are history, not
  state: the test carries them along the model steps that explain each step.

Messages. The wire carries less than the spec's message record, so the mapping is:
every message: sess = the header's session (numbered as above), for = the header's
addressee (0: every peer); STATE (one entry per frame: the tests use an MTU that fits one): epoch = the header's
claim (term, sender id), seq, conn/ver from the entry (DESTROY: version 0), BULK flags;
ALIVE: claim and next seq = header seq + 1 (the header holds the newest seq sent); an
ALIVE without a claim (term 0: a non-primary's keepalive) is no spec message (None);
ACK/NACK: (stream term, addressee), lo/hi = first/last; RESYNC_REQUEST: the sender's
claim or none; HELLO: the newest epoch its sender knows (newest_term, newest_owner),
claims = the header claims that epoch, live = the message's flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from model_tests import model as M
from snep.cache import Cache
from snep.entry import EventKind, Key
from snep.fsm.role import Role
from snep.lab.sim import Simulation
from snep.wire.codec import FLAG_BULK_END, FLAG_BULK_START, Built, decode_frame, seal
from snep.wire.messages import Frame as WireFrame
from snep.wire.messages import EVERY_PEER, Hello, MessageType
from snep.wire.serial import SEQ_MOD

ROLE = {
    Role.DOWN: M.DOWN,
    Role.SYNCING: M.SYNCING,
    Role.BACKUP: M.BACKUP,
    Role.PRIMARY: M.PRIMARY,
    Role.FAULT: M.FAULT,
}


@lru_cache(maxsize=65536)
def decode(data: bytes) -> WireFrame:
    return decode_frame(data)


def frame_of(data: bytes | Built, conns: Mapping[Key, str]) -> M.Frame:
    """A STATE frame (a datagram, or a resend queue's built frame) as the model's frame."""
    wf = decode(seal(data, 1, 1) if isinstance(data, Built) else data)
    conn, ver = _entry_of(wf, conns)
    return M.Frame(wf.seq, conn, ver, bool(wf.flags & FLAG_BULK_START), bool(wf.flags & FLAG_BULK_END))


def _entry_of(wf: WireFrame, conns: Mapping[Key, str]) -> tuple[str, int]:
    if not wf.messages:
        return M.NoConn, 0
    if len(wf.messages) != 1:
        raise AssertionError(f"a STATE frame with {len(wf.messages)} messages: the model tests need one per frame")
    kind, entry = wf.messages[0]  # type: ignore[misc]
    return conns[entry.key], 0 if kind is EventKind.DESTROY else entry.mark


def msg_of(src: int, dst: int, data: bytes, conns: Mapping[Key, str], sessions: Mapping[int, int]) -> M.Msg | None:
    """A datagram as the spec's message (None: not a message of the spec)."""
    wf = decode(data)
    t = wf.type
    head = dict(src=src, sess=sessions.get(wf.session, 0), for_=0 if wf.dst == EVERY_PEER else wf.dst, dst=dst)
    if t is MessageType.STATE:
        conn, ver = _entry_of(wf, conns)
        return M.Msg(M.MSG_STATE, **head, term=wf.epoch, enode=src, seq=wf.seq, conn=conn, ver=ver,
                     start=bool(wf.flags & FLAG_BULK_START), end=bool(wf.flags & FLAG_BULK_END))  # fmt: skip
    if t is MessageType.ALIVE:
        if not wf.epoch:
            return None
        return M.Msg(M.MSG_ALIVE, **head, term=wf.epoch, enode=src, seq=(wf.seq + 1) % SEQ_MOD)
    if t in (MessageType.ACK, MessageType.NACK):
        (message,) = wf.messages
        kind = M.MSG_ACK if t is MessageType.ACK else M.MSG_NACK
        return M.Msg(kind, **head, term=wf.epoch, enode=dst, lo=message.first, hi=message.last)  # type: ignore[attr-defined]
    if t is MessageType.RESYNC_REQUEST:
        return M.Msg(M.MSG_RESYNC, **head, term=wf.epoch, enode=src if wf.epoch else 0)
    if t is MessageType.HELLO:
        hello = next(m for m in wf.messages if isinstance(m, Hello))
        e = (hello.newest_term, hello.newest_owner)
        claims = bool(wf.epoch) and e == (wf.epoch, src)
        return M.Msg(M.MSG_HELLO, **head, term=e[0], enode=e[1], claims=claims, live=hello.live)
    raise AssertionError(f"unknown frame type {t!r}")


def table_of(entries: Any, conns: Mapping[Key, str], C: M.Consts) -> dict[str, int]:
    t = M.EmptyTable(C)
    for entry in entries:
        t[conns[entry.key]] = entry.mark
    return t


def _marked(cache: Cache, stream: tuple[int, int], conns: Mapping[Key, str]) -> frozenset[str]:
    """The mark-and-sweep set of the newest epoch's stream (empty: not in a dump)."""
    return frozenset(conns[k] for k in cache.marked(stream))


def abstract(sim: Simulation, C: M.Consts, conns: Mapping[Key, str], ghosts: M.State,
             sessions: Mapping[int, int]) -> M.State:  # fmt: skip
    """The model state the simulation is in (ghost variables taken from ``ghosts``)."""
    s = ghosts
    role, kernel, internal, external, epoch = {}, {}, {}, {}, {}
    master, sess, bound = {}, {}, {}
    nextSeq, queue, peerAck, peerLive, bulk, todo, dirty = {}, {}, {}, {}, {}, {}, {}
    behind, resume, recent = {}, {}, {}
    rto = sim.params.retransmit_timeout
    expect, ackFrom, inBulk, marked, needSync = {}, {}, {}, {}, {}
    for n in C.Node:
        host = sim.hosts[n]
        node = host.node
        kernel[n] = {c: 0 for c in C.Conn}
        for key, (entry, _deadline) in host.table.entries.items():
            kernel[n][conns[key]] = entry.mark
        peerAck[n] = {m: 0 for m in C.Node}
        peerLive[n] = {m: True for m in C.Node}
        behind[n] = {m: False for m in C.Node}
        resume[n] = {m: M.NoSeq for m in C.Node}
        recent[n] = {m: False for m in C.Node}
        if node is None:
            role[n] = M.DOWN
            master[n] = False
            sess[n], bound[n] = s.sess[n], dict(s.bound[n])
            internal[n] = external[n] = M.EmptyTable(C)
            epoch[n] = tuple(host.persisted)
            nextSeq[n], queue[n], bulk[n] = 0, (), "idle"
            todo[n] = dirty[n] = marked[n] = frozenset()
            expect[n] = ackFrom[n] = 0
            inBulk[n] = needSync[n] = False
            continue
        role[n] = ROLE[node.state]
        master[n] = node.ha_role == "promote"
        sess[n] = sessions[node.channel.session]
        bound[n] = {m: 0 if m == n else sessions.get(node.channel.bound(m) or 0, 0) for m in C.Node}
        internal[n] = table_of(node.internal, conns, C)
        if C.Level == "weak":
            # The weak level never sees UPDATE events: its internal cache knows which
            # connections exist, not their newest version; it holds the kernel's.
            internal[n] = {c: kernel[n][c] if v and kernel[n][c] else v for c, v in internal[n].items()}
        external[n] = table_of(node.external, conns, C)
        epoch[n] = tuple(node.newest)
        sender = node.sender
        nextSeq[n] = sender.next_seq
        queue[n] = tuple(frame_of(q.data, conns) for q in sender.queue)
        for m, p in sender.peers.items():
            peerAck[n][m] = p.acked
            peerLive[n][m] = p.alive
            if sender.active:
                behind[n][m] = p.behind
                resume[n][m] = p.resume if p.behind and p.resume is not None else M.NoSeq
                recent[n][m] = sim.now - p.acked_at <= rto
        bulk[n] = sender.bulk_phase
        todo[n] = frozenset(conns[k] for k in sender.bulk_todo)
        dirty[n] = frozenset(conns[k] for k in sender.notifier.dirty)
        stream = next((r for r in node.receivers.values() if r.stream == node.newest), None)
        if stream is None:
            expect[n] = ackFrom[n] = 0
            inBulk[n] = False
        else:
            expect[n] = stream.expected
            ackFrom[n] = stream._ack_first if stream._ack_first is not None else stream.expected
            inBulk[n] = stream.marking
        marked[n] = _marked(node.external, tuple(node.newest), conns)
        needSync[n] = node.need_sync
    msgs: dict[M.Msg, int] = {}
    for d in sim.network.in_flight:
        msg = msg_of(d.src, d.dst, d.data, conns, sessions)
        if msg is not None:
            msgs[msg] = msgs.get(msg, 0) + 1
    return s.set(
        role=role,
        master=master,
        sess=sess,
        bound=bound,
        linkUp=frozenset(p for p in M.AllLinks(C) if p not in sim.network.down),
        kernel=kernel,
        internal=internal,
        external=external,
        epoch=epoch,
        nextSeq=nextSeq,
        queue=queue,
        peerAck=peerAck,
        peerLive=peerLive,
        bulk=bulk,
        todo=todo,
        dirty=dirty,
        behind=behind,
        resume=resume,
        ackedRecently=recent,
        expect=expect,
        ackFrom=ackFrom,
        inBulk=inBulk,
        marked=marked,
        needSync=needSync,
        msgs=msgs,
    )


# ---------------------------------------------------------------------------
# The projection: what step refinement compares
# ---------------------------------------------------------------------------


def projection(s: M.State, C: M.Consts) -> dict[str, Any]:
    """The part of the state whose every change must be a model step.

    Roles, kernel tables, external caches (weak level: which connections exist, the
    spec's own SameTable), a primary's internal cache, epoch and next seq, and each
    receiver's position in its stream. Left out: what the spec fixes only to keep
    TLC's state space finite (the resend queue's trimming, ack/liveness bookkeeping of
    the sender, pacing of timers); invariants and message checks cover those.
    """
    weak = C.Level == "weak"

    def table(t: dict[str, int]) -> Any:
        return M.Present(t) if weak else dict(t)

    out: dict[str, Any] = {}
    for n in C.Node:
        r = s.role[n]
        row: dict[str, Any] = {"role": r, "kernel": dict(s.kernel[n])}
        if M.Up(r):
            row["external"] = table(s.external[n])
        if r == M.PRIMARY:
            row["internal"] = table(s.internal[n])
            row["epoch"] = s.epoch[n]
            row["nextSeq"] = s.nextSeq[n]
        elif M.Up(r):
            row["expect"] = s.expect[n]
            row["inBulk"] = s.inBulk[n]
        out[str(n)] = row
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Readable differences between two projections."""
    lines = []
    for n in sorted(set(a) | set(b)):
        ra, rb = a.get(n, {}), b.get(n, {})
        for k in sorted(set(ra) | set(rb)):
            if ra.get(k) != rb.get(k):
                lines.append(f"node {n} {k}: model {ra.get(k)!r} != implementation {rb.get(k)!r}")
    return lines
