"""The send buffer of a TCP connection: bytes written by the application and not yet acked.

Split out of ``TcpConnection`` as aioquic keeps a stream's send side in ``stream.py``: the
buffer owns the bytes from SND.UNA (or the first data byte) to the end of what was written,
and the unwrapped sequence number of its first byte. What may be *sent* (windows, Nagle,
congestion, retransmission) is the connection's decision; the buffer only accepts writes up to
a capacity, hands out slices by sequence number, and frees what the peer acknowledged.

``data`` is created once and only mutated in place, so the connection's send loop may keep a
plain reference to it; ``start`` is a plain attribute for the same reason.
"""

from __future__ import annotations

__all__ = ["SendBuffer"]


class SendBuffer:
    """Unacknowledged and unsent application bytes, addressed by unwrapped sequence number."""

    __slots__ = ("data", "start")

    def __init__(self) -> None:
        self.data = bytearray()
        #: Unwrapped sequence number of ``data[0]`` (1: the byte after our SYN).
        self.start = 1

    def end(self) -> int:
        """Unwrapped sequence number just past the last byte written."""
        return self.start + len(self.data)

    def write(self, data: bytes | bytearray | memoryview, capacity: int) -> int:
        """Append as much of ``data`` as keeps the buffer within ``capacity``; returns how
        many bytes were taken (backpressure)."""
        n = min(capacity - len(self.data), len(data))  # negative if capacity shrank
        if n > 0:
            self.data += data[:n]
        return n

    def acked_to(self, ack_u: int) -> int:
        """The peer acknowledged everything below ``ack_u``: free those bytes; returns how
        many were freed (an ACK of our SYN or FIN frees none)."""
        n = min(ack_u, self.start + len(self.data)) - self.start
        if n <= 0:
            return 0
        del self.data[:n]
        self.start += n
        return n

    def slice(self, seq_u: int, n: int) -> bytes:
        """``n`` bytes starting at sequence number ``seq_u`` (which must be buffered)."""
        if not n:
            return b""
        off = seq_u - self.start
        return bytes(self.data[off : off + n])
