"""The per-peer session key and everything derived from it.

Two peers share ``key48 = SHA-512(X25519(a, B))[0:48]`` (computed once per peer). The legacy
ciphers and cryptField use ``key48[0:32]`` as a Salsa20/12 key; AES-GMAC-SIV uses two KBKDF
outputs, derived on first use because only protocol-12 peers need them (node/Peer.cpp).
"""

from __future__ import annotations

from typing import Final

from ztnode.crypto.aes import AesGmacSiv
from ztnode.crypto.hashes import kbkdf_hmac_sha384
from ztnode.errors import CryptoError

# The session key's size: SHA-512 of the X25519 secret, truncated (Identity.hpp
# ZT_SYMMETRIC_KEY_SIZE). Defined where the key lives: the crypto layer imports nothing above it.
SYMMETRIC_KEY_SIZE: Final = 48

KBKDF_LABEL_AES_GMAC_SIV_K0: Final = ord("0")  # Packet.hpp ZT_KBKDF_LABEL_AES_GMAC_SIV_K0
KBKDF_LABEL_AES_GMAC_SIV_K1: Final = ord("1")


class SymmetricKey:
    """A peer's 48-byte session key with its cipher contexts.

    ``raw`` and ``salsa_key`` are plain attributes for speed on the packet path; treat them as
    read-only. The repr never shows key material.
    """

    __slots__ = ("_accel", "_accel_addr", "_aes", "raw", "salsa_key")

    raw: bytes
    salsa_key: bytes
    # The C accelerator's per-key AES contexts (ztnode.accel), made on first cipher-3 use, and
    # their address (for the direct calls of ztnode._zt_fast; 0 until made).
    _accel: object
    _accel_addr: int

    def __init__(self, key48: bytes | bytearray | memoryview) -> None:
        if len(key48) != SYMMETRIC_KEY_SIZE:
            raise CryptoError(f"a peer key is {SYMMETRIC_KEY_SIZE} bytes, got {len(key48)}")
        self.raw = bytes(key48)
        self.salsa_key = self.raw[:32]
        self._aes: AesGmacSiv | None = None
        self._accel = None
        self._accel_addr = 0

    @property
    def aes(self) -> AesGmacSiv:
        """The AES-GMAC-SIV context (K0/K1 from KBKDF labels '0'/'1', first 32 bytes each)."""
        aes = self._aes
        if aes is None:
            k0 = kbkdf_hmac_sha384(self.raw, KBKDF_LABEL_AES_GMAC_SIV_K0)[:32]
            k1 = kbkdf_hmac_sha384(self.raw, KBKDF_LABEL_AES_GMAC_SIV_K1)[:32]
            aes = self._aes = AesGmacSiv(k0, k1)
        return aes

    def __repr__(self) -> str:
        return "SymmetricKey(<48 bytes>)"


__all__ = [
    "KBKDF_LABEL_AES_GMAC_SIV_K0",
    "KBKDF_LABEL_AES_GMAC_SIV_K1",
    "SYMMETRIC_KEY_SIZE",
    "SymmetricKey",
]
