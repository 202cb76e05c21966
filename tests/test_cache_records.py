"""The external cache as records (snep.cache.RecordCache, snep.wire.codec's records):
plain STATE messages kept as they came, checked and cut by one regular expression,
equal to what the decoding path (Cache of entries) holds; malformed input is counted,
never applied, never a crash."""

from __future__ import annotations

import random

import pytest

from snep.cache import Cache, RecordCache
from snep.entry import (
    ConnTuple,
    Event,
    EventKind,
    Family,
    Proto,
    SctpInfo,
    SctpState,
    SeqAdj,
    TcpInfo,
    TcpState,
    make_entry,
)
from snep.errors import DecodeError
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, KernelOps, SendDatagram
from snep.fsm.framer import Framer
from snep.fsm.node import SyncNode
from snep.fsm.params import SyncParams
from snep.fsm.receiver import SyncReceiver
from snep.lab.sim import conn, handshake
from snep.wire.codec import (
    FLAG_BULK_END,
    FLAG_BULK_START,
    HEADER_SIZE,
    PLAIN_KEY,
    build_frame,
    decode_frame,
    decode_records,
    encode_frame,
    encode_state,
    key_of_record_key,
    record_key,
    seal,
    split_plain,
)
from snep.wire.messages import Frame, MessageType

PRIMARY = Epoch(1, 1)


def plain_entries(n: int) -> list:
    """Entries as the primary sends most of them: IPv4, no NAT, zone 0, TCP, UDP and
    ICMP (whose reply the decoder derives)."""
    return [conn(i, proto=(Proto.TCP, Proto.UDP, Proto.TCP, Proto.ICMP)[i % 4], mark=i % 3) for i in range(n)]


def other_entries() -> list:
    """Entries that are not plain: each takes the general path."""
    nat = conn(101)._replace(reply=ConnTuple(Family.IPV4, bytes([192, 0, 2, 80]), bytes([198, 51, 100, 1]), 6, 80, 4000))
    return [
        nat,
        conn(102, zone=7),
        make_entry("2001:db8::1", "2001:db8::2", Proto.TCP, 1000, 80),
        conn(104, seqadj_orig=SeqAdj(1, 2, 3)),
        conn(105, labels=5),
        conn(106, helper="ftp"),
        conn(107, proto=Proto.SCTP, protoinfo=SctpInfo(SctpState.ESTABLISHED, 1, 2)),
    ]


def frame_of(events, seq=0, flags=0) -> bytes:
    return encode_frame(Frame(MessageType.STATE, PRIMARY.node, PRIMARY.term, seq, tuple(events), flags))


def test_a_frame_of_plain_messages_is_cut_into_records_that_decode_as_the_frame_does():
    events = [Event(EventKind.NEW if i % 3 else EventKind.UPDATE, e) for i, e in enumerate(plain_entries(30))]
    data = frame_of(events)
    lazy, full = decode_frame(data, records=True), decode_frame(data)
    assert lazy.messages == () and lazy.records is not None and len(lazy.records) == 30
    assert decode_records(lazy.records) == list(full.messages) == events
    for record, event in zip(lazy.records, events):
        assert record == encode_state(event)
        assert record[PLAIN_KEY] == record_key(event.entry.orig, event.entry.zone)
        assert key_of_record_key(record[PLAIN_KEY]) == event.entry.key


@pytest.mark.parametrize("entry", other_entries(), ids=lambda e: str(e.orig))
def test_messages_that_are_not_plain_take_the_general_path(entry):
    frame = decode_frame(frame_of([Event(EventKind.NEW, conn(0)), Event(EventKind.NEW, entry)]), records=True)
    assert frame.records is None and frame.messages[1].entry == entry
    assert key_of_record_key(record_key(entry.orig, entry.zone)) == entry.key


def test_a_destroy_takes_the_general_path():
    frame = decode_frame(frame_of([Event(EventKind.NEW, conn(0)), Event(EventKind.DESTROY, conn(1))]), records=True)
    assert frame.records is None and [e.kind for e in frame.messages] == [EventKind.NEW, EventKind.DESTROY]


def test_an_empty_state_frame_has_no_records():
    frame = decode_frame(frame_of([], flags=FLAG_BULK_END), records=True)
    assert frame.records == () and frame.ends_dump


def test_record_keys_of_the_four_kinds_of_identity_are_distinct():
    entries = [conn(1), conn(1, zone=1), make_entry("2001:db8::1", "2001:db8::2", Proto.TCP, 1, 2),
               make_entry("2001:db8::1", "2001:db8::2", Proto.TCP, 1, 2, zone=1)]
    keys = [record_key(e.orig, e.zone) for e in entries]
    assert sorted(map(len, keys)) == [13, 15, 37, 39]
    assert [key_of_record_key(k) for k in keys] == [e.key for e in entries]
    with pytest.raises(ValueError):
        key_of_record_key(b"\x00" * 14)


