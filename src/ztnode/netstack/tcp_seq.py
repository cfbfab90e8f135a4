"""Sequence-number arithmetic (RFC 9293 section 3.4, RFC 1982 serial numbers).

A module of its own so that every TCP component (the connection, option negotiation) shares one
definition; ``ztnode.netstack.tcp`` re-exports the functions.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SEQ_MASK", "SEQ_MOD", "seq_add", "seq_diff", "seq_le", "seq_lt"]

SEQ_MOD: Final = 1 << 32
SEQ_MASK: Final = SEQ_MOD - 1
_HALF: Final = 1 << 31


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` in sequence space, in ``[-2**31, 2**31)``."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space (RFC 9293 section 3.4 "=<" and "<" on 32-bit wraparound)."""
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space."""
    return seq_diff(a, b) <= 0
