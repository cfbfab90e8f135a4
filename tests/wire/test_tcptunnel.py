"""The TCP fallback tunnel's record codec (ztnode.wire.tcptunnel)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.wire.tcptunnel import (
    MAX_BODY,
    Datagram,
    Hello,
    Record,
    RecordDecoder,
    decode_body,
    encode_datagram,
    encode_hello,
)


def test_hello_bytes_match_the_reference_layout() -> None:
    # 17 03 03 00 04 | major | minor | revision BE16 (OneService.cpp's ZT_TCP_TUNNEL_HELLO).
    assert encode_hello(1, 14, 1) == bytes.fromhex("170303000401 0e 0001".replace(" ", ""))
    assert RecordDecoder().feed(encode_hello(1, 14, 258)) == [Hello(1, 14, 258)]


def test_datagram_bytes_match_the_reference_layout() -> None:
    payload = bytes(range(20))
    rec = encode_datagram(("204.80.128.1", 443), payload)
    assert rec[:5] == bytes([0x17, 3, 3, 0, 27])  # len + 7
    assert rec[5:12] == bytes([4, 204, 80, 128, 1, 0x01, 0xBB])
    assert rec[12:] == payload
    assert RecordDecoder().feed(rec) == [Datagram(("204.80.128.1", 443), payload)]


def test_ipv6_and_no_address_records() -> None:
    rec6 = encode_datagram(("2001:db8::5", 9993), b"x" * 30)
    assert rec6[5] == 6 and len(rec6) == 5 + 19 + 30
    assert decode_body(rec6[5:]) == Datagram(("2001:db8::5", 9993), b"x" * 30)
    assert decode_body(b"\x00" + b"y" * 20) == Datagram(None, b"y" * 20)
    assert decode_body(b"") is None


@pytest.mark.parametrize(
    "stream",
    [
        b"\x16\x03\x03\x00\x04abcd",  # not application data
        b"\x17\x03\x01\x00\x04abcd",  # not TLS 1.2
        b"\x17\x03\x03\x00\x05\x09abcd",  # unknown address type
        b"\x17\x03\x03\x00\x06\x04abcde",  # IPv4 body too short
        b"\x17\x03\x03\x00\x10\x06" + b"a" * 15,  # IPv6 body too short
        b"\x17\x03\x03\xff\xff",  # over the bound, refused from the header alone
    ],
)
def test_protocol_errors_and_the_decoder_stays_failed(stream: bytes) -> None:
    dec = RecordDecoder()
    with pytest.raises(DecodeError):
        dec.feed(stream)
    assert dec.buffered == 0
    with pytest.raises(DecodeError):
        dec.feed(encode_hello(1, 14, 1))


def test_buffering_is_bounded_by_one_record() -> None:
    dec = RecordDecoder(max_body=100)
    rec = encode_datagram(("1.2.3.4", 5), b"z" * 93)  # body of exactly 100
    assert dec.feed(rec[:-1]) == [] and dec.buffered == len(rec) - 1
    assert dec.feed(rec[-1:]) == [Datagram(("1.2.3.4", 5), b"z" * 93)]
    with pytest.raises(DecodeError, match="over 100"):
        RecordDecoder(max_body=100).feed(encode_datagram(("1.2.3.4", 5), b"z" * 94))
    assert MAX_BODY >= 19 + 10324  # an IPv6 header plus the largest datagram fits


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 65535)),
)
records = st.one_of(
    st.builds(Hello, st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535)),
    st.builds(Datagram, addresses, st.binary(min_size=0, max_size=300)),
)


def _encode(r: Record) -> bytes:
    if isinstance(r, Hello):
        return encode_hello(r.major, r.minor, r.revision)
    assert r.address is not None
    return encode_datagram(r.address, r.payload)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=8), st.data())
def test_any_split_gives_the_same_records(recs: list[Record], data: st.DataObject) -> None:
    stream = b"".join(_encode(r) for r in recs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = RecordDecoder()
    out: list[Record] = []
    prev = 0
    for c in [*cuts, len(stream)]:
        out += dec.feed(stream[prev:c])
        prev = c
    # IPv4-mapped and other IPv6 texts come back as ipaddress spells them.
    assert out == recs
    assert dec.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6), st.integers(4, 200))
def test_garbage_raises_only_decode_error(chunks: list[bytes], max_body: int) -> None:
    dec = RecordDecoder(max_body=max_body)
    for chunk in chunks:
        try:
            dec.feed(chunk)
        except DecodeError:
            break
        assert dec.buffered <= 5 + max_body


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64).map(lambda b: b"\x17\x03\x03" + b))
def test_garbage_after_a_valid_header_raises_only_decode_error(stream: bytes) -> None:
    try:
        out = RecordDecoder().feed(stream)
    except DecodeError:
        return
    assert all(isinstance(r, Hello | Datagram) for r in out)
