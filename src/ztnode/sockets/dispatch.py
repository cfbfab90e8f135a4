"""Routes the IP stacks' socket events to the asyncio objects kept in the handles' ``user``.

Why a module of its own: it runs for every socket event (each segment that brings data or
room, each datagram queued), so it is compiled with the hot path; what the Python-level API
handles itself (ping replies, which reach a ``Network``) goes to the callback it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from ztnode.netstack.stack import AcceptReady, StackEvent, TcpSocketEvent, UdpReadable
from ztnode.sockets.aio_tcp import TcpServer, _Connecting, _TcpTransport
from ztnode.sockets.aio_udp import _UdpTransport


class StackEventDispatcher:
    """The service's ``stack_event_handler``: TCP, UDP and accept events to their transports
    and servers; any other event to ``other``."""

    __slots__ = ("_other",)

    def __init__(self, other: Callable[[StackEvent], None]) -> None:
        self._other = other

    def __call__(self, e: StackEvent) -> None:
        if isinstance(e, TcpSocketEvent):
            user = e.sock.user
            # Two tests, not ``A | B``: a union is built anew on every call in compiled code.
            if isinstance(user, _TcpTransport):  # noqa: SIM114  (each call native)
                user.tcp_event(e.event)
            elif isinstance(user, _Connecting):
                user.tcp_event(e.event)
        elif isinstance(e, UdpReadable):
            udp = e.sock.user
            if isinstance(udp, _UdpTransport):
                udp.readable()
        elif isinstance(e, AcceptReady):
            srv = e.listener.user
            if isinstance(srv, TcpServer):
                srv.accept_ready()
        else:
            self._other(e)


__all__ = ["StackEventDispatcher"]
