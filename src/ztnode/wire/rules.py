"""The rules engine's wire format: typed rule records, their binary form and controller JSON.

A rule table is a flat list: zero or more MATCH entries followed by an ACTION form one rule
(``include/ZeroTierOne.h:700-960``). Each entry is serialised as (``Capability::serializeRules`` /
``deserializeRules``, ``node/Capability.hpp:172-381``; fact sheet ``protocol-network.md`` §6.1)::

    [1] t          bit 0x80 NOT, bit 0x40 OR, low 6 bits the type (0..15 actions, 16..63 matches)
    [1] fieldLen   bytes of value that follow
    [fieldLen]     the value, big-endian, layout fixed per type

Reader quirks reproduced here, because capability signatures are checked over the *re-serialised*
form and a reader that disagreed would accept or refuse different capabilities than a real node:

* A known type's value is read at fixed offsets after ``fieldLen`` **whatever ``fieldLen`` says**
  (it may even run into the next entry), then the cursor advances by ``fieldLen``. Unknown types
  keep only their type byte and re-serialise with ``fieldLen`` 0.
* ``ACTION_PRIORITY`` has no serialised value (its QoS bucket is lost; it arrives as 0).
* ``MATCH_INTEGER_RANGE`` is stored as ``start`` plus a **32-bit** ``delta``: the wire carries the
  absolute end, the reader keeps ``(end - start) mod 2**32``.

The evaluation engine is not here (see the core); this module is only the format.

Controller JSON follows ``_renderRule`` / ``_parseRule`` of ``controller/
EmbeddedNetworkController.cpp:67-461``. With ``quirks=True`` (the default) both are copied bug for
bug: actions are rendered without ``not``/``or``; ``ACTION_PRIORITY`` and unknown types render as
``{}``; parsing ``INTEGER_RANGE`` or ``ACTION_PRIORITY`` yields ``None`` (1.14.1's controller
never sets the type bits of the former and has no branch for the latter, so both are dropped).
``quirks=False`` also renders and parses those, plus ``not``/``or`` on actions and a REDIRECT's
``length``, for tools that want JSON to survive a round trip. Either way JSON cannot carry forward
addresses above 40 bits, ICMP flag bits other than 0x01, or unknown rule types.
"""

from __future__ import annotations

import math
import re
from dataclasses import KW_ONLY, dataclass
from enum import IntEnum
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Any, ClassVar, Final, Self

from ztnode.wire.buffer import Buf, Reader, Writer

RULE_NOT: Final = 0x80
RULE_OR: Final = 0x40
RULE_TYPE_MASK: Final = 0x3F
ACTION_MAX_ID: Final = 15

MAX_NETWORK_RULES: Final = 1024  # ZT_MAX_NETWORK_RULES
MAX_CAPABILITY_RULES: Final = 64  # ZT_MAX_CAPABILITY_RULES
RULES_ENGINE_REVISION: Final = 1  # ZT_RULES_ENGINE_REVISION

_MASK64: Final = (1 << 64) - 1
_MASK40: Final = (1 << 40) - 1


class RuleType(IntEnum):
    """``ZT_VirtualNetworkRuleType`` (include/ZeroTierOne.h:710-789)."""

    ACTION_DROP = 0
    ACTION_ACCEPT = 1
    ACTION_TEE = 2
    ACTION_WATCH = 3
    ACTION_REDIRECT = 4
    ACTION_BREAK = 5
    ACTION_PRIORITY = 6
    MATCH_SOURCE_ZEROTIER_ADDRESS = 24
    MATCH_DEST_ZEROTIER_ADDRESS = 25
    MATCH_VLAN_ID = 26
    MATCH_VLAN_PCP = 27
    MATCH_VLAN_DEI = 28
    MATCH_MAC_SOURCE = 29
    MATCH_MAC_DEST = 30
    MATCH_IPV4_SOURCE = 31
    MATCH_IPV4_DEST = 32
    MATCH_IPV6_SOURCE = 33
    MATCH_IPV6_DEST = 34
    MATCH_IP_TOS = 35
    MATCH_IP_PROTOCOL = 36
    MATCH_ETHERTYPE = 37
    MATCH_ICMP = 38
    MATCH_IP_SOURCE_PORT_RANGE = 39
    MATCH_IP_DEST_PORT_RANGE = 40
    MATCH_CHARACTERISTICS = 41
    MATCH_FRAME_SIZE_RANGE = 42
    MATCH_RANDOM = 43
    MATCH_TAGS_DIFFERENCE = 44
    MATCH_TAGS_BITWISE_AND = 45
    MATCH_TAGS_BITWISE_OR = 46
    MATCH_TAGS_BITWISE_XOR = 47
    MATCH_TAGS_EQUAL = 48
    MATCH_TAG_SENDER = 49
    MATCH_TAG_RECEIVER = 50
    MATCH_INTEGER_RANGE = 51


