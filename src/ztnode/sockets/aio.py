"""asyncio sockets on a ZeroTier network: streams, servers, datagram endpoints, ping, frames.

What users import (via ``ztnode``)::

    async with ztnode.Node(home="zt-home") as node:
        net = await node.join(0x8056C2E21C000001)
        reader, writer = await net.open_connection("10.147.20.5", 80)

The transports (:mod:`ztnode.sockets.aio_tcp`, :mod:`ztnode.sockets.aio_udp`) are ordinary
:class:`asyncio.Transport` and :class:`asyncio.DatagramTransport` objects, so the stock
``StreamReader``/``StreamWriter``, ``StreamReaderProtocol`` and any protocol class written for
asyncio work unchanged; the stack's events reach them through
:class:`~ztnode.sockets.dispatch.StackEventDispatcher`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import socket
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from ipaddress import IPv4Interface, IPv6Interface, ip_address
from pathlib import Path
from typing import Any, TypeVar

from ztnode.core import events as ev
from ztnode.core.bond import BondingSettings
from ztnode.core.network import NetworkStatus
from ztnode.names.hostmap import HostMap, HostValue
from ztnode.names.settings import NameSettings
from ztnode.names.zone import Zone
from ztnode.netstack.bridge import BridgePort
from ztnode.netstack.stack import (
    IpStack,
    PingReply,
    StackEvent,
)
from ztnode.sockets.addresses import ip_family, ip_literal, literal
from ztnode.sockets.aio_tcp import TcpServer, _Connecting, _TcpTransport
from ztnode.sockets.aio_udp import _UdpTransport
from ztnode.sockets.bridgeports import FramePort
from ztnode.sockets.controller import ControllerApi
from ztnode.sockets.discovery import Advertisement, Discovery, ServiceBrowser
from ztnode.sockets.dispatch import StackEventDispatcher
from ztnode.sockets.dnsserver import DnsServer, controller_zone_source
from ztnode.sockets.loopshim import patch_loop
from ztnode.sockets.names import (
    AddrInfo,
    NameService,
    NetworkNames,
    addrinfo,
    gaierror_for,
    service_port,
)
from ztnode.sockets.tls import SslArg, client_options, server_options
from ztnode.transport.binder import Enumerator
from ztnode.transport.localconf import LocalConf
from ztnode.transport.service import NodeService, ServiceConfig
from ztnode.transport.state import NetworkSettings
from ztnode.wire.world import World

log = logging.getLogger("ztnode.sockets")

__all__ = ["Bridge", "EventStream", "Network", "Node", "TcpServer"]

StreamCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
_PORT_FILE = "ztnode.udp-port"


def _parse_nwid(nwid: int | str) -> int:
    if isinstance(nwid, str):
        try:
            value = int(nwid, 16)
        except ValueError:
            raise ValueError(f"network id {nwid!r} is not 16 hex digits") from None
    else:
        value = nwid
    if not 0 < value < 1 << 64:
        raise ValueError(f"network id {nwid!r} out of range")
    return value


def _other_stack_event(e: StackEvent) -> None:
    """The stack events the compiled dispatcher leaves to this module: ping replies."""
    if isinstance(e, PingReply):
        net = e.stack.user
        if isinstance(net, Network):
            net._ping_reply(e)


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

E = TypeVar("E", bound=ev.Event)


class EventStream:
    """``async for event in node.events(): ...``: the node's and networks' events, in order.

    The queue is bounded (a consumer that stops reading must not grow memory without end): past
    ``maxsize`` the oldest events are dropped and counted in ``dropped``. The stream ends when
    the node stops or :meth:`close` is called; ``async with`` closes it too.
    """

    def __init__(
        self,
        node: Node,
        kinds: tuple[type[ev.Event], ...] | None,
        maxsize: int,
        network_id: int | None = None,
    ) -> None:
        self._node = node
        self._kinds = kinds
        self._network_id = network_id
        self._queue: collections.deque[ev.Event] = collections.deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def _push(self, e: ev.Event) -> None:
        if self._closed or (self._kinds is not None and not isinstance(e, self._kinds)):
            return
        if self._network_id is not None and getattr(e, "network_id", None) != self._network_id:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(e)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._node._streams.discard(self)
            self._wake()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ev.Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Node
# ---------------------------------------------------------------------------------------------


def _checked_settings(settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The program's ``local.conf`` settings, checked now so a mistake is raised where it was
    made, not when the node starts."""
    if settings is None:
        return None
    LocalConf.parse({"settings": dict(settings)})
    return dict(settings)


