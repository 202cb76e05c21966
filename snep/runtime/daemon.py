"""The sync node's process: the asyncio shell around the sans-I/O SyncNode.

Real inputs reach the node through its :class:`~snep.fsm.driver.Driver` -- kernel
events from the netlink event socket (``add_reader`` on its fd), datagrams from the
sync links, timer expiries (one ``call_at`` for ``next_timer()``), role changes and
operator commands from the control socket -- and the driver carries the node's
outputs out through this daemon, its :class:`~snep.fsm.driver.Host`: datagrams to
the transport, the epoch to the state file, records to the log. The simulation runs
its nodes through the same driver. Nothing here decides protocol behaviour.

Each start draws the process's session nonce from os.urandom (snep.fsm.channel):
peers bind it by the handshake, and no frame of an earlier process counts again.

Signals: SIGTERM/SIGINT stop cleanly (sockets closed, control socket removed, epoch
already persisted on every change); SIGHUP reloads the key file and the filter from
the config file. A node that crashed and restarts recovers its internal cache from
a kernel dump and its external cache from the peer (the node requests a resync at
start).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from snep import config as configuration
from snep.config import Config
from snep.errors import ConfigError, KernelError, SnepError
from snep.fsm.driver import COMMANDS, ROLE_CHANGES, Driver
from snep.fsm.effects import Epoch, Log, PeerId, RoleChanged
from snep.fsm.node import SyncNode
from snep.fsm.ratelog import RateLog
from snep.kernel.base import Kernel
from snep.runtime.control import LATER, ControlError, ControlServer
from snep.runtime.keepalived import Kind, NotifyFifo
from snep.runtime.keys import load_keyring
from snep.runtime.log import LEVELS, log, notice, setup
from snep.runtime.metrics import MetricsServer
from snep.runtime.peers import PeerTable
from snep.runtime.statefile import read_epoch, write_epoch
from snep.runtime.transport import Transport
from snep.wire.auth import Keyring

#: longest time the loop sleeps without checking links and timers
MAX_SLEEP = 0.5

#: seconds between checks that keepalived's FIFO is still the one read
FIFO_CHECK_INTERVAL = 1.0

#: the collector's thresholds: a node keeps hundreds of thousands of entries (tuples)
#: and a dump allocates as many again; with the default (700, 10, 10) a backup spends
#: more time in young-generation passes over them than decoding (bench/bench_wire.py:
#: 140k -> 400k entries/s kept). Reference cycles are rare here (asyncio's), and still
#: collected, only in fewer, larger passes.
GC_THRESHOLDS = (50_000, 20, 100)



def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, what survived it leaves the collector's sight (gc.freeze).

    The caches are hundreds of thousands of tuples that the collector never untracks
    (NamedTuples) and that hold no cycles: every full pass over them (0.17 s at 200,000
    entries) would hold the loop, and the control socket, again. Frozen objects are
    still freed by their reference counts; only a cycle that was alive at a full pass
    and dies later stays (rare here: the caches' values hold no references back).
    """
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()

#: entries freed per loop iteration of what the caches let go (Cache.retire)
RETIRE_STEP = 8192

#: the counters ``status`` shows (``stats`` has them all)
STATUS_COUNTERS = (
    "frames_sent",
    "frames_received",
    "state_messages_sent",
    "state_messages_applied",
    "retransmissions",
    "nacks_sent",
    "nacks_received",
    "resyncs",
    "auth_failures",
    "malformed",
    "replays",
    "stale_session",
    "stale_epoch_drops",
    "netlink_overruns",
)

#: what the control socket answers besides the driver's commands
QUERIES = ("status", "stats", "ready", "internal", "external", "notify", "reload")


