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
  Linux retransmits after RTO = srtt + 200 ms and doubles it, so a silence that a
  retransmission ends lasts RTO * (2^k - 1): here ~3.25 and ~6.6 s (k = 4, 5). The
  gap says which k ended it and, scaled by itself, when the retransmission before
  that one went out; if that was after the addresses came up, it was dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

Key = tuple[str, str, int, int]  # original direction: src, dst, sport, dport

RTO = 0.215  # Linux's first retransmission timeout on the lab's links: 200 ms + srtt
SLACK = 0.02  # a retransmission this soon after the addresses came up may predate the GARP

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


def late(gap: float, silent_at_takeover: float, rto: float = RTO) -> bool:
    """Whether a connection's silence of ``gap`` seconds went past the first
    retransmission after the takeover (it had been silent ``silent_at_takeover``
    seconds when the addresses came up): the retransmission before the one that ended
    the silence went out after the addresses came up. A gap that no retransmission
    ended (new data did, k = 1) is never late."""
    k = max(1, round(math.log2(gap / rto + 1)))
    previous = gap * (2 ** (k - 1) - 1) / (2**k - 1)  # the ladder scaled to this gap
    return previous > silent_at_takeover + SLACK


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
