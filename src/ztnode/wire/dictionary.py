"""ZeroTier's ``Dictionary``: the ``key=value`` text blob of network configs and request metadata.

Format (``node/Dictionary.hpp`` in ZeroTierOne 1.14.1; fact sheet ``protocol-network.md`` §3.1):

* Entries are ``key=value`` separated by a single LF, with no leading or trailing separator. The
  reference keeps the blob NUL-terminated in a fixed-size array; the NUL is not transmitted.
* Readers end an entry at CR or LF (and the whole blob at the first NUL) and scan entries in
  order: the **first** entry whose line starts with ``key=`` wins, duplicates are legal.
* Values are escaped on write: NUL ``\\0``, CR ``\\r``, LF ``\\n``, backslash ``\\\\`` and ``=``
  ``\\e``; every other byte (including 0x80-0xff) is written raw. On read a backslash followed by
  any other byte yields that byte, and a backslash at the very end of a line is dropped.
* Integers are written as exactly 16 lowercase hex digits. The signed writer of the reference
  drops the minus sign of a negative value (it formats ``|v|`` into ``tmp+1`` and then hands on
  ``tmp+1``), so ``-42`` is stored as ``000000000000002a``; :meth:`Dictionary.add_int` copies that.
  Integers are read with ``strtoull(value, 16)`` semantics from at most 127 bytes of the value
  (the reference's scratch buffer is 128 bytes), and an empty value reads as the default.
* Booleans are written ``1``/``0`` and read as true iff the first byte is ``1``, ``t`` or ``T``.

Capacity matters for interoperability: the reference stores a dictionary in a ``char[C]`` and an
``add`` that would not leave room for the terminating NUL fails and leaves the blob unchanged.
Network configs use ``C`` = 484 520 on x86-64 Linux (derived from C struct sizes, §0), request
metadata ``C`` = 1024. A blob therefore holds at most ``C - 1`` bytes.

Keys are hard-coded short ASCII names in the protocol. The reference does not check them; here a
key containing ``=``, CR, LF or NUL is refused with :class:`~ztnode.errors.LocalProtocolError`
because such an entry could never be read back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, overload

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf

# Capacity of the netconf dictionary on x86-64 Linux (node/NetworkConfig.hpp:96, computed from
# struct sizes of 1.14.1; the protocol-network.md §0 table).
NETCONF_DICT_CAPACITY: Final = 484_520
# Capacity of the NETWORK_CONFIG_REQUEST metadata dictionary (node/NetworkConfig.hpp:99).
METADATA_DICT_CAPACITY: Final = 1024
# Bytes of a value the reference's integer getters look at (a char[128] scratch buffer).
_INT_SCRATCH: Final = 127
# Bytes of a value the reference's boolean getter looks at (a char[4] scratch buffer).
_BOOL_SCRATCH: Final = 3

_MASK64: Final = (1 << 64) - 1
_INT64_MAX: Final = (1 << 63) - 1
_INT64_MIN: Final = -(1 << 63)

_LINE_SPLIT: Final = re.compile(rb"[\r\n]")
_UNESCAPE_MAP: Final = {b"r": b"\r", b"n": b"\n", b"0": b"\0", b"e": b"=", b"": b""}
_BAD_KEY_BYTES: Final = (b"=", b"\r", b"\n", b"\0")
_C_SPACE: Final = b" \t\n\v\f\r"


class DictionaryFullError(LocalProtocolError):
    """An ``add`` would exceed the dictionary's capacity; the dictionary is left unchanged.

    The reference's ``add`` returns false in this case and ``NetworkConfig::toDictionary`` gives
    up, so a caller building a config must shrink it rather than send a truncated one.
    """


def escape_value(value: bytes) -> bytes:
    """Escape raw value bytes the way ``Dictionary::add`` does."""
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\0", b"\\0")
        .replace(b"\r", b"\\r")
        .replace(b"\n", b"\\n")
        .replace(b"=", b"\\e")
    )


def unescape_value(raw: bytes) -> bytes:
    """Undo :func:`escape_value` with the reader's leniency (unknown escapes yield the byte, a
    trailing lone backslash is dropped).

    Works on the pieces between backslashes rather than one regex match per escape: a value that
    is all escapes (a hostile or binary-heavy config) then costs a few bytes of memory per input
    byte, not dozens.
    """
    if b"\\" not in raw:
        return raw
    parts = raw.split(b"\\")
    out = bytearray(parts[0])
    last = len(parts) - 1
    get = _UNESCAPE_MAP.get
    literal = False  # the backslash before this piece was itself escaped
    for i in range(1, len(parts)):
        p = parts[i]
        if literal:
            out += p
            literal = False
        elif p:
            c = p[:1]
            out += get(c, c)
            out += p[1:]
        elif i < last:  # "\\\\": an escaped backslash
            out += b"\\"
            literal = True
    return bytes(out)


def parse_hex_u64(text: bytes) -> int:
    """``strtoull(text, NULL, 16)`` as glibc does it: the reference's ``Utils::hexStrToU64``.

    Leading C whitespace and one sign are accepted, then an optional ``0x``; parsing stops at the
    first non-hex byte; no digits gives 0; overflow saturates at 2**64-1; a minus sign negates
    modulo 2**64. Matching this keeps a hand-edited or foreign dictionary readable the same way.
    """
    neg, digits = _split_number(text)
    if not digits:
        return 0
    v = int(digits, 16)
    if v > _MASK64:
        return _MASK64
    return (-v) & _MASK64 if neg else v


def parse_hex_i64(text: bytes) -> int:
    """``strtoll(text, NULL, 16)``: the reference's ``Utils::hexStrTo64`` (saturating, signed)."""
    neg, digits = _split_number(text)
    if not digits:
        return 0
    v = -int(digits, 16) if neg else int(digits, 16)
    return max(_INT64_MIN, min(_INT64_MAX, v))


