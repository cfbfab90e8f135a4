"""Proxies into the overlay for programs that know nothing of ztnode: SOCKS5, an HTTP proxy,
and port forwards both ways.

Why: a node runs in one process, with no OS adapter; other programs on the machine (curl, ssh,
a database client, grpc, a browser) reach its networks through a proxy, as Tailscale's
userspace networking offers. ``ztnode node --socks5 127.0.0.1:1080 --http-proxy
127.0.0.1:8080`` and ``--forward``/``--publish`` start these; programs can start them too.

- :class:`Socks5Proxy` (RFC 1928, CONNECT; RFC 1929 username/password when credentials are
  set): IPv4 and IPv6 destinations, and names (resolved on the overlay: :meth:`Node.lookup`).
- :class:`HttpProxy`: ``CONNECT host:port`` tunnels (HTTPS, anything over TCP) and plain
  ``GET http://host/...`` requests in absolute form, forwarded one request per connection;
  ``Proxy-Authorization: Basic`` when credentials are set.
- :class:`PortForward`: a local TCP port whose connections go to an overlay address, and
  :class:`PortPublish`: an overlay port whose connections go to a local address.

The destination's network is the joined network whose addresses or managed routes match it
most specifically (:meth:`ztnode.sockets.aio.Node.network_for`). Every failure is answered in
the protocol's own terms (a SOCKS reply code, an HTTP status with the cause in the body) and
logged at debug; nothing a client sends raises out of a server. Credentials are compared in
constant time. Each connection holds two stream buffers (asyncio's, bounded by their limits)
and nothing else.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import errno
import hmac
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network, Node
    from ztnode.sockets.aio_tcp import TcpServer

log = logging.getLogger("ztnode.proxy")

__all__ = [
    "Credentials",
    "HttpProxy",
    "PortForward",
    "PortPublish",
    "ProxyError",
    "Socks5Proxy",
    "open_overlay",
    "splice",
]

CONNECT_TIMEOUT = 20.0  # seconds to reach a destination
HEAD_TIMEOUT = 30.0  # seconds a client may take to say where it wants to go
MAX_HEAD = 16 * 1024  # bytes of an HTTP request head
_COPY = 64 * 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Credentials:
    """A user name and password the proxies ask for (``user:password`` on the command line)."""

    user: str
    password: str

    @classmethod
    def parse(cls, text: str) -> Credentials:
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise ValueError("proxy credentials must be USER:PASSWORD, both non-empty")
        if len(user.encode()) > 255 or len(password.encode()) > 255:
            raise ValueError("proxy user and password are at most 255 bytes each (RFC 1929)")
        return cls(user, password)

    def check(self, user: bytes, password: bytes) -> bool:
        ok_user = hmac.compare_digest(user, self.user.encode())
        ok_password = hmac.compare_digest(password, self.password.encode())
        return ok_user and ok_password


class ProxyError(OSError):
    """A destination the proxy cannot reach, with the errno that says why."""


async def open_overlay(node: Node, host: str, port: int) -> Streams:
    """A TCP connection to ``host`` (an address, or an overlay name: the node's static map, its
    networks' DNS, mDNS or LLMNR) on whichever joined network reaches it."""
    if not 0 < port < 65536:
        raise ProxyError(errno.EINVAL, f"port {port} out of range")
    host = host.strip("[]")
    try:
        found = await node.lookup(host)
    except socket.gaierror as exc:
        raise ProxyError(errno.EHOSTUNREACH, f"{host}: {exc.strerror or exc}") from None
    if not found:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise ProxyError(
                errno.EHOSTUNREACH, f"{host!r} is not a name on any of this node's networks"
            ) from None
        raise ProxyError(errno.ENETUNREACH, f"{host} is on none of this node's networks")
    errors: list[OSError] = []
    for net, ip in found:
        try:
            return await net.open_connection(ip, port, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            errors.append(exc)
    raise errors[0]


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_COPY):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof() and not dst.is_closing():
            dst.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        dst.close()


async def splice(a: Streams, b: Streams) -> None:
    """Copy both ways until both directions ended (half-closes passed on), then close."""
    try:
        await asyncio.gather(_copy(a[0], b[1]), _copy(b[0], a[1]))
    finally:
        for w in (a[1], b[1]):
            w.close()
        for w in (a[1], b[1]):
            with contextlib.suppress(Exception):
                await w.wait_closed()


class _Connections:
    """The tasks serving a proxy's connections, so that closing the proxy ends them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def enter(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)

    def leave(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.discard(task)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


class _LocalServer(abc.ABC):
    """A TCP server on this machine's own stack whose connections ``_serve`` handles."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._conns = _Connections()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; the address actually bound (port 0 picks one)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.enter()
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
            who = writer.get_extra_info("peername")
            log.debug("%s: client %s: %s", type(self).__name__, who, e)
        except Exception:
            log.exception("%s: a connection failed", type(self).__name__)
        finally:
            writer.close()
            self._conns.leave()

    @abc.abstractmethod
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from its first byte to its end."""

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._conns.cancel_all()


# ------------------------------------------------------------------------------------ SOCKS5

_SOCKS_VERSION = 5
_NO_AUTH, _USER_PASS, _NO_METHOD = 0x00, 0x02, 0xFF
_CONNECT = 0x01
_ATYP_V4, _ATYP_NAME, _ATYP_V6 = 0x01, 0x03, 0x04
_OK, _FAILURE, _NET_UNREACH, _HOST_UNREACH, _REFUSED, _TTL = 0, 1, 3, 4, 5, 6
_NO_COMMAND, _NO_ATYP = 7, 8
_ERRNO_REPLY = {
    errno.ENETUNREACH: _NET_UNREACH,
    errno.EHOSTUNREACH: _HOST_UNREACH,
    errno.ECONNREFUSED: _REFUSED,
    errno.ETIMEDOUT: _TTL,
}


def _socks_reply(code: int, bound: tuple[str, int] | None = None) -> bytes:
    host, port = bound if bound is not None else ("0.0.0.0", 0)
    ip = ipaddress.ip_address(host)
    atyp = _ATYP_V4 if ip.version == 4 else _ATYP_V6
    return bytes((_SOCKS_VERSION, code, 0, atyp)) + ip.packed + struct.pack("!H", port)


class _Proxy(_LocalServer, abc.ABC):
    """A proxy: where it connects (a node's networks) and what it asks clients for."""

    def __init__(self, node: Node, credentials: Credentials | None = None) -> None:
        super().__init__()
        self.node = node
        self.credentials = credentials


class Socks5Proxy(_Proxy):
    """SOCKS5 into the overlay (module docstring)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HEAD_TIMEOUT):
            ver, n = await reader.readexactly(2)
            if ver != _SOCKS_VERSION:
                return
            methods = await reader.readexactly(n)
            want = _USER_PASS if self.credentials is not None else _NO_AUTH
            if want not in methods:
                writer.write(bytes((_SOCKS_VERSION, _NO_METHOD)))
                return
            writer.write(bytes((_SOCKS_VERSION, want)))
            if self.credentials is not None and not await self._authenticate(reader, writer):
                return
            _, cmd, _, atyp = await reader.readexactly(4)
            host = await self._read_host(reader, atyp)
            (port,) = struct.unpack("!H", await reader.readexactly(2))
        if cmd != _CONNECT:
            writer.write(_socks_reply(_NO_COMMAND))
            return
        if host is None:
            writer.write(_socks_reply(_NO_ATYP))
            return
        try:
            upstream = await open_overlay(self.node, host, port)
        except TimeoutError:
            writer.write(_socks_reply(_TTL))
            return
        except OSError as e:
            log.debug("socks5: %s port %d: %s", host, port, e)
            writer.write(_socks_reply(_ERRNO_REPLY.get(e.errno or 0, _FAILURE)))
            return
        bound = upstream[1].get_extra_info("sockname")
        writer.write(_socks_reply(_OK, (bound[0], bound[1])))
        await splice((reader, writer), upstream)

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        assert self.credentials is not None
        ver, n = await reader.readexactly(2)
        user = await reader.readexactly(n)
        (m,) = await reader.readexactly(1)
        password = await reader.readexactly(m)
        ok = ver == 1 and self.credentials.check(user, password)
        writer.write(bytes((1, 0 if ok else 1)))
        return ok

    @staticmethod
    async def _read_host(reader: asyncio.StreamReader, atyp: int) -> str | None:
        if atyp == _ATYP_V4:
            return str(ipaddress.IPv4Address(await reader.readexactly(4)))
        if atyp == _ATYP_V6:
            return str(ipaddress.IPv6Address(await reader.readexactly(16)))
        if atyp == _ATYP_NAME:
            (n,) = await reader.readexactly(1)
            return (await reader.readexactly(n)).decode("ascii", "replace")
        return None


# ------------------------------------------------------------------------------ HTTP proxy


def _http_error(status: int, reason: str, detail: str, extra: str = "") -> bytes:
    body = (detail + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; ValueError for a bad port."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, ""
    return host, int(port) if port else default_port


_HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


class HttpProxy(_Proxy):
    """An HTTP proxy into the overlay: CONNECT tunnels and absolute-form requests."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            head = b""
        if not head or len(head) > MAX_HEAD:
            writer.write(_http_error(431, "Request Header Fields Too Large", "head too long"))
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            writer.write(_http_error(400, "Bad Request", "malformed request line"))
            return
        method, target, version = parts
        headers = [ln for ln in lines[1:] if ln]
        if self.credentials is not None and not self._authorized(headers):
            writer.write(
                _http_error(
                    407,
                    "Proxy Authentication Required",
                    "this proxy needs a user and password",
                    'Proxy-Authenticate: Basic realm="ztnode"\r\n',
                )
            )
            return
        if method == "CONNECT":
            await self._tunnel(reader, writer, target)
        elif target.startswith("http://"):
            await self._forward(reader, writer, method, target, version, headers)
        else:
            why = "a proxy takes CONNECT or http:// absolute URLs"
            writer.write(_http_error(400, "Bad Request", why))

    def _authorized(self, headers: list[str]) -> bool:
        assert self.credentials is not None
        for h in headers:
            name, _, value = h.partition(":")
            if name.strip().lower() != "proxy-authorization":
                continue
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                raw = base64.b64decode(token.strip(), validate=True)
            except ValueError:
                return False
            user, _, password = raw.partition(b":")
            return self.credentials.check(user, password)
        return False

    async def _open(self, writer: asyncio.StreamWriter, host: str, port: int) -> Streams | None:
        try:
            return await open_overlay(self.node, host, port)
        except TimeoutError:
            writer.write(_http_error(504, "Gateway Timeout", f"{host} port {port}: timed out"))
        except OSError as e:
            writer.write(_http_error(502, "Bad Gateway", f"{host} port {port}: {e.strerror or e}"))
        return None

    async def _tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        try:
            host, port = _split_host_port(target, 443)
        except ValueError:
            writer.write(_http_error(400, "Bad Request", f"bad CONNECT target {target!r}"))
            return
        upstream = await self._open(writer, host, port)
        if upstream is None:
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice((reader, writer), upstream)

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        url: str,
        version: str,
        headers: list[str],
    ) -> None:
        authority, slash, path = url[len("http://") :].partition("/")
        try:
            host, port = _split_host_port(authority, 80)
        except ValueError:
            writer.write(_http_error(400, "Bad Request", f"bad URL {url!r}"))
            return
        upstream = await self._open(writer, host, port)
        if upstream is None:
            return
        kept = [h for h in headers if h.partition(":")[0].strip().lower() not in _HOP_BY_HOP]
        head = f"{method} /{path if slash else ''} {version}\r\n"
        head += "".join(f"{h}\r\n" for h in kept) + "Connection: close\r\n\r\n"
        upstream[1].write(head.encode("latin-1"))
        await splice((reader, writer), upstream)


# ----------------------------------------------------------------------------- port forwards


class PortForward(_LocalServer):
    """A local TCP port whose connections are carried to ``host``:``port`` on the overlay."""

    def __init__(self, node: Node, host: str, port: int) -> None:
        super().__init__()
        self.node, self.host, self.port = node, host, port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await open_overlay(self.node, self.host, self.port)
        except (OSError, TimeoutError) as e:
            log.debug("forward to %s port %d: %s", self.host, self.port, e)
            return
        await splice((reader, writer), upstream)


class PortPublish:
    """An overlay TCP port (on one network, IPv4 and IPv6) whose connections go to a local
    ``host``:``port``: a service of this machine offered to the network, with no adapter."""

    def __init__(self, network: Network, overlay_port: int, host: str, port: int) -> None:
        self.network = network
        self.overlay_port = overlay_port
        self.host, self.port = host, port
        self._server: TcpServer | None = None
        self._conns = _Connections()

    async def start(self) -> int:
        """Listen on the overlay; the port (``overlay_port`` 0 picks one)."""
        self._server = await self.network.start_server(
            self._accept, port=self.overlay_port, family=socket.AF_UNSPEC
        )
        return self._server.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.enter()
        try:
            try:
                local = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as e:
                log.debug("publish to %s port %d: %s", self.host, self.port, e)
                return
            await splice((reader, writer), local)
        finally:
            writer.close()
            self._conns.leave()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._conns.cancel_all()
