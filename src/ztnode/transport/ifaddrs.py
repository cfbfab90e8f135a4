"""This host's interface addresses, for advertising direct paths to peers (PUSH_DIRECT_PATHS).

ZeroTier tells trusted peers every local address it could be reached at, besides the NAT
surfaces roots report, so two nodes on one LAN can talk directly. The stdlib has no getifaddrs,
so on Linux: IPv4 through the SIOCGIFADDR ioctl per interface, IPv6 from ``/proc/net/if_inet6``.
Elsewhere the list is empty (roots' NAT reports still work). Only addresses valid as ZeroTier
paths are returned (no loopback, link-local or multicast).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

from ztnode.wire.inetaddr import is_valid_path_address

SIOCGIFADDR = 0x8915
_IFNAMSIZ = 16


def _ipv4_addresses() -> list[tuple[str, ipaddress.IPv4Address]]:
    out: list[tuple[str, ipaddress.IPv4Address]] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            req = struct.pack("256s", name.encode()[: _IFNAMSIZ - 1])
            with contextlib.suppress(OSError):
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)
                out.append((name, ipaddress.IPv4Address(res[20:24])))
    return out


def _ipv6_addresses() -> list[tuple[str, ipaddress.IPv6Address]]:
    out: list[tuple[str, ipaddress.IPv6Address]] = []
    # thread-self: a thread that entered another network namespace sees that one's addresses
    # (/proc/net follows the process's main thread).
    proc = Path("/proc/thread-self/net/if_inet6")
    if not proc.exists():
        proc = Path("/proc/net/if_inet6")
    with contextlib.suppress(OSError):
        for line in proc.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6:
                with contextlib.suppress(ValueError):
                    out.append((fields[5], ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return out


def named_interface_addresses(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
) -> list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(interface name, address) for every address valid as a ZeroTier path, in interface
    order (the Binder binds one socket per address and names bond links after interfaces)."""
    found: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
    if socket.AF_INET in families:
        found.extend(_ipv4_addresses())
    if socket.AF_INET6 in families:
        found.extend(_ipv6_addresses())
    return [(n, ip) for n, ip in dict.fromkeys(found) if is_valid_path_address(ip)]


def interface_addresses(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return list(dict.fromkeys(ip for _, ip in named_interface_addresses(families)))
