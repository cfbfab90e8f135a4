"""TCP demultiplexing and emission: segments to their connection (the established-connection
fast path first), listeners with their backlogs, each connection's timers and output turned into
IP packets (or offload bursts), and RFC 6528 initial sequence numbers."""

from __future__ import annotations

import functools
import heapq
import logging
import struct
from collections.abc import Callable
from ipaddress import (
    IPv6Address,
    ip_address,
)
from typing import TYPE_CHECKING, Final

from ztnode.errors import DecodeError
from ztnode.netstack import tcp as tcb
from ztnode.netstack.checksum import ones_sum
from ztnode.netstack.ethernet import ETHERTYPE_IPV4, ETHERTYPE_IPV6
from ztnode.netstack.handles import (
    AcceptReady,
    TcpListener,
    TcpSocket,
    TcpSocketEvent,
)
from ztnode.netstack.ipproto import PROTO_TCP
from ztnode.netstack.stackconfig import (
    IP4_HEADER,
    IP6_HEADER,
    MAC_REMEMBER_MS,
    PARSED_IP_CACHE,
    TCP_FIXED,
    TCP_HEADER,
    TS_OPTION,
    IPAddr,
)
from ztnode.netstack.tcp_timewait import TimeWait, Verdict
from ztnode.netstack.tcpwire import TcpSegmentHeader, parse_options
from ztnode.netstack.tso import TcpBurst, pseudo_sum, tcp_options

log = logging.getLogger("ztnode.netstack")


@functools.lru_cache(maxsize=PARSED_IP_CACHE)
def _ip_of(packed: bytes) -> IPAddr:
    """The address of 4 or 16 packed bytes (remembered: a server sees the same peers again)."""
    return ip_address(packed)


if TYPE_CHECKING:
    from ztnode.netstack.stack import IpStack


#: A TCP header from the sequence number on (checksum and urgent pointer zero), and the same
#: followed by the timestamp option as ZeroTier's peers see it (NOP, NOP, kind 8, length 10).
_TCP_TAIL: Final = struct.Struct(">IIBBHxxxx")
_TCP_TAIL_TS: Final = struct.Struct(">IIBBHxxxxIII")
_PORTS: Final = struct.Struct(">HH")
#: A TCP header's first 32 bytes read as the fixed part and a timestamps option laid out as
#: every stack lays it out (NOP, NOP, kind 8, length 10): ports, seq, ack, offset, flags,
#: window, the option's first word, TSval, TSecr.
_TCP_TS_SHAPE: Final = struct.Struct(">HHIIBBHxxxxIII")
_TS_LEAD: Final = 0x0101080A


def _segment_head(s: TcpSocket, ttl: int) -> bytes:
    """The IP header (lengths, ident and checksum zero) and the ports of ``s``'s segments."""
    lpk, rpk = s.key[0], s.key[2]
    if s.ipv6:
        ip = IP6_HEADER.pack(0x60000000, 0, PROTO_TCP, ttl, lpk, rpk)
    else:
        ip = IP4_HEADER.pack(0x45, 0, 0, 0, 0x4000, ttl, PROTO_TCP, 0, lpk, rpk)
    return ip + _PORTS.pack(s.local[1], s.remote[1])


def _fixed(packet: bytes, start: int) -> tuple[int, ...]:
    """A header too short for a timestamps option: its fixed part, the option fields zero."""
    return (*TCP_FIXED.unpack_from(packet, start), 0, 0, 0)


