"""keepalived's notify FIFO: lines parsed, the followed group's transitions acted on by a
running daemon, bad lines counted and never fatal, the FIFO made or refused (no root)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from snep import config
from snep.errors import ConfigError
from snep.kernel.memory import MemoryKernel
from snep.runtime.daemon import Daemon
from snep.runtime.keepalived import (
    MAX_LINE,
    FifoError,
    Kind,
    Lines,
    NotifyFifo,
    Transition,
    ensure_fifo,
    parse_line,
)
from snep.runtime.log import setup

# --- lines ------------------------------------------------------------------------


def test_keepalived_lines_parse():
    assert parse_line('GROUP "G1" MASTER 100') == Transition(
        Kind.GROUP, "G1", "MASTER", 100
    )
    assert parse_line('INSTANCE "VI_1" BACKUP 0') == Transition(
        Kind.INSTANCE, "VI_1", "BACKUP", 0
    )
    assert (
        parse_line('INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150').state
        == "MASTER_RX_LOWER_PRI"
    )


@pytest.mark.parametrize(
    "line, reason",
    [
        ('GROUP "G1" MASTER', "3 words"),
        ("VS [10.0.0.1]:tcp:80 UP", "neither GROUP nor INSTANCE"),
        ("GROUP G1 MASTER 100", "not quoted"),
        ('GROUP "G1" LEADER 100', "unknown state"),
        ('GROUP "G1" MASTER high', "not a number"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


def test_lines_are_cut_at_newlines_and_overlong_or_binary_ones_dropped():
    lines = Lines()
    assert lines.feed(b'GROUP "G" MAS') == []
    assert lines.feed(b'TER 100\nINSTANCE "V" BACKUP 1\n') == [
        'GROUP "G" MASTER 100',
        'INSTANCE "V" BACKUP 1',
    ]
    assert lines.feed(b"x" * (MAX_LINE + 10)) == []
    assert lines.feed(b"x" * MAX_LINE + b'\nGROUP "G" FAULT 0\n') == [
        None,
        'GROUP "G" FAULT 0',
    ]
    assert lines.feed(b'\xff\xfe\nGROUP "G" BACKUP 0\n') == [None, 'GROUP "G" BACKUP 0']


# --- the FIFO -----------------------------------------------------------------------


def test_the_fifo_is_made_with_mode_0600_and_anything_else_is_refused(tmp_path):
    fifo = tmp_path / "ka.fifo"
    os.umask(old := os.umask(0))  # (whatever the umask is, 0600)
    try:
        ensure_fifo(fifo)
    finally:
        os.umask(old)
    info = os.stat(fifo)
    assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    ensure_fifo(fifo)  # an existing FIFO is used as it is
    plain = tmp_path / "plain"
    plain.write_text("keep me\n")
    with pytest.raises(FifoError, match="exists and is not a FIFO"):
        ensure_fifo(plain)
    assert plain.read_text() == "keep me\n"  # left alone
    with pytest.raises(FifoError, match="cannot create"):
        ensure_fifo(tmp_path / "no" / "such" / "dir" / "ka.fifo")


def test_reader_follows_its_group_only_and_counts_the_rest(tmp_path):
    roles: list[str] = []
    bad: list[tuple[str, str]] = []
    fifo = NotifyFifo(
        tmp_path / "ka.fifo",
        {(Kind.GROUP, "G"): lambda role, line: roles.append(role)},
        lambda *b: bad.append(b),
    )

    async def go() -> None:
        fifo.open(asyncio.get_running_loop())
        try:
            writer = os.open(fifo.path, os.O_WRONLY | os.O_NONBLOCK)
            text = (
                'INSTANCE "VC" MASTER 150\n'  # an instance of the group: not followed
                'GROUP "G" MASTER 150\n'
                'GROUP "other" BACKUP 100\n'
                'INSTANCE "VC" MASTER_RX_LOWER_PRI 150\n'
                "garbage\n"
                'GROUP "G" FAULT 0\n'
                'GROUP "G" BACKUP 100\n'
                'GROUP "G" STOP 0\n'
            )
            os.write(writer, text.encode())
            os.close(writer)  # (keepalived closing its end: no end-of-file loop)
            deadline = asyncio.get_running_loop().time() + 5
            while (
                fifo.counters["ha_fifo_lines"] < 8
                and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.01)
            # keepalived removed its FIFO and made a new one: check() reads the new one
            fifo.path.unlink()
            os.mkfifo(fifo.path, 0o600)
            fifo.check()
            writer = os.open(fifo.path, os.O_WRONLY | os.O_NONBLOCK)
            os.write(writer, b'GROUP "G" MASTER 150\n')
            os.close(writer)
            while len(roles) < 5 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            fifo.close()

    asyncio.run(go())
    assert roles == ["primary", "fault", "backup", "backup", "primary"]
    assert [line for line, _ in bad] == ["garbage"]
    counters = fifo.counters
    assert counters["ha_fifo_bad_lines"] == 1 and counters["ha_fifo_ignored"] == 3
    assert counters["ha_fifo_transitions"] == 5 and counters["ha_fifo_reopened"] == 1


# --- the config ---------------------------------------------------------------------

BASE = {
    "node": {"id": 1},
    "sync": {
        "listen": "10.0.0.1",
        "peers": [{"id": 2, "address": "10.0.0.2"}],
        "insecure": True,
    },
}


def test_ha_config():
    cfg = config.parse(
        {**BASE, "ha": {"notify_fifo": "/run/snep/ka.fifo", "sync_group": "G"}},
        check_files=False,
    )
    assert cfg.ha.notify_fifo == Path("/run/snep/ka.fifo") and cfg.ha.follow == (
        "GROUP",
        "G",
    )
    cfg = config.parse(
        {**BASE, "ha": {"notify_fifo": "/run/snep/ka.fifo", "instance": "VI_1"}},
        check_files=False,
    )
    assert cfg.ha.follow == ("INSTANCE", "VI_1")
    assert config.parse(BASE, check_files=False).ha.notify_fifo is None


@pytest.mark.parametrize(
    "ha, match",
    [
        (
            {"notify_fifo": "/run/ka.fifo"},
            "ha.notify_fifo: needs exactly one of sync_group and instance",
        ),
        (
            {"notify_fifo": "/run/ka.fifo", "sync_group": "G", "instance": "V"},
            "needs exactly one",
        ),
        ({"notify_fifo": "ka.fifo", "sync_group": "G"}, "must be an absolute path"),
        ({"sync_group": "G"}, "ha.sync_group: is set, but notify_fifo is not"),
        ({"notify_fifo": "/run/ka.fifo", "instance": "VI 1"}, "no spaces or quotes"),
        ({"notify_fifo": "/run/ka.fifo", "group": "G"}, "ha.group: unknown key"),
    ],
)
def test_bad_ha_config_is_refused_by_name(ha, match):
    with pytest.raises(ConfigError, match=match):
        config.parse({**BASE, "ha": ha}, check_files=False)


# --- a running daemon -------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_config(tmp: Path, fifo: Path) -> config.Config:
    path = tmp / "node.toml"
    path.write_text(
        f"""
