"""What the IP stack's parts share: its configuration, fixed parameters and the wire layouts
compiled once for the fast paths."""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv6Address,
    ip_address,
)
from typing import Final

from ztnode.netstack import tcp as tcb

EPHEMERAL_LOW: Final = 49152

EPHEMERAL_HIGH: Final = 65535

#: RFC 4861 section 6.1.2 / 7.1.1: NDP messages must arrive with hop limit 255.
NDP_HOP_LIMIT: Final = 255

ALL_NODES_MAC: Final = 0x333300000001

TCP_FIXED: Final = struct.Struct(">HHIIBBH")

TCP_HEADER: Final = struct.Struct(">HHIIBBHxxxx")

TS_VALUES: Final = struct.Struct(">II")

TS_OPTION: Final = struct.Struct(">III")

IP4_HEADER: Final = struct.Struct(">BBHHHBBH4s4s")

IP6_HEADER: Final = struct.Struct(">IHBB16s16s")

#: How long a connection reuses its next hop's MAC before resolving it again.
MAC_REMEMBER_MS: Final = 1000

#: Destinations whose next hop is remembered at most (then the memory starts over).
HOP_CACHE_SIZE: Final = 4096

#: Bound on self-addressed exchanges turned around within one ``frames_to_send`` call.
LOOPBACK_ROUNDS: Final = 64

LIMITED_BROADCAST: Final = IPv4Address("255.255.255.255")

ALL_HOSTS: Final = IPv4Address("224.0.0.1")

IPAddr = IPv4Address | IPv6Address

Endpoint = tuple[str, int]

#: Address texts whose parse is remembered (least recently used go first).
PARSED_IP_CACHE: Final = 4096


@functools.lru_cache(maxsize=PARSED_IP_CACHE)
def parse_ip(text: str) -> IPAddr:
    """The address an IP literal spells (an IPv6 zone, after ``%``, dropped); ValueError for
    anything else. Remembered because a program names the same few peers on every connect and
    send, and ``ip_address`` parses octet by octet in Python each time; the objects are
    immutable, so sharing them is safe."""
    return ip_address(text.split("%", 1)[0])


@dataclass(slots=True)
class StackConfig:
    """Tunables of one stack (defaults follow Linux where RFCs leave a choice)."""

    #: Connection defaults. Buffers are larger than TcpConfig's: the receiver handles a burst
    #: of datagrams before it answers, so more than one such burst must fit in a window.
    tcp: tcb.TcpConfig = field(
        default_factory=lambda: tcb.TcpConfig(
            send_buffer=1 << 20, recv_buffer=1 << 20, ooo_limit=1 << 20
        )
    )
    ttl: int = 64
    #: The largest ``listen`` backlog taken: connections waiting in a listener's accept
    #: queue (Linux somaxconn). A SYN finding the queue full is dropped (counted as
    #: ``tcp_backlog_full``), and so is a handshake's last ACK (``tcp_listen_overflow``): the
    #: connection stays half-open and its SYN-ACK goes again on its timer, as on Linux.
    max_backlog: int = 4096
    #: Half-open connections the stack keeps at most, all listeners together (a SYN answered,
    #: its handshake not complete; Linux's tcp_max_syn_backlog). A listener's backlog does not
    #: bound them, so a burst of connects larger than the backlog is answered at once when the
    #: application accepts as they complete; past this bound SYNs are dropped, counted as
    #: ``tcp_syn_backlog_full`` (Linux would answer with SYN cookies instead). Each costs a
    #: connection's state, a few KB.
    syn_backlog: int = 1024
    #: TIME-WAIT records kept at most (Linux's tcp_max_tw_buckets): past it a connection
    #: that closes skips TIME-WAIT, counted as ``tcp_time_wait_overflow``. A record is a few
    #: hundred bytes; 1 000 connections closed per second keep 60 000 of them.
    max_time_wait: int = 131_072
    #: The ports outgoing connections and port-0 binds take (Linux's ip_local_port_range;
    #: IANA's dynamic range by default). A TCP port serves connections to different
    #: destinations at once: what must be unique is the 4-tuple, as on Linux.
    ephemeral_ports: tuple[int, int] = (EPHEMERAL_LOW, EPHEMERAL_HIGH)
    #: An outgoing connect may take over a 4-tuple of its own that waits in TIME-WAIT when
    #: that connection used timestamps and its wait began at least a second ago, as readily
    #: as a free one (Linux's ``tcp_tw_reuse=1``, counted as ``tcp_time_wait_reused``; RFC
    #: 6191's reasoning: the peer tells incarnations apart by timestamp, and the new ISN
    #: starts past the old window). Without it a client that closes first opens at most
    #: 16 384 / 60 s = 273 connections a second to one server port.
    reuse_time_wait: bool = True
    #: Datagrams queued per UDP socket before new ones are dropped (counted).
    udp_queue_bytes: int = 256 * 1024
    #: ICMP errors we send per second at most (RFC 1812 4.3.2.8 asks for a limit).
    icmp_errors_per_s: int = 100
    arp_retries: int = 3
    arp_retry_ms: int = 1000
    #: With ``IpStack.segmentation_offload`` on: how many MSS-sized pieces one outgoing TCP
    #: segment may carry for the layer below to cut (see :class:`TcpBurst`).
    gso_segments: int = 16
    #: Handshakes and segments with any options on the TCP fast path too (``TcpMux.receive_fast``;
    #: tests turn it off to check it changes nothing but speed).
    fast_handshake: bool = True
