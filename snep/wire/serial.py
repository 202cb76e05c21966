"""Serial-number arithmetic (RFC 1982) for the 32-bit sequence numbers of frames.

Sequence numbers wrap: after 0xFFFFFFFF comes 0. Plain ``<`` is wrong near the wrap,
so every comparison of sequence numbers in snep goes through these functions.

RFC 1982 with SERIAL_BITS = 32: ``a < b`` when ``a != b`` and either ``a < b`` and
``b - a < 2**31``, or ``a > b`` and ``a - b > 2**31``. Two numbers exactly ``2**31``
apart are *not comparable* (the RFC leaves it undefined): ``seq_lt`` and ``seq_gt``
are both false for them. The protocol never lets two live sequence numbers get that
far apart (the resend queue is bounded far below 2**31 frames).

Inputs are sequence numbers, ints in ``0 .. 2**32 - 1``; results of ``seq_add`` are
reduced into that range.
"""

from __future__ import annotations

SERIAL_BITS = 32
SEQ_MOD = 1 << SERIAL_BITS
SEQ_MAX = SEQ_MOD - 1
_HALF = 1 << (SERIAL_BITS - 1)


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` modulo 2**32. RFC 1982 defines ``0 <= n < 2**31``; a negative ``n``
    (``> -2**31``) steps backwards, which the receiver uses for ``seq - 1``."""
    if not -_HALF < n < _HALF:
        raise ValueError(f"serial addition of {n}: |n| must be below 2**31")
    return (seq + n) & SEQ_MAX


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` along the circle, in ``-2**31 .. 2**31 - 1``.

    Positive when ``a`` is after ``b``. For numbers exactly 2**31 apart (not
    comparable) the result is ``-2**31``.
    """
    return ((a - b + _HALF) & SEQ_MAX) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` (RFC 1982 ``s1 < s2``)."""
    return (a < b and b - a < _HALF) or (a > b and a - b > _HALF)


def seq_gt(a: int, b: int) -> bool:
    """``a`` comes after ``b`` (RFC 1982 ``s1 > s2``)."""
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


def seq_ge(a: int, b: int) -> bool:
    return a == b or seq_gt(a, b)


def seq_between(seq: int, first: int, last: int) -> bool:
    """``first <= seq <= last`` along the circle (the range may wrap).

    The range runs forward from ``first`` to ``last``; it is what an ACK or a NACK
    carries.
    """
    return ((seq - first) & SEQ_MAX) <= ((last - first) & SEQ_MAX)


def seq_range_len(first: int, last: int) -> int:
    """How many sequence numbers ``first .. last`` (inclusive, may wrap) holds."""
    return ((last - first) & SEQ_MAX) + 1
