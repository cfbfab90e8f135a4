"""The memory-hard identity hash against every stored digest, on both Salsa20 backends and with its
mixing steps in C (ztnode's C module) and in Python (the reference)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.crypto import _cext, _sodium, idhash, salsa
from ztnode.errors import CryptoError

H = bytes.fromhex
IDS = load_vectors()["identities"]
ALL = [
    pytest.param(v, id=v["identity"][:10] + ("-bad" if not v["expected_valid"] else ""))
    for v in IDS["known_good"] + IDS["known_bad"]
]


def _pub(v: dict[str, Any]) -> bytes:
    return H(v["identity"].split(":")[2])


HAVE_C = _cext.lib is not None
needs_c = pytest.mark.skipif(not HAVE_C, reason=f"no C module: {_cext.REASON}")
MIXERS = [pytest.param(True, id="c", marks=needs_c), pytest.param(False, id="python")]


@pytest.mark.parametrize("use_c", MIXERS)
@pytest.mark.parametrize("v", ALL)
def test_digest_vectors(v: dict[str, Any], use_c: bool) -> None:
    digest = idhash.identity_hash(_pub(v), use_c=use_c)
    assert digest == H(v["memory_hard_digest"])
    address = int(v["identity"][:10], 16)
    meets = (
        digest[0] < idhash.FIRST_BYTE_LESS_THAN and int.from_bytes(digest[59:], "big") == address
    )
    assert meets == v["expected_valid"]
    assert v["verified"]["status"] is True


def test_known_good_digest_first_byte_is_16() -> None:
    """protocol-core.md section 14: the selftest identity has digest[0] = 16, just under 17."""
    digest = crypto.identity_hash(_pub(IDS["known_good"][0]))
    assert digest[0] == 16


def test_numpy_backend_gives_the_same_digest() -> None:
    v = IDS["known_good"][1]
    assert idhash.identity_hash(_pub(v), backend=salsa.NumpySalsa()) == H(v["memory_hard_digest"])


def _reference_model(pub: bytes) -> bytes:
    """A direct, slow transcription of the algorithm (numpy arrays, no lazy digest)."""
    d = hashlib.sha512(pub).digest()
    n_fill, n_mix = 32768, 131072
    ks = crypto.salsa20_keystream(d[:32], d[32:40], 64 * (n_fill + n_mix), rounds=20)
    blocks = np.frombuffer(ks, dtype=np.uint8).reshape(-1, 64)
    genmem = np.bitwise_xor.accumulate(blocks[:n_fill], axis=0).reshape(-1, 8).copy()
    digest = np.frombuffer(d, dtype=np.uint8).reshape(8, 8).copy()
    cells = genmem.view(">u8").reshape(-1)
    for j in range(n_mix):
        i1 = int(cells[2 * j]) % 8
        i2 = int(cells[2 * j + 1]) % 262144
        genmem[i2], digest[i1] = digest[i1].copy(), genmem[i2].copy()
        digest ^= blocks[n_fill + j].reshape(8, 8)
    return digest.tobytes()


def test_matches_a_direct_transcription() -> None:
    pub = bytes(range(64))
    assert crypto.identity_hash(pub) == _reference_model(pub)


@needs_c
@settings(max_examples=12, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_c_mixing_matches_the_python_reference(pub: bytes) -> None:
    """Differential: the C steps and the Python steps agree on any key (the vectors above are
    all well-formed identities; a digest is a digest, whatever the key)."""
    assert idhash.identity_hash(pub, use_c=True) == idhash.identity_hash(pub, use_c=False)


@needs_c
@pytest.mark.parametrize("delta", [-64, 64])
def test_c_mixing_refuses_a_keystream_of_another_size(delta: int) -> None:
    """The C function is told the work memory's size and touches nothing unless it is the
    whole keystream (a short buffer would otherwise be read and written past its end)."""
    ffi, lib = _cext.ffi, _cext.lib
    ks = bytearray(idhash._KEYSTREAM_LEN + delta)
    digest = bytearray(range(64))
    rc = lib.zt_identity_mix(ffi.from_buffer(digest), ffi.from_buffer(ks), len(ks))
    assert rc == lib.ZT_ACCEL_ELENGTH
    assert digest == bytearray(range(64)) and not any(ks)


def test_without_the_c_module_python_mixes(monkeypatch: pytest.MonkeyPatch) -> None:
    v = IDS["known_good"][0]
    monkeypatch.setattr(_cext, "lib", None)
    assert crypto.identity_hash(_pub(v)) == H(v["memory_hard_digest"])
    with pytest.raises(CryptoError, match="C module"):
        idhash.identity_hash(_pub(v), use_c=True)


@needs_c
def test_default_mixes_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the module loaded the default path is C: the Python steps are never entered."""

    def python_mix(*_: object) -> bytes:
        raise AssertionError("the Python mixing steps ran")

    monkeypatch.setattr(idhash, "_python_mix", python_mix)
    v = IDS["known_good"][1]
    assert crypto.identity_hash(_pub(v)) == H(v["memory_hard_digest"])


@pytest.mark.parametrize("n", [0, 63, 65])
def test_public_key_must_be_64_bytes(n: int) -> None:
    with pytest.raises(CryptoError):
        crypto.identity_hash(bytes(n))


def test_buffer_types() -> None:
    v = IDS["known_good"][0]
    pub = _pub(v)
    assert crypto.identity_hash(bytearray(pub)) == crypto.identity_hash(memoryview(pub))


@pytest.mark.skipif(_sodium.lib is None, reason="libsodium23 not installed")
def test_default_backend_is_fast() -> None:
    assert salsa.backend().name == "libsodium"
