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

Kernel events are an input like any other: :meth:`Driver.on_kernel_readable` reads
what is queued and, when the kernel lost events (overrun), turns a fresh dump into
the events the internal cache missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from snep.entry import Entry, Event, Key
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
from snep.fsm.node import SyncNode
from snep.fsm.role import Role

#: seconds between attempts at a kernel dump the kernel refused
KERNEL_DUMP_RETRY = 1.0

#: event reads per wake-up of the kernel's event socket (each up to READ_MAX events)
READS_PER_WAKEUP = 4

#: events one read may return; a read that returns fewer drained what was queued, so
#: the driver reads again only after a full one (the event loop wakes it for what
#: arrives later: one read per wake-up, not a second one that finds nothing)
READ_MAX = 65536

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

    def shorten_timeouts(self, timeout: int) -> int: ...

    def read_events(self, max_events: int = READ_MAX) -> list[Event]: ...

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

    # --- inputs -------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Process start: dump the kernel, HELLO, RESYNC_REQUEST (the spec's Recover)."""
        self._mark("start")
        self.run(now, self.node.start(now))

    def stop(self, now: float) -> None:
        """Clean stop: nothing more is sent (a node never started stops quietly)."""
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
        outputs = getattr(self.node, method)(now)
        self._mark("role", role)
        self.run(now, outputs)

    def on_datagram(self, now: float, data: bytes, peer: PeerId, source: str | None = None) -> None:
        """A datagram from ``peer`` (``source``: the address it came from, for logs)."""
        self._mark("datagram", str(peer))
        self.run(now, self.node.on_datagram(now, data, peer, source))

    def on_timer(self, now: float) -> None:
        self._mark("timer")
        self.run(now, self.node.on_timer(now))

    def on_kernel_readable(self, now: float) -> None:
        """Read the kernel's queued events into the node until none are left; after an
        overrun (events lost), the internal cache follows a fresh dump instead."""
        node = self.node
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
                    return
                if events:
                    self._mark("kernel", f"{len(events)} after an overrun")
                    self.run(now, node.on_kernel_events(now, events))
                return
            except KernelError as error:
                self.counters.kernel_errors += 1
                self.host.report(Log("error", f"reading kernel events: {error}"))
                return
            if not events:
                return
            self._mark("kernel", str(len(events)))
            self.run(now, node.on_kernel_events(now, events))
            if len(events) < READ_MAX:
                return

    def command(self, now: float, name: str, argv: Sequence[str] = ()) -> None:
        """An operator command (``snep ctl``); a bad one raises SnepError, changes nothing."""
        method = COMMANDS.get(name)
        if method is None:
            raise SnepError(f"unknown command {name!r} (known: {', '.join(COMMANDS)})")
        if name == "shorten-timeouts" and argv:
            if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
                raise SnepError("shorten-timeouts takes a number of seconds (at least 1)")
            self._mark("command", name)
            self.run(now, [ShortenTimeouts(int(argv[0]))])
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
        batches = [list(outputs)]
        while batches:
            batch = batches.pop(0)
            self._persist(batch)
            index = 0
            while index < len(batch):  # (a bulk step is thousands of outputs: no pop(0))
                output = batch[index]
                index += 1
                more = self._carry_out(now, output)
                if more:
                    batches.append(more)

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

    def _carry_out(self, now: float, output: Output) -> list[Output] | None:
        if isinstance(output, PersistEpoch):
            return None  # (written first: rule 1)
        if self.record is not None:
            self.record.append(output)
        if isinstance(output, SendDatagram):
            self.host.send(output.peers, output.data)
        elif isinstance(output, KernelOps):
            self._apply(output)
        elif isinstance(output, DumpKernel):
            try:
                entries = self.kernel.dump()
            except KernelError as error:
                self.counters.kernel_errors += 1
                self.counters.kernel_dump_retries += 1
                self.host.report(Log("error", f"kernel dump failed: {error}; retrying in {KERNEL_DUMP_RETRY:g} s"))
                self.host.call_later(KERNEL_DUMP_RETRY, lambda later: self._retry_dump(later, output))
                return None
            return self.node.on_kernel_dump(now, entries)
        elif isinstance(output, ShortenTimeouts):
            try:
                changed = self.kernel.shorten_timeouts(output.timeout)
            except KernelError as error:
                self.counters.kernel_errors += 1
                self.host.report(Log("error", f"shortening kernel timeouts failed: {error}"))
                return None
            self.host.report(Log("info", f"shortened the timeouts of {changed} kernel entries to {output.timeout} s"))
        elif isinstance(output, (RoleChanged, Log)):
            self.host.report(output)
        else:  # pragma: no cover - effects.Output lists every kind above
            raise AssertionError(f"unknown node output {output!r}")
        return None

    def _apply(self, ops: KernelOps) -> None:
        try:
            result = self.kernel.apply(ops.events, replace=ops.replace)
        except KernelError as error:
            self.counters.kernel_errors += 1
            self.host.report(Log("error", f"kernel operation failed: {error}"))
            return
        self.counters.entries_written += len(ops.events)
        errors = getattr(result, "errors", 0)
        if errors:
            self.counters.kernel_refused_entries += errors
            failures = getattr(result, "failures", ())
            self.host.report(
                Log("warning", f"kernel refused {errors} of {len(ops.events)} operations (first: {list(failures)[:1]})")
            )

    def _retry_dump(self, now: float, output: DumpKernel) -> None:
        if self.node.state is Role.DOWN:
            return  # (stopped meanwhile)
        self._mark("retry", "kernel dump")
        self.run(now, [output])