def corruptions(data: bytes, rng: random.Random, count: int):
    """Single-byte changes, truncations and extensions of the payload (header fixed up
    so that the frame still parses as far as the payload)."""
    payload = data[HEADER_SIZE:]
    for _ in range(count):
        body = bytearray(payload)
        how = rng.randrange(3)
        if how == 0:
            i = rng.randrange(len(body))
            body[i] = rng.choice((0, 1, 2, 3, 0x0A, 0x1F, 0x26, 0x81, 0x85, 0x86, 0xFF, rng.randrange(256)))
        elif how == 1:
            del body[rng.randrange(len(body)) :]
        else:
            body[rng.randrange(len(body)) : rng.randrange(len(body))] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        yield bytes(body)


def test_a_corrupted_frame_decodes_as_records_exactly_as_it_decodes_into_events():
    """Differential: whatever the bytes, the records path accepts what the general
    decoder accepts, with the same events, and rejects (DecodeError) what it rejects."""
    rng = random.Random(16)
    events = [Event(EventKind.NEW, e) for e in plain_entries(12)]
    built = build_frame(Frame(MessageType.STATE, PRIMARY.node, PRIMARY.term, 0, tuple(events)))
    accepted = rejected = 0
    for payload in corruptions(seal(built, 0, 0), rng, 3000):
        data = seal(built._replace(payload=payload), 0, 0)
        try:
            full = decode_frame(data)
        except DecodeError:
            with pytest.raises(DecodeError):
                decode_frame(data, records=True)
            rejected += 1
            continue
        lazy = decode_frame(data, records=True)
        got = decode_records(lazy.records) if lazy.records is not None else list(lazy.messages)
        assert got == list(full.messages)
        accepted += 1
    assert accepted > 100 and rejected > 100  # (both outcomes were exercised)


def receiver(external) -> SyncReceiver:
    return SyncReceiver(1, SyncParams(ack_window=4), Framer(9, Counters(), 0x5E55), external)


def test_a_stream_leaves_the_record_cache_equal_to_the_entry_cache():
    """The same frames through the records path (a RecordCache) and the decoding path
    (a Cache of entries): the same entries, owners, sweeps."""
    rng = random.Random(7)
    entries = plain_entries(40) + other_entries()
    frames = []
    for seq in range(30):
        batch = []
        for _ in range(rng.randrange(1, 12)):
            kind = rng.choice((EventKind.NEW, EventKind.NEW, EventKind.UPDATE, EventKind.DESTROY))
            entry = rng.choice(entries)
            batch.append(Event(kind, entry._replace(timeout=rng.randrange(1, 1000))))
        frames.append(frame_of(batch, seq))
    dump = [Event(EventKind.NEW, e) for e in entries[:25]]
    frames.append(frame_of(dump[:10], 30, FLAG_BULK_START))
    frames.append(frame_of(dump[10:], 31, FLAG_BULK_END))
    old, new = receiver(Cache()), receiver(RecordCache())
    swept = []
    for data in frames:
        a = old.on_state(0.0, decode_frame(data), PRIMARY, [])
        b = new.on_state(0.0, decode_frame(data, records=True), PRIMARY, [])
        assert list(a.applied) == list(b.applied) + decode_records(b.records)
        swept.append((sorted(a.swept), sorted(b.swept)))
    assert all(x == y for x, y in swept) and swept[-1][0]  # (the dump swept something)
    assert new.external.as_dict() == old.external.as_dict() and len(new.external) == len(old.external)
    assert all(new.external.owner(k) == old.external.owner(k) for k in old.external.keys())
    assert old.counters.state_messages_applied == new.counters.state_messages_applied


def test_records_beyond_the_limit_are_refused_and_counted():
    external = RecordCache(limit=3)
    r = receiver(external)
    out: list = []
    result = r.on_state(0.0, decode_frame(frame_of([Event(EventKind.NEW, e) for e in plain_entries(5)]), records=True), PRIMARY, out)
    assert len(external) == 3 and r.counters.external_full == 2 and len(result.records) == 3
    assert r.counters.state_messages_applied == 3
    external.apply_records([encode_state(Event(EventKind.UPDATE, plain_entries(1)[0]._replace(mark=9)))], PRIMARY)
    assert external.get(conn(0).key).mark == 9  # (an update of a held entry goes through)


