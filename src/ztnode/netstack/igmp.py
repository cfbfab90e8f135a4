"""IGMP and MLD: telling the segment which IP multicast groups this stack listens to.

Why: on a ZeroTier network the node's MULTICAST_LIKEs carry the groups, but LANs bridged onto
the network have switches that snoop IGMP (IPv4) and MLD (IPv6) and stop forwarding a group
nobody reported; their routers ask (queries) and expect answers. So, as a Linux host does:

* joining a group (first join) sends an unsolicited report, and again one second later
  (robustness 2); leaving it (last leave) sends a leave the same way;
* a query is answered after a random delay within its maximum response time, with the groups
  it asks about (all of them for a general query);
* the versions follow the querier: IGMPv3 and MLDv2 by default (RFC 3376, RFC 3810), IGMPv2
  (RFC 2236) and MLDv1 (RFC 2710) while a querier of that version has been heard within the
  last ``OLDER_QUERIER_MS``.

IGMP goes to 224.0.0.22 (v3) or the group (v2; leaves to 224.0.0.2) with TTL 1 and the Router
Alert option; MLD to ff02::16 (v2) or the group (v1; done to ff02::2), hop limit 1, the Router
Alert hop-by-hop option, from the link-local address made from our MAC (RFC 3810 section 5).
224.0.0.1 and ff02::1 are never reported. Any-source joins are EXCLUDE mode with no
sources; source-specific joins INCLUDE mode with their sources (ALLOW/BLOCK records as sources
come and go), reported as plain joins to older queriers, which know no sources.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from ztnode.netstack.checksum import ones_sum, pseudo_header_sum_v6
from ztnode.netstack.multicast import multicast_mac

__all__ = ["MLD_QUERY", "OLDER_QUERIER_MS", "PROTO_IGMP", "GroupReporter", "link_local_from_mac"]

IPAddr = IPv4Address | IPv6Address
Emit = Callable[[int, int, bytes], None]  # (dst_mac, ethertype, packet)

PROTO_IGMP: Final = 2
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
OLDER_QUERIER_MS: Final = 260_000  # robustness x query interval + response (RFC 3376 8.12)
UNSOLICITED_MS: Final = 1_000  # the repeat of an unsolicited report (v3/MLDv2 default)

ALL_HOSTS: Final = IPv4Address("224.0.0.1")
ALL_ROUTERS_V4: Final = IPv4Address("224.0.0.2")
IGMPV3_ROUTERS: Final = IPv4Address("224.0.0.22")
ALL_NODES: Final = IPv6Address("ff02::1")
ALL_ROUTERS_V6: Final = IPv6Address("ff02::2")
MLDV2_ROUTERS: Final = IPv6Address("ff02::16")

# Record types (RFC 3376 4.2.12, RFC 3810 5.2.12).
MODE_IS_EXCLUDE: Final = 2
CHANGE_TO_INCLUDE: Final = 3
CHANGE_TO_EXCLUDE: Final = 4

_IGMP_QUERY, _IGMPV2_REPORT, _IGMPV2_LEAVE, _IGMPV3_REPORT = 0x11, 0x16, 0x17, 0x22
MLD_QUERY: Final = 130
_MLDV1_REPORT, _MLDV1_DONE, _MLDV2_REPORT = 131, 132, 143


def _csum(data: bytes, initial: int = 0) -> int:
    return ~ones_sum(data, initial) & 0xFFFF


def link_local_from_mac(mac: int) -> IPv6Address:
    """fe80::/64 with the modified EUI-64 of ``mac`` (RFC 4291 appendix A)."""
    b = mac.to_bytes(6, "big")
    eui = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


Sources = frozenset[IPAddr] | None  # None: any source (ASM); a set: only those (SSM)
_MISSING: Final = frozenset({IPv4Address("0.0.0.0")})  # a group not joined at all (sentinel)

# Record types beyond the any-source ones (RFC 3376 4.2.12).
MODE_IS_INCLUDE: Final = 1
ALLOW_NEW_SOURCES: Final = 5
BLOCK_OLD_SOURCES: Final = 6

Record = tuple[int, IPAddr, tuple[IPAddr, ...]]  # (type, group, sources)


@dataclass
class _Pending:
    """Records to send at ``at`` (one family), each valid while its group is in ``states``."""

    at: int
    v6: bool
    records: list[Record]
    states: dict[IPAddr, Sources]


def _changes(group: IPAddr, old: Sources, new: Sources) -> list[Record]:
    """The state-change records from ``old`` to ``new`` (RFC 3376 section 5.1)."""
    if old == new:
        return []
    if new is None:  # now any source
        return [(CHANGE_TO_EXCLUDE, group, ())]
    if new is _MISSING:
        return (
            [(CHANGE_TO_INCLUDE, group, ())]
            if old is None
            else [(BLOCK_OLD_SOURCES, group, tuple(sorted(old, key=str)))]
        )
    if old is None:  # from any source to some: say which
        return [(CHANGE_TO_INCLUDE, group, tuple(sorted(new, key=str)))]
    before = frozenset() if old is _MISSING else old
    out: list[Record] = []
    if new - before:
        out.append((ALLOW_NEW_SOURCES, group, tuple(sorted(new - before, key=str))))
    if before - new:
        out.append((BLOCK_OLD_SOURCES, group, tuple(sorted(before - new, key=str))))
    return out


class GroupReporter:
    """The IGMP/MLD side of one stack (module docstring). ``emit`` queues a frame; the
    addresses come from ``source_v4`` / the stack's MAC; ``random`` gives random bytes."""

    def __init__(
        self,
        mac: int,
        emit: Emit,
        source_v4: Callable[[], IPv4Address | None],
        has_v6: Callable[[], bool],
        random: Callable[[int], bytes],
    ) -> None:
        self.mac = mac
        self._emit = emit
        self._source_v4 = source_v4
        self._has_v6 = has_v6
        self._random = random
        self.groups: dict[IPAddr, Sources] = {}
        self._pending: list[_Pending] = []
        self._v2_querier_until = -(10**12)  # IGMPv2 compatibility
        self._v1_mld_querier_until = -(10**12)  # MLDv1 compatibility
        self.sent = 0

    # --- the stack's group set

    def update(self, groups: dict[IPAddr, Sources], now: int) -> None:
        """The stack's groups now, each with its sources (None: any): what changed is
        reported, at once and again ``UNSOLICITED_MS`` later."""
        old = self.groups
        self.groups = dict(groups)
        for v6 in (False, True):
            records: list[Record] = []
            for g in sorted(set(old) | set(groups), key=str):
                if isinstance(g, IPv6Address) != v6 or not self._reported(g):
                    continue
                records += _changes(g, old.get(g, _MISSING), groups.get(g, _MISSING))
            if records:
                states = {r[1]: self.groups.get(r[1], _MISSING) for r in records}
                self._send(v6, records, now)
                self._pending.append(_Pending(now + UNSOLICITED_MS, v6, records, states))

    @staticmethod
    def _reported(group: IPAddr) -> bool:
        return group not in (ALL_HOSTS, ALL_NODES)

    # --- queries

    def igmp_received(self, body: bytes, now: int) -> None:
        """An IGMP message (only queries matter to a host)."""
        if len(body) < 8 or body[0] != _IGMP_QUERY or _csum(body) != 0:
            return
        group = IPv4Address(body[4:8])
        if len(body) == 8:  # IGMPv1 (max resp 0) or v2
            self._v2_querier_until = now + OLDER_QUERIER_MS
            max_ms = (body[1] or 100) * 100
        else:
            max_ms = _decode_code(body[1], 8) * 100
        self._answer(False, group, max_ms, now)

    def mld_received(self, body: bytes, now: int) -> None:
        """An MLD query (ICMPv6 type 130; its checksum was checked by the ICMPv6 layer)."""
        if len(body) < 24 or body[0] != MLD_QUERY:
            return
        max_ms = struct.unpack_from("!H", body, 4)[0]
        if len(body) == 24:
            self._v1_mld_querier_until = now + OLDER_QUERIER_MS
        else:
            max_ms = _decode_code(max_ms, 12)
        self._answer(True, IPv6Address(body[8:24]), max_ms, now)

    def _answer(self, v6: bool, group: IPAddr, max_ms: int, now: int) -> None:
        if group.is_unspecified:
            asked = [g for g in self.groups if isinstance(g, IPv6Address) == v6]
        else:
            asked = [group] if group in self.groups else []
        records = [self._current(g) for g in sorted(asked, key=str) if self._reported(g)]
        if not records:
            return
        delay = int.from_bytes(self._random(2), "big") % max(1, max_ms)
        states = {r[1]: self.groups[r[1]] for r in records}
        self._pending.append(_Pending(now + delay, v6, records, states))

    def _current(self, group: IPAddr) -> Record:
        sources = self.groups[group]
        if sources is None:
            return (MODE_IS_EXCLUDE, group, ())
        return (MODE_IS_INCLUDE, group, tuple(sorted(sources, key=str)))

    # --- timers

    def next_deadline(self) -> int | None:
        if not self._pending:  # the usual case, asked on every pump
            return None
        return min(p.at for p in self._pending)

    def due(self, now: int) -> None:
        ready = [p for p in self._pending if p.at <= now]
        if not ready:
            return
        self._pending = [p for p in self._pending if p.at > now]
        for p in ready:
            # Only what still describes the group: a later change made its own records.
            records = [r for r in p.records if self.groups.get(r[1], _MISSING) == p.states[r[1]]]
            if records:
                self._send(p.v6, records, now)

    # --- messages

    def _send(self, v6: bool, records: list[Record], now: int) -> None:
        if v6:
            self._send_mld([r for r in records if isinstance(r[1], IPv6Address)], now)
        else:
            self._send_igmp([r for r in records if isinstance(r[1], IPv4Address)], now)

    @staticmethod
    def _encode_records(records: list[Record]) -> bytes:
        return b"".join(
            struct.pack("!BBH", kind, 0, len(srcs)) + g.packed + b"".join(s.packed for s in srcs)
            for kind, g, srcs in records
        )

    def _still_joined(self, group: IPAddr) -> bool:
        return group in self.groups

    def _send_mld(self, records: list[Record], now: int) -> None:
        if not records or not self._has_v6():
            return
        if now < self._v1_mld_querier_until:  # MLDv1: no sources, a report or a done
            for _, g, _ in records:
                assert isinstance(g, IPv6Address)
                joined = self._still_joined(g)
                dst = g if joined else ALL_ROUTERS_V6
                msg = struct.pack("!BBHH2x", _MLDV1_REPORT if joined else _MLDV1_DONE, 0, 0, 0)
                self._mld(dst, msg + g.packed)
            return
        body = self._encode_records(records)
        self._mld(MLDV2_ROUTERS, struct.pack("!BBH2xH", _MLDV2_REPORT, 0, 0, len(records)) + body)

    def _send_igmp(self, records: list[Record], now: int) -> None:
        src = self._source_v4()
        if not records or src is None:
            return
        if now < self._v2_querier_until:  # IGMPv2: no sources, a report or a leave
            for _, g, _ in records:
                assert isinstance(g, IPv4Address)
                joined = self._still_joined(g)
                dst = g if joined else ALL_ROUTERS_V4
                v2 = bytearray(
                    struct.pack("!BBH", _IGMPV2_REPORT if joined else _IGMPV2_LEAVE, 0, 0)
                    + g.packed
                )
                struct.pack_into("!H", v2, 2, _csum(bytes(v2)))
                self._igmp(src, dst, bytes(v2))
            return
        body = self._encode_records(records)
        v3 = bytearray(struct.pack("!BxH2xH", _IGMPV3_REPORT, 0, len(records)) + body)
        struct.pack_into("!H", v3, 2, _csum(bytes(v3)))
        self._igmp(src, IGMPV3_ROUTERS, bytes(v3))

    def _igmp(self, src: IPv4Address, dst: IPv4Address, msg: bytes) -> None:
        """IPv4 with TTL 1 and the Router Alert option (RFC 2113)."""
        total = 24 + len(msg)
        ident = int.from_bytes(self._random(2), "big")
        hdr = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x46,
                0xC0,
                total,
                ident,
                0,
                1,
                PROTO_IGMP,
                0,
                src.packed,
                dst.packed,
            )
            + b"\x94\x04\x00\x00"
        )
        struct.pack_into("!H", hdr, 10, _csum(bytes(hdr)))
        self.sent += 1
        self._emit(multicast_mac(dst), ETHERTYPE_IPV4, bytes(hdr) + msg)

    def _mld(self, dst: IPv6Address, msg: bytes) -> None:
        """IPv6 from our link-local address, hop limit 1, with a hop-by-hop Router Alert."""
        src = link_local_from_mac(self.mac)
        icmp = bytearray(msg)
        struct.pack_into("!H", icmp, 2, 0)
        csum = _csum(bytes(icmp), pseudo_header_sum_v6(src.packed, dst.packed, 58, len(icmp)))
        struct.pack_into("!H", icmp, 2, csum)
        hop_by_hop = bytes((58, 0, 5, 2, 0, 0, 1, 0))  # Router Alert (MLD), PadN
        payload = hop_by_hop + bytes(icmp)
        hdr = struct.pack("!IHBB", 0x60000000, len(payload), 0, 1) + src.packed + dst.packed
        self.sent += 1
        self._emit(multicast_mac(dst), ETHERTYPE_IPV6, hdr + payload)


def _decode_code(code: int, mant_bits: int) -> int:
    """IGMPv3's Max Resp Code / MLDv2's Maximum Response Code: literal below 128 (or 32768),
    else a floating point form (RFC 3376 4.1.1, RFC 3810 5.1.3)."""
    if mant_bits == 8:  # IGMPv3: 1 bit, 3 exp, 4 mant
        if code < 128:
            return code
        return ((code & 0x0F) | 0x10) << (((code >> 4) & 0x07) + 3)
    if code < 32768:  # MLDv2: 1 bit, 3 exp, 12 mant
        return code
    return ((code & 0x0FFF) | 0x1000) << (((code >> 12) & 0x07) + 3)
