"""The network config a controller issues to one authorized member.

This is step 7 of the embedded controller's request handling (``EmbeddedNetworkController::
_request`` in ZeroTierOne 1.14.1; fact sheet ``protocol-network.md`` §10.3, with §4.1, §5, §6.4
and §9): from the network's and the member's controller JSON it builds the signed
:class:`~ztnode.wire.netconf.NetworkConfig` the member receives.

Why a pure function: the store, the API and the request path own persistence, clocks, randomness
and authorization; keeping them out makes the result reproducible in tests and lets the caller
decide when to save. What the build decides *permanently* comes back as a new member record
(auto-assigned IPs appended to ``ipAssignments``, network tag defaults the member lacked added to
``tags``, default capabilities of a new member added to ``capabilities``) for the caller to save,
exactly as the reference saves the member after building. The inputs are never mutated.

Why the JSON is read leniently: the reference reads every field through ``OSUtils::jsonInt`` /
``jsonBool`` / ``jsonString`` and ``InetAddress::fromString``, which never fail (numbers given as
strings, strings given as numbers, unparsable IPs read as zeros). Reproducing those readers means
a record the reference would serve gives the same config here, and a malformed field degrades
the same way instead of raising. Where the reference has undefined behaviour (prefix lengths
beyond the address size, shifts by 32) or would throw, this module picks a harmless,
documented outcome instead.

Only caller errors raise (:class:`ValueError`): a network record without a usable 16-hex id, or a
controller identity that is not the network's (``nwid >> 24``) or lacks its private key. A full
IP pool never does: the member then simply gets no automatic address of that family.

Not modelled, on purpose: the request metadata. The reference sends nodes without a rules
engine (``revr`` absent or 0) a single ACCEPT rule and no capabilities or tags; every node this
project talks to has one, so the full rules are always built.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from ztnode.identity import Identity
from ztnode.wire.constants import DEFAULT_MTU, MAX_MTU, MIN_MTU
from ztnode.wire.credentials import (
    COO_MAX_THINGS,
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    OwnedThing,
    Tag,
)
from ztnode.wire.dictionary import parse_hex_u64
from ztnode.wire.inetaddr import InetAddress, IPAddress
from ztnode.wire.netconf import (
    CREDENTIAL_TIME_MAX_DELTA_DEFAULT,
    CREDENTIAL_TIME_MAX_DELTA_MAX,
    CREDENTIAL_TIME_MAX_DELTA_MIN,
    DNS_DOMAIN_FIELD,
    MAX_DNS_SERVERS,
    MAX_NETWORK_CAPABILITIES,
    MAX_NETWORK_NAME,
    MAX_NETWORK_ROUTES,
    MAX_NETWORK_SPECIALISTS,
    MAX_NETWORK_TAGS,
    MAX_STATIC_IPS,
    DnsConfig,
    NetconfFlag,
    NetworkConfig,
    NetworkType,
    Route,
    SpecialistType,
    SsoConfig,
)
from ztnode.wire.rules import MAX_CAPABILITY_RULES, MAX_NETWORK_RULES, rules_from_json

_MASK32: Final = 0xFFFF_FFFF
_MASK40: Final = (1 << 40) - 1
_MASK64: Final = (1 << 64) - 1
_MASK128: Final = (1 << 128) - 1

# Candidates tried per pool before giving up on it (both families).
POOL_TRIALS: Final = 1000
# An IPv6 pool whose low 64 bits span at least this much gets the member's address added to the
# low half of its start as the first candidate (a stable address per member).
_V6_ADDRESS_SPAN: Final = 0xFF_FFFF_FFFF
# InetAddress::fromString copies into a char[64]; longer text is refused (null address).
_INET_TEXT_MAX: Final = 63
# The only certificate of ownership the controller issues has this id.
COO_ID: Final = 1
# Rules of a network record that has none (DB::initNetwork): behave like a flat L2 segment.
DEFAULT_RULES_JSON: Final = ({"not": False, "or": False, "type": "ACTION_ACCEPT"},)

_DECIMAL: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")
_HEX16: Final = re.compile(r"[0-9a-fA-F]{16}")


class PoolExhausted(Exception):
    """No free address in the IP pools. :func:`build_config` never raises it: a member whose
    pools are full still gets a config, without an automatic address of that family, exactly
    as the reference serves it. It exists for callers that guard against it."""


# --- the reference's lenient JSON readers ----------------------------------------------------


def _c_strtou64(text: str) -> int:
    """``strtoull(text, NULL, 10)`` as glibc does it (whitespace, sign, saturation at 2**64-1,
    a minus sign negating modulo 2**64), which ``Utils::strToU64`` and ``strToUInt`` use."""
    m = _DECIMAL.match(text)
    if m is None or not m.group(2):
        return 0
    v = min(int(m.group(2)), _MASK64)
    return (-v) & _MASK64 if m.group(1) == "-" else v


def json_int(value: object, default: int) -> int:
    """``OSUtils::jsonInt``: a number cast to u64, a decimal string, a bool as 1/0, otherwise
    ``default``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & _MASK64
    if isinstance(value, float):
        return int(value) & _MASK64 if math.isfinite(value) else default
    if isinstance(value, str):
        return _c_strtou64(value)
    return default


