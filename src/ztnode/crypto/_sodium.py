"""libsodium, opened through cffi in ABI mode (Salsa20, Salsa20/12, Poly1305).

libsodium is the one widely packaged C library with Salsa20/12 and a bare Poly1305, which ZeroTier's
legacy cipher suites need and OpenSSL lacks. ``lib`` is ``None`` when the library cannot be loaded;
callers then use the numpy / ``cryptography`` fallbacks.

``bytes`` arguments are passed to C as they are (no copy); writable buffers (``bytearray``,
``memoryview``) go through ``ffi.from_buffer``.
"""

from __future__ import annotations

from typing import Any

import cffi  # type: ignore[import-untyped]

from ztnode.crypto._native import dlopen_first

_CDEF = """
int sodium_init(void);
int crypto_stream_salsa20(unsigned char *c, unsigned long long clen,
                          const unsigned char *n, const unsigned char *k);
int crypto_stream_salsa20_xor_ic(unsigned char *c, const unsigned char *m, unsigned long long mlen,
                                 const unsigned char *n, uint64_t ic, const unsigned char *k);
int crypto_stream_salsa2012(unsigned char *c, unsigned long long clen,
                            const unsigned char *n, const unsigned char *k);
int crypto_stream_salsa2012_xor(unsigned char *c, const unsigned char *m, unsigned long long mlen,
                                const unsigned char *n, const unsigned char *k);
int crypto_core_salsa2012(unsigned char *out, const unsigned char *in,
                          const unsigned char *k, const unsigned char *c);
int crypto_onetimeauth_poly1305(unsigned char *out, const unsigned char *in,
                                unsigned long long inlen, const unsigned char *k);
"""

_SYMBOLS = (
    "sodium_init",
    "crypto_stream_salsa20",
    "crypto_stream_salsa20_xor_ic",
    "crypto_stream_salsa2012",
    "crypto_stream_salsa2012_xor",
    "crypto_core_salsa2012",
    "crypto_onetimeauth_poly1305",
)

ffi: Any = cffi.FFI()
ffi.cdef(_CDEF)


def _load() -> Any:
    lib = dlopen_first(ffi, ("libsodium.so.23",), "sodium", _SYMBOLS)
    # sodium_init returns 0 (first call) or 1 (already initialised); -1 means unusable.
    if lib is not None and lib.sodium_init() < 0:
        return None
    return lib


lib: Any = _load()

INSTALL_HINT = (
    "neither ztnode's C accelerator nor libsodium could be loaded, so ztnode uses slow numpy "
    "Salsa20 (identity hashing and legacy-cipher packets will be much slower). Install ztnode "
    "from a wheel, or reinstall it where a C compiler and Python's headers exist (Debian: gcc "
    "python3-dev); `ztnode doctor` says what is missing."
)
