"""A simulated cluster driven one environment move at a time, each move checked
against the model (model_tests/model.py) through the abstraction function.

How a step is checked (step refinement with a bounded sequence of model actions):

1. ``s`` = abstract(implementation) before the move, with the ghost variables the
   model carried so far.
2. The move runs on the implementation (real SyncNodes, MemoryKernels, the real
   codec: every datagram is bytes). Every datagram sent during the move is recorded
   (also those a down link loses).
3. The move is *explained* as a sequence of model actions: the move's own action
   (ConnNew, Promote, RecvState of the delivered frame, ...), then one action per
   STATE frame the implementation sent for the first time (SendBulk, Notify or
   FlushIncremental: the one whose emitted frame equals the sent frame), then SendAck
   for each ACK sent. Each action must be enabled in the model state reached so far;
   there are at most 1 + (frames sent) + (acks sent) of them, so the search is
   bounded and deterministic.
4. The reached model state must agree with abstract(implementation) after the move
   on the projection (abstraction.projection: roles, kernels, external caches, a
   primary's internal cache, epoch and next seq, receivers' stream positions).
5. Message checks for what the spec constrains but the projection leaves out: a STATE
   frame sent again (retransmission) is a frame of the sender's resend queue, sent by
   a PRIMARY under its own epoch; an ALIVE with a claim comes from that PRIMARY and
   carries its next seq; an ACK never covers a frame the receiver has not applied.
6. Every invariant of the spec holds on the new abstract state and the step
   satisfies the spec's action properties (NoStaleState, EpochMonotonic).

Moves outside the spec (the operator commands commit and flush) are checked by the
invariants only; the model continues from the abstraction of what they left.

The channel. The spec's handshake is one step (Bind: n binds m's current session);
the implementation's takes three HELLOs. A delivery that makes the channel bind a
new session of the sender is explained as Bind, whose HearEpoch is the news of the
binding HELLO (the sender's epoch when it sent it). A frame the channel refuses is
the spec's Reject when the spec refuses it too (an unbound or earlier session), and a
loss when only the implementation's replay window refuses it (a duplicate in the
bound session: the spec lets duplicates through, which only makes the network
worse). The spec's Bind also drops what the peer sent before it; the
implementation's window refuses only frames counted before the binding HELLO, so
frames the peer sent after it are still in flight: the next step's abstraction
reads the network from the implementation (messages are not in the projection).


The spec's pacing guards (Retransmit only when nothing is in flight, SendAlive only on
an idle channel, PeerTimeout only when unreachable) are not required of the
implementation: those timers change nothing in the projection, and the messages they
send are checked by 5.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_tests import model as M
from model_tests.abstraction import abstract, decode, diff, frame_of, msg_of, projection
from snep.fsm.channel import REASONS
from snep.entry import Entry, Key
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.lab.sim import Datagram, Simulation, conn
from snep.level import Level

ONE_ENTRY_MTU = 100  # one STATE message per frame (two need 102 bytes): the spec's frames


class RefinementError(AssertionError):
    """The implementation did something the model does not allow."""


@dataclass
class Config:
    size: int = 2
    level: str = "strong"
    conns: int = 3
    queue_size: int = 4
    seed: int = 0

    def params(self) -> SyncParams:
        return SyncParams(
            mtu=ONE_ENTRY_MTU,
            bulk_mtu=ONE_ENTRY_MTU,  # (one entry per frame in dumps too, as in the spec)
            resend_queue=self.queue_size,
            bulk_window=self.queue_size,
            ack_window=2,
            ack_delay=0.05,
            nack_interval=0.1,
            retransmit_timeout=0.5,
            alive_interval=1.0,
            peer_dead_timeout=4.0,
            shorten_timeout=3,
            level=Level(self.level),
            incremental_period=1.0,
            inject_on_arrival=False,  # the spec's backup kernel is written at Promote only
        )

    def consts(self) -> M.Consts:
        return M.Consts(
            Node=tuple(range(1, self.size + 1)),
            Conn=tuple(f"c{i}" for i in range(self.conns)),
            Level=self.level,
            QueueBound=self.queue_size,
        )


@dataclass
class Cluster:
    cfg: Config
    trace: list[dict[str, Any]] | None = None  # model-level trace (export), when wanted
    sim: Simulation = field(init=False)
    C: M.Consts = field(init=False)
    state: M.State = field(init=False)
    steps: int = 0

    def __post_init__(self) -> None:
        self.sim = Simulation(self.cfg.size, self.cfg.params(), seed=self.cfg.seed, expire_interval=1e9)
        self.C = self.cfg.consts()
        self.entries: dict[str, Entry] = {c: conn(i, timeout=100000) for i, c in enumerate(self.C.Conn)}
        self.conns: dict[Key, str] = {e.key: c for c, e in self.entries.items()}
        self.state = M.Init(self.C)
        self.sessions: dict[int, int] = {}  # a process's session nonce -> the spec's session number
        self._sent: list[tuple[int, int, bytes]] = []
        network = self.sim.network
        original = network.send

        def send(now: float, src: int, dst: int, data: bytes) -> None:
            self._sent.append((src, dst, data))
            original(now, src, dst, data)

        network.send = send  # type: ignore[method-assign]
        # The spec's Init: every process just started (SYNCING), no epoch yet, and
        # their first handshakes done (the HELLOs delivered; what follows stays in flight).
        self.sim.start()
        for n in self.C.Node:
            self.sessions[self.node(n).channel.session] = 1
        self._settle_handshakes()
        self._purge()
        started = abstract(self.sim, self.C, self.conns, self.state, self.sessions)
        if projection(started, self.C) != projection(self.state, self.C):
            raise RefinementError("the started cluster is not the spec's Init:\n  " + "\n  ".join(
                diff(projection(self.state, self.C), projection(started, self.C))))  # fmt: skip
        self.state = started
        if self.trace is not None:
            self.trace.append({"set": started.as_json(), "impl": "start every node (Init)"})

    def _settle_handshakes(self) -> None:
        network = self.sim.network
        for _ in range(100):
            hellos = [d for d in sorted(network.in_flight) if decode(d.data).type.name == "HELLO"]
            if not hellos:
                return
            network.in_flight.remove(hellos[0])
            heapq.heapify(network.in_flight)
            self.sim.deliver(hellos[0])
        raise RefinementError("the first handshakes did not settle in 100 HELLOs")

    # --- reading ------------------------------------------------------------------
    def role(self, n: int) -> str:
        return self.state.role[n]

    def primaries(self) -> list[int]:
        return M.Primaries(self.state)

    def node(self, n: int) -> Any:
        return self.sim.hosts[n].node

    # --- the checked step -----------------------------------------------------------
    def step(self, label: str, move: Callable[[], Any],
             prefix: list[tuple[str, tuple[Any, ...]]] | Callable[[], list[tuple[str, tuple[Any, ...]]]],
             out_of_model: bool = False) -> None:  # fmt: skip
        """Run ``move`` on the implementation and check it against the model. ``prefix``:
        the move's own model actions (a function: decided from what the move did)."""
        self.steps += 1
        s = self.state
        self._sent = []
        move()
        self._purge()
        if callable(prefix):
            prefix = prefix()
        # keepalived's master that takes over again by itself (its timer, whichever
        # move let it fire): Reassert.
        taken = {args[0] for name, args in prefix if name in ("Promote", "Reassert")}
        for n in self.C.Node:
            node = self.node(n)
            if s.role[n] != M.PRIMARY and n not in taken and node is not None and node.state is Role.PRIMARY:
                prefix = [("Reassert", (n,)), *prefix]
        after = abstract(self.sim, self.C, self.conns, s, self.sessions)
        if out_of_model:
            # What a node acknowledged and the operator then flushed is no longer owed.
            held = {n: M.Present(after.external[n]) | M.Present(after.kernel[n]) for n in self.C.Node}
            after = after.set(owed={n: frozenset(x for x in o if x[1] in held[n]) for n, o in after.owed.items()})
            self._check_state(s, after, label, step_properties=False)
            self.state = after
            if self.trace is not None:
                self.trace.append({"set": after.as_json(), "impl": label})
            self._lose_stale_handshakes()
            return
        t, actions = self._explain(s, prefix, label)
        want, got = projection(t, self.C), projection(after, self.C)
        if want != got:
            raise RefinementError(
                f"step {label!r} explained as {_show([(a, b) for a, b, _ in actions])} is not a model step:\n  " + "\n  ".join(diff(want, got))
            )
        after = after.set(lastVer=t.lastVer, born=t.born, owed=t.owed, promoted=t.promoted, dead=t.dead,
                          dumped=t.dumped, overflow=t.overflow, failedAs=t.failedAs, fenced=t.fenced,
                          repairs=t.repairs, env=t.env, stash=t.stash)  # fmt: skip
        self._check_state(s, after, label, chain=[t2 for _, _, t2 in actions[:-1]])
        if self.trace is not None:
            self._record(s, actions, label)
        self.state = after
        self._lose_stale_handshakes()

    def _lose_stale_handshakes(self) -> None:
        """The spec's handshake is one step (Bind hears what its peer says *now*); the
        implementation's last HELLO may be overtaken by its sender's change of role or
        epoch. Such a HELLO, while it could still bind, is lost by this environment (a
        checked LoseMsg step); the channel's challenge brings a fresh one."""
        s = self.state
        for d in sorted(self.sim.network.in_flight):
            m, n = d.src, d.dst
            node, peer = self.node(n), self.node(m)
            if node is None or peer is None or node.channel.bound(m) == peer.channel.session:
                continue
            msg = msg_of(m, n, d.data, self.conns, self.sessions)
            if msg is None or msg.type != M.MSG_HELLO or msg.sess != s.sess[m]:
                continue
            now = (s.epoch[m], s.role[m] == M.PRIMARY, M.FollowsLive(s, self.C, m))
            if (M.MsgEpoch(msg), msg.claims, msg.live) != now:
                self.lose(d)
                return  # (lose's own step looks again)

    def _record(self, s: M.State, actions: list, label: str) -> None:
        """The trace: the abstract state, then each model action with the state it gives
        (what is not a spec action, the operator's commands, as states)."""
        assert self.trace is not None
        self.trace.append({"set": s.as_json(), "impl": label})
        for name, args, state in actions:
            if name in M.ACTIONS:
                self.trace.append({"action": name, "args": [_arg(a) for a in args], "state": state.as_json()})
            else:
                self.trace.append({"set": state.as_json(), "impl": f"{label}: {name} (not a spec action)"})

    def _frames(self, s: M.State, t: M.State, frames: list, i: int, done: list) -> tuple[M.State, list] | str:
        """Explain frames[i:] from t: the model state and the actions, or why not."""
        if i == len(frames):
            return t, done
        C = self.C
        src, term, f = frames[i]
        if t.role[src] == M.PRIMARY and (term, src) == t.epoch[src] and f.seq >= t.nextSeq[src]:
            if f.seq != t.nextSeq[src]:
                return f"node {src} sent seq {f.seq}, the model's next is {t.nextSeq[src]}"
            why = f"node {src} sent {f} which no enabled model action sends\n{_brief(t)}" + (
                f"\n  sender of {src}: acked/live {t.peerAck[src]} {t.peerLive[src]} bulk={t.bulk[src]} "
                f"todo={sorted(t.todo[src])} dirty={sorted(t.dirty[src])}")  # fmt: skip
            choices = [("SendBulk", (src, f.conn, d)) for d in _subsets(M.BulkGone(t, src))] if t.bulk[src] != "idle" else []
            if f.conn != M.NoConn:
                choices += [("FlushIncremental", (src, f.conn)), ("Notify", (src, f.conn))]
            for name, args in choices:
                t2 = M.ACTIONS[name](t, C, *args)
                if t2 is None or t2.nextSeq[src] != t.nextSeq[src] + 1 or not self._same(t2.queue[src][-1], f):
                    continue
                found = self._frames(s, t2, frames, i + 1, done + [(name, args, t2)])
                if not isinstance(found, str):
                    return found
                why = found
            return why
        queued = set(s.queue[src]) | set(t.queue[src])
        if not (s.role[src] == M.PRIMARY and (term, src) == s.epoch[src] and f in queued):
            return (
                f"node {src} sent again {f} (claim {term}), not a frame of its resend queue "
                f"{s.queue[src]} as {s.role[src]} of epoch {s.epoch[src]}"
            )
        return self._frames(s, t, frames, i + 1, done)

    def _same(self, model: M.Frame, impl: M.Frame) -> bool:
        """The model's frame is the implementation's (weak level: up to the version of a
        present connection, which that level does not keep track of)."""
        if self.C.Level == "weak" and model.ver and impl.ver:
            return model._replace(ver=impl.ver) == impl
        return model == impl

    def _check_state(self, s: M.State, after: M.State, label: str, step_properties: bool = True,
                     chain: list[M.State] | None = None) -> None:  # fmt: skip
        """Every invariant on ``after``; the action properties on each step of the
        explanation (s, its intermediate model states ``chain``, then ``after``: a move
        may take several actions, and those properties speak of one)."""
        bad = M.violated(after, self.C)
        if step_properties:
            states = [s, *(chain or []), after]
            for a, b in zip(states, states[1:]):
                bad += [x for x in M.violated_step(a, b, self.C) if x not in bad]
        if bad:
            raise RefinementError(f"step {label!r}: {', '.join(bad)} violated\n{_brief(after)}")

    def _purge(self) -> None:
        """Datagrams to a node whose process is down are lost (the spec's Fail and Send)."""
        network = self.sim.network
        kept = [d for d in network.in_flight if self.sim.hosts[d.dst].node is not None]
        if len(kept) != len(network.in_flight):
            network.in_flight = kept
            heapq.heapify(kept)

    def _explain(self, s: M.State, prefix: list[tuple[str, tuple[Any, ...]]], label: str) -> tuple[M.State, list]:
        """The model state reached by the move's explanation, and its (action, args, state) list."""
        C = self.C
        t = s
        done: list[tuple[str, tuple[Any, ...]]] = []

        def apply(name: str, args: tuple[Any, ...]) -> M.State | None:
            return (M.ACTIONS.get(name) or M.EXTENSIONS[name])(t, C, *args)

        for name, args in prefix:
            t2 = apply(name, args)
            if t2 is None:
                raise RefinementError(f"step {label!r}: the model does not allow {name}{args} here\n{_brief(t)}")
            t = t2
            done.append((name, args, t))
        # STATE frames: each sent for the first time (explained by a model action:
        # which one is searched, with backtracking, since a dump's middle frame and an
        # incremental flush look alike) or again (a frame of the resend queue).
        frames: list[tuple[int, int, M.Frame]] = []
        for src, _dst, data in self._sent:
            wf = decode(data)
            if wf.type.name == "STATE" and (src, wf.epoch, frame_of(data, self.conns)) not in frames:
                frames.append((src, wf.epoch, frame_of(data, self.conns)))
        found = self._frames(s, t, frames, 0, [])
        if isinstance(found, str):
            raise RefinementError(f"step {label!r}: {found}")
        t, more = found
        done += more
        # Control messages.
        for src, dst, data in self._sent:
            msg = msg_of(src, dst, data, self.conns, self.sessions)
            if msg is None or msg.type == M.MSG_STATE:
                continue
            if msg.type == M.MSG_ALIVE:
                if not (t.role[src] == M.PRIMARY and M.MsgEpoch(msg) == t.epoch[src] and msg.seq == t.nextSeq[src]):
                    raise RefinementError(f"step {label!r}: {msg} is not SendAlive's (next seq {t.nextSeq[src]})")
            elif msg.type == M.MSG_ACK:
                own = (msg.term, dst) == t.epoch[src]
                receiver = self.node(src).receivers[dst] if self.node(src) is not None else None
                applied = t.expect[src] if own else (receiver.expected if receiver is not None else 0)
                if not (msg.lo <= msg.hi < applied):
                    raise RefinementError(
                        f"step {label!r}: {msg} acknowledges frames not applied (applied below {applied})"
                    )
                # (The implementation's ack delay is a timer; the spec acknowledges on the
                # stream's pause. Either way the ACK covers only applied frames, checked
                # above; what it is owed is the primary's RecvAck.)
                t2 = apply("SendAck", (src, dst)) if own else None
                if t2 is not None:
                    t = t2
                    done.append(("SendAck", (src, dst), t))
        return t, done

    # --- moves ----------------------------------------------------------------------
    def start(self, n: int) -> None:
        def move() -> None:
            self.sim.start(n)
            self.sessions[self.node(n).channel.session] = self.state.sess[n] + 1

        self.step(f"start {n}", move, [("Recover", (n,))])

    def crash(self, n: int) -> None:
        """The process dies. The HELLOs it had in flight are lost with it (LoseMsg): a
        handshake HELLO of a dead process would bind a session the spec's Bind never
        binds (its peer is down), so this environment does not deliver them; the
        other frames of a dead process still arrive."""
        hellos = [d for d in self.sim.network.in_flight if d.src == n and decode(d.data).type.name == "HELLO"]
        lost = [msg for d in hellos if (msg := msg_of(d.src, d.dst, d.data, self.conns, self.sessions)) is not None]

        def move() -> None:
            self.sim.crash(n)
            self.sim.network.in_flight = [d for d in self.sim.network.in_flight if not any(d is h for h in hellos)]
            heapq.heapify(self.sim.network.in_flight)

        self.step(f"crash {n}", move, [("LoseMsg", (msg,)) for msg in lost] + [("Fail", (n,))])

    def promote(self, n: int) -> None:
        self.step(f"promote {n}", lambda: self.sim.promote(n), [("Promote", (n,))])

    def demote(self, n: int) -> None:
        self.step(f"demote {n}", lambda: self.sim.demote(n), [("Demote", (n,))])

    def resign(self, n: int) -> None:
        """Two VRRP masters hear each other: keepalived makes n backup."""
        self.step(f"resign {n}", lambda: self.sim.demote(n), [("Resign", (n,))])

    def fault(self, n: int) -> None:
        self.step(f"fault {n}", lambda: self.sim.fault(n), [("Fault", (n,))])

    def link(self, a: int, b: int, up: bool) -> None:
        if up:
            self.step(f"link up {a}-{b}", lambda: self.sim.network.link_up(a, b), [("LinkUp", (a, b))])
        else:
            self.step(f"link down {a}-{b}", lambda: self.sim.network.link_down(a, b), [("LinkDown", (a, b))])

    def traffic(self, n: int, c: str, kind: str) -> None:
        """A packet on node n's kernel: new, update or destroy connection c (version = mark)."""
        sim, s = self.sim, self.state
        entry = self.entries[c]._replace(mark=s.lastVer[c] + 1)
        notify = [("Notify", (n, c))] if s.role[n] == M.PRIMARY else []
        if kind == "new":
            move, action = (lambda: sim.conn_new(n, entry)), "ConnNew"
        elif kind == "update":
            # (A weak level subscribes to no UPDATE events: the spec's Notify, which
            # sends nothing for it, is the level dropping it.)
            move, action = (lambda: sim.conn_update(n, entry)), "ConnUpdate"
        else:
            move, action = (lambda: sim.conn_destroy(n, entry)), "ConnDestroy"
        self.step(f"{kind} {c} on {n}", move, [(action, (n, c))] + notify)

    def deliver(self, d: Datagram, *, copy: bool = False) -> None:
        """Deliver one datagram in flight (any of them: the network reorders)."""
        sim = self.sim
        msg = msg_of(d.src, d.dst, d.data, self.conns, self.sessions)
        before = self._channel(d.dst, d.src)

        def move() -> None:
            sim.network.in_flight.remove(d)
            heapq.heapify(sim.network.in_flight)
            sim.deliver(d)

        def prefix() -> list[tuple[str, tuple[Any, ...]]]:
            if msg is None:
                return []
            s, n, m = self.state, msg.dst, msg.src
            bound, refused = self._channel(n, m)
            if bound != before[0]:
                # The channel bound a new session of m (the handshake's last HELLO).
                if self.sessions.get(bound or 0) != s.sess[m] or not M.Up(s.role[m]):
                    return []  # a session of a process of m that is gone: it sends nothing more
                return [("Bind", (n, m))]  # (whose HearEpoch is the binding HELLO's news)
            if refused != before[1]:
                return [("Reject", (n, msg))] if not M.Accepts(s, n, msg) else [("LoseMsg", (msg,))]
            if not M.Accepts(s, n, msg):
                return [("Reject", (n, msg))]  # (a HELLO of an unbound session: answered by a challenge)
            return [(_RECV[msg.type], (n, m, msg))]

        self.step(f"deliver {_show_msg(msg, d)}", move, prefix)

    def _channel(self, n: int, m: int) -> tuple[int | None, int]:
        """n's channel: the session it bound for m, and how many frames it refused."""
        node = self.node(n)
        if node is None:
            return None, 0
        return node.channel.bound(m), sum(getattr(node.counters, r) for r in REASONS)

    def lose(self, d: Datagram) -> None:
        msg = msg_of(d.src, d.dst, d.data, self.conns, self.sessions)

        def move() -> None:
            self.sim.network.in_flight.remove(d)
            heapq.heapify(self.sim.network.in_flight)

        self.step(f"lose {_show_msg(msg, d)}", move, [] if msg is None else [("LoseMsg", (msg,))])

    def duplicate(self, d: Datagram) -> None:
        msg = msg_of(d.src, d.dst, d.data, self.conns, self.sessions)
        self.step(
            f"duplicate {_show_msg(msg, d)}",
            lambda: self.sim.network.duplicate(lambda x: x is d),
            [] if msg is None else [("DuplicateMsg", (msg,))],
        )

    def advance(self, dt: float) -> None:
        """The clock moves; kernel entries whose timeout passed expire.

        The environment's synchrony assumption (the spec's, where Reassert needs that
        a master hears of no primary): while a master that is not primary hears of a
        live primary in the model, the clock stops short of its failure detector's
        deadline (it would take the primary's silence for its death). Deliveries and
        the primary's timers refresh it; a slower network is a cut link."""
        sim = self.sim
        now = sim.now + dt
        for n in self.C.Node:
            node = self.node(n)
            if (node is not None and node.ha_role == "promote" and node.state in (Role.SYNCING, Role.BACKUP)
                    and M.HearsOfPrimary(self.state, self.C, n)):  # fmt: skip
                now = min(now, node._primary_heard_at + sim.params.peer_dead_timeout - 1e-3)
        if now <= sim.now:
            return
        dt = now - sim.now
        prefix: list[tuple[str, tuple[Any, ...]]] = []
        for n, host in sim.hosts.items():
            for key, (_entry, deadline) in host.table.entries.items():
                if deadline <= now:
                    c = self.conns[key]
                    if self.state.role[n] == M.PRIMARY:
                        prefix += [("ConnDestroy", (n, c)), ("Notify", (n, c))]
                    else:
                        prefix.append(("KernelExpire", (n, c)))

        def move() -> None:
            sim.now = now
            for n, host in sim.hosts.items():
                if host.kernel.expire(now):
                    sim._pump(n)

        self.step(f"advance {dt:g}s", move, prefix)

    def timer(self, n: int) -> None:
        """Node n's timers that are due fire (ack, retransmit, flush, bulk, alive, resync,
        dead peer, and keepalived's master taking over again when it hears of no primary:
        Reassert, which :meth:`step` explains)."""
        self.step(f"timers of {n}", lambda: self.sim.fire_timers(n), [])

    def command(self, n: int, name: str) -> None:
        """An operator command (snep ctl): commit and flush are outside the spec (the
        mirror's ``operator_commit``: the kernel and the internal cache take the external
        cache); every invariant, KernelVouched included, still holds after them."""
        outside = name in ("commit", "flush")
        prefix = [("OperatorBulkSend", (n,))] if name == "bulk" else []
        self.step(f"operator {name} on {n}", lambda: self.sim.command(n, name), prefix, out_of_model=outside)
        if name == "flush" and self.state.role[n] in M.Receiving:
            # its refilling dump vouches for its kernel again, as a backup's first one (ghost)
            self.state = self.state.set(dumped={**self.state.dumped, n: False})

    # --- liveness ---------------------------------------------------------------------
    def converge(self, duration: float = 40.0) -> None:
        """Heal every link, stop faults and traffic, run the protocol: Synced must hold."""
        sim = self.sim
        for a in self.C.Node:
            for b in self.C.Node:
                if a < b and not sim.network.is_up(a, b):
                    self.link(a, b, True)
        # keepalived once the links are up: of two masters that hear each other one
        # resigns (here: all but the primary of the newest epoch, else the lowest
        # node id); with no master it elects one. A master that is not primary
        # (fenced since) takes over again by itself (Reassert).
        s = self.state
        for n in sorted(self.C.Node, key=lambda n: (s.role[n] == M.PRIMARY, s.epoch[n], -n)):
            if M.Resign(self.state, self.C, n) is not None:
                self.resign(n)
        if not any(self.state.master.values()):
            able = [n for n in self.C.Node if M.Promote(self.state, self.C, n) is not None]
            if able:
                self.promote(able[0])
        sim.expire_interval = 1.0
        sim._next_expire = sim.now + 1.0
        sim.run(duration)
        sim.expire_interval = 1e9
        sim._next_expire = 1e18
        self._purge()
        final = abstract(sim, self.C, self.conns, self.state, self.sessions)
        # (the ghosts are history the unchecked run does not keep: neutral values)
        nodes = self.C.Node
        neutral = final.set(owed={n: frozenset() for n in nodes}, dumped={n: True for n in nodes},
                            dead={n: M.EmptyTable(self.C) for n in nodes},
                            promoted={n: M.NotPromoted for n in nodes})  # fmt: skip
        bad = M.violated(neutral, self.C)
        if bad:
            raise RefinementError(f"convergence run: {', '.join(bad)} violated\n{_brief(final)}")
        if not M.Synced(final, self.C):
            raise RefinementError(f"not converged after {duration:g}s with links up and no faults:\n{_brief(final)}")
        if len(M.Primaries(final)) > 1:
            raise RefinementError(f"two primaries after {duration:g}s with links up:\n{_brief(final)}")


