"""Per-network MACs, MAC text, multicast groups (protocol-network.md §1.3-1.4)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.wire.mac import (
    BROADCAST_GROUP,
    BROADCAST_MAC,
    IPV6_ALL_NODES_GROUP,
    MulticastGroup,
    address_from_mac,
    first_octet_for_network,
    is_broadcast,
    is_locally_administered,
    is_multicast,
    is_network_mac,
    mac_from_address,
    mac_from_bytes,
    mac_from_str,
    mac_to_bytes,
    mac_to_str,
)

NWID = 0x8056C2E21C000001
ADDR = 0x1234567890


def test_reference_vectors() -> None:
    # Verified by compiling the reference (protocol-network.md §1.3).
    assert mac_to_str(mac_from_address(ADDR, NWID)) == "02:12:34:4a:9a:52"
    # Octet 0 would be 0x52 (KVM's prefix) and becomes 0x32; nwid bytes 1..5 are zero.
    assert mac_to_str(mac_from_address(ADDR, 0x52)) == "32:12:34:56:78:90"
    assert mac_to_str(mac_from_address(ADDR, 0x53)) == "32:12:34:56:78:90"


def test_first_octet() -> None:
    assert first_octet_for_network(NWID) == 0x02
    assert first_octet_for_network(0xFF) == 0xFE
    assert first_octet_for_network(0x52) == 0x32
    # Every nwid whose low byte is 0x50..0x53 would give 0x52 and gets 0x32 instead.
    assert {first_octet_for_network(n) for n in (0x50, 0x51, 0x52, 0x53)} == {0x32}
    assert first_octet_for_network(0x01) == 0x02  # the multicast bit is always cleared


def test_inverse() -> None:
    mac = mac_from_address(ADDR, NWID)
    assert address_from_mac(mac, NWID) == ADDR
    assert is_network_mac(mac, NWID)
    assert not is_network_mac(mac, NWID ^ 0x04)
    assert not is_multicast(mac)
    assert is_locally_administered(mac)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 40) - 1), st.integers(0, (1 << 64) - 1))
def test_round_trip(addr: int, nwid: int) -> None:
    mac = mac_from_address(addr, nwid)
    assert 0 <= mac < 1 << 48
    assert address_from_mac(mac, nwid) == addr
    assert is_network_mac(mac, nwid)
    assert not is_multicast(mac)
    assert mac_from_str(mac_to_str(mac)) == mac
    assert mac_from_bytes(mac_to_bytes(mac)) == mac


def _mac_by_definition(addr: int, nwid: int) -> int:
    """MAC::fromAddress spelled out byte by byte (protocol-network.md §1.3), no tables."""
    octets = [first_octet_for_network(nwid)]
    for i in range(5):
        octets.append(((addr >> (32 - 8 * i)) & 0xFF) ^ ((nwid >> (8 * (i + 1))) & 0xFF))
    return int.from_bytes(bytes(octets), "big")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 40) - 1), st.lists(st.integers(0, (1 << 64) - 1), max_size=20))
def test_per_network_table_gives_the_definition(addr: int, nwids: list[int]) -> None:
    """The per-network table (bounded: emptied past its limit) never changes an answer."""
    for nwid in nwids + [n * 0x1_0000_0001 for n in range(1500)][:: 1 + addr % 7]:
        mac = mac_from_address(addr, nwid)
        assert mac == _mac_by_definition(addr, nwid)
        assert address_from_mac(mac, nwid) == addr


def test_predicates() -> None:
    assert is_broadcast(BROADCAST_MAC) and is_multicast(BROADCAST_MAC)
    assert is_multicast(0x333300000001) and not is_broadcast(0x333300000001)
    assert not is_multicast(0x020000000000)


def test_text() -> None:
    assert mac_to_str(0x0A0B0C0D0E0F) == "0a:0b:0c:0d:0e:0f"
    assert mac_from_str("0A-0B-0C-0D-0E-0F") == 0x0A0B0C0D0E0F
    assert mac_from_str("0a0b0c0d0e0f") == 0x0A0B0C0D0E0F
    for bad in ["", "0a:0b", "0a:0b:0c:0d:0e:0g", "0a:0b:0c:0d:0e:0f:00"]:
        with pytest.raises(DecodeError):
            mac_from_str(bad)
    with pytest.raises(DecodeError):
        mac_from_bytes(b"12345")


def test_multicast_groups() -> None:
    g4 = MulticastGroup.for_address_resolution(IPv4Address("10.1.2.3"))
    assert g4 == MulticastGroup(BROADCAST_MAC, 0x0A010203)
    g6 = MulticastGroup.for_address_resolution(IPv6Address("fd00::aa:bbcc:ddee"))
    assert g6 == MulticastGroup(0x3333FFCCDDEE, 0)
    assert BROADCAST_GROUP.is_broadcast and BROADCAST_GROUP.adi == 0
    assert IPV6_ALL_NODES_GROUP.mac == 0x333300000001
    # Ordered by (mac, adi) like the reference's operator<.
    groups = [MulticastGroup(2, 1), MulticastGroup(1, 5), MulticastGroup(2, 0)]
    assert sorted(groups) == [MulticastGroup(1, 5), MulticastGroup(2, 0), MulticastGroup(2, 1)]
    assert str(MulticastGroup(BROADCAST_MAC, 1)) == "ff:ff:ff:ff:ff:ff/00000001"
    assert len({MulticastGroup(1, 2), MulticastGroup(1, 2)}) == 1
    with pytest.raises(ValueError):
        MulticastGroup(1 << 48, 0)
    with pytest.raises(ValueError):
        MulticastGroup(0, 1 << 32)
