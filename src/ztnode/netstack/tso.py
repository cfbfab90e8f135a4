"""Segmentation and checksum offload's Python side: a large TCP segment with its headers built
once (:class:`TcpBurst`), cut into MSS-sized packets by :meth:`TcpBurst.packets` (the reference the
C cut in ``accel/csrc/tx_tcp.c`` is checked against, and the fallback where it is not built); a
UDP datagram whose lengths and checksums are left to the layer below (:class:`UdpOffload`,
built by :meth:`UdpOffload.packet` or in C by ``accel/csrc/tx_udp.c``)."""

from __future__ import annotations

import struct

from ztnode.netstack import tcp as tcb
from ztnode.netstack.checksum import ones_sum, pseudo_header_sum_v4, pseudo_header_sum_v6
from ztnode.netstack.ipproto import PROTO_TCP, PROTO_UDP
from ztnode.netstack.tcpwire import encode_options


class TcpBurst:
    """One outgoing TCP segment longer than a packet, for the layer below to cut into pieces
    of ``seg_size`` payload bytes (segmentation offload, Linux's GSO).

    ``header`` is the IP and TCP header of the first piece as it would be sent alone (its
    length, checksum and IPv4 ident fields are rewritten per piece); piece ``i`` starts at
    sequence number ``seq + i * seg_size``, has IPv4 ident ``ip_id + i`` and the flags of the
    header, except that only the last piece keeps PSH and FIN (``flags_last``).
    :meth:`packets` is the reference cut, used wherever the C one is not.

    Never changed once made. A plain class, not a dataclass: one is made per segment sent,
    and a dataclass's ``__init__`` stays generated Python in the compiled build.
    """

    __slots__ = ("flags_last", "header", "ip_id", "payload", "seg_size")

    def __init__(
        self, header: bytes, ip_id: int, payload: bytes, seg_size: int, flags_last: int
    ) -> None:
        self.header = header
        self.ip_id = ip_id
        self.payload = payload
        self.seg_size = seg_size
        self.flags_last = flags_last

    def __repr__(self) -> str:
        return (
            f"TcpBurst({len(self.header)}-byte header, ip_id={self.ip_id}, "
            f"{len(self.payload)} bytes in pieces of {self.seg_size}, "
            f"flags_last={self.flags_last:#x})"
        )

    def count(self) -> int:
        """How many pieces the cut makes (one, the header alone, when there is no payload)."""
        return max(-(-len(self.payload) // self.seg_size), 1)

    def packets(self) -> list[bytes]:
        return [self.piece(i) for i in range(self.count())]

    def piece(self, i: int) -> bytes:
        """Piece ``i`` as sent: its slice of the payload, sequence number, flags, lengths,
        IPv4 ident and checksums."""
        h = self.header
        v6 = h[0] >> 4 == 6
        ihl = 40 if v6 else 20
        thl = len(h) - ihl
        seq0 = int.from_bytes(h[ihl + 4 : ihl + 8], "big")
        src, dst = (h[8:24], h[24:40]) if v6 else (h[12:16], h[16:20])
        off = i * self.seg_size
        chunk = self.payload[off : off + self.seg_size]
        tcp_len = thl + len(chunk)
        buf = bytearray(h)
        buf += chunk
        struct.pack_into(">I", buf, ihl + 4, (seq0 + off) & 0xFFFFFFFF)
        last = i == self.count() - 1
        buf[ihl + 13] = self.flags_last if last else self.flags_last & ~0x09
        buf[ihl + 16 : ihl + 18] = b"\0\0"
        ck = ~ones_sum(memoryview(buf)[ihl:], pseudo_sum(src, dst, PROTO_TCP, tcp_len))
        struct.pack_into(">H", buf, ihl + 16, ck & 0xFFFF)
        if v6:
            struct.pack_into(">H", buf, 4, tcp_len)
        else:
            struct.pack_into(">HH", buf, 2, 20 + tcp_len, (self.ip_id + i) & 0xFFFF)
            buf[10:12] = b"\0\0"
            struct.pack_into(">H", buf, 10, ~ones_sum(memoryview(buf)[:20]) & 0xFFFF)
        return bytes(buf)


class UdpOffload:
    """One outgoing UDP datagram (IPv4 without options, or IPv6; never IP-fragmented) whose
    lengths, IPv4 ident and checksums the layer below fills in (checksum offload): ``header``
    is its IP and UDP headers with addresses, TTL and ports set and those fields zero.
    :meth:`packet` is the reference build, used wherever the C one is not.

    Never changed once made; a plain class for the reason :class:`TcpBurst` is one."""

    __slots__ = ("header", "ip_id", "payload")

    def __init__(self, header: bytes, ip_id: int, payload: bytes) -> None:
        self.header = header
        self.ip_id = ip_id
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"UdpOffload({len(self.header)}-byte header, ip_id={self.ip_id}, "
            f"{len(self.payload)} bytes)"
        )

    def packets(self) -> list[bytes]:
        return [self.packet()]

    def packet(self) -> bytes:
        """The datagram as sent: lengths, IPv4 ident and checksums filled in (a UDP sum of 0
        goes as 0xFFFF, RFC 768)."""
        h = self.header
        v6 = h[0] >> 4 == 6
        ihl = 40 if v6 else 20
        udp_len = 8 + len(self.payload)
        buf = bytearray(h)
        buf += self.payload
        struct.pack_into(">H", buf, ihl + 4, udp_len)
        buf[ihl + 6 : ihl + 8] = b"\0\0"
        src, dst = (h[8:24], h[24:40]) if v6 else (h[12:16], h[16:20])
        ck = ~ones_sum(memoryview(buf)[ihl:], pseudo_sum(src, dst, PROTO_UDP, udp_len)) & 0xFFFF
        struct.pack_into(">H", buf, ihl + 6, ck or 0xFFFF)
        if v6:
            struct.pack_into(">H", buf, 4, udp_len)
        else:
            struct.pack_into(">HH", buf, 2, 20 + udp_len, self.ip_id & 0xFFFF)
            buf[10:12] = b"\0\0"
            struct.pack_into(">H", buf, 10, ~ones_sum(memoryview(buf)[:20]) & 0xFFFF)
        return bytes(buf)


Frame = tuple[int, int, "bytes | TcpBurst | UdpOffload"]


def tcp_options(seg: tcb.Segment) -> bytes:
    """The option bytes of a segment, from the codec's one encoder."""
    return encode_options(seg.mss, seg.ts, seg.sack_permitted, seg.wscale, seg.sack_blocks)


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        return pseudo_header_sum_v4(src, dst, proto, length)
    return pseudo_header_sum_v6(src, dst, proto, length)
