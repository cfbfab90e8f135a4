"""C25519: all 32 selftest vectors (keys, agreement, 96-byte signatures) and the edge cases a peer
can throw at us (low-order points, garbage signatures, wrong lengths)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.errors import CryptoError

H = bytes.fromhex
C25519 = load_vectors()["c25519"]["vectors"]


def _ids(v: dict[str, Any]) -> str:
    return f"vector{v['index']}"


@pytest.mark.parametrize("v", C25519, ids=_ids)
def test_keys_derive_from_private(v: dict[str, Any]) -> None:
    for n in ("1", "2"):
        priv, pub = H(v[f"priv{n}"]), H(v[f"pub{n}"])
        assert crypto.c25519_public_from_private(priv) == pub
        assert crypto.SigningKey(priv).public == pub


@pytest.mark.parametrize("v", C25519, ids=_ids)
def test_agreement_both_directions(v: dict[str, Any]) -> None:
    pub1, priv1, pub2, priv2 = H(v["pub1"]), H(v["priv1"]), H(v["pub2"]), H(v["priv2"])
    agreement = H(v["agreement"])
    assert len(agreement) == 64
    assert crypto.c25519_agree(priv1, pub2, length=64) == agreement
    assert crypto.c25519_agree(priv2, pub1, length=64) == agreement
    # Peer keys are the first 48 bytes (the default).
    assert crypto.c25519_agree(priv1, pub2) == agreement[:48]
    assert crypto.SigningKey(priv2).agree(pub1) == agreement[:48]


@pytest.mark.parametrize("v", C25519, ids=_ids)
def test_signatures(v: dict[str, Any]) -> None:
    agreement = H(v["agreement"])
    digest32 = H(v["agreement_sha512_first32"])
    assert hashlib.sha512(agreement).digest()[:32] == digest32
    assert v["verified"]["status"] is True
    for n, other in (("1", "2"), ("2", "1")):
        priv, pub, other_pub = H(v[f"priv{n}"]), H(v[f"pub{n}"]), H(v[f"pub{other}"])
        expected = H(v[f"agreement_signed_by_{n}"])
        assert len(expected) == 96
        ours = crypto.c25519_sign(priv, agreement)
        # The selftest compares 64 bytes; the stored vectors hold all 96 (the tail is the hash).
        assert ours[:64] == expected[:64]
        assert ours == expected
        assert ours[64:] == digest32
        assert crypto.SigningKey(priv).sign(agreement) == expected
        assert crypto.c25519_verify(pub, agreement, expected)
        assert crypto.VerifyingKey(pub).verify(agreement, expected)
        assert not crypto.c25519_verify(other_pub, agreement, expected)
        assert not crypto.c25519_verify(pub, agreement + b"x", expected)


def test_agreement_longer_than_64_bytes_rehashes() -> None:
    v = C25519[0]
    first = crypto.c25519_agree(H(v["priv1"]), H(v["pub2"]), length=64)
    long = crypto.c25519_agree(H(v["priv1"]), H(v["pub2"]), length=150)
    second = hashlib.sha512(first).digest()
    third = hashlib.sha512(second).digest()
    assert long == (first + second + third)[:150]
    assert crypto.c25519_agree(H(v["priv1"]), H(v["pub2"]), length=0) == b""


# Low-order X25519 points: the shared secret is all zeros whatever our key is.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    H("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order8"])
def test_low_order_peer_point_is_a_crypto_error(point: bytes) -> None:
    priv = H(C25519[0]["priv1"])
    peer = point + H(C25519[0]["pub2"])[32:]
    with pytest.raises(CryptoError):
        crypto.c25519_agree(priv, peer)
    with pytest.raises(CryptoError):
        crypto.SigningKey(priv).agree(peer)


@pytest.mark.parametrize(("priv_len", "pub_len"), [(63, 64), (65, 64), (64, 63), (64, 0)])
def test_wrong_key_lengths_raise(priv_len: int, pub_len: int) -> None:
    with pytest.raises(CryptoError):
        crypto.c25519_agree(bytes(priv_len), bytes(pub_len))


@pytest.mark.parametrize("n", [0, 32, 63, 65])
def test_wrong_private_length_raises(n: int) -> None:
    for fn in (crypto.c25519_public_from_private, crypto.SigningKey):
        with pytest.raises(CryptoError):
            fn(bytes(n))
    with pytest.raises(CryptoError):
        crypto.c25519_sign(bytes(n), b"m")
    with pytest.raises(CryptoError):
        crypto.VerifyingKey(bytes(n))


def test_generate_uses_injected_randomness() -> None:
    rng = random.Random(7)
    pub, priv = crypto.c25519_generate(rng.randbytes)
    assert priv == random.Random(7).randbytes(64)
    assert crypto.c25519_public_from_private(priv) == pub
    with pytest.raises(CryptoError):
        crypto.c25519_generate(lambda n: bytes(n - 1))


def test_generated_pairs_agree() -> None:
    pa, sa = crypto.c25519_generate()
    pb, sb = crypto.c25519_generate()
    assert crypto.c25519_agree(sa, pb) == crypto.c25519_agree(sb, pa)


# --- sign / verify properties ---------------------------------------------------------------------

KEYS = [(H(v["priv1"]), H(v["pub1"])) for v in C25519[:4]]


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, 3), msg=st.binary(max_size=300), flip=st.integers(0, 10**6))
def test_sign_verify_round_trip_and_tamper(which: int, msg: bytes, flip: int) -> None:
    priv, pub = KEYS[which]
    sig = crypto.c25519_sign(priv, msg)
    assert len(sig) == 96
    assert crypto.c25519_verify(pub, msg, sig)
    bit = flip % (96 * 8)
    bad = bytearray(sig)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert not crypto.c25519_verify(pub, msg, bytes(bad))
    assert not crypto.c25519_verify(pub, msg + b"\0", sig)
    other = KEYS[(which + 1) % 4][1]
    assert not crypto.c25519_verify(other, msg, sig)


@settings(max_examples=200, deadline=None)
@given(pub=st.binary(max_size=70), msg=st.binary(max_size=50), sig=st.binary(max_size=100))
def test_verify_never_raises(pub: bytes, msg: bytes, sig: bytes) -> None:
    assert crypto.c25519_verify(pub, msg, sig) in (True, False)


@settings(max_examples=100, deadline=None)
@given(pub=st.binary(min_size=64, max_size=64), sig=st.binary(min_size=64, max_size=64))
def test_verify_with_random_keys_and_matching_hash_tail_fails_cleanly(
    pub: bytes, sig: bytes
) -> None:
    """Past the hash check, garbage keys and signatures must still come back False."""
    msg = b"hello"
    full = sig + hashlib.sha512(msg).digest()[:32]
    assert crypto.c25519_verify(pub, msg, full) is False
    assert crypto.VerifyingKey(pub).verify(msg, full) is False


@pytest.mark.parametrize("n", [0, 64, 95, 97, 128])
def test_signature_must_be_96_bytes(n: int) -> None:
    priv, pub = KEYS[0]
    sig = crypto.c25519_sign(priv, b"m")
    candidate = (sig * 2)[:n]
    assert not crypto.c25519_verify(pub, b"m", candidate)
    assert not crypto.VerifyingKey(pub).verify(b"m", candidate)


def test_buffer_types_for_messages_and_signatures() -> None:
    priv, pub = KEYS[0]
    sig = crypto.c25519_sign(priv, bytearray(b"msg"))
    assert crypto.c25519_verify(pub, memoryview(b"msg"), memoryview(sig))
    assert crypto.VerifyingKey(pub).verify(bytearray(b"msg"), bytearray(sig))


def test_reprs_hide_private_material() -> None:
    priv, _ = KEYS[0]
    text = repr(crypto.SigningKey(priv))
    assert priv.hex()[:16] not in text and priv[32:].hex()[:16] not in text
