"""UDP: datagrams to their bound socket (or a port-unreachable error), and datagrams out."""

from __future__ import annotations

import errno
import struct
from ipaddress import (
    IPv4Address,
    IPv6Address,
)
from socket import AF_INET6, inet_ntoa, inet_ntop
from typing import TYPE_CHECKING, Final

from ztnode.netstack.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
)
from ztnode.netstack.ethernet import ETHERTYPE_IPV4, ETHERTYPE_IPV6
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
from ztnode.netstack.ipoutput import ipv4_datagram
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_UDP
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
)
from ztnode.netstack.stackconfig import (
    IP4_HEADER,
    IP6_HEADER,
    MAC_REMEMBER_MS,
    IPAddr,
)
from ztnode.netstack.tso import UdpOffload
from ztnode.netstack.udp import UDP_HEADER_LEN, UdpHeader

if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack

_UDP: Final = struct.Struct(">HHHH")


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

    def receive_fast(
        self, src: bytes, dst: bytes, body: memoryview, v6: bool = False, checked: bool = False
    ) -> bool:
        """A UDP datagram from ``src`` to ``dst`` (packed addresses of the family, ``dst`` one of
        our unicast addresses, the IP header checked) delivered without header or address
        objects: what :meth:`receive` does for it, byte for byte. False, with nothing done, for
        anything it does not take (a short or inconsistent header, a bad or, over IPv6, a zero
        checksum, no socket): the full path then decides and counts. ``checked``: the transport
        verified the checksum (present and right), which is then not summed again."""
        n = len(body)
        if n < UDP_HEADER_LEN:
            return False
        dport = (body[2] << 8) | body[3]
        length = (body[4] << 8) | body[5]
        if length < UDP_HEADER_LEN or length > n:
            return False
        udp = self.rt._udp
        sock = udp.get((v6, dst, dport))
        if sock is None:
            sock = udp.get((v6, b"", dport))
            if sock is None:
                return False
        if not checked:
            if body[6] or body[7]:
                if v6:
                    pseudo = pseudo_header_sum_v6(src, dst, PROTO_UDP, length)
                else:
                    pseudo = pseudo_header_sum_v4(src, dst, PROTO_UDP, length)
                if ones_sum(body[:length], pseudo) != 0xFFFF:
                    return False
            elif v6:
                return False  # a zero sum is refused over IPv6 (RFC 8200 8.1): the codec counts it
        sport = (body[0] << 8) | body[1]
        remote = sock.remote
        if remote is not None and (remote[1] != sport or sock.remote_packed != src):
            self.rt._count("udp_not_connected_peer")
            return True
        sender = _text6(src) if v6 else inet_ntoa(src)
        self._enqueue(sock, body[UDP_HEADER_LEN:length], (sender, sport))
        return True

    def _deliver(self, sock: UdpSocket, src: IPAddr, src_port: int, data: memoryview) -> None:
        if sock.remote is not None and sock.remote != (src, src_port):
            self.rt._count("udp_not_connected_peer")
            return
        self._enqueue(sock, data, (str(src), src_port))

    def _enqueue(self, sock: UdpSocket, data: memoryview, sender: tuple[str, int]) -> None:
        if sock.queued_bytes + len(data) > self.rt.config.udp_queue_bytes:
            self.rt._count("udp_queue_full")
            return
        was_empty = not sock.queue
        sock.queue.append((bytes(data), sender))
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
        """One datagram to ``dst``. The way there (source, next hop's MAC, path MTU) is
        remembered on the socket for a second within the stack's generation, as TCP remembers
        its next hop, so that a socket sending to the same host again builds the datagram
        from packed addresses without asking the address objects, the routes, the neighbor
        cache and the path MTUs each time; what does not fit in one packet, or meets no
        remembered way, takes the full path, which is the reference."""
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad port {port}")
        rt = self.rt
        r = sock.route
        if r is not None and r[0] is dst and r[1] == rt._generation and now < r[2]:
            src_p, dst_p = r[3], r[4]
            v6 = len(dst_p) == 16
            if len(data) + (48 if v6 else 28) <= r[6]:
                ttl = rt.config.ttl
                if rt.segmentation_offload:  # lengths and checksums filled in below (C)
                    # Compared by value: the compiled build unboxes the way's tuple, so it is
                    # not the same object from one send to the next.
                    head = sock.head
                    if (
                        head is None
                        or head[0] != src_p
                        or head[1] != dst_p
                        or head[2] != port
                        or head[3] != ttl
                    ):
                        head = sock.head = (
                            src_p,
                            dst_p,
                            port,
                            ttl,
                            _udp_head(src_p, dst_p, sock.port, port, ttl),
                        )
                    if v6:
                        rt._out.append((r[5], ETHERTYPE_IPV6, UdpOffload(head[4], 0, data)))
                    else:
                        rt._ip_id = ident = (rt._ip_id + 1) & 0xFFFF
                        rt._out.append((r[5], ETHERTYPE_IPV4, UdpOffload(head[4], ident, data)))
                    return
                dgram = udp_datagram(sock.port, port, data, src_p, dst_p, v6)
                if v6:
                    packet = IP6_HEADER.pack(0x60000000, len(dgram), PROTO_UDP, ttl, src_p, dst_p)
                    rt._out.append((r[5], ETHERTYPE_IPV6, packet + dgram))
                else:
                    rt._ip_id = ident = (rt._ip_id + 1) & 0xFFFF
                    packet = ipv4_datagram(src_p, dst_p, PROTO_UDP, ttl, ident, dgram)
                    rt._out.append((r[5], ETHERTYPE_IPV4, packet))
                return
        if len(data) > 0xFFFF - 8 - (40 if dst.version == 6 else 20):
            raise OSError(errno.EMSGSIZE, "datagram too large")
        src = (
            sock.local_ip
            if sock.local_ip is not None and not sock.local_ip.is_multicast
            else (rt.output.source_for(dst))
        )
        if src is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst} on this network")
        src_p, dst_p = src.packed, dst.packed
        dgram = udp_datagram(sock.port, port, data, src_p, dst_p, dst.version == 6)
        mac = rt.output.send_ip(dst, PROTO_UDP, dgram, now, src=src)
        if mac is not None:
            mtu = rt.pmtu.mtu_for(dst, rt.mtu, now)
            sock.route = (dst, rt._generation, now + MAC_REMEMBER_MS, src_p, dst_p, mac, mtu)