def json_bool(value: object, default: bool) -> bool:
    """``OSUtils::jsonBool``: a bool, a number > 0 as u64, a string starting 1/t/T, otherwise
    ``default``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return json_int(value, 0) > 0
    if isinstance(value, str):
        return value[:1] in ("1", "t", "T")
    return default


def json_str(value: object, default: str) -> str:
    """``OSUtils::jsonString``: a string, a number as unsigned decimal, a bool as 1/0, otherwise
    ``default``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(json_int(value, 0))
    return default


def _is_json_number(value: object) -> bool:
    """nlohmann's ``is_number``: integers and floats, not booleans."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _utf8(text: str) -> bytes:
    """The bytes a C++ ``std::string`` would hold. Lone surrogates (which Python's JSON parser
    lets through) cannot be UTF-8; encode them anyway so nothing here can raise."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _c_text(text: str, limit: int) -> str:
    """``text`` as a fixed ``char[]`` field would keep it: cut at the first NUL and to ``limit``
    bytes. Decoded with ``surrogateescape`` so the dictionary writes back exactly those bytes
    (a cut inside a multi-byte character survives a round trip unchanged)."""
    raw = _utf8(text)
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw[:limit].decode("utf-8", "surrogateescape")


# --- addresses -------------------------------------------------------------------------------


def parse_inet(text: str) -> InetAddress | None:
    """``InetAddress::fromString`` on controller JSON text such as ``10.1.0.0/16``.

    The part after the first ``/`` is the port (a prefix length in routes), read as ``strtoul``
    and cut to 16 bits. Text with a ``:`` is IPv6, otherwise text with a ``.`` is IPv4, otherwise
    (and for empty text or text of 64 bytes or more) the result is the null address ``None``.
    An address that does not parse is all zeros of the family the text looked like, as the
    reference's ignored ``inet_pton`` result leaves it.
    """
    raw = _utf8(text)
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    if not raw or len(raw) > _INET_TEXT_MAX:
        return None
    ip_part, slash, port_part = raw.partition(b"/")
    port = _c_strtou64(port_part.decode("utf-8", "replace")) & 0xFFFF if slash else 0
    ip: IPAddress
    if b":" in ip_part:
        try:
            # inet_pton knows no scope ids; Python's parser would accept "fe80::1%eth0".
            ip = IPv6Address(ip_part.decode("ascii")) if b"%" not in ip_part else IPv6Address(0)
        except ValueError:
            ip = IPv6Address(0)
    elif b"." in ip_part:
        try:
            ip = IPv4Address(ip_part.decode("ascii"))
        except ValueError:
            ip = IPv4Address(0)
    else:
        return None
    return InetAddress(ip, port)