class Daemon:
    """One node: config, kernel, SyncNode and its driver, transport, control socket, metrics."""

    def __init__(self, cfg: Config, kernel: Kernel | None = None, *, record: list[Any] | None = None) -> None:
        """``kernel``: a kernel adapter to use instead of the netlink one (tests);
        ``record``: a list the driver appends every output it carries out to (tests)."""
        self.cfg = cfg
        self._record = record
        self.keyring = _keyring(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._given_kernel = kernel
        self.kernel: Kernel | None = None
        self.driver: Driver | None = None
        self.transport: Transport | None = None
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.fifo: NotifyFifo | None = None
        self._fifo_checked_at = float("-inf")
        self.stopping: asyncio.Event | None = None  # created in run()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._kernel_poll: asyncio.TimerHandle | None = None  # (kernel.event_batch: the paced read)
        self._retired: deque[dict[Any, Any]] = deque()  # (Cache.retire: freed in parts)
        self._dumps_received = 0  # (node.counters.bulk_completed when last frozen)
        self._ha_tasks: set[asyncio.Future[None]] = set()  # (keepalived's role changes under way)
        self._epoch_saved = read_epoch(cfg.state_file)
        self.peers = PeerTable(cfg)
        self._routes: dict[PeerId, Callable[[int], tuple | None]] = {}  # peer -> its address on a link
        self._sources: dict[tuple, str] = {}  # a peer's source address, shown (for the node's logs)
        self.counters: dict[str, int] = {
            "control_requests": 0,
            "control_unknown_commands": 0,
            "control_bad_requests": 0,
            "unknown_sources": 0,
            "reloads": 0,
            "internal_errors": 0,
        }
        self.started = time.time()
        self.last_commit: dict[str, Any] = {}
        self._logs = RateLog()  # (for what is refused before it reaches the node)

    @property
    def node(self) -> SyncNode:
        assert self.driver is not None, "the node is not running"
        return self.driver.node

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        self.loop = loop = asyncio.get_running_loop()
        gc.set_threshold(*GC_THRESHOLDS)
        if _freeze_survivors not in gc.callbacks:
            gc.callbacks.append(_freeze_survivors)
        loop.set_exception_handler(self._on_loop_error)
        self.stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):  # from the start: a stop never leaves a socket behind
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        cfg = self.cfg
        if self.keyring is None:
            log.warning(
                "sync.insecure = true: frames are neither encrypted nor authenticated; anyone who can send on the sync "
                "link can put entries into this firewall's kernel (holes in the firewall) and fence its primary with "
                "one frame (docs/security.md)"
            )
        try:
            write_epoch(cfg.state_file, self._epoch_saved)  # fail now, not at the first promotion
        except OSError as error:
            raise SnepError(f"cannot write the state file {cfg.state_file}: {error.strerror}") from None
        try:
            self.kernel = self._open_kernel()
        except (KernelError, OSError) as error:
            raise SnepError(f"cannot open the kernel's conntrack table: {error}") from None
        try:
            node = SyncNode(
                cfg.node_id,
                self.peers.ids,
                cfg.sync.params,
                session=new_session(),
                keyring=self.keyring,
                newest_epoch=Epoch(*self._epoch_saved),
                filter=configuration.sync_filter(cfg),
            )
            for table in (node.internal, node.external, node.sender.records):
                table.retire = self._retire
            self.driver = Driver(node, self.kernel, self, record=self._record)
            self.driver.persisted = Epoch(*self._epoch_saved)
            self.transport = Transport(
                [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else []),
                cfg.sync.socket_buffer,
                self._on_datagram,
                silence=max(2.5 * cfg.sync.params.alive_interval, 0.5),
                after_batch=self._tick,
            )
            self.transport.open(loop)
            self.control = ControlServer(cfg.control.socket, self._on_control, self._bad_request, query=self._on_query)
            await self.control.start()
            if cfg.metrics.listen is not None:
                self.metrics = MetricsServer(cfg.metrics.listen, self.stats)
                await self.metrics.start()
            loop.add_reader(self.kernel.fileno(), self._on_kernel_readable)
            # start: internal cache from a kernel dump, HELLO + RESYNC_REQUEST to peers
            self.driver.start(loop.time())
            if cfg.ha.notify_fifo is not None and cfg.ha.follow is not None:
                kind, name = cfg.ha.follow
                self.fifo = NotifyFifo(cfg.ha.notify_fifo, Kind(kind), name, self._on_ha_role, self._on_ha_bad_line)
                self.fifo.open(loop)  # (what keepalived wrote while we were down is read first)
            notice(
                "snep node %d up: sync on %s (%s), level %s, control %s%s",
                cfg.node_id,
                ", ".join(str(link.config.listen) for link in self.transport.links),
                "sealed" if self.keyring else "INSECURE: not sealed",
                cfg.sync.params.level.value,
                cfg.control.socket,
                f", metrics on {cfg.metrics.listen}" if cfg.metrics.listen else "",
            )
            if self.fifo is not None:
                notice("following keepalived's %s %r on %s", self.fifo.kind.value.lower(), self.fifo.name, self.fifo.path)
            self._tick()
            await self.stopping.wait()
            notice("snep node %d shutting down", cfg.node_id)
            self.driver.stop(loop.time())
            return 0
        finally:
            await self._close()

    def _open_kernel(self) -> Kernel:
        """The netlink adapter of this namespace (or the given one), subscribed to the level's events."""
        kernel = self._given_kernel
        if kernel is None:
            from snep.kernel.netlink import NetlinkKernel

            k = self.cfg.kernel
            kernel = NetlinkKernel(buffer_size=k.netlink_buffer, buffer_max_growth=k.netlink_buffer_max)
        kernel.subscribe(self.cfg.sync.params.level)
        return kernel

    async def _close(self) -> None:
        if _freeze_survivors in gc.callbacks:
            gc.callbacks.remove(_freeze_survivors)
        loop = self.loop
        if self._timer is not None:
            self._timer.cancel()
        if self._kernel_poll is not None:
            self._kernel_poll.cancel()
        if loop is not None:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                try:
                    loop.remove_signal_handler(signum)
                except (ValueError, RuntimeError):
                    pass
        if self.kernel is not None and loop is not None:
            try:
                loop.remove_reader(self.kernel.fileno())
            except (ValueError, RuntimeError, OSError, KernelError):
                pass
        if self.fifo is not None:
            self.fifo.close()
        if self.control is not None:
            await self.control.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.transport is not None:
            self.transport.close()
        if self.kernel is not None:
            try:
                self.kernel.close()
            except Exception:  # closing is best effort: the process ends anyway
                pass

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A bug in a callback: log it with its traceback, count it, keep serving."""
        self.counters["internal_errors"] += 1
        error = context.get("exception")
        log.error("internal error: %s", context.get("message", ""), exc_info=error)

    def _on_stop_signal(self, signum: int) -> None:
        notice("received %s", signal.Signals(signum).name)
        assert self.stopping is not None
        self.stopping.set()

    def _on_reload_signal(self) -> None:
        if self.driver is None:
            log.warning("SIGHUP during start-up ignored")
            return
        try:
            self.reload()
        except SnepError as error:
            log.error("reload failed, keeping the running key and filter: %s", error)

    def reload(self) -> dict[str, Any]:
        """Re-read the config file: the key file and the filter take effect at once; other
        changes are named in the log and the answer, as needing a restart."""
        if self.cfg.source is None:
            raise ConfigError("no config file to reload")
        fresh = configuration.load(self.cfg.source)
        pending = configuration.restart_needed(self.cfg, fresh)
        keyring = _keyring(fresh)
        self.node.set_keyring(keyring)
        self.node.set_filter(configuration.sync_filter(fresh))
        if keyring is None and self.keyring is not None:
            log.warning("reload: key removed (insecure = true): frames are neither sealed nor authenticated")
        self.keyring = keyring
        self.cfg = replace(
            self.cfg,
            filter=fresh.filter,
            sync=replace(self.cfg.sync, key_file=fresh.sync.key_file, insecure=fresh.sync.insecure),
        )
        setup(fresh.log_level)
        self.counters["reloads"] += 1
        notice("reloaded key (%s) and filter from %s", "set" if keyring else "none", fresh.source)
        if pending:
            log.warning("reload: [%s] changed: a reload does not apply it, it takes effect when snep restarts",
                        "], [".join(pending))
        return {"key": keyring is not None, "filter": "reloaded", "restart_needed": pending}

    # ---------------------------------------------------------------- Host (the driver's I/O)

    def send(self, peers: tuple[PeerId, ...], data: bytes) -> None:
        assert self.transport is not None
        if self.peers.multicast:
            self.transport.send(data)  # once, to the group
            return
        routes = self._routes
        for peer in peers:
            route = routes.get(peer)
            if route is None:  # (made once per peer: no closure per frame)
                route = routes[peer] = functools.partial(self.peers.address, peer)
            self.transport.send(data, route)

    def persist(self, epoch: Epoch) -> None:
        """Write the newest epoch before anything else of its batch happens (atomic replace)."""
        write_epoch(self.cfg.state_file, (epoch.term, epoch.node))
        self._epoch_saved = (epoch.term, epoch.node)

    def report(self, output: RoleChanged | Log) -> None:
        if isinstance(output, RoleChanged):
            notice("role %s -> %s (%s)", output.old.upper(), output.new.upper(), output.trigger)
        else:
            log.log(LEVELS.get(output.level.lower(), LEVELS["info"]), "%s", output.message)

    def call_later(self, delay: float, callback: Callable[[float], None]) -> None:
        loop = self.loop
        assert loop is not None

        def run() -> None:
            if self.stopping is None or not self.stopping.is_set():
                callback(loop.time())
                self._tick()

        loop.call_later(delay, run)

    def resume_soon(self, callback: Callable[[float], None]) -> None:
        """The driver's long kernel work goes on after the loop's other ready callbacks
        (the control socket's among them): snep.fsm.driver, rule 5."""
        loop = self.loop
        assert loop is not None

        def run() -> None:
            if self.stopping is None or not self.stopping.is_set():
                callback(loop.time())
                # What the step made (a dump's entries: long-lived, no cycles) leaves the
                # collector's sight at once: otherwise the young collections of a dump of
                # 200,000 entries walk them, 10 to 20 ms each, while the control socket waits.
                gc.freeze()
                self._tick()

        loop.call_soon(run)

    def _retire(self, entries: dict[Any, Any]) -> None:
        """A cache's entries it let go: freed a part at a time (Cache.retire)."""
        if entries:
            self._retired.append(entries)
            if len(self._retired) == 1:
                assert self.loop is not None
                self.loop.call_soon(self._free_retired)

    def _free_retired(self) -> None:
        retired = self._retired
        popitem = retired[0].popitem
        for _ in range(min(RETIRE_STEP, len(retired[0]))):
            popitem()
        if not retired[0]:
            retired.popleft()
        if retired:
            assert self.loop is not None
            self.loop.call_soon(self._free_retired)

    async def _idle(self) -> None:
        """Until the driver's suspended run (a dump, a commit) is complete."""
        while self.driver is not None and self.driver.busy:
            await asyncio.sleep(0.002)

    # ---------------------------------------------------------------- inputs

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _on_kernel_readable(self) -> None:
        assert self.driver is not None and self.kernel is not None and self.loop is not None
        read = self.driver.on_kernel_readable(self._now())
        self._tick()
        if read and self.cfg.kernel.event_batch > 0:
            # Events are coming: read the next ones together, event_batch from now
            # (NAPI's way: polled while busy, woken again once a poll finds nothing).
            self.loop.remove_reader(self.kernel.fileno())
            self._kernel_poll = self.loop.call_later(self.cfg.kernel.event_batch, self._poll_kernel)

    def _poll_kernel(self) -> None:
        """The paced read (``kernel.event_batch``): what came meanwhile, together."""
        self._kernel_poll = None
        assert self.driver is not None and self.kernel is not None and self.loop is not None
        if self.stopping is not None and self.stopping.is_set():
            return
        read = self.driver.on_kernel_readable(self._now())
        self._tick()
        if read:
            self._kernel_poll = self.loop.call_later(self.cfg.kernel.event_batch, self._poll_kernel)
        else:  # quiet: the next event wakes the node at once
            self.loop.add_reader(self.kernel.fileno(), self._on_kernel_readable)

    def _on_datagram(self, data: bytes, address: tuple, link: int) -> None:
        peer = self.peers.identify(address, link)
        now = self._now()
        if peer is None:
            self.counters["unknown_sources"] += 1
            self._warn(now, "unknown_sources", f"datagram from {_show(address)} refused: not a configured peer address and port on link {link}")
            return
        assert self.driver is not None and self.transport is not None
        self.transport.heard(link, now)
        if not data:
            return  # a link probe (snep.runtime.transport): the link carries, nothing more
        shown = self._sources.get(address)
        if shown is None:  # (a configured peer's address: a few, formatted once each)
            shown = self._sources[address] = _show(address)
        self.driver.on_datagram(now, data, peer, shown)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        assert self.driver is not None
        now = self._now()
        self.driver.on_timer(now)
        if self.transport is not None:
            self.transport.check(now)
        if self.fifo is not None and now - self._fifo_checked_at >= FIFO_CHECK_INTERVAL:
            self._fifo_checked_at = now
            try:
                self.fifo.check()
            except SnepError as error:
                self._warn(now, "ha_fifo", f"keepalived's notify FIFO: {error}")
        self._tick()

    def _warn(self, now: float, reason: str, message: str) -> None:
        """A warning, at most one a second per reason."""
        out: list[Any] = []
        if self._logs(now, out, reason, "warning", message):
            self.report(out[0])

    # ---------------------------------------------------------------- keepalived's FIFO

    def _on_ha_role(self, role: str, line: str) -> None:
        """A transition of the followed group or instance: as ``snep notify ROLE``."""
        notice("keepalived: %s", line)
        try:
            begun = self._begin_role_change(role, self._now())
        except SnepError as error:
            log.error("keepalived: %s: %s", line, error)
            return
        if self.driver is not None and self.driver.busy:  # (its commit and dump go on in steps)
            task = asyncio.ensure_future(self._finish_role_change(role, begun))
            self._ha_tasks.add(task)
            task.add_done_callback(self._ha_tasks.discard)
        else:
            self._end_role_change(role, *begun)

    async def _finish_role_change(self, role: str, begun: tuple[str, int, float]) -> None:
        await self._idle()
        self._end_role_change(role, *begun)

    def _on_ha_bad_line(self, line: str, reason: str) -> None:
        self._warn(self._now(), "ha_fifo_bad_lines", f"keepalived's notify FIFO: line {line!r} ignored: {reason}")

    def _tick(self) -> None:
        """(Re)arm the one timer at the node's next deadline (or MAX_SLEEP from now)."""
        loop = self.loop
        assert loop is not None
        now = loop.time()
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

    # ---------------------------------------------------------------- control

    def _bad_request(self) -> None:
        self.counters["control_bad_requests"] += 1

    def _on_query(self, command: str, args: dict[str, Any]) -> Any:
        """The requests answered at once (the queries, and what is unknown); the
        commands, which may wait for a dump or a commit: LATER, for ``_on_control``."""
        if command == "notify" or command in COMMANDS:
            return LATER
        self.counters["control_requests"] += 1
        node = self.node
        try:
            if command == "status":
                return self.status()
            if command == "stats":
                return self.stats()
            if command == "ready":
                return {"ready": node.ready, "role": node.state.name}
            if command in ("internal", "external"):
                entries = (node.internal if command == "internal" else node.external).entries()
                return {"count": len(entries), "entries": sorted(str(e) for e in entries)}
            if command == "reload":
                return self.reload()
        except (SnepError, ValueError) as error:
            raise ControlError(f"{command}: {error}") from None
        self.counters["control_unknown_commands"] += 1
        known = ", ".join(sorted({*QUERIES, *COMMANDS}))
        raise ControlError(f"unknown command {command!r} (known: {known})")

    async def _on_control(self, command: str, args: dict[str, Any]) -> Any:
        """The commands (``notify`` and the driver's), answered once their work is done."""
        self.counters["control_requests"] += 1
        argv = [str(a) for a in args.get("argv", [])]
        node = self.node
        try:
            if command == "notify":
                if len(argv) != 1 or argv[0] not in ROLE_CHANGES:
                    raise ControlError("notify takes one argument: primary, backup or fault")
                await self._idle()  # (inputs keep their order: this one after the run under way)
                return await self._role_change(argv[0], self._now())
            assert command in COMMANDS, command  # (_on_query answers the rest)
            await self._idle()
            started = time.monotonic()
            assert self.driver is not None
            self.driver.command(self._now(), command, argv)
            self._tick()
            await self._idle()  # (answered once its dump or commit is done)
            return {
                "done": command,
                "seconds": round(time.monotonic() - started, 6),
                "internal": len(node.internal),  # right after the command
                "external": len(node.external),
            }
        except (SnepError, ValueError) as error:
            raise ControlError(f"{command}: {error}") from None

    async def _role_change(self, role: str, now: float) -> dict[str, Any]:
        """A role change, answered once its work (a promotion's commit and dump, carried
        out in steps) is done."""
        begun = self._begin_role_change(role, now)
        await self._idle()
        return self._end_role_change(role, *begun)

    def _begin_role_change(self, role: str, now: float) -> tuple[str, int, float]:
        assert self.driver is not None
        before = self.node.state.name
        written = self.driver.counters.entries_written
        started = time.monotonic()
        self.driver.role_change(now, role)
        self._tick()
        return before, written, started

    def _end_role_change(self, role: str, before: str, written: int, started: float) -> dict[str, Any]:
        assert self.driver is not None
        seconds = time.monotonic() - started
        after = self.node.state.name
        notice("HA manager says %s: role %s -> %s (%.1f ms)", role, before, after, seconds * 1000)
        result: dict[str, Any] = {"role": after, "was": before, "seconds": round(seconds, 6)}
        if role == "primary":
            committed = self.driver.counters.entries_written - written
            self.last_commit = {"entries": committed, "seconds": round(seconds, 6), "finished_at": time.time()}
            result["committed"] = committed
        return result

    def _counters(self) -> dict[str, Any]:
        """The node's, the driver's and the daemon's counters in one flat table."""
        assert self.driver is not None
        return {
            **self.node.counters.as_dict(),
            "resend_queue": len(self.node.sender.queue),
            **vars(self.driver.counters),
            **self.counters,
            **(self.fifo.counters if self.fifo is not None else {}),
        }

    def status(self) -> dict[str, Any]:
        counters = self._counters()  # (no kernel round trip)
        return {
            **self.node.status(self._now()),
            "authenticated": self.keyring is not None,
            "sealed": self.keyring is not None,
            "active_link": self.transport.links[self.transport.active].name if self.transport else "",
            "uptime": round(time.time() - self.started, 1),
            "pid": os.getpid(),
            "last_commit": self.last_commit,
            "counters": {key: counters[key] for key in STATUS_COUNTERS if key in counters},
        }

    def stats(self) -> dict[str, Any]:
        node = self.node
        out: dict[str, Any] = self._counters()
        out["ready"] = node.ready
        out["epoch_term"] = node.newest.term
        out["internal_entries"] = len(node.internal)
        out["external_entries"] = len(node.external)
        if self.transport is not None:
            out["transport"] = self.transport.stats()
        if self.kernel is not None:
            kernel: dict[str, Any] = dict(vars(self.kernel.counters))
            try:
                if self.driver is not None and self.driver.busy:
                    raise SnepError("a dump holds the command socket")  # (the table's figures: next time)
                table = self.kernel.stats()
                kernel["entries"] = table.entries
                kernel["max_entries"] = table.max_entries
            except SnepError:
                pass
            out["kernel"] = kernel
        return out


def new_session() -> int:
    """A process's session nonce: 64 random bits from the kernel, never 0."""
    return int.from_bytes(os.urandom(8), "big") or 1


def _show(address: tuple) -> str:
    """A socket address as ``host:port`` (``[host]:port`` for IPv6)."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _keyring(cfg: Config) -> Keyring | None:
    return load_keyring(cfg.sync.key_file) if cfg.sync.key_file is not None else None


def main(cfg: Config) -> int:
    setup(cfg.log_level)
    daemon = Daemon(cfg)
    profile = os.environ.get("SNEP_PROFILE")  # a file: cProfile statistics for benchmarking
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(asyncio.run, daemon.run())
        finally:
            profiler.dump_stats(profile)
    return asyncio.run(daemon.run())
