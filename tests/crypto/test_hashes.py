"""SHA-512, SHA-384, HMAC-SHA-384 and ZeroTier's KBKDF against the reference's outputs."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.errors import CryptoError

H = bytes.fromhex
VECTORS = load_vectors()
RG = VECTORS["reference_generated"]


@pytest.mark.parametrize("v", VECTORS["sha512"])
def test_sha512_selftest(v: dict[str, Any]) -> None:
    assert H(v["input"]) == v["input_ascii"].encode()
    assert crypto.sha512(H(v["input"])) == H(v["digest"])
    assert crypto.sha512(memoryview(bytearray(H(v["input"])))) == H(v["digest"])
    assert v["verified"]["status"] is True


@pytest.mark.parametrize("v", RG["sha384"])
def test_sha384(v: dict[str, Any]) -> None:
    assert crypto.sha384(v["input_ascii"].encode()) == H(v["digest"])
    assert v["verified"]["status"] is True


@pytest.mark.parametrize("v", RG["hmac_sha384"])
def test_hmac_sha384(v: dict[str, Any]) -> None:
    key = H(v["key"])
    assert len(key) == 48  # a peer key: zero-padded to the 128-byte block by plain HMAC
    assert crypto.hmac_sha384(key, v["message_ascii"].encode()) == H(v["mac"])
    assert v["verified"]["status"] is True


@pytest.mark.parametrize(
    "v", RG["kbkdf_hmac_sha384"], ids=lambda v: f"label{v['label']}-ctx{v['context']}-it{v['iter']}"
)
def test_kbkdf_vectors(v: dict[str, Any]) -> None:
    out = crypto.kbkdf_hmac_sha384(H(v["key"]), ord(v["label"]), v["context"], v["iter"])
    assert out == H(v["out"])
    assert len(out) == 48
    assert v["verified"]["status"] is True


def test_kbkdf_message_layout() -> None:
    """BE32(iter) | 'Z' 'T' | label | 0x00 | context | BE32(384): 13 bytes."""
    key = bytes(range(48))
    msg = bytes([0, 0, 0, 7]) + b"ZT" + b"1" + b"\x00" + b"\x05" + bytes([0, 0, 1, 0x80])
    assert len(msg) == 13
    expected = hmac.new(key, msg, hashlib.sha384).digest()
    assert crypto.kbkdf_hmac_sha384(key, ord("1"), 5, 7) == expected


def test_kbkdf_peer_keys_from_fact_sheet() -> None:
    """protocol-core.md section 14: K0/K1 for key48 = 00 01 .. 2f (AES keys are the first 32)."""
    key48 = bytes(range(48))
    k0 = crypto.kbkdf_hmac_sha384(key48, ord("0"))
    k1 = crypto.kbkdf_hmac_sha384(key48, ord("1"))
    assert k0[:32] == H("3c9f2d146f740b356219369b6e6049a653eb782dda0dc7b229af44780963b933")
    assert k1[:32] == H("4da2a815e8308ceb4bbc96c3c09db76aebd9bcca711ea8c57aca4cc9fe969a1f")


@pytest.mark.parametrize(
    ("label", "context", "iteration"),
    [(-1, 0, 0), (256, 0, 0), (0x30, -1, 0), (0x30, 256, 0), (0x30, 0, -1), (0x30, 0, 2**32)],
)
def test_kbkdf_rejects_out_of_range_fields(label: int, context: int, iteration: int) -> None:
    with pytest.raises(CryptoError):
        crypto.kbkdf_hmac_sha384(bytes(48), label, context, iteration)
