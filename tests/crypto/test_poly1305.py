"""Poly1305: the selftest known answers and RFC 8439, on libsodium, ztnode's own C and the
``cryptography`` fallback, which must agree byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.crypto import _cext, _sodium
from ztnode.crypto import poly as poly_mod
from ztnode.errors import CryptoError

H = bytes.fromhex
VECTORS = load_vectors()["poly1305"]

needs_sodium = pytest.mark.skipif(_sodium.lib is None, reason="libsodium23 not installed")
needs_c = pytest.mark.skipif(_cext.lib is None, reason=f"no C module: {_cext.REASON}")
IMPLS: list[Any] = [
    pytest.param(poly_mod._poly1305_sodium, id="libsodium", marks=needs_sodium),
    pytest.param(poly_mod._poly1305_c, id="ztnode-c", marks=needs_c),
    pytest.param(poly_mod.poly1305_portable, id="cryptography"),
    pytest.param(crypto.poly1305, id="public"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("v", VECTORS, ids=[f"poly1305[{i}]" for i in range(len(VECTORS))])
def test_selftest_vectors(impl: Any, v: dict[str, Any]) -> None:
    key, msg = H(v["key"]), H(v["message"])
    assert key == b"this is 32-byte key for Poly1305"
    assert len(msg) == v["message_len"]
    assert v["verified"]["status"] is True
    tag = impl(key, msg)
    assert tag == H(v["tag"])
    assert len(tag) == poly_mod.TAG_SIZE


@pytest.mark.parametrize("impl", IMPLS)
def test_rfc8439_section_2_5_2(impl: Any) -> None:
    key = H("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    assert impl(key, b"Cryptographic Forum Research Group") == H("a8061dc1305136c6c22b8baf0c0127a9")


@pytest.mark.parametrize("impl", IMPLS)
def test_accepts_every_buffer_type(impl: Any) -> None:
    key, msg = bytes(range(32)), bytes(range(200))
    expected = impl(key, msg)
    for conv in (bytearray, memoryview):
        assert impl(conv(key), conv(msg)) == expected
    backing = bytearray(b"xx" + msg)
    assert impl(key, memoryview(backing)[2:]) == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_key_must_be_32_bytes(impl: Any, n: int) -> None:
    with pytest.raises(CryptoError):
        impl(bytes(n), b"msg")


@needs_sodium
@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=2000))
def test_fallback_matches_libsodium(key: bytes, msg: bytes) -> None:
    assert poly_mod._poly1305_sodium(key, msg) == poly_mod.poly1305_portable(key, msg)


# RFC 8439 appendix A.3, vectors 5 and 6: h reaches p (2^130 - 5) and the final reduction and the
# addition of s must wrap; a limb carry bug shows here first.
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("key", "msg", "tag"),
    [
        ("02" + "00" * 31, "ff" * 16, "03" + "00" * 15),
        ("02" + "00" * 15 + "ff" * 16, "02" + "00" * 15, "03" + "00" * 15),
    ],
)
def test_rfc8439_wrap_vectors(impl: Any, key: str, msg: str, tag: str) -> None:
    assert impl(H(key), H(msg)) == H(tag)


# Bytes near the limbs' edges (all ones, all zeros, the clamp's bits) reach every carry path.
_edge_bytes = st.lists(st.sampled_from([0x00, 0x01, 0x03, 0x0F, 0xF0, 0xFC, 0xFE, 0xFF]))


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(st.binary(min_size=32, max_size=32), _edge_bytes.filter(lambda b: len(b) >= 32)),
    msg=st.one_of(st.binary(max_size=2000), _edge_bytes),
)
def test_our_c_matches_openssl(key: bytes | list[int], msg: bytes | list[int]) -> None:
    k, m = bytes(key)[:32], bytes(msg)
    assert poly_mod._poly1305_c(k, m) == poly_mod.poly1305_portable(k, m)
