"""Cursor reader and growing writer for ZeroTier's big-endian wire formats.

Every codec parses through :class:`Reader` so that a truncated or oversized field always
surfaces as :class:`~ztnode.errors.DecodeError` (never ``IndexError`` or ``struct.error``), and
so that counts read from the wire are checked against the bytes left before anything is
allocated for them.
"""

from __future__ import annotations

import struct
from typing import Final

from ztnode.errors import DecodeError

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")

Buf = bytes | bytearray | memoryview


class Reader:
    """Walks a byte buffer forward; every read checks bounds first.

    The reader keeps a ``memoryview`` so sub-slices (``view``) cost no copy; ``bytes`` copies only
    what a decoded object must own.
    """

    __slots__ = ("_end", "_mv", "pos")

    def __init__(self, data: Buf, pos: int = 0, end: int | None = None) -> None:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        self._mv = mv
        self._end = len(mv) if end is None else end
        if not 0 <= pos <= self._end <= len(mv):
            raise DecodeError(f"reader window [{pos}, {end}) outside a {len(mv)}-byte buffer")
        self.pos = pos

    @property
    def remaining(self) -> int:
        """Bytes left between the cursor and the end of the window."""
        return self._end - self.pos

    @property
    def end(self) -> int:
        return self._end

    def at_end(self) -> bool:
        return self.pos >= self._end

    def need(self, n: int, what: str = "field") -> None:
        """Raise unless at least ``n`` more bytes are available."""
        if n < 0 or self.pos + n > self._end:
            raise DecodeError(
                f"truncated {what}: need {n} bytes at offset {self.pos}, "
                f"have {self._end - self.pos}"
            )

    def skip(self, n: int, what: str = "field") -> None:
        self.need(n, what)
        self.pos += n

    def u8(self, what: str = "u8") -> int:
        if self.pos >= self._end:
            raise DecodeError(f"truncated {what}: need 1 byte at offset {self.pos}")
        v = self._mv[self.pos]
        self.pos += 1
        return v

    def u16(self, what: str = "u16") -> int:
        self.need(2, what)
        (v,) = _U16.unpack_from(self._mv, self.pos)
        self.pos += 2
        return int(v)

    def u32(self, what: str = "u32") -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self._mv, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str = "u64") -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self._mv, self.pos)
        self.pos += 8
        return int(v)

    def i16(self, what: str = "i16") -> int:
        self.need(2, what)
        (v,) = _I16.unpack_from(self._mv, self.pos)
        self.pos += 2
        return int(v)

    def i32(self, what: str = "i32") -> int:
        self.need(4, what)
        (v,) = _I32.unpack_from(self._mv, self.pos)
        self.pos += 4
        return int(v)

    def i64(self, what: str = "i64") -> int:
        self.need(8, what)
        (v,) = _I64.unpack_from(self._mv, self.pos)
        self.pos += 8
        return int(v)

    def uint(self, n: int, what: str = "uint") -> int:
        """An ``n``-byte big-endian unsigned integer (5-byte addresses, 6-byte MACs)."""
        self.need(n, what)
        v = int.from_bytes(self._mv[self.pos : self.pos + n], "big")
        self.pos += n
        return v

    def address(self, what: str = "address") -> int:
        """A 40-bit ZeroTier address, 5 bytes big-endian."""
        return self.uint(5, what)

    def raw(self, n: int, what: str = "bytes") -> bytes:
        self.need(n, what)
        v = self._mv[self.pos : self.pos + n].tobytes()
        self.pos += n
        return v

    def view(self, n: int, what: str = "bytes") -> memoryview:
        """The next ``n`` bytes without copying; valid only while the source buffer is."""
        self.need(n, what)
        v = self._mv[self.pos : self.pos + n]
        self.pos += n
        return v

    def rest(self) -> bytes:
        """Everything left in the window, copied."""
        v = self._mv[self.pos : self._end].tobytes()
        self.pos = self._end
        return v

    def peek_u8(self, what: str = "u8") -> int:
        if self.pos >= self._end:
            raise DecodeError(f"truncated {what}: need 1 byte at offset {self.pos}")
        return int(self._mv[self.pos])

    def sub(self, n: int, what: str = "block") -> Reader:
        """A reader over the next ``n`` bytes; the parent skips past them."""
        self.need(n, what)
        r = Reader(self._mv, self.pos, self.pos + n)
        self.pos += n
        return r

    def count(self, n: int, min_item_size: int, what: str = "items") -> int:
        """Check a wire-supplied item count against the bytes left before allocating for it.

        This is how parsers keep memory proportional to their input: a count that could not fit
        even with minimum-size items is rejected up front.
        """
        if n * min_item_size > self._end - self.pos:
            raise DecodeError(
                f"{what}: count {n} needs at least {n * min_item_size} bytes, "
                f"{self._end - self.pos} left"
            )
        return n

    def expect_end(self, what: str = "record") -> None:
        if self.pos != self._end:
            raise DecodeError(f"{what}: {self._end - self.pos} unexpected trailing bytes")


class Writer:
    """Appends big-endian fields to a ``bytearray``.

    Codecs build whole packets in one ``bytearray`` so the armor step can work in place.
    """

    __slots__ = ("buf",)

    def __init__(self, initial: Buf | None = None) -> None:
        self.buf = bytearray(initial) if initial is not None else bytearray()

    def __len__(self) -> int:
        return len(self.buf)

    def u8(self, v: int) -> Writer:
        self.buf.append(v & 0xFF if 0 <= v <= 0xFF else _range(v, 8))
        return self

    def u16(self, v: int) -> Writer:
        self.buf += _pack(_U16, v)
        return self

    def u32(self, v: int) -> Writer:
        self.buf += _pack(_U32, v)
        return self

    def u64(self, v: int) -> Writer:
        self.buf += _pack(_U64, v)
        return self

    def i16(self, v: int) -> Writer:
        self.buf += _pack(_I16, v)
        return self

    def i32(self, v: int) -> Writer:
        self.buf += _pack(_I32, v)
        return self

    def i64(self, v: int) -> Writer:
        self.buf += _pack(_I64, v)
        return self

    def uint(self, v: int, n: int) -> Writer:
        if v < 0 or v >> (8 * n):
            raise ValueError(f"{v} does not fit in {n} unsigned bytes")
        self.buf += v.to_bytes(n, "big")
        return self

    def address(self, v: int) -> Writer:
        return self.uint(v, 5)

    def raw(self, b: Buf) -> Writer:
        self.buf += b
        return self

    def reserve_u16(self) -> int:
        """Append a placeholder u16 (for a length known later) and return its offset."""
        pos = len(self.buf)
        self.buf += b"\0\0"
        return pos

    def patch_u16(self, pos: int, v: int) -> None:
        _U16.pack_into(self.buf, pos, v)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


def _range(v: int, bits: int) -> int:
    raise ValueError(f"{v} does not fit in {bits} unsigned bits")


def _pack(s: struct.Struct, v: int) -> bytes:
    try:
        return s.pack(v)
    except struct.error as e:
        raise ValueError(f"{v} does not fit the {s.format!r} field: {e}") from None


__all__ = ["Buf", "Reader", "Writer"]
