"""Bounds on the non-verb parsers: World, credentials, rules, network configs, Dictionary and
Identity (issue 2: "never hangs, never allocates more than the input justifies").

* A property round trip for worlds (planets and moons, with and without a real signature).
* Memory: each parser, fed large hostile inputs (runs of 0xff/0x00, huge counts with little data,
  thousands of valid records, values made only of escapes, configs whose binary fields are all
  records), peaks at a fixed allowance plus a small factor per input byte, and raises nothing
  but DecodeError.
* Time: every parse runs under a watchdog (SIGALRM), so a parser that loops forever fails the
  test with ``ParserHung`` instead of hanging the suite. The limits are two orders of magnitude
  above the real cost, so a loaded machine cannot trip them.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from tests.helpers.strategies import inet_addresses
from ztnode.errors import DecodeError
from ztnode.identity import Identity
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    NetworkCredentials,
    OwnedThing,
    Revocation,
    Tag,
)
from ztnode.wire.dictionary import Dictionary, escape_value, unescape_value
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.netconf import (
    NETCONF_DICT_CAPACITY,
    DnsConfig,
    NetworkConfig,
    NetworkConfigRequestMetadata,
    NetworkType,
    Route,
)
from ztnode.wire.rules import (
    ActionAccept,
    ActionDrop,
    MatchEthertype,
    MatchIpDestPortRange,
    MatchIpv4Source,
    decode_rules,
    encode_rules,
)
from ztnode.wire.world import (
    DEFAULT_PLANET,
    MAX_ENDPOINTS_PER_ROOT,
    MAX_ROOTS,
    Root,
    World,
    WorldType,
)

IDS = test_identities()
PUBLIC_IDS = [i.public() for i in IDS]
CTL, MEMBER = IDS[0], IDS[1]
NWID = (CTL.address << 24) | 0x0000AB
TS = 1_700_000_000_000

# --------------------------------------------------------------------------- the watchdog


class ParserHung(BaseException):
    """Raised into a parse that overran its time limit. A BaseException, so that no
    ``except Exception`` inside a parser can turn it into an ordinary decode error."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with ParserHung after ``seconds`` of wall time (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise ParserHung(f"still parsing after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_watchdog_stops_a_parser_that_never_returns() -> None:
    def stuck(data: bytes) -> None:
        while True:
            with contextlib.suppress(Exception):  # even a parser that swallows everything
                data = data[:1]

    with pytest.raises(ParserHung), time_limit(0.2):
        stuck(b"x")


# --------------------------------------------------------------------------- the parsers


def _dictionary_everything(data: bytes) -> object:
    """Parse, then read every value (which builds the key index) and walk every entry."""
    d = Dictionary.parse(data)
    for k in d.keys():  # noqa: SIM118  (a Dictionary is not a mapping)
        d.get_bytes(k)
    for _ in d.entries():
        pass
    return d


def _identity_text(data: bytes) -> object:
    return Identity.from_string(data.decode("latin-1"))


PARSERS: dict[str, Callable[[bytes], object]] = {
    "World": World.from_bytes,
    "CertificateOfMembership": CertificateOfMembership.decode,
    "Capability": Capability.decode,
    "Tag": Tag.decode,
    "CertificateOfOwnership": CertificateOfOwnership.decode,
    "Revocation": Revocation.decode,
    "NetworkCredentials": NetworkCredentials.decode,
    "NetworkCredentials.partial": NetworkCredentials.decode_partial,
    "rules": decode_rules,
    "NetworkConfig": NetworkConfig.decode,
    "NetworkConfigRequestMetadata": NetworkConfigRequestMetadata.decode,
    "Dictionary": _dictionary_everything,
    "Identity.from_bytes": Identity.from_bytes,
    "Identity.from_string": _identity_text,
}


def _ip(text: str, port: int) -> InetAddress:
    return InetAddress(ip_address(text), port)


