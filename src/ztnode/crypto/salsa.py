"""Salsa20/20 and Salsa20/12 (DJB's original: 32-byte key, 8-byte nonce, 64-bit block counter).

ZeroTier uses Salsa20/12 for the legacy packet ciphers (0 and 1) and cryptField, and Salsa20/20 for
the memory-hard identity hash. Backends, fastest first: libsodium (SIMD keystreams) where the
machine has it; ztnode's own C (``ztnode._zt_accel``, which every wheel carries, so an install
from a wheel is fast without libsodium); and, last, a numpy implementation that computes every
64-byte block of a request in parallel, fine for the identity hash and slow for packets. One
warning says so when numpy gets picked.

All functions take ``bytes``, ``bytearray`` or byte-formatted ``memoryview`` arguments.
"""

from __future__ import annotations

import hmac
import warnings
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from ztnode.crypto import _cext, _sodium
from ztnode.crypto._native import native_disabled
from ztnode.crypto.poly import poly1305_portable
from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 8
BLOCK_SIZE: Final = 64
_U64_MASK: Final = 0xFFFFFFFFFFFFFFFF

# With libsodium, a non-zero start block for Salsa20/12 is done by running the stream over this many
# leading zero bytes in a scratch buffer (libsodium has no *_xor_ic for salsa2012). Beyond this
# (never reached by ZeroTier, which starts at block 0 or 1) blocks are computed one by one.
_MAX_PREFIX_BLOCKS: Final = 16


def _check_key_nonce(key: Buf, nonce: Buf) -> None:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"Salsa20 key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise CryptoError(f"Salsa20 nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")


def _check_rounds(rounds: int) -> None:
    if rounds not in (12, 20):
        raise CryptoError(f"Salsa20 rounds must be 12 or 20, got {rounds}")


class SalsaBackend(Protocol):
    """What the public functions need from an implementation (checked inputs only)."""

    name: str

    def xor_into(
        self,
        out: bytearray | memoryview,
        data: Buf,
        key: Buf,
        nonce: Buf,
        *,
        rounds: int,
        counter: int,
    ) -> None: ...

    def keystream_into(
        self, out: bytearray | memoryview, key: Buf, nonce: Buf, *, rounds: int
    ) -> None:
        """Fill ``out`` with keystream from block 0."""
        ...

    def seal_into(self, buf: bytearray | memoryview, key: Buf, nonce: Buf, encrypt: bool) -> bytes:
        """ZeroTier cipher 1 (encrypt) or 0 (MAC only); returns the 16-byte Poly1305 tag."""
        ...

    def open_into(
        self, buf: bytearray | memoryview, key: Buf, nonce: Buf, mac: Buf, decrypt: bool
    ) -> bool: ...


# --- libsodium -----------------------------------------------------------------------------------


