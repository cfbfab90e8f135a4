"""The sans-I/O ZeroTier node: VL1 switch, peers, paths, topology and timers.

``Node`` is driven by exactly three kinds of input, each carrying the current time ``now`` (ms):

* ``receive_datagram(data, local, remote, now)``: a UDP payload that arrived on socket ``local``
  from ``remote``;
* ``handle_timer(now)``: the deadline from ``get_timer()`` has passed;
* API calls (``send_echo``, ``send_user_message``, ``orbit``...).

and produces three kinds of output: ``datagrams_to_send(now)`` (what to put on the wire),
``get_timer()`` (when to call back) and ``next_event()`` (what happened). It never touches a
socket, a clock or the OS random source: randomness comes from the ``random_bytes`` callable given
at construction. Behaviour follows ZeroTierOne 1.14.1 as described in
``shared/reference/protocol-core.md``; section numbers below refer to it.

Anything wrong with a received packet is a counted drop (``counters``), never an exception out of
``receive_datagram``.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from ztnode import accel
from ztnode.core import events as ev
from ztnode.core.controller_iface import ConfigAnswer, HostedController
from ztnode.core.counters import Counters, Drop
from ztnode.core.expect import ExpectedReplies
from ztnode.core.network import (
    BROADCAST_MAC,
    MULTICAST_ANNOUNCE_PERIOD,
    MULTICAST_GATHER_INTERVAL,
    MULTICAST_PENDING_MAX,
    MULTICAST_PENDING_TIMEOUT,
    Network,
    NetworkStatus,
    PendingMulticast,
    adhoc_config,
)
from ztnode.core.path import Path
from ztnode.core.peer import (
    DIRECT_PATH_PUSH_INTERVAL,
    DIRECT_PATH_PUSH_INTERVAL_HAVEPATH,
    PEER_ACTIVITY_TIMEOUT,
    PEER_CREDENTIALS_RATE_LIMIT,
    PEER_PATH_EXPIRATION,
    PEER_PING_PERIOD,
    PEER_WHOIS_RATE_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_TIME,
    Peer,
)
from ztnode.core.selfaware import SelfAwareness
from ztnode.core.topology import Topology
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError, DecodeError, LocalProtocolError
from ztnode.identity import Identity, address_to_str
from ztnode.wire import packet as pk
from ztnode.wire.buffer import Writer
from ztnode.wire.constants import (
    DEFAULT_PHYSMTU,
    FLAG_FRAGMENTED,
    IDX_PAYLOAD,
    MAX_PHYSMTU,
    MIN_PHYSMTU,
    PROTO_VERSION,
    PROTO_VERSION_MIN,
    RELAY_MAX_HOPS,
    SOFTWARE_MAJOR,
    SOFTWARE_MINOR,
    SOFTWARE_REVISION,
    Cipher,
    ErrorCode,
    Verb,
)
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    NetworkCredentials,
    Tag,
)
from ztnode.wire.fragment import DropReason as FragmentDrop
from ztnode.wire.fragment import Reassembler, split
from ztnode.wire.inetaddr import InetAddress, IpScope, is_valid_path_address
from ztnode.wire.mac import address_from_mac, first_octet_for_network, mac_from_address
from ztnode.wire.netconf import (
    NetworkConfig,
    NetworkConfigRequestMetadata,
    split_config_chunks,
)
from ztnode.wire.verbs import (
    Error,
    ExtFrame,
    Hello,
    MoonRef,
    MulticastFrame,
    MulticastGather,
    MulticastLike,
    MulticastSubscription,
    NetconfAck,
    NetworkConfigChunk,
    NetworkConfigRequest,
    OkEcho,
    OkHello,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkWhois,
    PushDirectPaths,
    PushedPath,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    Whois,
    decode_ok,
)
from ztnode.wire.world import World, WorldType

log = logging.getLogger("ztnode.core")

Addr = tuple[str, int]

# Timers (protocol-core.md 1.3).
PING_CHECK_INTERVAL: Final = 5_000
HOUSEKEEPING_PERIOD: Final = 30_000
WHOIS_RETRY_DELAY: Final = 500
QUEUE_TIMEOUT: Final = 5_000
TX_QUEUE_SIZE: Final = 32
RX_QUEUE_SIZE: Final = 32
MAX_WHOIS_PENDING: Final = 1024  # per-address WHOIS memos; a flood evicts the oldest
MIN_UNITE_INTERVAL: Final = 30_000
PATH_HELLO_INTERVAL: Final = 1_000  # confirming HELLO to an unlearned path, per path
ECHO_ANSWER_INTERVAL: Final = 1_000 // 6  # 166 ms per path
ROOT_HELLO_SCALE: Final = 16
LEAF_ALWAYS_CONTACT_SCALE: Final = 2
PATH_HEARTBEAT: Final = 14_000
BEACON_REPLY_INTERVAL: Final = 2_500
MAX_VALIDATION_CACHE: Final = 4096
PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY: Final = 8
MAX_PUSH_PAYLOAD: Final = 1200
MULTICAST_LIKE_EXPIRE: Final = 600_000
REMOTE_TRACE_MAX: Final = 10_000
USER_MESSAGE_RESERVED_MAX: Final = 0xFFFF
GATED_FRAME_QUEUE: Final = 64
LIKES_PER_PACKET: Final = 64  # 18 bytes each: well inside one unfragmented packet
ETHERTYPE_ARP: Final = 0x0806


def _is_arp_request(frame: bytes) -> bool:
    """An Ethernet/IPv4 ARP request (htype 1, ptype 0x0800, hlen 6, plen 4, op 1)."""
    return len(frame) >= 28 and frame[0:8] == b"\x00\x01\x08\x00\x06\x04\x00\x01"


@dataclass(frozen=True)
class NodeConfig:
    """Options a host may set; defaults reproduce ZeroTierOne's behaviour."""

    allow_loopback: bool = False
    """Accept loopback addresses as paths (single-machine worlds only; never on the internet)."""

    physical_mtu: int = DEFAULT_PHYSMTU
    identity_validation_interval: int = 2_000
    """At most one new-identity validation per this many ms per source IP bucket (as the
    reference on x86-64); 0 disables the gate (tests, private worlds)."""

    defer_identity_validation: bool = False
    """If set, HELLOs from new identities wait while the host validates the identity elsewhere
    (``identities_to_validate`` / ``identity_validated``), so the memory-hard hash never
    stalls packet processing for other peers."""


def _bad_fragments(drops: Mapping[FragmentDrop, int]) -> int:
    """How many pieces the reassembler judged malformed (per packet: no generator, no sum)."""
    return (
        drops.get(FragmentDrop.INVALID_FRAGMENT, 0)
        + drops.get(FragmentDrop.INVALID_HEAD, 0)
        + drops.get(FragmentDrop.INCONSISTENT_TOTAL, 0)
        + drops.get(FragmentDrop.TOO_LARGE, 0)
    )


_CIPHER_NAMES: Final = {c.value: c.name for c in Cipher} | {v: f"cipher{v}" for v in range(4, 8)}


# What an ERROR from a network's controller in answer to our config request means (§2.4).
# UNSUPPORTED_OPERATION (the controller's node hosts no controller) is NOT_FOUND, as in 1.14.1:
# nothing in the reference sets CLIENT_TOO_OLD (it exists only as a status value), so neither
# does ztnode.
_ERROR_STATUS: Final = {
    int(ErrorCode.OBJ_NOT_FOUND): NetworkStatus.NOT_FOUND,
    int(ErrorCode.UNSUPPORTED_OPERATION): NetworkStatus.NOT_FOUND,
    int(ErrorCode.NETWORK_ACCESS_DENIED): NetworkStatus.ACCESS_DENIED,
    int(ErrorCode.NETWORK_AUTHENTICATION_REQUIRED): NetworkStatus.AUTHENTICATION_REQUIRED,
}


# Counter labels by verb number (all 32 values of the 5-bit field), built once.
_VERB_NAMES: Final = tuple(
    Verb(v).name if v in Verb._value2member_map_ else f"0x{v:02x}" for v in range(32)
)


class Outgoing(NamedTuple):
    local: Addr
    remote: Addr
    data: bytes
    ttl: int = 0  # 0 = the socket default; RENDEZVOUS hole punching uses 2


@dataclass
class _TxEntry:
    dest: int
    verb: int
    payload: bytes
    compress: bool
    created: int
    echo_request: int | None = None


@dataclass
class _RxEntry:
    source: int
    packet: bytearray
    path: Path
    created: int


@dataclass
class _GatedFrame:
    source: int
    network_id: int
    source_mac: int
    dest_mac: int
    ethertype: int
    payload: bytes
    created: int


@dataclass
class _Whois:
    first: int
    last_sent: int


@dataclass
class _PendingValidation:
    identity: Identity
    packets: list[tuple[bytearray, Path]] = field(default_factory=list)


@dataclass
class _ApiEcho:
    dest: int
    sent: int
    request_id: int


