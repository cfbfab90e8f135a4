"""The retransmission-timeout estimator of a TCP connection (RFC 6298, Karn's algorithm).

Split out of ``TcpConnection`` the way aioquic keeps its RTT estimate in ``recovery.py``: the
estimator owns the smoothed RTT, its variance, the current RTO with its backoff, and the one
segment being timed when timestamps are off. It knows nothing of segments, windows or timers;
the connection feeds it samples and asks it for ``rto`` when arming its own deadline, so the
deadline bookkeeping (which several timers share) stays in one place in the connection.
"""

from __future__ import annotations

__all__ = ["RtoEstimator"]


class RtoEstimator:
    """SRTT/RTTVAR/RTO per RFC 6298 section 2 (alpha = 1/8, beta = 1/4, G = 1 ms).

    Plain attributes on purpose: the connection reads ``rto`` and ``timed_seq`` on every
    acknowledgement and every emitted segment.
    """

    __slots__ = ("max_rto", "min_rto", "rto", "rttvar", "srtt", "timed_at", "timed_seq")

    def __init__(self, initial_rto_ms: int, min_rto_ms: int, max_rto_ms: int) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = initial_rto_ms
        self.min_rto = min_rto_ms
        self.max_rto = max_rto_ms
        #: Unwrapped sequence number of the segment being timed (RFC 6298 section 3): an ACK
        #: beyond it yields a sample. None when nothing is timed.
        self.timed_seq: int | None = None
        self.timed_at = 0

    def sample(self, r: int) -> None:
        """Fold one RTT measurement (ms) into the estimate and recompute the RTO, clamped to
        the configured bounds (RFC 6298 sections 2.2, 2.3, 2.4)."""
        r_f = float(max(r, 0))
        if self.srtt is None:
            self.srtt = r_f
            self.rttvar = r_f / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r_f)
            self.srtt = 0.875 * self.srtt + 0.125 * r_f
        rto = int(self.srtt + max(1.0, 4 * self.rttvar) + 0.5)
        self.rto = min(max(rto, self.min_rto), self.max_rto)

    def start_timing(self, seq_u: int, now: int) -> None:
        """Time the segment starting at ``seq_u`` unless one is already being timed."""
        if self.timed_seq is None:
            self.timed_seq = seq_u
            self.timed_at = now

    def on_retransmit(self, seq_u: int) -> None:
        """Karn's rule: a retransmission at or below the timed segment makes its ACK
        ambiguous, so the measurement is abandoned."""
        if self.timed_seq is not None and seq_u <= self.timed_seq:
            self.timed_seq = None

    def on_ack(self, ack_u: int, now: int) -> None:
        """An ACK reached ``ack_u``: take the sample if it covers the timed segment."""
        if self.timed_seq is not None and ack_u > self.timed_seq:
            self.sample(now - self.timed_at)
            self.timed_seq = None

    def undo_back_off(self) -> None:
        """The timeouts were the old path's fault, not congestion's (the underlay moved to
        another link): the RTO returns to what the estimate says."""
        if self.srtt is not None:
            rto = int(self.srtt + max(1.0, 4 * self.rttvar) + 0.5)
            self.rto = min(max(rto, self.min_rto), self.max_rto)

    def back_off(self) -> None:
        """RFC 6298 section 5.5: double the RTO after a timeout, up to the maximum."""
        self.rto = min(self.rto * 2, self.max_rto)

    def after_syn_timeout(self) -> None:
        """RFC 6298 section 5.7: the SYN timed out and no RTT was measured, so data starts
        with a conservative 3 s RTO rather than whatever the backoff left."""
        if self.srtt is None:
            self.rto = max(self.min_rto, min(3000, self.max_rto))
