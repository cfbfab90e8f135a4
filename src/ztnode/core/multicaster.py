"""Multicast (ZeroTierOne's Multicaster, protocol-network.md §7): our subscriptions and their
announcements (MULTICAST_LIKE), gathering members, sending multicast and broadcast frames with
the pending queue for groups still being gathered, receiving MULTICAST_FRAME, and the root's
table of who likes what (``MAX_ROOT_LIKES`` entries at most, each for ``MULTICAST_LIKE_EXPIRE``,
pruned by housekeeping)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ztnode.core.counters import Drop
from ztnode.core.likes import LikeTable
from ztnode.core.network import (
    BROADCAST_MAC,
    MULTICAST_ANNOUNCE_PERIOD,
    MULTICAST_GATHER_INTERVAL,
    MULTICAST_PENDING_MAX,
    MULTICAST_PENDING_TIMEOUT,
    Network,
    PendingMulticast,
)
from ztnode.core.path import Path
from ztnode.core.peer import (
    Peer,
)
from ztnode.core.records import Rx
from ztnode.core.timing import (
    LIKES_PER_PACKET,
    MAX_ROOT_LIKES,
    MULTICAST_LIKE_EXPIRE,
)
from ztnode.errors import LocalProtocolError
from ztnode.wire.constants import (
    Verb,
)
from ztnode.wire.credentials import NetworkCredentials
from ztnode.wire.mac import mac_from_address
from ztnode.wire.verbs import (
    Error,
    GatherResults,
    MulticastFrame,
    MulticastGather,
    MulticastLike,
    MulticastSubscription,
    OkMulticastFrame,
    OkMulticastGather,
)
from ztnode.wire.verbs.replies import OK_MULTICAST_FRAME_FLAG_GATHER

if TYPE_CHECKING:
    from ztnode.core.node import Node


ETHERTYPE_ARP: Final = 0x0806


def _is_arp_request(frame: bytes) -> bool:
    """An Ethernet/IPv4 ARP request (htype 1, ptype 0x0800, hlen 6, plen 4, op 1)."""
    return len(frame) >= 28 and frame[0:8] == b"\x00\x01\x08\x00\x06\x04\x00\x01"


class Multicaster:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        #: Root role: every member's LIKEs, to answer gathers (bounded, see ``MAX_ROOT_LIKES``).
        self._likes: LikeTable[tuple[int, int, int]] = LikeTable(MAX_ROOT_LIKES)

    def subscribe(self, network_id: int, mac: int, adi: int, now: int) -> None:
        """Join a multicast group on a network; it is announced (LIKE) at once."""
        net = self.rt.networks.get(network_id)
        if net is None:
            raise LocalProtocolError(f"not a member of network {network_id:016x}")
        if (mac, adi) not in net.subscriptions:
            net.subscriptions.add((mac, adi))
            self.announce(net, now, [(mac, adi)])

    def unsubscribe(self, network_id: int, mac: int, adi: int) -> None:
        """Leave a group; like the reference, others simply let our LIKE age out."""
        net = self.rt.networks.get(network_id)
        if net is not None:
            net.subscriptions.discard((mac, adi))

    def prune(self, now: int) -> None:
        """Root role: forget LIKEs past ``MULTICAST_LIKE_EXPIRE`` (housekeeping)."""
        self._likes.expire(now, MULTICAST_LIKE_EXPIRE)

    def announce(self, net: Network, now: int, groups: list[tuple[int, int]] | None = None) -> None:
        """MULTICAST_LIKE our groups to the network's controller and to the roots, which answer
        other members' gathers for us (§7.1)."""
        new_groups = groups is not None  # a new subscription: to every member at once
        if groups is None:
            groups = net.announced_groups()
            net.last_announce = now
        if not groups:
            return
        subs = [MulticastSubscription(net.id, mac, adi) for mac, adi in groups]
        targets = dict.fromkeys([net.controller, *self.rt.topology.upstreams])
        for i in range(0, len(subs), LIKES_PER_PACKET):
            body = MulticastLike(tuple(subs[i : i + LIKES_PER_PACKET])).encode()
            for t in targets:
                if t != self.rt.address:
                    self.rt.switch.send(t, Verb.MULTICAST_LIKE, body, now, compress=True)
        # ... and to the members we hold in good standing (Network::_announceMulticastGroups):
        # every group of ours to those whose 60 s gate elapsed, a new group to all of them.
        for address, m in list(net.memberships.items()):
            if address in targets or address == self.rt.address:
                continue
            if not new_groups and now - m.last_like_sent < MULTICAST_ANNOUNCE_PERIOD:
                continue
            peer = self.rt.peers.get(address)
            if peer is None or not net.gate(address, peer.identity):
                continue
            if not new_groups:
                m.last_like_sent = now
            self.announce_to(net, address, now)

    def gate(self, net: Network, peer: Peer, now: int) -> bool:
        """The membership gate on traffic from ``peer``, and what passing it does in
        Network::gate: a member in good standing hears our groups (a LIKE) at most every 60 s,
        so a member that joined after our last gather is told whom to send multicasts to by
        the members it talks to, and they learn it the same way."""
        if not net.gate(peer.address, peer.identity):
            return False
        m = net.membership(peer.address)
        if now - m.last_like_sent >= MULTICAST_ANNOUNCE_PERIOD:
            m.last_like_sent = now
            self.announce_to(net, peer.address, now)
        return True

    def announce_to(self, net: Network, peer: int, now: int) -> None:
        """MULTICAST_LIKE every group of ours on ``net`` to one member, our COM ahead of it
        (as ZeroTierOne 1.x did: its gate must pass for the LIKE to count). Only the COM: tags
        and capabilities still go with our frames, so a member never holds ones older than
        the frames it judges."""
        groups = net.announced_groups()
        if not groups or peer == self.rt.address:
            return
        cfg = net.config
        if cfg is not None and cfg.com is not None and not cfg.is_public:
            com = NetworkCredentials(coms=(cfg.com,)).encode()
            self.rt.switch.send(peer, Verb.NETWORK_CREDENTIALS, com, now, compress=True)
        subs = [MulticastSubscription(net.id, mac, adi) for mac, adi in groups]
        for i in range(0, len(subs), LIKES_PER_PACKET):
            body = MulticastLike(tuple(subs[i : i + LIKES_PER_PACKET])).encode()
            self.rt.switch.send(peer, Verb.MULTICAST_LIKE, body, now, compress=True)

    def send_frame(
        self,
        net: Network,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
        *,
        source_mac: int | None = None,
    ) -> bool:
        """A multicast (``source_mac``: a bridged host's, carried in the frame)."""
        cfg = net.config
        if cfg is None:
            return False
        adi = 0
        why = "multicast disabled" if cfg.multicast_limit == 0 else ""
        if dest_mac == BROADCAST_MAC:
            if ethertype == ETHERTYPE_ARP and _is_arp_request(payload):
                adi = int.from_bytes(payload[24:28], "big")  # ARP: one group per target IP
            elif not cfg.enable_broadcast:
                why = "broadcast disabled"  # checked first, as in Switch::onLocalEthernet
        if why:
            smac = source_mac or net.mac
            self.rt.tracer.outgoing_dropped(net, smac, dest_mac, ethertype, len(payload), why, now)
            return False
        if not net.enforcer.accept_all and not self.rt.frames.outbound_allowed(
            net, 0, dest_mac, ethertype, payload, now, source_mac=source_mac
        ):
            return True  # the rules' first pass (destination unknown, copies allowed) dropped it
        group = (dest_mac, adi)
        known = net.members_of(group, now)
        limit = cfg.multicast_limit
        # Like the reference's Multicaster::send: while no member of the group is known,
        # every send asks again (an ARP sent before its target announced itself must not
        # leave the group unreachable for a whole gather interval).
        if len(known) < limit and (
            not known or now - net.last_gather.get(group, -(10**12)) >= MULTICAST_GATHER_INTERVAL
        ):
            net.last_gather[group] = now
            body = MulticastGather.create(net.id, dest_mac, adi, limit - len(known) + 1).encode()
            up = self.rt.switch.best_upstream(now)
            for t in dict.fromkeys([net.controller, *([up.address] if up else [])]):
                if t != self.rt.address:
                    self.rt.switch.send(t, Verb.MULTICAST_GATHER, body, now)
        self.rt.rng.shuffle(known)
        # Active bridges get every multicast (the LANs behind them may hold the group) and
        # count toward the limit, as in Multicaster::send.
        bridges = [b for b in net.bridges() if b not in known]
        recipients = bridges + known[: max(0, limit - len(bridges))]
        pending = PendingMulticast(group, ethertype, payload, source_mac or net.mac, now, set())
        self._deliver(net, pending, recipients, now)
        if len(known) < limit:
            same = [p for p in net.pending_multicasts if p.group == group]
            if len(same) >= MULTICAST_PENDING_MAX:
                net.pending_multicasts.remove(same[0])
            net.pending_multicasts.append(pending)
        return True

    def _deliver(
        self, net: Network, pending: PendingMulticast, recipients: list[int], now: int
    ) -> None:
        mac, adi = pending.group
        bridged = pending.source_mac if pending.source_mac != net.mac else None
        body = MulticastFrame.create(
            net.id, mac, adi, pending.ethertype, pending.payload, source_mac=bridged
        ).encode()
        for r in recipients:
            if r == self.rt.address or r in pending.sent_to:
                continue
            pending.sent_to.add(r)
            if not net.enforcer.accept_all and not self.rt.frames.outbound_allowed(
                net,
                r,
                mac,
                pending.ethertype,
                pending.payload,
                now,
                no_tee=True,
                source_mac=bridged,
            ):
                continue  # each recipient is filtered again, without copies
            if net.should_push_credentials(r, now):
                self.rt.credentials.push_credentials(net, r, now)
            self.rt.switch.send(r, Verb.MULTICAST_FRAME, body, now, compress=True)

    def send_pending(
        self, net: Network, group: tuple[int, int], members: list[int], now: int
    ) -> None:
        cfg = net.config
        for p in net.pending_multicasts:
            if p.group == group and now - p.created < MULTICAST_PENDING_TIMEOUT and cfg:
                room = cfg.multicast_limit - len(p.sent_to)
                self._deliver(net, p, members[: max(0, room)], now)

    def do_multicast_frame(self, rx: Rx) -> None:
        peer, payload, path, pid, hops, now = rx.peer, rx.payload, rx.path, rx.pid, rx.hops, rx.now
        m = MulticastFrame.decode(payload)
        net = self.rt.networks.get(m.network_id)
        if net is not None:
            if m.com is not None:
                self.rt.credentials.accept_com(m.network_id, m.com, now)
            sender_mac = mac_from_address(peer.address, net.id)
            source = m.source_mac if m.source_mac is not None else sender_mac
            cfg = net.config
            if not self.gate(net, peer, now):
                err = Error.need_membership_certificate(Verb.MULTICAST_FRAME, pid, net.id)
                self.rt.switch.send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
                self.rt.counters.drop(Drop.NOT_A_MEMBER)
            elif (
                cfg is None
                or cfg.multicast_limit == 0
                or not m.dest_mac >> 40 & 0x01
                or source in (0, net.mac)
                or source >> 40 & 0x01
            ):
                self.rt.counters.drop(Drop.MALFORMED)
                if cfg is not None and cfg.multicast_limit == 0:  # IncomingPacket.cpp:1303
                    self.rt.tracer.incoming_dropped(
                        net, peer.address, source, m.dest_mac, sender_mac, now, "multicast disabled"
                    )
            elif source != sender_mac and not cfg.permits_bridging(peer.address):
                self.rt.counters.drop(Drop.BRIDGING_NOT_ALLOWED)  # a bridged source, no bridge
                self.rt.tracer.incoming_dropped(
                    net, peer.address, source, m.dest_mac, sender_mac, now
                )
            else:
                if source != sender_mac:  # a host behind this bridge: learn where it sits
                    net.bridge_routes.learn(source, peer.address, now)
                if m.gather_limit:  # an implicit gather: the sender wants members
                    self._answer_implicit_gather(m, peer, path, pid, now)
                peer.last_trust_established = now
                path.last_trust_established = now
                self.rt.frames.deliver_frame(
                    net, peer.address, source, m.dest_mac, m.ethertype, m.payload, now
                )
        self.rt.vl1.received(peer, path, hops, Verb.MULTICAST_FRAME, now, m.network_id)

    def _answer_implicit_gather(
        self, m: MulticastFrame, peer: Peer, path: Path, pid: int, now: int
    ) -> None:
        """OK(MULTICAST_FRAME) with members of the group (flag 0x02), only when there are
        some (IncomingPacket::_doMULTICAST_FRAME)."""
        limit = m.gather_limit or 0
        live = self._gather(m.network_id, m.dest_mac, m.adi, limit, peer, now)
        if not live:
            return
        ok = OkMulticastFrame(
            pid,
            m.network_id,
            m.dest_mac,
            m.adi,
            OK_MULTICAST_FRAME_FLAG_GATHER,
            gather=GatherResults(len(live), tuple(live[:limit])),
        )
        self.rt.switch.send_on(peer, path, Verb.OK, ok.encode(), now, expect=False)

    def do_multicast_like(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        like = MulticastLike.decode(payload)
        for sub in like.subscriptions:
            if self.rt.topology.am_upstream:
                key = (sub.network_id, sub.mac, sub.adi)
                if not self._likes.note(key, peer.address, now):
                    self.rt.counters.drop(Drop.LIKE_TABLE_FULL)
            net = self.rt.networks.get(sub.network_id)
            if net is not None and self._may_like(net, peer, now):
                group = (sub.mac, sub.adi)
                if not net.learn_member(group, peer.address, now):
                    self.rt.counters.drop(Drop.LIKE_TABLE_FULL)
                self.send_pending(net, group, [peer.address], now)
        self.rt.vl1.received(peer, path, hops, Verb.MULTICAST_LIKE, now)

    def _may_like(self, net: Network, peer: Peer, now: int) -> bool:
        """LIKEs count from members in good standing, or from members our controller has just
        configured (they may not have pushed their credentials to us yet)."""
        if self.gate(net, peer, now):
            return True
        ctl = self.rt.controller
        return ctl is not None and ctl.has_recent_member(net.id, peer.address, now)

    def do_multicast_gather(self, rx: Rx) -> None:
        peer, payload, path, pid, hops, now = rx.peer, rx.payload, rx.path, rx.pid, rx.hops, rx.now
        g = MulticastGather.decode(payload)
        live = self._gather(g.network_id, g.mac, g.adi, g.gather_limit, peer, now)
        if live:
            ok = OkMulticastGather(
                pid, g.network_id, g.mac, g.adi, len(live), tuple(live[: g.gather_limit])
            )
            self.rt.switch.send_on(peer, path, Verb.OK, ok.encode(), now, expect=False)
        self.rt.vl1.received(peer, path, hops, Verb.MULTICAST_GATHER, now, g.network_id)

    def _gather(
        self, network_id: int, mac: int, adi: int, limit: int, peer: Peer, now: int
    ) -> list[int]:
        """The group's members a gather (explicit, or implied by a MULTICAST_FRAME) is told
        of, shuffled: a root's LIKE table, or a member's own view (itself included when it
        announces the group); never the asker."""
        net = self.rt.networks.get(network_id)
        live: list[int] = []
        if limit > 0 and self.rt.topology.am_upstream:
            members = self._likes.members((network_id, mac, adi))
            live = [
                a
                for a, t in members.items()
                if a != peer.address and now - t < MULTICAST_LIKE_EXPIRE
            ]
            # A root that is also a member of the network is in its own answers, as in
            # Multicaster::gather (a controller joined to its own network, e.g. as its DNS).
            if net is not None and (mac, adi) in net.announced_groups():
                live.append(self.rt.address)
        elif limit > 0 and net is not None and self._may_like(net, peer, now):
            group = (mac, adi)
            live = [a for a in net.members_of(group, now) if a != peer.address]
            if group in net.announced_groups():
                live.append(self.rt.address)
        self.rt.rng.shuffle(live)
        return live

    def learn_gathered(
        self, network_id: int, mac: int, adi: int, members: tuple[int, ...], now: int
    ) -> None:
        """Members a gather answered with (OK(MULTICAST_GATHER) or OK(MULTICAST_FRAME)):
        learned, and multicasts still pending for the group go to the new ones."""
        net = self.rt.networks.get(network_id)
        if net is None:
            return
        group = (mac, adi)
        fresh = [a for a in members if a not in net.members_of(group, now)]
        for a in members:
            net.learn_member(group, a, now)
        self.send_pending(net, group, fresh, now)

    def subscribers(self, network_id: int, mac: int, adi: int, now: int) -> list[int]:
        """Root role: the members that recently announced (LIKE) a multicast group."""
        members = self._likes.members((network_id, mac, adi))
        return sorted(a for a, t in members.items() if now - t < MULTICAST_LIKE_EXPIRE)