def ip_to_text(ip: IPAddress) -> str:
    """The IP as ``inet_ntop`` (glibc) prints it, the form the reference stores in
    ``ipAssignments``: compressed IPv6 (longest zero run of two or more words, first on a tie),
    with a dotted IPv4 tail for ``::a.b.c.d`` and ``::ffff:a.b.c.d``."""
    if isinstance(ip, IPv4Address):
        return str(ip)
    p = ip.packed
    if p[:12] == bytes(12) and p[12:14] != b"\0\0":
        return f"::{IPv4Address(p[12:])}"
    if p[:10] == bytes(10) and p[10:12] == b"\xff\xff":
        return f"::ffff:{IPv4Address(p[12:])}"
    words = [int.from_bytes(p[i : i + 2], "big") for i in range(0, 16, 2)]
    best, best_len, run, run_len = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if run < 0:
                run, run_len = i, 0
            run_len += 1
            if run_len > best_len:
                best, best_len = run, run_len
        else:
            run = -1
    hexes = [f"{w:x}" for w in words]
    if best_len < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best]) + "::" + ":".join(hexes[best + best_len :])


def rfc4193_address(nwid: int, address: int) -> InetAddress:
    """The member's RFC 4193 address, prefix length in the port:
    ``fd`` + nwid (8 bytes) + ``99 93`` + address (5 bytes), /88 (``makeIpv6rfc4193``)."""
    raw = b"\xfd" + nwid.to_bytes(8, "big") + b"\x99\x93" + (address & _MASK40).to_bytes(5, "big")
    return InetAddress(IPv6Address(raw), 88)


def sixplane_address(nwid: int, address: int) -> InetAddress:
    """The member's 6PLANE address, prefix length in the port: ``fc`` + (nwid xor nwid >> 32,
    low 4 bytes) + address (5 bytes) + five zero bytes + ``01``, /40 (``makeIpv66plane``). The
    node owns the whole /80 below it."""
    h = (nwid ^ (nwid >> 32)) & _MASK32
    raw = (
        b"\xfc" + h.to_bytes(4, "big") + (address & _MASK40).to_bytes(5, "big") + bytes(5) + b"\x01"
    )
    return InetAddress(IPv6Address(raw), 40)


def _contains(network: InetAddress, ip: InetAddress) -> bool:
    """``InetAddress::containsAddress`` with ``network``'s port as the prefix length.

    Reference quirks kept: an IPv4 network ignores its own host bits and /0 contains every IPv4
    address; an IPv6 network with host bits set contains nothing, and ``::/0`` is the only /0
    that contains anything. A prefix longer than the family allows (undefined behaviour there)
    contains nothing.
    """
    if network.is_ipv4() != ip.is_ipv4():
        return False
    bits = network.port
    if network.is_ipv4():
        if bits == 0:
            return True
        if bits > 32:
            return False
        shift = 32 - bits
        return int(ip.ip) >> shift == int(network.ip) >> shift
    if bits > 128:
        return False
    mask = _MASK128 ^ ((1 << (128 - bits)) - 1)
    return int(ip.ip) & mask == int(network.ip)


# --- network record --------------------------------------------------------------------------


def network_id(network: dict[str, Any]) -> int:
    """The network id of a network record: its ``id`` (or else ``nwid``), 16 hex digits.

    Raises :class:`ValueError` when neither is usable: there is no sensible config without it.
    """
    for key in ("id", "nwid"):
        value = network.get(key)
        if isinstance(value, str) and _HEX16.fullmatch(value) and int(value, 16):
            return int(value, 16)
    raise ValueError("network record has no 16-hex-digit network id in 'id' or 'nwid'")


