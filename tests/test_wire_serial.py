"""RFC 1982 serial-number arithmetic, especially across the 2**32 wrap."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snep.wire.serial import (
    SEQ_MAX,
    seq_add,
    seq_between,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
    seq_range_len,
)

seq = st.integers(0, SEQ_MAX)
step = st.integers(1, 2**31 - 1)


def test_comparisons_across_the_wrap():
    assert seq_lt(SEQ_MAX, 0)
    assert seq_gt(0, SEQ_MAX)
    assert seq_lt(SEQ_MAX - 5, 3)
    assert not seq_lt(3, SEQ_MAX - 5)
    assert seq_le(SEQ_MAX, SEQ_MAX) and seq_ge(0, 0)
    assert seq_add(SEQ_MAX, 1) == 0
    assert seq_add(0, -1) == SEQ_MAX
    assert seq_diff(0, SEQ_MAX) == 1
    assert seq_diff(SEQ_MAX, 0) == -1
    assert seq_diff(5, SEQ_MAX - 4) == 10


def test_numbers_half_the_circle_apart_are_not_comparable():
    # RFC 1982 section 3.2: undefined; snep answers "neither before nor after".
    for a in (0, 1, SEQ_MAX, 2**31):
        b = (a + 2**31) & SEQ_MAX
        assert not seq_lt(a, b) and not seq_gt(a, b)
        assert not seq_lt(b, a) and not seq_gt(b, a)


def test_rfc_1982_examples_in_32_bits():
    # The RFC's example (section 5.2, SERIAL_BITS = 8) scaled to 32 bits.
    assert seq_lt(0, 44) and seq_lt(44, 100) and seq_lt(100, 2**31 - 1)
    assert seq_lt(2**31 + 100, 0) and seq_lt(2**32 - 1, 100)


def test_add_rejects_steps_of_half_the_circle():
    with pytest.raises(ValueError):
        seq_add(0, 2**31)
    with pytest.raises(ValueError):
        seq_add(0, -(2**31))


def test_ranges_across_the_wrap():
    assert seq_between(0, SEQ_MAX - 1, 2)
    assert seq_between(SEQ_MAX, SEQ_MAX - 1, 2)
    assert not seq_between(3, SEQ_MAX - 1, 2)
    assert not seq_between(SEQ_MAX - 2, SEQ_MAX - 1, 2)
    assert seq_range_len(SEQ_MAX - 1, 2) == 5
    assert seq_range_len(7, 7) == 1


@given(seq, step)
def test_adding_moves_forward(a, n):
    b = seq_add(a, n)
    assert 0 <= b <= SEQ_MAX
    assert seq_lt(a, b) and seq_gt(b, a)
    assert not seq_lt(b, a) and not seq_gt(a, b)
    assert seq_diff(b, a) == n and seq_diff(a, b) == -n
    assert seq_add(b, -n) == a
    assert seq_between(b, a, b) and seq_between(a, a, b)
    assert seq_range_len(a, b) == n + 1


@given(seq, seq)
def test_exactly_one_order_or_equal_or_incomparable(a, b):
    orders = [a == b, seq_lt(a, b), seq_gt(a, b)]
    if (a - b) & SEQ_MAX == 2**31:
        assert orders == [False, False, False]
    else:
        assert orders.count(True) == 1
    assert seq_le(a, b) == (a == b or seq_lt(a, b))
    assert seq_ge(a, b) == (a == b or seq_gt(a, b))
