"""LZ4 payload compression (§6): the reference vector, limits, and hostile input."""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode.crypto import SymmetricKey
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import MAX_DECOMPRESSED_PAYLOAD, Cipher, Verb

H = bytes.fromhex
COMPRESSED = load_vectors()["reference_generated"]["packet_compressed"]


def _packet(payload: bytes, verb: int = Verb.NETWORK_CONFIG) -> bytearray:
    return pk.new_packet(bytes(range(8)), 0x1122334455, 0x66778899AA, verb, payload)


def _with_lz4(block: bytes) -> bytearray:
    buf = _packet(b"")
    buf[27] |= 0x80
    return buf + block


@pytest.mark.parametrize("v", COMPRESSED)
def test_compressed_vector(v: dict[str, Any]) -> None:
    assert set(v) == {
        "key48",
        "plain_packet",
        "compressed",
        "compressed_packet",
        "wire",
        "reference_roundtrip_ok",
        "note",
        "verified",
    }
    assert v["verified"]["status"] is True
    assert "LZ4 *block*" in v["note"]
    key = SymmetricKey(H(v["key48"]))
    plain = H(v["plain_packet"])
    ref = H(v["compressed_packet"])
    wire = H(v["wire"])
    assert plain[27] == Verb.FRAME
    assert ref[27] == 0x80 | Verb.FRAME  # the verb byte itself stays clear
    assert ref[:27] == plain[:27]

    # Ours compresses (any valid block will do) and restores the packet.
    buf = bytearray(plain)
    assert pk.compress(buf) is bool(v["compressed"])
    assert pk.is_compressed(buf)
    assert buf[27] == ref[27]
    assert len(buf) < len(plain)
    pk.decompress(buf)
    assert bytes(buf) == plain

    # The reference's block decompresses here.
    buf = bytearray(ref)
    pk.decompress(buf)
    assert bytes(buf) == plain

    # Compression comes before armor: the wire is the compressed packet, armored with suite 1.
    buf = bytearray(ref)
    pk.armor(buf, key, Cipher.POLY1305_SALSA2012)
    assert bytes(buf) == wire
    buf = bytearray(wire)
    assert pk.dearmor(buf, key) is v["reference_roundtrip_ok"]
    assert bytes(buf[27:]) == ref[27:]
    pk.decompress(buf)
    assert bytes(buf[27:]) == plain[27:]
    assert not pk.is_compressed(buf)


def test_small_packets_are_not_compressed() -> None:
    buf = _packet(bytes(64))  # exactly 92 bytes: not tried
    assert len(buf) == 92
    before = bytes(buf)
    assert not pk.compress(buf)
    assert bytes(buf) == before
    buf = _packet(bytes(65))
    assert pk.compress(buf)
    assert len(buf) < 93


def test_incompressible_payload_is_left_alone() -> None:
    payload = bytes((i * 167 + 13) % 251 for i in range(200))
    buf = _packet(payload)
    before = bytes(buf)
    assert not pk.compress(buf)
    assert bytes(buf) == before
    assert not pk.is_compressed(buf)


def test_compress_twice_is_misuse() -> None:
    buf = _packet(bytes(500))
    assert pk.compress(buf)
    with pytest.raises(LocalProtocolError):
        pk.compress(buf)
    with pytest.raises(LocalProtocolError):
        pk.compress(bytearray(10))


def test_decompress_without_flag_is_noop() -> None:
    buf = _packet(b"not compressed at all")
    before = bytes(buf)
    pk.decompress(buf)
    assert bytes(buf) == before


def test_decompress_empty_payload_only_clears_flag() -> None:
    buf = _with_lz4(b"")
    pk.decompress(buf)
    assert bytes(buf) == bytes(_packet(b""))


def test_decompress_limits() -> None:
    # Exactly the 9996-byte payload cap decodes; one byte more is refused.
    buf = _with_lz4(lz4.block.compress(bytes(MAX_DECOMPRESSED_PAYLOAD), store_size=False))
    pk.decompress(buf)
    assert len(buf) == 28 + MAX_DECOMPRESSED_PAYLOAD
    with pytest.raises(DecodeError):
        pk.decompress(
            _with_lz4(lz4.block.compress(bytes(MAX_DECOMPRESSED_PAYLOAD + 1), store_size=False))
        )
    # A block that decodes to nothing is a failure, as in the reference (ucl > 0).
    with pytest.raises(DecodeError):
        pk.decompress(_with_lz4(b"\x00"))
    with pytest.raises(DecodeError):
        pk.decompress(bytearray(27))


def test_decompression_bomb_is_bounded() -> None:
    bomb = _with_lz4(lz4.block.compress(bytes(10_000_000), store_size=False))
    assert len(bomb) < 60_000
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            pk.decompress(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(bomb) + 4 * MAX_DECOMPRESSED_PAYLOAD


def test_failed_decompress_leaves_buffer_resizable() -> None:
    buf = _with_lz4(b"\xff\xff\xff")
    with pytest.raises(DecodeError) as info:
        pk.decompress(buf)
    buf.clear()  # the traceback held by ``info`` must not pin the bytearray's size
    assert info.value is not None


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=3000)
    | st.lists(st.sampled_from([b"abc", b"zerotier", b"\x00" * 7]), max_size=600).map(b"".join)
)
def test_compress_decompress_round_trip(payload: bytes) -> None:
    buf = _packet(payload[:MAX_DECOMPRESSED_PAYLOAD])
    plain = bytes(buf)
    changed = pk.compress(buf)
    assert changed == pk.is_compressed(buf)
    if changed:
        assert len(buf) < len(plain)
    else:
        assert bytes(buf) == plain
    pk.decompress(buf)
    assert bytes(buf) == plain


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_decompress_random_bytes_only_decode_error(block: bytes) -> None:
    buf = _with_lz4(block)
    try:
        pk.decompress(buf)
    except DecodeError:
        return
    assert not pk.is_compressed(buf)
    assert len(buf) <= 28 + MAX_DECOMPRESSED_PAYLOAD


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.data())
def test_decompress_mutated_blocks(payload: bytes, data: st.DataObject) -> None:
    block = bytearray(lz4.block.compress(payload, store_size=False))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(block) - 1))
        block[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(block)))
    buf = _with_lz4(bytes(block[:cut]) if cut else bytes(block))
    with contextlib.suppress(DecodeError):
        pk.decompress(buf)