def credential_time_max_delta(network: dict[str, Any]) -> int:
    """The window (ms) within which members' credentials must lie: the network's
    ``certificateTimeoutWindowSize`` if it is a number, else 30 min; clamped to 5 min..2 h so
    credentials neither expire before a config refresh nor stay usable for long after a member
    is dropped."""
    value: object = network.get("certificateTimeoutWindowSize")
    ctmd = CREDENTIAL_TIME_MAX_DELTA_DEFAULT
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        raw = int(value) & _MASK64  # the reference reads it as int64
        ctmd = raw - (1 << 64) if raw >= 1 << 63 else raw
    return max(min(ctmd, CREDENTIAL_TIME_MAX_DELTA_MAX), CREDENTIAL_TIME_MAX_DELTA_MIN)


def _routes(network: dict[str, Any]) -> tuple[Route, ...]:
    """Managed routes (``RT``, flags and metric 0). An entry needs a string ``target`` that
    parses as an IP; a ``via`` of the other family is dropped (on-link), as the reference only
    copies a gateway of the target's family."""
    items = network.get("routes")
    if not isinstance(items, list):
        return ()
    out: list[Route] = []
    for item in items:
        if len(out) >= MAX_NETWORK_ROUTES:
            break
        if not isinstance(item, dict):
            continue
        target_text = item.get("target")
        if not isinstance(target_text, str):
            continue
        target = parse_inet(target_text)
        if target is None:
            continue
        via_text = item.get("via")
        via = parse_inet(via_text) if isinstance(via_text, str) else None
        if via is not None and via.is_ipv4() != target.is_ipv4():
            via = None
        out.append(Route(target, via))
    return tuple(out)


def _dns(network: dict[str, Any]) -> DnsConfig:
    """Pushed DNS: only when ``dns`` is an object (new networks default it to an empty array);
    the domain cut to its 127-byte field, the first four server entries that parse."""
    dns = network.get("dns")
    if not isinstance(dns, dict):
        return DnsConfig()
    domain = _c_text(json_str(dns.get("domain"), ""), DNS_DOMAIN_FIELD - 1)
    servers: list[InetAddress] = []
    entries = dns.get("servers")
    if isinstance(entries, list):
        for entry in entries[:MAX_DNS_SERVERS]:
            server = parse_inet(json_str(entry, ""))
            if server is not None:  # a null slot; the node drops it on read anyway
                servers.append(server)
    return DnsConfig(domain, tuple(servers))


def _trace_target(text: str) -> int | None:
    """A trace target is honoured only as exactly ten characters, read as hex."""
    raw = _utf8(text)
    return parse_hex_u64(raw) & _MASK40 if len(raw) == 10 else None


def _remote_trace(network: dict[str, Any], member: dict[str, Any]) -> tuple[int, int]:
    """Remote trace target and level: the member's pair if it names a target, otherwise the
    network's target (if any) with the network's level."""
    target = _trace_target(json_str(member.get("remoteTraceTarget"), ""))
    if target is not None:
        return target, json_int(member.get("remoteTraceLevel"), 0) & _MASK32
    target = _trace_target(json_str(network.get("remoteTraceTarget"), ""))
    return target or 0, json_int(network.get("remoteTraceLevel"), 0) & _MASK32


# --- capabilities and tags -------------------------------------------------------------------


def _capabilities(
    controller: Identity,
    network: dict[str, Any],
    member: dict[str, Any],
    nwid: int,
    now: int,
    issued_to: int,
    new_member: bool,
) -> tuple[Capability, ...]:
    """The member's capabilities, each signed over to it (one custody hop, ts = now).

    ``member`` (the output copy) lists capability ids; ids without a network capability are
    ignored. A new member first gets every network capability marked ``default`` that it does
    not list, and that is recorded in ``member`` so it survives later edits of the default.
    Sorted by id because that is the order the node keeps them in.
    """
    member_caps = member.get("capabilities")
    if not isinstance(member_caps, list):
        member_caps = []
        member["capabilities"] = member_caps
    by_id: dict[int, dict[str, Any]] = {}
    network_caps = network.get("capabilities")
    if isinstance(network_caps, list):
        for cap in network_caps:
            if not isinstance(cap, dict):
                continue
            cap_id = json_int(cap.get("id"), 0) & _MASK32
            by_id[cap_id] = cap  # a later duplicate id wins
            if (
                new_member
                and json_bool(cap.get("default"), False)
                and all(json_int(x, 0) & _MASK32 != cap_id for x in member_caps)
            ):
                member_caps.append(cap_id)
    issued: list[Capability] = []
    for entry in member_caps:
        if len(issued) >= MAX_NETWORK_CAPABILITIES:
            break
        cap_id = json_int(entry, 0) & _MASK32
        found = by_id.get(cap_id)
        if found is None:
            continue
        rules = rules_from_json(found.get("rules"), MAX_CAPABILITY_RULES)
        issued.append(Capability(cap_id, nwid, now, rules).sign(controller, issued_to))
    return tuple(sorted(issued, key=lambda c: c.id))


