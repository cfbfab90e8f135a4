"""The stack's input path: ARP, IPv4 and IPv6 (with reassembly and extension headers), ICMP
and NDP, handing transport payloads to the UDP and TCP demultiplexers."""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv6Address,
)
from typing import TYPE_CHECKING

from ztnode.netstack.arp import ARP_REPLY, ARP_REQUEST, ArpPacket
from ztnode.netstack.checksum import ones_sum
from ztnode.netstack.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV6
from ztnode.netstack.handles import (
    PingReply,
)
from ztnode.netstack.icmp import (
    ICMP4_CODE_FRAGMENTATION_NEEDED,
    ICMP4_CODE_PROTOCOL_UNREACHABLE,
    Icmp4DestinationUnreachable,
    Icmp4Echo,
    Icmp6DestinationUnreachable,
    Icmp6Echo,
    Icmp6PacketTooBig,
    NeighborAdvertisement,
    NeighborSolicitation,
    decode_icmp4,
    decode_icmp6,
    quote_ipv4,
)
from ztnode.netstack.igmp import MLD_QUERY, PROTO_IGMP
from ztnode.netstack.ipproto import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv6 import (
    NH_ICMPV6,
    NH_NONE,
    IPv6Header,
    walk_extension_headers,
)
from ztnode.netstack.multicast import (
    ALL_NODES,
    solicited_node_address,
)
from ztnode.netstack.stackconfig import (
    ALL_HOSTS,
    ALL_NODES_MAC,
    NDP_HOP_LIMIT,
)

if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack


