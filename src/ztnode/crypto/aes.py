"""AES-256 and ZeroTier's AES-GMAC-SIV (cipher suite 3), with per-key cipher contexts.

AES-GMAC-SIV (node/AES.hpp, AES.cpp), keys K0 (GMAC) and K1 (ECB and CTR), 8-byte IV:

1. ``G = GMAC_K0(nonce = iv || 00000000, aad zero-padded to 16 (no pad if empty) || plaintext)``,
   which is exactly the AES-GCM tag of an empty plaintext with that byte string as AAD;
2. ``tag = AES-ECB_K1(iv || (G[0:8] xor G[8:16]))``;
3. ``ciphertext = AES-CTR_K1(tag with byte 12 & 0x7f, plaintext)``.

Decryption runs CTR with the tag, recovers ``iv || folded GMAC`` by decrypting the tag with K1, and
recomputes the GMAC.

CTR counting. The reference's software AES-CTR increments only the last 32 bits of the counter
block and wraps them; its AES-NI path (and OpenSSL, and ``cryptography``) carry into all 128 bits.
Both agree unless the 32-bit counter wraps inside one message. GMAC-SIV clears the top bit of that
counter (byte 12 & 0x7f), so a message would need over 2**31 blocks (32 GiB) to wrap: ZeroTier
packets (at most ~10 KB) never do. ztnode therefore uses standard 128-bit CTR everywhere,
including the :func:`aes256_ctr` helper; the vector tests pin down where the conventions differ.

Backends. Per key, ``cryptography`` gives a persistent AES-GCM object (GMAC in ~0.5 µs for a
1400-byte packet) and persistent ECB contexts (~0.25 µs per block). CTR needs a new nonce per
packet: ``CipherContext.reset_nonce`` (cryptography >= 43) reuses one context (~0.6 µs); without
it, a reused libcrypto ``EVP_CIPHER_CTX`` through cffi (~1 µs) is next best, and a fresh context
per packet (~8 µs) is the last resort.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from typing import Final, Literal, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ztnode.crypto import _openssl
from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

KEY_SIZE: Final = 32
BLOCK_SIZE: Final = 16
IV_SIZE: Final = 8
TAG_SIZE: Final = 16

CtrBackend = Literal["cryptography", "openssl", "portable"]

_QQ: Final = struct.Struct(">QQ")
_Q: Final = struct.Struct(">Q")
# Clears bit 31 of the 32-bit counter word, i.e. the top bit of byte 12 (in the low u64 of the tag).
_CTR_MASK: Final = 0xFFFFFFFF7FFFFFFF
_ZERO16: Final = bytes(16)
_NONCE_PAD: Final = bytes(4)
_ZERO_IV16: Final = bytes(16)


def _check_key(key: Buf, what: str = "AES-256 key") -> bytes:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"{what} must be {KEY_SIZE} bytes, got {len(key)}")
    return bytes(key)


# --- AES-CTR with a per-key context --------------------------------------------------------------


class CtrContext(Protocol):
    """AES-256-CTR under one key; a call XORs the keystream for ``iv16`` into ``buf`` in place."""

    def xor_into(self, iv16: bytes, buf: bytearray | memoryview) -> None: ...


class _ResetNonceCtr:
    __slots__ = ("_reset", "_update_into")

    def __init__(self, key: bytes) -> None:
        ctx = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV16)).encryptor()
        self._reset = ctx.reset_nonce
        self._update_into = ctx.update_into

    def xor_into(self, iv16: bytes, buf: bytearray | memoryview) -> None:
        self._reset(iv16)
        self._update_into(buf, buf)


class _PortableCtr:
    __slots__ = ("_alg",)

    def __init__(self, key: bytes) -> None:
        self._alg = algorithms.AES(key)

    def xor_into(self, iv16: bytes, buf: bytearray | memoryview) -> None:
        buf[:] = Cipher(self._alg, modes.CTR(iv16)).encryptor().update(buf)


def _has_reset_nonce() -> bool:
    ctx = Cipher(algorithms.AES(bytes(32)), modes.CTR(_ZERO_IV16)).encryptor()
    return hasattr(ctx, "reset_nonce")


_HAS_RESET_NONCE: Final = _has_reset_nonce()


def ctr_backends() -> list[CtrBackend]:
    """The CTR implementations usable here, fastest first."""
    out: list[CtrBackend] = []
    if _HAS_RESET_NONCE:
        out.append("cryptography")
    if _openssl.get_lib() is not None:
        out.append("openssl")
    out.append("portable")
    return out


def _best_ctr() -> CtrBackend:
    # Checked in order so libcrypto is only opened when cryptography cannot do the job alone.
    if _HAS_RESET_NONCE:
        return "cryptography"
    return "openssl" if _openssl.get_lib() is not None else "portable"


_DEFAULT_CTR: Final[CtrBackend] = _best_ctr()


def new_ctr(key: bytes, backend: CtrBackend | None = None) -> CtrContext:
    """A per-key AES-256-CTR context from the named (or the best available) backend."""
    key = _check_key(key)
    b = _DEFAULT_CTR if backend is None else backend
    if b == "cryptography":
        if not _HAS_RESET_NONCE:
            raise CryptoError("this cryptography version lacks CipherContext.reset_nonce (< 43)")
        return _ResetNonceCtr(key)
    if b == "openssl":
        if _openssl.get_lib() is None:
            raise CryptoError("libcrypto (libssl3) could not be loaded")
        return _openssl.EvpAes256Ctr(key)
    if b == "portable":
        return _PortableCtr(key)
    raise CryptoError(f"unknown AES-CTR backend {b!r}")


def _split_ctr(
    xor_into: Callable[[bytes, bytearray | memoryview], None],
) -> tuple[Callable[[bytes], None], Callable[[Buf, bytearray | memoryview], None]]:
    """Present any CTR backend as the (set nonce, transform in place) pair the fast path uses."""
    state: list[bytes] = [_ZERO_IV16]

    def reset(iv16: bytes) -> None:
        state[0] = iv16

    def update_into(data: Buf, out: bytearray | memoryview) -> None:
        xor_into(state[0], out)

    return reset, update_into


# --- AES-GMAC-SIV --------------------------------------------------------------------------------


class AesGmacSiv:
    """ZeroTier cipher suite 3 under one (K0, K1) pair; holds every cipher context it needs.

    Build one per peer (see :class:`~ztnode.crypto.keys.SymmetricKey`) and reuse it: construction
    costs key schedules, per-packet calls do not. Like the contexts it holds, an instance must not
    be used from two threads at once (the node's packet path is single-threaded).
    """

    __slots__ = ("_ctr", "_ecb_dec", "_ecb_enc", "_gmac", "ctr_backend", "ops")

    def __init__(self, k0: bytes, k1: bytes, *, ctr_backend: CtrBackend | None = None) -> None:
        k0 = _check_key(k0, "AES-GMAC-SIV K0")
        k1 = _check_key(k1, "AES-GMAC-SIV K1")
        self.ctr_backend: CtrBackend = _DEFAULT_CTR if ctr_backend is None else ctr_backend
        self._gmac = AESGCM(k0).encrypt
        ecb = Cipher(algorithms.AES(k1), modes.ECB())
        self._ecb_enc = ecb.encryptor().update
        self._ecb_dec = ecb.decryptor().update
        ctr_ctx = new_ctr(k1, self.ctr_backend)
        self._ctr = ctr_ctx.xor_into
        # The bound C calls, for the fused per-packet path in ``ztnode.wire.packet``, which knows
        # the packet layout and saves layers of Python calls per packet: (gmac(nonce12, b"", data)
        # -> tag16, ecb_encrypt(block16), ecb_decrypt(block16), ctr_set_nonce(iv16),
        # ctr_update_into(data, out)); the last two must be called back to back, as a pair.
        reset: Callable[[bytes], object]
        update_into: Callable[[Buf, bytearray | memoryview], object]
        if isinstance(ctr_ctx, _ResetNonceCtr):
            reset, update_into = ctr_ctx._reset, ctr_ctx._update_into
        else:
            reset, update_into = _split_ctr(self._ctr)
        self.ops = (self._gmac, self._ecb_enc, self._ecb_dec, reset, update_into)

    def encrypt_into(self, iv: Buf, aad: Buf, buf: bytearray | memoryview) -> bytes:
        """Encrypt ``buf`` in place and return the 16-byte tag.

        On the wire the tag replaces the packet ID (bytes 0..7) and fills the MAC field (8..15).
        """
        if len(iv) != IV_SIZE:
            raise CryptoError(f"AES-GMAC-SIV IV must be {IV_SIZE} bytes, got {len(iv)}")
        iv8 = bytes(iv)
        # GMAC over aad || zero pad to 16 || plaintext, folded to 8 bytes by XORing its halves.
        g = self._gmac(iv8 + _NONCE_PAD, b"", b"".join((aad, _ZERO16[: -len(aad) % 16], buf)))
        hi, lo = _QQ.unpack(g)
        tag: bytes = self._ecb_enc(iv8 + _Q.pack(hi ^ lo))
        hi, lo = _QQ.unpack(tag)
        self._ctr(_QQ.pack(hi, lo & _CTR_MASK), buf)
        return tag

    def decrypt_into(self, tag: Buf, aad: Buf, buf: bytearray | memoryview) -> bool:
        """Decrypt ``buf`` in place; False if not authentic (``buf`` is then garbage)."""
        if len(tag) != TAG_SIZE:
            return False
        hi, lo = _QQ.unpack(tag)
        self._ctr(_QQ.pack(hi, lo & _CTR_MASK), buf)
        d: bytes = self._ecb_dec(tag)  # iv8 || folded GMAC
        g = self._gmac(d[:8] + _NONCE_PAD, b"", b"".join((aad, _ZERO16[: -len(aad) % 16], buf)))
        hi, lo = _QQ.unpack(g)
        return hmac.compare_digest(_Q.pack(hi ^ lo), d[8:])

    def encrypt(self, iv: Buf, aad: Buf, plaintext: Buf) -> tuple[bytes, bytes]:
        """``(tag16, ciphertext)`` for a copy of ``plaintext``."""
        buf = bytearray(plaintext)
        tag = self.encrypt_into(iv, aad, buf)
        return tag, bytes(buf)

    def decrypt(self, tag: Buf, aad: Buf, ciphertext: Buf) -> bytes | None:
        """The plaintext, or None if ``tag``/``aad``/``ciphertext`` are not authentic."""
        buf = bytearray(ciphertext)
        return bytes(buf) if self.decrypt_into(tag, aad, buf) else None

    def __repr__(self) -> str:
        return f"AesGmacSiv(ctr_backend={self.ctr_backend!r})"


# --- one-shot helpers (vectors, tooling; not for per-packet use) ---------------------------------


def aes256_ecb_encrypt(key: bytes, block16: Buf) -> bytes:
    if len(block16) != BLOCK_SIZE:
        raise CryptoError("AES-ECB works on single 16-byte blocks here")
    enc = Cipher(algorithms.AES(_check_key(key)), modes.ECB()).encryptor()
    return enc.update(bytes(block16))


def aes256_ecb_decrypt(key: bytes, block16: Buf) -> bytes:
    if len(block16) != BLOCK_SIZE:
        raise CryptoError("AES-ECB works on single 16-byte blocks here")
    dec = Cipher(algorithms.AES(_check_key(key)), modes.ECB()).decryptor()
    return dec.update(bytes(block16))


def aes256_ctr(key: bytes, iv16: Buf, data: Buf, backend: CtrBackend | None = None) -> bytes:
    """AES-256-CTR with the standard 128-bit big-endian counter increment (see module notes)."""
    if len(iv16) != BLOCK_SIZE:
        raise CryptoError("the AES-CTR counter block is 16 bytes")
    buf = bytearray(data)
    new_ctr(key, backend).xor_into(bytes(iv16), buf)
    return bytes(buf)


def aes_gmac(key: bytes, iv12: Buf, data: Buf) -> bytes:
    """Standard GMAC: the AES-GCM tag of an empty plaintext with ``data`` as AAD."""
    if len(iv12) != 12:
        raise CryptoError("GMAC takes a 12-byte IV here")
    return AESGCM(_check_key(key)).encrypt(bytes(iv12), b"", bytes(data))


__all__ = [
    "AesGmacSiv",
    "CtrBackend",
    "CtrContext",
    "aes256_ctr",
    "aes256_ecb_decrypt",
    "aes256_ecb_encrypt",
    "aes_gmac",
    "ctr_backends",
    "new_ctr",
]
