"""Dictionary: the reference vector byte for byte, the reader's leniencies, capacity, fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.dictionary import (
    METADATA_DICT_CAPACITY,
    NETCONF_DICT_CAPACITY,
    Dictionary,
    DictionaryFullError,
    escape_value,
    parse_hex_i64,
    parse_hex_u64,
    unescape_value,
)

H = bytes.fromhex
MASK64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def vector(vectors: dict[str, Any]) -> dict[str, Any]:
    v: dict[str, Any] = vectors["reference_generated"]["dictionary"][0]
    return v


def test_vector_builds_byte_for_byte(vector: dict[str, Any]) -> None:
    d = Dictionary(4096)
    d.add_int("v", 7)
    d.add_int("nwid", 0x8056C2E21C000001)
    d.add_bool("flag", True)
    d.add_int("neg", -42)
    d.add_address("addr", 0xCAFE9EFEB9)
    d.add_str("name", "my network")
    d.add_bytes("bin", H(vector["get_bin"]))
    assert d.to_bytes() == H(vector["serialized"])
    assert bytes(d) == H(vector["serialized"])
    assert d.size_bytes == len(H(vector["serialized"]))


def test_vector_get_results(vector: dict[str, Any]) -> None:
    d = Dictionary.parse(H(vector["serialized"]), 4096)
    got = d.get_bytes("bin")
    assert got == H(vector["get_bin"])
    assert got is not None and len(got) == vector["get_bin_len"]
    assert d.get_str("name") == vector["get_name"]
    assert d.get_int("missing", -1) == vector["get_missing"]
    assert d.get_bytes("missing") is None
    assert d.get_int("v") == 7
    assert d.get_int("nwid") == 0x8056C2E21C000001
    assert d.get_bool("flag") is True
    assert d.get_int("neg") == 42  # the 1.14.1 signed writer lost the minus sign
    assert d.get_int("addr") == 0xCAFE9EFEB9
    assert d.keys() == ["v", "nwid", "flag", "neg", "addr", "name", "bin"]
    # Parsing and re-serialising is the identity.
    assert Dictionary.parse(d.to_bytes()).to_bytes() == H(vector["serialized"])


def test_escaping_exact() -> None:
    # The fact sheet's verified example.
    d = Dictionary()
    d.add_int("k", 7)
    d.add_bytes("B", bytes([0x00, 0x3D, 0x0A, 0x5C, 0x61]))
    d.add_bool("e", True)
    assert d.to_bytes() == b"k=0000000000000007\nB=\\0\\e\\n\\\\a\ne=1"
    assert escape_value(b"\r") == b"\\r"
    assert unescape_value(b"\\r\\n\\0\\e\\\\") == b"\r\n\0=\\"


def test_reader_leniency() -> None:
    d = Dictionary.parse(b"junk line\r\na=first\na=second\rb=x\\qy\\\nc=tail\\\n=noval\n\nd=")
    assert d.get_bytes("a") == b"first"  # first match wins
    assert d.get_bytes("b") == b"xqy"  # unknown escape yields the byte; CR ends entries
    assert d.get_bytes("c") == b"tail"  # a trailing lone backslash is dropped
    assert d.get_bytes("d") == b""
    assert d.get_int("d", 5) == 5  # empty integer reads as the default
    assert d.get_bool("d", True) is False  # but an empty boolean is "found"
    assert "junk line" not in d
    assert "a" in d and "zz" not in d
    assert [k for k, _ in d.entries()] == ["a", "a", "b", "c", "d"]


def test_nul_ends_blob() -> None:
    d = Dictionary.parse(b"a=1\0b=2")
    assert d.get_bytes("b") is None
    assert d.to_bytes() == b"a=1"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"7", 7),
        (b"00000000000000ff", 255),
        (b"FF", 255),
        (b"0x1f", 31),
        (b"0X1F", 31),
        (b"0x", 0),
        (b"  \t12", 0x12),
        (b"+10", 16),
        (b"-1", MASK64),
        (b"12zz", 0x12),
        (b"zz", 0),
        (b"1" * 17, MASK64),  # overflow saturates
    ],
)
def test_hex_u64(text: bytes, value: int) -> None:
    assert parse_hex_u64(text) == value
    assert Dictionary.parse(b"k=" + text).get_int("k", 99) == value


def test_hex_i64() -> None:
    assert parse_hex_i64(b"-10") == -16
    assert parse_hex_i64(b"ffffffffffffffff") == (1 << 63) - 1
    assert parse_hex_i64(b"-ffffffffffffffff") == -(1 << 63)
    d = Dictionary.parse(b"k=-2a")
    assert d.get_signed_int("k") == -42
    assert d.get_signed_int("x", 3) == 3


def test_integer_scratch_is_127_bytes() -> None:
    # The reference reads integers through a char[128]; digits past 127 bytes are not seen.
    d = Dictionary.parse(b"k=" + b"0" * 127 + b"5")
    assert d.get_int("k") == 0


@pytest.mark.parametrize(
    ("text", "value"), [(b"1", True), (b"t", True), (b"T", True), (b"true", True), (b"0", False)]
)
def test_bool(text: bytes, value: bool) -> None:
    assert Dictionary.parse(b"b=" + text).get_bool("b") is value
    assert Dictionary().get_bool("b", True) is True


def test_strings() -> None:
    d = Dictionary()
    d.add_str("s", "caf\u00e9 \udcff")  # non-UTF-8 byte survives via surrogateescape
    d.add_str("n", "ab\0cd")  # a C string stops at NUL
    assert d.get_str("s") == "caf\u00e9 \udcff"
    assert d.get_str("n") == "ab"
    assert d.get_str("missing") is None
    assert d.get_str("missing", "x") == "x"
    assert d.get_str("s", "", 3) == "caf"
    d.add_bytes("z", b"x\0y")
    assert d.get_bytes("z") == b"x\0y"
    assert d.get_str("z") == "x"


def test_add_int_range() -> None:
    d = Dictionary()
    d.add_int("a", MASK64)
    d.add_int("b", -(1 << 63))
    assert d.get_int("a") == MASK64
    assert d.get_int("b") == 1 << 63
    with pytest.raises(LocalProtocolError):
        d.add_int("c", 1 << 64)
    with pytest.raises(LocalProtocolError):
        d.add_int("c", -(1 << 63) - 1)
    with pytest.raises(LocalProtocolError):
        d.add_address("c", 1 << 40)


@pytest.mark.parametrize("key", ["", "a=b", "a\nb", "a\rb", "a\0b"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(LocalProtocolError):
        Dictionary().add_str(key, "v")
    with pytest.raises(LocalProtocolError):
        Dictionary().get_bytes(key)


def test_capacity() -> None:
    d = Dictionary(10)
    d.add_str("k", "1234567")  # 9 bytes: capacity minus the NUL
    assert d.size_bytes == 9
    with pytest.raises(DictionaryFullError):
        d.add_str("x", "")
    assert d.to_bytes() == b"k=1234567"
    e = Dictionary(10)
    with pytest.raises(DictionaryFullError):
        e.add_str("k", "12345678")
    assert e.to_bytes() == b""
    assert issubclass(DictionaryFullError, LocalProtocolError)


def test_parse_capacity() -> None:
    with pytest.raises(DecodeError):
        Dictionary.parse(b"k=" + b"x" * 1022, METADATA_DICT_CAPACITY)
    d = Dictionary.parse(b"k=" + b"x" * 1022, METADATA_DICT_CAPACITY, truncate=True)
    assert d.size_bytes == 1023
    assert Dictionary.parse(b"k=" + b"x" * 1021, METADATA_DICT_CAPACITY).size_bytes == 1023
    assert Dictionary().capacity == NETCONF_DICT_CAPACITY
    with pytest.raises(LocalProtocolError):
        Dictionary(0)


def test_equality_and_bool() -> None:
    a = Dictionary()
    assert not a
    a.add_bool("x", False)
    b = Dictionary.parse(b"x=0")
    assert a == b and a
    assert a != Dictionary()
    assert "Dictionary(" in repr(a)


def test_index_tracks_adds() -> None:
    d = Dictionary()
    d.add_str("a", "1")
    assert d.get_str("a") == "1"  # builds the index
    d.add_str("b", "2")
    d.add_str("a", "3")
    assert d.get_str("b") == "2"
    assert d.get_str("a") == "1"


keys = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="=\r\n\0"), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(keys, st.binary(max_size=64)), max_size=12))
def test_round_trip_binary(entries: list[tuple[str, bytes]]) -> None:
    d = Dictionary()
    for k, v in entries:
        d.add_bytes(k, v)
    parsed = Dictionary.parse(d.to_bytes())
    assert parsed == d
    first: dict[str, bytes] = {}
    for k, v in entries:
        first.setdefault(k, v)
    for k, v in first.items():
        assert parsed.get_bytes(k) == v
    assert list(parsed.entries()) == entries


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=MASK64), st.booleans(), st.text(max_size=40))
def test_round_trip_typed(n: int, b: bool, s: str) -> None:
    d = Dictionary()
    d.add_int("n", n)
    d.add_bool("b", b)
    d.add_str("s", s)
    p = Dictionary.parse(d.to_bytes())
    assert p.get_int("n") == n
    assert p.get_bool("b") is b
    assert p.get_str("s") == s.split("\0", 1)[0]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), keys)
def test_fuzz_parse_only_decode_error(data: bytes, key: str) -> None:
    try:
        d = Dictionary.parse(data, 256)
    except DecodeError:
        return
    d.get_bytes(key)
    d.get_int(key)
    d.get_signed_int(key)
    d.get_bool(key)
    d.get_str(key)
    list(d.entries())
    assert Dictionary.parse(d.to_bytes(), 256) == d
