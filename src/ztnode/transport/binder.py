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

from ztnode.transport.ifaddrs import named_interface_addresses
from ztnode.transport.localconf import LocalConf

log = logging.getLogger("ztnode.service")

REFRESH_INTERVAL: Final = 30_000
REFRESH_INTERVAL_BONDING: Final = 7_500
# ZeroTierOne on Linux: loopback, its own zt# adapters, and tun#/tap# (VPN tunnels).
ALWAYS_BLACKLISTED: Final = ("lo", "zt", "tun", "tap")
#: ztnode's additions: container and virtual-machine NAT bridges (Docker's ``docker0`` and
#: ``docker_gwbridge``, libvirt's ``virbr0``), whose addresses no peer elsewhere can reach; the
#: reference advertises them and its peers waste HELLOs on them.
DEFAULT_BLACKLISTED: Final = ("docker", "virbr")

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
        ``physical`` marks ``{"blacklist": true}`` (local.conf's top level), checked as the
        whole file is (:class:`~ztnode.transport.localconf.LocalConfError`)."""
        return cls.from_conf(LocalConf.parse({"settings": settings, "physical": physical}))

    @classmethod
    def from_conf(cls, conf: LocalConf) -> BindSettings:
        """The Binder's part of a checked ``local.conf``."""
        return cls(conf.bind, conf.interface_prefix_blacklist, conf.blacklisted_networks)

    def admits(self, name: str, ip: IpAddress) -> bool:
        """Whether an interface address may carry ZeroTier traffic (shouldBindInterface):
        not on a blacklisted interface, not in a blacklisted network, and listed in
        ``settings.bind`` when that is given."""
        if any(name.startswith(p) for p in (*ALWAYS_BLACKLISTED, *DEFAULT_BLACKLISTED)):
            return False
        if any(name.startswith(p) for p in self.blacklist):
            return False
        if self.only and ip not in self.only:
            return False
        return not any(ip.version == net.version and ip in net for net in self.networks)


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
        rules = self.settings
        out: dict[IpAddress, str] = {}
        for name, ip in self._enumerate():
            if rules.admits(name, ip):
                out.setdefault(ip, name)
        only, nets = set(rules.only), rules.networks
        for name, ip in self._extra:
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
