"""NAT-PMP messages against RFC 6886's layouts (section 3), and the response parser fuzzed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.wire import natpmp


def test_requests_have_the_rfc_layouts() -> None:
    # 3.2: version 0, opcode 0.
    assert natpmp.PublicAddressRequest().encode() == bytes.fromhex("0000")
    # 3.3: version, opcode 1 (UDP), reserved 0, internal port, suggested external port, lifetime.
    req = natpmp.MappingRequest(internal_port=9993, external_port=29994, lifetime=7200)
    assert req.encode() == bytes.fromhex("0001 0000 2709 752a 00001c20")
    tcp = natpmp.MappingRequest(80, 8080, 3600, udp=False)
    assert tcp.encode() == bytes.fromhex("0002 0000 0050 1f90 00000e10")
    # 3.4: deletion is lifetime 0 with external port 0.
    assert natpmp.MappingRequest(9993, 0, 0).encode() == bytes.fromhex(
        "0001 0000 2709 0000 00000000"
    )


def test_requests_refuse_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="internal port"):
        natpmp.MappingRequest(70000, 1, 1).encode()
    with pytest.raises(ValueError, match="lifetime"):
        natpmp.MappingRequest(1, 1, 2**32).encode()


def test_public_address_response() -> None:
    # 3.2: version 0, opcode 128, result 0, seconds since epoch, external IPv4 address.
    data = bytes.fromhex("0080 0000 0000abcd cb007105")
    got = natpmp.decode_response(data)
    assert got == natpmp.PublicAddressResponse(0, 0xABCD, ipaddress.IPv4Address("203.0.113.5"))
    assert natpmp.encode_response(got) == data


def test_mapping_response() -> None:
    # 3.3: opcode 129 (UDP), result, epoch, internal port, mapped external port, lifetime.
    data = bytes.fromhex("0081 0000 00000010 2709 752b 00000258")
    got = natpmp.decode_response(data)
    assert got == natpmp.MappingResponse(0, 16, True, 9993, 29995, 600)
    assert natpmp.encode_response(got) == data
    tcp = natpmp.decode_response(bytes.fromhex("0082 0000 00000010 0050 1f90 00000e10"))
    assert isinstance(tcp, natpmp.MappingResponse) and not tcp.udp


def test_short_error_responses_are_accepted() -> None:
    # 3.5: a server that cannot parse the request answers header-only with a result code.
    got = natpmp.decode_response(bytes.fromhex("0081 0002 00000007"))
    assert got == natpmp.MappingResponse(natpmp.ResultCode.NOT_AUTHORIZED, 7, True, 0, 0, 0)
    got2 = natpmp.decode_response(bytes.fromhex("0080 0003 00000007"))
    assert isinstance(got2, natpmp.PublicAddressResponse)
    assert got2.result == natpmp.ResultCode.NETWORK_FAILURE


@pytest.mark.parametrize(
    ("hex_data", "why"),
    [
        ("", "at least 8"),
        ("0080 0000 000000", "at least 8"),
        ("0180 0000 00000000 01020304", "version 1"),
        ("0001 0000 00000000 01020304", "is a request"),
        ("0083 0000 00000000 01020304", "unknown opcode"),
        ("0080 0000 00000000 0102", "cut short"),
        ("0081 0000 00000000 2709 752b", "cut short"),
    ],
)
def test_malformed_responses_are_decode_errors(hex_data: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        natpmp.decode_response(bytes.fromhex(hex_data))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_parser_raises_only_decode_error(data: bytes) -> None:
    try:
        got = natpmp.decode_response(data)
    except DecodeError:
        return
    # What decodes is a whole answer: it encodes back to an answer that decodes the same.
    assert natpmp.decode_response(natpmp.encode_response(got)) == got


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0, 1, 2]),
    st.integers(0, 5),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=8),
)
def test_fuzz_responses_round_trip(
    op: int, result: int, epoch: int, a: int, b: int, life: int, trailer: bytes
) -> None:
    response: natpmp.Response
    if op == 0:
        response = natpmp.PublicAddressResponse(result, epoch, ipaddress.IPv4Address(life))
    else:
        response = natpmp.MappingResponse(result, epoch, op == 1, a, b, life)
    # Trailing bytes (a PCP-capable server may pad) do not change the answer.
    assert natpmp.decode_response(natpmp.encode_response(response) + trailer) == response
