"""ARP (RFC 826) codec against scapy, round trips and fuzzing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from ztnode.errors import DecodeError
from ztnode.netstack.arp import ARP_REPLY, ARP_REQUEST, ArpPacket

macs = st.integers(0, (1 << 48) - 1)
ipv4s = st.integers(0, 0xFFFFFFFF).map(IPv4Address)


def mutate_fuzz(decode: Callable[[bytes], Any], seed: bytes, d: st.DataObject) -> None:
    """Truncate and flip bytes of a valid encoding; only DecodeError may escape."""
    b = bytearray(seed[: d.draw(st.integers(0, len(seed)))])
    for _ in range(d.draw(st.integers(0, 4))):
        if b:
            b[d.draw(st.integers(0, len(b) - 1))] = d.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(b))


def test_arp_vs_scapy() -> None:
    raw = bytes(
        ARP(
            op=1,
            hwsrc="02:00:00:00:00:01",
            psrc="10.1.2.3",
            hwdst="00:00:00:00:00:00",
            pdst="10.1.2.4",
        )
    )
    a = ArpPacket.decode(raw)
    assert a == ArpPacket.request(0x020000000001, IPv4Address("10.1.2.3"), IPv4Address("10.1.2.4"))
    r = a.reply(0x020000000002)
    assert r.op == ARP_REPLY and r.sender_ip == IPv4Address("10.1.2.4")
    s = ARP(r.encode())
    assert s.op == 2 and s.hwsrc == "02:00:00:00:00:02" and s.psrc == "10.1.2.4"
    assert s.hwdst == "02:00:00:00:00:01" and s.pdst == "10.1.2.3"
    assert ArpPacket.decode(raw + b"\0" * 18) == a  # Ethernet padding ignored
    assert not a.is_gratuitous
    assert ArpPacket.request(1, IPv4Address("1.2.3.4"), IPv4Address("1.2.3.4")).is_gratuitous


def test_arp_rejects() -> None:
    good = ArpPacket.request(1, IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2")).encode()
    for bad in (
        good[:27],
        b"\x00\x06" + good[2:],  # htype IEEE 802
        good[:2] + b"\x86\xdd" + good[4:],
        good[:4] + b"\x08" + good[5:],
        good[:6] + b"\x00\x03" + good[8:],  # RARP
    ):
        with pytest.raises(DecodeError):
            ArpPacket.decode(bad)
    with pytest.raises(ValueError):
        ArpPacket(3, 0, IPv4Address(0), 0, IPv4Address(0))
    with pytest.raises(ValueError):
        ArpPacket(ARP_REQUEST, 1 << 48, IPv4Address(0), 0, IPv4Address(0))


@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ipv4s, macs, ipv4s)
def test_arp_round_trip(op: int, sm: int, si: IPv4Address, tm: int, ti: IPv4Address) -> None:
    a = ArpPacket(op, sm, si, tm, ti)
    assert ArpPacket.decode(a.encode()) == a


@settings(max_examples=300)
@given(st.data())
def test_arp_fuzz(d: st.DataObject) -> None:
    seed = ArpPacket.request(5, IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2")).encode()
    mutate_fuzz(ArpPacket.decode, seed, d)
