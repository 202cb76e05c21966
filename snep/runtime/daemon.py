"""The sync node's process: the asyncio adapter around the sans-I/O SyncNode.

It feeds real inputs into :class:`snep.fsm.node.SyncNode` -- kernel events from the
netlink event socket (``add_reader`` on its fd), datagrams from the sync links,
timer expiries (one ``call_at`` for ``next_timer()``), role changes and operator
commands from the control socket -- and carries the node's outputs out: datagrams to
send, operations on the kernel table, dumps. Nothing here decides protocol behaviour.

Signals: SIGTERM/SIGINT stop cleanly (sockets closed, control socket removed, epoch
already persisted on every change); SIGHUP reloads the key file and the filter from
the config file. A node that crashed and restarts recovers its internal cache from
a kernel dump and its external cache from the peer (the node requests a resync at
start).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from snep import config as configuration
from snep.config import Config
from snep.errors import ConfigError, KernelError, SnepError
from snep.fsm.effects import DumpKernel
from snep.runtime import adapter
from snep.runtime.control import ControlError, ControlServer
from snep.runtime.log import log, notice, setup
from snep.runtime.metrics import MetricsServer
from snep.runtime.statefile import read_epoch, write_epoch
from snep.runtime.transport import Transport

#: longest time the loop sleeps without checking links and timers
MAX_SLEEP = 0.5

#: seconds between attempts at a kernel dump the node asked for and the kernel refused:
#: the node holds its bulk dumps until its internal cache is loaded, so a failed dump
#: is retried, never dropped
KERNEL_DUMP_RETRY = 1.0

#: the collector's thresholds: a node keeps hundreds of thousands of entries (tuples)
#: and a dump allocates as many again; with the default (700, 10, 10) a backup spends
#: more time in young-generation passes over them than decoding (bench/bench_wire.py:
#: 140k -> 400k entries/s kept). Reference cycles are rare here (asyncio's), and still
#: collected, only in fewer, larger passes.
GC_THRESHOLDS = (50_000, 20, 100)

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
    "stale_epoch_drops",
    "netlink_overruns",
)


class Daemon:
    """One node: config, kernel, SyncNode, transport, control socket, metrics."""

    def __init__(self, cfg: Config, kernel: Any = None) -> None:
        """``kernel``: a kernel adapter to use instead of the netlink one (tests)."""
        self.cfg = cfg
        self.keyring = adapter.load_keyring(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._given_kernel = kernel
        self.kernel: Any = None
        self.node: Any = None
        self.transport: Transport | None = None
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.stopping: asyncio.Event | None = None  # created in run()
        self._last_multicast: bytes | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._epoch_saved = read_epoch(cfg.state_file)
        self.peers = adapter.PeerTable(cfg)
        self.counters: dict[str, int] = {
            "control_requests": 0,
            "control_unknown_commands": 0,
            "control_bad_requests": 0,
            "unknown_sources": 0,
            "netlink_overruns": 0,
            "kernel_errors": 0,
            "kernel_dump_retries": 0,
            "reloads": 0,
            "internal_errors": 0,
        }
        self.started = time.time()
        self.last_commit: dict[str, Any] = {}
        self.applied = 0  # entries written to the kernel (commits, inject-on-arrival)

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        gc.set_threshold(*GC_THRESHOLDS)
        self.loop.set_exception_handler(self._on_loop_error)
        self.stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):  # from the start: a stop never leaves a socket behind
            self.loop.add_signal_handler(signum, self._on_stop_signal, signum)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        cfg = self.cfg
        if self.keyring is None:
            log.warning("no sync.key_file configured: frames are unauthenticated; anyone on the sync link can inject state")
        try:
            write_epoch(cfg.state_file, self._epoch_saved)  # fail now, not at the first promotion
        except OSError as error:
            raise SnepError(f"cannot write the state file {cfg.state_file}: {error.strerror}") from None
        try:
            self.kernel = adapter.open_kernel(cfg, self._given_kernel)
        except (KernelError, OSError) as error:
            raise SnepError(f"cannot open the kernel's conntrack table: {error}") from None
        try:
            now = self.loop.time()
            self.node = adapter.make_node(cfg, self.keyring, self._epoch_saved, now)
            self.transport = Transport(
                [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else []),
                cfg.sync.socket_buffer,
                self._on_datagram,
                silence=max(2.5 * cfg.sync.alive_interval, 0.5),
                after_batch=self._tick,
            )
            self.transport.open(self.loop)
            self.control = ControlServer(cfg.control.socket, self._on_control, self._bad_request)
            await self.control.start()
            if cfg.metrics.listen is not None:
                self.metrics = MetricsServer(cfg.metrics.listen, self.stats)
                await self.metrics.start()
            self.loop.add_reader(self.kernel.fileno(), self._on_kernel_readable)
            # start: internal cache from a kernel dump, HELLO + RESYNC_REQUEST to peers
            self._feed(adapter.start(self.node, self.kernel, self.loop.time()))
            notice(
                "snep node %d up: sync on %s (%s), level %s, control %s%s",
                cfg.node_id,
                ", ".join(str(link.config.listen) for link in self.transport.links),
                "authenticated" if self.keyring else "UNAUTHENTICATED",
                cfg.sync.level.value,
                cfg.control.socket,
                f", metrics on {cfg.metrics.listen}" if cfg.metrics.listen else "",
            )
            self._tick()
            await self.stopping.wait()
            notice("snep node %d shutting down", cfg.node_id)
            self._feed(adapter.stop(self.node, self.loop.time()))
            return 0
        finally:
            await self._close()

    async def _close(self) -> None:
        loop = self.loop
        if self._timer is not None:
            self._timer.cancel()
        if loop is not None:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                try:
                    loop.remove_signal_handler(signum)
                except (ValueError, RuntimeError):
                    pass
        if self.kernel is not None and loop is not None:
            try:
                loop.remove_reader(self.kernel.fileno())
            except (ValueError, RuntimeError, OSError):
                pass
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
        if self.node is None:
            log.warning("SIGHUP during start-up ignored")
            return
        try:
            self.reload()
        except SnepError as error:
            log.error("reload failed, keeping the running key and filter: %s", error)

    def reload(self) -> dict[str, Any]:
        """Re-read the config file: the key file and the filter take effect at once."""
        if self.cfg.source is None:
            raise ConfigError("no config file to reload")
        fresh = configuration.load(self.cfg.source)
        keyring = adapter.load_keyring(fresh)
        adapter.set_keyring(self.node, keyring)
        adapter.set_filter(self.node, adapter.sync_filter(fresh))
        if keyring is None and self.keyring is not None:
            log.warning("reload: key removed: frames are unauthenticated")
        self.keyring = keyring
        self.cfg = replace(self.cfg, filter=fresh.filter, sync=replace(self.cfg.sync, key_file=fresh.sync.key_file))
        setup(fresh.log_level)
        self.counters["reloads"] += 1
        notice("reloaded key (%s) and filter from %s", "set" if keyring else "none", fresh.source)
        return {"key": keyring is not None, "filter": "reloaded"}

    # ---------------------------------------------------------------- inputs

    def _on_kernel_readable(self) -> None:
        now = self.loop.time()  # type: ignore[union-attr]
        try:
            outputs = adapter.kernel_events(self, now)
        except KernelError as error:
            self.counters["kernel_errors"] += 1
            log.error("reading kernel events: %s", error)
            outputs = []
        self._feed(outputs)
        self._tick()

    def _on_datagram(self, data: bytes, address: tuple, link: int) -> None:
        peer = self.peers.identify(address, link)
        if peer is None:
            self.counters["unknown_sources"] += 1
            return
        now = self.loop.time()  # type: ignore[union-attr]
        self.transport.heard(link, now)  # type: ignore[union-attr]
        self._feed(self.node.on_datagram(now, data, peer))

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()  # type: ignore[union-attr]
        self._feed(self.node.on_timer(now))
        if self.transport is not None:
            self.transport.check(now)
        self._tick()

    def _tick(self) -> None:
        """(Re)arm the one timer at the node's next deadline (or MAX_SLEEP from now)."""
        loop = self.loop
        assert loop is not None
        now = loop.time()
        deadline = self.node.next_timer(now)
        at = now + MAX_SLEEP if deadline is None else min(deadline, now + MAX_SLEEP)
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(max(at, now), self._on_timer)
        self._save_epoch()

    def _save_epoch(self) -> None:
        epoch = adapter.newest_epoch(self.node)
        if epoch is not None and epoch > self._epoch_saved:
            self.persist_epoch(epoch)

    def persist_epoch(self, epoch: tuple[int, int]) -> None:
        """Write the newest epoch before anything else happens (atomic file replace)."""
        if epoch != self._epoch_saved:
            write_epoch(self.cfg.state_file, epoch)
            self._epoch_saved = epoch

    # ---------------------------------------------------------------- outputs

    def _feed(self, outputs: Iterable[Any] | None) -> None:
        """Carry the node's outputs out; outputs may produce more inputs (dump results)."""
        pending = list(outputs or ())
        index = 0
        while index < len(pending):  # (a bulk step is thousands of outputs: no pop(0))
            output = pending[index]
            index += 1
            try:
                more = adapter.execute(self, output)
            except KernelError as error:
                self.counters["kernel_errors"] += 1
                if isinstance(output, DumpKernel):
                    self.counters["kernel_dump_retries"] += 1
                    log.error("kernel dump failed: %s; retrying in %.0f s", error, KERNEL_DUMP_RETRY)
                    self.loop.call_later(KERNEL_DUMP_RETRY, self._retry, output)
                else:
                    log.error("kernel operation failed: %s", error)
                continue
            if more:
                pending.extend(more)

    def _retry(self, output: Any) -> None:
        if self.stopping is None or not self.stopping.is_set():
            self._feed([output])

    def send(self, data: bytes, peer: Any) -> None:
        assert self.transport is not None
        if peer is None or self.peers.multicast:
            self.transport.send(data)
        else:
            self.transport.send(data, lambda link: self.peers.address(peer, link))

    # ---------------------------------------------------------------- control

    def _bad_request(self) -> None:
        self.counters["control_bad_requests"] += 1

    async def _on_control(self, command: str, args: dict[str, Any]) -> Any:
        self.counters["control_requests"] += 1
        argv = [str(a) for a in args.get("argv", [])]
        now = self.loop.time()  # type: ignore[union-attr]
        try:
            if command == "status":
                return self.status()
            if command == "stats":
                return self.stats()
            if command == "ready":
                return {"ready": adapter.ready(self.node), "role": adapter.role_name(self.node)}
            if command in ("internal", "external"):
                entries = adapter.cache(self.node, command)
                return {"count": len(entries), "entries": sorted(str(e) for e in entries)}
            if command == "notify":
                if len(argv) != 1 or argv[0] not in ("primary", "backup", "fault"):
                    raise ControlError("notify takes one argument: primary, backup or fault")
                return self._role_change(argv[0], now)
            if command == "reload":
                return self.reload()
            if command in adapter.COMMANDS:
                started = time.monotonic()
                self._feed(adapter.command(self.node, self.kernel, command, now, argv, self.cfg))
                self._tick()
                return {
                    "done": command,
                    "seconds": round(time.monotonic() - started, 6),
                    "internal": adapter.cache_size(self.node, "internal"),  # right after the command
                    "external": adapter.cache_size(self.node, "external"),
                }
        except (SnepError, ValueError) as error:
            raise ControlError(f"{command}: {error}") from None
        self.counters["control_unknown_commands"] += 1
        known = ", ".join(sorted({"status", "stats", "ready", "internal", "external", "notify", "reload", *adapter.COMMANDS}))
        raise ControlError(f"unknown command {command!r} (known: {known})")

    def _role_change(self, role: str, now: float) -> dict[str, Any]:
        before = adapter.role_name(self.node)
        applied = self.applied
        started = time.monotonic()
        self._feed(adapter.role_change(self.node, self.kernel, role, now))
        seconds = time.monotonic() - started
        self._tick()
        after = adapter.role_name(self.node)
        notice("HA manager says %s: role %s -> %s (%.1f ms)", role, before, after, seconds * 1000)
        result: dict[str, Any] = {"role": after, "was": before, "seconds": round(seconds, 6)}
        if role == "primary":
            self.last_commit = {"entries": self.applied - applied, "seconds": round(seconds, 6), "finished_at": time.time()}
            result["committed"] = self.last_commit["entries"]
        return result

    def status(self) -> dict[str, Any]:
        assert self.loop is not None
        counters = {**adapter.node_stats(self.node), **self.counters}  # (no kernel round trip)
        return {
            "node_id": self.cfg.node_id,
            "role": adapter.role_name(self.node),
            "ready": adapter.ready(self.node),
            "epoch": list(adapter.newest_epoch(self.node) or (0, 0)),
            "peers": adapter.peers_status(self.node, self.loop.time()),  # type: ignore[union-attr]
            "internal": adapter.cache_size(self.node, "internal"),
            "external": adapter.cache_size(self.node, "external"),
            "authenticated": self.keyring is not None,
            "active_link": self.transport.links[self.transport.active].name if self.transport else "",
            "uptime": round(time.time() - self.started, 1),
            "pid": os.getpid(),
            "last_commit": self.last_commit,
            "counters": {key: counters[key] for key in STATUS_COUNTERS if key in counters},
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(adapter.node_stats(self.node))
        out.update(self.counters)
        out["ready"] = adapter.ready(self.node)
        out["epoch_term"] = adapter.newest_epoch(self.node)[0]
        out["internal_entries"] = adapter.cache_size(self.node, "internal")
        out["external_entries"] = adapter.cache_size(self.node, "external")
        if self.transport is not None:
            out["transport"] = self.transport.stats()
        kernel_stats = adapter.kernel_stats(self.kernel)
        if kernel_stats:
            out["kernel"] = kernel_stats
        return out


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
