"""The failover figures computed from recorded samples (conntrack -E, ip monitor, the
traffic client's silences): data gap, kernel ready, late connections."""

from datetime import datetime

from snep.lab.conformance import measure

A = ("10.1.0.10", "10.2.0.10", 40000, 5001)
B = ("10.1.0.10", "10.2.0.10", 40002, 5001)

# conntrack -E -p tcp -o timestamp, as conntrack-tools 1.4.7 prints it
CT = """\
[1796032619.999873]	    [NEW] tcp      6 100 ESTABLISHED src=10.1.0.10 dst=10.2.0.10 sport=40000 dport=5001 src=10.2.0.10 dst=10.1.0.10 sport=5001 dport=40000 [ASSURED] mark=0 [USERSPACE] portid=32610
[1796032620.026974]	[DESTROY] tcp      6 99 ESTABLISHED src=10.1.0.10 dst=10.2.0.10 sport=40000 dport=5001 src=10.2.0.10 dst=10.1.0.10 sport=5001 dport=40000 [ASSURED] [USERSPACE] portid=3092802991
[1796032620.500000]	    [NEW] udp      17 30 src=10.1.0.10 dst=10.2.0.10 sport=40000 dport=5002 src=10.2.0.10 dst=10.1.0.10 sport=5002 dport=40000 mark=0
[1796032621.250000]	 [UPDATE] tcp      6 120 ESTABLISHED src=10.1.0.10 dst=10.2.0.10 sport=40002 dport=5001 src=10.2.0.10 dst=10.1.0.10 sport=5001 dport=40002 [ASSURED]
conntrack v1.4.7 (conntrack-tools): 4 flow events have been shown.
"""


def _stamp(t: float) -> str:
    """ip -ts's local-time stamp of ``t``."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S.%f")


def test_conntrack_events_are_read_in_the_original_direction():
    events = measure.parse_ct_events(CT)
    assert [(e.kind, e.key) for e in events] == [("NEW", A), ("DESTROY", A), ("UPDATE", B)]
    assert events[0].time == 1796032619.999873


def test_addresses_up_is_when_the_last_one_came_and_ignores_deletions_and_the_past():
    t0 = 1796032623.0
    text = "\n".join([
        f"[{_stamp(t0 - 5)}] 3: c0    inet 10.1.0.254/24 scope global secondary c0\\       valid_lft forever",
        f"[{_stamp(t0 + 0.1)}] Deleted 3: c0    inet 10.1.0.254/24 scope global c0\\       valid_lft forever",
        f"[{_stamp(t0 + 0.5)}] 3: c0    inet 10.1.0.254/24 scope global secondary c0\\       valid_lft forever",
        f"[{_stamp(t0 + 0.25)}] 4: s0    inet 10.2.0.254/24 scope global secondary s0\\       valid_lft forever",
        f"[{_stamp(t0 + 0.9)}] 4: s0    inet 10.2.0.254/24 scope global secondary s0\\       valid_lft forever",
        f"[{_stamp(t0 + 0.3)}] 4: s0    inet 10.2.0.7/24 scope global s0\\       valid_lft forever",
    ])
    up = measure.addresses_up(text, ("10.1.0.254", "10.2.0.254"), since=t0)
    assert up is not None and abs(up - (t0 + 0.5)) < 1e-3
    assert measure.addresses_up(text, ("10.1.0.254", "10.2.0.9"), since=t0) is None


def test_kernel_complete_warm_commit_recreated_and_missing():
    events = measure.parse_ct_events(CT)
    snap = 1796032619.5
    # both present at the snapshot, but A was created anew and then deleted: missing
    assert measure.kernel_complete([A, B], [A, B], snap, events) is None
    # B alone, present at the snapshot, only updated since: complete at the snapshot
    assert measure.kernel_complete([B], [B], snap, events) == snap
    # A created after the snapshot (a commit) and kept: complete at its NEW
    created = [e for e in events if e.kind == "NEW"]
    assert measure.kernel_complete([A, B], [B], snap, created) == created[0].time
    # what happened before the snapshot is the snapshot's business
    assert measure.kernel_complete([A], [A], snap + 10, events) == snap + 10
    # nothing tracked: complete at once
    assert measure.kernel_complete([], [], snap, events) == snap


def test_data_gap_is_the_longest_silence_ending_after_the_failure():
    stalls = [(100.0, 100.5), (200.0, 203.25), (204.0, 204.4)]
    assert measure.data_gap(stalls, 201.0) == 3.25
    assert measure.data_gap(stalls, 300.0) == 0.0


def test_late_when_the_first_retransmission_after_the_takeover_was_dropped():
    # ci profile, measured: addresses up after ~2.9 s of silence, the echo after 3.25 s:
    # the retransmission at ~3.2 s got through
    assert not measure.late(3.25, 2.95)
    # addresses up at 3.15 s, the ~3.2 s retransmission dropped, echo at 6.6 s: late
    assert measure.late(6.6, 3.15)
    # snep-commit, measured: the kernel ready 0.15 s after the addresses, 46 invalid
    # drops, echo after 6.84 s (a slower ladder: the ~3.31 s retransmission was dropped)
    assert measure.late(6.84, 3.2)
    # addresses up at 3.3 s, after the ~3.2 s retransmission: 6.6 s is the first one after
    assert not measure.late(6.6, 3.3)
    # fast detection: addresses up at 0.35 s; 0.65 s passes, 1.5 s is one retransmission late
    assert not measure.late(0.65, 0.35)
    assert measure.late(1.5, 0.35)
    # new data ended the silence before any retransmission could: never late
    assert not measure.late(0.3, 0.25)


def test_late_flows_counts_each_flow_by_its_own_silence():
    failed, up = 1000.0, 1002.9  # the addresses came up 2.9 s after the failure
    on_time = [(999.95, 1003.2)]  # silent since just before the failure
    dropped = [(999.5, 1000.2), (999.95, 1006.55)]  # an earlier short silence, then late
    untouched: list[tuple[float, float]] = []
    assert measure.late_flows([on_time, dropped, untouched], failed, up) == 1


def test_an_overflowing_recorder_is_noticed():
    assert measure.events_lost(CT + "WARNING: We have hit ENOBUFS! We are losing events.\n")
    assert not measure.events_lost(CT)
