"""Socket options: which ``setsockopt``/``getsockopt`` levels and names are supported, their
defaults and how their values are read."""

from __future__ import annotations

import socket as _socket
import struct

from ztnode.sockets.blocking.common import _DEFAULTS

_SOL, _TCP, _IP, _IP6 = (
    _socket.SOL_SOCKET,
    _socket.IPPROTO_TCP,
    _socket.IPPROTO_IP,
    _socket.IPPROTO_IPV6,
)

#: Integer options kept per socket: (level, name) -> key. TCP ones reach the TCB.
_INT_OPTIONS: dict[tuple[int, int], str] = {
    (_SOL, _socket.SO_REUSEADDR): "reuseaddr",
    (_SOL, _socket.SO_REUSEPORT): "reuseport",
    (_SOL, _socket.SO_BROADCAST): "broadcast",
    (_SOL, _socket.SO_KEEPALIVE): "keepalive",
    (_SOL, _socket.SO_RCVBUF): "rcvbuf",
    (_SOL, _socket.SO_SNDBUF): "sndbuf",
    (_SOL, _socket.SO_OOBINLINE): "oobinline",
    (_TCP, _socket.TCP_NODELAY): "nodelay",
    (_TCP, _socket.TCP_KEEPIDLE): "keepidle",
    (_TCP, _socket.TCP_KEEPINTVL): "keepintvl",
    (_TCP, _socket.TCP_KEEPCNT): "keepcnt",
    (_IP, _socket.IP_TTL): "ttl",
    (_IP, _socket.IP_TOS): "tos",
    (_IP, _socket.IP_MULTICAST_TTL): "mcast_ttl",
    (_IP, _socket.IP_MULTICAST_LOOP): "mcast_loop",
    (_IP6, _socket.IPV6_V6ONLY): "v6only",
    (_IP6, _socket.IPV6_UNICAST_HOPS): "ttl",
    (_IP6, _socket.IPV6_MULTICAST_HOPS): "mcast_ttl",
    (_IP6, _socket.IPV6_MULTICAST_LOOP): "mcast_loop",
}


_TCB_OPTIONS = frozenset({"nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt", "sndbuf"})


_GROUP_OPTIONS = {
    (_IP, _socket.IP_ADD_MEMBERSHIP): True,
    (_IP, _socket.IP_DROP_MEMBERSHIP): False,
    (_IP6, _socket.IPV6_JOIN_GROUP): True,
    (_IP6, _socket.IPV6_LEAVE_GROUP): False,
}


#: What getsockopt reports for options never set (a socket's dict holds only those set, plus
#: its connection's buffer sizes, so unset TCP options keep the stack's configuration).
_OPTION_DEFAULTS: dict[str, int] = {
    "reuseaddr": 0,
    "reuseport": 0,
    "broadcast": 0,
    "keepalive": int(_DEFAULTS.keepalive),
    "rcvbuf": _DEFAULTS.recv_buffer,
    "sndbuf": _DEFAULTS.send_buffer,
    "oobinline": 0,
    "nodelay": int(_DEFAULTS.nodelay),
    "keepidle": _DEFAULTS.keepalive_idle_ms // 1000,
    "keepintvl": _DEFAULTS.keepalive_interval_ms // 1000,
    "keepcnt": _DEFAULTS.keepalive_count,
    "ttl": 64,
    "tos": 0,
    "mcast_ttl": 1,
    "mcast_loop": 1,
    "v6only": 1,
    "linger_on": 0,
    "linger": 0,
}


def _option(opts: dict[str, int], name: str) -> int:
    return opts.get(name, _OPTION_DEFAULTS[name])


def _int_value(value: int | bytes | bytearray | memoryview | None) -> int:
    if isinstance(value, int):
        return value
    if value is None:
        raise TypeError("an integer option needs a value")
    raw = bytes(value)
    if len(raw) < 4:
        raw = raw.ljust(4, b"\0")
    return int(struct.unpack("i", raw[:4])[0])
