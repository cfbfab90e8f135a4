"""What other nodes tell us our external (NAT-mapped) address is.

Follows ZeroTierOne 1.14.1 ``node/SelfAwareness.cpp`` (protocol-core.md section 11.1): reports
arrive in HELLO and OK(HELLO), only from direct packets; a report whose scope differs from the
reporter's own address scope is ignored; entries live 10 minutes. When a *trusted* reporter (a
root) says our IP changed, we have moved (roaming, a new NAT binding): every path of that family
and scope is suspect and must be re-confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ztnode.wire.inetaddr import InetAddress, IpScope

Addr = tuple[str, int]
ENTRY_TIMEOUT: Final = 600_000
_IGNORED_SCOPES: Final = frozenset({IpScope.NONE, IpScope.LOOPBACK, IpScope.MULTICAST})


@dataclass(slots=True)
class _Entry:
    surface: InetAddress
    ts: int
    trusted: bool


@dataclass(frozen=True, slots=True)
class SurfaceChange:
    """A trusted reporter saw us at a new IP in ``scope``; paths of that kind need a reset."""

    scope: IpScope
    ipv6: bool
    old: InetAddress | None
    new: InetAddress


class SelfAwareness:
    def __init__(self) -> None:
        self._entries: dict[tuple[int, Addr, Addr, IpScope], _Entry] = {}

    def report(
        self,
        reporter: int,
        local: Addr,
        reporter_physical: Addr,
        reporter_scope: IpScope,
        surface: InetAddress,
        trusted: bool,
        now: int,
    ) -> SurfaceChange | None:
        scope = surface.scope()
        if scope != reporter_scope or scope in _IGNORED_SCOPES:
            return None
        key = (reporter, local, reporter_physical, scope)
        old = self._entries.get(key)
        change: SurfaceChange | None = None
        if (
            trusted
            and old is not None
            and now - old.ts < ENTRY_TIMEOUT
            and not old.surface.ips_equal(surface)
        ):
            change = SurfaceChange(scope, surface.is_ipv6(), old.surface, surface)
            for k in [k for k in self._entries if k[3] == scope and k != key]:
                del self._entries[k]
        self._entries[key] = _Entry(surface, now, trusted)
        return change

    def clean(self, now: int) -> None:
        for k in [k for k, e in self._entries.items() if now - e.ts >= ENTRY_TIMEOUT]:
            del self._entries[k]

    def surfaces(self, now: int) -> list[InetAddress]:
        """Distinct fresh external addresses, to advertise in PUSH_DIRECT_PATHS."""
        seen: dict[InetAddress, None] = {}
        for e in self._entries.values():
            if now - e.ts < ENTRY_TIMEOUT:
                seen[e.surface] = None
        return list(seen)
