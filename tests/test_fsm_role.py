"""The role machine: every row of the table, every guard, every refused trigger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snep.errors import InvalidTransition
from snep.fsm.effects import (
    BulkSendToPeers,
    ClearExternal,
    CommitExternal,
    Epoch,
    RequestResync,
    ResyncInternalFromKernel,
    SendHello,
    ShortenKernelTimeouts,
    StopSending,
    TakeEpoch,
)
from snep.fsm.role import TABLE, TRIGGERS, Role, RoleMachine

DOWN, SYNCING, BACKUP, PRIMARY, FAULT = Role
PROMOTION = [CommitExternal(), TakeEpoch(), ResyncInternalFromKernel(), SendHello(), BulkSendToPeers()]
STEP_DOWN = [StopSending(), ShortenKernelTimeouts(), RequestResync()]
TO_BACKUP = [ShortenKernelTimeouts(), RequestResync()]
OLD, NEW = Epoch(3, 1), Epoch(4, 2)

# (state, trigger, guard args) -> (next state, actions); everything else is refused.
EXPECTED = {
    (DOWN, "start"): (SYNCING, [ResyncInternalFromKernel(), ClearExternal(), SendHello(), RequestResync()]),
    (SYNCING, "promote"): (PRIMARY, PROMOTION),
    (BACKUP, "promote"): (PRIMARY, PROMOTION),
    (FAULT, "promote"): (PRIMARY, PROMOTION),
    (PRIMARY, "promote"): (PRIMARY, []),
    (PRIMARY, "demote"): (SYNCING, STEP_DOWN),
    (FAULT, "demote"): (SYNCING, TO_BACKUP),
    (SYNCING, "demote"): (SYNCING, []),
    (BACKUP, "demote"): (BACKUP, []),
    (PRIMARY, "fault"): (FAULT, STEP_DOWN),
    (SYNCING, "fault"): (FAULT, TO_BACKUP),
    (BACKUP, "fault"): (FAULT, TO_BACKUP),
    (FAULT, "fault"): (FAULT, []),
    (PRIMARY, "fenced"): (SYNCING, STEP_DOWN),
    (SYNCING, "synced"): (BACKUP, []),
    (BACKUP, "synced"): (BACKUP, []),
    (FAULT, "synced"): (FAULT, []),
    (SYNCING, "fail"): (DOWN, []),
    (BACKUP, "fail"): (DOWN, []),
    (PRIMARY, "fail"): (DOWN, []),
    (FAULT, "fail"): (DOWN, []),
}


def guard_args(trigger: str) -> dict:
    return {"heard": NEW, "own": OLD} if trigger == "fenced" else {}


def test_the_table_is_what_the_tests_expect():
    rows = {(state, row.trigger) for row in TABLE for state in row.sources}
    assert rows == set(EXPECTED)


@pytest.mark.parametrize(("state", "trigger"), sorted(EXPECTED, key=str))
def test_allowed_transition(state, trigger):
    machine = RoleMachine(state)
    actions = machine.fire(trigger, **guard_args(trigger))
    dest, expected_actions = EXPECTED[(state, trigger)]
    assert machine.state is dest
    assert actions == expected_actions


@pytest.mark.parametrize(
    ("state", "trigger"),
    sorted({(s, t) for s in Role for t in TRIGGERS} - set(EXPECTED), key=str),
)
def test_refused_trigger_is_a_clear_error_and_changes_nothing(state, trigger):
    machine = RoleMachine(state)
    with pytest.raises(InvalidTransition) as error:
        machine.fire(trigger, **guard_args(trigger))
    assert machine.state is state
    assert repr(trigger) in str(error.value) and state.name in str(error.value)
    assert "allowed there" in str(error.value)


@pytest.mark.parametrize(("heard", "own"), [(OLD, OLD), (Epoch(2, 9), OLD), (Epoch(3, 0), OLD)])
def test_fenced_guard_needs_a_newer_epoch(heard, own):
    machine = RoleMachine(PRIMARY)
    with pytest.raises(InvalidTransition, match="guard newer_epoch is false"):
        machine.fire("fenced", heard=heard, own=own)
    assert machine.state is PRIMARY


def test_fenced_by_same_term_higher_node():
    machine = RoleMachine(PRIMARY)
    assert machine.fire("fenced", heard=Epoch(3, 2), own=Epoch(3, 1)) == STEP_DOWN
    assert machine.state is SYNCING


def test_unknown_trigger():
    machine = RoleMachine(BACKUP)
    with pytest.raises(InvalidTransition, match="unknown trigger 'explode'"):
        machine.fire("explode")
    assert machine.state is BACKUP


def test_a_full_life():
    machine = RoleMachine()
    assert machine.state is DOWN and not machine.state.ready
    machine.fire("start")
    assert not machine.state.ready
    machine.fire("synced")
    assert machine.state is BACKUP and machine.state.ready
    machine.fire("promote")
    machine.fire("fenced", heard=NEW, own=OLD)
    machine.fire("fault")
    machine.fire("demote")
    machine.fire("fail")
    assert machine.state is DOWN


@given(st.sampled_from(list(Role)), st.lists(st.sampled_from(list(TRIGGERS) + ["bogus"]), max_size=12))
def test_any_state_any_triggers(state, triggers):
    """h2-style: from any state, any trigger gives a valid state or InvalidTransition
    with the state unchanged; the outcome is exactly the table's."""
    machine = RoleMachine(state)
    for trigger in triggers:
        before = machine.state
        expected = EXPECTED.get((before, trigger))
        try:
            actions = machine.fire(trigger, **guard_args(trigger))
        except InvalidTransition:
            assert expected is None
            assert machine.state is before
        else:
            assert expected is not None
            assert (machine.state, actions) == expected
        assert machine.state in Role
