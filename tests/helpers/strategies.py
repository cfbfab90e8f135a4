"""Hypothesis strategies and examples shared by the codec tests."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode.identity import Identity
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.inetaddr import (
    InetAddress,
)
from ztnode.wire.rules import (
    ActionAccept,
    ActionBreak,
    ActionDrop,
    ActionPriority,
    ActionRedirect,
    ActionTee,
    ActionWatch,
    Characteristic,
    MatchCharacteristics,
    MatchDestZeroTierAddress,
    MatchEthertype,
    MatchFrameSizeRange,
    MatchIcmp,
    MatchIntegerRange,
    MatchIpDestPortRange,
    MatchIpProtocol,
    MatchIpSourcePortRange,
    MatchIpTos,
    MatchIpv4Dest,
    MatchIpv4Source,
    MatchIpv6Dest,
    MatchIpv6Source,
    MatchMacDest,
    MatchMacSource,
    MatchRandom,
    MatchSourceZeroTierAddress,
    MatchTagReceiver,
    MatchTagsBitwiseAnd,
    MatchTagsBitwiseOr,
    MatchTagsBitwiseXor,
    MatchTagsDifference,
    MatchTagSender,
    MatchTagsEqual,
    MatchVlanDei,
    MatchVlanId,
    MatchVlanPcp,
    Rule,
    UnknownRule,
    rule_class,
)
from ztnode.wire.verbs import (
    Ack,
    Echo,
    Error,
    ExtFrame,
    Frame,
    GatherResults,
    Hello,
    MoonRef,
    MulticastFrame,
    MulticastGather,
    MulticastLike,
    MulticastSubscription,
    NetworkConfigChunk,
    NetworkConfigRequest,
    Nop,
    OkEcho,
    OkExtFrame,
    OkHello,
    OkMulticastFrame,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkOther,
    OkWhois,
    PathNegotiationRequest,
    PushDirectPaths,
    PushedPath,
    QosMeasurement,
    QosRecord,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    Whois,
)

# One instance of every type, with the exact bytes the reference's serializeRules writes.
EXAMPLES: list[tuple[Rule, str]] = [
    (ActionDrop(), "0000"),
    (ActionAccept(), "0100"),
    (ActionTee(0x1122334455, 7, 64), "020e 0000001122334455 00000007 0040"),
    (ActionWatch(0xDEADBEEF01, 0, 0, not_=True), "830e 000000deadbeef01 00000000 0000"),
    (ActionRedirect(0x0102030405, 1, 0), "040e 0000000102030405 00000001 0000"),
    (ActionBreak(), "0500"),
    (ActionPriority(or_=True), "4600"),
    (MatchSourceZeroTierAddress(0x89E92CEEE5), "180589e92ceee5"),
    (MatchDestZeroTierAddress(0x0000000001, not_=True), "99050000000001"),
    (MatchVlanId(42), "1a02002a"),
    (MatchVlanPcp(5), "1b0105"),
    (MatchVlanDei(1), "1c0101"),
    (MatchMacSource(0x0A0B0C0D0E0F), "1d060a0b0c0d0e0f"),
    (MatchMacDest(0xFFFFFFFFFFFF, or_=True), "5e06ffffffffffff"),
    (MatchIpv4Source(IPv4Address("10.0.0.0"), 8), "1f050a00000008"),
    (MatchIpv4Dest(IPv4Address("192.168.1.1"), 32), "2005c0a8010120"),
    (MatchIpv6Source(IPv6Address("fd00::"), 8), "2111 fd" + "00" * 15 + " 08"),
    (MatchIpv6Dest(IPv6Address("::1"), 128), "2211 " + "00" * 15 + "01 80"),
    (MatchIpTos(0xFC, 0x10, 0x20), "2303fc1020"),
    (MatchIpProtocol(17), "240111"),
    (MatchEthertype(0x0800, not_=True), "a5020800"),
    (MatchIcmp(8, 0, 0), "2603080000"),
    (MatchIcmp(3, 4, 1), "2603030401"),
    (MatchIpSourcePortRange(1024, 65535), "27040400ffff"),
    (MatchIpDestPortRange(22, 22), "280400160016"),
    (MatchCharacteristics(Characteristic.TCP_SYN | Characteristic.INBOUND), "29088000000000000002"),
    (MatchFrameSizeRange(64, 1500), "2a04004005dc"),
    (MatchRandom(0x80000000), "2b0480000000"),
    (MatchTagsDifference(1, 2), "2c080000000100000002"),
    (MatchTagsBitwiseAnd(1, 2), "2d080000000100000002"),
    (MatchTagsBitwiseOr(1, 2), "2e080000000100000002"),
    (MatchTagsBitwiseXor(1, 2), "2f080000000100000002"),
    (MatchTagsEqual(1, 2), "30080000000100000002"),
    (MatchTagSender(1, 2), "31080000000100000002"),
    (MatchTagReceiver(1, 2), "32080000000100000002"),
    (
        MatchIntegerRange.from_bounds(100, 200, 12, 16, little_endian=True),
        "3313 0000000000000064 00000000000000c8 000c 8f",
    ),
    (UnknownRule(7), "0700"),
    (UnknownRule(20, not_=True, or_=True), "d400"),
    (UnknownRule(63), "3f00"),
]


U8 = st.integers(0, 0xFF)


U16 = st.integers(0, 0xFFFF)


U32 = st.integers(0, 0xFFFF_FFFF)


U64 = st.integers(0, (1 << 64) - 1)


ADDR = st.integers(0, (1 << 40) - 1)


MAC = st.integers(0, (1 << 48) - 1)


_FLAGS = {"not_": st.booleans(), "or_": st.booleans()}


_UNKNOWN_CODES = [c for c in range(64) if rule_class(c) is None]


def _json_safe_strategies() -> list[st.SearchStrategy[Rule]]:
    """One strategy per type, restricted to values controller JSON can carry."""
    out: list[st.SearchStrategy[Rule]] = [
        st.builds(cls, **_FLAGS) for cls in (ActionDrop, ActionAccept, ActionBreak, ActionPriority)
    ]
    out += [
        st.builds(c, ADDR, U32, U16, **_FLAGS) for c in (ActionTee, ActionWatch, ActionRedirect)
    ]
    out += [
        st.builds(c, ADDR, **_FLAGS) for c in (MatchSourceZeroTierAddress, MatchDestZeroTierAddress)
    ]
    out += [
        st.builds(MatchVlanId, U16, **_FLAGS),
        st.builds(MatchVlanPcp, U8, **_FLAGS),
        st.builds(MatchVlanDei, U8, **_FLAGS),
        st.builds(MatchMacSource, MAC, **_FLAGS),
        st.builds(MatchMacDest, MAC, **_FLAGS),
        st.builds(MatchIpv4Source, st.ip_addresses(v=4), st.integers(0, 32), **_FLAGS),
        st.builds(MatchIpv4Dest, st.ip_addresses(v=4), st.integers(0, 32), **_FLAGS),
        st.builds(MatchIpv6Source, st.ip_addresses(v=6), st.integers(0, 128), **_FLAGS),
        st.builds(MatchIpv6Dest, st.ip_addresses(v=6), st.integers(0, 128), **_FLAGS),
        st.builds(MatchIpTos, U8, U8, U8, **_FLAGS),
        st.builds(MatchIpProtocol, U8, **_FLAGS),
        st.builds(MatchEthertype, U16, **_FLAGS),
        st.one_of(
            st.builds(MatchIcmp, U8, st.just(0), st.just(0), **_FLAGS),
            st.builds(MatchIcmp, U8, U8, st.just(1), **_FLAGS),
        ),
        st.builds(MatchIpSourcePortRange, U16, U16, **_FLAGS),
        st.builds(MatchIpDestPortRange, U16, U16, **_FLAGS),
        st.builds(MatchCharacteristics, U64, **_FLAGS),
        st.builds(MatchFrameSizeRange, U16, U16, **_FLAGS),
        st.builds(MatchRandom, U32, **_FLAGS),
        st.builds(MatchIntegerRange, U64, U32, U16, U8.map(lambda f: f & 0xBF), **_FLAGS),
    ]
    out += [
        st.builds(c, U32, U32, **_FLAGS)
        for c in (
            MatchTagsDifference,
            MatchTagsBitwiseAnd,
            MatchTagsBitwiseOr,
            MatchTagsBitwiseXor,
            MatchTagsEqual,
            MatchTagSender,
            MatchTagReceiver,
        )
    ]
    return out


json_safe_rules: st.SearchStrategy[Rule] = st.one_of(_json_safe_strategies())


any_rules: st.SearchStrategy[Rule] = st.one_of(
    json_safe_rules,
    st.builds(ActionTee, U64, U32, U16, **_FLAGS),
    st.builds(MatchIcmp, U8, U8, U8, **_FLAGS),
    st.builds(MatchIpv4Dest, st.ip_addresses(v=4), U8, **_FLAGS),
    st.builds(MatchIntegerRange, U64, U32, U16, U8, **_FLAGS),
    st.builds(UnknownRule, st.sampled_from(_UNKNOWN_CODES), **_FLAGS),
)


ipv4s = st.builds(IPv4Address, st.integers(0, 2**32 - 1))


ipv6s = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


ips = st.one_of(ipv4s, ipv6s)


ports = st.integers(0, 0xFFFF)


inet_addresses = st.builds(InetAddress, ips, ports)


H = bytes.fromhex


VECTORS = load_vectors()


def _public_identity_bytes(text: str) -> bytes:
    addr, _type, pub = text.split(":")[:3]
    return H(addr) + b"\x00" + H(pub) + b"\x00"


IDENTITY_BYTES = [
    _public_identity_bytes(v["identity"]) for v in VECTORS["identities"]["known_good"]
]


IDENTITIES = [Identity.read(Reader(b)) for b in IDENTITY_BYTES]


u8 = st.integers(0, 0xFF)


u16 = st.integers(0, 0xFFFF)


u32 = st.integers(0, 0xFFFFFFFF)


u64 = st.integers(0, 2**64 - 1)


macs = st.integers(0, 2**48 - 1)


addresses = st.integers(0, 2**40 - 1)


small_bytes = st.binary(max_size=64)


identities = st.sampled_from(IDENTITIES)


maybe_inet = st.one_of(st.none(), inet_addresses)


def com_bytes(
    qualifiers: list[tuple[int, int, int]], signed_by: int, signature: bytes = b""
) -> bytes:
    """A serialised certificate of membership (CertificateOfMembership.hpp:221-279)."""
    w = Writer()
    w.u8(1).u16(len(qualifiers))
    for q in qualifiers:
        w.u64(q[0]).u64(q[1]).u64(q[2])
    w.address(signed_by)
    if signed_by:
        w.raw(signature)
    return bytes(w.buf)


@st.composite
def com_records(draw: st.DrawFn) -> Any:
    from ztnode.wire.credentials import CertificateOfMembership

    values = draw(st.lists(u64, min_size=7, max_size=7))
    quals = [(i, values[i], 0xFFFFFFFFFFFFFFFF) for i in range(7)]
    signer = draw(st.integers(1, 2**40 - 1))
    data = com_bytes(quals, signer, draw(st.binary(min_size=96, max_size=96)))
    return CertificateOfMembership.read(Reader(data))


maybe_com = st.one_of(st.none(), com_records())


@st.composite
def hellos(draw: st.DrawFn) -> Hello:
    planet = draw(st.one_of(st.none(), st.tuples(u64, u64)))
    moons: tuple[MoonRef, ...] | None = draw(st.sampled_from([None, ()]))
    if planet is not None:
        moons = draw(
            st.one_of(
                st.none(),
                st.lists(st.builds(MoonRef, u8, u64, u64), max_size=4).map(tuple),
            )
        )
    return Hello(
        draw(u8),
        draw(u8),
        draw(u8),
        draw(u16),
        draw(u64),
        draw(identities),
        draw(maybe_inet),
        planet[0] if planet else None,
        planet[1] if planet else None,
        moons,
    )


@st.composite
def errors(draw: st.DrawFn) -> Error:
    code = draw(st.one_of(st.sampled_from(list(ErrorCode)), st.integers(10, 255)))
    in_re = draw(u8)
    pid = draw(u64)
    if code == ErrorCode.UNWANTED_MULTICAST:
        return Error(in_re, pid, code, draw(u64), draw(macs), draw(u32), data=draw(small_bytes))
    if code == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED:
        dictionary = draw(st.one_of(st.none(), small_bytes))
        data = draw(small_bytes) if dictionary is not None else draw(st.binary(max_size=1))
        return Error(in_re, pid, code, draw(u64), dictionary=dictionary, data=data)
    if code in (ErrorCode.NEED_MEMBERSHIP_CERTIFICATE, ErrorCode.NETWORK_ACCESS_DENIED):
        return Error(in_re, pid, code, draw(u64), data=draw(small_bytes))
    if code in (ErrorCode.OBJ_NOT_FOUND, ErrorCode.UNSUPPORTED_OPERATION):
        if in_re == Verb.NETWORK_CONFIG_REQUEST or draw(st.booleans()):
            return Error(in_re, pid, code, draw(u64), data=draw(small_bytes))
        return Error(in_re, pid, code, data=draw(st.binary(max_size=7)))
    return Error(in_re, pid, code, data=draw(small_bytes))


@st.composite
def config_chunks(draw: st.DrawFn) -> NetworkConfigChunk:
    data = draw(small_bytes)
    if draw(st.booleans()):
        return NetworkConfigChunk.legacy(draw(u64), data)
    index = draw(st.integers(0, 2**32 - 1 - len(data)))
    total = draw(st.integers(index + len(data), 2**32 - 1))
    sig = draw(st.binary(min_size=96, max_size=96))
    return NetworkConfigChunk(draw(u64), data, draw(u8), draw(u64), total, index, sig)


@st.composite
def pushed_paths(draw: st.DrawFn) -> PushedPath:
    ext = draw(st.binary(max_size=8))
    flags = draw(u8)
    if draw(st.booleans()):
        return replace(PushedPath.for_address(draw(inet_addresses), flags), ext=ext)
    kind = draw(u8.filter(lambda t: t not in (4, 6)))
    return PushedPath(flags, None, kind, draw(st.binary(max_size=20)), ext)


@st.composite
def ext_frames(draw: st.DrawFn) -> ExtFrame:
    com = draw(maybe_com)
    flags = draw(u8) & 0xFE | (1 if com is not None else 0)
    return ExtFrame(draw(u64), flags, draw(macs), draw(macs), draw(u16), draw(small_bytes), com)


@st.composite
def multicast_gathers(draw: st.DrawFn) -> MulticastGather:
    com = draw(maybe_com)
    flags = draw(u8) & 0xFE | (1 if com is not None else 0)
    return MulticastGather(draw(u64), flags, draw(macs), draw(u32), draw(u32), com)


@st.composite
def multicast_frames(draw: st.DrawFn) -> MulticastFrame:
    com = draw(maybe_com)
    limit = draw(st.one_of(st.none(), u32))
    source = draw(st.one_of(st.none(), macs))
    flags = draw(u8) & 0xF8
    flags |= (1 if com is not None else 0) | (2 if limit is not None else 0)
    flags |= 4 if source is not None else 0
    return MulticastFrame(
        draw(u64), flags, draw(macs), draw(u32), draw(u16), draw(small_bytes), limit, source, com
    )


gather_results = st.builds(GatherResults, u32, st.lists(addresses, max_size=10).map(tuple))


@st.composite
def ok_multicast_frames(draw: st.DrawFn) -> OkMulticastFrame:
    com = draw(maybe_com)
    gather = draw(st.one_of(st.none(), gather_results))
    flags = draw(u8) & 0xFC | (1 if com is not None else 0) | (2 if gather is not None else 0)
    return OkMulticastFrame(draw(u64), draw(u64), draw(macs), draw(u32), flags, com, gather)


ok_others = st.builds(
    OkOther,
    u8.filter(lambda v: v not in (0x01, 0x04, 0x07, 0x08, 0x0B, 0x0D, 0x0E)),
    u64,
    small_bytes,
)


PAYLOADS: dict[str, st.SearchStrategy[Any]] = {
    "nop": st.just(Nop()),
    "hello": hellos(),
    "error": errors(),
    "ok_hello": st.builds(
        OkHello, u64, u64, u8, u8, u8, u16, maybe_inet, st.one_of(st.none(), small_bytes)
    ),
    "ok_whois": st.builds(OkWhois, u64, st.lists(identities, min_size=1, max_size=3).map(tuple)),
    "ok_echo": st.builds(OkEcho, u64, small_bytes),
    "ok_ncr": st.builds(OkNetworkConfigRequest, u64, config_chunks()),
    "ok_gather": st.builds(
        OkMulticastGather, u64, u64, macs, u32, u32, st.lists(addresses, max_size=10).map(tuple)
    ),
    "ok_mframe": ok_multicast_frames(),
    "ok_ext_frame": st.builds(OkExtFrame, u64, u64),
    "ok_other": ok_others,
    "whois": st.builds(Whois, st.lists(addresses, max_size=8).map(tuple)),
    "rendezvous": st.builds(Rendezvous, addresses, st.one_of(ipv4s, ipv6s), u16, u8),
    "frame": st.builds(Frame, u64, u16, small_bytes),
    "ext_frame": ext_frames(),
    "echo": st.builds(Echo, small_bytes),
    "multicast_like": st.builds(
        MulticastLike,
        st.lists(st.builds(MulticastSubscription, u64, macs, u32), max_size=6).map(tuple),
    ),
    "ncr": st.one_of(
        st.builds(NetworkConfigRequest, u64, small_bytes),
        st.builds(NetworkConfigRequest, u64, small_bytes, u64, u64),
    ),
    "network_config": config_chunks(),
    "multicast_gather": multicast_gathers(),
    "multicast_frame": multicast_frames(),
    "push_direct_paths": st.builds(
        PushDirectPaths, st.lists(pushed_paths(), max_size=5).map(tuple)
    ),
    "ack": st.builds(Ack, u32),
    "qos": st.builds(
        QosMeasurement, st.lists(st.builds(QosRecord, u64, u16), max_size=140).map(tuple)
    ),
    "user_message": st.builds(UserMessage, u64, small_bytes),
    "remote_trace": st.builds(
        RemoteTrace,
        st.lists(
            st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b), max_size=4
        ).map(tuple),
    ),
    "path_negotiation": st.builds(PathNegotiationRequest, st.integers(-32768, 32767)),
}


any_payload = st.one_of(*PAYLOADS.values())
