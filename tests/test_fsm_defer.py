"""The deferral queue (snep.fsm.defer): a new connection's packets are held until
every live peer acknowledged its state, or the bound passes (fail-open or -closed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snep.fsm.defer import DeferParams, DeferQueue, FailPolicy, Reason, Release, Verdict

A, B = "a", "b"
K1, K2 = ("conn", 1), ("conn", 2)


def ids(releases: list[Release]) -> list[int]:
    return [r.packet_id for r in releases]


def test_ack_of_every_peer_before_the_bound_accepts() -> None:
    q = DeferQueue(DeferParams(bound=0.005))
    assert q.hold(1, K1, 10.0, [A, B]) == []
    assert q.ack(K1, A, 10.001) == []  # B still missing
    (r,) = q.ack(K1, B, 10.002)
    assert (r.packet_id, r.verdict, r.reason) == (1, Verdict.ACCEPT, Reason.ACKED)
    assert r.waited == pytest.approx(0.002)
    assert len(q) == 0 and q.next_deadline() is None
    assert q.expire(11.0) == []  # nothing left to release twice
    assert q.counters.acked == 1


@pytest.mark.parametrize(
    ("fail", "verdict", "counter"),
    [(FailPolicy.OPEN, Verdict.ACCEPT, "bound_accepted"), (FailPolicy.CLOSED, Verdict.DROP, "bound_dropped")],
)
def test_the_bound_passes_with_the_fail_policy(fail: FailPolicy, verdict: Verdict, counter: str) -> None:
    q = DeferQueue(DeferParams(bound=0.005, fail=fail))
    q.hold(1, K1, 10.0, [A])
    assert q.next_deadline() == pytest.approx(10.005)
    assert q.expire(10.004) == []
    (r,) = q.expire(10.005)
    assert (r.packet_id, r.verdict, r.reason) == (1, verdict, Reason.BOUND)
    assert getattr(q.counters, counter) == 1
    assert q.ack(K1, A, 10.006) == []  # late: the packet is gone
    assert q.counters.unknown_acks == 1


def test_several_packets_of_one_connection_wait_for_the_same_peers() -> None:
    q = DeferQueue(DeferParams(bound=0.005))
    q.hold(1, K1, 10.0, [A, B])
    q.hold(2, K1, 10.001, [A])  # joins: waits for what the first waits for
    q.hold(3, K2, 10.001, [A])
    assert q.ack(K1, A, 10.002) == []
    assert sorted(ids(q.ack(K1, B, 10.003))) == [1, 2]
    assert len(q) == 1
    (r,) = q.expire(10.006)
    assert r.packet_id == 3


def test_a_later_packet_keeps_its_own_bound() -> None:
    q = DeferQueue(DeferParams(bound=0.005))
    q.hold(1, K1, 10.0, [A])
    q.hold(2, K1, 10.003, [A])
    assert ids(q.expire(10.005)) == [1]
    assert q.next_deadline() == pytest.approx(10.008)
    assert ids(q.ack(K1, A, 10.006)) == [2]


def test_ack_of_an_unknown_key_or_peer_is_ignored() -> None:
    q = DeferQueue()
    q.hold(1, K1, 10.0, [A])
    assert q.ack(K2, A, 10.001) == []
    assert q.ack(K1, "c", 10.001) == []  # not one it waits for
    assert q.counters.unknown_acks == 2
    assert len(q) == 1


def test_no_live_peer_accepts_at_once() -> None:
    q = DeferQueue(DeferParams(fail=FailPolicy.CLOSED))
    (r,) = q.hold(1, K1, 10.0, [])
    assert (r.verdict, r.reason) == (Verdict.ACCEPT, Reason.NO_PEERS)
    assert len(q) == 0


def test_a_peer_going_down_releases_what_waited_only_for_it() -> None:
    q = DeferQueue()
    q.hold(1, K1, 10.0, [A, B])
    q.hold(2, K2, 10.0, [A])
    q.ack(K1, A, 10.001)
    (r,) = q.peer_down(B, 10.002)
    assert (r.packet_id, r.verdict, r.reason) == (1, Verdict.ACCEPT, Reason.PEER_GONE)
    assert len(q) == 1


@pytest.mark.parametrize(
    ("fail", "verdict", "counter"),
    [(FailPolicy.OPEN, Verdict.ACCEPT, "full_accepted"), (FailPolicy.CLOSED, Verdict.DROP, "full_dropped")],
)
def test_memory_is_bounded_beyond_it_the_fail_policy_at_once(fail: FailPolicy, verdict: Verdict, counter: str) -> None:
    q = DeferQueue(DeferParams(max_held=3, fail=fail))
    for i in range(3):
        assert q.hold(i, ("c", i), 10.0, [A]) == []
    (r,) = q.hold(3, ("c", 3), 10.0, [A])
    assert (r.packet_id, r.verdict, r.reason) == (3, verdict, Reason.FULL)
    assert len(q) == 3 and getattr(q.counters, counter) == 1
    q.ack(("c", 0), A, 10.001)
    assert q.hold(4, ("c", 4), 10.001, [A]) == []  # room again


def test_a_reused_packet_id_is_not_released_by_the_old_bound() -> None:
    """The kernel's ids restart with the queue: an id released before may come again."""
    q = DeferQueue(DeferParams(bound=0.005))
    q.hold(7, K1, 10.0, [A])
    q.ack(K1, A, 10.001)
    q.hold(7, K2, 10.002, [A])
    assert q.expire(10.005) == []  # the first 7's bound: not this packet's
    assert ids(q.expire(10.008)) == [7]


