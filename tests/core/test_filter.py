"""The rules filter alone (``core/filter.py``), table-driven against ZeroTierOne 1.14.1's
``_doZtFilter`` semantics (node/Network.cpp:83-931, protocol-network.md §6): every match type
and action, NOT and OR, rule order, BREAK, capabilities after the base rules, tags on both sides,
the copies TEE/WATCH/REDIRECT make, and a property test that no frame and no decodable rule list
makes it raise."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.core.filter import (
    FLAG_REDIRECT_IN,
    FLAG_REDIRECT_OUT,
    FLAG_TEE_IN,
    FLAG_TEE_OUT,
    FLAG_WATCH_OUT,
    Copy,
    FilterEnv,
    Frame,
    Party,
    Verdict,
    evaluate,
    filter_inbound,
    filter_outbound,
    is_accept_all,
)
from ztnode.errors import DecodeError
from ztnode.wire.credentials import Capability, CertificateOfOwnership, OwnedThing
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
    decode_rules,
)

ME = 0x1111111111
PEER = 0x2222222222
OBSERVER = 0x3333333333
MAC_ME = 0x32_11_11_11_11_11
MAC_PEER = 0x32_22_22_22_22_22
NWID = 0x8056C2E21C000001


# --- frames ----------------------------------------------------------------------------------


def ipv4(
    proto: int, payload: bytes, src: str = "10.0.0.2", dst: str = "10.0.0.1", tos: int = 0
) -> bytes:
    total = 20 + len(payload)
    head = bytes([0x45, tos]) + total.to_bytes(2, "big") + bytes(4) + bytes([64, proto, 0, 0])
    return head + IPv4Address(src).packed + IPv4Address(dst).packed + payload


def tcp(sport: int, dport: int, flags: int = 0x02) -> bytes:
    return (
        sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + bytes(8)
        + bytes([0x50, flags])
        + bytes(6)
    )


def udp(sport: int, dport: int, body: bytes = b"x") -> bytes:
    return (
        sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + (8 + len(body)).to_bytes(2, "big")
        + bytes(2)
        + body
    )


def ipv6(
    next_header: int, payload: bytes, src: str = "fd00::2", dst: str = "fd00::1", tc: int = 0
) -> bytes:
    first = bytes([0x60 | (tc >> 4), (tc & 0xF) << 4, 0, 0])
    return (
        first
        + len(payload).to_bytes(2, "big")
        + bytes([next_header, 64])
        + IPv6Address(src).packed
        + IPv6Address(dst).packed
        + payload
    )


def frame(data: bytes, ethertype: int = 0x0800, src: int = MAC_PEER, dst: int = MAC_ME) -> Frame:
    return Frame(ethertype, data, src, dst)


TCP_SYN_22 = ipv4(6, tcp(40000, 22))
UDP_53 = ipv4(17, udp(5353, 53))
ICMP_ECHO = ipv4(1, bytes([8, 0, 0, 0]))
ARP = (
    bytes([0, 1, 8, 0, 6, 4, 0, 1])
    + bytes(6)
    + IPv4Address("10.0.0.2").packed
    + bytes(6)
    + IPv4Address("10.0.0.1").packed
)
TCP6_80 = ipv6(6, tcp(40000, 80, 0x12))
# A hop-by-hop header (8 bytes) in front of UDP: the protocol walk must step over it.
UDP6_HOP = ipv6(0, bytes([17, 0]) + bytes(6) + udp(1000, 2000))
ICMP6_ECHO = ipv6(58, bytes([128, 0, 0, 0]))


def env(
    tags: dict[int, int] | None = None, coos: tuple[CertificateOfOwnership, ...] = (), rnd: int = 0
) -> FilterEnv:
    return FilterEnv(ME, Party(tags or {}, coos), lambda: rnd)


def verdict(
    rules: list[Rule],
    f: Frame,
    *,
    inbound: bool = True,
    e: FilterEnv | None = None,
    remote: Party | None = None,
) -> Verdict:
    src, dst = (PEER, ME) if inbound else (ME, PEER)
    v, _run = evaluate(
        rules,
        e or env(),
        inbound=inbound,
        zt_source=src,
        zt_dest=dst,
        frame=f,
        remote=remote or Party(),
    )
    return v


A = ActionAccept()
D = ActionDrop()

# (rules before ACCEPT, frame, expected match) for each match type.
MATCH_CASES: list[tuple[str, Rule, Frame, bool]] = [
    ("zt source", MatchSourceZeroTierAddress(PEER), frame(UDP_53), True),
    ("zt source other", MatchSourceZeroTierAddress(OBSERVER), frame(UDP_53), False),
    ("zt dest", MatchDestZeroTierAddress(ME), frame(UDP_53), True),
    ("vlan id 0", MatchVlanId(0), frame(UDP_53), True),
    ("vlan id 5", MatchVlanId(5), frame(UDP_53), False),
    ("vlan pcp 0 only", MatchVlanPcp(0), frame(UDP_53), True),
    ("vlan pcp 3", MatchVlanPcp(3), frame(UDP_53), False),
    ("vlan dei 1", MatchVlanDei(1), frame(UDP_53), False),
    ("mac source", MatchMacSource(MAC_PEER), frame(UDP_53), True),
    ("mac dest", MatchMacDest(MAC_PEER), frame(UDP_53), False),
    ("ipv4 source /24", MatchIpv4Source(IPv4Address("10.0.0.0"), 24), frame(UDP_53), True),
    ("ipv4 source /32 other", MatchIpv4Source(IPv4Address("10.0.0.3"), 32), frame(UDP_53), False),
    ("ipv4 dest /0", MatchIpv4Dest(IPv4Address("1.2.3.4"), 0), frame(UDP_53), True),
    ("ipv6 source /64", MatchIpv6Source(IPv6Address("fd00::"), 64), frame(TCP6_80, 0x86DD), True),
    ("ipv6 dest /128", MatchIpv6Dest(IPv6Address("fd00::2"), 128), frame(TCP6_80, 0x86DD), False),
    ("tos", MatchIpTos(0xFC, 0x20, 0x20), frame(ipv4(17, udp(1, 2), tos=0x22)), True),
    ("tos v6", MatchIpTos(0xFF, 0x40, 0x50), frame(ipv6(17, udp(1, 2), tc=0x48), 0x86DD), True),
    ("protocol", MatchIpProtocol(6), frame(TCP_SYN_22), True),
    ("protocol v6 after hop-by-hop", MatchIpProtocol(17), frame(UDP6_HOP, 0x86DD), True),
    ("ethertype", MatchEthertype(0x0806), frame(ARP, 0x0806), True),
    ("icmp type+code", MatchIcmp(8, 1, 0x01), frame(ICMP_ECHO), False),
    ("dport", MatchIpDestPortRange(20, 25), frame(TCP_SYN_22), True),
    ("sport", MatchIpSourcePortRange(20, 25), frame(TCP_SYN_22), False),
    ("dport v6 after hop-by-hop", MatchIpDestPortRange(2000, 2000), frame(UDP6_HOP, 0x86DD), True),
    ("tcp syn", MatchCharacteristics(Characteristic.TCP_SYN), frame(TCP_SYN_22), True),
    ("tcp ack", MatchCharacteristics(Characteristic.TCP_ACK), frame(TCP_SYN_22), False),
    ("tcp syn+ack v6", MatchCharacteristics(Characteristic.TCP_ACK), frame(TCP6_80, 0x86DD), True),
    ("inbound", MatchCharacteristics(Characteristic.INBOUND), frame(UDP_53), True),
    (
        "broadcast",
        MatchCharacteristics(Characteristic.BROADCAST),
        frame(ARP, 0x0806, dst=0xFFFFFFFFFFFF),
        True,
    ),
    (
        "multicast",
        MatchCharacteristics(Characteristic.MULTICAST),
        frame(UDP_53, dst=0x01005E000001),
        True,
    ),
    ("frame size", MatchFrameSizeRange(0, 40), frame(UDP_53), True),
    ("frame size big", MatchFrameSizeRange(100, 1500), frame(UDP_53), False),
    ("random always", MatchRandom(0xFFFFFFFF), frame(UDP_53), True),
]


@pytest.mark.parametrize(
    ("name", "rule", "f", "expected"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES]
)
def test_each_match_alone_and_negated(name: str, rule: Rule, f: Frame, expected: bool) -> None:
    assert verdict([rule, A], f) == (Verdict.ACCEPT if expected else Verdict.NO_MATCH)
    negated = type(rule)(*_fields(rule), not_=True)
    assert verdict([negated, A], f) == (Verdict.NO_MATCH if expected else Verdict.ACCEPT)


def _fields(rule: Rule) -> list[object]:
    import dataclasses

    return [
        getattr(rule, f.name) for f in dataclasses.fields(rule) if f.name not in ("not_", "or_")
    ]


@pytest.mark.parametrize(
    ("rule", "f"),
    [
        (MatchIpv4Source(IPv4Address("10.0.0.0"), 8), frame(ARP, 0x0806)),  # not IPv4
        (MatchIpv6Dest(IPv6Address("fd00::"), 8), frame(UDP_53)),  # not IPv6
        (MatchIpProtocol(17), frame(ARP, 0x0806)),
        (MatchIcmp(8), frame(UDP_53)),  # not ICMP
        (MatchIcmp(0), frame(ICMP_ECHO)),  # another type
        (MatchIpDestPortRange(0, 65535), frame(ARP, 0x0806)),
        (MatchTagsEqual(7, 1), frame(UDP_53)),  # we hold no tag 7
    ],
)
def test_hard_no_ignores_not(rule: Rule, f: Frame) -> None:
    negated = type(rule)(*_fields(rule), not_=True)
    assert verdict([rule, A], f) == Verdict.NO_MATCH
    assert verdict([negated, A], f) == Verdict.NO_MATCH


def test_icmp_type_without_code_is_hard_yes() -> None:
    for rule, f in ((MatchIcmp(8), frame(ICMP_ECHO)), (MatchIcmp(128), frame(ICMP6_ECHO, 0x86DD))):
        assert verdict([rule, A], f) == Verdict.ACCEPT
        assert verdict([type(rule)(*_fields(rule), not_=True), A], f) == Verdict.ACCEPT


def test_port_on_a_portless_protocol_is_plain_no_so_not_applies() -> None:
    assert (
        verdict([MatchIpDestPortRange(0, 65535, not_=True), A], frame(ICMP_ECHO)) == Verdict.ACCEPT
    )


def test_ipv6_port_zero_never_matches() -> None:
    f = frame(ipv6(17, udp(0, 0)), 0x86DD)
    assert verdict([MatchIpDestPortRange(0, 10), A], f) == Verdict.NO_MATCH
    assert verdict([MatchIpDestPortRange(0, 10), A], frame(ipv4(17, udp(0, 0)))) == Verdict.ACCEPT


def test_and_or_left_to_right() -> None:
    tcp_or_udp = [MatchIpProtocol(6), MatchIpProtocol(17, or_=True), A]
    assert verdict(tcp_or_udp, frame(TCP_SYN_22)) == Verdict.ACCEPT
    assert verdict(tcp_or_udp, frame(UDP_53)) == Verdict.ACCEPT
    assert verdict(tcp_or_udp, frame(ICMP_ECHO)) == Verdict.NO_MATCH
    # (false AND x) OR true: no precedence, so the OR revives the set.
    revived = [MatchIpProtocol(1), MatchIpProtocol(17), MatchEthertype(0x0800, or_=True), A]
    assert verdict(revived, frame(UDP_53)) == Verdict.ACCEPT


def test_sets_in_order_drop_break_and_unknown() -> None:
    rules = [MatchIpDestPortRange(22, 22), D, A]
    assert verdict(rules, frame(TCP_SYN_22)) == Verdict.DROP
    assert verdict(rules, frame(UDP_53)) == Verdict.ACCEPT
    assert verdict([MatchIpProtocol(6), ActionBreak(), A], frame(TCP_SYN_22)) == Verdict.NO_MATCH
    assert verdict([UnknownRule(code=9), A], frame(UDP_53)) == Verdict.ACCEPT  # reserved action
    unknown = [UnknownRule(code=60), A]
    assert verdict(unknown, frame(UDP_53)) == Verdict.NO_MATCH
    e = env()
    e.unsupported_match = True
    assert verdict(unknown, frame(UDP_53), e=e) == Verdict.ACCEPT
    assert verdict([], frame(UDP_53)) == Verdict.NO_MATCH
    assert verdict([ActionPriority(), D], frame(UDP_53)) == Verdict.ACCEPT


def test_integer_range_big_endian_quirk_and_little_endian() -> None:
    data = bytes(range(32))
    f = Frame(0x88B5, data, MAC_PEER, MAC_ME)
    # 16 bits at index 4, big-endian: the reference reads bytes 4+8-2 = 10..11 (0x0a0b).
    assert verdict([MatchIntegerRange.from_bounds(0x0A0B, 0x0A0B, 4, 16), A], f) == Verdict.ACCEPT
    assert verdict([MatchIntegerRange.from_bounds(0x0405, 0x0405, 4, 16), A], f) == Verdict.NO_MATCH
    # Little-endian reads at the index itself: bytes 4, 5 -> 0x0504.
    le = MatchIntegerRange.from_bounds(0x0504, 0x0504, 4, 16, little_endian=True)
    assert verdict([le, A], f) == Verdict.ACCEPT
    past = MatchIntegerRange.from_bounds(0, 0, 40, 32)  # beyond the frame: the value is 0
    assert verdict([past, A], f) == Verdict.ACCEPT


def test_random_uses_the_injected_source() -> None:
    assert verdict([MatchRandom(100), A], frame(UDP_53), e=env(rnd=100)) == Verdict.ACCEPT
    assert verdict([MatchRandom(100), A], frame(UDP_53), e=env(rnd=101)) == Verdict.NO_MATCH


# --- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "mine", "theirs", "expected"),
    [
        (MatchTagsDifference(1, 5), 10, 14, True),
        (MatchTagsDifference(1, 3), 10, 14, False),
        (MatchTagsBitwiseAnd(1, 0x4), 0x6, 0xC, True),
        (MatchTagsBitwiseOr(1, 0xE), 0x6, 0xC, True),
        (MatchTagsBitwiseXor(1, 0xA), 0x6, 0xC, True),
        (MatchTagsEqual(1, 7), 7, 7, True),
        (MatchTagsEqual(1, 7), 7, 8, False),
    ],
)
def test_tag_matches(rule: Rule, mine: int, theirs: int, expected: bool) -> None:
    e = env({1: mine})
    for inbound in (True, False):
        got = verdict([rule, A], frame(UDP_53), inbound=inbound, e=e, remote=Party({1: theirs}))
        assert got == (Verdict.ACCEPT if expected else Verdict.NO_MATCH)


def test_unknown_remote_tag_strict_inbound_lenient_outbound() -> None:
    e = env({1: 10})
    equal = [MatchTagsEqual(1, 10), A]
    assert verdict(equal, frame(UDP_53), inbound=True, e=e) == Verdict.NO_MATCH  # hard no
    assert verdict(equal, frame(UDP_53), inbound=False, e=e) == Verdict.ACCEPT  # hard yes
    # Outbound the hard yes also skips the next DROP once: a set meant to drop on a tag
    # mismatch lets the frame through to the receiver, which filters with both tags known.
    mismatch_drops = [MatchTagsEqual(1, 99), D, A]
    assert verdict(mismatch_drops, frame(UDP_53), inbound=False, e=e) == Verdict.ACCEPT
    known = Party({1: 99})
    assert (
        verdict(mismatch_drops, frame(UDP_53), inbound=False, e=env({1: 99}), remote=known)
        == Verdict.DROP
    )


def test_tag_sender_and_receiver() -> None:
    e = env({2: 5})
    them = Party({2: 9})
    sender_9 = [MatchTagSender(2, 9), A]
    assert verdict(sender_9, frame(UDP_53), inbound=True, e=e, remote=them) == Verdict.ACCEPT
    assert (
        verdict(sender_9, frame(UDP_53), inbound=False, e=e, remote=them) == Verdict.NO_MATCH
    )  # we are 5
    receiver_5 = [MatchTagReceiver(2, 5), A]
    assert verdict(receiver_5, frame(UDP_53), inbound=True, e=e, remote=them) == Verdict.ACCEPT
    assert (
        verdict(receiver_5, frame(UDP_53), inbound=False, e=e, remote=them) == Verdict.NO_MATCH
    )  # they are 9
    # Outbound receiver tag unknown: lenient (skipDrop); inbound sender tag unknown: hard no.
    assert (
        verdict([MatchTagReceiver(2, 1), D, A], frame(UDP_53), inbound=False, e=e) == Verdict.ACCEPT
    )
    assert verdict([MatchTagSender(2, 1), A], frame(UDP_53), inbound=True, e=e) == Verdict.NO_MATCH


# --- characteristics that need ownership ---------------------------------------------------------


def _coo(*things: OwnedThing) -> CertificateOfOwnership:
    return CertificateOfOwnership(network_id=NWID, timestamp=1, id=1, issued_to=PEER, things=things)


def test_sender_ip_and_mac_authenticated() -> None:
    ipauth = [MatchCharacteristics(Characteristic.SENDER_IP_AUTHENTICATED), A]
    macauth = [MatchCharacteristics(Characteristic.SENDER_MAC_AUTHENTICATED), A]
    theirs = Party({}, (_coo(OwnedThing.ip(IPv4Address("10.0.0.2")), OwnedThing.mac(MAC_PEER)),))
    assert verdict(ipauth, frame(UDP_53), remote=theirs) == Verdict.ACCEPT
    assert (
        verdict(ipauth, frame(ipv4(17, udp(1, 2), src="10.0.0.9")), remote=theirs)
        == Verdict.NO_MATCH
    )
    assert verdict(ipauth, frame(ARP, 0x0806), remote=theirs) == Verdict.ACCEPT  # ARP sender IP
    assert verdict(macauth, frame(UDP_53), remote=theirs) == Verdict.ACCEPT
    # Outbound it is our own certificates that count.
    assert verdict(ipauth, frame(UDP_53), inbound=False, remote=theirs) == Verdict.NO_MATCH
    ours = env(coos=(_coo(OwnedThing.ip(IPv4Address("10.0.0.2"))),))
    assert verdict(ipauth, frame(UDP_53), inbound=False, e=ours) == Verdict.ACCEPT
    # Neighbor solicitations count as authenticated; the NDP-emulated prefix counts as owned.
    ns = ipv6(58, bytes([0x87]) + bytes(23), src="::")
    assert verdict(ipauth, frame(ns, 0x86DD)) == Verdict.ACCEPT
    ndp = Party(ndp_prefixes=(IPv6Address("fd80:56c2:e21c:0:199:9300::").packed[:11],))
    in_prefix = ipv6(17, udp(1, 2), src="fd80:56c2:e21c:0:199:9322:2222:2222")
    assert verdict(ipauth, frame(in_prefix, 0x86DD), remote=ndp) == Verdict.ACCEPT


# --- copies, capabilities, wrappers --------------------------------------------------------------


def test_tee_watch_redirect_outbound() -> None:
    e = env()
    f = frame(UDP_53, src=MAC_ME, dst=MAC_PEER)
    d = filter_outbound(
        [ActionTee(OBSERVER, length=8), A], (), e, zt_dest=PEER, frame=f, remote=None
    )
    assert d.accept == 1 and d.copies == (Copy(OBSERVER, FLAG_TEE_OUT, 8),)
    d = filter_outbound([ActionWatch(OBSERVER), A], (), e, zt_dest=PEER, frame=f, remote=None)
    assert d.copies == (Copy(OBSERVER, FLAG_WATCH_OUT, len(UDP_53)),)
    d = filter_outbound(
        [ActionTee(OBSERVER), A], (), e, zt_dest=PEER, frame=f, remote=None, no_tee=True
    )
    assert d.accept == 1 and d.copies == ()
    d = filter_outbound([ActionRedirect(OBSERVER), A], (), e, zt_dest=PEER, frame=f, remote=None)
    assert d.accept == 0 and d.copies == (Copy(OBSERVER, FLAG_REDIRECT_OUT, len(UDP_53)),)
    # Targets that are the frame's own source or destination do nothing.
    for target in (ME, PEER):
        d = filter_outbound(
            [ActionRedirect(target), ActionTee(target), A],
            (),
            e,
            zt_dest=PEER,
            frame=f,
            remote=None,
        )
        assert d.accept == 1 and d.copies == ()
    # A TEE copy survives a drop only if the frame is accepted.
    d = filter_outbound([ActionTee(OBSERVER), D], (), e, zt_dest=PEER, frame=f, remote=None)
    assert d.accept == 0 and d.copies == ()


def test_inbound_copies_and_super_accept() -> None:
    e = env()
    f = frame(UDP_53)
    d = filter_inbound([ActionTee(OBSERVER), A], (), e, zt_source=PEER, frame=f, remote=Party())
    assert d.accept == 1 and d.copies == (Copy(OBSERVER, FLAG_TEE_IN, len(UDP_53)),)
    d = filter_inbound(
        [ActionRedirect(OBSERVER), A], (), e, zt_source=PEER, frame=f, remote=Party()
    )
    assert d.accept == 0 and d.copies == (Copy(OBSERVER, FLAG_REDIRECT_IN, len(UDP_53)),)
    # We are the TEE target: inbound super-accept at once; a non-taken one naming us upgrades a
    # later ACCEPT.
    d = filter_inbound([ActionTee(ME), D], (), e, zt_source=PEER, frame=f, remote=Party())
    assert d.accept == 2
    d = filter_inbound(
        [MatchIpProtocol(1), ActionTee(ME), A], (), e, zt_source=PEER, frame=f, remote=Party()
    )
    assert d.accept == 2 and d.verdict == Verdict.SUPER_ACCEPT


def _cap(cap_id: int, rules: tuple[Rule, ...]) -> Capability:
    return Capability(id=cap_id, network_id=NWID, timestamp=1, rules=rules)


def test_capabilities_after_base_rules() -> None:
    e = env()
    ssh = frame(TCP_SYN_22, src=MAC_ME, dst=MAC_PEER)
    web = frame(ipv4(6, tcp(40000, 80)), src=MAC_ME, dst=MAC_PEER)
    base = [MatchIpDestPortRange(22, 22), ActionBreak(), MatchIpProtocol(6), D, A]
    caps = (
        _cap(5, (MatchIpDestPortRange(22, 22), ActionTee(OBSERVER), A)),
        _cap(2, (D,)),  # a capability's DROP just ends that capability
    )
    d = filter_outbound(base, caps, e, zt_dest=PEER, frame=ssh, remote=None)
    assert (
        d.accept == 1
        and d.capability == 5
        and d.copies == (Copy(OBSERVER, FLAG_TEE_OUT, len(TCP_SYN_22)),)
    )
    assert (
        filter_outbound(base, (), e, zt_dest=PEER, frame=ssh, remote=None).accept == 0
    )  # no cap: default drop
    assert (
        filter_outbound(base, caps, e, zt_dest=PEER, frame=web, remote=None).accept == 0
    )  # base DROP wins
    d = filter_inbound(base, caps, e, zt_source=PEER, frame=ssh, remote=Party())
    assert d.accept == 1 and d.capability == 5 and d.copies[0].flags == FLAG_TEE_IN


def test_accept_all_shortcut() -> None:
    assert is_accept_all([A]) and is_accept_all([ActionAccept(not_=True), D])
    assert not is_accept_all([]) and not is_accept_all([MatchIpProtocol(6), A])


# --- never raises --------------------------------------------------------------------------------

_ETHERTYPES = st.sampled_from([0x0800, 0x86DD, 0x0806, 0x88B5])


@settings(max_examples=400, deadline=None)
@given(
    rule_bytes=st.binary(max_size=200),
    data=st.binary(max_size=120),
    ethertype=_ETHERTYPES,
    inbound=st.booleans(),
    dst=st.integers(0, (1 << 48) - 1),
)
def test_never_raises(
    rule_bytes: bytes, data: bytes, ethertype: int, inbound: bool, dst: int
) -> None:
    try:
        rules = list(decode_rules(rule_bytes))
    except DecodeError:
        return
    e = env({1: 3, 2: 0xFFFFFFFF}, rnd=12345)
    f = Frame(ethertype, data, MAC_PEER, dst)
    remote = Party({1: 7})
    if inbound:
        filter_inbound(
            rules, (_cap(1, tuple(rules[:8])),), e, zt_source=PEER, frame=f, remote=remote
        )
    else:
        filter_outbound(
            rules, (_cap(1, tuple(rules[:8])),), e, zt_dest=PEER, frame=f, remote=remote
        )


_RULE = st.tuples(
    st.integers(0, 0x3F), st.booleans(), st.booleans(), st.binary(min_size=20, max_size=20)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_RULE, max_size=12), st.binary(min_size=20, max_size=80), st.integers(0, 0xFFFF))
def test_never_raises_on_every_type_code(
    codes: list[tuple[int, bool, bool, bytes]], data: bytes, ethertype: int
) -> None:
    """Rules of every type code with arbitrary values (each field 20 bytes, longer than any
    rule's), over frames with arbitrary headers, both ways."""
    raw = b"".join(
        bytes([c | (0x80 if n else 0) | (0x40 if o else 0), len(v)]) + v for c, n, o, v in codes
    )
    rules = decode_rules(raw)
    for et in (0x0800, 0x86DD, 0x0806, ethertype):
        f_in = Frame(et, data, MAC_PEER, MAC_ME)
        f_out = Frame(et, data, MAC_ME, 0xFFFFFFFFFFFF)
        filter_inbound(rules, (), env({1: 2}), zt_source=PEER, frame=f_in, remote=Party({1: 3}))
        filter_outbound(rules, (), env(), zt_dest=0, frame=f_out, remote=None)