class Characteristic(IntEnum):
    """Bits of ``MATCH_CHARACTERISTICS`` masks (``ZT_RULE_PACKET_CHARACTERISTICS_*``)."""

    INBOUND = 1 << 63
    MULTICAST = 1 << 62
    BROADCAST = 1 << 61
    SENDER_IP_AUTHENTICATED = 1 << 60
    SENDER_MAC_AUTHENTICATED = 1 << 59
    TCP_RESERVED_0 = 1 << 11
    TCP_RESERVED_1 = 1 << 10
    TCP_RESERVED_2 = 1 << 9
    TCP_NS = 1 << 8
    TCP_CWR = 1 << 7
    TCP_ECE = 1 << 6
    TCP_URG = 1 << 5
    TCP_ACK = 1 << 4
    TCP_PSH = 1 << 3
    TCP_RST = 1 << 2
    TCP_SYN = 1 << 1
    TCP_FIN = 1 << 0


# Flag of MATCH_ICMP: also compare the ICMP code, not just the type.
ICMP_FLAG_MATCH_CODE: Final = 0x01
# Bit of MATCH_INTEGER_RANGE's format byte: the integer is little-endian.
INTEGER_RANGE_LITTLE_ENDIAN: Final = 0x80


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """Base of every rule entry: the NOT and OR bits every entry's type byte carries.

    The bits are kept on actions too (the reference serialises ``t`` verbatim) even though the
    engine ignores them there.
    """

    TYPE: ClassVar[int]
    _: KW_ONLY
    not_: bool = False
    or_: bool = False

    @property
    def type_code(self) -> int:
        """The low six bits of the type byte."""
        return self.TYPE

    @property
    def type_byte(self) -> int:
        return self.type_code | (RULE_NOT if self.not_ else 0) | (RULE_OR if self.or_ else 0)

    @property
    def is_action(self) -> bool:
        return self.type_code <= ACTION_MAX_ID

    def write(self, writer: Writer) -> None:
        """Append ``t``, ``fieldLen`` and the value."""
        writer.u8(self.type_byte)
        pos = len(writer.buf)
        writer.u8(0)
        self._write_value(writer)
        writer.buf[pos] = len(writer.buf) - pos - 1

    def _write_value(self, writer: Writer) -> None:
        """Append the value; entries without one write nothing."""

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class ActionDrop(Rule):
    TYPE = RuleType.ACTION_DROP


@dataclass(frozen=True, slots=True)
class ActionAccept(Rule):
    TYPE = RuleType.ACTION_ACCEPT


@dataclass(frozen=True, slots=True)
class ActionBreak(Rule):
    TYPE = RuleType.ACTION_BREAK


@dataclass(frozen=True, slots=True)
class ActionPriority(Rule):
    """Place the frame in a QoS bucket. The bucket is not serialised, so it is not modelled."""

    TYPE = RuleType.ACTION_PRIORITY


