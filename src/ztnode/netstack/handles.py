"""The socket handles the stack owns (:class:`TcpSocket`, :class:`TcpListener`,
:class:`UdpSocket`) and the events it reports about them. Their methods only change state; what
they make the stack send leaves with its next ``frames_to_send``."""

from __future__ import annotations

import errno
from collections import deque
from ipaddress import (
    IPv6Address,
)
from typing import TYPE_CHECKING

from ztnode.netstack import tcp as tcb
from ztnode.netstack.ipproto import PROTO_TCP, PROTO_UDP
from ztnode.netstack.stackconfig import (
    Endpoint,
    IPAddr,
)

if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack


# The socket events are plain classes, not dataclasses: one is made per delivery, and a
# dataclass's ``__init__`` stays generated Python in the compiled build. Never changed once made;
# equal when they name the same socket and event.


class TcpSocketEvent:
    """Something happened on one TCP connection (see :mod:`ztnode.netstack.tcp` events)."""

    __slots__ = ("event", "sock")

    def __init__(self, sock: TcpSocket, event: tcb.TcpEvent) -> None:
        self.sock = sock
        self.event = event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TcpSocketEvent):
            return NotImplemented
        return self.sock is other.sock and self.event == other.event

    def __hash__(self) -> int:
        return hash((id(self.sock), self.event))

    def __repr__(self) -> str:
        return f"TcpSocketEvent(sock={self.sock!r}, event={self.event!r})"


class AcceptReady:
    """A listener's accept queue went from empty to non-empty."""

    __slots__ = ("listener",)

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AcceptReady):
            return NotImplemented
        return self.listener is other.listener

    def __hash__(self) -> int:
        return id(self.listener)

    def __repr__(self) -> str:
        return f"AcceptReady(listener={self.listener!r})"


class UdpReadable:
    """A UDP socket's queue went from empty to non-empty, or an ICMP error is pending."""

    __slots__ = ("sock",)

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UdpReadable):
            return NotImplemented
        return self.sock is other.sock

    def __hash__(self) -> int:
        return id(self.sock)

    def __repr__(self) -> str:
        return f"UdpReadable(sock={self.sock!r})"


class PingReply:
    """An ICMP or ICMPv6 echo reply addressed to us. A plain class like its siblings, and for
    one more reason: a compiled dataclass needs the types of its fields when its module loads,
    and :class:`IpStack`'s module imports this one (see ztnode._compiled)."""

    __slots__ = ("data", "identifier", "sequence", "source", "stack")

    def __init__(
        self, stack: IpStack, source: str, identifier: int, sequence: int, data: bytes
    ) -> None:
        self.stack = stack
        self.source = source
        self.identifier = identifier
        self.sequence = sequence
        self.data = data

    def __repr__(self) -> str:
        return (
            f"PingReply(source={self.source!r}, identifier={self.identifier}, "
            f"sequence={self.sequence})"
        )


StackEvent = TcpSocketEvent | AcceptReady | UdpReadable | PingReply


