"""Checksum offload for UDP (``accel.udp_datagrams``, ``accel/csrc/tx_udp.c``) against Python.

The oracle is the path it stands in for: :meth:`UdpOffload.packet` (itself checked here
against the stack's datagram builders and the header codecs) made into a FRAME packet, armored
by the Python armor and cut by ``fragment.split``.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.accel.conftest import need
from ztnode import accel
from ztnode.crypto import SymmetricKey
from ztnode.netstack.ipoutput import ipv4_datagram
from ztnode.netstack.ipproto import PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv6 import IPv6Header
from ztnode.netstack.stackconfig import IP6_HEADER
from ztnode.netstack.tso import UdpOffload
from ztnode.netstack.udp import UdpHeader
from ztnode.netstack.udpmux import _udp_head, udp_datagram
from ztnode.wire import packet as pk
from ztnode.wire.constants import MAX_PACKET_FRAGMENTS, Cipher, Verb
from ztnode.wire.fragment import fragment_count, split

ME = 0x0102030405
PEER = 0x0A0B0C0D0E
NWID = 0x0102030405ABCDEF
MTU = 1432
TRUSTED_ID = 0x0123_4567_89AB_CDEF
SRC4, DST4 = bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2])
SRC6, DST6 = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")


@pytest.fixture
def key() -> SymmetricKey:
    return SymmetricKey(bytes(range(48)))


def built(v6: bool, sport: int, dport: int, ttl: int, ident: int, payload: bytes) -> bytes:
    """What the stack's remembered way sends without offload (udpmux.UdpMux.send)."""
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    dgram = udp_datagram(sport, dport, payload, src, dst, v6)
    if v6:
        return IP6_HEADER.pack(0x60000000, len(dgram), PROTO_UDP, ttl, src, dst) + dgram
    return ipv4_datagram(src, dst, PROTO_UDP, ttl, ident, dgram)


def offload(v6: bool, sport: int, dport: int, ttl: int, ident: int, payload: bytes) -> UdpOffload:
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    return UdpOffload(_udp_head(src, dst, sport, dport, ttl), 0 if v6 else ident, payload)


def zero_sum_payload(v6: bool, sport: int, dport: int) -> bytes:
    """A payload whose UDP checksum computes to 0, which RFC 768 sends as 0xFFFF: its last two
    bytes make the sum come out at 0xFFFF."""
    body = bytearray(b"zero sum" + bytes(2))
    first = built(v6, sport, dport, 64, 1, bytes(body))
    ihl = 40 if v6 else 20
    ck = struct.unpack_from(">H", first, ihl + 6)[0]
    struct.pack_into(">H", body, len(body) - 2, ck)
    return bytes(body)


@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 3000),
    sport=st.integers(1, 0xFFFF),
    dport=st.integers(1, 0xFFFF),
    ttl=st.integers(1, 255),
    ident=st.integers(0, 0xFFFF),
)
@settings(max_examples=60, deadline=None)
def test_reference_build_is_the_stacks_datagram(
    v6: bool, n: int, sport: int, dport: int, ttl: int, ident: int
) -> None:
    payload = random.Random(n).randbytes(n)
    got = offload(v6, sport, dport, ttl, ident, payload).packet()
    assert got == built(v6, sport, dport, ttl, ident, payload)
    # and the codecs agree the checksums hold
    if v6:
        h6, body = IPv6Header.parse(got)
        udp, data = UdpHeader.parse(body, h6.src, h6.dst)
    else:
        h4, body = IPv4Header.parse(got)
        udp, data = UdpHeader.parse(body, h4.src, h4.dst)
    assert (udp.src_port, udp.dst_port, data) == (sport, dport, payload)


@pytest.mark.parametrize("v6", [False, True])
def test_a_zero_sum_goes_as_all_ones(v6: bool) -> None:
    payload = zero_sum_payload(v6, 4000, 53)
    got = offload(v6, 4000, 53, 64, 1, payload).packet()
    ihl = 40 if v6 else 20
    assert got[ihl + 6 : ihl + 8] == b"\xff\xff"
    assert got == built(v6, 4000, 53, 64, 1, payload)


