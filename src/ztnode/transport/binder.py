"""Which local addresses get a UDP socket: one per interface address, as ZeroTierOne's Binder.

A node with a wildcard socket lets the kernel pick the interface of every datagram, so it
has one path per remote address at most and cannot keep two uplinks to the same peer apart.
The reference instead binds the primary port on every suitable address of every interface
(``osdep/Binder.hpp``), so paths differ by local socket, and bonds name their links after the
interfaces. This module decides the set; the service opens and closes the sockets.

What is skipped, as in the reference: addresses not usable as paths (loopback unless
allowed, link-local, multicast), interfaces whose names start with a blacklisted prefix
(``settings.interfacePrefixBlacklist``, plus ``lo``, ZeroTier's own ``zt`` adapters and
``tun``/``tap`` tunnels), addresses in a network ``physical`` marks ``"blacklist": true``, and,
when ``settings.bind`` lists addresses, every address not listed. Interfaces are enumerated again
every :data:`REFRESH_INTERVAL` ms (:data:`REFRESH_INTERVAL_BONDING` with bonds), so a new
address (a Wi-Fi that came back) gets its socket and a vanished one loses it. On Linux each
socket is also tied to its interface (:func:`bind_to_device`), as the reference does.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ztnode.errors import DecodeError
from ztnode.transport.ifaddrs import named_interface_addresses

log = logging.getLogger("ztnode.service")

REFRESH_INTERVAL: Final = 30_000
REFRESH_INTERVAL_BONDING: Final = 7_500
# ZeroTierOne on Linux: loopback, its own zt# adapters, and tun#/tap# (VPN tunnels).
ALWAYS_BLACKLISTED: Final = ("lo", "zt", "tun", "tap")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Enumerator = Callable[[], list[tuple[str, IpAddress]]]


@dataclass(frozen=True, slots=True)
class BindSettings:
    """``local.conf`` keys the Binder reads (``settings.bind``,
    ``settings.interfacePrefixBlacklist``)."""

    only: tuple[IpAddress, ...] = ()
    blacklist: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_local_conf(
        cls, settings: Mapping[str, Any], physical: Mapping[str, Any] | None = None
    ) -> BindSettings:
        """``settings.bind``, ``settings.interfacePrefixBlacklist`` and the networks
        ``physical`` marks ``{"blacklist": true}`` (local.conf's top level)."""
        only = settings.get("bind", [])
        black = settings.get("interfacePrefixBlacklist", [])
        if not isinstance(only, list) or not isinstance(black, list):
            raise DecodeError("settings.bind and interfacePrefixBlacklist must be lists")
        try:
            addrs = tuple(ipaddress.ip_address(str(a)) for a in only)
        except ValueError as e:
            raise DecodeError(f"settings.bind: {e}") from None
        nets = []
        for cidr, spec in (physical or {}).items():
            if isinstance(spec, Mapping) and spec.get("blacklist") is True:
                try:
                    nets.append(ipaddress.ip_network(str(cidr), strict=False))
                except ValueError as e:
                    raise DecodeError(f"physical: {e}") from None
        return cls(addrs, tuple(str(p) for p in black), tuple(nets))


def bind_to_device(sock: socket.socket, ifname: str) -> bool:
    """Tie a bound socket to its interface (Linux ``SO_BINDTODEVICE``), as the reference's
    Binder does: without it a socket on one card's address sends through whatever card the
    routing table picks, and two "links" to one peer may be the same cable. Where the option
    is missing or refused, the socket keeps working unbound (and False is returned)."""
    opt = getattr(socket, "SO_BINDTODEVICE", None)
    if opt is None or not ifname or ifname == "lo":
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, opt, ifname.encode())
    except OSError as e:
        log.debug("SO_BINDTODEVICE %s refused: %s", ifname, e)
        return False
    return True


class Binder:
    """The wanted (interface, address) set; :meth:`refresh` says what changed."""

    def __init__(
        self,
        settings: BindSettings,
        *,
        enumerate_addresses: Enumerator = named_interface_addresses,
        extra: Iterable[tuple[str, IpAddress]] = (),
    ) -> None:
        self.settings = settings
        self._enumerate = enumerate_addresses
        self._extra = list(extra)
        #: Address -> interface name, as bound now.
        self.bound: dict[IpAddress, str] = {}
        #: Addresses that could not be bound: not tried again while they stay (said once).
        self.failed: set[IpAddress] = set()

    def wanted(self) -> dict[IpAddress, str]:
        """Address -> interface to bind now (``extra`` ones, the loopback a local world
        asked for, bypass the interface blacklist)."""
        black = (*ALWAYS_BLACKLISTED, *self.settings.blacklist)
        only = set(self.settings.only)
        nets = self.settings.networks
        out: dict[IpAddress, str] = {}
        found = [(n, ip, False) for n, ip in self._enumerate()]
        for name, ip, extra in [*found, *((n, ip, True) for n, ip in self._extra)]:
            if not extra and any(name.startswith(p) for p in black):
                continue
            if (only and ip not in only) or any(ip in net for net in nets):
                continue
            out.setdefault(ip, name)
        return out

    def refresh(self) -> tuple[dict[IpAddress, str], list[IpAddress]]:
        """Enumerate again: returns the addresses to bind (with their interface) and the
        ones to close."""
        want = self.wanted()
        self.failed &= set(want)  # gone and back later: worth another try
        added = {ip: n for ip, n in want.items() if ip not in self.bound and ip not in self.failed}
        gone = [ip for ip in self.bound if ip not in want]
        return added, gone

    def bound_now(self, ip: IpAddress, name: str) -> None:
        self.bound[ip] = name

    def closed(self, ip: IpAddress) -> None:
        self.bound.pop(ip, None)
