"""Worlds: the signed root-server lists ZeroTier calls planets and moons.

A planet is the network's built-in set of root servers; moons are user-run additions a node can
"orbit". Both share one format (node/World.hpp:168-240; fact sheet ``protocol-core.md`` §12)::

    u8      type                  1 planet, 127 moon (0 null)
    u64     id
    u64     timestamp             ms; the revision number
    u8[64]  update key            C25519 public key that must sign the *next* revision
    u8[96]  signature             by the *previous* revision's update key
    u8      root count            at most 4
    per root: identity (public binary) | u8 endpoint count (at most 32) | InetAddress each
    moons only: u16 dictionary length | dictionary

The signature covers ``0x7f * 8 || the above without the signature || 0xf7 * 8``. Updates arrive
in OK(HELLO) from upstreams and are applied by :func:`should_replace`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ztnode.crypto import c25519_sign, c25519_verify
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.inetaddr import InetAddress

MAX_ROOTS: Final = 4  # ZT_WORLD_MAX_ROOTS (World.hpp:34)
MAX_ENDPOINTS_PER_ROOT: Final = 32  # ZT_WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT (World.hpp:39)
WORLD_ID_EARTH: Final = 149604618  # ZT_WORLD_ID_EARTH, the public planet (World.hpp:53)
WORLD_ID_MARS: Final = 227883110  # ZT_WORLD_ID_MARS, reserved (World.hpp:58)
UPDATE_KEY_SIZE: Final = 64
SIGNATURE_SIZE: Final = 96
PRIVATE_KEY_SIZE: Final = 64
_U64_MAX: Final = (1 << 64) - 1
_U16_MAX: Final = 0xFFFF
_SIGN_PREFIX: Final = b"\x7f" * 8
_SIGN_SUFFIX: Final = b"\xf7" * 8
# Smallest wire sizes, for checking counts against the bytes left before building anything.
_MIN_ROOT_SIZE: Final = 5 + 1 + 64 + 1 + 1  # public identity + endpoint count
_MIN_ENDPOINT_SIZE: Final = 1


class WorldType(IntEnum):
    """World type byte (World.hpp:85-90)."""

    NULL = 0
    PLANET = 1
    MOON = 127


@dataclass(frozen=True, slots=True)
class Root:
    """A root server: its identity and the stable endpoints nodes may reach it at."""

    identity: Identity
    endpoints: tuple[InetAddress, ...] = ()

    def __post_init__(self) -> None:
        if len(self.endpoints) > MAX_ENDPOINTS_PER_ROOT:
            raise LocalProtocolError(
                f"a root has at most {MAX_ENDPOINTS_PER_ROOT} endpoints, got {len(self.endpoints)}"
            )

    @classmethod
    def read(cls, reader: Reader) -> Root:
        identity = Identity.read(reader)
        count = reader.u8("root endpoint count")
        if count > MAX_ENDPOINTS_PER_ROOT:
            raise DecodeError(
                f"root has {count} endpoints, at most {MAX_ENDPOINTS_PER_ROOT} allowed"
            )
        reader.count(count, _MIN_ENDPOINT_SIZE, "root endpoints")
        endpoints = []
        for _ in range(count):
            ep = InetAddress.read(reader)
            if ep is None:
                # The reference would keep an unusable null endpoint and sign over its 0x00;
                # no tool writes one, so refusing keeps endpoints concrete and round trips exact.
                raise DecodeError("root endpoint is not an IPv4 or IPv6 address")
            endpoints.append(ep)
        return cls(identity, tuple(endpoints))

    def write(self, writer: Writer) -> None:
        self.identity.write(writer, include_private=False)
        writer.u8(len(self.endpoints))
        for ep in self.endpoints:
            ep.write(writer)


@dataclass(frozen=True, slots=True)
class World:
    """A planet or moon definition, as parsed or built; immutable.

    ``dictionary`` is the moon trailer. The reference skips its contents on read and writes and
    signs an empty one (World.hpp:189-191, 235-237), so it is kept only for exact round trips and
    is never part of :meth:`signing_message`.
    """

    type: WorldType
    id: int
    timestamp: int
    update_key: bytes
    signature: bytes
    roots: tuple[Root, ...]
    dictionary: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.id <= _U64_MAX or not 0 <= self.timestamp <= _U64_MAX:
            raise LocalProtocolError("world id and timestamp are unsigned 64-bit integers")
        if len(self.update_key) != UPDATE_KEY_SIZE:
            raise LocalProtocolError(f"update key must be {UPDATE_KEY_SIZE} bytes")
        if len(self.signature) != SIGNATURE_SIZE:
            raise LocalProtocolError(f"signature must be {SIGNATURE_SIZE} bytes")
        if len(self.roots) > MAX_ROOTS:
            raise LocalProtocolError(
                f"a world has at most {MAX_ROOTS} roots, got {len(self.roots)}"
            )
        if self.dictionary and self.type != WorldType.MOON:
            raise LocalProtocolError("only moons carry a dictionary")
        if len(self.dictionary) > _U16_MAX:
            raise LocalProtocolError("the moon dictionary is at most 65535 bytes")

    @property
    def is_null(self) -> bool:
        """True for the empty world any real world replaces (``World::operator bool``)."""
        return self.type == WorldType.NULL or self.id == 0

    # --- binary form ---------------------------------------------------------------------------

    @classmethod
    def read(cls, reader: Reader) -> World:
        """Read one world at the cursor (inside OK(HELLO), or a planet/moon file)."""
        kind = reader.u8("world type")
        try:
            wtype = WorldType(kind)
        except ValueError:
            raise DecodeError(f"unknown world type {kind}") from None
        wid = reader.u64("world id")
        ts = reader.u64("world timestamp")
        update_key = reader.raw(UPDATE_KEY_SIZE, "world update key")
        signature = reader.raw(SIGNATURE_SIZE, "world signature")
        nroots = reader.u8("world root count")
        if nroots > MAX_ROOTS:
            raise DecodeError(f"world has {nroots} roots, at most {MAX_ROOTS} allowed")
        reader.count(nroots, _MIN_ROOT_SIZE, "world roots")
        roots = tuple(Root.read(reader) for _ in range(nroots))
        dictionary = b""
        if wtype == WorldType.MOON:
            dictionary = reader.raw(reader.u16("moon dictionary length"), "moon dictionary")
        return cls(wtype, wid, ts, update_key, signature, roots, dictionary)

    @classmethod
    def from_bytes(cls, data: Buf) -> World:
        """Parse a buffer holding exactly one world (a ``planet`` or ``*.moon`` file)."""
        reader = Reader(data)
        world = cls.read(reader)
        reader.expect_end("world")
        return world

    def _write(self, writer: Writer, for_signing: bool) -> None:
        if for_signing:
            writer.raw(_SIGN_PREFIX)
        writer.u8(self.type).u64(self.id).u64(self.timestamp).raw(self.update_key)
        if not for_signing:
            writer.raw(self.signature)
        writer.u8(len(self.roots))
        for root in self.roots:
            root.write(writer)
        if self.type == WorldType.MOON:
            dictionary = b"" if for_signing else self.dictionary
            writer.u16(len(dictionary)).raw(dictionary)
        if for_signing:
            writer.raw(_SIGN_SUFFIX)

    def write(self, writer: Writer) -> None:
        self._write(writer, for_signing=False)

    def to_bytes(self) -> bytes:
        writer = Writer()
        self._write(writer, for_signing=False)
        return bytes(writer.buf)

    def signing_message(self) -> bytes:
        """What the signature covers: ``0x7f*8 || serialisation minus signature || 0xf7*8``."""
        writer = Writer()
        self._write(writer, for_signing=True)
        return bytes(writer.buf)

    # --- signatures ----------------------------------------------------------------------------

    def verify_signature(self, key: bytes) -> bool:
        """Whether ``key`` (64-byte C25519 public key) signed this world; never raises.

        For an update, ``key`` is the *current* world's :attr:`update_key`, not this one's.
        """
        if len(key) != UPDATE_KEY_SIZE:
            return False
        return c25519_verify(bytes(key), self.signing_message(), self.signature)

    @classmethod
    def make(
        cls,
        type: WorldType,
        id: int,
        timestamp: int,
        update_key_pub: bytes,
        roots: tuple[Root, ...] | list[Root],
        signing_priv64: bytes,
    ) -> World:
        """Build and sign a world (``World::make``, World.hpp:265; attic/world/mkworld.cpp).

        ``update_key_pub`` is the key the *next* revision must be signed with; ``signing_priv64``
        is the private half of the *current* deployed world's update key (the same pair for a
        brand-new, self-signed world).
        """
        if len(signing_priv64) != PRIVATE_KEY_SIZE:
            raise LocalProtocolError(f"signing key must be {PRIVATE_KEY_SIZE} private bytes")
        unsigned = cls(
            WorldType(type),
            id,
            timestamp,
            bytes(update_key_pub),
            bytes(SIGNATURE_SIZE),
            tuple(roots),
        )
        signature = c25519_sign(bytes(signing_priv64), unsigned.signing_message())
        return cls(unsigned.type, id, timestamp, unsigned.update_key, signature, unsigned.roots)


def should_replace(current: World | None, candidate: World) -> bool:
    """Whether ``candidate`` may replace ``current`` (``World::shouldBeReplacedBy``, §12.2).

    A missing or null current world is replaced by anything, unsigned: that is how a cached
    ``planet`` file overrides the built-in default. Otherwise the candidate needs the same id and
    type, a strictly newer timestamp, and a valid signature by the current world's update key.
    Brand-new moons (no current) are the caller's decision: the reference accepts them only from
    ``moons.d`` or a matching orbit seed (Topology.cpp:229-301).
    """
    if current is None or current.is_null:
        return True
    return (
        candidate.id == current.id
        and candidate.type == current.type
        and candidate.timestamp > current.timestamp
        and candidate.verify_signature(current.update_key)
    )


# The public ZeroTier planet compiled into ZeroTierOne 1.14.1 (``ZT_DEFAULT_WORLD``,
# node/Topology.cpp:25-26): id 149604618, timestamp 1644592324813, 4 roots, 570 bytes.
DEFAULT_PLANET: Final[bytes] = bytes.fromhex(
    "010000000008eac90a0000017ee95760cdb8b388a469221491aa9acd66cc764cdefd56039f1067ae15e69c6f"
    "b42d7b55330e3fdaac529c0792fd7340a6aa21aba8a489fdaea44a39bf2d00659ac9c818eb3600927637ef4d"
    "1404a44d544684851379751faa79b4c4ea85040175ea065860482402e1eb342052000e6290061a9be0cd293c"
    "8b55f1c3d2524808afc54922080e3539a75addc3cef0f6ad260d588293bb7786e71efa4b9057dad9867afe12"
    "dd04cafe9efeb900ccdef76bc7b97ded904eabc5df09886d9c1514a610036cb9139cc214001a2958978efcec"
    "15712dd3948c6e6b3a8e893df01ff493d1f8d9806a860c5420571bf000020468c20886270906260598800200"
    "1200003005710e3400512709778cde7190003f6681a99e5ad1895e9fba33e6212d4454e168bcec7112101bf0"
    "00956ed8e92e42892cb6f2ec410881a84ab19da50e1287ba3d926c3a1f755cccf299a120705500020467c367"
    "4227090626059880040000c30254f2bca1f70019270962f865ae7100e2076c57de870e6288d7d5e7404408b1"
    "545efca37d67f77b87e9e54168c25d3ef1a9abf2905ea5e785c01dff23887ad4232d95c7a8fd2c27111a72bd"
    "159322dc0002043207fc8a270906200149f0d0db000200000000000000022709cafe04eba9006c6a9d1dea55"
    "c1616bfe2a2b8f0ff9a8cacaf70374fb1f39e3bef81cbfebef17b7228268a0a2a29d3488c752565c6c965cbd"
    "6506ec24397cc8a5d9d15285a87f0002045411359b2709062a026ea0d405000000000000000099932709"
)


__all__ = [
    "DEFAULT_PLANET",
    "MAX_ENDPOINTS_PER_ROOT",
    "MAX_ROOTS",
    "WORLD_ID_EARTH",
    "WORLD_ID_MARS",
    "Root",
    "World",
    "WorldType",
    "should_replace",
]