def _tags(
    controller: Identity,
    network: dict[str, Any],
    member: dict[str, Any],
    nwid: int,
    now: int,
    issued_to: int,
) -> tuple[Tag, ...]:
    """The member's tags, each signed (ts = now), in id order.

    ``member`` (the output copy) holds ``[id, value]`` pairs. Every network tag with a numeric
    ``default`` the member lacks is added, both to the config and to ``member`` as
    ``[id, default]`` (the default exactly as the network record holds it), so that changing a
    network default later does not silently retag existing members.
    """
    values: dict[int, int] = {}
    member_tags = member.get("tags")
    if isinstance(member_tags, list):
        for pair in member_tags:
            if isinstance(pair, list) and len(pair) == 2:
                values[json_int(pair[0], 0) & _MASK32] = json_int(pair[1], 0) & _MASK32
    network_tags = network.get("tags")
    if isinstance(network_tags, list):
        for tag in network_tags:
            if not isinstance(tag, dict):
                continue
            tag_id = json_int(tag.get("id"), 0) & _MASK32
            default = tag.get("default")
            if _is_json_number(default) and tag_id not in values:
                values[tag_id] = json_int(default, 0) & _MASK32
                if not isinstance(member_tags, list):
                    member_tags = []
                    member["tags"] = member_tags
                member_tags.append([tag_id, default])
    return tuple(
        Tag(tag_id, values[tag_id], nwid, now, issued_to).sign(controller)
        for tag_id in sorted(values)[:MAX_NETWORK_TAGS]
    )


# --- IP assignment ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Addressing:
    """What §9 produces: the static IPs (prefix length in the port), the NDP emulation flag,
    and the member's ``ipAssignments`` list if automatic assignment appended to it."""

    static_ips: list[InetAddress] = field(default_factory=list)
    flags: int = 0
    ip_assignments: list[Any] | None = None

    def push(self, ip: InetAddress) -> None:
        if len(self.static_ips) < MAX_STATIC_IPS:
            self.static_ips.append(ip)


def _pool_bounds(pool: object, v6: bool) -> tuple[int, int] | None:
    """A pool's start and end as integers, if both parse as the family wanted."""
    if not isinstance(pool, dict):
        return None
    start = parse_inet(json_str(pool.get("ipRangeStart"), ""))
    end = parse_inet(json_str(pool.get("ipRangeEnd"), ""))
    if start is None or end is None or start.is_ipv6() != v6 or end.is_ipv6() != v6:
        return None
    return int(start.ip), int(end.ip)


