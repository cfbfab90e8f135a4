"""Ethernet II header codec against scapy, round trips and fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether

from ztnode.errors import DecodeError
from ztnode.netstack.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV6, EthernetHeader
from ztnode.wire.mac import mac_to_str

macs = st.integers(0, (1 << 48) - 1)


def test_ethernet_vs_scapy() -> None:
    raw = bytes(Ether(dst="33:33:00:00:00:01", src="02:11:22:33:44:55", type=0x86DD) / b"xyz")
    hdr, payload = EthernetHeader.parse(raw)
    assert hdr == EthernetHeader(0x333300000001, 0x021122334455, ETHERTYPE_IPV6)
    assert bytes(payload) == b"xyz"
    ours = EthernetHeader(0x021122334455, 0x0AFFFFFFFF01, ETHERTYPE_ARP).encode(b"abc")
    e = Ether(ours)
    assert e.dst == "02:11:22:33:44:55" and e.src == "0a:ff:ff:ff:ff:01" and e.type == 0x0806


def test_ethernet_rejects_vlan_and_8023() -> None:
    tagged = EthernetHeader(1, 2, 0x8100).encode(b"\0" * 20)
    with pytest.raises(DecodeError, match="VLAN"):
        EthernetHeader.parse(tagged)
    with pytest.raises(DecodeError, match=r"802\.3"):
        EthernetHeader.decode(EthernetHeader(1, 2, 46).encode(b"\0" * 46))
    with pytest.raises(DecodeError):
        EthernetHeader.decode(b"\0" * 13)
    with pytest.raises(ValueError):
        EthernetHeader(1 << 48, 0, 0x800)
    with pytest.raises(ValueError):
        EthernetHeader(0, 0, 0x10000)


@given(macs, macs, st.integers(0x0600, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8)))
def test_ethernet_round_trip(dst: int, src: int, et: int) -> None:
    h = EthernetHeader(dst, src, et)
    hh, p = EthernetHeader.parse(h.encode(b"payload"))
    assert hh == h and bytes(p) == b"payload"
    assert mac_to_str(src) in str(h)


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_ethernet_fuzz(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        EthernetHeader.parse(data)


def test_full_stack_dissection_of_scapy_frames() -> None:
    """Ethernet -> IP -> transport, each layer decoded by its own codec, as the stack will."""
    from ipaddress import IPv4Address, IPv6Address

    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6

    from ztnode.netstack.ethernet import ETHERTYPE_IPV4
    from ztnode.netstack.icmp import NeighborSolicitation, decode_icmp6
    from ztnode.netstack.ipv4 import IPv4Header
    from ztnode.netstack.ipv6 import IPv6Header, walk_extension_headers
    from ztnode.netstack.tcpwire import ACK, PSH, TcpSegmentHeader

    frame = bytes(
        Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=1234, dport=80, flags="PA", seq=1, ack=2, options=[("Timestamp", (5, 6))])
        / b"GET / HTTP/1.0\r\n\r\n"
    )
    eth, l3 = EthernetHeader.parse(frame)
    assert eth.ethertype == ETHERTYPE_IPV4
    ip, l4 = IPv4Header.parse(l3)
    tcp, data = TcpSegmentHeader.parse(l4, ip.src, ip.dst)
    assert ip.src == IPv4Address("10.0.0.1") and tcp.flags == ACK | PSH
    assert tcp.timestamps == (5, 6) and bytes(data) == b"GET / HTTP/1.0\r\n\r\n"

    target = "fd00::2"
    frame6 = bytes(
        Ether(dst="33:33:ff:00:00:02", src="02:00:00:00:00:01")
        / IPv6(src="fd00::1", dst="ff02::1:ff00:2", hlim=255)
        / ICMPv6ND_NS(tgt=target)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    )
    eth6, l3 = EthernetHeader.parse(frame6)
    assert eth6.ethertype == ETHERTYPE_IPV6
    ip6, payload = IPv6Header.parse(l3)
    chain = walk_extension_headers(ip6.next_header, payload)
    msg = decode_icmp6(payload[chain.upper_offset :], ip6.src, ip6.dst)
    assert msg == NeighborSolicitation(IPv6Address(target), 0x020000000001)
    assert ip6.hop_limit == 255
