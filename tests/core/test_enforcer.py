"""A network's Enforcer: what it judges with (credentials in force), what it may shortcut (the
flow cache, burst and coalescing safety), checked against the stateless filter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_filter import MAC_ME, MAC_PEER, ME, NWID, PEER, ipv4, ipv6, tcp, udp
from ztnode.core.enforcer import Enforcer
from ztnode.core.filter import Frame, Party, filter_inbound, filter_outbound
from ztnode.core.network import Membership
from ztnode.wire.credentials import Tag
from ztnode.wire.netconf import NetworkConfig
from ztnode.wire.rules import (
    ActionAccept,
    ActionDrop,
    ActionTee,
    Characteristic,
    MatchCharacteristics,
    MatchEthertype,
    MatchFrameSizeRange,
    MatchIpDestPortRange,
    MatchIpProtocol,
    MatchIpSourcePortRange,
    MatchRandom,
    MatchTagsDifference,
    Rule,
)

TS = 1_000_000
CTMD = 60_000


def enforcer(rules: list[Rule], tags: dict[int, int] | None = None) -> Enforcer:
    e = Enforcer(ME, NWID, lambda: 7, lambda cfg: ())
    own = tuple(Tag(i, v, NWID, TS, ME) for i, v in (tags or {}).items())
    e.configure(
        NetworkConfig(NWID, TS, ME, rules=tuple(rules), tags=own, credential_time_max_delta=CTMD)
    )
    return e


def test_classification() -> None:
    assert enforcer([ActionAccept()]).accept_all
    flow = enforcer([MatchIpDestPortRange(22, 22), ActionDrop(), ActionAccept()])
    assert flow.burst_safe and flow.coalesce_safe and flow.cacheable and not flow.accept_all
    size = enforcer([MatchFrameSizeRange(0, 100), ActionDrop(), ActionAccept()])
    assert size.burst_safe and not size.coalesce_safe and not size.cacheable
    psh = enforcer([MatchCharacteristics(Characteristic.TCP_PSH), ActionDrop(), ActionAccept()])
    assert psh.burst_safe and not psh.coalesce_safe and psh.cacheable
    for per_frame in (MatchRandom(5), ActionTee(0x3333333333)):
        e = enforcer([per_frame, ActionAccept()])
        assert not e.burst_safe and not e.coalesce_safe and not e.cacheable


def test_remote_tags_in_force_only() -> None:
    e = enforcer([MatchTagsDifference(1, 0), ActionAccept()], {1: 5})
    m = Membership()
    m.tags[1] = Tag(1, 5, NWID, TS + CTMD + 1, PEER)  # outside the window of our config
    assert e.party(m).tags == {}
    m.tags[1] = Tag(1, 5, NWID, TS - CTMD, PEER)
    m.credentials_version += 1
    assert e.party(m).tags == {1: 5}
    m.thresholds[(3, 1)] = TS - CTMD  # a revocation at the tag's own timestamp
    m.credentials_version += 1
    assert e.party(m).tags == {}


_RULES = st.lists(
    st.sampled_from(
        [
            MatchIpDestPortRange(20, 30),
            MatchIpSourcePortRange(1000, 2000, not_=True),
            MatchIpProtocol(17),
            MatchIpProtocol(6, or_=True),
            MatchEthertype(0x86DD),
            MatchCharacteristics(Characteristic.TCP_SYN | Characteristic.INBOUND),
            MatchTagsDifference(1, 2),
            ActionDrop(),
            ActionAccept(),
        ]
    ),
    max_size=10,
)
_FRAMES = st.sampled_from(
    [
        Frame(0x0800, ipv4(6, tcp(1500, 25, 0x02)), MAC_PEER, MAC_ME),
        Frame(0x0800, ipv4(6, tcp(1500, 25, 0x10)), MAC_PEER, MAC_ME),
        Frame(0x0800, ipv4(17, udp(999, 22)), MAC_PEER, MAC_ME),
        Frame(0x0800, ipv4(17, udp(999, 22), src="10.0.0.9"), MAC_PEER, MAC_ME),
        Frame(0x86DD, ipv6(6, tcp(1500, 25, 0x12)), MAC_PEER, MAC_ME),
        Frame(0x86DD, ipv6(0, bytes([17, 0]) + bytes(6) + udp(1, 25)), MAC_PEER, MAC_ME),
        Frame(0x0806, bytes(28), MAC_PEER, 0xFFFFFFFFFFFF),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    rules=_RULES, frames=st.lists(st.tuples(_FRAMES, st.booleans(), st.integers(0, 9)), max_size=30)
)
def test_flow_cache_answers_as_the_filter_does(
    rules: list[Rule], frames: list[tuple[Frame, bool, int]]
) -> None:
    e = enforcer(rules, {1: 3})
    m = Membership()
    m.tags[1] = Tag(1, 4, NWID, TS, PEER)
    for frame, inbound, tag_value in frames:
        if tag_value == 0:  # now and then the member's tag changes under the cache
            m.tags[1] = Tag(1, tag_value + len(m.tags), NWID, TS, PEER)
            m.credentials_version += 1
        party = e.party(m)
        if inbound:
            got = e.inbound(PEER, frame, m)
            want = filter_inbound(rules, (), e.env, zt_source=PEER, frame=frame, remote=party)
        else:
            got = e.outbound(PEER, frame, m)
            want = filter_outbound(rules, (), e.env, zt_dest=PEER, frame=frame, remote=party)
        assert (got.accept, got.copies, got.rule, got.verdict) == (
            want.accept,
            want.copies,
            want.rule,
            want.verdict,
        )
    assert isinstance(e.party(m), Party)


def test_flow_cache_keys_on_what_rules_read() -> None:
    """Frames of one flow that differ in a field some rule reads get their own decisions."""
    e = enforcer([MatchCharacteristics(Characteristic.TCP_SYN), ActionDrop(), ActionAccept()])
    syn = Frame(0x0800, ipv4(6, tcp(1500, 25, 0x02)), MAC_ME, MAC_PEER)
    ack = Frame(0x0800, ipv4(6, tcp(1500, 25, 0x10)), MAC_ME, MAC_PEER)
    for _ in range(2):  # the second round is answered from the cache
        assert e.outbound(PEER, syn, None).accept == 0
        assert e.outbound(PEER, ack, None).accept == 1
    p = enforcer([MatchIpDestPortRange(25, 25), ActionDrop(), ActionAccept()])
    to25 = Frame(0x0800, ipv4(17, udp(1500, 25)), MAC_ME, MAC_PEER)
    to26 = Frame(0x0800, ipv4(17, udp(1500, 26)), MAC_ME, MAC_PEER)
    v6_25 = Frame(0x86DD, ipv6(0, bytes([17, 0]) + bytes(6) + udp(1, 25)), MAC_ME, MAC_PEER)
    v6_26 = Frame(0x86DD, ipv6(0, bytes([17, 0]) + bytes(6) + udp(1, 26)), MAC_ME, MAC_PEER)
    for _ in range(2):
        assert [p.outbound(PEER, f, None).accept for f in (to25, to26, v6_25, v6_26)] == [
            0,
            1,
            0,
            1,
        ]
    assert p.counts["out", "drop"] == 4 and p.counts["out", "accept"] == 4
