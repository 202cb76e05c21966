"""Wire codec figures: entries encoded and decoded per second (one core), bytes per entry.

    .venv/bin/python bench/bench_wire.py [--count N] [--repeat R]

Prints, for plain (non-NAT) ESTABLISHED TCP entries and for a mixed workload:
entries/s through ``encode_frames`` (STATE frames packed to the default MTU) and
through ``decode_frame`` (frame by frame, events handed on and dropped, as a receiver
that applies each frame does); then the same decoding with every decoded entry kept
alive, which adds the cost of Python's cyclic garbage collector walking a growing
heap, with the default thresholds and with ``gc.set_threshold(50_000, 20, 100)`` (a
runtime concern: see docs/wire.md "Speed"). Best of ``--repeat`` runs.

Bytes per synchronized entry are the STATE message plus its share of the frame
header, beside what conntrackd (FT-FW, conntrack-tools src/build.c ``ct2msg``)
sends for the same entry; ``conntrackd_bytes`` below follows ``ct2msg`` attribute by
attribute (docs/wire.md "Size" shows the sum).
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from snep.entry import (
    Entry,
    Event,
    EventKind,
    Proto,
    Status,
    TcpInfo,
    make_entry,
    make_tuple,
)
from snep.wire.auth import Key, Keyring
from snep.wire.codec import HEADER_SIZE, decode_frame, encode_frames, encode_message
from snep.wire.messages import DEFAULT_MTU, MessageType

STATE = MessageType.STATE

# --- conntrackd's FT-FW message size (conntrack-tools include/network.h, src/build.c) ---

NETHDR_SIZE = 8  # struct nethdr: version:4 type:4, flags, len (u16), seq (u32)


def _nta(value_size: int) -> int:
    """One attribute: struct netattr (nta_len u16, nta_attr u16) + value, 4-byte aligned."""
    return (4 + value_size + 3) & ~3


def conntrackd_bytes(entry: Entry, *, mark: bool = True, window_tracking: bool = False) -> int:
    """Bytes of conntrackd's FT-FW message for ``entry``, as ``ct2msg`` builds it.

    ``mark``: ``NTA_MARK`` is sent when the kernel reported a mark (always in a dump;
    in events only when non-zero). ``window_tracking``: ``TCPWindowTracking`` on
    (off by default) adds the two window scales. Every message carries its own
    ``nethdr``; FT-FW packs several messages into one datagram without a further
    header.
    """
    size = NETHDR_SIZE
    size += _nta(8) if entry.orig.family == 2 else _nta(32)  # NTA_IPV4 / NTA_IPV6 (src, dst)
    size += _nta(4)  # NTA_STATUS
    size += _nta(1)  # NTA_L4PROTO
    proto = entry.orig.proto
    if proto == Proto.TCP:
        size += _nta(4) + _nta(1)  # NTA_PORT (sport, dport), NTA_TCP_STATE
        if window_tracking:
            size += _nta(1) + _nta(1)  # NTA_TCP_WSCALE_ORIG / _REPL
    elif proto == Proto.SCTP:
        size += _nta(4) + _nta(1) + _nta(4) + _nta(4)  # port, state, vtag orig, vtag reply
    elif proto == Proto.DCCP:
        size += _nta(4) + _nta(1) + _nta(1)  # port, state, role
    elif proto in (Proto.ICMP, Proto.ICMPV6):
        size += _nta(1) + _nta(1) + _nta(2)  # type, code, id
    elif proto == Proto.UDP:
        size += _nta(4)  # NTA_PORT
    size += _nta(4)  # NTA_TIMEOUT (unless CommitTimeout is configured)
    if mark:
        size += _nta(4)  # NTA_MARK
    nat = entry.nat()
    address = 4 if entry.orig.family == 2 else 16
    if nat.snat:
        size += _nta(address)  # NTA_SNAT_IPV4 / _IPV6
    if nat.dnat:
        size += _nta(address)  # NTA_DNAT_IPV4 / _IPV6
    plain = entry.orig.inverted()
    if entry.reply.dport != plain.dport:
        size += _nta(2)  # NTA_SPAT_PORT
    if entry.reply.sport != plain.sport:
        size += _nta(2)  # NTA_DPAT_PORT
    if entry.seqadj_orig or entry.seqadj_reply:
        size += _nta(24)  # NTA_NAT_SEQ_ADJ
    if entry.helper:
        size += _nta(len(entry.helper.encode()) + 1)  # NTA_HELPER_NAME, NUL-terminated
    if entry.labels:
        size += _nta(4 * ((entry.labels.bit_length() - 1) // 32 + 1))  # NTA_LABELS
    return size


# --- workloads ---------------------------------------------------------------------


def plain_tcp(count: int) -> list[Event]:
    base = make_entry("10.0.0.1", "198.51.100.7", Proto.TCP, 1024, 443)
    events = []
    for i in range(count):
        orig = base.orig._replace(src=(0x0A000000 + i // 60000).to_bytes(4, "big"), sport=1024 + i % 60000)
        events.append(Event(EventKind.UPDATE, base._replace(orig=orig, reply=orig.inverted())))
    return events


def mixed(count: int) -> list[Event]:
    """60% IPv4 TCP, 15% IPv6 TCP, 15% UDP, 5% ICMP, 5% SNAT'd TCP; NEW/UPDATE/DESTROY."""
    rng = random.Random(1)
    events = []
    for i in range(count):
        r = rng.random()
        sport = rng.randrange(1024, 65536)
        if r < 0.60:
            entry = make_entry("10.0.0.1", "198.51.100.7", Proto.TCP, sport, 443, mark=rng.choice([0, 0, 7]))
        elif r < 0.75:
            entry = make_entry("fd00::1", "2001:db8::7", Proto.TCP, sport, 443)
        elif r < 0.90:
            entry = make_entry("10.0.0.1", "198.51.100.53", Proto.UDP, sport, 53)
        elif r < 0.95:
            entry = make_entry("10.0.0.1", "198.51.100.9", Proto.ICMP, sport, 8 << 8)
        else:
            entry = make_entry(
                "10.0.0.1",
                "198.51.100.7",
                Proto.TCP,
                sport,
                443,
                reply=make_tuple("198.51.100.7", "192.0.2.1", Proto.TCP, 443, rng.randrange(1024, 65536)),
                status=int(Status.SEEN_REPLY | Status.ASSURED | Status.CONFIRMED | Status.SRC_NAT),
                protoinfo=TcpInfo(3, 7, 7, 0x23, 0x23),
            )
        events.append(Event(EventKind(1 + i % 3), entry))
    return events


