"""Runs a sans-I/O :class:`~ztnode.core.node.Node` on the asyncio event loop.

The adapter owns everything the core must not: UDP sockets (IPv4 and IPv6), the one timer, the
clock, the OS random source, the home directory and the process pool that validates new
identities. Its loop is simple: feed an input to the node, then ``_pump()`` (send what the node
queued, hand events to subscribers, re-arm the single timer at the node's next deadline).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import multiprocessing
import os
import random
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ztnode.controller.store import StoreUnavailable
from ztnode.core import events as ev
from ztnode.core.bond import BondingSettings
from ztnode.core.node import Node, NodeConfig
from ztnode.core.records import ConfigRequest, Inbound, InboundKind, Outgoing
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.crypto import SymmetricKey
from ztnode.crypto.idhash import mixes_in_c as idhash_in_c
from ztnode.errors import DecodeError
from ztnode.identity import Identity
from ztnode.netstack.host import Host, HostEvent, ManagedPolicy
from ztnode.netstack.stack import StackEvent
from ztnode.transport import burst as _burst
from ztnode.transport import fastpath
from ztnode.transport.binder import (
    REFRESH_INTERVAL,
    REFRESH_INTERVAL_BONDING,
    Binder,
    BindSettings,
    Enumerator,
    IpAddress,
    bind_to_device,
)
from ztnode.transport.ifaddrs import named_interface_addresses
from ztnode.transport.localconf import (
    CHECK_INTERVAL,
    LocalConf,
    LocalConfError,
    LocalConfWatcher,
    read_local_conf,
)
from ztnode.transport.portmap import VETO_ENV, PortMapping, PortMapSettings, vetoed
from ztnode.transport.portmapper import PortMapper
from ztnode.transport.randompool import RandomPool
from ztnode.transport.state import HomeDir, NetworkSettings
from ztnode.transport.tcprelay import TcpRelayClient, TcpRelaySettings
from ztnode.transport.tcprelayserver import TcpRelayServer
from ztnode.transport.udp import UdpEndpoint
from ztnode.wire.constants import DEFAULT_PORT
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import World

log = logging.getLogger("ztnode.service")

#: ``local.conf`` settings read only at start (as by ZeroTierOne: sockets, the port mapper
#: and bonds are set up once); a reload that changes them says so.
RESTART_ONLY: Final = (
    "primaryPort",
    "secondaryPort",
    "tertiaryPort",
    "allowSecondaryPort",
    "portMappingEnabled",
    "tcpRelayListen",
    "defaultBondingPolicy",
    "policies",
    "peerSpecificBonds",
)

# With a shared controller database: how often the members other instances serve are greeted.
CONTACT_PERIOD_S = 60.0

#: Rounds of flushing within one pump when socket callbacks keep producing output.
_MAX_REFLUSH = 16
_new_inbound: Final = tuple.__new__
_AUTHENTICATED: Final = InboundKind.AUTHENTICATED  # one lookup, not one per packet
_NO_PHYSICAL_PATHS: Final = PhysicalPathConfig()

Addr = tuple[str, int]
EventCallback = Callable[[ev.Event], None]
StackEventHandler = Callable[[StackEvent], None]


def _worker_init() -> None:
    """Set up an identity-validation worker (a forked child of the node's process).

    * It closes the IPv4/IPv6 sockets it inherited: every node of this process has its UDP
      socket there, and a worker holding one open would keep that port bound after the node
      stopped, so the node could not have its port back on restart. (The pool's own pipes are
      pipes, not sockets, and are kept.)
    * It ends with its parent, even one killed by SIGKILL that had no chance to stop the pool
      (Linux's PR_SET_PDEATHSIG). The signal dispositions a fork inherits are reset first: the
      parent's event loop may have routed SIGTERM to its wake-up descriptor (a forked child
      would then ignore the death signal and outlive its parent), and Ctrl-C, which reaches
      the whole process group, is the parent's to handle (a worker would print a
      KeyboardInterrupt traceback).
    """
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
                s = socket.socket(fileno=fd)
            except OSError:
                continue
            if s.family in (socket.AF_INET, socket.AF_INET6):
                s.close()
            else:
                s.detach()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _binds(family: int, host: str, port: int) -> bool:
    """Whether a UDP socket can bind ``host``/``port`` now (the socket is closed again)."""
    with socket.socket(family, socket.SOCK_DGRAM) as trial:
        try:
            trial.bind((host, port))
        except OSError:
            return False
    return True


def _validate_in_worker(identity_text: str) -> bool:
    """Runs in the validation worker: the memory-hard hash must not stall the event loop."""
    return Identity.from_string(identity_text).validate()


@dataclass
class ServiceConfig:
    home: Path
    port: int = DEFAULT_PORT
    bind: tuple[str, ...] = ("0.0.0.0", "::")
    planet: World | None = None
    allow_loopback: bool = False
    validate_in_process_pool: bool = True
    """Validate new identities off the event loop: on a worker thread where the identity hash
    runs in ztnode's C module (it releases the interpreter), else in one forked worker process.
    Off: on the loop, between packets."""
    identity_validation_interval: int = 2_000
    controller: bool = False
    """Run a network controller for networks whose ids start with this node's address."""
    controller_db: str | None = None
    """The controller's database: a ``postgresql://`` URL (several instances may share it) or a
    SQLite file; None is ``controller.db`` in the home directory."""
    sockets: tuple[socket.socket, ...] = ()
    """Already-bound UDP sockets to use instead of binding ``bind``/``port`` (for example
    sockets created inside a network namespace); the service takes ownership."""
    burst_receive: bool = True
    """Read datagrams in C bursts where available (:mod:`ztnode.transport.burst`): several
    times less CPU per received TCP segment. Off: one datagram at a time, all in Python."""
    bonding: BondingSettings | None = None
    """Bonding policies; None reads them from ``local.conf`` (``settings``), as ZeroTierOne."""
    bind_interfaces: bool | None = None
    """One socket per interface address (:mod:`ztnode.transport.binder`) instead of ``bind``'s
    wildcard sockets. None: on when bonding is configured or ``local.conf`` has
    ``settings.bind``; never with ``sockets``."""
    interfaces: Enumerator | None = None
    """Where the Binder learns interface addresses (default: this process's network
    namespace); with ``socket_factory``, a node whose sockets live in another namespace."""
    socket_factory: Callable[[str, int], socket.socket] | None = None
    """How the Binder makes a UDP socket bound to (address, port) (default: here)."""
    settings: Mapping[str, Any] | None = None
    """``local.conf`` ``settings`` keys given by the program; they win over the file's, key
    by key, at start and at every reload (:mod:`ztnode.transport.localconf`)."""
    port_from_conf: bool = False
    """``port`` is only a default: ``settings.primaryPort`` of ``local.conf``, when set, wins."""
    port_mapping: bool = False
    """Map a third UDP port on the router (NAT-PMP, UPnP IGD) when ``local.conf`` does not say
    (``settings.portMappingEnabled``); off for embedded nodes, on for the ``ztnode node``
    daemon. ``ZTNODE_NO_PORT_MAPPING`` vetoes it (:mod:`ztnode.transport.portmap`)."""
    secondary_port: bool = False
    """With wildcard sockets (``bind``), also bind a random secondary port when ``local.conf``
    does not say (``settings.allowSecondaryPort``): on for the ``ztnode node`` daemon, as
    ZeroTierOne; embedded nodes keep one socket. One socket per interface address always
    has it unless ``allowSecondaryPort`` is false."""
    tcp_relay_listen: tuple[str, int] | None = None
    """Accept TCP fallback tunnels on this (IP, port) (:mod:`ztnode.transport.tcprelayserver`);
    None reads local.conf's ``settings.tcpRelayListen`` (absent: off)."""


