"""Salsa20/20 and Salsa20/12: known answers, block-counter semantics, in-place use, and the legacy
armor core (Salsa20/12 + Poly1305), on every backend: libsodium, ztnode's own C and numpy."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.crypto import _cext, _sodium, salsa
from ztnode.crypto.poly import poly1305_portable
from ztnode.errors import CryptoError

H = bytes.fromhex
VECTORS = load_vectors()
SALSA_VECTORS = [
    pytest.param(v, id=f"{section}[{i}]")
    for section in ("salsa20_20", "salsa2012")
    for i, v in enumerate(VECTORS[section])
]

needs_sodium = pytest.mark.skipif(_sodium.lib is None, reason="libsodium23 not installed")
needs_c = pytest.mark.skipif(_cext.lib is None, reason=f"no C module: {_cext.REASON}")
BACKENDS: list[Any] = [
    pytest.param(salsa.SodiumSalsa, id="libsodium", marks=needs_sodium),
    pytest.param(salsa.AccelSalsa, id="ztnode-c", marks=needs_c),
    pytest.param(salsa.NumpySalsa, id="numpy"),
]

keys = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=8, max_size=8)
rounds_st = st.sampled_from([12, 20])


def _backend_xor(
    b: salsa.SalsaBackend, data: bytes, key: bytes, nonce: bytes, *, r: int, c: int
) -> bytes:
    out = bytearray(len(data))
    b.xor_into(out, data, key, nonce, rounds=r, counter=c)
    return bytes(out)


# --- known answers (selftest.cpp s20TV0 / s2012TV0) -----------------------------------------------


@pytest.mark.parametrize("v", SALSA_VECTORS)
def test_vector_public_api(v: dict[str, Any]) -> None:
    key, iv, pt, expected = H(v["key"]), H(v["iv"]), H(v["plaintext"]), H(v["expected"])
    assert len(pt) == v["plaintext_len"]
    assert v["verified"]["status"] is True
    rounds, counter = v["rounds"], v["initial_block_counter"]
    assert crypto.salsa20_xor(key, iv, pt, rounds=rounds, counter=counter) == expected
    buf = bytearray(pt)
    crypto.salsa20_xor_into(buf, buf, key, iv, rounds=rounds, counter=counter)
    assert bytes(buf) == expected
    if counter == 0 and not any(pt):
        # XOR with zeros is the raw keystream.
        assert crypto.salsa20_keystream(key, iv, len(pt), rounds=rounds) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v", SALSA_VECTORS)
def test_vector_each_backend(backend: type[salsa.SalsaBackend], v: dict[str, Any]) -> None:
    b = backend()
    key, iv, pt = H(v["key"]), H(v["iv"]), H(v["plaintext"])
    out = _backend_xor(b, pt, key, iv, r=v["rounds"], c=v["initial_block_counter"])
    assert out == H(v["expected"])
    ks = bytearray(len(pt))
    b.keystream_into(ks, key, iv, rounds=v["rounds"])
    assert bytes(ks) == H(v["expected"])


def test_default_backend_is_libsodium_when_installed() -> None:
    if _sodium.lib is not None:
        expected = "libsodium"
    else:
        expected = "ztnode-c" if _cext.lib is not None else "numpy"
    assert salsa.backend().name == expected


@needs_c
def test_without_libsodium_our_c_is_chosen_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel on a machine without libsodium23: fast, and nothing to warn about."""
    monkeypatch.setattr(_sodium, "lib", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(salsa._select(), salsa.AccelSalsa)


def test_fallback_warns_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sodium, "lib", None)
    monkeypatch.setattr(_cext, "lib", None)
    monkeypatch.delenv("ZTNODE_NO_NATIVE_CRYPTO", raising=False)
    with pytest.warns(RuntimeWarning, match="ztnode doctor"):
        chosen = salsa._select()
    assert isinstance(chosen, salsa.NumpySalsa)


