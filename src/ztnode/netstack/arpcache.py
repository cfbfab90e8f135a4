"""A bounded, sans-I/O neighbor cache shared by ARP (IPv4) and NDP (IPv6) resolution.

Resolved entries live in an LRU dict of at most ``max_entries`` with a lifetime of ``ttl_ms``.
Packets waiting for a resolution are queued per next hop, at most ``max_queued_bytes`` each
(a packet costs its length plus :data:`PACKET_OVERHEAD`; the oldest goes first, as Linux's
``unres_qlen_bytes``, whose default this is: a program that opens a thousand connections to a
host not resolved yet has all its SYNs sent once the answer comes, not 32 of them and the
rest a second later), at most ``max_pending`` next hops at once (the oldest is evicted);
``dropped`` counts the packets either bound dropped. A pending next hop is solicited up to
``retries`` times, ``retry_ms`` apart; then its packets are dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

IPAddr = IPv4Address | IPv6Address

#: What a queued packet costs beyond its bytes (the objects holding it), as Linux charges a
#: buffer's truesize against the queue.
PACKET_OVERHEAD: Final = 128


@dataclass(slots=True)
class _Pending:
    next_at: int
    tries: int = 1
    packets: deque[tuple[int, bytes]] = field(default_factory=deque)
    queued_bytes: int = 0


class NeighborCache:
    """IP address -> MAC with a bounded queue of packets awaiting resolution."""

    def __init__(
        self,
        *,
        max_entries: int = 256,
        max_pending: int = 64,
        max_queued_bytes: int = 212_992,
        retries: int = 3,
        retry_ms: int = 1000,
        ttl_ms: int = 300_000,
    ) -> None:
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.max_queued_bytes = max_queued_bytes
        self.retries = retries
        self.retry_ms = retry_ms
        self.ttl_ms = ttl_ms
        self._entries: dict[IPAddr, tuple[int, int]] = {}
        self._pending: dict[IPAddr, _Pending] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ip: IPAddr, now: int) -> int | None:
        """The MAC for ``ip`` if resolved and not expired."""
        e = self._entries.get(ip)
        if e is None:
            return None
        mac, expires = e
        if expires <= now:
            del self._entries[ip]
            return None
        return mac

    def knows(self, ip: IPAddr) -> bool:
        """Whether ``ip`` is cached or being resolved (RFC 826 "merge" rule)."""
        return ip in self._entries or ip in self._pending

    def learn(self, ip: IPAddr, mac: int, now: int) -> list[tuple[int, bytes]]:
        """Record ``ip`` at ``mac``; returns the ``(ethertype, packet)`` queued for it."""
        self._entries.pop(ip, None)
        self._entries[ip] = (mac, now + self.ttl_ms)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]
        p = self._pending.pop(ip, None)
        return list(p.packets) if p is not None else []

    def enqueue(self, ip: IPAddr, ethertype: int, packet: bytes, now: int) -> bool:
        """Queue a packet for an unresolved ``ip``; True when a solicitation must go out now."""
        p = self._pending.get(ip)
        new = p is None
        if p is None:
            while len(self._pending) >= self.max_pending:
                old = self._pending.pop(next(iter(self._pending)))
                self.dropped += len(old.packets)
            p = _Pending(now + self.retry_ms)
            self._pending[ip] = p
        cost = len(packet) + PACKET_OVERHEAD
        while p.packets and p.queued_bytes + cost > self.max_queued_bytes:
            p.queued_bytes -= len(p.packets.popleft()[1]) + PACKET_OVERHEAD
            self.dropped += 1
        p.packets.append((ethertype, packet))
        p.queued_bytes += cost
        return new

    def due(self, now: int) -> tuple[list[IPAddr], list[IPAddr]]:
        """Next hops to solicit again, and next hops given up on (their packets dropped)."""
        again: list[IPAddr] = []
        failed: list[IPAddr] = []
        for ip, p in list(self._pending.items()):
            if p.next_at > now:
                continue
            if p.tries >= self.retries:
                del self._pending[ip]
                self.dropped += len(p.packets)
                failed.append(ip)
            else:
                p.tries += 1
                p.next_at = now + self.retry_ms
                again.append(ip)
        return again, failed

    def next_deadline(self) -> int | None:
        if not self._pending:  # the usual case, asked on every pump
            return None
        return min(p.next_at for p in self._pending.values())


__all__ = ["IPAddr", "NeighborCache"]
