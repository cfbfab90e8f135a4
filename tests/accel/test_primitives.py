"""The C module's own primitives (``csrc/primitives.c``) and its run-time OpenSSL binding.

Salsa20 and Poly1305 are also checked as backends of ztnode.crypto (tests/crypto); here are
SipHash-2-4 (the receive engine's table hash, against its paper's vectors, a Python reference and
libsodium where present), constant-time comparison, and what happens when no libcrypto binds:
the module still loads, and cipher 3 packets go through Python, byte for byte the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.crypto import _cext, _sodium

pytestmark = pytest.mark.skipif(_cext.lib is None, reason=f"no C module: {_cext.REASON}")

_M64 = (1 << 64) - 1
ROOT = Path(__file__).resolve().parents[2]


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (64 - n))) & _M64


def siphash24_reference(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 as the paper (Aumasson, Bernstein 2012) defines it, in plain Python."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _M64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & _M64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & _M64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & _M64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    whole = len(msg) - len(msg) % 8
    words = [int.from_bytes(msg[i : i + 8], "little") for i in range(0, whole, 8)]
    words.append(int.from_bytes(msg[whole:], "little") | ((len(msg) & 0xFF) << 56))
    for m in words:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def siphash_c(key: bytes, msg: bytes) -> int:
    value: int = _cext.lib.zt_siphash24(msg, len(msg), key)
    return value


PAPER_KEY = bytes(range(16))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0x726FDB47DD0E0E31), (1, 0x74F839C593DC67FD), (15, 0xA129CA6149BE45E5)],
)
def test_siphash_paper_vectors(n: int, expected: int) -> None:
    """Key 00..0f, message 00..n-1 (the paper's appendix; the n=15 one is its worked example)."""
    msg = bytes(range(n))
    assert siphash24_reference(PAPER_KEY, msg) == expected
    assert siphash_c(PAPER_KEY, msg) == expected


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), msg=st.binary(max_size=200))
def test_siphash_matches_the_reference(key: bytes, msg: bytes) -> None:
    assert siphash_c(key, msg) == siphash24_reference(key, msg)


@pytest.mark.skipif(_sodium.lib is None, reason="libsodium23 not installed")
@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), msg=st.binary(max_size=200))
def test_siphash_matches_libsodium_shorthash(key: bytes, msg: bytes) -> None:
    """libsodium's crypto_shorthash is SipHash-2-4 with the value little-endian: what the receive
    engine used before it stopped needing libsodium."""
    import cffi  # type: ignore[import-untyped]

    ffi = cffi.FFI()
    ffi.cdef(
        "int crypto_shorthash(unsigned char *out, const unsigned char *in,"
        " unsigned long long inlen, const unsigned char *k);"
    )
    lib = ffi.dlopen("libsodium.so.23")
    out = ffi.new("unsigned char[8]")
    lib.crypto_shorthash(out, msg, len(msg), key)
    assert int.from_bytes(bytes(ffi.buffer(out)), "little") == siphash_c(key, msg)


@given(a=st.binary(max_size=40), flip=st.integers(0, 10**6))
def test_constant_time_equal(a: bytes, flip: int) -> None:
    lib = _cext.lib
    assert lib.zt_ct_equal(a, a, len(a)) == 1
    if a:
        b = bytearray(a)
        b[flip % len(a)] ^= 1 << (flip % 8)
        assert lib.zt_ct_equal(a, bytes(b), len(a)) == 0


# --- run-time OpenSSL --------------------------------------------------------------------------

_PROBE = """
import json, os
from ztnode.crypto import _cext
from ztnode import accel
from ztnode.crypto.keys import SymmetricKey
from ztnode.wire import packet
key = SymmetricKey(bytes(range(48)))
pkt = bytearray(bytes(range(8)) + bytes.fromhex("0102030405") + bytes.fromhex("0a0b0c0d0e")
                + bytes(9) + bytes([6]) + b"payload" * 20)
done_in_c = accel.armor(pkt, key, 3)
if not done_in_c:
    packet.armor(pkt, key, 3)
print(json.dumps({"loaded": _cext.AVAILABLE, "aes": _cext.AES_AVAILABLE,
                  "reason": _cext.AES_REASON, "c": done_in_c, "pkt": pkt.hex()}))
"""


def _probe(libcrypto: str) -> dict[str, Any]:
    env = dict(os.environ, ZTNODE_LIBCRYPTO=libcrypto, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("libcrypto", "why"),
    [("/nonexistent/libcrypto.so.3", "would not load"), ("libc.so.6", "lacks the EVP AES calls")],
)
def test_without_libcrypto_cipher_3_runs_in_python_identically(libcrypto: str, why: str) -> None:
    """No usable libcrypto: the module loads, says why AES is not in C, and a cipher-3 packet
    armored by the Python path is the very packet the C path makes here."""
    if not _cext.AES_AVAILABLE:
        pytest.skip(f"no C AES in this process either: {_cext.AES_REASON}")
    without = _probe(libcrypto)
    assert without["loaded"] and not without["aes"] and not without["c"]
    assert why in without["reason"] and "ZTNODE_LIBCRYPTO" in without["reason"]
    with_c = _probe(_cext.LIBCRYPTO or "")
    assert with_c["aes"] and with_c["c"]
    assert with_c["pkt"] == without["pkt"]


# --- the packet path's Poly1305: libsodium's where bound, else ours --------------------------


@pytest.fixture
def own_poly1305() -> Iterator[None]:
    """The C packet path on our own Poly1305 for one test (what a wheel without libsodium runs),
    whatever this machine has; libsodium's is bound back afterwards."""
    lib, ffi = _cext.lib, _cext.ffi
    lib.zt_poly1305_bind(ffi.NULL)
    assert _cext.poly1305_impl() == "ztnode"
    try:
        yield
    finally:
        _cext._bind_sodium_poly1305(lib, ffi)


def test_packet_path_uses_libsodium_poly1305_where_installed() -> None:
    assert _cext.poly1305_impl() == ("libsodium" if _sodium.lib is not None else "ztnode")


@pytest.mark.usefixtures("own_poly1305")
@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(min_size=48, max_size=48),
    body=st.binary(min_size=1, max_size=1500),
    cipher=st.sampled_from([0, 1]),
)
def test_packet_path_on_our_poly1305_matches_python(raw: bytes, body: bytes, cipher: int) -> None:
    from ztnode import accel
    from ztnode.crypto.keys import SymmetricKey
    from ztnode.wire import packet
    from ztnode.wire.constants import Cipher

    plain = bytearray(bytes(27) + body)
    kc, kp = SymmetricKey(raw), SymmetricKey(raw)
    c_pkt, py_pkt = bytearray(plain), bytearray(plain)
    assert accel.armor(c_pkt, kc, cipher)
    packet._armor_python(py_pkt, kp, Cipher(cipher))
    assert c_pkt == py_pkt
    assert accel.dearmor(c_pkt, kc) == 1 and c_pkt[27:] == plain[27:]
