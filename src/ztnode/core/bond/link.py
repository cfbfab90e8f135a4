"""One path as a bond sees it (the reference's ``NominatedPath``) and its liveness monitor.

ZeroTierOne 1.14.1 judges a bonded path alive while anything arrived on it within
``failoverInterval`` (5 s by default) and sends an ECHO heartbeat when a path has been quiet
for a third of that, so a dead link is noticed after about five seconds.

ztnode keeps that rule and adds a faster one for links that matter right now (``fastFailover``,
on by default): while frames flow to or from the peer, a path quiet for two round trips (at
least :data:`PROBE_QUIET_MIN` ms) is probed with an ECHO at most every :data:`PROBE_SPACING`
ms (the remote answers at most one ECHO per 166 ms per path), and a path whose last
:data:`PROBES_TO_FAIL` probes (more on a lossy link) all went unanswered past their timeout
is dead at once. On a LAN a link that dies under traffic is given up in about half a second
(tests/core/test_bond_world.py,
docs/performance.md). Liveness counts only *authenticated* packets from the peer on the path:
junk spoofed from its address cannot keep a dead link in use (the reference counts every
datagram).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Final

from ztnode.core.bond.qos import QosTracker
from ztnode.core.bond.settings import LinkMode, LinkSpec
from ztnode.core.path import LATENCY_UNKNOWN, Path

PROBE_SPACING: Final = 170  # ms between probes on one path (remote answers 1 per 166 ms)
PROBE_QUIET_MIN: Final = 100  # ms of silence on a busy path before it is probed
PROBE_TIMEOUT_MIN: Final = 150  # ms before an unanswered probe counts as missed
PROBES_TO_FAIL: Final = 2  # in a row, on a link whose probes come back (see probes_to_fail)
PROBE_HISTORY: Final = 64  # answered/missed probes kept for the loss estimate
MAX_PENDING_PROBES: Final = 4
OPTIMIZE_INTERVAL: Final = 15_000  # ZT_BOND_OPTIMIZE_INTERVAL (trial period, optimize)


@dataclass(frozen=True, slots=True)
class Probe:
    packet_id: int
    sent: int


class BondPath:
    """A path nominated to a bond, with what the bond tracks about it."""

    __slots__ = (
        "_rtt_known",
        "acked_at",
        "alive",
        "assigned_flows",
        "bonded",
        "bytes_in",
        "bytes_out",
        "bytes_since_ack",
        "eligible",
        "failover_score",
        "last_ack_sent",
        "last_alive_toggle",
        "last_eligibility",
        "last_in",
        "last_probe",
        "link",
        "missed_in_row",
        "nominated",
        "only_path_on_link",
        "packets_in",
        "packets_out",
        "path",
        "probe_failed",
        "probe_history",
        "probes",
        "qos",
        "relative_capacity",
        "relative_quality",
        "rttvar",
        "should_avoid",
        "srtt",
        "throughput",
    )

    def __init__(self, path: Path, link: LinkSpec, now: int) -> None:
        self.path = path
        self.link = link
        self.nominated = now
        # Counted from nomination: a path is nominated because it just carried an OK.
        self.last_in = now
        self.alive = True
        self.eligible = False
        self.bonded = False
        self.should_avoid = False
        self.last_alive_toggle = now
        self.last_eligibility = now
        self.only_path_on_link = True
        self.failover_score = 0.0
        self.relative_quality = 0.0
        self.relative_capacity = 1.0
        self.assigned_flows = 0
        self.packets_in = self.packets_out = 0
        self.bytes_in = self.bytes_out = 0
        # ACK (0x12): bytes received here since our last ACK; the peer's ACKs give our send
        # throughput on the path (bytes/s, smoothed), which the reference leaves at 0.
        self.bytes_since_ack = 0
        self.last_ack_sent = now
        self.acked_at = 0
        self.throughput = 0.0
        self.qos = QosTracker()
        self.probes: list[Probe] = []
        self.last_probe = -(10**12)
        self.probe_failed = False
        self.missed_in_row = 0
        self.probe_history: collections.deque[bool] = collections.deque(maxlen=PROBE_HISTORY)
        self.srtt = 0.0
        self.rttvar = 0.0
        self._rtt_known = False

    # ------------------------------------------------------------------ link settings

    @property
    def is_v6(self) -> bool:
        return self.path.is_ipv6

    def allowed(self) -> bool:
        """The link's ``ipvPref`` admits this address family (and the link is enabled)."""
        pref = self.link.ipv_pref
        if not self.link.enabled:
            return False
        if not pref:
            return True
        return (pref in (6, 46, 64)) if self.is_v6 else (pref in (4, 46, 64))

    def is_spare(self) -> bool:
        return self.link.mode == LinkMode.SPARE

    def preferred(self) -> bool:
        pref = self.link.ipv_pref
        return self.only_path_on_link or (pref in (6, 64) if self.is_v6 else pref in (4, 46))

    def in_trial(self, now: int) -> bool:
        return now - self.nominated < OPTIMIZE_INTERVAL

    # ------------------------------------------------------------------ traffic

    def received(self, now: int) -> None:
        """An authenticated packet from the peer arrived on this path."""
        self.last_in = now
        self.missed_in_row = 0
        self.probe_failed = False

    def ack_received(self, acked: int, now: int) -> None:
        """The peer received ``acked`` bytes on this path since its previous ACK."""
        if self.acked_at and now > self.acked_at:
            rate = acked * 1000.0 / (now - self.acked_at)
            self.throughput = rate if not self.throughput else 0.75 * self.throughput + 0.25 * rate
        self.acked_at = now

    def probe_sent(self, packet_id: int, now: int) -> None:
        self.last_probe = now
        self.probes.append(Probe(packet_id, now))
        if len(self.probes) > MAX_PENDING_PROBES:
            del self.probes[0]

    def probe_answered(self, packet_id: int, now: int) -> bool:
        """An OK(ECHO) for one of our probes: an RTT sample (RFC 6298 smoothing)."""
        for p in self.probes:
            if p.packet_id == packet_id:
                rtt = float(max(0, now - p.sent))
                if not self._rtt_known:
                    self.srtt, self.rttvar, self._rtt_known = rtt, rtt / 2, True
                else:
                    self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
                    self.srtt = 0.875 * self.srtt + 0.125 * rtt
                self.probe_history.append(True)
                self.received(now)
                return True
        return False

    def probe_timeout(self) -> int:
        """RFC 6298's RTO formula on the probe round trips (or the path's HELLO latency
        before any probe came back), at least :data:`PROBE_TIMEOUT_MIN`."""
        if self._rtt_known:
            srtt, rttvar = self.srtt, self.rttvar
        elif self.path.latency != LATENCY_UNKNOWN:
            srtt, rttvar = float(self.path.latency), self.path.latency / 2
        else:
            return PROBE_TIMEOUT_MIN * 2
        return max(PROBE_TIMEOUT_MIN, int(srtt + 4 * rttvar) + 1)

    def probe_quiet(self) -> int:
        """How long a busy path may be silent before it is probed (two round trips)."""
        rtt = self.srtt if self._rtt_known else None
        if rtt is None and self.path.latency != LATENCY_UNKNOWN:
            rtt = float(self.path.latency)
        return max(PROBE_QUIET_MIN, int(2 * rtt) if rtt is not None else 0)

    def check_probes(self, now: int, *, count: bool = True) -> bool:
        """Retire probes that timed out, counting them as misses with ``count``; True when
        the path just failed on them (curate() then makes it ineligible)."""
        timeout = self.probe_timeout()
        expired = [p for p in self.probes if now - p.sent >= timeout]
        if not expired:
            return False
        self.probes = [p for p in self.probes if now - p.sent < timeout]
        # A probe after which something else arrived proves nothing either way.
        missed = [p for p in expired if p.sent >= self.last_in] if count else []
        if not missed:
            return False
        self.probe_history.extend(False for _ in missed)
        self.missed_in_row += len(missed)
        if self.missed_in_row >= self.probes_to_fail() and not self.probe_failed:
            self.probe_failed = True
            return True
        return False

    def probes_to_fail(self) -> int:
        """Misses in a row that kill the path: :data:`PROBES_TO_FAIL`, one more on a link
        that has lost over 2 % of its recent probes, so a lossy but working link is seldom
        given up on an unlucky run (three in a row at 5 % loss: one run in 8 000) while a
        dead one still goes within about 0.8 s."""
        h, run = self.probe_history, self.missed_in_row
        earlier = len(h) - run  # the loss before this run of misses (which is the question)
        loss = (h.count(False) - run) / earlier if earlier > 0 else 0.0
        return PROBES_TO_FAIL + (loss > 0.02)

    @property
    def rtt(self) -> float | None:
        return self.srtt if self._rtt_known else None

    @property
    def probe_loss(self) -> float:
        """Share of recent probes that went unanswered (0 with no history)."""
        h = self.probe_history
        return (h.count(False) / len(h)) if h else 0.0