class TcpMux:
    """See the module docstring."""

    def __init__(self, rt: IpStack) -> None:
        self.rt = rt
        # The connection the last segment was for, and its 4-tuple (most segments continue
        # the flow before them). Only ever a connection the stack's table holds: :meth:`service`
        # forgets it where it leaves the table, the one place a connection does.
        self._last: TcpSocket | None = None
        self._last_src = b""
        self._last_dst = b""
        self._last_sport = -1
        self._last_dport = -1

    def _isn_for(self, key: tuple[bytes, int, bytes, int], now: int) -> Callable[[], int]:
        """RFC 6528: a keyed hash of the 4-tuple plus a 4-microsecond clock."""

        def isn() -> int:
            h = self.rt._isn_hash.copy()
            h.update(key[0] + key[1].to_bytes(2, "big") + key[2] + key[3].to_bytes(2, "big"))
            return (int.from_bytes(h.digest(), "big") + now * 250) & 0xFFFFFFFF

        return isn

    def config_for(self, remote: IPAddr) -> tcb.TcpConfig:
        """A new connection's own config (hand it over with ``private_config``: one copy)."""
        rt = self.rt
        return rt.config.tcp.derive(
            mtu=rt.pmtu.peek(remote, rt.mtu),  # a path MTU learned, if smaller
            ipv6=isinstance(remote, IPv6Address),
            gso_segments=rt.config.gso_segments if rt.segmentation_offload else 1,
        )

    def receive_fast(
        self,
        src: bytes,
        dst: bytes,
        packet: bytes,
        start: int,
        end: int,
        now: int,
        checked: bool = False,
    ) -> bool:
        """A connection's segment (``packet[start:end]``, read in place in its IP packet), or a
        bare SYN for a listener, parsed without the codec objects (the options with the codec's
        own parser). False sends the packet down the full path: no connection and no listener,
        a 4-tuple in TIME-WAIT, a bare SYN for a connection, a malformed option (which the full
        path counts). ``checked``: the transport verified the TCP checksum (see
        ``IpStack.receive_frame``).

        Why in place, one ``unpack`` for the fixed header and a timestamps option, and the
        connection found last tried first: a memoryview of the segment, five reads of its
        bytes and the 4-tuple's dict lookup cost about 4 000 instructions a segment in the
        compiled build, a tenth of its way from the datagram to the connection."""
        n = end - start
        # Read into int-typed names: the compiled build then compares and masks native ints
        # (unpacked straight from the tuple, each field would be an object and each operation
        # on it a generic call).
        head = _TCP_TS_SHAPE.unpack_from(packet, start) if n >= 32 else _fixed(packet, start)
        sport: int = head[0]
        dport: int = head[1]
        seq: int = head[2]
        ack: int = head[3]
        off: int = head[4]
        fl: int = head[5]
        win: int = head[6]
        lead: int = head[7]
        tsval: int = head[8]
        tsecr: int = head[9]
        s = self._last
        if not (
            s is not None
            and sport == self._last_sport
            and dport == self._last_dport
            and src == self._last_src
            and dst == self._last_dst
        ):
            s = self.rt._tcp.get((dst, dport, src, sport))
            if s is not None:
                self._last, self._last_src, self._last_dst = s, src, dst
                self._last_sport, self._last_dport = sport, dport
        lst: TcpListener | None = None
        if s is None:
            if (
                not self.rt.config.fast_handshake
                or fl & 0x3F & ~0x08 != 0x02
                or (dst, dport, src, sport) in self.rt._time_wait
            ):
                return False
            v6 = len(dst) == 16
            lst = self.rt._listeners.get((v6, dst, dport))
            if lst is None:
                lst = self.rt._listeners.get((v6, b"", dport))
            if lst is None:
                return False  # the full path answers with a reset, and counts it
        elif fl & 0x07 == 0x02 and not fl & 0x10:
            return False  # a bare SYN for a connection: TIME-WAIT reopening, challenge ACKs
        hlen = (off >> 4) << 2
        if hlen > n or hlen < 20:
            self.rt._count("malformed")
            return True
        ts: tuple[int, int] | None = None
        mss: int | None = None
        ws: int | None = None
        sackp = False
        sacks: tuple[tuple[int, int], ...] = ()
        if hlen == 32 and lead == _TS_LEAD:
            ts = (tsval, tsecr)
        elif hlen != 20:
            if not self.rt.config.fast_handshake:
                return False
            try:
                mss, ws, sackp, sacks, ts = parse_options(memoryview(packet)[start:end], hlen)
            except DecodeError:
                return False
        if (
            not checked
            and ones_sum(memoryview(packet)[start:end], pseudo_sum(src, dst, PROTO_TCP, n))
            != 0xFFFF
        ):
            self.rt._count("tcp_checksum")
            return True
        seg = tcb.Segment(
            seq, ack, fl & 0x3F, win, packet[start + hlen : end], mss, ws, sackp, sacks, ts
        )
        if lst is not None:
            key = (dst, dport, src, sport)
            self._passive_open(lst, key, (_ip_of(dst), dport), (_ip_of(src), sport), seg, now)
            return True
        assert s is not None
        if s.listener is not None and self._listen_overflow(s, fl):
            return True
        s.conn.receive_segment(seg, now)
        if mss is not None or ws is not None or sackp or sacks or s.listener is not None:
            # A handshake segment, one carrying SACK blocks, or one for a connection not
            # accepted yet: serviced at once, exactly as the full path does (a SACK may start
            # a fast retransmit now; a handshake completing joins the accept queue before the
            # next segment asks whether it is full).
            self.service(s, now)
            return True
        # Serviced at the next frames_to_send (once per received burst), not per segment: one
        # ACK then covers the whole burst (stretch ACKs; the sender counts bytes, RFC 3465)
        # and the application is woken once.
        self.rt._dirty.add(s)
        return True

    def receive(self, src: IPAddr, dst: IPAddr, body: memoryview, now: int) -> None:
        if dst.packed not in self.rt._mine:
            self.rt._count("tcp_not_unicast")
            return
        h, data = TcpSegmentHeader.parse(body, src, dst)
        seg = tcb.Segment(
            h.seq,
            h.ack,
            h.flags & 0x3F,
            h.window,
            bytes(data),
            h.mss,
            h.window_scale,
            h.sack_permitted,
            h.sack_blocks,
            h.timestamps,
        )
        key = (dst.packed, h.dst_port, src.packed, h.src_port)
        s = self.rt._tcp.get(key)
        if s is not None and s.conn.reopened_by(seg):
            # A newer SYN for a 4-tuple in TIME-WAIT: the old connection goes (no RST from
            # TIME-WAIT) and the SYN meets the listener as a new one.
            s.conn.abort(now)
            self.service(s, now)
            self.rt._count("tcp_time_wait_reopened")
            s = self.rt._tcp.get(key)
        if s is None and (tw := self.rt._time_wait.get(key)) is not None:
            if not tw.reopened_by(seg):
                self._time_wait_receive(tw, seg, now)
                return
            self.drop_time_wait(tw)
            self.rt._count("tcp_time_wait_reopened")
        if s is None:
            if seg.flags & 0x3F & ~0x08 == 0x02:  # a bare SYN (PSH tolerated)
                lst = self.rt._listeners.get((dst.version == 6, dst.packed, h.dst_port))
                if lst is None:
                    lst = self.rt._listeners.get((dst.version == 6, b"", h.dst_port))
                if lst is not None:
                    self._passive_open(lst, key, (dst, h.dst_port), (src, h.src_port), seg, now)
                    return
            self.rt._count("tcp_no_connection")
            rst = tcb.reset_for(seg)
            if rst is not None:
                self._emit_segment(dst, h.dst_port, src, h.src_port, rst, now)
            return
        if s.listener is not None and self._listen_overflow(s, seg.flags):
            return
        s.conn.receive_segment(seg, now)
        self.service(s, now)

    def _listen_overflow(self, s: TcpSocket, flags: int) -> bool:
        """True (counted) for the ACK that would complete a half-open connection while its
        listener's accept queue is full: dropped as Linux drops it, so the queue never holds
        more than the backlog. The connection stays half-open and sends its SYN-ACK again on
        its timer; the client's answer completes it once the application has accepted.
        Segments with SYN or RST go on as usual."""
        lst = s.listener
        if (
            lst is None
            or s.user is not None
            or flags & 0x16 != 0x10
            or s.conn.state is not tcb.TcpState.SYN_RECEIVED
            or len(lst.queue) < lst.backlog
        ):
            return False
        self.rt._count("tcp_listen_overflow")
        return True

    def _passive_open(
        self,
        lst: TcpListener,
        key: tuple[bytes, int, bytes, int],
        local: tuple[IPAddr, int],
        remote: tuple[IPAddr, int],
        seg: tcb.Segment,
        now: int,
    ) -> None:
        rt = self.rt
        if len(lst.queue) >= lst.backlog:
            rt._count("tcp_backlog_full")  # like Linux: drop the SYN, the client retries
            return
        if rt._half_open >= rt.config.syn_backlog:
            rt._count("tcp_syn_backlog_full")
            return
        conn = tcb.TcpConnection(
            self.config_for(remote[0]), isn=self._isn_for(key, now), private_config=True
        )
        conn.listen()
        s = TcpSocket(self.rt, conn, local, remote, lst)
        self.rt._ports[PROTO_TCP][local[1]] = self.rt._ports[PROTO_TCP].get(local[1], 0) + 1
        self.rt._tcp[key] = s
        lst.embryonic += 1
        rt._half_open += 1
        conn.receive_segment(seg, now)
        self.service(s, now)

    def service(self, s: TcpSocket, now: int) -> None:
        """After anything touched a connection: send its segments, surface its events,
        re-arm its timer, and forget it once closed."""
        conn = s.conn
        if conn.state is tcb.TcpState.LISTEN:
            # A reset took a half-open connection back to LISTEN (RFC 9293 3.10.7.4). Made by
            # a listener for one SYN, it has nothing left to wait for: it goes, and with it
            # its place among the half-open ones (it held one for good before).
            conn.abort(now)
        try:
            segs = conn.segments_to_send(now)
        except Exception:
            log.exception("TCP output failed")
            conn.abort(now)
            segs = []
        for seg in segs:
            self.emit(s, seg, now)
        kept_port = (
            conn.state is tcb.TcpState.TIME_WAIT and TimeWait.suits(conn) and self._retire(s)
        )
        events = self.rt._events
        closed = False
        while (e := conn.next_event()) is not None:
            if isinstance(e, tcb.ClosedEvent):
                closed = True
            lst = s.listener
            if lst is not None and s.user is None:
                if isinstance(e, tcb.ConnectedEvent):
                    lst.embryonic -= 1
                    self.rt._half_open -= 1
                    if lst.closed:
                        conn.abort(now)
                        continue
                    lst.queue.append(s)
                    if len(lst.queue) == 1:
                        events.append(AcceptReady(lst))
                    continue
                if isinstance(e, tcb.ClosedEvent) and s not in lst.queue:
                    lst.embryonic -= 1
                    self.rt._half_open -= 1
                if not isinstance(e, tcb.ClosedEvent):
                    continue  # nobody holds this connection yet: accept() checks its state
            events.append(TcpSocketEvent(s, e))
        if closed:
            if self.rt._tcp.get(s.key) is s:
                del self.rt._tcp[s.key]
                if self._last is s:
                    self._last = None
                if not kept_port:  # a TIME-WAIT record holds the port until it ends
                    self.rt._release_port(PROTO_TCP, s.local[1])
                b, n = self.rt._retransmitted_closed
                self.rt._retransmitted_closed = (
                    b + conn.retransmitted_bytes,
                    n + conn.retransmitted_segments,
                )
            s._timer_at = None
            return
        # The stack's heap holds an entry only for a deadline earlier than the one it already
        # holds for this connection: a deadline that moved later (every segment sent moves the
        # retransmission timer, every answer cancels the delayed ACK) keeps the earlier entry,
        # which then fires early, finds nothing due (handle_timer checks each deadline) and
        # files the real one. One early wake-up per timer period instead of a heap entry per
        # segment, and a stack deadline that stays put, so the event loop's timer is not
        # re-armed on every round trip.
        t = conn.get_timer()
        if t is not None:
            at = s._timer_at
            if at is None or t < at:
                s._timer_at = t
                heapq.heappush(self.rt._timers, (t, next(self.rt._timer_seq), s))

    # --- TIME-WAIT records (see ztnode.netstack.tcp_timewait) --------------------------------

    def _retire(self, s: TcpSocket) -> bool:
        """``s`` entered TIME-WAIT with nothing owed: a compact record carries the wait on and
        the connection closes. True when a record holds its port; False (counted) when the
        records are at their bound and the connection simply ends, as Linux does."""
        rt = self.rt
        conn = s.conn
        kept = len(rt._time_wait) < rt.config.max_time_wait
        if kept:
            tw = TimeWait(conn, s.key)
            rt._time_wait[s.key] = tw
            rt._time_wait_order.append((tw.deadline, tw))
        else:
            rt._count("tcp_time_wait_overflow")
        conn.hand_over_time_wait()
        return kept

    def _time_wait_receive(self, tw: TimeWait, seg: tcb.Segment, now: int) -> None:
        deadline = tw.deadline
        verdict = tw.receive(seg, now, self._count_time_wait)
        if verdict == Verdict.CLOSE:
            self.drop_time_wait(tw)
            return
        if tw.deadline != deadline:  # a retransmitted FIN restarted the wait
            self.rt._time_wait_order.append((tw.deadline, tw))
        if verdict == Verdict.ACK:
            seq, ack, flags, window, ts = tw.ack(now)
            lip, lport, rip, rport = tw.key
            self._emit_segment(
                ip_address(lip),
                lport,
                ip_address(rip),
                rport,
                tcb.Segment(seq, ack, flags, window, ts=ts),
                now,
            )

    def _count_time_wait(self, reason: str) -> None:
        self.rt._count("tcp_time_wait_" + reason)

    def drop_time_wait(self, tw: TimeWait) -> None:
        """Forget a TIME-WAIT record (its deadline entry is skipped later) and free its port."""
        rt = self.rt
        if rt._time_wait.get(tw.key) is tw:
            del rt._time_wait[tw.key]
            rt._release_port(PROTO_TCP, tw.key[1])

    def _time_wait_head(self) -> tuple[int, TimeWait] | None:
        order = self.rt._time_wait_order
        records = self.rt._time_wait
        while order:
            at, tw = order[0]
            if tw.deadline == at and records.get(tw.key) is tw:
                return at, tw
            order.popleft()  # dropped, or its wait restarted (a later entry stands for it)
        return None

    def time_wait_deadline(self) -> int | None:
        head = self._time_wait_head()
        return None if head is None else head[0]

    def expire_time_wait(self, now: int) -> None:
        """End the waits that are over. Entries are in deadline order (every wait is 2*MSL
        from when it began or restarted), so this stops at the first one still running."""
        while (head := self._time_wait_head()) is not None and head[0] <= now:
            self.rt._time_wait_order.popleft()
            self.drop_time_wait(head[1])

    def emit(self, s: TcpSocket, seg: tcb.Segment, now: int) -> None:
        """One segment of a connection, built straight into its frame buffer (the codec
        objects cost more than the rest of the send path for a small segment)."""
        opts = b""
        if seg.mss is not None or seg.wscale is not None or seg.sack_permitted or seg.sack_blocks:
            opts = tcp_options(seg)
            if len(opts) > 40:
                self._emit_segment(s.local[0], s.local[1], s.remote[0], s.remote[1], seg, now)
                return
        payload = seg.payload
        thl = 20 + len(opts) if opts else (32 if seg.ts is not None else 20)
        v6 = s.ipv6
        ihl = 40 if v6 else 20
        n = len(payload)
        mss = s.conn.snd.mss
        # Any segment but a SYN or RST goes to the layer below as a TcpBurst when it can cut
        # (offload): several MSS of new data as for bulk, and a small segment or a bare ACK as
        # one piece, built, checksummed and armored in the same C call on a remembered route.
        if self.rt.segmentation_offload and ihl + thl + mss <= self.rt.mtu and not seg.flags & 0x06:
            self._emit_burst(s, seg, opts, thl, mss, now)
            return
        if ihl + thl + n > self.rt.mtu:
            self._emit_segment(s.local[0], s.local[1], s.remote[0], s.remote[1], seg, now)
            return
        buf = bytearray(ihl + thl + n)
        TCP_HEADER.pack_into(
            buf, ihl, s.local[1], s.remote[1], seg.seq, seg.ack, thl << 2, seg.flags, seg.window
        )
        if opts:
            buf[ihl + 20 : ihl + thl] = opts
        elif seg.ts is not None:
            TS_OPTION.pack_into(buf, ihl + 20, 0x0101080A, seg.ts[0], seg.ts[1])
        buf[ihl + thl :] = payload
        lpk, rpk = s.key[0], s.key[2]
        tcp_len = thl + n
        ck = ~ones_sum(memoryview(buf)[ihl:], pseudo_sum(lpk, rpk, PROTO_TCP, tcp_len)) & 0xFFFF
        buf[ihl + 16] = ck >> 8
        buf[ihl + 17] = ck & 0xFF
        if v6:
            IP6_HEADER.pack_into(
                buf, 0, 0x60000000, tcp_len, PROTO_TCP, self.rt.config.ttl, lpk, rpk
            )
            ethertype = ETHERTYPE_IPV6
        else:
            self.rt._ip_id = ident = (self.rt._ip_id + 1) & 0xFFFF
            IP4_HEADER.pack_into(
                buf,
                0,
                0x45,
                0,
                20 + tcp_len,
                ident,
                0x4000,
                self.rt.config.ttl,
                PROTO_TCP,
                0,
                lpk,
                rpk,
            )
            ck = ~ones_sum(memoryview(buf)[:20]) & 0xFFFF
            buf[10] = ck >> 8
            buf[11] = ck & 0xFF
            ethertype = ETHERTYPE_IPV4
        self._queue_packet(s, ethertype, bytes(buf), now)

    def _queue_packet(self, s: TcpSocket, ethertype: int, packet: bytes, now: int) -> None:
        """Queue one built packet of ``s`` for its next hop's MAC: the socket's remembered one
        while still valid, else whatever neighbor resolution answers (which may queue the
        packet itself while it asks)."""
        known = s._mac
        if known is not None and known[1] == self.rt._generation and now < known[2]:
            self.rt._out.append((known[0], ethertype, packet))
            return
        try:
            mac = self.rt.output.resolve(s.remote[0], s.local[0], ethertype, [packet], now)
        except OSError:
            self.rt._count("tcp_unroutable")
            return
        if mac is not None:
            self.rt._out.append((mac, ethertype, packet))
            # Remembered for a second at most, so an expired neighbor entry is asked for again
            # within that time, as the resolution above would.
            s._mac = (mac, self.rt._generation, now + MAC_REMEMBER_MS)

    def _emit_burst(
        self, s: TcpSocket, seg: tcb.Segment, opts: bytes, thl: int, mss: int, now: int
    ) -> None:
        """A segment for the layer below to cut into ``mss``-byte pieces (one when it is
        small or bare) and build (segmentation offload): its headers once (:class:`TcpBurst`)."""
        v6 = s.ipv6
        ttl = self.rt.config.ttl
        head = s._head
        if head is None or head[0] != ttl:
            head = s._head = (ttl, _segment_head(s, ttl))
        # The fields every segment writes anew; lengths, checksums and the IPv4 ident are
        # written per piece by the cut (TcpBurst.piece and its C twin), so the template leaves
        # them zero.
        if opts:
            hdr = head[1] + _TCP_TAIL.pack(seg.seq, seg.ack, thl << 2, seg.flags, seg.window) + opts
        elif seg.ts is not None:
            hdr = head[1] + _TCP_TAIL_TS.pack(
                seg.seq, seg.ack, 0x80, seg.flags, seg.window, 0x0101080A, seg.ts[0], seg.ts[1]
            )
        else:
            hdr = head[1] + _TCP_TAIL.pack(seg.seq, seg.ack, 0x50, seg.flags, seg.window)
        pieces = max(-(-len(seg.payload) // mss), 1)  # a bare ACK is one piece too
        if v6:
            ethertype = ETHERTYPE_IPV6
            ident = 0
        else:
            ident = (self.rt._ip_id + 1) & 0xFFFF
            self.rt._ip_id = (self.rt._ip_id + pieces) & 0xFFFF
            ethertype = ETHERTYPE_IPV4
        burst = TcpBurst(hdr, ident, seg.payload, mss, seg.flags)  # bytes already (no call)
        known = s._mac
        if known is not None and known[1] == self.rt._generation and now < known[2]:
            self.rt._out.append((known[0], ethertype, burst))
            return
        try:
            mac = self.rt.output.resolve(s.remote[0], s.local[0], ethertype, burst.packets, now)
        except OSError:
            self.rt._count("tcp_unroutable")
            return
        if mac is not None:
            self.rt._out.append((mac, ethertype, burst))
            s._mac = (mac, self.rt._generation, now + MAC_REMEMBER_MS)

    def _emit_segment(
        self, lip: IPAddr, lport: int, rip: IPAddr, rport: int, seg: tcb.Segment, now: int
    ) -> None:
        h = TcpSegmentHeader(
            lport,
            rport,
            seg.seq,
            seg.ack,
            int(seg.flags),
            seg.window,
            0,
            seg.mss,
            seg.wscale,
            seg.sack_permitted,
            seg.sack_blocks,
            seg.ts,
        )
        wire = h.encode(seg.payload, lip, rip)
        try:
            self.rt.output.send_ip(rip, PROTO_TCP, wire, now, src=lip)
        except OSError:
            self.rt._count("tcp_unroutable")