_monotonic: Final = time.monotonic


class Clock:
    """Milliseconds that never go backwards but start near wall-clock time.

    The node stamps HELLOs with ``now`` and measures latency against its own echo, so only
    monotonicity matters; starting from the wall clock keeps logs and world timestamps familiar.
    """

    def __init__(self) -> None:
        self._offset = int(time.time() * 1000) - int(time.monotonic() * 1000)

    def now(self) -> int:
        return int(_monotonic() * 1000) + self._offset  # asked several times per pump


SECONDARY_PORT_COMA: Final = 120_000  # offline this long: a new secondary port


@dataclass
class SecondaryPort:
    """The Binder's second port on every address (``settings.allowSecondaryPort``, default
    on; ``settings.secondaryPort`` fixes it, else it is random and moves after two minutes
    offline): a NAT that misbehaves on one port still lets the other through."""

    wanted: bool = False
    port: int = 0
    fixed: bool = False
    offline_since: int = 0


class _EndpointSink(_burst.BurstSink):
    """What one endpoint's burst reader hands over, routed to the host (see
    :mod:`ztnode.transport.burst`); datagrams take the endpoint's ordinary handler."""

    def __init__(
        self,
        service: NodeService,
        host: str,
        on_datagram: Callable[[memoryview, Addr], None],
        local: Addr | None = None,
    ) -> None:
        self._service = service
        self._host = host
        self._local: Addr | None = local
        self._on_datagram = on_datagram

    def on_datagram(self, data: memoryview, remote: Addr) -> None:
        self._on_datagram(data, remote)

    def _local_address(self) -> Addr | None:
        if self._local is None:
            for addr in self._service.endpoints:
                if addr[0] == self._host:
                    self._local = addr
                    break
        return self._local

    def on_whole(self, packet: bytearray, remote: Addr, pieces: int, wire_bytes: int) -> None:
        relay = self._service.tcp_relay
        if relay is not None and not relay.heard_udp(remote, wire_bytes):
            return
        engine = self._service.host
        local = self._local or self._local_address()
        if engine is not None and local is not None:
            inbound = Inbound(InboundKind.WHOLE, packet, local, remote, pieces, wire_bytes)
            engine.receive(inbound, self._service.clock.now())

    def on_plain(
        self,
        packet: bytearray,
        key: SymmetricKey,
        remote: Addr,
        pieces: int,
        wire_bytes: int,
        frames: int,
        packet_ids: tuple[int, ...] = (),
        checked: bool = False,
        src: int = -1,
        pid: int = -1,
        nwid: int = -1,
    ) -> bool:
        relay = self._service.tcp_relay
        if relay is not None and not relay.heard_udp(remote, wire_bytes):
            return True  # forceTcpRelay: UDP is ignored, as the reference ignores it
        engine = self._service.host
        local = self._local or self._local_address()
        if engine is None or local is None:
            return True  # shutting down: nothing to judge, nothing stale
        # tuple.__new__: the NamedTuple's own __new__ would run interpreted (see core.switch).
        inbound = _new_inbound(
            Inbound,
            (
                _AUTHENTICATED,
                packet,
                local,
                remote,
                pieces,
                wire_bytes,
                key,
                frames,
                packet_ids,
                checked,
                src,
                pid,
                nwid,
            ),
        )
        return engine.receive(inbound, self._service.clock.now())

    def key_for(self, address: int) -> SymmetricKey | None:
        node = self._service.node
        peer = node.peers.get(address) if node is not None else None
        return peer.key if peer is not None else None

    def coalescing_networks(self) -> list[int]:
        engine = self._service.host
        return engine.coalescing_networks() if engine is not None else []

    def relaying(self) -> bool:
        node = self._service.node
        return node is not None and node.relaying

    def physical_paths(self) -> PhysicalPathConfig:
        node = self._service.node
        return node.physical.config if node is not None else _NO_PHYSICAL_PATHS

    def now(self) -> int:
        return self._service.clock.now()

    def on_dropped(self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int) -> None:
        node = self._service.node
        if node is not None:
            node.transport_dropped(reasons, datagrams, wire_bytes)


