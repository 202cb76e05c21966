"""The control socket and ``snep ctl``: JSON lines, mode 0600, clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
import subprocess
import sys
import threading

import pytest

from snep.errors import SnepError
from snep.runtime.client import ControlError, request
from snep.runtime.control import LATER, MAX_REQUEST, ControlServer


class FakeNode:
    """Answers like a node would; counts bad requests as the daemon does."""

    def __init__(self) -> None:
        self.unknown = 0
        self.bad = 0
        self.ready = False

    async def handle(self, command, args):
        if command == "status":
            return {"role": "BACKUP", "epoch": [3, 1], "peers": {"2": "alive"}}
        if command == "ready":
            return {"ready": self.ready, "role": "SYNCING"}
        if command == "external":
            return {"entries": ["tcp 10.0.0.1:1 -> 10.0.0.2:80 ESTABLISHED"], "count": 1}
        if command == "echo":
            return args
        self.unknown += 1
        raise SnepError(f"unknown command {command!r}")


@contextlib.contextmanager
def serving(srv: ControlServer):
    """``srv`` started and served by an event loop in a thread, closed at the end."""
    loop = asyncio.new_event_loop()
    loop.run_until_complete(srv.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def server(tmp_path):
    node = FakeNode()
    path = tmp_path / "ctl.sock"
    with serving(ControlServer(path, node.handle, on_bad_request=lambda: setattr(node, "bad", node.bad + 1))):
        yield path, node


def ctl(path, *argv):
    return subprocess.run(
        [sys.executable, "-m", "snep.cli", "ctl", "--socket", str(path), *argv], capture_output=True, text=True, timeout=30
    )


def test_socket_mode_is_0600(server):
    path, _ = server
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_request_roundtrip(server):
    path, _ = server
    assert request(path, "status")["role"] == "BACKUP"
    assert request(path, "echo", {"argv": ["x"]}) == {"argv": ["x"]}


def test_unknown_command_is_a_clear_error_and_counted(server):
    path, node = server
    with pytest.raises(ControlError, match="unknown command 'frob'"):
        request(path, "frob")
    assert node.unknown == 1
    result = ctl(path, "frob")
    assert result.returncode == 1 and "unknown command 'frob'" in result.stderr
    assert node.unknown == 2


def test_malformed_request_is_answered_and_counted(server):
    path, node = server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b"{not json\n")
        answer = json.loads(sock.makefile().readline())
        assert answer["ok"] is False and "not JSON" in answer["error"]
        sock.sendall(b'["status"]\n')  # valid JSON, wrong shape; same connection still served
        answer = json.loads(sock.makefile().readline())
        assert answer["ok"] is False and "command" in answer["error"]
    assert node.bad == 1
    assert request(path, "status")["role"] == "BACKUP"


def test_ctl_output_text_and_json(server):
    path, _ = server
    text = ctl(path, "status")
    assert text.returncode == 0 and "role: BACKUP" in text.stdout
    raw = ctl(path, "status", "--json")
    assert json.loads(raw.stdout)["epoch"] == [3, 1]
    listing = ctl(path, "external")
    assert "10.0.0.2:80" in listing.stdout and "1 entries" in listing.stdout


def test_ctl_ready_exit_status(server):
    path, node = server
    assert ctl(path, "ready").returncode == 1
    node.ready = True
    assert ctl(path, "ready").returncode == 0


def test_ctl_without_node(tmp_path):
    result = ctl(tmp_path / "absent.sock", "status")
    assert result.returncode == 2 and "is the node running?" in result.stderr


def test_second_server_on_live_socket_is_refused(server):
    path, _ = server
    other = ControlServer(path, FakeNode().handle)
    with pytest.raises(SnepError, match="in use"):
        asyncio.run(other.start())


def test_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # a dead daemon's leftover

    async def go():
        srv = ControlServer(path, FakeNode().handle)
        await srv.start()
        await srv.close()

    asyncio.run(go())
    assert not path.exists()


class QuickNode(FakeNode):
    """Answers ``status`` and ``big`` at once (a query), ``slow`` later (a command)."""

    def __init__(self) -> None:
        super().__init__()
        self.later: list[str] = []

    def query(self, command, args):
        if command == "big":
            return {"entries": ["x" * 100] * 50_000}  # (megabytes: written in parts)
        if command in ("slow", "echo"):
            return LATER
        if command == "status":
            return {"role": "PRIMARY"}
        raise SnepError(f"unknown command {command!r}")

    async def handle(self, command, args):
        self.later.append(command)
        if command == "slow":
            await asyncio.sleep(0.05)
            return {"done": "slow"}
        return await super().handle(command, args)


@pytest.fixture
def quick_server(tmp_path):
    node = QuickNode()
    path = tmp_path / "quick.sock"
    with serving(ControlServer(path, node.handle, query=node.query)):
        yield path, node


def test_queries_are_answered_at_once_and_commands_by_the_handler(quick_server):
    path, node = quick_server
    assert request(path, "status") == {"role": "PRIMARY"}
    assert request(path, "echo", {"a": 1}) == {"a": 1}
    assert node.later == ["echo"]  # (status never reached the handler)
    with pytest.raises(ControlError, match="unknown command"):
        request(path, "nonsense")


def pipelined(path, *requests: bytes) -> list[dict]:
    """The answers to ``requests``, sent at once on one connection."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b"".join(request + b"\n" for request in requests))
        lines = sock.makefile()
        return [json.loads(lines.readline()) for _ in requests]


def test_requests_on_one_connection_are_answered_in_order(quick_server):
    """A query sent behind a command that waits is answered after it, not before."""
    path, _ = quick_server
    first, second = pipelined(path, b'{"command": "slow"}', b'{"command": "status"}')
    assert first == {"ok": True, "result": {"done": "slow"}}
    assert second == {"ok": True, "result": {"role": "PRIMARY"}}


def test_an_answer_larger_than_the_socket_takes_arrives_whole(quick_server):
    path, _ = quick_server
    big, after = pipelined(path, b'{"command": "big"}', b'{"command": "status"}')
    assert len(big["result"]["entries"]) == 50_000
    assert after["result"] == {"role": "PRIMARY"}


def test_an_oversized_request_is_refused_and_the_connection_closed(server):
    path, node = server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b"x" * (MAX_REQUEST + 10))
        lines = sock.makefile()
        answer = json.loads(lines.readline())
        assert answer["ok"] is False and "longer than" in answer["error"]
        try:
            assert lines.readline() == ""  # closed ...
        except ConnectionResetError:
            pass  # ... with what it sent unread
    assert node.bad == 1
    assert request(path, "status")["role"] == "BACKUP"  # the server goes on
