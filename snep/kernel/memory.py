"""An in-memory conntrack table with the kernel interface, for simulation and model tests.

It behaves like the real table as far as snep can observe (the contract suite runs the
same tests against both):

- one :class:`MemoryTable` per simulated namespace, any number of
  :class:`MemoryKernel` handles on it (each with its own port id: events caused by a
  handle's own requests are not delivered back to it, as on the kernel);
- traffic methods (:meth:`MemoryKernel.conn_new`, ``conn_update``, ``conn_destroy``)
  stand for packets: they change the table and emit events the way the kernel does
  (an UPDATE carries protoinfo, sequence adjustment and labels only when they
  changed);
- timeouts expire only when :meth:`MemoryKernel.expire` is called with a later
  ``now``: nothing here reads a clock;
- a bounded event queue per handle (``event_capacity``, in events) overruns like a
  netlink socket buffer: the loss is counted, the capacity grows, and
  ``read_events`` raises EventOverrun.
"""

from __future__ import annotations

import itertools
import math
import socket
from collections import deque
from collections.abc import Collection, Iterable

from snep.entry import Entry, Event, EventKind, Key, SctpInfo, Status, TcpInfo
from snep.errors import EventOverrun, KernelError
from snep.kernel.base import ApplyResult, Counters, Kernel, KernelStats, check_entry
from snep.level import Level

_ORIGIN_TRAFFIC = 0
# status bits the kernel keeps for itself on an update (it refuses or ignores them)
_KERNEL_BITS = int(
    Status.CONFIRMED | Status.SRC_NAT | Status.DST_NAT | Status.SRC_NAT_DONE | Status.DST_NAT_DONE
    | Status.SEQ_ADJUST | Status.DYING | Status.EXPECTED | Status.TEMPLATE | Status.UNTRACKED
    | Status.HELPER | Status.OFFLOAD | Status.HW_OFFLOAD
)


class MemoryTable:
    """The table of one simulated namespace: entries with deadlines, and listeners."""

    def __init__(self, *, now: float = 0.0, max_entries: int = 262144) -> None:
        self.now = now
        self.max_entries = max_entries
        self.entries: dict[Key, tuple[Entry, float]] = {}  # key -> (entry, deadline)
        self.listeners: list[MemoryKernel] = []
        self.inserted = 0
        self.insert_failed = 0
        self._portids = itertools.count(1)

    def new_portid(self) -> int:
        return next(self._portids)

    def emit(self, kind: EventKind, entry: Entry, origin: int) -> None:
        for handle in self.listeners:
            handle._deliver(Event(kind, entry), origin)

    def view(self, entry: Entry, deadline: float) -> Entry:
        """The entry as a dump shows it: the timeout is what is left."""
        return entry._replace(timeout=max(0, int(deadline - self.now)))


_WINDOW_SCALE = 0x01  # IP_CT_TCP_FLAG_WINDOW_SCALE


def _tcp_info(new: TcpInfo, old: TcpInfo | None) -> TcpInfo:
    """The kernel takes window scales only when both directions' flags say WINDOW_SCALE."""
    if new.flags_orig & _WINDOW_SCALE and new.flags_reply & _WINDOW_SCALE:
        return new
    keep = old if old is not None else TcpInfo()
    return new._replace(wscale_orig=keep.wscale_orig, wscale_reply=keep.wscale_reply)


def as_created(entry: Entry) -> Entry:
    """An entry as the kernel stores it after a create: its own status bits added."""
    if isinstance(entry.protoinfo, TcpInfo):
        entry = entry._replace(protoinfo=_tcp_info(entry.protoinfo, None))
    status = entry.status | Status.CONFIRMED
    status &= ~int(Status.DYING | Status.EXPECTED | Status.TEMPLATE | Status.UNTRACKED | Status.NAT_MASK)
    if entry.is_natted:
        snat, dnat = entry.nat()
        status |= Status.SRC_NAT_DONE | Status.DST_NAT_DONE
        if snat is not None:
            status |= Status.SRC_NAT
        if dnat is not None:
            status |= Status.DST_NAT
    if entry.seqadj_orig is not None or entry.seqadj_reply is not None:
        status |= Status.SEQ_ADJUST
    if entry.helper:
        status |= Status.HELPER
    return entry._replace(status=int(status))


