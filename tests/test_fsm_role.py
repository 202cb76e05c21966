"""The role machine: the machine runs its table, and the table says what matters.

Two kinds of check, neither a copy of the table:

- The machine against :data:`TABLE`: every (role, trigger) pair, and any sequence of
  triggers (h2-style), ends where the table's row says, with the row's actions, or is
  refused with InvalidTransition and changes nothing. This checks that `transitions`
  runs the table as written (sources, destination or stay, guard, actions in order).
- Facts written by hand, from the protocol (spec/sync_protocol.tla, docs/fsm.md), that
  a wrong table breaks: a promotion commits first and takes the epoch before it sends
  anything; a stop from any up role goes DOWN; only a newer epoch fences a primary; HA
  commands are idempotent; and so on. Change a row and one of these fails.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snep.errors import InvalidTransition
from snep.fsm.effects import (
    BulkSendToPeers,
    CommitExternal,
    Epoch,
    RequestResync,
    ResyncInternalFromKernel,
    SendHello,
    ShortenKernelTimeouts,
    StopSending,
    TakeEpoch,
)
from snep.fsm.role import TABLE, TRIGGERS, Role, RoleMachine, Row

DOWN, SYNCING, BACKUP, PRIMARY, FAULT = Role
UP = (SYNCING, BACKUP, PRIMARY, FAULT)
OLD, NEW = Epoch(3, 1), Epoch(4, 2)
PAIRS = sorted(((state, trigger) for state in Role for trigger in TRIGGERS), key=str)


def guard_args(trigger: str) -> dict:
    return {"heard": NEW, "own": OLD} if trigger == "fenced" else {}


def row(state: Role, trigger: str) -> Row | None:
    """The table's row for ``trigger`` in ``state``, or None (the trigger is refused)."""
    rows = [r for r in TABLE if r.trigger == trigger and state in r.sources]
    assert len(rows) <= 1, f"two rows for {trigger!r} in {state.name}: {rows}"
    return rows[0] if rows else None


def fired(state: Role, trigger: str, **args) -> tuple[Role, list]:
    machine = RoleMachine(state)
    actions = machine.fire(trigger, **(args or guard_args(trigger)))
    return machine.state, actions


# ----------------------------------------------------------------- the machine runs the table


def test_the_table_is_well_formed():
    for state, trigger in PAIRS:
        row(state, trigger)  # at most one row per (role, trigger)
    assert set(TRIGGERS) == {r.trigger for r in TABLE}
    assert all(r.sources for r in TABLE)


@pytest.mark.parametrize(("state", "trigger"), PAIRS)
def test_every_role_and_trigger_does_what_the_table_says(state, trigger):
    expected = row(state, trigger)
    machine = RoleMachine(state)
    if expected is None:
        with pytest.raises(InvalidTransition) as error:
            machine.fire(trigger, **guard_args(trigger))
        assert machine.state is state
        assert repr(trigger) in str(error.value) and state.name in str(error.value)
        assert "allowed there" in str(error.value)
    else:
        actions = machine.fire(trigger, **guard_args(trigger))
        assert machine.state is (expected.dest or state)
        assert actions == list(expected.actions)


@given(st.sampled_from(list(Role)), st.lists(st.sampled_from(list(TRIGGERS) + ["bogus"]), max_size=12))
def test_any_state_any_triggers(state, triggers):
    """h2-style: from any state, any trigger gives the table's outcome, or
    InvalidTransition with the state unchanged."""
    machine = RoleMachine(state)
    for trigger in triggers:
        before = machine.state
        expected = row(before, trigger) if trigger in TRIGGERS else None
        try:
            actions = machine.fire(trigger, **guard_args(trigger))
        except InvalidTransition:
            assert expected is None
            assert machine.state is before
        else:
            assert expected is not None
            assert (machine.state, actions) == (expected.dest or before, list(expected.actions))
        assert machine.state in Role


# ----------------------------------------------------------------- facts the table must keep


@pytest.mark.parametrize(("state", "trigger"), [(SYNCING, "promote"), (BACKUP, "promote"), (FAULT, "promote"),
                                                (SYNCING, "reassert"), (BACKUP, "reassert")])
