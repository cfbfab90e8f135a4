"""Poly1305 one-time authenticator (standard, as poly1305-donna and RFC 8439 compute it).

ZeroTier's legacy ciphers MAC every packet with a fresh Poly1305 key taken from Salsa20/12 block 0.
libsodium does it in about a microsecond, ztnode's own C (``csrc/primitives.c``) about as fast
where libsodium is absent; ``cryptography``'s ``Poly1305`` (about twice as slow) is the last
fallback. The module is ``poly`` rather than ``poly1305`` so that ``ztnode.crypto.poly1305``
can be the function without hiding the module.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.poly1305 import Poly1305

from ztnode.crypto import _cext, _sodium
from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

KEY_SIZE: Final = 32
TAG_SIZE: Final = 16


def poly1305_portable(key: Buf, msg: Buf) -> bytes:
    """Poly1305 through ``cryptography`` (OpenSSL); used when libsodium is missing."""
    if len(key) != KEY_SIZE:
        raise CryptoError(f"Poly1305 key must be {KEY_SIZE} bytes, got {len(key)}")
    return Poly1305.generate_tag(bytes(key), bytes(msg))


def _poly1305_sodium(key: Buf, msg: Buf) -> bytes:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"Poly1305 key must be {KEY_SIZE} bytes, got {len(key)}")
    from_buffer = _sodium.ffi.from_buffer
    tag = bytearray(TAG_SIZE)
    m = msg if type(msg) is bytes else from_buffer(msg)
    k = key if type(key) is bytes else from_buffer(key)
    _sodium.lib.crypto_onetimeauth_poly1305(from_buffer(tag), m, len(msg), k)
    return bytes(tag)


def _poly1305_c(key: Buf, msg: Buf) -> bytes:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"Poly1305 key must be {KEY_SIZE} bytes, got {len(key)}")
    ffi = _cext.ffi
    tag = bytearray(TAG_SIZE)
    m = msg if type(msg) is bytes else ffi.from_buffer(msg)
    k = key if type(key) is bytes else ffi.from_buffer(key)
    _cext.lib.zt_poly1305(ffi.from_buffer(tag), m, len(msg), k)
    return bytes(tag)


def poly1305(key: Buf, msg: Buf) -> bytes:
    """The 16-byte Poly1305 tag of ``msg`` under the one-time ``key`` (32 bytes)."""
    if _sodium.lib is not None:
        return _poly1305_sodium(key, msg)
    if _cext.lib is not None:
        return _poly1305_c(key, msg)
    return poly1305_portable(key, msg)


__all__ = ["KEY_SIZE", "TAG_SIZE", "poly1305", "poly1305_portable"]
