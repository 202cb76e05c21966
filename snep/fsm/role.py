"""The role machine: what a node is in the HA cluster, and what each change entails.

Everything that moves a node between roles is in :data:`TABLE`, one row per allowed
(trigger, source) pair, with its guard and the actions the node must carry out, in
order. A trigger that has no row for the current role is a protocol error: it raises
:class:`~snep.errors.InvalidTransition` and changes nothing (as h11 does). The
`transitions` library runs the table; ``snep diagram`` draws the same table.

Roles (spec/sync_protocol.tla names them the same):

- DOWN: the process is not running (or stopped): nothing of ours runs.
- SYNCING: up, receiving like a backup, but the bulk dump from the primary is not
  complete yet: not ready to take over.
- BACKUP: in sync (a bulk dump completed since the last resync request): ready.
- PRIMARY: owns the newest epoch and sends the reliable STATE stream.
- FAULT: the HA manager says fault: receives like a backup, never ready.

Triggers: ``start`` (process start / recover), ``promote``/``demote``/``fault`` (the
HA manager), ``fail`` (clean stop), ``fenced`` (a PRIMARY heard a newer epoch
claimed by its primary), ``retake`` (a PRIMARY heard of a newer epoch nobody
vouches for: a node that restarted or was away; it takes a term above instead of
stepping down), ``reassert`` (keepalived made this node master, and it hears of no
primary: it takes over again), ``synced`` (a bulk dump ended). HA commands are
idempotent: repeating the current role is an explicit no-op row (keepalived
repeats itself at start-up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from transitions import Machine, MachineError

from snep.errors import InvalidTransition
from snep.fsm.effects import (
    BulkSendToPeers,
    ClearExternal,
    CommitExternal,
    Epoch,
    RequestResync,
    ResyncInternalFromKernel,
    RoleAction,
    SendHello,
    ShortenKernelTimeouts,
    StopSending,
    TakeEpoch,
    VouchKernel,
)


class Role(Enum):
    DOWN = "down"
    SYNCING = "syncing"
    BACKUP = "backup"
    PRIMARY = "primary"
    FAULT = "fault"

    @property
    def ready(self) -> bool:
        """May this node win an election (keepalived track_script)?"""
        return self in (Role.BACKUP, Role.PRIMARY)


DOWN, SYNCING, BACKUP, PRIMARY, FAULT = Role


@dataclass(frozen=True)
class Row:
    """One allowed transition: ``trigger`` in any of ``sources`` goes to ``dest``
    (None: stay) when ``guard`` holds, and the node carries out ``actions`` in order."""

    trigger: str
    sources: tuple[Role, ...]
    dest: Role | None
    actions: tuple[RoleAction, ...] = ()
    guard: str | None = None
    spec: str | None = None  # the spec action this row realizes (SyncNode carries it out)


_PROMOTE = (CommitExternal(), ClearExternal(), TakeEpoch(), ResyncInternalFromKernel(), SendHello(), BulkSendToPeers())
_RETAKE = (TakeEpoch(), SendHello(), BulkSendToPeers())
_STEP_DOWN = (StopSending(), ShortenKernelTimeouts(), VouchKernel(), RequestResync())
_TO_BACKUP = (ShortenKernelTimeouts(), VouchKernel(), RequestResync())
_START = (ResyncInternalFromKernel(), ClearExternal(), VouchKernel(), SendHello(), RequestResync())

# fmt: off
TABLE: tuple[Row, ...] = (
    # trigger     sources                      dest      actions                 guard          spec
    Row("start",   (DOWN,),                     SYNCING, _START,                                  spec="Recover"),
    Row("promote", (SYNCING, BACKUP, FAULT),    PRIMARY, _PROMOTE,                                spec="Promote"),
    Row("promote", (PRIMARY,),                  None),                        # already primary: no new epoch
    Row("demote",  (PRIMARY,),                  SYNCING, _STEP_DOWN,                              spec="Demote"),
    Row("demote",  (FAULT,),                    SYNCING, _TO_BACKUP,                              spec="Demote"),
    Row("demote",  (SYNCING, BACKUP),           None),                        # already a backup
    Row("fault",   (PRIMARY,),                  FAULT,   _STEP_DOWN,                              spec="Fault"),
    Row("fault",   (SYNCING, BACKUP),           FAULT,   _TO_BACKUP,                              spec="Fault"),
    Row("fault",   (FAULT,),                    None),
    Row("fenced",  (PRIMARY,),                  SYNCING, _STEP_DOWN,             "newer_epoch", spec="StepDown"),
    Row("retake",  (PRIMARY,),                  None,    _RETAKE,                                 spec="Retake"),
    Row("reassert", (SYNCING, BACKUP),          PRIMARY, _PROMOTE,                                spec="Reassert"),
    Row("unsynced", (BACKUP,),                  SYNCING),                     # the operator flushed the caches
    Row("unsynced", (SYNCING, FAULT, PRIMARY),  None),
    Row("synced",  (SYNCING,),                  BACKUP,  spec="ApplyState"),
    Row("synced",  (BACKUP, FAULT),             None),                        # a later dump: nothing changes
    Row("fail",    (SYNCING, BACKUP, PRIMARY, FAULT), DOWN, spec="Fail"),
)
# fmt: on

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(row.trigger for row in TABLE))

def _label(row: Row) -> str:
    """The edge label: the trigger, then the actions in order, one a line."""
    return "\n".join([row.trigger] + [f"{i}. {type(a).__name__}" for i, a in enumerate(row.actions, 1)])


class _Model:
    """What `transitions` drives: the state attribute and the guards."""

    def __init__(self) -> None:
        self.state: Role = DOWN

    @staticmethod
    def newer_epoch(heard: Epoch, own: Epoch) -> bool:
        return heard > own


class RoleMachine:
    """A node's role. Each trigger method returns the actions to carry out, in order."""

    def __init__(self, initial: Role = DOWN, *, graph: bool = False) -> None:
        self._model = _Model()
        self._pending: list[RoleAction] = []
        machine_class: Callable[..., Machine] = Machine
        extra: dict[str, Any] = {}
        if graph:
            from snep.fsm.modes import graph_machine_class

            machine_class = graph_machine_class()
            extra = {"title": "snep role machine", "show_conditions": True, "graph_engine": "graphviz"}
        self._machine = machine_class(
            model=self._model,
            states=list(Role),
            initial=initial,
            transitions=[self._transition(row, graph) for row in TABLE],
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=False,
            **extra,
        )

    def _transition(self, row: Row, graph: bool) -> dict[str, Any]:
        actions = row.actions

        def collect(*_args: Any, **_kwargs: Any) -> None:
            self._pending.extend(actions)

        collect.__name__ = "actions"
        spec: dict[str, Any] = {
            "trigger": row.trigger,
            "source": list(row.sources),
            "dest": row.dest,
            "after": collect,
        }
        if graph:
            spec["label"] = _label(row)
        if row.guard:
            spec["conditions"] = row.guard
        return spec

    @property
    def state(self) -> Role:
        return self._model.state

    def actions_for(self, trigger: str) -> tuple[RoleAction, ...]:
        """The actions ``trigger`` would bring in the current role (nothing fires):
        so that a node can refuse what it cannot carry out before anything changes."""
        for row in TABLE:
            if row.trigger == trigger and self.state in row.sources:
                return row.actions
        return ()

    def allowed(self) -> list[str]:
        """The triggers that have a row for the current role."""
        return [row.trigger for row in TABLE if self.state in row.sources]

    def fire(self, trigger: str, **guard_args: Any) -> list[RoleAction]:
        """Fire ``trigger``; the actions to carry out, or InvalidTransition (no change)."""
        if trigger not in TRIGGERS:
            raise InvalidTransition(f"role machine: unknown trigger {trigger!r} (known: {', '.join(TRIGGERS)})")
        before = self.state
        self._pending = []
        try:
            moved = self._model.trigger(trigger, **guard_args)  # type: ignore[attr-defined]
        except MachineError:
            raise InvalidTransition(
                f"role machine: {trigger!r} is not allowed in state {before.name}"
                f" (allowed there: {', '.join(self.allowed()) or 'nothing'})"
            ) from None
        if not moved:
            guard = next(r.guard for r in TABLE if r.trigger == trigger and before in r.sources)
            raise InvalidTransition(
                f"role machine: {trigger!r} refused in state {before.name}: guard {guard} is false"
                f" for {guard_args}"
            )
        actions, self._pending = self._pending, []
        return actions

    def graph(self) -> Any:
        """The graphviz graph of the live machine (needs ``graph=True``)."""
        return self._model.get_graph()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"RoleMachine({self.state.name})"
