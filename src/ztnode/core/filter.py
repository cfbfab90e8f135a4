"""The network rules filter: what ZeroTierOne 1.14.1 lets through, decided the same way.

A network's owner writes flow rules (and grants capabilities and tags) to isolate members,
ports and protocols; every member enforces them on what it sends and on what it receives. This
module is that enforcement, sans-I/O: :func:`evaluate` runs one rule list against one frame as
``_doZtFilter`` does (node/Network.cpp:83-607, ``protocol-network.md`` §6.2), and
:func:`filter_outbound` / :func:`filter_inbound` add what ``filterOutgoingPacket`` and
``filterIncomingPacket`` do around it (node/Network.cpp:690-931, §6.3): base rules first, then
capabilities, and the TEE/WATCH/REDIRECT copies to send. The caller (VL2) supplies the frame and
the credentials in force and sends the copies; nothing here touches the wire or a clock.

Semantics kept exactly, oddities included, because a network's rules are a security boundary
and a member must filter as every other member does:

* rules are read left to right in sets ending at an action; a set starts out matching, each
  match ANDs into it (or ORs, with the OR bit) after its NOT bit, and an AND whose set already
  failed is skipped;
* some outcomes are "hard": they ignore the NOT bit (an IPv4 match on a non-IPv4 frame is false
  with or without NOT, an ICMP type match without a code is true with or without NOT);
* TEE/WATCH/REDIRECT naming the frame's own source or destination do nothing, naming us make an
  inbound frame super-accepted, and a tag the other member never sent is not held against an
  outbound frame (the next DROP of the set is skipped instead: "skipDrop");
* bytes the reference would read past a short frame read as 0 here (it reads stale buffer).

Evaluation order and costs: rules are plain records from ``wire.rules``; dispatch is a dict
from type code to a method, and frame facts (IPv6 payload offset, ownership bits) are computed
once per evaluation when a rule first needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from ztnode.wire.credentials import Capability, CertificateOfOwnership
from ztnode.wire.rules import (
    ACTION_MAX_ID,
    Characteristic,
    ForwardAction,
    Ipv4Match,
    Ipv6Match,
    MacMatch,
    MatchCharacteristics,
    MatchEthertype,
    MatchFrameSizeRange,
    MatchIcmp,
    MatchIntegerRange,
    MatchIpProtocol,
    MatchIpTos,
    MatchRandom,
    MatchVlanDei,
    MatchVlanId,
    MatchVlanPcp,
    RangeMatch,
    Rule,
    RuleType,
    TagMatch,
    ZeroTierAddressMatch,
)

__all__ = [
    "Copy",
    "Decision",
    "FilterEnv",
    "Frame",
    "Party",
    "Prepared",
    "Program",
    "Verdict",
    "evaluate",
    "evaluate_logged",
    "filter_inbound",
    "filter_outbound",
    "ipv6_payload",
    "is_accept_all",
    "prepare",
]

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_IPV6: Final = 0x86DD
_ADDRESS_MASK: Final = 0xFF_FFFF_FFFF
_U64: Final = (1 << 64) - 1
#: Protocols whose header starts with 16-bit source and destination ports.
_PORT_PROTOCOLS: Final = frozenset((6, 17, 132, 136))
#: IPv6 extension headers the reference walks over to find the transport protocol.
_IPV6_EXTENSIONS: Final = frozenset((0, 43, 60, 135))
#: The bucket a PRIORITY action sets when its value is out of range (and the default).
DEFAULT_QOS_BUCKET: Final = 4

# EXT_FRAME flags of the copies (node/Network.cpp:733-800, 860-905): subtype << 1, plus 0x10
# ("ACK requested") for WATCH.
FLAG_TEE_OUT: Final = 0x02
FLAG_REDIRECT_OUT: Final = 0x04
FLAG_WATCH_OUT: Final = 0x16
FLAG_TEE_IN: Final = 0x08
FLAG_REDIRECT_IN: Final = 0x0A
FLAG_WATCH_IN: Final = 0x1C

# A matcher's result: 0 or 1 (then the NOT bit applies), or a hard answer that ignores it.
_HARD_NO: Final = 2
_HARD_YES: Final = 3


class Verdict(IntEnum):
    """What one rule list says about a frame (``_doZtFilterResult``)."""

    NO_MATCH = 0
    DROP = 1
    REDIRECT = 2
    ACCEPT = 3
    SUPER_ACCEPT = 4


@dataclass(frozen=True, slots=True)
class Frame:
    """The frame as the rules see it: Ethernet addressing and the L3 payload (no header)."""

    ethertype: int
    data: bytes
    mac_source: int
    mac_dest: int
    vlan_id: int = 0


@dataclass(slots=True)
class Party:
    """A member's credentials as the rules consult them: its tags (id to value, only those in
    force) and the ownership certificates that authenticate its IP and MAC sources. For the
    other member, ``ndp_prefixes`` are the network's NDP-emulated IPv6 prefixes (6plane /40,
    rfc4193 /88), which count as owned (node/Membership.hpp:110-160)."""

    tags: Mapping[int, int] = field(default_factory=dict)
    coos: Sequence[CertificateOfOwnership] = ()
    ndp_prefixes: tuple[bytes, ...] = ()

    def owns_ip(self, ip: IPv4Address | IPv6Address) -> bool:
        if any(c.owns_ip(ip) for c in self.coos):
            return True
        if isinstance(ip, IPv6Address):
            packed = ip.packed
            return any(packed.startswith(p) for p in self.ndp_prefixes)
        return False

    def owns_mac(self, mac: int) -> bool:
        return any(c.owns_mac(mac) for c in self.coos)


@dataclass(slots=True)
class FilterEnv:
    """What the filter needs of the network and the node: our address, our own tags and
    ownership certificates, the config's "result of an unsupported match" flag, and a 32-bit
    random source for MATCH_RANDOM (injected: the core takes its randomness from outside)."""

    me: int
    own: Party
    random32: Callable[[], int]
    unsupported_match: bool = False


@dataclass(frozen=True, slots=True)
class Copy:
    """An EXT_FRAME to send because of TEE, WATCH or REDIRECT: to ``dest``, with ``flags``,
    carrying the first ``length`` bytes of the frame's payload."""

    dest: int
    flags: int
    length: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one frame: ``accept`` 0 (drop), 1 (accept) or 2 (super-accept: the
    receiver is a TEE/REDIRECT target and skips MAC checks); the copies to send either way;
    the index of the base rule that decided (-1 when none did) and the capability that
    accepted, for counters and debug logs."""

    accept: int
    copies: tuple[Copy, ...] = ()
    rule: int = -1
    capability: int | None = None
    verdict: Verdict = Verdict.NO_MATCH
    qos: int = DEFAULT_QOS_BUCKET


def is_accept_all(rules: Sequence[Rule]) -> bool:
    """True for rule lists that accept every frame without looking at it (a leading
    unconditional ACCEPT, as the controller's default), so callers may skip evaluation."""
    return bool(rules) and rules[0].type_code == RuleType.ACTION_ACCEPT


@dataclass(slots=True)
class _Run:
    """The mutable outputs of one evaluation (the reference's reference parameters)."""

    zt_dest: int
    cc: int = 0
    cc_length: int = 0
    cc_watch: bool = False
    qos: int = DEFAULT_QOS_BUCKET
    rule: int = -1


class _Evaluation:
    """One rule list against one frame (``_doZtFilter``)."""

    __slots__ = (
        "_ipv6",
        "_ipv6_done",
        "_owned",
        "data",
        "env",
        "frame",
        "inbound",
        "remote",
        "run",
        "skip_drop",
        "super_accept",
        "v4",
        "zt_source",
    )

    def __init__(
        self,
        env: FilterEnv,
        remote: Party | None,
        inbound: bool,
        zt_source: int,
        frame: Frame,
        run: _Run,
    ) -> None:
        self.env = env
        self.remote = remote
        self.inbound = inbound
        self.zt_source = zt_source
        self.frame = frame
        self.data = frame.data
        #: An IPv4 frame with a whole fixed header: the IPv4 matches look at it.
        self.v4 = frame.ethertype == ETHERTYPE_IPV4 and len(frame.data) >= 20
        self.run = run
        self.super_accept = False
        self.skip_drop = False
        self._ipv6: tuple[int, int] | None = None
        self._ipv6_done = False
        self._owned: int | None = None

    def go(self, program: Program) -> Verdict:
        set_matches = 1
        me = self.env.me
        for index, (code, not_, or_, matcher, rule, target) in enumerate(program.steps):
            if code <= ACTION_MAX_ID:
                if set_matches:
                    verdict = self._action(rule, code)
                    if verdict is not None:
                        self.run.rule = index
                        return verdict
                elif target == me and self.inbound:
                    # Not taken, but naming us: frames we accept at all are super-accepted.
                    self.super_accept = True
                set_matches = 1
                continue
            if not set_matches and not or_:
                continue  # an AND on a failed set cannot succeed
            # An unknown match type's result is the network's choice (config flag 0x08).
            r = int(self.env.unsupported_match) if matcher is None else matcher(self, rule)
            m = r - 2 if r > 1 else r ^ not_  # hard answers (2, 3) ignore the NOT bit
            set_matches = (set_matches | m) if or_ else (set_matches & m)
        return Verdict.NO_MATCH

    def _action(self, rule: Rule, code: int) -> Verdict | None:
        """A taken action: its verdict, or None to go on with the next set."""
        if code == RuleType.ACTION_PRIORITY:
            # The bucket is not serialised, so every member reads it as 0 (a valid bucket).
            self.run.qos = 0
            return Verdict.ACCEPT
        if code == RuleType.ACTION_DROP:
            if self.skip_drop:
                self.skip_drop = False
                return None
            return Verdict.DROP
        if code == RuleType.ACTION_ACCEPT:
            return Verdict.SUPER_ACCEPT if self.super_accept else Verdict.ACCEPT
        if code in _FORWARDS and isinstance(rule, ForwardAction):
            return self._forward(rule, code)
        if code == RuleType.ACTION_BREAK:
            return Verdict.NO_MATCH
        return None  # reserved actions are no-ops

    def _forward(self, rule: ForwardAction, code: int) -> Verdict | None:
        target = rule.address & _ADDRESS_MASK
        run = self.run
        if target == self.zt_source:
            return None
        if target == self.env.me:
            return Verdict.SUPER_ACCEPT if self.inbound else None
        if target == run.zt_dest:
            return None
        if code == RuleType.ACTION_REDIRECT:
            run.zt_dest = target
            return Verdict.REDIRECT
        n = len(self.data)
        run.cc = target
        run.cc_length = min(n, rule.length) if rule.length else n
        run.cc_watch = code == RuleType.ACTION_WATCH
        return None

    # --- frame facts, computed at most once -------------------------------------------------

    def ipv6_payload(self) -> tuple[int, int] | None:
        """(offset, protocol) of an IPv6 frame's transport header after the extension headers
        the reference walks (node/Network.cpp:44-72); None when malformed or not IPv6."""
        if not self._ipv6_done:
            self._ipv6 = ipv6_payload(self.data)
            self._ipv6_done = True
        return self._ipv6

    def byte(self, i: int) -> int:
        d = self.data
        return d[i] if 0 <= i < len(d) else 0

    def ownership(self) -> int:
        """The SENDER_IP/MAC_AUTHENTICATED bits: the source IP (or ARP sender IP, or an NDP
        advertisement's target) and the source MAC owned by the sender's certificates;
        inbound the other member's, outbound our own (node/Network.cpp:392-443)."""
        if self._owned is not None:
            return self._owned
        bits = 0
        d = self.data
        et = self.frame.ethertype
        src: IPv4Address | IPv6Address | None = None
        if et == ETHERTYPE_IPV4 and len(d) >= 20:
            src = IPv4Address(bytes(d[12:16]))
        elif et == ETHERTYPE_IPV6 and len(d) >= 40:
            if len(d) >= 64 and d[6] == 0x3A and d[40] in (0x87, 0x88):
                if d[40] == 0x87:
                    bits |= Characteristic.SENDER_IP_AUTHENTICATED  # solicitations: no source
                else:
                    src = IPv6Address(bytes(d[48:64]))
            else:
                src = IPv6Address(bytes(d[8:24]))
        elif et == ETHERTYPE_ARP and len(d) >= 28:
            src = IPv4Address(bytes(d[14:18]))
        party = self.remote if self.inbound else self.env.own
        if party is not None:
            if src is not None and party.owns_ip(src):
                bits |= Characteristic.SENDER_IP_AUTHENTICATED
            if party.owns_mac(self.frame.mac_source):
                bits |= Characteristic.SENDER_MAC_AUTHENTICATED
        self._owned = bits
        return bits


class _LoggedEvaluation(_Evaluation):
    """:class:`_Evaluation` keeping the reference's rule result log (``Trace::RuleResultLog``,
    Trace.hpp:76-101): a nibble per rule, 0 for an action or a rule not reached, else the
    set's state before the rule plus one in its low two bits and, unless the rule was skipped
    (an AND on a failed set, Network.cpp:213), the rule's own result before its NOT bit plus
    one in the high two (Network.cpp:597). A subclass, so frames nobody traces pay nothing."""

    __slots__ = ("log",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.log = bytearray(RULE_LOG_BYTES)

    def go(self, program: Program) -> Verdict:
        set_matches = 1
        me = self.env.me
        log = self.log
        for index, (code, not_, or_, matcher, rule, target) in enumerate(program.steps):
            if code <= ACTION_MAX_ID:
                if set_matches:
                    verdict = self._action(rule, code)
                    if verdict is not None:
                        self.run.rule = index
                        return verdict
                elif target == me and self.inbound:
                    self.super_accept = True
                set_matches = 1
                continue
            shift = (index & 1) << 2
            if not set_matches and not or_:
                log[index >> 1] |= (set_matches + 1) << shift
                continue
            r = int(self.env.unsupported_match) if matcher is None else matcher(self, rule)
            m = r - 2 if r > 1 else r ^ not_
            log[index >> 1] |= ((((m ^ not_) + 1) << 2) | (set_matches + 1)) << shift
            set_matches = (set_matches | m) if or_ else (set_matches & m)
        return Verdict.NO_MATCH


#: Bytes of a rule result log: a nibble for each of ZT_MAX_NETWORK_RULES (1024) rules.
RULE_LOG_BYTES: Final = 512


def evaluate_logged(
    rules: Rules,
    env: FilterEnv,
    *,
    inbound: bool,
    zt_source: int,
    zt_dest: int,
    frame: Frame,
    remote: Party | None,
) -> tuple[Verdict, bytes]:
    """:func:`evaluate`, for a trace: the verdict and the rule result log."""
    ev = _LoggedEvaluation(env, remote, inbound, zt_source, frame, _Run(zt_dest=zt_dest))
    verdict = ev.go(_program(rules))
    return verdict, bytes(ev.log)


def ipv6_payload(d: bytes) -> tuple[int, int] | None:
    """(offset, protocol) of an IPv6 packet's transport header past the extension headers the
    reference steps over (0, 43, 60, 135); None when malformed."""
    n = len(d)
    if n < 40:
        return None
    pos = 40
    proto = d[6]
    while pos <= n:
        if proto not in _IPV6_EXTENSIONS:
            return pos, proto
        if pos + 8 > n:
            return None
        proto = d[pos]
        pos += d[pos + 1] * 8 + 8
    return None


_AUTH_BITS: Final = Characteristic.SENDER_IP_AUTHENTICATED | Characteristic.SENDER_MAC_AUTHENTICATED
_FORWARDS: Final = frozenset((RuleType.ACTION_TEE, RuleType.ACTION_WATCH, RuleType.ACTION_REDIRECT))


# --- matchers: each returns 0/1 (before NOT) or _HARD_NO/_HARD_YES ---------------------------


def _m_zt_source(ev: _Evaluation, rule: ZeroTierAddressMatch) -> int:
    return int(rule.address == ev.zt_source)


def _m_zt_dest(ev: _Evaluation, rule: ZeroTierAddressMatch) -> int:
    return int(rule.address == ev.run.zt_dest)


def _m_vlan_id(ev: _Evaluation, rule: MatchVlanId) -> int:
    return int(rule.vlan_id == ev.frame.vlan_id & 0xFFFF)


def _m_vlan_pcp(ev: _Evaluation, rule: MatchVlanPcp) -> int:
    return int(rule.pcp == 0)  # not supported by the reference: only 0 matches


def _m_vlan_dei(ev: _Evaluation, rule: MatchVlanDei) -> int:
    return int(rule.dei == 0)


def _m_mac_source(ev: _Evaluation, rule: MacMatch) -> int:
    return int(rule.mac == ev.frame.mac_source)


def _m_mac_dest(ev: _Evaluation, rule: MacMatch) -> int:
    return int(rule.mac == ev.frame.mac_dest)


def _ipv4_contains(rule: Ipv4Match, addr: int) -> bool:
    bits = rule.prefix
    if bits == 0:
        return True
    shift = (32 - bits) % 32  # the reference shifts a u32 by 32-bits; x86 takes the count mod 32
    return (addr >> shift) == (int(rule.ip) >> shift)


def _m_ipv4(offset: int) -> Callable[[_Evaluation, Ipv4Match], int]:
    def match(ev: _Evaluation, rule: Ipv4Match) -> int:
        if not ev.v4:
            return _HARD_NO
        addr = int.from_bytes(ev.data[offset : offset + 4], "big")
        return int(_ipv4_contains(rule, addr))

    return match


def _m_ipv6(offset: int) -> Callable[[_Evaluation, Ipv6Match], int]:
    def match(ev: _Evaluation, rule: Ipv6Match) -> int:
        d = ev.data
        if ev.frame.ethertype != ETHERTYPE_IPV6 or len(d) < 40:
            return _HARD_NO
        bits = min(rule.prefix, 128)
        mask = ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1)
        addr = int.from_bytes(d[offset : offset + 16], "big")
        return int(addr & mask == int(rule.ip))  # the rule's IP is compared unmasked

    return match


def _m_ip_tos(ev: _Evaluation, rule: MatchIpTos) -> int:
    d = ev.data
    if ev.v4:
        tos = d[1] & rule.mask
    elif ev.frame.ethertype == ETHERTYPE_IPV6 and len(d) >= 40:
        tos = (((d[0] << 4) & 0xF0) | ((d[1] >> 4) & 0x0F)) & rule.mask
    else:
        return _HARD_NO
    return int(rule.start <= tos <= rule.end)


def _m_ip_protocol(ev: _Evaluation, rule: MatchIpProtocol) -> int:
    if ev.v4:
        return int(rule.protocol == ev.data[9])
    if ev.frame.ethertype == ETHERTYPE_IPV6:
        p = ev.ipv6_payload()
        return _HARD_NO if p is None else int(rule.protocol == p[1])
    return _HARD_NO


def _m_ethertype(ev: _Evaluation, rule: MatchEthertype) -> int:
    return int(rule.ethertype == ev.frame.ethertype)


def _icmp_at(ev: _Evaluation, rule: MatchIcmp, pos: int) -> int:
    if rule.icmp_type != ev.data[pos]:
        return _HARD_NO
    if rule.matches_code:
        return int(ev.data[pos + 1] == rule.code)
    return _HARD_YES


def _m_icmp(ev: _Evaluation, rule: MatchIcmp) -> int:
    d = ev.data
    if ev.v4:
        ihl = (d[0] & 0xF) * 4
        if d[9] != 1 or len(d) < ihl + 2:
            return _HARD_NO
        return _icmp_at(ev, rule, ihl)
    if ev.frame.ethertype == ETHERTYPE_IPV6:
        p = ev.ipv6_payload()
        if p is None or p[1] != 0x3A or len(d) < p[0] + 2:
            return _HARD_NO
        return _icmp_at(ev, rule, p[0])
    return _HARD_NO


def _m_port(dest: bool) -> Callable[[_Evaluation, RangeMatch], int]:
    def match(ev: _Evaluation, rule: RangeMatch) -> int:
        d = ev.data
        if ev.v4:
            hl = 4 * (d[0] & 0xF)
            port = -1
            if d[9] in _PORT_PROTOCOLS and len(d) > hl + 4:
                pos = hl + (2 if dest else 0)
                port = (d[pos] << 8) | d[pos + 1]
            return int(port >= 0 and rule.start <= port <= rule.end)
        if ev.frame.ethertype == ETHERTYPE_IPV6:
            p = ev.ipv6_payload()
            if p is None:
                return _HARD_NO
            pos, proto = p
            port = -1
            if proto in _PORT_PROTOCOLS and len(d) > pos + 4:
                pos += 2 if dest else 0
                port = (d[pos] << 8) | d[pos + 1]
            return int(port > 0 and rule.start <= port <= rule.end)  # port 0 never, on IPv6
        return _HARD_NO

    return match


def _m_characteristics(ev: _Evaluation, rule: MatchCharacteristics) -> int:
    cf = Characteristic.INBOUND if ev.inbound else 0
    mac_dest = ev.frame.mac_dest
    if mac_dest >> 40 & 0x01:
        cf |= Characteristic.MULTICAST
    if mac_dest == 0xFFFF_FFFF_FFFF:
        cf |= Characteristic.BROADCAST
    if rule.mask & _AUTH_BITS:  # the certificate lookups only when a rule asks
        cf |= ev.ownership()
    d = ev.data
    if ev.v4 and d[9] == 6:
        hl = 4 * (d[0] & 0xF)
        cf |= ev.byte(hl + 13) | ((ev.byte(hl + 12) & 0x0F) << 8)
    elif ev.frame.ethertype == ETHERTYPE_IPV6:
        p = ev.ipv6_payload()
        if p is not None and p[1] == 6 and len(d) > p[0] + 14:
            cf |= d[p[0] + 13] | ((d[p[0] + 12] & 0x0F) << 8)
    return int(cf & rule.mask != 0)


def _m_frame_size(ev: _Evaluation, rule: MatchFrameSizeRange) -> int:
    return int(rule.start <= len(ev.data) <= rule.end)


def _m_random(ev: _Evaluation, rule: MatchRandom) -> int:
    return int((ev.env.random32() & 0xFFFF_FFFF) <= rule.probability)


def _m_tags(ev: _Evaluation, rule: TagMatch) -> int:
    local = ev.env.own.tags.get(rule.tag_id)
    if local is None:
        return _HARD_NO
    remote = ev.remote.tags.get(rule.tag_id) if ev.remote is not None else None
    if remote is None:
        if ev.inbound and not ev.super_accept:
            return _HARD_NO
        # Outbound we may not know the receiver's tags yet (it filters on its side), and a
        # TEE/REDIRECT target may lack them: not strict, but the next DROP is skipped.
        ev.skip_drop = True
        return _HARD_YES
    v = rule.value
    code = rule.type_code
    if code == RuleType.MATCH_TAGS_DIFFERENCE:
        return int(abs(local - remote) <= v)
    if code == RuleType.MATCH_TAGS_BITWISE_AND:
        return int((local & remote) == v)
    if code == RuleType.MATCH_TAGS_BITWISE_OR:
        return int((local | remote) == v)
    if code == RuleType.MATCH_TAGS_BITWISE_XOR:
        return int((local ^ remote) == v)
    return int(local == v and remote == v)  # MATCH_TAGS_EQUAL


def _m_tag_side(ev: _Evaluation, rule: TagMatch) -> int:
    if ev.super_accept:
        ev.skip_drop = True
        return _HARD_YES
    sender = rule.type_code == RuleType.MATCH_TAG_SENDER
    if sender == ev.inbound:  # the other member's tag: sender inbound, receiver outbound
        remote = ev.remote.tags.get(rule.tag_id) if ev.remote is not None else None
        if remote is not None:
            return int(remote == rule.value)
        if not sender:
            ev.skip_drop = True  # we may not know the receiver's tag yet
            return _HARD_YES
        return _HARD_NO
    local = ev.env.own.tags.get(rule.tag_id)
    return _HARD_NO if local is None else int(local == rule.value)


def _m_integer_range(ev: _Evaluation, rule: MatchIntegerRange) -> int:
    bits = rule.bits
    nbytes = (bits + 7) // 8
    d = ev.data
    value = 0
    if not rule.little_endian:
        # The reference starts ``8 - bytes`` past the index (a quirk kept for parity).
        idx = rule.index + 8 - nbytes
        if idx + nbytes <= len(d):
            value = int.from_bytes(d[idx : idx + nbytes], "big")
        value &= _U64 >> (64 - bits)
    else:
        idx = rule.index
        if idx + nbytes <= len(d):
            value = int.from_bytes(d[idx : idx + nbytes], "little") << (64 - 8 * nbytes)
        value >>= 64 - bits
    return int(rule.start <= value <= (rule.start + rule.delta) & _U64)


_MATCHERS: Final[dict[int, Callable[[_Evaluation, Any], int]]] = {
    RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS: _m_zt_source,
    RuleType.MATCH_DEST_ZEROTIER_ADDRESS: _m_zt_dest,
    RuleType.MATCH_VLAN_ID: _m_vlan_id,
    RuleType.MATCH_VLAN_PCP: _m_vlan_pcp,
    RuleType.MATCH_VLAN_DEI: _m_vlan_dei,
    RuleType.MATCH_MAC_SOURCE: _m_mac_source,
    RuleType.MATCH_MAC_DEST: _m_mac_dest,
    RuleType.MATCH_IPV4_SOURCE: _m_ipv4(12),
    RuleType.MATCH_IPV4_DEST: _m_ipv4(16),
    RuleType.MATCH_IPV6_SOURCE: _m_ipv6(8),
    RuleType.MATCH_IPV6_DEST: _m_ipv6(24),
    RuleType.MATCH_IP_TOS: _m_ip_tos,
    RuleType.MATCH_IP_PROTOCOL: _m_ip_protocol,
    RuleType.MATCH_ETHERTYPE: _m_ethertype,
    RuleType.MATCH_ICMP: _m_icmp,
    RuleType.MATCH_IP_SOURCE_PORT_RANGE: _m_port(dest=False),
    RuleType.MATCH_IP_DEST_PORT_RANGE: _m_port(dest=True),
    RuleType.MATCH_CHARACTERISTICS: _m_characteristics,
    RuleType.MATCH_FRAME_SIZE_RANGE: _m_frame_size,
    RuleType.MATCH_RANDOM: _m_random,
    RuleType.MATCH_TAGS_DIFFERENCE: _m_tags,
    RuleType.MATCH_TAGS_BITWISE_AND: _m_tags,
    RuleType.MATCH_TAGS_BITWISE_OR: _m_tags,
    RuleType.MATCH_TAGS_BITWISE_XOR: _m_tags,
    RuleType.MATCH_TAGS_EQUAL: _m_tags,
    RuleType.MATCH_TAG_SENDER: _m_tag_side,
    RuleType.MATCH_TAG_RECEIVER: _m_tag_side,
    RuleType.MATCH_INTEGER_RANGE: _m_integer_range,
}


# --- the entry points --------------------------------------------------------------------------

Step = tuple[int, int, bool, "Callable[[_Evaluation, Any], int] | None", Rule, int]


@dataclass(frozen=True, slots=True)
class Program:
    """A rule list prepared once (per config, per capability) rather than per frame: each
    entry's type code, NOT bit (0 or 1), OR bit and matcher, the rule itself, and for
    TEE/WATCH/REDIRECT the 40-bit target (-1 for others)."""

    steps: tuple[Step, ...]

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> Program:
        return cls(
            tuple(
                (
                    r.type_code,
                    1 if r.not_ else 0,
                    r.or_,
                    _MATCHERS.get(r.type_code),
                    r,
                    r.address & _ADDRESS_MASK if isinstance(r, ForwardAction) else -1,
                )
                for r in rules
            )
        )


Rules = Sequence[Rule] | Program


def _program(rules: Rules) -> Program:
    return rules if isinstance(rules, Program) else Program.of(rules)


def evaluate(
    rules: Rules,
    env: FilterEnv,
    *,
    inbound: bool,
    zt_source: int,
    zt_dest: int,
    frame: Frame,
    remote: Party | None,
) -> tuple[Verdict, _Run]:
    """One rule list against one frame (``_doZtFilter``): the verdict and the run's outputs
    (possibly changed destination, TEE/WATCH target and length, QoS bucket, deciding rule)."""
    run = _Run(zt_dest=zt_dest)
    verdict = _Evaluation(env, remote, inbound, zt_source, frame, run).go(_program(rules))
    return verdict, run


def _tee(run: _Run, watch_flag: int, tee_flag: int) -> tuple[Copy, ...]:
    if not run.cc:
        return ()
    return (Copy(run.cc, watch_flag if run.cc_watch else tee_flag, run.cc_length),)


def filter_outbound(
    rules: Rules,
    capabilities: Sequence[Capability | Prepared],
    env: FilterEnv,
    *,
    zt_dest: int,
    frame: Frame,
    remote: Party | None,
    no_tee: bool = False,
) -> Decision:
    """A frame we are about to send to ``zt_dest`` (0 for multicast or an unknown bridge):
    base rules, then our own capabilities in id order; ``no_tee`` for the per-recipient passes
    of a multicast, whose first pass already sent the copies (``filterOutgoingPacket``)."""
    return _decide(
        rules, capabilities, env, False, env.me, zt_dest, frame, remote, copies=not no_tee
    )


def filter_inbound(
    rules: Rules,
    capabilities: Sequence[Capability | Prepared],
    env: FilterEnv,
    *,
    zt_source: int,
    frame: Frame,
    remote: Party,
) -> Decision:
    """A frame received from member ``zt_source``: base rules, then the capabilities that
    member presented and that are in force (``filterIncomingPacket``). ``capabilities`` are
    tried in id order (the reference's hash-table order is unspecified)."""
    return _decide(rules, capabilities, env, True, zt_source, env.me, frame, remote, copies=True)


def _decide(
    rules: Rules,
    capabilities: Sequence[Capability | Prepared],
    env: FilterEnv,
    inbound: bool,
    zt_source: int,
    zt_dest: int,
    frame: Frame,
    remote: Party | None,
    *,
    copies: bool,
) -> Decision:
    """The two wrappers' shared logic. Their differences, as in the reference: copies carry
    the outbound or inbound flags; a capability's super-accept counts as such only inbound."""
    watch, tee, redirect = (
        (FLAG_WATCH_IN, FLAG_TEE_IN, FLAG_REDIRECT_IN)
        if inbound
        else (FLAG_WATCH_OUT, FLAG_TEE_OUT, FLAG_REDIRECT_OUT)
    )
    verdict, run = evaluate(
        rules,
        env,
        inbound=inbound,
        zt_source=zt_source,
        zt_dest=zt_dest,
        frame=frame,
        remote=remote,
    )
    if verdict == Verdict.DROP:
        return Decision(0, rule=run.rule, verdict=verdict, qos=run.qos)
    out: list[Copy] = []
    final = run
    cap_id: int | None = None
    accept = 0
    if verdict == Verdict.NO_MATCH:
        for prepared_id, program in _prepared(capabilities):
            v, crun = evaluate(
                program,
                env,
                inbound=inbound,
                zt_source=zt_source,
                zt_dest=zt_dest,
                frame=frame,
                remote=remote,
            )
            if v in (Verdict.NO_MATCH, Verdict.DROP):
                continue  # a capability's DROP only ends that capability
            accept = 2 if inbound and v == Verdict.SUPER_ACCEPT else 1
            cap_id, final = prepared_id, crun
            if copies:
                out.extend(_tee(crun, watch, tee))
            break
        if not accept:
            return Decision(0, rule=run.rule, verdict=verdict, qos=run.qos)
    else:
        accept = 2 if verdict == Verdict.SUPER_ACCEPT else 1
    if copies:
        out.extend(_tee(run, watch, tee))
    if final.zt_dest != zt_dest and final.zt_dest:
        out.append(Copy(final.zt_dest, redirect, len(frame.data)))
        accept = 0  # redirected: not delivered where it was going
    return Decision(accept, tuple(out), run.rule, cap_id, verdict, final.qos)


#: A capability ready for evaluation: its id and its rules' program.
Prepared = tuple[int, Program]


def prepare(cap: Capability) -> Prepared:
    return cap.id, Program.of(cap.rules)


def _prepared(caps: Sequence[Capability | Prepared]) -> list[Prepared]:
    """Capabilities in id order (the reference's own order for ours; its hash-table order,
    which is unspecified, for a member's)."""
    out = [c if isinstance(c, tuple) else prepare(c) for c in caps]
    out.sort(key=lambda p: p[0])
    return out