def test_a_duplicate_id_is_counted_and_kept_once() -> None:
    q = DeferQueue()
    q.hold(1, K1, 10.0, [A])
    assert q.hold(1, K1, 10.0, [A]) == []
    assert q.counters.duplicate_ids == 1 and len(q) == 1


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        DeferParams(bound=-1)


# --- every packet gets exactly one verdict, whatever happens ---------------------------

PEERS = ["a", "b", "c"]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.integers(0, 5), st.sets(st.sampled_from(PEERS))),
        st.tuples(st.just("ack"), st.integers(0, 5), st.sampled_from(PEERS)),
        st.tuples(st.just("down"), st.sampled_from(PEERS)),
        st.tuples(st.just("time"), st.floats(0, 0.01)),
    ),
    max_size=60,
)


@given(steps, st.sampled_from(list(FailPolicy)), st.integers(0, 6))
def test_every_held_packet_is_released_once(script: list[tuple], fail: FailPolicy, max_held: int) -> None:
    q = DeferQueue(DeferParams(bound=0.005, fail=fail, max_held=max_held))
    now = 0.0
    next_id = 0
    taken: set[int] = set()
    released: list[Release] = []
    for step in script:
        if step[0] == "hold":
            out = q.hold(next_id, step[1], now, step[2])
            taken.add(next_id)
            next_id += 1
        elif step[0] == "ack":
            out = q.ack(step[1], step[2], now)
        elif step[0] == "down":
            out = q.peer_down(step[1], now)
        else:
            now += step[1]
            out = q.expire(now)
            deadline = q.next_deadline()
            assert deadline is None or deadline > now  # nothing overdue is kept
        for r in out:
            if r.reason is Reason.BOUND:
                assert r.waited >= 0.005 - 1e-9  # never before its bound
            if r.reason is Reason.ACKED:
                assert r.verdict is Verdict.ACCEPT
            if r.reason in (Reason.BOUND, Reason.FULL):
                assert r.verdict is fail.verdict
        released += out
        assert len(q) <= max_held
    released += q.expire(now + 1)
    assert sorted(ids(released)) == sorted(taken)  # each exactly once
    assert len(q) == 0 and q.next_deadline() is None
