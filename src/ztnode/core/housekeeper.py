"""Periodic work (Node::processBackgroundTasks and Peer::doPingAndKeepalive): keeping upstreams
and active peers reachable, expiring paths and peers, pruning every table, and the node's
online state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ztnode.core import events as ev
from ztnode.core.network import (
    MULTICAST_ANNOUNCE_PERIOD,
)
from ztnode.core.peer import (
    PEER_ACTIVITY_TIMEOUT,
    PEER_PING_PERIOD,
    Peer,
    PeerPath,
)
from ztnode.core.timing import (
    HOUSEKEEPING_PERIOD,
    LEAF_ALWAYS_CONTACT_SCALE,
    PATH_HEARTBEAT,
    PING_CHECK_INTERVAL,
    ROOT_HELLO_SCALE,
)
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError
from ztnode.identity import address_to_str

if TYPE_CHECKING:
    from ztnode.core.node import Node

log = logging.getLogger("ztnode.core")


class Housekeeper:
    """See the module docstring."""

    def __init__(self, rt: Node, now: int) -> None:
        self.rt = rt
        self.online = False
        self._last_ping_check = now - PING_CHECK_INTERVAL  # first check runs at once
        self._last_housekeeping = now

    def next_deadline(self) -> int:
        return min(
            self._last_ping_check + PING_CHECK_INTERVAL,
            self._last_housekeeping + HOUSEKEEPING_PERIOD,
        )

    def run_due(self, now: int) -> None:
        """The ping check every ``PING_CHECK_INTERVAL``, housekeeping every
        ``HOUSEKEEPING_PERIOD``."""
        if now - self._last_ping_check >= PING_CHECK_INTERVAL:
            self._last_ping_check = now
            self._ping_check(now)
        if now - self._last_housekeeping >= HOUSEKEEPING_PERIOD:
            self._last_housekeeping = now
            self._housekeeping(now)

    def make_upstream_peers(self) -> None:
        for a, ident in self.rt.topology.upstream_identities.items():
            if a not in self.rt.peers:
                try:
                    self.rt.add_peer(
                        ident, SymmetricKey(self.rt.identity.agree(ident)), self.rt.now
                    )
                except CryptoError:
                    log.warning("root %s has an unusable key", address_to_str(a))

    def _ping_check(self, now: int) -> None:
        """Every 5 s: keep upstreams and active peers reachable (9.2)."""
        for a in self.rt.topology.always_contact():
            peer = self.rt.peers.get(a)
            if peer is None:
                self.rt.whois.request(a, now)
                continue
            upstream = self.rt.topology.is_upstream(a)
            has_paths = bool(peer.paths)
            scale = (
                (ROOT_HELLO_SCALE if upstream else LEAF_ALWAYS_CONTACT_SCALE) if has_paths else 0
            )
            if scale and now - peer.last_sent_full_hello <= PATH_HEARTBEAT * scale:
                continue
            sent = self._keepalive(peer, now)
            for want_v6 in (False, True):
                if sent & (2 if want_v6 else 1):
                    continue
                eps = [
                    e
                    for e in self.rt.topology.stable_endpoints.get(a, ())
                    if e.is_ipv6() == want_v6 and self.rt.local_for(e.to_sockaddr()) is not None
                ]
                if eps:
                    e = eps[self.rt.rng.randrange(len(eps))]
                    remote = e.to_sockaddr()
                    local = self.rt.local_for(remote)
                    if local is not None:
                        self.rt.switch.send_hello(peer, self.rt.path_for(local, remote), now)
                        sent |= 2 if want_v6 else 1
            if not sent and not self.rt.topology.stable_endpoints.get(a):
                self.rt.switch.send_hello(peer, None, now)
        for net in list(self.rt.networks.values()):
            if net.needs_config_request(now):
                self.rt.vl2.request_config(net, now)
            if net.config is not None and now - net.last_announce >= MULTICAST_ANNOUNCE_PERIOD:
                self.rt.multicaster.announce(net, now)
            net.expire_multicast(now)
        always = set(self.rt.topology.always_contact())
        for peer in list(self.rt.peers.values()):
            if peer.address not in always and peer.active(now):
                self._keepalive(peer, now)
            else:
                # Not kept warm, but its lapsed paths still end (and say so) on time.
                self.expire_paths(peer, now)
        # A root is always online (Node.cpp: ``... || RR->topology->amUpstream()``).
        self.set_online(
            self.rt.topology.am_upstream
            or any(
                (p := self.rt.peers.get(a)) is not None
                and p.last_receive > 0
                and now - p.last_receive < PEER_ACTIVITY_TIMEOUT
                for a in self.rt.topology.upstreams
            )
        )

    def expire_paths(self, peer: Peer, now: int) -> None:
        had = bool(peer.paths)
        self._removed(peer, peer.expire_paths(now), "expired", had)

    def drop_paths(self, peer: Peer, gone: list[PeerPath], why: str) -> None:
        """Take ``gone`` out of the peer's paths at once (the operator's rules now refuse
        them), said as paths going down."""
        had = bool(peer.paths)
        peer.paths = [s for s in peer.paths if s not in gone]
        self._removed(peer, gone, why, had)

    def _removed(self, peer: Peer, gone: list[PeerPath], why: str, had: bool) -> None:
        if gone:
            self.rt.frames.routes.clear()  # a remembered route may go through one of them
        for slot in gone:
            self.rt.bonds.path_removed(peer.address, slot.path)
            self.rt.events.append(ev.PathDown(peer.address, slot.path.local, slot.path.remote, why))
        if had and not peer.paths:
            self.rt.events.append(ev.PeerRelayed(peer.address))

    def _keepalive(self, peer: Peer, now: int) -> int:
        """doPingAndKeepalive: HELLO every 60 s, ECHO on idle paths; drop expired paths."""
        full = now - peer.last_sent_full_hello >= PEER_PING_PERIOD
        self.expire_paths(peer, now)
        if self.rt.bonds.in_use:
            self.rt.bonds.consider(peer, now)
        sent = 0
        for slot in list(peer.paths):
            p = slot.path
            if full or p.needs_heartbeat(now):
                self.rt.switch.contact(peer, p, now, full_hello=full)
                sent |= 2 if p.is_ipv6 else 1
        if full and sent:
            peer.last_sent_full_hello = now
        return sent

    def _housekeeping(self, now: int) -> None:
        upstreams = set(self.rt.topology.upstreams)
        for a in [a for a, p in self.rt.peers.items() if a not in upstreams and not p.alive(now)]:
            del self.rt.peers[a]
            self.rt.bonds.peer_removed(a)
            self.rt.events.append(ev.PeerRemoved(a))
        used = {s.path for p in self.rt.peers.values() for s in p.paths}
        for k in [k for k, p in self.rt.paths.items() if p not in used and not p.alive(now)]:
            self.rt.forget_path(k)
        rt = self.rt
        rt.selfaware.clean(now)
        rt.validator.prune(now)
        rt.switch.prune(now)
        rt.vl1.prune(now, used)
        rt.relay.prune(now)
        rt.multicaster.prune(now)
        rt.reassembler.expire(now)
        for net in rt.networks.values():
            net.bridge_routes.prune(now)

    def set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self.rt.events.append(ev.NodeOnline() if online else ev.NodeOffline())