def _v6_from_pool(
    start: int,
    end: int,
    address: int,
    routes: tuple[Route, ...],
    taken: Callable[[str, IPAddress], bool],
    random_bytes: Callable[[int], bytes],
) -> InetAddress | None:
    """One IPv6 pool: a free address inside an on-link IPv6 route, or ``None``.

    The first candidate is the pool start with the member's address added to its low 64 bits
    when that half of the range is wide enough, so a member keeps the same address across
    rebuilds; the rest are random, each 64-bit half drawn inside its own span (the reference's
    method, which does not cover a range whose halves both vary; random bytes are read
    big-endian). The prefix length is that of the last on-link IPv6 route containing it.
    """
    s_hi, s_lo = start >> 64, start & _MASK64
    e_hi, e_lo = end >> 64, end & _MASK64
    for trial in range(POOL_TRIALS):
        if trial == 0 and e_lo > s_lo and e_lo - s_lo >= _V6_ADDRESS_SPAN:
            hi, lo = s_hi, (s_lo + address) & _MASK64
        else:
            rnd = random_bytes(16)
            r_hi, r_lo = int.from_bytes(rnd[:8], "big"), int.from_bytes(rnd[8:16], "big")
            hi = (s_hi + (r_hi % (e_hi - s_hi) if e_hi > s_hi else 0)) & _MASK64
            lo = (s_lo + (r_lo % (e_lo - s_lo) if e_lo > s_lo else 0)) & _MASK64
        candidate = InetAddress(IPv6Address((hi << 64) | lo), 0)
        bits = 0
        for rt in routes:
            if rt.via is None and rt.target is not None and _contains(rt.target, candidate):
                bits = rt.target.port
        if bits > 0 and not taken(ip_to_text(candidate.ip), candidate.ip):
            return candidate.with_port(bits)
    return None


def _v4_route_bits(ip: int, routes: tuple[Route, ...]) -> int:
    """The prefix length of the first IPv4 route (gateway or not) whose network, host bits
    included, equals ``ip`` masked; 0 if none. Prefix lengths 0 and above 32 never match (the
    reference shifts by 32 or a negative count there, and a 0 result assigns nothing anyway)."""
    for rt in routes:
        target = rt.target
        if target is None or not target.is_ipv4() or not 0 < target.port <= 32:
            continue
        mask = (_MASK32 << (32 - target.port)) & _MASK32
        if ip & mask == int(target.ip):
            return target.port
    return 0


def _v4_from_pool(
    start: int,
    end: int,
    address: int,
    routes: tuple[Route, ...],
    taken: Callable[[str, IPAddress], bool],
) -> InetAddress | None:
    """One IPv4 pool: a free address inside an IPv4 route, or ``None``.

    Candidates are ``start + (counter mod (end - start))`` with the counter starting at the low
    32 bits of the member's address, so a member lands on the same address every time while it
    is free, and members spread over the pool. Consequences kept from the reference: ``end``
    itself is never chosen (unless start == end), at most ``end - start + 1`` and at most 1000
    candidates are tried, and any ``x.x.x.255`` is skipped (a trial spent) because many stacks
    treat it as a broadcast address.
    """
    if end < start or start == 0:
        return None
    span = end - start
    counter = address & _MASK32
    k = start
    trials = 0
    while k <= end and trials < POOL_TRIALS:
        ip = start + (counter % span) if span else start
        counter = (counter + 1) & _MASK32
        k = (k + 1) & _MASK32
        trials += 1
        if ip & 0xFF == 0xFF:
            continue
        bits = _v4_route_bits(ip, routes)
        candidate = IPv4Address(ip)
        if bits > 0 and not taken(str(candidate), candidate):
            return InetAddress(candidate, bits)
    return None


