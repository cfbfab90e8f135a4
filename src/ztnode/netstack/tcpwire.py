"""TCP header codec (RFC 9293 §3.1), options from RFC 9293, 7323 (window scale, timestamps)
and 2018 (SACK). The state machine lives in :mod:`ztnode.netstack.tcp`; this is bytes only.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |     |N|C|E|U|A|P|R|S|F|                               |
    | Offset| Rsv |S|W|C|R|C|S|S|Y|I|            Window             |
    |       |     | |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Flags are a plain ``int`` (bit constants below, NS as bit 8) because ``enum.IntFlag``
arithmetic is several times slower on the per-segment path. The options the stack uses are
decoded into fields; unknown options are skipped by their length. A known option with the
wrong length is skipped too (as Linux does) rather than failing the segment, but a length
byte below 2 or running past the header is a :class:`DecodeError` (RFC 9293 §3.1 asks for
robustness against exactly that). Values are stored as received (a window scale above 14 is
the state machine's to clamp, RFC 7323 §2.3). Data offset and checksum are derived.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, final

from ztnode.errors import DecodeError
from ztnode.netstack._codec import trusted_constructor
from ztnode.netstack.checksum import internet_checksum, ones_sum, pseudo_header_sum
from ztnode.netstack.ipproto import PROTO_TCP

Buf = bytes | bytearray | memoryview

TCP_HEADER_LEN: Final = 20
TCP_MAX_OPTIONS_LEN: Final = 40

FIN: Final = 0x001
SYN: Final = 0x002
RST: Final = 0x004
PSH: Final = 0x008
ACK: Final = 0x010
URG: Final = 0x020
ECE: Final = 0x040
CWR: Final = 0x080
NS: Final = 0x100
FLAG_MASK: Final = 0x1FF

OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WINDOW_SCALE: Final = 3
OPT_SACK_PERMITTED: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMPS: Final = 8

_HDR: Final = struct.Struct(">HHIIBBHHH")
_MSS: Final = struct.Struct(">BBH")
_II: Final = struct.Struct(">II")
_TS_FUSED: Final = struct.Struct(">HBBII")  # two leading bytes (NOP NOP or SACKP) and TS
_FLAG_NAMES: Final = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"))
_FLAG_NAMES_ECN: Final = ((ECE, "E"), (CWR, "C"), (NS, "N"))


def flags_to_str(flags: int) -> str:
    """tcpdump-style flag letters (``S``, ``S.`` is not used: ``A`` means ACK)."""
    return "".join(c for f, c in _FLAG_NAMES + _FLAG_NAMES_ECN if flags & f) or "."


def encode_options(
    mss: int | None,
    timestamps: tuple[int, int] | None,
    sack_permitted: bool,
    window_scale: int | None,
    sack_blocks: tuple[tuple[int, int], ...] | None,
) -> bytes:
    """TCP options padded to a multiple of 4 with NOP alignment as Linux does; the one encoder
    for the codec and the stack's segment emission.

    Order and layout: MSS; SACK-permitted fused with timestamps when both are present
    (``SACKP TS`` is 12 bytes, no padding), else NOP NOP TS and NOP NOP SACKP; NOP WS;
    NOP NOP SACK. A SYN from this encoder is byte-identical to Linux's
    ``MSS, SACKP, TS, NOP, WS`` except that the NOP precedes WS.
    """
    parts: list[bytes] = []
    if mss is not None:
        parts.append(_MSS.pack(OPT_MSS, 4, mss))
    if timestamps is not None:
        lead = 0x0402 if sack_permitted else 0x0101
        parts.append(_TS_FUSED.pack(lead, OPT_TIMESTAMPS, 10, timestamps[0], timestamps[1]))
    elif sack_permitted:
        parts.append(b"\x01\x01\x04\x02")
    if window_scale is not None:
        parts.append(bytes((OPT_NOP, OPT_WINDOW_SCALE, 3, window_scale)))
    if sack_blocks:
        parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack_blocks))))
        parts.extend(_II.pack(a, b) for a, b in sack_blocks)
    return b"".join(parts)


TcpOptions = tuple[
    int | None, int | None, bool, tuple[tuple[int, int], ...], tuple[int, int] | None
]


def parse_options(mv: memoryview, hlen: int) -> TcpOptions:
    """``(mss, window_scale, sack_permitted, sack_blocks, timestamps)`` from the option bytes
    of a segment whose header is ``hlen`` bytes (``mv`` starts at the TCP header); DecodeError
    for a truncated or malformed option. Unknown options are skipped, known ones of the wrong
    length ignored (RFC 9293 3.1). One parser for the codec and the stack's fast path."""
    mss: int | None = None
    ws: int | None = None
    sackp = False
    sacks: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    i = TCP_HEADER_LEN
    while i < hlen:
        kind = mv[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= hlen:
            raise DecodeError(f"TCP option {kind} truncated before its length")
        ln = mv[i + 1]
        if ln < 2 or i + ln > hlen:
            raise DecodeError(f"TCP option {kind} has bad length {ln}")
        if kind == OPT_TIMESTAMPS:
            if ln == 10:
                ts = _II.unpack_from(mv, i + 2)
        elif kind == OPT_MSS:
            if ln == 4:
                mss = (mv[i + 2] << 8) | mv[i + 3]
        elif kind == OPT_WINDOW_SCALE:
            if ln == 3:
                ws = mv[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if ln == 2:
                sackp = True
        elif kind == OPT_SACK and ln in (10, 18, 26, 34):
            sacks = tuple(_II.iter_unpack(mv[i + 2 : i + ln]))
        i += ln
    return mss, ws, sackp, sacks, ts


@final
@dataclass(frozen=True, slots=True)
class TcpSegmentHeader:
    """A TCP header with its decoded options.

    ``sack_blocks`` are ``(left edge, right edge)`` pairs; ``timestamps`` is
    ``(TSval, TSecr)``. ``None``/``False``/``()`` mean the option is absent.
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.src_port <= 0xFFFF or not 0 <= self.dst_port <= 0xFFFF:
            raise ValueError("TCP ports are 16 bits")
        if not 0 <= self.seq <= 0xFFFFFFFF or not 0 <= self.ack <= 0xFFFFFFFF:
            raise ValueError("sequence and acknowledgment numbers are 32 bits")
        if not 0 <= self.flags <= FLAG_MASK:
            raise ValueError(f"TCP flags {self.flags:#x} outside the 9 defined bits")
        if not 0 <= self.window <= 0xFFFF or not 0 <= self.urgent <= 0xFFFF:
            raise ValueError("window and urgent pointer are 16 bits")
        if self.mss is not None and not 0 <= self.mss <= 0xFFFF:
            raise ValueError("MSS is 16 bits")
        if self.window_scale is not None and not 0 <= self.window_scale <= 255:
            raise ValueError("window scale is a byte")
        if len(self.sack_blocks) > 4:
            raise ValueError("at most 4 SACK blocks fit in a TCP header")
        for a, b in self.sack_blocks:
            if not 0 <= a <= 0xFFFFFFFF or not 0 <= b <= 0xFFFFFFFF:
                raise ValueError("SACK edges are 32 bits")
        if self.timestamps is not None and not all(0 <= t <= 0xFFFFFFFF for t in self.timestamps):
            raise ValueError("timestamps are 32 bits")

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)

    @classmethod
    def parse(
        cls,
        data: Buf,
        src: IPv4Address | IPv6Address | None = None,
        dst: IPv4Address | IPv6Address | None = None,
        *,
        verify_checksum: bool = True,
    ) -> tuple[TcpSegmentHeader, memoryview]:
        """Decode a segment (the whole IP payload) into header and payload view.

        The checksum is verified against the pseudo-header when ``src`` and ``dst`` are given
        and ``verify_checksum`` holds.
        """
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        if n < TCP_HEADER_LEN:
            raise DecodeError(f"TCP segment of {n} bytes is shorter than its header")
        sport, dport, seq, ack, off, fl, win, _ck, urg = _HDR.unpack_from(mv, 0)
        hlen = (off >> 4) << 2
        if hlen < TCP_HEADER_LEN or hlen > n:
            raise DecodeError(f"TCP data offset {hlen} inconsistent with {n} bytes")
        if (
            verify_checksum
            and src is not None
            and dst is not None
            and ones_sum(mv, pseudo_header_sum(src, dst, PROTO_TCP, n)) != 0xFFFF
        ):
            raise DecodeError("TCP checksum mismatch")
        flags = ((off & 1) << 8) | fl
        make = _make_tcp
        if hlen == TCP_HEADER_LEN:
            return (
                make(sport, dport, seq, ack, flags, win, urg, None, None, False, (), None),
                mv[hlen:],
            )
        mss, ws, sackp, sacks, ts = parse_options(mv, hlen)
        return (
            make(sport, dport, seq, ack, flags, win, urg, mss, ws, sackp, sacks, ts),
            mv[hlen:],
        )

    @classmethod
    def decode(cls, data: Buf) -> TcpSegmentHeader:
        """The header alone, without checksum verification."""
        return cls.parse(data, verify_checksum=False)[0]

    def options_bytes(self) -> bytes:
        """The encoded options (see :func:`encode_options`); at most 40 bytes."""
        opts = encode_options(
            self.mss, self.timestamps, self.sack_permitted, self.window_scale, self.sack_blocks
        )
        if len(opts) > TCP_MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options need {len(opts)} bytes, at most 40 fit")
        return opts

    def encode(
        self,
        payload: Buf = b"",
        src: IPv4Address | IPv6Address | None = None,
        dst: IPv4Address | IPv6Address | None = None,
    ) -> bytes:
        """Header, options and ``payload``; the checksum is filled in when ``src``/``dst``
        are given (otherwise left zero, e.g. for checksum offload in tests)."""
        opts = self.options_bytes()
        hlen = TCP_HEADER_LEN + len(opts)
        buf = bytearray(
            _HDR.pack(
                self.src_port,
                self.dst_port,
                self.seq,
                self.ack,
                ((hlen >> 2) << 4) | (self.flags >> 8),
                self.flags & 0xFF,
                self.window,
                0,
                self.urgent,
            )
        )
        buf += opts
        buf += payload
        if src is not None and dst is not None:
            ck = internet_checksum(buf, pseudo_header_sum(src, dst, PROTO_TCP, len(buf)))
            buf[16] = ck >> 8
            buf[17] = ck & 0xFF
        return bytes(buf)

    @property
    def header_length(self) -> int:
        return TCP_HEADER_LEN + len(self.options_bytes())

    def __str__(self) -> str:
        return (
            f"{self.src_port} > {self.dst_port} [{flags_to_str(self.flags)}] "
            f"seq {self.seq} ack {self.ack} win {self.window}"
        )


_make_tcp = trusted_constructor(TcpSegmentHeader)


__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "FLAG_MASK",
    "NS",
    "OPT_EOL",
    "OPT_MSS",
    "OPT_NOP",
    "OPT_SACK",
    "OPT_SACK_PERMITTED",
    "OPT_TIMESTAMPS",
    "OPT_WINDOW_SCALE",
    "PROTO_TCP",
    "PSH",
    "RST",
    "SYN",
    "TCP_HEADER_LEN",
    "TCP_MAX_OPTIONS_LEN",
    "URG",
    "TcpSegmentHeader",
    "flags_to_str",
]
