"""UDP: datagrams to their bound socket (or a port-unreachable error), and datagrams out."""

from __future__ import annotations

import errno
from ipaddress import (
    IPv4Address,
    IPv6Address,
)
from typing import TYPE_CHECKING

from ztnode.netstack.handles import (
    UdpReadable,
    UdpSocket,
)
from ztnode.netstack.icmp import (
    ICMP4_CODE_PORT_UNREACHABLE,
    ICMP6_CODE_PORT_UNREACHABLE,
    Icmp4DestinationUnreachable,
    Icmp6DestinationUnreachable,
    quote_ipv4,
    quote_ipv6,
)
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_UDP
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
)
from ztnode.netstack.stackconfig import (
    IPAddr,
)
from ztnode.netstack.udp import UdpHeader

if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack


class UdpMux:
    """See the module docstring."""

    def __init__(self, rt: IpStack) -> None:
        self.rt = rt

    def lookup(self, ip: IPAddr, port: int) -> UdpSocket | None:
        v6 = isinstance(ip, IPv6Address)
        s = self.rt._udp.get((v6, ip.packed, port))
        if s is None:
            s = self.rt._udp.get((v6, b"", port))
        return s

    def receive(self, src: IPAddr, dst: IPAddr, body: memoryview, whole: bytes, now: int) -> None:
        hdr, data = UdpHeader.parse(body, src, dst)
        sock = self.lookup(dst, hdr.dst_port)
        if sock is None and dst.is_multicast:
            sock = self.rt._udp.get((isinstance(dst, IPv6Address), b"", hdr.dst_port))
        if sock is None:
            self.rt._count("udp_no_socket")
            if dst.packed in self.rt._mine and self.rt.output.icmp_error_allowed(now):
                self._port_unreachable(src, dst, whole, now)
            return
        if sock.reuse and (dst.is_multicast or dst.packed not in self.rt._mine):
            # Shared port, multicast or broadcast: every socket bound there gets a copy.
            v6 = isinstance(dst, IPv6Address)
            for key in ((v6, dst.packed, hdr.dst_port), (v6, b"", hdr.dst_port)):
                for member in self.rt._udp_shared.get(key, ()):
                    self._deliver(member, src, hdr.src_port, data)
            return
        self._deliver(sock, src, hdr.src_port, data)

    def _deliver(self, sock: UdpSocket, src: IPAddr, src_port: int, data: memoryview) -> None:
        if sock.remote is not None and sock.remote != (src, src_port):
            self.rt._count("udp_not_connected_peer")
            return
        if sock.queued_bytes + len(data) > self.rt.config.udp_queue_bytes:
            self.rt._count("udp_queue_full")
            return
        was_empty = not sock.queue
        sock.queue.append((bytes(data), (str(src), src_port)))
        sock.queued_bytes += len(data)
        if was_empty:
            self.rt._events.append(UdpReadable(sock))

    def _port_unreachable(self, src: IPAddr, dst: IPAddr, whole: bytes, now: int) -> None:
        if isinstance(src, IPv4Address):
            m4 = Icmp4DestinationUnreachable(ICMP4_CODE_PORT_UNREACHABLE, quote_ipv4(whole))
            self.rt.output.send_ip_quiet(src, PROTO_ICMP, m4.encode(), now, src=dst)
        else:
            assert isinstance(dst, IPv6Address)
            m6 = Icmp6DestinationUnreachable(ICMP6_CODE_PORT_UNREACHABLE, quote_ipv6(whole))
            self.rt.output.send_ip_quiet(src, NH_ICMPV6, m6.encode(dst, src), now, src=dst)

    def send(self, sock: UdpSocket, data: bytes, dst: IPAddr, port: int, now: int) -> None:
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        if len(data) > 0xFFFF - 8 - (40 if dst.version == 6 else 20):
            raise OSError(errno.EMSGSIZE, "datagram too large")
        src = (
            sock.local_ip
            if sock.local_ip is not None and not sock.local_ip.is_multicast
            else (self.rt.output.source_for(dst))
        )
        if src is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        dgram = UdpHeader(sock.port, port).encode(data, src, dst)
        self.rt.output.send_ip(dst, PROTO_UDP, dgram, now, src=src)
