"""The physical-path table (core/trusted.py): parsing local.conf's ``physical`` and the legacy
``trustedpaths`` file, the bound, and the reference's matching order."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.core.trusted import (
    MAX_PHYSICAL_PATHS,
    PhysicalPath,
    PhysicalPathConfig,
    PhysicalPaths,
)
from ztnode.errors import DecodeError
from ztnode.wire.constants import DEFAULT_PHYSMTU, MAX_PHYSMTU, MIN_PHYSMTU


def table(physical: dict[str, Any]) -> PhysicalPaths:
    return PhysicalPaths(PhysicalPathConfig.from_local_conf(physical))


def test_inbound_needs_containment_and_the_same_id() -> None:
    t = table({"10.1.0.0/16": {"trustedPathId": 77}, "fd00::/8": {"trustedPathId": 5}})
    assert t.inbound_trusted("10.1.2.3", 77)
    assert not t.inbound_trusted("10.1.2.3", 78)  # wrong id
    assert not t.inbound_trusted("10.2.0.1", 77)  # outside
    assert t.inbound_trusted("fd12::1", 5)
    assert not t.inbound_trusted("fd12::1", 77)
    assert not t.inbound_trusted("::ffff:10.1.2.3", 77)  # another family, as the reference
    assert not t.inbound_trusted("not-an-ip", 77)


def test_id_zero_is_never_trusted_even_from_mtu_only_networks() -> None:
    # The reference would accept ID 0 from a network configured only for its MTU.
    t = table({"10.0.0.0/8": {"mtu": 9000}, "192.168.0.0/16": {"blacklist": True}})
    assert not t.inbound_trusted("10.1.1.1", 0)
    assert not t.inbound_trusted("192.168.1.1", 0)
    assert t.outbound_trust("10.1.1.1") == 0
    entry = t.outbound("10.1.1.1")
    assert entry is not None and entry.mtu == 9000


def test_outbound_takes_the_first_entry_in_the_reference_order() -> None:
    # InetAddress operator<: IPv4 before IPv6, shorter prefix first: the /8 decides for
    # addresses in both, whatever order the keys were written in.
    t = table({"10.0.0.0/24": {"trustedPathId": 2}, "10.0.0.0/8": {"trustedPathId": 1}})
    assert t.outbound_trust("10.0.0.5") == 1
    assert t.outbound_trust("10.9.0.5") == 1
    # Inbound, either entry's ID is accepted where it contains the source.
    assert t.inbound_trusted("10.0.0.5", 2) and t.inbound_trusted("10.0.0.5", 1)
    assert not t.inbound_trusted("10.9.0.5", 2)
    assert t.outbound_trust("11.0.0.1") == 0 and t.outbound("11.0.0.1") is None


def test_order_of_same_length_ipv4_networks_is_the_little_endian_word() -> None:
    cfg = PhysicalPathConfig.from_local_conf(
        {"10.0.0.0/24": {}, "9.0.1.0/24": {}, "fd00::/16": {}, "0.0.0.0/0": {}}
    )
    # As little-endian words 10.0.0.0 is 0x0000000a and 9.0.1.0 is 0x00010009: 10 first.
    assert [str(p.network) for p in cfg.entries] == [
        "0.0.0.0/0",
        "10.0.0.0/24",
        "9.0.1.0/24",
        "fd00::/16",
    ]


def test_slash_zero_contains_every_address_of_its_family() -> None:
    t = table({"0.0.0.0/0": {"trustedPathId": 9}})
    assert t.inbound_trusted("203.0.113.7", 9)
    assert not t.inbound_trusted("2001:db8::1", 9)


def test_mtu_clamped_and_defaulted_as_the_reference() -> None:
    cfg = PhysicalPathConfig.from_local_conf(
        {
            "10.0.0.0/8": {"mtu": 100},
            "11.0.0.0/8": {"mtu": 100_000},
            "12.0.0.0/8": {"mtu": 0},
            "13.0.0.0/8": {"mtu": "9000"},
            "14.0.0.0/8": {},
        }
    )
    mtus = {str(p.network): p.mtu for p in cfg.entries}
    assert mtus == {
        "10.0.0.0/8": MIN_PHYSMTU,
        "11.0.0.0/8": MAX_PHYSMTU,
        "12.0.0.0/8": DEFAULT_PHYSMTU,
        "13.0.0.0/8": 9000,
        "14.0.0.0/8": DEFAULT_PHYSMTU,
    }


@pytest.mark.parametrize(
    ("physical", "named"),
    [
        ({"10.0.0.0": {"trustedPathId": 1}}, "physical['10.0.0.0']"),
        ({"10.0.0.0/33": {}}, "physical['10.0.0.0/33']"),
        ({"nonsense/8": {}}, "physical['nonsense/8']"),
        ({"10.0.0.0/8": 5}, "physical['10.0.0.0/8']"),
        ({"10.0.0.0/8": {"trustedPathID": 1}}, "'trustedPathID'"),
        ({"10.0.0.0/8": {"trustedPathId": -1}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": 2**64}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": "0x10"}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": "1_000"}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": "9" * 30}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": True}}, "trustedPathId"),
        ({"10.0.0.0/8": {"trustedPathId": 1.5}}, "trustedPathId"),
        ({"10.0.0.0/8": {"mtu": "big"}}, "mtu"),
        ({"10.0.0.0/8": {"blacklist": "yes"}}, "blacklist"),
        ({"fd00::1/64": {"trustedPathId": 1}}, "host bits"),
        ({"10.0.0.0/8": {}, "10.1.2.3/8": {}}, "same network"),
    ],
)
def test_bad_values_are_errors_naming_the_key(physical: dict[str, Any], named: str) -> None:
    with pytest.raises(DecodeError, match="physical") as e:
        PhysicalPathConfig.from_local_conf(physical)
    assert named in str(e.value)


def test_ipv4_host_bits_behave_as_the_network() -> None:
    t = table({"10.0.0.5/24": {"trustedPathId": 3}})
    assert t.inbound_trusted("10.0.0.200", 3)


def test_bound_is_the_references_with_a_clear_error() -> None:
    ok = {f"10.{i}.0.0/16": {"trustedPathId": i + 1} for i in range(MAX_PHYSICAL_PATHS)}
    assert len(PhysicalPathConfig.from_local_conf(ok).entries) == MAX_PHYSICAL_PATHS
    over = dict(ok, **{"11.0.0.0/8": {}})
    with pytest.raises(DecodeError, match=f"at most {MAX_PHYSICAL_PATHS}"):
        PhysicalPathConfig.from_local_conf(over)
    nets = [PhysicalPath(ipaddress.ip_network(f"10.{i}.0.0/16")) for i in range(33)]
    with pytest.raises(DecodeError, match="ZT_MAX_CONFIGURABLE_PATHS"):
        PhysicalPathConfig(tuple(nets))


def test_legacy_file_and_its_merge_with_local_conf() -> None:
    legacy = PhysicalPathConfig.from_legacy_file(
        "# old style\n\n1a 10.0.0.0/8\nff=192.168.1.0/24\n"
    )
    assert {(str(p.network), p.trusted_path_id) for p in legacy.entries} == {
        ("10.0.0.0/8", 0x1A),
        ("192.168.1.0/24", 0xFF),
    }
    local = PhysicalPathConfig.from_local_conf(
        {"10.0.0.0/8": {"mtu": 9000}, "192.168.1.0/24": {"trustedPathId": 7}}
    )
    merged = {str(p.network): (p.trusted_path_id, p.mtu) for p in legacy.merged(local).entries}
    # local.conf without an ID keeps the file's ID; with one, replaces it.
    assert merged == {"10.0.0.0/8": (0x1A, 9000), "192.168.1.0/24": (7, DEFAULT_PHYSMTU)}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("zz 10.0.0.0/8\n", "line 1"),
        ("# c\n0 10.0.0.0/8\n", "line 2"),
        ("1 10.0.0.0/0\n", "prefix length of at least 1"),
        ("1\n", "line 1"),
        ("1 10.0.0.1\n", "needs a prefix length"),
    ],
)
def test_legacy_file_errors_name_the_line(text: str, named: str) -> None:
    with pytest.raises(DecodeError, match="trustedpaths") as e:
        PhysicalPathConfig.from_legacy_file(text)
    assert named in str(e.value)


def test_lookup_cache_stays_bounded() -> None:
    t = table({"10.0.0.0/8": {"trustedPathId": 1}})
    for i in range(5000):
        t.outbound(f"11.{i >> 8 & 255}.{i & 255}.1")
    assert len(t._cache) <= 1024
    assert t.outbound_trust("10.1.1.1") == 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
_keys = st.sampled_from(["trustedPathId", "mtu", "blacklist", "other"]) | st.text(max_size=6)
_cidrs = (
    st.builds(
        lambda a, b: f"{ipaddress.IPv4Address(a)}/{b}",
        st.integers(0, 2**32 - 1),
        st.integers(-1, 40),
    )
    | st.builds(
        lambda a, b: f"{ipaddress.IPv6Address(a)}/{b}",
        st.integers(0, 2**128 - 1),
        st.integers(0, 130),
    )
    | st.text(max_size=20)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_cidrs, st.dictionaries(_keys, _json, max_size=4) | _json, max_size=6))
def test_fuzz_local_conf_parses_or_raises_decode_error(physical: dict[str, Any]) -> None:
    try:
        cfg = PhysicalPathConfig.from_local_conf(physical)
    except DecodeError:
        return
    assert len(cfg.entries) <= MAX_PHYSICAL_PATHS
    t = PhysicalPaths(cfg)
    for p in cfg.entries:
        host = str(p.network.network_address)
        entry = t.outbound(host)
        assert entry is not None and entry.contains(ipaddress.ip_address(host))
        assert MIN_PHYSMTU <= p.mtu <= MAX_PHYSMTU
        if p.trusted_path_id:
            assert t.inbound_trusted(host, p.trusted_path_id)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_legacy_file_parses_or_raises_decode_error(text: str) -> None:
    try:
        cfg = PhysicalPathConfig.from_legacy_file(text)
    except DecodeError:
        return
    assert all(p.trusted_path_id > 0 for p in cfg.entries)
