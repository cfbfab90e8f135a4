"""A hosts-style static map: names a program fixes itself, answered before any query.

Why: tests, small deployments and programs that know their peers want ``web`` to mean
``10.147.17.5`` without running a DNS server; like ``/etc/hosts``, the map wins over every
protocol and costs nothing. It takes a mapping or the text of a hosts file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address

from ztnode.errors import LocalProtocolError
from ztnode.names.labels import normalize_name

__all__ = ["MAX_HOSTS", "HostMap"]

#: Bound of the map (names): a mapping given by the program, so a mistake, not an attack.
MAX_HOSTS = 65536

HostValue = str | IPv4Address | IPv6Address | Iterable[str | IPv4Address | IPv6Address]


class HostMap:
    """Names to addresses, in the order given (IPv4 and IPv6 mixed as the program wrote them)."""

    def __init__(self, entries: Mapping[str, HostValue] | None = None) -> None:
        self._map: dict[str, list[IPv4Address | IPv6Address]] = {}
        for name, value in (entries or {}).items():
            self.add(name, value)

    @classmethod
    def from_hosts_text(cls, text: str) -> HostMap:
        """Parse ``/etc/hosts`` syntax: ``address name [aliases...]``, ``#`` comments."""
        out = cls()
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) < 2:
                raise LocalProtocolError(f"hosts line {lineno}: an address and a name expected")
            for name in line[1:]:
                out.add(name, line[0], where=f"hosts line {lineno}")
        return out

    def add(self, name: str, value: HostValue, *, where: str = "hosts") -> None:
        """Add addresses for ``name`` (kept after those it already has)."""
        key = normalize_name(name)
        if not key or len(key) > 253 or any(not 0 < len(p) <= 63 for p in key.split(".")):
            raise LocalProtocolError(f"{where}: {name!r} is not a host name")
        values = [value] if isinstance(value, str | IPv4Address | IPv6Address) else list(value)
        addrs: list[IPv4Address | IPv6Address] = []
        for v in values:
            try:
                addrs.append(ip_address(str(v)))
            except ValueError:
                raise LocalProtocolError(f"{where}: {v!r} is not an IP address") from None
        if not addrs:
            raise LocalProtocolError(f"{where}: no address for {name!r}")
        if key not in self._map and len(self._map) >= MAX_HOSTS:
            raise LocalProtocolError(f"{where}: more than {MAX_HOSTS} names")
        have = self._map.setdefault(key, [])
        have += [a for a in addrs if a not in have]

    def lookup(self, name: str) -> list[IPv4Address | IPv6Address]:
        """The addresses of ``name`` (case and a trailing dot ignored); empty if unknown."""
        return list(self._map.get(normalize_name(name), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._map

    def __len__(self) -> int:
        return len(self._map)

    def items(self) -> list[tuple[str, list[IPv4Address | IPv6Address]]]:
        return [(k, list(v)) for k, v in self._map.items()]