class NodeService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.home = HomeDir(config.home)
        self.clock = Clock()
        self.node: Node | None = None
        self.host: Host | None = None
        #: Where socket events of the IP stacks go (the sockets layer installs itself here).
        self.stack_event_handler: StackEventHandler | None = None
        #: Metric families from the layers above (names, ...) for ``GET /metrics``.
        self.metric_sources: list[Callable[[], list[Any]]] = []
        self._pumping = False
        self._reflush = False
        self.controller: Any = None
        #: Local settings of joined networks (``networks.d/<nwid>.local.conf``).
        self.network_settings: dict[int, NetworkSettings] = {}
        self.endpoints: dict[Addr, UdpEndpoint] = {}
        self._subscribers: list[EventCallback] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._pool: concurrent.futures.Executor | None = None
        # The hosted controller answers config requests here, off the event loop (its
        # database reads and fsync'd commits); one thread, so requests are answered in order.
        self._controller_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._controller_listen: threading.Event | None = None
        self._contact_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.binder: Binder | None = None
        self.secondary = SecondaryPort()
        self._primary_port = 0
        self._binder_timer: asyncio.TimerHandle | None = None
        self._self_address = 0
        #: The checked ``local.conf`` in force (see :meth:`reload_local_conf`).
        self.local_conf = LocalConf()
        self._conf_watcher: LocalConfWatcher | None = None
        self._conf_timer: asyncio.TimerHandle | None = None
        #: Called with the new ``local.conf`` after each reload (the local API rebinds).
        self.local_conf_listeners: list[Callable[[LocalConf], None]] = []
        self.port_mapper: PortMapper | None = None
        self.tertiary_port = 0
        #: The TCP fallback tunnel (client) and the tunnel relay (server), see tcprelay*.py.
        self.tcp_relay: TcpRelayClient | None = None
        self.tcp_relay_server: TcpRelayServer | None = None

    # lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Node:
        self._loop = asyncio.get_running_loop()
        self._closing = False  # a service stopped before starts again from scratch
        fastpath.announce(log)
        self.home.ensure()
        identity = self.home.load_or_create_identity()
        planet = self.home.load_planet(self.config.planet)
        moons = self.home.load_moons()
        conf_file = self.home.path / "local.conf"
        conf = self.local_conf = read_local_conf(conf_file, self.config.settings)
        for warning in conf.warnings:
            log.warning("%s", warning)
        self._conf_watcher = LocalConfWatcher(conf_file)
        if self.config.port_from_conf and conf.primary_port:
            self.config.port = conf.primary_port
        bonding = self.config.bonding or conf.bonding
        bind_settings = BindSettings.from_conf(conf)
        portmap = PortMapSettings.from_conf(conf)
        physical = self.home.load_physical_paths(conf.physical)
        relay_settings = TcpRelaySettings.from_conf(conf)
        relay_listen = self.config.tcp_relay_listen or conf.tcp_relay_listen
        per_interface = self.config.bind_interfaces
        if per_interface is None:
            per_interface = bonding.in_use or bool(bind_settings.only)
        self._self_address = identity.address
        for sock in self.config.sockets:
            name = sock.getsockname()
            handler = self._handler_for(name[0])
            ep = UdpEndpoint(sock, handler, self._loop, self._pump)
            self.endpoints[ep.local_address] = ep
            self._enable_bursts(ep, name[0], identity.address)
        if not self.config.sockets:
            if per_interface:
                extra: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
                if self.config.allow_loopback:  # loopback paths: the ones bind lists, or .1
                    lo = [ip for ip in bind_settings.only if ip.is_loopback]
                    extra = [("lo", ip) for ip in lo or [ipaddress.ip_address("127.0.0.1")]]
                self._primary_port = 0
                wanted = conf.allow_secondary_port is not False
                self.secondary = SecondaryPort(
                    wanted=wanted,
                    port=conf.secondary_port if wanted else 0,
                    fixed=bool(conf.secondary_port),
                )
                self.binder = Binder(
                    bind_settings,
                    enumerate_addresses=self.config.interfaces or named_interface_addresses,
                    extra=extra,
                )
                self._rebind()
            else:
                self._bind_wildcards()
                self._bind_wildcard_secondary(conf)
        if not self.endpoints:
            raise OSError("could not bind any UDP socket")
        self._bind_tertiary(portmap)
        node_config = NodeConfig(
            allow_loopback=self.config.allow_loopback,
            defer_identity_validation=self.config.validate_in_process_pool,
            defer_config_requests=self.config.controller,
            identity_validation_interval=self.config.identity_validation_interval,
        )
        if self.config.validate_in_process_pool and idhash_in_c():
            # The hash's work runs in C without the interpreter lock: a thread is enough, and
            # costs no process per node.
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="ztnode-identity"
            )
        elif self.config.validate_in_process_pool:
            # Forked (no main-module guard needed by users' scripts); the worker closes the
            # sockets it inherits, see _worker_init.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init,
            )
        hosted = None
        if self.config.controller:
            from ztnode.controller import open_controller

            self.controller = hosted = open_controller(
                identity,
                self.home.path,
                os.urandom,
                self.config.controller_db or conf.controller_db_path,
            )
            self._controller_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="ztnode-controller"
            )
            self._listen_to_other_controllers(hosted)
        self.node = Node(
            identity,
            planet,
            now=self.clock.now(),
            random_bytes=RandomPool(),
            local_addresses=list(self.endpoints),
            moons=moons,
            config=node_config,
            controller=hosted,
        )
        self.host = Host(self.node)
        self.node.set_physical_paths(physical)
        self.node.set_interface_addresses(self._interface_addresses())
        self.node.set_path_policy(conf.path_policy())
        self.node.configure_bonding(bonding, self.clock.now())
        if self.tertiary_port:
            self.port_mapper = PortMapper(
                self.tertiary_port,
                f"ZeroTier/{identity.address:010x}@{self.tertiary_port}",
                self._mapping_changed,
                self.clock.now,
            )
            self.port_mapper.start()
        self._conf_timer = self._loop.call_later(CHECK_INTERVAL / 1000, self._check_local_conf)
        self._name_links()
        self.tcp_relay = TcpRelayClient(
            relay_settings, self._loop, self.clock.now, self._receive_as_udp, bonding.in_use
        )
        if relay_listen is not None:
            self.tcp_relay_server = TcpRelayServer(
                relay_listen, self.clock.now, self._receive_as_udp, identity.address
            )
            await self.tcp_relay_server.start()
        now = self.clock.now()
        for ident, version, addrs in self.home.load_peers():
            self.node.add_cached_peer(ident, version, [a.to_sockaddr() for a in addrs], now)
        for nwid, cached in self.home.load_networks():
            self._apply_settings(nwid, self.home.load_network_settings(nwid))
            self.node.join(nwid, now, cached_config=cached or None)
        self._pump()
        return self.node

    async def stop(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._binder_timer is not None:
            self._binder_timer.cancel()
            self._binder_timer = None
        if self._conf_timer is not None:
            self._conf_timer.cancel()
            self._conf_timer = None
        if self.node is not None:
            self.save_peers()
        if self.port_mapper is not None:
            mapper, self.port_mapper = self.port_mapper, None
            await mapper.stop()
        if self.tcp_relay is not None:
            self.tcp_relay.close()
        if self.tcp_relay_server is not None:
            await self.tcp_relay_server.close()
            self.tcp_relay_server = None
        self.close_endpoints()
        if self._controller_listen is not None:
            self._controller_listen.set()
            self._controller_listen = None
        if self._contact_timer is not None:
            self._contact_timer.cancel()
            self._contact_timer = None
        if self._controller_pool is not None:
            # Requests still being answered finish first: the database closes after them.
            ctl_pool, self._controller_pool = self._controller_pool, None
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(ctl_pool.shutdown, wait=True, cancel_futures=True)
            )
        if self.controller is not None:
            self.controller.close()
            self.controller = None
        if self._pool is not None:
            # Wait (off the loop) until the worker and the pool's manager thread are gone: a
            # pool left shutting down when the interpreter exits races its atexit hook, which
            # then writes to an already closed wake-up pipe and prints a traceback (EBADF).
            pool, self._pool = self._pool, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )

    def _bind_tertiary(self, settings: PortMapSettings) -> None:
        """The reference's third port, the one mapped on the router, when mapping is on."""
        self.tertiary_port = 0
        wanted = self.config.port_mapping if settings.enabled is None else settings.enabled
        if not wanted:
            return
        if vetoed():
            log.info("port mapping: off, %s is set", VETO_ENV)
            return
        if self.config.sockets or self.config.socket_factory is not None:
            # The mapper talks to the router of this process's namespace, not theirs.
            log.info("port mapping: off, the service's sockets are made elsewhere")
            return
        any4 = ipaddress.ip_address("0.0.0.0")
        port = settings.tertiary_port or self._free_port(any4)
        if port and self._bind_one(any4, "", port) is not None:
            self.tertiary_port = port

    def _mapping_changed(self, mapping: PortMapping | None) -> None:
        if self.node is not None:
            self.node.set_interface_addresses(self._interface_addresses())

    def _bind_wildcard_secondary(self, conf: LocalConf) -> None:
        """The reference's secondary port (a NAT that misbehaves on one port still lets the
        other through) beside wildcard sockets: on each bound address, when ``local.conf``
        allows it or, unsaid, when the service's default says so (the daemon's). Random
        unless ``secondaryPort`` fixes it; unlike the Binder's, it does not move when offline."""
        wanted = conf.allow_secondary_port
        if wanted is None:
            wanted = self.config.secondary_port
        if not wanted:
            return
        hosts = [ipaddress.ip_address(a[0]) for a in self.endpoints]
        if not hosts:
            return
        port = conf.secondary_port or self._free_port(hosts[0])
        if not port or port == self.port:
            return
        bound = [ip for ip in hosts if self._bind_one(ip, "", port) is not None]
        if bound:
            self.secondary = SecondaryPort(wanted=True, port=port, fixed=bool(conf.secondary_port))

    def _bind_wildcards(self) -> None:
        for host in self.config.bind:
            try:
                ep = UdpEndpoint.bind(
                    host, self.config.port, self._handler_for(host), self._loop, self._pump
                )
                self._enable_bursts(ep, host, self._self_address)
            except OSError as e:
                if host == "::" and e.errno in (97, 99):  # no IPv6 on this host
                    log.info("IPv6 unavailable, listening on IPv4 only")
                    continue
                self.close_endpoints()
                raise
            self.endpoints[ep.local_address] = ep

    def _rebind(self) -> bool:
        """The Binder's sockets: bind new interface addresses (each on the primary port and,
        as the reference, on the secondary one), close the ones that vanished. True when
        something changed."""
        binder = self.binder
        assert binder is not None
        added, gone = binder.refresh()
        for ip in gone:
            binder.closed(ip)
            for addr in [a for a in self.endpoints if a[0] == str(ip)]:
                self.endpoints.pop(addr).close()
        for ip, name in added.items():
            ep = self._bind_one(ip, name, self._primary_port or self.config.port)
            if ep is None:
                binder.failed.add(ip)
                continue
            self._primary_port = ep.local_address[1]
            binder.bound_now(ip, name)
            if self.secondary.wanted and not self.secondary.port:
                self.secondary.port = self._free_port(ip)
            if self.secondary.port:
                self._bind_one(ip, name, self.secondary.port)
        return bool(added or gone)

    def _bind_one(self, ip: IpAddress, name: str, port: int) -> UdpEndpoint | None:
        host = str(ip)
        factory = self.config.socket_factory
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        try:
            if factory is not None:
                sock = factory(host, port)
            else:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((host, port))
                except BaseException:
                    sock.close()
                    raise
        except OSError as e:
            log.warning("could not bind %s/%d on %s: %s", host, port, name, e)
            return None
        local: Addr = tuple(sock.getsockname()[:2])
        ep = UdpEndpoint(sock, self._handler_for(host, local), self._loop, self._pump)
        bind_to_device(ep.sock, name)
        self._enable_bursts(ep, host, self._self_address, local)
        self.endpoints[local] = ep
        return ep

    def _free_port(self, ip: IpAddress) -> int:
        """A random port from 20000 to 65499 that binds on ``ip`` (_getRandomPort)."""
        rng = random.SystemRandom()
        start = 20_000 + rng.randrange(45_500)
        for i in range(1000):
            port = 20_000 + (start - 20_000 + i) % 45_500
            if port == self._primary_port:
                continue
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if self.config.socket_factory is not None:
                return port  # tried by the bind itself (another namespace)
            if _binds(family, str(ip), port):
                return port
        return 0

    def _rerandomize_secondary(self) -> None:
        """The reference's cure for NATs that stop forwarding one port after a while: a node
        offline for two minutes moves its secondary port (unless it was set)."""
        binder, node = self.binder, self.node
        sec = self.secondary
        if binder is None or node is None or not sec.port or sec.fixed:
            return
        now = self.clock.now()
        if node.online or not sec.offline_since:
            sec.offline_since = 0 if node.online else now
            return
        if now - sec.offline_since <= SECONDARY_PORT_COMA:
            return
        sec.offline_since = now
        for addr in [a for a in self.endpoints if a[1] == sec.port]:
            self.endpoints.pop(addr).close()
        first = next(iter(binder.bound), None)
        sec.port = self._free_port(first) if first is not None else 0
        if sec.port:
            for ip, name in binder.bound.items():
                self._bind_one(ip, name, sec.port)
        node.set_local_addresses(list(self.endpoints))

    def _name_links(self) -> None:
        """Tell the node each socket's interface (bond links) and arm the next refresh."""
        node, binder, loop = self.node, self.binder, self._loop
        if node is None or binder is None or loop is None:
            return
        names = {a: binder.bound.get(ipaddress.ip_address(a[0]), "") for a in self.endpoints}
        node.set_link_names(names)
        interval = REFRESH_INTERVAL_BONDING if node.bonds.in_use else REFRESH_INTERVAL
        self._binder_timer = loop.call_later(interval / 1000, self._refresh_binder)

    def _refresh_binder(self) -> None:
        self._binder_timer = None
        if self.node is None or self._closing:
            return
        self._rerandomize_secondary()
        if self._rebind():
            self.node.set_local_addresses(list(self.endpoints))
            self.node.set_interface_addresses(self._interface_addresses())
        self._name_links()

    def close_endpoints(self) -> None:
        for ep in self.endpoints.values():
            ep.close()
        self.endpoints.clear()

    def save_peers(self) -> None:
        node = self.node
        if node is None:
            return
        for peer in node.peers.values():
            addrs = [s.path.inet for s in peer.paths][:8]
            try:
                self.home.save_peer(peer.identity, peer.version, addrs)
            except OSError as e:
                log.warning("could not cache peer: %s", e)

    def join(self, network_id: int) -> None:
        """Join a network and remember it across restarts (``networks.d``)."""
        self.home.remember_network(network_id)
        if network_id not in self.network_settings:
            self._apply_settings(network_id, self.home.load_network_settings(network_id))
        self.call(lambda node, now: node.join(network_id, now))

    def leave(self, network_id: int) -> bool:
        self.home.forget_network(network_id)
        self.network_settings.pop(network_id, None)
        if self.host is not None:
            self.host.policies.pop(network_id, None)
        return bool(self.call(lambda node, now: node.leave(network_id)))

    def settings(self, network_id: int) -> NetworkSettings:
        """A network's local settings (the defaults for one never set)."""
        return self.network_settings.get(network_id) or NetworkSettings()

    def update_settings(self, network_id: int, **changes: bool) -> NetworkSettings:
        """Change local settings (``allow_managed=False``...), save them to ``local.conf`` and
        apply them to the network's IP stack at once."""
        new = dataclasses.replace(self.settings(network_id), **changes)
        self.home.save_network_settings(network_id, new)
        self._apply_settings(network_id, new)
        log.info("network %016x: %s", network_id, new)
        self._pump()
        return new

    def _apply_settings(self, network_id: int, settings: NetworkSettings) -> None:
        self.network_settings[network_id] = settings
        if self.host is not None:
            policy = ManagedPolicy(
                settings.allow_managed, settings.allow_global, settings.allow_default
            )
            self.host.set_policy(network_id, policy, self.clock.now())

    def orbit(self, world_id: int, seed: int) -> None:
        """Orbit a moon: ask its root ``seed`` for it (it is saved in ``moons.d`` when it
        arrives)."""
        log.info("orbiting moon %016x through %010x", world_id, seed)
        self.call(lambda node, now: node.orbit(world_id, seed, now))

    def deorbit(self, world_id: int) -> bool:
        """Stop orbiting a moon and forget it (``moons.d``); True if we had it or waited for it."""
        gone = bool(self.call(lambda node, now: node.deorbit(world_id)))
        self.home.delete_moon(world_id)
        if gone:
            log.info("left moon %016x", world_id)
        return gone

    def controller_changed(self) -> None:
        """The controller's data changed through its API: send pushes and revocations now."""
        self.call(lambda node, now: node.flush_controller(now))

    def _listen_to_other_controllers(self, hosted: Any) -> None:
        """With a shared database (PostgreSQL), hear what other instances change and push it to
        the members this node serves: the store's listener thread hands each change to the
        loop, which has the controller note it in its own thread, then flushes."""
        listen = getattr(hosted.store, "listen", None)
        if listen is None:
            return
        loop = self._loop
        assert loop is not None
        stop = self._controller_listen = threading.Event()

        def noted(fut: concurrent.futures.Future[None]) -> None:
            if fut.cancelled():
                return
            if fut.exception() is not None:
                log.warning("a change from another controller instance: %s", fut.exception())
                return
            loop.call_soon_threadsafe(self.controller_changed)

        def on_loop(nwid: int, address: int | None) -> None:
            pool = self._controller_pool
            if pool is None or self._closing:
                return
            now = self.clock.now()
            pool.submit(hosted.note_remote_change, nwid, address, now).add_done_callback(noted)

        def on_change(nwid: int, address: int | None) -> None:  # the listener's thread
            if not stop.is_set():
                loop.call_soon_threadsafe(on_loop, nwid, address)

        listen(on_change, stop)
        self._contact_members(hosted)

    def _contact_members(self, hosted: Any) -> None:
        """Every CONTACT_PERIOD_S (and once at start): greet the members other instances on
        the shared database served lately (read in the controller's thread), so that this
        instance has a path to each before it has to take over."""
        pool, loop = self._controller_pool, self._loop
        if pool is None or loop is None or self._closing:
            return

        def greet(fut: concurrent.futures.Future[list[Any]]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                if not fut.cancelled():
                    log.warning("members to contact: %s", fut.exception())
                return
            contacts = fut.result()
            if contacts and self.node is not None and not self._closing:
                now = self.clock.now()
                for identity, where in contacts:
                    self.node.contact_peer(identity, [where], now)
                self._pump()

        fut = pool.submit(hosted.members_to_contact, self.clock.now())
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(greet, f))
        self._contact_timer = loop.call_later(CONTACT_PERIOD_S, self._contact_members, hosted)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    @property
    def port(self) -> int:
        if self._primary_port:
            return self._primary_port
        for addr in self.endpoints:
            return addr[1]
        return self.config.port

    # inputs -------------------------------------------------------------------------------

    def _handler_for(
        self, host: str, local: Addr | None = None
    ) -> Callable[[memoryview, Addr], None]:
        """The datagram handler of the socket on ``host`` (its exact ``local`` address when
        known: the Binder has two sockets per address, on two ports)."""
        local_holder: list[Addr] = [local] if local is not None else []

        def on_datagram(data: memoryview, remote: Addr) -> None:
            engine = self.host
            if engine is None:
                return
            relay = self.tcp_relay
            if relay is not None and not relay.heard_udp(remote, len(data)):
                return
            if not local_holder:
                for addr in self.endpoints:
                    if addr[0] == host:
                        local_holder.append(addr)
                        break
                else:
                    return
            engine.receive_datagram(data, local_holder[0], remote, self.clock.now())
            # The endpoint calls _pump once after its burst (batch_done).

        return on_datagram

    def _enable_bursts(
        self, ep: UdpEndpoint, host: str, address: int, local: Addr | None = None
    ) -> None:
        if self.config.burst_receive:
            ep.enable_bursts(_EndpointSink(self, host, ep.handler, local), address)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.host is None or self._closing:
            return
        self.host.handle_timer(self.clock.now())
        self._pump()

    def call(self, fn: Callable[[Node, int], object]) -> object:
        """Run an API call on the node with the current time, then send what it produced."""
        if self.node is None:
            raise RuntimeError("the node is not started")
        result = fn(self.node, self.clock.now())
        self._pump()
        return result

    def flush_soon(self) -> None:
        """Send what socket API calls queued in the stacks.

        Called from a socket callback (inside a pump: an echo server writing from
        ``data_received``), the running pump sends it before it returns; otherwise the pump
        runs now, so a write costs no extra loop iteration of latency (asyncio's own
        transports also write at once)."""
        if self._loop is None or self._closing:
            return
        if self._pumping:
            self._reflush = True
        else:
            self._pump()

    # outputs ------------------------------------------------------------------------------

    def _pump(self) -> None:
        node = self.node
        host = self.host
        if node is None or host is None or self._loop is None:
            return
        if self._pumping:  # re-entered from a callback: the running pump flushes again
            self._reflush = True
            return
        self._pumping = True
        try:
            now = self.clock.now()
            for _ in range(_MAX_REFLUSH):
                self._reflush = False
                self._send_all(host.datagrams_to_send(now))
                while (event := host.next_event()) is not None:
                    self._on_event(event)
                if not self._reflush:
                    break
                now = self.clock.now()
        finally:
            self._pumping = False
        if self._pool is not None:
            for ident in node.identities_to_validate():
                fut = self._loop.run_in_executor(self._pool, _validate_in_worker, ident.to_string())
                fut.add_done_callback(functools.partial(self._validated, ident))
        if self._controller_pool is not None and self.controller is not None:
            ctl = self.controller
            for request in node.config_requests_to_serve():
                args = request.arguments(self.clock.now())
                cfut = self._loop.run_in_executor(self._controller_pool, ctl.handle_request, *args)
                cfut.add_done_callback(functools.partial(self._config_answered, request))
        deadline = host.get_timer()
        armed = self._timer_at
        # Re-arm only for an earlier deadline. A later one (TCP pushes its timers out on every
        # segment) leaves the armed timer alone: it fires a little early, handle_timer finds
        # nothing due, and the pump after it arms the real deadline. That is one cheap spurious
        # wake-up instead of a cancel and a call_later on every packet.
        if deadline is not None and (armed is None or deadline < armed) and not self._closing:
            if self._timer is not None:
                self._timer.cancel()
            delay = max(0.0, (deadline - now) / 1000.0)
            self._timer = self._loop.call_later(delay, self._on_timer)
            self._timer_at = deadline

    def _send_all(self, datagrams: list[Outgoing]) -> None:
        relay = self.tcp_relay
        server = self.tcp_relay_server
        # Unpacked as a tuple: a NamedTuple's fields read by name are generic attribute
        # lookups in the compiled build, four per datagram.
        for local, remote, data, ttl in datagrams:
            if server is not None and server.send(data, remote):
                continue  # a tunnelled member: its path is the TCP connection
            if relay is not None and not relay.send(data, remote):
                continue  # forceTcpRelay: no UDP at all
            ep = self.endpoints.get(local)
            if ep is None:
                continue
            if ttl:
                self._send_with_ttl(ep, data, remote, ttl)
            else:
                ep.send(data, remote)

    def _tunnel_local(self) -> Addr | None:
        """The endpoint a tunnelled datagram is attributed to: the first IPv4 one, so the
        node's replies also try UDP (the reference's fail-forward)."""
        for addr in self.endpoints:
            if "." in addr[0]:
                return addr
        return next(iter(self.endpoints), None)

    def _receive_as_udp(self, payload: bytes, remote: Addr) -> None:
        """A datagram from a TCP tunnel: ours to a relay (``remote`` is where the relay says
        it came from) or a member's to us (``remote`` is the member's TCP address)."""
        engine = self.host
        local = self._tunnel_local()
        if engine is None or local is None or self._closing:
            return
        engine.receive_datagram(payload, local, remote, self.clock.now())
        self._pump()

    def _validated(self, ident: Identity, fut: asyncio.Future[bool]) -> None:
        if self.node is None or self._closing or fut.cancelled():
            return
        try:
            ok = bool(fut.result())
        except Exception:
            log.exception("identity validation failed to run")
            ok = False
        self.node.identity_validated(ident, ok, self.clock.now())
        self._pump()

    def _config_answered(self, request: ConfigRequest, fut: asyncio.Future[Any]) -> None:
        if self.node is None or self._closing or fut.cancelled():
            return
        try:
            answer = fut.result()
        except StoreUnavailable as e:  # members keep the configs they have meanwhile
            log.warning("controller database unavailable, config request not answered: %s", e)
            return
        except Exception:
            log.exception("the controller failed to answer a config request")
            return
        self.node.config_request_answered(request, answer, self.clock.now())
        self._pump()

    def _send_with_ttl(self, ep: UdpEndpoint, data: bytes, remote: Addr, ttl: int) -> None:
        """Hole punching: a datagram that dies after ``ttl`` hops (IP_TTL / IPV6_UNICAST_HOPS)."""
        sock = ep.sock
        v6 = sock.family == socket.AF_INET6
        level, opt = (
            (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)
            if v6
            else (socket.IPPROTO_IP, socket.IP_TTL)
        )
        try:
            old = sock.getsockopt(level, opt)
            sock.setsockopt(level, opt, ttl)
            try:
                ep.send(data, remote)
            finally:
                sock.setsockopt(level, opt, old)
        except OSError:
            ep.send(data, remote)

    def _on_event(self, event: HostEvent) -> None:
        if not isinstance(event, ev.Event):
            handler = self.stack_event_handler
            if handler is not None:
                try:
                    handler(event)
                except Exception:
                    log.exception("socket event handler failed")
            return
        if isinstance(event, ev.WorldUpdated):
            try:
                self.home.save_world(World.from_bytes(event.world))
            except Exception:
                log.exception("could not save updated world")
        elif isinstance(event, ev.NetworkConfigUpdated):
            try:
                self.home.save_network_config(event.network_id, event.config)
            except OSError as e:
                log.warning("could not save the config of %016x: %s", event.network_id, e)
        elif isinstance(event, ev.PeerRemoved):
            for ep in self.endpoints.values():
                ep.forget_peer(event.address)
        elif isinstance(event, ev.PeerAdded):
            # Its key goes to the transport at once (its packets then skip the gate for
            # unauthenticated work); a peer replaced under the same address had its old key
            # forgotten first (PeerRemoved).
            for ep in self.endpoints.values():
                ep.learn_peer(event.address)
        elif isinstance(event, ev.IdentityCollision):
            log.error(
                "root %010x reports an identity collision: this address is taken; "
                "delete identity.secret to get a new identity",
                event.reporter,
            )
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:
                log.exception("event subscriber failed")

    # local.conf ---------------------------------------------------------------------------

    def _check_local_conf(self) -> None:
        self._conf_timer = None
        if self._closing or self._loop is None:
            return
        if self._conf_watcher is not None and self._conf_watcher.changed():
            self.reload_local_conf()
        self._conf_timer = self._loop.call_later(CHECK_INTERVAL / 1000, self._check_local_conf)

    def reload_local_conf(self) -> LocalConf | None:
        """Read ``local.conf`` again and apply what can change while running: binds and
        blacklists (sockets and advertised addresses), physical and per-peer path rules,
        who may use the local API. Ports, port mapping and bonding take effect at the next
        start, as in ZeroTierOne (said in the log). A file that fails its check changes
        nothing; the error names the key. Returns the new settings, or None."""
        try:
            new = read_local_conf(self.home.path / "local.conf", self.config.settings)
        except LocalConfError as e:
            log.error("%s (the settings in force are kept)", e)
            return None
        old, self.local_conf = self.local_conf, new
        for warning in new.warnings:
            if warning not in old.warnings:
                log.warning("%s", warning)
        restart_only = [k for k in RESTART_ONLY if old.settings.get(k) != new.settings.get(k)]
        if restart_only:
            log.warning(
                "local.conf: %s take effect at the next start", ", ".join(sorted(restart_only))
            )
        node = self.node
        if node is not None:
            if self.binder is not None:
                self.binder.settings = BindSettings.from_conf(new)
                if self._rebind():
                    node.set_local_addresses(list(self.endpoints))
            node.set_interface_addresses(self._interface_addresses())
            node.set_path_policy(new.path_policy())
            if self.tcp_relay is not None:
                self.tcp_relay.reconfigure(TcpRelaySettings.from_conf(new), node.bonds.in_use)
            try:
                node.set_physical_paths(self.home.load_physical_paths(new.physical))
            except DecodeError as e:  # the trustedpaths file
                log.error("%s (the trusted paths in force are kept)", e)
        for listener in list(self.local_conf_listeners):
            listener(new)
        log.info("local.conf reloaded")
        self._pump()
        return new

    def _interface_addresses(self) -> list[InetAddress]:
        """Addresses of our own interfaces worth advertising to peers for direct paths.

        A socket bound to one address advertises that address; a wildcard socket advertises
        every suitable address of its family on this host that the interface blacklist
        (ZeroTier's own adapters, tunnels, container bridges, ``interfacePrefixBlacklist``)
        and ``physical`` blacklists let through, as the reference's Binder binds only those.
        """
        out: list[InetAddress] = []
        rules = BindSettings.from_conf(self.local_conf)
        enumerate_named = self.config.interfaces or named_interface_addresses
        for local in self.endpoints:
            host, port = local
            if host in ("0.0.0.0", "::"):
                version = 4 if host == "0.0.0.0" else 6
                out.extend(
                    InetAddress(ip, port)
                    for name, ip in enumerate_named()
                    if ip.version == version and rules.admits(name, ip)
                )
            else:
                with contextlib.suppress(ValueError):
                    out.append(InetAddress.parse(f"{host}/{port}"))
        mapped = self.mapped_address()
        if mapped is not None:  # the router's address for us: peers may reach us there
            out.append(mapped)
        return out

    def mapped_address(self) -> InetAddress | None:
        """The external address the router maps to our tertiary port, while it lasts."""
        m = self.port_mapper.mapping if self.port_mapper is not None else None
        return InetAddress(m.external_ip, m.external_port) if m is not None else None
