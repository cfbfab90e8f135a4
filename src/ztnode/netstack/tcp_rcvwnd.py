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
