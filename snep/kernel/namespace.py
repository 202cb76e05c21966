"""Opening sockets inside a named network namespace, from anywhere.

A node's kernel adapter may watch the conntrack table of another namespace (the
demo's and the conformance suite's firewalls, or a node run outside ``ip netns
exec``): the sockets are created by a short-lived thread that entered the namespace,
and stay bound to it for their lifetime.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from snep.errors import KernelError

T = TypeVar("T")

#: where ``ip netns add`` keeps its named namespaces
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000


class NamespaceError(KernelError):
    """A namespace that cannot be entered (missing, no permission)."""


_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open at ``fd``."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"setns: {os.strerror(err)}")


def call_in(ns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` with the calling thread inside namespace ``ns`` (None: here).

    It runs in a short-lived helper thread so that the caller's thread never changes
    namespace: sockets created by ``fn`` stay bound to ``ns`` for their lifetime.
    """
    if ns is None:
        return fn()
    path = ns if ns.startswith("/") else os.path.join(NETNS_DIR, ns)
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            error.append(NamespaceError(f"namespace {ns}: {exc.strerror}"))
            return
        try:
            setns(fd)
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=body, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