class Node:
    """A ZeroTier node in this process, with an IP stack on every network it joins.

    ``home`` holds its identity and state (ZeroTierOne's file names). ``planet`` is a World, its
    bytes, or a path; the default is ZeroTier's public planet. ``port`` 0 picks a free port.
    ``bonding`` is what ``local.conf``'s ``settings`` say about bonds (the same keys:
    ``{"defaultBondingPolicy": "active-backup"}``...), or a parsed
    :class:`~ztnode.core.bond.BondingSettings`; by default ``local.conf`` is read. With bonds
    (or ``bind_interfaces=True``) the node binds one socket per interface address, found by
    ``interfaces()`` (``[(ifname, ip), ...]``) and made by ``socket_factory(ip, port)`` when
    given (a node whose sockets live in another network namespace).

    ``settings`` are ``local.conf`` ``settings`` keys (``{"interfacePrefixBlacklist":
    ["eth1"], "allowTcpFallbackRelay": False}``...; see docs/api.md "local.conf"): they win over
    the home's ``local.conf``, key by key, and a wrong value raises
    :class:`~ztnode.transport.localconf.LocalConfError` naming the key. Without ``port``, the
    file's ``primaryPort`` is used when set.

    Names: every call that takes a host takes a name too (:mod:`ztnode.sockets.names`).
    ``hosts`` is a static map (``{"web": "10.147.17.5"}``), ``hostname`` the label this node
    answers to by mDNS and LLMNR (default ``zt-<address>``), ``names`` the rest of
    :class:`~ztnode.names.settings.NameSettings` (or a dict of its fields).
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        port: int | None = None,
        planet: World | bytes | str | os.PathLike[str] | None = None,
        allow_loopback: bool = False,
        bind: Iterable[str] = ("0.0.0.0",),
        controller: bool = False,
        controller_db: str | None = None,
        sockets: Iterable[socket.socket] = (),
        identity_validation_interval: int | None = None,
        bonding: BondingSettings | Mapping[str, Any] | None = None,
        bind_interfaces: bool | None = None,
        interfaces: Enumerator | None = None,
        socket_factory: Callable[[str, int], socket.socket] | None = None,
        names: NameSettings | Mapping[str, Any] | None = None,
        hosts: HostMap | Mapping[str, HostValue] | None = None,
        hostname: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        world: World | None
        if planet is None or isinstance(planet, World):
            world = planet
        elif isinstance(planet, bytes):
            world = World.from_bytes(planet)
        else:
            world = World.from_bytes(Path(planet).read_bytes())
        config = ServiceConfig(
            home=Path(home),
            port=port or 0,
            bind=tuple(bind),
            planet=world,
            allow_loopback=allow_loopback,
            controller=controller or controller_db is not None,
            controller_db=controller_db,
            sockets=tuple(sockets),
            bonding=(
                bonding
                if bonding is None or isinstance(bonding, BondingSettings)
                else BondingSettings.from_local_conf(bonding)
            ),
            bind_interfaces=bind_interfaces,
            interfaces=interfaces,
            socket_factory=socket_factory,
            settings=_checked_settings(settings),
            port_from_conf=port is None,
        )
        if identity_validation_interval is not None:
            config.identity_validation_interval = identity_validation_interval
        self.service = NodeService(config)
        #: With no port given, a node reuses the port its home had last time: peers still
        #: hold the old path as alive for a while and ignore a new one from the same IP, so a
        #: restarted node on a fresh port would be unreachable until that path times out.
        self._remember_port = port is None and not config.sockets
        self._networks: dict[int, Network] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._streams: set[EventStream] = set()
        self._callbacks: list[tuple[type[ev.Event], Callable[[Any], None]]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        self._controller_api: ControllerApi | None = None
        #: Names: the static map, this node's own name, the resolver and the responders.
        self.names = NameService(self, NameSettings.build(names, hosts=hosts, hostname=hostname))
        self.service.metric_sources.append(self.names.metrics)

    # lifecycle

    async def start(self) -> Node:
        if self._started:
            return self
        if any(s.fileno() < 0 for s in self.service.config.sockets):
            raise RuntimeError(
                "this node was given its UDP sockets, and they closed when it stopped: "
                "make a new Node with new sockets to start again"
            )
        self.service.stack_event_handler = StackEventDispatcher(_other_stack_event)
        self._unsubscribe = self.service.subscribe(self._on_event)
        port_file = self.service.config.home / _PORT_FILE
        if self._remember_port:
            with contextlib.suppress(OSError, ValueError):
                self.service.config.port = int(port_file.read_text().strip())
        try:
            await self.service.start()
        except OSError:
            if not self._remember_port or not self.service.config.port:
                raise
            self.service.config.port = 0  # the old port is taken: any port will do
            await self.service.start()
        if self._remember_port:
            with contextlib.suppress(OSError):
                port_file.write_text(f"{self.service.port}\n")
        self._started = True
        # Networks the home remembers (networks.d) are joined again: here they are, as objects
        # (the same objects as before a restart of this node).
        core_networks = self._core.networks
        for nwid in core_networks:
            if nwid not in self._networks:
                self._networks[nwid] = Network(self, nwid)
        for nwid in [n for n in self._networks if n not in core_networks]:
            del self._networks[nwid]
        # Networks whose cached config was applied while starting: their names roles start
        # now (their events came before the node counted as started).
        loop = asyncio.get_running_loop()
        for net in self._networks.values():
            loop.call_soon(self.names.of(net).update_roles)
        return self

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.names.close()
        for net in list(self._networks.values()):
            net._close_all()
        # Let connection_lost callbacks run, so stream handlers see the end of their streams
        # and finish before the loop that runs them goes away.
        for _ in range(3):
            await asyncio.sleep(0)
        if self._unsubscribe is not None:
            self._unsubscribe()
        for stream in list(self._streams):
            stream.close()
        await self.service.stop()
        for w in self._waiters:
            if not w.done():
                w.set_exception(ConnectionAbortedError("the node stopped"))
        self._waiters.clear()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # state

    @property
    def _core(self) -> Any:
        node = self.service.node
        if node is None:
            raise RuntimeError("the node is not started: use 'async with Node(...)' or start()")
        return node

    @property
    def address(self) -> str:
        """The 10-hex-digit ZeroTier address."""
        return f"{self._core.address:010x}"

    @property
    def controller(self) -> ControllerApi:
        """The network controller this node hosts (``controller=True``): networks and
        members in Python (:class:`~ztnode.sockets.controller.ControllerApi`)."""
        if self._controller_api is None:
            self._controller_api = ControllerApi(self)
        return self._controller_api

    @property
    def started(self) -> bool:
        """Between ``start()`` and ``stop()``: a stopped node can be started again."""
        return self._started

    @property
    def online(self) -> bool:
        """Started, and in touch with a root."""
        return self._started and bool(self._core.online)

    @property
    def port(self) -> int:
        return self.service.port

    def bonds(self) -> dict[str, dict[str, Any]]:
        """Every bond by peer address: what ``GET /bond/show/<peer>`` returns (policy, links
        alive, and per path its interface, eligibility, latency, jitter, flows...)."""
        from ztnode.transport.localapi import peer_json

        core, now = self._core, self.service.clock.now()
        return {
            f"{a:010x}": peer_json(core, core.peers[a], now)
            for a in sorted(core.bonds.bonds)
            if a in core.peers
        }

    def rotate_bond(self, peer: int | str) -> bool:
        """``bond rotate``: an active-backup bond moves to the next path in its queue."""
        address = int(peer, 16) if isinstance(peer, str) else peer
        return bool(self.service.call(lambda n, now: n.rotate_bond(address, now)))

    async def wait_online(self, timeout: float = 30.0) -> None:
        await self._wait_for(lambda: self.online, timeout, "the node did not come online")

    async def join(
        self,
        network_id: int | str,
        *,
        timeout: float | None = 60.0,
        wait: bool = True,
        wait_authorized: bool = False,
        allow_dns: bool | None = None,
    ) -> Network:
        """Join a network; with ``wait``, return once it is OK and has its addresses.

        A refusal from the controller raises PermissionError at once, unless
        ``wait_authorized``: then the join waits through ACCESS_DENIED until someone authorizes
        this node (the controller pushes the new config) or ``timeout`` passes. Joining again a
        network that was refused asks the controller again, so a refusal from before the
        authorization is never taken for the answer.

        ``allow_dns`` sets ZeroTier's ``allowDNS`` for the network (kept in its
        ``local.conf``): whether names under the domain the network pushes are asked of its
        DNS servers. Off by default, as in ZeroTierOne: a network's owner does not get to
        answer for names unless this node lets it."""
        if not self._started:
            raise RuntimeError("the node is not started: use 'async with Node(...)' or start()")
        nwid = _parse_nwid(network_id)
        core_net = self._core.network(nwid)
        seen = core_net.answers if core_net is not None else 0
        if allow_dns is not None:
            self.service.update_settings(nwid, allow_dns=allow_dns)
        self.service.join(nwid)
        net = self._networks.get(nwid)
        if net is None:
            net = self._networks[nwid] = Network(self, nwid)
        if wait:
            await net.wait_ready(timeout, wait_authorized=wait_authorized, _answers_seen=seen)
        return net

    async def leave(self, network_id: int | str) -> bool:
        nwid = _parse_nwid(network_id)
        net = self._networks.pop(nwid, None)
        if net is not None:
            net._close_all()
        self.names.forget(nwid)
        return self.service.leave(nwid)

    def network(self, network_id: int | str) -> Network | None:
        return self._networks.get(_parse_nwid(network_id))

    # names

    @property
    def hostname(self) -> str:
        """The label this node answers to by mDNS and LLMNR (``zt-<address>`` by default)."""
        return self.names.hostname

    async def lookup(self, host: str, *, family: int = 0) -> list[tuple[Network, str]]:
        """Where ``host`` (a name or an IP literal) is on the overlay: ``(network, address)``
        pairs in the order to try; empty when it is not an overlay name (see
        :meth:`NameService.lookup`); ``socket.gaierror`` when it is one that did not resolve.
        What the HTTP clients and ``patch_loop`` route by."""
        if not self._started:
            return []
        return await self.names.lookup(host, ip_family(family))

    async def resolve(self, host: str, *, family: int = 0) -> list[str]:
        """The overlay addresses of ``host``, in the order to try; ``socket.gaierror`` when
        it has none."""
        found = await self.lookup(host, family=family)
        if not found:
            raise gaierror_for(socket.EAI_NONAME, host, "not a name on any joined network")
        return list(dict.fromkeys(ip for _, ip in found))

    async def getaddrinfo(
        self,
        host: str,
        port: int | str | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """``loop.getaddrinfo`` over the overlay's names (``flags`` is accepted and, as for
        numeric hosts, has nothing to change)."""
        del flags
        return addrinfo(
            await self.resolve(host, family=family), service_port(port), family, type, proto
        )

    def network_for(self, host: str) -> Network | None:
        """The joined network that reaches ``host`` (an IP literal): the one whose assigned
        subnets or managed routes match it most specifically; None if none does. Networks
        joined by other means (the local API) are found too."""
        host = literal(host)
        hosts = self.service.host
        if not self._started or hosts is None:
            return None
        best: tuple[int, int] | None = None
        for nwid in self._core.networks:
            stack = hosts.stack(nwid)
            length = stack.route_length(host) if stack is not None else -1
            if length >= 0 and (best is None or length > best[0]):
                best = (length, nwid)
        if best is None:
            return None
        return self._network_object(best[1])

    def _network_object(self, nwid: int) -> Network | None:
        """The Network object of a network the core has joined (by this API or another: the
        local API, networks.d), made on first use; None if the core has not joined it."""
        net = self._networks.get(nwid)
        core = self.service.node
        if net is None and core is not None and nwid in core.networks:
            net = self._networks[nwid] = Network(self, nwid)
        return net

    def patch_loop(
        self, loop: asyncio.AbstractEventLoop | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """A ``with`` block in which the event loop's ``create_connection`` and
        ``create_server`` (and so ``asyncio.open_connection``, ``start_server`` and the
        libraries built on them: websockets, aiohttp's server...) use this node for overlay
        addresses (:mod:`ztnode.sockets.loopshim`)."""
        return patch_loop(self, loop)

    @property
    def networks(self) -> list[Network]:
        """The networks joined (none while the node is stopped)."""
        return list(self._networks.values()) if self._started else []

    # internals

    def _now(self) -> int:
        return self.service.clock.now()

    def events(
        self, *kinds: type[ev.Event], maxsize: int = 4096, network: int | str | None = None
    ) -> EventStream:
        """A stream of events (all of them, or only the given classes; only one network's
        with ``network``), from now on."""
        nwid = None if network is None else _parse_nwid(network)
        stream = EventStream(self, kinds or None, maxsize, nwid)
        self._streams.add(stream)
        return stream

    def on(self, kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """Call ``callback`` for every event of class ``kind`` (``ev.Event`` for all); returns
        a function that unregisters it. Callbacks run on the event loop and must not block."""
        entry: tuple[type[ev.Event], Callable[[Any], None]] = (kind, callback)
        self._callbacks.append(entry)

        def off() -> None:
            if entry in self._callbacks:
                self._callbacks.remove(entry)

        return off

    def _on_event(self, e: ev.Event) -> None:
        self.names.on_event(e)
        for stream in list(self._streams):
            stream._push(e)
        for kind, cb in list(self._callbacks):
            if isinstance(e, kind):
                try:
                    cb(e)
                except Exception:
                    log.exception("event callback failed")
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _wait_for(self, cond: Callable[[], bool], timeout: float | None, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not cond():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(what)
            try:
                await asyncio.wait_for(fut, left)
            except TimeoutError:
                if not cond():
                    raise TimeoutError(what) from None


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class Bridge:
    """A segment bridged onto a network (what :meth:`Network.bridge` returns)."""

    def __init__(self, network: Network, port: FramePort, attached: BridgePort) -> None:
        self.network = network
        self.port = port
        self._attached = attached

    @property
    def counters(self) -> dict[str, int]:
        """Frames from the segment, to it, dropped, refused by the network."""
        return dict(self._attached.counters)

    async def close(self) -> None:
        host = self.network.node.service.host
        if host is not None:
            host.detach_bridge(self.network.id)
        await self.port.close()


class Network:
    """A joined network: its status and addresses, and sockets on it."""

    def __init__(self, node: Node, network_id: int) -> None:
        self.node = node
        self.id = network_id
        self._ping_ident = int.from_bytes(os.urandom(2), "big")
        self._ping_seq = 0
        self._pings: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._transports: set[_TcpTransport | _UdpTransport | TcpServer] = set()

    def __repr__(self) -> str:
        return f"<Network {self.id:016x} {self.status}>"

    @property
    def id_hex(self) -> str:
        return f"{self.id:016x}"

    @property
    def status(self) -> str:
        """ZeroTier's status of the network (OK, ACCESS_DENIED, ...), NOT_JOINED after
        ``leave``, STOPPED while the node is stopped."""
        if not self.node.started:
            return "STOPPED"
        net = self.node._core.network(self.id)
        return str(net.status) if net is not None else "NOT_JOINED"

    @property
    def stack(self) -> IpStack:
        """The IP stack (exists once the network has a config)."""
        host = self.node.service.host
        st = host.stack(self.id) if host is not None else None
        if st is None:
            raise OSError(errno.ENETDOWN, f"network {self.id:016x} has no configuration yet")
        st.user = self
        return st

    @property
    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        host = self.node.service.host
        st = host.stack(self.id) if host is not None else None
        return st.addresses if st is not None else []

    @property
    def mac(self) -> str:
        net = self.node._core.network(self.id)
        m = net.mac if net is not None else 0
        return ":".join(f"{(m >> s) & 0xFF:02x}" for s in range(40, -8, -8))

    def address(self, family: int = 4) -> str:
        """Our first address of the family (4 or 6) on this network."""
        for a in self.addresses:
            if a.version == family:
                return str(a.ip)
        raise OSError(errno.EADDRNOTAVAIL, f"no IPv{family} address on {self.id:016x}")

    async def wait_ready(
        self,
        timeout: float | None = 60.0,
        *,
        wait_authorized: bool = False,
        _answers_seen: int | None = None,
    ) -> None:
        """Until the config is OK and at least one address is assigned. A refusal raises
        PermissionError, unless ``wait_authorized`` (see :meth:`Node.join`); a refusal the
        controller gave before this call (``_answers_seen`` answers ago) does not count.
        A timeout says why: the node offline, still refused, or still waiting for a config."""
        core = self.node._core
        net = core.network(self.id)
        if _answers_seen is None:
            _answers_seen = net.answers if net is not None else 0
        refused = (NetworkStatus.ACCESS_DENIED, NetworkStatus.NOT_FOUND)

        def ready() -> bool:
            current = core.network(self.id)
            st = self.status
            fresh = current is not None and current.answers > _answers_seen
            if fresh and st in refused and not wait_authorized:
                raise PermissionError(self._refusal(st))
            return st == NetworkStatus.OK and bool(self.addresses)

        try:
            await self.node._wait_for(ready, timeout, "")
        except TimeoutError:
            raise TimeoutError(self._not_ready(timeout)) from None
        await self.names.ready()  # mDNS/LLMNR sockets bound, the DNS role up

    def _refusal(self, status: str) -> str:
        me = self.node.address
        if status == NetworkStatus.NOT_FOUND:
            return f"network {self.id:016x}: NOT_FOUND: its controller does not know it"
        return (
            f"network {self.id:016x}: ACCESS_DENIED: this node ({me}) is not authorized "
            "on it (authorize it at the controller; join(..., wait_authorized=True) waits)"
        )

    def _not_ready(self, timeout: float | None) -> str:
        st = self.status
        if not self.node.online:
            return (
                f"network {self.id:016x} not ready after {timeout} s: the node is offline "
                "(no root has answered), so the network's controller cannot be reached"
            )
        if st in (NetworkStatus.ACCESS_DENIED, NetworkStatus.NOT_FOUND):
            return f"{self._refusal(st)}; still so after {timeout} s"
        return f"network {self.id:016x} not ready after {timeout} s ({st})"

    # ---- bridging

    async def bridge(self, port: FramePort) -> Bridge:
        """Bridge an Ethernet segment onto this network through ``port`` (a
        :class:`~ztnode.sockets.bridgeports.TapPort`, a
        :class:`~ztnode.sockets.bridgeports.StreamPort` for a VM, or any
        :class:`~ztnode.sockets.bridgeports.FramePort`): hosts on the segment become
        reachable on the network and reach it, and this node's own sockets reach them (see
        :mod:`ztnode.netstack.bridge`). The controller must mark this member an active bridge
        (``activeBridge``); otherwise LocalProtocolError says so."""
        service = self.node.service
        host = service.host
        if host is None or not self.node.started:
            raise RuntimeError("the node is not started")
        nwid = self.id

        def deliver(frame: bytes) -> None:
            h = service.host
            if h is not None:
                h.bridge_input(nwid, frame, self.node._now())
                service.flush_soon()

        def send(frame: bytes) -> None:
            port.send(frame)

        attached = host.attach_bridge(nwid, send)
        try:
            await port.open(deliver)
        except BaseException:
            host.detach_bridge(nwid)
            raise
        return Bridge(self, port, attached)

    # ---- local settings

    @property
    def settings(self) -> NetworkSettings:
        """ZeroTier's local settings of this network (allowManaged, allowGlobal,
        allowDefault, allowDNS)."""
        return self.node.service.settings(self.id)

    def update_settings(self, **changes: bool) -> NetworkSettings:
        """Change local settings (``allow_dns=True``...): saved in the network's
        ``local.conf`` and applied at once."""
        new = self.node.service.update_settings(self.id, **changes)
        self.names.dns_config()  # the resolver's view follows (the cache is dropped)
        return new

    # ---- names

    @property
    def names(self) -> NetworkNames:
        """This network's resolver state: cache, counters, pushed DNS."""
        return self.node.names.of(self)

    async def resolve(self, host: str, *, family: int = 0) -> list[str]:
        """The addresses of ``host`` on this network, in the order to try: IP literals as
        they are, the static map, this node's own names, then mDNS, LLMNR and the pushed DNS
        servers as the name calls for (:mod:`ztnode.sockets.names`); ``socket.gaierror`` as
        the stdlib raises it when none answers."""
        found = await self.names.resolve(host, ip_family(family))
        if found is None:
            domain, servers = self.names.dns_config()
            pushed, _ = self.names.pushed_dns()
            if domain and servers:
                why = f"outside the pushed domain {domain!r}"
            elif pushed:
                why = f"the network pushes DNS for {pushed!r} but allowDNS is off"
            else:
                why = "the network pushes no DNS"
            raise gaierror_for(socket.EAI_NONAME, host, f"network {self.id:016x}: {why}")
        if not found:
            raise gaierror_for(socket.EAI_NONAME, host, "no address of the family asked for")
        return found

    async def getaddrinfo(
        self,
        host: str,
        port: int | str | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """``loop.getaddrinfo`` on this network."""
        del flags
        addrs = await self.resolve(host, family=family)
        return addrinfo(addrs, service_port(port), family, type, proto)

    async def advertise(
        self,
        instance: str,
        service_type: str,
        port: int,
        *,
        txt: Mapping[str, str | bytes | None] | None = None,
        subtypes: Iterable[str] = (),
        timeout: float = 10.0,
    ) -> Advertisement:
        """Publish a DNS-SD service by mDNS (RFC 6762/6763): ``advertise("My site",
        "_http._tcp", 8080, txt={"path": "/"})`` probes the name, renames it (``My site (2)``)
        if the network has it already, announces it, and returns once it is ours (its
        ``name``); ``close()`` it to say goodbye."""
        return await self._discovery().advertise(
            instance, service_type, port, txt=txt, subtypes=tuple(subtypes), timeout=timeout
        )

    def browse(self, service_type: str) -> ServiceBrowser:
        """Services of a type on this network as they come and go: ``async for change in
        network.browse("_http._tcp")`` yields :class:`ServiceChange` (``kind`` added, updated
        or removed; ``service`` with name, host, addresses, port and TXT)."""
        return self._discovery().browse(service_type)

    def _discovery(self) -> Discovery:
        disc = self.names.discovery
        if disc is None:
            why = (
                "the network carries no multicast, or mDNS is off"
                if self.status == "OK"
                else f"the network is {self.status}"
            )
            raise RuntimeError(f"no mDNS on network {self.id:016x}: {why}")
        return disc

    async def serve_dns(self, zone: Zone | None = None, *, port: int = 53) -> DnsServer:
        """Answer DNS on this network's addresses: ``zone`` (a
        :class:`~ztnode.names.zone.Zone`), or by default the zone of the network's members
        from the controller this node hosts (what the node does by itself when it is listed
        among the network's pushed servers). ``close()`` the server to stop."""
        if zone is None:
            if self.node.service.controller is None:
                raise RuntimeError("no zone given, and this node hosts no controller")
            return await DnsServer(self, controller_zone_source(self), port=port).start()
        return await DnsServer(self, zone, port=port).start()

    # ---- TCP

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        ssl: SslArg = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        local_port: int = 0,
        timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Like ``loop.create_connection``, on this network: ``ssl`` (a context, or True for
        a default one) makes it TLS, checked against ``server_hostname`` or ``host``;
        ``timeout`` bounds the TCP handshake. ``host`` may be a name (:meth:`resolve`): its
        addresses are tried in turn, and the first error is raised if none connects."""
        if ip_literal(host) is None:
            errors: list[OSError] = []
            for ip in await self.resolve(host):
                try:
                    return await self.create_connection(
                        protocol_factory,
                        ip,
                        port,
                        ssl=ssl,
                        server_hostname=(
                            host if server_hostname is None and ssl else server_hostname
                        ),
                        ssl_handshake_timeout=ssl_handshake_timeout,
                        ssl_shutdown_timeout=ssl_shutdown_timeout,
                        local_port=local_port,
                        timeout=timeout,
                    )
                except OSError as exc:
                    errors.append(exc)
            raise errors[0]
        loop = asyncio.get_running_loop()
        host = literal(host)
        tls = client_options(
            ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        sock = self.stack.tcp_connect(host, port, self.node._now(), local_port=local_port)
        pending = _Connecting(loop, sock.remote_endpoint)
        sock.user = pending
        self.node.service.flush_soon()
        try:
            if timeout is None:
                # The handshake's own future, awaited directly: a shield and wait_for would
                # cost two more trips through the event loop once it is connected.
                await pending.future
            else:
                await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            pending.future.cancel()  # nobody will read it now
            sock.abort(self.node._now())
            self.node.service.flush_soon()
            raise TimeoutError(
                errno.ETIMEDOUT, f"connecting to {host} port {port}: timed out after {timeout} s"
            ) from None
        except BaseException:
            pending.future.cancel()
            sock.abort(self.node._now())
            self.node.service.flush_soon()
            raise
        protocol = protocol_factory()
        if tls is None:
            transport = _TcpTransport(self, sock, protocol)
            protocol.connection_made(transport)
            transport.read_ready()
            return transport, protocol
        tls_proto, waiter = tls.wrap(protocol)
        transport = _TcpTransport(self, sock, tls_proto)
        tls_proto.connection_made(transport)
        transport.read_ready()
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return tls.app_transport(tls_proto), protocol

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        limit: int = 2**16,
        **kwargs: Any,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Like ``asyncio.open_connection``: stock reader and writer over this network (the
        keyword arguments are :meth:`create_connection`'s, TLS included)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        proto = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(lambda: proto, host, port, **kwargs)
        writer = asyncio.StreamWriter(transport, proto, reader, loop)
        return reader, writer

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int = 0,
        *,
        family: int = 4,
        backlog: int = 128,
        ssl: _ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> TcpServer:
        """Like ``loop.create_server``. ``family`` ``socket.AF_INET6`` (or 6, or an IPv6
        ``host``) listens on IPv6; ``socket.AF_UNSPEC`` (or 0) with no ``host`` listens on IPv4
        and IPv6 on one port; ``ssl`` makes every accepted connection TLS."""
        tls = server_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        fam = ip_family(family)
        stack = self.stack
        if fam == 0 and host is None:
            v4 = stack.tcp_listen(None, port, backlog, ipv6=False)
            try:
                v6 = stack.tcp_listen(None, v4.port, backlog, ipv6=True)
            except OSError:
                v4.close(self.node._now())
                raise
            return TcpServer(self, [v4, v6], protocol_factory, tls)
        if host is not None:
            host = literal(host)
        ipv6 = fam == 6 or (host is not None and ":" in host)
        listener = stack.tcp_listen(host, port, backlog, ipv6=ipv6)
        return TcpServer(self, [listener], protocol_factory, tls)

    async def start_server(
        self,
        client_connected_cb: StreamCallback,
        host: str | None = None,
        port: int = 0,
        *,
        limit: int = 2**16,
        **kwargs: Any,
    ) -> TcpServer:
        """Like ``asyncio.start_server``: the callback gets a stock reader and writer (the
        keyword arguments are :meth:`create_server`'s, TLS included)."""
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.Protocol:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

        return await self.create_server(factory, host, port, **kwargs)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        *,
        family: int = 0,
        reuse_port: bool = False,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        """Like ``loop.create_datagram_endpoint`` on this network (``remote_addr`` may name
        its host; ``sendto`` takes addresses, as asyncio's does). ``reuse_port`` shares the
        local port with other sockets bound with it (the node's own mDNS and LLMNR responders
        hold 5353 and 5355 that way): all hear multicasts, the newest hears unicast."""
        if remote_addr is not None and ip_literal(remote_addr[0]) is None:
            fam = ip_family(family)
            remote_addr = ((await self.resolve(remote_addr[0], family=fam))[0], remote_addr[1])
        ipv6 = family == 6
        for addr in (local_addr, remote_addr):
            if addr is not None and ":" in addr[0]:
                ipv6 = True
        host, port = local_addr if local_addr is not None else (None, 0)
        sock = self.stack.udp_bind(host, port, ipv6=ipv6, reuse=reuse_port)
        if remote_addr is not None:
            sock.connect(literal(remote_addr[0]), remote_addr[1])
        protocol = protocol_factory()
        transport = _UdpTransport(self, sock, protocol)
        protocol.connection_made(transport)
        return transport, protocol

    def events(self, *kinds: type[ev.Event], maxsize: int = 4096) -> EventStream:
        """This network's events (status, addresses, config updates, leaving)."""
        return self.node.events(*kinds, maxsize=maxsize, network=self.id)

    def join_group(self, group: str, *, source: str | None = None) -> None:
        """IP_ADD_MEMBERSHIP: receive datagrams sent to an IPv4 or IPv6 multicast group (mDNS
        on 224.0.0.251, LLMNR on 224.0.0.252, ...) with a UDP endpoint bound to its port; with
        ``source``, only that sender's (IP_ADD_SOURCE_MEMBERSHIP, source-specific multicast).
        ZeroTier carries the membership as a multicast LIKE, and IGMP/MLD tell the switches
        of bridged LANs."""
        self.stack.join_group(ip_address(group), ip_address(source) if source else None)
        self.node.service.flush_soon()

    def leave_group(self, group: str, *, source: str | None = None) -> None:
        self.stack.leave_group(ip_address(group), ip_address(source) if source else None)
        self.node.service.flush_soon()

    # ---- ICMP

    async def ping(self, host: str, *, timeout: float = 2.0, payload: bytes = b"ztnode") -> float:
        """One echo request to ``host`` (an address or a name); the round trip in seconds, or
        TimeoutError."""
        if ip_literal(host) is None:
            host = (await self.resolve(host))[0]
        loop = asyncio.get_running_loop()
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        key = (self._ping_ident, self._ping_seq)
        fut: asyncio.Future[None] = loop.create_future()
        self._pings[key] = fut
        # perf_counter, not loop.time(): uvloop's clock counts whole milliseconds, and a round
        # trip on a LAN or loopback is less than one.
        t0 = time.perf_counter()
        try:
            self.stack.ping(literal(host), key[0], key[1], payload, self.node._now())
            self.node.service.flush_soon()
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"no echo reply from {host} within {timeout} s") from None
        finally:
            self._pings.pop(key, None)
        return time.perf_counter() - t0

    def _ping_reply(self, e: PingReply) -> None:
        fut = self._pings.get((e.identifier, e.sequence))
        if fut is not None and not fut.done():
            fut.set_result(None)

    # ---- raw Ethernet

    def add_frame_listener(
        self, callback: Callable[[ev.FrameReceived], None]
    ) -> Callable[[], None]:
        """Every Ethernet frame delivered on this network (before the IP stack) goes to
        ``callback``; returns a function that removes it."""
        host = self.node.service.host
        if host is None:
            raise RuntimeError("the node is not started")
        taps = host.frame_taps.setdefault(self.id, [])
        taps.append(callback)
        return lambda: taps.remove(callback) if callback in taps else None

    def send_frame(self, dst_mac: int, ethertype: int, payload: bytes) -> bool:
        """Send one Ethernet frame from our MAC (unicast to a member, or multicast)."""
        return bool(
            self.node.service.call(
                lambda node, now: node.send_frame(self.id, dst_mac, ethertype, payload, now)
            )
        )

    def _close_all(self) -> None:
        for t in list(self._transports):
            t.abort() if not isinstance(t, TcpServer) else t.close()
        for f in self._pings.values():
            if not f.done():
                f.set_exception(ConnectionAbortedError("left the network"))