def best_rate(count: int, repeat: int, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def measure(name: str, events: list[Event], repeat: int, key: Key | None) -> None:
    keyring = Keyring([key]) if key else None
    count = len(events)
    frames = encode_frames(STATE, 1, 1, 0, events, mtu=DEFAULT_MTU, key=key)
    assert [m for f in frames for m in decode_frame(f, keyring).messages] == events

    def encode() -> None:
        encode_frames(STATE, 1, 1, 0, events, mtu=DEFAULT_MTU, key=key)

    def decode() -> None:
        for f in frames:
            decode_frame(f, keyring)

    def decode_keep() -> None:
        kept = [decode_frame(f, keyring) for f in frames]
        del kept

    enc = best_rate(count, repeat, encode)
    dec = best_rate(count, repeat, decode)
    keep = best_rate(count, repeat, decode_keep)
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        keep_tuned = best_rate(count, repeat, decode_keep)
    finally:
        gc.set_threshold(*thresholds)
    size = sum(len(f) for f in frames) / count
    label = f"{name}{' sealed' if key else ''}"
    print(
        f"{label:28} encode {enc:>10,.0f}/s  decode {dec:>10,.0f}/s  "
        f"(all kept: {keep:>9,.0f}/s, {keep_tuned:>9,.0f}/s with gc threshold 50000)  "
        f"{size:5.1f} B/entry  {len(frames)} frames"
    )


def sizes() -> None:
    print("\nbytes per synchronized plain ESTABLISHED TCP entry (default MTU 1472):")
    for label, entry in (
        ("IPv4", make_entry("10.0.0.1", "198.51.100.7", Proto.TCP, 40000, 443)),
        ("IPv6", make_entry("fd00::1", "2001:db8::7", Proto.TCP, 40000, 443)),
    ):
        message = len(encode_message(STATE, Event(EventKind.UPDATE, entry)))
        per_frame = (DEFAULT_MTU - HEADER_SIZE) // message
        amortized = message + HEADER_SIZE / per_frame
        ctd = conntrackd_bytes(entry)
        ctd_event = conntrackd_bytes(entry, mark=False)
        ctd_window = conntrackd_bytes(entry, window_tracking=True)
        print(
            f"  TCP {label}: snep {message} B message, {amortized:.1f} B with its share of the "
            f"frame header ({per_frame}/frame) | conntrackd FT-FW {ctd} B "
            f"({ctd_event} B without NTA_MARK, {ctd_window} B with TCPWindowTracking), "
            f"{DEFAULT_MTU // ctd}/datagram"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gc.collect()
    print(f"{args.count:,} entries, best of {args.repeat}, one core (CPython is single-threaded)")
    key = Key(1, b"bench-secret-0123456789abcdefghi")
    plain = plain_tcp(args.count)
    measure("plain TCP IPv4", plain, args.repeat, None)
    measure("plain TCP IPv4", plain, args.repeat, key)
    measure("mixed", mixed(args.count), args.repeat, None)
    sizes()


if __name__ == "__main__":
    main()
