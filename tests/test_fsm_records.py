"""The primary's records (snep.fsm.records) against encoding afresh: a dump that joins
kept bytes must send exactly what encoding the current entries sends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snep.cache import Cache
from snep.entry import Event, EventKind, Proto
from snep.fsm.counters import Counters
from snep.fsm.effects import Epoch, SendDatagram
from snep.fsm.framer import Framer
from snep.fsm.notify import Filter
from snep.fsm.params import SyncParams
from snep.fsm.records import Records
from snep.fsm.sender import SyncSender
from snep.lab.sim import conn
from snep.wire.codec import build_frames, decode_frame, encode_state
from snep.wire.messages import MessageType
from tests.strategies import entries, events

U32 = st.integers(0, 0xFFFFFFFF)
#: a change of one more field than the timeout (a record set aside serves only an
#: entry that changed in nothing but its timeout)
FIELDS = {
    "timeout only": lambda value: {},
    "mark": lambda value: {"mark": value},
    "status": lambda value: {"status": value},
    "labels": lambda value: {"labels": value},
    "helper": lambda value: {"helper": "ftp" if value % 2 else "sip"},
    "protoinfo": lambda value: {"protoinfo": None},
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(events(), max_size=30),
    st.lists(st.tuples(st.integers(0, 29), U32, U32, st.sampled_from(sorted(FIELDS))), max_size=10),
    st.booleans(),
    st.booleans(),
)
def test_a_dump_message_is_the_encoding_of_the_current_entry(streamed, changes, refuse_udp, renewed):
    """Stream the events the filter passes (records kept), change some entries afterwards
    (the same keys, other values; after a kernel dump, ``renewed``: every entry a new
    value, records set aside): every dump message is the current entry's NEW message,
    or None when the filter refuses it."""
    records = Records()
    table = {}
    accepts = (lambda entry: entry.orig.proto != Proto.UDP) if refuse_udp else (lambda entry: True)
    for event in streamed:
        if event.kind is EventKind.DESTROY or accepts(event.entry):  # (what the filter passes streams)
            data = records.stream(event)
            assert data == encode_state(event)
        if event.kind is EventKind.DESTROY:
            table.pop(event.entry.key, None)
        else:
            table[event.entry.key] = event.entry
    keys = list(table)
    if renewed:
        records.renew()
        table = {key: entry._replace() for key, entry in table.items()}  # (equal values, new objects)
    for index, timeout, value, field in changes:
        if keys:
            key = keys[index % len(keys)]
            table[key] = table[key]._replace(timeout=timeout, **FIELDS[field](value))  # (the timeout, and maybe another field)
    for key, entry in table.items():
        want = encode_state(Event(EventKind.NEW, entry)) if accepts(entry) else None
        assert records.dump_message(key, entry, accepts) == want
        assert records.dump_message(key, entry, accepts) == want  # (kept, or refused again)
    assert len(records) <= len(table)


@settings(max_examples=30, deadline=None)
@given(st.lists(events(), min_size=1, max_size=60), st.lists(entries(), max_size=20))
def test_a_senders_dump_sends_what_encoding_the_internal_cache_sends(streamed, later):
    """The sender's dump frames (records joined) against build_frames of the internal
    cache's entries at dump time, message for message."""
    internal = Cache()
    params = SyncParams(bulk_window=1 << 16)
    sender = SyncSender([2], params, Framer(1, Counters(), 0x5E55, mtu=params.mtu), internal, Filter())
    sender.activate(0.0, Epoch(1, 1))
    out: list = []
    for event in streamed:
        internal.apply(event)
        sender.on_events(0.0, [event], out)
    for entry in later:  # changed without streaming (a filtered level, a kernel dump)
        internal.apply(Event(EventKind.UPDATE, entry))
    out = []
    sender.start_bulk(0.0, out)
    sent = [decode_frame(o.data) for o in out if isinstance(o, SendDatagram)]
    got = [m for frame in sent for m in frame.messages]
    want = [Event(EventKind.NEW, e) for e in internal.entries()]
    assert got == want
    fresh = build_frames(MessageType.STATE, 1, 1, sent[0].seq, want, mtu=params.bulk_mtu)  # (a dump's frames)
    assert [f.payload for f in fresh] == [f.payload for f in _built(sender)][-len(fresh):]


def _built(sender):
    return [item.data for item in sender.queue]


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_record_set_aside_serves_only_an_entry_changed_in_its_timeout_alone(field):
    """After a kernel dump (renew), an entry equal but for its timeout takes its record
    back (the timeout rewritten in it); one changed in any other field is encoded anew."""
    records = Records()
    entry = conn(1, helper="", labels=0, mark=0)
    records.stream(Event(EventKind.NEW, entry))
    records.renew()
    now = entry._replace(timeout=entry.timeout - 7, **FIELDS[field](3))
    assert records.dump_message(now.key, now, lambda e: True) == encode_state(Event(EventKind.NEW, now))