class SodiumSalsa:
    """libsodium's Salsa20 family; every call is one or two C calls on the caller's buffers."""

    name = "libsodium"

    def __init__(self) -> None:
        if _sodium.lib is None:
            raise RuntimeError("libsodium is not available")
        self._lib = _sodium.lib
        self._ffi = _sodium.ffi

    def _ptr(self, b: Buf) -> object:
        # bytes are passed to C as-is (no copy); anything else needs a buffer cdata.
        return b if type(b) is bytes else self._ffi.from_buffer(b)

    def xor_into(
        self,
        out: bytearray | memoryview,
        data: Buf,
        key: Buf,
        nonce: Buf,
        *,
        rounds: int,
        counter: int,
    ) -> None:
        n = len(data)
        if n == 0:
            return
        lib = self._lib
        from_buffer = self._ffi.from_buffer
        k = key if type(key) is bytes else from_buffer(key)
        iv = nonce if type(nonce) is bytes else from_buffer(nonce)
        if rounds == 20:
            o = from_buffer(out, require_writable=True)
            d = o if data is out else (data if type(data) is bytes else from_buffer(data))
            lib.crypto_stream_salsa20_xor_ic(o, d, n, iv, counter, k)
        elif counter == 0:
            o = from_buffer(out, require_writable=True)
            d = o if data is out else (data if type(data) is bytes else from_buffer(data))
            lib.crypto_stream_salsa2012_xor(o, d, n, iv, k)
        elif counter <= _MAX_PREFIX_BLOCKS:
            skip = counter * BLOCK_SIZE
            scratch = bytearray(skip + n)
            scratch[skip:] = data
            s = from_buffer(scratch)
            lib.crypto_stream_salsa2012_xor(s, s, skip + n, iv, k)
            out[:] = memoryview(scratch)[skip:]
        else:
            ks = self._blocks2012(key, nonce, counter, n)
            out[:] = _xor_bytes(data, ks)

    def _blocks2012(self, key: Buf, nonce: Buf, counter: int, n: int) -> bytes:
        """Salsa20/12 keystream from an arbitrary block, one ``crypto_core`` call per block."""
        ffi = self._ffi
        block_in = ffi.new("unsigned char[16]")
        block_out = ffi.new("unsigned char[64]")
        block_in[0:8] = bytes(nonce)
        k = self._ptr(key)
        parts = []
        for i in range((n + BLOCK_SIZE - 1) // BLOCK_SIZE):
            block_in[8:16] = ((counter + i) & _U64_MASK).to_bytes(8, "little")
            self._lib.crypto_core_salsa2012(block_out, block_in, k, ffi.NULL)
            parts.append(ffi.buffer(block_out)[:])
        return b"".join(parts)[:n]

    def keystream_into(
        self, out: bytearray | memoryview, key: Buf, nonce: Buf, *, rounds: int
    ) -> None:
        n = len(out)
        if n == 0:
            return
        o = self._ffi.from_buffer(out, require_writable=True)
        if rounds == 20:
            self._lib.crypto_stream_salsa20(o, n, self._ptr(nonce), self._ptr(key))
        else:
            self._lib.crypto_stream_salsa2012(o, n, self._ptr(nonce), self._ptr(key))

    def seal_into(self, buf: bytearray | memoryview, key: Buf, nonce: Buf, encrypt: bool) -> bytes:
        lib = self._lib
        from_buffer = self._ffi.from_buffer
        k = key if type(key) is bytes else from_buffer(key)
        iv = nonce if type(nonce) is bytes else from_buffer(nonce)
        n = len(buf)
        if encrypt:
            # One stream call over 64 zero bytes + payload yields the Poly1305 key (block 0, bytes
            # 0..31) and the ciphertext (block 1 on) together; the tag goes into the discarded
            # bytes 32..47, so nothing else is allocated.
            scratch = bytearray(BLOCK_SIZE + n)
            scratch[BLOCK_SIZE:] = buf
            s = from_buffer(scratch)
            lib.crypto_stream_salsa2012_xor(s, s, BLOCK_SIZE + n, iv, k)
            buf[:] = memoryview(scratch)[BLOCK_SIZE:]
            lib.crypto_onetimeauth_poly1305(s + 32, s + BLOCK_SIZE, n, s)
            return bytes(scratch[32:48])
        scratch = bytearray(48)
        s = from_buffer(scratch)
        lib.crypto_stream_salsa2012(s, 32, iv, k)
        lib.crypto_onetimeauth_poly1305(s + 32, from_buffer(buf), n, s)
        return bytes(scratch[32:48])

    def open_into(
        self, buf: bytearray | memoryview, key: Buf, nonce: Buf, mac: Buf, decrypt: bool
    ) -> bool:
        lib = self._lib
        from_buffer = self._ffi.from_buffer
        k = key if type(key) is bytes else from_buffer(key)
        iv = nonce if type(nonce) is bytes else from_buffer(nonce)
        n = len(buf)
        b = from_buffer(buf)
        if decrypt:
            scratch = bytearray(BLOCK_SIZE + n)
            scratch[BLOCK_SIZE:] = buf
            s = from_buffer(scratch)
            lib.crypto_stream_salsa2012_xor(s, s, BLOCK_SIZE + n, iv, k)
            # The MAC covers the ciphertext, still intact in buf.
            lib.crypto_onetimeauth_poly1305(s + 32, b, n, s)
            if not hmac.compare_digest(scratch[32 : 32 + len(mac)], mac):
                return False
            buf[:] = memoryview(scratch)[BLOCK_SIZE:]
            return True
        scratch = bytearray(48)
        s = from_buffer(scratch)
        lib.crypto_stream_salsa2012(s, 32, iv, k)
        lib.crypto_onetimeauth_poly1305(s + 32, b, n, s)
        return hmac.compare_digest(scratch[32 : 32 + len(mac)], mac)


# --- ztnode's own C ------------------------------------------------------------------------------


class AccelSalsa:
    """Salsa20 and Poly1305 from ztnode's compiled module (``csrc/primitives.c``)."""

    name = "ztnode-c"

    def __init__(self) -> None:
        if _cext.lib is None:
            raise RuntimeError(f"ztnode's C module is not available: {_cext.REASON}")
        self._lib = _cext.lib
        self._ffi = _cext.ffi

    def _in(self, b: Buf) -> object:
        # bytes are passed to C as-is (no copy); anything else needs a buffer cdata.
        return b if type(b) is bytes else self._ffi.from_buffer(b)

    def xor_into(
        self,
        out: bytearray | memoryview,
        data: Buf,
        key: Buf,
        nonce: Buf,
        *,
        rounds: int,
        counter: int,
    ) -> None:
        n = len(data)
        if n == 0:
            return
        o = self._ffi.from_buffer(out, require_writable=True)
        d = o if data is out else self._in(data)
        self._lib.zt_salsa_xor(o, d, n, self._in(key), self._in(nonce), counter, rounds)

    def keystream_into(
        self, out: bytearray | memoryview, key: Buf, nonce: Buf, *, rounds: int
    ) -> None:
        n = len(out)
        if n == 0:
            return
        out[:] = bytes(n)
        o = self._ffi.from_buffer(out, require_writable=True)
        self._lib.zt_salsa_xor(o, o, n, self._in(key), self._in(nonce), 0, rounds)

    def _poly_key(self, key: Buf, nonce: Buf) -> Any:
        block0 = self._ffi.new("unsigned char[64]")
        self._lib.zt_salsa_block(block0, self._in(key), self._in(nonce), 0, 12)
        return block0

    def seal_into(self, buf: bytearray | memoryview, key: Buf, nonce: Buf, encrypt: bool) -> bytes:
        lib = self._lib
        block0 = self._poly_key(key, nonce)
        b = self._ffi.from_buffer(buf, require_writable=True)
        n = len(buf)
        if encrypt:
            lib.zt_salsa_xor(b, b, n, self._in(key), self._in(nonce), 1, 12)
        tag = self._ffi.new("unsigned char[16]")
        lib.zt_poly1305(tag, b, n, block0)
        return bytes(self._ffi.buffer(tag))

    def open_into(
        self, buf: bytearray | memoryview, key: Buf, nonce: Buf, mac: Buf, decrypt: bool
    ) -> bool:
        lib = self._lib
        block0 = self._poly_key(key, nonce)
        b = self._ffi.from_buffer(buf, require_writable=True)
        n = len(buf)
        tag = self._ffi.new("unsigned char[16]")
        lib.zt_poly1305(tag, b, n, block0)  # the MAC covers the ciphertext
        if not hmac.compare_digest(bytes(self._ffi.buffer(tag))[: len(mac)], bytes(mac)):
            return False
        if decrypt:
            lib.zt_salsa_xor(b, b, n, self._in(key), self._in(nonce), 1, 12)
        return True


# --- numpy fallback ------------------------------------------------------------------------------

_SIGMA: Final = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
# The state is kept as four 4-lane vectors so one numpy operation runs a quarter-round step on all
# four columns (or rows) of every block at once: A holds the diagonal words 0, 5, 10, 15 and
# B, C, D the words the column round pairs with them.
_LANES_A: Final = (0, 5, 10, 15)
_LANES_B: Final = (4, 9, 14, 3)
_LANES_C: Final = (8, 13, 2, 7)
_LANES_D: Final = (12, 1, 6, 11)
_CHUNK_BLOCKS: Final = 8192  # keeps temporaries in cache-sized pieces for large requests

U32Array = npt.NDArray[np.uint32]


def _quarter(
    a: U32Array, b: U32Array, c: U32Array, d: U32Array, *, t: U32Array, u: U32Array
) -> None:
    """The Salsa20 quarter-round on four lanes of every block, in place (t, u are scratch)."""
    for x, y, z, r in ((b, a, d, 7), (c, b, a, 9), (d, c, b, 13), (a, d, c, 18)):
        np.add(y, z, out=t)
        np.left_shift(t, r, out=u)
        x ^= u
        np.right_shift(t, 32 - r, out=u)
        x ^= u


def _numpy_blocks(key: Buf, nonce: Buf, counter: int, nblocks: int, rounds: int) -> bytes:
    """``nblocks`` keystream blocks starting at block ``counter`` (wrapping mod 2**64)."""
    kw = np.frombuffer(bytes(key), dtype="<u4").astype(np.uint32)
    nw = np.frombuffer(bytes(nonce), dtype="<u4").astype(np.uint32)
    out = np.empty((nblocks, 16), dtype="<u4")
    for start in range(0, nblocks, _CHUNK_BLOCKS):
        m = min(_CHUNK_BLOCKS, nblocks - start)
        # uint64 array arithmetic wraps silently, as the Salsa20 block counter does.
        ctr = np.arange(m, dtype=np.uint64) + np.uint64((counter + start) & _U64_MASK)
        lo = (ctr & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        hi = (ctr >> np.uint64(32)).astype(np.uint32)
        init = np.empty((16, m), dtype=np.uint32)
        init[0], init[5], init[10], init[15] = _SIGMA
        init[1:5] = kw[0:4, None]
        init[11:15] = kw[4:8, None]
        init[6], init[7] = nw[0], nw[1]
        init[8], init[9] = lo, hi
        a = init[list(_LANES_A)]
        b = init[list(_LANES_B)]
        c = init[list(_LANES_C)]
        d = init[list(_LANES_D)]
        t = np.empty_like(a)
        u = np.empty_like(a)
        for _ in range(rounds // 2):
            _quarter(a, b, c, d, t=t, u=u)  # column round
            # Rotating the lanes turns the rows into columns: the row round pairs word 0 with
            # 1, 2, 3, word 5 with 6, 7, 4, and so on.
            rb = np.roll(d, -1, axis=0)
            rc = np.roll(c, 2, axis=0)
            rd = np.roll(b, 1, axis=0)
            _quarter(a, rb, rc, rd, t=t, u=u)  # row round
            b = np.roll(rd, -1, axis=0)
            c = np.roll(rc, 2, axis=0)
            d = np.roll(rb, 1, axis=0)
        res = np.empty((16, m), dtype=np.uint32)
        res[list(_LANES_A)] = a
        res[list(_LANES_B)] = b
        res[list(_LANES_C)] = c
        res[list(_LANES_D)] = d
        res += init
        out[start : start + m] = res.T
    return out.tobytes()


def _xor_bytes(a: Buf, b: Buf) -> bytes:
    """``a`` XOR the first ``len(a)`` bytes of ``b``."""
    n = len(a)
    if n == 0:
        return b""
    x = np.frombuffer(a, dtype=np.uint8, count=n)
    y = np.frombuffer(b, dtype=np.uint8, count=n)
    return np.bitwise_xor(x, y).tobytes()


class NumpySalsa:
    """Portable Salsa20: numpy computes all blocks of a request in parallel.

    Slow per packet (tens of numpy operations regardless of size) but exact, and fast enough for the
    10 MiB identity-hash keystream (a few hundred ms).
    """

    name = "numpy"

    def xor_into(
        self,
        out: bytearray | memoryview,
        data: Buf,
        key: Buf,
        nonce: Buf,
        *,
        rounds: int,
        counter: int,
    ) -> None:
        n = len(data)
        if n == 0:
            return
        ks = _numpy_blocks(key, nonce, counter, (n + BLOCK_SIZE - 1) // BLOCK_SIZE, rounds)
        out[:] = _xor_bytes(data, ks)

    def keystream_into(
        self, out: bytearray | memoryview, key: Buf, nonce: Buf, *, rounds: int
    ) -> None:
        n = len(out)
        if n:
            out[:] = _numpy_blocks(key, nonce, 0, (n + BLOCK_SIZE - 1) // BLOCK_SIZE, rounds)[:n]

    def seal_into(self, buf: bytearray | memoryview, key: Buf, nonce: Buf, encrypt: bool) -> bytes:
        n = len(buf)
        ks = _numpy_blocks(key, nonce, 0, 1 + (n + BLOCK_SIZE - 1) // BLOCK_SIZE, 12)
        if encrypt:
            buf[:] = _xor_bytes(buf, ks[BLOCK_SIZE:])
        return poly1305_portable(ks[:32], buf)

    def open_into(
        self, buf: bytearray | memoryview, key: Buf, nonce: Buf, mac: Buf, decrypt: bool
    ) -> bool:
        n = len(buf)
        ks = _numpy_blocks(key, nonce, 0, 1 + (n + BLOCK_SIZE - 1) // BLOCK_SIZE, 12)
        tag = poly1305_portable(ks[:32], buf)
        if not hmac.compare_digest(tag[: len(mac)], bytes(mac)):
            return False
        if decrypt:
            buf[:] = _xor_bytes(buf, ks[BLOCK_SIZE:])
        return True


# --- selection and the public functions ----------------------------------------------------------


def _select() -> SalsaBackend:
    if _sodium.lib is not None:
        return SodiumSalsa()
    if _cext.lib is not None:
        return AccelSalsa()
    if not native_disabled():  # no nagging when the fallback was asked for
        warnings.warn(_sodium.INSTALL_HINT, RuntimeWarning, stacklevel=2)
    return NumpySalsa()


_backend: SalsaBackend = _select()


def backend() -> SalsaBackend:
    """The implementation in use (``libsodium`` when it could be loaded)."""
    return _backend


def salsa20_xor_into(
    out: bytearray | memoryview,
    data: Buf,
    key: Buf,
    nonce: Buf,
    rounds: int = 12,
    counter: int = 0,
) -> None:
    """Write ``data`` XOR keystream (starting at 64-byte block ``counter``) into ``out``.

    ``out`` may be the very same buffer as ``data`` (in-place encryption of a packet body);
    partially overlapping views are not supported.
    """
    _check_key_nonce(key, nonce)
    _check_rounds(rounds)
    if len(out) != len(data):
        raise CryptoError(f"output is {len(out)} bytes but input is {len(data)}")
    if not 0 <= counter <= _U64_MASK:
        raise CryptoError("Salsa20 block counter must fit in 64 bits")
    _backend.xor_into(out, data, key, nonce, rounds=rounds, counter=counter)


def salsa20_xor(key: Buf, nonce: Buf, data: Buf, rounds: int = 12, counter: int = 0) -> bytes:
    """``data`` XOR the Salsa20 keystream starting at 64-byte block ``counter``."""
    out = bytearray(len(data))
    salsa20_xor_into(out, data, key, nonce, rounds, counter)
    return bytes(out)


def salsa20_keystream(key: Buf, nonce: Buf, length: int, rounds: int = 12) -> bytes:
    """The first ``length`` keystream bytes (block 0 onwards)."""
    _check_key_nonce(key, nonce)
    _check_rounds(rounds)
    if length < 0:
        raise CryptoError("keystream length must not be negative")
    out = bytearray(length)
    _backend.keystream_into(out, key, nonce, rounds=rounds)
    return bytes(out)


def salsa2012_poly1305_seal_into(
    buf: bytearray | memoryview, key: Buf, nonce: Buf, encrypt: bool = True
) -> bytes:
    """ZeroTier's legacy armor core; returns the full 16-byte Poly1305 tag.

    Salsa20/12 keystream block 0 bytes 0..31 are the one-time Poly1305 key, the rest of block 0 is
    discarded, and encryption (cipher 1, ``encrypt=True``) uses the stream from block 1 on. The tag
    covers what ends up in ``buf``: ciphertext for cipher 1, plaintext for cipher 0. ``key`` is the
    per-packet mangled key; packets put only the first 8 tag bytes on the wire.
    """
    _check_key_nonce(key, nonce)
    return _backend.seal_into(buf, key, nonce, encrypt)


def salsa2012_poly1305_open_into(
    buf: bytearray | memoryview, key: Buf, nonce: Buf, mac: Buf, decrypt: bool = True
) -> bool:
    """Check ``mac`` (a prefix of the Poly1305 tag, 1..16 bytes) in constant time, then decrypt.

    Returns False, with ``buf`` untouched, when the MAC does not match.
    """
    _check_key_nonce(key, nonce)
    if not 1 <= len(mac) <= 16:
        return False
    return _backend.open_into(buf, key, nonce, mac, decrypt)


__all__ = [
    "NumpySalsa",
    "SalsaBackend",
    "SodiumSalsa",
    "backend",
    "salsa20_keystream",
    "salsa20_xor",
    "salsa20_xor_into",
    "salsa2012_poly1305_open_into",
    "salsa2012_poly1305_seal_into",
]
