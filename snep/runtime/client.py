"""The control socket's client side, for ``snep ctl``, ``snep notify`` and tests.

Kept free of asyncio and of the config parser: keepalived runs ``snep notify`` and
``snep ctl ready`` on every transition and every second, so they must start fast.
"""

from __future__ import annotations

import json
import os
import socket

from snep.errors import SnepError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING: importing typing costs 5 to 8 ms here)
if TYPE_CHECKING:
    from typing import Any


class ControlError(SnepError):
    """A control request that failed: unknown command, bad arguments, node refused."""


def request(path: str | os.PathLike[str], command: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """Blocking client: send one request, return the result or raise ControlError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}: is the node running?") from None
        except OSError as error:
            raise ControlError(f"cannot connect to {path}: {error.strerror}") from None
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                raise ControlError(f"no answer from {path} within {timeout:g} s") from None
            if not chunk:
                raise ControlError(f"{path}: the node closed the connection without answering")
            data += chunk
    finally:
        sock.close()
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "request failed"))
    return answer.get("result")
