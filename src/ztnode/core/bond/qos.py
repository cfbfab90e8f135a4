"""QoS measurement on one bond path, computed exactly as ZeroTierOne 1.14.1 computes it.

Both ends sample packets with odd ids (``ZT_QOS_ACK_DIVISOR`` 2). The sender keeps id -> send
time, the receiver id -> receive time; every ``qosSendInterval`` the receiver reports up to 140
ids with how long it held each (QOS_MEASUREMENT), and the sender turns each match into a
latency sample ``((now - sent) mod 2^16 - held) / 2`` kept in a 64-entry ring of ``uint16``.
(``Bond::recordOutgoingPacket``, ``recordIncomingPacket``, ``generateQoSPacket``,
``receivedQoS``; protocol-multipath.md section 4.)

The ring's mean and standard deviation are the reference's ``RingBuffer::mean`` and
``stddev``, quirks included, so figures match a ZeroTierOne node fed the same samples: the
mean walks indices with a stride of 63 modulo the fill count (visiting some samples twice and
others never when the count shares a factor with 63); the variance sums squared deviations of
the first ``count`` slots truncated to ``uint16`` in a ``uint16`` accumulator and divides by
63 whatever the count; arithmetic is single precision.
"""

from __future__ import annotations

import math
import struct
from typing import Final

from ztnode.wire.constants import Verb
from ztnode.wire.verbs.multipath import QOS_MAX_RECORDS, QosRecord

QOS_MAX_PENDING: Final = QOS_MAX_RECORDS * 3  # ZT_QOS_MAX_PENDING_RECORDS = 420
SAMPLE_WINDOW: Final = 64  # ZT_QOS_SHORTTERM_SAMPLE_WIN_SIZE
MIN_SAMPLES: Final = 4  # ZT_QOS_SHORTTERM_SAMPLE_WIN_MIN_REQ_SIZE
_FRAME_VERBS: Final = frozenset((Verb.ECHO, Verb.FRAME, Verb.EXT_FRAME))
_F32: Final = struct.Struct("f")


def f32(x: float) -> float:
    """``x`` rounded to IEEE single precision (the reference's ``float``)."""
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def sampled(packet_id: int, verb: int) -> bool:
    """Whether a packet's id is recorded for QoS (odd ids, not ACK or QoS themselves)."""
    return bool(packet_id & 1) and verb not in (Verb.ACK, Verb.QOS_MEASUREMENT)


def is_frame(verb: int) -> bool:
    return verb in _FRAME_VERBS


def latency_sample(now: int, sent: int, held: int) -> int:
    """One ring entry: ``((uint16)(now - sent) - held) / 2`` in C int arithmetic, stored as
    ``uint16`` (so a hold longer than the round trip wraps to a large value, as it does in the
    reference)."""
    diff = ((now - sent) & 0xFFFF) - held
    half = abs(diff) // 2 * (1 if diff >= 0 else -1)  # C division truncates toward zero
    return half & 0xFFFF


def ring_mean(ring: list[int]) -> float:
    """``RingBuffer::mean`` of a ring filled from slot 0 (ours never consume)."""
    n = len(ring)
    if n == 0:
        return 0.0
    idx, subtotal = 0, 0.0
    for _ in range(n):
        idx = (idx + SAMPLE_WINDOW - 1) % n
        subtotal = f32(subtotal + float(ring[idx]))
    return f32(subtotal / float(n))


def ring_stddev(ring: list[int]) -> float:
    """``RingBuffer::stddev`` for ``uint16`` samples (see the module docstring)."""
    mean = ring_mean(ring)
    acc = 0
    for x in ring:
        dev = f32(float(x) - mean)
        sq = f32(dev * dev)
        # float -> uint16: truncation toward zero; out-of-range values keep their low 16 bits
        # as x86-64 compilers produce them (through a 32-bit conversion).
        term = int(sq) & 0xFFFFFFFF if sq < 2**31 else 0x80000000
        acc = (acc + term) & 0xFFFF
    variance = f32(float(acc) / float(SAMPLE_WINDOW - 1))
    return f32(math.sqrt(variance))


class QosTracker:
    """QoS state of one bond path: both sample tables, the latency ring and its summary."""

    __slots__ = (
        "_ring_next",
        "last_qos_received",
        "last_qos_sent",
        "latency",
        "latency_variance",
        "out",
        "rec_in",
        "received_since_report",
        "record_sizes",
        "ring",
    )

    def __init__(self) -> None:
        self.out: dict[int, int] = {}  # packet id -> when we sent it
        self.rec_in: dict[int, int] = {}  # packet id -> when we received it
        self.received_since_report = 0
        self.ring: list[int] = []  # filled from slot 0; then a ring over SAMPLE_WINDOW
        self._ring_next = 0
        self.record_sizes: list[int] = []
        self.last_qos_received = 0
        self.last_qos_sent = 0
        self.latency = 0.0
        self.latency_variance = 0.0

    def record_out(self, packet_id: int, now: int) -> None:
        if len(self.out) < QOS_MAX_PENDING:
            self.out[packet_id] = now

    def record_in(self, packet_id: int, now: int) -> None:
        if len(self.rec_in) < QOS_MAX_PENDING:
            self.rec_in[packet_id] = now
            self.received_since_report += 1

    def needs_report(self, now: int, interval: int) -> bool:
        """``NominatedPath::needsToSendQoS``: a full table's worth, or samples and time."""
        return self.received_since_report >= QOS_MAX_RECORDS or (
            self.received_since_report > 0 and now - self.last_qos_sent > interval
        )

    def report(self, now: int) -> list[QosRecord]:
        """Up to 140 held samples, lowest id first (a std::map's order), removed."""
        n = min(self.received_since_report, QOS_MAX_RECORDS)
        ids = sorted(self.rec_in)[:n]
        out = [QosRecord(i, (now - self.rec_in.pop(i)) & 0xFFFF) for i in ids]
        self.received_since_report = 0
        self.last_qos_sent = now
        return out

    def receive_report(self, records: tuple[QosRecord, ...] | list[QosRecord], now: int) -> int:
        """Match a peer's report against what we sent; returns how many samples it gave."""
        self.last_qos_received = now
        matched = 0
        for rec in records:
            sent = self.out.pop(rec.packet_id, None)
            if sent is not None:
                self._push(latency_sample(now, sent, rec.holding_time))
                matched += 1
        self._push_size(len(records))
        return matched

    def _push(self, sample: int) -> None:
        if len(self.ring) < SAMPLE_WINDOW:
            self.ring.append(sample)
        else:
            self.ring[self._ring_next] = sample
            self._ring_next = (self._ring_next + 1) % SAMPLE_WINDOW

    def _push_size(self, n: int) -> None:
        self.record_sizes.append(n)
        if len(self.record_sizes) > SAMPLE_WINDOW:
            del self.record_sizes[0]

    def expire(self, now: int, timeout: int) -> None:
        """Forget samples nobody reported within ``timeout`` (3 x qosSendInterval)."""
        self.out = {k: t for k, t in self.out.items() if now - t < timeout}
        self.rec_in = {k: t for k, t in self.rec_in.items() if now - t < timeout}

    def summarize(self) -> None:
        """Update ``latency`` and ``latency_variance`` once there are enough samples."""
        if len(self.ring) >= MIN_SAMPLES:
            self.latency = ring_mean(self.ring)
            self.latency_variance = ring_stddev(self.ring)
