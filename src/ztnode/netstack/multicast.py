"""Mapping IP multicast groups to Ethernet multicast MACs, and solicited-node addresses.

* IPv4 (RFC 1112 §6.4): 01:00:5e followed by the low 23 bits of the group address.
* IPv6 (RFC 2464 §7): 33:33 followed by the low 32 bits of the group address.
* Solicited-node (RFC 4291 §2.7.1): ff02::1:ff00:0/104 plus the low 24 bits of a unicast
  address; NDP neighbor solicitations go there, so a stack must join it for each of its
  addresses (see :meth:`ztnode.wire.mac.MulticastGroup.for_address_resolution`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Final

_IPV4_MCAST_PREFIX: Final = 0x01005E000000
_IPV6_MCAST_PREFIX: Final = 0x333300000000
_SOLICITED_NODE_PREFIX: Final = int(IPv6Address("ff02::1:ff00:0"))

ALL_NODES: Final = IPv6Address("ff02::1")
ALL_ROUTERS: Final = IPv6Address("ff02::2")


def ipv4_multicast_mac(group: IPv4Address) -> int:
    """The MAC for an IPv4 multicast group (``ValueError`` if it is not 224.0.0.0/4)."""
    if not group.is_multicast:
        raise ValueError(f"{group} is not an IPv4 multicast address")
    return _IPV4_MCAST_PREFIX | (int(group) & 0x7FFFFF)


def ipv6_multicast_mac(group: IPv6Address) -> int:
    """The MAC for an IPv6 multicast group (``ValueError`` if it is not ff00::/8)."""
    if not group.is_multicast:
        raise ValueError(f"{group} is not an IPv6 multicast address")
    return _IPV6_MCAST_PREFIX | (int(group) & 0xFFFFFFFF)


def multicast_mac(group: IPv4Address | IPv6Address) -> int:
    """Either mapping, by address family."""
    if isinstance(group, IPv4Address):
        return ipv4_multicast_mac(group)
    return ipv6_multicast_mac(group)


def solicited_node_address(address: IPv6Address) -> IPv6Address:
    """ff02::1:ffXX:XXXX for ``address``."""
    return IPv6Address(_SOLICITED_NODE_PREFIX | (int(address) & 0xFFFFFF))


def solicited_node_mac(address: IPv6Address) -> int:
    """33:33:ff:XX:XX:XX, the MAC of ``address``'s solicited-node group."""
    return _IPV6_MCAST_PREFIX | 0xFF000000 | (int(address) & 0xFFFFFF)


__all__ = [
    "ALL_NODES",
    "ALL_ROUTERS",
    "ipv4_multicast_mac",
    "ipv6_multicast_mac",
    "multicast_mac",
    "solicited_node_address",
    "solicited_node_mac",
]
