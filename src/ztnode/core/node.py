"""The sans-I/O ZeroTier node.

``Node`` is driven by exactly three kinds of input, each carrying the current time ``now`` (ms):

* ``receive(inbound, now)``: what arrived on a socket (:class:`~ztnode.core.records.Inbound`:
  a datagram, or a packet the transport already reassembled or decrypted);
  ``receive_datagram(data, local, remote, now)`` is the same for a plain datagram;
* ``handle_timer(now)``: the deadline from ``get_timer()`` has passed;
* API calls (``send_echo``, ``join``, ``send_frame``, ``orbit``...).

and produces three kinds of output: ``datagrams_to_send(now)`` (what to put on the wire),
``get_timer()`` (when to call back) and ``next_event()`` (what happened). It never touches a
socket, a clock or the OS random source: randomness comes from the ``random_bytes`` callable given
at construction. Behaviour follows ZeroTierOne 1.14.1 as described in
``shared/reference/protocol-core.md``; section numbers refer to it.

The node is the one object the host drives and the runtime its collaborators share (what
ZeroTierOne calls the RuntimeEnvironment): it owns the shared state (identity, peers, paths,
topology, networks, counters, the output and event queues) and delegates the work, as
ZeroTierOne splits its core:

* :class:`~ztnode.core.switch.Switch`: receive path, verb dispatch, send path and routing;
* :class:`~ztnode.core.relay.Relay`: forwarding for others, RENDEZVOUS;
* :class:`~ztnode.core.whois.WhoisQueue`: WHOIS and the packets waiting for identities;
* :class:`~ztnode.core.vl1.Vl1`: peer-level verbs and ``Peer::received``;
* :class:`~ztnode.core.validator.IdentityValidator`: new identities' rate gate and validation;
* :class:`~ztnode.core.housekeeper.Housekeeper`: keepalives, expiry, pruning, online state;
* :class:`~ztnode.core.vl2.Vl2`: joined networks: join, leave, configs, status;
* :class:`~ztnode.core.frames.FramePath`: unicast frames out and in, where the rules apply;
* :class:`~ztnode.core.credentials.CredentialExchange`: credentials pushed and accepted;
* :class:`~ztnode.core.multicaster.Multicaster`: multicast groups and frames;
* :class:`~ztnode.core.controller_link.ControllerLink`: the hosted controller's requests
  (answered off the receive path when the host asks), pushes and revocations.

Anything wrong with a received packet is a counted drop (``counters``), never an exception out of
``receive``.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ztnode.core import events as ev
from ztnode.core.bond import NO_FLOW, Bond, BondingSettings, BondLayer
from ztnode.core.controller_iface import ConfigAnswer, HostedController
from ztnode.core.controller_link import ControllerLink
from ztnode.core.counters import Counters, Drop
from ztnode.core.credentials import CredentialExchange
from ztnode.core.expect import ExpectedReplies
from ztnode.core.frames import FramePath
from ztnode.core.housekeeper import Housekeeper
from ztnode.core.multicaster import Multicaster
from ztnode.core.network import Network
from ztnode.core.path import Path
from ztnode.core.pathpolicy import TRY_MEMORIZED_PATH_INTERVAL, PathPolicy
from ztnode.core.peer import Peer
from ztnode.core.records import Addr, ConfigRequest, FrameRoute, Inbound, InboundKind, Outgoing
from ztnode.core.relay import Relay
from ztnode.core.selfaware import SelfAwareness
from ztnode.core.switch import Switch
from ztnode.core.tap import NodeTap
from ztnode.core.topology import Topology
from ztnode.core.tracer import Tracer
from ztnode.core.trusted import PhysicalPathConfig, PhysicalPaths
from ztnode.core.validator import IdentityValidator
from ztnode.core.vl1 import Vl1
from ztnode.core.vl2 import Vl2
from ztnode.core.whois import WhoisQueue
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError, DecodeError, LocalProtocolError
from ztnode.identity import Identity, address_to_str
from ztnode.wire.constants import DEFAULT_PHYSMTU, MAX_PHYSMTU, MIN_PHYSMTU, Verb
from ztnode.wire.fragment import Reassembler
from ztnode.wire.inetaddr import InetAddress, is_valid_path_address
from ztnode.wire.verbs import UserMessage
from ztnode.wire.world import World

__all__ = ["Inbound", "InboundKind", "Node", "NodeConfig", "Outgoing"]

log = logging.getLogger("ztnode.core")


#: ``(network_id, source_mac, dest_mac, ethertype, payload) -> taken``: a frame that passed the
#: gate and the rules, for a host that consumes it on the spot; False leaves it to the
#: ``FrameReceived`` event (a raw-frame tap, a bridge port or no stack there). Saves an event
#: object and a queue round trip on every data packet.
FrameSink = Callable[[int, int, int, int, bytes], bool]


@dataclass(frozen=True)
class NodeConfig:
    """Options a host may set; defaults reproduce ZeroTierOne's behaviour."""

    allow_loopback: bool = False
    """Accept loopback addresses as paths (single-machine worlds only; never on the internet)."""

    physical_mtu: int = DEFAULT_PHYSMTU
    identity_validation_interval: int = 2_000
    """At most one new-identity validation per this many ms per source IP bucket (as the
    reference on x86-64); 0 disables the gate (tests, private worlds)."""

    defer_config_requests: bool = False
    """If set, config requests to the hosted controller wait for the host to answer them off
    the receive path (``config_requests_to_serve`` / ``config_request_answered``): the
    controller's database reads and commits never run inside ``receive()``."""

    max_peers: int = 65_536
    """The peer table's bound. A new identity past it is refused (counted as
    ``peer_table_full``) until housekeeping expires idle peers; roots are always admitted.
    ZeroTierOne has no bound: it relies on the cost of making valid identities."""

    defer_identity_validation: bool = False
    """If set, HELLOs from new identities wait while the host validates the identity elsewhere
    (``identities_to_validate`` / ``identity_validated``), so the memory-hard hash never
    stalls packet processing for other peers."""


