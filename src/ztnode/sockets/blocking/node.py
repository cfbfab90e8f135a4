"""``BlockingNode`` and ``BlockingNetwork``: a node and its networks for threads, the asyncio
objects running on a :class:`~ztnode.sockets.blocking.loop.LoopThread`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket as _socket
import ssl
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any, cast
from urllib.request import OpenerDirector

from ztnode.sockets.aio import Network, Node
from ztnode.sockets.blocking.common import (
    _GLOBAL_DEFAULT_TIMEOUT,
    AF_INET,
    AF_INET6,
    SOCK_STREAM,
    T,
)
from ztnode.sockets.blocking.facade import Socket
from ztnode.sockets.blocking.loop import LoopThread
from ztnode.sockets.blocking.options import _SOL
from ztnode.sockets.blocking.roles import _Role
from ztnode.sockets.blocking.web import url_opener
from ztnode.transport.busypoll import check_spin_us
from ztnode.transport.eventloop import busy_poll_from_env
from ztnode.wire.world import World

#: What ``socket.setsockopt(*option)`` takes: ``(level, name, value)`` or
#: ``(level, name, None, length)``.
SocketOption = tuple[Any, ...]


def connect_first(
    targets: Sequence[tuple[BlockingNetwork, str]],
    port: int,
    timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
    *,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[SocketOption] = (),
    all_errors: bool = False,
) -> Socket:
    """A TCP socket connected to the first ``(network, address)`` that accepts, each tried
    with the whole ``timeout`` as ``socket.create_connection`` does; the first failure is
    raised when none does (with ``all_errors``, an ExceptionGroup of all of them)."""
    if not targets:
        raise ValueError("no overlay address to connect to")
    options = list(socket_options)
    errors: list[OSError] = []
    for net, ip in targets:
        sock = net.socket(AF_INET6 if ":" in ip else AF_INET, SOCK_STREAM)
        try:
            for option in options:
                sock.setsockopt(*option)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(cast(float | None, timeout))
            if source_address is not None:
                sock.bind(source_address)
            sock.connect((ip, port))
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if all_errors:
        raise ExceptionGroup("create_connection failed", errors)
    raise errors[0]


class BlockingNetwork:
    """A joined network, for threads: its addresses and sockets on it."""

    def __init__(self, node: BlockingNode, network: Network) -> None:
        self.node = node
        self.network = network
        self._roles: weakref.WeakSet[_Role] = weakref.WeakSet()
        self._roles_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<BlockingNetwork {self.id_hex}>"

    def _track(self, role: _Role) -> None:
        with self._roles_lock:
            self._roles.add(role)

    def _gone(self, code: int) -> None:
        with self._roles_lock:
            roles = list(self._roles)
        for r in roles:
            r.gone(code)

    @property
    def id(self) -> int:
        return self.network.id

    @property
    def id_hex(self) -> str:
        return self.network.id_hex

    @property
    def status(self) -> str:
        return self.node._thread.call(lambda: self.network.status)

    @property
    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return self.node._thread.call(lambda: list(self.network.addresses))

    @property
    def mac(self) -> str:
        return self.node._thread.call(lambda: self.network.mac)

    def address(self, family: int = 4) -> str:
        """Our first address of the family on this network: 4 or AF_INET, 6 or AF_INET6."""
        fam = 6 if family in (6, AF_INET6) else 4
        return self.node._thread.call(lambda: self.network.address(fam))

    def wait_ready(self, timeout: float | None = 60.0) -> None:
        self.node._thread.run(self.network.wait_ready(timeout))

    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> Socket:
        """Like ``socket.socket(family, type, proto)``, on this network."""
        return Socket(self, family, type, proto)

    def resolve(self, host: str, *, family: int = 0) -> list[str]:
        """The addresses of ``host`` on this network (see ``Network.resolve``)."""
        return self.node._thread.run(self.network.resolve(host, family=family))

    def getaddrinfo(
        self,
        host: str,
        port: int | str | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        """``socket.getaddrinfo`` on this network's names and addresses."""
        return self.node._thread.run(
            self.network.getaddrinfo(host, port, family, type, proto, flags)
        )

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | object | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        *,
        all_errors: bool = False,
    ) -> Socket:
        """Like ``socket.create_connection``: a name's addresses are tried in turn
        (``HTTPConnection._create_connection`` can be set to it so that ``http.client`` runs
        over this network). With ``all_errors``, an ExceptionGroup of every failure."""
        host, port = address[0], address[1]
        infos = self.getaddrinfo(host, port, type=SOCK_STREAM)
        return connect_first(
            [(self, info[4][0]) for info in infos],
            port,
            timeout,
            source_address=source_address,
            all_errors=all_errors,
        )

    def create_server(
        self,
        address: tuple[str, int],
        *,
        family: int = AF_INET,
        backlog: int | None = None,
        reuse_port: bool = False,
    ) -> Socket:
        """Like ``socket.create_server``: a bound, listening TCP socket."""
        sock = self.socket(family, SOCK_STREAM)
        try:
            sock.setsockopt(_SOL, _socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_SOL, _socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(128 if backlog is None else backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def url_opener(self, *, context: ssl.SSLContext | None = None) -> OpenerDirector:
        """A ``urllib`` opener over this network, https:// included (see
        :func:`ztnode.sockets.blocking.web.url_opener`)."""
        return url_opener(self, context=context)

    def ping(self, host: str, timeout: float = 2.0) -> float:
        """One ICMP echo; the round trip in seconds, or TimeoutError."""
        return self.node._thread.run(self.network.ping(host, timeout=timeout))


class _OnLoop:
    """An object whose methods are called on the loop thread (for the controller API)."""

    def __init__(self, target: object, thread: LoopThread) -> None:
        self._target = target
        self._thread = thread

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        thread = self._thread

        def call(*args: Any, **kwargs: Any) -> Any:
            return thread.call(lambda: attr(*args, **kwargs))

        return call


class BlockingNode:
    """A ZeroTier node for programs without asyncio: the asyncio :class:`Node` on an event loop
    in a background thread. Arguments are :class:`~ztnode.sockets.aio.Node`'s (``hosts``,
    ``hostname``, ``names``, ``bonding``... as keywords), and ``busy_poll_us``: after traffic,
    the loop thread polls that long before it sleeps (lower latency for CPU time; default
    ``ZTNODE_BUSY_POLL``, else off; see :mod:`ztnode.transport.busypoll`)."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        port: int = 0,
        planet: World | bytes | str | os.PathLike[str] | None = None,
        allow_loopback: bool = False,
        bind: Iterable[str] = ("0.0.0.0",),
        controller: bool = False,
        sockets: Iterable[_socket.socket] = (),
        identity_validation_interval: int | None = None,
        busy_poll_us: int | None = None,
        **options: Any,
    ) -> None:
        # A bad figure is a ValueError before any work.
        spin = busy_poll_from_env() if busy_poll_us is None else busy_poll_us
        check_spin_us(spin, "busy_poll_us")
        node = Node(
            home,
            port=port,
            planet=planet,
            allow_loopback=allow_loopback,
            bind=bind,
            controller=controller,
            sockets=sockets,
            identity_validation_interval=identity_validation_interval,
            **options,
        )
        self._setup(node, LoopThread(f"ztnode-{os.fspath(home)}", spin), owns_thread=True)

    def _setup(self, node: Node, thread: LoopThread, *, owns_thread: bool) -> None:
        self.node = node
        self._thread = thread
        self._owns_thread = owns_thread
        self._networks: dict[int, BlockingNetwork] = {}
        self._started = False

    @classmethod
    def adopt(cls, node: Node, thread: LoopThread) -> BlockingNode:
        """The blocking view of a started asyncio node whose loop already runs in ``thread``
        (several nodes can share one loop thread); :meth:`detach` before stopping the node."""
        self = cls.__new__(cls)
        self._setup(node, thread, owns_thread=False)
        self._started = True
        return self

    def __repr__(self) -> str:
        return f"<BlockingNode {self.node.service.config.home}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The node's event loop, for asyncio code that runs beside blocking sockets."""
        return self._thread.loop

    # lifecycle

    def start(self, timeout: float | None = None) -> BlockingNode:
        if self._started:
            return self
        self._thread.start()
        try:
            self._thread.run(self.node.start(), timeout)
        except BaseException:
            if self._owns_thread:
                self._thread.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the node; its sockets' pending and later calls fail with ECONNABORTED."""
        if not self._started:
            return
        self.detach()
        try:
            with contextlib.suppress(OSError):
                self._thread.run(self.node.stop())
        finally:
            if self._owns_thread:
                self._thread.stop()

    def detach(self) -> None:
        """Fail this view's sockets' pending and later calls with ECONNABORTED without stopping
        the asyncio node (for an adopted node, whose owner stops it)."""
        self._started = False
        for net in list(self._networks.values()):
            net._gone(errno.ECONNABORTED)

    def __enter__(self) -> BlockingNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the node's loop (for example an asyncio server on a network)."""
        return self._thread.run(coro, timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a function on the node's loop thread, where the asyncio objects live."""
        return self._thread.call(fn)

    # state

    @property
    def address(self) -> str:
        return self._thread.call(lambda: self.node.address)

    @property
    def online(self) -> bool:
        return self._thread.call(lambda: self.node.online)

    @property
    def hostname(self) -> str:
        return self._thread.call(lambda: self.node.hostname)

    def lookup(self, host: str, *, family: int = 0) -> list[tuple[BlockingNetwork, str]]:
        """Where ``host`` is on the overlay (see ``Node.lookup``): ``(network, address)``
        pairs, empty when it is not an overlay name."""
        found = self._thread.run(self.node.lookup(host, family=family))
        return [(self.wrap(net), ip) for net, ip in found]

    def resolve(self, host: str, *, family: int = 0) -> list[str]:
        return self._thread.run(self.node.resolve(host, family=family))

    def getaddrinfo(
        self,
        host: str,
        port: int | str | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        """``socket.getaddrinfo`` over the overlay's names."""
        return self._thread.run(self.node.getaddrinfo(host, port, family, type, proto, flags))

    @property
    def port(self) -> int:
        return self._thread.call(lambda: self.node.port)

    def wait_online(self, timeout: float = 30.0) -> None:
        self._thread.run(self.node.wait_online(timeout))

    def join(
        self,
        network_id: int | str,
        *,
        timeout: float | None = 60.0,
        wait: bool = True,
        wait_authorized: bool = False,
    ) -> BlockingNetwork:
        """Join a network; with ``wait``, return once it is OK and has its addresses
        (``wait_authorized``: through ACCESS_DENIED, see ``Node.join``)."""
        join = self.node.join(
            network_id, timeout=timeout, wait=wait, wait_authorized=wait_authorized
        )
        return self.wrap(self._thread.run(join))

    @property
    def controller(self) -> Any:
        """The hosted controller (``controller=True``), its methods run on the node's loop:
        those of :class:`~ztnode.sockets.controller.ControllerApi`."""
        return _OnLoop(self.node.controller, self._thread)

    def wrap(self, net: Network) -> BlockingNetwork:
        """The blocking view of one of this node's asyncio networks (one view per network)."""
        wrapped = self._networks.get(net.id)
        if wrapped is None or wrapped.network is not net:
            wrapped = self._networks[net.id] = BlockingNetwork(self, net)
        return wrapped

    def leave(self, network_id: int | str) -> bool:
        net = self.network(network_id)
        if net is not None:
            net._gone(errno.ENETDOWN)
            self._networks.pop(net.id, None)
        return self._thread.run(self.node.leave(network_id))

    def network(self, network_id: int | str) -> BlockingNetwork | None:
        net = self._thread.call(lambda: self.node.network(network_id))
        return self.wrap(net) if net is not None else None

    @property
    def networks(self) -> list[BlockingNetwork]:
        return [self.wrap(n) for n in self._thread.call(lambda: self.node.networks)]
