"""How much traffic a run carries and how long its phases last.

``ci`` keeps the whole suite within a CI budget (a few seconds per phase, 50 TCP
connections); ``full`` is the complete matrix with more flows and longer phases;
``fast`` is ``ci`` with fast failure detection (keepalived adverts every 0.1 s) and a
bound on the gap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    tcp: int  # long-lived TCP connections opened at the start
    udp: int  # UDP flows
    interval: float  # seconds between two records of one flow
    advert_int: float  # keepalived advertisement interval
    sync_wait: float  # seconds of traffic before a failure (state gets synchronized)
    settle_max: float  # seconds after a takeover to wait for every flow to resume
    dead_long: float  # scenario 3: how long the backup stays dead under traffic
    split: float  # scenario 5: how long the sync link stays cut
    churn: float  # short TCP connections per second during the long phases
    extra_tcp: int  # connections opened while the sync link is cut (scenario 5)
    resend_queue: int = 16384  # snep's resend queue bound (small in ci: the bound is hit)
    loss: int = 5  # percent of sync frames lost, duplicated, reordered in +netem runs
    duplicate: int = 5
    reorder: int = 25
    max_gap: float | None = None  # a failover passes only if every surviving gap is within this


CI = Profile(name="ci", tcp=50, udp=10, interval=0.1, advert_int=1.0, sync_wait=2.0,
             settle_max=12.0, dead_long=15.0, split=4.0, churn=20.0, extra_tcp=10,
             resend_queue=256)
FULL = Profile(name="full", tcp=200, udp=50, interval=0.05, advert_int=1.0, sync_wait=5.0,
               settle_max=20.0, dead_long=120.0, split=20.0, churn=100.0, extra_tcp=50)
# fast detection: VRRPv3 adverts every 100 ms, so the backup declares the master dead after
# ~0.35 s (3 adverts + skew); every gap must then stay under 1 s (the retransmission at
# 0.6 s of silence gets through)
FAST = Profile(name="fast", tcp=50, udp=10, interval=0.1, advert_int=0.1, sync_wait=2.0,
               settle_max=8.0, dead_long=15.0, split=4.0, churn=20.0, extra_tcp=10,
               resend_queue=256, max_gap=1.0)
PROFILES = {p.name: p for p in (CI, FULL, FAST)}
