"""One run of a scenario: the topology, the traffic, the failures and what they did.

The harness owns a :class:`~snep.lab.topology.Topology` and a traffic client. A scenario
calls :meth:`Harness.failover` for each failure that must move the primary role; that
measures, for the connections that existed (and were synchronized) before the failure:
how many TCP connections and UDP flows resume after the takeover, the failover gap (the
longest silence of a connection across the failure), how long VRRP took, how long the
new primary's notify took, how many established conntrack entries of the failed
primary are missing on the new one ("entries lost"), when the new primary's kernel held
every tracked connection relative to its virtual addresses coming up, how many packets
it dropped as invalid, and how many connections' silence went past the first TCP
retransmission after the takeover (:mod:`snep.lab.conformance.measure`).

A scenario passes only when every tracked TCP connection is alive after every failover
and no entry is lost (and its own checks, e.g. bounded memory, hold).
"""

from __future__ import annotations

import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from snep.lab import ctwatch, traffic
from snep.lab.conformance import measure
from snep.lab.conformance.impls import Impl, NotApplicable, notify_log, rss_kib
from snep.lab.conformance.profile import Profile
from snep.lab.topology import (
    CLIENT_IP,
    CLIENT_VIP,
    SERVER_IP,
    SERVER_VIP,
    Firewall,
    Topology,
    TopologyError,
)


@dataclass
class Failover:
    """What one failure did to the tracked connections."""

    label: str
    victim: str
    new_primary: str
    takeover_s: float  # failure -> the new primary holds the virtual addresses
    notify_s: float | None  # duration of the new primary's "primary" notify
    tcp_alive: int
    tcp_total: int
    udp_alive: int
    udp_total: int
    gap_median_s: float | None  # over the TCP connections that survived
    gap_max_s: float | None
    entries_before: int  # established TCP entries of tracked connections on the victim
    entries_lost: int  # of those, missing on the new primary after the takeover
    invalid_drops: int = 0  # packets the new primary dropped as invalid after the failure
    tracked_invalid_drops: int = 0  # of those, packets of the long-lived connections' port
    churn_invalid_drops: int = 0  # and of the short connections' port (the churn)
    ready_s: float | None = None  # its kernel complete - its addresses up (< 0: before); None: never
    events_lost: bool = False  # the conntrack event recorder overflowed: ready_s is unknown
    late_tcp: int = 0  # surviving connections silent past the first retransmission after the takeover
    gap_bound_s: float | None = None  # the profile's bound on gap_max_s (fast detection)

    @property
    def ok(self) -> bool:
        within = self.gap_bound_s is None or (self.gap_max_s or 0.0) <= self.gap_bound_s
        return self.tcp_alive == self.tcp_total and self.entries_lost == 0 and within


@dataclass
class Check:
    """A verdict that is not a failover (e.g. "primary unaffected while backup is dead")."""

    label: str
    ok: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    scenario: str
    impl: str
    profile: str
    status: str = "error"  # pass, fail, n/a, error
    reason: str = ""
    failovers: list[Failover] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    duration_s: float = 0.0
    impairment: str = ""  # what impaired the sync link (+netem runs)
    logs: str = ""

    def finish(self) -> None:
        bad = [f.label for f in self.failovers if not f.ok] + [c.label for c in self.checks
                                                                 if not c.ok]
        self.status = "fail" if bad else "pass"
        self.reason = ("failed: " + "; ".join(bad)) if bad else ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for fo, raw in zip(self.failovers, data["failovers"]):
            raw["ok"] = fo.ok
        return data


