"""Active-active's defer in the process: the packets the firewall's rules queue, to
their group's gate, and the gates' verdicts back to the kernel.

The kernel side is one NFQUEUE queue (snep.kernel.nfqueue); the decisions are each
group instance's :class:`~snep.fsm.gate.DeferGate` (sans-I/O, over that instance's
node). A queued packet names its group by its mark: the connection's, when the kernel
attaches the connection (NFQA_CT), else the packet's own, which the rules copy from
the connection (``meta mark set ct mark``, docs/active-active.md). A TCP SYN-ACK is a
connection's first reply (the asymmetric path's rule queues those); anything else is
a new connection's first packet.

A packet of no configured group, or one whose connection cannot be read from it, is
accepted at once and counted: snep holds only what it can account for, and the
firewall's ruleset keeps the last word. The gates' outputs (the held state's frame, a
REPORT) are carried out by the group's driver before the verdicts are given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from snep.config import ClusterConfig
from snep.errors import DecodeError, KernelError, SnepError
from snep.fsm.defer import FailPolicy, Release, Verdict
from snep.fsm.gate import DeferGate
from snep.kernel.nfqueue import NfQueue, Packet, entry_of_packet, is_first_reply
from snep.runtime.instance import Instance
from snep.runtime.log import log

#: packets read from the queue per wake-up at most
READ_MAX = 1024


class Deferral:
    """One NFQUEUE queue and a gate per group instance."""

    def __init__(
        self,
        cluster: ClusterConfig,
        instances: Mapping[int, Instance],
        *,
        open_queue: Callable[..., Any] = NfQueue,
    ) -> None:
        """``open_queue``: what binds the queue (NfQueue; tests give another)."""
        self.cluster = cluster
        self.mark_mask = cluster.mark_mask
        self.instances = instances
        params = cluster.defer.params
        self.gates = {mark: DeferGate(instance.node, params) for mark, instance in instances.items()}
        self._open_queue = open_queue
        self.queue: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.counters = {
            "queued_packets": 0,  # read from the queue
            "ungrouped_packets": 0,  # of no configured group: accepted at once
            "unreadable_packets": 0,  # their connection not readable from them: accepted at once
        }

    # ---------------------------------------------------------------- lifecycle

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the queue (SnepError with the reason when the kernel refuses) and hook
        every instance's inputs: what its node learns may release held packets."""
        self.loop = loop
        defer = self.cluster.defer
        try:
            self.queue = self._open_queue(
                defer.queue,
                max_len=max(1024, defer.params.max_held),
                # a full kernel queue: the packets it cannot hold get the fail policy too
                fail_open=defer.params.fail is FailPolicy.OPEN,
            )
        except KernelError as error:
            raise SnepError(f"cannot bind NFQUEUE {defer.queue} for [cluster.defer]: {error}") from None
        loop.add_reader(self.queue.fileno(), self._readable)
        for mark, instance in self.instances.items():
            instance.after_input = self._after_input_of(mark)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for instance in self.instances.values():
            instance.after_input = None
        if self.queue is None:
            return
        if self.loop is not None:
            try:
                self.loop.remove_reader(self.queue.fileno())
            except (ValueError, RuntimeError, OSError):
                pass
        # what is still held gets the fail policy now (its bound, brought forward)
        self._verdicts([r for gate in self.gates.values() for r in gate.expire(float("inf"))[1]])
        self.queue.close()
        self.queue = None

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    # ---------------------------------------------------------------- packets

    def _readable(self) -> None:
        try:
            packets = self.queue.receive(READ_MAX)
        except KernelError as error:
            log.error("defer: reading NFQUEUE %d: %s", self.cluster.defer.queue, error)
            return
        if not packets:
            return
        now = self._now()
        verdicts: list[tuple[int, Verdict]] = []
        touched: set[int] = set()
        for packet in packets:
            self.counters["queued_packets"] += 1
            verdicts += self._packet(now, packet, touched)
        self._give(verdicts)
        for mark in touched:
            self.instances[mark].tick()
        self._arm()

    def _packet(self, now: float, packet: Packet, touched: set[int]) -> list[tuple[int, Verdict]]:
        """One queued packet to its group's gate; the verdicts due now."""
        mark = (packet.ct.mark if packet.ct is not None else packet.mark) & self.mark_mask
        gate = self.gates.get(mark)
        if gate is None:
            self.counters["ungrouped_packets"] += 1
            return [(packet.packet_id, Verdict.ACCEPT)]
        reply = is_first_reply(packet)
        try:
            entry = entry_of_packet(packet, mark, reply=reply)
        except DecodeError as error:
            self.counters["unreadable_packets"] += 1
            self.instances[mark].warn(now, "defer_unreadable", f"defer: queued packet accepted unheld: {error}")
            return [(packet.packet_id, Verdict.ACCEPT)]
        outputs, releases = (gate.on_reply if reply else gate.on_new)(now, packet.packet_id, entry)
        if outputs:
            self.instances[mark].driver.run(now, outputs)  # (the state on its way before any verdict)
            touched.add(mark)
        return [(r.packet_id, r.verdict) for r in releases]

    def _after_input_of(self, mark: int) -> Callable[[float], None]:
        gate = self.gates[mark]

        def after_input(now: float) -> None:
            releases = gate.after_input(now)
            if releases:
                self._verdicts(releases)
                self._arm()

        return after_input

    def _verdicts(self, releases: list[Release]) -> None:
        self._give([(r.packet_id, r.verdict) for r in releases])

    def _give(self, verdicts: list[tuple[int, Verdict]]) -> None:
        if verdicts and self.queue is not None:
            try:
                self.queue.verdicts(verdicts)
            except KernelError as error:  # (the kernel then drops them: counted by NfQueue)
                log.error("defer: verdicts on NFQUEUE %d: %s", self.cluster.defer.queue, error)

    # ---------------------------------------------------------------- the bound

    def _arm(self) -> None:
        """One timer at the earliest bound of any held packet."""
        loop = self.loop
        if loop is None:
            return
        deadlines = [d for d in (gate.next_deadline() for gate in self.gates.values()) if d is not None]
        at = min(deadlines) if deadlines else None
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        now = self._now()
        releases: list[Release] = []
        for mark, gate in self.gates.items():
            outputs, released = gate.expire(now)
            if outputs:  # (a dropped connection's state withdrawn: its DESTROY)
                self.instances[mark].driver.run(now, outputs)
                self.instances[mark].tick()
            releases += released
        self._verdicts(releases)
        self._arm()

    # ---------------------------------------------------------------- figures

    def status(self) -> dict[str, Any]:
        return {
            "queue": self.cluster.defer.queue,
            "bound": self.cluster.defer.params.bound,
            "fail": self.cluster.defer.params.fail.value,
            **self.counters,
            **({"nfqueue": self.queue.counters.as_dict()} if self.queue is not None else {}),
            "groups": {str(mark): gate.status() for mark, gate in self.gates.items()},
        }
