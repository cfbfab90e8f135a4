"""Cryptography for ZeroTier 1.x: narrow typed functions over C-backed libraries.

* C25519 (X25519 + Ed25519 in one 64-byte key, 96-byte signatures): ``cryptography``.
* Salsa20/12, Salsa20/20, Poly1305: libsodium through cffi (ABI mode), with numpy and
  ``cryptography`` fallbacks when ``libsodium.so.23`` is missing (a warning says how to install it).
* AES-GMAC-SIV: per-key objects keeping their ``cryptography`` / libcrypto contexts.
* SHA-512/384, HMAC-SHA-384, KBKDF: ``hashlib``/``hmac``.
* The memory-hard identity hash.

Per-peer state lives in :class:`SymmetricKey`, :class:`SigningKey` and :class:`VerifyingKey`, which
keep parsed keys and cipher contexts so the packet path constructs nothing per call.

Setting ``ZTNODE_NO_NATIVE_CRYPTO=1`` before import makes every primitive use its portable fallback.
"""

from ztnode.crypto.aes import (
    AesGmacSiv,
    aes256_ctr,
    aes256_ecb_decrypt,
    aes256_ecb_encrypt,
    aes_gmac,
)
from ztnode.crypto.c25519 import (
    SigningKey,
    VerifyingKey,
    c25519_agree,
    c25519_generate,
    c25519_public_from_private,
    c25519_sign,
    c25519_verify,
)
from ztnode.crypto.hashes import hmac_sha384, kbkdf_hmac_sha384, sha384, sha512
from ztnode.crypto.idhash import identity_hash
from ztnode.crypto.keys import SymmetricKey
from ztnode.crypto.poly import poly1305
from ztnode.crypto.salsa import (
    salsa20_keystream,
    salsa20_xor,
    salsa20_xor_into,
    salsa2012_poly1305_open_into,
    salsa2012_poly1305_seal_into,
)

Buf = bytes | bytearray | memoryview

__all__ = [
    "AesGmacSiv",
    "Buf",
    "SigningKey",
    "SymmetricKey",
    "VerifyingKey",
    "aes256_ctr",
    "aes256_ecb_decrypt",
    "aes256_ecb_encrypt",
    "aes_gmac",
    "c25519_agree",
    "c25519_generate",
    "c25519_public_from_private",
    "c25519_sign",
    "c25519_verify",
    "hmac_sha384",
    "identity_hash",
    "kbkdf_hmac_sha384",
    "poly1305",
    "salsa20_keystream",
    "salsa20_xor",
    "salsa20_xor_into",
    "salsa2012_poly1305_open_into",
    "salsa2012_poly1305_seal_into",
    "sha384",
    "sha512",
]