def _updated(old: Entry, new: Entry) -> Entry:
    """An existing entry changed as ctnetlink changes it: NAT, tuples and kernel bits stay."""
    status = (old.status & _KERNEL_BITS) | (new.status & ~_KERNEL_BITS)
    # SEEN_REPLY and ASSURED can only be set
    status |= old.status & int(Status.SEEN_REPLY | Status.ASSURED)
    protoinfo = new.protoinfo if new.protoinfo is not None else old.protoinfo
    if isinstance(new.protoinfo, TcpInfo):
        protoinfo = _tcp_info(new.protoinfo, old.protoinfo if isinstance(old.protoinfo, TcpInfo) else None)
    fields = {
        "status": int(status),
        "timeout": new.timeout,
        "mark": new.mark,
        "protoinfo": protoinfo,
        "seqadj_orig": new.seqadj_orig if new.seqadj_orig is not None else old.seqadj_orig,
        "seqadj_reply": new.seqadj_reply if new.seqadj_reply is not None else old.seqadj_reply,
        "labels": new.labels or old.labels,
        "helper": old.helper or new.helper,
    }
    if fields["seqadj_orig"] is not None or fields["seqadj_reply"] is not None:
        fields["status"] |= int(Status.SEQ_ADJUST)
    return old._replace(**fields)


def _destroyed(entry: Entry) -> Entry:
    """What a DESTROY event reports: identity, status (now DYING), TCP/SCTP state only."""
    info = entry.protoinfo
    if isinstance(info, TcpInfo):
        info = TcpInfo(info.state)
    elif isinstance(info, SctpInfo):
        info = SctpInfo(info.state)
    return entry._replace(
        status=entry.status | int(Status.DYING), protoinfo=info, seqadj_orig=None, seqadj_reply=None, labels=0,
        helper="",
    )


