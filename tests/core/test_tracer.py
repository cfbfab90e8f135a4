"""Remote traces sent (core/tracer.py): records byte-compatible with ZeroTierOne 1.14.1's
node/Trace.cpp, and, in an in-memory world with our controller, members sending them to the
trace target their network config names, at its level, within the per-second budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.core import events as ev
from ztnode.core.counters import Drop
from ztnode.core.filter import FilterEnv, Party, Verdict, evaluate_logged
from ztnode.core.filter import Frame as FilterFrame
from ztnode.core.network import Network, NetworkStatus
from ztnode.core.node import Node
from ztnode.core.tracer import (
    REMOTE_TRACES_PER_SECOND,
    Record,
    credential_rejected,
    incoming_frame_dropped,
    network_access_denied,
    network_filter,
    outgoing_frame_dropped,
    path_event,
    resetting_paths_in_scope,
    stale_reason,
)
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.wire.constants import Verb
from ztnode.wire.credentials import CertificateOfMembership, NetworkCredentials, Revocation, Tag
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.mac import mac_from_address
from ztnode.wire.rules import ActionAccept, ActionDrop, MatchEthertype, Rule
from ztnode.wire.verbs import MAX_REMOTE_TRACE_SIZE

IDS = test_identities()
NWID = 0x8056C2E21C000001


def _hex(v: int) -> str:
    """Utils::hex (node/Utils.hpp:150-170): always 16 lowercase digits; Dictionary::add of a
    uint64_t, an int64_t (sign dropped, Dictionary.hpp:424-433) and an Address
    (Dictionary.hpp:438-442) all go through it."""
    return f"{abs(v):016x}"


def _lines(*entries: tuple[str, str]) -> bytes:
    """Dictionary::add (node/Dictionary.hpp:319-400): ``key=value`` entries joined by LF."""
    return "\n".join(f"{k}={v}" for k, v in entries).encode()


def test_path_records_match_trace_cpp() -> None:
    remote = InetAddress(ip_address("10.1.2.3"), 9993)
    # Trace.cpp:127-135, peerLearnedNewPath: event, packetId, networkId, remoteZtAddr,
    # remotePhyAddr (InetAddress::toString, InetAddress.cpp:184-195), localSocket.
    got = path_event(True, NWID, 0x89E92CEEE5, remote, 9993, 0x1122334455667788, Verb.OK)
    assert got == _lines(
        ("event", "1002"),
        ("packetId", _hex(0x1122334455667788)),
        ("networkId", _hex(NWID)),
        ("remoteZtAddr", _hex(0x89E92CEEE5)),
        ("remotePhyAddr", "10.1.2.3/9993"),
        ("localSocket", _hex(9993)),
    )
    # Trace.cpp:84-95, peerConfirmingUnknownPath: packetVerb after packetId.
    v6 = InetAddress(ip_address("fd00::1"), 443)
    got = path_event(False, NWID, 0x89E92CEEE5, v6, 1, 7, Verb.FRAME)
    assert got == _lines(
        ("event", "1001"),
        ("packetId", _hex(7)),
        ("packetVerb", _hex(Verb.FRAME)),
        ("networkId", _hex(NWID)),
        ("remoteZtAddr", _hex(0x89E92CEEE5)),
        ("remotePhyAddr", "fd00::1/443"),
        ("localSocket", _hex(1)),
    )
    # Trace.cpp:56-60, resettingPathsInScope; inet_ntop's text for a v4-mapped address.
    mapped = InetAddress(ip_address("::ffff:198.51.100.7"), 1)
    got = resetting_paths_in_scope(0xABCDEF0123, remote, mapped, 4)
    assert got == _lines(
        ("event", "1000"),
        ("remoteZtAddr", _hex(0xABCDEF0123)),
        ("remotePhyAddr", "10.1.2.3/9993"),
        ("localPhyAddr", "::ffff:198.51.100.7/1"),
        ("phyAddrIpScope", _hex(4)),
    )


def test_frame_records_match_trace_cpp() -> None:
    src, dst = 0x3256C2E21C00, 0xFFFFFFFFFFFF
    # Trace.cpp:196-205, outgoingNetworkFrameDropped (VLAN id 0: ZeroTier taps carry none).
    got = outgoing_frame_dropped(NWID, src, dst, 0x0800, 1400, "broadcast disabled")
    assert got == _lines(
        ("event", "2000"),
        ("networkId", _hex(NWID)),
        ("sourceMac", _hex(src)),
        ("destMac", _hex(dst)),
        ("etherType", _hex(0x0800)),
        ("vlanId", _hex(0)),
        ("frameLength", _hex(1400)),
        ("reason", "broadcast disabled"),
    )
    remote = InetAddress(ip_address("192.0.2.9"), 21)
    # Trace.cpp:230-238, incomingNetworkAccessDenied: no length in the record.
    got = network_access_denied(NWID, 0x1234567890, remote, 5, 99, Verb.EXT_FRAME)
    assert got == _lines(
        ("event", "2001"),
        ("packetId", _hex(99)),
        ("packetVerb", _hex(Verb.EXT_FRAME)),
        ("remoteZtAddr", _hex(0x1234567890)),
        ("remotePhyAddr", "192.0.2.9/21"),
        ("localSocket", _hex(5)),
        ("networkId", _hex(NWID)),
    )
    # Trace.cpp:263-276, incomingNetworkFrameDropped; without a path (Trace.cpp:267) the
    # physical address and socket are left out.
    got = incoming_frame_dropped(
        NWID, 0x1234567890, None, 0, 99, Verb.MULTICAST_FRAME, src, dst, "multicast disabled"
    )
    assert got == _lines(
        ("event", "2002"),
        ("packetId", _hex(99)),
        ("packetVerb", _hex(Verb.MULTICAST_FRAME)),
        ("remoteZtAddr", _hex(0x1234567890)),
        ("networkId", _hex(NWID)),
        ("sourceMac", _hex(src)),
        ("destMac", _hex(dst)),
        ("reason", "multicast disabled"),
    )


def test_credential_records_match_trace_cpp() -> None:
    # Trace.cpp:523-532 (Tag): credType 3, credId, credTs, credIssuedTo, credInfo (the value).
    tag = Tag(7, 0xDEAD, NWID, 1_700_000_000_000, 0x1234567890)
    assert credential_rejected(tag, "old") == _lines(
        ("event", "2003"),
        ("networkId", _hex(NWID)),
        ("credType", _hex(3)),
        ("credId", _hex(7)),
        ("credTs", _hex(1_700_000_000_000)),
        ("credIssuedTo", _hex(0x1234567890)),
        ("credInfo", _hex(0xDEAD)),
        ("reason", "old"),
    )
    # Trace.cpp:553-560 (Revocation): credType 6, its own id, the target; no timestamp.
    rev = Revocation(3, NWID, 7, 100, 0, 0x1234567890, 3)
    assert credential_rejected(rev, "invalid") == _lines(
        ("event", "2003"),
        ("networkId", _hex(NWID)),
        ("credType", _hex(6)),
        ("credId", _hex(3)),
        ("credRevocationTarget", _hex(0x1234567890)),
        ("reason", "invalid"),
    )
    # Trace.cpp:436-445 (COM): type 1, id 0 (CertificateOfMembership.hpp:137), and a negative
    # timestamp loses its sign (Dictionary.hpp:430-431).
    com = CertificateOfMembership.issue(-5, 1000, NWID, IDS[0].public())
    assert credential_rejected(com, "revoked") == _lines(
        ("event", "2003"),
        ("networkId", _hex(NWID)),
        ("credType", _hex(1)),
        ("credId", _hex(0)),
        ("credTs", _hex(5)),
        ("credIssuedTo", _hex(IDS[0].address)),
        ("reason", "revoked"),
    )


def test_record_is_bounded_like_the_reference_dictionary() -> None:
    # Dictionary<ZT_MAX_REMOTE_TRACE_SIZE>::add fails on an entry that would not fit and the
    # record goes without it (Dictionary.hpp:319-345; Trace.cpp ignores the result).
    r = Record("2000")
    r.text("reason", "x" * MAX_REMOTE_TRACE_SIZE)
    r.text("after", "=\n")  # escaped as \e and \n
    assert r.to_bytes() == b"event=2000\nafter=\\e\\n"
    r.text("big", "y" * (MAX_REMOTE_TRACE_SIZE - len(r.to_bytes()) - 6))
    assert len(r.to_bytes()) == MAX_REMOTE_TRACE_SIZE - 1


def test_stale_reasons_in_the_reference_order() -> None:
    net = Network(NWID, IDS[1].address)
    m = net.membership(0x1234567890)
    m.tags[7] = Tag(7, 1, NWID, 500, 0x1234567890)
    m.thresholds[(3, 7)] = 1000
    assert stale_reason(net, Tag(7, 1, NWID, 400, 0x1234567890)) == "old"  # before "revoked"
    assert stale_reason(net, Tag(7, 1, NWID, 900, 0x1234567890)) == "revoked"
    assert stale_reason(net, Tag(7, 1, NWID, 1001, 0x1234567890)) is None
    assert stale_reason(net, Tag(8, 1, NWID, 1, 0x1111111111)) is None  # no membership


class TraceWorld:
    """Root, controller and three nodes: members ``a`` and ``b`` of a network whose rules drop
    ethertype 0x88B5, and ``t``, the trace target (not a member)."""

    def __init__(self, home: Path, level: int, target: int | None = None) -> None:
        self.w = LocalWorld.build(IDS, roots=1, leaves=4, seed=11)
        ctl_node, self.a, self.b, self.t = self.w.leaves
        ctl = open_controller(ctl_node.identity, home, seeded_random_bytes(5))
        ctl_node.controller = ctl
        assert self.w.run_until(self.w.all_online, 15_000)
        rules = [
            {"type": "MATCH_ETHERTYPE", "not": False, "or": False, "etherType": 0x88B5},
            {"type": "ACTION_DROP", "not": False, "or": False},
            {"type": "ACTION_ACCEPT", "not": False, "or": False},
        ]
        body: dict[str, object] = {
            "private": True,
            "rules": rules,
            "remoteTraceTarget": f"{self.t.address if target is None else target:010x}",
            "remoteTraceLevel": level,
        }
        now = self.w.net.now
        self.nwid = int(str(ctl.create_network(body, now)["id"]), 16)
        for n in (self.a, self.b):
            n.join(self.nwid, now)
            ctl.update_member(self.nwid, n.address, {"authorized": True}, now)
        ctl_node.flush_controller(now)
        assert self.run_until(lambda: all(self.ready(n) for n in (self.a, self.b)), 20_000)
        self.traces: list[ev.RemoteTrace] = []

    def run_until(self, cond: Callable[[], bool], ms: int) -> bool:
        return self.w.run_until(cond, ms)

    def ready(self, n: Node) -> bool:
        net = n.network(self.nwid)
        return net is not None and net.status == NetworkStatus.OK

    def blocked_frame(self, n: int = 1) -> None:
        dest = mac_from_address(self.b.address, self.nwid)
        for _ in range(n):
            assert self.a.send_frame(self.nwid, dest, 0x88B5, b"\x01" * 60, self.w.net.now)

    def collect(self) -> list[Dictionary]:
        self.traces += [e for e in self.w.events(self.t) if isinstance(e, ev.RemoteTrace)]
        return [Dictionary.parse(e.dictionary, MAX_REMOTE_TRACE_SIZE) for e in self.traces]

    def drops(self) -> list[Dictionary]:
        return [d for d in self.collect() if d.get_str("event") == "2000"]


def test_member_traces_dropped_frames_to_the_target_at_verbose(tmp_path: Path) -> None:
    tw = TraceWorld(tmp_path, level=10)
    cfg = tw.a.network(tw.nwid).config  # type: ignore[union-attr]
    assert cfg is not None and cfg.remote_trace_target == tw.t.address
    tw.blocked_frame()
    assert tw.run_until(lambda: bool(tw.drops()), 5_000)
    (d,) = tw.drops()
    assert all(e.source == tw.a.address for e in tw.traces)
    assert d.get_int("networkId") == tw.nwid and d.get_str("reason") == "filter blocked"
    assert d.get_int("etherType") == 0x88B5 and d.get_int("frameLength") == 60
    assert d.get_int("sourceMac") == mac_from_address(tw.a.address, tw.nwid)
    # Rate-limited: one second's budget, the rest counted and never sent.
    tw.w.run_for(1_000)
    before = tw.a.counters.drops[Drop.TRACE_OVER_BUDGET]
    tw.blocked_frame(REMOTE_TRACES_PER_SECOND + 36)
    assert tw.a.counters.drops[Drop.TRACE_OVER_BUDGET] - before == 36
    tw.w.run_for(2_000)
    assert len(tw.drops()) == 1 + REMOTE_TRACES_PER_SECOND
    # The next second has a budget again.
    tw.blocked_frame()
    assert tw.run_until(lambda: len(tw.drops()) == 2 + REMOTE_TRACES_PER_SECOND, 3_000)


def test_level_zero_sends_no_verbose_records(tmp_path: Path) -> None:
    tw = TraceWorld(tmp_path, level=0)
    tw.blocked_frame(5)
    tw.w.run_for(3_000)
    assert tw.a.counters.drops[Drop.RULES_OUTBOUND] >= 5
    assert not [d for d in tw.collect() if d.get_str("event", "").startswith("200")]
    assert tw.a.tracer.sent == 0


def test_never_traces_to_itself_nor_while_sending_a_trace(tmp_path: Path) -> None:
    tw = TraceWorld(tmp_path, level=10)
    # A member named as the target: its own events go nowhere (Switch::send drops them).
    net = tw.a.network(tw.nwid)
    assert net is not None and net.config is not None
    kept = net.config
    net.config = replace(kept, remote_trace_target=tw.a.address)
    sent = tw.a.tracer.sent
    tw.blocked_frame()
    assert tw.a.tracer.sent == sent and not tw.a.counters.drops[Drop.TRACE_RECURSIVE]
    # An event raised while a trace is being sent is counted and dropped, never sent: raised
    # here with the tracer's in-send mark set as its send sets it (the switch, compiled, cannot
    # be wrapped to raise one from inside), then a trace once the mark is down again.
    net.config = kept
    tw.a.tracer._sending = True
    try:
        tw.blocked_frame()
    finally:
        tw.a.tracer._sending = False
    assert tw.a.counters.drops[Drop.TRACE_RECURSIVE] == 1
    assert tw.a.tracer.sent == sent
    tw.blocked_frame()
    assert tw.a.tracer.sent == sent + 1
    assert not tw.a.tracer._sending


def test_rejected_credential_is_traced_at_level_zero(tmp_path: Path) -> None:
    """Credential rejections check no level (Trace.cpp:434): even level 0 reports them."""
    tw = TraceWorld(tmp_path, level=0)
    tw.w.run_for(2_000)  # past the per-peer credentials rate gate
    forged = Tag(9, 1, tw.nwid, tw.w.net.now, tw.b.address, signed_by=tw.nwid >> 24)
    body = NetworkCredentials(tags=(forged,)).encode()
    tw.b.switch.send(tw.a.address, Verb.NETWORK_CREDENTIALS, body, tw.w.net.now)

    def rejected() -> list[Dictionary]:
        return [d for d in tw.collect() if d.get_str("event") == "2003"]

    assert tw.run_until(lambda: bool(rejected()), 5_000)
    (d,) = rejected()
    assert d.get_str("reason") == "invalid" and d.get_int("credType") == 3
    assert d.get_int("credIssuedTo") == tw.b.address and d.get_int("credId") == 9


def _rules(*eth: int) -> list[Rule]:
    """MATCH_ETHERTYPE for each of ``eth``, then DROP, then ACCEPT."""
    return [*(MatchEthertype(e) for e in eth), ActionDrop(), ActionAccept()]


def _log(rules: list[Rule], ethertype: int) -> tuple[Verdict, bytes]:
    env = FilterEnv(IDS[0].address, Party(), lambda: 0)
    frame = FilterFrame(ethertype, b"\x45" + bytes(19), 0x3256C2E21C00, 0x32AABBCCDDEE)
    return evaluate_logged(
        rules, env, inbound=False, zt_source=IDS[0].address, zt_dest=0, frame=frame, remote=None
    )


def test_rule_result_log_as_the_reference_keeps_it() -> None:
    # RuleResultLog::log (Trace.hpp:81-84): nibble rn = ((ruleMatches + 1) << 2) | (set + 1),
    # in the low nibble of byte rn/2 for even rn; logSkipped (Trace.hpp:85-88) only the set's
    # half; actions log nothing (Network.cpp:213, 597).
    verdict, log = _log(_rules(0x88B5), 0x0800)  # no match: rule 0 logs (0+1)<<2 | (1+1)
    assert verdict == Verdict.ACCEPT and log == bytes([0x06]) + bytes(511)
    verdict, log = _log(_rules(0x88B5), 0x88B5)  # a match: (1+1)<<2 | (1+1)
    assert verdict == Verdict.DROP and log == bytes([0x0A]) + bytes(511)
    # Rule 1 follows a failed AND: skipped, logging the set's state (0) + 1 in the high nibble.
    verdict, log = _log(_rules(0x88B5, 0x0800), 0x0800)
    assert verdict == Verdict.ACCEPT and log == bytes([0x16]) + bytes(511)
    # The NOT bit does not enter the rule's own result (Network.cpp:597 logs it before).
    negated = [MatchEthertype(0x0800, not_=True), ActionDrop()]
    verdict, log = _log(negated, 0x0800)
    assert verdict == Verdict.NO_MATCH and log == bytes([0x0A]) + bytes(511)


def test_filter_record_matches_trace_cpp() -> None:
    frame = FilterFrame(0x0800, b"a=\0" + bytes(300), 0x3256C2E21C00, 0x32AABBCCDDEE)
    base = bytes([0x0A]) + bytes(511)
    cap = bytes([0x06]) + bytes(511)
    got = network_filter(NWID, 0x1111111111, 0x2222222222, frame, True, False, 1, base, (7, cap))
    # Trace.cpp:393-415; binary values escaped by Dictionary::add (Dictionary.hpp:350-375):
    # NUL as \0, = as \e; the frame cut to 256 bytes.
    zeros = "\\0" * 511
    expected = _lines(
        ("event", "2006"),
        ("networkId", _hex(NWID)),
        ("sourceZtAddr", _hex(0x1111111111)),
        ("destZtAddr", _hex(0x2222222222)),
        ("sourceMac", _hex(0x3256C2E21C00)),
        ("destMac", _hex(0x32AABBCCDDEE)),
        ("etherType", _hex(0x0800)),
        ("vlanId", _hex(0)),
        ("filterNoTee", "1"),
        ("filterInbound", "0"),
        ("filterResult", _hex(1)),
        ("filterBaseRuleLog", "\\n" + zeros),  # 0x0a escaped
        ("filterCapRuleLog", "\x06" + zeros),
        ("filterMatchingCapId", _hex(7)),
        ("frameLength", _hex(303)),
        ("frameData", "a\\e" + "\\0" * 254),
    )
    assert got == expected


def test_level_rules_traces_every_decision_both_ways(tmp_path: Path) -> None:
    tw = TraceWorld(tmp_path, level=15)
    tw.blocked_frame()
    tw.a.send_frame(
        tw.nwid, mac_from_address(tw.b.address, tw.nwid), 0x0800, bytes(20), tw.w.net.now
    )

    def filters() -> list[Dictionary]:
        return [d for d in tw.collect() if d.get_str("event") == "2006"]

    assert tw.run_until(lambda: len(filters()) >= 3, 5_000)
    pairs = zip(tw.traces, tw.collect(), strict=True)
    by = {(e.source, d.get_int("etherType")): d for e, d in pairs if d.get_str("event") == "2006"}
    dropped = by[tw.a.address, 0x88B5]
    assert dropped.get_int("filterResult") == 0 and dropped.get_str("filterInbound") == "0"
    assert dropped.get_bytes("filterBaseRuleLog") == bytes([0x0A]) + bytes(511)
    assert dropped.get_int("destZtAddr") == tw.b.address
    sent = by[tw.a.address, 0x0800]
    assert sent.get_int("filterResult") == 1
    got = by[tw.b.address, 0x0800]  # b judged it on the way in
    assert got.get_str("filterInbound") == "1" and got.get_int("filterResult") == 1
    assert got.get_int("sourceZtAddr") == tw.a.address and got.get_int("frameLength") == 20
    assert got.get_bytes("frameData") == bytes(20)
    # Level 15 also sends the VERBOSE records.
    assert any(d.get_str("event") == "2000" for d in tw.collect())


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600),
    base=st.binary(min_size=512, max_size=512),
    cap=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.binary(min_size=512, max_size=512)),
    accept=st.integers(0, 2),
)
def test_filter_records_read_back_and_stay_bounded(
    data: bytes, base: bytes, cap: tuple[int, bytes] | None, accept: int
) -> None:
    """Any frame and logs (worst case: every byte escaped) make a record within
    ZT_MAX_REMOTE_TRACE_SIZE that the receive side's codec reads back unchanged."""
    frame = FilterFrame(0x0800, data, 0x3256C2E21C00, 0x32AABBCCDDEE)
    rec = network_filter(NWID, 1, 2, frame, False, True, accept, base, cap)
    assert len(rec) < MAX_REMOTE_TRACE_SIZE
    d = Dictionary.parse(rec, MAX_REMOTE_TRACE_SIZE)
    assert d.get_bytes("filterBaseRuleLog") == base
    assert d.get_int("filterResult") == accept and d.get_int("frameLength") == len(data)
    assert d.get_bytes("frameData") == (data[:256] if data else None)
    if cap is not None:
        assert d.get_bytes("filterCapRuleLog") == cap[1]
        assert d.get_int("filterMatchingCapId") == cap[0]
    else:
        assert "filterCapRuleLog" not in d
