"""Which Python code is the counterpart of which action of spec/sync_protocol.tla.

A counterpart declares itself with ``@spec_action("RecvNack")`` (methods) or
:func:`register` (trigger methods that a library generates, methods of modules the
fsm does not own). The lab's :func:`snep.lab.spec_table.load_all` imports every module
that registers one; ``tests/test_spec_mapping.py`` compares :data:`REGISTRY` with the
actions of the spec's ``Next``: every action needs a counterpart and every registered
counterpart needs its action. spec/README.md holds the same table for readers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

#: spec action name -> qualified names of its Python counterparts ("SyncSender.on_nack")
REGISTRY: dict[str, list[str]] = {}


def register(action: str, qualname: str) -> None:
    """Record ``qualname`` as (one) counterpart of the spec action ``action``."""
    names = REGISTRY.setdefault(action, [])
    if qualname not in names:
        names.append(qualname)


def spec_action(action: str) -> Callable[[F], F]:
    """Decorator: the decorated function is the counterpart of spec action ``action``."""

    def mark(function: F) -> F:
        register(action, function.__qualname__)
        function.__spec_action__ = action  # type: ignore[attr-defined]
        return function

    return mark


# The clock, read where it matters: an acknowledgement older than retransmit_timeout
# no longer makes a NACK below it a late copy (the spec's timer AckAges).
register("AckAges", "SyncSender._late_copy")
