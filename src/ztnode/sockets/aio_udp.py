"""UDP for asyncio on a ZeroTier network: the datagram transport."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Final

from ztnode.netstack.stack import UdpSocket
from ztnode.sockets.addresses import literal, sockaddr

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network

__all__: list[str] = []


#: Looked up once: an attribute of the asyncio module is a dictionary lookup per use here.
_DATAGRAM_PROTOCOL: Final = asyncio.DatagramProtocol


class _UdpTransport(asyncio.DatagramTransport):
    def __init__(self, net: Network, sock: UdpSocket, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._net = net
        self._service = net.node.service  # read per datagram: kept, as _TcpTransport does
        self._sock = sock
        self._protocol: asyncio.BaseProtocol = protocol
        self._closed = False
        sock.user = self
        net._transports.add(self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return sockaddr(self._sock.local_endpoint)
        if name == "peername":
            r = self._sock.remote
            return sockaddr((str(r[0]), r[1])) if r is not None else default
        if name == "ztnode_socket":
            return self._sock
        return default

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closed:
            return
        proto = self._protocol
        assert isinstance(proto, _DATAGRAM_PROTOCOL)
        now = self._service.clock.now()  # Node._now, without a call into aio.py
        try:
            if addr is None:
                self._sock.send(bytes(data), now)
            else:
                host, port = addr[0], addr[1]
                self._sock.sendto(bytes(data), literal(host), int(port), now)
        except OSError as e:
            proto.error_received(e)
            return
        self._service.flush_soon()

    def readable(self) -> None:
        proto = self._protocol
        assert isinstance(proto, _DATAGRAM_PROTOCOL)
        while not self._closed and (item := self._sock.recv()) is not None:
            proto.datagram_received(item[0], sockaddr(item[1]))
        err = self._sock.take_error()
        if err and not self._closed:
            proto.error_received(OSError(err, os.strerror(err)))

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        self._net._transports.discard(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0
