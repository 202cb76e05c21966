"""The persisted epoch: the newest (term, node_id) this node has seen.

Written atomically (temporary file, fsync, rename, fsync of the directory), so that a
crash or SIGKILL at any moment leaves either the old or the new epoch, never half a
file: a node that forgot its epoch could promote itself into an epoch that already
exists and fence the wrong primary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snep.errors import SnepError
from snep.fsm.effects import MAX_TERM

Epoch = tuple[int, int]


def read_epoch(path: Path) -> Epoch:
    """The stored epoch, or (0, 0) when there is none yet."""
    try:
        data = json.loads(path.read_text())
        term, node_id = int(data["term"]), int(data["node_id"])
    except FileNotFoundError:
        return (0, 0)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SnepError(f"state file {path} is unreadable or corrupt ({error}); remove it to start from epoch 0") from None
    if not 0 <= term <= MAX_TERM or not 0 <= node_id <= 0xFFFF_FFFF:
        raise SnepError(
            f"state file {path}: epoch {term, node_id} is not one a node can act on (terms 0..{MAX_TERM}, "
            f"node ids 0..4294967295); remove the file to start from epoch 0 (the peers tell the newest epoch)"
        )
    return (term, node_id)


def write_epoch(path: Path, epoch: Epoch) -> None:
    if not 0 <= epoch[0] <= MAX_TERM:  # (the node never holds such an epoch: a bug)
        raise ValueError(f"epoch {epoch}: the term must be 0..{MAX_TERM}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"term": epoch[0], "node_id": epoch[1]}).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
