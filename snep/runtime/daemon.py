"""The sync node's process: the asyncio shell around the sans-I/O SyncNode.

Real inputs reach the node through its :class:`~snep.fsm.driver.Driver` -- kernel
events from the netlink event socket (``add_reader`` on its fd), datagrams from the
sync links, timer expiries (one ``call_at`` for ``next_timer()``), role changes and
operator commands from the control socket -- and the driver carries the node's
outputs out through its :class:`~snep.runtime.instance.Instance` (the driver's Host):
datagrams to the transport, the epoch to the state file, records to the log. The
simulation runs its nodes through the same driver. Nothing here decides protocol
behaviour.

Primary/backup runs one instance. Active-active (``[cluster] mode``,
docs/active-active.md) runs one per VRRP group, over one kernel: the events are read
once and dispatched by the connection's mark (snep.kernel.groups), keepalived's lines
go to the group they name, control commands to every group (``notify`` to the one it
names).

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
from dataclasses import replace
from typing import Any

from snep import config as configuration
from snep.config import Config
from snep.errors import ConfigError, KernelError, SnepError
from snep.fsm.driver import COMMANDS, ROLE_CHANGES, Driver
from snep.fsm.node import SyncNode
from snep.fsm.ratelog import RateLog
from snep.kernel.base import Kernel
from snep.kernel.groups import Groups
from snep.runtime.control import LATER, ControlError, ControlServer
from snep.runtime.deferral import Deferral
from snep.runtime.instance import Instance
from snep.runtime.keepalived import Kind, NotifyFifo
from snep.runtime.keys import load_keyring
from snep.runtime.log import log, notice, setup
from snep.runtime.metrics import MetricsServer
from snep.runtime.transport import Transport
from snep.wire.auth import Keyring

#: seconds between checks that keepalived's FIFO is still the one read
FIFO_CHECK_INTERVAL = 1.0

#: the collector's thresholds: a node keeps hundreds of thousands of entries (tuples)
#: and a dump allocates as many again; with the default (700, 10, 10) a backup spends
#: more time in young-generation passes over them than decoding (bench/bench_wire.py:
#: 140k -> 400k entries/s kept). Reference cycles are rare here (asyncio's), and still
#: collected, only in fewer, larger passes. The middle generation is collected every 2
#: young passes, not every 20: it holds what the young passes let through (the entries
#: that events bring, as they stream), and a pass over 20 passes' worth held the loop
#: for 130 ms at 20,000 new flows/s (the sync and the control socket with it; 2: 6 to
#: 40 ms, the 99th percentile of the sync latency from 120-230 ms to 50-70 ms).
GC_THRESHOLDS = (50_000, 2, 100)



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

#: the only instance's key in primary/backup (active-active keys them by group mark)
ONLY = 0


class Daemon:
    """One node's process: config, kernel, its sync instances, control socket, keepalived's FIFO, metrics."""

    def __init__(
        self,
        cfg: Config,
        kernel: Kernel | None = None,
        *,
        record: list[Any] | None = None,
        deferral_options: dict[str, Any] | None = None,
    ) -> None:
        """``kernel``: a kernel adapter to use instead of the netlink one (tests);
        ``record``: a list the drivers append every output they carry out to (tests);
        ``deferral_options``: for the Deferral (tests: ``open_queue``, a queue of their own)."""
        self._deferral_options = deferral_options or {}
        self.cfg = cfg
        self._record = record
        self.keyring = _keyring(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._given_kernel = kernel
        self.kernel: Kernel | None = None
        self.groups: Groups | None = None  # active-active: the kernel's events, by group
        self.instances: dict[int, Instance] = {}  # by group mark (ONLY in primary/backup)
        self.deferral: Deferral | None = None  # active-active's [cluster.defer]
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.fifo: NotifyFifo | None = None
        self._fifo_check: asyncio.TimerHandle | None = None
        self.stopping: asyncio.Event | None = None  # created in run()
        self._kernel_poll: asyncio.TimerHandle | None = None  # (kernel.event_batch: the paced read)
        self._retired: deque[dict[Any, Any]] = deque()  # (Cache.retire: freed in parts)
        self._ha_tasks: set[asyncio.Future[None]] = set()  # (keepalived's role changes under way)
        self.counters: dict[str, int] = {
            "control_requests": 0,
            "control_unknown_commands": 0,
            "control_bad_requests": 0,
            "reloads": 0,
            "internal_errors": 0,
        }
        self.started = time.time()
        self._logs = RateLog()  # (keepalived's FIFO's warnings)

    @property
    def active_active(self) -> bool:
        return self.cfg.cluster.active_active

    @property
    def instance(self) -> Instance:
        """Primary/backup's one instance."""
        assert ONLY in self.instances, "the node is not running (or runs active-active: one instance per group)"
        return self.instances[ONLY]

    @property
    def node(self) -> SyncNode:
        return self.instance.node

    @property
    def driver(self) -> Driver | None:
        return self.instances[ONLY].driver if ONLY in self.instances else None

    @property
    def transport(self) -> Transport | None:
        return self.instances[ONLY].transport if ONLY in self.instances else None

    def _is_stopping(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()

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
        for warning in configuration.warnings(cfg):
            log.warning("config: %s", warning)
        try:
            try:
                self.kernel = self._open_kernel()
            except (KernelError, OSError) as error:
                raise SnepError(f"cannot open the kernel's conntrack table: {error}") from None
            self._make_instances(self.kernel)
            for instance in self.instances.values():
                instance.open(loop)
            self.control = ControlServer(cfg.control.socket, self._on_control, self._bad_request, query=self._on_query)
            await self.control.start()
            if cfg.metrics.listen is not None:
                self.metrics = MetricsServer(cfg.metrics.listen, self.stats)
                await self.metrics.start()
            loop.add_reader(self.kernel.fileno(), self._on_kernel_readable)
            for instance in self.instances.values():
                instance.start()
            if cfg.cluster.active_active and cfg.cluster.defer.enabled:
                self.deferral = Deferral(cfg.cluster, self.instances, **self._deferral_options)
                self.deferral.open(loop)
                notice("defer: new connections queued to NFQUEUE %d are held until the peers have them (at most %g s, then %s)",
                       cfg.cluster.defer.queue, cfg.cluster.defer.params.bound, cfg.cluster.defer.params.fail.value)
            self._open_fifo(loop)
            for key, instance in self.instances.items():
                notice(
                    "snep node %d%s up: sync on %s (%s), level %s, control %s%s",
                    cfg.node_id,
                    f" {instance.name}" if instance.name else "",
                    instance.links(),
                    "sealed" if self.keyring else "INSECURE: not sealed",
                    instance.cfg.sync.params.level.value,
                    cfg.control.socket,
                    f", metrics on {cfg.metrics.listen}" if cfg.metrics.listen else "",
                )
            await self.stopping.wait()
            notice("snep node %d shutting down", cfg.node_id)
            for instance in self.instances.values():
                instance.stop()
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

    def _make_instances(self, kernel: Kernel) -> None:
        """One instance over the whole kernel, or (active-active) one per group over its view.
        Each draws its own session nonce: peers bind each by its own handshake."""
        cfg = self.cfg
        common: dict[str, Any] = {
            "keyring": self.keyring,
            "filter": configuration.sync_filter(cfg),
            "record": self._record,
            "retire": self._retire,
            "stopping": self._is_stopping,
        }
        if not cfg.cluster.active_active:
            self.instances[ONLY] = Instance(cfg, kernel, session=new_session(), **common)
            return
        groups = cfg.cluster.groups
        self.groups = Groups(kernel, [g.mark for g in groups], cfg.cluster.mark_mask)
        for index, group in enumerate(groups):
            self.instances[group.mark] = Instance(
                configuration.group_config(cfg, index),
                self.groups.views[group.mark],
                session=new_session(),
                name=f"group {group.mark}",
                drain=True,
                **common,
            )

    def _open_fifo(self, loop: asyncio.AbstractEventLoop) -> None:
        """keepalived's FIFO: each instance follows its sync group or VRRP instance."""
        path = self.cfg.ha.notify_fifo
        if path is None:
            return
        follows = {}
        for instance in self.instances.values():
            follow = instance.cfg.ha.follow
            if follow is not None:
                follows[(Kind(follow[0]), follow[1])] = functools.partial(self._on_ha_role, instance)
        if not follows:
            return
        self.fifo = NotifyFifo(path, follows, self._on_ha_bad_line)
        self.fifo.open(loop)  # (what keepalived wrote while we were down is read first)
        self._fifo_check = loop.call_later(FIFO_CHECK_INTERVAL, self._check_fifo)
        for kind, name in follows:
            notice("following keepalived's %s %r on %s", kind.value.lower(), name, path)

    async def _close(self) -> None:
        if _freeze_survivors in gc.callbacks:
            gc.callbacks.remove(_freeze_survivors)
        loop = self.loop
        if self._kernel_poll is not None:
            self._kernel_poll.cancel()
        if self._fifo_check is not None:
            self._fifo_check.cancel()
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
        if self.deferral is not None:
            self.deferral.close()
        if self.control is not None:
            await self.control.close()
        if self.metrics is not None:
            await self.metrics.close()
        for instance in self.instances.values():
            instance.close()
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
        if not self.instances:
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
        flt = configuration.sync_filter(fresh)
        for instance in self.instances.values():
            instance.node.set_keyring(keyring)
            instance.node.set_filter(flt)
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

    # ---------------------------------------------------------------- kernel events

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _read_kernel(self) -> int:
        """The kernel's queued events into the instances' drivers; how many were read."""
        now = self._now()
        if self.groups is None:
            instance = self.instance
            read = instance.driver.on_kernel_readable(now)
            instance.tick()
            return read
        read, touched = self.groups.read()
        for view in touched:
            instance = self.instances[view.mark]
            instance.driver.on_kernel_readable(now)
            instance.tick()
        return read

    def _on_kernel_readable(self) -> None:
        assert self.kernel is not None and self.loop is not None
        read = self._read_kernel()
        if read and self.cfg.kernel.event_batch > 0:
            # Events are coming: read the next ones together, event_batch from now
            # (NAPI's way: polled while busy, woken again once a poll finds nothing).
            self.loop.remove_reader(self.kernel.fileno())
            self._kernel_poll = self.loop.call_later(self.cfg.kernel.event_batch, self._poll_kernel)

    def _poll_kernel(self) -> None:
        """The paced read (``kernel.event_batch``): what came meanwhile, together."""
        self._kernel_poll = None
        assert self.kernel is not None and self.loop is not None
        if self._is_stopping():
            return
        if self._read_kernel():
            self._kernel_poll = self.loop.call_later(self.cfg.kernel.event_batch, self._poll_kernel)
        else:  # quiet: the next event wakes the node at once
            self.loop.add_reader(self.kernel.fileno(), self._on_kernel_readable)

    # ---------------------------------------------------------------- keepalived's FIFO

    def _check_fifo(self) -> None:
        assert self.loop is not None and self.fifo is not None
        try:
            self.fifo.check()
        except SnepError as error:
            self._warn("ha_fifo", f"keepalived's notify FIFO: {error}")
        self._fifo_check = self.loop.call_later(FIFO_CHECK_INTERVAL, self._check_fifo)

    def _warn(self, reason: str, message: str) -> None:
        """A warning, at most one a second per reason."""
        out: list[Any] = []
        if self._logs(self._now(), out, reason, "warning", message):
            log.warning("%s", out[0].message)

    def _on_ha_role(self, instance: Instance, role: str, line: str) -> None:
        """A transition of a followed group or instance: as ``snep notify ROLE``."""
        notice("keepalived: %s", line)
        try:
            begun = instance.begin_role_change(role)
        except SnepError as error:
            log.error("keepalived: %s: %s", line, error)
            return
        if instance.driver.busy:  # (its commit and dump go on in steps)
            task = asyncio.ensure_future(self._finish_role_change(instance, role, begun))
            self._ha_tasks.add(task)
            task.add_done_callback(self._ha_tasks.discard)
        else:
            instance.end_role_change(role, *begun)

    @staticmethod
    async def _finish_role_change(instance: Instance, role: str, begun: tuple[str, int, float]) -> None:
        await instance.idle()
        instance.end_role_change(role, *begun)

    def _on_ha_bad_line(self, line: str, reason: str) -> None:
        self._warn("ha_fifo_bad_lines", f"keepalived's notify FIFO: line {line!r} ignored: {reason}")

    # ---------------------------------------------------------------- control

    def _bad_request(self) -> None:
        self.counters["control_bad_requests"] += 1

    def _on_query(self, command: str, args: dict[str, Any]) -> Any:
        """The requests answered at once (the queries, and what is unknown); the
        commands, which may wait for a dump or a commit: LATER, for ``_on_control``."""
        if command == "notify" or command in COMMANDS:
            return LATER
        self.counters["control_requests"] += 1
        try:
            if command == "status":
                return self.status()
            if command == "stats":
                return self.stats()
            if command == "ready":
                return self.ready()
            if command in ("internal", "external"):
                entries = sorted(
                    str(e)
                    for instance in self.instances.values()
                    for e in (instance.node.internal if command == "internal" else instance.node.external).entries()
                )
                return {"count": len(entries), "entries": entries}
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
        try:
            if command == "notify":
                role, instance = self._notified(argv)
                return await instance.role_change(role)
            assert command in COMMANDS, command  # (_on_query answers the rest)
            if not self.active_active:
                return await self.instance.command(command, argv)
            done = {str(mark): await instance.command(command, argv) for mark, instance in self.instances.items()}
            return {"done": command, "groups": done}
        except (SnepError, ValueError) as error:
            raise ControlError(f"{command}: {error}") from None

    def _notified(self, argv: list[str]) -> tuple[str, Instance]:
        """``notify ROLE`` (primary/backup) or ``notify ROLE MARK`` (active-active: the group)."""
        if not argv or argv[0] not in ROLE_CHANGES:
            raise ControlError("notify takes one argument: primary, backup or fault")
        if not self.active_active:
            if len(argv) != 1:
                raise ControlError("notify takes one argument: primary, backup or fault (--group is for active-active)")
            return argv[0], self.instance
        marks = ", ".join(str(mark) for mark in self.instances)
        if len(argv) != 2:
            raise ControlError(f"notify: active-active: say which group (--group MARK; the groups: {marks})")
        try:
            return argv[0], self.instances[int(argv[1], 0)]
        except (ValueError, KeyError):
            raise ControlError(f"notify: no group {argv[1]!r} (the groups: {marks})") from None

    # ---------------------------------------------------------------- figures

    def _daemon_counters(self) -> dict[str, Any]:
        return {**self.counters, **(self.fifo.counters if self.fifo is not None else {})}

    def ready(self) -> dict[str, Any]:
        """In sync: every instance has the whole table of its group (keepalived's track script)."""
        if not self.active_active:
            node = self.node
            return {"ready": node.ready, "role": node.state.name}
        groups = {str(mark): {"ready": i.node.ready, "role": i.node.state.name} for mark, i in self.instances.items()}
        return {
            "ready": all(g["ready"] for g in groups.values()),
            "role": " ".join(f"{mark}={g['role']}" for mark, g in groups.items()),
            "groups": groups,
        }

    def status(self) -> dict[str, Any]:
        shared = {
            "authenticated": self.keyring is not None,
            "sealed": self.keyring is not None,
            "uptime": round(time.time() - self.started, 1),
            "pid": os.getpid(),
        }

        def counters_of(instance: Instance) -> dict[str, Any]:
            counters = {**instance.counters(), **self._daemon_counters()}  # (no kernel round trip)
            return {key: counters[key] for key in STATUS_COUNTERS if key in counters}

        if not self.active_active:
            instance = self.instance
            return {**instance.status(), **shared, "counters": counters_of(instance)}
        groups = {str(mark): {**i.status(), "counters": counters_of(i)} for mark, i in self.instances.items()}
        owned = [mark for mark, i in self.instances.items() if i.node.state.name == "PRIMARY"]
        assert self.groups is not None
        return {
            "mode": self.cfg.cluster.mode.value,
            "node_id": self.cfg.node_id,
            "ready": all(i.node.ready for i in self.instances.values()),
            "owned_groups": owned,
            # the connections this node owns (its primary groups' tables) and its peers' (the others', warm in its kernel)
            "entries": {
                "owned": sum(len(self.instances[mark].node.internal) for mark in owned),
                "peers": sum(len(i.node.external) for mark, i in self.instances.items() if mark not in owned),
            },
            **shared,
            "ungrouped_events": self.groups.counters.ungrouped,
            "groups": groups,
            **({"defer": self.deferral.status()} if self.deferral is not None else {}),
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.active_active:
            assert self.groups is not None
            out = {
                **self._daemon_counters(),
                "ungrouped_events": self.groups.counters.ungrouped,
                "shared_overruns": self.groups.counters.overruns,
                "groups": {str(mark): i.stats() for mark, i in self.instances.items()},
                **({"defer": self.deferral.status()} if self.deferral is not None else {}),
            }
        else:
            out = {**self.instance.stats(), **self._daemon_counters()}
        if self.kernel is not None:
            kernel: dict[str, Any] = dict(vars(self.kernel.counters))
            try:
                if any(i.driver.busy for i in self.instances.values()):
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
