"""NetworkConfig <-> Dictionary, request metadata, chunking, fuzzing (protocol-network.md §2-3)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import EXAMPLES, json_safe_rules
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    OwnedThing,
    Tag,
)
from ztnode.wire.dictionary import Dictionary, DictionaryFullError
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.netconf import (
    CONFIG_CHUNK_MAX,
    DnsConfig,
    NetconfFlag,
    NetworkConfig,
    NetworkConfigRequestMetadata,
    NetworkType,
    Route,
    SpecialistType,
    SsoConfig,
    split_config_chunks,
)
from ztnode.wire.rules import ActionAccept, MatchEthertype, Rule

TS = 1_700_000_000_000


def ia(text: str, port: int) -> InetAddress:
    return InetAddress(ip_address(text), port)


@dataclass(frozen=True)
class Ids:
    controller: Identity
    member: Identity

    @property
    def nwid(self) -> int:
        return (self.controller.address << 24) | 0x00ABCD


@pytest.fixture(scope="module")
def ids() -> Ids:
    return Ids(Identity.generate(), Identity.generate())


@pytest.fixture(scope="module")
def full(ids: Ids) -> NetworkConfig:
    """A config with every field populated, credentials signed by the controller."""
    nwid, member, ctrl = ids.nwid, ids.member.address, ids.controller
    com = CertificateOfMembership.issue(TS, 1_800_000, nwid, ids.member).sign(ctrl)
    caps = tuple(
        Capability(cid, nwid, TS, (MatchEthertype(0x0800), ActionAccept())).sign(ctrl, member)
        for cid in (3, 1)
    )
    tags = tuple(Tag(tid, tid * 10, nwid, TS, member).sign(ctrl) for tid in (2, 1))
    things = (OwnedThing.ip(IPv4Address("10.147.17.5")), OwnedThing.ip(IPv6Address("fd00::5")))
    coo = CertificateOfOwnership(nwid, TS, 1, member, things).sign(ctrl)
    return NetworkConfig(
        network_id=nwid,
        timestamp=TS,
        issued_to=member,
        credential_time_max_delta=1_800_000,
        revision=17,
        remote_trace_target=0x1122334455,
        remote_trace_level=10,
        flags=NetconfFlag.ENABLE_BROADCAST | NetconfFlag.ENABLE_IPV6_NDP_EMULATION,
        multicast_limit=32,
        type=NetworkType.PUBLIC,
        name="my network \u00e9",
        mtu=2800,
        com=com,
        capabilities=caps,
        tags=tags,
        certificates_of_ownership=(coo,),
        specialists=(
            SpecialistType.ACTIVE_BRIDGE | 0x0102030405,
            SpecialistType.ANCHOR | SpecialistType.MULTICAST_REPLICATOR | 0x0A0B0C0D0E,
        ),
        routes=(
            Route(ia("10.147.17.0", 24)),
            Route(ia("0.0.0.0", 0), ia("10.147.17.1", 0), 1, 5),
            Route(ia("fd00::", 64), None),
        ),
        static_ips=(ia("10.147.17.5", 24), ia("fd00::5", 64)),
        rules=tuple(r for r, _ in EXAMPLES),
        dns=DnsConfig("zt.example", (ia("10.147.17.1", 53), ia("fd00::1", 53))),
        sso=SsoConfig(
            version=1,
            enabled=True,
            issuer_url="https://issuer",
            central_auth_url="https://central",
            nonce="n",
            state="s",
            client_id="cid",
            provider="keycloak",
        ),
    )


def test_full_round_trip(full: NetworkConfig) -> None:
    d = full.to_dictionary()
    back = NetworkConfig.from_dictionary(Dictionary.parse(d.to_bytes()))
    # Capabilities and tags come back sorted by id, as the reference sorts them.
    expected = replace(
        full,
        capabilities=tuple(sorted(full.capabilities, key=lambda c: c.id)),
        tags=tuple(sorted(full.tags, key=lambda t: t.id)),
    )
    assert back == expected
    assert NetworkConfig.decode(full.encode()) == expected
    assert back.encode() == expected.encode()


def test_key_order_and_scalar_encoding(full: NetworkConfig, ids: Ids) -> None:
    d = full.to_dictionary()
    assert d.keys() == [
        "v", "nwid", "ts", "ctmd", "r", "id", "tt", "tl", "f", "ml", "t", "n", "mtu",
        "C", "CAP", "TAG", "COO", "S", "RT", "I", "R", "DNS",
        "ssov", "ssoe", "iurl", "ssoce", "sson", "ssos", "ssocid", "ssop",
    ]  # fmt: skip
    head = d.to_bytes().split(b"\nC=")[0].decode()
    assert head.split("\n") == [
        "v=0000000000000007",
        f"nwid={ids.nwid:016x}",
        f"ts={TS:016x}",
        "ctmd=00000000001b7740",
        "r=0000000000000011",
        f"id={ids.member.address:010x}",
        "tt=1122334455",
        "tl=000000000000000a",
        "f=0000000000000006",
        "ml=0000000000000020",
        "t=0000000000000001",
        "n=my network \u00e9",
        "mtu=0000000000000af0",
    ]
    assert full.com is not None and d.get_bytes("C") == full.com.encode()
    assert d.get_bytes("S") == bytes.fromhex("0000020102030405 00000c0a0b0c0d0e")
    assert d.get_bytes("I") == bytes.fromhex("04 0a931105 0018 06 fd" + "00" * 14 + "05 0040")


def test_minimal_config_and_defaults(ids: Ids) -> None:
    nc = NetworkConfig(ids.nwid, TS, ids.member.address)
    d = nc.to_dictionary()
    assert "CAP" not in d and "R" not in d and "C" not in d and "S" not in d
    dns = d.get_bytes("DNS")
    assert dns == bytes(128) + bytes(4)  # always written: empty domain, four null servers
    assert d.to_bytes().endswith(b"\nssov=0000000000000000\nssoe=0")
    assert NetworkConfig.decode(d.to_bytes()) == nc
    # Missing optional keys take the reference's defaults.
    bare = Dictionary()
    bare.add_int("v", 7)
    bare.add_int("nwid", ids.nwid)
    bare.add_str("id", f"{ids.member.address:010x}")
    parsed = NetworkConfig.from_dictionary(bare)
    assert parsed.mtu == 2800 and parsed.type == NetworkType.PRIVATE and parsed.is_private
    assert parsed.multicast_limit == 0 and parsed.rules == () and parsed.com is None
    assert parsed.dns == DnsConfig() and parsed.sso == SsoConfig()


@pytest.mark.parametrize("drop", ["v", "nwid", "id"])
def test_required_keys(ids: Ids, drop: str) -> None:
    d = Dictionary()
    for k, v in (("v", 7), ("nwid", ids.nwid), ("id", ids.member.address)):
        if k != drop:
            d.add_int(k, v)
    with pytest.raises(DecodeError):
        NetworkConfig.from_dictionary(d)


def test_legacy_version_refused(ids: Ids) -> None:
    wire = NetworkConfig(ids.nwid, TS, ids.member.address).encode()
    with pytest.raises(DecodeError):
        NetworkConfig.decode(wire.replace(b"v=0000000000000007", b"v=0000000000000005"))
    assert NetworkConfig.decode(wire.replace(b"v=0000000000000007", b"v=6")).network_id


def test_mtu_clamp_and_quirks(ids: Ids) -> None:
    base = NetworkConfig(ids.nwid, TS, ids.member.address)
    assert NetworkConfig.decode(replace(base, mtu=100).encode()).mtu == 1280
    assert NetworkConfig.decode(replace(base, mtu=20000).encode()).mtu == 10000
    # A negative timestamp loses its sign on the wire (1.14.1's signed writer).
    assert NetworkConfig.decode(replace(base, timestamp=-5).encode()).timestamp == 5
    # A full-width value reads back as a negative int64, as the reference's cast does.
    d = base.to_dictionary()
    raw = d.to_bytes().replace(f"ts={TS:016x}".encode(), b"ts=ffffffffffffffff")
    assert NetworkConfig.decode(raw).timestamp == -1
    assert NetworkConfig.decode(replace(base, type=5).encode()).type == 5


def test_forgiving_capabilities_and_tags(full: NetworkConfig) -> None:
    d = Dictionary()
    for k, v in full.to_dictionary().entries():
        if k == "CAP":
            v = full.capabilities[0].encode() + b"\x00\x01garbage"
        elif k == "TAG":
            v = v + b"\x01"
        d.add_bytes(k, v)
    nc = NetworkConfig.from_dictionary(d)
    assert nc.capabilities == (full.capabilities[0],)
    assert nc.tags == tuple(sorted(full.tags, key=lambda t: t.id))


@pytest.mark.parametrize("key", ["C", "COO", "RT", "I", "R", "DNS"])
def test_strict_blobs(full: NetworkConfig, key: str) -> None:
    d = Dictionary()
    for k, v in full.to_dictionary().entries():
        d.add_bytes(k, v[:3] if k == key else v)
    with pytest.raises(DecodeError):
        NetworkConfig.from_dictionary(d)


def test_list_limits(full: NetworkConfig, ids: Ids) -> None:
    coo = full.certificates_of_ownership[0]
    d = Dictionary()
    d.add_int("v", 7)
    d.add_int("nwid", ids.nwid)
    d.add_str("id", f"{ids.member.address:010x}")
    d.add_bytes("COO", coo.encode() * 5)
    d.add_bytes("S", bytes(8) * 300 + b"\x01\x02")
    d.add_bytes("I", b"\x00" * 10 + ia("10.0.0.1", 8).encode() * 30)
    d.add_bytes("RT", (ia("10.0.0.0", 8).encode() + b"\x00" + bytes(4)) * 130)
    nc = NetworkConfig.from_dictionary(d)
    assert nc.certificates_of_ownership == (coo,) * 4
    assert len(nc.specialists) == 256
    assert len(nc.static_ips) == 22  # null entries use up slots but are dropped
    assert len(nc.routes) == 128 and nc.routes[0].via is None


def test_helpers(full: NetworkConfig, ids: Ids) -> None:
    assert full.enable_broadcast and full.ndp_emulation and full.is_public
    assert full.controller == ids.controller.address
    assert full.active_bridges() == [0x0102030405]
    assert full.anchors() == [0x0A0B0C0D0E] == full.multicast_replicators()
    assert full.always_contact_addresses() == [0x0A0B0C0D0E]
    assert full.permits_bridging(0x0102030405) and not full.permits_bridging(0x0A0B0C0D0E)
    assert full.capability(3) is not None and full.capability(4) is None
    assert full.tag(1) is not None and full.tag(9) is None


def test_sso_versions(ids: Ids) -> None:
    base = NetworkConfig(ids.nwid, TS, ids.member.address)
    v0 = replace(base, sso=SsoConfig(0, True, "https://auth", 1234))
    d = v0.to_dictionary()
    assert d.get_str("aurl") == "https://auth" and d.get_int("aexpt") == 1234
    assert NetworkConfig.decode(d.to_bytes()) == v0
    no_url = replace(base, sso=SsoConfig(0, True, "", 5))
    assert "aurl" not in no_url.to_dictionary()
    assert NetworkConfig.decode(no_url.encode()) == no_url
    # Version 1 without a provider reads as "default"; disabled SSO drops every field.
    v1 = replace(base, sso=SsoConfig(1, True, issuer_url="i"))
    assert NetworkConfig.decode(v1.encode()).sso.provider == "default"
    off = replace(base, sso=SsoConfig(1, False, nonce="x"))
    assert NetworkConfig.decode(off.encode()).sso == SsoConfig(1, False)
    other = replace(base, sso=SsoConfig(2, True))
    assert "ssov" not in other.to_dictionary()


def test_write_validation(ids: Ids) -> None:
    base = NetworkConfig(ids.nwid, TS, ids.member.address)
    with pytest.raises(LocalProtocolError):
        replace(base, name="x" * 128).to_dictionary()
    with pytest.raises(LocalProtocolError):
        replace(base, dns=DnsConfig("d" * 128)).to_dictionary()
    with pytest.raises(LocalProtocolError):
        replace(base, dns=DnsConfig("", (ia("1.1.1.1", 53),) * 5)).to_dictionary()
    with pytest.raises(LocalProtocolError):
        replace(base, static_ips=(ia("10.0.0.1", 8),) * 33).to_dictionary()
    with pytest.raises(DictionaryFullError):
        replace(base, rules=(ActionAccept(),) * 600).to_dictionary(capacity=1024)
    name127 = replace(base, name="n" * 127)
    assert NetworkConfig.decode(name127.encode()).name == "n" * 127


def test_chunks() -> None:
    data = bytes(range(256)) * 100
    chunks = split_config_chunks(data)
    assert [c.offset for c in chunks] == [0, CONFIG_CHUNK_MAX, 2 * CONFIG_CHUNK_MAX]
    assert CONFIG_CHUNK_MAX == 9740
    assert b"".join(c.data for c in chunks) == data
    assert all(len(c.data) <= CONFIG_CHUNK_MAX for c in chunks)
    assert split_config_chunks(b"") == []
    assert [len(c.data) for c in split_config_chunks(b"abcde", 2)] == [2, 2, 1]
    with pytest.raises(LocalProtocolError):
        split_config_chunks(b"x", 0)


# --- request metadata ------------------------------------------------------------------------


def test_metadata_default_bytes() -> None:
    md = NetworkConfigRequestMetadata()
    assert md.encode() == (
        b"v=0000000000000007\nvend=0000000000000001\npv=000000000000000c\n"
        b"majv=0000000000000001\nminv=000000000000000e\nrevv=0000000000000001\n"
        b"mr=0000000000000400\nmc=0000000000000080\nmcr=0000000000000040\n"
        b"mt=0000000000000080\nf=0000000000000000\nrevr=0000000000000001\no=linux/x86_64"
    )
    assert NetworkConfigRequestMetadata.decode(md.encode()) == md


def test_metadata_auth_and_missing_keys() -> None:
    md = NetworkConfigRequestMetadata(auth="token:abc", os_arch="darwin/arm64")
    assert md.auth_token == "abc"
    assert md.encode().endswith(b"\no=darwin/arm64\na=token:abc")
    assert NetworkConfigRequestMetadata.decode(md.encode()) == md
    assert NetworkConfigRequestMetadata(auth="token:").auth_token is None
    assert NetworkConfigRequestMetadata(auth="other").auth_token is None
    old = NetworkConfigRequestMetadata.decode(b"v=0000000000000004")
    assert old.version == 4 and old.rules_engine_revision == 0 and old.os_arch == ""
    assert old.auth is None
    # Longer than the controller's 1024-byte buffer: truncated, never an error.
    long = NetworkConfigRequestMetadata.decode(b"o=" + b"x" * 2000)
    assert len(long.os_arch) == 1021


# --- properties and fuzzing ------------------------------------------------------------------

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, (1 << 64) - 1)
ADDR = st.integers(1, (1 << 40) - 1)
text127 = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30).filter(
    lambda s: len(s.encode()) <= 127
)
inet = st.one_of(
    st.builds(InetAddress, st.ip_addresses(v=4), U16),
    st.builds(InetAddress, st.ip_addresses(v=6), U16),
)
routes = st.builds(Route, st.one_of(st.none(), inet), st.one_of(st.none(), inet), U16, U16)
rule_lists: st.SearchStrategy[tuple[Rule, ...]] = st.lists(json_safe_rules, max_size=8).map(tuple)
sso = st.one_of(
    st.just(SsoConfig()),
    # aexpt is read back with strtoll, so values above 2**63-1 saturate (a reference quirk).
    st.builds(SsoConfig, st.just(0), st.just(True), text127, st.integers(0, (1 << 63) - 1)),
    st.builds(
        SsoConfig,
        st.just(1),
        st.just(True),
        st.just(""),
        st.just(0),
        text127,
        text127,
        text127,
        text127,
        text127,
        text127.filter(bool).filter(lambda s: len(s.encode()) <= 63),
    ),
)
configs = st.builds(
    NetworkConfig,
    network_id=st.integers(1, (1 << 64) - 1),
    timestamp=st.integers(0, (1 << 63) - 1),
    issued_to=ADDR,
    credential_time_max_delta=st.integers(0, (1 << 63) - 1),
    revision=U64,
    remote_trace_target=st.integers(0, (1 << 40) - 1),
    remote_trace_level=U32,
    flags=U64,
    multicast_limit=U32,
    type=st.sampled_from([NetworkType.PRIVATE, NetworkType.PUBLIC]),
    name=text127,
    mtu=st.integers(1280, 10000),
    specialists=st.lists(U64, max_size=5).map(tuple),
    routes=st.lists(routes, max_size=5).map(tuple),
    static_ips=st.lists(inet, max_size=5).map(tuple),
    rules=rule_lists,
    dns=st.builds(DnsConfig, text127, st.lists(inet, max_size=4).map(tuple)),
    sso=sso,
)


@settings(max_examples=80, deadline=None)
@given(configs)
def test_round_trip_property(nc: NetworkConfig) -> None:
    assert NetworkConfig.decode(nc.encode()) == nc


@settings(max_examples=60, deadline=None)
@given(
    st.builds(
        NetworkConfigRequestMetadata,
        *([U16] * 10),
        U64,
        U16,
        text127,
        st.one_of(st.none(), text127.filter(bool)),
    )
)
def test_metadata_round_trip(md: NetworkConfigRequestMetadata) -> None:
    assert NetworkConfigRequestMetadata.decode(md.encode()) == md


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        NetworkConfig.decode(data)
    NetworkConfigRequestMetadata.decode(data)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_mutated(full: NetworkConfig, data: st.DataObject) -> None:
    wire = bytearray(full.encode())
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(DecodeError):
        NetworkConfig.decode(bytes(wire[:cut]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        NetworkConfig.decode(bytes(wire))