@dataclass(frozen=True, slots=True)
class ForwardAction(Rule):
    """TEE / WATCH / REDIRECT: ``[8] address [4] flags [2] length`` (length unused by REDIRECT).

    ``address`` is a full u64 on the wire; the engine compares it with 40-bit addresses.
    """

    address: int
    flags: int = 0
    length: int = 0

    def _write_value(self, writer: Writer) -> None:
        writer.u64(self.address).u32(self.flags).u16(self.length)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u64(), reader.u32(), reader.u16(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class ActionTee(ForwardAction):
    TYPE = RuleType.ACTION_TEE


@dataclass(frozen=True, slots=True)
class ActionWatch(ForwardAction):
    TYPE = RuleType.ACTION_WATCH


@dataclass(frozen=True, slots=True)
class ActionRedirect(ForwardAction):
    TYPE = RuleType.ACTION_REDIRECT


@dataclass(frozen=True, slots=True)
class ZeroTierAddressMatch(Rule):
    """``[5] address``."""

    address: int

    def _write_value(self, writer: Writer) -> None:
        writer.address(self.address)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.address(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchSourceZeroTierAddress(ZeroTierAddressMatch):
    TYPE = RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS


@dataclass(frozen=True, slots=True)
class MatchDestZeroTierAddress(ZeroTierAddressMatch):
    TYPE = RuleType.MATCH_DEST_ZEROTIER_ADDRESS


@dataclass(frozen=True, slots=True)
class MatchVlanId(Rule):
    """``[2] vlan id``."""

    TYPE = RuleType.MATCH_VLAN_ID
    vlan_id: int

    def _write_value(self, writer: Writer) -> None:
        writer.u16(self.vlan_id)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u16(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchVlanPcp(Rule):
    """``[1] pcp``."""

    TYPE = RuleType.MATCH_VLAN_PCP
    pcp: int

    def _write_value(self, writer: Writer) -> None:
        writer.u8(self.pcp)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchVlanDei(Rule):
    """``[1] dei``."""

    TYPE = RuleType.MATCH_VLAN_DEI
    dei: int

    def _write_value(self, writer: Writer) -> None:
        writer.u8(self.dei)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MacMatch(Rule):
    """``[6] mac`` (48-bit int, first octet most significant)."""

    mac: int

    def _write_value(self, writer: Writer) -> None:
        writer.uint(self.mac, 6)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.uint(6), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchMacSource(MacMatch):
    TYPE = RuleType.MATCH_MAC_SOURCE


@dataclass(frozen=True, slots=True)
class MatchMacDest(MacMatch):
    TYPE = RuleType.MATCH_MAC_DEST


@dataclass(frozen=True, slots=True)
class Ipv4Match(Rule):
    """``[4] ip [1] prefix bits`` (the prefix byte is kept raw, even above 32)."""

    ip: IPv4Address
    prefix: int

    def _write_value(self, writer: Writer) -> None:
        writer.raw(self.ip.packed).u8(self.prefix)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(IPv4Address(reader.raw(4)), reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchIpv4Source(Ipv4Match):
    TYPE = RuleType.MATCH_IPV4_SOURCE


@dataclass(frozen=True, slots=True)
class MatchIpv4Dest(Ipv4Match):
    TYPE = RuleType.MATCH_IPV4_DEST


@dataclass(frozen=True, slots=True)
class Ipv6Match(Rule):
    """``[16] ip [1] prefix bits`` (the engine compares the rule IP unmasked: keep host bits 0)."""

    ip: IPv6Address
    prefix: int

    def _write_value(self, writer: Writer) -> None:
        writer.raw(self.ip.packed).u8(self.prefix)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(IPv6Address(reader.raw(16)), reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchIpv6Source(Ipv6Match):
    TYPE = RuleType.MATCH_IPV6_SOURCE


@dataclass(frozen=True, slots=True)
class MatchIpv6Dest(Ipv6Match):
    TYPE = RuleType.MATCH_IPV6_DEST


@dataclass(frozen=True, slots=True)
class MatchIpTos(Rule):
    """``[1] mask [1] start [1] end``: matches when ``tos & mask`` is in ``[start, end]``."""

    TYPE = RuleType.MATCH_IP_TOS
    mask: int
    start: int
    end: int

    def _write_value(self, writer: Writer) -> None:
        writer.u8(self.mask).u8(self.start).u8(self.end)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u8(), reader.u8(), reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchIpProtocol(Rule):
    """``[1] protocol``."""

    TYPE = RuleType.MATCH_IP_PROTOCOL
    protocol: int

    def _write_value(self, writer: Writer) -> None:
        writer.u8(self.protocol)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchEthertype(Rule):
    """``[2] ethertype``."""

    TYPE = RuleType.MATCH_ETHERTYPE
    ethertype: int

    def _write_value(self, writer: Writer) -> None:
        writer.u16(self.ethertype)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u16(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchIcmp(Rule):
    """``[1] type [1] code [1] flags``; the code is only compared when flag 0x01 is set."""

    TYPE = RuleType.MATCH_ICMP
    icmp_type: int
    code: int = 0
    flags: int = 0

    @property
    def matches_code(self) -> bool:
        return bool(self.flags & ICMP_FLAG_MATCH_CODE)

    def _write_value(self, writer: Writer) -> None:
        writer.u8(self.icmp_type).u8(self.code).u8(self.flags)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u8(), reader.u8(), reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class RangeMatch(Rule):
    """``[2] start [2] end``, inclusive."""

    start: int
    end: int

    def _write_value(self, writer: Writer) -> None:
        writer.u16(self.start).u16(self.end)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u16(), reader.u16(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchIpSourcePortRange(RangeMatch):
    TYPE = RuleType.MATCH_IP_SOURCE_PORT_RANGE


@dataclass(frozen=True, slots=True)
class MatchIpDestPortRange(RangeMatch):
    TYPE = RuleType.MATCH_IP_DEST_PORT_RANGE


@dataclass(frozen=True, slots=True)
class MatchFrameSizeRange(RangeMatch):
    TYPE = RuleType.MATCH_FRAME_SIZE_RANGE


@dataclass(frozen=True, slots=True)
class MatchCharacteristics(Rule):
    """``[8] mask``: matches when any bit of the packet's characteristics is in ``mask``."""

    TYPE = RuleType.MATCH_CHARACTERISTICS
    mask: int

    def _write_value(self, writer: Writer) -> None:
        writer.u64(self.mask)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u64(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchRandom(Rule):
    """``[4] probability`` (0 never ... 0xffffffff always)."""

    TYPE = RuleType.MATCH_RANDOM
    probability: int

    def _write_value(self, writer: Writer) -> None:
        writer.u32(self.probability)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u32(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class TagMatch(Rule):
    """``[4] tag id [4] value``."""

    tag_id: int
    value: int

    def _write_value(self, writer: Writer) -> None:
        writer.u32(self.tag_id).u32(self.value)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        return cls(reader.u32(), reader.u32(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class MatchTagsDifference(TagMatch):
    TYPE = RuleType.MATCH_TAGS_DIFFERENCE


@dataclass(frozen=True, slots=True)
class MatchTagsBitwiseAnd(TagMatch):
    TYPE = RuleType.MATCH_TAGS_BITWISE_AND


@dataclass(frozen=True, slots=True)
class MatchTagsBitwiseOr(TagMatch):
    TYPE = RuleType.MATCH_TAGS_BITWISE_OR


@dataclass(frozen=True, slots=True)
class MatchTagsBitwiseXor(TagMatch):
    TYPE = RuleType.MATCH_TAGS_BITWISE_XOR


@dataclass(frozen=True, slots=True)
class MatchTagsEqual(TagMatch):
    TYPE = RuleType.MATCH_TAGS_EQUAL


@dataclass(frozen=True, slots=True)
class MatchTagSender(TagMatch):
    TYPE = RuleType.MATCH_TAG_SENDER


@dataclass(frozen=True, slots=True)
class MatchTagReceiver(TagMatch):
    TYPE = RuleType.MATCH_TAG_RECEIVER


@dataclass(frozen=True, slots=True)
class MatchIntegerRange(Rule):
    """An integer read from the frame lies in ``[start, start + delta]`` (u64 arithmetic).

    Wire: ``[8] start [8] start+delta [2] index [1] format`` where format bits 0..5 are
    ``bits - 1`` and bit 7 means little-endian. The reference keeps only a u32 ``delta``; the
    record does the same so a re-serialised capability signs the same bytes.
    """

    TYPE = RuleType.MATCH_INTEGER_RANGE
    start: int
    delta: int
    index: int
    format: int

    @classmethod
    def from_bounds(
        cls,
        start: int,
        end: int,
        index: int,
        bits: int,
        little_endian: bool = False,
        *,
        not_: bool = False,
        or_: bool = False,
    ) -> MatchIntegerRange:
        """Build from an absolute end as the controller does (``delta = (end-start) mod 2**32``)."""
        fmt = ((bits - 1) & 63) | (INTEGER_RANGE_LITTLE_ENDIAN if little_endian else 0)
        return cls(start, (end - start) & 0xFFFF_FFFF, index, fmt, not_=not_, or_=or_)

    @property
    def end(self) -> int:
        return (self.start + self.delta) & _MASK64

    @property
    def bits(self) -> int:
        return (self.format & 63) + 1

    @property
    def little_endian(self) -> bool:
        return bool(self.format & INTEGER_RANGE_LITTLE_ENDIAN)

    def _write_value(self, writer: Writer) -> None:
        writer.u64(self.start).u64(self.end).u16(self.index).u8(self.format)

    @classmethod
    def _read_value(cls, reader: Reader, not_: bool, or_: bool) -> Self:
        start = reader.u64()
        delta = (reader.u64() - start) & 0xFFFF_FFFF
        return cls(start, delta, reader.u16(), reader.u8(), not_=not_, or_=or_)


@dataclass(frozen=True, slots=True)
class UnknownRule(Rule):
    """A type this version does not know (reserved actions 7..15, matches 16..23 and 52..63).

    Only the type byte survives, as in the reference; it re-serialises with ``fieldLen`` 0. The
    engine treats an unknown action as a no-op and an unknown match per network flag 0x08.
    """

    code: int

    def __post_init__(self) -> None:
        if not 0 <= self.code <= RULE_TYPE_MASK or self.code in _RULE_CLASSES:
            raise ValueError(f"{self.code} is not an unknown rule type code")

    @property
    def type_code(self) -> int:
        return self.code


_RULE_CLASSES: Final[dict[int, type[Rule]]] = {
    cls.TYPE: cls
    for cls in (
        ActionDrop,
        ActionAccept,
        ActionTee,
        ActionWatch,
        ActionRedirect,
        ActionBreak,
        ActionPriority,
        MatchSourceZeroTierAddress,
        MatchDestZeroTierAddress,
        MatchVlanId,
        MatchVlanPcp,
        MatchVlanDei,
        MatchMacSource,
        MatchMacDest,
        MatchIpv4Source,
        MatchIpv4Dest,
        MatchIpv6Source,
        MatchIpv6Dest,
        MatchIpTos,
        MatchIpProtocol,
        MatchEthertype,
        MatchIcmp,
        MatchIpSourcePortRange,
        MatchIpDestPortRange,
        MatchCharacteristics,
        MatchFrameSizeRange,
        MatchRandom,
        MatchTagsDifference,
        MatchTagsBitwiseAnd,
        MatchTagsBitwiseOr,
        MatchTagsBitwiseXor,
        MatchTagsEqual,
        MatchTagSender,
        MatchTagReceiver,
        MatchIntegerRange,
    )
}


def rule_class(code: int) -> type[Rule] | None:
    """The record class for a type code, ``None`` for codes the reference does not know."""
    return _RULE_CLASSES.get(code & RULE_TYPE_MASK)


# --- binary ----------------------------------------------------------------------------------


def read_rule(reader: Reader) -> Rule:
    """Read one entry with the reference's cursor behaviour (see the module docstring).

    The value of a known type is read at fixed offsets whatever ``fieldLen`` says, then the
    cursor moves ``fieldLen`` bytes past the length byte, clamped to the end of the reader (the
    reference may step past its buffer's end; its next read then fails, as ours does).
    """
    t = reader.u8("rule type")
    field_len = reader.u8("rule field length")
    value_at = reader.pos
    cls = _RULE_CLASSES.get(t & RULE_TYPE_MASK)
    not_ = bool(t & RULE_NOT)
    or_ = bool(t & RULE_OR)
    rule = (
        UnknownRule(t & RULE_TYPE_MASK, not_=not_, or_=or_)
        if cls is None
        else cls._read_value(reader, not_, or_)
    )
    reader.pos = value_at
    reader.skip(min(field_len, reader.remaining))
    return rule


def read_rules(reader: Reader, count: int) -> tuple[Rule, ...]:
    """Read exactly ``count`` entries (a capability's rule list)."""
    reader.count(count, 2, "rules")
    return tuple(read_rule(reader) for _ in range(count))


def decode_rules(data: Buf, max_rules: int = MAX_NETWORK_RULES) -> tuple[Rule, ...]:
    """Decode a netconf ``R`` blob: entries until the data ends or ``max_rules`` are read.

    Bytes after the ``max_rules``-th entry are ignored, as the reference stops there.
    """
    reader = Reader(data)
    out: list[Rule] = []
    while not reader.at_end() and len(out) < max_rules:
        out.append(read_rule(reader))
    return tuple(out)


def write_rules(writer: Writer, rules: tuple[Rule, ...] | list[Rule]) -> None:
    for rule in rules:
        rule.write(writer)


def encode_rules(rules: tuple[Rule, ...] | list[Rule]) -> bytes:
    w = Writer()
    write_rules(w, rules)
    return bytes(w.buf)


# --- controller JSON -------------------------------------------------------------------------

JsonObject = dict[str, Any]

_JSON_NAMES: Final[dict[int, str]] = {t.value: t.name for t in RuleType}
_JSON_NAMES[RuleType.MATCH_INTEGER_RANGE] = "INTEGER_RANGE"
_JSON_CLASSES: Final[dict[str, type[Rule]]] = {
    _JSON_NAMES[code]: cls for code, cls in _RULE_CLASSES.items()
}
_DIGITS: Final = re.compile(r"\s*([+-]?)(\d*)")


def rule_to_json(rule: Rule, *, quirks: bool = True) -> JsonObject:
    """Render one rule as the controller's ``_renderRule`` does (see the module docstring)."""
    if isinstance(rule, UnknownRule) or (quirks and isinstance(rule, ActionPriority)):
        return {}
    r: JsonObject = {"type": _JSON_NAMES[rule.type_code]}
    match rule:
        case ActionRedirect():
            r["address"] = f"{rule.address & _MASK40:010x}"
            r["flags"] = rule.flags
            if not quirks:
                r["length"] = rule.length
        case ForwardAction():
            r["address"] = f"{rule.address & _MASK40:010x}"
            r["flags"] = rule.flags
            r["length"] = rule.length
        case ZeroTierAddressMatch():
            r["zt"] = f"{rule.address & _MASK40:010x}"
        case MatchVlanId():
            r["vlanId"] = rule.vlan_id
        case MatchVlanPcp():
            r["vlanPcp"] = rule.pcp
        case MatchVlanDei():
            r["vlanDei"] = rule.dei
        case MacMatch():
            r["mac"] = ":".join(f"{b:02x}" for b in rule.mac.to_bytes(6, "big"))
        case Ipv4Match() | Ipv6Match():
            r["ip"] = f"{_ntop(rule.ip)}/{rule.prefix}"
        case MatchIpTos():
            r["mask"] = rule.mask
            r["start"] = rule.start
            r["end"] = rule.end
        case MatchIpProtocol():
            r["ipProtocol"] = rule.protocol
        case MatchEthertype():
            r["etherType"] = rule.ethertype
        case MatchIcmp():
            r["icmpType"] = rule.icmp_type
            r["icmpCode"] = rule.code if rule.matches_code else None
        case RangeMatch():
            r["start"] = rule.start
            r["end"] = rule.end
        case MatchCharacteristics():
            r["mask"] = f"{rule.mask:016x}"
        case MatchRandom():
            r["probability"] = rule.probability
        case TagMatch():
            r["id"] = rule.tag_id
            r["value"] = rule.value
        case MatchIntegerRange():
            r["start"] = f"{rule.start:016x}"
            r["end"] = f"{rule.end:016x}"
            r["idx"] = rule.index
            r["little"] = rule.little_endian
            r["bits"] = rule.bits
        case _:
            pass
    if not (quirks and rule.is_action):
        r["not"] = rule.not_
        r["or"] = rule.or_
    return r


def _ntop(ip: IPv4Address | IPv6Address) -> str:
    """``inet_ntop`` as glibc prints it: Python's compressed IPv6 form, except that glibc writes
    an IPv4 tail for ``::a.b.c.d`` (six leading zero words) and ``::ffff:a.b.c.d``."""
    if isinstance(ip, IPv4Address):
        return str(ip)
    p = ip.packed
    tail = IPv4Address(p[12:])
    if p[:12] == bytes(12) and p[12:14] != b"\0\0":
        return f"::{tail}"
    if p[:10] == bytes(10) and p[10:12] == b"\xff\xff":
        return f"::ffff:{tail}"
    return str(ip)


def rules_to_json(rules: tuple[Rule, ...] | list[Rule], *, quirks: bool = True) -> list[JsonObject]:
    return [rule_to_json(r, quirks=quirks) for r in rules]


def _c_strtoull10(s: str) -> int:
    """``strtoull(s, NULL, 10)`` (glibc): whitespace, sign, digits; saturating; 0 if none."""
    m = _DIGITS.match(s)
    if m is None or not m.group(2):
        return 0
    v = int(m.group(2))
    if v > _MASK64:
        return _MASK64
    return (-v) & _MASK64 if m.group(1) == "-" else v


def _json_int(v: object, default: int) -> int:
    """``OSUtils::jsonInt``: numbers cast to u64, strings parsed as decimal, bools 1/0."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v & _MASK64
    if isinstance(v, float):
        return int(v) & _MASK64 if math.isfinite(v) else default
    if isinstance(v, str):
        return _c_strtoull10(v)
    return default


def _json_bool(v: object, default: bool) -> bool:
    """``OSUtils::jsonBool``: bools, numbers > 0 (as u64), strings starting 1/t/T."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return _json_int(v, 0) > 0
    if isinstance(v, str):
        return v[:1] in ("t", "T", "1")
    return default


def _json_str(v: object, default: str) -> str:
    """``OSUtils::jsonString``: strings, numbers as unsigned decimal, bools 1/0."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return str(_json_int(v, 0))
    return default


def _hex_u64(s: str) -> int:
    from ztnode.wire.dictionary import parse_hex_u64  # avoid an import cycle

    return parse_hex_u64(s.encode("utf-8", "surrogateescape"))


def _unhex_mac(s: str) -> int:
    """``cleanMac`` + ``Utils::unhex`` into a zeroed 6-byte buffer: lenient, never fails.

    Non-hex characters count as 0, an odd trailing digit is dropped, missing bytes stay 0.
    """
    cleaned = s.replace("-", "").replace(":", "").encode("utf-8", "surrogateescape")
    out = bytearray(6)
    for i in range(min(6, len(cleaned) // 2)):
        hi, lo = cleaned[2 * i], cleaned[2 * i + 1]
        if hi == 0 or lo == 0:
            break
        out[i] = (_nibble(hi) << 4) | _nibble(lo)
    return int.from_bytes(out, "big")


def _nibble(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x61 <= c <= 0x66:
        return c - 0x57
    if 0x41 <= c <= 0x46:
        return c - 0x37
    return 0


def _json_ip(text: str, v6: bool) -> tuple[bytes, int]:
    """``InetAddress(text)`` then reading it as the family the rule wants.

    Mirrors the reference's leniency: an unparsable address is all zeros, a string of 64+ bytes
    is rejected wholesale (zero address, port 0), and an address of the other family reads as
    zeros because the reference reinterprets the sockaddr.
    """
    size = 16 if v6 else 4
    zero = bytes(size)
    if len(text.encode("utf-8", "surrogateescape")) >= 64 or not text:
        return zero, 0
    ip_text, sep, port_text = text.partition("/")
    port = (_c_strtoull10(port_text) & 0xFFFF) if sep else 0
    if ":" in ip_text:
        family_v6 = True
    elif "." in ip_text:
        family_v6 = False
    else:
        return zero, 0
    if family_v6 != v6:
        return zero, port
    try:
        packed = IPv6Address(ip_text).packed if v6 else IPv4Address(ip_text).packed
    except (AddressValueError, ValueError):
        packed = zero
    return packed, port


def rule_from_json(obj: object, *, quirks: bool = True) -> Rule | None:
    """Parse one controller JSON rule as ``_parseRule`` does; ``None`` where it returns false.

    Field readers are as lenient as the reference's (numbers given as strings, missing fields
    default to 0, masks wrap). A ``MATCH_CHARACTERISTICS`` whose ``mask`` is neither a number
    nor a string makes the reference throw; here it is ``None``.
    """
    if not isinstance(obj, dict):
        return None
    t = _json_str(obj.get("type"), "")
    not_ = _json_bool(obj.get("not"), False)
    or_ = _json_bool(obj.get("or"), False)
    cls = _JSON_CLASSES.get(t)
    if cls is None:
        return None

    def num(key: str, mask: int, default: int = 0) -> int:
        return _json_int(obj.get(key), default) & mask

    rule: Rule
    if cls in (ActionDrop, ActionAccept, ActionBreak):
        rule = cls(not_=not_, or_=or_)
    elif cls is ActionPriority:
        if quirks:
            return None
        rule = ActionPriority(not_=not_, or_=or_)
    elif issubclass(cls, ForwardAction):
        address = _hex_u64(_json_str(obj.get("address"), "0")) & _MASK40
        # The reference ignores a REDIRECT's length; without quirks it survives a round trip.
        length = 0 if (cls is ActionRedirect and quirks) else num("length", 0xFFFF)
        rule = cls(address, num("flags", 0xFFFF_FFFF), length, not_=not_, or_=or_)
    elif issubclass(cls, ZeroTierAddressMatch):
        rule = cls(_hex_u64(_json_str(obj.get("zt"), "0")) & _MASK40, not_=not_, or_=or_)
    elif cls is MatchVlanId:
        rule = MatchVlanId(num("vlanId", 0xFFFF), not_=not_, or_=or_)
    elif cls is MatchVlanPcp:
        rule = MatchVlanPcp(num("vlanPcp", 0xFF), not_=not_, or_=or_)
    elif cls is MatchVlanDei:
        rule = MatchVlanDei(num("vlanDei", 0xFF), not_=not_, or_=or_)
    elif issubclass(cls, MacMatch):
        rule = cls(_unhex_mac(_json_str(obj.get("mac"), "0")), not_=not_, or_=or_)
    elif issubclass(cls, Ipv4Match):
        packed, port = _json_ip(_json_str(obj.get("ip"), "0.0.0.0"), v6=False)
        rule = cls(IPv4Address(packed), min(port & 0xFF, 32), not_=not_, or_=or_)
    elif issubclass(cls, Ipv6Match):
        packed, port = _json_ip(_json_str(obj.get("ip"), "::0"), v6=True)
        rule = cls(IPv6Address(packed), min(port & 0xFF, 128), not_=not_, or_=or_)
    elif cls is MatchIpTos:
        rule = MatchIpTos(
            num("mask", 0xFF), num("start", 0xFF), num("end", 0xFF), not_=not_, or_=or_
        )
    elif cls is MatchIpProtocol:
        rule = MatchIpProtocol(num("ipProtocol", 0xFF), not_=not_, or_=or_)
    elif cls is MatchEthertype:
        rule = MatchEthertype(num("etherType", 0xFFFF), not_=not_, or_=or_)
    elif cls is MatchIcmp:
        code = obj.get("icmpCode")
        if code is None:
            rule = MatchIcmp(num("icmpType", 0xFF), 0, 0, not_=not_, or_=or_)
        else:
            c = _json_int(code, 0) & 0xFF
            rule = MatchIcmp(num("icmpType", 0xFF), c, ICMP_FLAG_MATCH_CODE, not_=not_, or_=or_)
    elif issubclass(cls, RangeMatch):
        start = num("start", 0xFFFF)
        rule = cls(start, num("end", 0xFFFF, start), not_=not_, or_=or_)
    elif cls is MatchCharacteristics:
        mask = 0
        if "mask" in obj:
            v = obj["mask"]
            if isinstance(v, int | float) and not isinstance(v, bool):
                mask = _json_int(v, 0)
            elif isinstance(v, str):
                mask = _hex_u64(v)
            else:
                return None
        rule = MatchCharacteristics(mask, not_=not_, or_=or_)
    elif cls is MatchRandom:
        rule = MatchRandom(num("probability", 0xFFFF_FFFF), not_=not_, or_=or_)
    elif issubclass(cls, TagMatch):
        rule = cls(num("id", 0xFFFF_FFFF), num("value", 0xFFFF_FFFF), not_=not_, or_=or_)
    elif cls is MatchIntegerRange:
        if quirks:
            return None
        s, e = obj.get("start"), obj.get("end")
        start = _hex_u64(s) if isinstance(s, str) else _json_int(s, 0)
        end = _hex_u64(e) if isinstance(e, str) else _json_int(e, 0)
        fmt = (INTEGER_RANGE_LITTLE_ENDIAN if _json_bool(obj.get("little"), False) else 0) | (
            (_json_int(obj.get("bits"), 1) - 1) & 63
        )
        rule = MatchIntegerRange(
            start, (end - start) & 0xFFFF_FFFF, num("idx", 0xFFFF), fmt, not_=not_, or_=or_
        )
    else:  # pragma: no cover - every class is handled above
        return None
    return rule


def rules_from_json(
    items: object, max_rules: int = MAX_NETWORK_RULES, *, quirks: bool = True
) -> tuple[Rule, ...]:
    """Parse a JSON rule array as the controller builds a rule table: unparsable entries are
    skipped and at most ``max_rules`` are kept. A non-list yields no rules."""
    if not isinstance(items, list):
        return ()
    out: list[Rule] = []
    for item in items:
        if len(out) >= max_rules:
            break
        rule = rule_from_json(item, quirks=quirks)
        if rule is not None:
            out.append(rule)
    return tuple(out)


__all__ = [
    "ACTION_MAX_ID",
    "ICMP_FLAG_MATCH_CODE",
    "INTEGER_RANGE_LITTLE_ENDIAN",
    "MAX_CAPABILITY_RULES",
    "MAX_NETWORK_RULES",
    "RULES_ENGINE_REVISION",
    "RULE_NOT",
    "RULE_OR",
    "RULE_TYPE_MASK",
    "ActionAccept",
    "ActionBreak",
    "ActionDrop",
    "ActionPriority",
    "ActionRedirect",
    "ActionTee",
    "ActionWatch",
    "Characteristic",
    "ForwardAction",
    "Ipv4Match",
    "Ipv6Match",
    "JsonObject",
    "MacMatch",
    "MatchCharacteristics",
    "MatchDestZeroTierAddress",
    "MatchEthertype",
    "MatchFrameSizeRange",
    "MatchIcmp",
    "MatchIntegerRange",
    "MatchIpDestPortRange",
    "MatchIpProtocol",
    "MatchIpSourcePortRange",
    "MatchIpTos",
    "MatchIpv4Dest",
    "MatchIpv4Source",
    "MatchIpv6Dest",
    "MatchIpv6Source",
    "MatchMacDest",
    "MatchMacSource",
    "MatchRandom",
    "MatchSourceZeroTierAddress",
    "MatchTagReceiver",
    "MatchTagSender",
    "MatchTagsBitwiseAnd",
    "MatchTagsBitwiseOr",
    "MatchTagsBitwiseXor",
    "MatchTagsDifference",
    "MatchTagsEqual",
    "MatchVlanDei",
    "MatchVlanId",
    "MatchVlanPcp",
    "RangeMatch",
    "Rule",
    "RuleType",
    "TagMatch",
    "UnknownRule",
    "ZeroTierAddressMatch",
    "decode_rules",
    "encode_rules",
    "read_rule",
    "read_rules",
    "rule_class",
    "rule_from_json",
    "rule_to_json",
    "rules_from_json",
    "rules_to_json",
    "write_rules",
]