class MemoryKernel(Kernel):
    """A handle on a :class:`MemoryTable` (a fresh table of its own by default)."""

    def __init__(
        self,
        table: MemoryTable | None = None,
        *,
        event_capacity: int = 1 << 20,
        event_capacity_max: int | None = None,
    ) -> None:
        self.table = table if table is not None else MemoryTable()
        self.counters = Counters(buffer_size=event_capacity)
        self.portid = self.table.new_portid()
        self._capacity = event_capacity
        self._capacity_max = max(event_capacity_max or event_capacity * 4, event_capacity)
        self._queue: deque[Event] = deque()
        self._kinds: frozenset[EventKind] = frozenset()
        self._subscribed = False
        self._overrun = False  # events were dropped after the queued ones
        self._notify: tuple[socket.socket, socket.socket] | None = None
        self._closed = False

    # --- traffic: what packets do to the table ---------------------------------

    def conn_new(self, entry: Entry) -> Entry:
        """A new connection confirmed by traffic: the table stores it, NEW is emitted."""
        t = self.table
        if entry.key in t.entries:
            raise KernelError(f"conn_new: {entry.orig} exists", 17)
        stored = as_created(entry)
        t.entries[entry.key] = (stored, t.now + entry.timeout)
        t.inserted += 1
        t.emit(EventKind.NEW, stored, _ORIGIN_TRAFFIC)
        return stored

    def conn_update(self, entry: Entry) -> Entry:
        """Traffic changed a connection (state, status, mark, timeout): UPDATE, partial."""
        t = self.table
        current = t.entries.get(entry.key)
        if current is None:
            raise KernelError(f"conn_update: no entry {entry.orig}", 2)
        old = current[0]
        stored = _updated(old, entry)
        t.entries[entry.key] = (stored, t.now + entry.timeout)
        event = stored._replace(
            protoinfo=stored.protoinfo if stored.protoinfo != old.protoinfo else None,
            seqadj_orig=stored.seqadj_orig if stored.seqadj_orig != old.seqadj_orig else None,
            seqadj_reply=stored.seqadj_reply if stored.seqadj_reply != old.seqadj_reply else None,
            labels=stored.labels if stored.labels != old.labels else 0,
        )
        t.emit(EventKind.UPDATE, event, _ORIGIN_TRAFFIC)
        return stored

    def conn_destroy(self, entry: Entry) -> bool:
        """The connection ended (or was evicted): DESTROY; False if it was not there."""
        return self._remove(entry.key, _ORIGIN_TRAFFIC)

    def expire(self, now: float) -> int:
        """Advance the table's time to ``now``; entries past their deadline are destroyed."""
        t = self.table
        if now < t.now:
            raise ValueError(f"time goes backwards: {now} < {t.now}")
        t.now = now
        dead = [key for key, (_, deadline) in t.entries.items() if deadline <= now]
        for key in dead:
            self._remove(key, _ORIGIN_TRAFFIC)
        return len(dead)

    def _remove(self, key: Key, origin: int) -> bool:
        t = self.table
        current = t.entries.pop(key, None)
        if current is None:
            return False
        t.emit(EventKind.DESTROY, _destroyed(t.view(*current)), origin)
        return True

    # --- the Kernel interface ----------------------------------------------------

    def dump(self) -> list[Entry]:
        t = self.table
        return [t.view(entry, deadline) for entry, deadline in t.entries.values()]

    def subscribe(self, level: Level) -> None:
        self._kinds = level.event_kinds
        if not self._subscribed:
            self.table.listeners.append(self)
            self._subscribed = True
        self._queue.clear()
        self._overrun = False

    def _deliver(self, event: Event, origin: int) -> None:
        if event.kind not in self._kinds:
            return
        if origin == self.portid:
            self.counters.own_filtered += 1
            return
        if self._overrun:
            return  # already lost: the resync will cover it
        if len(self._queue) >= self._capacity:
            self._overrun = True
            self.counters.overruns += 1
            if self._notify is not None and not self._queue:
                self._notify[1].send(b"\0")  # (a pending overrun makes the socket readable)
            if self._capacity * 2 <= self._capacity_max:
                self._capacity *= 2
                self.counters.buffer_size = self._capacity
            return
        self._queue.append(event)
        if self._notify is not None and len(self._queue) == 1:
            self._notify[1].send(b"\0")

    def read_events(self, max_events: int = 65536) -> list[Event]:
        if not self._subscribed:
            raise KernelError("read_events() before subscribe()")
        queue = self._queue
        n = min(max_events, len(queue))
        out = [queue.popleft() for _ in range(n)]
        if not out and self._overrun:
            self._overrun = False
            if self._notify is not None:
                self._drain_notify()
            raise EventOverrun()
        if self._notify is not None and not queue and not self._overrun:
            self._drain_notify()  # (as a netlink socket: readable while an overrun is pending)
        return out

    def fileno(self) -> int:
        if not self._subscribed:
            raise KernelError("fileno() before subscribe()")
        if self._notify is None:
            self._notify = socket.socketpair()
            self._notify[0].setblocking(False)
            if self._queue:
                self._notify[1].send(b"\0")
        return self._notify[0].fileno()

    def _drain_notify(self) -> None:
        assert self._notify is not None
        try:
            while self._notify[0].recv(4096):
                pass
        except BlockingIOError:
            pass

    def _drain_events(self) -> None:
        self._queue.clear()
        self._overrun = False
        if self._notify is not None:
            self._drain_notify()

    def apply(self, events: Iterable[Event], *, replace: bool = False) -> ApplyResult:
        t = self.table
        result = ApplyResult()
        me = self.portid
        for event in events:
            kind, entry = event
            try:
                check_entry(entry)
            except ValueError:
                result.fail(event, 22)  # EINVAL, as the netlink encoder refuses it
                continue
            key = entry.key
            current = t.entries.get(key)
            if kind is EventKind.DESTROY:
                if current is None:
                    result.enoent += 1
                else:
                    self._remove(key, me)
                    result.deleted += 1
                continue
            if current is not None and replace and kind is EventKind.NEW:
                result.eexist += 1
                result.replaced += 1
                self._remove(key, me)
                current = None
            if current is None:
                if kind is EventKind.UPDATE:
                    result.enoent += 1
                if len(t.entries) >= t.max_entries:
                    t.insert_failed += 1
                    result.fail(event, 28)  # ENOSPC
                    continue
                stored = as_created(entry)
                t.entries[key] = (stored, t.now + max(entry.timeout, 1))
                t.inserted += 1
                t.emit(EventKind.NEW, stored, me)
                result.created += 1
            else:
                if kind is EventKind.NEW:
                    result.eexist += 1
                stored = _updated(current[0], entry)
                t.entries[key] = (stored, t.now + max(entry.timeout, 1))
                t.emit(EventKind.UPDATE, stored, me)
                result.updated += 1
        self.counters.eexist += result.eexist
        self.counters.enoent += result.enoent
        self.counters.errors += result.errors
        return result

    def flush(self, *, mark: int | None = None, mark_mask: int = 0xFFFFFFFF, zone: int | None = None) -> None:
        t = self.table
        doomed = [
            key
            for key, (entry, _) in t.entries.items()
            if (mark is None or entry.mark & mark_mask == mark & mark_mask) and (zone is None or entry.zone == zone)
        ]
        for key in doomed:
            self._remove(key, self.portid)

    def shorten_timeouts(self, seconds: int, keys: Collection[Key] | None = None) -> int:
        t = self.table
        changed = 0
        for key, (entry, deadline) in list(t.entries.items()):
            if t.view(entry, deadline).timeout > seconds and (keys is None or key in keys):
                t.entries[key] = (entry, t.now + seconds)
                t.emit(EventKind.UPDATE, t.view(entry, t.now + seconds), self.portid)
                changed += 1
        return changed

    def count(self) -> int:
        return len(self.table.entries)

    def stats(self) -> KernelStats:
        t = self.table
        return KernelStats(
            entries=len(t.entries), max_entries=t.max_entries, insert=t.inserted, insert_failed=t.insert_failed
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._subscribed:
            self.table.listeners.remove(self)
            self._subscribed = False
        if self._notify is not None:
            for s in self._notify:
                s.close()
            self._notify = None

    def next_deadline(self) -> float:
        """When the next entry expires (math.inf for an empty table): the simulation's timer."""
        return min((deadline for _, deadline in self.table.entries.values()), default=math.inf)
