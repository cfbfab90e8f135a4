"""Multicast MAC mapping and solicited-node addresses, checked against scapy."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.utils6 import in6_getnsma, in6_getnsmac

from ztnode.netstack.multicast import (
    ipv4_multicast_mac,
    ipv6_multicast_mac,
    multicast_mac,
    solicited_node_address,
    solicited_node_mac,
)
from ztnode.wire.mac import MulticastGroup, mac_from_str, mac_to_str


def test_multicast_macs() -> None:
    assert ipv4_multicast_mac(IPv4Address("224.0.0.1")) == mac_from_str("01:00:5e:00:00:01")
    # Only 23 bits are mapped: 239.128.1.2 and 224.0.1.2 share a MAC.
    assert multicast_mac(IPv4Address("239.128.1.2")) == mac_from_str("01:00:5e:00:01:02")
    assert ipv6_multicast_mac(IPv6Address("ff02::1")) == mac_from_str("33:33:00:00:00:01")
    assert multicast_mac(IPv6Address("ff02::1:ff12:3456")) == mac_from_str("33:33:ff:12:34:56")
    with pytest.raises(ValueError):
        ipv4_multicast_mac(IPv4Address("10.0.0.1"))
    with pytest.raises(ValueError):
        ipv6_multicast_mac(IPv6Address("fd00::1"))


@given(st.integers(0, (1 << 128) - 1).map(IPv6Address))
def test_solicited_node_vs_scapy(a: IPv6Address) -> None:
    sn = solicited_node_address(a)
    assert sn.packed == in6_getnsma(a.packed)
    assert mac_to_str(solicited_node_mac(a)) == in6_getnsmac(sn.packed)
    assert solicited_node_mac(a) == multicast_mac(sn)
    assert MulticastGroup.for_address_resolution(a).mac == solicited_node_mac(a)
