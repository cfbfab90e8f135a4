"""The TCP fallback tunnel's framing: ZeroTier datagrams carried over a TCP byte stream.

A node whose network drops UDP sends its datagrams over one TCP connection to a relay
(ZeroTierOne 1.14.1's ``service/OneService.cpp`` and ``tcp-proxy/tcp-proxy.cpp``). The stream is
a sequence of records made to look like TLS 1.2 application data so that middleboxes pass it:

* ``17 03 03 | BE16(n) | n bytes``.
* A body of exactly 4 bytes is the client's hello, ``major | minor | BE16(revision)``. It tells
  the relay that every later record names an address.
* Any other body starts with an address type: ``04`` + 4-byte IPv4 + BE16 port, ``06`` + 16-byte
  IPv6 + BE16 port, or ``00`` (no address). The ZeroTier datagram follows it. From the client,
  the address is where the datagram goes. From the relay, it is where the datagram came from.

The reference reads only the length from the header. Here the three leading bytes must be
``17 03 03`` too, because nothing else ever sends any other value. An unknown address type or a
body too short for its address closes the connection in the reference, and it is a
:class:`~ztnode.errors.DecodeError` here. An empty body is skipped, as the reference skips it.

:class:`RecordDecoder` is incremental, and its buffering is bounded: between calls it keeps at
most one header plus ``max_body`` bytes. The largest legitimate body is an address plus one
datagram of at most the physical MTU ceiling (10324 bytes; the MTU is clamped to 1400..10324).
A declared length above ``max_body`` is refused as soon as the header is read, so a hostile peer
cannot make the decoder wait for, or buffer, 64 KiB per connection.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from ztnode.errors import DecodeError

#: The fake TLS 1.2 application-data header that starts every record.
RECORD_MAGIC: Final = b"\x17\x03\x03"
HEADER_LEN: Final = 5
#: The body length of the client's hello (version bytes only).
HELLO_BODY_LEN: Final = 4
ADDR_NONE: Final = 0
ADDR_V4: Final = 4
ADDR_V6: Final = 6
#: The largest datagram a ZeroTier node sends (the physical MTU is clamped to 1400..10324).
MAX_DATAGRAM: Final = 10324
#: Default bound on one record body: an IPv6 address header plus the largest datagram.
MAX_BODY: Final = 19 + MAX_DATAGRAM

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Hello:
    """The client's greeting: its software version."""

    major: int
    minor: int
    revision: int


@dataclass(frozen=True, slots=True)
class Datagram:
    """One tunnelled datagram.

    ``address`` is None when the record carries no address (type 0): the reference then drops
    the packet, and so does every user of this codec."""

    address: Addr | None
    payload: bytes


Record = Hello | Datagram


def encode_hello(major: int, minor: int, revision: int) -> bytes:
    """The 9-byte greeting a client sends first."""
    if not (0 <= major < 256 and 0 <= minor < 256 and 0 <= revision < 65536):
        raise ValueError("version numbers out of range")
    return RECORD_MAGIC + struct.pack(">HBBH", HELLO_BODY_LEN, major, minor, revision)


def encode_datagram(address: Addr, payload: bytes | bytearray | memoryview) -> bytes:
    """One datagram record; ``address`` is (IP text, port), IPv4 or IPv6."""
    ip = ipaddress.ip_address(address[0])
    port = address[1]
    if not 0 <= port < 65536:
        raise ValueError(f"port {port} out of range")
    head = (b"\x04" if ip.version == 4 else b"\x06") + ip.packed + struct.pack(">H", port)
    body_len = len(head) + len(payload)
    if body_len > 0xFFFF:
        raise ValueError(f"datagram of {len(payload)} bytes does not fit one record")
    return RECORD_MAGIC + struct.pack(">H", body_len) + head + bytes(payload)


def decode_body(body: bytes | memoryview) -> Record | None:
    """Interpret one record body; None for an empty body (skipped, as the reference skips it)."""
    n = len(body)
    if n == 0:
        return None
    if n == HELLO_BODY_LEN:
        major, minor, rev = struct.unpack(">BBH", body)
        return Hello(major, minor, rev)
    kind = body[0]
    if kind == ADDR_V4:
        if n < 7:
            raise DecodeError(f"tunnel record: {n}-byte body too short for an IPv4 address")
        ip4 = str(ipaddress.IPv4Address(bytes(body[1:5])))
        return Datagram((ip4, (body[5] << 8) | body[6]), bytes(body[7:]))
    if kind == ADDR_V6:
        if n < 19:
            raise DecodeError(f"tunnel record: {n}-byte body too short for an IPv6 address")
        ip6 = str(ipaddress.IPv6Address(bytes(body[1:17])))
        return Datagram((ip6, (body[17] << 8) | body[18]), bytes(body[19:]))
    if kind == ADDR_NONE:
        return Datagram(None, bytes(body[1:]))
    raise DecodeError(f"tunnel record: unknown address type {kind}")


class RecordDecoder:
    """Cuts a TCP byte stream into records, whatever the segment boundaries.

    After a :class:`DecodeError` the stream is out of step for good. The decoder then stays
    failed, and the owner must close the connection. The error is raised again on every later
    ``feed``.
    """

    __slots__ = ("_buf", "_failed", "max_body")

    def __init__(self, max_body: int = MAX_BODY) -> None:
        if not HELLO_BODY_LEN <= max_body <= 0xFFFF:
            raise ValueError("max_body must be 4..65535")
        self.max_body = max_body
        self._buf = bytearray()
        self._failed: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a record (at most 5 + ``max_body``)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        """Add received bytes; return every record they complete, in order."""
        if self._failed is not None:
            raise self._failed
        out: list[Record] = []
        buf = self._buf
        buf += data
        pos = 0
        try:
            while len(buf) - pos >= HEADER_LEN:
                if buf[pos : pos + 3] != RECORD_MAGIC:
                    raise DecodeError("tunnel record: not a 17 03 03 header")
                n = (buf[pos + 3] << 8) | buf[pos + 4]
                if n > self.max_body:
                    raise DecodeError(f"tunnel record: body of {n} bytes over {self.max_body}")
                end = pos + HEADER_LEN + n
                if len(buf) < end:
                    break
                record = decode_body(bytes(buf[pos + HEADER_LEN : end]))
                pos = end
                if record is not None:
                    out.append(record)
        except DecodeError as e:
            self._failed = e
            buf.clear()
            raise
        del buf[:pos]
        return out
