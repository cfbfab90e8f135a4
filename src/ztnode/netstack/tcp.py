"""A sans-I/O TCP connection (transmission control block): RFC 9293 and friends.

``TcpConnection`` is driven like every other protocol object in ztnode (the architecture
notes' "five verbs"):

* inputs: API calls (``connect``, ``listen``, ``send``, ``recv``, ``shutdown``, ``close``,
  ``abort``, option setters), ``receive_segment(seg, now)`` and ``handle_timer(now)``;
* outputs: ``segments_to_send(now)``, ``get_timer()`` and ``next_event()``.

It never reads a clock (``now`` is an int in milliseconds), never touches a socket, and takes its
initial sequence number from an injected ``isn`` callable. Segments are the small ``Segment``
record below, independent of the wire codec; the IP layer maps them to and from ``tcpwire``.

Internally every sequence number is kept *unwrapped* (an unbounded int counted from the ISN, so
the SYN is 0) and converted to and from 32-bit wire values only at the boundary; that keeps the
modular arithmetic of RFC 9293 section 3.4 in two functions instead of in every comparison.

Implemented: the eleven states of RFC 9293 section 3.3.2 with simultaneous open and close;
RST generation and acceptance with the RFC 5961 blind-attack checks and rate-limited challenge
ACKs; MSS from the MTU (RFC 9293 3.7.1, RFC 6691); window scaling (RFC 7323 section 2) and
timestamps for RTT measurement (RFC 7323 sections 3-4; PAWS is not); send and receive buffers
with backpressure and receiver/sender silly-window avoidance (RFC 9293 3.8.6.2); a bounded
out-of-order queue; RFC 6298 retransmission timers with Karn's algorithm; delayed ACKs (RFC 5681
4.2, RFC 9293 3.8.6.3); Nagle and TCP_NODELAY; fast retransmit and recovery with SACK (RFC 2018,
RFC 6675) and NewReno fallback (RFC 6582), limited transmit (RFC 3042); congestion control
behind ``tcp_cc.CongestionControl`` (NewReno by default, CUBIC per RFC 9438); zero-window
probing (RFC 9293 3.8.6.1); keepalives (RFC 1122 4.2.3.6); TIME-WAIT with a configurable MSL.

State lives with the part that owns it, as in aioquic's recovery and stream modules: the send
half (send sequence space, send buffer, FIN, the send loop) in ``tcp_sender.TcpSender``; loss
recovery, the SACK scoreboard and congestion control in ``tcp_recovery.LossRecovery``; RTT
estimation in ``tcp_rto``; deadlines and probe counts in ``tcp_timers``; received data in
``tcp_rxqueue.ReceiveQueue`` and the advertised window in ``tcp_rcvwnd``; SYN option agreement
and timestamps in ``tcp_options``; the legal transitions in ``tcp_states``. The connection keeps
the API, segment arrival (acceptability, RST/SYN/ACK checks, text and FIN), ACK timing and the
timers' effects.

A LISTEN connection turns itself into the connection for the first SYN it accepts (the RFC
model); a stack that serves many clients keeps a listening socket of its own and gives each
arriving SYN a fresh ``TcpConnection`` on which it calls ``listen()`` then ``receive_segment``.
Segments for which no connection exists are answered with ``reset_for(seg)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Final

from ztnode.budget import SecondBudget
from ztnode.errors import LocalProtocolError
from ztnode.netstack import tcpwire as wire
from ztnode.netstack.tcp_cc import CongestionControl, NewReno
from ztnode.netstack.tcp_options import (
    DEFAULT_MSS_V4,
    DEFAULT_MSS_V6,
    MIN_SMSS,
    TIMESTAMP_OPTION_SPACE,
    SynAgreement,
    Timestamps,
    wanted_wscale,
)
from ztnode.netstack.tcp_rcvwnd import ReceiveWindow, acceptable, trim
from ztnode.netstack.tcp_recovery import LossRecovery
from ztnode.netstack.tcp_rto import RtoEstimator
from ztnode.netstack.tcp_rxqueue import ReceiveQueue
from ztnode.netstack.tcp_sender import TcpSender
from ztnode.netstack.tcp_seq import SEQ_MASK, seq_add, seq_diff, seq_le, seq_lt
from ztnode.netstack.tcp_states import (
    ABORT_SENDS_RST,
    AFTER_CLOSE,
    CAN_CONNECT,
    CAN_LISTEN,
    CAN_SEND,
    KEEPALIVE_STATES,
    RECEIVES_TEXT,
    SYNCHRONIZED,
    TcpState,
    check_transition,
)
from ztnode.netstack.tcp_timers import PersistAction, TcpTimers

__all__ = [
    "ClosedEvent",
    "ConnectedEvent",
    "ConnectionResetEvent",
    "DataAvailableEvent",
    "Flags",
    "PeerClosedEvent",
    "Segment",
    "TcpConfig",
    "TcpConnection",
    "TcpEvent",
    "TcpState",
    "TimedOutEvent",
    "WritableEvent",
    "mss_for_mtu",
    "reset_for",
    "seq_add",
    "seq_diff",
    "seq_le",
    "seq_lt",
]

#: RFC 2018 section 3: at most 4 blocks fit in 40 option bytes; 3 leave room for timestamps.
MAX_SACK_BLOCKS: Final = 3


def mss_for_mtu(mtu: int, *, ipv6: bool = False) -> int:
    """The MSS to announce for a link MTU: MTU minus fixed IP and TCP headers (RFC 9293 3.7.1,
    RFC 6691 section 2: options are *not* subtracted, the sender accounts for them)."""
    mss = mtu - (60 if ipv6 else 40)
    if mss < 88:
        raise LocalProtocolError(f"MTU {mtu} is too small for TCP")
    return min(mss, 0xFFFF)


# ---------------------------------------------------------------------------------------------
# Segments, states, events
# ---------------------------------------------------------------------------------------------


class Flags(IntFlag):
    """TCP control bits (RFC 9293 section 3.1), numbered as on the wire."""

    NONE = 0
    FIN = wire.FIN
    SYN = wire.SYN
    RST = wire.RST
    PSH = wire.PSH
    ACK = wire.ACK
    URG = wire.URG


class Segment:
    """One TCP segment as the connection sees it, independent of the wire codec.

    ``window`` is the raw 16-bit header field (already shifted right by the sender's scale).
    ``sack_blocks`` holds wire sequence numbers ``(left, right)``; ``ts`` is ``(TSval, TSecr)``
    and is carried but not used yet.

    A value: never changed once made (nothing assigns its fields), equal to another with the
    same fields. A plain class rather than a dataclass because one is made per segment each
    way: a dataclass's ``__init__`` is generated Python even in the compiled build, a plain
    one compiles to a C constructor.
    """

    __slots__ = (
        "ack",
        "flags",
        "mss",
        "payload",
        "sack_blocks",
        "sack_permitted",
        "seq",
        "ts",
        "window",
        "wscale",
    )

    def __init__(
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: bytes = b"",
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        sack_blocks: tuple[tuple[int, int], ...] = (),
        ts: tuple[int, int] | None = None,
    ) -> None:
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = sack_blocks
        self.ts = ts

    def astuple(self) -> tuple[object, ...]:
        """The fields in their order (what equality and the hash compare)."""
        return (
            self.seq,
            self.ack,
            self.flags,
            self.window,
            self.payload,
            self.mss,
            self.wscale,
            self.sack_permitted,
            self.sack_blocks,
            self.ts,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash(self.astuple())

    def __repr__(self) -> str:
        return (
            f"Segment(seq={self.seq}, ack={self.ack}, flags={self.flags:#x}, "
            f"window={self.window}, payload={self.payload[:16]!r}"
            f"{'...' if len(self.payload) > 16 else ''} ({len(self.payload)} bytes), "
            f"mss={self.mss}, wscale={self.wscale}, sack_permitted={self.sack_permitted}, "
            f"sack_blocks={self.sack_blocks}, ts={self.ts})"
        )

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload length plus one for each of SYN and FIN (RFC 9293 section 3.4)."""
        return (
            len(self.payload)
            + (1 if self.flags & wire.SYN else 0)
            + (1 if self.flags & wire.FIN else 0)
        )


# Plain ints for the hot paths (IntFlag arithmetic costs a microsecond per operation), from the
# codec, which is the one source of the bits.
_NONE: Final = 0
_FIN: Final = wire.FIN
_SYN: Final = wire.SYN
_RST: Final = wire.RST
_PSH: Final = wire.PSH
_ACK: Final = wire.ACK
_URG: Final = wire.URG


@dataclass(frozen=True, slots=True)
class ConnectedEvent:
    """The three-way handshake completed (ESTABLISHED reached)."""


@dataclass(frozen=True, slots=True)
class DataAvailableEvent:
    """The receive buffer went from empty to non-empty; read with ``recv`` until it is empty."""


@dataclass(frozen=True, slots=True)
class WritableEvent:
    """Send-buffer space was freed after ``send`` accepted less than it was given."""


@dataclass(frozen=True, slots=True)
class PeerClosedEvent:
    """The peer's FIN was reached in sequence: no more data will arrive (EOF)."""


@dataclass(frozen=True, slots=True)
class ConnectionResetEvent:
    """An acceptable RST arrived (or the peer refused the connection)."""


@dataclass(frozen=True, slots=True)
class TimedOutEvent:
    """Retransmissions, zero-window probes or keepalives went unanswered too long."""


@dataclass(frozen=True, slots=True)
class HostUnreachableEvent:
    """The handshake's next hop never answered ARP or neighbor solicitation (EHOSTUNREACH,
    as Linux fails a connect after its neighbor entry fails)."""


@dataclass(frozen=True, slots=True)
class ClosedEvent:
    """The connection reached CLOSED; always the last event."""


# The events that carry nothing, made once: the per-segment ones would otherwise construct an
# object through a generated (interpreted) __init__ each time. Equal to any new instance.
_DATA_AVAILABLE: Final = DataAvailableEvent()
_WRITABLE: Final = WritableEvent()

TcpEvent = (
    ConnectedEvent
    | DataAvailableEvent
    | WritableEvent
    | PeerClosedEvent
    | ConnectionResetEvent
    | TimedOutEvent
    | HostUnreachableEvent
    | ClosedEvent
)


@dataclass(slots=True, init=False)
class TcpConfig:
    """Tunables. Defaults follow the cited RFCs or common practice (Linux) where RFCs allow."""

    #: Link MTU the connection runs over; the announced MSS is derived from it.
    mtu: int = 2800
    ipv6: bool = False
    send_buffer: int = 256 * 1024
    recv_buffer: int = 256 * 1024
    #: Bytes of out-of-order data kept at most (it must also fit in the advertised window).
    ooo_limit: int = 256 * 1024
    #: Maximum segment lifetime; TIME-WAIT lasts 2*MSL (RFC 9293 section 3.4.2 says 2 minutes;
    #: Linux uses a fixed 60 s TIME-WAIT, hence 30 s here).
    msl_ms: int = 30_000
    #: RFC 6298 section 2.1: initial RTO of one second.
    initial_rto_ms: int = 1000
    #: RFC 6298 section 2.4 says 1 s; like Linux we default to 200 ms and let it be configured.
    min_rto_ms: int = 200
    #: RFC 6298 section 2.5: a maximum of at least 60 s may be placed on the RTO.
    max_rto_ms: int = 60_000
    #: RFC 1122 4.2.3.5 R2 for SYNs (>= 3 minutes there; Linux tcp_syn_retries = 6).
    syn_retries: int = 6
    #: RFC 1122 4.2.3.5 R2 for data (Linux tcp_retries2 = 15).
    max_retries: int = 15
    #: RFC 9293 3.8.6.3 / RFC 5681 4.2: delay at most 500 ms (the brief: at most 200 ms). The
    #: default is Linux's 40 ms floor: with a 200 ms minimum RTO, a 200 ms delay would make the
    #: sender's timer fire before the ACK of a lone small segment arrives.
    delayed_ack_ms: int = 40
    nodelay: bool = False
    window_scaling: bool = True
    #: RFC 7323 section 3: the timestamps option, used for RTT measurement (RTTM) on every
    #: ACK, which also disambiguates retransmissions (so RFC 6298 backoff can be cleared).
    timestamps: bool = True
    sack: bool = True
    #: Segmentation offload: new data may leave as one segment of up to this many MSS-sized
    #: pieces, which the layer below cuts up (Linux's GSO). 1 (the default) means every
    #: segment is at most one MSS, for a layer below that cannot cut.
    gso_segments: int = 1
    keepalive: bool = False
    #: RFC 1122 4.2.3.6: the idle interval MUST default to no less than two hours.
    keepalive_idle_ms: int = 7_200_000
    keepalive_interval_ms: int = 75_000
    keepalive_count: int = 9
    #: How long FIN-WAIT-2 may last after ``close()`` (Linux tcp_fin_timeout); None = forever.
    fin_wait_2_timeout_ms: int | None = 60_000
    #: RFC 5961 section 7: challenge ACKs per second at most (Linux: 1000 per host).
    challenge_ack_limit: int = 100
    #: Factory for the congestion controller; gets the effective send MSS.
    congestion_control: Callable[[int], CongestionControl] = field(default=NewReno)
    #: Take the header-prediction fast path (``TcpConnection._rx_predicted``); tests turn it
    #: off to check that it changes nothing but speed.
    predict: bool = True

    # Written out rather than generated by the dataclass: one config is made per connection,
    # and a dataclass's generated ``__init__`` (and ``dataclasses.replace``) stay Python even in
    # the compiled build. tests/tcp/test_config.py keeps these defaults equal to the fields'.
    def __init__(
        self,
        mtu: int = 2800,
        ipv6: bool = False,
        send_buffer: int = 256 * 1024,
        recv_buffer: int = 256 * 1024,
        ooo_limit: int = 256 * 1024,
        msl_ms: int = 30_000,
        initial_rto_ms: int = 1000,
        min_rto_ms: int = 200,
        max_rto_ms: int = 60_000,
        syn_retries: int = 6,
        max_retries: int = 15,
        delayed_ack_ms: int = 40,
        nodelay: bool = False,
        window_scaling: bool = True,
        timestamps: bool = True,
        sack: bool = True,
        gso_segments: int = 1,
        keepalive: bool = False,
        keepalive_idle_ms: int = 7_200_000,
        keepalive_interval_ms: int = 75_000,
        keepalive_count: int = 9,
        fin_wait_2_timeout_ms: int | None = 60_000,
        challenge_ack_limit: int = 100,
        congestion_control: Callable[[int], CongestionControl] = NewReno,
        predict: bool = True,
    ) -> None:
        self.mtu = mtu
        self.ipv6 = ipv6
        self.send_buffer = send_buffer
        self.recv_buffer = recv_buffer
        self.ooo_limit = ooo_limit
        self.msl_ms = msl_ms
        self.initial_rto_ms = initial_rto_ms
        self.min_rto_ms = min_rto_ms
        self.max_rto_ms = max_rto_ms
        self.syn_retries = syn_retries
        self.max_retries = max_retries
        self.delayed_ack_ms = delayed_ack_ms
        self.nodelay = nodelay
        self.window_scaling = window_scaling
        self.timestamps = timestamps
        self.sack = sack
        self.gso_segments = gso_segments
        self.keepalive = keepalive
        self.keepalive_idle_ms = keepalive_idle_ms
        self.keepalive_interval_ms = keepalive_interval_ms
        self.keepalive_count = keepalive_count
        self.fin_wait_2_timeout_ms = fin_wait_2_timeout_ms
        self.challenge_ack_limit = challenge_ack_limit
        self.congestion_control = congestion_control
        self.predict = predict

    def derive(self, *, mtu: int, ipv6: bool, gso_segments: int) -> TcpConfig:
        """A copy for one connection, with its path's MTU, family and offload."""
        return TcpConfig(
            mtu,
            ipv6,
            self.send_buffer,
            self.recv_buffer,
            self.ooo_limit,
            self.msl_ms,
            self.initial_rto_ms,
            self.min_rto_ms,
            self.max_rto_ms,
            self.syn_retries,
            self.max_retries,
            self.delayed_ack_ms,
            self.nodelay,
            self.window_scaling,
            self.timestamps,
            self.sack,
            gso_segments,
            self.keepalive,
            self.keepalive_idle_ms,
            self.keepalive_interval_ms,
            self.keepalive_count,
            self.fin_wait_2_timeout_ms,
            self.challenge_ack_limit,
            self.congestion_control,
            self.predict,
        )

    def copy(self) -> TcpConfig:
        """A copy (the option setters change a connection's own config, never a shared one)."""
        return self.derive(mtu=self.mtu, ipv6=self.ipv6, gso_segments=self.gso_segments)


def reset_for(seg: Segment) -> Segment | None:
    """The RST to answer a segment for which no connection exists (RFC 9293 section 3.10.7.1).

    The stack uses this for ports nobody listens on; a CLOSED ``TcpConnection`` does the same.
    """
    if seg.flags & _RST:
        return None
    if seg.flags & _ACK:
        return Segment(seq=seg.ack, ack=0, flags=_RST, window=0)
    return Segment(seq=0, ack=seq_add(seg.seq, seg.seg_len), flags=_RST | _ACK, window=0)


def _first(t: tuple[int, object]) -> int:
    return t[0]


class TcpConnection:
    """One TCP connection (a TCB). See the module docstring for the driving contract.

    ``isn`` returns the initial send sequence number; inject a seeded one in tests and one built
    on RFC 6528 (keyed hash of the 4-tuple plus a clock) in the stack.
    """

    def __init__(
        self,
        config: TcpConfig | None = None,
        *,
        isn: Callable[[], int],
        private_config: bool = False,
    ) -> None:
        # A private copy: the option setters mutate it, and configs are often shared
        # (``private_config``: the caller made this one for us alone, so no second copy).
        if config is None:
            cfg = TcpConfig()
        elif private_config:
            cfg = config
        else:
            cfg = config.copy()
        self.config = cfg
        #: Segments the header-prediction fast path took (the rest took the general path).
        self.predicted = 0
        self._isn_source = isn
        self.state = TcpState.CLOSED  # the one assignment outside _set_state
        self._events: deque[TcpEvent] = deque()
        self._out: list[Segment] = []  # control segments queued outside the output loop
        self._passive = False
        self.our_mss = mss_for_mtu(cfg.mtu, ipv6=cfg.ipv6)
        mss = DEFAULT_MSS_V6 if cfg.ipv6 else DEFAULT_MSS_V4
        # The send half owns loss recovery, made again once the SYNs fix MSS and SACK.
        self.snd = TcpSender(mss, LossRecovery(cfg.congestion_control(mss), mss, sack=False))
        # Receive side (unwrapped: the peer's SYN is 0) and ACK generation.
        self.irs = 0
        self.rcv_nxt = 0
        self.rwnd = ReceiveWindow(self.config.recv_buffer, self.our_mss)
        self._want_wscale = 0
        self._ws_enabled = False
        self.ts = Timestamps()
        self._last_ack_sent = 0
        self.rxq = ReceiveQueue()
        # The queue's own buffers (mutated in place, never rebound): plain references for the
        # in-order append and the header-prediction test.
        self._rbuf = self.rxq.buf
        self._ooo = self.rxq.ooo
        self._rcv_fin_seq: int | None = None
        self._eof = False
        self._read_closed = False
        self._ack_now = False
        self._segs_since_ack = 0
        self.rtt = RtoEstimator(cfg.initial_rto_ms, cfg.min_rto_ms, cfg.max_rto_ms)
        self.timers = TcpTimers()
        self._retries = 0
        self._challenges = SecondBudget()
        #: Counters by reason for dropped or unusual segments (observability, tests).
        self.counters: dict[str, int] = {}
        self.retransmitted_bytes = 0
        self.retransmitted_segments = 0

    # =========================================================================================
    # API calls
    # =========================================================================================

    def listen(self) -> None:
        """Passive OPEN (RFC 9293 3.10.1): CLOSED -> LISTEN."""
        if self.state not in CAN_LISTEN:
            raise LocalProtocolError(f"listen() needs CLOSED, connection is {self.state.name}")
        self._passive = True
        self._set_state(TcpState.LISTEN)

    def connect(self, now: int) -> None:
        """Active OPEN (RFC 9293 3.10.1): CLOSED -> SYN-SENT, or LISTEN -> SYN-SENT."""
        if self.state not in CAN_CONNECT:
            raise LocalProtocolError(f"connect() needs CLOSED, connection is {self.state.name}")
        self._passive = False
        self._choose_iss()
        self.timers.heard(now)
        self._set_state(TcpState.SYN_SENT)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how many bytes fit in the send buffer (backpressure).

        When fewer than ``len(data)`` were accepted a ``WritableEvent`` follows once the peer
        acknowledges data. Allowed before the handshake completes (RFC 9293 3.10.2 queues it).
        """
        if self.snd.fin_seq is not None:
            raise LocalProtocolError("send() after shutdown()/close()")
        if self.state not in CAN_SEND:
            raise LocalProtocolError(f"send() on a connection in {self.state.name}")
        return self.snd.write(data, self.config.send_buffer)

    @property
    def send_buffer_free(self) -> int:
        """Bytes ``send`` would accept now."""
        return self.config.send_buffer - len(self.snd.data)

    @property
    def unacked(self) -> int:
        """Bytes written by the application and not yet acknowledged by the peer."""
        return len(self.snd.data)

    def recv(self, max_bytes: int = 1 << 30) -> bytes:
        """Take up to ``max_bytes`` of in-order data; ``b""`` when none is buffered.

        Reading may open the receive window; a window update goes out with the next
        ``segments_to_send`` when it grows by the RFC 9293 3.8.6.2.2 threshold.
        """
        if not self._rbuf:
            return b""
        out = self.rxq.read(max_bytes)
        if self.state in RECEIVES_TEXT and self.rwnd.worth_announcing(
            self.rcv_nxt, len(self._rbuf)
        ):
            self._ack_now = True
        return out

    @property
    def srtt(self) -> float | None:
        """Smoothed RTT in ms (RFC 6298), None before the first sample."""
        return self.rtt.srtt

    @property
    def rttvar(self) -> float:
        """RTT variation in ms (RFC 6298)."""
        return self.rtt.rttvar

    @property
    def rto(self) -> int:
        """The current retransmission timeout in ms, backoff included."""
        return self.rtt.rto

    @property
    def cc(self) -> CongestionControl:
        """The congestion controller (owned by :attr:`recovery`)."""
        return self.snd.recovery.cc

    def hand_over_time_wait(self) -> None:
        """TIME-WAIT goes on elsewhere (the stack's compact record, see
        :mod:`ztnode.netstack.tcp_timewait`): this connection is done (CLOSED, and the
        application hears ``ClosedEvent`` as it would after 2*MSL)."""
        if self.state is TcpState.TIME_WAIT:
            self._to_closed()

    def reopened_by(self, seg: Segment) -> bool:
        """May this bare SYN end our TIME-WAIT and open a new connection on the same 4-tuple?
        RFC 6191 (and Linux): yes when it is provably newer than the old connection: its
        timestamp above the last one we saw when both used timestamps, else its sequence
        number above RCV.NXT (RFC 1122 4.2.2.13). Without this a client that picks a port
        whose old connection is still in TIME-WAIT here waits out a SYN retransmission."""
        if self.state is not TcpState.TIME_WAIT or seg.flags & (_SYN | _ACK | _RST) != _SYN:
            return False
        if self.ts.enabled and seg.ts is not None:
            return seq_diff(seg.ts[0], self.ts.recent) > 0
        return seq_diff(seg.seq, self._wire_rcv(self.rcv_nxt)) > 0

    @property
    def wants_output(self) -> bool:
        """Something must go out at the next ``segments_to_send`` regardless of new data: an
        ACK or window update is owed, or a control segment is queued."""
        return self._ack_now or bool(self._out)

    @property
    def readable(self) -> int:
        """Bytes waiting in the receive buffer."""
        return len(self._rbuf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN was reached and every byte before it has been read."""
        return self._eof and not self._rbuf

    def shutdown(self, now: int) -> None:
        """CLOSE per RFC 9293 3.10.4, i.e. a half close: our FIN follows the queued data.

        Reading continues to work until the peer's FIN.
        """
        st = self.state
        if st in (TcpState.LISTEN, TcpState.SYN_SENT):
            self._to_closed()
            return
        if st is TcpState.CLOSED:
            raise LocalProtocolError("shutdown() on a closed connection")
        after = AFTER_CLOSE.get(st)
        if self.snd.fin_seq is not None or after is None:
            return  # our FIN is queued already
        self._set_state(after)
        self.snd.fin_seq = self.snd.buf.end()

    def close(self, now: int) -> None:
        """Full close: ``shutdown`` plus "we will not read". Like Linux (and RFC 2525 2.17), if
        unread data is buffered, or data arrives later, the connection is reset instead."""
        if self.state is TcpState.CLOSED:
            return
        self._read_closed = True
        if self._rbuf and self.state in SYNCHRONIZED | {TcpState.SYN_RECEIVED}:
            self.abort(now)
            return
        self.shutdown(now)
        if self.state is TcpState.FIN_WAIT_2:
            self._arm_fin_wait_2(now)

    def abort(self, now: int) -> None:
        """ABORT (RFC 9293 3.10.5): send RST in synchronized states, drop everything."""
        if self.state in ABORT_SENDS_RST:
            self._out.append(Segment(seq=self.snd.wire(self.snd.max), ack=0, flags=_RST, window=0))
        if self.state is not TcpState.CLOSED:
            self._to_closed()

    def path_mtu(self, mtu: int) -> bool:
        """Packets above ``mtu`` bytes do not reach the peer (Path MTU Discovery, RFC 1191
        and RFC 8201, or the network's MTU lowered live): segments shrink to fit, and what
        was in flight goes again at the new size, as after a timeout but without its
        back-off (the big segments were dropped, not congested). True when the MSS fell."""
        overhead = (40 if self.config.ipv6 else 20) + 20
        if self.ts.enabled:
            overhead += TIMESTAMP_OPTION_SPACE
        mss = max(mtu - overhead, MIN_SMSS)
        snd = self.snd
        if mss >= snd.mss:
            return False
        snd.mss = mss
        snd.recovery.mss = mss
        snd.recovery.cc.mss = mss
        if self.state in SYNCHRONIZED and snd.max > snd.una:
            self.rtt.timed_seq = None  # Karn: nothing resent is timed
            snd.nxt = snd.una
        self._count("pmtu_mss_lowered")
        return True

    def underlay_changed(self, now: int) -> bool:
        """The physical path under this connection changed (a bond gave up a dead link):
        what is in flight was probably lost with the old link, so it goes again now instead
        of after a backed-off timeout (the timeout runs at once, with the back-off the dead
        link caused undone). True when that was done."""
        snd = self.snd
        if self.state not in SYNCHRONIZED or snd.max <= snd.una or snd.wnd == 0:
            return False
        self.rtt.undo_back_off()
        self.timers.rto = now
        self._count("underlay_changed")
        return True

    def neighbor_failed(self, now: int) -> None:
        """The next hop could not be resolved. A connection still in SYN_SENT gives up at once
        with HostUnreachableEvent (Linux's EHOSTUNREACH in about 3 s, not the SYN timeout of
        about two minutes); a synchronized one keeps retransmitting, as Linux does (the
        neighbor may come back)."""
        if self.state is TcpState.SYN_SENT:
            self._events.append(HostUnreachableEvent())
            self._to_closed()

    def set_nodelay(self, on: bool) -> None:
        """TCP_NODELAY: disable Nagle's algorithm (RFC 9293 3.7.4 "MUST allow disabling")."""
        self.config.nodelay = on

    def set_keepalive(
        self,
        on: bool,
        idle_ms: int | None = None,
        interval_ms: int | None = None,
        count: int | None = None,
    ) -> None:
        """SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT equivalents (RFC 1122 4.2.3.6)."""
        self.config.keepalive = on
        if idle_ms is not None:
            self.config.keepalive_idle_ms = idle_ms
        if interval_ms is not None:
            self.config.keepalive_interval_ms = interval_ms
        if count is not None:
            self.config.keepalive_count = count
        self.timers.ka_sent = 0

    def set_buffer_sizes(self, send: int | None = None, recv: int | None = None) -> None:
        """SO_SNDBUF/SO_RCVBUF. The receive size fixes the window scale, so set it before
        ``connect``/``listen``; shrinking never retracts an advertised window."""
        if send is not None:
            self.config.send_buffer = send
        if recv is not None:
            if self.state not in (TcpState.CLOSED, TcpState.LISTEN):
                raise LocalProtocolError("set the receive buffer before connecting")
            self.config.recv_buffer = self.rwnd.size = recv

    # =========================================================================================
    # Outputs
    # =========================================================================================

    def next_event(self) -> TcpEvent | None:
        """Pop the oldest event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> int | None:
        """The earliest deadline (ms) at which ``handle_timer`` must be called, or None."""
        return self.timers.earliest(self._keepalive_deadline())

    def handle_timer(self, now: int) -> None:
        """Fire every deadline that is due."""
        t = self.timers
        if (t.time_wait is not None and now >= t.time_wait) or (
            t.fin_wait_2 is not None and now >= t.fin_wait_2
        ):
            self._to_closed()
            return
        if t.rto is not None and now >= t.rto:
            self._on_rto(now)
        if self.state is not TcpState.CLOSED and t.persist is not None and now >= t.persist:
            self._on_persist(now)
        if self.state is TcpState.CLOSED:
            return
        ka = self._keepalive_deadline()
        if ka is not None and now >= ka:
            self._on_keepalive(now)
        if t.delack is not None and now >= t.delack:
            t.delack = None
            self._ack_now = True

    def segments_to_send(self, now: int) -> list[Segment]:
        """Everything to put on the wire now: queued control segments, then whatever the
        windows, Nagle and the congestion controller allow, then a pure ACK if one is owed."""
        out = self._out
        self._out = []
        st = self.state
        if st is TcpState.SYN_SENT and self.snd.nxt == 0:
            out.append(self._make_syn(now, ack=False))
        elif st not in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT) and self.snd.una == 0:
            if self.snd.nxt == 0:  # SYN-RECEIVED (or closed while in it): (re)send SYN,ACK
                out.append(self._make_syn(now, ack=True))
        elif st in SYNCHRONIZED and st is not TcpState.TIME_WAIT:
            self._output_data(now, out)
        if self._ack_now and st not in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT):
            out.append(self._make_segment(self.snd.nxt, b"", _ACK, now))
        return out

    # =========================================================================================
    # Segment arrival (RFC 9293 section 3.10.7)
    # =========================================================================================

    def receive_segment(self, seg: Segment, now: int) -> None:
        """Process one arriving segment. Never raises for anything the peer sends."""
        st = self.state
        if st is TcpState.CLOSED:
            self._count("closed")
            rst = reset_for(seg)
            if rst is not None:
                self._out.append(rst)
            return
        if st is TcpState.LISTEN:
            self._rx_listen(seg, now)
            return
        if st is TcpState.SYN_SENT:
            self._rx_syn_sent(seg, now)
            return
        if st is TcpState.ESTABLISHED and self.config.predict and self._rx_predicted(seg, now):
            self.predicted += 1
            return
        self._rx_other(seg, now)

    def _rx_predicted(self, seg: Segment, now: int) -> bool:
        """Header prediction (Van Jacobson's fast path): the next in-order segment of an
        established connection, carrying only ACK (and maybe PSH), no SACK blocks, timestamps
        as negotiated, outside loss recovery, that acknowledges nothing or new data and is not
        a duplicate-ACK candidate. Such a segment is processed with exactly the effects of
        :meth:`_rx_other`, minus the tests it cannot need. False: nothing was done, and the
        general path decides."""
        snd = self.snd
        rec = snd.recovery
        if (
            seg.flags & ~_PSH != _ACK
            or seg.sack_blocks
            or rec.active
            or rec.blocks
            or self._ooo
            or snd.fin_seq is not None
            or self._rcv_fin_seq is not None
            or self._read_closed
            or (seg.ts is None) is self.ts.enabled
        ):
            return False
        rcv_nxt = self.rcv_nxt
        if seg.seq != (self.irs + rcv_nxt) & SEQ_MASK:
            return False
        payload = seg.payload
        if len(payload) > self.rwnd.edge - rcv_nxt:
            return False  # beyond the window (or a closed one): trimming is the general path's
        una = snd.una
        ack_u = una + seq_diff(seg.ack, (snd.iss + una) & SEQ_MASK)
        if ack_u < una or ack_u > snd.max or (ack_u == una and not payload and snd.max != una):
            return False  # old, unsent, or a possible duplicate ACK to count
        if seg.ts is not None:
            self.ts.remember(seg.ts[0], rcv_nxt, self._last_ack_sent)
        timers = self.timers
        timers.last_heard = now
        timers.ka_sent = timers.probes_unanswered = 0
        if ack_u > una:
            self._ack_new_data(ack_u, seg, now)
        self._update_window(seg)
        if payload:
            self._rx_text(rcv_nxt, payload, now)
        return True

    def _rx_listen(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.2."""
        if seg.flags & _RST:
            self._count("rst_in_listen")
            return
        if seg.flags & _ACK:
            self._out.append(Segment(seq=seg.ack, ack=0, flags=_RST, window=0))
            return
        if not seg.flags & _SYN:
            self._count("no_syn_in_listen")
            return
        self._choose_iss()
        self._accept_syn(seg, now)
        self._set_state(TcpState.SYN_RECEIVED)
        # Data in a SYN is queued for after the handshake (RFC 9293 3.10.7.2); we keep it simple
        # and let the peer retransmit it, since our SYN-ACK only acknowledges the SYN.

    def _rx_syn_sent(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.3, with the RFC 5961 section 3 rule that a RST must ack our SYN."""
        fl = seg.flags
        if fl & _ACK:
            ack_u = self.snd.unwrap(seg.ack)
            if ack_u <= 0 or ack_u > self.snd.max:
                if not fl & _RST:
                    self._out.append(Segment(seq=seg.ack, ack=0, flags=_RST, window=0))
                self._count("bad_ack_in_syn_sent")
                return
        if fl & _RST:
            if fl & _ACK:
                self._events.append(ConnectionResetEvent())
                self._to_closed()
            else:
                self._count("rst_without_ack_in_syn_sent")
            return
        if not fl & _SYN:
            self._count("no_syn_in_syn_sent")
            return
        self._accept_syn(seg, now)
        if fl & _ACK:
            self._ack_of_syn(seg, now)
            self._set_state(TcpState.ESTABLISHED)
            self._events.append(ConnectedEvent())
            self._ack_now = True
            self._update_window(seg, force=True)
            if seg.payload:
                self._rx_text(1, seg.payload, now)
            if fl & _FIN:
                self._rx_fin(1 + len(seg.payload), now)
        else:
            # Simultaneous open (RFC 9293 figure 7): answer SYN,ACK with the same ISS. Making
            # snd_nxt 0 re-sends our SYN, now carrying the ACK.
            self._set_state(TcpState.SYN_RECEIVED)
            self.snd.nxt = 0
            self.rtt.timed_seq = None

    def _rx_other(self, seg: Segment, now: int) -> None:
        """RFC 9293 3.10.7.4 for SYN-RECEIVED and the synchronized states."""
        fl = seg.flags
        seq_u = self.rcv_nxt + seq_diff(seg.seq, self._wire_rcv(self.rcv_nxt))
        payload = seg.payload
        if fl & _SYN:
            seq_u += 1  # text and FIN start after the SYN
        wnd = self.rwnd.room(self.rcv_nxt)
        plen = len(payload) + (1 if fl & _FIN else 0)

        if fl & _SYN and self.snd.una == 0 and seg.seq == self.irs and not fl & _RST:
            self._rx_syn_again(seg, now)
            return

        if self.ts.enabled and seg.ts is not None and not fl & (_RST | _SYN):
            self.ts.remember(seg.ts[0], seq_u, self._last_ack_sent)  # before acceptability

        # first: sequence number check
        if fl & _RST:
            self._rx_rst(seq_u, wnd, now)
            return
        if not acceptable(seq_u, plen, self.rcv_nxt, wnd):
            self._count("unacceptable")
            if self.state is TcpState.TIME_WAIT and fl & _FIN:
                self._arm_time_wait(now)
            self._ack_now = True
            return
        self.timers.heard(now)
        # fourth: SYN in a synchronized state -> challenge ACK (RFC 5961 section 4.2)
        if fl & _SYN:
            self._challenge_ack("challenge_syn", now)
            return

        # fifth: ACK
        if not fl & _ACK:
            self._count("no_ack")
            return
        if not self._rx_ack(seg, now):
            return
        if self.state is TcpState.CLOSED:
            return

        if payload or fl & _FIN:  # seventh: text; eighth: FIN
            self._rx_text_fin(seg, seq_u, wnd, now)

    def _rx_syn_again(self, seg: Segment, now: int) -> None:
        """SYN-RECEIVED sees the peer's SYN again: a retransmission (answer with our SYN,ACK
        again) or, after a simultaneous open, its SYN,ACK (RFC 9293 figure 8), which completes
        the handshake just like the final ACK would."""
        ack_u = self.snd.unwrap(seg.ack)
        if seg.flags & _ACK and 0 < ack_u <= self.snd.max:
            self._ack_of_syn(seg, now)
            if self.state is TcpState.SYN_RECEIVED:
                self._set_state(TcpState.ESTABLISHED)
            self._events.append(ConnectedEvent())
            self._update_window(seg, force=True)
            self._ack_now = True
        else:
            self._count("dup_syn")
            self.snd.nxt = 0

    def _rx_text_fin(self, seg: Segment, seq_u: int, wnd: int, now: int) -> None:
        """RFC 9293 3.10.7.4 "seventh" (text) and "eighth" (FIN), trimmed to the window."""
        first, last, fin = trim(seq_u, len(seg.payload), self.rcv_nxt, wnd)
        fin = fin and bool(seg.flags & _FIN)
        payload = seg.payload[first:last]
        seq_u += first
        out_of_order = bool(payload) and seq_u > self.rcv_nxt
        if payload:
            if self.state in RECEIVES_TEXT:
                if self._read_closed:
                    self._count("data_after_close")
                    self.abort(now)
                    return
                self._rx_text(seq_u, payload, now)
            else:
                self._count("text_after_fin")
                self._ack_now = True
        elif seg.payload:
            self._ack_now = True  # duplicate or out-of-window data: ACK it (RFC 9293)
        if fin:
            # Out-of-order text was already answered by its own duplicate ACK.
            self._rx_fin(seq_u + len(payload), now, acked=out_of_order)

    def _rx_rst(self, seq_u: int, wnd: int, now: int) -> None:
        """RFC 9293 3.10.7.4 "second", as hardened by RFC 5961 section 3.2: only an exact
        RCV.NXT match resets; anything else in the window earns a challenge ACK."""
        if seq_u == self.rcv_nxt:
            st = self.state
            if st is TcpState.SYN_RECEIVED and self._passive:
                self._count("rst_back_to_listen")
                self._reset_tcb()
                self._set_state(TcpState.LISTEN)
                return
            if st in (TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT):
                self._to_closed()
                return
            self._events.append(ConnectionResetEvent())
            self._to_closed()
        elif self.rcv_nxt < seq_u < self.rcv_nxt + max(wnd, 1):
            self._challenge_ack("challenge_rst", now)
        else:
            self._count("rst_out_of_window")

    def _rx_ack(self, seg: Segment, now: int) -> bool:
        """RFC 9293 3.10.7.4 "fifth" plus RFC 5961 section 5.2; False means drop the segment."""
        ack_u = self.snd.unwrap(seg.ack)
        st = self.state
        if st is TcpState.SYN_RECEIVED:
            if 0 < ack_u <= self.snd.max:
                self._ack_of_syn(seg, now)
                self._set_state(TcpState.ESTABLISHED)
                self._events.append(ConnectedEvent())
                self._update_window(seg, force=True)
            else:
                self._out.append(Segment(seq=seg.ack, ack=0, flags=_RST, window=0))
                return False
        if ack_u > self.snd.max:
            self._count("ack_of_unsent")
            self._ack_now = True
            return False
        if ack_u < self.snd.una - max(self.snd.max_wnd, 1):
            self._challenge_ack("challenge_old_ack", now)
            return False
        self.timers.probes_unanswered = 0
        self._process_sack(seg)
        if ack_u > self.snd.una:
            self._ack_new_data(ack_u, seg, now)
        elif ack_u == self.snd.una:
            self._maybe_dupack(seg, now)
        self._update_window(seg)
        if self.snd.fin_seq is not None and self.snd.una > self.snd.fin_seq:
            st = self.state
            if st is TcpState.FIN_WAIT_1:
                self._set_state(TcpState.FIN_WAIT_2)
                if self._read_closed:
                    self._arm_fin_wait_2(now)
            elif st is TcpState.CLOSING:
                self._enter_time_wait(now)
            elif st is TcpState.LAST_ACK:
                self._to_closed()
                return False
        return True

    # --- ACK processing helpers -------------------------------------------------------------

    def _ack_new_data(self, ack_u: int, seg: Segment, now: int) -> None:
        # RTT sample: from the echoed timestamp when negotiated (RFC 7323 section 4.1, valid
        # even for retransmissions), else RFC 6298 section 3 with Karn's rule.
        rtt = self.rtt
        sample = self.ts.rtt_sample(now, seg.ts)
        if sample is not None:
            rtt.sample(sample)
            rtt.timed_seq = None
        else:
            rtt.on_ack(ack_u, now)
        if self.snd.acked(ack_u, now, rtt.srtt):
            self._events.append(_WRITABLE)
        self._retries = 0
        self.timers.persist_backoff = 0
        # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it.
        if self.snd.una >= self.snd.max:
            self.timers.rto = None
        else:
            self.timers.rto = now + rtt.rto

    def _maybe_dupack(self, seg: Segment, now: int) -> None:
        """RFC 5681 section 2 "duplicate acknowledgment", RFC 6675's SACK variant."""
        if seg.flags & (_SYN | _FIN) or not self.snd.is_duplicate(
            bool(seg.payload), seg.window, bool(seg.sack_blocks)
        ):
            return
        if self.snd.recovery.on_duplicate(self.snd.una, self.snd.max, now):
            self.rtt.timed_seq = None  # Karn: the timed segment may be resent
            self._count("fast_retransmit")

    def _process_sack(self, seg: Segment) -> None:
        """Hand the peer's SACK blocks (RFC 2018 section 4), unwrapped, to loss recovery."""
        if seg.sack_blocks and self.snd.recovery.sack:
            self.snd.add_sack(seg.sack_blocks)

    def _update_window(self, seg: Segment, force: bool = False) -> None:
        """SND.WND update guarded by SND.WL1/WL2 (RFC 9293 3.10.7.4)."""
        seq_u = self.rcv_nxt + seq_diff(seg.seq, self._wire_rcv(self.rcv_nxt))
        syn = bool(seg.flags & _SYN)
        if self.snd.update_window(
            seq_u, self.snd.unwrap(seg.ack), seg.window, syn=syn, force=force
        ):
            self.timers.persist = None

    # --- receive helpers --------------------------------------------------------------------

    def _rx_text(self, seq_u: int, data: bytes, now: int) -> None:
        """Deliver or queue text that lies inside the window (RFC 9293 3.10.7.4 "seventh")."""
        if seq_u == self.rcv_nxt:
            was_empty = not self._rbuf
            had_ooo = bool(self._ooo)
            self._rbuf += data
            self.rcv_nxt += len(data)
            if had_ooo or self.rxq.recent:
                self.rcv_nxt = self.rxq.drain(self.rcv_nxt)  # what the OOO queue continues
            if was_empty:
                self._events.append(_DATA_AVAILABLE)
            # RFC 5681 4.2 / RFC 9293 3.8.6.3: ACK at once when a gap is filled, otherwise at
            # least every second segment and within delayed_ack_ms.
            # A segment the transport joined from several (GRO) counts as at least two.
            self._segs_since_ack += 1 if len(data) <= self.our_mss else 2
            if had_ooo or self._segs_since_ack >= 2:
                self._ack_now = True
            elif self.timers.delack is None:
                self.timers.delack = now + self.config.delayed_ack_ms
            if self._rcv_fin_seq is not None and self._rcv_fin_seq == self.rcv_nxt:
                self._rx_fin(self.rcv_nxt, now)
        else:
            if not self.rxq.insert(seq_u, data, self.config.ooo_limit):
                self._count("ooo_full")
            # RFC 5681 4.2: each out-of-order segment triggers its own immediate duplicate ACK
            # (the sender counts them), so it cannot be folded into a pending ACK flag.
            self._out.append(self._make_segment(self.snd.nxt, b"", _ACK, now))

    def _sack_blocks(self) -> tuple[tuple[int, int], ...]:
        """The SACK blocks to carry (RFC 2018 section 4), as wire sequence numbers."""
        if not self._ooo or not self.snd.recovery.sack:
            return ()
        return tuple(
            (self._wire_rcv(s), self._wire_rcv(e)) for s, e in self.rxq.sack_runs(MAX_SACK_BLOCKS)
        )

    def _rx_fin(self, fin_u: int, now: int, *, acked: bool = False) -> None:
        """RFC 9293 3.10.7.4 "eighth": act on the FIN once everything before it has arrived."""
        if fin_u != self.rcv_nxt:
            self._rcv_fin_seq = fin_u
            if not acked:
                self._ack_now = True
            return
        if self._eof:
            self._ack_now = True
            if self.state is TcpState.TIME_WAIT:
                self._arm_time_wait(now)
            return
        self._rcv_fin_seq = fin_u
        self.rcv_nxt += 1
        self._eof = True
        self._ack_now = True
        self._events.append(PeerClosedEvent())
        st = self.state
        our_fin_acked = self.snd.fin_seq is not None and self.snd.una > self.snd.fin_seq
        if st in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED):
            self._set_state(TcpState.CLOSE_WAIT)
        elif st is TcpState.FIN_WAIT_2 or (st is TcpState.FIN_WAIT_1 and our_fin_acked):
            self._enter_time_wait(now)
        elif st is TcpState.FIN_WAIT_1:
            self._set_state(TcpState.CLOSING)

    # =========================================================================================
    # Output
    # =========================================================================================

    def _output_data(self, now: int, out: list[Segment]) -> None:
        """Our data, as the send half decides (:meth:`TcpSender.output`)."""
        if self.snd.idle():
            return

        def emit(seq_u: int, n: int, retransmit: bool, fin: bool) -> None:
            out.append(self._emit(seq_u, n, now, retransmit=retransmit, fin=fin))

        cfg = self.config
        if self.snd.output(
            emit, nodelay=cfg.nodelay, gso=cfg.gso_segments, rto_running=self.timers.rto is not None
        ):
            self._arm_persist(now)

    def _emit(
        self, seq_u: int, n: int, now: int, *, retransmit: bool, fin: bool = False
    ) -> Segment:
        sb = self.snd.buf
        payload = sb.slice(seq_u, n)
        flags = _ACK
        if fin:
            flags |= _FIN
        if n and seq_u + n == sb.start + len(sb.data):
            flags |= _PSH
        if retransmit:
            self.retransmitted_bytes += n
            self.retransmitted_segments += 1
            self.rtt.on_retransmit(seq_u)
        else:
            self.rtt.start_timing(seq_u, now)
        if self.timers.rto is None:
            self.timers.rto = now + self.rtt.rto  # RFC 6298 5.1
        self.timers.persist = None
        return self._make_segment(seq_u, payload, flags, now)

    def _make_segment(self, seq_u: int, payload: bytes, flags: int, now: int) -> Segment:
        seg = Segment(
            seq=self.snd.wire(seq_u),
            ack=self._wire_rcv(self.rcv_nxt),
            flags=flags,
            window=self.rwnd.field(self.rcv_nxt, len(self._rbuf)),
            payload=payload,
            sack_blocks=self._sack_blocks(),
            ts=self.ts.option(now),
        )
        self._last_ack_sent = self.rcv_nxt
        self._ack_now = False
        self._segs_since_ack = 0
        self.timers.delack = None
        return seg

    def _make_syn(self, now: int, *, ack: bool) -> Segment:
        """SYN or SYN,ACK with MSS, window scale and SACK-permitted options (RFC 9293 3.7.1,
        RFC 7323 2.2, RFC 2018 section 2). On SYN,ACK only options the peer offered appear."""
        flags = _SYN | (_ACK if ack else _NONE)
        offer_ws = self.config.window_scaling and (not ack or self._ws_enabled)
        if self.snd.max == 0:
            self.rtt.start_timing(0, now)
        self.snd.nxt = 1
        self.snd.max = max(self.snd.max, 1)
        if self.timers.rto is None:
            self.timers.rto = now + self.rtt.rto
        seg = Segment(
            seq=self.snd.iss,
            ack=self._wire_rcv(self.rcv_nxt) if ack else 0,
            flags=flags,
            window=self.rwnd.syn_field(self.rcv_nxt),
            mss=self.our_mss,
            wscale=self._want_wscale if offer_ws else None,
            sack_permitted=self.config.sack and (not ack or self.snd.recovery.sack),
            ts=(self.ts.value(now), self.ts.recent if ack else 0)
            if self.config.timestamps and (not ack or self.ts.enabled)
            else None,
        )
        self._last_ack_sent = self.rcv_nxt
        if ack:
            self._ack_now = False
            self.timers.delack = None
        return seg

    # =========================================================================================
    # Timers
    # =========================================================================================

    def _challenge_ack(self, reason: str, now: int) -> None:
        """Send a challenge ACK, at most ``challenge_ack_limit`` per second (RFC 5961 section 7,
        which keeps the challenges themselves from being an amplifier or a side channel)."""
        self._count(reason)
        if self._challenges.take(now, self.config.challenge_ack_limit):
            self._ack_now = True
        else:
            self._count("challenge_ack_limited")

    def _on_rto(self, now: int) -> None:
        """RFC 6298 section 5.4-5.6: retransmit the earliest unacked segment, back off, and
        (RFC 5681 3.1) collapse cwnd; go-back-N from SND.UNA, forgetting SACK state (RFC 2018
        section 8: the receiver may have reneged)."""
        self.timers.rto = None
        if self.snd.una >= self.snd.max:
            return
        if self.snd.una >= 1 and self.snd.wnd == 0:
            # The peer closed its window on data in flight: nothing may be retransmitted into
            # it, so switch to the persist timer, which probes and does not count retries while
            # the peer answers (RFC 1122 4.2.2.17).
            self.snd.nxt = self.snd.una
            self.rtt.timed_seq = None
            self._arm_persist(now)
            return
        self._retries += 1
        limit = (
            self.config.syn_retries
            if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED)
            else self.config.max_retries
        )
        if self._retries > limit:
            if self.state in SYNCHRONIZED:
                self._time_out()
            else:
                self._events.append(TimedOutEvent())
                self._to_closed()
            return
        self._count("rto")
        self.rtt.back_off()
        self.snd.recovery.on_timeout(self.snd.una, self.snd.max, now)
        self.rtt.timed_seq = None
        self.snd.nxt = self.snd.una
        self.timers.rto = now + self.rtt.rto

    def _arm_persist(self, now: int) -> None:
        cfg = self.config
        self.timers.arm_persist(now, self.rtt.rto, cfg.min_rto_ms, cfg.max_rto_ms)

    def _on_persist(self, now: int) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17), see
        :meth:`TcpTimers.persist_fired`."""
        action = self.timers.persist_fired(self.snd.wnd, self.config.max_retries)
        if action is PersistAction.OVERRIDE:
            self.snd.sws_override = True
        elif action is PersistAction.GIVE_UP:
            self._time_out()
        elif action is PersistAction.PROBE:
            self._probe(now)
            self._arm_persist(now)

    def _probe(self, now: int, reason: str = "probe") -> None:
        """A segment the receiver finds unacceptable (SEQ = SND.UNA - 1, no text), which makes
        it answer with its current window (the Linux probe form, RFC 9293 3.10.7.4)."""
        self._count(reason)
        self._out.append(self._make_segment(self.snd.una - 1, b"", _ACK, now))

    def _keepalive_deadline(self) -> int | None:
        cfg = self.config
        if not cfg.keepalive or self.state not in KEEPALIVE_STATES:
            return None
        if self.snd.max > self.snd.una or self.timers.persist is not None:
            return None  # data in flight or a closed window: those timers watch the peer
        return self.timers.keepalive_deadline(cfg.keepalive_idle_ms, cfg.keepalive_interval_ms)

    def _on_keepalive(self, now: int) -> None:
        """RFC 1122 4.2.3.6: probe an idle peer; reset after ``keepalive_count`` silences."""
        if self.timers.keepalive_fired(now, self.config.keepalive_count):
            self._time_out()
        else:
            self._probe(now, "keepalive")

    def _time_out(self) -> None:
        """A prober gave up on a synchronized connection: tell the peer and the application."""
        self._events.append(TimedOutEvent())
        self._out.append(Segment(seq=self.snd.wire(self.snd.max), ack=0, flags=_RST, window=0))
        self._to_closed()

    def _arm_time_wait(self, now: int) -> None:
        self.timers.time_wait = now + 2 * self.config.msl_ms

    def _enter_time_wait(self, now: int) -> None:
        """RFC 9293 3.10.7.4: TIME-WAIT lasts 2*MSL; other timers are off."""
        self._set_state(TcpState.TIME_WAIT)
        self.timers.rto = self.timers.persist = self.timers.fin_wait_2 = None
        self._arm_time_wait(now)

    def _arm_fin_wait_2(self, now: int) -> None:
        if self.config.fin_wait_2_timeout_ms is not None:
            self.timers.fin_wait_2 = now + self.config.fin_wait_2_timeout_ms

    # =========================================================================================
    # Plumbing
    # =========================================================================================

    def _choose_iss(self) -> None:
        self.snd.restart(self._isn_source())
        self.ts.offset = self.snd.iss + 1
        self._want_wscale = wanted_wscale(self.config.recv_buffer, self.config.window_scaling)

    def _accept_syn(self, seg: Segment, now: int) -> None:
        """Record IRS and negotiate options from the peer's SYN."""
        self.irs = seg.seq
        self.rcv_nxt = 1
        self.rwnd.edge = 1
        self.timers.heard(now)
        cfg = self.config
        agreed = SynAgreement.from_peer(
            (cfg.window_scaling, cfg.sack, cfg.timestamps),
            (seg.mss, seg.wscale, seg.sack_permitted, seg.ts is not None),
            our_mss=self.our_mss,
            want_wscale=self._want_wscale,
            ipv6=cfg.ipv6,
        )
        recovery = LossRecovery(cfg.congestion_control(agreed.mss), agreed.mss, sack=agreed.sack)
        self.snd.agreed(agreed.mss, agreed.snd_wscale, seg.window, recovery)
        self._ws_enabled = agreed.window_scaling
        self.rwnd.wscale = agreed.rcv_wscale
        self.ts.enabled = agreed.timestamps
        if seg.ts is not None:
            self.ts.recent = seg.ts[0]
        self._ack_now = True

    def _ack_of_syn(self, seg: Segment, now: int) -> None:
        ack_u = self.snd.unwrap(seg.ack)
        rtt = self.rtt
        sample = self.ts.rtt_sample(now, seg.ts)
        if rtt.timed_seq == 0 and ack_u >= 1:
            rtt.on_ack(ack_u, now)
        elif sample is not None:
            rtt.sample(sample)
        elif self._retries > 0:
            rtt.after_syn_timeout()  # RFC 6298 5.7
        self.snd.una = max(self.snd.una, 1)
        self.snd.nxt = max(self.snd.nxt, 1)
        self._retries = 0
        self.timers.rto = None if self.snd.max <= 1 else now + rtt.rto

    def _reset_tcb(self) -> None:
        self.snd.una = self.snd.nxt = self.snd.max = 0
        self.timers.rto = None
        self._retries = 0
        self.rtt.timed_seq = None
        self._ack_now = False
        self.timers.delack = None

    def _set_state(self, new: TcpState) -> None:
        """Every state change after creation goes through here, checked against RFC 9293
        figure 5 (:data:`~ztnode.netstack.tcp_states.TRANSITIONS`)."""
        check_transition(self.state, new)
        self.state = new

    def _to_closed(self) -> None:
        self._set_state(TcpState.CLOSED)
        self.timers.stop_all()
        self._ack_now = False
        self._events.append(ClosedEvent())

    def _wire_rcv(self, u: int) -> int:
        return (self.irs + u) & SEQ_MASK

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1
