"""ZeroTier's "C25519" key pairs: an X25519 half and an Ed25519 half in one 64-byte key.

Layout (node/C25519.hpp): public = X25519 public (0..31) || Ed25519 public (32..63); private =
X25519 secret (0..31) || Ed25519 seed (32..63). Both halves are standard, so ``cryptography``'s
X25519 and Ed25519 produce byte-identical keys.

ZeroTier's two deviations from plain usage:

* key agreement hashes the raw X25519 output: key = SHA-512(shared), continued with
  SHA-512(previous digest) past 64 bytes;
* a signature is 96 bytes: an Ed25519 signature over the *first 32 bytes of SHA-512(msg)* followed
  by those 32 bytes, which receivers compare first as a cheap integrity check.

The reference does not reject an all-zero shared secret; ``cryptography`` does, and we surface that
as :class:`~ztnode.errors.CryptoError`, which callers treat as an invalid peer. OpenSSL's Ed25519
verifier also rejects non-canonical ``S`` values that the reference accepts; only a forged
signature can contain one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ztnode.errors import CryptoError

Buf = bytes | bytearray | memoryview

PUBLIC_KEY_SIZE: Final = 64
PRIVATE_KEY_SIZE: Final = 64
SIGNATURE_SIZE: Final = 96
SHARED_KEY_SIZE: Final = 48  # what ZeroTier asks agree() for (Identity::agree)


def _check_private(priv: Buf) -> None:
    if len(priv) != PRIVATE_KEY_SIZE:
        raise CryptoError(f"C25519 private key must be {PRIVATE_KEY_SIZE} bytes, got {len(priv)}")


def _check_public(pub: Buf) -> None:
    if len(pub) != PUBLIC_KEY_SIZE:
        raise CryptoError(f"C25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(pub)}")


def x25519_public(secret32: Buf) -> bytes:
    """The X25519 public key of a 32-byte secret (clamped as X25519 always does)."""
    return X25519PrivateKey.from_private_bytes(bytes(secret32)).public_key().public_bytes_raw()


def ed25519_public(seed32: Buf) -> bytes:
    """The Ed25519 public key of a 32-byte RFC 8032 seed."""
    return Ed25519PrivateKey.from_private_bytes(bytes(seed32)).public_key().public_bytes_raw()


def c25519_public_from_private(priv: bytes) -> bytes:
    """The 64-byte public key belonging to a 64-byte private key."""
    _check_private(priv)
    return x25519_public(priv[:32]) + ed25519_public(priv[32:])


def c25519_generate(random_bytes: Callable[[int], bytes] = os.urandom) -> tuple[bytes, bytes]:
    """A fresh key pair ``(public64, private64)``; any 64 random bytes are a valid private key."""
    priv = bytes(random_bytes(PRIVATE_KEY_SIZE))
    _check_private(priv)
    return c25519_public_from_private(priv), priv


def _expand(shared: bytes, length: int) -> bytes:
    digest = hashlib.sha512(shared).digest()
    if length <= len(digest):
        return digest[:length]
    out = bytearray(digest)
    while len(out) < length:
        digest = hashlib.sha512(digest).digest()
        out += digest
    return bytes(out[:length])


def _x25519_shared(secret: X25519PrivateKey, peer_pub: Buf) -> bytes:
    try:
        peer = X25519PublicKey.from_public_bytes(bytes(peer_pub[:32]))
        return secret.exchange(peer)
    except ValueError as e:  # all-zero result: a low-order point
        raise CryptoError(f"X25519 agreement failed: {e}") from None


def c25519_agree(priv: bytes, peer_pub: bytes, length: int = SHARED_KEY_SIZE) -> bytes:
    """``length`` bytes of SHA-512(X25519(priv[:32], peer_pub[:32])), re-hashed past 64 bytes.

    Raises CryptoError on malformed keys or a low-order peer point (all-zero shared secret).
    """
    _check_private(priv)
    _check_public(peer_pub)
    if length < 0:
        raise CryptoError("key length must not be negative")
    secret = X25519PrivateKey.from_private_bytes(bytes(priv[:32]))
    return _expand(_x25519_shared(secret, peer_pub), length)


def _digest32(msg: Buf) -> bytes:
    return hashlib.sha512(msg).digest()[:32]


class SigningKey:
    """A private key ready to sign; the parsed Ed25519 and X25519 key objects are kept."""

    __slots__ = ("_ed", "_x", "public")

    public: bytes

    def __init__(self, priv64: bytes) -> None:
        _check_private(priv64)
        priv = bytes(priv64)
        self._ed = Ed25519PrivateKey.from_private_bytes(priv[32:])
        self._x = X25519PrivateKey.from_private_bytes(priv[:32])
        self.public = (
            self._x.public_key().public_bytes_raw() + self._ed.public_key().public_bytes_raw()
        )

    def sign(self, msg: Buf) -> bytes:
        """ZeroTier's 96-byte signature: Ed25519(SHA-512(msg)[:32]) || SHA-512(msg)[:32]."""
        h = _digest32(msg)
        return self._ed.sign(h) + h

    def agree(self, peer_pub: bytes, length: int = SHARED_KEY_SIZE) -> bytes:
        """Key agreement with a cached X25519 key (see :func:`c25519_agree`)."""
        _check_public(peer_pub)
        if length < 0:
            raise CryptoError("key length must not be negative")
        return _expand(_x25519_shared(self._x, peer_pub), length)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public[:8].hex()}...)"


class VerifyingKey:
    """A public key ready to verify; the parsed Ed25519 key object is kept."""

    __slots__ = ("_ed", "public")

    public: bytes

    def __init__(self, pub64: bytes) -> None:
        _check_public(pub64)
        self.public = bytes(pub64)
        try:
            self._ed: Ed25519PublicKey | None = Ed25519PublicKey.from_public_bytes(self.public[32:])
        except ValueError:
            # Not a curve point: every signature check will simply fail.
            self._ed = None

    def verify(self, msg: Buf, sig: Buf) -> bool:
        """True only for a 96-byte signature whose hash tail and Ed25519 part both check out.

        Never raises on malformed input: a receive path can call it on wire bytes directly.
        """
        if len(sig) != SIGNATURE_SIZE or self._ed is None:
            return False
        sig = bytes(sig)
        h = _digest32(msg)
        if not hmac.compare_digest(sig[64:], h):
            return False
        try:
            self._ed.verify(sig[:64], h)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"VerifyingKey(public={self.public[:8].hex()}...)"


def c25519_sign(priv: bytes, msg: Buf) -> bytes:
    """ZeroTier's 96-byte signature of ``msg`` (see :class:`SigningKey`)."""
    _check_private(priv)
    h = _digest32(msg)
    return Ed25519PrivateKey.from_private_bytes(bytes(priv[32:])).sign(h) + h


def c25519_verify(pub: bytes, msg: Buf, sig: Buf) -> bool:
    """Check a 96-byte ZeroTier signature; False (never an exception) for any malformed input."""
    if len(pub) != PUBLIC_KEY_SIZE or len(sig) != SIGNATURE_SIZE:
        return False
    try:
        return VerifyingKey(pub).verify(msg, sig)
    except (CryptoError, ValueError, TypeError):
        return False


__all__ = [
    "PRIVATE_KEY_SIZE",
    "PUBLIC_KEY_SIZE",
    "SHARED_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SigningKey",
    "VerifyingKey",
    "c25519_agree",
    "c25519_generate",
    "c25519_public_from_private",
    "c25519_sign",
    "c25519_verify",
    "ed25519_public",
    "x25519_public",
]
