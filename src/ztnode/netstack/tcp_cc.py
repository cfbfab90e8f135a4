"""TCP congestion control behind a small interface (RFC 5681, RFC 6582, RFC 6928, RFC 9438).

The connection (``ztnode.netstack.tcp``) owns loss *detection* and recovery bookkeeping (dupack
counting, the SACK scoreboard, the RFC 6675 pipe); a controller only decides how big ``cwnd`` and
``ssthresh`` are. Keeping that split means another controller can be dropped in by implementing
the same four callbacks, without touching the state machine. ``NewReno`` is the default;
``Cubic`` (RFC 9438) is selected with ``TcpConfig(congestion_control=Cubic)``.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CongestionControl", "Cubic", "NewReno", "initial_window"]


def initial_window(mss: int) -> int:
    """The initial congestion window: RFC 6928 section 2, ``min(10*MSS, max(2*MSS, 14600))``.

    Ten segments rather than RFC 5681's three or four because ZeroTier paths are mostly
    broadband; RFC 6928 documents that this is safe on today's Internet.
    """
    return min(10 * mss, max(2 * mss, 14600))


class CongestionControl(Protocol):
    """What the connection asks of a congestion controller. All sizes are in bytes."""

    cwnd: int
    ssthresh: int
    mss: int  # lowered by path MTU discovery

    def on_ack(self, acked: int, flight: int, now: int, rtt_ms: float | None = None) -> None:
        """New data was cumulatively acknowledged outside loss recovery; ``rtt_ms`` is the
        smoothed RTT when one is known."""

    def on_loss(self, flight: int, now: int) -> None:
        """Fast retransmit: entering loss recovery (one congestion event per window)."""

    def on_recovery_exit(self, flight: int, now: int) -> None:
        """The ACK that covers ``recover`` arrived: recovery is over."""

    def on_rto(self, flight: int, now: int) -> None:
        """The retransmission timer expired."""


class NewReno:
    """Slow start and congestion avoidance per RFC 5681 section 3.1, reductions per RFC 6582.

    Recovery itself is driven by the connection with the RFC 6675 ``pipe`` estimate, so the
    controller sets ``cwnd = ssthresh`` on entry instead of RFC 5681's temporary inflation.
    """

    __slots__ = ("_acked_in_ca", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int, initial_cwnd: int | None = None) -> None:
        self.mss = mss
        self.cwnd = initial_cwnd if initial_cwnd is not None else initial_window(mss)
        # RFC 5681 section 3.1: "The initial value of ssthresh SHOULD be set arbitrarily high".
        self.ssthresh = 1 << 30
        self._acked_in_ca = 0

    def on_ack(self, acked: int, flight: int, now: int, rtt_ms: float | None = None) -> None:
        """Grow: RFC 5681 eq. (2) in slow start (byte counting, L = 1*SMSS per RFC 3465),
        and one SMSS per cwnd of acknowledged data in congestion avoidance (eq. (3)'s byte form).
        """
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)
            return
        self._acked_in_ca += acked
        if self._acked_in_ca >= self.cwnd:
            self._acked_in_ca -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, flight: int, now: int) -> None:
        """RFC 5681 eq. (4): ``ssthresh = max(FlightSize / 2, 2*SMSS)``."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._acked_in_ca = 0

    def on_recovery_exit(self, flight: int, now: int) -> None:
        """RFC 6582 section 3.2 step 3, option 1: ``min(ssthresh, max(FlightSize, SMSS) + SMSS)``
        so that a burst is not released when recovery ends with little data in flight."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)

    def on_rto(self, flight: int, now: int) -> None:
        """RFC 5681 section 3.1 eq. (4) and the loss window of one segment."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acked_in_ca = 0


class Cubic:
    """CUBIC (RFC 9438): window growth as a cubic function of the time since the last
    congestion event, with the Reno-friendly region of section 4.3 and fast convergence
    (section 4.7). Slow start is RFC 5681's (HyStart is not implemented)."""

    C: float = 0.4  # RFC 9438 section 5: C = 0.4
    BETA: float = 0.7  # RFC 9438 section 4.6: beta_cubic = 0.7

    __slots__ = ("_epoch", "_k", "_w_est", "_w_max", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int, initial_cwnd: int | None = None) -> None:
        self.mss = mss
        self.cwnd = initial_cwnd if initial_cwnd is not None else initial_window(mss)
        self.ssthresh = 1 << 30
        self._w_max = 0.0  # segments
        self._k = 0.0  # seconds
        self._epoch: int | None = None  # ms, start of the current congestion-avoidance epoch
        self._w_est = 0.0  # segments, the Reno-friendly estimate

    def on_ack(self, acked: int, flight: int, now: int, rtt_ms: float | None = None) -> None:
        """Slow start below ssthresh; otherwise move towards W_cubic(t + RTT) (section 4.2),
        never below the Reno-friendly W_est (section 4.3)."""
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)
            return
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self._epoch is None:
            self._epoch = now
            if self._w_max < cwnd_seg:
                self._w_max = cwnd_seg
                self._k = 0.0
            else:
                self._k = ((self._w_max - cwnd_seg) / self.C) ** (1 / 3)
            self._w_est = cwnd_seg
        rtt = (rtt_ms or 100.0) / 1000.0
        t = (now - self._epoch) / 1000.0
        target = self.C * (t + rtt - self._k) ** 3 + self._w_max
        target = min(max(target, cwnd_seg), 1.5 * cwnd_seg)
        alpha = 3 * (1 - self.BETA) / (1 + self.BETA)
        self._w_est += alpha * (acked / mss) / cwnd_seg
        if self._w_est > target:
            new = self._w_est
        else:
            new = cwnd_seg + (target - cwnd_seg) * (acked / mss) / cwnd_seg
        self.cwnd = max(int(new * mss), self.cwnd)

    def _reduce(self) -> None:
        cwnd_seg = self.cwnd / self.mss
        if cwnd_seg < self._w_max:  # fast convergence (section 4.7)
            self._w_max = cwnd_seg * (1 + self.BETA) / 2
        else:
            self._w_max = cwnd_seg
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self._epoch = None

    def on_loss(self, flight: int, now: int) -> None:
        """Section 4.6: multiplicative decrease by beta_cubic."""
        self._reduce()
        self.cwnd = self.ssthresh

    def on_recovery_exit(self, flight: int, now: int) -> None:
        """As for NewReno (RFC 6582 section 3.2 step 3), avoiding a burst."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)

    def on_rto(self, flight: int, now: int) -> None:
        """Section 4.8: reduce as for a congestion event, then restart from one segment."""
        self._reduce()
        self.cwnd = self.mss