class Harness:
    """Topology + traffic + implementation for one scenario run."""

    def __init__(self, impl: Impl, profile: Profile, result: Result, *, firewalls: int = 2,
                 netem: bool = False, sync_links: int = 1, keep_logs: bool = False,
                 workdir: Path | None = None) -> None:
        if firewalls > impl.max_firewalls:
            raise NotApplicable(f"{impl.name} supports at most {impl.max_firewalls} firewalls "
                                f"in this mode (FT-FW over UDP has one peer)")
        self.impl, self.profile, self.netem, self.result = impl, profile, netem, result
        self.topo: Topology = self.make_topology(firewalls, sync_links=sync_links, advert_int=profile.advert_int,
                                       notify=lambda fw: impl.notify(self.topo, fw),
                                       notify_fifo=impl.notify_fifo, keep_logs=keep_logs,
                                       workdir=workdir)
        self.down: list[Firewall] = []  # crashed or cut off: not candidates for master
        self.traffic: traffic.TrafficClient | traffic.Clients | None = None
        self.tracked: dict[int, tuple[str, int]] = {}  # TCP flow id -> (client, port): must survive
        self.udp: set[int] = set()

    def make_topology(self, firewalls: int, **kwargs: Any) -> Topology:
        """The stage (the primary/backup one; the active-active harness builds its own)."""
        return Topology(firewalls, **kwargs)

    def __enter__(self) -> Harness:
        self.topo.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.topo.__exit__(*exc)

    # ---- start-up ----

    def start(self) -> None:
        """Daemons everywhere, fw1 elected first (it is the primary), then traffic."""
        topo, impl = self.topo, self.impl
        for fw in topo.firewalls:
            impl.start(topo, fw)
        for fw in topo.firewalls:
            impl.wait_started(topo, fw)
        if self.netem:
            p = self.profile
            self.result.impairment = topo.impair_sync(loss=p.loss, duplicate=p.duplicate,
                                                      reorder=p.reorder)
        since = time.time()
        topo.start_keepalived(topo.fw(1))
        topo.wait_master(topo.fw(1), timeout=10 + 5 * self.profile.advert_int)
        self.wait_notify(topo.fw(1), "primary", since)
        for fw in topo.firewalls[1:]:
            topo.start_keepalived(fw)
        for fw in topo.firewalls[1:]:
            self.wait_notify(fw, "backup", since)
        self.traffic = traffic.start(topo, tcp=self.profile.tcp, udp=self.profile.udp,
                                     interval=self.profile.interval)
        self._track(self.traffic.snap())
        for fw in topo.firewalls[1:]:
            self.wait_in_sync(fw)
        time.sleep(self.profile.sync_wait)

    def _track(self, snap: dict[str, Any]) -> None:
        for flow in snap["flows"]:
            if flow["error"]:
                continue
            if flow["kind"] == "tcp":
                self.tracked.setdefault(flow["id"], (flow.get("src") or CLIENT_IP, flow["sport"]))
            else:
                self.udp.add(flow["id"])

    def open_more(self, tcp: int) -> None:
        """Open more long-lived connections; they are tracked like the first ones."""
        assert self.traffic is not None
        self.traffic.open(tcp=tcp)
        self._track(self.traffic.snap())

    def wait_notify(self, fw: Firewall, state: str, since: float, timeout: float = 20.0) -> float:
        """Wait until keepalived's notify ``state`` on ``fw`` finished; its duration."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            starts = [t for t, what, s in notify_log(fw) if what == "start" and s == state
                      and t >= since]
            dones = [t for t, what, s in notify_log(fw) if what == "done" and s == state
                     and t >= since]
            if starts and dones and dones[-1] >= starts[0]:
                return dones[-1] - starts[0]
            time.sleep(0.05)
        raise TopologyError(f"{fw.name}: no '{state}' notify finished within {timeout:g} s "
                            f"(see {fw.dir}/notify.log, keepalived.log)")

    def wait_in_sync(self, fw: Firewall, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.impl.in_sync(self.topo, fw)
            if ready is None or ready:
                return
            time.sleep(0.2)
        raise TopologyError(f"{fw.name} did not report in sync within {timeout:g} s")

    # ---- failures ----

    def failover(self, victim: Firewall, how: str, label: str = "") -> Failover:
        """Fail ``victim`` (the primary): "crash", "links", or "stop" (a planned hand-over:
        its keepalived stops); measure the takeover."""
        topo = self.topo
        acts = {"crash": topo.crash, "links": topo.fail_links, "stop": topo.step_down}
        if how not in acts:
            raise ValueError(f"unknown failure {how!r}")

        def fail() -> None:
            acts[how](victim)
            self.down.append(victim)

        return self.move(
            victim, fail,
            lambda: topo.wait_master(exclude=self.down, timeout=10 + 5 * self.profile.advert_int),
            vips=(CLIENT_VIP, SERVER_VIP),
            candidates=[fw for fw in topo.firewalls if fw not in self.down and fw is not victim],
            label=label or f"{victim.name} {dict(crash='crashed', links='links cut', stop='stepped down')[how]}")

    def move(self, source: Firewall, act: Callable[[], None], takeover: Callable[[], Firewall], *,
             vips: Sequence[str], candidates: Sequence[Firewall], label: str) -> Failover:
        """Measure one move of traffic off ``source`` (its failure, or its hand-over of a
        group to a returning home): ``act`` does it, ``takeover`` waits for and returns the
        firewall that holds the addresses ``vips`` now (one of ``candidates``)."""
        topo = self.topo
        assert self.traffic is not None
        endpoints = set(self.tracked.values())
        before = {k for k, state in topo.conntrack_tcp(source, dport=traffic.TCP_PORT).items()
                  if state == "ESTABLISHED" and (k[0], k[2]) in endpoints and k[1] == SERVER_IP}
        watches = {fw.name: self._watch(fw) for fw in candidates}
        counted = (None, traffic.TCP_PORT, traffic.CHURN_PORT)  # all, tracked, churn
        drops_before = {fw.name: topo.invalid_drop_counts(fw, counted) for fw in candidates}
        # a random point of the advert period: the harness's own timing would otherwise
        # fail one implementation's runs at a steady phase of VRRP (its takeover is 3
        # adverts + skew after the last advert heard) and bias its takeover times
        time.sleep(random.uniform(0.0, self.profile.advert_int))
        t_fail = time.time()
        act()
        new = takeover()
        t_master = time.time()
        try:
            notify_s: float | None = self.wait_notify(new, "primary", t_fail - 1.0)
        except TopologyError:
            notify_s = None
        snap = self._wait_resumed(t_master, t_fail + self.profile.settle_max)
        now = snap["time"]
        window = max(1.0, 5 * self.profile.interval)
        flows = {f["id"]: f for f in snap["flows"]}

        def alive(fid: int) -> bool:
            f = flows[fid]
            return not f["error"] and f["last_rx"] > t_master and now - f["last_rx"] < window

        tcp_alive = [fid for fid in self.tracked if alive(fid)]
        gaps = [measure.data_gap(flows[fid]["stalls"], t_fail) for fid in tcp_alive]
        after = topo.conntrack_tcp(new, dport=traffic.TCP_PORT)
        (new.dir / f"conntrack-after-{t_fail:.0f}.txt").write_text(
            topo.exec(new.ns, ["conntrack", "-L"], check=False).stdout)
        for fw in candidates:
            self._unwatch(fw)
        snapshot_at, present = watches[new.name]
        addr_text, events = self._recorded(new)
        t_up = measure.addresses_up(addr_text, vips, t_fail) or t_master
        ready = measure.kernel_complete(before, present, snapshot_at, events) if events is not None else None
        late = measure.late_flows([flows[fid]["stalls"] for fid in tcp_alive], t_fail, t_up)
        drops = [a - b for a, b in zip(topo.invalid_drop_counts(new, counted), drops_before[new.name])]
        fifo = self.impl.notify_fifo(new) is not None  # the notify command only timestamps
        return Failover(
            label=label, victim=source.name, new_primary=new.name,
            takeover_s=round(t_up - t_fail, 2),
            notify_s=round(notify_s, 3) if notify_s is not None and not fifo else None,
            tcp_alive=len(tcp_alive), tcp_total=len(self.tracked),
            udp_alive=sum(1 for fid in self.udp if alive(fid)), udp_total=len(self.udp),
            gap_median_s=round(statistics.median(gaps), 2) if gaps else None,
            gap_max_s=round(max(gaps), 2) if gaps else None,
            entries_before=len(before), entries_lost=len(before - set(after)),
            invalid_drops=drops[0], tracked_invalid_drops=drops[1], churn_invalid_drops=drops[2],
            ready_s=round(ready - t_up, 2) if ready is not None else None,
            events_lost=events is None,
            late_tcp=late, gap_bound_s=self.profile.max_gap,
        )

    def _watch(self, fw: Firewall) -> tuple[float, set[measure.Key]]:
        """Start recording ``fw``'s address and tracked-port conntrack events, then take
        a snapshot of its kernel (the events cover what changes after it)."""
        topo, n = self.topo, len(self.result.failovers)
        topo.watch_invalid(fw, traffic.TCP_PORT)
        topo.watch_invalid(fw, traffic.CHURN_PORT)
        topo.spawn(fw.ns, ["ip", "-ts", "-o", "monitor", "address"], name="watch-addr", fw=fw,
                   log=fw.dir / f"addr-events-{n}.txt")
        # snep.lab.ctwatch rather than conntrack -E, which loses events at a commit
        events = fw.dir / f"ct-events-{n}.txt"
        topo.spawn(fw.ns, [sys.executable, "-m", "snep.lab.ctwatch", "--dport", str(traffic.TCP_PORT)],
                   name="watch-ct", fw=fw, log=events)
        deadline = time.time() + 10
        while ctwatch.SUBSCRIBED not in events.read_text(errors="replace") and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)  # (ip monitor subscribed too before the snapshot)
        snapshot_at = time.time()
        return snapshot_at, set(topo.conntrack_tcp(fw, dport=traffic.TCP_PORT))

    def _unwatch(self, fw: Firewall) -> None:
        for name in ("watch-addr", "watch-ct"):
            self.topo.kill(fw, name, signal.SIGTERM)

    def _recorded(self, fw: Firewall) -> tuple[str, list[measure.CtEvent] | None]:
        """What ``fw``'s recorders wrote: address events (text), tracked conntrack events
        (None when the recorder lost some)."""
        n = len(self.result.failovers)
        addr = (fw.dir / f"addr-events-{n}.txt").read_text(errors="replace")
        ct = (fw.dir / f"ct-events-{n}.txt").read_text(errors="replace")
        return addr, None if measure.events_lost(ct) else measure.parse_ct_events(ct)

    def _wait_resumed(self, t_master: float, deadline: float) -> dict[str, Any]:
        """Poll the traffic until every tracked TCP flow got an echo after the takeover."""
        assert self.traffic is not None
        while True:
            snap = self.traffic.snap()
            flows = {f["id"]: f for f in snap["flows"]}
            if all(flows[fid]["last_rx"] > t_master for fid in self.tracked) \
                    or time.time() >= deadline:
                return snap
            time.sleep(0.5)

    def check_alive(self, label: str, since: float) -> Check:
        """Are all tracked TCP connections alive now (echo after ``since``, and recent)?"""
        assert self.traffic is not None
        snap = self._wait_resumed(since, time.time() + self.profile.settle_max)
        now = snap["time"]
        window = max(1.0, 5 * self.profile.interval)
        flows = {f["id"]: f for f in snap["flows"]}
        alive = sum(1 for fid in self.tracked if not flows[fid]["error"]
                    and now - flows[fid]["last_rx"] < window)
        churn = snap["churn"]
        return Check(label, alive == len(self.tracked),
                     f"{alive}/{len(self.tracked)} TCP alive",
                     {"tcp_alive": alive, "tcp_total": len(self.tracked),
                      "churn_ok": churn["ok"], "churn_failed": churn["failed"]})

    def restore(self, fw: Firewall, *, reboot: bool) -> float:
        """Bring ``fw`` back as a backup (after a crash: as after a reboot); seconds to sync."""
        topo = self.topo
        since = time.time()
        if reboot:
            topo.reboot_state(fw)
            topo.heal_links(fw)
            self.impl.start(topo, fw)
            self.impl.wait_started(topo, fw)
            topo.start_keepalived(fw)
        else:
            topo.heal_links(fw)
        if fw in self.down:
            self.down.remove(fw)
        self.wait_notify(fw, "backup", since)
        self.wait_in_sync(fw)
        return round(time.time() - since, 2)

    def sample_rss(self, fw: Firewall) -> int | None:
        return rss_kib(self.impl.daemon(fw))

    def churn(self, rate: float) -> None:
        assert self.traffic is not None
        self.traffic.churn(rate)

    def log_tail(self, names: Iterable[str] = ("sync.log", "keepalived.log", "notify.log"),
                 lines: int = 15) -> str:
        """The end of each firewall's logs, to explain a failure."""
        out = []
        for fw in self.topo.firewalls:
            for name in names:
                path = fw.dir / name
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"--- {fw.name}/{name}\n" + "\n".join(tail))
        return "\n".join(out)
