"""What the two SYNs of a TCP handshake agree, and the timestamp state that agreement switches on.

Split out of ``TcpConnection``: the SYN options are negotiated once (MSS per RFC 9293 3.7.1 and
RFC 6691, window scale and timestamps per RFC 7323, SACK-permitted per RFC 2018 section 2), and
the outcome is a value, :class:`SynAgreement`, which the connection copies into the flat fields
its per-segment paths read. :class:`Timestamps` owns TS.Recent and the per-connection clock
offset (RFC 7323 sections 4-5) and answers the three questions the connection asks of them:
what to put in the option, whether an arriving TSval becomes TS.Recent, and what RTT an echo
measures.
"""

from __future__ import annotations

from typing import Final

from ztnode.netstack.tcp_seq import SEQ_MASK, seq_diff

__all__ = [
    "DEFAULT_MSS_V4",
    "DEFAULT_MSS_V6",
    "MAX_WSCALE",
    "TIMESTAMP_OPTION_SPACE",
    "SynAgreement",
    "Timestamps",
    "wanted_wscale",
]

#: RFC 7323 section 2.3: the shift count is capped at 14 (a 1 GiB window).
MAX_WSCALE: Final = 14
#: RFC 9293 section 3.7.1: the MSS assumed when the peer sends no MSS option (IPv4); RFC 8200
#: section 5 gives 1280 - 60 = 1220 for IPv6.
DEFAULT_MSS_V4: Final = 536
DEFAULT_MSS_V6: Final = 1220
#: The timestamps option as sent on every segment: NOP NOP TS (RFC 7323 appendix A).
TIMESTAMP_OPTION_SPACE: Final = 12
#: No SMSS below this, whatever the peer announces (a floor against silly tiny segments).
MIN_SMSS: Final = 64


def wanted_wscale(recv_buffer: int, enabled: bool) -> int:
    """The smallest shift that lets a 16-bit window field cover ``recv_buffer`` (RFC 7323
    section 2.3), 0 when window scaling is off."""
    ws = 0
    if enabled:
        while (0xFFFF << ws) < recv_buffer and ws < MAX_WSCALE:
            ws += 1
    return ws


class SynAgreement:
    """The options in force for the connection's life, from our config and the peer's SYN.

    A plain class rather than a frozen dataclass: one is made per connection, and a dataclass's
    generated ``__init__`` stays interpreted in the compiled build (six guarded attribute sets,
    about 12 000 instructions a connect). Nothing assigns to one after it is made."""

    __slots__ = ("mss", "rcv_wscale", "sack", "snd_wscale", "timestamps", "window_scaling")

    def __init__(
        self,
        mss: int,
        window_scaling: bool,
        snd_wscale: int,
        rcv_wscale: int,
        sack: bool,
        timestamps: bool,
    ) -> None:
        #: SMSS: the smaller of both MSS values, less the room of the options every segment
        #: carries (RFC 6691 section 2: otherwise every full segment would be IP-fragmented).
        self.mss = mss
        self.window_scaling = window_scaling
        self.snd_wscale = snd_wscale
        self.rcv_wscale = rcv_wscale
        self.sack = sack
        self.timestamps = timestamps

    def __repr__(self) -> str:
        return (
            f"SynAgreement(mss={self.mss}, window_scaling={self.window_scaling}, "
            f"snd_wscale={self.snd_wscale}, rcv_wscale={self.rcv_wscale}, sack={self.sack}, "
            f"timestamps={self.timestamps})"
        )

    @staticmethod
    def from_peer(
        offer: tuple[bool, bool, bool],
        peer: tuple[int | None, int | None, bool, bool],
        *,
        our_mss: int,
        want_wscale: int,
        ipv6: bool,
    ) -> SynAgreement:
        """``offer`` is what our config allows (window scaling, SACK, timestamps); ``peer``
        what the peer's SYN carried (MSS, window scale, SACK-permitted, a timestamp). An option
        is in force only when both sides offer it (RFC 7323 2.2 and 3.2, RFC 2018 section 2)."""
        ws_ok, sack_ok, ts_ok = offer
        peer_mss, peer_wscale, peer_sack, peer_ts = peer
        if peer_mss is None:
            peer_mss = DEFAULT_MSS_V6 if ipv6 else DEFAULT_MSS_V4
        mss = max(min(peer_mss, our_mss), MIN_SMSS)
        ts = ts_ok and peer_ts
        if ts:
            mss = max(mss - TIMESTAMP_OPTION_SPACE, MIN_SMSS)
        ws = ws_ok and peer_wscale is not None
        return SynAgreement(
            mss,
            ws,
            min(peer_wscale, MAX_WSCALE) if ws and peer_wscale is not None else 0,
            want_wscale if ws else 0,
            sack_ok and peer_sack,
            ts,
        )


class Timestamps:
    """RFC 7323 timestamps: TSval clock, TS.Recent, and RTT from echoes."""

    __slots__ = ("enabled", "offset", "recent")

    def __init__(self) -> None:
        self.enabled = False
        self.recent = 0
        #: Added to the millisecond clock (RFC 7323 section 5.4 suggests randomising it; the
        #: connection uses its ISS), which also keeps 0 from meaning "no echo".
        self.offset = 1

    def value(self, now: int) -> int:
        """TSval for a segment sent at ``now``."""
        return (now + self.offset) & SEQ_MASK

    def option(self, now: int) -> tuple[int, int] | None:
        """(TSval, TSecr) for a non-SYN segment, or None when not negotiated."""
        return (self.value(now), self.recent) if self.enabled else None

    def remember(self, tsval: int, seq_u: int, last_ack_sent: int) -> None:
        """RFC 7323 section 4.3 (2): a segment starting at or left of the edge we last ACKed
        sets TS.Recent, unless its TSval is older. Checked before acceptability, so the ACK
        answering a duplicate (whose first copy's ACK was lost) echoes the duplicate's TSval,
        not a stale one that would fake a huge RTT. PAWS (section 5) is not implemented: our
        windows never approach 2**31 bytes."""
        if seq_u <= last_ack_sent and seq_diff(tsval, self.recent) >= 0:
            self.recent = tsval

    def rtt_sample(self, now: int, ts: tuple[int, int] | None) -> int | None:
        """The RTT an echoed TSecr measures (RFC 7323 section 4.1, valid for retransmissions
        too), or None when there is no usable echo."""
        if self.enabled and ts is not None and ts[1] != 0:
            return seq_diff(self.value(now), ts[1])
        return None
