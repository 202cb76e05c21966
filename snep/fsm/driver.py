"""The one driver of a SyncNode: inputs in, outputs carried out, by one set of rules.

The daemon (real sockets and netlink) and the simulation (an in-memory network and
kernel, a virtual clock) both run their nodes through a :class:`Driver`, so that the
order the model tests check is the order production runs (etcd raft's Ready/Advance
contract, for a sans-I/O node). The driver itself does no I/O: it calls its
:class:`Host` (sockets, state file, logs, a timer) and its :class:`KernelTable`.

The rules, for each batch of outputs one input returned:

1. **Persist before anything else.** The newest :class:`~snep.fsm.effects.PersistEpoch`
   of the batch is written first (``Host.persist`` returns once it is durable), before
   any frame, kernel operation or log of the batch: a frame may carry the epoch, and a
   node that sent it and then forgot it could reuse it after a crash.
2. **In order.** The other outputs are carried out in the order the node returned them.
3. **A dump's answer comes after the batch.** A :class:`~snep.fsm.effects.DumpKernel` is
   read from the kernel where it stands in the batch (after the kernel operations before
   it, such as a promotion's commit), and handed to ``SyncNode.on_kernel_dump`` at
   once; the outputs that returns form the next batch, carried out after the rest of the
   current one. (On promotion: commit, epoch, HELLO, then the bulk dump's frames, as in
   the spec, where SendBulk follows Promote.)
4. **Bad news is counted, never raised.** A kernel operation the kernel refuses is
   logged and counted; a refused dump is retried after :data:`KERNEL_DUMP_RETRY`
   seconds (the node holds its bulk dumps until its internal cache is loaded, so
   dropping it would hold them forever).

5. **Long kernel work yields.** A kernel dump and a kernel write (a commit of the
   external cache) are carried out :data:`STEP` entries at a time when the host can
   run the rest later (``Host.resume_soon``: the daemon's event loop), so that the
   control socket answers between the steps at any table size. The run is only
   suspended, never reordered: the inputs that arrive meanwhile wait, in order, until
   it is complete (the simulation, which has no ``resume_soon``, runs it at once).

Kernel events are an input like any other: :meth:`Driver.on_kernel_readable` reads
what is queued and, when the kernel lost events (overrun), turns a fresh dump into
the events the internal cache missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from snep.entry import Entry, Event, EventKind, Key
from snep.errors import EventOverrun, InvalidTransition, KernelError, SnepError
from snep.fsm.effects import (
    DumpKernel,
    Epoch,
    KernelOps,
    Log,
    Output,
    PeerId,
    PersistEpoch,
    RoleChanged,
    SendDatagram,
    ShortenTimeouts,
)
from snep.fsm.node import FLUSHABLE, SyncNode
from snep.fsm.role import Role
from snep.wire.codec import decode_records

#: seconds between attempts at a kernel dump the kernel refused
KERNEL_DUMP_RETRY = 1.0

#: event reads per wake-up of the kernel's event socket (each up to READ_MAX events)
READS_PER_WAKEUP = 4

#: events one read may return; a read that returns fewer drained what was queued, so
#: the driver reads again only after a full one (the event loop wakes it for what
#: arrives later: one read per wake-up, not a second one that finds nothing)
READ_MAX = 65536

#: entries a kernel dump reads, or a kernel write writes, between two yields to the host
#: (a few tens of ms of work at most: the control socket's answers wait no longer)
STEP = 512

#: the operator commands (``snep ctl``) that drive the node, and the method each calls
COMMANDS: Mapping[str, str] = {
    "commit": "commit",
    "flush": "flush",
    "resync": "resync_from_kernel",
    "bulk": "bulk_send",
    "request-resync": "request_resync",
    "shorten-timeouts": "shorten_timeouts",
}

#: what the HA manager may say, and the node's input for each
ROLE_CHANGES: Mapping[str, str] = {"primary": "promote", "backup": "demote", "fault": "fault"}


class KernelTable(Protocol):
    """What the driver needs of a conntrack table (snep.kernel.base.Kernel has it)."""

    def apply(self, events: Sequence[Event], *, replace: bool = False) -> Any: ...

    def dump(self) -> Iterable[Entry]: ...

    def shorten_timeouts(self, timeout: int, keys: Collection[Key] | None = None) -> int: ...

    def read_events(self, max_events: int = READ_MAX) -> list[Event]: ...

    def dump_parts(self) -> Iterable[list[Entry]]:
        """The dump in parts as they are read (snep.kernel.base.Kernel has it)."""
        ...

    def resync(self, known: Mapping[Key, Entry]) -> list[Event]: ...


class Host(Protocol):
    """The I/O a driver's node needs: the daemon's or the simulation's."""

    def send(self, peers: tuple[PeerId, ...], data: bytes) -> None:
        """Send one frame to these peers (a multicast link: once, to the group)."""

    def persist(self, epoch: Epoch) -> None:
        """Write the newest epoch; return only once it is durable."""

    def report(self, output: RoleChanged | Log) -> None:
        """A role change or a log record, for the operator."""

    def call_later(self, delay: float, callback: Callable[[float], None]) -> None:
        """Run ``callback(now)`` after ``delay`` seconds (the driver's retries)."""


