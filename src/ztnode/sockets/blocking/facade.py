"""``Socket``: the stdlib-compatible socket object programs use, delegating to its role."""

from __future__ import annotations

import contextlib
import errno
import io
import socket as _socket
import struct
import threading
import time
import warnings
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any, cast

from ztnode.errors import LocalProtocolError
from ztnode.sockets.blocking.common import (
    _MIN_BUF,
    _RECV_FLAGS,
    _SEND_FLAGS,
    _UDP_MAX,
    AF_INET,
    AF_INET6,
    SOCK_DGRAM,
    SOCK_STREAM,
    Endpoint,
    _deadline,
    _oserror,
)
from ztnode.sockets.blocking.options import (
    _GROUP_OPTIONS,
    _INT_OPTIONS,
    _IP,
    _IP6,
    _SOL,
    _TCB_OPTIONS,
    _TCP,
    _int_value,
    _option,
)
from ztnode.sockets.blocking.roles import (
    _Datagram,
    _Listener,
    _release_tcp_port,
    _reserve_tcp_port,
    _Stream,
)
from ztnode.sockets.blocking.signals import _Shared

if TYPE_CHECKING:
    from ztnode.sockets.blocking.node import BlockingNetwork


class Socket:
    """A TCP or UDP socket on a ZeroTier network with the stdlib socket's methods, errors and
    timeout rules. ``fileno()`` is a real descriptor for ``select`` (module docstring); reading
    or writing it directly is not meaningful.

    Hosts are IP literals or names (resolved on the socket's network, ``gaierror`` when
    they do not resolve).
    IPv6 sockets are IPv6-only whatever IPV6_V6ONLY says.
    """

    def __init__(
        self,
        network: BlockingNetwork,
        family: int = AF_INET,
        type: int = SOCK_STREAM,
        proto: int = 0,
        *,
        _accepted: _Stream | None = None,
    ) -> None:
        kind = type & ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
        if family not in (AF_INET, AF_INET6):
            raise _oserror(errno.EAFNOSUPPORT)
        if kind not in (SOCK_STREAM, SOCK_DGRAM):
            raise _oserror(errno.ESOCKTNOSUPPORT)
        wanted = _socket.IPPROTO_TCP if kind == SOCK_STREAM else _socket.IPPROTO_UDP
        if proto not in (0, wanted):
            raise _oserror(errno.EPROTONOSUPPORT)
        self._net = network
        self._family = _socket.AddressFamily(family)
        self._type = _socket.SocketKind(kind)
        self._proto = proto
        self._timeout: float | None = _socket.getdefaulttimeout()
        if type & _socket.SOCK_NONBLOCK:
            self._timeout = 0.0
        self._closed = False  # close() was called
        self._real_closed = False  # ... and no makefile() object holds the socket any more
        self._io_refs = 0
        self._stream: _Stream | None = _accepted
        self._listener: _Listener | None = None
        self._dgram: _Datagram | None = None
        self._shared = _accepted.shared if _accepted is not None else _Shared()
        self._opts: dict[str, int] = _accepted.opts if _accepted is not None else {}
        self._bound: Endpoint | None = None
        self._reserved: int | None = None  # TCP port held in the stack by bind()
        self._groups: list[IPv4Address | IPv6Address] = []
        self._lock = threading.Lock()  # role changes (bind/connect/listen/close)

    # --- identity

    @property
    def family(self) -> _socket.AddressFamily:
        return self._family

    @property
    def type(self) -> _socket.SocketKind:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def network(self) -> BlockingNetwork:
        return self._net

    def fileno(self) -> int:
        return -1 if self._real_closed else self._shared.signal.fileno()

    def __repr__(self) -> str:
        parts = [f"fd={self.fileno()}", f"family={self._family.name}", f"type={self._type.name}"]
        if not self._real_closed:
            with contextlib.suppress(OSError):
                parts.append(f"laddr={self.getsockname()}")
            with contextlib.suppress(OSError):
                parts.append(f"raddr={self.getpeername()}")
        closed = " [closed]" if self._real_closed else ""
        return f"<ztnode.Socket{closed} {', '.join(parts)}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_real_closed", True):
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
        finally:  # even when warnings are errors, the descriptor pair must not leak
            with contextlib.suppress(Exception):
                self._really_close()

    # --- timeouts

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # --- addresses

    def _parse(self, address: Any, what: str, *, bind: bool = False) -> Endpoint:
        v6 = self._family == AF_INET6
        name = "AF_INET6" if v6 else "AF_INET"
        if not isinstance(address, tuple):
            raise TypeError(f"{what}(): {name} address must be tuple, not {type(address).__name__}")
        if (v6 and not 2 <= len(address) <= 4) or (not v6 and len(address) != 2):
            raise TypeError(f"{what}(): {name} address must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(host, str):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError(f"{what}(): port must be 0-65535.")
        if host == "" and bind:
            return "", port
        if host == "<broadcast>" and not v6:
            host = "255.255.255.255"
        try:
            ip = ip_address(host.split("%", 1)[0])
        except ValueError:
            # A name: the network's resolver, and the first address of the socket's family,
            # as the C library's connect-by-name does.
            host = self._net.resolve(host, family=6 if v6 else 4)[0]
            ip = ip_address(host)
        if (ip.version == 6) != v6:
            raise _oserror(errno.EAFNOSUPPORT, f"{host} is not an {name} address")
        if ip.is_unspecified:
            if bind:
                return "", port
            raise _oserror(errno.EINVAL, "cannot connect to the unspecified address")
        return host, port

    def _sockaddr(self, ep: Endpoint) -> Any:
        if self._family == AF_INET6:
            return (ep[0], ep[1], 0, 0)
        return (ep[0], ep[1])

    def _wildcard(self) -> str:
        return "::" if self._family == AF_INET6 else "0.0.0.0"

    def getsockname(self) -> Any:
        self._check()
        if self._stream is not None and self._stream.local is not None:
            return self._sockaddr(self._stream.local)
        if self._listener is not None:
            return self._sockaddr(self._listener.local)
        if self._dgram is not None:
            return self._sockaddr(self._dgram.local)
        if self._bound is not None:
            return self._sockaddr((self._bound[0] or self._wildcard(), self._bound[1]))
        return self._sockaddr((self._wildcard(), 0))

    def getpeername(self) -> Any:
        self._check()
        s = self._stream
        if s is not None and s.connected and s.peer is not None:
            with s.cond:
                if not s.lost or s.eof:
                    return self._sockaddr(s.peer)
        d = self._dgram
        if d is not None and d.peer is not None:
            return self._sockaddr(d.peer)
        raise _oserror(errno.ENOTCONN)

    # --- lifecycle

    def _check(self) -> None:
        if self._real_closed:
            raise _oserror(errno.EBADF)

    def close(self) -> None:
        """As the stdlib: with makefile() objects open, the socket closes when they do."""
        self._closed = True
        if self._io_refs <= 0:
            self._really_close()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def _really_close(self) -> None:
        with self._lock:
            if self._real_closed:
                return
            self._real_closed = True
            roles: list[_Stream | _Listener | _Datagram | None] = [
                self._stream,
                self._listener,
                self._dgram,
            ]
            reserved, self._reserved = self._reserved, None
            groups, self._groups = self._groups, []
        for r in roles:
            if r is not None:
                r.close()
        if all(r is None for r in roles):
            self._shared.signal.close()
        net = self._net.network
        thread = self._net.node._thread

        def cleanup() -> None:
            if reserved is not None:
                with contextlib.suppress(OSError):
                    _release_tcp_port(net, reserved)
            for g in groups:
                with contextlib.suppress(OSError):
                    net.stack.leave_group(g)
            if groups:
                net.node.service.flush_soon()

        if reserved is not None or groups:
            with contextlib.suppress(OSError):
                thread.post(cleanup)

    def detach(self) -> int:
        raise _oserror(errno.EOPNOTSUPP, "a ztnode socket has no OS descriptor to detach")

    # --- bind / listen / accept / connect

    def bind(self, address: Any) -> None:
        self._check()
        host, port = self._parse(address, "bind", bind=True)
        with self._lock:
            if self._bound is not None or self._stream is not None or self._dgram is not None:
                raise _oserror(errno.EINVAL, "the socket is already bound")
            if self._type == SOCK_DGRAM:
                self._open_datagram(host, port)
            else:
                v6 = self._family == AF_INET6
                net = self._net.network
                self._reserved = self._net.node._thread.call(
                    lambda: _reserve_tcp_port(net, host, port, v6)
                )
                self._bound = (host, self._reserved)

    def _open_datagram(self, host: str, port: int) -> _Datagram:
        """The UDP endpoint (lock held), bound on first use as Linux autobinds."""
        dg = _Datagram(self._net, self._shared, self._opts)
        net = self._net.network
        fam = 6 if self._family == AF_INET6 else 4

        reuse = bool(self._opts.get("reuseaddr") or self._opts.get("reuseport"))

        async def open_endpoint() -> None:
            await net.create_datagram_endpoint(
                lambda: dg, local_addr=(host, port), family=fam, reuse_port=reuse
            )

        self._net.node._thread.run(open_endpoint())
        self._dgram = dg
        self._bound = dg.local
        with dg.cond:
            dg.refresh()
        return dg

    def _datagram(self) -> _Datagram:
        self._check()
        with self._lock:
            return self._dgram or self._open_datagram("", 0)

    def listen(self, backlog: int = 128) -> None:
        self._check()
        if self._type != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        with self._lock:
            if self._listener is not None:
                self._listener.backlog = backlog
                return
            if self._stream is not None:
                raise _oserror(errno.EINVAL, "the socket is connected")
            lst = _Listener(self._net, self._shared, self._opts)
            lst.backlog = backlog
            host, port = self._bound if self._bound is not None else ("", 0)
            reserved, self._reserved = self._reserved, None
            net = self._net.network
            fam = 6 if self._family == AF_INET6 else 4

            async def start() -> Endpoint:
                if reserved is not None:
                    _release_tcp_port(net, reserved)  # tcp_listen claims it in this same step
                server = await net.create_server(
                    lst.factory, host or None, port, backlog=max(backlog, 1), family=fam
                )
                lst.server = server
                return server.address()

            try:
                lst.local = self._net.node._thread.run(start())
            except BaseException:
                lst.closed = True
                raise
            self._listener = lst
            with lst.cond:
                lst.refresh()

    def accept(self) -> tuple[Socket, Any]:
        self._check()
        lst = self._listener
        if lst is None:
            raise _oserror(errno.EINVAL, "the socket is not listening")
        stream = lst.accept(self._timeout)
        sock = Socket(self._net, self._family, self._type, self._proto, _accepted=stream)
        assert stream.peer is not None
        return sock, self._sockaddr(stream.peer)

    def connect(self, address: Any) -> None:
        self._check()
        host, port = self._parse(address, "connect")
        if self._type == SOCK_DGRAM:
            dg = self._datagram()
            self._net.node._thread.call(lambda: dg.loop_connect(host, port))
            with dg.cond:
                dg.peer = (str(ip_address(host.split("%", 1)[0])), port)
            return
        nonblock = self._timeout == 0.0
        with self._lock:
            if self._listener is not None:
                raise _oserror(errno.EINVAL, "the socket is listening")
            old = self._stream
            if old is not None:
                with old.cond:
                    if old.connecting:
                        raise _oserror(errno.EALREADY)
                    if old.connected:
                        raise _oserror(errno.EISCONN)
                    if old.so_error:
                        old.raise_error_locked()
                    old.closed = True  # a failed attempt: late callbacks must not touch the fd
            stream = _Stream(self._net, self._shared, self._opts)
            self._stream = stream
            local_port = self._bound[1] if self._bound is not None else 0
            reserved, self._reserved = self._reserved, None
            stream.begin_connect(host, port, local_port, reserved is not None)
        if nonblock:
            raise _oserror(errno.EINPROGRESS)
        stream.wait_connected(_deadline(self._timeout))

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except TimeoutError as e:
            return e.errno or errno.EAGAIN  # what CPython's connect_ex reports on a timeout
        except _socket.gaierror:
            raise
        except OSError as e:
            return e.errno or errno.EINVAL
        return 0

    # --- data

    def _tcp(self) -> _Stream:
        self._check()
        if self._type != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP)
        s = self._stream
        if s is None:
            raise _oserror(errno.ENOTCONN)
        return s

    @staticmethod
    def _flags(flags: int, allowed: int) -> int:
        if flags & ~allowed:
            raise _oserror(errno.EOPNOTSUPP, f"flags {flags:#x} are not supported")
        return flags

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        self._flags(flags, _RECV_FLAGS)
        if self._type == SOCK_DGRAM:
            return self._datagram().recv(bufsize, flags, self._timeout)[0]
        s = self._tcp()
        if not flags & _socket.MSG_WAITALL or flags & _socket.MSG_PEEK:
            return s.recv(bufsize, flags, self._timeout)
        deadline = _deadline(self._timeout) if self._timeout else None
        out = bytearray()
        rest = flags & ~_socket.MSG_WAITALL
        while len(out) < bufsize:
            left = self._timeout
            if deadline is not None:
                left = max(deadline - time.monotonic(), 1e-6)
            try:
                chunk = s.recv(bufsize - len(out), rest, left)
            except (TimeoutError, BlockingIOError):
                if out:
                    break
                raise
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes, flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        self._flags(flags, _RECV_FLAGS)
        if self._type == SOCK_DGRAM:
            data, addr = self._datagram().recv(bufsize, flags, self._timeout)
            return data, self._sockaddr(addr)
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self.recvfrom(nbytes, flags)
        view[: len(data)] = data
        return len(data), addr

    def send(self, data: Any, flags: int = 0) -> int:
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_DGRAM:
            return self._send_datagram(view, None)
        return self._tcp().send(view, flags, self._timeout)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """The timeout bounds the whole call, as in the stdlib since 3.5."""
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_DGRAM:
            self._send_datagram(view, None)
            return
        s = self._tcp()
        deadline = _deadline(self._timeout) if self._timeout else None
        sent = 0
        while True:
            left = self._timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
            sent += s.send(view[sent:], flags, left)
            if sent >= len(view):
                return

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = int(flags_or_address)
        self._flags(flags, _SEND_FLAGS)
        view = memoryview(data).cast("B")
        if self._type == SOCK_STREAM:
            return self.send(view, flags)  # Linux ignores the address on TCP
        return self._send_datagram(view, self._parse(address, "sendto"))

    def _send_datagram(self, view: memoryview, dest: Endpoint | None) -> int:
        dg = self._datagram()
        if len(view) > _UDP_MAX[self._family]:
            raise _oserror(errno.EMSGSIZE)
        with dg.cond:
            if dg.so_error and dg.peer is not None:
                dg.raise_error_locked()
        payload = bytes(view)
        self._net.node._thread.call(lambda: dg.loop_sendto(payload, dest))
        return len(payload)

    def shutdown(self, how: int) -> None:
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise _oserror(errno.EINVAL)
        self._check()
        if self._type == SOCK_DGRAM or self._stream is None:
            raise _oserror(errno.ENOTCONN)
        self._stream.shutdown(how)

    # --- options

    def setsockopt(
        self,
        level: int,
        optname: int,
        value: int | bytes | bytearray | memoryview | None,
        optlen: int | None = None,
    ) -> None:
        self._check()
        key = (level, optname)
        if key in _GROUP_OPTIONS:
            self._membership(key, value)
            return
        if key == (_SOL, _socket.SO_LINGER):
            raw = bytes(cast(bytes, value)) if not isinstance(value, int) else b""
            if len(raw) < 8:
                raise _oserror(errno.EINVAL)
            on, secs = struct.unpack("ii", raw[:8])
            self._opts["linger_on"], self._opts["linger"] = int(bool(on)), max(secs, 0)
            return
        name = _INT_OPTIONS.get(key)
        if name is None or not self._option_applies(level):
            raise _oserror(errno.ENOPROTOOPT)
        v = _int_value(value)
        if name in ("rcvbuf", "sndbuf"):
            v = max(v, _MIN_BUF)
        elif name in ("keepidle", "keepintvl", "keepcnt"):
            if v < 1:
                raise _oserror(errno.EINVAL)
        elif name in ("ttl", "tos", "mcast_ttl"):
            if not 0 <= v <= 255:
                raise _oserror(errno.EINVAL)
        else:
            v = int(bool(v))
        self._opts[name] = v
        s = self._stream
        if name in _TCB_OPTIONS and s is not None and s.connected:
            with contextlib.suppress(OSError):
                s.post(s.loop_apply_options)

    def _option_applies(self, level: int) -> bool:
        if level == _TCP:
            return self._type == SOCK_STREAM
        if level == _IP6:
            return self._family == AF_INET6
        return True

    def _membership(
        self, key: tuple[int, int], value: int | bytes | bytearray | memoryview | None
    ) -> None:
        """IP_ADD_MEMBERSHIP (ip_mreq/ip_mreqn) and IPV6_JOIN_GROUP (ipv6_mreq), and the drops.
        The stack counts joins, so a socket leaves its groups when it closes."""
        if self._type != SOCK_DGRAM:
            raise _oserror(errno.ENOPROTOOPT)
        if isinstance(value, int) or value is None:
            raise _oserror(errno.EINVAL)
        raw = bytes(value)
        group: IPv4Address | IPv6Address
        if key[0] == _IP:
            if len(raw) < 8:
                raise _oserror(errno.EINVAL)
            group = IPv4Address(raw[:4])
        else:
            if len(raw) < 16:
                raise _oserror(errno.EINVAL)
            group = IPv6Address(raw[:16])
        if not group.is_multicast:
            raise _oserror(errno.EINVAL, f"{group} is not a multicast group")
        join = _GROUP_OPTIONS[key]
        net = self._net.network
        with self._lock:
            if join:
                if group in self._groups:
                    raise _oserror(errno.EADDRINUSE)
            elif group not in self._groups:
                raise _oserror(errno.EADDRNOTAVAIL)

            def change() -> None:
                try:
                    if join:
                        net.stack.join_group(group)
                    else:
                        net.stack.leave_group(group)
                except LocalProtocolError as e:
                    raise _oserror(errno.EINVAL, str(e)) from None
                net.node.service.flush_soon()

            self._net.node._thread.call(change)
            if join:
                self._groups.append(group)
            else:
                self._groups.remove(group)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        self._check()
        key = (level, optname)
        value: int
        if key == (_SOL, _socket.SO_ERROR):
            role = self._stream or self._listener or self._dgram
            value = role.take_error() if role is not None else 0
        elif key == (_SOL, _socket.SO_TYPE):
            value = int(self._type)
        elif key == (_SOL, _socket.SO_DOMAIN):
            value = int(self._family)
        elif key == (_SOL, _socket.SO_PROTOCOL):
            value = _socket.IPPROTO_TCP if self._type == SOCK_STREAM else _socket.IPPROTO_UDP
        elif key == (_SOL, _socket.SO_ACCEPTCONN):
            value = int(self._listener is not None)
        elif key == (_SOL, _socket.SO_LINGER):
            packed = struct.pack(
                "ii", _option(self._opts, "linger_on"), _option(self._opts, "linger")
            )
            return packed if buflen is None else packed[:buflen].ljust(buflen, b"\0")
        elif key == (_IP6, _socket.IPV6_V6ONLY) and self._family == AF_INET6:
            value = 1
        else:
            name = _INT_OPTIONS.get(key)
            if name is None or not self._option_applies(level):
                raise _oserror(errno.ENOPROTOOPT)
            value = _option(self._opts, name)
        if buflen is None:
            return value
        return struct.pack("i", value)[:buflen].ljust(buflen, b"\0")

    # --- files

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """As ``socket.socket.makefile``, on ``socket.SocketIO`` (which needs only ``recv_into``,
        ``send`` and ``_decref_socketios``): the socket stays open while a file is open."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(cast(_socket.socket, self), cast(Any, rawmode))
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(cast(Any, buffer), encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text