def test_no_warning_when_the_fallback_is_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sodium, "lib", None)
    monkeypatch.setattr(_cext, "lib", None)
    monkeypatch.setenv("ZTNODE_NO_NATIVE_CRYPTO", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(salsa._select(), salsa.NumpySalsa)


# --- counter and stream semantics ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    rounds=rounds_st,
    counter=st.integers(0, 20),
    length=st.integers(0, 300),
)
def test_counter_starts_at_that_block(
    key: bytes, nonce: bytes, rounds: int, counter: int, length: int
) -> None:
    """counter=c means "keystream from byte 64*c", for Salsa20/20 and Salsa20/12 alike."""
    stream = crypto.salsa20_keystream(key, nonce, 64 * counter + length, rounds=rounds)
    zeros = bytes(length)
    assert crypto.salsa20_xor(key, nonce, zeros, rounds, counter) == stream[64 * counter :]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rounds", [12, 20])
def test_counter_wraps_at_2_64(backend: type[salsa.SalsaBackend], rounds: int) -> None:
    """The block counter is 64-bit and wraps: block 2**64-1 is followed by block 0."""
    b = backend()
    key, nonce = bytes(range(32)), bytes(range(8))
    tail = _backend_xor(b, bytes(128), key, nonce, r=rounds, c=2**64 - 1)
    block0 = _backend_xor(b, bytes(64), key, nonce, r=rounds, c=0)
    assert tail[64:] == block0
    last = _backend_xor(b, bytes(64), key, nonce, r=rounds, c=2**64 - 1)
    assert tail[:64] == last != block0


@settings(max_examples=60, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    rounds=rounds_st,
    counter=st.integers(0, 40),
    data=st.binary(max_size=700),
    head=st.integers(0, 5),
)
def test_xor_into_may_alias(
    *, key: bytes, nonce: bytes, rounds: int, counter: int, data: bytes, head: int
) -> None:
    expected = crypto.salsa20_xor(key, nonce, data, rounds, counter)
    buf = bytearray(data)
    crypto.salsa20_xor_into(buf, buf, key, nonce, rounds, counter)
    assert bytes(buf) == expected
    # The packet path passes a memoryview slice of a larger buffer.
    backing = bytearray(b"h" * head + data + b"t")
    view = memoryview(backing)[head : head + len(data)]
    crypto.salsa20_xor_into(view, view, key, nonce, rounds, counter)
    assert bytes(view) == expected
    assert backing[:head] == b"h" * head and backing[-1:] == b"t"
    # XOR twice is the identity.
    assert crypto.salsa20_xor(key, nonce, expected, rounds, counter) == data


@needs_sodium
@settings(max_examples=80, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    rounds=rounds_st,
    counter=st.one_of(st.integers(0, 40), st.integers(2**32 - 3, 2**32 + 3)),
    data=st.binary(max_size=600),
)
def test_numpy_fallback_matches_libsodium(
    key: bytes, nonce: bytes, rounds: int, counter: int, data: bytes
) -> None:
    fast = _backend_xor(salsa.SodiumSalsa(), data, key, nonce, r=rounds, c=counter)
    slow = _backend_xor(salsa.NumpySalsa(), data, key, nonce, r=rounds, c=counter)
    assert fast == slow


@needs_c
@settings(max_examples=80, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    rounds=rounds_st,
    counter=st.one_of(st.integers(0, 40), st.integers(2**32 - 3, 2**32 + 3)),
    data=st.binary(max_size=600),
)
def test_our_c_matches_numpy(
    key: bytes, nonce: bytes, rounds: int, counter: int, data: bytes
) -> None:
    ours = _backend_xor(salsa.AccelSalsa(), data, key, nonce, r=rounds, c=counter)
    slow = _backend_xor(salsa.NumpySalsa(), data, key, nonce, r=rounds, c=counter)
    assert ours == slow


