"""ZeroTier identities (type 0, "C25519") and 40-bit addresses.

An identity is a 40-bit address plus a 64-byte C25519 public key (and, for our own node, the
64-byte private key). The address is not chosen: it is the last 5 bytes of the memory-hard hash of
the public key, and the hash's first byte must be below 17 (see :mod:`ztnode.crypto.idhash`). So
parsing (strings, wire bytes) only checks the format; :meth:`Identity.validate` does the expensive
proof-of-work check, and callers decide when to pay for it.

Formats (node/Identity.cpp, Identity.hpp):

* string: ``aaaaaaaaaa:0:<128 hex public>[:<128 hex private>]`` (``identity.public`` /
  ``identity.secret`` files hold exactly this, without a newline);
* binary: ``address[5] | type 0x00 | public[64] | privLen (0 or 64) | private[privLen]``.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable
from typing import Final

from ztnode.crypto.c25519 import (
    PRIVATE_KEY_SIZE,
    PUBLIC_KEY_SIZE,
    SHARED_KEY_SIZE,
    SigningKey,
    VerifyingKey,
    c25519_public_from_private,
    ed25519_public,
    x25519_public,
)
from ztnode.crypto.idhash import FIRST_BYTE_LESS_THAN, identity_hash
from ztnode.errors import CryptoError, DecodeError, LocalProtocolError
from ztnode.fsutil import write_atomic
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import ADDRESS_LENGTH, ADDRESS_RESERVED_PREFIX

ADDRESS_BITS: Final = 8 * ADDRESS_LENGTH
ADDRESS_MAX: Final = (1 << ADDRESS_BITS) - 1
IDENTITY_TYPE_C25519: Final = 0

_HEX_ADDRESS: Final = re.compile(r"[0-9a-fA-F]{10}")
_HEX_KEY: Final = re.compile(r"[0-9a-fA-F]{128}")


def is_reserved_address(a: int) -> bool:
    """0 and every address starting 0xff are reserved (byte 13 == 0xff marks a fragment)."""
    return a == 0 or (a >> (ADDRESS_BITS - 8)) == ADDRESS_RESERVED_PREFIX


def address_to_str(a: int) -> str:
    """10 lowercase hex digits, the only way ZeroTier writes addresses."""
    if not 0 <= a <= ADDRESS_MAX:
        raise LocalProtocolError(f"{a!r} is not a 40-bit ZeroTier address")
    return f"{a:010x}"


def address_from_str(s: str) -> int:
    """Parse exactly 10 hex digits (either case); DecodeError otherwise."""
    if not isinstance(s, str) or _HEX_ADDRESS.fullmatch(s) is None:
        raise DecodeError(f"not a 10-hex-digit ZeroTier address: {s!r:.40}")
    return int(s, 16)


def _unhex_key(s: str, what: str) -> bytes:
    # bytes.fromhex would also accept whitespace, so the exact shape is checked first.
    if _HEX_KEY.fullmatch(s) is None:
        raise DecodeError(f"{what} must be 128 hex digits")
    return bytes.fromhex(s)


def _private_matches(public_key: bytes, private_key: bytes) -> bool:
    try:
        return hmac.compare_digest(c25519_public_from_private(private_key), public_key)
    except (CryptoError, ValueError):
        return False


class Identity:
    """An immutable ZeroTier identity; equal when address and public key are equal.

    Parsed key objects (for signing, verifying and agreement) and the validation result are cached
    on first use, so a long-lived ``Identity`` pays for them once.
    """

    __slots__ = ("_address", "_private", "_public", "_signer", "_valid", "_verifier")

    _address: int
    _public: bytes
    _private: bytes | None
    _signer: SigningKey | None
    _verifier: VerifyingKey | None
    _valid: bool | None

    def __init__(self, address: int, public_key: bytes, private_key: bytes | None = None) -> None:
        """Build from parts; the private key, if given, must belong to the public key.

        This does not check the address against the key (that is :meth:`validate`).
        """
        if not isinstance(address, int) or not 0 <= address <= ADDRESS_MAX:
            raise LocalProtocolError(f"{address!r} is not a 40-bit ZeroTier address")
        if not isinstance(public_key, bytes | bytearray) or len(public_key) != PUBLIC_KEY_SIZE:
            raise LocalProtocolError(f"public key must be {PUBLIC_KEY_SIZE} bytes")
        if private_key is not None:
            if not isinstance(private_key, bytes | bytearray) or len(private_key) != 64:
                raise LocalProtocolError(f"private key must be {PRIVATE_KEY_SIZE} bytes")
            if not _private_matches(bytes(public_key), bytes(private_key)):
                raise LocalProtocolError("private key does not belong to this public key")
        self._set(address, bytes(public_key), None if private_key is None else bytes(private_key))

    def _set(self, address: int, public_key: bytes, private_key: bytes | None) -> None:
        self._address = address
        self._public = public_key
        self._private = private_key
        self._signer = None
        self._verifier = None
        self._valid = None

    @classmethod
    def _trusted(cls, address: int, public_key: bytes, private_key: bytes | None) -> Identity:
        """Construct from parts the caller has already checked (parsers, generate)."""
        self = cls.__new__(cls)
        self._set(address, public_key, private_key)
        return self

    # --- accessors -------------------------------------------------------------------------------

    @property
    def address(self) -> int:
        return self._address

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def private_key(self) -> bytes | None:
        return self._private

    @property
    def has_private(self) -> bool:
        return self._private is not None

    # --- creation --------------------------------------------------------------------------------

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = os.urandom) -> Identity:
        """A new identity with a private key (about 15 hash attempts, under a second on average).

        As the reference does, the Ed25519 half is drawn once and only the X25519 secret is varied
        between attempts (a 64-bit counter in its bytes 8..15, which X25519 clamping never touches),
        so each attempt costs one X25519 base-point multiplication plus the memory-hard hash. This
        also means a deterministic ``random_bytes`` still terminates.
        """
        seed = random_bytes(PRIVATE_KEY_SIZE)
        if len(seed) != PRIVATE_KEY_SIZE:
            raise LocalProtocolError(f"random_bytes({PRIVATE_KEY_SIZE}) returned {len(seed)} bytes")
        priv = bytearray(seed)
        ed_pub = ed25519_public(priv[32:])
        start = int.from_bytes(priv[8:16], "little")
        attempt = 0
        while True:
            attempt += 1
            priv[8:16] = ((start + attempt) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
            pub = x25519_public(priv[:32]) + ed_pub
            digest = identity_hash(pub)
            if digest[0] >= FIRST_BYTE_LESS_THAN:
                continue
            address = int.from_bytes(digest[59:64], "big")
            if is_reserved_address(address):
                continue
            ident = cls._trusted(address, pub, bytes(priv))
            ident._valid = True
            return ident

    # --- text ------------------------------------------------------------------------------------

    @classmethod
    def from_string(cls, s: str) -> Identity:
        """Parse the text form. Checks format only (call :meth:`validate` for the address proof).

        DecodeError on any malformed field, a reserved address, or a private key that does not
        belong to the public key. Stricter than the reference (which takes any hex run for the
        address and skips empty fields): only the canonical shape that every node writes is read.
        """
        if not isinstance(s, str):
            raise DecodeError("identity string must be str")
        # At most 5 pieces: a hostile string of colons must not become a list as long as itself.
        fields = s.split(":", 4)
        if len(fields) not in (3, 4):
            raise DecodeError("identity needs 3 or 4 ':'-separated fields")
        address = address_from_str(fields[0])
        if is_reserved_address(address):
            raise DecodeError(f"reserved address {fields[0]}")
        if fields[1] != "0":
            raise DecodeError(f"unsupported identity type {fields[1]!r:.20}")
        public_key = _unhex_key(fields[2], "public key")
        private_key = None
        if len(fields) == 4:
            private_key = _unhex_key(fields[3], "private key")
            if not _private_matches(public_key, private_key):
                raise DecodeError("private key does not belong to the public key")
        return cls._trusted(address, public_key, private_key)

    def to_string(self, include_private: bool = False) -> str:
        """The text form; the private key is included only if asked for and present."""
        s = f"{self._address:010x}:0:{self._public.hex()}"
        if include_private and self._private is not None:
            s += ":" + self._private.hex()
        return s

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"Identity({self._address:010x}, secret={self._private is not None})"

    # --- binary ----------------------------------------------------------------------------------

    @classmethod
    def read(cls, r: Reader) -> Identity:
        """Read one binary identity at the reader's cursor (inside HELLO, OK(WHOIS), worlds...)."""
        address = r.address("identity address")
        kind = r.u8("identity type")
        if kind != IDENTITY_TYPE_C25519:
            raise DecodeError(f"unsupported identity type {kind}")
        public_key = r.raw(PUBLIC_KEY_SIZE, "identity public key")
        priv_len = r.u8("identity private key length")
        private_key = None
        if priv_len == PRIVATE_KEY_SIZE:
            private_key = r.raw(PRIVATE_KEY_SIZE, "identity private key")
            if not _private_matches(public_key, private_key):
                raise DecodeError("private key does not belong to the public key")
        elif priv_len != 0:
            raise DecodeError(f"identity private key length {priv_len} is neither 0 nor 64")
        return cls._trusted(address, public_key, private_key)

    @classmethod
    def from_bytes(cls, data: Buf) -> Identity:
        """Parse a buffer holding exactly one binary identity."""
        r = Reader(data)
        ident = cls.read(r)
        r.expect_end("identity")
        return ident

    def write(self, w: Writer, include_private: bool = False) -> None:
        w.address(self._address).u8(IDENTITY_TYPE_C25519).raw(self._public)
        if include_private and self._private is not None:
            w.u8(PRIVATE_KEY_SIZE).raw(self._private)
        else:
            w.u8(0)

    def to_bytes(self, include_private: bool = False) -> bytes:
        w = Writer()
        self.write(w, include_private)
        return w.getvalue()

    # --- crypto ----------------------------------------------------------------------------------

    def validate(self) -> bool:
        """The reference's ``locallyValidate``: not reserved, hash[0] < 17, hash[59:64] == address.

        Costs one memory-hard hash (tens of ms) the first time; the result is cached.
        """
        valid = self._valid
        if valid is None:
            if is_reserved_address(self._address):
                valid = False
            else:
                digest = identity_hash(self._public)
                derived = int.from_bytes(digest[59:64], "big")
                valid = digest[0] < FIRST_BYTE_LESS_THAN and derived == self._address
            self._valid = valid
        return valid

    def public(self) -> Identity:
        """This identity without its private key."""
        if self._private is None:
            return self
        ident = Identity._trusted(self._address, self._public, None)
        ident._valid = self._valid
        ident._verifier = self._verifier
        return ident

    def _signing_key(self) -> SigningKey:
        signer = self._signer
        if signer is None:
            if self._private is None:
                raise LocalProtocolError(
                    f"identity {self._address:010x} has no private key; load identity.secret"
                )
            signer = self._signer = SigningKey(self._private)
        return signer

    def agree(self, other: Identity) -> bytes:
        """The 48-byte session key shared with ``other`` (SHA-512 of the X25519 result).

        LocalProtocolError without our private key; CryptoError if ``other``'s key is a bad point.
        """
        return self._signing_key().agree(other._public, SHARED_KEY_SIZE)

    def sign(self, msg: Buf) -> bytes:
        """ZeroTier's 96-byte signature; LocalProtocolError without the private key."""
        return self._signing_key().sign(msg)

    def verify(self, msg: Buf, sig: Buf) -> bool:
        """Check a 96-byte signature by this identity; False on anything malformed."""
        verifier = self._verifier
        if verifier is None:
            verifier = self._verifier = VerifyingKey(self._public)
        return verifier.verify(msg, sig)

    # --- files -----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], include_private: bool) -> None:
        """Write the text form atomically (temp file + rename in the same directory).

        A secret file is created with mode 0600 from the start, so the key is never readable by
        others even briefly; a public file gets 0644 (both before the umask).
        """
        if include_private and self._private is None:
            raise LocalProtocolError("cannot save a secret identity without its private key")
        data = self.to_string(include_private).encode("ascii")
        write_atomic(path, data, 0o600 if include_private else 0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read an ``identity.public`` or ``identity.secret`` file (outer whitespace allowed)."""
        with open(path, "rb") as f:
            raw = f.read(4096)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError(f"{os.fspath(path)!r} is not an ASCII identity file") from None
        return cls.from_string(text.strip())

    # --- value semantics -------------------------------------------------------------------------

    def _key(self) -> tuple[int, bytes]:
        return (self._address, self._public)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._address == other._address and self._public == other._public

    def __hash__(self) -> int:
        return hash((self._address, self._public))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._key() >= other._key()

    def __reduce__(self) -> tuple[type[Identity], tuple[int, bytes, bytes | None]]:
        # The cached key objects are not picklable; rebuild from the parts.
        return (Identity, (self._address, self._public, self._private))


__all__ = [
    "ADDRESS_RESERVED_PREFIX",
    "Identity",
    "address_from_str",
    "address_to_str",
    "is_reserved_address",
]
