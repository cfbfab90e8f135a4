"""The zone of a network's members, as the controller knows them.

Why in the controller layer: only the controller has every member's addresses and the name an
operator gave it. The names follow ZeroNSD, the name service ZeroTier publishes for its
networks: ``zt-<member id>.<domain>`` for every authorized member, and ``<name>.<domain>`` for a
member whose ``name`` makes a DNS label. Addresses are those the controller hands out: the
member's ``ipAssignments`` and, when the network assigns them, its RFC 4193 and 6PLANE
addresses.

Two members may be given the same name; the one created first keeps it (the other still has
its ``zt-`` name), so adding a member can never take a name away from a running one. A name
that looks like another member's ``zt-`` name is not served: an operator's typo must not let a
member answer for another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ztnode.controller.configbuild import json_bool, rfc4193_address, sixplane_address
from ztnode.names.labels import default_hostname, label_from_text, normalize_name
from ztnode.names.zone import Zone

__all__ = ["member_zone", "network_domain"]

_ID_NAME = re.compile(r"^zt-[0-9a-f]{10}$")


def network_domain(network: dict[str, Any]) -> str | None:
    """The pushed DNS domain of a network object, or None."""
    dns = network.get("dns")
    if not isinstance(dns, dict):
        return None
    domain = normalize_name(str(dns.get("domain") or ""))
    return domain or None


def _addresses(
    nwid: int, member: dict[str, Any], network: dict[str, Any]
) -> list[IPv4Address | IPv6Address]:
    out: list[IPv4Address | IPv6Address] = []
    for entry in member.get("ipAssignments") or []:
        try:
            out.append(ip_address(str(entry).split("/", 1)[0]))
        except ValueError:
            continue
    v6 = network.get("v6AssignMode")
    if isinstance(v6, dict) and not json_bool(member.get("noAutoAssignIps"), False):
        address = int(str(member.get("address") or member.get("id")), 16)
        if json_bool(v6.get("rfc4193"), False):
            out.append(rfc4193_address(nwid, address).ip)
        if json_bool(v6.get("6plane"), False):
            out.append(sixplane_address(nwid, address).ip)
    return out


def member_zone(
    network: dict[str, Any], members: Iterable[dict[str, Any]], *, ttl: int = 60
) -> Zone | None:
    """The zone for ``network``'s pushed domain (None without one), from its members."""
    domain = network_domain(network)
    if domain is None:
        return None
    nwid = int(str(network["id"]), 16)
    zone = Zone(domain, ttl=ttl, serial=int(network.get("revision") or 1))
    named: set[str] = set()
    ordered = sorted(
        (m for m in members if json_bool(m.get("authorized"), False)),
        key=lambda m: (int(m.get("creationTime") or 0), str(m.get("id"))),
    )
    for m in ordered:
        try:
            address = int(str(m.get("address") or m.get("id")), 16)
        except ValueError:
            continue
        addrs = _addresses(nwid, m, network)
        if not addrs:
            continue
        zone.add(default_hostname(address), addrs)
        label = label_from_text(str(m.get("name") or ""))
        if label and label not in named and not _ID_NAME.match(label):
            named.add(label)
            zone.add(label, addrs)
    return zone
