"""Realistic faults, injected one at a time by monkeypatching the implementation.

Each mutation is a context manager that breaks one thing the way a careless edit
would; test_mutations.py shows that the model tests catch every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from snep.fsm import node as node_mod
from snep.fsm import receiver as receiver_mod
from snep.fsm.node import SyncNode
from snep.fsm.receiver import SyncReceiver
from snep.fsm.resend import ResendQueue
from snep.fsm.sender import SyncSender
from snep.wire import serial


@contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(target, name, value)
        yield
    finally:
        mp.undo()


def ignore_nack() -> Any:
    """The sender drops every NACK (no retransmission, no resync fallback)."""

    def on_nack(self: SyncSender, now: float, peer: Any, nack: Any, term: int, out: list) -> None:
        self.counters.nacks_received += 1

    return _patched(SyncSender, "on_nack", on_nack)


def skip_epoch_check() -> Any:
    """STATE frames of an older epoch than the newest seen are applied (no fencing)."""
    original = SyncNode._on_state

    def _on_state(self: SyncNode, now: float, receiver: SyncReceiver, frame: Any, claim: Any, out: list) -> None:
        if claim is not None and claim < self.newest:
            newest, self.newest = self.newest, claim  # the check below now passes
            try:
                original(self, now, receiver, frame, claim, out)
            finally:
                self.newest = newest
            return
        original(self, now, receiver, frame, claim, out)

    return _patched(SyncNode, "_on_state", _on_state)


def no_commit_on_promotion() -> Any:
    """Promotion forgets to write the external cache into the kernel."""

    def _commit(self: SyncNode, out: list) -> None:
        return None

    return _patched(SyncNode, "_commit", _commit)


def ack_before_apply() -> Any:
    """The receiver acknowledges a frame as it arrives, before it is (or is not) applied."""
    original = SyncReceiver.on_state

    def on_state(self: SyncReceiver, now: float, frame: Any, claim: Any, out: list) -> Any:
        if claim == self.stream:
            self._send_ack(now, frame.seq, frame.seq, out)
        return original(self, now, frame, claim, out)

    return _patched(SyncReceiver, "on_state", on_state)


def unbounded_queue() -> Any:
    """The resend queue loses its bound (a dead backup grows the primary's memory)."""

    def drop_excess(self: ResendQueue, needed_from: Any) -> int:
        return 0

    return _patched(ResendQueue, "drop_excess", drop_excess)


def serial_off_by_one() -> Any:
    """The receiver's serial comparison is off by one: a frame one beyond the expected
    seq counts as the expected one (the missing frame is skipped, never NACKed)."""
    real: Callable[[int, int], int] = serial.seq_diff

    def seq_diff(a: int, b: int) -> int:
        d = real(a, b)
        return d - 1 if d > 0 else d

    return _patched(receiver_mod, "seq_diff", seq_diff)


def no_sweep() -> Any:
    """BULK_END does not remove the entries the dump did not refresh."""
    from snep.cache import Cache

    def sweep(self: Cache, stream: Any) -> list:
        self.unmark(stream)
        return []

    return _patched(Cache, "sweep", sweep)


def reuse_term_on_promotion() -> Any:
    """Promotion takes the newest term seen instead of the next one (two primaries
    across a partition can then share an epoch's term)."""
    original = SyncNode._carry_out
    from snep.fsm.effects import Epoch, TakeEpoch

    def _carry_out(self: SyncNode, now: float, actions: Any, out: list) -> None:
        actions = list(actions)
        if any(isinstance(a, TakeEpoch) for a in actions) and self.newest.term > 0:
            self.newest = Epoch(self.newest.term - 1, self.newest.node)
        original(self, now, actions, out)

    return _patched(SyncNode, "_carry_out", _carry_out)


def news_deposes() -> Any:
    """A primary that hears of a newer epoch nobody vouches for (a node that restarted
    with the epoch of a promotion it never used) steps down instead of taking a term
    above: the live primary is deposed and nobody is primary (issue 13's epoch bug)."""
    original = SyncNode._hear_of

    def _hear_of(self: SyncNode, now: float, heard: Any, live: bool, out: list) -> None:
        original(self, now, heard, True, out)

    return _patched(SyncNode, "_hear_of", _hear_of)


def no_vouch() -> Any:
    """A node back as backup never holds its kernel to the primary's first dump: what
    it kept from an earlier life (connections reset while it was away) stays."""

    def _vouch_kernel(self: SyncNode, out: list) -> None:
        self._vouch = None

    return _patched(SyncNode, "_vouch_kernel", _vouch_kernel)


def no_replay_window() -> Any:
    """The channel forgets which counters it saw: a frame captured in a bound session
    counts again (a replayed RESYNC_REQUEST starts another dump)."""
    from snep.fsm.channel import ReplayWindow

    def fresh(self: ReplayWindow, counter: int) -> bool:
        return True

    return _patched(ReplayWindow, "fresh", fresh)


def sweep_all_owners() -> Any:
    """A dump marks and sweeps the whole external cache, whoever's stream wrote each
    entry (one peer's dump removes another live stream's entries: issue 14, item 4)."""
    from snep import cache

    return _patched(cache, "swept_by", lambda owner, stream: True)


def sweep_own_entries_only() -> Any:
    """A dump sweeps only its sender's entries: what an older primary told a node and
    the new primary's dump does not carry survives (to be committed at a takeover)."""
    from snep import cache

    return _patched(cache, "swept_by", lambda owner, stream: owner is None or owner[1] == stream[1])


MUTATIONS: dict[str, Callable[[], Any]] = {
    "ignore_nack": ignore_nack,
    "skip_epoch_check": skip_epoch_check,
    "no_commit_on_promotion": no_commit_on_promotion,
    "ack_before_apply": ack_before_apply,
    "unbounded_queue": unbounded_queue,
    "serial_off_by_one": serial_off_by_one,
    "no_sweep": no_sweep,
    "reuse_term_on_promotion": reuse_term_on_promotion,
    "news_deposes": news_deposes,
    "no_vouch": no_vouch,
}
# no_replay_window is not here: the spec lets a duplicate in a bound session through
# (it only makes the network worse), so no model step tells it apart; the attack
# tests catch it (tests/test_sim_attacks.py: a replayed RESYNC_REQUEST starts a dump).

__all__ = ["MUTATIONS", "node_mod"]
