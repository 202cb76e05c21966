"""What a failover did, computed from recorded samples (pure functions, unit-tested).

The harness records, on every firewall that may take over, the address events of
``ip -ts -o monitor address`` (when the virtual addresses came up) and the conntrack
events of ``conntrack -E -o timestamp`` (when tracked connections' entries appeared or
went), plus a snapshot of its kernel taken just before the failure. From these and the
traffic client's silences, this module derives:

- the data gap: the longest silence of a tracked connection that ends after the failure;
- kernel ready: when the new primary's kernel last gained a tracked connection's entry
  that it then kept, relative to its virtual addresses coming up (negative: it was
  complete before, as with a warm kernel);
- late: whether a connection's silence went past the first TCP retransmission after
  the virtual addresses came up, i.e. that retransmission met a kernel that dropped it.
  Linux retransmits after RTO = srtt + 200 ms and then doubles it; here the echoes
  came back at 3.25 and 6.6 s of silence (docs/conformance.md's ci runs), which an RTO of
  0.21 s fits (0.21, 0.63, 1.47, 3.15, 6.51 s). Half a backoff step of slack keeps
  that estimate from deciding, except when the addresses came up within ~0.1 s of a
  retransmission (then the invalid drops on the new primary tell).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

Key = tuple[str, str, int, int]  # original direction: src, dst, sport, dport

RTO = 0.21  # Linux's first retransmission timeout on the lab's links: 200 ms + srtt

_CT_LINE = re.compile(r"^\[(\d+\.\d+)\]\s+\[(NEW|UPDATE|DESTROY)\]\s+(\S+)\s+(.*)$")
_ADDR_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?\]\s+(Deleted\s+)?\d+:\s+\S+\s+inet\s+([\d.]+)/")


@dataclass(frozen=True)
class CtEvent:
    time: float
    kind: str  # NEW, UPDATE, DESTROY
    key: Key


def parse_ct_events(text: str, proto: str = "tcp") -> list[CtEvent]:
    """The events of ``conntrack -E -o timestamp`` output for ``proto``, in order."""
    events = []
    for line in text.splitlines():
        m = _CT_LINE.match(line.strip())
        if not m or m.group(3) != proto:
            continue
        kv: dict[str, str] = {}
        for word in m.group(4).split():
            k, sep, v = word.partition("=")
            if sep:
                kv.setdefault(k, v)  # the first occurrence: the original direction
        try:
            key = (kv["src"], kv["dst"], int(kv["sport"]), int(kv["dport"]))
        except (KeyError, ValueError):
            continue
        events.append(CtEvent(float(m.group(1)), m.group(2), key))
    return events


def events_lost(text: str) -> bool:
    """Whether ``conntrack -E`` said its socket overflowed (then kernel ready is unknown)."""
    return "ENOBUFS" in text


def addresses_up(text: str, addresses: Sequence[str], since: float) -> float | None:
    """When all of ``addresses`` were up (the latest of their additions after ``since``)
    in ``ip -ts -o monitor address`` output (local time stamps); None if one never came."""
    first: dict[str, float] = {}
    for line in text.splitlines():
        m = _ADDR_LINE.match(line.strip())
        if not m or m.group(3) or m.group(4) not in addresses:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() + float(m.group(2) or 0)
        if t >= since:
            first.setdefault(m.group(4), t)
    return max(first.values()) if len(first) == len(addresses) else None


def kernel_complete(tracked: Iterable[Key], present: Iterable[Key], snapshot_at: float,
                    events: Sequence[CtEvent]) -> float | None:
    """When the kernel last gained a tracked entry that it kept: ``snapshot_at`` for one
    present in the snapshot and untouched since; the time of its last NEW for one created
    (or deleted and created anew) afterwards. None when one is missing at the end."""
    since: dict[Key, float | None] = {k: None for k in tracked}
    for k in present:
        if k in since:
            since[k] = snapshot_at
    for ev in sorted(events, key=lambda e: e.time):
        if ev.key not in since or ev.time < snapshot_at:
            continue
        if ev.kind == "NEW":
            since[ev.key] = ev.time
        elif ev.kind == "DESTROY":
            since[ev.key] = None
    times = list(since.values())
    if any(t is None for t in times):
        return None
    return max((t for t in times if t is not None), default=snapshot_at)


def data_gap(stalls: Iterable[Sequence[float]], failed_at: float) -> float:
    """The longest silence (start, end) of one flow that ends after the failure."""
    return max((end - start for start, end in stalls if end > failed_at), default=0.0)


def retransmission_after(silent_for: float, rto: float = RTO) -> tuple[float, float]:
    """The first retransmission at or after ``silent_for`` seconds of silence (backoff
    from ``rto``), and the wait until the next one: (0.6, 0.8) for 0.5 with rto 0.2."""
    at, step = rto, rto
    while at < silent_for:
        step *= 2
        at += step
    return at, 2 * step


def late(gap: float, silent_at_takeover: float, rto: float = RTO) -> bool:
    """Whether a connection's silence of ``gap`` seconds went past the first
    retransmission after the takeover (it had been silent ``silent_at_takeover``
    seconds when the addresses came up): it ended nearer the next one than that one."""
    first, step = retransmission_after(silent_at_takeover, rto)
    return gap > first + step / 2


def late_flows(stalls: Iterable[Sequence[Sequence[float]]], failed_at: float, takeover_at: float,
               rto: float = RTO) -> int:
    """How many flows (each given by its silences) had their failover silence end past the
    first retransmission after ``takeover_at``."""
    count = 0
    for flow in stalls:
        spans = [(start, end) for start, end in flow if end > failed_at]
        if not spans:
            continue
        start, end = max(spans, key=lambda s: s[1] - s[0])
        count += late(end - start, takeover_at - start, rto)
    return count