def _samples() -> dict[str, bytes]:
    """One valid encoding per parser: the starting point for mutations and repetitions."""
    com = CertificateOfMembership.issue(TS, 1_800_000, NWID, MEMBER).sign(CTL)
    rules = (MatchEthertype(0x0800), MatchIpDestPortRange(22, 80), ActionAccept(), ActionDrop())
    cap = Capability(7, NWID, TS, rules).sign(CTL, MEMBER.address)
    tag = Tag(3, 30, NWID, TS, MEMBER.address).sign(CTL)
    things = (OwnedThing.ip(IPv4Address("10.1.2.3")), OwnedThing.ip(IPv6Address("fd00::3")))
    coo = CertificateOfOwnership(NWID, TS, 1, MEMBER.address, things).sign(CTL)
    rev = Revocation(5, NWID, 3, TS, 0, MEMBER.address, CredentialType.TAG).sign(CTL)
    config = NetworkConfig(
        network_id=NWID,
        timestamp=TS,
        issued_to=MEMBER.address,
        revision=3,
        type=NetworkType.PRIVATE,
        name="bounds",
        com=com,
        capabilities=(cap,),
        tags=(tag,),
        certificates_of_ownership=(coo,),
        routes=(Route(_ip("10.1.0.0", 16)), Route(_ip("0.0.0.0", 0), _ip("10.1.0.1", 0))),
        static_ips=(_ip("10.1.2.3", 16), _ip("fd00::3", 64)),
        rules=(*rules, MatchIpv4Source(IPv4Address("10.1.0.0"), 16)),
        dns=DnsConfig("bounds.example", (_ip("10.1.0.1", 53),)),
    )
    moon_key = IDS[2].public_key, IDS[2].private_key
    assert moon_key[1] is not None
    moon = World.make(WorldType.MOON, 0xABC, TS, moon_key[0], (Root(PUBLIC_IDS[3]),), moon_key[1])
    return {
        "World": DEFAULT_PLANET,
        "World.moon": replace(moon, dictionary=b"k=v").to_bytes(),
        "CertificateOfMembership": com.encode(),
        "Capability": cap.encode(),
        "Tag": tag.encode(),
        "CertificateOfOwnership": coo.encode(),
        "Revocation": rev.encode(),
        "NetworkCredentials": NetworkCredentials((com,), (cap,), (tag,), (rev,), (coo,)).encode(),
        "rules": encode_rules(list(rules)),
        "NetworkConfig": config.encode(),
        "NetworkConfigRequestMetadata": NetworkConfigRequestMetadata().encode(),
        "Identity.from_bytes": MEMBER.to_bytes(include_private=True),
        "Identity.from_string": MEMBER.to_string(include_private=True).encode(),
    }


SAMPLES = _samples()


def sample_for(name: str) -> bytes:
    base = name.split(".", maxsplit=1)[0] if name != "Identity.from_string" else name
    return SAMPLES.get(name) or SAMPLES.get(base) or SAMPLES["NetworkConfig"]


