"""The control socket: a UNIX stream socket (mode 0600) speaking JSON lines.

Request: one line ``{"command": "status", "args": {...}}``. Answer: one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "reason"}``. A connection
may carry several requests. The server knows nothing of the node: it calls a handler
``(command, args) -> result`` and turns SnepErrors into error answers, so that a bad
request never disturbs the daemon.
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

#: Longest request line accepted (a request is a command name and a few arguments).
MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, path: Path, handler: Handler, on_bad_request: Callable[[], None] = lambda: None) -> None:
        self.path = Path(path)
        self.handler = handler
        self.on_bad_request = on_bad_request
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

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
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self.on_bad_request()
                    await _answer(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                    return
                if not line:
                    return
                await _answer(writer, await self._dispatch(line))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ControlError('a request is {"command": NAME, "args": {...}}')
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError("args must be an object")
            result = await self.handler(request["command"], args)
            return {"ok": True, "result": result}
        except json.JSONDecodeError as error:
            self.on_bad_request()
            return {"ok": False, "error": f"request is not JSON: {error}"}
        except SnepError as error:
            return {"ok": False, "error": str(error)}


async def _answer(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer, default=str).encode() + b"\n")
    await writer.drain()


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
