"""SHA-512, SHA-384, HMAC-SHA-384 and ZeroTier's HMAC-SHA-384 KBKDF.

Thin wrappers over ``hashlib``/``hmac`` (OpenSSL underneath) so the rest of the code names the
ZeroTier operation rather than the library, and so the KBKDF message layout lives in one place.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final

from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

SHA512_SIZE: Final = 64
SHA384_SIZE: Final = 48

# KBKDF message (node/SHA512.cpp): BE32(iteration) | 'Z' 'T' | label | 0x00 | context | BE32(384),
# the last field being the output length in bits.
_KBKDF_MSG: Final = struct.Struct(">I2sBBBI")
_KBKDF_BITS: Final = 384


def sha512(data: Buf) -> bytes:
    return hashlib.sha512(data).digest()


def sha384(data: Buf) -> bytes:
    return hashlib.sha384(data).digest()


def hmac_sha384(key: Buf, msg: Buf) -> bytes:
    """Plain RFC 2104 HMAC; ZeroTier's 48-byte keys are zero-padded to the block as usual."""
    return hmac.digest(key, msg, "sha384")


def kbkdf_hmac_sha384(key: bytes, label: int, context: int = 0, iteration: int = 0) -> bytes:
    """One 48-byte block of ZeroTier's counter-mode KDF (NIST SP 800-108 style).

    Peers derive their AES-GMAC-SIV keys with ``label`` ``ord('0')`` (K0) and ``ord('1')`` (K1),
    context 0, iteration 0, and use the first 32 bytes of each output.
    """
    if not 0 <= label <= 0xFF or not 0 <= context <= 0xFF:
        raise CryptoError("KBKDF label and context are single bytes (0..255)")
    if not 0 <= iteration <= 0xFFFFFFFF:
        raise CryptoError("KBKDF iteration is an unsigned 32-bit counter")
    msg = _KBKDF_MSG.pack(iteration, b"ZT", label, 0, context, _KBKDF_BITS)
    return hmac.digest(key, msg, "sha384")


__all__ = [
    "SHA384_SIZE",
    "SHA512_SIZE",
    "hmac_sha384",
    "kbkdf_hmac_sha384",
    "sha384",
    "sha512",
]
