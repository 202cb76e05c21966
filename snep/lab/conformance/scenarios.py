"""The failure scenarios (docs/architecture.md), each a function of a started :class:`Harness`.

Names (``snep conformance --scenario NAME``); every one also exists as ``NAME+netem``,
the same with loss, duplication and reordering on the sync link (tc netem):

- ``primary-killed``: the primary crashes (every process SIGKILLed, cables dark);
- ``primary-links-cut``: the primary's cables are cut (its processes live on);
- ``backup-restart``: the backup crashes, comes back empty (as after a reboot) and
  resynchronizes; then the primary crashes;
- ``backup-dead-long``: the backup stays dead for long under traffic and churn: the
  primary keeps serving, its sync daemon's memory stays bounded;
- ``former-primary-returns``: the primary's cables are cut, the backup takes over;
  the former primary comes back (with stale kernel entries) as backup and must not
  disturb the new primary; then the new primary crashes and the former takes over;
- ``sync-link-split``: the sync link fails while both live, connections open and
  close meanwhile, the link heals, then the primary crashes;
- ``three-fw-two-failures``: three firewalls; the primary crashes, then the next one;
- ``second-sync-link``: two sync links; the main one fails at both ends, connections
  open meanwhile (synchronized over the second link), then the primary crashes;
- ``migrate-from-conntrackd``: the cluster starts on conntrackd and moves to snep one
  firewall at a time (docs/migration.md): a planned hand-over to the backup running
  snep beside conntrackd, the former primary's conntrackd replaced by snep, then the new
  primary crashes (snep only: the others are n/a).

Active-active (issue 18; every firewall forwards its own VRRP group's clients, the
stage of :mod:`snep.lab.aa_topology`; no +netem variants):

- ``aa-symmetric``: two firewalls, replies through the group's own firewall; fw1
  crashes and returns (takes its group back), then fw2 does the same;
- ``aa-asymmetric``: the same with asymmetric paths (client to server through one
  firewall, the replies through the other), the deferral on;
- ``aa-asymmetric-no-defer``: ``aa-asymmetric`` with ``[cluster.defer] enabled =
  false`` (snep only): it must fail, which shows that the scenario can;
- ``aa-three``: three firewalls, symmetric; fw1 crashes and returns.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from snep.lab import traffic
from snep.lab.conformance.aaharness import AAHarness
from snep.lab.conformance.harness import Check, Harness, Result
from snep.lab.conformance.impls import MigrationImpl, NotApplicable, make
from snep.lab.conformance.profile import Profile


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Harness], None]
    firewalls: int = 2
    sync_links: int = 1
    migration: bool = False  # starts on conntrackd and moves to the implementation under test
    active_active: bool = False  # on the active-active stage (run gets an AAHarness)
    asymmetric: bool = False  # (active-active) replies through another group's firewall
    defer: bool = True  # (active-active) the implementation defers new connections, if it can


def primary_killed(h: Harness) -> None:
    h.result.failovers.append(h.failover(h.topo.fw(1), "crash"))


def primary_links_cut(h: Harness) -> None:
    h.result.failovers.append(h.failover(h.topo.fw(1), "links"))


def backup_restart(h: Harness) -> None:
    topo, p = h.topo, h.profile
    fw1, fw2 = topo.fw(1), topo.fw(2)
    h.churn(p.churn)
    topo.crash(fw2)
    h.down.append(fw2)
    time.sleep(p.split)
    resync_s = h.restore(fw2, reboot=True)
    h.result.checks.append(Check("backup back in sync", True, f"{resync_s} s after restart",
                                 {"resync_s": resync_s}))
    time.sleep(p.sync_wait)
    h.result.failovers.append(h.failover(fw1, "crash", "fw1 crashed after fw2 came back"))


def backup_dead_long(h: Harness) -> None:
    topo, p = h.topo, h.profile
    fw1, fw2 = topo.fw(1), topo.fw(2)
    h.churn(p.churn)
    time.sleep(1.0)
    start = time.time()
    topo.crash(fw2)
    h.down.append(fw2)
    samples: list[int] = []
    while time.time() - start < p.dead_long:
        rss = h.sample_rss(fw1)
        if rss is not None:
            samples.append(rss)
        time.sleep(1.0)
    alive = h.check_alive("primary unaffected (TCP alive, churn served)", start)
    churn_ok = alive.numbers["churn_failed"] == 0 and alive.numbers["churn_ok"] > 0
    alive.ok = alive.ok and churn_ok and topo.master() is fw1
    h.result.checks.append(alive)
    if samples:
        growth = samples[-1] - samples[0]
        peak = max(samples) - samples[0]
        # bounded: no steady climb; a resend queue that kept every frame for a dead
        # backup grows by the event rate times the frame size for as long as it is dead
        half = len(samples) // 2
        late_growth = samples[-1] - samples[half] if half else 0
        ok = peak < 64 * 1024 and late_growth < 16 * 1024
        numbers: dict[str, object] = {
            "rss_start_kib": samples[0], "rss_end_kib": samples[-1], "rss_growth_kib": growth,
            "rss_peak_growth_kib": peak, "rss_late_growth_kib": late_growth,
            "seconds": round(time.time() - start, 1)}
        detail = f"RSS {samples[0]} -> {samples[-1]} KiB (peak +{peak} KiB, 2nd half +{late_growth} KiB)"
        counters = h.impl.counters(topo, fw1)
        if "resend_queue" in counters:  # snep: the queue itself stays within its bound
            numbers.update(resend_queue=counters["resend_queue"],
                           resend_queue_bound=p.resend_queue,
                           queue_drops=counters.get("queue_drops"))
            ok = ok and int(counters["resend_queue"]) <= p.resend_queue  # type: ignore[call-overload]
            detail += (f", resend queue {counters['resend_queue']}/{p.resend_queue}, "
                       f"{counters.get('queue_drops')} dropped for the dead peer")
        h.result.checks.append(Check("memory bounded", ok, detail, numbers))
    else:
        h.result.checks.append(Check("memory bounded", h.impl.daemon(fw1) is None and
                                     h.impl.name == "none", "no sync daemon to measure", {}))


def former_primary_returns(h: Harness) -> None:
    topo, p = h.topo, h.profile
    fw1, fw2 = topo.fw(1), topo.fw(2)
    h.result.failovers.append(h.failover(fw1, "links", "fw1 links cut"))
    h.churn(p.churn)
    time.sleep(p.split)  # the new primary's connections move on; fw1's entries go stale
    back = time.time()
    resync_s = h.restore(fw1, reboot=False)
    time.sleep(p.sync_wait)
    check = h.check_alive("former primary returned: new primary undisturbed", back)
    check.ok = check.ok and topo.master() is fw2
    check.numbers["resync_s"] = resync_s
    h.result.checks.append(check)
    h.result.failovers.append(h.failover(fw2, "crash", "fw2 crashed, fw1 takes over again"))


def sync_link_split(h: Harness) -> None:
    topo, p = h.topo, h.profile
    fw1, fw2 = topo.fw(1), topo.fw(2)
    h.churn(p.churn)
    topo.cut_sync(fw2)
    time.sleep(p.split / 2)
    h.open_more(p.extra_tcp)  # connections the backup cannot hear about now
    time.sleep(p.split / 2)
    healed = time.time()
    topo.heal_sync(fw2)
    h.wait_in_sync(fw2)
    time.sleep(p.sync_wait)
    h.result.checks.append(Check("sync link healed", True,
                                 f"{round(time.time() - healed, 1)} s before the failure", {}))
    h.result.failovers.append(h.failover(fw1, "crash", "fw1 crashed after the split healed"))


def second_sync_link(h: Harness) -> None:
    topo, p = h.topo, h.profile
    h.churn(p.churn)
    for fw in topo.firewalls:  # the main sync cable dies at both ends; the second one is left
        topo.cut_sync(fw, links=[0])
    time.sleep(p.split / 2)
    h.open_more(p.extra_tcp)  # must reach the backup over the second link
    time.sleep(p.split / 2)
    h.result.failovers.append(h.failover(topo.fw(1), "crash",
                                         "fw1 crashed, main sync link down"))


def migrate_from_conntrackd(h: Harness) -> None:
    """docs/migration.md's rolling migration: the cluster starts on conntrackd; the backup
    gets snep beside its conntrackd and takes over (conntrackd's states committed, snep
    primary); the former primary's conntrackd is replaced by snep, which resyncs from the
    new primary; then the new primary crashes and snep carries every connection over."""
    topo, p, impl = h.topo, h.profile, h.impl
    assert isinstance(impl, MigrationImpl)
    fw1, fw2 = topo.fw(1), topo.fw(2)
    h.churn(p.churn)
    impl.add_snep(topo, fw2)  # 1. the backup: snep beside conntrackd, on its own port
    h.open_more(p.extra_tcp)  # these reach fw2 through conntrackd
    time.sleep(p.sync_wait)
    impl.commit_conntrackd(topo, fw2)  # its kernel holds the states before the addresses move
    topo.watch_invalid(fw2, traffic.TCP_PORT)
    hand_over = h.failover(fw1, "stop", "fw1 steps down: fw2 takes over (conntrackd's states, snep primary)")
    h.result.failovers.append(hand_over)  # 2. the planned hand-over
    dropped = topo.invalid_drops(fw2, traffic.TCP_PORT)
    h.result.checks.append(Check("hand-over: no tracked packet dropped as invalid", dropped == 0,
                                 f"{dropped} packets of tracked connections dropped as invalid on fw2",
                                 {"tracked_invalid_drops": dropped}))
    impl.stop_conntrackd(topo, fw2)
    since = time.time()  # 3. the former primary: conntrackd replaced by snep, back as backup
    impl.stop_conntrackd(topo, fw1)
    impl.add_snep(topo, fw1, warm=True)  # step 4: and its kernel warm, as the guide says
    topo.start_keepalived(fw1)
    h.down.remove(fw1)
    h.wait_notify(fw1, "backup", since)
    h.wait_in_sync(fw1)
    h.result.checks.append(Check("fw1 on snep, in sync with fw2", True,
                                 f"{time.time() - since:.1f} s after conntrackd stopped",
                                 {"resync_s": round(time.time() - since, 2)}))
    h.open_more(p.extra_tcp)  # synchronized by snep alone
    time.sleep(p.sync_wait)
    h.result.failovers.append(h.failover(fw2, "crash", "fw2 crashed: fw1 takes over with snep"))


def three_fw_two_failures(h: Harness) -> None:
    topo, p = h.topo, h.profile
    h.result.failovers.append(h.failover(topo.fw(1), "crash", "fw1 crashed"))
    time.sleep(p.sync_wait)
    h.result.failovers.append(h.failover(topo.fw(2), "crash", "fw2 crashed"))


def aa_each_fails_and_returns(h: Harness) -> None:
    """With two firewalls each in turn, with three fw1 only (the CI's time): it crashes,
    its group moves to a survivor, it returns and takes its group back; then the run's
    own checks."""
    assert isinstance(h, AAHarness)
    p = h.profile
    if not all(c.ok for c in h.result.checks):  # the connections did not start: moves measure nothing
        h.conclude()
        return
    for k in (1, 2) if h.topo.n == 2 else (1,):
        fw = h.topo.fw(k)
        h.result.failovers.append(h.fail(fw, "crash", f"fw{k} crashed: group {k} to a survivor"))
        time.sleep(p.sync_wait)
        h.result.failovers.append(h.comes_back(fw))
        time.sleep(p.sync_wait)
    h.conclude()


BASE = [
    Scenario("primary-killed", "the primary crashes", primary_killed),
    Scenario("primary-links-cut", "the primary's cables are cut", primary_links_cut),
    Scenario("backup-restart", "the backup restarts empty, then the primary crashes",
             backup_restart),
    Scenario("backup-dead-long", "the backup stays dead: primary unaffected, memory bounded",
             backup_dead_long),
    Scenario("former-primary-returns",
             "the former primary returns with stale state, then the new primary crashes",
             former_primary_returns),
    Scenario("sync-link-split", "the sync link fails and heals, then the primary crashes",
             sync_link_split),
    Scenario("three-fw-two-failures", "three firewalls, two crashes in a row",
             three_fw_two_failures, firewalls=3),
    Scenario("second-sync-link", "two sync links; the main one fails, then the primary crashes",
             second_sync_link, sync_links=2),
    Scenario("migrate-from-conntrackd",
             "conntrackd to snep one firewall at a time, then the new primary crashes",
             migrate_from_conntrackd, migration=True),
]
ACTIVE_ACTIVE = [
    Scenario("aa-symmetric", "active-active, symmetric paths: either firewall fails and returns",
             aa_each_fails_and_returns, active_active=True),
    Scenario("aa-asymmetric", "active-active, asymmetric paths (defer on): either firewall fails "
             "and returns", aa_each_fails_and_returns, active_active=True, asymmetric=True),
    Scenario("aa-asymmetric-no-defer", "aa-asymmetric with the deferral off: must fail",
             aa_each_fails_and_returns, active_active=True, asymmetric=True, defer=False),
    Scenario("aa-three", "active-active, three firewalls: fw1 fails and returns",
             aa_each_fails_and_returns, firewalls=3, active_active=True),
]
SCENARIOS: dict[str, Scenario] = {s.name: s for s in BASE + ACTIVE_ACTIVE}
NAMES: list[str] = ([s.name for s in BASE] + [f"{s.name}+netem" for s in BASE]
                    + [s.name for s in ACTIVE_ACTIVE])


def run_scenario(name: str, impl_name: str, profile: Profile, *, keep_logs: bool = False,
                 workdir: Path | None = None) -> Result:
    """Run one scenario with one implementation; never raises for the scenario's failures."""
    if name not in NAMES:
        raise KeyError(f"unknown scenario {name!r} (known: {', '.join(NAMES)})")
    base, _, variant = name.partition("+")
    scenario = SCENARIOS[base]
    result = Result(scenario=name, impl=impl_name, profile=profile.name)
    started = time.monotonic()
    try:
        impl = make(impl_name, profile, migration=scenario.migration)
        harness: Harness
        if scenario.active_active:
            if not scenario.defer and not impl.defers:
                raise NotApplicable(f"{impl.name} has no deferral to turn off")
            harness = AAHarness(impl, profile, result, firewalls=scenario.firewalls,
                                asymmetric=scenario.asymmetric, defer=scenario.defer,
                                keep_logs=keep_logs, workdir=workdir)
        else:
            harness = Harness(impl, profile, result, firewalls=scenario.firewalls,
                              sync_links=scenario.sync_links, netem=variant == "netem",
                              keep_logs=keep_logs, workdir=workdir)
        with harness:
            try:
                harness.start()
                scenario.run(harness)
                result.finish()
            finally:
                if result.status != "pass":  # still "error" when an exception flies
                    result.logs = harness.log_tail()
    except NotApplicable as why:
        result.status, result.reason = "n/a", str(why)
    except Exception as error:  # the run broke: report it as an error with its cause
        result.status = "error"
        result.reason = f"{type(error).__name__}: {error}"
        result.logs = traceback.format_exc(limit=5) + "\n" + result.logs
    result.duration_s = round(time.monotonic() - started, 1)
    return result
