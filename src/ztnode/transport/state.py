"""A node's home directory, with ZeroTierOne's file names so tools and habits carry over.

``identity.secret`` / ``identity.public`` (text identities), ``planet`` (a binary World),
``moons.d/<16 hex>.moon``, ``peers.d/<10 hex>.peer`` (a cache of peers and the addresses they
were last reached at) and ``authtoken.secret`` (the local API token). Secret files are created
with mode 0600; every write goes to a temporary file first and is renamed over the old one, so a
crash never leaves a half-written identity or planet behind.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ztnode.errors import DecodeError
from ztnode.identity import Identity, address_to_str
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import DEFAULT_PLANET, World

log = logging.getLogger("ztnode.state")

PEER_CACHE_VERSION = 2


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class HomeDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in ("moons.d", "peers.d", "networks.d"):
            (self.path / sub).mkdir(exist_ok=True)

    # identity ---------------------------------------------------------------------------

    def load_or_create_identity(self) -> Identity:
        secret = self.path / "identity.secret"
        if secret.exists():
            ident = Identity.from_string(secret.read_text().strip())
            if not ident.has_private:
                raise DecodeError(f"{secret} holds no private key")
            if not ident.validate():
                raise DecodeError(f"{secret} does not validate (address does not match key)")
        else:
            ident = Identity.generate()
            ident.save(secret, include_private=True)
        public = self.path / "identity.public"
        text = ident.to_string() + "\n"
        if not public.exists() or public.read_text() != text:
            write_atomic(public, text.encode())
        return ident

    # worlds -----------------------------------------------------------------------------

    def load_planet(self, override: World | None = None) -> World:
        """The planet to use: an explicit one (saved for next time), the cached file, or Earth."""
        f = self.path / "planet"
        if override is not None:
            write_atomic(f, override.to_bytes())
            return override
        if f.exists():
            try:
                return World.from_bytes(f.read_bytes())
            except (DecodeError, OSError) as e:
                log.warning("ignoring unreadable %s: %s", f, e)
        return World.from_bytes(DEFAULT_PLANET)

    def save_world(self, world: World) -> None:
        if world.type == 1:
            write_atomic(self.path / "planet", world.to_bytes())
        else:
            write_atomic(self.path / "moons.d" / f"{world.id:016x}.moon", world.to_bytes())

    def load_moons(self) -> list[World]:
        out: list[World] = []
        for f in sorted((self.path / "moons.d").glob("*.moon")):
            try:
                out.append(World.from_bytes(f.read_bytes()))
            except (DecodeError, OSError) as e:
                log.warning("ignoring unreadable moon %s: %s", f, e)
        return out

    def delete_moon(self, world_id: int) -> None:
        (self.path / "moons.d" / f"{world_id:016x}.moon").unlink(missing_ok=True)

    # peers ------------------------------------------------------------------------------

    def save_peer(
        self, identity: Identity, version: tuple[int, int, int, int], addrs: list[InetAddress]
    ) -> None:
        w = Writer().u8(PEER_CACHE_VERSION)
        identity.write(w, include_private=False)
        for v in version:
            w.u16(v)
        w.u16(len(addrs))
        for a in addrs:
            a.write(w)
        write_atomic(
            self.path / "peers.d" / f"{address_to_str(identity.address)}.peer", w.getvalue()
        )

    def load_peers(self) -> list[tuple[Identity, tuple[int, int, int, int], list[InetAddress]]]:
        out = []
        for f in sorted((self.path / "peers.d").glob("*.peer")):
            try:
                r = Reader(f.read_bytes())
                if r.u8() != PEER_CACHE_VERSION:
                    continue
                ident = Identity.read(r)
                version = (r.u16(), r.u16(), r.u16(), r.u16())
                n = r.count(r.u16(), 1, "cached paths")
                addrs = [a for a in (InetAddress.read(r) for _ in range(n)) if a is not None]
                out.append((ident, version, addrs))
            except (DecodeError, OSError) as e:
                log.warning("ignoring unreadable peer cache %s: %s", f, e)
        return out

    # networks ---------------------------------------------------------------------------

    def _network_file(self, network_id: int) -> Path:
        return self.path / "networks.d" / f"{network_id:016x}.conf"

    def remember_network(self, network_id: int) -> None:
        """A joined network with no config yet is a one-line placeholder, as ZeroTierOne
        writes it, so the node re-joins it after a restart."""
        (self.path / "networks.d").mkdir(exist_ok=True)
        f = self._network_file(network_id)
        if not f.exists():
            write_atomic(f, b"\n", mode=0o600)

    def forget_network(self, network_id: int) -> None:
        self._network_file(network_id).unlink(missing_ok=True)
        (self.path / "networks.d" / f"{network_id:016x}.local.conf").unlink(missing_ok=True)

    def save_network_config(self, network_id: int, config: bytes) -> None:
        (self.path / "networks.d").mkdir(exist_ok=True)
        write_atomic(self._network_file(network_id), config, mode=0o600)

    def load_networks(self) -> list[tuple[int, bytes]]:
        """(network id, cached config or empty) for every joined network."""
        out: list[tuple[int, bytes]] = []
        d = self.path / "networks.d"
        if not d.is_dir():
            return out
        for f in sorted(d.glob("*.conf")):
            stem = f.name[: -len(".conf")]
            if len(stem) != 16:
                continue  # *.local.conf and foreign files
            try:
                nwid = int(stem, 16)
                data = f.read_bytes()
            except (ValueError, OSError) as e:
                log.warning("ignoring %s: %s", f, e)
                continue
            out.append((nwid, data if data.strip() else b""))
        return out

    # API token --------------------------------------------------------------------------

    def auth_token(self) -> str:
        f = self.path / "authtoken.secret"
        if f.exists():
            token = f.read_text().strip()
            if token:
                return token
        token = secrets.token_urlsafe(18)
        write_atomic(f, token.encode(), mode=0o600)
        return token
