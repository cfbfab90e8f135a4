"""The unicast frame path of every joined network, out and in (ZeroTierOne's Switch::onLocalEthernet
and IncomingPacket's FRAME/EXT_FRAME, seen from the node).

Out: every unicast frame we send leaves through :meth:`FramePath.send_frame` (a member's MAC,
or through :meth:`FramePath.send_bridged_frame` a frame from a segment we bridge) or a
:class:`~ztnode.core.records.FrameRoute` from :meth:`FramePath.frame_route`, which the host's
segmentation offload cuts on itself, with :meth:`FramePath.filter_burst` judging a burst.
In: every frame we receive (FRAME, EXT_FRAME, MULTICAST_FRAME from the
:class:`~ztnode.core.multicaster.Multicaster`, and frames the membership gate held and released
later) reaches the host through :meth:`FramePath.deliver_frame`. Those are the places a
network's rules apply, and ``deliver_frame`` is where frames from MACs that are not their
sender's (bridged) arrive. Multicast frames out are the multicaster's.

Why a part of its own: this is the per-packet code. It owns what only it touches, the
remembered routes (:class:`~ztnode.core.routecache.RouteCache`, ``routes``) and the frames
held at the membership gate while their sender's credentials are asked for (bounded by
``GATED_FRAME_QUEUE``, the oldest dropped), and it is kept apart from the networks' lifecycle
(:class:`~ztnode.core.vl2.Vl2`: join, leave, configs) and from the credentials exchange
(:class:`~ztnode.core.credentials.CredentialExchange`), which it only calls when a push is due or
an EXT_FRAME carries a COM. The switch calls :meth:`FramePath.do_frame` straight from its FRAME
fast path, and the host's offload calls ``frame_route`` per segment, so neither goes through
another layer of calls.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ztnode.core import events as ev
from ztnode.core.bond.flows import NO_FLOW, flow_id
from ztnode.core.bond.settings import BondPolicy
from ztnode.core.counters import Drop
from ztnode.core.filter import Decision
from ztnode.core.filter import Frame as FilterFrame
from ztnode.core.network import Network
from ztnode.core.path import Path
from ztnode.core.peer import Peer
from ztnode.core.records import FrameRoute, Rx
from ztnode.core.routecache import RouteCache
from ztnode.core.timing import (
    GATED_FRAME_QUEUE,
    QUEUE_TIMEOUT,
)
from ztnode.errors import LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher, Verb
from ztnode.wire.mac import (
    address_from_mac,
    first_octet_for_network,
    mac_from_address,
    mac_to_str,
)
from ztnode.wire.verbs import Error, ExtFrame, OkExtFrame

if TYPE_CHECKING:
    from ztnode.core.node import Node

#: Dropped frames, one debug line each (``--log-level rules=debug``), rate-limited per network.
rules_log = logging.getLogger("ztnode.rules")

#: At most this many bridges get a frame for a MAC no bridge was learned for (the reference's
#: ZT_MAX_BRIDGE_SPAM).
BRIDGE_FANOUT: Final = 32


def _log_drop(net: Network, way: str, member: int, d: Decision, frame: FilterFrame) -> None:
    """One debug line per dropped frame (``ztnode.rules``, rate-limited by the enforcer)."""
    why = (
        f"rule {d.rule} ({d.verdict.name})" if d.rule >= 0 else "no rule or capability accepting it"
    )
    rules_log.debug(
        "network %016x: frame %s %010x dropped by %s: ethertype 0x%04x, %d bytes, %s -> %s",
        net.id,
        way,
        member,
        why,
        frame.ethertype,
        len(frame.data),
        mac_to_str(frame.mac_source),
        mac_to_str(frame.mac_dest),
    )


@dataclass
class _GatedFrame:
    source: int
    network_id: int
    source_mac: int
    dest_mac: int
    ethertype: int
    payload: bytes
    created: int
    extended: bool


class FramePath:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        #: Unicast FRAME routes for the host's cutter, reused while their state holds.
        self.routes = RouteCache()
        self._gated_frames: deque[_GatedFrame] = deque()

    def send_frame(
        self, network_id: int, dest_mac: int, ethertype: int, payload: bytes, now: int
    ) -> bool:
        """Send an Ethernet frame to another member (unicast to a ZeroTier MAC).

        Returns False when the frame cannot go anywhere: no config yet, or a MAC that is not a
        member's (bridged and multicast delivery belong to the IP stack's layer).
        """
        net = self.rt.networks.get(network_id)
        if net is None or net.config is None:
            return False
        if dest_mac >> 40 & 0x01:
            return self.rt.multicaster.send_frame(net, dest_mac, ethertype, payload, now)
        dest = self.member_for_mac(network_id, dest_mac)
        if dest is None:
            return dest_mac != net.mac and self._send_bridged(
                net, dest_mac, ethertype, payload, now
            )
        if not net.enforcer.accept_all and not self.outbound_allowed(
            net, dest, dest_mac, ethertype, payload, now
        ):
            return True  # the rules dropped it: sent nowhere, as on any member
        if net.should_push_credentials(dest, now):
            self.rt.credentials.push_credentials(net, dest, now)
        # Frame(network_id, ethertype, payload).encode(), without the objects (the hot path).
        body = b"".join((network_id.to_bytes(8, "big"), ethertype.to_bytes(2, "big"), payload))
        flow = flow_id(ethertype, payload) if dest in self.rt.bonds.bonds else NO_FLOW
        self.rt.switch.send(dest, Verb.FRAME, body, now, flow=flow)
        return True

    def send_bridged_frame(
        self,
        network_id: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
    ) -> bool:
        """A frame from an Ethernet segment this node bridges onto the network (any source
        MAC): to a member as EXT_FRAME (a FRAME cannot carry a foreign source), to the bridge
        a foreign MAC sits behind, to every bridge for an unknown one, or as a multicast with
        its source (Switch::onLocalEthernet). Only an active bridge may: otherwise
        LocalProtocolError, with what to do. False when it can go nowhere."""
        net = self.rt.networks.get(network_id)
        if net is None or net.config is None:
            return False
        if source_mac == net.mac:
            return self.send_frame(network_id, dest_mac, ethertype, payload, now)
        if not net.config.permits_bridging(self.rt.address):
            self.rt.tracer.outgoing_dropped(
                net, source_mac, dest_mac, ethertype, len(payload), "not a bridge", now
            )
            raise LocalProtocolError(
                f"network {network_id:016x}: this member is not an active bridge, so it may "
                "not send frames from other MACs (mark it activeBridge at the controller)"
            )
        if source_mac >> 40 & 0x01 or source_mac == 0:
            raise LocalProtocolError(f"{source_mac:012x} is not a unicast source MAC")
        if dest_mac >> 40 & 0x01:
            return self.rt.multicaster.send_frame(
                net, dest_mac, ethertype, payload, now, source_mac=source_mac
            )
        dest = self.member_for_mac(network_id, dest_mac)
        if dest is None:
            return dest_mac != net.mac and self._send_bridged(
                net, dest_mac, ethertype, payload, now, source_mac=source_mac
            )
        if not net.enforcer.accept_all and not self.outbound_allowed(
            net, dest, dest_mac, ethertype, payload, now, source_mac=source_mac
        ):
            return True
        if net.should_push_credentials(dest, now):
            self.rt.credentials.push_credentials(net, dest, now)
        body = ExtFrame(net.id, 0, dest_mac, source_mac, ethertype, payload).encode()
        self.rt.switch.send(dest, Verb.EXT_FRAME, body, now, compress=True)
        return True

    def _send_bridged(
        self,
        net: Network,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
        *,
        source_mac: int | None = None,
    ) -> bool:
        """A unicast frame to a MAC that is no member's: to the bridge it was learned behind,
        else to every active bridge (at most BRIDGE_FANOUT, chosen at random), as EXT_FRAMEs
        (Switch::onLocalEthernet). No bridge: nowhere (False, counted)."""
        bridges = net.bridges()
        route = net.bridge_routes.lookup(dest_mac, now)
        if route is not None and route in bridges:
            targets = [route]
        elif len(bridges) > BRIDGE_FANOUT:
            targets = self.rt.rng.sample(bridges, BRIDGE_FANOUT)
        else:
            targets = bridges
        if not targets:
            self.rt.counters.drop(Drop.NO_BRIDGE)
            return False
        if not net.enforcer.accept_all and not self.outbound_allowed(
            net, 0, dest_mac, ethertype, payload, now, source_mac=source_mac
        ):
            return True  # the rules' first pass (no destination yet) dropped it
        body = ExtFrame(net.id, 0, dest_mac, source_mac or net.mac, ethertype, payload).encode()
        for bridge in targets:
            if not net.enforcer.accept_all and not self.outbound_allowed(
                net, bridge, dest_mac, ethertype, payload, now, no_tee=True, source_mac=source_mac
            ):
                continue
            if net.should_push_credentials(bridge, now):
                self.rt.credentials.push_credentials(net, bridge, now)
            self.rt.switch.send(bridge, Verb.EXT_FRAME, body, now, compress=True)
        return True

    def outbound_allowed(
        self,
        net: Network,
        dest: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
        *,
        no_tee: bool = False,
        source_mac: int | None = None,
    ) -> bool:
        """The network's rules on a frame we send to ``dest`` (0 for a multicast's first
        pass; ``source_mac`` for a bridged frame, else ours): sends the TEE/WATCH/REDIRECT
        copies they ask for; False, counted, when the frame must not go (dropped, or
        redirected elsewhere)."""
        frame = FilterFrame(ethertype, payload, source_mac or net.mac, dest_mac)
        membership = net.memberships.get(dest) if dest else None
        d = net.enforcer.outbound(dest, frame, membership, no_tee=no_tee)
        if net.enforcer.trace_rules:
            self.rt.tracer.filtered(net, False, dest, frame, no_tee, d.accept, membership, now)
        self.send_copies(net, d, frame, now)
        if not d.accept:
            self.rt.counters.drop(Drop.RULES_OUTBOUND)
            self.rt.tracer.outgoing_filtered(
                net, dest, no_tee, frame.mac_source, dest_mac, ethertype, len(payload), now
            )
            if rules_log.isEnabledFor(logging.DEBUG) and net.enforcer.may_log(now):
                _log_drop(net, "outbound to", dest, d, frame)
        return bool(d.accept)

    def send_copies(self, net: Network, d: Decision, frame: FilterFrame, now: int) -> None:
        """The EXT_FRAMEs a rules decision asks for, each with its flags and length."""
        for c in d.copies:
            body = ExtFrame(
                net.id,
                c.flags,
                frame.mac_dest,
                frame.mac_source,
                frame.ethertype,
                bytes(frame.data[: c.length]),
            ).encode()
            self.rt.switch.send(c.dest, Verb.EXT_FRAME, body, now, compress=True)

    def member_for_mac(self, network_id: int, mac: int) -> int | None:
        """The other member a unicast MAC of this network stands for; None for a MAC that is
        not a member's (bridged or foreign) or is our own."""
        if mac >> 40 != first_octet_for_network(network_id):
            return None
        dest = address_from_mac(mac, network_id)
        return None if dest == self.rt.address else dest

    def frame_route(
        self, network_id: int, dest_mac: int, now: int, flow: int = NO_FLOW, count: int = 1
    ) -> FrameRoute | None:
        """The route for unicast FRAMEs to one member, for a cutter outside the core (the
        host's segmentation offload), after what sending needs (our credentials, when due).
        None when only :meth:`send_frame` can send there (no config, a multicast MAC or a MAC
        that is no member's, no identity or no direct or relayed path yet): it also queues and
        asks WHOIS."""
        net = self.rt.networks.get(network_id)
        if net is None or net.config is None or dest_mac >> 40 & 0x01:
            return None
        bonding = bool(self.rt.bonds.bonds)
        if not bonding:
            known = self.routes.get(
                network_id, dest_mac, now, net.config, self.rt.peers, self.rt.physical.config
            )
            if known is not None:
                return known
        enforcer = net.enforcer
        if not enforcer.accept_all and not enforcer.burst_safe:
            return None  # rules that judge (or copy) each frame: every piece via send_frame
        dest = self.member_for_mac(network_id, dest_mac)
        peer = self.rt.peers.get(dest) if dest is not None else None
        if dest is None or peer is None:
            return None
        bond = self.rt.bonds.bonds.get(peer.address) if self.rt.bonds.bonds else None
        if bond is not None and bond.policy == BondPolicy.BROADCAST:
            return None  # every frame on every path: only send_frame does that
        path = self.rt.switch.route(peer, now, flow, count)
        if path is None:
            return None
        if net.should_push_credentials(dest, now):
            self.rt.credentials.push_credentials(net, dest, now)
        header = pk.new_packet(bytes(8), dest, self.rt.address, Verb.FRAME)
        tpid = self.rt.switch.trusted_path_id(path)
        if tpid:  # a trusted path: cipher 2 with its id, as send_on would
            pk.armor_trusted(header, tpid)
            cipher = Cipher.NONE_TRUSTED_PATH
        else:
            cipher = self.rt.switch.cipher_for(peer)
        route = FrameRoute(
            peer.key,
            cipher,
            path.local,
            path.remote,
            bytes(header),
            net.id,
            self.rt.switch.path_mtu(path),
            not enforcer.accept_all,
        )
        if not bonding:
            self.routes.put(
                network_id, dest_mac, now, net.config, peer, self.rt.physical.config, route
            )
        return route

    def filter_burst(
        self, network_id: int, dest_mac: int, ethertype: int, first: bytes, last: bytes, pieces: int
    ) -> bool | None:
        """A TCP burst for a :class:`FrameRoute` with ``filtered`` set: its pieces differ only
        in sequence numbers, checksums, IPv4 idents and the last piece's length and PSH/FIN,
        and the network's rules are burst-safe (nothing that reads those or acts per frame),
        so the first piece speaks for all but the last (a burst of one piece is judged once).
        True when both pass, False (every piece counted) when neither does, None when they
        differ: the caller then sends piece by piece through :meth:`send_frame`."""
        net = self.rt.networks.get(network_id)
        dest = self.member_for_mac(network_id, dest_mac)
        if net is None or dest is None:
            return None
        membership = net.memberships.get(dest)
        enforcer = net.enforcer
        tail = enforcer.outbound(
            dest, FilterFrame(ethertype, last, net.mac, dest_mac), membership
        ).accept
        head = tail  # one piece (a small segment, a bare ACK): judged once, as send_frame does
        if pieces > 1:
            frame = FilterFrame(ethertype, first, net.mac, dest_mac)
            head = enforcer.outbound(dest, frame, membership, weight=pieces - 1).accept
        if head and tail:
            return True
        if not head and not tail:
            self.rt.counters.drop(Drop.RULES_OUTBOUND, pieces)
            return False
        return None

    def deliver_frame(
        self,
        net: Network,
        source: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
        *,
        extended: bool = False,
    ) -> bool:
        """Every frame received from a member in good standing, unicast or multicast, passes
        the network's rules here (inbound) and then reaches the host: handed to its frame sink
        (``Node.frame_sink``) or as a :class:`~ztnode.core.events.FrameReceived` event.
        ``extended`` frames (EXT_FRAME) carry their own MACs, so unless the rules super-accept
        them (we are a TEE/REDIRECT target) a foreign source MAC needs a bridging sender and a
        foreign destination MAC needs us to bridge or to be a multicast
        (node/IncomingPacket.cpp:915-945). False when not delivered."""
        if extended and source_mac in (0, net.mac):
            return False  # no source, or our own MAC coming back: ignored (IncomingPacket.cpp:910)
        accept = 1
        if not net.enforcer.accept_all:
            frame = FilterFrame(ethertype, payload, source_mac, dest_mac)
            m = net.membership(source)
            d = net.enforcer.inbound(source, frame, m)
            if net.enforcer.trace_rules:
                self.rt.tracer.filtered(net, True, source, frame, False, d.accept, m, now)
            self.send_copies(net, d, frame, now)
            accept = d.accept
            if not accept:
                self.rt.counters.drop(Drop.RULES_INBOUND)
                if rules_log.isEnabledFor(logging.DEBUG) and net.enforcer.may_log(now):
                    _log_drop(net, "inbound from", source, d, frame)
                return False
        if (
            extended
            and accept == 1
            and not self._bridging_allows(net, source, source_mac, dest_mac, now)
        ):
            return False
        sink = self.rt.frame_sink
        if (
            sink is None
            or self.rt.events  # something came before it: keep the order, as an event
            or not sink(net.id, source_mac, dest_mac, ethertype, payload)
        ):
            self.rt.events.append(
                ev.FrameReceived(net.id, source, source_mac, dest_mac, ethertype, payload)
            )
        return True

    def _bridging_allows(
        self, net: Network, source: int, source_mac: int, dest_mac: int, now: int
    ) -> bool:
        cfg = net.config
        if cfg is None:
            return False
        if source_mac != mac_from_address(source, net.id):
            ok = cfg.permits_bridging(source)
            if ok:  # the MAC sits behind this bridge (Network::learnBridgeRoute)
                net.bridge_routes.learn(source_mac, source, now)
        elif dest_mac != net.mac:
            ok = (
                cfg.multicast_limit > 0
                if dest_mac >> 40 & 0x01
                else cfg.permits_bridging(self.rt.address)
            )
        else:
            ok = True
        if not ok:
            self.rt.counters.drop(Drop.BRIDGING_NOT_ALLOWED)
            member_mac = mac_from_address(source, net.id)
            self.rt.tracer.incoming_dropped(net, source, source_mac, dest_mac, member_mac, now)
        return ok

    def do_ext_frame(self, rx: Rx) -> None:
        x = ExtFrame.decode(rx.payload)
        if x.com is not None:
            self.rt.credentials.accept_com(x.network_id, x.com, rx.now)
        admitted = self.do_frame(
            rx.peer,
            x.network_id,
            x.from_mac,
            x.to_mac,
            x.ethertype,
            x.payload,
            rx.path,
            rx.pid,
            rx.hops,
            rx.now,
            Verb.EXT_FRAME,
        )
        if admitted and x.ack_requested:  # a WATCH copy asks for an OK (ignored by its sender)
            ok = OkExtFrame(rx.pid, x.network_id).encode()
            self.rt.switch.send_on(rx.peer, rx.path, Verb.OK, ok, rx.now, expect=False)

    def do_frame(
        self,
        peer: Peer,
        network_id: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        path: Path,
        pid: int,
        hops: int,
        now: int,
        verb: int,
    ) -> bool:
        """A FRAME or EXT_FRAME: past the membership gate to :meth:`deliver_frame`, or held a
        few seconds while the sender's credentials are asked for. True when the gate admitted
        it."""
        net = self.rt.networks.get(network_id)
        admitted = net is not None and self._admit(
            net, peer, source_mac, dest_mac, ethertype, payload, path, pid, now, verb
        )
        self.rt.vl1.received(peer, path, hops, verb, now, network_id)
        return admitted

    def do_plain_frame(
        self,
        peer: Peer,
        network_id: int,
        ethertype: int,
        payload: bytes,
        path: Path,
        pid: int,
        hops: int,
        now: int,
    ) -> None:
        """A FRAME, as :meth:`do_frame`: its MACs are the two members' own on the network (the
        sender's kept with its membership, ours the network's), so every data packet does
        not derive them again."""
        net = self.rt.networks.get(network_id)
        if net is not None:
            self._admit(
                net,
                peer,
                net.member_mac(peer.address),
                net.mac,
                ethertype,
                payload,
                path,
                pid,
                now,
                Verb.FRAME,
            )
        self.rt.vl1.received(peer, path, hops, Verb.FRAME, now, network_id)

    def _admit(
        self,
        net: Network,
        peer: Peer,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        path: Path,
        pid: int,
        now: int,
        verb: int,
    ) -> bool:
        """The membership gate of a frame on a joined network (see :meth:`do_frame`)."""
        if self.rt.multicaster.gate(net, peer, now):
            peer.last_trust_established = now
            path.last_trust_established = now
            self.deliver_frame(
                net,
                peer.address,
                source_mac,
                dest_mac,
                ethertype,
                payload,
                now,
                extended=verb == Verb.EXT_FRAME,
            )
            return True
        # Not (yet) a member in good standing: ask for its credentials and keep the frame a
        # few seconds, since they usually arrive right behind it.
        network_id = net.id
        err = Error.need_membership_certificate(verb, pid, network_id)
        self.rt.switch.send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
        self.rt.counters.drop(Drop.NOT_A_MEMBER)
        if verb == Verb.EXT_FRAME:
            self.rt.tracer.access_denied(network_id, peer.address, now)
        if len(self._gated_frames) >= GATED_FRAME_QUEUE:
            self._gated_frames.popleft()
        self._gated_frames.append(
            _GatedFrame(
                peer.address,
                network_id,
                source_mac,
                dest_mac,
                ethertype,
                payload,
                now,
                verb == Verb.EXT_FRAME,
            )
        )
        return False

    def retry_gated_frames(self, now: int) -> None:
        """Offer the held frames to the gate again: a config or credentials just arrived.
        Those held longer than ``QUEUE_TIMEOUT`` are dropped."""
        if not self._gated_frames:
            return
        keep: deque[_GatedFrame] = deque()
        for g in self._gated_frames:
            if now - g.created >= QUEUE_TIMEOUT:
                continue
            net = self.rt.networks.get(g.network_id)
            peer = self.rt.peers.get(g.source)
            if net is None or peer is None:
                continue
            if net.gate(peer.address, peer.identity):
                self.deliver_frame(
                    net,
                    g.source,
                    g.source_mac,
                    g.dest_mac,
                    g.ethertype,
                    g.payload,
                    now,
                    extended=g.extended,
                )
            else:
                keep.append(g)
        self._gated_frames = keep
