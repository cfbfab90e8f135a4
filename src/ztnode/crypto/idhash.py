"""ZeroTier's memory-hard identity hash (node/Identity.cpp ``_computeMemoryHardHash``).

The address of an identity is the last 5 bytes of this hash of its public key, and an identity is
only valid if the first byte is below 17: a ~1-in-15 hashcash that makes address squatting cost
2 MiB of memory and a 10 MiB Salsa20/20 stream per attempt.

1. ``d = SHA-512(pub)``; one Salsa20/20 stream, key ``d[0:32]``, nonce ``d[32:40]``, continues
   through all steps below, 64 bytes per step.
2. ``genmem`` (2 MiB, 32768 blocks): block 0 = keystream block 0, block i = block i-1 XOR keystream
   block i, i.e. the running XOR of the first 32768 keystream blocks.
3. For j in 0..131071, over genmem as 262144 u64 cells: ``i1 = BE(cell[2j]) % 8``,
   ``i2 = BE(cell[2j+1]) % 262144``; swap the raw bytes of ``cell[i2]`` and digest word ``i1``; then
   XOR the whole digest with the next keystream block.

How this is made fast in Python: the keystream comes from one C call; step 2 is one numpy
``bitwise_xor.accumulate``. Step 3 is inherently sequential (a swap changes cells read later), so it
runs as a plain Python loop over ints, and it must not XOR 8 digest words per step. Instead
the digest is kept *lazily*: with ``P[j]`` the XOR of mix keystream blocks ``0..j-1`` (a numpy
prefix-XOR, computed up front), the real digest word ``w`` before step j's XOR is
``stored[w] ^ P[j][w]``. A swap then touches one prefix value, and the real digest is rebuilt once
at the end. Cells and words are held as big-endian ints of their raw bytes, so the index arithmetic
reads them directly and swapping/XORing ints is the same as swapping/XORing the raw bytes.

On a 2-core VM this takes about 40 ms (keystream 4 ms, numpy 6 ms, the loop 30 ms), and the loop
holds the interpreter. Where ztnode's C module is loaded, steps 2 and 3 run there instead
(``zt_identity_mix`` in ``accel/csrc/idhash.c``: a few milliseconds, without the interpreter
lock) on the same keystream; the Python steps stay as its reference, and tests compare the two.
"""

from __future__ import annotations

import array
import hashlib
import struct
from typing import Any, Final

import numpy as np

from ztnode.crypto import _cext, salsa
from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

GEN_MEMORY: Final = 2097152  # bytes (ZT_IDENTITY_GEN_MEMORY)
FIRST_BYTE_LESS_THAN: Final = 17  # ZT_IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN
DIGEST_SIZE: Final = 64

_FILL_BLOCKS: Final = GEN_MEMORY // 64  # 32768
_CELLS: Final = GEN_MEMORY // 8  # 262144
_MIX_STEPS: Final = _CELLS // 2  # 131072
_KEYSTREAM_LEN: Final = (_FILL_BLOCKS + _MIX_STEPS) * 64  # 10 MiB
_WORDS: Final = struct.Struct(">8Q")

if array.array("Q").itemsize != 8:  # pragma: no cover - every mainstream ABI has 64-bit long long
    raise ImportError("array('Q') is not 64-bit on this platform")


def identity_hash(
    public_key: Buf, backend: salsa.SalsaBackend | None = None, *, use_c: bool | None = None
) -> bytes:
    """The 64-byte memory-hard digest of a 64-byte C25519 public key.

    ``backend`` picks the Salsa20 implementation (tests pass the numpy one); by default the fastest
    available is used. ``use_c`` picks where steps 2 and 3 run: ztnode's C module when it is
    loaded (the default, None), or always Python (False; the reference tests compare against).
    """
    if len(public_key) != 64:
        raise CryptoError(f"identity public key must be 64 bytes, got {len(public_key)}")
    if use_c and _cext.lib is None:
        raise CryptoError(f"ztnode's C module is not available: {_cext.REASON}")
    digest = hashlib.sha512(public_key).digest()

    # np.empty: the keystream overwrites every byte, so skip zeroing 10 MiB.
    ks = np.empty(_KEYSTREAM_LEN, dtype=np.uint8)
    (backend or salsa.backend()).keystream_into(ks.data, digest[:32], digest[32:40], rounds=20)
    if use_c is not False and mixes_in_c():
        ffi = _cext.ffi
        out = bytearray(digest)
        rc = _cext.lib.zt_identity_mix(ffi.from_buffer(out), ffi.from_buffer(ks), len(ks))
        if rc != 0:  # pragma: no cover - the buffer above is always the keystream's size
            raise CryptoError(f"zt_identity_mix failed ({rc})")
        return bytes(out)
    return _python_mix(digest, ks)


def mixes_in_c() -> bool:
    """Whether :func:`identity_hash` runs its steps in C by default (without the interpreter
    lock: a thread is then as good a place for it as a process)."""
    return _cext.lib is not None


def _python_mix(digest: bytes, ks: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    """Steps 2 and 3 in Python on the whole keystream ``ks`` (the C module's reference)."""
    words = ks.view(np.uint64)

    genmem = np.bitwise_xor.accumulate(words[: _FILL_BLOCKS * 8].reshape(_FILL_BLOCKS, 8), axis=0)
    # byteswap: a native u64 read of the swapped bytes is the big-endian value of the raw cell.
    genmem.byteswap(inplace=True)
    cells = array.array("Q")
    cells.frombytes(genmem.data.cast("B"))

    prefix = np.empty((_MIX_STEPS + 1, 8), dtype=np.uint64)
    prefix[0] = 0
    mix = words[_FILL_BLOCKS * 8 :].reshape(_MIX_STEPS, 8)
    np.bitwise_xor.accumulate(mix, axis=0, out=prefix[1:])
    prefix.byteswap(inplace=True)
    pre = prefix.data.cast("B").cast("Q")  # pre[8*j + w] = P[j][w], big-endian valued

    stored = list(_WORDS.unpack(digest))
    _mix(cells, stored, pre)
    last = _MIX_STEPS * 8
    return _WORDS.pack(*[s ^ pre[last + w] for w, s in enumerate(stored)])


def _mix(cells: array.array[int], stored: list[int], pre: memoryview) -> None:
    """Step 3 on the lazy digest (see module docstring); the hot loop of identity validation.

    Measured choices: ``array('Q')`` cells and a ``memoryview`` prefix beat lists (no million-int
    ``tolist``, better locality), and a list iterator over ``cells`` yields each pair at the moment
    the step reads it, so swaps into cells not yet reached are seen as they must be.
    """
    it = iter(cells)
    for a, b, base in zip(it, it, range(0, _MIX_STEPS * 8, 8), strict=True):
        a &= 7
        b &= 0x3FFFF
        p = pre[base + a]
        c = cells[b]
        cells[b] = stored[a] ^ p
        stored[a] = c ^ p


__all__ = ["DIGEST_SIZE", "FIRST_BYTE_LESS_THAN", "GEN_MEMORY", "identity_hash", "mixes_in_c"]
