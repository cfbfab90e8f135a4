"""Armor, dearmor and cryptField against the reference's known answers, plus properties."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.armor_vectors import (
    AES14,
    AES14_FRAGMENTED,
    KEY14,
    PLAIN14,
    POLY14_MAC,
    SALSA14,
    H,
)
from tests.helpers.data import load_vectors
from ztnode.crypto import SymmetricKey
from ztnode.errors import LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import MAX_PACKET_LENGTH, Cipher, Verb

VECTORS = load_vectors()
ARMOR = VECTORS["reference_generated"]["packet_armor"]
HELLO = VECTORS["reference_generated"]["hello"]

# The vectors' "mode" is the reference's armor() arguments; the note spells out the suites.
MODES = {0: Cipher.POLY1305_NONE, 1: Cipher.POLY1305_SALSA2012, 2: Cipher.AES_GMAC_SIV}
ALL_CIPHERS = list(MODES.values())


def _note_modes(note: str) -> dict[int, tuple[int, int]]:
    """mode -> (cipher suite, flags byte), as the vector note states them."""
    found = re.findall(r"mode (\d) = [^;]*?suite (\d)[^;]*?flags (0x[0-9a-f]{2})", note)
    return {int(m): (int(s), int(f, 16)) for m, s, f in found}


# --- reference vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("v", ARMOR, ids=[f"mode{v['mode']}" for v in ARMOR])
def test_packet_armor_vector(v: dict[str, Any]) -> None:
    assert set(v) == {
        "mode",
        "key48",
        "plain_packet",
        "wire",
        "dearmored",
        "reference_dearmor_ok",
        "note",
        "verified",
    }
    assert v["verified"]["status"] is True
    suite, flags = _note_modes(v["note"])[v["mode"]]
    assert MODES[v["mode"]] == suite
    key = SymmetricKey(H(v["key48"]))
    plain = H(v["plain_packet"])
    wire = H(v["wire"])
    assert plain[19:27] == bytes(8)  # "plain_packet has the MAC field zeroed"

    # Armor with the vector's (fixed) packet ID gives exactly the wire bytes.
    buf = bytearray(plain)
    pk.armor(buf, key, MODES[v["mode"]])
    assert bytes(buf) == wire
    hdr = pk.PacketHeader.parse(wire)
    assert hdr.flags == flags
    assert hdr.cipher == suite
    assert (hdr.dest, hdr.source) == (pk.peek_dest(plain), pk.peek_source(plain))
    if suite == Cipher.AES_GMAC_SIV:
        assert wire[:8] != plain[:8]  # the tag replaces the packet ID
    else:
        assert wire[:8] == plain[:8]
    if suite == Cipher.POLY1305_NONE:
        assert wire[27:] == plain[27:]

    # Dearmor of the wire bytes gives the reference's dearmored buffer.
    buf = bytearray(wire)
    assert pk.dearmor(buf, key) is v["reference_dearmor_ok"]
    assert bytes(buf) == H(v["dearmored"])
    assert bytes(buf[27:]) == plain[27:]


def test_note_names_every_mode() -> None:
    assert _note_modes(ARMOR[0]["note"]) == {0: (0, 0x00), 1: (1, 0x88), 2: (3, 0x18)}


def test_hello_crypt_field_vector() -> None:
    (v,) = HELLO
    key = SymmetricKey(H(v["key48"]))
    start = v["crypt_field_start"]
    plain = H(v["plain_packet"])
    after = H(v["after_cryptfield"])
    assert plain[27] == Verb.HELLO
    assert int.from_bytes(plain[33:41], "big") == v["timestamp"]  # proto, major, minor, rev, ts
    assert plain[:start] == after[:start]
    assert plain[start:] != after[start:]

    buf = bytearray(plain)
    pk.crypt_field(buf, key, start, len(buf) - start)
    assert bytes(buf) == after
    pk.armor(buf, key, Cipher.POLY1305_NONE)
    assert bytes(buf) == H(v["wire"])

    # Receive side: MAC first, then cryptField undoes itself.
    assert pk.dearmor(buf, key)
    assert bytes(buf) == H(v["wire"])
    pk.crypt_field(buf, key, start, len(buf) - start)
    assert bytes(buf[27:]) == plain[27:]


def test_crypt_field_masks_low_iv_bits() -> None:
    # The nonce is bytes 0..7 with byte 7 & 0xf8: IDs differing in those bits share a keystream.
    (v,) = HELLO
    key = SymmetricKey(H(v["key48"]))
    a = bytearray(H(v["plain_packet"]))
    b = bytearray(a)
    b[7] ^= 0x07
    pk.crypt_field(a, key, 40, 50)
    pk.crypt_field(b, key, 40, 50)
    assert a[40:90] == b[40:90]
    with pytest.raises(LocalProtocolError):
        pk.crypt_field(a, key, 100, len(a))
    with pytest.raises(LocalProtocolError):
        pk.crypt_field(a, key, -1, 2)


# --- §14 full-packet examples ------------------------------------------------------------------


def test_section14_aes() -> None:
    buf = bytearray(PLAIN14)
    pk.armor(buf, KEY14, Cipher.AES_GMAC_SIV)
    assert bytes(buf) == AES14
    assert buf[18] == 0x18
    relayed = bytearray(AES14)
    pk.set_hops(relayed, 3)
    assert pk.dearmor(relayed, KEY14)
    assert bytes(relayed[27:]) == PLAIN14[27:]
    assert pk.peek_hops(relayed) == 3


def test_section14_aes_fragment_flag() -> None:
    buf = bytearray(PLAIN14)
    pk.set_fragmented(buf)
    pk.armor(buf, KEY14, Cipher.AES_GMAC_SIV)
    assert bytes(buf) == AES14_FRAGMENTED
    assert buf[18] == 0x58
    assert pk.dearmor(buf, KEY14)
    assert bytes(buf[27:]) == PLAIN14[27:]


def test_section14_salsa() -> None:
    buf = bytearray(PLAIN14)
    pk.armor(buf, KEY14, Cipher.POLY1305_SALSA2012)
    assert bytes(buf) == SALSA14
    assert buf[18] == 0x88
    assert pk.dearmor(buf, KEY14)
    assert bytes(buf) == SALSA14[:27] + PLAIN14[27:]


def test_section14_poly_only() -> None:
    buf = bytearray(PLAIN14)
    pk.armor(buf, KEY14, Cipher.POLY1305_NONE)
    assert bytes(buf) == PLAIN14[:19] + POLY14_MAC + PLAIN14[27:]
    assert pk.dearmor(buf, KEY14)


def test_armor_clears_legacy_flag_and_keeps_fragment_flag() -> None:
    for cipher, expect in ((0, 0x40), (1, 0xC8), (3, 0x58)):
        buf = bytearray(PLAIN14)
        buf[18] = 0x80 | 0x40 | 0x10  # stale legacy flag and cipher bits, fragmented
        pk.armor(buf, KEY14, Cipher(cipher))
        assert buf[18] == expect
        assert pk.dearmor(buf, KEY14)


# --- relaying and tampering --------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ALL_CIPHERS, ids=lambda c: c.name)
def test_relayed_packet_still_dearmors(cipher: Cipher) -> None:
    for hops in range(1, 8):
        buf = bytearray(PLAIN14)
        pk.armor(buf, KEY14, cipher)
        pk.set_hops(buf, hops)
        assert pk.dearmor(buf, KEY14), hops
        assert bytes(buf[27:]) == PLAIN14[27:]


@pytest.mark.parametrize("cipher", ALL_CIPHERS, ids=lambda c: c.name)
def test_tampering_any_authenticated_bit_fails(cipher: Cipher) -> None:
    wire = bytearray(PLAIN14)
    pk.armor(wire, KEY14, cipher)
    for i in range(len(wire)):
        for bit in range(8):
            if i == 18 and bit < 3:
                continue  # hops: the one field relays may change
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            assert not pk.dearmor(bad, KEY14), (i, bit)
    assert not pk.dearmor(wire[:-1], KEY14)
    assert not pk.dearmor(wire + b"\x00", KEY14)


def test_tampered_vector_fails_and_legacy_leaves_buffer() -> None:
    for v in ARMOR:
        key = SymmetricKey(H(v["key48"]))
        bad = bytearray(H(v["wire"]))
        bad[-1] ^= 0x40
        before = bytes(bad)
        assert not pk.dearmor(bad, key)
        if v["mode"] != 2:
            assert bytes(bad) == before


def test_wrong_key_fails() -> None:
    other = SymmetricKey(bytes(range(1, 49)))
    for cipher in ALL_CIPHERS:
        buf = bytearray(PLAIN14)
        pk.armor(buf, KEY14, cipher)
        assert not pk.dearmor(buf, other)


@pytest.mark.parametrize("suite", [2, 4, 5, 6, 7])
def test_unsupported_cipher_is_not_authentic(suite: int) -> None:
    buf = bytearray(PLAIN14)
    buf[18] = suite << 3
    assert not pk.dearmor(buf, KEY14)


def test_trusted_path() -> None:
    buf = bytearray(PLAIN14)
    buf[18] = 0x88 | 0x40 | 2
    pk.armor_trusted(buf, 0x0123456789ABCDEF)
    assert buf[18] == 0x52  # cipher 2, legacy flag cleared, fragmented flag and hops kept
    assert pk.peek_cipher(buf) == Cipher.NONE_TRUSTED_PATH
    assert pk.peek_trusted_path_id(buf) == 0x0123456789ABCDEF
    assert bytes(buf[27:]) == PLAIN14[27:]
    assert not pk.dearmor(buf, KEY14)
    with pytest.raises(LocalProtocolError):
        pk.armor_trusted(bytearray(PLAIN14), 0)


def test_armor_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        pk.armor(bytearray(PLAIN14), KEY14, Cipher.NONE_TRUSTED_PATH)
    with pytest.raises(LocalProtocolError):
        pk.armor(bytearray(PLAIN14[:27]), KEY14, Cipher.POLY1305_NONE)
    with pytest.raises(LocalProtocolError):
        pk.armor(bytearray(MAX_PACKET_LENGTH + 1), KEY14, Cipher.AES_GMAC_SIV)
    with pytest.raises(LocalProtocolError):
        pk.armor(bytearray(PLAIN14), KEY14, 5)  # type: ignore[arg-type]


def test_short_packets_are_not_authentic() -> None:
    for n in range(28):
        assert not pk.dearmor(bytearray(PLAIN14[:n]), KEY14)


# --- properties --------------------------------------------------------------------------------

keys = st.binary(min_size=48, max_size=48).map(SymmetricKey)


@settings(max_examples=150, deadline=None)
@given(
    keys,
    st.binary(min_size=8, max_size=8),
    st.integers(0, 2**40 - 1),
    st.integers(0, 2**40 - 1),
    st.integers(0, 0x1F),
    st.binary(max_size=1500) | st.integers(0, MAX_PACKET_LENGTH - 28).map(bytes),
    st.sampled_from(ALL_CIPHERS),
    st.booleans(),
    st.integers(0, 7),
)
def test_armor_dearmor_round_trip(
    key: SymmetricKey,
    pid: bytes,
    dest: int,
    src: int,
    verb: int,
    payload: bytes,
    cipher: Cipher,
    fragmented: bool,
    hops: int,
) -> None:
    buf = pk.new_packet(pid, dest, src, verb, payload)
    pk.set_fragmented(buf, fragmented)
    pk.armor(buf, key, cipher)
    wire = bytes(buf)
    assert len(wire) == 28 + len(payload)
    assert pk.peek_cipher(wire) == cipher
    assert pk.is_fragmented(wire) == fragmented
    assert (pk.peek_dest(wire), pk.peek_source(wire)) == (dest, src)
    pk.set_hops(buf, hops)  # relayed on the way
    assert pk.dearmor(buf, key)
    assert pk.peek_verb(buf) == verb
    assert bytes(buf[28:]) == payload
    assert bytes(buf[:8]) == (wire[:8] if cipher == Cipher.AES_GMAC_SIV else pid)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 255))
def test_dearmor_random_bytes(data: bytes, flags: int) -> None:
    buf = bytearray(data)
    if len(buf) > 18:
        buf[18] = flags
    assert pk.dearmor(buf, KEY14) is False
