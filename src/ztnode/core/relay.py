"""Relaying (protocol-core.md 9.6, 9.7): forwarding packets and fragments not addressed to us,
and introducing the two ends of a relayed conversation to each other (RENDEZVOUS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.peer import (
    Peer,
)
from ztnode.core.timing import (
    MIN_UNITE_INTERVAL,
)
from ztnode.wire.constants import (
    RELAY_MAX_HOPS,
    Verb,
)
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import (
    Rendezvous,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node


class Relay:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._unite: dict[tuple[int, int], int] = {}

    def prune(self, now: int) -> None:
        """Forget introductions old enough to be made again (housekeeping)."""
        self._unite = {k: t for k, t in self._unite.items() if now - t < MIN_UNITE_INTERVAL}

    def relay(
        self,
        buf: bytearray,
        dest: int,
        src: int | None,
        path: Path,
        now: int,
        *,
        fragment: bool,
    ) -> None:
        """Forward a packet or fragment not addressed to us, if we may (9.6)."""
        if not (self.rt.topology.am_upstream or path.trust_established(now)):
            self.rt.counters.drop(Drop.NOT_FOR_US)
            return
        if fragment:
            hops = buf[15]
            if hops >= RELAY_MAX_HOPS:
                self.rt.counters.drop(Drop.RELAY_HOPS)
                return
            buf[15] = hops + 1
        else:
            hops = buf[18] & 7
            if hops >= RELAY_MAX_HOPS:
                self.rt.counters.drop(Drop.RELAY_HOPS)
                return
            buf[18] = (buf[18] & 0xF8) | (hops + 1)
        target = self.rt.peers.get(dest)
        out: Path | None = None
        if target is not None:
            out = target.best_path(now)
            if out is None:
                # No confirmed live path: a direct address that just carried authenticated
                # traffic from the target is better than dropping (and we confirm it).
                out = self.rt.switch.reconfirm(target, now)
        if out is not None:
            self.rt.switch.emit(out, buf, now)
            if src is not None and target is not None:
                self._maybe_unite(src, target, now)
            return
        up = self.rt.switch.best_upstream(now, exclude=src)
        up_path = up.best_path(now) if up is not None else None
        if up is not None and up_path is not None and up.address != src:
            self.rt.switch.emit(up_path, buf, now)
            return
        if target is None and self.rt.topology.am_upstream:
            self.rt.whois.request(dest, now)
        self.rt.counters.drop(Drop.RELAY_NO_ROUTE)

    def _maybe_unite(self, src: int, target: Peer, now: int) -> None:
        """Send RENDEZVOUS to two peers we relay between, at most every 30 s (9.7)."""
        a = self.rt.peers.get(src)
        if a is None:
            return
        key = (min(src, target.address), max(src, target.address))
        if now - self._unite.get(key, -(10**12)) < MIN_UNITE_INTERVAL:
            return
        pair = self._unite_paths(a, target, now)
        if pair is None:
            return
        self._unite[key] = now
        pa, pb = pair
        sends = [(a, target.address, pb), (target, a.address, pa)]
        self.rt.rng.shuffle(sends)
        for who, other, other_path in sends:
            host, port = other_path.remote
            rv = Rendezvous.create(other, InetAddress.parse(f"{host}/{port}"))
            dest_path = who.best_path(now)
            if dest_path is not None:
                self.rt.switch.send_on(who, dest_path, Verb.RENDEZVOUS, rv.encode(), now)

    def _unite_paths(self, a: Peer, b: Peer, now: int) -> tuple[Path, Path] | None:
        """The best pair of live paths of both peers in a shared scope (highest, IPv6 first)."""
        best: tuple[int, int, Path, Path] | None = None
        for sa in a.paths:
            if not sa.path.alive(now):
                continue
            for sb in b.paths:
                if not sb.path.alive(now) or sb.path.scope != sa.path.scope:
                    continue
                if sa.path.is_ipv6 != sb.path.is_ipv6:
                    continue
                rank = (int(sa.path.scope), 1 if sa.path.is_ipv6 else 0)
                if best is None or rank > best[:2]:
                    best = (rank[0], rank[1], sa.path, sb.path)
        return None if best is None else (best[2], best[3])