def _dump_parts(kernel: KernelTable) -> Iterator[list[Entry]]:
    parts = getattr(kernel, "dump_parts", None)  # (a table without it: the dump at once)
    return iter(parts()) if parts is not None else iter([list(kernel.dump())])


@dataclass
class _Run:
    """One input's outputs being carried out: the batches to go, and the kernel work
    under way (a dump being read, a write being written) when the run yields."""

    batches: deque[list[Output]]
    batch: list[Output] = field(default_factory=list)
    index: int = 0
    dump: DumpKernel | None = None
    parts: Iterator[list[Entry]] | None = None
    entries: dict[Key, Entry] = field(default_factory=dict)  # (by key: the cache's, built in steps)
    ops: KernelOps | None = None
    written: int = 0
    errors: int = 0
    failures: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Input:
    """A record's marker: the outputs after it, up to the next marker, are this input's."""

    kind: str  # start, stop, role, datagram, timer, kernel, command
    detail: str = ""


@dataclass
class DriverCounters:
    """What the driver met on the way (the node counts the protocol)."""

    kernel_errors: int = 0  # kernel operations or dumps the kernel refused
    kernel_refused_entries: int = 0  # entries of KernelOps the kernel did not take
    kernel_dump_retries: int = 0
    netlink_overruns: int = 0  # kernel events lost (the internal cache resynced from a dump)
    entries_written: int = 0  # entries written to the kernel (commits, inject-on-arrival)