class Node:
    """One ZeroTier node (see the module docstring for the driving model)."""

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
        self._addr_bytes = identity.address.to_bytes(5, "big")
        self.config = config or NodeConfig()
        self.mtu = max(MIN_PHYSMTU, min(MAX_PHYSMTU, self.config.physical_mtu))
        self.random_bytes = random_bytes
        self._rng = random.Random(int.from_bytes(random_bytes(8), "big"))
        self.topology = Topology(self.address, planet)
        for m in moons:
            self.topology.add_world(m, always_accept_new=True)
        self.local_addresses: list[Addr] = list(local_addresses)
        self.interface_addresses: list[InetAddress] = []
        self.peers: dict[int, Peer] = {}
        self.paths: dict[tuple[Addr, Addr], Path] = {}
        self.counters = Counters()
        self.selfaware = SelfAwareness()
        self.expected = ExpectedReplies()
        self.reassembler = Reassembler()
        self._out: list[Outgoing] = []
        self._events: deque[ev.Event] = deque()
        self._tx_queue: deque[_TxEntry] = deque()
        self._rx_queue: deque[_RxEntry] = deque()
        self._whois: dict[int, _Whois] = {}
        self._unite: dict[tuple[int, int], int] = {}
        self._validation_gate: dict[int, int] = {}
        self._validated: OrderedDict[int, bytes] = OrderedDict()
        self._pending_validation: dict[int, _PendingValidation] = {}
        self._to_validate: deque[Identity] = deque()
        self._echo_answered: dict[Path, int] = {}
        self._beacon_answered: dict[int, int] = {}
        self._api_echo: dict[int, _ApiEcho] = {}
        self._echo_seq = 0
        self._multicast: dict[tuple[int, int, int], dict[int, int]] = {}
        self._online = False
        self._last_ping_check = now - PING_CHECK_INTERVAL  # first check runs at once
        self._last_housekeeping = now
        self._next_queue_tick: int | None = None
        self._now = now  # the latest time any input carried, for work not tied to one input
        self.networks: dict[int, Network] = {}
        self.controller = controller
        self._gated_frames: deque[_GatedFrame] = deque()
        self._make_upstream_peers()

    # ------------------------------------------------------------------ host interface

    def datagrams_to_send(self, now: int) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        t = min(
            self._last_ping_check + PING_CHECK_INTERVAL,
            self._last_housekeeping + HOUSEKEEPING_PERIOD,
        )
        if self._next_queue_tick is not None:
            t = min(t, self._next_queue_tick)
        for net in self.networks.values():
            r = net.next_config_retry()
            if r is not None and r < t:
                t = r
        return t

    def handle_timer(self, now: int) -> None:
        self._now = now
        try:
            self.flush_controller(now)
            if self._next_queue_tick is not None and now >= self._next_queue_tick:
                self._queue_tick(now)
            if now - self._last_ping_check >= PING_CHECK_INTERVAL:
                self._last_ping_check = now
                self._ping_check(now)
            if now - self._last_housekeeping >= HOUSEKEEPING_PERIOD:
                self._last_housekeeping = now
                self._housekeeping(now)
            for net in list(self.networks.values()):
                r = net.next_config_retry()
                if r is not None and r <= now:
                    self._request_config(net, now)
        except Exception:  # a bug must not kill the host's loop; it is logged and counted
            log.exception("internal error in timer processing")
            self.counters.drop(Drop.INTERNAL_ERROR)

    def identities_to_validate(self) -> list[Identity]:
        """Identities waiting for validation (only with ``defer_identity_validation``)."""
        out = list(self._to_validate)
        self._to_validate.clear()
        return out

    def identity_validated(self, identity: Identity, valid: bool, now: int) -> None:
        """The host's answer for an identity from ``identities_to_validate``."""
        pending = self._pending_validation.pop(identity.address, None)
        if pending is None or pending.identity != identity:
            return
        if not valid:
            self.counters.drop(Drop.IDENTITY_INVALID)
            return
        self._remember_valid(identity)
        # Every waiting HELLO passed the rate gate and its MAC check before it was deferred.
        # Replayed through the receive path it would meet the gate again (still closed, since
        # it was just used for this identity) and be dropped, so learn the peer here and
        # finish the HELLOs as authenticated.
        if identity.address not in self.peers:
            try:
                key = SymmetricKey(self.identity.agree(identity))
            except CryptoError:
                self.counters.drop(Drop.IDENTITY_INVALID)
                return
            self._add_peer(identity, key, now)
        for buf, path in pending.packets:
            try:
                self._do_hello(buf, path, buf[18] & 7, now, authenticated=True)
            except DecodeError:
                self.counters.drop(Drop.MALFORMED)

    # ------------------------------------------------------------------ API

    @property
    def online(self) -> bool:
        return self._online

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
        self._check_dest(dest)
        self._echo_seq += 1
        self._send(dest, Verb.ECHO, payload, now, echo_request=self._echo_seq)
        return self._echo_seq

    def send_user_message(self, dest: int, type_id: int, data: bytes, now: int) -> None:
        """USER_MESSAGE to a peer; type ids up to 65535 are reserved for ZeroTier itself."""
        self._check_dest(dest)
        if not 0 <= type_id < 2**64:
            raise LocalProtocolError("type_id must be an unsigned 64-bit integer")
        self._send(dest, Verb.USER_MESSAGE, UserMessage(type_id, data).encode(), now, compress=True)

    def orbit(self, world_id: int, seed: int, now: int) -> None:
        """Ask the seed (one of a moon's roots) for the moon, then use its roots as upstreams."""
        if world_id not in self.topology.moons:
            self.topology.orbit(world_id, seed)
            if seed not in self.peers:
                self._request_whois(seed, now)
            else:
                self._send_hello(self.peers[seed], None, now)

    def deorbit(self, world_id: int) -> bool:
        return self.topology.deorbit(world_id)

    def add_world(self, world: World) -> bool:
        """Load a planet or moon the host trusts (a file the operator installed)."""
        ok = self.topology.add_world(world, always_accept_new=True)
        if ok:
            self._make_upstream_peers()
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
        try:
            key = SymmetricKey(self.identity.agree(identity))
        except CryptoError:
            return
        peer = self._add_peer(identity, key, now)
        peer.version = version
        for remote in addresses:
            local = self._local_for(remote)
            if local is not None and self._should_use_path(identity.address, remote):
                self._confirm_path(peer, self._path(local, remote), now)

    # ------------------------------------------------------------------ networks (VL2)

    def join(self, network_id: int, now: int, cached_config: bytes | None = None) -> Network:
        """Join a network: ask its controller for a config (or build it, for ad-hoc ids).

        ``cached_config`` is a config dictionary the host saved earlier (``networks.d``); it is
        used at once but refreshed immediately, as the reference does.
        """
        if not 0 < network_id < 2**64:
            raise LocalProtocolError(f"{network_id:#x} is not a network id")
        net = self.networks.get(network_id)
        if net is not None:
            return net
        net = self.networks[network_id] = Network(network_id, self.address)
        self._events.append(ev.NetworkStatusChanged(network_id, net.status.value))
        if cached_config:
            try:
                cfg = NetworkConfig.decode(cached_config)
            except DecodeError:
                cfg = None
            if cfg is not None and net.set_config(cfg, cached_config, now):
                net.last_config_update = 0  # use it, but refresh at once
                self._config_events(net, [], now)
        if net.is_adhoc:
            adhoc = adhoc_config(network_id, self.identity, now)
            if adhoc is None:
                self._set_status(net, NetworkStatus.NOT_FOUND)
            else:
                self._apply_config(net, adhoc, adhoc.encode(), now)
        else:
            self._request_config(net, now)
        return net

    def leave(self, network_id: int) -> bool:
        net = self.networks.pop(network_id, None)
        if net is None:
            return False
        for a in net.assigned_addresses():
            self._events.append(ev.AddressRemoved(network_id, str(a)))
        self._events.append(ev.NetworkLeft(network_id))
        return True

    def network(self, network_id: int) -> Network | None:
        return self.networks.get(network_id)

    def send_frame(
        self, network_id: int, dest_mac: int, ethertype: int, payload: bytes, now: int
    ) -> bool:
        """Send an Ethernet frame to another member (unicast to a ZeroTier MAC).

        Returns False when the frame cannot go anywhere: no config yet, or a MAC that is not a
        member's (bridged and multicast delivery belong to the IP stack's layer).
        """
        net = self.networks.get(network_id)
        if net is None or net.config is None:
            return False
        if dest_mac >> 40 & 0x01:
            return self._send_multicast_frame(net, dest_mac, ethertype, payload, now)
        dest = self._member_for_mac(network_id, dest_mac)
        if dest is None:
            return False
        if net.should_push_credentials(dest, now):
            self._push_credentials(net, dest, now)
        # Frame(network_id, ethertype, payload).encode(), without the objects (the hot path).
        body = b"".join((network_id.to_bytes(8, "big"), ethertype.to_bytes(2, "big"), payload))
        self._send(dest, Verb.FRAME, body, now)
        return True

    def _member_for_mac(self, network_id: int, mac: int) -> int | None:
        """The other member a unicast MAC of this network stands for; None for a MAC that is
        not a member's (bridged or foreign) or is our own."""
        if mac >> 40 != first_octet_for_network(network_id):
            return None
        dest = address_from_mac(mac, network_id)
        return None if dest == self.address else dest

    @property
    def can_send_tcp_pieces(self) -> bool:
        """Whether :meth:`send_tcp_pieces` can work here (the C accelerator is built)."""
        return accel.AVAILABLE

    def send_tcp_pieces(
        self,
        network_id: int,
        dest_mac: int,
        ethertype: int,
        ip_tcp_header: bytes,
        ip_id: int,
        payload: bytes,
        seg_size: int,
        flags_last: int,
        now: int,
    ) -> bool:
        """Send one large TCP segment as FRAMEs of ``seg_size``-byte pieces, cut, checksummed
        and armored in C (the stack's segmentation offload: its Python then costs once per
        large segment). False, with nothing sent, when that cannot be done here (no direct or
        relayed path yet, a multicast MAC, no accelerator): the caller then sends the pieces
        one by one with :meth:`send_frame`, which also queues and WHOISes."""
        net = self.networks.get(network_id)
        if net is None or net.config is None or dest_mac >> 40 & 0x01:
            return False
        dest = self._member_for_mac(network_id, dest_mac)
        peer = self.peers.get(dest) if dest is not None else None
        if dest is None or peer is None:
            return False
        path = self._route(peer, now)
        if path is None:
            return False
        if net.should_push_credentials(dest, now):
            self._push_credentials(net, dest, now)
        pieces = -(-len(payload) // seg_size)
        header = pk.new_packet(bytes(8), dest, self.address, Verb.FRAME)
        datagrams = accel.tcp_pieces(
            peer.key,
            self._cipher_for(peer),
            header,
            self.random_bytes(8 * pieces),
            network_id,
            ethertype,
            ip_tcp_header,
            ip_id,
            payload,
            seg_size,
            flags_last,
            self.mtu,
        )
        if datagrams is None:
            return False
        out = self._out
        local, remote = path.local, path.remote
        for d in datagrams:
            out.append(Outgoing(local, remote, d))
        c = self.counters
        c.packets_out += pieces
        c.bytes_out += sum(map(len, datagrams))
        return True

    def flush_controller(self, now: int) -> None:
        """Send the config pushes and revocations the hosted controller has queued."""
        ctl = self.controller
        if ctl is None:
            return
        for push in ctl.pending_pushes(now):
            if push.member == self.address:
                net = self.networks.get(push.config.network_id)
                if net is not None:
                    self._apply_config(net, push.config, push.config.encode(), now)
            else:
                self._send_config(push.member, push.config, None, now)
        for rp in ctl.pending_revocations(now):
            body = NetworkCredentials(revocations=(rp.revocation,)).encode()
            for r in rp.recipients:
                if r == self.address:
                    net = self.networks.get(rp.network_id)
                    if net is not None:
                        net.add_revocation(rp.revocation)
                else:
                    self._send(r, Verb.NETWORK_CREDENTIALS, body, now, compress=True)
            target = rp.revocation.target
            if rp.revocation.credential_type == CredentialType.COM and target != self.address:
                # Tell the member itself at once: an ERROR in re a config request needs no
                # expected packet id, so its status becomes ACCESS_DENIED now rather than at its
                # next refresh (the reference only lets it find out then).
                err = Error(
                    Verb.NETWORK_CONFIG_REQUEST, 0, ErrorCode.NETWORK_ACCESS_DENIED, rp.network_id
                )
                self._send(target, Verb.ERROR, err.encode(), now)

    def multicast_subscribe(self, network_id: int, mac: int, adi: int, now: int) -> None:
        """Join a multicast group on a network; it is announced (LIKE) at once."""
        net = self.networks.get(network_id)
        if net is None:
            raise LocalProtocolError(f"not a member of network {network_id:016x}")
        if (mac, adi) not in net.subscriptions:
            net.subscriptions.add((mac, adi))
            self._announce(net, now, [(mac, adi)])

    def multicast_unsubscribe(self, network_id: int, mac: int, adi: int) -> None:
        """Leave a group; like the reference, others simply let our LIKE age out."""
        net = self.networks.get(network_id)
        if net is not None:
            net.subscriptions.discard((mac, adi))

    def _announce(
        self, net: Network, now: int, groups: list[tuple[int, int]] | None = None
    ) -> None:
        """MULTICAST_LIKE our groups to the network's controller and to the roots, which answer
        other members' gathers for us (§7.1)."""
        if groups is None:
            groups = net.announced_groups()
            net.last_announce = now
        if not groups:
            return
        subs = [MulticastSubscription(net.id, mac, adi) for mac, adi in groups]
        targets = dict.fromkeys([net.controller, *self.topology.upstreams])
        for i in range(0, len(subs), LIKES_PER_PACKET):
            body = MulticastLike(tuple(subs[i : i + LIKES_PER_PACKET])).encode()
            for t in targets:
                if t != self.address:
                    self._send(t, Verb.MULTICAST_LIKE, body, now, compress=True)

    def _send_multicast_frame(
        self, net: Network, dest_mac: int, ethertype: int, payload: bytes, now: int
    ) -> bool:
        cfg = net.config
        if cfg is None or cfg.multicast_limit == 0:
            return False
        adi = 0
        if dest_mac == BROADCAST_MAC:
            if ethertype == ETHERTYPE_ARP and _is_arp_request(payload):
                adi = int.from_bytes(payload[24:28], "big")  # ARP: one group per target IP
            elif not cfg.enable_broadcast:
                return False
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
            up = self._best_upstream(now)
            for t in dict.fromkeys([net.controller, *([up.address] if up else [])]):
                if t != self.address:
                    self._send(t, Verb.MULTICAST_GATHER, body, now)
        self._rng.shuffle(known)
        recipients = known[:limit]
        pending = PendingMulticast(group, ethertype, payload, net.mac, now, set())
        self._deliver_multicast(net, pending, recipients, now)
        if len(known) < limit:
            same = [p for p in net.pending_multicasts if p.group == group]
            if len(same) >= MULTICAST_PENDING_MAX:
                net.pending_multicasts.remove(same[0])
            net.pending_multicasts.append(pending)
        return True

    def _deliver_multicast(
        self, net: Network, pending: PendingMulticast, recipients: list[int], now: int
    ) -> None:
        mac, adi = pending.group
        body = MulticastFrame.create(net.id, mac, adi, pending.ethertype, pending.payload).encode()
        for r in recipients:
            if r == self.address or r in pending.sent_to:
                continue
            pending.sent_to.add(r)
            if net.should_push_credentials(r, now):
                self._push_credentials(net, r, now)
            self._send(r, Verb.MULTICAST_FRAME, body, now, compress=True)

    def _send_pending_multicasts(
        self, net: Network, group: tuple[int, int], members: list[int], now: int
    ) -> None:
        cfg = net.config
        for p in net.pending_multicasts:
            if p.group == group and now - p.created < MULTICAST_PENDING_TIMEOUT and cfg:
                room = cfg.multicast_limit - len(p.sent_to)
                self._deliver_multicast(net, p, members[: max(0, room)], now)

    def _do_multicast_frame(
        self, peer: Peer, payload: memoryview, path: Path, pid: int, hops: int, now: int
    ) -> None:
        m = MulticastFrame.decode(payload)
        net = self.networks.get(m.network_id)
        if net is not None:
            if m.com is not None:
                self._accept_com(m.network_id, m.com, now)
            sender_mac = mac_from_address(peer.address, net.id)
            source = m.source_mac if m.source_mac is not None else sender_mac
            cfg = net.config
            if not net.gate(peer.address, peer.identity):
                err = Error.need_membership_certificate(Verb.MULTICAST_FRAME, pid, net.id)
                self._send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
                self.counters.drop(Drop.NOT_A_MEMBER)
            elif (
                cfg is None
                or cfg.multicast_limit == 0
                or not m.dest_mac >> 40 & 0x01
                or source in (0, net.mac)
                or source >> 40 & 0x01
                or source != sender_mac  # a bridged source needs bridging, not supported yet
            ):
                self.counters.drop(Drop.MALFORMED)
            else:
                peer.last_trust_established = now
                path.last_trust_established = now
                self._events.append(
                    ev.FrameReceived(
                        net.id, peer.address, source, m.dest_mac, m.ethertype, m.payload
                    )
                )
        self._received(peer, path, hops, Verb.MULTICAST_FRAME, now)

    def _request_config(self, net: Network, now: int) -> None:
        net.last_request_sent = now
        net.unanswered_requests += 1
        metadata = NetworkConfigRequestMetadata().encode()
        if net.controller == self.address:
            # Our own network: served in-process, as Node.cpp does for a local controller.
            ctl = self.controller
            if ctl is None or not ctl.serves(net.id):
                self._set_status(net, NetworkStatus.NOT_FOUND)
                return
            answer = ctl.handle_request(self.identity.public(), net.id, metadata, now, None)
            if answer is not None:
                self._apply_answer(net, answer, now)
            return
        cfg = net.config
        req = NetworkConfigRequest(
            net.id,
            metadata,
            cfg.revision if cfg is not None else 0,
            cfg.timestamp if cfg is not None else 0,
        )
        self._send(net.controller, Verb.NETWORK_CONFIG_REQUEST, req.encode(), now, compress=True)

    def _apply_answer(self, net: Network, answer: ConfigAnswer, now: int) -> None:
        if answer.config is not None:
            self._apply_config(net, answer.config, answer.config.encode(), now)
        elif answer.error is not None:
            status = _ERROR_STATUS.get(int(answer.error))
            if status is not None:
                self._set_status(net, status)

    def _do_config_request(
        self, peer: Peer, payload: memoryview, path: Path, pid: int, hops: int, now: int
    ) -> None:
        req = NetworkConfigRequest.decode(payload)
        ctl = self.controller
        if ctl is None:
            err = Error.unsupported_operation(Verb.NETWORK_CONFIG_REQUEST, pid, req.network_id)
            self._send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
        elif ctl.serves(req.network_id):
            physical = path.remote if hops == 0 else None
            answer = ctl.handle_request(peer.identity, req.network_id, req.metadata, now, physical)
            if answer is not None and answer.config is not None:
                self._send_config(peer.address, answer.config, pid, now)
            elif answer is not None and answer.error is not None:
                err = Error(
                    Verb.NETWORK_CONFIG_REQUEST,
                    pid,
                    answer.error,
                    req.network_id,
                    dictionary=answer.error_dictionary
                    if answer.error == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED
                    else None,
                )
                self._send(peer.address, Verb.ERROR, err.encode(), now)
        self._received(peer, path, hops, Verb.NETWORK_CONFIG_REQUEST, now)

    def _send_config(self, member: int, config: NetworkConfig, in_re: int | None, now: int) -> None:
        """Sign and send a config in chunks: OK chunks in reply, NETWORK_CONFIG when pushed."""
        raw = config.encode()
        update_id = int.from_bytes(self.random_bytes(8), "big") or 1
        for c in split_config_chunks(raw):
            chunk = NetworkConfigChunk.signed(
                config.network_id,
                bytes(c.data),
                update_id=update_id,
                total_length=len(raw),
                chunk_index=c.offset,
                sign=self.identity.sign,
            )
            if in_re is not None:
                body = OkNetworkConfigRequest(in_re, chunk).encode()
                self._send(member, Verb.OK, body, now, compress=True)
            else:
                self._send(member, Verb.NETWORK_CONFIG, chunk.encode(), now, compress=True)

    def _controller_identity(self, net: Network, now: int) -> Identity | None:
        if net.controller == self.address:
            return self.identity
        peer = self.peers.get(net.controller)
        if peer is None:
            self._request_whois(net.controller, now)
            return None
        return peer.identity

    def _config_chunk(
        self,
        peer: Peer,
        chunk: NetworkConfigChunk,
        pid: int,
        now: int,
        *,
        pushed: bool,
        path: Path,
    ) -> None:
        net = self.networks.get(chunk.network_id)
        if net is None:
            return
        if chunk.signature is None:
            # Legacy unsigned form: only straight from the controller, and only whole.
            if peer.address != net.controller:
                self.counters.drop(Drop.UNTRUSTED_SENDER)
                return
            data: bytes | None = chunk.data
        else:
            ctl = self._controller_identity(net, now)
            if ctl is None:
                return
            if not ctl.verify(chunk.signed_portion(), chunk.signature):
                self.counters.drop(Drop.BAD_SIGNATURE)
                return
            data = net.add_chunk(chunk.update_id, chunk.total_length, chunk.chunk_index, chunk.data)
            if pushed and data is not None:
                # The reference acknowledges a completed push with in-re verb ECHO (a quirk).
                ack = NetconfAck(pid, net.id, chunk.update_id).encode()
                self._send_on(peer, path, Verb.OK, ack, now, expect=False)
        if data is None:
            return
        try:
            cfg = NetworkConfig.decode(data)
        except DecodeError:
            self.counters.drop(Drop.MALFORMED)
            return
        self._apply_config(net, cfg, data, now)

    def _apply_config(self, net: Network, cfg: NetworkConfig, raw: bytes, now: int) -> None:
        before = [str(a) for a in net.assigned_addresses()]
        old_status = net.status
        changed = net.set_config(cfg, raw, now)
        if net.status != old_status:
            self._events.append(ev.NetworkStatusChanged(net.id, net.status.value))
        if changed:
            self._config_events(net, before, now)
            self._retry_gated_frames(now)
            if old_status != NetworkStatus.OK:
                self._announce(net, now)

    def _config_events(self, net: Network, before: list[str], now: int) -> None:
        cfg = net.config
        if cfg is None or net.config_bytes is None:
            return
        self._events.append(ev.NetworkConfigUpdated(net.id, cfg.revision, net.config_bytes))
        after = [str(a) for a in net.assigned_addresses()]
        for a in after:
            if a not in before:
                self._events.append(ev.AddressAdded(net.id, a))
        for a in before:
            if a not in after:
                self._events.append(ev.AddressRemoved(net.id, a))

    def _set_status(self, net: Network, status: NetworkStatus) -> None:
        if net.status != status:
            net.status = status
            self._events.append(ev.NetworkStatusChanged(net.id, status.value))

    def _do_credentials(
        self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int
    ) -> None:
        if now - peer.last_credentials_received < PEER_CREDENTIALS_RATE_LIMIT:
            self.counters.drop(Drop.RATE_LIMITED)
            self._received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)
            return
        peer.last_credentials_received = now
        creds, _error = NetworkCredentials.decode_partial(payload)
        accepted = False
        for com in creds.coms:
            accepted |= self._accept_com(com.network_id, com, now)
        others: tuple[Capability | Tag | CertificateOfOwnership, ...] = (
            *creds.capabilities,
            *creds.tags,
            *creds.certificates_of_ownership,
        )
        for cred in others:
            net = self.networks.get(cred.network_id)
            ctl = self._controller_identity(net, now) if net is not None else None
            if net is None or ctl is None or not cred.verify(ctl):
                continue
            if isinstance(cred, Capability):
                accepted |= net.add_capability(cred)
            elif isinstance(cred, Tag):
                accepted |= net.add_tag(cred)
            else:
                accepted |= net.add_coo(cred)
        for rev in creds.revocations:
            net = self.networks.get(rev.network_id)
            ctl = self._controller_identity(net, now) if net is not None else None
            if net is not None and ctl is not None and rev.verify(ctl):
                accepted |= net.add_revocation(rev)
        if accepted:
            peer.last_trust_established = now
            path.last_trust_established = now
            self._retry_gated_frames(now)
        self._received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)

    def _accept_com(self, network_id: int, com: CertificateOfMembership, now: int) -> bool:
        net = self.networks.get(network_id)
        if net is None:
            return False
        ctl = self._controller_identity(net, now)
        if ctl is None or not com.verify(ctl):
            return False
        return net.add_com(com)

    def _push_credentials(self, net: Network, dest: int, now: int) -> None:
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
        self._send(dest, Verb.NETWORK_CREDENTIALS, creds.encode(), now, compress=True)
        net.membership(dest).last_pushed_credentials = now

    def _do_frame(
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
    ) -> None:
        net = self.networks.get(network_id)
        if net is not None:
            if net.gate(peer.address, peer.identity):
                peer.last_trust_established = now
                path.last_trust_established = now
                self._events.append(
                    ev.FrameReceived(
                        network_id, peer.address, source_mac, dest_mac, ethertype, payload
                    )
                )
            else:
                # Not (yet) a member in good standing: ask for its credentials and keep the
                # frame a few seconds, since they usually arrive right behind it.
                err = Error.need_membership_certificate(verb, pid, network_id)
                self._send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
                self.counters.drop(Drop.NOT_A_MEMBER)
                if len(self._gated_frames) >= GATED_FRAME_QUEUE:
                    self._gated_frames.popleft()
                self._gated_frames.append(
                    _GatedFrame(
                        peer.address, network_id, source_mac, dest_mac, ethertype, payload, now
                    )
                )
        self._received(peer, path, hops, verb, now)

    def _retry_gated_frames(self, now: int) -> None:
        if not self._gated_frames:
            return
        keep: deque[_GatedFrame] = deque()
        for g in self._gated_frames:
            if now - g.created >= QUEUE_TIMEOUT:
                continue
            net = self.networks.get(g.network_id)
            peer = self.peers.get(g.source)
            if net is None or peer is None:
                continue
            if net.gate(peer.address, peer.identity):
                self._events.append(
                    ev.FrameReceived(
                        g.network_id, g.source, g.source_mac, g.dest_mac, g.ethertype, g.payload
                    )
                )
            else:
                keep.append(g)
        self._gated_frames = keep

    # ------------------------------------------------------------------ receive path

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr, now: int
    ) -> None:
        self._now = now
        n = len(data)
        c = self.counters
        c.packets_in += 1
        c.bytes_in += n
        try:
            path = self._path(local, remote)
            path.last_in = now
            if n > 16 and data[13] == 0xFF:
                self._receive_fragment(data, path, now)
            elif n >= IDX_PAYLOAD:
                self._receive_head(data, path, now)
            elif n == 13:
                self._receive_beacon(data, path, now)
            else:
                c.drop(Drop.TOO_SHORT)
        except DecodeError:
            c.drop(Drop.MALFORMED)
        except Exception:
            log.exception("internal error on a datagram from %s", remote)
            c.drop(Drop.INTERNAL_ERROR)

    def receive_reassembled(
        self, packet: bytearray, local: Addr, remote: Addr, now: int, pieces: int, wire_bytes: int
    ) -> None:
        """A whole packet addressed to us that the transport put together from ``pieces``
        datagrams (or received unfragmented), still armored: what ``receive_datagram`` would
        have reached after its reassembly."""
        self._now = now
        c = self.counters
        c.packets_in += pieces
        c.bytes_in += wire_bytes
        try:
            path = self._path(local, remote)
            path.last_in = now
            self._decode_whole(packet, path, now)
        except DecodeError:
            c.drop(Drop.MALFORMED)
        except Exception:
            log.exception("internal error on a packet from %s", remote)
            c.drop(Drop.INTERNAL_ERROR)

    def receive_authenticated(
        self,
        packet: bytearray,
        key: SymmetricKey,
        local: Addr,
        remote: Addr,
        now: int,
        pieces: int,
        wire_bytes: int,
        frames: int = 1,
    ) -> bool:
        """A whole packet the transport already authenticated and decrypted with ``key``.

        ``frames`` > 1: the transport joined that many FRAMEs of one TCP flow into this one
        (they are counted as received one by one). False, and the packet dropped, if ``key``
        is not the sender's current key (the transport's cache was stale)."""
        self._now = now
        c = self.counters
        c.packets_in += pieces
        c.bytes_in += wire_bytes
        try:
            src = int.from_bytes(packet[13:18], "big")
            peer = self.peers.get(src)
            if peer is None or peer.key is not key or len(packet) < IDX_PAYLOAD:
                c.drop(Drop.STALE_KEY)
                return False
            path = self._path(local, remote)
            path.last_in = now
            flags = packet[18]
            c.ciphers_in[_CIPHER_NAMES[(flags >> 3) & 7]] += frames
            if frames > 1:
                c.verbs_in[_VERB_NAMES[packet[27] & 0x1F]] += frames - 1
            if packet[27] & 0x80:
                try:
                    pk.decompress(packet)
                except DecodeError:
                    c.drop(Drop.DECOMPRESS_FAILED)
                    return True
            self._dispatch(peer, packet, path, flags & 7, now)
        except DecodeError:
            c.drop(Drop.MALFORMED)
        except Exception:
            log.exception("internal error on a packet from %s", remote)
            c.drop(Drop.INTERNAL_ERROR)
        return True

    def receive_too_long(self, wire_bytes: int) -> None:
        """A datagram the transport discarded as longer than any packet: counted."""
        self.counters.packets_in += 1
        self.counters.bytes_in += wire_bytes
        self.counters.drop(Drop.TOO_LONG)

    def _receive_beacon(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        addr = int.from_bytes(data[8:13], "big")
        peer = self.peers.get(addr)
        if peer is None or addr == self.address:
            return
        if now - self._beacon_answered.get(addr, -(10**12)) < BEACON_REPLY_INTERVAL:
            return
        self._beacon_answered[addr] = now
        self._send_on(peer, path, Verb.NOP, b"", now, expect=False)

    def _receive_fragment(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        dest = int.from_bytes(data[8:13], "big")
        if dest != self.address:
            self._relay(bytearray(data), dest, None, path, now, fragment=True)
            return
        whole = self._reassemble(data, now, head=False)
        if whole is not None:
            self._decode_whole(bytearray(whole), path, now)

    def _reassemble(
        self, data: bytes | bytearray | memoryview, now: int, *, head: bool
    ) -> bytearray | None:
        """Feed the reassembler; a piece it rejects as malformed is counted as a drop here too."""
        r = self.reassembler
        drops = r.drops
        before = len(drops) and _bad_fragments(drops)
        whole = r.add_head(bytes(data), now) if head else r.add_fragment(bytes(data), now)
        if len(drops) and _bad_fragments(drops) != before:
            self.counters.drop(Drop.BAD_FRAGMENT)
        return whole

    def _receive_head(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        dest = int.from_bytes(data[8:13], "big")
        src = int.from_bytes(data[13:18], "big")
        if src == self.address:
            self.counters.drop(Drop.FROM_SELF)
            return
        if dest != self.address:
            self._relay(bytearray(data), dest, src, path, now, fragment=False)
            return
        if data[18] & FLAG_FRAGMENTED:
            whole = self._reassemble(data, now, head=True)
            if whole is None:
                return
            self._decode_whole(bytearray(whole), path, now)
        else:
            # The common case: source and destination are already checked above.
            self._process_packet(bytearray(data), path, now)

    def _decode_whole(self, buf: bytearray, path: Path, now: int) -> None:
        if len(buf) < IDX_PAYLOAD:
            self.counters.drop(Drop.TOO_SHORT)
            return
        src = int.from_bytes(buf[13:18], "big")
        if src == self.address:
            self.counters.drop(Drop.FROM_SELF)
            return
        self._process_packet(buf, path, now)

    def _process_packet(self, buf: bytearray, path: Path, now: int) -> None:
        """tryDecode (protocol-core.md 8): authenticate, decompress, dispatch."""
        src = int.from_bytes(buf[13:18], "big")
        flags = buf[18]
        cipher = (flags >> 3) & 7
        hops = flags & 7
        if cipher == Cipher.POLY1305_NONE and (buf[27] & 0x1F) == Verb.HELLO:
            self._do_hello(buf, path, hops, now, authenticated=False)
            return
        if cipher > Cipher.AES_GMAC_SIV:
            self.counters.drop(Drop.BAD_CIPHER)
            return
        if cipher == Cipher.NONE_TRUSTED_PATH:
            # We configure no trusted paths, so such packets can never be authentic here.
            self.counters.drop(Drop.TRUSTED_PATH_REFUSED)
            return
        peer = self.peers.get(src)
        if peer is None:
            self._park_unknown(src, buf, path, now)
            return
        if not pk.dearmor(buf, peer.key):
            self.counters.drop(Drop.MAC_FAILED)
            return
        self.counters.ciphers_in[_CIPHER_NAMES[cipher]] += 1
        if buf[27] & 0x80:
            try:
                pk.decompress(buf)
            except DecodeError:
                self.counters.drop(Drop.DECOMPRESS_FAILED)
                return
        self._dispatch(peer, buf, path, hops, now)

    def _dispatch(self, peer: Peer, buf: bytearray, path: Path, hops: int, now: int) -> None:
        verb = buf[27] & 0x1F
        self.counters.verbs_in[_VERB_NAMES[verb]] += 1
        payload = memoryview(buf)[IDX_PAYLOAD:]
        pid = int.from_bytes(buf[0:8], "big")
        try:
            if verb == Verb.FRAME:
                # Decoded by hand (what Frame.decode does, minus the objects): every data
                # packet of every network takes this branch.
                if len(buf) < IDX_PAYLOAD + 10:
                    raise DecodeError("FRAME shorter than its network id and ethertype")
                nwid = int.from_bytes(buf[IDX_PAYLOAD : IDX_PAYLOAD + 8], "big")
                self._do_frame(
                    peer,
                    nwid,
                    mac_from_address(peer.address, nwid),
                    mac_from_address(self.address, nwid),
                    (buf[IDX_PAYLOAD + 8] << 8) | buf[IDX_PAYLOAD + 9],
                    bytes(buf[IDX_PAYLOAD + 10 :]),
                    path,
                    pid,
                    hops,
                    now,
                    Verb.FRAME,
                )
            elif verb == Verb.ECHO:
                self._do_echo(peer, payload, path, pid, hops, now)
            elif verb == Verb.OK:
                self._do_ok(peer, payload, path, hops, now)
            elif verb == Verb.HELLO:
                self._do_hello(buf, path, hops, now, authenticated=True)
            elif verb == Verb.WHOIS:
                self._do_whois(peer, payload, path, pid, hops, now)
            elif verb == Verb.ERROR:
                self._do_error(peer, payload, path, hops, now)
            elif verb == Verb.RENDEZVOUS:
                self._do_rendezvous(peer, payload, path, hops, now)
            elif verb == Verb.PUSH_DIRECT_PATHS:
                self._do_push_direct_paths(peer, payload, path, hops, now)
            elif verb == Verb.USER_MESSAGE:
                m = UserMessage.decode(payload)
                self._events.append(ev.UserMessage(peer.address, m.type_id, m.data))
                self._received(peer, path, hops, verb, now)
            elif verb == Verb.REMOTE_TRACE:
                t = RemoteTrace.decode(payload)
                for rec in t.records:
                    if rec and len(rec) <= REMOTE_TRACE_MAX:
                        self._events.append(ev.RemoteTrace(peer.address, bytes(rec)))
                self._received(peer, path, hops, verb, now)
            elif verb == Verb.MULTICAST_LIKE:
                self._do_multicast_like(peer, payload, path, hops, now)
            elif verb == Verb.MULTICAST_GATHER:
                self._do_multicast_gather(peer, payload, path, pid, hops, now)
            elif verb == Verb.MULTICAST_FRAME:
                self._do_multicast_frame(peer, payload, path, pid, hops, now)
            elif verb in (Verb.ACK, Verb.QOS_MEASUREMENT, Verb.PATH_NEGOTIATION_REQUEST):
                # Bonding verbs: MAC checked, then dropped without refreshing the peer, as a
                # non-bonding reference node does (protocol-multipath.md 1).
                self.counters.drop(Drop.NO_BOND)
            elif verb == Verb.NETWORK_CONFIG_REQUEST:
                self._do_config_request(peer, payload, path, pid, hops, now)
            elif verb == Verb.NETWORK_CONFIG:
                chunk = NetworkConfigChunk.decode(payload)
                self._config_chunk(peer, chunk, pid, now, pushed=True, path=path)
                self._received(peer, path, hops, verb, now)
            elif verb == Verb.NETWORK_CREDENTIALS:
                self._do_credentials(peer, payload, path, hops, now)
            elif verb == Verb.EXT_FRAME:
                x = ExtFrame.decode(payload)
                if x.com is not None:
                    self._accept_com(x.network_id, x.com, now)
                self._do_frame(
                    peer,
                    x.network_id,
                    x.from_mac,
                    x.to_mac,
                    x.ethertype,
                    x.payload,
                    path,
                    pid,
                    hops,
                    now,
                    Verb.EXT_FRAME,
                )
            else:
                # NOP, unknown verbs and VL2 traffic for networks we have not joined are
                # accepted and only refresh the peer, like the reference.
                self._received(peer, path, hops, verb, now)
        except DecodeError:
            self.counters.drop(Drop.MALFORMED)

    # ------------------------------------------------------------------ verb handlers

    def _do_hello(
        self, buf: bytearray, path: Path, hops: int, now: int, *, authenticated: bool
    ) -> None:
        payload = memoryview(buf)[IDX_PAYLOAD:]
        tail = Hello.encrypted_tail_offset(payload)  # validates the clear-text head
        head = Hello.decode(payload[:tail] if tail is not None else payload)
        ident = head.identity
        src = int.from_bytes(buf[13:18], "big")
        if head.protocol_version < PROTO_VERSION_MIN:
            self.counters.drop(Drop.OLD_PROTOCOL)
            return
        if ident.address != src:
            self.counters.drop(Drop.IDENTITY_MISMATCH)
            return
        peer = self.peers.get(src)
        if peer is not None and peer.identity != ident:
            self._hello_collision(buf, ident, path, now)
            return
        if peer is None:
            if not self._validation_gate_ok(path, now):
                self.counters.drop(Drop.RATE_LIMITED)
                return
            try:
                key = SymmetricKey(self.identity.agree(ident))
            except CryptoError:
                self.counters.drop(Drop.IDENTITY_INVALID)
                return
            if not authenticated and not pk.dearmor(buf, key):
                self.counters.drop(Drop.MAC_FAILED)
                return
            if not authenticated:
                self.counters.ciphers_in[_CIPHER_NAMES[(buf[18] >> 3) & 7]] += 1
            if not self._is_known_valid(ident):
                if self.config.defer_identity_validation:
                    self._defer_validation(ident, buf, path)
                    return
                if not ident.validate():
                    self.counters.drop(Drop.IDENTITY_INVALID)
                    return
                self._remember_valid(ident)
            peer = self._add_peer(ident, key, now)
        elif not authenticated:
            if not pk.dearmor(buf, peer.key):
                self.counters.drop(Drop.MAC_FAILED)
                return
            self.counters.ciphers_in[_CIPHER_NAMES[(buf[18] >> 3) & 7]] += 1
        self._after_hello(peer, buf, tail, path, hops, now)

    def _after_hello(
        self, peer: Peer, buf: bytearray, tail: int | None, path: Path, hops: int, now: int
    ) -> None:
        if tail is not None:
            start = IDX_PAYLOAD + tail
            pk.crypt_field(buf, peer.key, start, len(buf) - start)
        hello = Hello.decode(memoryview(buf)[IDX_PAYLOAD:])
        pid = int.from_bytes(buf[0:8], "big")
        if hops == 0 and hello.destination is not None:
            self._surface_report(peer, path, hello.destination, now)
        # OK(HELLO): encrypted with what the peer supported *before* this HELLO (so a new peer
        # gets Salsa20/12, as in the reference), sent straight back on the receiving path.
        surface = path.inet if hello.protocol_version >= 5 else path.inet.with_port(0)
        ok = OkHello(
            pid,
            hello.timestamp,
            PROTO_VERSION,
            SOFTWARE_MAJOR,
            SOFTWARE_MINOR,
            SOFTWARE_REVISION,
            surface,
            self._world_updates_for(hello),
        )
        self._send_on(peer, path, Verb.OK, ok.encode(), now, expect=False)
        peer.version = (
            hello.protocol_version,
            hello.version_major,
            hello.version_minor,
            hello.version_revision,
        )
        self._received(peer, path, hops, Verb.HELLO, now)

    def _world_updates_for(self, hello: Hello) -> bytes:
        out = bytearray()
        planet = self.topology.planet
        if (
            hello.planet_id == planet.id
            and hello.planet_timestamp is not None
            and hello.planet_timestamp < planet.timestamp
        ):
            out += planet.to_bytes()
        for m in hello.moon_refs():
            have = self.topology.moons.get(m.world_id)
            if have is not None and m.timestamp < have.timestamp:
                out += have.to_bytes()
        return bytes(out)

    def _hello_collision(self, buf: bytearray, ident: Identity, path: Path, now: int) -> None:
        """A second identity claims a known address: tell it, if its HELLO is genuine."""
        self.counters.drop(Drop.IDENTITY_COLLISION)
        if not self._validation_gate_ok(path, now):
            return
        try:
            key = SymmetricKey(self.identity.agree(ident))
        except CryptoError:
            return
        if not pk.dearmor(buf, key):
            return
        pid = int.from_bytes(buf[0:8], "big")
        err = Error.identity_collision(pid).encode()
        packet = pk.new_packet(self.random_bytes(8), ident.address, self.address, Verb.ERROR, err)
        pk.armor(packet, key, Cipher.POLY1305_SALSA2012)
        self._emit(path, bytes(packet), now)

    def _do_ok(self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int) -> None:
        if len(payload) < 9:
            raise DecodeError("OK shorter than its header")
        in_re_id = int.from_bytes(payload[1:9], "big")
        if not self.expected.expecting(in_re_id):
            self.counters.drop(Drop.UNEXPECTED_OK)
            return
        ok = decode_ok(payload)
        if isinstance(ok, OkHello):
            self._ok_hello(peer, ok, path, hops, now)
        elif isinstance(ok, OkWhois):
            if self.topology.is_upstream(peer.address):
                ident = ok.identities[0]
                if ident.address not in self.peers and ident.address != self.address:
                    self._whois_answered(ident, now)
        elif isinstance(ok, OkEcho):
            req = self._api_echo.pop(in_re_id, None)
            if req is not None and req.dest == peer.address:
                self._events.append(
                    ev.EchoReply(peer.address, bytes(ok.data), req.request_id, now - req.sent)
                )
        elif isinstance(ok, OkNetworkConfigRequest):
            self._config_chunk(peer, ok.chunk, in_re_id, now, pushed=False, path=path)
        elif isinstance(ok, OkMulticastGather):
            net = self.networks.get(ok.network_id)
            if net is not None:
                group = (ok.mac, ok.adi)
                fresh = [a for a in ok.members if a not in net.members_of(group, now)]
                for a in ok.members:
                    net.learn_member(group, a, now)
                self._send_pending_multicasts(net, group, fresh, now)
        self._received(peer, path, hops, Verb.OK, now)

    def _ok_hello(self, peer: Peer, ok: OkHello, path: Path, hops: int, now: int) -> None:
        if ok.protocol_version < PROTO_VERSION_MIN:
            self.counters.drop(Drop.OLD_PROTOCOL)
            return
        if ok.worlds and self.topology.should_accept_world_from(peer.address):
            try:
                worlds = ok.parse_worlds()
            except DecodeError:
                worlds = ()
            for w in worlds:
                if self.topology.add_world(w, always_accept_new=False, via=peer.address):
                    self._events.append(
                        ev.WorldUpdated(w.id, int(w.type), w.timestamp, w.to_bytes())
                    )
                    self._make_upstream_peers()
        if hops == 0:
            path.update_latency(now - ok.timestamp)
        peer.version = (
            ok.protocol_version,
            ok.version_major,
            ok.version_minor,
            ok.version_revision,
        )
        if hops == 0 and ok.surface is not None:
            self._surface_report(peer, path, ok.surface, now)

    def _do_echo(
        self, peer: Peer, payload: memoryview, path: Path, pid: int, hops: int, now: int
    ) -> None:
        last = self._echo_answered.get(path, -(10**12))
        if now - last >= ECHO_ANSWER_INTERVAL:
            self._echo_answered[path] = now
            body = Writer().u8(Verb.ECHO).u64(pid).raw(payload)
            self._send_on(peer, path, Verb.OK, bytes(body.buf), now, expect=False)
        else:
            self.counters.drop(Drop.RATE_LIMITED)
        self._received(peer, path, hops, Verb.ECHO, now)

    def _do_whois(
        self, peer: Peer, payload: memoryview, path: Path, pid: int, hops: int, now: int
    ) -> None:
        req = Whois.decode(payload)
        if not self.topology.am_upstream:
            if now - peer.last_whois_answered < PEER_WHOIS_RATE_LIMIT:
                self.counters.drop(Drop.RATE_LIMITED)
                self._received(peer, path, hops, Verb.WHOIS, now)
                return
            peer.last_whois_answered = now
        found: list[Identity] = []
        for a in req.addresses:
            if a == self.address:
                found.append(self.identity.public())
            elif (p := self.peers.get(a)) is not None:
                found.append(p.identity)
            elif not self.topology.am_upstream:
                self._request_whois(a, now)
        if found:
            body = OkWhois(pid, tuple(found)).encode()
            self._send_on(peer, path, Verb.OK, body, now, expect=False)
        self._received(peer, path, hops, Verb.WHOIS, now)

    def _do_error(self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int) -> None:
        """IncomingPacket::_doERROR (node/IncomingPacket.cpp:169-316, protocol-network.md §2.4)."""
        err = Error.decode(payload)
        code = err.code
        net = self.networks.get(err.network_id) if err.network_id is not None else None
        if code == ErrorCode.IDENTITY_COLLISION:
            if self.topology.is_upstream(peer.address):
                self._events.append(ev.IdentityCollision(peer.address))
        elif code == ErrorCode.NEED_MEMBERSHIP_CERTIFICATE:
            if net is not None and net.should_answer_credentials_request(peer.address, now):
                self._push_credentials(net, peer.address, now)
        elif net is not None and peer.address == net.controller:
            # NOT_FOUND and UNSUPPORTED_OPERATION count only in re a config request; ACCESS_DENIED
            # and AUTHENTICATION_REQUIRED from the controller count in re anything.
            status = _ERROR_STATUS.get(int(code))
            if status is not None and (
                err.in_re_verb == Verb.NETWORK_CONFIG_REQUEST
                or code
                in (ErrorCode.NETWORK_ACCESS_DENIED, ErrorCode.NETWORK_AUTHENTICATION_REQUIRED)
            ):
                self._set_status(net, status)
        self._received(peer, path, hops, Verb.ERROR, now)

    def _do_rendezvous(
        self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int
    ) -> None:
        rv = Rendezvous.decode(payload)
        if self.topology.is_upstream(peer.address):
            target = self.peers.get(rv.address)
            if target is not None and rv.port > 0:
                remote: Addr = (str(rv.ip), rv.port)
                if self._should_use_path(target.address, remote):
                    local = self._local_for(remote)
                    if local is not None:
                        # Junk with a short TTL opens our NAT/firewall toward the other side
                        # without reaching it (protocol-core.md 9.7).
                        self._out.append(Outgoing(local, remote, self.random_bytes(4), 2))
                        self._contact(target, self._path(local, remote), now, full_hello=False)
        self._received(peer, path, hops, Verb.RENDEZVOUS, now)

    def _do_push_direct_paths(
        self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int
    ) -> None:
        if now - peer.last_direct_path_push_receive > PUSH_DIRECT_PATHS_CUTOFF_TIME:
            peer.push_cutoff_count = 0
        peer.last_direct_path_push_receive = now
        if peer.push_cutoff_count >= PUSH_DIRECT_PATHS_CUTOFF_LIMIT:
            self.counters.drop(Drop.RATE_LIMITED)
            self._received(peer, path, hops, Verb.PUSH_DIRECT_PATHS, now)
            return
        peer.push_cutoff_count += 1
        push = PushDirectPaths.decode(payload)
        per_kind: dict[tuple[int, bool], int] = {}
        for rec in push.paths:
            if rec.forget or rec.address is None:
                continue
            remote = rec.address.to_sockaddr()
            if not self._should_use_path(peer.address, remote):
                continue
            local = self._local_for(remote)
            if local is None:
                continue
            known = self.paths.get((local, remote))
            if known is not None and peer.find(known) is not None and known.alive(now):
                continue
            kind = (int(rec.address.scope()), rec.address.is_ipv6())
            if per_kind.get(kind, 0) >= PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY:
                continue
            per_kind[kind] = per_kind.get(kind, 0) + 1
            self._contact(peer, self._path(local, remote), now, full_hello=False)
        self._received(peer, path, hops, Verb.PUSH_DIRECT_PATHS, now)

    def _do_multicast_like(
        self, peer: Peer, payload: memoryview, path: Path, hops: int, now: int
    ) -> None:
        like = MulticastLike.decode(payload)
        for sub in like.subscriptions:
            if self.topology.am_upstream:
                key = (sub.network_id, sub.mac, sub.adi)
                self._multicast.setdefault(key, {})[peer.address] = now
            net = self.networks.get(sub.network_id)
            if net is not None and self._may_like(net, peer, now):
                group = (sub.mac, sub.adi)
                net.learn_member(group, peer.address, now)
                self._send_pending_multicasts(net, group, [peer.address], now)
        self._received(peer, path, hops, Verb.MULTICAST_LIKE, now)

    def _may_like(self, net: Network, peer: Peer, now: int) -> bool:
        """LIKEs count from members in good standing, or from members our controller has just
        configured (they may not have pushed their credentials to us yet)."""
        if net.gate(peer.address, peer.identity):
            return True
        ctl = self.controller
        return ctl is not None and ctl.has_recent_member(net.id, peer.address, now)

    def _do_multicast_gather(
        self, peer: Peer, payload: memoryview, path: Path, pid: int, hops: int, now: int
    ) -> None:
        g = MulticastGather.decode(payload)
        net = self.networks.get(g.network_id)
        live: list[int] = []
        if g.gather_limit > 0 and self.topology.am_upstream:
            members = self._multicast.get((g.network_id, g.mac, g.adi), {})
            live = [
                a
                for a, t in members.items()
                if a != peer.address and now - t < MULTICAST_LIKE_EXPIRE
            ]
        elif g.gather_limit > 0 and net is not None and self._may_like(net, peer, now):
            group = (g.mac, g.adi)
            live = [a for a in net.members_of(group, now) if a != peer.address]
            if group in net.announced_groups():
                live.append(self.address)
        if live:
            self._rng.shuffle(live)
            ok = OkMulticastGather(
                pid, g.network_id, g.mac, g.adi, len(live), tuple(live[: g.gather_limit])
            )
            self._send_on(peer, path, Verb.OK, ok.encode(), now, expect=False)
        self._received(peer, path, hops, Verb.MULTICAST_GATHER, now)

    def multicast_subscribers(self, network_id: int, mac: int, adi: int, now: int) -> list[int]:
        """Root role: the members that recently announced (LIKE) a multicast group."""
        members = self._multicast.get((network_id, mac, adi), {})
        return sorted(a for a, t in members.items() if now - t < MULTICAST_LIKE_EXPIRE)

    # ------------------------------------------------------------------ Peer::received

    def _received(self, peer: Peer, path: Path, hops: int, verb: int, now: int) -> None:
        """Path learning and direct-path pushes after any authenticated packet (9.1, 9.8)."""
        peer.last_receive = now
        if verb in (
            Verb.FRAME,
            Verb.EXT_FRAME,
            Verb.NETWORK_CONFIG_REQUEST,
            Verb.NETWORK_CONFIG,
            Verb.MULTICAST_FRAME,
        ):
            peer.last_frame = now
        if self.topology.is_upstream(peer.address):
            self._set_online(True)
        if hops != 0:
            return
        slot = peer.find(path)
        if slot is not None:
            slot.lr = now
        elif self._should_use_path(peer.address, path.remote):
            if peer.has_alive_path_to_ip(path, now):
                pass
            elif verb == Verb.OK:
                had_direct = peer.direct_path_count(now) > 0
                evicted = peer.learn(path, now)
                if evicted is not None:
                    self._events.append(
                        ev.PathDown(
                            peer.address, evicted.path.local, evicted.path.remote, "replaced"
                        )
                    )
                self._events.append(ev.PathUp(peer.address, path.local, path.remote))
                if not had_direct:
                    self._events.append(ev.PeerDirect(peer.address))
            else:
                peer.unconfirmed, peer.unconfirmed_at = path, now
                self._confirm_path(peer, path, now)
        self._maybe_push_direct_paths(peer, path, hops, now)

    def _maybe_push_direct_paths(self, peer: Peer, path: Path, hops: int, now: int) -> None:
        if not peer.trust_established(now):
            return
        interval = DIRECT_PATH_PUSH_INTERVAL_HAVEPATH if hops == 0 else DIRECT_PATH_PUSH_INTERVAL
        if now - peer.last_direct_path_push_sent < interval:
            return
        addrs = [*self.interface_addresses, *self.selfaware.surfaces(now)]
        if not addrs:
            return
        peer.last_direct_path_push_sent = now
        records = [PushedPath.for_address(a) for a in dict.fromkeys(addrs)]
        while records:
            chunk: list[PushedPath] = []
            size = 2
            while records and size + records[0].encoded_size() <= MAX_PUSH_PAYLOAD:
                r = records.pop(0)
                chunk.append(r)
                size += r.encoded_size()
            if not chunk:
                break
            body = PushDirectPaths(tuple(chunk)).encode()
            self._send_on(peer, path, Verb.PUSH_DIRECT_PATHS, body, now, compress=True)

    # ------------------------------------------------------------------ send path

    def _check_dest(self, dest: int) -> None:
        if dest == self.address:
            raise LocalProtocolError("cannot send a ZeroTier packet to ourselves")
        if not 0 < dest < 2**40 or dest >> 32 == 0xFF:
            raise LocalProtocolError(f"{dest:#x} is not a valid ZeroTier address")

    def _cipher_for(self, peer: Peer) -> Cipher:
        return Cipher.AES_GMAC_SIV if peer.supports_aes() else Cipher.POLY1305_SALSA2012

    def _send(
        self,
        dest: int,
        verb: int,
        payload: bytes,
        now: int,
        *,
        compress: bool = False,
        echo_request: int | None = None,
    ) -> None:
        """Switch::send: to the best path, else via an upstream, else queue and WHOIS."""
        peer = self.peers.get(dest)
        path = self._route(peer, now) if peer is not None else None
        if peer is None or path is None:
            if len(self._tx_queue) >= TX_QUEUE_SIZE:
                self._tx_queue.popleft()
            self._tx_queue.append(_TxEntry(dest, verb, payload, compress, now, echo_request))
            self._arm_queue_tick(now)
            if peer is None:
                self._request_whois(dest, now)
            return
        self._send_on(peer, path, verb, payload, now, compress=compress, echo_request=echo_request)

    def _route(self, peer: Peer, now: int) -> Path | None:
        path = peer.best_path(now)
        if path is not None:
            return path
        self._reconfirm(peer, now)
        up = self._best_upstream(now, exclude=peer.address)
        if up is not None:
            up_path = up.best_path(now)
            if up_path is not None:
                return up_path
        return peer.best_path(now, include_expired=True)

    def _send_on(
        self,
        peer: Peer,
        path: Path,
        verb: int,
        payload: bytes,
        now: int,
        *,
        compress: bool = False,
        echo_request: int | None = None,
        cipher: Cipher | None = None,
        expect: bool = True,
    ) -> int:
        """Build, armor and send one packet on ``path``; returns its wire packet ID.

        Requests are registered so their OK is accepted (``expect``); replies sent straight back
        on the receiving path (Path::send in the reference) pass ``expect=False``.
        """
        buf = pk.new_packet(self.random_bytes(8), peer.address, self.address, verb, payload)
        if compress:
            pk.compress(buf)
        if len(buf) > self.mtu:
            buf[18] |= FLAG_FRAGMENTED
        pk.armor(buf, peer.key, cipher if cipher is not None else self._cipher_for(peer))
        pid = int.from_bytes(buf[0:8], "big")
        if expect:
            self.expected.expect(pid)
        if echo_request is not None:
            self._api_echo[pid] = _ApiEcho(peer.address, now, echo_request)
            if len(self._api_echo) > 4096:
                self._api_echo.pop(next(iter(self._api_echo)))
        self._emit(path, buf, now)
        return pid

    def _emit(self, path: Path, buf: bytes | bytearray, now: int) -> None:
        if len(buf) > self.mtu:
            for chunk in split(buf, self.mtu):
                self._out.append(Outgoing(path.local, path.remote, chunk))
        else:
            self._out.append(Outgoing(path.local, path.remote, bytes(buf)))
        self.counters.packets_out += 1
        self.counters.bytes_out += len(buf)
        path.last_out = now

    def _send_hello(self, peer: Peer, path: Path | None, now: int) -> None:
        """A full HELLO: cipher 0 (MAC only) with the moon list under cryptField (10.2)."""
        moons = [MoonRef(WorldType.MOON, m.id, m.timestamp) for m in self.topology.moons.values()]
        moons += [
            MoonRef(WorldType.MOON, wid, 0)
            for wid in self.topology.seeds
            if wid not in self.topology.moons
        ]
        planet = self.topology.planet
        hello = Hello(
            PROTO_VERSION,
            SOFTWARE_MAJOR,
            SOFTWARE_MINOR,
            SOFTWARE_REVISION,
            now,
            self.identity.public(),
            path.inet if path is not None else None,
            planet.id,
            planet.timestamp,
            tuple(moons),
        )
        payload, tail = hello.encode_with_tail_offset()
        buf = pk.new_packet(self.random_bytes(8), peer.address, self.address, Verb.HELLO, payload)
        if tail is not None:
            start = IDX_PAYLOAD + tail
            pk.crypt_field(buf, peer.key, start, len(buf) - start)
        pk.armor(buf, peer.key, Cipher.POLY1305_NONE)
        self.expected.expect(int.from_bytes(buf[0:8], "big"))
        peer.last_sent_full_hello = now
        if path is None:
            path = self._route(peer, now)
            if path is None:
                return
        self._emit(path, buf, now)

    def _confirm_path(self, peer: Peer, path: Path, now: int) -> None:
        """A HELLO whose OK will teach us (and the peer) this path; at most once a second."""
        if now - path.last_hello_sent >= PATH_HELLO_INTERVAL:
            path.last_hello_sent = now
            self._send_hello(peer, path, now)

    def _reconfirm(self, peer: Peer, now: int) -> Path | None:
        """Probe the peer's last unconfirmed direct address; return it if fresh enough to use.

        Sending a HELLO there is always safe (it is authenticated and its OK is what teaches a
        path), so it is tried for as long as a path could live; forwarding data there directly
        is done only while the address carried authenticated traffic within the heartbeat.
        """
        p = peer.unconfirmed
        if p is None or now - peer.unconfirmed_at >= PEER_PATH_EXPIRATION:
            return None
        self._confirm_path(peer, p, now)
        if p.alive(now) and now - peer.unconfirmed_at < PATH_HEARTBEAT:
            return p
        return None

    def _contact(self, peer: Peer, path: Path, now: int, *, full_hello: bool) -> None:
        """attemptToContactAt: an empty ECHO if the peer takes it, else a HELLO (9.2)."""
        if full_hello or not peer.wants_echo_keepalive():
            self._send_hello(peer, path, now)
        else:
            self._send_on(peer, path, Verb.ECHO, b"", now)

    # ------------------------------------------------------------------ relaying

    def _relay(
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
        if not (self.topology.am_upstream or path.trust_established(now)):
            self.counters.drop(Drop.NOT_FOR_US)
            return
        if fragment:
            hops = buf[15]
            if hops >= RELAY_MAX_HOPS:
                self.counters.drop(Drop.RELAY_HOPS)
                return
            buf[15] = hops + 1
        else:
            hops = buf[18] & 7
            if hops >= RELAY_MAX_HOPS:
                self.counters.drop(Drop.RELAY_HOPS)
                return
            buf[18] = (buf[18] & 0xF8) | (hops + 1)
        target = self.peers.get(dest)
        out: Path | None = None
        if target is not None:
            out = target.best_path(now)
            if out is None:
                # No confirmed live path: a direct address that just carried authenticated
                # traffic from the target is better than dropping (and we confirm it).
                out = self._reconfirm(target, now)
        if out is not None:
            self._emit(out, buf, now)
            if src is not None and target is not None:
                self._maybe_unite(src, target, now)
            return
        up = self._best_upstream(now, exclude=src)
        up_path = up.best_path(now) if up is not None else None
        if up is not None and up_path is not None and up.address != src:
            self._emit(up_path, buf, now)
            return
        if target is None and self.topology.am_upstream:
            self._request_whois(dest, now)
        self.counters.drop(Drop.RELAY_NO_ROUTE)

    def _maybe_unite(self, src: int, target: Peer, now: int) -> None:
        """Send RENDEZVOUS to two peers we relay between, at most every 30 s (9.7)."""
        a = self.peers.get(src)
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
        self._rng.shuffle(sends)
        for who, other, other_path in sends:
            host, port = other_path.remote
            rv = Rendezvous.create(other, InetAddress.parse(f"{host}/{port}"))
            dest_path = who.best_path(now)
            if dest_path is not None:
                self._send_on(who, dest_path, Verb.RENDEZVOUS, rv.encode(), now)

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

    # ------------------------------------------------------------------ WHOIS and queues

    def _best_upstream(self, now: int, exclude: int | None = None) -> Peer | None:
        best: Peer | None = None
        best_q = 0
        for a in self.topology.upstreams:
            if a == exclude:
                continue
            p = self.peers.get(a)
            if p is None or p.best_path(now) is None:
                continue
            q = p.relay_quality(now)
            if best is None or q < best_q:
                best, best_q = p, q
        return best

    def _request_whois(self, address: int, now: int) -> None:
        w = self._whois.get(address)
        if w is None:
            if len(self._whois) >= MAX_WHOIS_PENDING:
                del self._whois[next(iter(self._whois))]
            self._whois[address] = w = _Whois(now, -(10**12))
        if now - w.last_sent < WHOIS_RETRY_DELAY:
            self._arm_queue_tick(now)
            return
        up = self._best_upstream(now, exclude=address)
        if up is not None:
            w.last_sent = now
            body = Writer().address(address).getvalue()
            path = up.best_path(now)
            if path is not None:
                self._send_on(up, path, Verb.WHOIS, body, now)
        self._arm_queue_tick(now)

    def _whois_answered(self, ident: Identity, now: int) -> None:
        """OK(WHOIS) from a root: trusted without validation, as in the reference (9.3)."""
        try:
            key = SymmetricKey(self.identity.agree(ident))
        except CryptoError:
            self.counters.drop(Drop.IDENTITY_INVALID)
            return
        self._add_peer(ident, key, now)
        self._whois.pop(ident.address, None)
        self._flush_queues_for(ident.address, now)

    def _add_peer(self, ident: Identity, key: SymmetricKey, now: int) -> Peer:
        peer = Peer(ident, key, now)
        self.peers[ident.address] = peer
        self._events.append(ev.PeerAdded(ident.address))
        if self._rx_queue or self._tx_queue:
            # Packets waiting for this identity go out (or get decoded) on the next tick, which
            # is due at once; not here, since we may be inside a handler for this very peer.
            self._next_queue_tick = now
        return peer

    def _park_unknown(self, src: int, buf: bytearray, path: Path, now: int) -> None:
        if len(self._rx_queue) >= RX_QUEUE_SIZE:
            self._rx_queue.popleft()
            self.counters.drop(Drop.UNKNOWN_PEER)
        self._rx_queue.append(_RxEntry(src, buf, path, now))
        self._request_whois(src, now)

    def _arm_queue_tick(self, now: int) -> None:
        if self._next_queue_tick is None:
            self._next_queue_tick = now + WHOIS_RETRY_DELAY

    def _flush_queues_for(self, address: int, now: int) -> None:
        rx = [e for e in self._rx_queue if e.source == address]
        if rx:
            self._rx_queue = deque(e for e in self._rx_queue if e.source != address)
            for e in rx:
                self._process_packet(e.packet, e.path, now)
        self._retry_tx(now)

    def _retry_tx(self, now: int) -> None:
        keep: deque[_TxEntry] = deque()
        for e in self._tx_queue:
            if now - e.created >= QUEUE_TIMEOUT:
                self.counters.drop(Drop.WHOIS_TIMEOUT)
                continue
            peer = self.peers.get(e.dest)
            path = self._route(peer, now) if peer is not None else None
            if peer is None or path is None:
                keep.append(e)
                continue
            self._send_on(
                peer,
                path,
                e.verb,
                e.payload,
                now,
                compress=e.compress,
                echo_request=e.echo_request,
            )
        self._tx_queue = keep

    def _queue_tick(self, now: int) -> None:
        self._next_queue_tick = None
        self._retry_tx(now)
        keep_rx: deque[_RxEntry] = deque()
        ready: list[_RxEntry] = []
        for e in self._rx_queue:
            if e.source in self.peers:
                ready.append(e)
            elif now - e.created >= QUEUE_TIMEOUT:
                self.counters.drop(Drop.WHOIS_TIMEOUT)
            else:
                keep_rx.append(e)
        self._rx_queue = keep_rx
        for e in ready:
            self._process_packet(e.packet, e.path, now)
        # Only addresses something still waits for are asked again (Switch::doTimerTasks);
        # any other entry is just a rate memo, forgotten after two retry delays. Re-asking for
        # every unknown source seen would turn a flood of junk into ten WHOIS each.
        wanted = dict.fromkeys(
            [*(e.source for e in self._rx_queue), *(e.dest for e in self._tx_queue)]
        )
        for a in [
            a
            for a, w in self._whois.items()
            if a in self.peers
            or (a not in wanted and now - max(w.first, w.last_sent) >= 2 * WHOIS_RETRY_DELAY)
        ]:
            del self._whois[a]
        for a in wanted:
            if a not in self.peers:
                self._request_whois(a, now)
        if self._rx_queue or self._tx_queue or self._whois:
            self._next_queue_tick = now + WHOIS_RETRY_DELAY

    # ------------------------------------------------------------------ periodic work

    def _make_upstream_peers(self) -> None:
        for a, ident in self.topology.upstream_identities.items():
            if a not in self.peers:
                try:
                    self._add_peer(ident, SymmetricKey(self.identity.agree(ident)), self._now)
                except CryptoError:
                    log.warning("root %s has an unusable key", address_to_str(a))

    def _ping_check(self, now: int) -> None:
        """Every 5 s: keep upstreams and active peers reachable (9.2)."""
        for a in self.topology.always_contact():
            peer = self.peers.get(a)
            if peer is None:
                self._request_whois(a, now)
                continue
            upstream = self.topology.is_upstream(a)
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
                    for e in self.topology.stable_endpoints.get(a, ())
                    if e.is_ipv6() == want_v6 and self._local_for(e.to_sockaddr()) is not None
                ]
                if eps:
                    e = eps[self._rng.randrange(len(eps))]
                    remote = e.to_sockaddr()
                    local = self._local_for(remote)
                    if local is not None:
                        self._send_hello(peer, self._path(local, remote), now)
                        sent |= 2 if want_v6 else 1
            if not sent and not self.topology.stable_endpoints.get(a):
                self._send_hello(peer, None, now)
        for net in list(self.networks.values()):
            if net.needs_config_request(now):
                self._request_config(net, now)
            if net.config is not None and now - net.last_announce >= MULTICAST_ANNOUNCE_PERIOD:
                self._announce(net, now)
            net.expire_multicast(now)
        always = set(self.topology.always_contact())
        for peer in list(self.peers.values()):
            if peer.address not in always and peer.active(now):
                self._keepalive(peer, now)
            else:
                # Not kept warm, but its lapsed paths still end (and say so) on time.
                self._expire_paths(peer, now)
        # A root is always online (Node.cpp: ``... || RR->topology->amUpstream()``).
        self._set_online(
            self.topology.am_upstream
            or any(
                (p := self.peers.get(a)) is not None
                and p.last_receive > 0
                and now - p.last_receive < PEER_ACTIVITY_TIMEOUT
                for a in self.topology.upstreams
            )
        )

    def _expire_paths(self, peer: Peer, now: int) -> None:
        had = bool(peer.paths)
        for gone in peer.expire_paths(now):
            self._events.append(
                ev.PathDown(peer.address, gone.path.local, gone.path.remote, "expired")
            )
        if had and not peer.paths:
            self._events.append(ev.PeerRelayed(peer.address))

    def _keepalive(self, peer: Peer, now: int) -> int:
        """doPingAndKeepalive: HELLO every 60 s, ECHO on idle paths; drop expired paths."""
        full = now - peer.last_sent_full_hello >= PEER_PING_PERIOD
        self._expire_paths(peer, now)
        sent = 0
        for slot in list(peer.paths):
            p = slot.path
            if full or p.needs_heartbeat(now):
                self._contact(peer, p, now, full_hello=full)
                sent |= 2 if p.is_ipv6 else 1
        if full and sent:
            peer.last_sent_full_hello = now
        return sent

    def _housekeeping(self, now: int) -> None:
        upstreams = set(self.topology.upstreams)
        for a in [a for a, p in self.peers.items() if a not in upstreams and not p.alive(now)]:
            del self.peers[a]
            self._events.append(ev.PeerRemoved(a))
        used = {s.path for p in self.peers.values() for s in p.paths}
        for k in [k for k, p in self.paths.items() if p not in used and not p.alive(now)]:
            del self.paths[k]
        self.selfaware.clean(now)
        for gate in (self._validation_gate, self._beacon_answered):
            for key in [key for key, t in gate.items() if now - t > 60_000]:
                del gate[key]
        self._echo_answered = {p: t for p, t in self._echo_answered.items() if p in used}
        self._unite = {k: t for k, t in self._unite.items() if now - t < MIN_UNITE_INTERVAL}
        self._api_echo = {k: v for k, v in self._api_echo.items() if now - v.sent < 60_000}
        for group in list(self._multicast):
            members = {
                a: t for a, t in self._multicast[group].items() if now - t < MULTICAST_LIKE_EXPIRE
            }
            if members:
                self._multicast[group] = members
            else:
                del self._multicast[group]
        self.reassembler.expire(now)

    def _set_online(self, online: bool) -> None:
        if online != self._online:
            self._online = online
            self._events.append(ev.NodeOnline() if online else ev.NodeOffline())

    # ------------------------------------------------------------------ helpers

    def _path(self, local: Addr, remote: Addr) -> Path:
        key = (local, remote)
        p = self.paths.get(key)
        if p is None:
            p = self.paths[key] = Path(local, remote)
        return p

    def _local_for(self, remote: Addr) -> Addr | None:
        v6 = ":" in remote[0]
        for local in self.local_addresses:
            if (":" in local[0]) == v6:
                return local
        return None

    def _should_use_path(self, address: int, remote: Addr) -> bool:
        """shouldUsePathForZeroTierTraffic: a valid scope, and roots only at their endpoints."""
        try:
            ip = InetAddress.parse(f"{remote[0]}/{remote[1]}").ip
        except DecodeError:
            return False
        if not is_valid_path_address(ip, allow_loopback=self.config.allow_loopback):
            return False
        return not self.topology.is_prohibited_endpoint(address, remote[0])

    def _surface_report(self, peer: Peer, path: Path, surface: InetAddress, now: int) -> None:
        trusted = self.topology.is_upstream(peer.address)
        change = self.selfaware.report(
            peer.address, path.local, path.remote, IpScope(path.scope), surface, trusted, now
        )
        if change is None:
            return
        old = change.old.to_sockaddr() if change.old is not None else None
        self._events.append(ev.SurfaceAddressChanged(int(change.scope), old, surface.to_sockaddr()))
        # We moved: every path of that family and scope must prove itself again.
        for p in self.peers.values():
            for slot in p.paths:
                if slot.path.scope == change.scope and slot.path.is_ipv6 == change.ipv6:
                    slot.lr = 0
                    self._contact(p, slot.path, now, full_hello=False)

    def _validation_gate_ok(self, path: Path, now: int) -> bool:
        interval = self.config.identity_validation_interval
        if interval <= 0:
            return True
        bucket = path.inet.bucket() if path.scope != IpScope.NONE else 0
        last = self._validation_gate.get(bucket)
        if last is not None and now - last < interval:
            return False
        self._validation_gate[bucket] = now
        return True

    def _is_known_valid(self, ident: Identity) -> bool:
        return self._validated.get(ident.address) == ident.public_key

    def _remember_valid(self, ident: Identity) -> None:
        self._validated[ident.address] = ident.public_key
        self._validated.move_to_end(ident.address)
        while len(self._validated) > MAX_VALIDATION_CACHE:
            self._validated.popitem(last=False)

    def _defer_validation(self, ident: Identity, buf: bytearray, path: Path) -> None:
        pending = self._pending_validation.get(ident.address)
        if pending is None:
            if len(self._pending_validation) >= 64:
                self.counters.drop(Drop.RATE_LIMITED)
                return
            pending = self._pending_validation[ident.address] = _PendingValidation(ident)
            self._to_validate.append(ident)
        if len(pending.packets) < 4:
            pending.packets.append((buf, path))

    # ------------------------------------------------------------------ introspection

    def status(self, now: int) -> dict[str, object]:
        return {
            "address": address_to_str(self.address),
            "publicIdentity": self.identity.to_string(),
            "online": self._online,
            "planetWorldId": self.topology.planet.id,
            "planetWorldTimestamp": self.topology.planet.timestamp,
            "counters": self.counters.as_dict(),
        }