_V4_IN_V6: Final = (bytes(12), bytes(10) + b"\xff\xff")


def _text6(packed: bytes) -> str:
    """``str(IPv6Address(packed))`` by the C library: the two agree (RFC 5952) except on
    addresses that embed an IPv4 address, which the C library writes dotted; those (and only
    those) go through the address class."""
    if packed[:12] in _V4_IN_V6:
        return str(IPv6Address(packed))
    return inet_ntop(AF_INET6, packed)


def _udp_head(src: bytes, dst: bytes, src_port: int, dst_port: int, ttl: int) -> bytes:
    """The IP and UDP headers :class:`UdpOffload` starts from: lengths, ident and checksums
    zero (IPv4: no options, DF clear, as :func:`ipv4_datagram` sends)."""
    if len(dst) == 16:
        ip = IP6_HEADER.pack(0x60000000, 0, PROTO_UDP, ttl, src, dst)
    else:
        ip = IP4_HEADER.pack(0x45, 0, 0, 0, 0, ttl, PROTO_UDP, 0, src, dst)
    return ip + _UDP.pack(src_port, dst_port, 0, 0)


def udp_datagram(
    src_port: int, dst_port: int, payload: bytes, src: bytes, dst: bytes, v6: bool
) -> bytes:
    """A UDP datagram with its length and checksum, between packed addresses: what
    ``UdpHeader(src_port, dst_port).encode(payload, ...)`` makes (its reference, tested so),
    without the header and address objects. Ports and length are the caller's to check."""
    length = UDP_HEADER_LEN + len(payload)
    if v6:
        pseudo = pseudo_header_sum_v6(src, dst, PROTO_UDP, length)
    else:
        pseudo = pseudo_header_sum_v4(src, dst, PROTO_UDP, length)
    ck = internet_checksum(payload, ones_sum(_UDP.pack(src_port, dst_port, length, 0), pseudo))
    return _UDP.pack(src_port, dst_port, length, ck or 0xFFFF) + payload