[node]
id = 1
state_file = "{tmp / "state"}"
[sync]
listen = "127.0.0.1:{free_port()}"
peers = [{{ id = 2, address = "127.0.0.2:{free_port()}" }}]
insecure = true
[control]
socket = "{tmp / "ctl.sock"}"
[ha]
notify_fifo = "{fifo}"
sync_group = "G"
"""
    )
    return config.load(path)


def test_daemon_acts_on_keepalived_transitions_and_survives_garbage(tmp_path):
    setup("warning")
    fifo = tmp_path / "ka.fifo"
    daemon = Daemon(daemon_config(tmp_path, fifo), MemoryKernel())

    async def go() -> None:
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()

        async def until(condition) -> None:
            deadline = loop.time() + 10
            while not condition():
                assert loop.time() < deadline, "condition not met in time"
                assert not task.done(), task
                await asyncio.sleep(0.01)

        try:
            await until(lambda: daemon.fifo is not None and daemon.driver is not None)
            assert stat.S_ISFIFO(os.stat(fifo).st_mode)
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(writer, b'GROUP "G" MASTER 100\n')
                await until(lambda: daemon.node.state.name == "PRIMARY")
                os.write(
                    writer,
                    b"\x00" * 5000
                    + b"\nnonsense line\n"
                    + b'INSTANCE "VC" BACKUP 100\n',
                )
                await until(lambda: daemon.stats()["ha_fifo_lines"] >= 4)
                assert daemon.node.state.name == "PRIMARY"
                os.write(writer, b'GROUP "G" BACKUP 100\n')
                await until(lambda: daemon.node.state.name == "SYNCING")
            finally:
                os.close(writer)
            stats = daemon.stats()
            assert (
                stats["ha_fifo_transitions"] == 2
                and stats["ha_fifo_bad_lines"] == 2
                and stats["ha_fifo_ignored"] == 1
            )
        finally:
            if daemon.stopping is not None:
                daemon.stopping.set()
            assert await task == 0

    asyncio.run(go())


def test_daemon_refuses_a_path_that_is_not_a_fifo(tmp_path):
    setup("warning")
    taken = tmp_path / "taken"
    taken.write_text("")
    daemon = Daemon(daemon_config(tmp_path, taken), MemoryKernel())
    with pytest.raises(FifoError, match="is not a FIFO"):
        asyncio.run(daemon.run())
    assert not (tmp_path / "ctl.sock").exists()  # nothing left behind