class Node:
    """One ZeroTier node (see the module docstring for the driving model and the parts)."""

    def __init__(
        self,
        identity: Identity,
        planet: World,
        *,
        now: int,
        random_bytes: Callable[[int], bytes],
        local_addresses: list[Addr] | tuple[Addr, ...] = (),
        moons: list[World] | tuple[World, ...] = (),
        config: NodeConfig | None = None,
        controller: HostedController | None = None,
    ) -> None:
        if not identity.has_private:
            raise LocalProtocolError("a node needs an identity with its private key")
        self.identity = identity
        self.address = identity.address
        self.addr_bytes = identity.address.to_bytes(5, "big")
        self.config = config or NodeConfig()
        self.mtu = max(MIN_PHYSMTU, min(MAX_PHYSMTU, self.config.physical_mtu))
        self.random_bytes = random_bytes
        self.rng = random.Random(int.from_bytes(random_bytes(8), "big"))
        self.topology = Topology(self.address, planet)
        self.physical = PhysicalPaths()  # trusted paths and MTUs per physical network
        for m in moons:
            self.topology.add_world(m, always_accept_new=True)
        self.local_addresses: list[Addr] = list(local_addresses)
        self.interface_addresses: list[InetAddress] = []
        #: The operator's blacklists and per-peer hints (``local.conf``), set by the host.
        self.path_policy = PathPolicy()
        self.peers: dict[int, Peer] = {}
        #: Interned paths by (local, remote). Entries go only through :meth:`forget_path`,
        #: which keeps :attr:`_last_path` true.
        self.paths: dict[tuple[Addr, Addr], Path] = {}
        #: The path :meth:`path_for` found last: most packets come from the peer the one
        #: before came from, and the dict lookup costs ~2 000 instructions in the compiled build
        #: (the tuple key is built from unboxed parts, hashed and compared each time).
        self._last_path: Path | None = None
        self.counters = Counters()
        self.selfaware = SelfAwareness()
        self.expected = ExpectedReplies()
        self.reassembler = Reassembler()
        self.out: list[Outgoing] = []
        self.events: deque[ev.Event] = deque()
        #: Where received frames go at once instead of as FrameReceived events: a host with an
        #: IP stack sets it (see :data:`FrameSink`); it is handed a frame only while no other
        #: event is waiting, so the host still sees everything in the order it happened.
        self.frame_sink: FrameSink | None = None
        #: True only while the frame of a packet the transport checked (``Inbound.checked``: a
        #: TCP segment whose IPv4 header and TCP checksums C verified) is being delivered: the
        #: frame sink takes it (and clears it) for the first frame it is handed, so it can
        #: never vouch for another frame.
        self.rx_checked = False
        self.now = now  # the latest time any input carried, for work not tied to one input
        self.networks: dict[int, Network] = {}
        self.controller = controller
        self.switch = Switch(self)
        self.relay = Relay(self)
        self.whois = WhoisQueue(self)
        self.vl1 = Vl1(self)
        self.validator = IdentityValidator(self)
        self.housekeeper = Housekeeper(self, now)
        self.vl2 = Vl2(self)
        self.frames = FramePath(self)
        self.credentials = CredentialExchange(self)
        self.multicaster = Multicaster(self)
        self.controller_link = ControllerLink(self)
        self.bonds = BondLayer(self)
        self.tracer = Tracer(self)
        #: A wiretap on this boundary (diagnostics, protocol tests): see :mod:`ztnode.core.tap`.
        self.tap: NodeTap | None = None
        self.switch.install_handlers()
        self.housekeeper.make_upstream_peers()

    # ------------------------------------------------------------------ host interface

    def receive(self, inbound: Inbound, now: int) -> bool:
        """The one receive entry. False only for an AUTHENTICATED input whose key is not the
        sender's current one (the transport's key cache was stale): it was dropped."""
        tap = self.tap
        if tap is not None and inbound.kind == InboundKind.DATAGRAM:
            tap.datagram_in(inbound.data, inbound.local, inbound.remote)
        return self.switch.receive(inbound, now)

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr, now: int
    ) -> None:
        tap = self.tap
        if tap is not None:
            tap.datagram_in(data, local, remote)
        self.switch.receive_datagram(data, local, remote, now)

    def transport_dropped(
        self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int
    ) -> None:
        """What the transport refused on its own (see :meth:`Switch.transport_dropped`)."""
        self.switch.transport_dropped(reasons, datagrams, wire_bytes)

    @property
    def relaying(self) -> bool:
        """We relay for others (a root), so the transport passes packets for known peers."""
        return self.topology.am_upstream

    def datagrams_to_send(self, now: int) -> list[Outgoing]:
        out, self.out = self.out, []
        tap = self.tap
        if tap is not None and out:
            tap.datagrams_out(out)
        return out

    def next_event(self) -> ev.Event | None:
        if not self.events:
            return None
        e = self.events.popleft()
        tap = self.tap
        if tap is not None:
            tap.event(e)
        return e

    def get_timer(self) -> int | None:
        t = self.housekeeper.next_deadline()
        tick = self.whois.next_tick
        if tick is not None and tick < t:
            t = tick
        for net in self.networks.values():
            r = net.next_config_retry()
            if r is not None and r < t:
                t = r
        b = self.bonds.next_deadline()
        if b is not None and b < t:
            t = b
        return t

    def handle_timer(self, now: int) -> None:
        self.now = now
        tap = self.tap
        if tap is not None:
            tap.timer()
        try:
            self.controller_link.flush_controller(now)
            tick = self.whois.next_tick
            if tick is not None and now >= tick:
                self.whois.tick(now)
            self.housekeeper.run_due(now)
            if self.bonds.bonds:
                self.bonds.tick(now)
            for net in list(self.networks.values()):
                r = net.next_config_retry()
                if r is not None and r <= now:
                    self.vl2.request_config(net, now)
        except Exception:  # a bug must not kill the host's loop; it is logged and counted
            log.exception("internal error in timer processing")
            self.counters.drop(Drop.INTERNAL_ERROR)

    def identities_to_validate(self) -> list[Identity]:
        """Identities waiting for validation (only with ``defer_identity_validation``)."""
        return self.validator.identities_to_validate()

    def identity_validated(self, identity: Identity, valid: bool, now: int) -> None:
        """The host's answer for an identity from ``identities_to_validate``."""
        self.validator.identity_validated(identity, valid, now)

    # ------------------------------------------------------------------ API

    @property
    def online(self) -> bool:
        return self.housekeeper.online

    def configure_bonding(self, settings: BondingSettings, now: int) -> None:
        """Bonding policies (``local.conf`` settings, see :mod:`ztnode.core.bond`); bonds
        are re-formed from the peers' current paths."""
        self.bonds.configure(settings, now)

    def set_link_names(self, names: Mapping[Addr, str]) -> None:
        """The interface each bound socket address belongs to (bond links are per
        interface); sockets not named share the link ``""``."""
        self.bonds.link_names = dict(names)

    def bond(self, address: int) -> Bond | None:
        """The bond with a peer, if it has one."""
        return self.bonds.bonds.get(address)

    def rotate_bond(self, address: int, now: int) -> bool:
        """``bond rotate``: an active-backup bond moves to the next path in its queue."""
        return self.bonds.rotate(address, now)

    def set_physical_paths(self, config: PhysicalPathConfig) -> None:
        """Configure physical networks (local.conf ``physical``, see
        :mod:`ztnode.core.trusted`): trusted paths (cipher 2) and MTUs; replaces the previous
        configuration."""
        self.physical = PhysicalPaths(config)

    def set_local_addresses(self, addresses: list[Addr]) -> None:
        """The sockets the host has bound (needed to pick a source for new destinations)."""
        self.local_addresses = list(addresses)

    def set_interface_addresses(self, addresses: list[InetAddress]) -> None:
        """Local interface addresses to advertise in PUSH_DIRECT_PATHS (besides NAT surfaces)."""
        self.interface_addresses = list(addresses)

    def send_echo(self, dest: int, payload: bytes, now: int) -> int:
        """Send ECHO; the OK arrives as an :class:`~ztnode.core.events.EchoReply` event.

        Returns the request id the event will carry. The ECHO may wait for a WHOIS first;
        ``rtt_ms`` in the event counts from the moment it actually left.
        """
        self.switch.check_dest(dest)
        request = self.vl1.next_echo_request()
        self.switch.send(dest, Verb.ECHO, payload, now, echo_request=request)
        return request

    def send_user_message(self, dest: int, type_id: int, data: bytes, now: int) -> None:
        """USER_MESSAGE to a peer; type ids up to 65535 are reserved for ZeroTier itself."""
        self.switch.check_dest(dest)
        if not 0 <= type_id < 2**64:
            raise LocalProtocolError("type_id must be an unsigned 64-bit integer")
        body = UserMessage(type_id, data).encode()
        self.switch.send(dest, Verb.USER_MESSAGE, body, now, compress=True)

    def orbit(self, world_id: int, seed: int, now: int) -> None:
        """Ask the seed (one of a moon's roots) for the moon, then use its roots as upstreams."""
        if world_id not in self.topology.moons:
            self.topology.orbit(world_id, seed)
            if seed not in self.peers:
                self.whois.request(seed, now)
            else:
                self.switch.send_hello(self.peers[seed], None, now)

    def deorbit(self, world_id: int) -> bool:
        return self.topology.deorbit(world_id)

    def add_world(self, world: World) -> bool:
        """Load a planet or moon the host trusts (a file the operator installed)."""
        ok = self.topology.add_world(world, always_accept_new=True)
        if ok:
            self.housekeeper.make_upstream_peers()
        return ok

    def peer(self, address: int) -> Peer | None:
        return self.peers.get(address)

    def add_cached_peer(
        self,
        identity: Identity,
        version: tuple[int, int, int, int],
        addresses: list[Addr],
        now: int,
    ) -> None:
        """Restore a peer from the host's cache (``peers.d``) and try its last addresses.

        As in the reference, cached paths are not trusted as paths: each address gets a HELLO,
        and only the OK that comes back over it makes it a path again.
        """
        if identity.address == self.address or identity.address in self.peers:
            return
        peer = self._peer_from(identity, now)
        if peer is None:
            return
        peer.version = version
        self._greet(peer, addresses, now)

    def _peer_from(self, identity: Identity, now: int) -> Peer | None:
        """A new peer for ``identity`` (key agreed now), or None: no room, or a bad key."""
        if not self.peer_room(identity.address):
            return None
        try:
            key = SymmetricKey(self.identity.agree(identity))
        except CryptoError:
            return None
        return self.add_peer(identity, key, now)

    def _greet(self, peer: Peer, addresses: Iterable[Addr], now: int) -> None:
        """A HELLO to ``peer`` at each address it may be reached at (an OK makes it a path)."""
        for remote in addresses:
            if self.should_use_path(peer.address, remote):
                for local in self.locals_for(remote):
                    self.switch.confirm_path(peer, self.path_for(local, remote), now)

    def contact_peer(self, identity: Identity, addresses: list[Addr], now: int) -> None:
        """Say hello to ``identity`` at each of ``addresses`` that is not a live path to it
        already (adding the peer if it is new): a controller instance sharing its database
        with others keeps a path to every member they serve this way. Only an OK coming back
        makes an address a path, as for cached peers."""
        if identity.address == self.address:
            return
        peer = self.peers.get(identity.address)
        if peer is None:
            peer = self._peer_from(identity, now)
            if peer is None:
                return
        elif peer.identity != identity:
            return  # an address collision: never greet someone else's identity
        live = {s.path.remote for s in peer.paths if s.path.alive(now)}
        self._greet(peer, [a for a in addresses if a not in live], now)

    # ------------------------------------------------------------------ networks (VL2)

    def join(self, network_id: int, now: int, cached_config: bytes | None = None) -> Network:
        """Join a network: ask its controller for a config (or build it, for ad-hoc ids).

        ``cached_config`` is a config dictionary the host saved earlier (``networks.d``); it is
        used at once but refreshed immediately, as the reference does.
        """
        return self.vl2.join(network_id, now, cached_config)

    def leave(self, network_id: int) -> bool:
        return self.vl2.leave(network_id)

    def network(self, network_id: int) -> Network | None:
        return self.networks.get(network_id)

    def send_frame(
        self, network_id: int, dest_mac: int, ethertype: int, payload: bytes, now: int
    ) -> bool:
        """Send an Ethernet frame to another member (see :meth:`FramePath.send_frame`)."""
        return self.frames.send_frame(network_id, dest_mac, ethertype, payload, now)

    def send_bridged_frame(
        self,
        network_id: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        payload: bytes,
        now: int,
    ) -> bool:
        """A frame from an Ethernet segment we bridge (see :meth:`FramePath.send_bridged_frame`)."""
        return self.frames.send_bridged_frame(
            network_id, source_mac, dest_mac, ethertype, payload, now
        )

    def frame_route(
        self, network_id: int, dest_mac: int, now: int, flow: int = NO_FLOW, count: int = 1
    ) -> FrameRoute | None:
        """What a frame cutter outside the core needs to send FRAMEs to one member itself (see
        :meth:`FramePath.frame_route`); None when only :meth:`send_frame` can send there. ``flow``
        and ``count`` (the packets it will cut) are for a bond's choice of path."""
        return self.frames.frame_route(network_id, dest_mac, now, flow, count)

    @property
    def bonding(self) -> bool:
        """Some peer has a bond (hosts then classify flows for :meth:`frame_route`)."""
        return bool(self.bonds.bonds)

    def filter_burst(
        self, network_id: int, dest_mac: int, ethertype: int, first: bytes, last: bytes, pieces: int
    ) -> bool | None:
        """The rules on a burst of ``pieces`` TCP frames judged by its first and last piece
        (see :meth:`FramePath.filter_burst`): True send all, False all dropped, None judge each."""
        return self.frames.filter_burst(network_id, dest_mac, ethertype, first, last, pieces)

    def coalescing_allowed(self, network_id: int) -> bool:
        """May received TCP segments of this network be joined before the rules see them?"""
        net = self.networks.get(network_id)
        return net is not None and net.enforcer.coalesce_safe

    def send_routed(
        self, route: FrameRoute, datagrams: list[bytes], packets: int, now: int | None = None
    ) -> None:
        """Queue datagrams made with ``route`` (``packets`` packets, maybe fragmented) at
        ``now`` (default: the latest input's time)."""
        at = self.now if now is None else now
        self.switch.emit_datagrams(route.local, route.remote, datagrams, packets, at)
        self.counters.cipher_out_counts[route.cipher & 7] += packets
        if self.bonds.bonds:
            self.bonds.record_routed(route, datagrams, at)

    def flush_controller(self, now: int) -> None:
        """Send the config pushes and revocations the hosted controller has queued."""
        self.controller_link.flush_controller(now)

    def config_requests_to_serve(self) -> list[ConfigRequest]:
        """Config requests for the hosted controller (only with ``defer_config_requests``)."""
        return self.controller_link.requests_to_serve()

    def config_request_answered(
        self, request: ConfigRequest, answer: ConfigAnswer | None, now: int
    ) -> None:
        """The hosted controller's answer to a request from ``config_requests_to_serve``."""
        self.controller_link.answered(request, answer, now)

    def multicast_subscribe(self, network_id: int, mac: int, adi: int, now: int) -> None:
        """Join a multicast group on a network; it is announced (LIKE) at once."""
        self.multicaster.subscribe(network_id, mac, adi, now)

    def multicast_unsubscribe(self, network_id: int, mac: int, adi: int) -> None:
        """Leave a group; like the reference, others simply let our LIKE age out."""
        self.multicaster.unsubscribe(network_id, mac, adi)

    def multicast_subscribers(self, network_id: int, mac: int, adi: int, now: int) -> list[int]:
        """Root role: the members that recently announced (LIKE) a multicast group."""
        return self.multicaster.subscribers(network_id, mac, adi, now)

    # ------------------------------------------------------------------ shared by the parts

    def peer_room(self, address: int) -> bool:
        """Whether a peer at ``address`` may be added (see ``NodeConfig.max_peers``); counted
        when not."""
        if (
            len(self.peers) < self.config.max_peers
            or address in self.peers
            or address in self.topology.upstream_identities
        ):
            return True
        self.counters.drop(Drop.PEER_TABLE_FULL)
        return False

    def add_peer(self, ident: Identity, key: SymmetricKey, now: int) -> Peer:
        """Learn a peer (its identity already trusted); packets waiting for it go out or get
        decoded on the next queue tick, which is due at once (not here: we may be inside a
        handler for this very peer)."""
        peer = Peer(ident, key, now)
        if ident.address in self.peers:  # replaced: whoever cached the old key must drop it
            self.bonds.peer_removed(ident.address)
            self.events.append(ev.PeerRemoved(ident.address))
        self.peers[ident.address] = peer
        self.events.append(ev.PeerAdded(ident.address))
        self.whois.peer_added(now)
        return peer

    def path_for(self, local: Addr, remote: Addr) -> Path:
        """The one :class:`Path` object for a (local, remote) pair, made on first use."""
        p = self.known_path(local, remote)
        if p is None:
            p = self.paths[(local, remote)] = Path(local, remote)
            p.kept = True
            self._last_path = p
        return p

    def known_path(self, local: Addr, remote: Addr) -> Path | None:
        """The interned path for the pair, if there is one (the last one found, or the
        table's)."""
        last = self._last_path
        if last is not None:
            r = last.remote
            if r[1] == remote[1] and r[0] == remote[0]:
                lo = last.local
                if lo[1] == local[1] and lo[0] == local[0]:
                    return last
        p = self.paths.get((local, remote))
        if p is not None:
            self._last_path = p
        return p

    def forget_path(self, key: tuple[Addr, Addr]) -> None:
        """Un-intern a path (housekeeping: no peer uses it and it is silent)."""
        p = self.paths.pop(key, None)
        if p is not None and p is self._last_path:
            self._last_path = None

    def path_probe(self, local: Addr, remote: Addr) -> Path:
        """The interned Path for a pair if there is one, else a transient one that nothing
        keeps (for datagrams not yet authenticated; see :class:`Path`)."""
        p = self.known_path(local, remote)
        return p if p is not None else Path(local, remote)

    def adopt_path(self, path: Path) -> Path:
        """A packet on ``path`` authenticated: intern it (or return the Path already interned
        for the same pair, carrying over what the transient one saw)."""
        if path.kept:
            return path
        key = (path.local, path.remote)
        held = self.paths.get(key)
        if held is None:
            path.kept = True
            self.paths[key] = path
            return path
        held.last_in = max(held.last_in, path.last_in)
        return held

    def locals_for(self, remote: Addr) -> list[Addr]:
        """Every bound local socket of the remote address's family: a first contact goes out
        of each (the reference's udpSendAll), so a path is found over every link."""
        v6 = ":" in remote[0]
        return [local for local in self.local_addresses if (":" in local[0]) == v6]

    def local_for(self, remote: Addr) -> Addr | None:
        """A bound local socket of the remote address's family."""
        v6 = ":" in remote[0]
        for local in self.local_addresses:
            if (":" in local[0]) == v6:
                return local
        return None

    def should_use_path(self, address: int, remote: Addr) -> bool:
        """shouldUsePathForZeroTierTraffic: a valid scope, roots only at their endpoints, and
        the host's pathCheck: not blacklisted by the operator (globally or for this peer), not
        inside a network we joined (ZeroTier over ZeroTier)."""
        try:
            ip = InetAddress.parse(f"{remote[0]}/{remote[1]}").ip
        except DecodeError:
            return False
        if not is_valid_path_address(ip, allow_loopback=self.config.allow_loopback):
            return False
        if self.topology.is_prohibited_endpoint(address, remote[0]):
            return False
        if not self.path_policy.allows(address, ip):
            return False
        for net in self.networks.values():
            for assigned in net.assigned_addresses():
                if assigned.ip.version == ip.version and _contains(assigned, ip):
                    return False
        return True

    def set_path_policy(self, policy: PathPolicy) -> None:
        """The operator's path rules (``physical`` blacklists, ``virtual`` hints and
        blacklists); paths already in use that the new rules refuse are dropped at once."""
        self.path_policy = policy
        for peer in list(self.peers.values()):
            refused = [
                s for s in peer.paths if not self.should_use_path(peer.address, s.path.remote)
            ]
            if refused:
                self.housekeeper.drop_paths(peer, refused, "refused by local.conf")

    def try_memorized_path(self, peer: Peer, now: int) -> None:
        """Peer::tryMemorizedPath: with no direct path, greet one of the operator's ``try``
        addresses for the peer, at most every 30 s."""
        if now - peer.last_tried_memorized < TRY_MEMORIZED_PATH_INTERVAL:
            return
        peer.last_tried_memorized = now
        hint = self.path_policy.hint(peer.address, self.rng.getrandbits(31))
        if hint is not None:
            self._greet(peer, [hint], now)

    # ------------------------------------------------------------------ introspection

    def status(self, now: int) -> dict[str, object]:
        return {
            "address": address_to_str(self.address),
            "publicIdentity": self.identity.to_string(),
            "online": self.online,
            "planetWorldId": self.topology.planet.id,
            "planetWorldTimestamp": self.topology.planet.timestamp,
            "counters": self.counters.as_dict(),
        }


def _contains(assigned: InetAddress, ip: object) -> bool:
    """Whether an assigned address (its prefix length in ``port``) covers ``ip``."""
    try:
        net = ipaddress.ip_network(f"{assigned.ip}/{assigned.port}", strict=False)
    except ValueError:
        return False
    return ip in net
