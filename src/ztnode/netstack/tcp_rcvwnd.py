"""The receive window a TCP connection advertises.

Split out of ``TcpConnection``: the window is a promise to the peer, so its right edge never
moves left (RFC 9293 3.8.6, RFC 7323 section 2.4) even when the buffer shrinks, and it opens
only in steps of at least min(buffer/2, MSS) so that a slow reader does not invite a stream of
tiny segments (receiver silly-window avoidance, RFC 9293 3.8.6.2.2). This object owns the
advertised right edge and our window scale, and turns "how much is buffered" into the 16-bit
field to send. Sequence numbers are the connection's unwrapped ones.
"""

from __future__ import annotations

__all__ = ["ReceiveWindow"]


class ReceiveWindow:
    """Advertised right edge (``edge``) and shift (``wscale``) for a buffer of ``size`` bytes."""

    __slots__ = ("edge", "mss", "size", "wscale")

    def __init__(self, size: int, mss: int) -> None:
        self.size = size
        self.mss = mss
        #: Right edge of the window last advertised (RCV.NXT + RCV.WND when it was sent).
        self.edge = 0
        self.wscale = 0

    def room(self, rcv_nxt: int) -> int:
        """RCV.WND as last advertised, from ``rcv_nxt`` on."""
        return max(self.edge - rcv_nxt, 0)

    def _threshold(self) -> int:
        return min(self.size // 2, self.mss)

    def field(self, rcv_nxt: int, buffered: int) -> int:
        """The 16-bit window field for a segment now, moving the edge right if it opens."""
        ws = self.wscale
        free = self.size - buffered
        cur = self.room(rcv_nxt)
        # Open by a full SWS step or not at all; else keep the promise, rounded up to the scale.
        value = free >> ws if free - cur >= self._threshold() else (cur + (1 << ws) - 1) >> ws
        value = min(value, 0xFFFF)
        self.edge = max(self.edge, rcv_nxt + (value << ws))
        return value

    def syn_field(self, rcv_nxt: int) -> int:
        """The window in a SYN or SYN,ACK, which is never scaled (RFC 7323 section 2.2)."""
        value = min(self.size, 0xFFFF)
        self.edge = rcv_nxt + value
        return value

    def worth_announcing(self, rcv_nxt: int, buffered: int) -> bool:
        """After the application read: announce the opened window at once only when the
        offered window had fallen below half the buffer (as Linux does), and by at least the
        SWS step; otherwise it rides on the next ACK."""
        cur = self.room(rcv_nxt)
        return cur < self.size // 2 and (self.size - buffered) - cur >= self._threshold()


def acceptable(seq_u: int, plen: int, nxt: int, wnd: int) -> bool:
    """RFC 9293 3.10.7.4 "first": the four-case acceptability test of a segment starting at
    ``seq_u`` and occupying ``plen`` sequence numbers, against RCV.NXT ``nxt`` and RCV.WND
    ``wnd``. With a zero window only a segment at RCV.NXT passes (its ACK is processed and its
    text trimmed away)."""
    if plen == 0:
        return (seq_u == nxt) if wnd == 0 else (nxt <= seq_u < nxt + wnd)
    if wnd == 0:
        return seq_u == nxt
    end = seq_u + plen - 1
    return (nxt <= seq_u < nxt + wnd) or (nxt <= end < nxt + wnd)


def trim(seq_u: int, length: int, nxt: int, wnd: int) -> tuple[int, int, bool]:
    """The part of ``length`` bytes at ``seq_u`` that lies in ``[nxt, nxt + wnd)``, as offsets
    ``(first, last)`` into them, and whether a FIN right after them is still to be processed:
    not when it lies before RCV.NXT (already seen) nor when the text was cut at the right edge
    (the FIN is beyond the window too)."""
    first = max(nxt - seq_u, 0)
    fin_ok = first <= length
    first = min(first, length)
    last = max(min(length, nxt + wnd - seq_u), first)
    return first, last, fin_ok and last == length
