"""One sync instance in the node's process: a SyncNode, its driver, its sync sockets.

An instance speaks the primary/backup protocol (spec/sync_protocol.tla) with the same
instance on every peer: its own epoch (persisted in its state file), its own sessions,
stream and caches. A primary/backup node runs one; an active-active node runs one per
VRRP group (docs/active-active.md), each on its own ports, each PRIMARY where keepalived
made the node master of its group. The instance is its driver's
:class:`~snep.fsm.driver.Host`: it sends the datagrams, persists the epoch, logs, and
keeps the one timer at the node's next deadline. The process around it
(snep.runtime.daemon) owns what is shared: the kernel, the control socket, keepalived's
FIFO, the metrics, the signals.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from snep.config import Config
from snep.errors import SnepError
from snep.fsm.driver import Driver, KernelTable
from snep.fsm.effects import Epoch, Log, PeerId, RoleChanged
from snep.fsm.node import SyncNode
from snep.fsm.notify import Filter
from snep.fsm.ratelog import RateLog
from snep.runtime.log import LEVELS, log, notice
from snep.runtime.peers import PeerTable
from snep.runtime.statefile import read_epoch, write_epoch
from snep.runtime.transport import Transport
from snep.wire.auth import Keyring

#: longest time the loop sleeps without checking links and timers
MAX_SLEEP = 0.5


class Instance:
    """A SyncNode with its driver, transport, timer and epoch file, in a running loop."""

    def __init__(
        self,
        cfg: Config,
        kernel: KernelTable,
        *,
        session: int,
        keyring: Keyring | None,
        filter: Filter,
        name: str = "",
        record: list[Any] | None = None,
        retire: Callable[[dict[Any, Any]], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
        drain: bool = False,
    ) -> None:
        """``name``: how the logs call it ("" for the only one: "group 1" in active-active);
        ``stopping``: whether the process is shutting down (callbacks then do nothing);
        ``drain``: active-active's hand-over of a group (SyncNode's)."""
        self.cfg = cfg
        self.name = name
        self.kernel = kernel
        self._stopping = stopping
        self.loop: asyncio.AbstractEventLoop | None = None
        self.peers = PeerTable(cfg)
        self._routes: dict[PeerId, tuple[tuple | None, ...]] = {}  # peer -> its address on each link
        self._sources: dict[tuple, str] = {}  # a peer's source address, shown (for the node's logs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._dumps_received = 0  # (node.counters.bulk_completed when last frozen)
        self._logs = RateLog()  # (for what is refused before it reaches the node)
        self.unknown_sources = 0
        self.last_commit: dict[str, Any] = {}
        #: called with the time after each input the node took (active-active's defer:
        #: what the node learned may release held packets; snep.runtime.deferral)
        self.after_input: Callable[[float], None] | None = None
        self.epoch_saved = read_epoch(cfg.state_file)
        try:
            write_epoch(cfg.state_file, self.epoch_saved)  # fail now, not at the first promotion
        except OSError as error:
            raise SnepError(f"cannot write the state file {cfg.state_file}: {error.strerror}") from None
        node = SyncNode(
            cfg.node_id,
            self.peers.ids,
            cfg.sync.params,
            session=session,
            keyring=keyring,
            newest_epoch=Epoch(*self.epoch_saved),
            filter=filter,
            drain=drain,
        )
        if retire is not None:
            for table in (node.internal, node.external, node.sender.records):
                table.retire = retire
        self.driver = Driver(node, kernel, self, record=record)
        self.driver.persisted = Epoch(*self.epoch_saved)
        self.transport = Transport(
            [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else []),
            cfg.sync.socket_buffer,
            self._on_datagram,
            silence=max(2.5 * cfg.sync.params.alive_interval, 0.5),
            after_batch=self.tick,
        )

    @property
    def node(self) -> SyncNode:
        return self.driver.node

    def _prefix(self, message: str) -> str:
        return f"{self.name}: {message}" if self.name else message

    # ---------------------------------------------------------------- lifecycle

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """The sync sockets, bound and read in ``loop``."""
        self.loop = loop
        self.transport.open(loop)

    def start(self) -> None:
        """Internal cache from a kernel dump, HELLO and RESYNC_REQUEST to the peers."""
        self.driver.start(self._now())
        self.tick()

    def stop(self) -> None:
        self.driver.stop(self._now())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.close()

    def links(self) -> str:
        return ", ".join(str(link.config.listen) for link in self.transport.links)

    # ---------------------------------------------------------------- Host (the driver's I/O)

    def send(self, peers: tuple[PeerId, ...], data: bytes) -> None:
        if self.peers.multicast:
            self.transport.send(data)  # once, to the group
            return
        routes = self._routes
        send = self.transport.send
        for peer in peers:
            route = routes.get(peer)
            if route is None:  # (the configured addresses: looked up once per peer)
                address = self.peers.address
                route = routes[peer] = tuple(address(peer, link.index) for link in self.transport.links)
            send(data, route)

    def persist(self, epoch: Epoch) -> None:
        """Write the newest epoch before anything else of its batch happens (atomic replace)."""
        write_epoch(self.cfg.state_file, (epoch.term, epoch.node))
        self.epoch_saved = (epoch.term, epoch.node)

    def report(self, output: RoleChanged | Log) -> None:
        if isinstance(output, RoleChanged):
            notice(self._prefix("role %s -> %s (%s)"), output.old.upper(), output.new.upper(), output.trigger)
        else:
            log.log(LEVELS.get(output.level.lower(), LEVELS["info"]), "%s", self._prefix(output.message))

    def call_later(self, delay: float, callback: Callable[[float], None]) -> None:
        loop = self.loop
        assert loop is not None

        def run() -> None:
            if not self._stopping():
                callback(loop.time())
                self.tick()

        loop.call_later(delay, run)

    def resume_soon(self, callback: Callable[[float], None]) -> None:
        """The driver's long kernel work goes on after the loop's other ready callbacks
        (the control socket's among them): snep.fsm.driver, rule 5."""
        loop = self.loop
        assert loop is not None

        def run() -> None:
            if not self._stopping():
                callback(loop.time())
                # What the step made (a dump's entries: long-lived, no cycles) leaves the
                # collector's sight at once: otherwise the young collections of a dump of
                # 200,000 entries walk them, 10 to 20 ms each, while the control socket waits.
                gc.freeze()
                self.tick()

        loop.call_soon(run)

    async def idle(self) -> None:
        """Until the driver's suspended run (a dump, a commit) is complete."""
        while self.driver.busy:
            await asyncio.sleep(0.002)

    # ---------------------------------------------------------------- inputs

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _on_datagram(self, data: bytes, address: tuple, link: int) -> None:
        peer = self.peers.identify(address, link)
        now = self._now()
        if peer is None:
            self.unknown_sources += 1
            self.warn(now, "unknown_sources", f"datagram from {show(address)} refused: not a configured peer address and port on link {link}")
            return
        self.transport.heard(link, now)
        if not data:
            return  # a link probe (snep.runtime.transport): the link carries, nothing more
        shown = self._sources.get(address)
        if shown is None:  # (a configured peer's address: a few, formatted once each)
            shown = self._sources[address] = show(address)
        self.driver.on_datagram(now, data, peer, shown)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._now()
        self.driver.on_timer(now)
        self.transport.check(now)
        self.tick()

    def warn(self, now: float, reason: str, message: str) -> None:
        """A warning, at most one a second per reason."""
        out: list[Any] = []
        if self._logs(now, out, reason, "warning", message):
            self.report(out[0])

    def tick(self) -> None:
        """(Re)arm the one timer at the node's next deadline (or MAX_SLEEP from now)."""
        loop = self.loop
        assert loop is not None
        now = loop.time()
        if self.after_input is not None:
            self.after_input(now)
        completed = self.node.counters.bulk_completed
        if completed != self._dumps_received:
            self._dumps_received = completed
            gc.freeze()  # (a dump received: its entries are long-lived, no cycles)
        deadline = self.node.next_timer(now)
        at = now + MAX_SLEEP if deadline is None else min(deadline, now + MAX_SLEEP)
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(max(at, now), self._on_timer)

    # ---------------------------------------------------------------- role changes and commands

    def begin_role_change(self, role: str) -> tuple[str, int, float]:
        before = self.node.state.name
        written = self.driver.counters.entries_written
        started = time.monotonic()
        self.driver.role_change(self._now(), role)
        self.tick()
        return before, written, started

    def end_role_change(self, role: str, before: str, written: int, started: float) -> dict[str, Any]:
        seconds = time.monotonic() - started
        after = self.node.state.name
        notice(self._prefix("HA manager says %s: role %s -> %s (%.1f ms)"), role, before, after, seconds * 1000)
        result: dict[str, Any] = {"role": after, "was": before, "seconds": round(seconds, 6)}
        if role == "primary":
            committed = self.driver.counters.entries_written - written
            self.last_commit = {"entries": committed, "seconds": round(seconds, 6), "finished_at": time.time()}
            result["committed"] = committed
        return result

    async def role_change(self, role: str) -> dict[str, Any]:
        """A role change, answered once its work (a promotion's commit and dump, carried
        out in steps) is done."""
        await self.idle()  # (inputs keep their order: this one after the run under way)
        begun = self.begin_role_change(role)
        await self.idle()
        return self.end_role_change(role, *begun)

    async def command(self, command: str, argv: list[str]) -> dict[str, Any]:
        """An operator command of the driver's, answered once its dump or commit is done."""
        await self.idle()
        started = time.monotonic()
        self.driver.command(self._now(), command, argv)
        self.tick()
        await self.idle()
        node = self.node
        return {
            "done": command,
            "seconds": round(time.monotonic() - started, 6),
            "internal": len(node.internal),  # right after the command
            "external": len(node.external),
        }

    # ---------------------------------------------------------------- figures

    def counters(self) -> dict[str, Any]:
        """The node's and the driver's counters in one flat table."""
        return {
            **self.node.counters.as_dict(),
            "resend_queue": len(self.node.sender.queue),
            **vars(self.driver.counters),
            "unknown_sources": self.unknown_sources,
        }

    def status(self) -> dict[str, Any]:
        return {
            **self.node.status(self._now()),
            "active_link": self.transport.links[self.transport.active].name,
            "last_commit": self.last_commit,
        }

    def stats(self) -> dict[str, Any]:
        node = self.node
        out: dict[str, Any] = self.counters()
        out["ready"] = node.ready
        out["epoch_term"] = node.newest.term
        out["internal_entries"] = len(node.internal)
        out["external_entries"] = len(node.external)
        out["transport"] = self.transport.stats()
        return out


def show(address: tuple) -> str:
    """A socket address as ``host:port`` (``[host]:port`` for IPv6)."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
