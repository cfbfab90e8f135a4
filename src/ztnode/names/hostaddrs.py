"""A host's own addresses as the multicast name engines hold them, and the checks both make.

Why shared: mDNS and LLMNR answer for the same host with the same A/AAAA records; which record
type an address has, which types a lookup of a family asks, how the addresses a program hands
in are checked, and how a limits value is validated must not drift between the two engines.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ztnode.names.dnscodec import TYPE_A, TYPE_AAAA

__all__ = ["check_positive_ints", "checked_addresses", "rdtype_of", "rdtypes_for"]

Address = IPv4Address | IPv6Address


def rdtypes_for(family: int) -> tuple[int, ...]:
    """The record types a lookup of ``family`` (0, AF_INET or AF_INET6) asks for."""
    if family == 0:
        return (TYPE_A, TYPE_AAAA)
    if family == socket.AF_INET:
        return (TYPE_A,)
    if family == socket.AF_INET6:
        return (TYPE_AAAA,)
    raise ValueError(f"family must be 0, socket.AF_INET or socket.AF_INET6, not {family!r}")


def rdtype_of(address: Address) -> int:
    return TYPE_A if isinstance(address, IPv4Address) else TYPE_AAAA


def checked_addresses(addresses: Sequence[Address], limit: int) -> tuple[Address, ...]:
    """The host's addresses, deduplicated in order; a ValueError for anything that is not an
    address or for more than ``limit`` of them."""
    new: list[Address] = []
    for address in addresses:
        if not isinstance(address, IPv4Address | IPv6Address):
            raise ValueError(f"addresses must be IPv4Address/IPv6Address, not {address!r}")
        if address not in new:
            new.append(address)
    if len(new) > limit:
        raise ValueError(f"at most {limit} addresses, not {len(new)}")
    return tuple(new)


def check_positive_ints(limits: Any) -> None:
    """Every field of a limits dataclass is a positive int (a bool is not one)."""
    for name in limits.__dataclass_fields__:
        value = getattr(limits, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{type(limits).__name__}.{name} must be a positive int, not {value!r}"
            )
