"""Prometheus text exposition of the node's counters on an optional HTTP listener.

Off by default (a firewall should not open ports nobody asked for). A minimal HTTP/1.0
responder is enough for a scraper: ``GET /metrics`` answers the text format, anything
else 404; every connection is closed after one answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from snep.config import Endpoint
from snep.errors import SnepError

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def render(values: dict[str, Any], prefix: str = "snep") -> str:
    """Flatten nested counters into ``snep_a_b value`` lines (numbers and booleans only)."""
    lines: list[str] = []

    def walk(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}_{key}", item)
        elif isinstance(value, bool):
            lines.append(f"{_NAME.sub('_', name)} {int(value)}")
        elif isinstance(value, (int, float)):
            lines.append(f"{_NAME.sub('_', name)} {value}")

    walk(prefix, values)
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(self, listen: Endpoint, values: Callable[[], dict[str, Any]]) -> None:
        self.listen = listen
        self.values = values
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.listen.host, self.listen.port)
        except OSError as error:
            raise SnepError(f"metrics: cannot listen on {self.listen}: {error.strerror}") from None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                body = render(self.values()).encode()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body = b"not found: try /metrics\n"
                head = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
