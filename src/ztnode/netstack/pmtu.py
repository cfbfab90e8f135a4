"""Path MTU per destination: what ICMP "fragmentation needed" (RFC 1191) and "packet too big"
(RFC 8201) taught us about the way to a host.

Why: a ZeroTier network's MTU (2800 by default) holds between members, but a host reached
through a bridge or a managed route may sit behind a smaller link, whose router says so. The
stack then sends that destination smaller datagrams (IPv6 fragments at the source; IPv4 too,
ztnode's datagrams not carrying DF except TCP's), and TCP connections to it lower their MSS.

Bounded (``MAX_ENTRIES``, the oldest dropped first); an entry expires after ``EXPIRE_MS``
(RFC 1191 section 6.3: ten minutes), so a path that grew again is found; reports below the
protocol minimum (576 for IPv4 as Linux's ``min_pmtu`` rounds it, 1280 for IPv6) are raised to
it, so a forged report cannot make a path useless.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Final

__all__ = ["EXPIRE_MS", "MAX_ENTRIES", "MIN_MTU_V4", "MIN_MTU_V6", "PathMtu"]

IPAddr = IPv4Address | IPv6Address

EXPIRE_MS: Final = 600_000
MAX_ENTRIES: Final = 1024
MIN_MTU_V4: Final = 576
MIN_MTU_V6: Final = 1280


class PathMtu:
    """Learned MTUs below the link's, by destination (module docstring)."""

    __slots__ = ("_entries", "reported")

    def __init__(self) -> None:
        self._entries: dict[IPAddr, tuple[int, int]] = {}
        self.reported = 0

    def learn(self, dst: IPAddr, mtu: int, link_mtu: int, now: int) -> int | None:
        """A report that ``mtu`` is the most that reaches ``dst``: the new path MTU when it
        lowers the one in force, else None."""
        floor = MIN_MTU_V6 if isinstance(dst, IPv6Address) else MIN_MTU_V4
        mtu = max(mtu, floor)
        current = self.mtu_for(dst, link_mtu, now)
        if mtu >= current:
            return None
        if dst not in self._entries and len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[dst] = (mtu, now + EXPIRE_MS)
        self.reported += 1
        return mtu

    def peek(self, dst: IPAddr, link_mtu: int) -> int:
        """The MTU towards ``dst`` as last learned (expiry is checked by :meth:`mtu_for`)."""
        entry = self._entries.get(dst)
        return min(entry[0], link_mtu) if entry is not None else link_mtu

    def mtu_for(self, dst: IPAddr, link_mtu: int, now: int) -> int:
        """The MTU to use towards ``dst`` now."""
        entry = self._entries.get(dst)
        if entry is None:
            return link_mtu
        mtu, expires = entry
        if now >= expires:
            del self._entries[dst]
            return link_mtu
        return min(mtu, link_mtu)
