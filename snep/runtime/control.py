"""The control socket: a UNIX stream socket (mode 0600) speaking JSON lines.

Request: one line ``{"command": "status", "args": {...}}``. Answer: one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "reason"}``. A connection
may carry several requests, answered in order. The server knows nothing of the node:
it calls a handler ``(command, args) -> result`` and turns SnepErrors into error
answers, so that a bad request never disturbs the daemon.

Served by callbacks on the event loop (``add_reader``), not by asyncio streams: a
monitor (keepalived's track script, a benchmark) asks several times a second, and a
stream, a protocol and a task per connection cost the node half a millisecond of CPU
each time, on the cores the sync path needs. A query (``query``: what needs no
waiting) is answered within the wake-up that reads it; the other requests (commands
that wait for a dump or a commit) run as a task, and the connection reads its next
request once that one is answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from snep.errors import SnepError
from snep.runtime.client import ControlError

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
#: answers a request at once, or returns :data:`LATER` for ``Handler`` to answer
Query = Callable[[str, dict[str, Any]], Any]

#: what a ``Query`` returns for a request it leaves to the (asynchronous) handler
LATER: Any = object()

#: Longest request line accepted (a request is a command name and a few arguments).
MAX_REQUEST = 64 * 1024

#: connections accepted per wake-up at most (the rest at the next one)
ACCEPT_BATCH = 64


class _Client:
    """One connection: what it sent that is not answered yet, what is left to write."""

    __slots__ = ("sock", "fd", "received", "unsent", "busy")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.received = b""
        self.unsent = b""
        self.busy = False  # a request is being answered (a task, or its answer being written)


class ControlServer:
    def __init__(
        self,
        path: Path,
        handler: Handler,
        on_bad_request: Callable[[], None] = lambda: None,
        query: Query | None = None,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.query = query
        self.on_bad_request = on_bad_request
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[int, _Client] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        _remove_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: root's tool only
        try:
            sock.bind(str(self.path))
        except OSError as error:
            sock.close()
            raise SnepError(f"cannot bind control socket {self.path}: {error.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._accept)

    async def close(self) -> None:
        loop, sock = self._loop, self._sock
        if sock is not None and loop is not None:
            loop.remove_reader(sock.fileno())
            sock.close()
            self._sock = None
        for client in list(self._clients.values()):
            self._drop(client)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # --- connections --------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._sock is not None and self._loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # (out of descriptors, ...): the client sees its connection fail
                return
            conn.setblocking(False)
            client = _Client(conn)
            self._clients[client.fd] = client
            self._loop.add_reader(client.fd, self._readable, client)
            self._readable(client)  # (a client writes its request at once: often here already)

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.fd, None) is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(client.fd)
        self._loop.remove_writer(client.fd)
        client.sock.close()

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            self._drop(client)  # (what it asked and did not wait for is not answered)
            return
        client.received += data
        self._serve(client)

    def _serve(self, client: _Client) -> None:
        """Answer the complete requests received, in order, until one must wait."""
        while not client.busy and client.fd in self._clients:
            line, newline, rest = client.received.partition(b"\n")
            if not newline:
                if len(client.received) > MAX_REQUEST:
                    self.on_bad_request()
                    self._answer(client, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}, last=True)
                return
            client.received = rest
            self._request(client, line)

    def _request(self, client: _Client, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ControlError('a request is {"command": NAME, "args": {...}}')
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError("args must be an object")
            command = request["command"]
            result = self.query(command, args) if self.query is not None else LATER
        except json.JSONDecodeError as error:
            self.on_bad_request()
            self._answer(client, {"ok": False, "error": f"request is not JSON: {error}"})
            return
        except SnepError as error:
            self._answer(client, {"ok": False, "error": str(error)})
            return
        if result is not LATER:
            self._answer(client, {"ok": True, "result": result})
            return
        client.busy = True  # (its next request waits for this answer)
        assert self._loop is not None
        self._loop.remove_reader(client.fd)
        task = self._loop.create_task(self._later(client, command, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, client: _Client, command: str, args: dict[str, Any]) -> None:
        try:
            answer = {"ok": True, "result": await self.handler(command, args)}
        except SnepError as error:
            answer = {"ok": False, "error": str(error)}
        if client.fd not in self._clients:
            return  # (closed meanwhile)
        client.busy = False
        assert self._loop is not None
        self._loop.add_reader(client.fd, self._readable, client)
        self._answer(client, answer)
        self._serve(client)

    # --- answers --------------------------------------------------------------------------
    def _answer(self, client: _Client, answer: dict[str, Any], last: bool = False) -> None:
        """Write the answer line (what the socket does not take now: when it can)."""
        data = json.dumps(answer, default=str).encode() + b"\n"
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        if last:
            client.received = b""
        if sent == len(data):
            if last:
                self._drop(client)
            return
        client.unsent = data[sent:]
        client.busy = True
        assert self._loop is not None
        self._loop.remove_reader(client.fd)
        self._loop.add_writer(client.fd, self._writable, client, last)

    def _writable(self, client: _Client, last: bool) -> None:
        try:
            sent = client.sock.send(client.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.unsent = client.unsent[sent:]
        if client.unsent:
            return
        assert self._loop is not None
        self._loop.remove_writer(client.fd)
        if last:
            self._drop(client)
            return
        client.busy = False
        self._loop.add_reader(client.fd, self._readable, client)
        self._serve(client)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead daemon; refuse to clobber a live one or a file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SnepError(f"control socket path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: stale
        return
    finally:
        probe.close()
    raise SnepError(f"control socket {path} is in use: is another snep node running?")
