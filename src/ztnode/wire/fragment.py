"""Packet fragments: the 16-byte fragment header, splitting, and sans-I/O reassembly.

A packet longer than the path MTU goes out as a *head* (its first ``mtu`` bytes, flag 0x40 set)
followed by fragments of at most ``mtu - 16`` data bytes each (§7; Packet.hpp:392-531,
Switch.cpp:1130-1173)::

    0   8  packet ID of the parent (the wire ID, after armor)
    8   5  destination address
    13  1  0xff fragment indicator (where a packet has its source address)
    14  1  high nibble: total pieces including the head; low nibble: fragment number 1..
    15  1  hop count (the whole byte; relays do (b + 1) & 7)
    16  …  fragment data

The sender's order matters, because armor covers flag 0x40 and AES-GMAC-SIV rewrites the packet
ID that fragments carry:

1. ``if needs_fragmentation(len(buf), mtu): ztnode.wire.packet.set_fragmented(buf)``;
2. ``ztnode.wire.packet.armor(buf, key, cipher)``;
3. ``split(buf, mtu)``: send every datagram returned, head first.

Fragments have no MAC of their own; the reassembled packet's MAC covers them all.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf
from ztnode.wire.constants import (
    DEFAULT_PHYSMTU,
    FLAG_FRAGMENTED,
    FRAGMENT_HEADER_SIZE,
    FRAGMENT_INDICATOR,
    FRAGMENT_INDICATOR_INDEX,
    IDX_FLAGS,
    MAX_PACKET_FRAGMENTS,
    MAX_PACKET_LENGTH,
    MAX_PHYSMTU,
    MIN_FRAGMENT_LENGTH,
    MIN_PACKET_LENGTH,
    PROTO_MAX_HOPS,
)

IDX_FRAGMENT_NO: Final = 14
IDX_FRAGMENT_HOPS: Final = 15
# Reassembly slots: the reference's RX queue is a 32-entry ring (Constants.hpp:304).
DEFAULT_REASSEMBLY_SLOTS: Final = 32
# The reference keeps incomplete sets until the ring overwrites them; we also reclaim them after
# the receive-queue timeout (ZT_RECEIVE_QUEUE_TIMEOUT, Constants.hpp:334), so a quiet node does not
# hold stale pieces forever.
DEFAULT_REASSEMBLY_TIMEOUT_MS: Final = 5000

_ID_AND_DEST: Final = 13
_FRAG_HEADER: Final = struct.Struct(">QIBBBB")  # id, dest hi/lo, indicator, numbers, hops


# --- records and codec -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fragment:
    """One received fragment (not the head), decoded without copying its data.

    ``payload`` is a view into the datagram and is valid only while that buffer is unchanged.
    ``hops`` is the whole byte 15, as the reference reads it. :meth:`parse` checks only the
    format; :attr:`valid` applies the reassembly rules.
    """

    packet_id: int
    dest: int
    total: int
    number: int
    hops: int
    payload: memoryview

    @property
    def valid(self) -> bool:
        """The reference's sanity rule (Switch.cpp:140-146) plus ``number < total``.

        The reference does not check ``number < total``; without it a fragment numbered past the
        total would count toward completion while a real piece is still missing.
        """
        return 1 < self.total <= MAX_PACKET_FRAGMENTS and 1 <= self.number < self.total

    @classmethod
    def parse(cls, data: Buf) -> Fragment:
        """Decode a datagram that :func:`is_fragment` accepted."""
        if not is_fragment(data):
            raise DecodeError(
                f"{len(data)}-byte datagram is not a fragment (needs > {MIN_FRAGMENT_LENGTH} "
                "bytes and 0xff at byte 13)"
            )
        pid, d_hi, d_lo, _, numbers, hops = _FRAG_HEADER.unpack_from(data, 0)
        mv = data if isinstance(data, memoryview) else memoryview(data)
        return cls(
            pid,
            (d_hi << 8) | d_lo,
            numbers >> 4,
            numbers & 0x0F,
            hops,
            mv[FRAGMENT_HEADER_SIZE:],
        )


def is_fragment(buf: Buf) -> bool:
    """True for a datagram the reference would treat as a fragment (Switch.cpp:110-111)."""
    return len(buf) > MIN_FRAGMENT_LENGTH and buf[FRAGMENT_INDICATOR_INDEX] == FRAGMENT_INDICATOR


def build_fragment(packet_id: bytes, dest: int, total: int, number: int, data: Buf) -> bytes:
    """One fragment datagram with hops 0 (``Packet::Fragment::init``)."""
    if len(packet_id) != 8:
        raise LocalProtocolError("packet_id is the 8 raw ID bytes")
    if not 0 <= dest < 1 << 40:
        raise LocalProtocolError(f"dest {dest:#x} does not fit in 40 bits")
    if not (1 < total <= MAX_PACKET_FRAGMENTS and 1 <= number < total):
        raise LocalProtocolError(f"fragment {number} of {total} is not a valid fragment number")
    return b"".join(
        (
            packet_id,
            dest.to_bytes(5, "big"),
            bytes((FRAGMENT_INDICATOR, (total << 4) | number, 0)),
            data,
        )
    )


def increment_fragment_hops(fragment: bytearray) -> int:
    """Add a hop to a fragment being relayed; returns the new count (``(b + 1) & 7``)."""
    if not is_fragment(fragment):
        raise LocalProtocolError("not a fragment datagram")
    h = (fragment[IDX_FRAGMENT_HOPS] + 1) & PROTO_MAX_HOPS
    fragment[IDX_FRAGMENT_HOPS] = h
    return h


# --- sending -----------------------------------------------------------------------------------


def _check_mtu(mtu: int) -> None:
    # The head must hold a whole header and verb, and every fragment at least one data byte.
    if not MIN_PACKET_LENGTH <= mtu <= MAX_PHYSMTU:
        raise LocalProtocolError(f"mtu {mtu} outside {MIN_PACKET_LENGTH}..{MAX_PHYSMTU}")


def needs_fragmentation(length: int, mtu: int = DEFAULT_PHYSMTU) -> bool:
    """Whether a packet of ``length`` bytes must be split; if so set flag 0x40 *before* armor."""
    _check_mtu(mtu)
    return length > mtu


def fragment_count(length: int, mtu: int = DEFAULT_PHYSMTU) -> int:
    """Datagrams a ``length``-byte packet takes, head included (Switch.cpp:1156-1161)."""
    _check_mtu(mtu)
    if length <= mtu:
        return 1
    per = mtu - FRAGMENT_HEADER_SIZE
    return 1 + (length - mtu + per - 1) // per


def max_packet_size(mtu: int = DEFAULT_PHYSMTU) -> int:
    """The largest packet deliverable in 7 datagrams at ``mtu`` (9928 bytes at 1432)."""
    _check_mtu(mtu)
    return min(MAX_PACKET_LENGTH, mtu + (MAX_PACKET_FRAGMENTS - 1) * (mtu - FRAGMENT_HEADER_SIZE))


def split(packet: Buf, mtu: int = DEFAULT_PHYSMTU) -> list[bytes]:
    """The datagrams to send for an armored packet: the head, then fragments 1..n-1.

    A packet that fits is returned whole, and must not carry flag 0x40 (a receiver would wait
    for fragments that never come). A longer one must already carry it, set before armor; this
    function cannot set it without breaking the MAC, so it refuses instead.
    """
    n = len(packet)
    if n < MIN_PACKET_LENGTH:
        raise LocalProtocolError(f"a {n}-byte buffer is not a packet")
    fragmented = bool(packet[IDX_FLAGS] & FLAG_FRAGMENTED)
    total = fragment_count(n, mtu)
    if total == 1:
        if fragmented:
            raise LocalProtocolError("packet fits the MTU but has the fragmented flag set")
        return [bytes(packet)]
    if not fragmented:
        raise LocalProtocolError(
            "packet exceeds the MTU: set the fragmented flag before armor, then split"
        )
    if total > MAX_PACKET_FRAGMENTS:
        raise LocalProtocolError(
            f"{n}-byte packet needs {total} datagrams at mtu {mtu}; at most "
            f"{MAX_PACKET_FRAGMENTS} are allowed (max {max_packet_size(mtu)} bytes)"
        )
    mv = memoryview(packet)
    prefix = bytes(mv[:_ID_AND_DEST])
    out = [bytes(mv[:mtu])]
    per = mtu - FRAGMENT_HEADER_SIZE
    for number, start in enumerate(range(mtu, n, per), start=1):
        hdr = bytes((FRAGMENT_INDICATOR, (total << 4) | number, 0))
        out.append(b"".join((prefix, hdr, mv[start : start + per])))
    return out


# --- reassembly --------------------------------------------------------------------------------


class DropReason(StrEnum):
    """Why the reassembler discarded a datagram or a partial set (keys of ``drops``)."""

    INVALID_FRAGMENT = "invalid_fragment"  # not a fragment, or numbers break the rules
    INVALID_HEAD = "invalid_head"  # shorter than a packet, or flag 0x40 clear
    DUPLICATE_FRAGMENT = "duplicate_fragment"
    DUPLICATE_HEAD = "duplicate_head"
    INCONSISTENT_TOTAL = "inconsistent_total"  # disagrees with the set's first fragment
    TOO_LARGE = "too_large"  # the set would exceed the largest packet; whole set dropped
    EVICTED = "evicted"  # an incomplete set overwritten in ring order by a new one
    EXPIRED = "expired"  # an incomplete set older than the timeout, reclaimed


class _Slot:
    """One reassembly set; ``pieces[0]`` is the head, ``pieces[i]`` fragment ``i``."""

    __slots__ = ("created", "have", "packet_id", "pieces", "size", "total")

    def __init__(self) -> None:
        self.packet_id = -1  # -1: free
        self.created = 0
        self.total = 0  # 0 until a fragment says
        self.have = 0  # bit i set when piece i is present
        self.size = 0
        self.pieces: list[bytes | None] = [None] * MAX_PACKET_FRAGMENTS

    def reset(self, packet_id: int, now: int) -> None:
        self.packet_id = packet_id
        self.created = now
        self.total = 0
        self.have = 0
        self.size = 0
        pieces = self.pieces
        for i in range(MAX_PACKET_FRAGMENTS):
            pieces[i] = None

    def free(self) -> None:
        self.reset(-1, 0)


class Reassembler:
    """Collects heads and fragments until a packet is whole; bounded memory, no clock of its own.

    Like the reference (Switch.cpp:136-269) it uses a fixed ring of slots keyed by packet ID: a
    new set takes the next slot in ring order, overwriting whatever incomplete set was there, so a
    flood of bogus fragments costs at most ``slots`` sets of at most ``max_packet`` bytes each.
    Pieces may arrive in any order (head last too); duplicates are ignored. Unlike the reference,
    an incomplete set older than ``timeout_ms`` (measured from its first piece, by the ``now``
    passed in) is reclaimed, a set whose pieces add up to more than ``max_packet`` bytes is
    dropped at once, and pieces of a packet completed within the last ``timeout_ms`` are dropped
    as duplicates (the reference would start a new set and could deliver the packet twice); the
    last ``slots`` completed IDs are remembered for that. Every discard is counted in
    :attr:`drops`.
    """

    __slots__ = (
        "_by_id",
        "_done",
        "_next",
        "_slots",
        "completed",
        "drops",
        "max_packet",
        "timeout_ms",
    )

    def __init__(
        self,
        slots: int = DEFAULT_REASSEMBLY_SLOTS,
        timeout_ms: int = DEFAULT_REASSEMBLY_TIMEOUT_MS,
        max_packet: int = MAX_PACKET_LENGTH,
    ) -> None:
        if slots < 1:
            raise LocalProtocolError("a reassembler needs at least one slot")
        if timeout_ms < 0:
            raise LocalProtocolError("timeout_ms must not be negative")
        if max_packet < MIN_PACKET_LENGTH:
            raise LocalProtocolError(f"max_packet must be at least {MIN_PACKET_LENGTH}")
        self._slots = [_Slot() for _ in range(slots)]
        self._by_id: dict[int, _Slot] = {}
        self._done: dict[int, int] = {}  # recently completed packet ID -> time, oldest first
        self._next = 0
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet
        self.drops: Counter[DropReason] = Counter()
        self.completed = 0

    @property
    def pending(self) -> int:
        """Incomplete sets currently held."""
        return len(self._by_id)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in incomplete sets (at most ``slots * max_packet``)."""
        return sum(s.size for s in self._by_id.values())

    def _recently_done(self, packet_id: int, now: int) -> bool:
        done = self._done.get(packet_id)
        return done is not None and now - done <= self.timeout_ms

    def _find(self, packet_id: int, now: int) -> _Slot | None:
        slot = self._by_id.get(packet_id)
        if slot is not None and now - slot.created > self.timeout_ms:
            self.drops[DropReason.EXPIRED] += 1
            del self._by_id[packet_id]
            slot.free()
            return None
        return slot

    def _claim(self, packet_id: int, now: int) -> _Slot:
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.packet_id >= 0:
            del self._by_id[slot.packet_id]
            if now - slot.created > self.timeout_ms:
                self.drops[DropReason.EXPIRED] += 1
            else:
                self.drops[DropReason.EVICTED] += 1
        slot.reset(packet_id, now)
        self._by_id[packet_id] = slot
        return slot

    def _store(self, slot: _Slot, index: int, data: bytes) -> bytearray | None:
        """Add a piece; returns the whole packet and frees the slot when that completes it."""
        slot.size += len(data)
        if slot.size > self.max_packet:
            self.drops[DropReason.TOO_LARGE] += 1
            del self._by_id[slot.packet_id]
            slot.free()
            return None
        slot.pieces[index] = data
        slot.have |= 1 << index
        if slot.total == 0 or slot.have.bit_count() != slot.total or not slot.have & 1:
            return None
        pieces = slot.pieces
        out = bytearray(pieces[0] or b"")
        for i in range(1, slot.total):
            out += pieces[i] or b""
        del self._by_id[slot.packet_id]
        done = self._done
        done.pop(slot.packet_id, None)
        done[slot.packet_id] = slot.created
        if len(done) > len(self._slots):
            del done[next(iter(done))]
        slot.free()
        self.completed += 1
        return out

    def add_fragment(self, data: Buf, now: int) -> bytearray | None:
        """Take a fragment addressed to us; returns the whole packet if this completed it.

        Relaying fragments for others is the caller's job, before this (Switch.cpp:116-133).
        """
        if not is_fragment(data):
            self.drops[DropReason.INVALID_FRAGMENT] += 1
            return None
        numbers = data[IDX_FRAGMENT_NO]
        total = numbers >> 4
        number = numbers & 0x0F
        if not (1 < total <= MAX_PACKET_FRAGMENTS and 1 <= number < total):
            self.drops[DropReason.INVALID_FRAGMENT] += 1
            return None
        if len(data) - FRAGMENT_HEADER_SIZE > self.max_packet:
            self.drops[DropReason.TOO_LARGE] += 1
            return None
        packet_id = int.from_bytes(data[0:8], "big")
        slot = self._find(packet_id, now)
        if slot is None:
            if self._recently_done(packet_id, now):
                self.drops[DropReason.DUPLICATE_FRAGMENT] += 1
                return None
            slot = self._claim(packet_id, now)
        elif slot.have & (1 << number):
            self.drops[DropReason.DUPLICATE_FRAGMENT] += 1
            return None
        elif slot.total and slot.total != total:
            self.drops[DropReason.INCONSISTENT_TOTAL] += 1
            return None
        if slot.total == 0:
            # The head may already be here; its bit must not exceed the total now learned.
            slot.total = total
        return self._store(slot, number, bytes(data[FRAGMENT_HEADER_SIZE:]))

    def add_head(self, data: Buf, now: int) -> bytearray | None:
        """Take a packet head with flag 0x40; returns the whole packet if fragments were all in."""
        if len(data) < MIN_PACKET_LENGTH or not data[IDX_FLAGS] & FLAG_FRAGMENTED:
            self.drops[DropReason.INVALID_HEAD] += 1
            return None
        if len(data) > self.max_packet:
            self.drops[DropReason.TOO_LARGE] += 1
            return None
        packet_id = int.from_bytes(data[0:8], "big")
        slot = self._find(packet_id, now)
        if slot is None:
            if self._recently_done(packet_id, now):
                self.drops[DropReason.DUPLICATE_HEAD] += 1
                return None
            slot = self._claim(packet_id, now)
        elif slot.have & 1:
            self.drops[DropReason.DUPLICATE_HEAD] += 1
            return None
        return self._store(slot, 0, bytes(data))

    def add(self, data: Buf, now: int) -> bytearray | None:
        """Route one datagram addressed to us: fragment, fragmented head, or whole packet.

        A whole (unfragmented) packet comes straight back as a ``bytearray`` ready for dearmor;
        anything else too short to be either is counted as an invalid head and dropped.
        """
        if is_fragment(data):
            return self.add_fragment(data, now)
        if len(data) >= MIN_PACKET_LENGTH and not data[IDX_FLAGS] & FLAG_FRAGMENTED:
            return bytearray(data)
        return self.add_head(data, now)

    def expire(self, now: int) -> int:
        """Reclaim every incomplete set older than the timeout; returns how many.

        Optional: stale sets are also reclaimed lazily when their ID or their slot comes up.
        """
        stale = [s for s in self._by_id.values() if now - s.created > self.timeout_ms]
        for s in stale:
            del self._by_id[s.packet_id]
            s.free()
        self.drops[DropReason.EXPIRED] += len(stale)
        return len(stale)


__all__ = [
    "DEFAULT_REASSEMBLY_SLOTS",
    "DEFAULT_REASSEMBLY_TIMEOUT_MS",
    "IDX_FRAGMENT_HOPS",
    "IDX_FRAGMENT_NO",
    "DropReason",
    "Fragment",
    "Reassembler",
    "build_fragment",
    "fragment_count",
    "increment_fragment_hops",
    "is_fragment",
    "max_packet_size",
    "needs_fragmentation",
    "split",
]