def _subsets(xs: frozenset[str]) -> list[frozenset[str]]:
    """Every subset of ``xs`` (what a dump step may skip of the connections destroyed since it started)."""
    items = sorted(xs)
    return [frozenset(x for i, x in enumerate(items) if k >> i & 1) for k in range(1 << len(items))]


_RECV = {
    M.MSG_STATE: "RecvState", M.MSG_ALIVE: "RecvAlive", M.MSG_ACK: "RecvAck", M.MSG_NACK: "RecvNack",
    M.MSG_HELLO: "RecvHello", M.MSG_RESYNC: "RecvResyncRequest",
}  # fmt: skip


def _show(actions: list[tuple[str, tuple[Any, ...]]]) -> str:
    return " ; ".join(f"{name}({', '.join(_show_arg(a) for a in args)})" for name, args in actions) or "a stutter"


def _show_arg(a: Any) -> str:
    return _show_msg(a, None) if isinstance(a, M.Msg) else str(a)


def _show_msg(msg: M.Msg | None, d: Datagram | None) -> str:
    if msg is None:
        return f"ALIVE {d.src}->{d.dst} (no claim)" if d is not None else "?"
    body = {
        M.MSG_STATE: f"seq={msg.seq} {msg.conn}={msg.ver}{' START' if msg.start else ''}{' END' if msg.end else ''}",
        M.MSG_ALIVE: f"next={msg.seq}",
        M.MSG_ACK: f"{msg.lo}..{msg.hi}",
        M.MSG_NACK: f"{msg.lo}..{msg.hi}",
    }.get(msg.type, "")
    return f"{msg.type} {msg.src}->{msg.dst} e={msg.term}.{msg.enode} {body}".rstrip()


