"""Socket addresses on a ZeroTier network, as the stdlib spells them.

Why its own module: every socket kind (asyncio and blocking, TCP and UDP) takes hosts from users
and hands addresses back, and all must agree with the kernel's forms: IP literals told apart
from names (which :mod:`ztnode.sockets.names` resolves), IPv6 socket addresses as 4-tuples
``(host, port, flowinfo, scope_id)``.
"""

from __future__ import annotations

import errno
import functools
import socket

from ztnode.netstack.stackconfig import PARSED_IP_CACHE, parse_ip

__all__ = ["ip_family", "ip_literal", "literal", "sockaddr"]


def literal(host: str) -> str:
    """A host that must be an IP literal here (with an optional IPv6 zone); names are
    resolved before they reach this."""
    try:
        parse_ip(host)
    except ValueError:
        raise OSError(
            errno.EINVAL, f"{host!r} is not an IP address (names are not resolved on ZeroTier)"
        ) from None
    return host


def ip_literal(host: object) -> str | None:
    """``host`` in the canonical text of the IP address it spells (an IPv6 zone dropped),
    or None when it is not an IP literal (a name, or not a string)."""
    if not isinstance(host, str):
        return None
    return _canonical(host)


@functools.lru_cache(maxsize=PARSED_IP_CACHE)
def _canonical(host: str) -> str | None:
    """Remembered beside :func:`parse_ip`: every connect and send asks, for the same few hosts,
    and an address's text is built digit by digit in Python."""
    try:
        return str(parse_ip(host))
    except ValueError:
        return None


def ip_family(family: int) -> int:
    """4, 6 or 0 (both) from a family as asyncio and socket spell it: ``socket.AF_INET``,
    ``AF_INET6``, ``AF_UNSPEC``, or the short 4 and 6 this API has always taken. Anything else
    is a ValueError, never a silent IPv4."""
    if family in (socket.AF_INET, 4):
        return 4
    if family in (socket.AF_INET6, 6):
        return 6
    if family == socket.AF_UNSPEC:
        return 0
    raise ValueError(f"family must be AF_INET, AF_INET6 or AF_UNSPEC, not {family!r}")


def sockaddr(endpoint: tuple[str, int]) -> tuple[str, int] | tuple[str, int, int, int]:
    """An endpoint as the stdlib hands socket addresses out: ``(host, port)`` for IPv4,
    ``(host, port, flowinfo, scope_id)`` for IPv6."""
    host, port = endpoint[0], endpoint[1]
    if ":" in host:
        return (host, port, 0, 0)
    return (host, port)