def python_datagrams(
    key: SymmetricKey, cipher: Cipher, pid: bytes, packet: bytes, mtu: int
) -> list[bytes] | None:
    """The frame of ``packet`` as Switch.send_on makes it (see test_offload)."""
    body = NWID.to_bytes(8, "big") + (0x86DD if packet[0] >> 4 == 6 else 0x0800).to_bytes(2, "big")
    clear = pk.new_packet(pid, ME, PEER, Verb.FRAME, body + packet)
    if fragment_count(len(clear), mtu) > MAX_PACKET_FRAGMENTS:
        return None
    if len(clear) > mtu:
        clear[18] |= 0x40
    if cipher == Cipher.NONE_TRUSTED_PATH:
        pk.armor_trusted(clear, TRUSTED_ID)
    else:
        pk._armor_python(clear, key, cipher)
    return split(clear, mtu)


@pytest.mark.parametrize(
    "cipher", [Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV, Cipher.NONE_TRUSTED_PATH]
)
@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 9000),
    mtu=st.sampled_from([MTU, 576, 1500, 64]),
    pid=st.binary(min_size=8, max_size=8),
    ident=st.integers(0, 0xFFFF),
)
@example(n=0, mtu=MTU, pid=bytes(8), ident=0)
@example(n=MTU - 38 - 28, mtu=MTU, pid=bytes(8), ident=0xFFFF)  # exactly one datagram (IPv4)
@example(n=MTU - 38 - 27, mtu=MTU, pid=bytes(8), ident=1)  # one byte over: two
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_c_udp_equals_the_python_path(
    key: SymmetricKey, cipher: Cipher, v6: bool, n: int, mtu: int, pid: bytes, ident: int
) -> None:
    need(accel.AVAILABLE, accel.REASON)
    payload = random.Random(n).randbytes(n)
    dgram = offload(v6, 40000, 7, 64, ident, payload)
    header = pk.new_packet(bytes(8), ME, PEER, Verb.FRAME)
    if cipher == Cipher.NONE_TRUSTED_PATH:
        pk.armor_trusted(header, TRUSTED_ID)
    ethertype = 0x86DD if v6 else 0x0800
    packet = dgram.packet()
    want = python_datagrams(key, cipher, pid, packet, mtu) if len(packet) <= 0xFFFF else None
    got = accel.udp_datagrams(
        key, cipher, bytes(header), pid, NWID, ethertype, dgram.header, dgram.ip_id, payload, mtu
    )
    assert got == want  # None when the packet needs more datagrams than the protocol allows


@pytest.mark.parametrize("v6", [False, True])
def test_c_udp_zero_sum_goes_as_all_ones(key: SymmetricKey, v6: bool) -> None:
    need(accel.AVAILABLE, accel.REASON)
    payload = zero_sum_payload(v6, 4000, 53)
    dgram = offload(v6, 4000, 53, 64, 1, payload)
    header = bytes(pk.new_packet(bytes(8), ME, PEER, Verb.FRAME))
    et = 0x86DD if v6 else 0x0800
    got = accel.udp_datagrams(key, 1, header, bytes(8), NWID, et, dgram.header, 1, payload, MTU)
    assert got == python_datagrams(key, Cipher.POLY1305_SALSA2012, bytes(8), dgram.packet(), MTU)


def test_c_udp_declines_what_it_does_not_take(key: SymmetricKey) -> None:
    need(accel.AVAILABLE, accel.REASON)
    header = bytes(pk.new_packet(bytes(8), ME, PEER, Verb.FRAME))
    head = _udp_head(SRC4, DST4, 1, 2, 64)

    def send(cipher: int, hdr: bytes, payload: bytes = b"x", mtu: int = MTU) -> object:
        return accel.udp_datagrams(
            key, cipher, header, bytes(8), NWID, 0x0800, hdr, 1, payload, mtu
        )

    assert send(3, head) is not None
    assert send(Cipher.POLY1305_NONE, head) is None  # cipher 0
    assert send(Cipher.NONE_TRUSTED_PATH, head) is None  # a trusted path's id 0
    assert send(3, head, mtu=40) is None
    bad = bytearray(head)
    bad[0] = 0x46  # IPv4 options: not a shape the C side builds
    assert send(3, bytes(bad)) is None
    assert send(3, head[:27]) is None  # a short header
    assert send(3, head + bytes(4)) is None  # UDP header of the wrong length
    assert send(3, head, bytes(accel.MAX_PACKET)) is None  # larger than a packet
