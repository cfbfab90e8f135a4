"""A node's home directory, with ZeroTierOne's file names so tools and habits carry over.

``identity.secret`` / ``identity.public`` (text identities), ``planet`` (a binary World),
``moons.d/<16 hex>.moon``, ``peers.d/<10 hex>.peer`` (a cache of peers and the addresses they
were last reached at), ``networks.d/<16 hex>.conf`` (joined networks and their configs) with
``networks.d/<16 hex>.local.conf`` (the local settings ``zerotier-cli set`` changes),
``authtoken.secret`` (the local API token) and ``metricstoken.secret`` (a token good only for
``/metrics``, so a Prometheus scraper never holds the full API token). Secret files are created
with mode 0600; every write goes to a temporary file first and is renamed over the old one, so a
crash never leaves a half-written identity or planet behind.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from ztnode.core.trusted import LEGACY_FILE, PhysicalPathConfig
from ztnode.errors import DecodeError
from ztnode.fsutil import remove_stale_temps, write_atomic
from ztnode.identity import Identity, address_to_str
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import DEFAULT_PLANET, World

log = logging.getLogger("ztnode.state")

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def check_private(path: Path) -> bool:
    """Warn when a secret file (identity, API token) can be read or written by others than its
    owner, as a copied or hand-made file may be; ztnode writes them 0600. False when it is
    exposed. The node still starts: refusing would lock an operator out of their own node."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True
    if mode & 0o077:
        log.warning(
            "%s is accessible to others (mode %o): it holds a secret; chmod 600 it",
            path,
            mode & 0o777,
        )
        return False
    return True


PEER_CACHE_VERSION = 2

#: Network settings: field name -> the name in ``local.conf`` and ``/network``, as ZeroTierOne
#: spells it.
SETTING_NAMES: Final = {
    "allow_managed": "allowManaged",
    "allow_global": "allowGlobal",
    "allow_default": "allowDefault",
    "allow_dns": "allowDNS",
}


@dataclass(frozen=True)
class NetworkSettings:
    """A joined network's local settings, ZeroTierOne's ``NetworkSettings`` (OneService.hpp).

    ``networks.d/<nwid>.local.conf`` holds them as ZeroTierOne writes it (``allowManaged=1``
    and so on, one per line) and they show in ``/network`` under the same names. What they gate
    in ztnode, where there is no OS interface or routing table to protect:

    * ``allow_managed`` (default on): the network's IP stack takes the addresses and routes the
      controller assigns; off, the stack has no managed address (and so no IP on the network)
      and no managed route, while ``assignedAddresses`` still reports what was assigned.
    * ``allow_global`` (off): managed *routes* whose target is global (public) address space
      reach the stack only when on. Unlike ZeroTierOne, global *addresses* are not withheld:
      an address in this process' own stack cannot capture any traffic of the host.
    * ``allow_default`` (off): a managed default route (``0.0.0.0/0``, ``::/0``) reaches the
      stack only when on.
    * ``allow_dns`` (off): whether the controller's DNS settings are used: names under the
      domain the network pushes are asked of its DNS servers only when on (the node's own
      resolver, :mod:`ztnode.sockets.names`; nothing of the host's changes).
    """

    allow_managed: bool = True
    allow_global: bool = False
    allow_default: bool = False
    allow_dns: bool = False

    def as_json(self) -> dict[str, bool]:
        return {SETTING_NAMES[f.name]: bool(getattr(self, f.name)) for f in fields(self)}

    def to_local_conf(self) -> bytes:
        return "".join(f"{k}={int(v)}\n" for k, v in self.as_json().items()).encode()

    @classmethod
    def from_local_conf(cls, text: str) -> NetworkSettings:
        """Parse ``key=value`` lines; like ZeroTierOne's ``Dictionary::getB``, a value that
        starts with ``1``, ``t`` or ``T`` is true and anything else false; missing keys keep
        their defaults. An ``allowManaged`` list of CIDRs (ZeroTierOne's whitelist) is taken
        as on, without the whitelist."""
        by_json = {v: k for k, v in SETTING_NAMES.items()}
        values: dict[str, bool] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            name = by_json.get(key.strip())
            if not sep or name is None:
                continue
            value = value.strip()
            if name == "allow_managed" and len(value) > 5:
                log.warning("allowManaged whitelists are not supported; taken as allowManaged=1")
                values[name] = True
                continue
            values[name] = value[:1] in ("1", "t", "T")
        return cls(**values)


class HomeDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)  # left by a process killed mid-write
        for sub in ("moons.d", "peers.d", "networks.d"):
            (self.path / sub).mkdir(exist_ok=True)
            remove_stale_temps(self.path / sub)

    # local.conf -------------------------------------------------------------------------

    def load_local_conf(self) -> dict[str, Any]:
        """``local.conf`` (ZeroTierOne's node-wide settings file: ``settings``, ``physical``...),
        or ``{}`` without one. A file that is not a JSON object is an error naming it: a node
        must not quietly run without the bonds or bindings its operator configured."""
        f = self.path / "local.conf"
        if not f.exists():
            return {}
        try:
            conf = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DecodeError(f"{f}: {e}") from None
        if not isinstance(conf, dict) or not isinstance(conf.get("settings", {}), dict):
            raise DecodeError(f'{f}: expected an object with a "settings" object')
        return conf

    def update_local_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into ``local.conf``'s ``settings`` and write the file atomically
        (what ZeroTierOne's ``POST /config/settings`` does; like it, the node reads the file
        at its next start). Returns the whole new ``local.conf``."""
        conf = self.load_local_conf()
        settings = dict(conf.get("settings", {}))
        settings.update(changes)
        conf["settings"] = settings
        write_atomic(self.path / "local.conf", (json.dumps(conf, indent=4) + "\n").encode())
        return conf

    def load_physical_paths(self, physical: PhysicalPathConfig) -> PhysicalPathConfig:
        """Trusted paths and MTUs: the deprecated ``trustedpaths`` file (still read by
        ZeroTierOne 1.14.1, with the same warning), overlaid by local.conf's ``physical``
        (already checked: :class:`~ztnode.transport.localconf.LocalConf`); errors name the
        file line."""
        legacy = PhysicalPathConfig()
        f = self.path / LEGACY_FILE
        if f.exists():
            log.warning(
                "%s: the 'trustedpaths' file is deprecated in favor of 'physical' in local.conf",
                f,
            )
            try:
                text = f.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise DecodeError(f"{f}: {e}") from None
            legacy = PhysicalPathConfig.from_legacy_file(text)
        return legacy.merged(physical)

    def load_local_settings(self) -> dict[str, Any]:
        """The ``settings`` object of ``local.conf`` (see :meth:`load_local_conf`)."""
        settings: dict[str, Any] = self.load_local_conf().get("settings", {})
        return settings

    # identity ---------------------------------------------------------------------------

    def load_or_create_identity(self) -> Identity:
        secret = self.path / "identity.secret"
        if secret.exists():
            check_private(secret)
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

    def _local_conf(self, network_id: int) -> Path:
        return self.path / "networks.d" / f"{network_id:016x}.local.conf"

    def load_network_settings(self, network_id: int) -> NetworkSettings:
        """``networks.d/<nwid>.local.conf``, or the defaults when there is none."""
        f = self._local_conf(network_id)
        try:
            return NetworkSettings.from_local_conf(f.read_text())
        except FileNotFoundError:
            return NetworkSettings()
        except (OSError, UnicodeDecodeError) as e:
            log.warning("ignoring unreadable %s: %s", f, e)
            return NetworkSettings()

    def save_network_settings(self, network_id: int, settings: NetworkSettings) -> None:
        (self.path / "networks.d").mkdir(exist_ok=True)
        write_atomic(self._local_conf(network_id), settings.to_local_conf(), mode=0o600)

    def forget_network(self, network_id: int) -> None:
        self._network_file(network_id).unlink(missing_ok=True)
        self._local_conf(network_id).unlink(missing_ok=True)

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
        return self._token("authtoken.secret")

    def metrics_token(self) -> str:
        """The token ``/metrics`` also accepts (ZeroTierOne 1.12+'s ``metricstoken.secret``)."""
        return self._token("metricstoken.secret")

    def _token(self, name: str) -> str:
        f = self.path / name
        if f.exists():
            check_private(f)
            token = f.read_text().strip()
            if token:
                return token
        # 24 lower-case letters and digits, as ZeroTierOne makes it: never starting with "-",
        # which a command line would take for an option (``--token -x...``).
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))
        write_atomic(f, token.encode(), mode=0o600)
        return token
