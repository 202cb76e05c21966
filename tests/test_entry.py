"""The entry value: identity, equality, inversion and derived NAT."""

from snep.entry import (
    ConnTuple,
    Entry,
    Family,
    Proto,
    TcpInfo,
    TcpState,
    make_entry,
    make_tuple,
)


def test_identity_is_original_tuple_and_zone():
    a = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 80)
    b = a._replace(timeout=5, protoinfo=TcpInfo(TcpState.TIME_WAIT))
    assert a.key == b.key
    assert a != b
    assert a._replace(zone=7).key != a.key


def test_equality_is_full_value_equality_and_hashable():
    a = make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 53, 53)
    assert a == make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 53, 53)
    assert len({a, make_entry("10.0.0.1", "10.0.0.2", Proto.UDP, 53, 53)}) == 1


def test_inverted_swaps_addresses_and_ports():
    t = make_tuple("fd00::1", "fd00::2", Proto.TCP, 1000, 80)
    assert t.family is Family.IPV6
    assert t.inverted() == ConnTuple(Family.IPV6, t.dst, t.src, Proto.TCP, 80, 1000)
    assert t.inverted().inverted() == t


def test_icmp_echo_inverts_to_echo_reply():
    t = make_tuple("10.0.0.1", "10.0.0.2", Proto.ICMP, 42, 8 << 8)
    assert (t.inverted().icmp_type, t.inverted().icmp_id) == (0, 42)


def test_nat_is_derived_from_the_reply_tuple():
    plain = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 80)
    assert not plain.is_natted
    assert plain.nat().snat is None and plain.nat().dnat is None
    snat = plain._replace(reply=make_tuple("10.0.0.2", "192.0.2.1", Proto.TCP, 80, 40000))
    assert snat.is_natted
    assert snat.nat().snat == (bytes([192, 0, 2, 1]), 40000)
    assert snat.nat().dnat is None
    dnat = plain._replace(reply=make_tuple("10.9.9.9", "10.0.0.1", Proto.TCP, 8080, 1000))
    assert dnat.nat().dnat == (bytes([10, 9, 9, 9]), 8080)
    assert dnat.nat().snat is None


def test_mixed_families_are_refused():
    import pytest

    with pytest.raises(ValueError):
        make_tuple("10.0.0.1", "fd00::1", Proto.TCP)


def test_str_is_readable():
    assert str(make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 1000, 80)).startswith(
        "tcp 10.0.0.1:1000 -> 10.0.0.2:80 ESTABLISHED"
    )
    assert isinstance(make_entry("10.0.0.1", "10.0.0.2"), Entry)
