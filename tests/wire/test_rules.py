"""Rules wire format: every type's binary layout, reader quirks, controller JSON, fuzzing."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import EXAMPLES, U8, any_rules, json_safe_rules
from ztnode.errors import DecodeError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.rules import (
    MAX_NETWORK_RULES,
    ActionAccept,
    ActionDrop,
    ActionPriority,
    ActionRedirect,
    ActionTee,
    ActionWatch,
    MatchCharacteristics,
    MatchEthertype,
    MatchFrameSizeRange,
    MatchIcmp,
    MatchIntegerRange,
    MatchIpDestPortRange,
    MatchIpv4Dest,
    MatchIpv4Source,
    MatchIpv6Dest,
    MatchIpv6Source,
    MatchMacDest,
    MatchMacSource,
    MatchRandom,
    MatchSourceZeroTierAddress,
    MatchTagsEqual,
    Rule,
    RuleType,
    UnknownRule,
    decode_rules,
    encode_rules,
    read_rules,
    rule_class,
    rule_from_json,
    rule_to_json,
    rules_from_json,
    rules_to_json,
)

H = bytes.fromhex


@pytest.mark.parametrize(("rule", "hexbytes"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_binary_layout(rule: Rule, hexbytes: str) -> None:
    assert encode_rules([rule]) == H(hexbytes)
    assert decode_rules(H(hexbytes)) == (rule,)


def test_every_reference_type_has_a_class_and_an_example() -> None:
    covered = {r.type_code for r, _ in EXAMPLES}
    for t in RuleType:
        cls = rule_class(t)
        assert cls is not None
        assert t == cls.TYPE
        assert t in covered
    assert rule_class(7) is None and rule_class(0x80 | 1) is ActionAccept


def test_fact_sheet_example() -> None:
    rules = (MatchEthertype(0x0800, not_=True), ActionDrop())
    assert encode_rules(rules) == H("a50208000000")
    assert decode_rules(H("a50208000000")) == rules


def test_type_byte_and_flags() -> None:
    r = MatchEthertype(0x86DD, not_=True, or_=True)
    assert r.type_byte == 0xE5 and not r.is_action
    assert ActionDrop().is_action and UnknownRule(9).is_action
    with pytest.raises(ValueError):
        UnknownRule(1)  # a known type
    with pytest.raises(ValueError):
        UnknownRule(64)


def test_short_field_len_reads_past_it() -> None:
    # ETHERTYPE with fieldLen 0: the value is read from the next two bytes anyway, then the
    # cursor advances 0, so those bytes are parsed again as the next entry (type 8, unknown).
    assert decode_rules(H("25000800")) == (MatchEthertype(0x0800), UnknownRule(8))


def test_long_field_len_skips_extra() -> None:
    assert decode_rules(H("2504080012340100")) == (MatchEthertype(0x0800), ActionAccept())


def test_field_len_past_end_is_clamped() -> None:
    assert decode_rules(H("25ff0800")) == (MatchEthertype(0x0800),)
    # Unknown types keep only the type byte and re-serialise with fieldLen 0.
    assert decode_rules(H("1003aabbcc")) == (UnknownRule(16),)
    assert encode_rules(decode_rules(H("1003aabbcc"))) == H("1000")


def test_truncated_value_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_rules(H("250208"))
    with pytest.raises(DecodeError):
        decode_rules(H("25"))


def test_integer_range_delta_is_32_bits() -> None:
    wire = H("3313 0000000000000001 0000000200000003 0000 07")
    (r,) = decode_rules(wire)
    assert isinstance(r, MatchIntegerRange)
    assert r.start == 1 and r.delta == 2 and r.end == 3 and r.bits == 8 and not r.little_endian
    # Canonical re-serialisation is what a capability signature covers.
    assert encode_rules([r]) == H("3313 0000000000000001 0000000000000003 0000 07")
    wrap = MatchIntegerRange((1 << 64) - 1, 2, 0, 63)
    assert wrap.end == 1 and wrap.bits == 64


def test_max_rules_and_read_rules() -> None:
    blob = H("0100") * (MAX_NETWORK_RULES + 3)
    assert len(decode_rules(blob)) == MAX_NETWORK_RULES
    assert len(decode_rules(blob, 2)) == 2
    r = Reader(H("01000000ff"))
    assert read_rules(r, 2) == (ActionAccept(), ActionDrop())
    assert r.remaining == 1
    with pytest.raises(DecodeError):
        read_rules(Reader(H("0100")), 2)


def test_write_into_writer() -> None:
    w = Writer(b"\xaa")
    ActionAccept().write(w)
    assert bytes(w.buf) == H("aa0100")


# --- JSON ------------------------------------------------------------------------------------


def test_json_rendering_matches_reference() -> None:
    assert rule_to_json(ActionAccept(not_=True)) == {"type": "ACTION_ACCEPT"}
    assert rule_to_json(ActionTee(0xFF1122334455, 3, 100)) == {
        "type": "ACTION_TEE",
        "address": "1122334455",
        "flags": 3,
        "length": 100,
    }
    assert rule_to_json(ActionRedirect(0x1122334455, 3, 100)) == {
        "type": "ACTION_REDIRECT",
        "address": "1122334455",
        "flags": 3,
    }
    assert rule_to_json(ActionPriority()) == {}
    assert rule_to_json(UnknownRule(9)) == {}
    assert rule_to_json(MatchEthertype(2048)) == {
        "type": "MATCH_ETHERTYPE",
        "etherType": 2048,
        "not": False,
        "or": False,
    }
    assert rule_to_json(MatchIcmp(8, 5, 0))["icmpCode"] is None
    assert rule_to_json(MatchIcmp(8, 5, 1))["icmpCode"] == 5
    assert rule_to_json(MatchCharacteristics(0x10))["mask"] == "0000000000000010"
    assert rule_to_json(MatchMacDest(0x0A0B0C0D0E0F, or_=True))["mac"] == "0a:0b:0c:0d:0e:0f"
    assert rule_to_json(MatchIpv4Source(IPv4Address("10.0.0.0"), 8))["ip"] == "10.0.0.0/8"
    assert rule_to_json(MatchSourceZeroTierAddress(0xAB))["zt"] == "00000000ab"
    # IPv6 text as glibc's inet_ntop writes it (an IPv4 tail for mapped addresses).
    mapped = MatchIpv6Source(IPv6Address("::ffff:10.0.0.1"), 128)
    assert rule_to_json(mapped)["ip"] == "::ffff:10.0.0.1/128"
    assert rule_to_json(MatchIpv6Dest(IPv6Address("fd00::1"), 64))["ip"] == "fd00::1/64"
    assert rule_from_json(rule_to_json(mapped)) == mapped
    ir = rule_to_json(MatchIntegerRange.from_bounds(1, 2, 3, 32))
    assert ir == {
        "type": "INTEGER_RANGE",
        "start": "0000000000000001",
        "end": "0000000000000002",
        "idx": 3,
        "little": False,
        "bits": 32,
        "not": False,
        "or": False,
    }
    assert rules_to_json([ActionDrop(), ActionAccept()]) == [
        {"type": "ACTION_DROP"},
        {"type": "ACTION_ACCEPT"},
    ]


def test_json_parsing_quirks() -> None:
    assert rule_from_json({"type": "ACTION_ACCEPT", "not": False, "or": False}) == ActionAccept()
    assert rule_from_json({"type": "INTEGER_RANGE", "start": 1, "end": 2}) is None
    assert rule_from_json({"type": "ACTION_PRIORITY"}) is None
    assert rule_from_json({"type": "MATCH_NOPE"}) is None
    assert rule_from_json(["ACTION_DROP"]) is None
    assert rule_from_json({"type": "ACTION_REDIRECT", "address": "1", "length": 9}) == (
        ActionRedirect(1, 0, 0)
    )
    assert rule_from_json({"type": "MATCH_CHARACTERISTICS", "mask": None}) is None
    assert rule_from_json({"type": "MATCH_CHARACTERISTICS"}) == MatchCharacteristics(0)
    assert rule_from_json({"type": "MATCH_CHARACTERISTICS", "mask": 5}) == MatchCharacteristics(5)


LENIENT: list[tuple[dict[str, Any], Rule]] = [
    ({"type": "MATCH_ETHERTYPE", "etherType": "2048", "not": 1}, MatchEthertype(2048, not_=True)),
    (
        {"type": "MATCH_ETHERTYPE", "etherType": 0x12345, "or": "true"},
        MatchEthertype(0x2345, or_=True),
    ),
    ({"type": "MATCH_IP_DEST_PORT_RANGE", "start": 80}, MatchIpDestPortRange(80, 80)),
    ({"type": "MATCH_IP_DEST_PORT_RANGE", "start": 80, "end": None}, MatchIpDestPortRange(80, 80)),
    ({"type": "MATCH_FRAME_SIZE_RANGE", "end": 9}, MatchFrameSizeRange(0, 9)),
    ({"type": "MATCH_MAC_SOURCE", "mac": "0a-0b-0c-0d-0e-0f"}, MatchMacSource(0x0A0B0C0D0E0F)),
    ({"type": "MATCH_MAC_SOURCE", "mac": "0a:0b:0c"}, MatchMacSource(0x0A0B0C000000)),
    ({"type": "MATCH_MAC_SOURCE", "mac": "zz0b0c0d0e0f1"}, MatchMacSource(0x000B0C0D0E0F)),
    ({"type": "MATCH_IPV4_DEST", "ip": "10.1.2.3/40"}, MatchIpv4Dest(IPv4Address("10.1.2.3"), 32)),
    ({"type": "MATCH_IPV4_DEST", "ip": "10.1.2.3"}, MatchIpv4Dest(IPv4Address("10.1.2.3"), 0)),
    ({"type": "MATCH_IPV4_DEST", "ip": "fd00::1/8"}, MatchIpv4Dest(IPv4Address("0.0.0.0"), 8)),
    ({"type": "MATCH_IPV4_DEST", "ip": "bogus.x/8"}, MatchIpv4Dest(IPv4Address("0.0.0.0"), 8)),
    ({"type": "MATCH_IPV4_DEST"}, MatchIpv4Dest(IPv4Address("0.0.0.0"), 0)),
    (
        {"type": "MATCH_IPV6_SOURCE", "ip": "fd00::/200"},
        MatchIpv6Source(IPv6Address("fd00::"), 128),
    ),
    ({"type": "MATCH_ICMP", "icmpType": 8}, MatchIcmp(8, 0, 0)),
    ({"type": "MATCH_ICMP", "icmpType": 3, "icmpCode": 1}, MatchIcmp(3, 1, 1)),
    (
        {"type": "MATCH_SOURCE_ZEROTIER_ADDRESS", "zt": "ff89e92ceee5"},
        MatchSourceZeroTierAddress(0x89E92CEEE5),
    ),
    ({"type": "ACTION_TEE", "address": "abc", "flags": -1}, ActionTee(0xABC, 0xFFFFFFFF, 0)),
    ({"type": "MATCH_TAGS_EQUAL", "id": 3.9, "value": True}, MatchTagsEqual(3, 1)),
    ({"type": "MATCH_RANDOM", "probability": "4294967295"}, MatchRandom(0xFFFFFFFF)),
    (
        {"type": "MATCH_CHARACTERISTICS", "mask": "8000000000000002"},
        MatchCharacteristics(0x8000000000000002),
    ),
]


@pytest.mark.parametrize(("obj", "rule"), LENIENT)
def test_json_parsing_leniency(obj: dict[str, Any], rule: Rule) -> None:
    assert rule_from_json(obj) == rule


def test_rules_from_json() -> None:
    items = [{"type": "ACTION_DROP"}, {"type": "INTEGER_RANGE"}, 5, {"type": "ACTION_ACCEPT"}]
    assert rules_from_json(items) == (ActionDrop(), ActionAccept())
    assert rules_from_json(items, 1) == (ActionDrop(),)
    assert rules_from_json({"type": "ACTION_DROP"}) == ()
    assert len(rules_from_json(items, quirks=False)) == 3


@pytest.mark.parametrize(("rule", "_hex"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_json_round_trip_every_type(rule: Rule, _hex: str) -> None:
    if isinstance(rule, UnknownRule):
        assert rule_to_json(rule) == {} and rule_to_json(rule, quirks=False) == {}
        return
    fwd_high = isinstance(rule, ActionTee | ActionWatch | ActionRedirect) and rule.address >> 40
    if not fwd_high:
        assert rule_from_json(rule_to_json(rule, quirks=False), quirks=False) == rule
    quirky = rule_from_json(rule_to_json(rule))
    if isinstance(rule, ActionPriority | MatchIntegerRange):
        assert quirky is None
    elif rule.is_action:
        assert quirky is not None and quirky.type_code == rule.type_code
        assert not quirky.not_ and not quirky.or_
    elif not fwd_high:
        assert quirky == rule


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(any_rules, max_size=20))
def test_binary_round_trip(rules: list[Rule]) -> None:
    blob = encode_rules(rules)
    assert decode_rules(blob) == tuple(rules)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_safe_rules, max_size=10))
def test_json_round_trip(rules: list[Rule]) -> None:
    assert rules_from_json(rules_to_json(rules, quirks=False), quirks=False) == tuple(rules)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random(data: bytes) -> None:
    try:
        rules = decode_rules(data)
    except DecodeError:
        return
    assert decode_rules(encode_rules(rules)) == rules


@settings(max_examples=200, deadline=None)
@given(st.lists(any_rules, min_size=1, max_size=8), st.data())
def test_fuzz_truncated_and_mutated(rules: list[Rule], data: st.DataObject) -> None:
    blob = bytearray(encode_rules(rules))
    cut = data.draw(st.integers(0, len(blob)))
    for candidate in (bytes(blob[:cut]), _mutate(blob, data)):
        with contextlib.suppress(DecodeError):
            decode_rules(candidate)


def _mutate(blob: bytearray, data: st.DataObject) -> bytes:
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(out) - 1))
        out[i] = data.draw(U8)
    return bytes(out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_JSON_FIELDS = ["not", "or", "address", "flags", "length", "zt", "vlanId", "vlanPcp", "vlanDei",
                "mac", "ip", "mask", "start", "end", "ipProtocol", "etherType", "icmpType",
                "icmpCode", "probability", "id", "value", "idx", "little", "bits"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*(t.name for t in RuleType), "INTEGER_RANGE", "BOGUS"]),
    st.dictionaries(st.sampled_from(_JSON_FIELDS), json_values, max_size=6),
    st.booleans(),
)
def test_fuzz_json_never_raises(kind: str, fields: dict[str, Any], quirks: bool) -> None:
    rule = rule_from_json({"type": kind, **fields}, quirks=quirks)
    if rule is not None:
        assert decode_rules(encode_rules([rule])) == (rule,)
        rule_to_json(rule, quirks=quirks)
