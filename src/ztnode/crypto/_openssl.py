"""OpenSSL's libcrypto through cffi in ABI mode: a re-keyable AES-256-CTR context.

``cryptography`` builds a fresh cipher context for every CTR nonce unless it has
``CipherContext.reset_nonce`` (added in cryptography 43), and a fresh context costs 7-9 µs per
packet. When ``reset_nonce`` is missing, one ``EVP_CIPHER_CTX`` per key, re-initialised with only a
new IV, brings that down to about 1 µs. The library is opened on first use (:func:`get_lib`), so a
process that never needs it never maps a second copy of OpenSSL.
"""

from __future__ import annotations

import functools
from typing import Any

import cffi  # type: ignore[import-untyped]

from ztnode.crypto._native import dlopen_first
from ztnode.errors import CryptoError

_CDEF = """
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct engine_st ENGINE;
EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);
const EVP_CIPHER *EVP_aes_256_ctr(void);
int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl,
                       const unsigned char *key, const unsigned char *iv);
int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                      const unsigned char *in, int inl);
"""

_SYMBOLS = (
    "EVP_CIPHER_CTX_new",
    "EVP_CIPHER_CTX_free",
    "EVP_aes_256_ctr",
    "EVP_EncryptInit_ex",
    "EVP_EncryptUpdate",
)

ffi: Any = cffi.FFI()
ffi.cdef(_CDEF)


@functools.cache
def get_lib() -> Any:
    """libcrypto, or ``None`` when it cannot be loaded."""
    return dlopen_first(ffi, ("libcrypto.so.3",), "crypto", _SYMBOLS)


# EVP_EncryptUpdate takes an int length.
MAX_UPDATE = 0x7FFFFFFF


class EvpAes256Ctr:
    """One AES-256-CTR key schedule; each call only loads a new 16-byte counter block.

    Counting is OpenSSL's: the whole 128-bit block is incremented big-endian.
    """

    __slots__ = ("_ctx", "_lib", "_outl")

    def __init__(self, key: bytes) -> None:
        lib = self._lib = get_lib()
        if lib is None:
            raise RuntimeError("libcrypto is not available")
        if len(key) != 32:
            raise CryptoError("AES-256 needs a 32-byte key")
        ctx = lib.EVP_CIPHER_CTX_new()
        if ctx == ffi.NULL:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        self._ctx = ffi.gc(ctx, lib.EVP_CIPHER_CTX_free)
        self._outl = ffi.new("int *")
        if lib.EVP_EncryptInit_ex(self._ctx, lib.EVP_aes_256_ctr(), ffi.NULL, key, ffi.NULL) != 1:
            raise RuntimeError("EVP_EncryptInit_ex(aes-256-ctr) failed")

    def xor_into(self, iv16: bytes, buf: bytearray | memoryview) -> None:
        """XOR the keystream for counter block ``iv16`` into ``buf`` in place."""
        if len(iv16) != 16:
            raise CryptoError("the AES-CTR counter block is 16 bytes")
        n = len(buf)
        if n == 0:
            return
        if n > MAX_UPDATE:
            raise CryptoError("buffer too large for one EVP update")
        p = ffi.from_buffer(buf, require_writable=True)
        ctx = self._ctx
        lib = self._lib
        lib.EVP_EncryptInit_ex(ctx, ffi.NULL, ffi.NULL, ffi.NULL, iv16)
        lib.EVP_EncryptUpdate(ctx, p, self._outl, p, n)