def only_decode_error(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse(data)


# --------------------------------------------------------------------------- worlds round-trip

U64 = st.integers(0, 2**64 - 1)
roots = st.lists(
    st.builds(
        Root,
        st.sampled_from(PUBLIC_IDS),
        st.lists(inet_addresses, max_size=MAX_ENDPOINTS_PER_ROOT).map(tuple),
    ),
    max_size=MAX_ROOTS,
).map(tuple)
worlds = st.one_of(
    st.builds(
        World,
        st.just(WorldType.PLANET),
        U64,
        U64,
        st.binary(min_size=64, max_size=64),
        st.binary(min_size=96, max_size=96),
        roots,
    ),
    st.builds(
        World,
        st.just(WorldType.MOON),
        U64,
        U64,
        st.binary(min_size=64, max_size=64),
        st.binary(min_size=96, max_size=96),
        roots,
        st.binary(max_size=300),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=worlds, before=st.binary(max_size=8), after=st.binary(max_size=8))
def test_world_round_trip(w: World, before: bytes, after: bytes) -> None:
    raw = w.to_bytes()
    back = World.from_bytes(raw)
    assert back == w
    assert back.to_bytes() == raw
    assert back.signing_message() == w.signing_message()
    r = Reader(before + raw + after, pos=len(before))
    assert World.read(r) == w
    assert r.rest() == after
    w2 = Writer()
    w.write(w2)
    assert bytes(w2.buf) == raw


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from([WorldType.PLANET, WorldType.MOON]),
    world_id=U64,
    ts=U64,
    roots=roots,
    signer=st.sampled_from(IDS[:4]),
)
def test_signed_world_round_trip(
    kind: WorldType, world_id: int, ts: int, roots: tuple[Root, ...], signer: Identity
) -> None:
    assert signer.private_key is not None
    w = World.make(kind, world_id, ts, signer.public_key, roots, signer.private_key)
    back = World.from_bytes(w.to_bytes())
    assert back == w
    assert back.verify_signature(signer.public_key)
    other = IDS[5] if signer is not IDS[5] else IDS[6]
    assert not back.verify_signature(other.public_key)
    if roots:
        # Moving a root's endpoints after signing breaks the signature.
        moved = (Root(roots[0].identity, (_ip("192.0.2.1", 9993),)), *roots[1:])
        if moved != roots:
            assert not replace(back, roots=moved).verify_signature(signer.public_key)


# --------------------------------------------------------------------------- memory

FIXED_ALLOWANCE = 32 * 1024
# Copies of the input plus Python objects for the records. The worst today is about 21 bytes per
# byte: a Dictionary index over many short lines, and Identity.from_string splitting a long
# string on every colon before it counts the fields.
LARGE_PER_BYTE = 32
SIZE = 64 * 1024


def _config_with(key: str, blob: bytes) -> bytes:
    d = Dictionary()
    d.add_int("v", 7)
    d.add_int("nwid", NWID)
    d.add_bytes("id", b"%010x" % MEMBER.address)
    d.add_bytes(key, blob)
    return d.to_bytes()


def _fill(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def _ip_bytes(a: InetAddress) -> bytes:
    w = Writer()
    a.write(w)
    return bytes(w.buf)


def hostile_inputs(name: str) -> dict[str, bytes]:
    sample = sample_for(name)
    out = {
        "ff": b"\xff" * SIZE,
        "00": b"\x00" * SIZE,
        "01": b"\x01" * SIZE,
        "7f": b"\x7f" * SIZE,
        "counts-ff": _fill(b"\x01\xff\xff\xff\xff", SIZE),
        "samples": _fill(sample, SIZE),
        "sample+ff": sample[: len(sample) // 2] + b"\xff" * SIZE,
        "lines": b"\n".join(b"%x=%x" % (i, i) for i in range(SIZE // 10)),
        "escapes": b"k=" + b"\\\\" * (SIZE // 2),
        "colons": b"ab:" * (SIZE // 3),
    }
    if name in ("NetworkConfig", "Dictionary"):
        out["config-max"] = _config_with("n", b"\\" * (NETCONF_DICT_CAPACITY // 2 - 64))
    if name == "NetworkConfig":
        ip4, ip6 = _ip_bytes(_ip("10.1.2.3", 24)), _ip_bytes(_ip("fd00::1", 64))
        big = 150 * 1024  # escaping at most doubles it: still inside the capacity
        for key, unit in {
            "I": ip4 + ip6,
            "RT": ip4 + ip4 + b"\x00\x01\x00\x02",
            "S": b"\x00\x00\x02\x01\x02\x03\x04\x05",
            "R": encode_rules([MatchIpv4Source(IPv4Address("10.0.0.0"), 8)]),
            "CAP": SAMPLES["Capability"],
            "TAG": SAMPLES["Tag"],
            "COO": SAMPLES["CertificateOfOwnership"],
            "C": b"\x01\x00\x08" + b"\x00" * 24 * 8,
            "DNS": b"\x00" * big,
            "n": b"x" * big,
        }.items():
            out[f"config-{key}"] = _config_with(key, _fill(unit, big))
    return out


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_large_hostile_inputs_cost_memory_in_proportion(name: str) -> None:
    parse = PARSERS[name]
    for kind, data in hostile_inputs(name).items():
        tracemalloc.start()
        try:
            with time_limit(20):
                only_decode_error(parse, data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        limit = FIXED_ALLOWANCE + LARGE_PER_BYTE * len(data)
        assert peak <= limit, f"{name} on {kind} ({len(data)} bytes): peak {peak} > {limit}"


# --------------------------------------------------------------------------- fuzzing, timed


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))] * draw(st.integers(2, 50))
        elif data and pos < len(data):
            if op == "flip":
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "set":
                data[pos] = draw(st.sampled_from([0x00, 0x01, 0x0A, 0x3D, 0x5C, 0x7F, 0x80, 0xFF]))
            else:
                del data[pos : pos + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_inputs_finish_in_time_and_raise_only_decode_error(
    name: str, data: st.DataObject
) -> None:
    raw = data.draw(st.one_of(st.binary(max_size=600), mutated(sample_for(name))))
    with time_limit(5):
        only_decode_error(PARSERS[name], raw)


# --------------------------------------------------------------------------- unescaping

_REFERENCE_UNESCAPE = re.compile(rb"\\(.?)", re.DOTALL)
_MAP = {b"r": b"\r", b"n": b"\n", b"0": b"\0", b"e": b"=", b"": b""}


def reference_unescape(raw: bytes) -> bytes:
    """The Dictionary reader's rule, spelled as a regex: backslash + any byte is that byte or
    its mapped value; a trailing lone backslash disappears."""
    return _REFERENCE_UNESCAPE.sub(lambda m: _MAP.get(m.group(1), m.group(1)), raw)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b"\\", b"n", b"r", b"0", b"e", b"=", b"a", b"\\\\"])).map(b"".join)
)
def test_unescape_follows_the_reader_rule(raw: bytes) -> None:
    assert unescape_value(raw) == reference_unescape(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_unescape_inverts_escape(value: bytes) -> None:
    assert unescape_value(escape_value(value)) == value
    assert unescape_value(value) == reference_unescape(value)