@needs_c
def test_our_c_matches_numpy_on_a_long_stream() -> None:
    key, nonce = bytes(range(1, 33)), b"\x80" * 8
    n = 64 * 8192 + 100
    a, b = bytearray(n), bytearray(n)
    salsa.AccelSalsa().keystream_into(a, key, nonce, rounds=20)
    salsa.NumpySalsa().keystream_into(b, key, nonce, rounds=20)
    assert a == b


@needs_sodium
def test_numpy_fallback_matches_libsodium_on_a_long_stream() -> None:
    """Long enough to cross the numpy chunking boundary (8192 blocks)."""
    key, nonce = bytes(range(1, 33)), b"\x80" * 8
    n = 64 * 8192 + 100
    a, b = bytearray(n), bytearray(n)
    salsa.SodiumSalsa().keystream_into(a, key, nonce, rounds=20)
    salsa.NumpySalsa().keystream_into(b, key, nonce, rounds=20)
    assert a == b


def test_accepts_every_buffer_type() -> None:
    key, nonce, data = bytes(range(32)), bytes(8), bytes(range(100))
    expected = crypto.salsa20_xor(key, nonce, data)
    for conv in (bytes, bytearray, memoryview):
        assert crypto.salsa20_xor(conv(key), conv(nonce), conv(data)) == expected


@pytest.mark.parametrize(
    ("key", "nonce", "rounds"),
    [(bytes(31), bytes(8), 12), (bytes(33), bytes(8), 12), (bytes(32), bytes(7), 12)]
    + [(bytes(32), bytes(8), r) for r in (0, 8, 13, 24)],
)
def test_bad_parameters_raise(key: bytes, nonce: bytes, rounds: int) -> None:
    with pytest.raises(CryptoError):
        crypto.salsa20_xor(key, nonce, b"abc", rounds=rounds)
    with pytest.raises(CryptoError):
        crypto.salsa20_keystream(key, nonce, 10, rounds=rounds)


def test_length_mismatch_and_bad_counter_raise() -> None:
    with pytest.raises(CryptoError):
        crypto.salsa20_xor_into(bytearray(3), b"abcd", bytes(32), bytes(8))
    with pytest.raises(CryptoError):
        crypto.salsa20_xor(bytes(32), bytes(8), b"a", counter=-1)
    with pytest.raises(CryptoError):
        crypto.salsa20_xor(bytes(32), bytes(8), b"a", counter=2**64)
    with pytest.raises(CryptoError):
        crypto.salsa20_keystream(bytes(32), bytes(8), -1)


# --- the legacy armor core: Salsa20/12 + Poly1305 -------------------------------------------------


def _mangle(key32: bytes, packet: bytes | bytearray) -> bytes:
    """The per-packet key (Packet.hpp _salsa20MangleKey), re-derived here only to check vectors."""
    mk = bytearray(key32)
    for i in range(18):
        mk[i] ^= packet[i]
    mk[18] ^= packet[18] & 0xF8
    mk[19] ^= len(packet) & 0xFF
    mk[20] ^= (len(packet) >> 8) & 0xFF
    return bytes(mk)


def _armor_vectors(mode: int) -> list[dict[str, Any]]:
    return [v for v in VECTORS["reference_generated"]["packet_armor"] if v["mode"] == mode]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("mode", "flags"), [(0, 0x00), (1, 0x88)])
def test_seal_reproduces_reference_packets(
    backend: type[salsa.SalsaBackend], mode: int, flags: int
) -> None:
    """Cipher 0 (MAC only) and cipher 1 (Salsa20/12 + Poly1305) packets from the reference."""
    for v in _armor_vectors(mode):
        pkt = bytearray(H(v["plain_packet"]))
        wire = H(v["wire"])
        pkt[18] = flags
        mk = _mangle(H(v["key48"])[:32], pkt)
        body = memoryview(pkt)[27:]
        tag = backend().seal_into(body, mk, bytes(pkt[:8]), mode == 1)
        pkt[19:27] = tag[:8]
        assert bytes(pkt) == wire
        # And back: the receiver checks the 8-byte MAC, then decrypts.
        rx = bytearray(wire)
        mv = memoryview(rx)[27:]
        assert backend().open_into(mv, mk, bytes(rx[:8]), bytes(rx[19:27]), mode == 1)
        assert bytes(rx[27:]) == H(v["dearmored"])[27:]


