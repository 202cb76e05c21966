"""keepalived's notify FIFO: the HA manager's transitions without a process for each.

keepalived writes one line per transition of every VRRP instance and sync group to
its ``notify_fifo`` (global_defs), the same four words its ``notify`` script gets::

    GROUP "G" MASTER 100
    INSTANCE "VI_1" BACKUP 100

The node follows one sync group or one instance (``[ha] sync_group`` / ``instance``;
in active-active one per group, each for its own sync instance): MASTER makes it primary, BACKUP backup, FAULT fault; STOP (keepalived stopping) and
DELETED (the instance left keepalived's config) take its addresses away: backup.
Other groups and instances, and keepalived's priority news (MASTER_RX_LOWER_PRI,
MASTER_PRIORITY, BACKUP_PRIORITY), are counted and ignored; anything else is a bad
line: counted, reported to the caller, never raised.

The FIFO is opened read-write, so that it always has a writer (us) and keepalived's
restarts never make it read end-of-file in a loop. keepalived removes a FIFO it
created itself when it stops: :meth:`NotifyFifo.check` notices a path that no
longer names the FIFO it reads and opens the new one.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from snep.errors import SnepError

#: keepalived's words, and the node's role for each
ROLES = {
    "MASTER": "primary",
    "BACKUP": "backup",
    "FAULT": "fault",
    "STOP": "backup",
    "DELETED": "backup",
}
#: keepalived's other words on the FIFO: news, not transitions
NEWS = frozenset({"MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY"})
#: a line longer than this is not keepalived's (the rest of it is dropped)
MAX_LINE = 1024
#: bytes read per wake-up
READ_SIZE = 65536


class Kind(Enum):
    """What a line is about: a sync group or a VRRP instance."""

    GROUP = "GROUP"
    INSTANCE = "INSTANCE"


@dataclass(frozen=True, slots=True)
class Transition:
    """One line of the FIFO: ``kind "name" state priority``."""

    kind: Kind
    name: str
    state: str
    priority: int


class FifoError(SnepError):
    """The FIFO cannot be used: the path is something else, or cannot be created or opened."""


def parse_line(line: str) -> Transition:
    """A FIFO line; ValueError with the reason when it is not one of keepalived's."""
    words = line.split()
    try:
        kind = Kind(words[0] if words else "")
    except ValueError:
        raise ValueError(
            f"{words[0] if words else ''!r} is neither GROUP nor INSTANCE"
        ) from None
    if len(words) != 4:
        raise ValueError(f"{len(words)} words, keepalived writes 4")
    _, quoted, state, priority = words
    if len(quoted) < 3 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError(f"the name {quoted!r} is not quoted")
    if state not in ROLES and state not in NEWS:
        raise ValueError(f"unknown state {state!r}")
    if not priority.isdigit():
        raise ValueError(f"priority {priority!r} is not a number")
    return Transition(kind, quoted[1:-1], state, int(priority))


class Lines:
    """Bytes in, whole lines out; an overlong line is dropped (and said so)."""

    def __init__(self) -> None:
        self._partial = b""
        self._overlong = False

    def feed(self, data: bytes) -> list[str | None]:
        """The complete lines ``data`` ends (None: an overlong or undecodable line)."""
        out: list[str | None] = []
        *complete, rest = (self._partial + data).split(b"\n")
        for raw in complete:
            if self._overlong or len(raw) > MAX_LINE:
                out.append(None)
                self._overlong = False
                continue
            try:
                out.append(raw.decode("ascii").strip())
            except UnicodeDecodeError:
                out.append(None)
        if len(rest) > MAX_LINE:
            self._overlong, rest = True, b""
        self._partial = rest
        return out


class NotifyFifo:
    """Reads keepalived's FIFO in the event loop; for each transition of a followed group
    or instance calls its ``on_role(role, line)`` (``follows``: (kind, name) -> on_role),
    and ``on_bad(line, reason)`` for each line that is not keepalived's."""

    def __init__(
        self,
        path: Path,
        follows: Mapping[tuple[Kind, str], Callable[[str, str], None]],
        on_bad: Callable[[str, str], None],
    ) -> None:
        self.path = path
        self.follows = dict(follows)
        self.on_bad = on_bad
        self.counters = {
            "ha_fifo_lines": 0,
            "ha_fifo_transitions": 0,
            "ha_fifo_ignored": 0,
            "ha_fifo_bad_lines": 0,
            "ha_fifo_reopened": 0,
        }
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lines = Lines()

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the FIFO (mode 0600) unless it exists; refuse a path that is not one."""
        self._loop = loop
        ensure_fifo(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            raise FifoError(
                f"cannot open keepalived's notify FIFO {self.path}: {error.strerror}"
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode):  # (replaced between the check and the open)
            os.close(fd)
            raise FifoError(f"{self.path} is not a FIFO")
        self._fd, self._inode = fd, (info.st_dev, info.st_ino)
        self._lines = Lines()
        loop.add_reader(fd, self._readable)

    def close(self) -> None:
        if self._fd is None:
            return
        if self._loop is not None:
            try:
                self._loop.remove_reader(self._fd)
            except (ValueError, RuntimeError):
                pass
        os.close(self._fd)
        self._fd = None

    def check(self) -> None:
        """Open the FIFO again if its path names another file now (keepalived removed
        the one we read, and made a new one) or nothing (we make it again)."""
        try:
            info = os.stat(self.path)
            same = (info.st_dev, info.st_ino) == self._inode
        except FileNotFoundError:
            same = False
        if same or self._loop is None:
            return
        self.close()
        self.counters["ha_fifo_reopened"] += 1
        self.open(self._loop)

    def _readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        for line in self._lines.feed(data):
            self.handle(line)

    def handle(self, line: str | None) -> None:
        """One line of the FIFO (None: one too long or not text)."""
        self.counters["ha_fifo_lines"] += 1
        if line is None:
            self.counters["ha_fifo_bad_lines"] += 1
            self.on_bad("", f"a line longer than {MAX_LINE} bytes or not text")
            return
        if not line:
            return
        try:
            transition = parse_line(line)
        except ValueError as error:
            self.counters["ha_fifo_bad_lines"] += 1
            self.on_bad(line, str(error))
            return
        on_role = self.follows.get((transition.kind, transition.name))
        if on_role is None or transition.state in NEWS:
            self.counters["ha_fifo_ignored"] += 1
            return
        self.counters["ha_fifo_transitions"] += 1
        on_role(ROLES[transition.state], line)


def ensure_fifo(path: Path) -> None:
    """Make the FIFO (mode 0600) if nothing is at ``path``; a FifoError if something else is."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            os.mkfifo(path, 0o600)
            os.chmod(path, 0o600)  # (whatever the umask)
        except OSError as error:
            raise FifoError(
                f"cannot create keepalived's notify FIFO {path}: {error.strerror}"
            ) from None
        return
    if not stat.S_ISFIFO(info.st_mode):
        raise FifoError(
            f"{path} exists and is not a FIFO: [ha] notify_fifo must name a FIFO (or nothing: the node makes it); "
            "it is left as it is"
        )
