"""SyncNode: one cluster node as a sans-I/O object (aioquic's Connection, for conntrack).

The runtime and the simulation drive it with inputs and carry out its outputs:

- inputs: :meth:`start`, HA role changes (:meth:`promote`, :meth:`demote`,
  :meth:`fault`, :meth:`stop`), kernel events (:meth:`on_kernel_events`), the
  result of a kernel dump it asked for (:meth:`on_kernel_dump`), datagrams
  (:meth:`on_datagram`), the clock (:meth:`on_timer`, :meth:`next_timer`), operator
  commands (:meth:`commit`, :meth:`flush`, :meth:`resync_from_kernel`,
  :meth:`bulk_send`, :meth:`request_resync`, :meth:`shorten_timeouts`);
- outputs (returned lists of :mod:`snep.fsm.effects` values, to carry out in order):
  SendDatagram, KernelOps, DumpKernel, ShortenTimeouts, PersistEpoch, RoleChanged, Log.

Time is always an argument; nothing here reads a clock, opens a socket or touches a
kernel. Frames travel as bytes through the real codec.

Epochs. An epoch is (term, owner). A node remembers the newest it has seen (the
runtime persists it: PersistEpoch). Header epoch fields mean:

- STATE, ALIVE, HELLO: the sender's claim: the term of the epoch it holds as
  PRIMARY, or 0 when it holds none. A claim is (header epoch, header node id).
- ACK, NACK: the term of the stream being acknowledged (the addressee's claim), so
  that an answer about an older sequence space is never taken for the current one.
- RESYNC_REQUEST: 0 (or the sender's claim); only a PRIMARY answers.
- a HELLO message tells the newest epoch its sender has seen (``newest_term``,
  ``newest_owner``), and whether it follows a live primary of it (``live``).

Claims newer than the newest seen are adopted (persisted); a PRIMARY that hears a
newer claim is fenced: it steps down (role trigger ``fenced``). A newer epoch that
a HELLO merely tells of, with nobody vouching that its primary lives (a node that
restarted with its persisted epoch, or was away), is adopted too, but a PRIMARY does
not step down for it: it takes a term above it (``retake``). So a live primary is
never deposed by a node that is down or behind (the spec's HearEpoch). STATE and
ALIVE claims older than the newest seen are dropped and counted, never applied.

A node that drops a STALE frame (STATE/ALIVE of an older epoch) answers the stale
primary with a HELLO carrying the newest epoch (at most once per ``alive_interval``):
otherwise a primary whose epoch was overtaken while it could not hear the new owner
would stream forever into receivers that drop everything.

Terms are 32-bit on the wire: a claim or HELLO news of a term above ``MAX_TERM``
(no room left to promote above it) is refused and counted (``epoch_overflow``), and
a promotion that cannot take a term raises InvalidTransition before anything
changes. Only frames the channel admits (snep.fsm.channel: a bound session, a fresh
counter, the right sender and addressee) get this far.

keepalived's last word is kept (``ha_role``). A node it made master that is not
primary (a newer primary fenced it, and has since gone) takes over again once it
has heard of no live primary for ``peer_dead_timeout`` (``reassert``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from snep.cache import Cache, RecordCache
from snep.entry import Entry, Event, EventKind, Key, Status, TcpInfo, complete_update
from snep.errors import AuthError, DecodeError, InvalidTransition
from snep.fsm.channel import Channel
from snep.fsm.counters import Counters
from snep.fsm.effects import (
    MAX_TERM,
    BulkSendToPeers,
    ClearExternal,
    CommitExternal,
    DumpKernel,
    Epoch,
    KernelOps,
    Log,
    Output,
    PeerId,
    PersistEpoch,
    RequestResync,
    ResyncInternalFromKernel,
    RoleAction,
    RoleChanged,
    SendHello,
    ShortenKernelTimeouts,
    ShortenTimeouts,
    StopSending,
    TakeEpoch,
    VouchKernel,
)
from snep.fsm.framer import Framer
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams, Unconfirmed
from snep.fsm.ratelog import RateLog
from snep.fsm.receiver import Received, SyncReceiver
from snep.fsm.role import Role, RoleMachine
from snep.fsm.sender import SyncSender
from snep.fsm.spec_map import spec_action
from snep.wire.auth import Keyring
from snep.wire.codec import decode_frame, decode_records, key_of_record_key, record_key
from snep.wire.messages import (
    EVERY_PEER,
    Ack,
    Frame,
    Hello,
    MessageType,
    Nack,
    Report,
    ReportAck,
)
from snep.wire.serial import seq_diff

_CLAIMING = (MessageType.STATE, MessageType.ALIVE, MessageType.HELLO)
_UPDATE = EventKind.UPDATE
#: what ``flush`` empties: both caches (the default), or one of them
FLUSHABLE = ("all", "internal", "external")
_NEW_KIND = int(EventKind.NEW)  # (a record's first byte: its event kind)

#: states sent from held packets that the kernel has not reported yet (SyncSender's
#: ``unconfirmed``: dumps carry them, reports find them): at most this many ...
UNCONFIRMED_MAX = 8192
#: ... each for at most this many seconds (the kernel's event of a connection follows
#: its packet's verdict within milliseconds; one that never comes was never confirmed)
UNCONFIRMED_TTL = 10.0
#: report answers and ACK ranges kept for the gate to collect (snep.fsm.gate drains them
#: after each input)
REPORT_ANSWERS_MAX = 4096
#: the status bits a report may add: that the connection saw its reply (and is assured)
_REPORTED_STATUS = int(Status.SEEN_REPLY | Status.ASSURED)

#: what a rejection reason means, for the log (``misdirected`` is not logged: on a
#: multicast link every frame for another node is one; ``unbound_session`` is logged
#: as info: a few at every start, while the handshake runs)
_WHY = {
    "wrong_node": "its sender is not the node configured at its source address",
    "unbound_session": "the peer has not proved its session yet (asked to)",
    "stale_session": "it belongs to a session the peer no longer runs (a replay, or its former process)",
    "replays": "its counter was seen before or is left of the anti-replay window (a replay)",
}


class SyncNode:
    def __init__(
        self,
        node_id: int,
        peers: Sequence[PeerId],
        params: SyncParams | None = None,
        *,
        session: int,
        keyring: Keyring | None = None,
        newest_epoch: Epoch | tuple[int, int] = Epoch(0, 0),
        filter: Filter | None = None,
        graph: bool = False,
        drain: bool = False,
    ) -> None:
        """``session``: this process's random 64-bit nonce (an input: the daemon draws
        it from os.urandom, the simulation from its seeded generator); never reuse one
        with the same key. ``peers``: the peers' node ids. ``drain``: active-active's
        hand-over (spec/active_active.tla, Resign and Drained): a primary that resigns
        says so with its last seq, and a promotion waits for a live owner's resignation
        and its last frames (at most ``peer_dead_timeout``)."""
        if not 1 <= node_id <= 0xFFFFFFFF:
            raise ValueError(f"node id {node_id}: must be 1 .. 2**32-1")
        newest = Epoch(*newest_epoch)
        if not 0 <= newest.term <= MAX_TERM:
            raise ValueError(f"epoch {newest}: the term must be 0 .. {MAX_TERM}")
        self.node_id = node_id
        self.params = params or SyncParams()
        self.keyring = keyring
        self.counters = Counters()
        self.logs = RateLog()
        self.framer = Framer(node_id, self.counters, session, keyring.send_key if keyring else None, self.params.mtu)
        self.role = RoleMachine(graph=graph)
        self.internal = Cache()
        self.external = RecordCache(limit=self.params.max_entries)
        self.peers: tuple[PeerId, ...] = tuple(peers)
        self.channel = Channel(node_id, session, self.peers, self.params.alive_interval, self.counters)
        self._graph = graph
        self.last_heard: dict[PeerId, float] = {}
        self._fresh_sync(filter or Filter())
        self.newest = newest
        self.own: Epoch | None = None  # the epoch we hold while PRIMARY
        self.alive: dict[PeerId, bool] = {peer: True for peer in self.peers}
        self._told_stale: dict[PeerId, float] = {}
        self.need_sync = False  # must (re)synchronize: RESYNC_REQUEST until a dump completes
        self._resync_at = float("inf")  # when to ask again
        self.ha_role: str | None = None  # the HA manager's last word: promote, demote, fault
        self._primary_heard_at = float("-inf")  # a live primary of the newest epoch, last heard of
        self.drain = drain
        self._promote_by = float("inf")  # (drain) a waiting promotion goes ahead at the latest then
        self._resigned: tuple[PeerId, Epoch, int] | None = None  # (drain) who resigned which epoch, last seq
        #: VouchKernel pending (None: not): the keys born in our kernel since, which are
        #: live traffic, not an earlier life's (the primary's dump may not have them yet)
        self._vouch: set[Key] | None = None
        #: the pending VouchKernel also rewrites the confirmed entries (an earlier life's
        #: kernel: stale TCP windows); after a flush they are this life's, written from
        #: the primary's own states, and only the unconfirmed ones need to go
        self._vouch_rewrite = True
        #: inject_on_arrival: a promotion wrote nothing (the kernel holds the external
        #: cache, then emptied: these are its entries); the next kernel dump says what
        #: the kernel refused, and that is written
        self._check_commit: dict[bytes, bytes] | None = None  # (the external cache's records, by record key)
        #: (peer, report id) of the REPORT_ACKs received, for the gate to collect
        self.report_answers: deque[tuple[PeerId, int]] = deque(maxlen=REPORT_ANSWERS_MAX)
        #: (peer, term, first, last) of the ACKs of our stream received, for the gate to
        #: collect (None: nobody asked, nothing kept; snep.fsm.gate sets it)
        self.ack_ranges: deque[tuple[PeerId, int, int, int]] | None = None

    def _fresh_sync(self, filter: Filter) -> None:
        """A new process's sender and receivers: no stream, nothing queued."""
        self.sender = SyncSender(self.peers, self.params, self.framer, self.internal, filter, graph=self._graph, logs=self.logs)
        self.sender.heard = self.last_heard  # (whose frames came when: a large frame's loss needs a peer that is there)
        self.receivers = {
            peer: SyncReceiver(peer, self.params, self.framer, self.external, graph=self._graph, logs=self.logs)
            for peer in self.peers
        }

    # --- status -----------------------------------------------------------------------
    @property
    def filter(self) -> Filter:
        """Which connections this node tells its peers about (when primary)."""
        return self.sender.notifier.filter

    @property
    def state(self) -> Role:
        return self.role.state

    @property
    def ready(self) -> bool:
        """In sync (or primary): may win an election."""
        return self.role.state.ready

    def status(self, now: float) -> dict[str, Any]:
        """What ``snep ctl status`` shows of the protocol (the daemon adds the process)."""
        return {
            "node_id": self.node_id,
            "session": f"{self.channel.session:016x}",
            "role": self.role.state.name,
            "ready": self.ready,
            "epoch": list(self.newest),
            "own_epoch": list(self.own) if self.own else None,
            "peers": {
                str(p): {
                    "alive": self.alive[p],
                    "last_heard": round(now - self.last_heard[p], 3) if p in self.last_heard else None,
                    **self.channel.status(p),
                }
                for p in self.peers
            },
            "internal": len(self.internal),
            "external": len(self.external),
            "resend_queue": len(self.sender.queue),
        }

    # --- role changes (the rows of snep.fsm.role.TABLE) ------------------------------
    @spec_action("Recover")
    def start(self, now: float) -> list[Output]:
        """Process start / recover: dump the kernel, empty external cache, HELLO, resync."""
        if self.role.state is Role.DOWN:
            self._fresh_sync(self.filter)  # (a node object started again after stop)
        for peer in self.peers:
            self.last_heard[peer] = now
            self.alive[peer] = True
        self.ha_role = None
        self._primary_heard_at = float("-inf")
        return self._fire(now, "start")

    @spec_action("Promote")
    def promote(self, now: float) -> list[Output]:
        if self.drain and self.role.state in (Role.SYNCING, Role.BACKUP) and self._follows_live(now):
            return self._wait_for_resign(now)
        out = self._fire(now, "promote")
        self.ha_role = "promote"
        return out

    def _wait_for_resign(self, now: float) -> list[Output]:
        """The spec's Drained: keepalived made us master of the group while its owner is
        live (a return: the owner resigns as keepalived makes it backup). Its last frames
        may still be on their way; claiming now would drop them as stale, and the dump we
        send would sweep their connections from the owner. So wait for its resignation
        and its stream up to the last seq it names (``_drained``), or its silence, or
        ``peer_dead_timeout`` (a live owner that never resigns: split brain, fenced)."""
        if self.ha_role != "promote" or self._promote_by == float("inf"):  # (keepalived repeats itself)
            self._promote_by = now + self.params.peer_dead_timeout
            self.counters.promotions_waited += 1
        self.ha_role = "promote"
        return [Log("info", f"master while node {self.newest.node} holds epoch {self.newest}: waiting for it to "
                            f"resign and for its last frames (at most {self.params.peer_dead_timeout:g}s)")]

    def _drained(self, now: float) -> None:
        """The resigned owner's stream is applied up to its last seq: no primary is live."""
        if self._resigned is None:
            return
        peer, epoch, last = self._resigned
        receiver = self.receivers[peer]
        if receiver.stream == epoch and seq_diff(receiver.expected, last) <= 0:
            return  # (frames still missing: NACKed by on_alive)
        self._resigned = None
        if self.newest == epoch:
            self._primary_heard_at = float("-inf")  # (so a waiting promotion goes ahead: _reassert_due)

    @spec_action("Demote")
    @spec_action("Resign")
    def demote(self, now: float) -> list[Output]:
        out = self._resign(now)
        out += self._fire(now, "demote")
        self.ha_role = "demote"
        self._promote_by = float("inf")
        return out

    def _resign(self, now: float) -> list[Output]:
        """(drain) A primary's last word in its epoch (spec/active_active.tla's Resign):
        every peer learns it resigned, and its stream's last seq (the frame header's),
        before it stops sending."""
        out: list[Output] = []
        if self.drain and self.role.state is Role.PRIMARY:
            hello = Hello(self.newest.term, self.newest.node, resigned=True)
            self.framer.send(out, self.peers, self.framer.control(MessageType.HELLO, self.sender.term, self.sender.newest_seq, hello))
            self.counters.hellos_sent += len(self.peers)
        return out

    @spec_action("Fault")
    def fault(self, now: float) -> list[Output]:
        out = self._resign(now)
        out += self._fire(now, "fault")
        self.ha_role = "fault"
        self._promote_by = float("inf")
        return out

    @spec_action("Fail")
    def stop(self, now: float) -> list[Output]:
        """Clean stop (SIGTERM): nothing more is sent (but, with ``drain``, a primary's
        resignation: its group's next owner need not wait for its silence)."""
        out = self._resign(now)
        out += self._fire(now, "fail")
        self.sender.deactivate()
        self.own = None
        return out

    def _fire(self, now: float, trigger: str, **guard: Any) -> list[Output]:
        old = self.role.state
        if any(isinstance(a, TakeEpoch) for a in self.role.actions_for(trigger)) and not self._can_take_term():
            raise InvalidTransition(
                f"{trigger}: no term is left above epoch {self.newest} (terms end at {MAX_TERM}); the role stays {old.name}"
            )
        actions = self.role.fire(trigger, **guard)
        out: list[Output] = []
        if self.role.state is not old:
            out.append(RoleChanged(old.value, self.role.state.value, trigger))
        self._carry_out(now, actions, out)
        return out

    def _carry_out(self, now: float, actions: Iterable[RoleAction], out: list[Output]) -> None:
        held = False  # inject_on_arrival's CommitExternal: the kernel holds the external cache
        for action in actions:
            if isinstance(action, CommitExternal):
                if self.params.inject_on_arrival:
                    held = True  # (checked against the next kernel dump: _check_commit)
                else:
                    self._commit(out)
            elif isinstance(action, TakeEpoch):
                self.sender.deactivate()  # (a retake: the old sequence space ends)
                self.own = Epoch(self.newest.term + 1, self.node_id)
                self._promote_by, self._resigned = float("inf"), None
                self._adopt(self.own, out)
                self.sender.activate(now, self.own)
                self.need_sync = False
                self._resync_at = float("inf")
                self._vouch = None  # (a primary's kernel is the truth)
            elif isinstance(action, ResyncInternalFromKernel):
                self.sender.cache_loading()
                out.append(DumpKernel())
            elif isinstance(action, ClearExternal):
                if held:  # (its records are the check's, taken whole instead of copied)
                    self._check_commit, held = self.external.detach(), False
                else:
                    self.external.clear()
            elif isinstance(action, SendHello):
                self._send_hello(now, None, out)
            elif isinstance(action, BulkSendToPeers):
                self.sender.start_bulk(now, out)  # (it waits for the kernel dump, if one is due)
            elif isinstance(action, ShortenKernelTimeouts):
                out.append(ShortenTimeouts(self.params.shorten_timeout))
            elif isinstance(action, VouchKernel):
                self._vouch, self._vouch_rewrite = set(), True
            elif isinstance(action, RequestResync):
                self.need_sync = True
                self._request_resync(now, out)
            elif isinstance(action, StopSending):
                self.sender.deactivate()
                self.own = None
            else:  # pragma: no cover - the role table only holds the actions above
                raise AssertionError(f"unknown role action {action!r}")
        if held:  # (a row that keeps the external cache: the check gets a copy)
            self._check_commit = self.external.records()

    def _commit(self, out: list[Output]) -> None:
        if len(self.external):
            out.append(KernelOps((), replace=True, records=self.external.messages()))
        out.append(Log("info", f"commit: {len(self.external)} entries of the external cache to the kernel"))

    def _can_take_term(self, above: int | None = None) -> bool:
        """Is there a term above ``above`` (the newest seen) for a new epoch of ours?"""
        return (self.newest.term if above is None else above) + 1 <= MAX_TERM

    def _adopt(self, claim: Epoch, out: list[Output]) -> None:
        if claim > self.newest:
            self.newest = claim
            out.append(PersistEpoch(claim))
            for receiver in self.receivers.values():
                if receiver.stream is not None and receiver.stream < claim:
                    receiver.abandon_dump()  # (its frames are stale now: no BULK_END will count)

    def _send_hello(self, now: float, peer: PeerId | None, out: list[Output], echo: int = 0) -> None:
        """HELLO with our newest epoch: one frame for every peer (``peer`` None), or one
        for ``peer`` (``echo``: the peer's session it answers; 0: none)."""
        peers = self.peers if peer is None else (peer,)
        hello = Hello(self.newest.term, self.newest.node, live=self._follows_live(now), echo=echo)
        dst = EVERY_PEER if peer is None else peer
        data = self.framer.control(MessageType.HELLO, self.sender.term, self.sender.newest_seq, hello, dst)
        self.framer.send(out, peers, data)
        self.counters.hellos_sent += len(peers)

    def _resync_targets(self) -> list[PeerId]:
        """Whom to ask for a dump: the primary we know (the newest epoch's owner), else all."""
        owner = self.newest.node
        if owner != self.node_id and owner in self.receivers:
            return [owner]
        return list(self.receivers)

    def _request_resync(self, now: float, out: list[Output]) -> None:
        """RESYNC_REQUEST to the targets that know our session (the others get theirs
        when the handshake with them completes: snep.fsm.channel)."""
        for peer in self._resync_targets():
            if self.channel.introduced(peer):
                self.receivers[peer].request_resync(now, self.sender.term, out)
        self._resync_at = now + self.params.resync_retry

    def _introduced(self, now: float, peer: PeerId, out: list[Output]) -> None:
        """The handshake with ``peer`` completed: it accepts our frames from now on."""
        if self.need_sync and peer in self._resync_targets():
            self.receivers[peer].request_resync(now, self.sender.term, out)

    # --- kernel -----------------------------------------------------------------------
    def _complete(self, event: Event) -> Event:
        """UPDATE events are partial (what changed): the full entry is what we keep and send."""
        if event.kind is _UPDATE:
            return Event(_UPDATE, complete_update(self.internal.get(event.entry.key), event.entry))
        return event

    def on_kernel_events(self, now: float, events: Sequence[Event]) -> list[Output]:
        """Conntrack events of our own kernel (one netlink read): into the internal cache;
        a PRIMARY streams them, packed into as few frames as fit."""
        out: list[Output] = []
        role = self.role.state
        if role is Role.DOWN:
            return out
        self.counters.kernel_events += len(events)
        complete = self._complete
        events = [event if event[0] is not _UPDATE else complete(event) for event in events]
        if self._vouch is not None:
            self._vouch.update(event.entry.key for event in events if event.kind is EventKind.NEW)
        unconfirmed = self.sender.unconfirmed
        if unconfirmed:
            for event in events:
                unconfirmed.pop(event[1].key, None)  # (the kernel's own word from now on)
        self.internal.apply_all(events)
        if role is Role.PRIMARY:
            self.sender.on_events(now, events, out)
        return out

    def on_kernel_dump(self, now: float, entries: Iterable[Entry] | dict[Key, Entry]) -> list[Output]:
        """The kernel dump asked for by DumpKernel (its entries, or a dict of them by
        key): it becomes the internal cache."""
        out: list[Output] = []
        self.internal.replace(entries)
        unconfirmed = self.sender.unconfirmed
        if unconfirmed:
            internal = self.internal
            for key in [key for key in unconfirmed if key in internal]:
                del unconfirmed[key]  # (confirmed: the kernel holds it)
        if self._check_commit is not None:
            committed, self._check_commit = self._check_commit, None
            internal = self.internal
            absent = [record for key, record in committed.items() if key_of_record_key(key) not in internal]
            missing = tuple(Event(EventKind.NEW, event[1]) for event in decode_records(absent))
            if missing:
                for event in missing:
                    internal.apply(event)
                out.append(KernelOps(missing, replace=True))
            out.append(Log("info", f"promoted warm (inject_on_arrival): {len(missing)} entries of the external cache were missing from the kernel, written"))
        self.sender.cache_loaded(now, out)
        return out

    # --- network ----------------------------------------------------------------------
    def on_datagram(self, now: float, data: bytes, peer: PeerId, source: str | None = None) -> list[Output]:
        """One datagram from ``peer`` (``source``: its address, for the log); bad input
        is counted, never raised, and logged at most once a second per reason."""
        out: list[Output] = []
        counters = self.counters
        counters.frames_received += 1
        counters.bytes_received += len(data)
        if self.role.state is Role.DOWN:
            return out
        receiver = self.receivers.get(peer)
        if receiver is None:
            counters.unknown_peer += 1
            return out
        where = source or f"node {peer}"
        try:
            frame = decode_frame(data, self.keyring, records=True)  # (plain STATE messages stay records)
        except AuthError as error:
            counters.auth_failures += 1
            self.logs(now, out, "auth_failures", "warning", f"frame from {where} rejected: {error}")
            return out
        except DecodeError as error:
            counters.malformed += 1
            self.logs(now, out, "malformed", "warning", f"malformed frame from {where}: {error}")
            return out
        introduced = self.channel.introduced(peer)
        admission = self.channel.admit(now, peer, frame)
        if not admission.accepted:
            if admission.reason in _WHY:
                self.logs(
                    now, out, admission.reason, "info" if admission.reason == "unbound_session" else "warning",
                    f"{frame.type.name} frame from {where} (node {frame.node_id}, session {frame.session:016x}, "
                    f"counter {frame.counter}) rejected: {_WHY[admission.reason]}",
                )
            self._after_admission(now, peer, admission.answer, introduced, out)
            return out
        if admission.bound:
            # A new process of the peer: what it acknowledged before says nothing now.
            self.sender.peer_introduced(peer)
            out.append(Log("info", f"peer {peer} ({where}) proved session {frame.session:016x}"))
        self._heard(now, peer, out)
        mtype = frame.type
        claim: Epoch | None = None
        if frame.epoch and mtype in _CLAIMING:
            if frame.epoch > MAX_TERM:
                self._overflow(now, where, frame.epoch, out)
                return out
            claim = Epoch(frame.epoch, frame.node_id)
            self._observe(now, claim, out)
            if claim == self.newest and frame.node_id != self.node_id:
                self._primary_heard_at = now
        if mtype is MessageType.STATE:
            self._on_state(now, receiver, frame, claim, out)
        elif mtype is MessageType.ALIVE:
            counters.alives_received += 1
            if claim is not None:
                if claim < self.newest:
                    counters.stale_epoch_drops += 1
                    self._tell_stale(now, peer, out)
                elif self.role.state is not Role.PRIMARY:
                    receiver.on_alive(now, frame, claim, out)
        elif mtype is MessageType.ACK:
            ranges = self.ack_ranges
            for message in frame.messages:
                if isinstance(message, Ack):
                    if self.sender.on_ack(now, peer, message, frame.epoch, out) and ranges is not None:
                        ranges.append((peer, frame.epoch, message.first, message.last))
        elif mtype is MessageType.NACK:
            nacks = [message for message in frame.messages if isinstance(message, Nack)]
            self.sender.on_nack(now, peer, nacks, frame.epoch, out)
        elif mtype is MessageType.RESYNC_REQUEST:
            self.sender.on_resync_request(now, peer, out)
        elif mtype is MessageType.HELLO:
            self.on_hello(now, peer, frame, out)
        elif mtype is MessageType.REPORT:
            self.on_report(now, peer, frame, out)
        elif mtype is MessageType.REPORT_ACK:
            counters.report_acks_received += len(frame.messages)
            self.report_answers.extend((peer, message.report_id) for message in frame.messages if isinstance(message, ReportAck))
        self._after_admission(now, peer, admission.answer, introduced, out)
        return out

    def _after_admission(self, now: float, peer: PeerId, answer: int | None, introduced: bool, out: list[Output]) -> None:
        """Answer the peer's HELLO (or challenge it) if the channel says so; carry on
        with it once the handshake completed."""
        if answer is not None:
            self._send_hello(now, peer, out, echo=answer)
        if not introduced and self.channel.introduced(peer):
            self._introduced(now, peer, out)

    def _overflow(self, now: float, where: str, term: int, out: list[Output]) -> None:
        self.counters.epoch_overflow += 1
        self.logs(
            now, out, "epoch_overflow", "warning",
            f"frame from {where} refused: term {term} leaves no room to promote (terms end at {MAX_TERM})",
        )

    def _on_state(self, now: float, receiver: SyncReceiver, frame: Frame, claim: Epoch | None, out: list[Output]) -> None:
        if claim is None or self.role.state is Role.PRIMARY:
            self.counters.unexpected += 1  # STATE from a node that claims no epoch / to a primary
            return
        if claim < self.newest:
            self.counters.stale_epoch_drops += 1
            self._tell_stale(now, receiver.peer, out)
            return
        result = receiver.on_state(now, frame, claim, out)
        self._follow_in_kernel(result, out)
        if self._resigned is not None:
            self._drained(now)
        if frame.ack_now:
            # A held packet waits for this ACK: it goes at once, after the kernel write
            # (in the output order), so that it means "in this node's kernel".
            self.counters.acks_at_once += 1
            receiver.ack_at_once(now, out)
        if result.bulk_completed and self._vouch is not None:
            self._vouch_kernel(out)
        if result.bulk_completed:
            self.need_sync = False
            self._resync_at = float("inf")
            if self.role.state is Role.SYNCING:
                out.extend(self._fire(now, "synced"))

    def _follow_in_kernel(self, result: Received, out: list[Output]) -> None:
        """What the primary's stream put into or took out of the external cache. With
        inject_on_arrival everything goes into the kernel at once; without, the kernel
        still loses what the stream removes (a DESTROY, a dump's sweep) when it holds
        it (the internal cache is this kernel's): a backup keeps no entry its primary
        says is gone, so no zombie survives into its next term as primary."""
        inject = self.params.inject_on_arrival
        internal = self.internal
        if inject:
            ops = list(result.applied)
            records = result.records
            # (all NEW: the smallest and the largest record, in byte order, both start
            # with that kind, so every one does; two passes in C, not a loop in Python)
            if records and min(records)[0] == _NEW_KIND == max(records)[0]:
                out.append(KernelOps((), records=records))  # (a dump's: written from their bytes)
            elif records:
                ops += decode_records(records)  # (updates: the kernel's update, without a create first)
        else:  # (a frame's worth per call: only its DESTROYs are looked at; records are NEW and UPDATE only)
            destroy = EventKind.DESTROY
            ops = [event for event in result.applied if event[0] is destroy and event[1].key in internal]
        ops.extend(Event(EventKind.DESTROY, entry) for entry in result.swept if inject or entry.key in internal)
        if ops:
            out.append(KernelOps(tuple(ops)))

    def _vouch_kernel(self, out: list[Output]) -> None:
        """The primary's first complete dump since this node became backup: its kernel
        keeps nothing of an earlier life. Entries the dump confirms take the primary's
        state (replaced: a kept entry's stale TCP window would drop the connection's
        packets); the others, unless born since (live) or kept out by the filter (never
        sent: the primary's silence says nothing of them), are removed or shortened."""
        born, self._vouch = self._vouch or set(), None
        external, internal, accepts = self.external, self.internal, self.filter.accepts
        records = external.records()
        theirs: list[bytes] = []
        unconfirmed: list[Entry] = []
        for entry in internal:
            record = records.get(record_key(entry[0], entry[2]))
            if record is not None:
                theirs.append(record)
            elif entry.key not in born and accepts(entry, EventKind.DESTROY):
                unconfirmed.append(entry)
        if not self._vouch_rewrite:
            theirs.clear()  # (after a flush: the confirmed entries are as the primary said)
        confirmed = [Event(EventKind.NEW, event[1]) for event in decode_records(theirs)]  # (decoded at once)
        how = self.params.unconfirmed
        if how is Unconfirmed.REMOVE and external.limit is not None and len(external) >= external.limit:
            how = Unconfirmed.SHORTEN  # (a full external cache refused entries: its silence proves nothing)
        for event in confirmed:
            internal.apply(event)
        if confirmed:
            out.append(KernelOps(tuple(confirmed), replace=True))
        if unconfirmed and how is Unconfirmed.REMOVE:
            gone = tuple(Event(EventKind.DESTROY, entry) for entry in unconfirmed)
            for event in gone:
                internal.apply(event)
            out.append(KernelOps(gone))
        elif unconfirmed:
            out.append(ShortenTimeouts(self.params.shorten_timeout, frozenset(entry.key for entry in unconfirmed)))
        self.counters.vouch_confirmed += len(confirmed)
        self.counters.vouch_unconfirmed += len(unconfirmed)
        done = "removed" if how is Unconfirmed.REMOVE else f"shortened to {self.params.shorten_timeout} s"
        out.append(
            Log("info", f"kernel held to the primary's dump: {len(confirmed)} entries confirmed (the primary's state "
                        f"written), {len(unconfirmed)} unconfirmed {done}")
        )

    def _observe(self, now: float, claim: Epoch, out: list[Output]) -> None:
        """A claim heard: adopt it if newer; a PRIMARY with an older epoch steps down
        (the spec's StepDown, part of RecvState, RecvAlive and RecvHello)."""
        if claim <= self.newest:
            return
        self.counters.epochs_adopted += 1
        own = self.own
        self._adopt(claim, out)
        if self.role.state is Role.PRIMARY and own is not None and claim > own:
            self._primary_heard_at = now
            self.counters.fenced += 1
            out.append(Log("warning", f"fenced: epoch {claim} is newer than ours ({own}); stepping down"))
            out.extend(self._fire(now, "fenced", heard=claim, own=own))

    @spec_action("RecvHello")
    def on_hello(self, now: float, peer: PeerId, frame: Frame, out: list[Output]) -> None:
        """A peer tells the newest epoch it has seen (its claim, if any, was observed
        from the header): the spec's HearEpoch."""
        self.counters.hellos_received += 1
        for message in frame.messages:
            if isinstance(message, Hello) and message.resigned and self.drain:
                self._hear_resign(now, peer, frame, message, out)
            if isinstance(message, Hello) and message.newest_term:
                if message.newest_term > MAX_TERM:
                    self._overflow(now, f"node {peer}", message.newest_term, out)
                    continue
                self._hear_of(now, Epoch(message.newest_term, message.newest_owner), message.live, out)

    def _hear_resign(self, now: float, peer: PeerId, frame: Frame, hello: Hello, out: list[Output]) -> None:
        """The owner of an epoch resigned it; its stream ended at the header's seq."""
        epoch = Epoch(hello.newest_term, hello.newest_owner)
        if epoch.node != peer or epoch < self.newest or self.role.state is Role.PRIMARY:
            return  # (only the owner resigns its own epoch; an older one is over anyway)
        self.counters.resigns_heard += 1
        self._resigned = (peer, epoch, frame.seq)
        receiver = self.receivers[peer]
        if receiver.stream == epoch:
            receiver.on_alive(now, frame, epoch, out)  # (a lost tail: NACKed at once)
        self._drained(now)

    def _hear_of(self, now: float, heard: Epoch, live: bool, out: list[Output]) -> None:
        """A newer epoch told by a HELLO. Vouched for (its primary is live, says the
        sender): as a claim. Merely remembered: adopted, and a PRIMARY takes a term
        above it instead of stepping down."""
        if heard <= self.newest:
            if live and heard == self.newest:
                self._primary_heard_at = now  # (relayed: its primary lives)
            return
        if live or self.role.state is not Role.PRIMARY or not self._can_take_term(heard.term):
            # (a primary that finds no term above the news steps down instead)
            self._observe(now, heard, out)
            if live:
                self._primary_heard_at = now
            return
        self.counters.epochs_adopted += 1
        self.counters.retakes += 1
        self._adopt(heard, out)
        out.append(Log("warning", f"heard of epoch {heard}, newer than ours ({self.own}) and vouched for by nobody: taking a term above it"))
        out.extend(self._fire(now, "retake"))

    def _follows_live(self, now: float) -> bool:
        """Do we follow a primary of the newest epoch that we heard of lately?"""
        if self.role.state is Role.PRIMARY or self.newest.node in (0, self.node_id):
            return False
        return now - self._primary_heard_at < self.params.peer_dead_timeout

    def _tell_stale(self, now: float, peer: PeerId, out: list[Output]) -> None:
        """A stale primary streams to us: tell it the newest epoch (rate-limited)."""
        if self._told_stale.get(peer, float("-inf")) + self.params.alive_interval > now:
            return
        self._told_stale[peer] = now
        self._send_hello(now, peer, out)

    def _heard(self, now: float, peer: PeerId, out: list[Output]) -> None:
        self.last_heard[peer] = now
        if not self.alive[peer]:
            self.alive[peer] = True
            self.sender.mark_alive(peer)
            self.counters.peer_revivals += 1
            out.append(Log("info", f"peer {peer} is alive again"))

    @spec_action("PeerTimeout")
    def on_peer_silent(self, now: float, peer: PeerId, out: list[Output]) -> None:
        """Nothing heard from ``peer`` for ``peer_dead_timeout``: its acks no longer hold the queue."""
        self.alive[peer] = False
        self.sender.mark_dead(peer)
        self.counters.peer_deaths += 1
        out.append(Log("warning", f"peer {peer} silent for {self.params.peer_dead_timeout:g}s: marked dead"))

    # --- active-active: held packets and reports (snep.fsm.gate drives these) ----------
    def defer_peers(self) -> tuple[PeerId, ...]:
        """The peers a held packet waits for: live (heard within peer_dead_timeout),
        with the handshake done (they count our frames), and not waiting for a dump (a
        peer that needs one gets the state in it, before it is ready: the spec's
        DeferReleasedOnlyWhenHeld asks only the peers with a whole dump)."""
        peers = self.sender.peers
        return tuple(
            p for p in self.peers if self.alive[p] and self.channel.introduced(p) and not peers[p].behind
        )

    def acked(self, peer: PeerId) -> int:
        """The first seq of the current stream that ``peer`` has not acknowledged (the
        sender's PeerTx.acked). Not what a held packet waits for: a peer that jumped over
        a gap to a dump's BULK_START moves it past frames it never applied, which its dump
        carries only once complete. A held packet waits for an ACK whose range holds its
        frame (:attr:`ack_ranges`)."""
        return self.sender.peers[peer].acked

    def take_ack_ranges(self) -> list[tuple[PeerId, int, int, int]]:
        """The (peer, term, first, last) of the ACKs received since the last call: the
        peer applied the frames first .. last of the stream of that term (its kernel
        holds them: it acknowledges a FLAG_ACK_NOW frame after writing it)."""
        ranges = self.ack_ranges
        if not ranges:
            return []
        taken = list(ranges)
        ranges.clear()
        return taken

    def send_held(self, now: float, entry: Entry) -> tuple[list[Output], int | None]:
        """A new connection's state, built from its first packet, which the caller holds
        (the kernel's NEW event comes only after the verdict): sent at once to every
        peer in the stream, in a frame flagged FLAG_ACK_NOW. Returns the outputs and the
        seq of the frame that carries it (None: not sent; not the primary, or the
        filter keeps the connection from the peers). A release must wait for each
        peer's ACK of that very frame, never of the key alone: a DESTROY's, or an
        earlier incarnation's, must not release it."""
        out: list[Output] = []
        if self.role.state is not Role.PRIMARY or not self.sender.active:
            return out, None
        event = Event(EventKind.NEW, entry)
        if not self.filter.accepts(entry, EventKind.NEW):
            return out, None
        seq = self.sender.send_now(now, [event], out, ack_now=True)
        unconfirmed = self.sender.unconfirmed
        unconfirmed.pop(entry.key, None)
        self._expire_unconfirmed(now)
        if len(unconfirmed) >= UNCONFIRMED_MAX:
            del unconfirmed[next(iter(unconfirmed))]  # (the oldest: its kernel event is long overdue)
        unconfirmed[entry.key] = (entry, now)
        self.counters.held_states_sent += 1
        return out, seq

    def _expire_unconfirmed(self, now: float) -> None:
        """States sent from held packets whose kernel event never came (their connection
        was never confirmed: a later rule dropped the packet) are no longer dumped: the
        peers' next dump sweeps them, or their kernel's timeout."""
        unconfirmed = self.sender.unconfirmed
        while unconfirmed:
            key = next(iter(unconfirmed))
            if unconfirmed[key][1] + UNCONFIRMED_TTL > now:
                break
            del unconfirmed[key]

    def withdraw_held(self, now: float, entry: Entry) -> list[Output]:
        """A held connection whose packet was dropped (fail-closed): its state was sent,
        its kernel entry died unconfirmed with the packet, so the peers get its DESTROY."""
        out: list[Output] = []
        self.sender.unconfirmed.pop(entry.key, None)
        if self.role.state is Role.PRIMARY and self.sender.active:
            self.sender.send_now(now, [Event(EventKind.DESTROY, entry)], out)
        return out

    def report_target(self) -> PeerId | None:
        """The peer a report goes to: the primary of the newest epoch, when it is a live
        peer that counts our frames (None: no such primary, or we are it)."""
        owner = self.newest.node
        if self.role.state is Role.PRIMARY or owner == self.node_id or owner not in self.alive:
            return None
        return owner if self.alive[owner] and self.channel.introduced(owner) else None

    def send_report(self, now: float, report_id: int, entry: Entry) -> tuple[list[Output], PeerId | None]:
        """REPORT ``entry`` (a state this node's kernel gave a connection it does not
        own: the first reply of an asymmetric path) to the primary; returns the outputs
        and the peer it went to (None: nobody to report to, nothing sent)."""
        out: list[Output] = []
        target = self.report_target()
        if target is None:
            return out, None
        data = self.framer.control(
            MessageType.REPORT, self.newest.term, self.sender.newest_seq, Report(report_id, entry), target
        )
        self.framer.send(out, (target,), data)
        self.counters.reports_sent += 1
        return out, target

    def take_report_answers(self) -> list[tuple[PeerId, int]]:
        """The (peer, report id) of the REPORT_ACKs received since the last call."""
        answers = list(self.report_answers)
        self.report_answers.clear()
        return answers

    def on_report(self, now: float, peer: PeerId, frame: Frame, out: list[Output]) -> None:
        """A non-owner's report (not in the spec: an optimisation of the first reply,
        whose loss is the defer bound's case). Only the primary of the epoch it names
        applies it, as an update of an entry it knows; it streams the update like its
        own change (its own kernel writes are not echoed back as events) and answers
        after the kernel write. What it does not know (another group's entry, one gone)
        is counted and dropped; an entry past its first reply is answered, unwritten."""
        reports = [message for message in frame.messages if isinstance(message, Report)]
        self.counters.reports_received += len(reports)
        own = self.own
        if self.role.state is not Role.PRIMARY or own is None or frame.epoch != own.term:
            self.counters.reports_refused += len(reports)
            self.logs(
                now, out, "reports_refused", "warning",
                f"REPORT from node {peer} for epoch term {frame.epoch} dropped: this node is "
                f"{self.role.state.name}{f' in epoch {own}' if own else ''}, not that epoch's primary",
            )
            return
        internal, unconfirmed = self.internal, self.sender.unconfirmed
        updates: list[Event] = []
        answered: list[int] = []
        for report in reports:
            entry = report.entry
            known = internal.get(entry.key)
            if known is None and entry.key in unconfirmed:
                known = unconfirmed[entry.key][0]
            if known is None or known.mark != entry.mark:
                self.counters.reports_unknown += 1
                continue
            if known.status & Status.SEEN_REPLY:
                self.counters.reports_late += 1  # (its reply is known here: nothing to write)
            else:
                status = known.status | (entry.status & _REPORTED_STATUS)
                protoinfo = known.protoinfo
                if type(protoinfo) is TcpInfo and type(entry.protoinfo) is TcpInfo:
                    # its state, and what the reply told of the replier (the rest is the owner's)
                    reported = entry.protoinfo
                    protoinfo = protoinfo._replace(
                        state=reported.state, wscale_reply=reported.wscale_reply, flags_reply=reported.flags_reply
                    )
                updates.append(Event(_UPDATE, known._replace(status=status, timeout=entry.timeout, protoinfo=protoinfo)))
                self.counters.reports_applied += 1
            answered.append(report.report_id)
        if updates:
            out.append(KernelOps(tuple(updates)))
            for event in updates:
                unconfirmed.pop(event[1].key, None)  # (the internal cache has it now)
            internal.apply_all(updates)
            self.sender.on_events(now, updates, out)
        for report_id in answered:
            data = self.framer.control(MessageType.REPORT_ACK, own.term, self.sender.newest_seq, ReportAck(report_id), peer)
            self.framer.send(out, (peer,), data)
            self.counters.report_acks_sent += 1

    # --- timers -----------------------------------------------------------------------
    def on_timer(self, now: float) -> list[Output]:
        """Run whatever is due at ``now``."""
        out: list[Output] = []
        if self.role.state is Role.DOWN:
            return out
        sender = self.sender
        if sender.unconfirmed:
            self._expire_unconfirmed(now)
        sender.on_flush_timer(now, out)
        sender.on_bulk_step(now, out)
        sender.on_retransmit_timer(now, out)
        receiving = self.role.state is not Role.PRIMARY
        for receiver in self.receivers.values():
            if receiving and receiver.stream == self.newest:
                receiver.on_ack_timer(now, out)  # (to the primary of the newest epoch only)
        sender.on_alive_timer(now, out)
        if self._reassert_due(now):
            self.reassert(now, out)
            return out
        if self.need_sync and now >= self._resync_at:
            if self._dump_arriving():
                self._resync_at = now + self.params.resync_retry  # a dump is arriving
            else:
                self._request_resync(now, out)
        dead = self.params.peer_dead_timeout
        for peer in self.peers:
            if self.alive[peer] and self.last_heard.get(peer, now) + dead <= now:
                self.on_peer_silent(now, peer, out)
        return out

    @spec_action("Reassert")
    def reassert(self, now: float, out: list[Output]) -> None:
        """keepalived's master takes over again: it hears of no primary any more."""
        self.counters.reasserts += 1
        out.append(Log("warning", "keepalived made this node master and no primary has been heard of: taking over"))
        out.extend(self._fire(now, "reassert"))

    def _reassert_due(self, now: float) -> bool:
        """keepalived's last word was master, we are not primary, and no live primary
        has been heard of for ``peer_dead_timeout`` (the spec's Reassert)."""
        return (
            self.ha_role == "promote"
            and self.role.state in (Role.SYNCING, Role.BACKUP)
            and now >= self._promote_at()
            and self._can_take_term()
        )

    def _promote_at(self) -> float:
        """When keepalived's master that is not primary takes over: no live primary heard
        of for ``peer_dead_timeout``; (drain) or the owner it waits for fell silent for two
        alive intervals (it failed), or the wait's bound passed."""
        at = self._primary_heard_at + self.params.peer_dead_timeout
        if self._promote_by != float("inf"):
            silent = self.last_heard.get(self.newest.node, float("-inf")) + 2 * self.params.alive_interval
            at = min(at, self._promote_by, silent)
        return at

    def _dump_arriving(self) -> bool:
        """A dump of the newest epoch's primary has started (BULK_START applied)."""
        return any(r.marking and r.stream == self.newest for r in self.receivers.values())

    def next_timer(self, now: float) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing pending; DOWN)."""
        if self.role.state is Role.DOWN:
            return None
        deadline = self.sender.next_deadline(now)
        if self.need_sync and self._resync_at < deadline:
            deadline = self._resync_at
        if self.role.state is not Role.PRIMARY:
            for receiver in self.receivers.values():
                due = receiver.ack_deadline()
                if due is not None and due < deadline and receiver.stream == self.newest:
                    deadline = due
        dead = self.params.peer_dead_timeout
        for peer in self.peers:
            if self.alive[peer]:
                due = self.last_heard.get(peer, now) + dead
                if due < deadline:
                    deadline = due
        if self.ha_role == "promote" and self.role.state in (Role.SYNCING, Role.BACKUP):
            deadline = min(deadline, max(now, self._promote_at()))
        return deadline

    # --- operator commands ------------------------------------------------------------
    def commit(self, now: float) -> list[Output]:
        """Write the external cache into the kernel (conntrackd -c), then reload the
        internal cache from the kernel: it must know what the kernel holds (a stream's
        DESTROY removes from this kernel what the internal cache says is there). The
        committed entries go into the internal cache at once too: a DESTROY or a sweep
        that arrives before the dump must remove them from the kernel, or they would
        outlive their connections there (KernelVouched)."""
        out: list[Output] = []
        self._commit(out)
        internal = self.internal
        for entry in self.external:
            internal.apply(Event(EventKind.NEW, entry))
        self.sender.cache_loading()
        out.append(DumpKernel())
        return out

    def flush(self, now: float, caches: str = "all") -> list[Output]:
        """Empty the caches, ``caches`` of FLUSHABLE (conntrackd -f [internal|external]),
        then refill what was emptied: the internal cache from a kernel dump (a primary's
        dumps must not miss connections, or backups would sweep them) and, on a
        non-primary, the external cache from the primary's dump."""
        if caches not in FLUSHABLE:
            raise ValueError(f"flush: {caches!r} is not one of {', '.join(FLUSHABLE)}")
        out: list[Output] = [Log("info", "caches flushed" if caches == "all" else f"{caches} cache flushed")]
        if caches != "external":
            self.internal.clear()
            out.append(DumpKernel())
            self.sender.cache_loading()
        if caches == "internal":
            return out
        self.external.clear()
        for receiver in self.receivers.values():
            receiver.abandon_dump()  # a dump under way no longer fills the cache whole
        if self.role.state in (Role.SYNCING, Role.BACKUP, Role.FAULT):
            self.need_sync = True
            # the kernel outlives the flush: the refilling dump vouches for it again, or an
            # entry committed before and gone from the primary since would stay there
            self._vouch, self._vouch_rewrite = set(), self._vouch is not None and self._vouch_rewrite
            out += self._fire(now, "unsynced")  # not ready until the primary's dump refilled it
            self._request_resync(now, out)
        return out

    def resync_from_kernel(self, now: float) -> list[Output]:
        """Rebuild the internal cache from a kernel dump (conntrackd -R)."""
        self.sender.cache_loading()
        return [DumpKernel()]

    def bulk_send(self, now: float) -> list[Output]:
        """Send the internal cache to every peer (conntrackd -B); PRIMARY only."""
        if self.role.state is not Role.PRIMARY:
            raise InvalidTransition(f"bulk send: only a PRIMARY streams state, this node is {self.role.state.name}")
        out: list[Output] = []
        self.sender.start_bulk(now, out)
        return out

    def request_resync(self, now: float) -> list[Output]:
        """Ask the peers for a bulk dump (conntrackd -n). A non-primary asks again every
        ``resync_retry`` until one has come: the primary refuses a request beyond the
        dump budget, and a node in sync would otherwise never ask again."""
        out: list[Output] = []
        if self.role.state in (Role.SYNCING, Role.BACKUP, Role.FAULT):
            self.need_sync = True
        self._request_resync(now, out)
        return out

    def shorten_timeouts(self, now: float) -> list[Output]:
        """Shorten the kernel entries' timeouts (conntrackd -t)."""
        return [ShortenTimeouts(self.params.shorten_timeout)]

    def set_filter(self, flt: Filter) -> None:
        """A new filter (SIGHUP) for the events and dumps sent from now on."""
        self.sender.notifier.filter = flt
        self.sender.records.clear()  # (records are of what the old filter accepted)

    def set_keyring(self, keyring: Keyring | None) -> None:
        """Key rotation (SIGHUP): new frames are sealed with the new send key."""
        self.keyring = keyring
        self.framer.key = keyring.send_key if keyring else None