def _addressing(
    network: dict[str, Any],
    member: dict[str, Any],
    nwid: int,
    address: int,
    routes: tuple[Route, ...],
    allocated: set[IPAddress],
    random_bytes: Callable[[int], bytes],
) -> _Addressing:
    """§9 in the reference's order: RFC 4193 and 6PLANE addresses, then the member's manual
    ``ipAssignments`` that some route contains, then one IPv6 and one IPv4 address from the
    pools for each family that has no routed manual address.

    A manual IP outside every route stays in the record but is not sent: the node could not
    reach anything with it. Its prefix length is the longest containing route's (gateway or
    not). ``noAutoAssignIps`` turns off everything automatic, manual IPs still go out.
    """
    out = _Addressing()
    no_auto = json_bool(member.get("noAutoAssignIps"), False)
    v6_mode = network.get("v6AssignMode")
    v4_mode = network.get("v4AssignMode")
    if isinstance(v6_mode, dict) and not no_auto:
        if json_bool(v6_mode.get("rfc4193"), False):
            out.push(rfc4193_address(nwid, address))
            out.flags |= NetconfFlag.ENABLE_IPV6_NDP_EMULATION
        if json_bool(v6_mode.get("6plane"), False):
            out.push(sixplane_address(nwid, address))
            out.flags |= NetconfFlag.ENABLE_IPV6_NDP_EMULATION

    have_v4 = have_v6 = False
    stored = member.get("ipAssignments")
    assignments: list[Any] = list(stored) if isinstance(stored, list) else []
    for entry in assignments:
        if not isinstance(entry, str):
            continue
        ip = parse_inet(entry)
        if ip is None:
            continue
        bits = -1
        for rt in routes:
            if rt.target is not None and _contains(rt.target, ip):
                bits = max(bits, rt.target.port)
        if bits >= 0:
            out.push(ip.with_port(bits))
            if ip.is_ipv4():
                have_v4 = True
            else:
                have_v6 = True

    def taken(text: str, ip: IPAddress) -> bool:
        return ip in allocated or text in assignments

    pools = network.get("ipAssignmentPools")
    if not isinstance(pools, list) or no_auto:
        return out
    if isinstance(v6_mode, dict) and json_bool(v6_mode.get("zt"), False) and not have_v6:
        for pool in pools:
            bounds = _pool_bounds(pool, v6=True)
            if bounds is None:
                continue
            got = _v6_from_pool(*bounds, address, routes, taken, random_bytes)
            if got is not None:
                assignments.append(ip_to_text(got.ip))
                out.ip_assignments = assignments
                out.push(got)
                break
    if isinstance(v4_mode, dict) and json_bool(v4_mode.get("zt"), False) and not have_v4:
        for pool in pools:
            bounds = _pool_bounds(pool, v6=False)
            if bounds is None:
                continue
            got = _v4_from_pool(*bounds, address, routes, taken)
            if got is not None:
                assignments.append(ip_to_text(got.ip))
                out.ip_assignments = assignments
                out.push(got)
                break
    return out


# --- the builder -----------------------------------------------------------------------------


