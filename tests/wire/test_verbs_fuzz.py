"""Every verb decoder, fed random, truncated and mutated bytes, raises only DecodeError.

Memory is checked too: a decoder may allocate in proportion to its input, never to a count it
read from the input.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import any_payload
from ztnode.errors import DecodeError
from ztnode.wire.constants import VERB_MASK, Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import (
    Hello,
    NetconfAck,
    OkEcho,
    OkExtFrame,
    OkHello,
    OkMulticastFrame,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkOther,
    OkWhois,
    VerbPayload,
    decode_payload,
)

Decoder = Callable[[bytes], object]

DECODERS: dict[str, Decoder] = {
    f"verb 0x{v:02x}": partial(decode_payload, v)
    for v in range(VERB_MASK + 1)
    if v != Verb.NETWORK_CREDENTIALS  # the credentials codec's own fuzzing covers it
}
DECODERS.update(
    {
        "InetAddress.decode": InetAddress.decode,
        "Hello.encrypted_tail_offset": Hello.encrypted_tail_offset,
        "NetconfAck": NetconfAck.decode,
        "OkHello": OkHello.decode,
        "OkWhois": OkWhois.decode,
        "OkEcho": OkEcho.decode,
        "OkNetworkConfigRequest": OkNetworkConfigRequest.decode,
        "OkMulticastGather": OkMulticastGather.decode,
        "OkMulticastFrame": OkMulticastFrame.decode,
        "OkExtFrame": OkExtFrame.decode,
        "OkOther": OkOther.decode,
    }
)
ALL_DECODERS = list(DECODERS.values())

# Bytes a decoder may allocate: a fixed allowance plus a generous per-input-byte factor (small
# Python objects cost ~100 bytes per few input bytes). A count-driven allocation from a 2-byte
# count of 65535 would blow straight through this.
FIXED_ALLOWANCE = 32 * 1024
PER_BYTE_ALLOWANCE = 64


def only_decode_error(decode: Decoder, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


def check_memory(decode: Decoder, data: bytes) -> None:
    tracemalloc.start()
    try:
        only_decode_error(decode, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= FIXED_ALLOWANCE + PER_BYTE_ALLOWANCE * len(data), (decode, len(data), peak)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes(name: str, data: bytes) -> None:
    only_decode_error(DECODERS[name], data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=any_payload)
def test_every_truncation(msg: VerbPayload) -> None:
    wire = msg.encode()
    own = partial(decode_payload, msg.VERB)
    for cut in range(len(wire)):
        only_decode_error(own, wire[:cut])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    msg: VerbPayload = draw(any_payload)
    data = bytearray(msg.encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif data and pos < len(data):
            if op == "flip":
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "set":
                data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
            else:
                del data[pos : pos + draw(st.integers(1, 3))]
    return bytes(data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutations_against_every_decoder(data: bytes) -> None:
    for decode in ALL_DECODERS:
        only_decode_error(decode, data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=25, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=64),
        # Headers that claim large counts (0xff runs) followed by little data.
        st.tuples(st.binary(max_size=40), st.binary(max_size=8)).map(
            lambda t: t[0] + b"\xff" * 6 + t[1]
        ),
    )
)
def test_memory_stays_proportional(name: str, data: bytes) -> None:
    check_memory(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_large_count_headers_cost_little(name: str) -> None:
    # A prefix of 0xff bytes reads as the largest count at every count position.
    for prefix_len in range(0, 40):
        check_memory(DECODERS[name], b"\x00" * prefix_len + b"\xff" * 8)
        check_memory(DECODERS[name], b"\xff" * prefix_len + b"\x00\x00")
