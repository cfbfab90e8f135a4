"""Flows: which packets belong together, so balance-xor and balance-aware keep each
conversation on one path (no reordering inside a TCP connection).

A flow id is ``srcPort ^ dstPort ^ protocol`` for TCP, UDP, SCTP and UDP-Lite over IPv4 and
IPv6, as ZeroTierOne 1.14.1 computes it in ``Switch::onLocalEthernet``; everything else (ICMP,
ARP, fragments past the first...) is ``NO_FLOW`` and may go on any path. Both directions of a
connection get the same id, so a flow first seen inbound is answered on the path it came in on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

NO_FLOW: Final = -1
FLOW_MAX_COUNT: Final = 64 * 1024  # ZT_FLOW_MAX_COUNT: the table's bound
FLOW_EXPIRATION: Final = 4 * 60_000 + 3_000  # flows idle this long are forgotten

_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_PORTED: Final = frozenset((6, 17, 132, 136))  # TCP, UDP, SCTP, UDP-Lite
# IPv6 extension headers walked to reach the transport header (hop-by-hop, routing,
# destination options, mobility); a fragment header ends the walk as in the reference.
_IPV6_EXTENSIONS: Final = frozenset((0, 43, 60, 135))


def flow_id(ethertype: int, ip: bytes | bytearray | memoryview) -> int:
    """The flow of an Ethernet payload (an IP packet), or ``NO_FLOW``."""
    if ethertype == _ETHERTYPE_IPV4:
        if len(ip) < 20:
            return NO_FLOW
        proto = ip[9]
        pos = 4 * (ip[0] & 0x0F)
    elif ethertype == _ETHERTYPE_IPV6:
        if len(ip) < 40:
            return NO_FLOW
        proto, pos = _ipv6_payload(ip)
    else:
        return NO_FLOW
    if proto not in _PORTED or len(ip) <= pos + 4:
        return NO_FLOW
    src = ip[pos] << 8 | ip[pos + 1]
    dst = ip[pos + 2] << 8 | ip[pos + 3]
    return src ^ dst ^ proto


def _ipv6_payload(ip: bytes | bytearray | memoryview) -> tuple[int, int]:
    proto, pos = ip[6], 40
    while proto in _IPV6_EXTENSIONS and pos + 8 <= len(ip):  # each step moves >= 8 bytes
        proto, pos = ip[pos], pos + 8 + ip[pos + 1] * 8
    return proto, pos


@dataclass(slots=True)
class Flow:
    """One flow's assignment to a bond path (by the path's slot in the bond)."""

    id: int
    slot: int
    created: int
    last_activity: int
    bytes_in: int = 0
    bytes_out: int = 0


class FlowTable:
    """Flows by id, bounded by ``FLOW_MAX_COUNT`` (the oldest goes first; counted)."""

    __slots__ = ("_flows", "evicted", "limit")

    def __init__(self, limit: int = FLOW_MAX_COUNT) -> None:
        self._flows: dict[int, Flow] = {}
        self.limit = limit
        #: Flows forgotten because the table was full.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self._flows.values()))

    def get(self, fid: int) -> Flow | None:
        return self._flows.get(fid)

    def add(self, fid: int, slot: int, now: int) -> tuple[Flow, Flow | None]:
        """A new flow on ``slot``; returns it and the flow evicted to make room, if any."""
        evicted: Flow | None = None
        if len(self._flows) >= self.limit:
            oldest = min(self._flows.values(), key=lambda f: f.last_activity)
            evicted = self._flows.pop(oldest.id)
            self.evicted += 1
        flow = self._flows[fid] = Flow(fid, slot, now, now)
        return flow, evicted

    def expire(self, now: int, age: int = FLOW_EXPIRATION) -> list[Flow]:
        gone = [f for f in self._flows.values() if now - f.last_activity > age]
        for f in gone:
            del self._flows[f.id]
        return gone

    def clear(self) -> None:
        self._flows.clear()