class TcpSocket:
    """One TCP connection owned by a stack. ``conn`` is the sans-I/O TCB."""

    __slots__ = (
        "_head",
        "_mac",
        "_timer_at",
        "conn",
        "ipv6",
        "key",
        "listener",
        "local",
        "remote",
        "stack",
        "user",
    )

    def __init__(
        self,
        stack: IpStack,
        conn: tcb.TcpConnection,
        local: tuple[IPAddr, int],
        remote: tuple[IPAddr, int],
        listener: TcpListener | None,
    ) -> None:
        self.stack = stack
        self.conn = conn
        self.ipv6 = isinstance(local[0], IPv6Address)
        self.local = local
        self.remote = remote
        self.key = (local[0].packed, local[1], remote[0].packed, remote[1])
        self.listener = listener
        self.user: object = None
        #: When this connection's live entry in the stack's timer heap fires: at or before the
        #: connection's own next deadline (see ``TcpMux.service``); None without one.
        self._timer_at: int | None = None
        #: The next hop's MAC as last resolved: (mac, stack generation, valid until).
        self._mac: tuple[int, int, int] | None = None
        #: The start of this connection's segments as the offload path writes them: the IP
        #: header and the ports, for the TTL it was made with (see ``TcpMux._emit_burst``).
        self._head: tuple[int, bytes] | None = None

    @property
    def local_endpoint(self) -> Endpoint:
        return str(self.local[0]), self.local[1]

    @property
    def remote_endpoint(self) -> Endpoint:
        return str(self.remote[0]), self.remote[1]

    @property
    def state(self) -> tcb.TcpState:
        return self.conn.state

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data (backpressure: returns how much fit)."""
        n = self.conn.send(data)
        self.stack._dirty.add(self)
        return n

    def recv(self, max_bytes: int = 1 << 30) -> bytes:
        data = self.conn.recv(max_bytes)
        if data and self.conn.wants_output:
            self.stack._dirty.add(self)  # reading opened the window enough to announce it
        return data

    @property
    def needs_flush(self) -> bool:
        """Whether the stack holds output (this socket's or another's) for the next flush."""
        return bool(self.stack._dirty or self.stack._out)

    def shutdown(self, now: int) -> None:
        """Half close: our FIN follows the queued data."""
        self.conn.shutdown(now)
        self.stack._dirty.add(self)

    def close(self, now: int) -> None:
        self.conn.close(now)
        self.stack._dirty.add(self)

    def abort(self, now: int) -> None:
        self.conn.abort(now)
        self.stack._dirty.add(self)

    def set_nodelay(self, on: bool) -> None:
        """TCP_NODELAY; queued small segments may leave at the next flush."""
        self.conn.set_nodelay(on)
        self.stack._dirty.add(self)

    def set_keepalive(
        self,
        on: bool,
        idle_ms: int | None = None,
        interval_ms: int | None = None,
        count: int | None = None,
    ) -> None:
        self.conn.set_keepalive(on, idle_ms, interval_ms, count)
        self.stack._dirty.add(self)  # the keepalive timer is re-armed by the service pass

    def set_send_buffer(self, size: int) -> None:
        self.conn.set_buffer_sizes(send=size)
        self.stack._dirty.add(self)

    def __repr__(self) -> str:
        return f"<TcpSocket {self.local_endpoint} -> {self.remote_endpoint} {self.conn.state.name}>"


class TcpListener:
    """A listening TCP port; arriving connections wait in ``queue`` until ``accept()``."""

    __slots__ = (
        "backlog",
        "closed",
        "embryonic",
        "ipv6",
        "local_ip",
        "port",
        "queue",
        "stack",
        "user",
    )

    def __init__(
        self, stack: IpStack, ipv6: bool, local_ip: IPAddr | None, port: int, backlog: int
    ) -> None:
        self.stack = stack
        self.ipv6 = ipv6
        self.local_ip = local_ip
        self.port = port
        self.backlog = backlog
        self.queue: deque[TcpSocket] = deque()
        self.embryonic = 0
        self.closed = False
        self.user: object = None

    def accept(self) -> TcpSocket | None:
        """The oldest established connection not yet accepted, or None."""
        while self.queue:
            s = self.queue.popleft()
            if s.conn.state is not tcb.TcpState.CLOSED:
                s.listener = None
                return s
        return None

    def close(self, now: int) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if self.closed:
            return
        self.closed = True
        self.stack._listeners.pop(self._key())
        for s in self.queue:
            s.abort(now)
        self.queue.clear()
        for s in list(self.stack._tcp.values()):
            if s.listener is self:
                s.abort(now)
        self.stack._release_port(PROTO_TCP, self.port)

    def _key(self) -> tuple[bool, bytes, int]:
        return (self.ipv6, self.local_ip.packed if self.local_ip else b"", self.port)

    @property
    def local_endpoint(self) -> Endpoint:
        host = str(self.local_ip) if self.local_ip else ("::" if self.ipv6 else "0.0.0.0")
        return host, self.port


#: A UDP socket's way to one destination: the address (by identity: parsed addresses are
#: shared), the stack's generation and the time (ms) it holds until, the source and
#: destination packed, the next hop's MAC and the path MTU.
UdpRoute = tuple[IPAddr, int, int, bytes, bytes, int, int]


class UdpSocket:
    """A bound UDP port. Datagrams wait in ``queue`` (bounded in bytes) until ``recv()``."""

    __slots__ = (
        "closed",
        "error",
        "head",
        "ipv6",
        "local_ip",
        "port",
        "queue",
        "queued_bytes",
        "remote",
        "remote_packed",
        "reuse",
        "route",
        "stack",
        "user",
    )

    def __init__(
        self,
        stack: IpStack,
        ipv6: bool,
        local_ip: IPAddr | None,
        port: int,
        *,
        reuse: bool = False,
    ) -> None:
        self.stack = stack
        self.reuse = reuse
        self.ipv6 = ipv6
        self.local_ip = local_ip
        self.port = port
        self.queue: deque[tuple[bytes, Endpoint]] = deque()
        self.queued_bytes = 0
        self.remote: tuple[IPAddr, int] | None = None
        self.remote_packed = b""  # the connected peer's address, as datagrams carry it
        #: The way to the destination last sent to, as :meth:`UdpMux.send` remembers it.
        self.route: UdpRoute | None = None
        #: The IP and UDP header template last sent with under checksum offload, with what it
        #: was made for: (source, destination (packed, as in ``route``), port, TTL, header).
        self.head: tuple[bytes, bytes, int, int, bytes] | None = None
        self.error = 0
        self.closed = False
        self.user: object = None

    @property
    def local_endpoint(self) -> Endpoint:
        host = str(self.local_ip) if self.local_ip else ("::" if self.ipv6 else "0.0.0.0")
        return host, self.port

    def connect(self, host: str, port: int) -> None:
        """Fix the default destination and accept datagrams from it alone."""
        ip = self.stack._parse_ip(host, self.ipv6)
        self.remote = (ip, port)
        self.remote_packed = ip.packed

    def sendto(self, data: bytes, host: str, port: int, now: int) -> None:
        """Send one datagram; OSError (ENETUNREACH, EMSGSIZE...) when it cannot go."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        self.stack.udp.send(self, data, self.stack._parse_ip(host, self.ipv6), port, now)

    def send(self, data: bytes, now: int) -> None:
        if self.remote is None:
            raise OSError(errno.EDESTADDRREQ, "socket is not connected")
        self.stack.udp.send(self, data, self.remote[0], self.remote[1], now)

    def recv(self) -> tuple[bytes, Endpoint] | None:
        """The oldest datagram and its sender, or None."""
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0])
        return item

    def take_error(self) -> int:
        """A pending ICMP error as an errno (SO_ERROR semantics: cleared when read)."""
        e, self.error = self.error, 0
        return e

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        key = self._key()
        group = self.stack._udp_shared.get(key)
        if group is not None and self in group:
            group.remove(self)
            if not group:
                del self.stack._udp_shared[key]
        if self.stack._udp.get(key) is self:
            if group:
                self.stack._udp[key] = group[-1]
            else:
                self.stack._udp.pop(key)
        self.stack._release_port(PROTO_UDP, self.port)
        self.queue.clear()

    def _key(self) -> tuple[bool, bytes, int]:
        return (self.ipv6, self.local_ip.packed if self.local_ip else b"", self.port)