class Driver:
    """Feeds one SyncNode its inputs and carries its outputs out through a Host."""

    def __init__(
        self, node: SyncNode, kernel: KernelTable, host: Host, *, record: list[Input | Output] | None = None
    ) -> None:
        self.node = node
        self.kernel = kernel
        self.host = host
        self.counters = DriverCounters()
        #: every input (an :class:`Input` marker) and every output carried out, in order
        #: (tests compare the daemon's and the simulation's)
        self.record: list[Input | Output] | None = record
        self.persisted: Epoch | None = None
        self._suspended: _Run | None = None  # a run that yielded to the host, to go on
        self._waiting: deque[Callable[[float], None]] = deque()  # inputs that came meanwhile

    @property
    def busy(self) -> bool:
        """A run yielded to the host and is not complete: inputs wait for it."""
        return self._suspended is not None

    def _wait(self, later: Callable[[float], None]) -> bool:
        """While a run is suspended, an input waits for it (True: it was put aside)."""
        if self._suspended is None:
            return False
        self._waiting.append(later)
        return True

    # --- inputs -------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Process start: dump the kernel, HELLO, RESYNC_REQUEST (the spec's Recover)."""
        if self._wait(self.start):
            return
        self._mark("start")
        self.run(now, self.node.start(now))

    def stop(self, now: float) -> None:
        """Clean stop: nothing more is sent (a node never started stops quietly); a
        suspended run and the inputs waiting for it are dropped."""
        self._suspended = None
        self._waiting.clear()
        try:
            outputs = self.node.stop(now)
        except InvalidTransition:
            return
        self._mark("stop")
        self.run(now, outputs)

    def role_change(self, now: float, role: str) -> None:
        """The HA manager says ``primary``, ``backup`` or ``fault``."""
        method = ROLE_CHANGES.get(role)
        if method is None:
            raise SnepError(f"unknown role {role!r} (known: {', '.join(ROLE_CHANGES)})")
        if self._wait(lambda later: self.role_change(later, role)):
            return
        outputs = getattr(self.node, method)(now)
        self._mark("role", role)
        self.run(now, outputs)

    def on_datagram(self, now: float, data: bytes, peer: PeerId, source: str | None = None) -> None:
        """A datagram from ``peer`` (``source``: the address it came from, for logs)."""
        if self._wait(lambda later: self.on_datagram(later, data, peer, source)):
            return
        self._mark("datagram", str(peer))
        self.run(now, self.node.on_datagram(now, data, peer, source))

    def on_timer(self, now: float) -> None:
        if self._suspended is not None:
            return  # (the host asks again: next_timer is due)
        self._mark("timer")
        self.run(now, self.node.on_timer(now))

    def on_kernel_readable(self, now: float) -> int:
        """Read the kernel's queued events into the node until none are left; after an
        overrun (events lost), the internal cache follows a fresh dump instead. Returns
        how many events were read (0 also while a run is suspended: read after it)."""
        if self._suspended is not None:
            if self.on_kernel_readable not in self._waiting:  # (once: it reads them all)
                self._waiting.append(self.on_kernel_readable)
            return 0
        node = self.node
        read = 0
        for _ in range(READS_PER_WAKEUP):
            try:
                events = self.kernel.read_events(READ_MAX)
            except EventOverrun:
                self.counters.netlink_overruns += 1
                self.host.report(Log("warning", "kernel events lost (overrun): resynchronizing the internal cache from a dump"))
                try:
                    events = self.kernel.resync(node.internal.as_dict())
                except KernelError as error:
                    self.counters.kernel_errors += 1
                    self.host.report(Log("error", f"kernel dump after an overrun failed: {error}"))
                    return read
                if events:
                    self._mark("kernel", f"{len(events)} after an overrun")
                    self.run(now, node.on_kernel_events(now, events))
                return read + len(events)
            except KernelError as error:
                self.counters.kernel_errors += 1
                self.host.report(Log("error", f"reading kernel events: {error}"))
                return read
            if not events:
                return read
            read += len(events)
            self._mark("kernel", str(len(events)))
            self.run(now, node.on_kernel_events(now, events))
            if len(events) < READ_MAX:
                return read
        return read

    def command(self, now: float, name: str, argv: Sequence[str] = ()) -> None:
        """An operator command (``snep ctl``); a bad one raises SnepError, changes nothing."""
        method = COMMANDS.get(name)
        if method is None:
            raise SnepError(f"unknown command {name!r} (known: {', '.join(COMMANDS)})")
        if self._wait(lambda later: self.command(later, name, argv)):
            return
        if name == "shorten-timeouts" and argv:
            if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
                raise SnepError("shorten-timeouts takes a number of seconds (at least 1)")
            self._mark("command", name)
            self.run(now, [ShortenTimeouts(int(argv[0]))])
            return
        if name == "flush" and argv:
            if len(argv) != 1 or argv[0] not in FLUSHABLE:
                raise SnepError(f"flush takes one of {', '.join(FLUSHABLE)} (default all)")
            self._mark("command", f"{name} {argv[0]}")
            self.run(now, self.node.flush(now, argv[0]))
            return
        if argv:
            raise SnepError(f"{name} takes no arguments")
        outputs = getattr(self.node, method)(now)
        self._mark("command", name)
        self.run(now, outputs)

    def _mark(self, kind: str, detail: str = "") -> None:
        if self.record is not None:
            self.record.append(Input(kind, detail))

    # --- outputs ------------------------------------------------------------------------
    def run(self, now: float, outputs: Iterable[Output]) -> None:
        """Carry out one input's outputs (and what the dumps among them bring) by the rules."""
        batch = outputs if type(outputs) is list else list(outputs)
        for output in batch:
            if type(output) is not SendDatagram:
                break
        else:  # frames only (most inputs: a kernel event's, an ACK's): out at once, in order
            record, send = self.record, self.host.send
            for output in batch:
                if record is not None:
                    record.append(output)
                send(output.peers, output.data)  # type: ignore[attr-defined]
            return
        for output in batch:
            if type(output) is DumpKernel or type(output) is KernelOps:
                self._proceed(now, _Run(deque([batch])))
                return
        # No kernel work: the batch at once.
        self._persist(batch)
        carry_out = self._carry_out
        for output in batch:
            carry_out(now, output, None)

    def _resume(self, now: float) -> None:
        run = self._suspended
        if run is None:
            return  # (stopped meanwhile)
        self._suspended = None
        self._proceed(now, run)
        while self._suspended is None and self._waiting:
            self._waiting.popleft()(now)

    def _proceed(self, now: float, run: _Run) -> None:
        """Carry ``run`` on; yield to the host after STEP entries of kernel work."""
        resume_soon = getattr(self.host, "resume_soon", None)
        budget = STEP if resume_soon is not None else -1
        while True:
            if run.parts is not None:
                budget = self._read_dump(now, run, budget)
            elif run.ops is not None:
                budget = self._write(run, budget)
            elif run.index < len(run.batch):
                output = run.batch[run.index]
                run.index += 1
                self._carry_out(now, output, run)
            elif run.batches:
                run.batch = run.batches.popleft()
                run.index = 0
                self._persist(run.batch)
            else:
                return
            if budget == 0:
                assert resume_soon is not None
                self._suspended = run
                resume_soon(self._resume)
                return

    def _persist(self, batch: list[Output]) -> None:
        newest = None
        for output in batch:
            if isinstance(output, PersistEpoch) and (newest is None or output.epoch > newest):
                newest = output.epoch
        if newest is not None and (self.persisted is None or newest > self.persisted):
            self.host.persist(newest)
            self.persisted = newest
            if self.record is not None:
                self.record.append(PersistEpoch(newest))

    def _carry_out(self, now: float, output: Output, run: _Run | None) -> None:
        if type(output) is SendDatagram:  # (the commonest, first)
            if self.record is not None:
                self.record.append(output)
            self.host.send(output.peers, output.data)
            return
        if isinstance(output, PersistEpoch):
            return  # (written first: rule 1)
        if self.record is not None:
            self.record.append(output)
        if isinstance(output, SendDatagram):
            self.host.send(output.peers, output.data)
        elif isinstance(output, KernelOps):
            assert run is not None
            run.ops, run.written, run.errors, run.failures = output, 0, 0, []
        elif isinstance(output, DumpKernel):
            assert run is not None
            try:
                run.parts = _dump_parts(self.kernel)
            except KernelError as error:
                self._dump_failed(output, error)
                return
            run.dump, run.entries = output, {}
        elif isinstance(output, ShortenTimeouts):
            try:
                changed = self.kernel.shorten_timeouts(output.timeout, output.keys)
            except KernelError as error:
                self.counters.kernel_errors += 1
                self.host.report(Log("error", f"shortening kernel timeouts failed: {error}"))
                return
            self.host.report(Log("info", f"shortened the timeouts of {changed} kernel entries to {output.timeout} s"))
        elif isinstance(output, (RoleChanged, Log)):
            self.host.report(output)
        else:  # pragma: no cover - effects.Output lists every kind above
            raise AssertionError(f"unknown node output {output!r}")

    def _read_dump(self, now: float, run: _Run, budget: int) -> int:
        """Read the dump's parts (up to ``budget`` entries, -1: all); once it is read
        whole, hand it to the node, whose outputs form the next batch (rule 3)."""
        assert run.parts is not None and run.dump is not None
        try:
            for part in run.parts:
                run.entries.update({(entry[0], entry[2]): entry for entry in part})  # (entry.key)
                if budget > 0:
                    budget = max(budget - len(part), 0)
                    if budget == 0:
                        return 0
        except KernelError as error:
            run.parts = None
            self._dump_failed(run.dump, error)
            return budget
        run.parts = None
        entries, run.entries = run.entries, {}
        more = self.node.on_kernel_dump(now, entries)
        if more:
            run.batches.append(list(more))
        return budget

    def _dump_failed(self, output: DumpKernel, error: KernelError) -> None:
        self.counters.kernel_errors += 1
        self.counters.kernel_dump_retries += 1
        self.host.report(Log("error", f"kernel dump failed: {error}; retrying in {KERNEL_DUMP_RETRY:g} s"))
        self.host.call_later(KERNEL_DUMP_RETRY, lambda later: self._retry_dump(later, output))

    def _write(self, run: _Run, budget: int) -> int:
        """Write the KernelOps' events, then its records, up to ``budget`` of them (-1:
        all); the outcome is counted and reported once it is written whole."""
        ops = run.ops
        assert ops is not None
        events, records = ops.events, ops.records
        total = len(events) + len(records)
        if run.written < len(events):
            items: Sequence[Any] = events
            done = run.written
        else:
            items = records
            done = run.written - len(events)
        stop = len(items) if budget < 0 else min(len(items), done + budget)
        chunk = items if done == 0 and stop == len(items) else items[done:stop]  # (whole: no copy)
        try:
            result = self._apply(chunk, ops.replace, records=items is records)
        except KernelError as error:
            run.ops = None
            self.counters.kernel_errors += 1
            self.host.report(Log("error", f"kernel operation failed: {error}"))
            return budget
        self.counters.entries_written += len(chunk)
        run.errors += getattr(result, "errors", 0)
        if len(run.failures) < 1:
            run.failures.extend(list(getattr(result, "failures", ()))[:1])
        run.written += len(chunk)
        if budget > 0:
            budget = max(budget - len(chunk), 0)
        if run.written >= total:
            run.ops = None
            if run.errors:
                self.counters.kernel_refused_entries += run.errors
                self.host.report(
                    Log("warning", f"kernel refused {run.errors} of {total} operations (first: {run.failures[:1]})")
                )
        return budget

    def _apply(self, chunk: Sequence[Any], replace: bool, *, records: bool) -> Any:
        """Events, or records (NEW events as sync records: the kernel writes them as
        they are when it can, else they are decoded for it)."""
        if not records:
            return self.kernel.apply(chunk, replace=replace)
        write = getattr(self.kernel, "apply_records", None)
        if write is not None:
            return write(chunk, replace=replace)
        new = EventKind.NEW
        return self.kernel.apply([Event(new, event[1]) for event in decode_records(chunk)], replace=replace)

    def _retry_dump(self, now: float, output: DumpKernel) -> None:
        if self.node.state is Role.DOWN:
            return  # (stopped meanwhile)
        if self._wait(lambda later: self._retry_dump(later, output)):
            return
        self._mark("retry", "kernel dump")
        self.run(now, [output])
