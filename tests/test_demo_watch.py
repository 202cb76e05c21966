"""The demos look at the connections only once TCP has sent again after the takeover
(snep.lab.demo.watch_until): a takeover that just missed a retransmission left the
connections silent until the next, twice as far, and the active-active demo, looking
at 6 s, counted group 1's carried-on connections as lost (its takeover came 3.3 s after
the failure, the retransmissions at 3.1 and 6.5 s)."""

from __future__ import annotations

from snep.lab.demo import LAB_RTO, watch_until


def retransmissions(acked_at: float, rto: float, until: float) -> list[float]:
    """When a connection silent since ``acked_at`` sends again: TCP doubles its timeout."""
    times, wait, at = [], rto, acked_at + rto
    while at <= until:
        times.append(at)
        wait *= 2
        at += wait
    return times


def first_after(times: list[float], t: float) -> float:
    return next(x for x in times if x >= t)


def test_a_takeover_that_just_missed_a_retransmission_is_watched_until_the_next():
    failed_at, watch = 1000.0, 6.0
    # the failing runs: takeover 3.25-3.46 s after the failure, the segment resent at 6.4-6.7 s
    for rto in (0.2, 0.205, 0.21, 0.22, LAB_RTO):
        for acked_before in (0.0, 0.03):  # (the last acknowledged segment, just before the failure)
            times = retransmissions(failed_at - acked_before, rto, failed_at + 60)
            for ms in range(500, 5001, 5):  # keepalived's takeover: 0.5 s to 5 s after the failure
                takeover_at = failed_at + ms / 1000
                resent = first_after(times, takeover_at)
                until = watch_until(failed_at, takeover_at, watch)
                assert until >= resent + 0.25, (rto, acked_before, ms, resent - failed_at, until - failed_at)
                assert until >= failed_at + watch


def test_the_watch_is_what_was_asked_when_tcp_resends_within_it():
    failed_at = 50.0
    # a takeover at 2 s: the retransmission at 3.0-3.2 s gets through, 6 s are enough
    assert watch_until(failed_at, failed_at + 2.0, 6.0) == failed_at + 6.0
    # no takeover at all: nothing to wait for but the watch
    assert watch_until(failed_at, None, 6.0) == failed_at + 6.0
    # a late takeover (3.4 s): longer than asked, and bounded (twice the outage, an RTO, the echo)
    until = watch_until(failed_at, failed_at + 3.4, 6.0) - failed_at
    assert 6.8 < until <= 2 * 3.4 + LAB_RTO + 1.0