def _brief(s: M.State) -> str:
    lines = []
    for n in s.role:
        lines.append(
            f"  node {n}: {s.role[n]} epoch={s.epoch[n]} kernel={_tab(s.kernel[n])} internal={_tab(s.internal[n])}"
            f" external={_tab(s.external[n])} next={s.nextSeq[n]} queue={[f.seq for f in s.queue[n]]}"
            f" expect={s.expect[n]} needSync={s.needSync[n]} owed={sorted(s.owed[n])} master={s.master[n]}"
        )
    lines.append(f"  links up: {sorted(tuple(sorted(p)) for p in s.linkUp)}; in flight: {sum(s.msgs.values())}")
    return "\n".join(lines)


def _tab(t: dict[str, int]) -> str:
    return "{" + ",".join(f"{c}:{v}" for c, v in t.items() if v) + "}"


def _arg(a: Any) -> Any:
    if isinstance(a, frozenset):
        return sorted(a)
    return a._asdict() if isinstance(a, M.Msg) else a


def _json_projection(p: dict[str, Any]) -> Any:
    return json.loads(json.dumps(p, default=lambda v: sorted(v) if isinstance(v, frozenset) else list(v)))


def alive_nodes(cluster: Cluster) -> list[int]:
    return [n for n in cluster.C.Node if cluster.sim.hosts[n].node is not None]


__all__ = ["Cluster", "Config", "RefinementError", "Role", "alive_nodes"]