def build_config(
    controller: Identity,
    network: dict[str, Any],
    member: dict[str, Any],
    member_identity: Identity,
    now: int,
    random_bytes: Callable[[int], bytes],
    allocated: Callable[[int], Iterable[IPAddress]] | None = None,
    *,
    active_bridges: Iterable[int] | None = None,
    new_member: bool | None = None,
) -> tuple[NetworkConfig, dict[str, Any]]:
    """Build and sign the config for one authorized member; return it with the member record
    as it must now be saved.

    * ``controller``: the network's controller identity with its private key (its address must
      be ``nwid >> 24``, or members would refuse every chunk).
    * ``network`` / ``member``: controller JSON records (fact sheet §10.1 / §10.2); missing
      fields take the reference's defaults. Authorization is the caller's business.
    * ``member_identity``: the member's identity; its address is the config's ``issued_to`` and
      its public key is bound into the COM.
    * ``now``: controller time in ms, the timestamp of the config and of every credential.
    * ``random_bytes``: randomness for IPv6 pool candidates after the first.
    * ``allocated(nwid)``: the IPs other members of the network hold, so automatic assignment
      never hands out an address twice; ``None`` means nobody holds any.
    * ``active_bridges``: addresses of every member marked ``activeBridge`` (the member itself
      is added when its record says so), sent as active-bridge specialists.
    * ``new_member``: whether the member record was created by this request; only then are the
      network's default capabilities granted. ``None`` infers it from the record: new when its
      ``revision`` is absent or 0, i.e. it has never been saved (every changing save of a
      stored record increments it, the first one included).

    Raises :class:`ValueError` only for a network record without a usable id or a controller
    identity that cannot sign for it.
    """
    nwid = network_id(network)
    if controller.address != nwid >> 24:
        raise ValueError(
            f"controller {controller.address:010x} cannot sign for network {nwid:016x}"
        )
    if not controller.has_private:
        raise ValueError("the controller identity has no private key")
    if new_member is None:
        new_member = json_int(member.get("revision"), 0) == 0

    out = copy.deepcopy(member)
    issued_to = member_identity.address
    ctmd = credential_time_max_delta(network)

    rules_json = network["rules"] if "rules" in network else list(DEFAULT_RULES_JSON)
    rules = rules_from_json(rules_json, MAX_NETWORK_RULES)
    capabilities = _capabilities(controller, network, out, nwid, now, issued_to, new_member)
    tags = _tags(controller, network, out, nwid, now, issued_to)
    routes = _routes(network)

    # The reference's allocation table also holds the member's own IPs; leaving them out
    # changes nothing, since a pool candidate inside one of them would be a routed manual IP
    # of the same family, and then that family gets no automatic address at all.
    taken: set[IPAddress] = set(allocated(nwid)) if allocated is not None else set()
    addressing = _addressing(network, out, nwid, issued_to, routes, taken, random_bytes)
    if addressing.ip_assignments is not None:
        out["ipAssignments"] = addressing.ip_assignments

    coos: tuple[CertificateOfOwnership, ...] = ()
    if addressing.static_ips:
        things = tuple(OwnedThing.ip(ip.ip) for ip in addressing.static_ips[:COO_MAX_THINGS])
        coo = CertificateOfOwnership(nwid, now, COO_ID, issued_to, things)
        coos = (coo.sign(controller),)

    bridges = {a & _MASK40 for a in active_bridges or ()}
    if json_bool(member.get("activeBridge"), False):
        bridges.add(issued_to)
    specialists = tuple(int(SpecialistType.ACTIVE_BRIDGE) | a for a in sorted(bridges))

    flags = int(addressing.flags)
    if json_bool(network.get("enableBroadcast"), True):
        flags |= NetconfFlag.ENABLE_BROADCAST

    sso = SsoConfig()
    if json_bool(network.get("ssoEnabled"), False):
        # The file-backed controller has no identity provider: version 0 with no URL; the
        # member's authentication expiry is what the node shows.
        sso = SsoConfig(
            version=0,
            enabled=True,
            # The node reads this back as a signed 64-bit number, so keep it in that range.
            authentication_expiry_time=max(
                0, min(json_int(member.get("authenticationExpiryTime"), 0), 2**63 - 1)
            ),
        )

    trace_target, trace_level = _remote_trace(network, member)
    com = CertificateOfMembership.issue(now, ctmd, nwid, member_identity).sign(controller)
    mtu = json_int(network.get("mtu"), DEFAULT_MTU) & _MASK32

    config = NetworkConfig(
        network_id=nwid,
        timestamp=now,
        issued_to=issued_to,
        credential_time_max_delta=ctmd,
        revision=json_int(network.get("revision"), 0),
        remote_trace_target=trace_target,
        remote_trace_level=trace_level,
        flags=flags,
        multicast_limit=json_int(network.get("multicastLimit"), 32) & _MASK32,
        type=(
            NetworkType.PRIVATE if json_bool(network.get("private"), True) else NetworkType.PUBLIC
        ),
        name=_c_text(json_str(network.get("name"), ""), MAX_NETWORK_NAME),
        mtu=max(min(mtu, MAX_MTU), MIN_MTU),
        com=com,
        capabilities=capabilities,
        tags=tags,
        certificates_of_ownership=coos,
        specialists=specialists[:MAX_NETWORK_SPECIALISTS],
        routes=routes,
        static_ips=tuple(addressing.static_ips),
        rules=rules,
        dns=_dns(network),
        sso=sso,
    )
    return config, out


__all__ = [
    "COO_ID",
    "DEFAULT_RULES_JSON",
    "POOL_TRIALS",
    "PoolExhausted",
    "build_config",
    "credential_time_max_delta",
    "ip_to_text",
    "json_bool",
    "json_int",
    "json_str",
    "network_id",
    "parse_inet",
    "rfc4193_address",
    "sixplane_address",
]
