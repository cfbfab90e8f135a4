"""RFC 1071 Internet checksum: known vectors, a word-by-word reference, scapy as an oracle."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from ztnode.netstack.checksum import (
    NUMPY_THRESHOLD,
    internet_checksum,
    ones_sum,
    pseudo_header_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
    update_checksum,
    verify_checksum,
)


def reference_sum(data: bytes) -> int:
    """The textbook RFC 1071 §4.1 loop: 16-bit words, end-around carry."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack(">H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_example() -> None:
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (big-endian words).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_known_ipv4_header() -> None:
    # The classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(hdr) == 0xB861
    full = hdr[:10] + b"\xb8\x61" + hdr[12:]
    assert verify_checksum(full)
    assert not verify_checksum(hdr)


def test_edge_cases() -> None:
    assert ones_sum(b"") == 0
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\0\0\0") == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF  # negative zero stays 0xFFFF
    assert ones_sum(b"\xff\xff\xff\xff") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0
    assert ones_sum(b"\x01") == 0x0100  # odd byte padded on the right
    assert ones_sum(memoryview(b"\x12\x34\x56")) == 0x1234 + 0x5600


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_matches_reference_and_scapy(data: bytes, initial: int) -> None:
    assert ones_sum(data) == reference_sum(data)
    assert internet_checksum(data) == scapy_checksum(data)
    expected = reference_sum(data) + initial
    expected = (expected & 0xFFFF) + (expected >> 16)
    assert ones_sum(data, initial) == expected


@settings(max_examples=200)
@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0))
def test_verify_after_fill(data: bytes) -> None:
    body = b"\0\0" + data
    ck = internet_checksum(body)
    assert verify_checksum(ck.to_bytes(2, "big") + data) or (ck == 0 and not any(data))


@settings(max_examples=200)
@given(st.binary(min_size=4, max_size=64).filter(lambda b: len(b) % 2 == 0), st.data())
def test_incremental_update(data: bytes, d: st.DataObject) -> None:
    i = d.draw(st.integers(0, len(data) // 2 - 1)) * 2
    new_word = d.draw(st.integers(0, 0xFFFF))
    old_word = int.from_bytes(data[i : i + 2], "big")
    changed = data[:i] + new_word.to_bytes(2, "big") + data[i + 2 :]
    upd = update_checksum(internet_checksum(data), old_word, new_word)
    # RFC 1624: equal as ones' complement numbers (0x0000 and 0xFFFF both mean zero).
    assert upd % 0xFFFF == internet_checksum(changed) % 0xFFFF


def test_pseudo_headers() -> None:
    s4, d4 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    assert pseudo_header_sum(s4, d4, 6, 20) == pseudo_header_sum_v4(s4.packed, d4.packed, 6, 20)
    assert ones_sum(b"", pseudo_header_sum_v4(s4.packed, d4.packed, 6, 20)) == reference_sum(
        s4.packed + d4.packed + bytes([0, 6, 0, 20])
    )
    s6, d6 = IPv6Address("fd00::1"), IPv6Address("fe80::2")
    raw = s6.packed + d6.packed + (70000).to_bytes(4, "big") + bytes([0, 0, 0, 58])
    assert ones_sum(b"", pseudo_header_sum(s6, d6, 58, 70000)) == reference_sum(raw)
    assert pseudo_header_sum_v6(s6.packed, d6.packed, 58, 8) != 0
    with pytest.raises(ValueError):
        pseudo_header_sum(s4, d6, 6, 0)
    with pytest.raises(ValueError):
        pseudo_header_sum(s6, d4, 6, 0)


@settings(max_examples=100)
@given(
    st.integers(NUMPY_THRESHOLD - 3, 3000).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.integers(0, 1 << 40),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_numpy_path_matches_int_path(data: bytes, initial: int, kind: type) -> None:
    buf = kind(data)
    expected = reference_sum(data) + initial % 0xFFFF
    expected = (expected & 0xFFFF) + (expected >> 16)
    got = ones_sum(buf, initial)
    assert got % 0xFFFF == expected % 0xFFFF and (got == 0) == (not any(data) and not initial)
    assert internet_checksum(buf) == scapy_checksum(data)


@pytest.mark.parametrize("n", [NUMPY_THRESHOLD, NUMPY_THRESHOLD + 1, 1461, 9000])
def test_numpy_path_edge_values(n: int) -> None:
    for fill in (b"\0", b"\xff"):
        data = fill * n
        assert ones_sum(data) == reference_sum(data)
        # Adding negative zero never changes a non-zero sum.
        assert ones_sum(data, 0xFFFF) == ones_sum(data) or not any(data)
    assert ones_sum(b"\0" * n) == 0
    assert ones_sum(b"\0" * n, 0xFFFF) == 0xFFFF


@given(
    st.binary(max_size=3000),
    st.one_of(st.integers(0, 0x1FFFF), st.integers(0, 2**400)),
    st.integers(0, 3),
)
def test_c_sum_equals_the_python_sum(data: bytes, initial: int, cut: int) -> None:
    """The accelerator's zt_ones_sum (used from 64 bytes up) agrees with the int/numpy path on
    every length, alignment and size of folded or unfolded initial sum, +0/-0 included."""
    from ztnode.netstack import checksum

    view = memoryview(data)[cut:]
    assert checksum.ones_sum(view, initial) == checksum._ones_sum_python(view, initial)
    zeros = bytes(len(view))
    assert checksum.ones_sum(zeros, initial) == checksum._ones_sum_python(zeros, initial)
