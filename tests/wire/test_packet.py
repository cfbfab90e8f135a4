"""Packet header layout, the receive-path accessors and the mutable header fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import MIN_PACKET_LENGTH, Cipher, Verb

H = bytes.fromhex

addresses = st.integers(0, 2**40 - 1)
packet_ids = st.binary(min_size=8, max_size=8)
verbs = st.integers(0, 0x1F)
payloads = st.binary(max_size=300)

# The §14 plaintext packet: IV, dst, src, flags 0, MAC 0, verb FRAME, 40 payload bytes.
SECTION14_PLAIN = H(
    "0102030405060708112233445566778899aa00000000000000000006030a11181f262d343b424950575e656c73"
    "7a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d14"
)


def test_new_packet_layout_matches_section14() -> None:
    payload = bytes((7 * i + 3) % 256 for i in range(40))
    pkt = pk.new_packet(H("0102030405060708"), 0x1122334455, 0x66778899AA, Verb.FRAME, payload)
    assert isinstance(pkt, bytearray)
    assert bytes(pkt) == SECTION14_PLAIN


def test_header_parse_fields() -> None:
    raw = bytearray(SECTION14_PLAIN)
    raw[18] = 0x80 | 0x40 | (1 << 3) | 5
    raw[19:27] = H("a1a2a3a4a5a6a7a8")
    h = pk.PacketHeader.parse(raw)
    assert h.packet_id == 0x0102030405060708
    assert h.packet_id_bytes == H("0102030405060708")
    assert h.dest == 0x1122334455
    assert h.source == 0x66778899AA
    assert h.flags == 0xCD
    assert h.cipher == Cipher.POLY1305_SALSA2012
    assert h.hops == 5
    assert h.fragmented
    assert h.mac == H("a1a2a3a4a5a6a7a8")
    assert h.to_bytes() == bytes(raw[:27])


@given(st.integers(0, 2**64 - 1), addresses, addresses, st.integers(0, 255), packet_ids)
def test_header_round_trip(pid: int, dest: int, src: int, flags: int, mac: bytes) -> None:
    h = pk.PacketHeader(pid, dest, src, flags, mac)
    raw = h.to_bytes() + b"\x06"
    assert len(raw) == MIN_PACKET_LENGTH
    assert pk.PacketHeader.parse(raw) == h
    assert pk.peek_packet_id(raw) == pid
    assert pk.peek_dest(raw) == dest
    assert pk.peek_source(raw) == src
    assert pk.peek_flags(raw) == flags
    assert pk.peek_cipher(raw) == (flags >> 3) & 7
    assert pk.peek_hops(raw) == flags & 7
    assert pk.is_fragmented(raw) == bool(flags & 0x40)
    assert pk.peek_trusted_path_id(raw) == int.from_bytes(mac, "big")


@given(packet_ids, addresses, addresses, verbs, payloads)
def test_new_packet_fields(pid: bytes, dest: int, src: int, verb: int, payload: bytes) -> None:
    pkt = pk.new_packet(pid, dest, src, verb, payload)
    h = pk.PacketHeader.parse(pkt)
    assert (h.packet_id_bytes, h.dest, h.source, h.flags, h.mac) == (pid, dest, src, 0, bytes(8))
    assert pk.peek_verb(pkt) == verb
    assert not pk.is_compressed(pkt)
    assert bytes(pkt[28:]) == payload


def test_peek_verb_masks_flags() -> None:
    pkt = bytearray(SECTION14_PLAIN)
    pkt[27] = 0x80 | Verb.NETWORK_CONFIG
    assert pk.peek_verb(pkt) == Verb.NETWORK_CONFIG
    assert pk.is_compressed(pkt)


@pytest.mark.parametrize(
    ("fn", "need"),
    [
        (pk.peek_packet_id, 8),
        (pk.peek_dest, 13),
        (pk.peek_source, 18),
        (pk.peek_flags, 19),
        (pk.peek_cipher, 19),
        (pk.peek_hops, 19),
        (pk.is_fragmented, 19),
        (pk.peek_trusted_path_id, 27),
        (pk.peek_verb, 28),
        (pk.is_compressed, 28),
        (pk.PacketHeader.parse, 28),
    ],
)
def test_accessors_reject_short_buffers(fn: object, need: int) -> None:
    assert callable(fn)
    fn(SECTION14_PLAIN[:need])
    with pytest.raises(DecodeError):
        fn(SECTION14_PLAIN[: need - 1])


@given(st.binary(max_size=64))
def test_header_parse_fuzz(data: bytes) -> None:
    try:
        h = pk.PacketHeader.parse(data)
    except DecodeError:
        assert len(data) < MIN_PACKET_LENGTH
    else:
        assert h.to_bytes() == data[:27]


def test_new_packet_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        pk.new_packet(b"short", 1, 2, Verb.NOP)
    with pytest.raises(LocalProtocolError):
        pk.new_packet(bytes(8), 1 << 40, 2, Verb.NOP)
    with pytest.raises(LocalProtocolError):
        pk.new_packet(bytes(8), 1, -1, Verb.NOP)
    with pytest.raises(LocalProtocolError):
        pk.new_packet(bytes(8), 1, 2, 0x20)
    with pytest.raises(LocalProtocolError):
        pk.PacketHeader(0, 1, 2, 0, b"short").to_bytes()
    with pytest.raises(LocalProtocolError):
        pk.PacketHeader(1 << 64, 1, 2, 0, bytes(8)).to_bytes()


# --- datagram classification -------------------------------------------------------------------


def test_classify_datagram() -> None:
    assert pk.classify_datagram(bytes(13)) == pk.DatagramKind.BEACON
    assert pk.classify_datagram(bytes(16)) == pk.DatagramKind.INVALID
    frag = bytearray(17)
    frag[13] = 0xFF
    assert pk.classify_datagram(frag) == pk.DatagramKind.FRAGMENT
    assert pk.is_fragment(frag)
    assert not pk.is_fragment(SECTION14_PLAIN)
    assert pk.classify_datagram(bytes(17)) == pk.DatagramKind.INVALID  # neither fragment nor packet
    assert pk.classify_datagram(bytes(27)) == pk.DatagramKind.INVALID
    assert pk.classify_datagram(SECTION14_PLAIN) == pk.DatagramKind.PACKET
    # A source address with a 0xff top byte is taken for a fragment: why those are reserved.
    odd = bytearray(SECTION14_PLAIN)
    odd[13] = 0xFF
    assert pk.classify_datagram(odd) == pk.DatagramKind.FRAGMENT
    for n in (0, 1, 12, 14, 15):
        assert pk.classify_datagram(bytes(n)) == pk.DatagramKind.INVALID


@given(st.binary(max_size=80))
def test_classify_never_raises(data: bytes) -> None:
    kind = pk.classify_datagram(data)
    if kind == pk.DatagramKind.PACKET:
        pk.PacketHeader.parse(data)


# --- hops and flags ----------------------------------------------------------------------------


def test_set_and_increment_hops_keep_other_flags() -> None:
    pkt = bytearray(SECTION14_PLAIN)
    pkt[18] = 0xD8  # 0x80 | 0x40 | cipher 3
    pk.set_hops(pkt, 6)
    assert pkt[18] == 0xDE
    assert pk.increment_hops(pkt) == 7
    assert pkt[18] == 0xDF
    assert pk.increment_hops(pkt) == 0  # wraps within three bits, as Packet::incrementHops
    assert pkt[18] == 0xD8
    with pytest.raises(LocalProtocolError):
        pk.set_hops(pkt, 8)
    with pytest.raises(LocalProtocolError):
        pk.set_hops(bytearray(20), 1)


def test_set_fragmented() -> None:
    pkt = bytearray(SECTION14_PLAIN)
    pkt[18] = 0x8B
    pk.set_fragmented(pkt)
    assert pkt[18] == 0xCB
    pk.set_fragmented(pkt, False)
    assert pkt[18] == 0x8B