def test_promotion_commits_first_and_takes_the_epoch_before_sending(state, trigger):
    role, actions = fired(state, trigger)
    assert role is PRIMARY
    assert actions[0] == CommitExternal()  # the peers' states are in the kernel before anything else
    assert TakeEpoch() in actions and BulkSendToPeers() in actions and SendHello() in actions
    taken = actions.index(TakeEpoch())
    assert taken < actions.index(SendHello()) < actions.index(BulkSendToPeers())  # the new epoch is announced, then the dump
    assert actions.index(ResyncInternalFromKernel()) < actions.index(BulkSendToPeers())  # dump what is in the kernel


def test_promoting_a_primary_again_changes_nothing():
    assert fired(PRIMARY, "promote") == (PRIMARY, [])  # no second epoch for keepalived's repeat


def test_a_primary_that_hears_unvouched_news_takes_a_term_above_and_stays():
    role, actions = fired(PRIMARY, "retake")
    assert role is PRIMARY
    assert actions.index(TakeEpoch()) < actions.index(SendHello()) < actions.index(BulkSendToPeers())
    assert StopSending() not in actions and CommitExternal() not in actions


@pytest.mark.parametrize("state", [SYNCING, BACKUP, FAULT])
def test_only_a_primary_retakes(state):
    with pytest.raises(InvalidTransition):
        RoleMachine(state).fire("retake")


@pytest.mark.parametrize("state", UP)
def test_a_stop_from_any_up_role_goes_down(state):
    role, _ = fired(state, "fail")
    assert role is DOWN


@pytest.mark.parametrize("trigger", [t for t in TRIGGERS if t != "start"])
def test_a_down_node_only_starts(trigger):
    machine = RoleMachine(DOWN)
    with pytest.raises(InvalidTransition):
        machine.fire(trigger, **guard_args(trigger))
    assert machine.state is DOWN


def test_a_start_resyncs_from_the_kernel_and_asks_the_peers():
    role, actions = fired(DOWN, "start")
    assert role is SYNCING and not role.ready  # not ready before a dump completed
    assert actions[0] == ResyncInternalFromKernel() and RequestResync() in actions


@pytest.mark.parametrize("state", UP)
def test_start_is_refused_when_up(state):
    with pytest.raises(InvalidTransition):
        RoleMachine(state).fire("start")


@pytest.mark.parametrize("trigger", ["demote", "fault", "fenced"])
def test_a_primary_stepping_down_stops_sending_first(trigger):
    role, actions = fired(PRIMARY, trigger)
    assert role is (FAULT if trigger == "fault" else SYNCING)
    assert actions[0] == StopSending()
    assert ShortenKernelTimeouts() in actions and RequestResync() in actions


@pytest.mark.parametrize("state", UP)
def test_fault_from_any_up_role_goes_fault_which_is_never_ready(state):
    role, _ = fired(state, "fault")
    assert role is FAULT and not role.ready


def test_a_demoted_fault_node_resyncs_before_it_is_ready():
    role, actions = fired(FAULT, "demote")
    assert role is SYNCING and RequestResync() in actions


@pytest.mark.parametrize(("heard", "own"), [(OLD, OLD), (Epoch(2, 9), OLD), (Epoch(3, 0), OLD)])
def test_fenced_only_by_a_newer_epoch(heard, own):
    machine = RoleMachine(PRIMARY)
    with pytest.raises(InvalidTransition, match="guard newer_epoch is false"):
        machine.fire("fenced", heard=heard, own=own)
    assert machine.state is PRIMARY


def test_fenced_by_same_term_higher_node():
    assert fired(PRIMARY, "fenced", heard=Epoch(3, 2), own=Epoch(3, 1))[0] is SYNCING


@pytest.mark.parametrize("state", [SYNCING, BACKUP, FAULT])
def test_only_a_primary_is_fenced(state):
    with pytest.raises(InvalidTransition):
        RoleMachine(state).fire("fenced", heard=NEW, own=OLD)


@pytest.mark.parametrize(("state", "trigger"), [(BACKUP, "demote"), (SYNCING, "demote"), (FAULT, "fault"),
                                                (BACKUP, "synced"), (FAULT, "synced")])
def test_repeated_ha_commands_and_later_dumps_change_nothing(state, trigger):
    assert fired(state, trigger) == (state, [])


def test_a_completed_dump_makes_a_syncing_node_a_ready_backup():
    role, _ = fired(SYNCING, "synced")
    assert role is BACKUP and role.ready


def test_only_backup_and_primary_are_ready():
    assert {role for role in Role if role.ready} == {BACKUP, PRIMARY}


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
