"""A deterministic simulation of a snep cluster: the real SyncNodes, in-memory kernels,
an in-memory network and a virtual clock.

Model tests, fsm tests and daemon tests reuse it. Everything is decided by a seeded
random generator and the virtual clock, so a failing run replays exactly (the
session nonce each node process draws at start too).

- :class:`SimNetwork`: datagrams in flight with a delivery time; random loss,
  duplication and reordering (jitter), and explicit faults: links down and up,
  lose or duplicate a datagram in flight; and the adversary on the sync link, who
  holds no key: it captures datagrams in flight and replays them later, to any node,
  claiming any peer's source address.
- :class:`Simulation`: nodes with a kernel table each (MemoryKernel), started,
  crashed (the process dies: caches and queues are gone, the kernel table and the
  persisted epoch stay) and restarted; HA role changes; traffic on a node's kernel;
  :meth:`Simulation.run` moves the clock from event to event.

Each node runs through the same :class:`~snep.fsm.driver.Driver` as the daemon: the
driver carries its outputs out in production's order, and a :class:`SimHost` is its
I/O (datagrams into the network, the epoch into a "state file" kept across crashes,
logs into :attr:`Simulation.log`, retries on the virtual clock).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snep.entry import Entry, Key, Proto, make_entry
from snep.fsm import spec_map
from snep.fsm.driver import Driver
from snep.fsm.effects import Epoch, Log, Output, PeerId, RoleChanged, SendDatagram
from snep.fsm.node import SyncNode
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.fsm.role import Role
from snep.fsm.spec_map import spec_action
from snep.kernel.memory import MemoryKernel, MemoryTable
from snep.wire.auth import Keyring
from snep.wire.codec import build_frame
from snep.wire.messages import Frame, Hello, MessageType

# The traffic and expiry of the in-memory kernel are the spec's kernel actions.
for _action, _method in (
    ("ConnNew", "conn_new"),
    ("ConnUpdate", "conn_update"),
    ("ConnDestroy", "conn_destroy"),
    ("KernelExpire", "expire"),
):
    if not hasattr(MemoryKernel, _method):  # pragma: no cover - guards a rename
        raise ImportError(f"MemoryKernel.{_method} (counterpart of {_action}) is missing")
    spec_map.register(_action, f"MemoryKernel.{_method}")


@dataclass(order=True)
class Datagram:
    deliver_at: float
    order: int
    src: int = field(compare=False)
    dst: int = field(compare=False)
    data: bytes = field(compare=False)


class SimNetwork:
    """Point-to-point datagrams between node ids, with faults."""

    def __init__(
        self,
        rng: random.Random,
        *,
        latency: float = 0.001,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplication: float = 0.0,
        max_datagram: int | None = None,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.rng = rng
        self.clock = clock  # the simulation's virtual time (for replays)
        self.latency = latency
        self.jitter = jitter  # > 0: datagrams overtake each other (reordering)
        self.loss = loss
        self.duplication = duplication
        #: larger datagrams are lost (a path that drops IP fragments: sync.bulk_mtu)
        self.max_datagram = max_datagram
        self.down: set[frozenset[int]] = set()
        self.in_flight: list[Datagram] = []
        self._order = itertools.count()
        self.sent = self.delivered = self.lost = self.duplicated = 0
        self.captured: list[Datagram] = []  # the adversary's copies
        self.replayed = 0

    def is_up(self, a: int, b: int) -> bool:
        return frozenset((a, b)) not in self.down

    def send(self, now: float, src: int, dst: int, data: bytes) -> None:
        self.sent += 1
        if (
            not self.is_up(src, dst)
            or (self.loss and self.rng.random() < self.loss)
            or (self.max_datagram is not None and len(data) > self.max_datagram)
        ):
            self.lost += 1
            return
        copies = 2 if self.duplication and self.rng.random() < self.duplication else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            delay = self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
            heapq.heappush(self.in_flight, Datagram(now + delay, next(self._order), src, dst, data))

    @spec_action("LinkDown")
    def link_down(self, a: int, b: int) -> None:
        """The link between a and b fails: what is in flight on it is lost."""
        pair = frozenset((a, b))
        self.down.add(pair)
        kept = [d for d in self.in_flight if frozenset((d.src, d.dst)) != pair]
        self.lost += len(self.in_flight) - len(kept)
        self.in_flight = kept
        heapq.heapify(self.in_flight)

    @spec_action("LinkUp")
    def link_up(self, a: int, b: int) -> None:
        self.down.discard(frozenset((a, b)))

    def _pick(self, match: Callable[[Datagram], bool] | None) -> Datagram | None:
        for datagram in sorted(self.in_flight):
            if match is None or match(datagram):
                return datagram
        return None

    @spec_action("LoseMsg")
    def lose(self, match: Callable[[Datagram], bool] | None = None) -> bool:
        """Lose the next datagram in flight (that ``match`` accepts)."""
        datagram = self._pick(match)
        if datagram is None:
            return False
        self.in_flight.remove(datagram)
        heapq.heapify(self.in_flight)
        self.lost += 1
        return True

    @spec_action("DuplicateMsg")
    def duplicate(self, match: Callable[[Datagram], bool] | None = None, delay: float = 0.0) -> bool:
        """Deliver the next datagram in flight (that ``match`` accepts) twice."""
        datagram = self._pick(match)
        if datagram is None:
            return False
        copy = Datagram(datagram.deliver_at + delay, next(self._order), datagram.src, datagram.dst, datagram.data)
        heapq.heappush(self.in_flight, copy)
        self.duplicated += 1
        return True

    @spec_action("Capture")
    def capture(self, match: Callable[[Datagram], bool] | None = None) -> Datagram | None:
        """The adversary keeps a copy of the next datagram in flight (that ``match``
        accepts); the datagram goes on. Returns the copy (also in :attr:`captured`)."""
        datagram = self._pick(match)
        if datagram is None:
            return None
        copy = Datagram(datagram.deliver_at, datagram.order, datagram.src, datagram.dst, datagram.data)
        self.captured.append(copy)
        return copy

    @spec_action("Replay")
    def replay(self, datagram: Datagram, to: int, as_from: int, delay: float | None = None) -> None:
        """The adversary sends a captured datagram's bytes to node ``to``, from the
        address of node ``as_from`` (any peer: source addresses are not authenticated),
        at any time, over any link state."""
        at = self.clock() + (self.latency if delay is None else delay)
        heapq.heappush(self.in_flight, Datagram(at, next(self._order), as_from, to, datagram.data))
        self.replayed += 1

    def next_delivery(self) -> float | None:
        return self.in_flight[0].deliver_at if self.in_flight else None

    def pop_due(self, now: float) -> Datagram | None:
        if self.in_flight and self.in_flight[0].deliver_at <= now:
            return heapq.heappop(self.in_flight)
        return None


class SimHost:
    """One machine: its kernel table (survives crashes), its state file, its process.

    It is also the :class:`~snep.fsm.driver.Host` of its node's driver: the I/O the
    daemon does with sockets, a state file, a logger and the event loop's timers.
    """

    def __init__(self, sim: Simulation, node_id: int, table: MemoryTable) -> None:
        self.sim = sim
        self.node_id = node_id
        self.table = table
        self.kernel = sim._handle(table)
        self.persisted = Epoch(0, 0)
        self.driver: Driver | None = None  # None: the process is down

    @property
    def node(self) -> SyncNode | None:
        return self.driver.node if self.driver is not None else None

    @property
    def up(self) -> bool:
        return self.driver is not None

    # --- Host ----------------------------------------------------------------------
    def send(self, peers: tuple[PeerId, ...], data: bytes) -> None:
        for peer in peers:
            self.sim.network.send(self.sim.now, self.node_id, peer, data)  # type: ignore[arg-type]

    def persist(self, epoch: Epoch) -> None:
        self.persisted = epoch

    def report(self, output: RoleChanged | Log) -> None:
        self.sim.log.append((self.sim.now, self.node_id, output))

    def call_later(self, delay: float, callback: Callable[[float], None]) -> None:
        driver = self.driver

        def run(now: float) -> None:
            if self.driver is driver:  # (not for a process that died meanwhile)
                callback(now)
                self.sim._pump(self.node_id)

        self.sim._schedule(self.sim.now + delay, run)


class Simulation:
    """A cluster of ``size`` nodes (ids 1..size), all down until :meth:`start`."""

    def __init__(
        self,
        size: int = 2,
        params: SyncParams | None = None,
        *,
        seed: int = 0,
        keyring: Keyring | None = None,
        filter: Filter | None = None,
        latency: float = 0.001,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplication: float = 0.0,
        expire_interval: float = 1.0,
        drain: bool = False,
    ) -> None:
        """``drain``: the nodes hand a group over as active-active's instances do
        (SyncNode's ``drain``: Resign with the last seq, Drained before a promotion)."""
        self.params = params or SyncParams()
        self.drain = drain
        self.rng = random.Random(seed)
        self._sessions = random.Random(f"sessions {seed}")  # (apart: the traffic's draws stay as they were)
        self.keyring = keyring
        self.filter = filter
        self.now = 0.0
        self.network = SimNetwork(
            self.rng, latency=latency, jitter=jitter, loss=loss, duplication=duplication, clock=lambda: self.now
        )
        self.log: list[tuple[float, int, Output]] = []  # RoleChanged and Log outputs
        self.hosts: dict[int, SimHost] = {}
        for node_id in range(1, size + 1):
            self.hosts[node_id] = SimHost(self, node_id, MemoryTable(now=0.0))
        self.expire_interval = expire_interval
        self._next_expire = expire_interval
        self._later: list[tuple[float, int, Callable[[float], None]]] = []
        self._later_order = itertools.count()
        self.steps = 0
        #: every output carried out, per node, in order (None: not recorded)
        self.records: dict[int, list[Output]] | None = None

    def _handle(self, table: MemoryTable) -> MemoryKernel:
        kernel = MemoryKernel(table)
        kernel.subscribe(self.params.level)
        return kernel

    def _schedule(self, at: float, callback: Callable[[float], None]) -> None:
        heapq.heappush(self._later, (at, next(self._later_order), callback))

    # --- nodes ------------------------------------------------------------------------
    def node(self, node_id: int) -> SyncNode:
        node = self.hosts[node_id].node
        if node is None:
            raise KeyError(f"node {node_id} is down")
        return node

    def driver(self, node_id: int) -> Driver:
        driver = self.hosts[node_id].driver
        if driver is None:
            raise KeyError(f"node {node_id} is down")
        return driver

    def kernel(self, node_id: int) -> MemoryKernel:
        return self.hosts[node_id].kernel

    def role(self, node_id: int) -> Role:
        host = self.hosts[node_id]
        return host.node.state if host.node is not None else Role.DOWN

    def start(self, *node_ids: int) -> None:
        """Start the process on these nodes (all when none given): Recover."""
        for node_id in node_ids or tuple(self.hosts):
            host = self.hosts[node_id]
            if host.up:
                raise RuntimeError(f"node {node_id} is already up")
            peers = [other for other in self.hosts if other != node_id]
            host.kernel.read_events()  # what happened while down is in the dump
            node = SyncNode(
                node_id,
                peers,
                self.params,
                session=self.new_session(),
                keyring=self.keyring,
                newest_epoch=host.persisted,
                filter=self.filter,
                drain=self.drain,
            )
            record = None
            if self.records is not None:
                record = self.records.setdefault(node_id, [])
            host.driver = Driver(node, host.kernel, host, record=record)
            host.driver.persisted = host.persisted  # (it writes only what is newer)
            host.driver.start(self.now)
            self._pump(node_id)

    restart = start

    def new_session(self) -> int:
        """A process's session nonce: random, never 0, the same for the same seed."""
        return self._sessions.getrandbits(64) or 1

    @spec_action("Fail")
    def crash(self, node_id: int) -> None:
        """The process dies: its caches and queues are gone; kernel and state file stay."""
        host = self.hosts[node_id]
        host.driver = None
        host.kernel.close()
        host.kernel = self._handle(host.table)

    def promote(self, node_id: int) -> None:
        self._input(node_id, lambda driver: driver.role_change(self.now, "primary"))

    def demote(self, node_id: int) -> None:
        self._input(node_id, lambda driver: driver.role_change(self.now, "backup"))

    def fault(self, node_id: int) -> None:
        self._input(node_id, lambda driver: driver.role_change(self.now, "fault"))

    def command(self, node_id: int, name: str) -> None:
        """An operator command, as ``snep ctl`` names it: commit, flush, resync, bulk,
        request-resync, shorten-timeouts."""
        self._input(node_id, lambda driver: driver.command(self.now, name))

    def deliver(self, datagram: Datagram) -> None:
        """Hand one datagram to its destination's process (lost when it is down)."""
        self.network.delivered += 1
        if self.hosts[datagram.dst].up:
            self._input(datagram.dst, lambda driver: driver.on_datagram(self.now, datagram.data, datagram.src))

    def fire_timers(self, node_id: int) -> None:
        """Node ``node_id``'s timers that are due run now."""
        self._input(node_id, lambda driver: driver.on_timer(self.now))

    def _input(self, node_id: int, feed: Callable[[Driver], None]) -> None:
        feed(self.driver(node_id))
        self._pump(node_id)

    # --- traffic ----------------------------------------------------------------------
    def conn_new(self, node_id: int, entry: Entry) -> Entry:
        stored = self.hosts[node_id].kernel.conn_new(entry)
        self._pump(node_id)
        return stored

    def conn_update(self, node_id: int, entry: Entry) -> Entry:
        stored = self.hosts[node_id].kernel.conn_update(entry)
        self._pump(node_id)
        return stored

    def conn_destroy(self, node_id: int, entry: Entry) -> bool:
        gone = self.hosts[node_id].kernel.conn_destroy(entry)
        self._pump(node_id)
        return gone

    def _pump(self, node_id: int) -> None:
        """Kernel events to the node, as the daemon reads them when the event socket is
        readable (a process that is down misses them)."""
        host = self.hosts[node_id]
        if host.driver is None:
            host.kernel.read_events()
        else:
            host.driver.on_kernel_readable(self.now)

    # --- the clock --------------------------------------------------------------------
    def next_event(self) -> float | None:
        times = [self._next_expire]
        if self._later:
            times.append(self._later[0][0])
        delivery = self.network.next_delivery()
        if delivery is not None:
            times.append(delivery)
        for host in self.hosts.values():
            if host.node is not None:
                due = host.node.next_timer(self.now)
                if due is not None:
                    times.append(due)
        return min(times)

    def run(self, duration: float) -> None:
        """Move the clock ``duration`` seconds ahead, handling everything due on the way."""
        self.run_until(self.now + duration)

    def run_until(self, end: float) -> None:
        same_time = 0
        while True:
            due = self.next_event()
            if due is None or due > end:
                break
            if due <= self.now:
                same_time += 1
                if same_time > 100_000:
                    raise RuntimeError(f"simulation stuck at t={self.now}")
            else:
                same_time = 0
            self.now = max(self.now, due)
            self.step()
        self.now = max(self.now, end)
        self._expire()

    def step(self) -> None:
        """Handle everything due at ``now``: deliveries, then timers, then expiry."""
        self.steps += 1
        while (datagram := self.network.pop_due(self.now)) is not None:
            self.deliver(datagram)
        while self._later and self._later[0][0] <= self.now:
            _, _, callback = heapq.heappop(self._later)
            callback(self.now)
        for node_id, host in self.hosts.items():
            if host.node is not None:
                due = host.node.next_timer(self.now)
                if due is not None and due <= self.now:
                    self.fire_timers(node_id)
        if self.now >= self._next_expire:
            self._expire()

    def _expire(self) -> None:
        for node_id, host in self.hosts.items():
            if host.kernel.expire(self.now):
                self._pump(node_id)
        self._next_expire = self.now + self.expire_interval

    def settle(self, limit: float = 60.0, quiet: float | None = None) -> None:
        """Run until the cluster has been quiet for ``quiet`` seconds (or ``limit``).

        Quiet: nothing in flight, no node waiting for a dump, no dump running and
        nothing unacknowledged. The window spans a few ALIVE intervals, so a gap that
        only an ALIVE reveals is found and repaired before this returns.
        """
        p = self.params
        if quiet is None:
            quiet = 2 * max(p.alive_interval, p.retransmit_timeout, p.ack_delay) + 0.1
        end = self.now + limit
        calm_since: float | None = None
        while self.now < end:
            self.run(0.05)
            if not self.network.in_flight and all(self._settled(h) for h in self.hosts.values()):
                if calm_since is None:
                    calm_since = self.now
                elif self.now - calm_since >= quiet:
                    return
            else:
                calm_since = None

    @staticmethod
    def _settled(host: SimHost) -> bool:
        node = host.node
        if node is None:
            return True
        sender = node.sender
        return not node.need_sync and not sender.bulk_active and (
            not sender.active or sender.in_flight() == 0
        )

    # --- what tests look at -----------------------------------------------------------
    def kernel_keys(self, node_id: int) -> set[Key]:
        return {entry.key for entry in self.hosts[node_id].kernel.dump()}

    def external_keys(self, node_id: int) -> set[Key]:
        return {entry.key for entry in self.node(node_id).external}

    def primaries(self) -> list[int]:
        return [n for n in self.hosts if self.role(n) is Role.PRIMARY]

    def roles(self) -> dict[int, str]:
        return {n: self.role(n).name for n in self.hosts}

    def events_of(self, node_id: int, kind: type) -> list[Any]:
        return [o for (_, n, o) in self.log if n == node_id and isinstance(o, kind)]


def handshake(a: SyncNode, b: SyncNode, now: float = 0.0, rounds: int = 8) -> list[Output]:
    """Two nodes driven by hand (no network) say HELLO to each other and answer until
    each bound the other's session; returns what else they said (HELLOs between them
    are delivered, nothing else)."""
    queue: list[tuple[SyncNode, SyncNode, bytes]] = []
    for src, dst in ((a, b), (b, a)):
        hello = Frame(MessageType.HELLO, src.node_id, src.sender.term, 0, (Hello(src.newest.term, src.newest.node),), dst=dst.node_id)
        queue.append((src, dst, src.framer.seal(build_frame(hello))))
    other: list[Output] = []
    for _ in range(rounds):
        if not queue:
            break
        src, dst, data = queue.pop(0)
        for output in dst.on_datagram(now, data, src.node_id):
            if isinstance(output, SendDatagram) and src.node_id in output.peers and output.data[3] == MessageType.HELLO:
                queue.append((dst, src, output.data))
            else:
                other.append(output)
    if a.channel.bound(b.node_id) != b.channel.session or b.channel.bound(a.node_id) != a.channel.session:
        raise AssertionError(f"nodes {a.node_id} and {b.node_id} did not bind each other in {rounds} HELLOs")
    return other


def conn(i: int, proto: int = Proto.TCP, **fields: Any) -> Entry:
    """The i-th test connection: distinct addresses and ports for every i."""
    return make_entry(
        f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}",
        "192.0.2.80",
        proto,
        1024 + (i % 60000),
        80,
        **fields,
    )
