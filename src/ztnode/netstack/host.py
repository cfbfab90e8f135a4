"""A node with IP stacks: the sans-I/O composite the asyncio layer (and the tests) drive.

``Host`` owns a :class:`~ztnode.core.node.Node` and one :class:`~ztnode.netstack.stack.IpStack`
per network that has a config. It has the node's five verbs, so the fake network and the asyncio
service drive it exactly as they drive a bare node:

* frames the node delivers (``FrameReceived``) go to that network's stack instead of out as
  events; whatever the stacks send goes to ``Node.send_frame`` before the node's datagrams are
  drained;
* config, address and route changes reconfigure the stack as they arrive, and the multicast
  groups a stack needs (ARP and solicited-node groups, joined IP groups) are subscribed on the
  node, so ZeroTier's multicast LIKEs follow the stack's addresses;
* ``next_event()`` yields the node's events and the stacks' socket events in one stream.

Raw Ethernet access: ``frame_taps[nwid]`` callables see every frame of a network before its stack;
``sent_taps[nwid]`` callables see every frame the network's stack sends (a capture's other half).
What a network's config may put into its stack is gated by its :class:`ManagedPolicy`
(``set_policy``; ZeroTierOne's allowManaged/allowGlobal/allowDefault local settings).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    IPv6Network,
    ip_interface,
    ip_network,
)

from ztnode import accel
from ztnode.core import events as ev
from ztnode.core.bond import BondPolicy, flow_id
from ztnode.core.node import Node
from ztnode.core.records import FrameRoute, Inbound, Outgoing
from ztnode.errors import LocalProtocolError
from ztnode.netstack.bridge import BridgePort, FrameOutput
from ztnode.netstack.stack import IpStack, StackConfig, StackEvent
from ztnode.netstack.tso import TcpBurst, UdpOffload
from ztnode.wire.inetaddr import IpScope, ip_scope
from ztnode.wire.mac import mac_from_address

log = logging.getLogger("ztnode.host")

__all__ = ["FrameTap", "Host", "HostEvent", "ManagedPolicy", "SentFrameTap"]

HostEvent = ev.Event | StackEvent
FrameTap = Callable[[ev.FrameReceived], None]
#: ``(dest_mac, ethertype, payload)``: one Ethernet frame a stack sends, as it would be on the
#: wire (a large TCP segment the C path cuts is shown as the pieces it is cut into).
SentFrameTap = Callable[[int, int, bytes], None]

_NEVER_ROUTED = (IpScope.NONE, IpScope.MULTICAST, IpScope.LOOPBACK, IpScope.LINK_LOCAL)


#: A stack frame's payload as the stacks queue it (see :meth:`IpStack.frames_to_send`).
Payload = bytes | TcpBurst | UdpOffload


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    """What a network's managed config may put into its stack.

    ``allow_managed`` off: no managed address and no managed route at all. Otherwise every
    assigned address, and the routes ZeroTierOne's ``checkIfManagedIsAllowed`` lets through: a
    default route only with ``allow_default``, a global-scope target only with
    ``allow_global``, never a loopback, link-local, multicast or unspecified one.
    """

    allow_managed: bool = True
    allow_global: bool = False
    allow_default: bool = False

    def allows_route(self, target: IPv4Network | IPv6Network) -> bool:
        if not self.allow_managed:
            return False
        if target.prefixlen == 0:
            return self.allow_default
        scope = ip_scope(target.network_address)
        if scope in _NEVER_ROUTED:
            return False
        return self.allow_global if scope is IpScope.GLOBAL else True


_DEFAULT_POLICY = ManagedPolicy()


class Host:
    """See the module docstring."""

    def __init__(
        self,
        node: Node,
        *,
        stack_config: StackConfig | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        self.node = node
        self.stack_config = stack_config
        self._random_bytes = random_bytes or node.random_bytes
        self.stacks: dict[int, IpStack] = {}
        self._groups: dict[int, set[tuple[int, int]]] = {}
        self._groups_version: dict[int, int] = {}
        self._events: deque[HostEvent] = deque()
        self.frame_taps: dict[int, list[FrameTap]] = {}
        self.sent_taps: dict[int, list[SentFrameTap]] = {}
        self.policies: dict[int, ManagedPolicy] = {}
        #: Ethernet segments bridged onto networks through this node (one port per network).
        self.bridge_ports: dict[int, BridgePort] = {}
        node.frame_sink = self._take_frame

    # ------------------------------------------------------------------ five verbs

    def receive_datagram(
        self, data: bytes | memoryview, local: tuple[str, int], remote: tuple[str, int], now: int
    ) -> None:
        self.node.receive_datagram(data, local, remote, now)
        self._drain(now)

    def receive(self, inbound: Inbound, now: int) -> bool:
        """Anything the transport hands in (see ``Node.receive``), then the frames it yields on
        to the stacks; False when an authenticated packet's key was stale and it was dropped."""
        ok = self.node.receive(inbound, now)
        self._drain(now)
        return ok

    def coalescing_networks(self) -> list[int]:
        """Networks whose received TCP segments the transport may join (Linux's GRO): those
        with an IP stack, which takes segments of any length, no raw-frame tap, which must
        see the frames as they were sent, and rules that judge a joined segment as they would
        its pieces."""
        taps = self.frame_taps
        node = self.node
        return [
            nwid for nwid in self.stacks if not taps.get(nwid) and node.coalescing_allowed(nwid)
        ]

    def handle_timer(self, now: int) -> None:
        node = self.node
        t = node.get_timer()
        if t is not None and t <= now:
            node.handle_timer(now)
        for stack in self.stacks.values():
            st = stack.get_timer()
            if st is not None and st <= now:
                stack.handle_timer(now)
        self._drain(now)

    def get_timer(self) -> int | None:
        best = self.node.get_timer()
        for stack in self.stacks.values():
            t = stack.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def datagrams_to_send(self, now: int) -> list[Outgoing]:
        self.flush(now)
        return self.node.datagrams_to_send(now)

    def next_event(self) -> HostEvent | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ API

    def stack(self, network_id: int) -> IpStack | None:
        return self.stacks.get(network_id)

    def set_policy(self, network_id: int, policy: ManagedPolicy, now: int) -> None:
        """Set what a network's managed config may put into its stack; applied at once to a
        configured network (its addresses and routes are rebuilt), kept for a later config."""
        self.policies[network_id] = policy
        self._configure(network_id, now)

    def attach_bridge(self, network_id: int, output: FrameOutput) -> BridgePort:
        """Bridge an Ethernet segment onto a network: frames for it go to ``output``, frames
        from it come in through :meth:`bridge_input` (see :mod:`ztnode.netstack.bridge`).
        LocalProtocolError unless the network's config marks this member an active bridge."""
        net = self.node.network(network_id)
        if net is None or net.config is None:
            raise LocalProtocolError(f"network {network_id:016x} has no configuration yet")
        if not net.config.permits_bridging(self.node.address):
            raise LocalProtocolError(
                f"network {network_id:016x}: this member ({self.node.address:010x}) is not an "
                "active bridge; mark it activeBridge at the controller to bridge onto it"
            )
        if network_id in self.bridge_ports:
            raise LocalProtocolError(f"network {network_id:016x} already has a bridge port")
        port = self.bridge_ports[network_id] = BridgePort(self.node, network_id, output)
        return port

    def detach_bridge(self, network_id: int) -> None:
        self.bridge_ports.pop(network_id, None)

    def bridge_input(self, network_id: int, frame: bytes, now: int) -> None:
        """A frame from a bridged segment (then call :meth:`flush`)."""
        port = self.bridge_ports.get(network_id)
        if port is None:
            return
        stack = self.stacks.get(network_id)
        port.from_segment(frame, stack, now)
        if stack is not None:
            self._stack_events(stack)

    def flush(self, now: int) -> None:
        """Hand every frame the stacks queued to the node, and collect their events."""
        node = self.node
        for nwid, stack in self.stacks.items():
            frames = stack.frames_to_send(now)
            port = self.bridge_ports.get(nwid)
            sent = self.sent_taps.get(nwid)
            for dst_mac, ethertype, payload in frames:
                if sent:
                    self._tell_sent(sent, dst_mac, ethertype, payload)
                if port is not None and self._to_segment(port, dst_mac, ethertype, payload, now):
                    continue
                if isinstance(payload, TcpBurst):
                    if self._send_cut(nwid, dst_mac, ethertype, payload, now):
                        continue
                    pieces: list[bytes] | tuple[bytes] = payload.packets()
                elif isinstance(payload, UdpOffload):
                    if self._send_udp(nwid, dst_mac, ethertype, payload, now):
                        continue
                    pieces = (payload.packet(),)
                elif self._send_on_route(nwid, dst_mac, ethertype, payload, now):
                    continue
                else:
                    pieces = (payload,)
                for one in pieces:
                    if not node.send_frame(nwid, dst_mac, ethertype, one, now):
                        stack.counters["frame_unsendable"] = (
                            stack.counters.get("frame_unsendable", 0) + 1
                        )
            self._stack_events(stack)
            self._sync_groups(nwid, stack, now)
        self._drain(now)

    # ------------------------------------------------------------------ internals

    @property
    def can_cut_segments(self) -> bool:
        """Whether large TCP segments can be cut into armored FRAMEs in C here (the stacks'
        segmentation offload is on only then)."""
        return accel.AVAILABLE and not accel.python_paths_forced()

    def _send_cut(self, nwid: int, dst_mac: int, ethertype: int, seg: TcpBurst, now: int) -> bool:
        """One large TCP segment cut, checksummed, armored and fragmented in C on the route
        the node gives; False, with nothing sent, when there is no route or the cut declines
        (the caller then sends the Python cut's pieces one by one)."""
        node = self.node
        pieces = seg.count()
        if node.bonding:
            route = node.frame_route(nwid, dst_mac, now, flow_id(ethertype, seg.header), pieces)
        else:
            route = node.frame_route(nwid, dst_mac, now)
        if route is None:
            return False
        if route.filtered:
            first = seg.piece(0)
            last = first if pieces == 1 else seg.piece(pieces - 1)
            verdict = node.filter_burst(nwid, dst_mac, ethertype, first, last, pieces)
            if verdict is None:
                return False  # the rules part the burst: the caller sends piece by piece
            if not verdict:
                return True  # dropped by the rules, every piece counted
        datagrams = accel.tcp_pieces(
            route.key,
            route.cipher,
            route.header,
            node.random_bytes(8 * pieces),
            route.network_id,
            ethertype,
            seg.header,
            seg.ip_id,
            seg.payload,
            seg.seg_size,
            seg.flags_last,
            route.mtu,
        )
        if datagrams is None:
            return False
        node.send_routed(route, datagrams, pieces, now)
        return True

    def _send_on_route(
        self, nwid: int, dst_mac: int, ethertype: int, payload: bytes, now: int
    ) -> bool:
        """One frame built, sealed and fragmented in C on the node's (remembered) route to its
        member: a UDP datagram, a SYN, an ICMP echo leave in one call, as TCP segments do.
        False, with nothing sent, when only the node's own path can send it: a multicast or
        bridged destination, no route yet, rules that judge each frame, a bond (which picks a
        path per flow), no accelerator."""
        route = self._sealable_route(nwid, dst_mac, now)
        if route is None:
            return False
        node = self.node
        datagrams = accel.frame_datagrams(
            route.key,
            route.cipher,
            route.header,
            node.random_bytes(8),
            route.network_id,
            ethertype,
            payload,
            route.mtu,
        )
        if datagrams is None:
            return False
        node.send_routed(route, datagrams, 1, now)
        return True

    def _sealable_route(self, nwid: int, dst_mac: int, now: int) -> FrameRoute | None:
        """The node's route to a member when one frame may be sealed in C on it: a unicast
        destination, no bond (which picks a path per flow), a route known, rules that do not
        judge each frame, the accelerator built."""
        if dst_mac >> 40 & 0x01 or not accel.AVAILABLE:
            return None
        node = self.node
        if node.bonding:
            return None
        route = node.frame_route(nwid, dst_mac, now)
        if route is None or route.filtered:
            return None
        return route

    def _send_udp(
        self, nwid: int, dst_mac: int, ethertype: int, dgram: UdpOffload, now: int
    ) -> bool:
        """A UDP datagram built, checksummed, sealed and fragmented in C on the node's route,
        as :meth:`_send_on_route` sends a frame; False, with nothing sent, where that declines
        (the caller then sends :meth:`UdpOffload.packet` the ordinary way)."""
        route = self._sealable_route(nwid, dst_mac, now)
        if route is None:
            return False
        node = self.node
        datagrams = accel.udp_datagrams(
            route.key,
            route.cipher,
            route.header,
            node.random_bytes(8),
            route.network_id,
            ethertype,
            dgram.header,
            dgram.ip_id,
            dgram.payload,
            route.mtu,
        )
        if datagrams is None:
            return False
        node.send_routed(route, datagrams, 1, now)
        return True

    @staticmethod
    def _tell_sent(
        taps: list[SentFrameTap], dst_mac: int, ethertype: int, payload: Payload
    ) -> None:
        pieces = payload.packets() if isinstance(payload, (TcpBurst, UdpOffload)) else (payload,)
        for one in pieces:
            for tap in taps:
                tap(dst_mac, ethertype, one)

    @staticmethod
    def _to_segment(
        port: BridgePort, dst_mac: int, ethertype: int, payload: Payload, now: int
    ) -> bool:
        """Our stack's frame onto the bridged segment where it belongs; True when that was
        all (its destination is on the segment)."""
        multicast = bool(dst_mac >> 40 & 0x01)
        if not multicast and port.segment.lookup(dst_mac, now) is None:
            return False  # not the segment's: the network takes it, whole (cut or not)
        pieces = payload.packets() if isinstance(payload, (TcpBurst, UdpOffload)) else (payload,)
        for one in pieces:
            port.from_stack(dst_mac, ethertype, one, now)
        return not multicast

    def _stack_events(self, stack: IpStack) -> None:
        events = self._events
        while (e := stack.next_event()) is not None:
            events.append(e)

    def _take_frame(
        self, nwid: int, source_mac: int, dest_mac: int, ethertype: int, payload: bytes
    ) -> bool:
        """The node's frame sink: a frame straight to its network's stack, the way
        :meth:`_drain` hands a ``FrameReceived`` on, when nothing else must see it first (a
        bridge port or a raw-frame tap take the event path)."""
        node = self.node
        checked = node.rx_checked  # it vouches for this frame only
        node.rx_checked = False
        stack = self.stacks.get(nwid)
        if stack is None or nwid in self.bridge_ports or self.frame_taps.get(nwid):
            return False
        stack.receive_frame(source_mac, dest_mac, ethertype, payload, node.now, checked)
        self._stack_events(stack)
        return True

    def _drain(self, now: int) -> None:
        node = self.node
        events = self._events
        while (e := node.next_event()) is not None:
            if isinstance(e, ev.FrameReceived):
                port = self.bridge_ports.get(e.network_id)
                if port is not None:
                    port.from_network(e.source_mac, e.dest_mac, e.ethertype, e.payload)
                for tap in self.frame_taps.get(e.network_id, ()):
                    try:
                        tap(e)
                    except Exception:
                        log.exception("frame tap failed")
                stack = self.stacks.get(e.network_id)
                if stack is not None:
                    stack.receive_frame(e.source_mac, e.dest_mac, e.ethertype, e.payload, now)
                    self._stack_events(stack)
                continue
            if isinstance(
                e,
                ev.NetworkConfigUpdated
                | ev.AddressAdded
                | ev.AddressRemoved
                | ev.NetworkStatusChanged,
            ):
                self._configure(e.network_id, now)
            elif isinstance(e, ev.BondActiveChanged | ev.BondLinkChanged):
                self._underlay_changed(e, now)
            elif isinstance(e, ev.NetworkLeft):
                stack = self.stacks.pop(e.network_id, None)
                if stack is not None:
                    stack.close(now)
                    self._stack_events(stack)
                self._groups.pop(e.network_id, None)
                self._groups_version.pop(e.network_id, None)
            events.append(e)

    def _underlay_changed(self, e: ev.BondActiveChanged | ev.BondLinkChanged, now: int) -> None:
        """A bond moved a peer's traffic off a dead link: TCP through that peer resends at
        once. Active-backup says so when it changes its active path; the balancing policies
        when a link goes down (their flows on it move)."""
        if isinstance(e, ev.BondActiveChanged):
            if e.previous_local is None:
                return  # the first choice, nothing moved
        else:
            bond = self.node.bond(e.address)
            if e.up or bond is None or bond.policy == BondPolicy.ACTIVE_BACKUP:
                return
        for nwid, stack in self.stacks.items():
            stack.underlay_changed(frozenset((mac_from_address(e.address, nwid),)), now)
            self._stack_events(stack)

    def _configure(self, nwid: int, now: int) -> None:
        net = self.node.network(nwid)
        if net is None or net.config is None:
            return
        cfg = net.config
        stack = self.stacks.get(nwid)
        if stack is None:
            stack = IpStack(
                net.mac,
                random_bytes=self._random_bytes,
                network_id=nwid,
                mtu=cfg.mtu,
                config=self.stack_config,
            )
            stack.segmentation_offload = self.can_cut_segments
            self.stacks[nwid] = stack
        policy = self.policies.get(nwid, _DEFAULT_POLICY)
        addrs: list[IPv4Interface | IPv6Interface] = []
        for a in cfg.static_ips if policy.allow_managed else ():
            try:
                addrs.append(ip_interface(f"{a.ip}/{a.port}"))
            except ValueError:
                log.warning("network %016x: unusable address %s", nwid, a)
        stack.set_addresses(addrs)
        routes = []
        for r in cfg.routes:
            if r.target is None:
                continue
            try:
                target = ip_network(f"{r.target.ip}/{r.target.port}", strict=False)
            except ValueError:
                continue
            via = r.via.ip if r.via is not None else None
            if via is not None and isinstance(via, IPv4Address) != (target.version == 4):
                continue
            if not policy.allows_route(target):
                continue
            routes.append((target, via))
        stack.set_routes(routes)
        stack.set_mtu(cfg.mtu)
        self._sync_groups(nwid, stack, now)

    def _sync_groups(self, nwid: int, stack: IpStack, now: int) -> None:
        if self._groups_version.get(nwid) == stack.groups_version:
            return
        self._groups_version[nwid] = stack.groups_version
        want = stack.multicast_groups()
        have = self._groups.get(nwid, set())
        if want == have:
            return
        node = self.node
        for mac, adi in want - have:
            node.multicast_subscribe(nwid, mac, adi, now)
        for mac, adi in have - want:
            node.multicast_unsubscribe(nwid, mac, adi)
        self._groups[nwid] = set(want)