def _split_number(text: bytes) -> tuple[bool, bytes]:
    i = 0
    n = len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and text[i] in b"+-":
        neg = text[i] == 0x2D
        i += 1
    # "0x" is only a prefix when a hex digit follows it; otherwise the "0" is the number.
    if text[i : i + 2] in (b"0x", b"0X") and i + 2 < n and _is_hex(text[i + 2]):
        i += 2
    j = i
    while j < n and _is_hex(text[j]):
        j += 1
    return neg, text[i:j]


def _is_hex(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x61 <= c <= 0x66 or 0x41 <= c <= 0x46


def _key_bytes(key: str) -> bytes:
    kb = key.encode("utf-8", "surrogateescape")
    if not kb or any(b in kb for b in _BAD_KEY_BYTES):
        raise LocalProtocolError(
            f"dictionary key {key!r} must be non-empty and free of '=', CR, LF and NUL"
        )
    return kb


def _text_bytes(value: str) -> bytes:
    """A str as the C string the reference would store: UTF-8, cut at the first NUL."""
    b = value.encode("utf-8", "surrogateescape")
    nul = b.find(b"\0")
    return b if nul < 0 else b[:nul]


def _text(value: bytes) -> str:
    """Bytes read back as a C string: cut at the first NUL, decoded losslessly."""
    nul = value.find(b"\0")
    if nul >= 0:
        value = value[:nul]
    return value.decode("utf-8", "surrogateescape")


class Dictionary:
    """An ordered, capacity-bounded ``key=value`` blob with the reference's exact byte layout.

    The serialised bytes are the state: ``add_*`` appends an escaped entry, getters scan lines,
    so what :meth:`to_bytes` returns is always what the reference would have built with the same
    sequence of ``add`` calls, and parsing then re-serialising a blob returns it unchanged (up to
    the first NUL).
    """

    __slots__ = ("_capacity", "_data", "_index")

    def __init__(self, capacity: int = NETCONF_DICT_CAPACITY) -> None:
        if capacity < 1:
            raise LocalProtocolError(f"dictionary capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._data = bytearray()
        self._index: dict[bytes, bytes] | None = None

    # --- parsing -------------------------------------------------------------------------------

    @classmethod
    def parse(
        cls, data: Buf, capacity: int = NETCONF_DICT_CAPACITY, *, truncate: bool = False
    ) -> Dictionary:
        """Load a received blob.

        Everything from the first NUL on is ignored, as the reference's C-string copy does. A
        blob longer than ``capacity - 1`` bytes is a :class:`DecodeError`, unless ``truncate`` is
        set: then it is cut to ``capacity - 1`` bytes exactly as ``Dictionary(s, len)`` does when a
        controller loads request metadata (the last entry may lose its tail).
        """
        d = cls(capacity)
        raw = bytes(data)
        nul = raw.find(b"\0")
        if nul >= 0:
            raw = raw[:nul]
        if len(raw) > capacity - 1:
            if not truncate:
                raise DecodeError(
                    f"dictionary of {len(raw)} bytes exceeds capacity {capacity} "
                    f"(at most {capacity - 1} bytes fit)"
                )
            raw = raw[: capacity - 1]
        d._data = bytearray(raw)
        return d

    # --- serialised form -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The blob as transmitted (no terminating NUL)."""
        return bytes(self._data)

    def __bytes__(self) -> bytes:
        return bytes(self._data)

    @property
    def size_bytes(self) -> int:
        """Bytes of the blob, the reference's ``sizeBytes()``."""
        return len(self._data)

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dictionary):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Dictionary({bytes(self._data)!r}, capacity={self._capacity})"

    # --- writing -------------------------------------------------------------------------------

    def add_bytes(self, key: str, value: Buf) -> None:
        """Append ``key`` with a binary value (the reference's ``add(key, Buffer)``)."""
        kb = _key_bytes(key)
        esc = escape_value(bytes(value))
        entry = (b"\n" if self._data else b"") + kb + b"=" + esc
        if len(self._data) + len(entry) > self._capacity - 1:
            raise DictionaryFullError(
                f"adding {key!r} ({len(entry)} bytes) to a {len(self._data)}-byte dictionary "
                f"would exceed its capacity of {self._capacity}"
            )
        self._data += entry
        if self._index is not None and kb not in self._index:
            self._index[kb] = esc

    def add_str(self, key: str, value: str) -> None:
        """Append a text value; like the reference's C-string ``add`` it stops at a NUL."""
        self.add_bytes(key, _text_bytes(value))

    def add_int(self, key: str, value: int) -> None:
        """Append an integer as exactly 16 lowercase hex digits.

        Accepts ``-2**63 <= value < 2**64``. A negative value is written as its magnitude (the
        1.14.1 signed ``add`` loses the sign), so it reads back positive.
        """
        if not _INT64_MIN <= value <= _MASK64:
            raise LocalProtocolError(f"{value} is outside the 64-bit range a dictionary can hold")
        self.add_bytes(key, b"%016x" % abs(value))

    def add_address(self, key: str, address: int) -> None:
        """Append a ZeroTier address as the reference's ``add(key, Address)``: 16 hex digits.

        ``NetworkConfig`` does not use this form; it writes ``Address::toString`` (10 digits)
        through the string ``add``.
        """
        if not 0 <= address < 1 << 40:
            raise LocalProtocolError(f"address {address:#x} is not 40 bits")
        self.add_int(key, address)

    def add_bool(self, key: str, value: bool) -> None:
        """Append ``1`` or ``0``."""
        self.add_bytes(key, b"1" if value else b"0")

    # --- reading -------------------------------------------------------------------------------

    def _lookup(self) -> dict[bytes, bytes]:
        if self._index is None:
            index: dict[bytes, bytes] = {}
            for line in _LINE_SPLIT.split(bytes(self._data)):
                eq = line.find(b"=")
                if eq > 0:
                    index.setdefault(line[:eq], line[eq + 1 :])
            self._index = index
        return self._index

    def get_bytes(self, key: str, max_len: int | None = None) -> bytes | None:
        """The unescaped value of the first ``key`` entry, or ``None`` if there is none.

        ``max_len`` reproduces a reference read into a ``char[max_len + 1]``: the value is cut to
        ``max_len`` bytes.
        """
        raw = self._lookup().get(_key_bytes(key))
        if raw is None:
            return None
        value = unescape_value(raw)
        return value if max_len is None else value[:max_len]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get_bytes(key) is not None

    @overload
    def get_str(self, key: str, default: str, max_len: int | None = None) -> str: ...

    @overload
    def get_str(self, key: str, default: None = None, max_len: int | None = None) -> str | None: ...

    def get_str(
        self, key: str, default: str | None = None, max_len: int | None = None
    ) -> str | None:
        """A text value, read as the reference reads into a ``char[]``: cut at the first NUL.

        ``max_len`` is the usable size of the reference's buffer (its size minus one), for fields
        like the network name (127). Bytes that are not UTF-8 survive via ``surrogateescape``.
        """
        v = self.get_bytes(key, max_len)
        return default if v is None else _text(v)

    def get_int(self, key: str, default: int = 0) -> int:
        """An unsigned hex integer (``getUI``); ``default`` if absent or empty."""
        v = self.get_bytes(key, _INT_SCRATCH)
        if not v:
            return default
        return parse_hex_u64(v)

    def get_signed_int(self, key: str, default: int = 0) -> int:
        """A signed hex integer (``getI``, ``strtoll``); ``default`` if absent or empty."""
        v = self.get_bytes(key, _INT_SCRATCH)
        if not v:
            return default
        return parse_hex_i64(v)

    def get_bool(self, key: str, default: bool = False) -> bool:
        """True iff the value starts with ``1``, ``t`` or ``T``; ``default`` only if absent."""
        v = self.get_bytes(key, _BOOL_SCRATCH)
        if v is None:
            return default
        return v[:1] in (b"1", b"t", b"T")

    def entries(self) -> Iterator[tuple[str, bytes]]:
        """Every entry in blob order, duplicates included, values unescaped.

        Lines without ``=`` (or starting with it) are skipped: no key lookup could match them.
        """
        for line in _LINE_SPLIT.split(bytes(self._data)):
            eq = line.find(b"=")
            if eq > 0:
                yield line[:eq].decode("utf-8", "surrogateescape"), unescape_value(line[eq + 1 :])

    def keys(self) -> list[str]:
        """Distinct keys in first-appearance order."""
        return [k.decode("utf-8", "surrogateescape") for k in self._lookup()]


__all__ = [
    "METADATA_DICT_CAPACITY",
    "NETCONF_DICT_CAPACITY",
    "Dictionary",
    "DictionaryFullError",
    "escape_value",
    "parse_hex_i64",
    "parse_hex_u64",
    "unescape_value",
]
