"""Making and updating planets and moons, the way ZeroTier's ``mkworld`` and ``genmoon`` do.

A world is signed by the key the *previous* revision named in ``updatesMustBeSignedBy``, and
names the key its *successor* must be signed with. So rotating keys is: sign revision N+1 with
the old key while embedding the new key's public half; from then on only the new key can sign.
Key files hold ``public(64) || private(64)`` raw bytes, like mkworld's ``*.c25519`` files, and are
written with mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ztnode.crypto import c25519_generate, c25519_public_from_private
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity, address_to_str
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType, should_replace

KEY_FILE_SIZE = 128
MAX_ROOTS = 4
MAX_ENDPOINTS = 32


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    private: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        pub, priv = c25519_generate()
        return cls(pub, priv)

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        data = path.read_bytes()
        if len(data) != KEY_FILE_SIZE:
            raise DecodeError(
                f"{path}: a world key file holds {KEY_FILE_SIZE} bytes, not {len(data)}"
            )
        pub, priv = data[:64], data[64:]
        if c25519_public_from_private(priv) != pub:
            raise DecodeError(f"{path}: the private half does not match the public half")
        return cls(pub, priv)

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.public + self.private)

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[KeyPair, bool]:
        if path.exists():
            return cls.load(path), False
        kp = cls.generate()
        kp.save(path)
        return kp, True


def parse_root_spec(spec: str) -> Root:
    """``IDENTITY=IP/PORT[,IP/PORT...]``; IDENTITY is an identity string or a file holding one."""
    ident_part, sep, eps_part = spec.partition("=")
    if not sep:
        raise LocalProtocolError(f"root {spec!r}: expected IDENTITY=ip/port[,ip/port...]")
    ident_text = ident_part.strip()
    if ":" not in ident_text:  # not an identity string: a file that holds one
        p = Path(ident_text)
        try:
            ident_text = p.read_text().strip()
        except OSError as err:
            raise LocalProtocolError(
                f"root {ident_part!r}: not an identity string, and no readable file "
                f"({err.strerror or err})"
            ) from None
    ident = Identity.from_string(ident_text).public()
    endpoints = tuple(InetAddress.parse(e.strip()) for e in eps_part.split(",") if e.strip())
    for e in endpoints:
        if e.port == 0:
            # InetAddress.parse takes a bare IP as port 0: nobody could reach the root there.
            raise LocalProtocolError(f"root endpoint {e.ip} needs a port (ip/port)")
    if not endpoints:
        # A root nobody can find is useless in a planet; moons' roots are found the same way.
        raise LocalProtocolError(f"root {ident.address:010x} needs at least one ip/port endpoint")
    if len(endpoints) > MAX_ENDPOINTS:
        raise LocalProtocolError(f"a root has at most {MAX_ENDPOINTS} endpoints")
    return Root(ident, endpoints)


def make_world(
    kind: WorldType,
    world_id: int,
    timestamp: int,
    roots: list[Root],
    signing_key: KeyPair,
    next_key: KeyPair,
    previous: World | None = None,
) -> World:
    """Build and sign a world; with ``previous``, check the result is a valid update of it."""
    if not 1 <= len(roots) <= MAX_ROOTS:
        raise LocalProtocolError(f"a world has 1 to {MAX_ROOTS} roots, not {len(roots)}")
    if len({r.identity.address for r in roots}) != len(roots):
        raise LocalProtocolError("the same root is listed twice")
    for r in roots:
        if not r.identity.validate():
            raise LocalProtocolError(f"root {address_to_str(r.identity.address)} does not validate")
    world = World.make(
        kind, world_id, timestamp, next_key.public, tuple(roots), signing_key.private
    )
    if previous is not None:
        if previous.update_key != signing_key.public:
            raise LocalProtocolError(
                "the signing key is not the one the previous revision names for updates"
            )
        if not should_replace(previous, world):
            raise LocalProtocolError(
                "the new world would not replace the previous one (same id and type, newer "
                "timestamp and the right signing key are all required)"
            )
    elif not world.verify_signature(signing_key.public):
        raise LocalProtocolError("internal error: the new world does not verify")
    return world


def describe(world: World) -> dict[str, object]:
    """A JSON-friendly summary (ZeroTierOne's field names where it has them)."""
    return {
        "id": f"{world.id:016x}",
        "type": {WorldType.PLANET: "planet", WorldType.MOON: "moon"}.get(world.type, "null"),
        "timestamp": world.timestamp,
        "updatesMustBeSignedBy": world.update_key.hex(),
        "signature": world.signature.hex(),
        "roots": [
            {
                "identity": r.identity.to_string(),
                "stableEndpoints": [str(e) for e in r.endpoints],
            }
            for r in world.roots
        ],
    }


def describe_json(world: World) -> str:
    return json.dumps(describe(world), indent=2)
