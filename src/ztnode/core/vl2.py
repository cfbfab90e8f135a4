"""VL2: the networks a node has joined (ZeroTierOne's Network, seen from the node): joining
and leaving, config requests and their answers, credentials pushed and accepted, frames in and
out with the membership gate, and the hosted controller's pushes.

Frames: every unicast frame we send leaves through :meth:`Vl2.send_frame` (or a
:class:`~ztnode.core.records.FrameRoute` from :meth:`Vl2.frame_route`), and every frame we
receive (FRAME, EXT_FRAME, and gated frames released later) reaches the host through
:meth:`Vl2.deliver_frame`: those are the two places a network's rules filter applies, and
``deliver_frame`` is where frames from MACs that are not their sender's (bridged) arrive.
Multicast frames are the :class:`~ztnode.core.multicaster.Multicaster`'s.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ztnode.core import events as ev
from ztnode.core.bond.flows import NO_FLOW, flow_id
from ztnode.core.bond.settings import BondPolicy
from ztnode.core.controller_iface import ConfigAnswer
from ztnode.core.counters import Drop
from ztnode.core.filter import Decision
from ztnode.core.filter import Frame as FilterFrame
from ztnode.core.network import (
    Network,
    NetworkStatus,
    adhoc_config,
)
from ztnode.core.path import Path
from ztnode.core.peer import (
    PEER_CREDENTIALS_RATE_LIMIT,
    Peer,
)
from ztnode.core.records import FrameRoute, Rx
from ztnode.core.routecache import RouteCache
from ztnode.core.sso import authentication_required
from ztnode.core.timing import (
    GATED_FRAME_QUEUE,
    QUEUE_TIMEOUT,
)
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire import packet as pk
from ztnode.wire.constants import (
    Cipher,
    ErrorCode,
    Verb,
)
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    NetworkCredentials,
    Tag,
)
from ztnode.wire.mac import (
    address_from_mac,
    first_octet_for_network,
    mac_from_address,
    mac_to_str,
)
from ztnode.wire.netconf import (
    NetworkConfig,
    NetworkConfigRequestMetadata,
)
from ztnode.wire.verbs import (
    Error,
    ExtFrame,
    NetconfAck,
    NetworkConfigChunk,
    NetworkConfigRequest,
    OkExtFrame,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node

#: Dropped frames, one debug line each (``--log-level rules=debug``), rate-limited per network.
rules_log = logging.getLogger("ztnode.rules")


# What an ERROR from a network's controller in answer to our config request means (§2.4).
# UNSUPPORTED_OPERATION (the controller's node hosts no controller) is NOT_FOUND, as in 1.14.1:
# nothing in the reference sets CLIENT_TOO_OLD (it exists only as a status value), so neither
# does ztnode.
ERROR_STATUS: Final = {
    int(ErrorCode.OBJ_NOT_FOUND): NetworkStatus.NOT_FOUND,
    int(ErrorCode.UNSUPPORTED_OPERATION): NetworkStatus.NOT_FOUND,
    int(ErrorCode.NETWORK_ACCESS_DENIED): NetworkStatus.ACCESS_DENIED,
    int(ErrorCode.NETWORK_AUTHENTICATION_REQUIRED): NetworkStatus.AUTHENTICATION_REQUIRED,
}


#: At most this many bridges get a frame for a MAC no bridge was learned for (the reference's
#: ZT_MAX_BRIDGE_SPAM).
BRIDGE_FANOUT: Final = 32

#: Statuses that mean the controller said no (a join asks again when it finds one).
REFUSED: Final = frozenset(ERROR_STATUS.values())


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


class Vl2:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        #: Unicast FRAME routes for the host's cutter, reused while their state holds.
        self.routes = RouteCache()
        self._gated_frames: deque[_GatedFrame] = deque()

    def join(self, network_id: int, now: int, cached_config: bytes | None = None) -> Network:
        """Join a network: ask its controller for a config (or build it, for ad-hoc ids).

        ``cached_config`` is a config dictionary the host saved earlier (``networks.d``); it is
        used at once but refreshed immediately, as the reference does.
        """
        if not 0 < network_id < 2**64:
            raise LocalProtocolError(f"{network_id:#x} is not a network id")
        net = self.rt.networks.get(network_id)
        if net is not None:
            if net.status in REFUSED and not net.is_adhoc:
                # Joining again asks again: the refusal may predate an authorization.
                self.request_config(net, now)
            return net
        net = self.rt.networks[network_id] = Network(
            network_id, self.rt.address, lambda: self.rt.rng.getrandbits(32)
        )
        self.rt.events.append(ev.NetworkStatusChanged(network_id, net.status.value))
        if cached_config:
            try:
                cfg = NetworkConfig.decode(cached_config)
            except DecodeError:
                cfg = None
            if cfg is not None and net.set_config(cfg, cached_config, now):
                net.last_config_update = 0  # use it, but refresh at once
                self._config_events(net, [], now)
        if net.is_adhoc:
            adhoc = adhoc_config(network_id, self.rt.identity, now)
            if adhoc is None:
                self.set_status(net, NetworkStatus.NOT_FOUND)
            else:
                self.apply_config(net, adhoc, adhoc.encode(), now)
        else:
            self.request_config(net, now)
        return net

    def leave(self, network_id: int) -> bool:
        net = self.rt.networks.pop(network_id, None)
        if net is None:
            return False
        for a in net.assigned_addresses():
            self.rt.events.append(ev.AddressRemoved(network_id, str(a)))
        self.rt.events.append(ev.NetworkLeft(network_id))
        return True

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
            self.push_credentials(net, dest, now)
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
            self.push_credentials(net, dest, now)
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
                self.push_credentials(net, bridge, now)
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
            self.push_credentials(net, dest, now)
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
        so the first piece speaks for all but the last. True when both pass, False (every
        piece counted) when neither does, None when they differ: the caller then sends piece by
        piece through :meth:`send_frame`."""
        net = self.rt.networks.get(network_id)
        dest = self.member_for_mac(network_id, dest_mac)
        if net is None or dest is None:
            return None
        membership = net.memberships.get(dest)
        enforcer = net.enforcer
        head = enforcer.outbound(
            dest, FilterFrame(ethertype, first, net.mac, dest_mac), membership, weight=pieces - 1
        ).accept
        tail = enforcer.outbound(
            dest, FilterFrame(ethertype, last, net.mac, dest_mac), membership
        ).accept
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
        the network's rules here (inbound) and then reaches the host as a
        :class:`~ztnode.core.events.FrameReceived` event. ``extended`` frames (EXT_FRAME) carry
        their own MACs, so unless the rules super-accept them (we are a TEE/REDIRECT target)
        a foreign source MAC needs a bridging sender and a foreign destination MAC needs us to
        bridge or to be a multicast (node/IncomingPacket.cpp:915-945). False when not
        delivered."""
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

    def request_config(self, net: Network, now: int) -> None:
        net.last_request_sent = now
        net.unanswered_requests += 1
        metadata = NetworkConfigRequestMetadata().encode()
        if net.controller == self.rt.address:
            # Our own network: served in-process, as Node.cpp does for a local controller.
            if not self.rt.controller_link.request_own(net.id, metadata, now):
                self.set_status(net, NetworkStatus.NOT_FOUND)
            return
        cfg = net.config
        req = NetworkConfigRequest(
            net.id,
            metadata,
            cfg.revision if cfg is not None else 0,
            cfg.timestamp if cfg is not None else 0,
        )
        self.rt.switch.send(
            net.controller, Verb.NETWORK_CONFIG_REQUEST, req.encode(), now, compress=True
        )

    def apply_answer(self, net: Network, answer: ConfigAnswer, now: int) -> None:
        """Our own controller's answer to our own request."""
        if answer.config is not None:
            self.apply_config(net, answer.config, answer.config.encode(), now)
        elif answer.error is not None:
            status = ERROR_STATUS.get(int(answer.error))
            if status is not None:
                self.set_status(net, status)

    def controller_identity(self, net: Network, now: int) -> Identity | None:
        if net.controller == self.rt.address:
            return self.rt.identity
        peer = self.rt.peers.get(net.controller)
        if peer is None:
            self.rt.whois.request(net.controller, now)
            return None
        return peer.identity

    def config_chunk(
        self,
        peer: Peer,
        chunk: NetworkConfigChunk,
        pid: int,
        now: int,
        *,
        pushed: bool,
        path: Path,
    ) -> None:
        net = self.rt.networks.get(chunk.network_id)
        if net is None:
            return
        if chunk.signature is None:
            # Legacy unsigned form: only straight from the controller, and only whole.
            if peer.address != net.controller:
                self.rt.counters.drop(Drop.UNTRUSTED_SENDER)
                return
            data: bytes | None = chunk.data
        else:
            ctl = self.controller_identity(net, now)
            if ctl is None:
                return
            if not ctl.verify(chunk.signed_portion(), chunk.signature):
                self.rt.counters.drop(Drop.BAD_SIGNATURE)
                return
            data = net.add_chunk(chunk.update_id, chunk.total_length, chunk.chunk_index, chunk.data)
            if pushed and data is not None:
                # The reference acknowledges a completed push with in-re verb ECHO (a quirk).
                ack = NetconfAck(pid, net.id, chunk.update_id).encode()
                self.rt.switch.send_on(peer, path, Verb.OK, ack, now, expect=False)
        if data is None:
            return
        try:
            cfg = NetworkConfig.decode(data)
        except DecodeError:
            self.rt.counters.drop(Drop.MALFORMED)
            return
        self.apply_config(net, cfg, data, now)

    def apply_config(self, net: Network, cfg: NetworkConfig, raw: bytes, now: int) -> None:
        before = [str(a) for a in net.assigned_addresses()]
        old_status = net.status
        net.answers += 1
        changed = net.set_config(cfg, raw, now)
        if net.status != old_status:
            self.rt.events.append(ev.NetworkStatusChanged(net.id, net.status.value))
        if changed:
            self._config_events(net, before, now)
            self._retry_gated_frames(now)
            if old_status != NetworkStatus.OK:
                self.rt.multicaster.announce(net, now)

    def _config_events(self, net: Network, before: list[str], now: int) -> None:
        cfg = net.config
        if cfg is None or net.config_bytes is None:
            return
        self.rt.events.append(ev.NetworkConfigUpdated(net.id, cfg.revision, net.config_bytes))
        after = [str(a) for a in net.assigned_addresses()]
        for a in after:
            if a not in before:
                self.rt.events.append(ev.AddressAdded(net.id, a))
        for a in before:
            if a not in after:
                self.rt.events.append(ev.AddressRemoved(net.id, a))

    def set_status(self, net: Network, status: NetworkStatus) -> None:
        """The controller's refusal (or another status): counted as an answer."""
        net.answers += 1
        if net.status != status:
            net.status = status
            self.rt.events.append(ev.NetworkStatusChanged(net.id, status.value))

    def network_error(self, peer: Peer, net: Network, err: Error, now: int) -> None:
        """An ERROR about one of our networks (IncomingPacket::_doERROR, §2.4)."""
        code = err.code
        if code == ErrorCode.NEED_MEMBERSHIP_CERTIFICATE:
            if net.should_answer_credentials_request(peer.address, now):
                self.push_credentials(net, peer.address, now)
        elif peer.address == net.controller:
            # NOT_FOUND and UNSUPPORTED_OPERATION count only in re a config request; ACCESS_DENIED
            # and AUTHENTICATION_REQUIRED from the controller count in re anything.
            status = ERROR_STATUS.get(int(code))
            counts = err.in_re_verb == Verb.NETWORK_CONFIG_REQUEST or code in (
                ErrorCode.NETWORK_ACCESS_DENIED,
                ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
            )
            sso = code == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED
            if (
                status is not None
                and counts
                and (not sso or authentication_required(net, err.dictionary, self.rt.events.append))
            ):
                self.set_status(net, status)

    def do_network_config(self, rx: Rx) -> None:
        chunk = NetworkConfigChunk.decode(rx.payload)
        self.config_chunk(rx.peer, chunk, rx.pid, rx.now, pushed=True, path=rx.path)
        self.rt.vl1.received(rx.peer, rx.path, rx.hops, rx.verb, rx.now, chunk.network_id)

    def do_ext_frame(self, rx: Rx) -> None:
        x = ExtFrame.decode(rx.payload)
        if x.com is not None:
            self.accept_com(x.network_id, x.com, rx.now)
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

    def do_credentials(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        if now - peer.last_credentials_received < PEER_CREDENTIALS_RATE_LIMIT:
            self.rt.counters.drop(Drop.RATE_LIMITED)
            self.rt.vl1.received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)
            return
        peer.last_credentials_received = now
        creds, _error = NetworkCredentials.decode_partial(payload)
        accepted = False
        for com in creds.coms:
            accepted |= self.accept_com(com.network_id, com, now)
        others: tuple[Capability | Tag | CertificateOfOwnership, ...] = (
            *creds.capabilities,
            *creds.tags,
            *creds.certificates_of_ownership,
        )
        for cred in others:
            net = self.rt.networks.get(cred.network_id)
            ctl = self.controller_identity(net, now) if net is not None else None
            if net is None or ctl is None or not self.rt.tracer.verified(net, cred, ctl, now):
                continue
            if isinstance(cred, Capability):
                added = net.add_capability(cred)
            elif isinstance(cred, Tag):
                added = net.add_tag(cred)
            else:
                added = net.add_coo(cred)
            accepted |= added or self.rt.tracer.refused(net, cred, now)
        for rev in creds.revocations:
            net = self.rt.networks.get(rev.network_id)
            ctl = self.controller_identity(net, now) if net is not None else None
            if net is not None and ctl is not None and self.rt.tracer.verified(net, rev, ctl, now):
                accepted |= net.add_revocation(rev)
        if accepted:
            peer.last_trust_established = now
            path.last_trust_established = now
            self._retry_gated_frames(now)
        self.rt.vl1.received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)

    def accept_com(self, network_id: int, com: CertificateOfMembership, now: int) -> bool:
        net = self.rt.networks.get(network_id)
        if net is None:
            return False
        ctl = self.controller_identity(net, now)
        if ctl is None or not self.rt.tracer.verified(net, com, ctl, now):
            return False
        return net.add_com(com) or self.rt.tracer.refused(net, com, now)

    def push_credentials(self, net: Network, dest: int, now: int) -> None:
        """Send our COM and the capabilities, tags and ownership certificates of our config."""
        cfg = net.config
        if cfg is None or (
            cfg.com is None and not (cfg.capabilities or cfg.tags or cfg.certificates_of_ownership)
        ):
            return
        creds = NetworkCredentials(
            coms=(cfg.com,) if cfg.com is not None else (),
            capabilities=cfg.capabilities,
            tags=cfg.tags,
            certificates_of_ownership=cfg.certificates_of_ownership,
        )
        self.rt.switch.send(dest, Verb.NETWORK_CREDENTIALS, creds.encode(), now, compress=True)
        net.membership(dest).last_pushed_credentials = now

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
        admitted = False
        if net is not None:
            admitted = self.rt.multicaster.gate(net, peer, now)
            if admitted:
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
            else:
                # Not (yet) a member in good standing: ask for its credentials and keep the
                # frame a few seconds, since they usually arrive right behind it.
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
        self.rt.vl1.received(peer, path, hops, verb, now, network_id)
        return admitted

    def _retry_gated_frames(self, now: int) -> None:
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