def test_hello_cryptfield_and_mac_only_armor() -> None:
    """cryptField is Salsa20/12 from block 0 with the unmangled key and IV byte 7 & 0xf8."""
    v = VECTORS["reference_generated"]["hello"][0]
    key48 = H(v["key48"])
    pkt = bytearray(H(v["plain_packet"]))
    start = v["crypt_field_start"]
    nonce = bytes(pkt[:7]) + bytes([pkt[7] & 0xF8])
    view = memoryview(pkt)[start:]
    crypto.salsa20_xor_into(view, view, key48[:32], nonce)
    assert bytes(pkt) == H(v["after_cryptfield"])
    mk = _mangle(key48[:32], pkt)
    tag = crypto.salsa2012_poly1305_seal_into(memoryview(pkt)[27:], mk, bytes(pkt[:8]), False)
    pkt[19:27] = tag[:8]
    assert bytes(pkt) == H(v["wire"])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(key=keys, nonce=nonces, data=st.binary(max_size=1500), encrypt=st.booleans())
def test_seal_is_block0_poly_key_then_stream_from_block1(
    backend: type[salsa.SalsaBackend], key: bytes, nonce: bytes, data: bytes, encrypt: bool
) -> None:
    buf = bytearray(data)
    tag = backend().seal_into(buf, key, nonce, encrypt)
    otk = crypto.salsa20_keystream(key, nonce, 32)
    body = crypto.salsa20_xor(key, nonce, data, 12, counter=1) if encrypt else data
    assert bytes(buf) == body
    assert tag == poly1305_portable(otk, body)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    data=st.binary(min_size=1, max_size=600),
    encrypt=st.booleans(),
    flip=st.integers(0, 10**6),
    mac_len=st.integers(8, 16),
)
def test_open_rejects_any_flipped_bit_and_leaves_buffer_alone(
    *,
    backend: type[salsa.SalsaBackend],
    key: bytes,
    nonce: bytes,
    data: bytes,
    encrypt: bool,
    flip: int,
    mac_len: int,
) -> None:
    b = backend()
    buf = bytearray(data)
    mac = b.seal_into(buf, key, nonce, encrypt)[:mac_len]
    sealed = bytes(buf)
    ok = bytearray(sealed)
    assert b.open_into(ok, key, nonce, mac, encrypt)
    assert bytes(ok) == data
    bit = flip % (8 * len(sealed))
    bad = bytearray(sealed)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert not b.open_into(bad, key, nonce, mac, encrypt)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert bad == sealed  # untouched on failure
    wrong_mac = bytearray(mac)
    wrong_mac[flip % mac_len] ^= 0x01
    assert not b.open_into(bad, key, nonce, bytes(wrong_mac), encrypt)


@needs_sodium
@settings(max_examples=40, deadline=None)
@given(key=keys, nonce=nonces, data=st.binary(max_size=1500), encrypt=st.booleans())
def test_seal_backends_agree(key: bytes, nonce: bytes, data: bytes, encrypt: bool) -> None:
    a, b = bytearray(data), bytearray(data)
    assert salsa.SodiumSalsa().seal_into(a, key, nonce, encrypt) == salsa.NumpySalsa().seal_into(
        b, key, nonce, encrypt
    )
    assert a == b


def test_open_rejects_bad_mac_lengths() -> None:
    buf = bytearray(b"payload")
    tag = crypto.salsa2012_poly1305_seal_into(buf, bytes(32), bytes(8))
    for mac in (b"", tag + b"\0"):
        assert not crypto.salsa2012_poly1305_open_into(bytearray(buf), bytes(32), bytes(8), mac)
    assert crypto.salsa2012_poly1305_open_into(buf, bytes(32), bytes(8), tag)
    assert buf == b"payload"
