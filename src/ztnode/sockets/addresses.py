"""Socket addresses on a ZeroTier network, as the stdlib spells them.

Why its own module: every socket kind (asyncio and blocking, TCP and UDP) takes hosts from users
and hands addresses back, and all must agree with the kernel's forms: IP literals only (ztnode
resolves no names), IPv6 socket addresses as 4-tuples ``(host, port, flowinfo, scope_id)``.
"""

from __future__ import annotations

import errno
from ipaddress import ip_address

__all__ = ["literal"]


def literal(host: str) -> str:
    """ztnode resolves no names: hosts are IP literals (with an optional IPv6 zone)."""
    try:
        ip_address(host.split("%", 1)[0])
    except ValueError:
        raise OSError(
            errno.EINVAL, f"{host!r} is not an IP address (names are not resolved on ZeroTier)"
        ) from None
    return host
