"""Small mode machines (sender, receiver) declared as tables and run by `transitions`.

The role machine (snep.fsm.role) has its own richer table; the sync sender and
receiver have a few modes each, and their mode changes go through these tables so
that ``snep diagram`` draws what actually runs. A trigger with no row for the current
mode raises :class:`~snep.errors.InvalidTransition` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from transitions import Machine, MachineError

from snep.errors import InvalidTransition


@dataclass(frozen=True)
class ModeRow:
    trigger: str
    sources: tuple[Enum, ...]
    dest: Enum | None  # None: stays (internal)
    note: str = ""  # what happens, shown on the diagram edge


class _Model:
    state: Any


def graph_machine_class() -> Any:
    """transitions' GraphMachine, drawn top-down (the tables' labels are long)."""
    from transitions.extensions import GraphMachine

    class TopDownGraphMachine(GraphMachine):  # type: ignore[misc]
        machine_attributes = {**GraphMachine.machine_attributes, "rankdir": "TB", "nodesep": "0.6"}

    return TopDownGraphMachine


class ModeMachine:
    def __init__(self, name: str, modes: type[Enum], table: Sequence[ModeRow], initial: Enum, *, graph: bool = False) -> None:
        self.name = name
        self.table = tuple(table)
        self._model = _Model()
        extra: dict[str, Any] = {}
        cls: Any = Machine
        if graph:
            cls = graph_machine_class()
            extra = {"title": name, "graph_engine": "graphviz"}
        rows = []
        for row in self.table:
            spec: dict[str, Any] = {"trigger": row.trigger, "source": list(row.sources), "dest": row.dest}
            if graph:
                spec["label"] = f"{row.trigger}\n{row.note}" if row.note else row.trigger
            rows.append(spec)
        self._machine = cls(
            model=self._model,
            states=list(modes),
            initial=initial,
            transitions=rows,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            **extra,
        )

    @property
    def state(self) -> Any:
        return self._model.state

    def fire(self, trigger: str) -> None:
        before = self._model.state
        try:
            self._model.trigger(trigger)  # type: ignore[attr-defined]
        except (MachineError, AttributeError):
            allowed = [row.trigger for row in self.table if before in row.sources]
            raise InvalidTransition(
                f"{self.name}: {trigger!r} is not allowed in mode {before.name}"
                f" (allowed there: {', '.join(allowed) or 'nothing'})"
            ) from None

    def graph(self) -> Any:
        return self._model.get_graph()  # type: ignore[attr-defined]
