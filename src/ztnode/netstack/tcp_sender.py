"""The send half of a TCP connection: RFC 9293's send sequence space and the send loop.

Split out of ``TcpConnection`` as aioquic splits a stream's sender from its connection: this
object owns the send sequence variables of RFC 9293 section 3.3.1 (ISS, SND.UNA, SND.NXT, the
highest sequence sent SND.MAX, SND.WND with SND.WL1/WL2 and the peer's window scale), the
application's unacknowledged bytes, our FIN's place, and loss recovery (which owns congestion
control). It decides what goes out next: lost holes first while recovering, then new data as the
peer's window and the congestion window allow, held back by Nagle (RFC 9293 3.7.4) and sender
silly-window avoidance (3.8.6.2.1), grown by segmentation offload.

It does not build segments (their ACK, window and options belong to the receive side), time
RTTs or run timers: the connection passes an ``emit`` callback to :meth:`output` and keeps
those. Sequence numbers are unwrapped (the SYN is 0, the first data byte 1); :meth:`wire` and
:meth:`unwrap` are the only conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ztnode.netstack.tcp_recovery import LossRecovery
from ztnode.netstack.tcp_sendbuf import SendBuffer
from ztnode.netstack.tcp_seq import SEQ_MASK, seq_diff

__all__ = ["Emit", "TcpSender"]

#: ``emit(seq, length, retransmit, fin)``: put one segment of our data on the wire.
Emit = Callable[[int, int, bool, bool], None]

#: Segments one :meth:`TcpSender.output` call may produce (a bound on the loop, far above any
#: window: 10 000 full segments is more than 14 MB).
MAX_SEGMENTS_PER_OUTPUT = 10_000


class TcpSender:
    """Send sequence space, send buffer, FIN, recovery, and the send loop."""

    __slots__ = (
        "buf",
        "data",
        "fin_seq",
        "iss",
        "max",
        "max_wnd",
        "mss",
        "nxt",
        "recovery",
        "sws_override",
        "una",
        "want_writable",
        "wl1",
        "wl2",
        "wnd",
        "wscale",
    )

    def __init__(self, mss: int, recovery: LossRecovery) -> None:
        self.iss = 0
        self.una = 0
        self.nxt = 0
        #: SND.MAX: one past the highest sequence number sent (SND.NXT falls back after an RTO).
        self.max = 0
        self.wnd = 0
        #: The largest window the peer offered, for sender SWS avoidance and old-ACK checks.
        self.max_wnd = 0
        self.wl1 = 0  # unwrapped receive-side seq of the last window update
        self.wl2 = 0  # unwrapped send-side ack of the last window update
        self.wscale = 0
        #: SMSS: the largest segment we send (fixed by the SYN exchange).
        self.mss = mss
        self.buf = SendBuffer()
        self.data = self.buf.data  # never rebound: a plain reference for the hot paths
        self.fin_seq: int | None = None  # our FIN's sequence number once shutdown() was called
        self.want_writable = False
        self.recovery = recovery
        #: Set when the persist timer fired on a small open window: the next segment goes out
        #: whatever sender SWS avoidance says (RFC 9293 3.8.6.2.1, the "override timeout").
        self.sws_override = False

    # --- sequence numbers -----------------------------------------------------------------------

    def wire(self, u: int) -> int:
        """The 32-bit wire value of unwrapped send sequence number ``u``."""
        return (self.iss + u) & SEQ_MASK

    def unwrap(self, wire: int) -> int:
        """The unwrapped send sequence number nearest SND.UNA for a wire value (an ACK)."""
        return self.una + seq_diff(wire, self.wire(self.una))

    def in_flight(self, wire: int) -> bool:
        """Whether a wire sequence number lies in what was sent and not yet acknowledged
        (an ICMP error quoting it may be about one of our segments)."""
        return self.una <= self.unwrap(wire) < max(self.max, self.una + 1)

    def agreed(self, mss: int, wscale: int, window: int, recovery: LossRecovery) -> None:
        """The SYN exchange fixed SMSS and the peer's window scale, and its SYN opened the
        window (never scaled, RFC 7323 2.2); recovery is made anew for that MSS and SACK."""
        self.mss = mss
        self.wscale = wscale
        self.wnd = self.max_wnd = window
        self.wl1 = 0
        self.recovery = recovery

    def restart(self, iss: int) -> None:
        """A new ISS (connect, or a SYN accepted in LISTEN): nothing is sent yet."""
        self.iss = iss & SEQ_MASK
        self.una = self.nxt = self.max = 0
        self.buf.start = 1

    # --- the application's side ---------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, limit: int) -> int:
        """Queue data up to a ``limit``-byte buffer; when some did not fit, the connection
        owes the application a writable event once ACKs free room."""
        n = self.buf.write(data, limit)
        if n < len(data):
            self.want_writable = True
        return n

    # --- acknowledgments ----------------------------------------------------------------------

    def acked(self, ack_u: int, now: int, srtt: float | None) -> bool:
        """New data acknowledged up to ``ack_u``; True when room opened for a writer that had
        been refused (the connection then queues a writable event)."""
        acked = ack_u - self.una
        flight = self.max - self.una
        self.una = ack_u
        self.nxt = max(self.nxt, ack_u)
        writable = bool(self.buf.acked_to(ack_u)) and self.want_writable
        if writable:
            self.want_writable = False
        self.recovery.on_ack(ack_u, acked, flight, self.max, now, srtt)
        return writable

    def is_duplicate(self, carries_data: bool, window: int, has_sack: bool) -> bool:
        """RFC 5681 section 2's "duplicate acknowledgment" for an ACK of exactly SND.UNA (the
        caller checked that and the SYN/FIN bits): data outstanding, no data carried, and the
        window unchanged (RFC 6675 counts SACK-carrying ACKs whatever their window)."""
        if self.max == self.una or carries_data:
            return False
        return has_sack or (window << self.wscale) == self.wnd

    def add_sack(self, blocks: Iterable[tuple[int, int]]) -> None:
        """The peer's SACK blocks as wire values (RFC 2018 section 4), to the scoreboard."""
        una = self.una
        base = self.wire(una)
        self.recovery.add_sack(
            una,
            self.max,
            [(una + seq_diff(left, base), una + seq_diff(right, base)) for left, right in blocks],
        )

    def update_window(self, seq_u: int, ack_u: int, window: int, *, syn: bool, force: bool) -> bool:
        """SND.WND from a segment, guarded by SND.WL1/WL2 against reordered old segments (RFC
        9293 3.10.7.4); the window of a SYN is never scaled (RFC 7323 2.2). True when the
        window was taken and is open."""
        if not (force or self.wl1 < seq_u or (self.wl1 == seq_u and self.wl2 <= ack_u)):
            return False
        self.wnd = window << (0 if syn else self.wscale)
        self.max_wnd = max(self.max_wnd, self.wnd)
        self.wl1 = seq_u
        self.wl2 = ack_u
        return self.wnd > 0

    # --- the send loop ------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing new, nothing to repeat, our FIN sent or not due: the common case of an ACK
        arriving, answered without entering the loop."""
        return (
            not self.recovery.active
            and self.nxt >= self.max
            and self.nxt >= self.buf.start + len(self.data)
            and (self.fin_seq is None or self.nxt > self.fin_seq)
        )

    def output(self, emit: Emit, *, nodelay: bool, gso: int, rto_running: bool) -> bool:
        """Send what the windows allow through ``emit`` (RFC 6675 section 5 while in
        recovery); True when the persist timer must start (data waits on a closed or a
        silly-small window and no retransmission timer runs)."""
        rec = self.recovery
        mss = self.mss
        for _ in range(MAX_SEGMENTS_PER_OUTPUT):
            limit: int | None = None
            if rec.active:
                start, hole, cwnd_room = rec.next_hole(self.una, self.max)
                if hole:
                    emit(start, hole, True, False)
                    rto_running = True
                    continue
            else:
                if rec.blocks and self.nxt < self.max:
                    self.nxt, limit = rec.skip_sacked(self.nxt, self.max)
                cwnd_room = rec.send_room(self.una, self.nxt, self.max)
            nxt = self.nxt
            fin_seq = self.fin_seq
            if fin_seq is not None and nxt > fin_seq:
                return False
            avail = max(self.buf.start + len(self.data) - nxt, 0)
            if limit is not None:
                avail = min(avail, limit - nxt)
            wnd_room = self.una + self.wnd - nxt
            # Pairwise: compiled, a two-argument min is a comparison, a longer one a call.
            n = max(min(min(mss, avail), min(wnd_room, cwnd_room)), 0)  # noqa: PLW3301
            fin = fin_seq is not None and nxt + n == fin_seq
            if n == 0 and not fin:
                return avail > 0 and self.wnd == 0 and not rto_running
            # Retransmissions after a timeout (SND.NXT < SND.MAX) are exempt: that data was
            # already judged sendable once, and holding it back could stall forever.
            if n < mss and not fin and not self.sws_override and nxt >= self.max:
                if n == avail:
                    if not nodelay and nxt > self.una:
                        return False  # Nagle (RFC 9293 3.7.4): wait for the ACK in flight
                elif n < self.max_wnd // 2:
                    # Sender SWS avoidance (RFC 9293 3.8.6.2.1); the persist timer's override
                    # sends into the small window if it stays that way.
                    return wnd_room < mss and self.wnd > 0 and not rto_running
            if gso > 1 and n == mss and not rec.active and limit is None and nxt >= self.max:
                # Offload: as many full pieces as the windows allow, in one segment; a short
                # tail only when it is the end of the data and nothing would hold it back.
                big = min(min(gso * mss, avail), min(wnd_room, cwnd_room))  # noqa: PLW3301
                if big > mss:
                    n = (
                        big
                        if big == avail and (nodelay or fin_seq is not None)
                        else big - big % mss
                    )
                    fin = fin_seq is not None and nxt + n == fin_seq
            self.sws_override = False
            emit(nxt, n, nxt < self.max, fin)
            rto_running = True
            self.nxt = nxt + n + (1 if fin else 0)
            self.max = max(self.max, self.nxt)
            if n == avail and not rec.active and (fin_seq is None or self.nxt > fin_seq):
                return False  # all data is out and no FIN is due: another round finds nothing
        return False
