"""The filter (conntrackd's Filter section) and the notification levels."""

from __future__ import annotations

import pytest

from snep.entry import Event, EventKind, Proto, TcpInfo, TcpState, make_entry
from snep.errors import ConfigError
from snep.fsm.notify import Filter, Notifier
from snep.level import Level

WEB = make_entry("10.0.0.1", "192.0.2.80", Proto.TCP, 4000, 80)
DNS = make_entry("10.0.0.1", "192.0.2.53", Proto.UDP, 5000, 53)
PING6 = make_entry("fd00::1", "2001:db8::1", Proto.ICMPV6, 7, 128 << 8)
SYNC_LINK = make_entry("172.16.0.1", "172.16.0.2", Proto.UDP, 3780, 3780)


def test_default_filter_passes_everything():
    f = Filter()
    assert f.passes_everything
    assert all(f.accepts(e) for e in (WEB, DNS, PING6, SYNC_LINK))


def test_protocol_filter():
    f = Filter.build(protocols=["tcp", "udp"])
    assert f.accepts(WEB) and f.accepts(DNS) and not f.accepts(PING6)
    assert Filter.build(protocols=[int(Proto.ICMPV6)]).accepts(PING6)


@pytest.mark.parametrize(
    ("ignore", "accepted"),
    [
        (["172.16.0.0/30"], {"WEB", "DNS", "PING6"}),
        (["192.0.2.53"], {"WEB", "PING6", "SYNC_LINK"}),  # a single address (destination)
        (["10.0.0.0/8"], {"PING6", "SYNC_LINK"}),  # source side
        (["fd00::/8"], {"WEB", "DNS", "SYNC_LINK"}),  # IPv6 prefix
    ],
)
def test_ignored_addresses_and_prefixes(ignore, accepted):
    f = Filter.build(ignore=ignore)
    entries = {"WEB": WEB, "DNS": DNS, "PING6": PING6, "SYNC_LINK": SYNC_LINK}
    assert {name for name, e in entries.items() if f.accepts(e)} == accepted


def test_tcp_state_filter_applies_to_tcp_only_and_never_to_destroy():
    f = Filter.build(tcp_states=["ESTABLISHED"])
    closing = WEB._replace(protoinfo=TcpInfo(TcpState.TIME_WAIT))
    assert f.accepts(WEB)
    assert not f.accepts(closing)
    assert f.accepts(closing, EventKind.DESTROY)  # it was sent while ESTABLISHED
    assert f.accepts(DNS)  # not TCP


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocols": ["tcpp"]}, "unknown protocol 'tcpp'"),
        ({"protocols": [300]}, "protocol number 300"),
        ({"ignore": ["10.0.0.300/8"]}, "'10.0.0.300/8' is not an address or prefix"),
        ({"tcp_states": ["OPEN"]}, "unknown TCP state 'OPEN'"),
    ],
)
def test_bad_filter_values_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Filter.build(**kwargs)


@pytest.mark.parametrize(
    ("level", "sent"),
    [
        (Level.STRONG, [EventKind.NEW, EventKind.UPDATE, EventKind.DESTROY]),
        (Level.WEAK, [EventKind.NEW, EventKind.DESTROY]),
        (Level.INCREMENTAL, []),
    ],
)
def test_levels_pass_events_on(level, sent):
    notifier = Notifier(level)
    out = []
    for kind in EventKind:
        out += notifier.on_event(0.0, Event(kind, WEB))
    assert [e.kind for e in out] == sent


def test_incremental_keeps_the_newest_state_per_connection():
    notifier = Notifier(Level.INCREMENTAL, incremental_period=2.0)
    updated = WEB._replace(mark=5)
    notifier.on_event(1.0, Event(EventKind.NEW, WEB))
    notifier.on_event(1.5, Event(EventKind.UPDATE, updated))
    notifier.on_event(1.6, Event(EventKind.NEW, DNS))
    notifier.on_event(1.7, Event(EventKind.DESTROY, DNS))
    assert notifier.next_flush == pytest.approx(3.0)
    assert notifier.flush(3.0) == [Event(EventKind.UPDATE, updated), Event(EventKind.DESTROY, DNS)]
    assert notifier.next_flush is None and notifier.flush(4.0) == []


def test_filtered_events_are_counted():
    notifier = Notifier(Level.STRONG, filter=Filter.build(protocols=["tcp"]))
    assert notifier.on_event(0.0, Event(EventKind.NEW, DNS)) == []
    assert notifier.filtered == 1


def test_remembered_addresses_give_the_same_answers_and_stay_bounded(monkeypatch):
    from snep.fsm import notify

    monkeypatch.setattr(notify, "_SEEN_MAX", 100)
    f = Filter.build(ignore=["10.0.0.0/9", "192.0.2.7/32"])
    entries = [make_entry(f"10.{i % 256}.{i // 256 % 256}.1", "192.0.2.7" if i % 97 == 0 else "192.0.2.8",
                          Proto.TCP, 1024 + i, 80) for i in range(700)]
    first = [f.accepts(e) for e in entries]
    again = [f.accepts(e) for e in entries]
    assert first == again == [i % 256 >= 128 and i % 97 != 0 for i in range(len(entries))]
    assert len(f._seen) <= notify._SEEN_MAX