class IpInput:
    """See the module docstring."""

    def __init__(self, rt: IpStack) -> None:
        self.rt = rt

    def rx_arp(self, src_mac: int, payload: bytes, now: int) -> None:
        pkt = ArpPacket.decode(payload)
        if pkt.sender_mac != src_mac:
            # ZeroTier authenticates a frame's source MAC (it is derived from the sender's
            # address), so an ARP claiming another MAC is spoofed or corrupt: never learn it.
            self.rt._count("arp_sender_mismatch")
            return
        mine = pkt.target_ip.packed in self.rt._mine
        if pkt.sender_ip.packed in self.rt._mine:
            self.rt._count("arp_from_our_address")
            return
        # RFC 826: update a known sender; add it when the packet is for us.
        if (mine or self.rt.arp.knows(pkt.sender_ip)) and int(pkt.sender_ip) != 0:
            self.rt.output.learn(pkt.sender_ip, pkt.sender_mac, now)
        if pkt.op == ARP_REQUEST and mine and not pkt.is_gratuitous:
            self.rt._out.append((pkt.sender_mac, ETHERTYPE_ARP, pkt.reply(self.rt.mac).encode()))
        elif pkt.op not in (ARP_REQUEST, ARP_REPLY):
            self.rt._count("arp_op")

    def is_broadcast_v4(self, dst: IPv4Address) -> bool:
        """The limited broadcast or a subnet's (not on /31 and /32 links, RFC 3021)."""
        return dst.packed in self.rt._broadcast_v4

    def accepts_v4(self, dst: IPv4Address) -> bool:
        if dst.packed in self.rt._mine:
            return True
        if dst.is_multicast:
            return dst in self.rt._groups or dst in self.rt._sources or dst == ALL_HOSTS
        return self.is_broadcast_v4(dst)

    def rx_ipv4(self, src_mac: int, payload: bytes, now: int, checked: bool = False) -> None:
        # Fast path: an option-less, unfragmented TCP or UDP datagram for one of our unicast
        # addresses, the shape of nearly every packet of a conversation, taken apart by hand
        # (no header objects, no address objects). Everything else, and whatever the fast
        # paths decline, takes the full codec below, which is their reference. A TCP segment
        # or UDP datagram whose checksums the transport verified (``checked``) is not summed
        # again.
        n = len(payload)
        if (
            n >= 28
            and payload[0] == 0x45
            and not payload[6] & 0xBF  # reserved bit and MF clear, offset zero (DF may be set)
            and not payload[7]
        ):
            proto = payload[9]
            total = (payload[2] << 8) | payload[3]
            dst = payload[16:20]
            if (
                proto in (PROTO_TCP, PROTO_UDP)
                and 28 <= total <= n
                and dst in self.rt._mine
                and (checked or ones_sum(payload[:20]) == 0xFFFF)
            ):
                src = payload[12:16]
                if proto == PROTO_UDP:
                    body = memoryview(payload)[20:total]
                    if self.rt.udp.receive_fast(src, dst, body, False, checked):
                        return
                elif total >= 40 and self.rt.tcp.receive_fast(
                    src, dst, payload, 20, total, now, checked
                ):
                    return
        hdr, body = IPv4Header.parse(payload)
        if not self.accepts_v4(hdr.dst):
            self.rt._count("not_for_us")
            return
        if hdr.is_fragment:
            whole = self.rt.reasm4.push(hdr, body, now)
            if whole is None:
                return
            hdr, data = whole
            body = memoryview(data)
        proto = hdr.protocol
        if proto == PROTO_TCP:
            self.rt.tcp.receive(hdr.src, hdr.dst, body, now)
        elif proto == PROTO_UDP:
            if hdr.dst in self.rt._sources and not self.rt.takes_multicast(hdr.dst, hdr.src):
                self.rt._count("multicast_source_filtered")
                return
            self.rt.udp.receive(hdr.src, hdr.dst, body, payload, now)
        elif proto == PROTO_ICMP:
            self._rx_icmp4(hdr, body, now)
        elif proto == PROTO_IGMP:
            self.rt.reporter.igmp_received(bytes(body), now)
        else:
            self.rt._count("unknown_protocol")
            if hdr.dst.packed in self.rt._mine and self.rt.output.icmp_error_allowed(now):
                msg = Icmp4DestinationUnreachable(
                    ICMP4_CODE_PROTOCOL_UNREACHABLE, quote_ipv4(payload)
                ).encode()
                self.rt.output.send_ip_quiet(hdr.src, PROTO_ICMP, msg, now, src=hdr.dst)

    def _rx_icmp4(self, hdr: IPv4Header, body: memoryview, now: int) -> None:
        msg = decode_icmp4(body)
        if isinstance(msg, Icmp4Echo):
            if not msg.reply:
                if hdr.dst.packed not in self.rt._mine:
                    return  # no answers to broadcast pings (RFC 1122 3.2.2.6 allows silence)
                self.rt.output.send_ip_quiet(
                    hdr.src, PROTO_ICMP, msg.make_reply().encode(), now, src=hdr.dst
                )
            else:
                self.rt._events.append(
                    PingReply(self.rt, str(hdr.src), msg.identifier, msg.sequence, msg.data)
                )
        elif isinstance(msg, Icmp4DestinationUnreachable):
            if msg.code == ICMP4_CODE_FRAGMENTATION_NEEDED:
                self.rt.output.path_mtu_reported(msg.original, 4, msg.next_hop_mtu, now)
            else:
                self.rt.output.icmp_unreachable(msg.original, 4, msg.code, now)
        else:
            self.rt._count("icmp4_ignored")

    def accepts_v6(self, dst: IPv6Address) -> bool:
        if dst.packed in self.rt._mine:
            return True
        if dst.is_multicast:
            if dst == ALL_NODES or dst in self.rt._groups or dst in self.rt._sources:
                return True
            return any(dst == solicited_node_address(a.ip) for a in self.rt._v6)
        return False

    def rx_ipv6(self, src_mac: int, payload: bytes, now: int, checked: bool = False) -> None:
        n = len(payload)
        if n >= 48 and payload[0] >> 4 == 6 and (nh := payload[6]) in (PROTO_TCP, PROTO_UDP):
            # Fast paths as in rx_ipv4: no extension headers, for one of our addresses.
            plen = (payload[4] << 8) | payload[5]
            dst = payload[24:40]
            if plen <= n - 40 and dst in self.rt._mine:
                if nh == PROTO_UDP:
                    body = memoryview(payload)[40 : 40 + plen]
                    if self.rt.udp.receive_fast(payload[8:24], dst, body, True, checked):
                        return
                elif plen >= 20 and self.rt.tcp.receive_fast(
                    payload[8:24], dst, payload, 40, 40 + plen, now, checked
                ):
                    return
        hdr, body = IPv6Header.parse(payload)
        if not self.accepts_v6(hdr.dst):
            self.rt._count("not_for_us")
            return
        nh = hdr.next_header
        if nh not in (PROTO_TCP, PROTO_UDP, NH_ICMPV6):
            chain = walk_extension_headers(nh, body)
            if chain.fragment is not None:
                whole = self.rt.reasm6.push(hdr, chain.fragment, body[chain.fragment_offset :], now)
                if whole is None:
                    return
                hdr, nh, data = whole
                body = memoryview(data)
                if nh not in (PROTO_TCP, PROTO_UDP, NH_ICMPV6):
                    chain = walk_extension_headers(nh, body)
                    nh, body = chain.upper_protocol, body[chain.upper_offset :]
            else:
                nh, body = chain.upper_protocol, body[chain.upper_offset :]
        if nh == PROTO_TCP:
            self.rt.tcp.receive(hdr.src, hdr.dst, body, now)
        elif nh == PROTO_UDP:
            if hdr.dst in self.rt._sources and not self.rt.takes_multicast(hdr.dst, hdr.src):
                self.rt._count("multicast_source_filtered")
                return
            self.rt.udp.receive(hdr.src, hdr.dst, body, payload, now)
        elif nh == NH_ICMPV6:
            self._rx_icmp6(src_mac, hdr, body, now)
        elif nh == NH_NONE:
            pass
        else:
            self.rt._count("unknown_protocol")

    def _rx_icmp6(self, src_mac: int, hdr: IPv6Header, body: memoryview, now: int) -> None:
        msg = decode_icmp6(body, hdr.src, hdr.dst)
        if isinstance(msg, Icmp6Echo):
            if not msg.reply:
                if hdr.dst.packed not in self.rt._mine:
                    return
                reply = msg.make_reply().encode(hdr.dst, hdr.src)
                self.rt.output.send_ip_quiet(hdr.src, NH_ICMPV6, reply, now, src=hdr.dst)
            else:
                self.rt._events.append(
                    PingReply(self.rt, str(hdr.src), msg.identifier, msg.sequence, msg.data)
                )
        elif isinstance(msg, NeighborSolicitation):
            self._rx_ns(src_mac, hdr, msg, now)
        elif isinstance(msg, NeighborAdvertisement):
            if hdr.hop_limit != NDP_HOP_LIMIT:
                self.rt._count("ndp_hop_limit")
                return
            if msg.target_lladdr is not None and msg.target_lladdr != src_mac:
                self.rt._count("ndp_lladdr_mismatch")
                return
            if msg.target_lladdr is not None and (
                msg.solicited or self.rt.ndp.knows(msg.target) or msg.override
            ):
                self.rt.output.learn(msg.target, msg.target_lladdr, now)
        elif isinstance(msg, Icmp6DestinationUnreachable):
            self.rt.output.icmp_unreachable(msg.original, 6, msg.code, now)
        elif isinstance(msg, Icmp6PacketTooBig):
            self.rt._count("packet_too_big")
            self.rt.output.path_mtu_reported(msg.original, 6, msg.mtu, now)
        elif body[0] == MLD_QUERY:
            self.rt.reporter.mld_received(bytes(body), now)
        else:
            self.rt._count("icmp6_ignored")

    def _rx_ns(self, src_mac: int, hdr: IPv6Header, msg: NeighborSolicitation, now: int) -> None:
        """RFC 4861 7.2.3-7.2.4: answer for our addresses, learn the asker's MAC."""
        if hdr.hop_limit != NDP_HOP_LIMIT:
            self.rt._count("ndp_hop_limit")
            return
        if msg.target.packed not in self.rt._mine:
            return
        dad = hdr.src == IPv6Address("::")
        if msg.source_lladdr is not None and msg.source_lladdr != src_mac:
            self.rt._count("ndp_lladdr_mismatch")  # see _rx_arp: the frame's source is authentic
            return
        if not dad and msg.source_lladdr is not None:
            self.rt.output.learn(hdr.src, msg.source_lladdr, now)
        dst = ALL_NODES if dad else hdr.src
        na = NeighborAdvertisement(
            msg.target, target_lladdr=self.rt.mac, solicited=not dad, override=True
        ).encode(msg.target, dst)
        pkt = IPv6Header(msg.target, dst, NH_ICMPV6, hop_limit=NDP_HOP_LIMIT).encode(na)
        if dad:
            self.rt._out.append((ALL_NODES_MAC, ETHERTYPE_IPV6, pkt))
            return
        mac = msg.source_lladdr
        if mac is None:
            mac = self.rt.ndp.lookup(hdr.src, now) or self.rt.output.mac_for_zerotier_ipv6(hdr.src)
        if mac is None:
            self.rt._count("ns_without_lladdr")
            return
        self.rt._out.append((mac, ETHERTYPE_IPV6, pkt))