def backup_node(**params) -> tuple[SyncNode, SyncNode]:
    primary, backup = SyncNode(1, [2], SyncParams(**params), session=1), SyncNode(2, [1], SyncParams(**params), session=2)
    for node in (primary, backup):
        node.start(0.0)
        node.on_kernel_dump(0.0, [])
    handshake(primary, backup)
    return primary, backup


def test_a_malformed_plain_message_is_counted_and_nothing_of_its_frame_applied():
    primary, backup = backup_node()
    out = primary.promote(1.0) + primary.on_kernel_dump(1.0, plain_entries(6))
    datagrams = [o.data for o in out if isinstance(o, SendDatagram)]
    state = [d for d in datagrams if decode_frame(d).type is MessageType.STATE and decode_frame(d).messages]
    assert state
    data = bytearray(state[0])
    tcp = bytes(data).index(b"\x86\x05", HEADER_SIZE)  # the TCP attribute of the first TCP message
    data[tcp + 2] = len(TcpState)  # an unknown TCP state
    before = backup.counters.malformed
    backup.on_datagram(2.0, bytes(data), 1)
    assert backup.counters.malformed == before + 1 and len(backup.external) == 0


def test_inject_on_arrival_writes_what_records_bring():
    primary, backup = backup_node(inject_on_arrival=True)
    entries = plain_entries(6)
    out = primary.promote(1.0) + primary.on_kernel_dump(1.0, entries)
    written = []
    for o in out:
        if isinstance(o, SendDatagram):
            for x in backup.on_datagram(2.0, o.data, 1):
                if isinstance(x, KernelOps):
                    assert not x.events and x.records and not x.replace  # (a dump's NEW records, written from their bytes)
                    written += decode_records(x.records)
    assert sorted(e.entry for e in written) == sorted(entries) and len(backup.external) == 6
    # an update that streams later goes in as an update (decoded: no create first)
    changed = entries[2]._replace(mark=77)
    out = primary.on_kernel_events(3.0, [Event(EventKind.UPDATE, changed)])
    (ops,) = [x for o in out if isinstance(o, SendDatagram) for x in backup.on_datagram(3.0, o.data, 1) if isinstance(x, KernelOps)]
    assert ops.events == (Event(EventKind.UPDATE, changed),) and not ops.records


def test_a_record_cache_made_of_entries_gives_them_back():
    entries = plain_entries(5) + other_entries()
    cache = RecordCache(entries)
    assert sorted(cache.entries()) == sorted(entries) and set(cache.keys()) == {e.key for e in entries}
    assert all(cache.get(e.key) == e and e.key in cache for e in entries)
    assert cache.get((conn(99).orig, 0)) is None and ("not", "a key") not in cache
    assert split_plain(b"".join(cache.records().values())) is None  # (some are not plain)
    assert cache.get(entries[2].key).protoinfo == TcpInfo(TcpState.ESTABLISHED)


def test_records_of_two_streams_keep_their_owners_as_entries_do():
    """apply_records (the records path) and apply_all (the entry path) agree on who owns
    what, as two streams write over each other, and on what a dump marks."""
    entries = plain_entries(10)
    a, b = Epoch(2, 1), Epoch(2, 2)
    old, new = Cache(), RecordCache()
    for owner, indices in ((a, range(0, 6)), (b, range(3, 8)), (a, range(4, 6)), (b, range(0, 2)), (a, range(0, 10))):
        events = [Event(EventKind.NEW, entries[i]) for i in indices]
        old.apply_all(events, owner)
        new.apply_records([encode_state(event) for event in events], owner)
        assert {e.key: new.owner(e.key) for e in entries} == {e.key: old.owner(e.key) for e in entries}
        for stream in (a, b):
            old.mark(stream)
            new.mark(stream)
            assert new.marked(stream) == old.marked(stream)
            old.unmark(stream)
            new.unmark(stream)


def test_a_warm_promotion_writes_what_the_kernel_lacks_of_the_records_it_had():
    """inject_on_arrival: the promotion writes nothing, takes the external cache's
    records whole (the cache is empty afterwards), and the kernel dump that follows
    says which of them the kernel lacks: those are written."""
    primary, backup = backup_node(inject_on_arrival=True)
    entries = plain_entries(4)
    for o in primary.promote(1.0) + primary.on_kernel_dump(1.0, entries):
        if isinstance(o, SendDatagram):
            backup.on_datagram(2.0, o.data, 1)
    assert len(backup.external) == 4
    out = backup.promote(3.0)
    assert not [o for o in out if isinstance(o, KernelOps)] and len(backup.external) == 0
    out = backup.on_kernel_dump(3.0, entries[:3])  # (the kernel refused the last one)
    (ops,) = [o for o in out if isinstance(o, KernelOps)]
    assert [e.entry for e in ops.events] == [entries[3]] and ops.replace and entries[3].key in backup.internal
