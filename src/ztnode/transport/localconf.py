"""``local.conf``: ZeroTierOne's node-wide settings file, checked whole, read at start and
whenever it changes.

The file is the one every ZeroTier operator knows (service/OneService.cpp ``readLocalSettings``
and ``applyLocalConfig``): a JSON object with ``settings`` (ports, port mapping, the TCP
fallback relay, interface blacklists, explicit binds, who may use the local API, bonding),
``physical`` (per physical network: ``blacklist``, ``trustedPathId``, ``mtu``) and ``virtual``
(per peer: addresses to ``try`` and networks to ``blacklist``). The reference reads what it
understands and quietly defaults the rest; here every key is checked, a wrong value is a
:class:`LocalConfError` naming the key (the node refuses to start on it, and a reload that
fails keeps the settings in force), and keys we do not know are kept in the file and reported
once as warnings (a typo in ``"portMapingEnabled"`` should not pass unnoticed).

:class:`LocalConf` is the checked file; each capability reads its part from it (the Binder's
:class:`~ztnode.transport.binder.BindSettings`, bonding's ``BondingSettings``, the core's
:class:`~ztnode.core.pathpolicy.PathPolicy`...). :class:`LocalConfWatcher` notices changes
(every :data:`CHECK_INTERVAL` ms, ZT_LOCAL_CONF_FILE_CHECK_INTERVAL: the file's size, mtime
and inode, where the reference looks only at a recent mtime). Settings given through the
Python API (``Node(settings=...)``) are laid over the file's, key by key, at every reload.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ztnode.core.bond import BondingSettings
from ztnode.core.pathpolicy import MAX_ENTRIES, MAX_PEERS, PathPolicy, PeerHints
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.errors import DecodeError
from ztnode.wire.inetaddr import InetAddress

#: ZT_LOCAL_CONF_FILE_CHECK_INTERVAL (node/Constants.hpp).
CHECK_INTERVAL: Final = 10_000
#: A local.conf larger than this is refused (the reference has no bound; a settings file of
#: megabytes is a mistake, not a configuration).
MAX_FILE_BYTES: Final = 1 << 20

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``settings`` keys ZeroTierOne reads that mean nothing for ztnode, with the reason the
#: warning gives. They are accepted (a file shared with ZeroTierOne installs must load).
NOT_APPLICABLE: Final[Mapping[str, str]] = {
    "softwareUpdate": "ztnode is updated by pip, not by itself",
    "softwareUpdateChannel": "ztnode is updated by pip, not by itself",
    "softwareUpdateDist": "ztnode distributes no updates",
    "multicoreEnabled": "ztnode runs one event loop per node",
    "concurrency": "ztnode runs one event loop per node",
    "cpuPinningEnabled": "ztnode runs one event loop per node",
    "enableWebServer": "the web console is always served on the local API (/console)",
    "lowBandwidthMode": "not implemented: ztnode keeps ZeroTier's default keepalive schedule",
    "redis": "ZeroTier Central's message bus; ztnode's controllers share PostgreSQL instead",
    "vault": "HashiCorp Vault identity storage is a build option of ZeroTierOne",
    "ssoRedirectURL": "ztnode's controller has no OIDC login of its own",
}

#: ``settings`` keys ztnode applies (the reference's, then ours).
APPLIED: Final = frozenset(
    {
        "primaryPort",
        "secondaryPort",
        "tertiaryPort",
        "allowSecondaryPort",
        "portMappingEnabled",
        "allowTcpFallbackRelay",
        "forceTcpRelay",
        "tcpFallbackRelay",
        "interfacePrefixBlacklist",
        "bind",
        "allowManagementFrom",
        "defaultBondingPolicy",
        "policies",
        "peerSpecificBonds",
        "controllerDbPath",
        # ztnode's own
        "tcpRelayListen",
    }
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class LocalConfError(DecodeError):
    """A value of ``local.conf`` (or of the API's settings) that cannot be used; ``key`` is its
    dotted path (``settings.primaryPort``, ``physical.10.0.0.0/8.mtu``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"local.conf {key}: {message}")
        self.key = key


def _bool(v: Any, key: str, default: bool) -> bool:
    """A boolean as ZeroTierOne's ``jsonBool`` takes one: true/false, 0/1, or their strings."""
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise LocalConfError(key, f"expected true or false, not {v!r}")


def _port(v: Any, key: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise LocalConfError(key, f"expected a port number 0-65535, not {v!r}")
    return v


def _str_list(v: Any, key: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise LocalConfError(key, f"expected a list of strings, not {v!r}")
    if len(v) > MAX_ENTRIES:
        raise LocalConfError(key, f"at most {MAX_ENTRIES} entries, not {len(v)}")
    return v


def _network(text: str, key: str, *, bare_is_host: bool = True) -> IpNetwork:
    """``10.0.0.0/8`` (or ZeroTier's ``ip/bits``); a bare address is that one host."""
    t = text.strip()
    if "/" not in t and not bare_is_host:
        raise LocalConfError(key, f"{text!r} is not a network (ADDRESS/BITS)")
    try:
        return ipaddress.ip_network(t, strict=False)
    except ValueError as e:
        raise LocalConfError(key, f"{text!r} is not a network: {e}") from None


def parse_endpoint(text: str, key: str) -> tuple[str, int]:
    """``IP/port`` (ZeroTier's form) with a port."""
    try:
        addr = InetAddress.parse(text)
    except (DecodeError, ValueError) as e:
        raise LocalConfError(key, f"{text!r} is not IP/PORT: {e}") from None
    if addr.port == 0:
        raise LocalConfError(key, f"{text!r} has no port (IP/PORT)")
    return str(addr.ip), addr.port


@dataclass(frozen=True)
class LocalConf:
    """The checked ``local.conf``. ``raw`` is the file's object as read (with the API's
    settings laid over it); ``warnings`` say what was ignored and why."""

    raw: Mapping[str, Any] = field(default_factory=dict)
    primary_port: int = 0
    secondary_port: int = 0
    tertiary_port: int = 0
    #: None when the file does not say: on with one socket per interface address (as the
    #: reference), and with wildcard sockets as the service decides (on for the daemon).
    allow_secondary_port: bool | None = None
    #: None when the file does not say: the service's default decides (on for the
    #: ``ztnode node`` daemon, off for embedded nodes).
    port_mapping_enabled: bool | None = None
    allow_tcp_fallback_relay: bool = True
    force_tcp_relay: bool = False
    tcp_fallback_relay: tuple[str, int] | None = None
    interface_prefix_blacklist: tuple[str, ...] = ()
    bind: tuple[IpAddress, ...] = ()
    allow_management_from: tuple[IpNetwork, ...] = ()
    controller_db_path: str | None = None
    tcp_relay_listen: tuple[str, int] | None = None
    bonding: BondingSettings = field(default_factory=BondingSettings)
    #: ``physical``'s trusted paths and MTUs (the core's table, :mod:`ztnode.core.trusted`).
    physical: PhysicalPathConfig = field(default_factory=PhysicalPathConfig)
    #: ``physical`` networks marked ``"blacklist": true``.
    blacklisted_networks: tuple[IpNetwork, ...] = ()
    virtual: Mapping[int, PeerHints] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def settings(self) -> Mapping[str, Any]:
        """The ``settings`` object (for the parts that read their own keys from it)."""
        s = self.raw.get("settings", {})
        return s if isinstance(s, Mapping) else {}

    def path_policy(self) -> PathPolicy:
        """What the core needs of this file (see :mod:`ztnode.core.pathpolicy`)."""
        return PathPolicy(self.blacklisted_networks, dict(self.virtual))

    def management_allowed(self, ip: str) -> bool:
        """``allowManagementFrom``: loopback always, else an address in a listed network."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr.is_loopback:
            return True
        return any(addr.version == n.version and addr in n for n in self.allow_management_from)

    @classmethod
    def parse(cls, obj: Any, overrides: Mapping[str, Any] | None = None) -> LocalConf:
        """Check a ``local.conf`` object; ``overrides`` (the API's settings) replace the
        file's ``settings`` keys of the same name. Raises :class:`LocalConfError`."""
        if not isinstance(obj, Mapping):
            raise LocalConfError("(file)", "the file must hold a JSON object")
        raw = dict(obj)
        settings_in = raw.get("settings", {})
        if settings_in is None:
            settings_in = {}
        if not isinstance(settings_in, Mapping):
            raise LocalConfError("settings", "expected an object")
        settings = {**settings_in, **(overrides or {})}
        raw["settings"] = settings
        warnings: list[str] = []
        for key in raw:
            if key not in ("settings", "physical", "virtual"):
                warnings.append(f"local.conf {key}: unknown key, kept and ignored")
        for key in settings:
            if key in NOT_APPLICABLE:
                warnings.append(f"local.conf settings.{key}: {NOT_APPLICABLE[key]}")
            elif key not in APPLIED:
                warnings.append(f"local.conf settings.{key}: unknown key, kept and ignored")

        def s(key: str) -> Any:
            return settings.get(key)

        bind: list[IpAddress] = []
        for text in _str_list(s("bind"), "settings.bind"):
            try:
                bind.append(ipaddress.ip_address(text.strip().split("/", 1)[0]))
            except ValueError:
                raise LocalConfError("settings.bind", f"{text!r} is not an IP address") from None
        prefixes = _str_list(s("interfacePrefixBlacklist"), "settings.interfacePrefixBlacklist")
        if any(not p for p in prefixes):
            raise LocalConfError("settings.interfacePrefixBlacklist", "empty prefix")
        amf = tuple(
            _network(t, "settings.allowManagementFrom")
            for t in _str_list(s("allowManagementFrom"), "settings.allowManagementFrom")
        )
        relay = s("tcpFallbackRelay")
        if relay is not None and not isinstance(relay, str):
            raise LocalConfError("settings.tcpFallbackRelay", f"expected IP/PORT, not {relay!r}")
        listen = s("tcpRelayListen")
        if listen is not None and not isinstance(listen, str):
            raise LocalConfError("settings.tcpRelayListen", f"expected IP/PORT, not {listen!r}")
        allow_relay = _bool(s("allowTcpFallbackRelay"), "settings.allowTcpFallbackRelay", True)
        force_relay = _bool(s("forceTcpRelay"), "settings.forceTcpRelay", False)
        if force_relay and not allow_relay:
            # The reference would then send no UDP and open no tunnel: never online.
            raise LocalConfError(
                "settings.forceTcpRelay", "true while allowTcpFallbackRelay is false"
            )
        db = s("controllerDbPath")
        if db is not None and (not isinstance(db, str) or not db):
            raise LocalConfError("settings.controllerDbPath", f"expected a path, not {db!r}")
        try:
            bonding = BondingSettings.from_local_conf(settings)
        except ValueError as e:  # BondConfigError names the key itself
            raise LocalConfError("settings", str(e)) from None
        return cls(
            raw=raw,
            primary_port=_port(s("primaryPort"), "settings.primaryPort"),
            secondary_port=_port(s("secondaryPort"), "settings.secondaryPort"),
            tertiary_port=_port(s("tertiaryPort"), "settings.tertiaryPort"),
            allow_secondary_port=(
                None
                if s("allowSecondaryPort") is None
                else _bool(s("allowSecondaryPort"), "settings.allowSecondaryPort", True)
            ),
            port_mapping_enabled=(
                None
                if s("portMappingEnabled") is None
                else _bool(s("portMappingEnabled"), "settings.portMappingEnabled", True)
            ),
            allow_tcp_fallback_relay=allow_relay,
            force_tcp_relay=force_relay,
            tcp_fallback_relay=(
                parse_endpoint(relay, "settings.tcpFallbackRelay") if relay is not None else None
            ),
            interface_prefix_blacklist=tuple(prefixes),
            bind=tuple(bind),
            allow_management_from=amf,
            controller_db_path=db,
            tcp_relay_listen=(
                parse_endpoint(listen, "settings.tcpRelayListen") if listen is not None else None
            ),
            bonding=bonding,
            physical=_physical(raw.get("physical")),
            blacklisted_networks=_blacklisted(raw.get("physical")),
            virtual=_virtual(raw.get("virtual")),
            warnings=tuple(warnings),
        )


def _physical(obj: Any) -> PhysicalPathConfig:
    """The trusted paths and MTUs, by the core's parser (its errors name the network)."""
    if obj is None:
        return PhysicalPathConfig()
    try:
        return PhysicalPathConfig.from_local_conf(obj)
    except DecodeError as e:
        raise LocalConfError("physical", str(e)) from None


def _blacklisted(obj: Any) -> tuple[IpNetwork, ...]:
    """``physical`` networks marked ``"blacklist": true`` (after :func:`_physical` checked
    the object); as in the reference, a blacklist needs a prefix length above 0."""
    out: list[IpNetwork] = []
    for cidr, spec in (obj or {}).items():
        if _bool(spec.get("blacklist"), f"physical.{cidr}.blacklist", False):
            net = _network(str(cidr), f"physical.{cidr}")
            if net.prefixlen == 0:
                raise LocalConfError(f"physical.{cidr}", "a blacklist needs a prefix length > 0")
            out.append(net)
    return tuple(out)


def _virtual(obj: Any) -> dict[int, PeerHints]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise LocalConfError("virtual", "expected an object of 10-digit peer addresses")
    if len(obj) > MAX_PEERS:
        raise LocalConfError("virtual", f"at most {MAX_PEERS} peers, not {len(obj)}")
    out: dict[int, PeerHints] = {}
    for key, spec in obj.items():
        where = f"virtual.{key}"
        try:
            address = int(str(key), 16) if len(str(key)) == 10 else 0
        except ValueError:
            address = 0
        if not 0 < address < 1 << 40:
            raise LocalConfError(where, "not a ZeroTier address (10 hex digits)")
        if not isinstance(spec, Mapping):
            raise LocalConfError(where, "expected an object (try, blacklist)")
        for k in spec:
            if k not in ("try", "blacklist"):
                raise LocalConfError(f"{where}.{k}", "unknown key (try, blacklist)")
        tries = tuple(
            parse_endpoint(t, f"{where}.try") for t in _str_list(spec.get("try"), f"{where}.try")
        )
        black = tuple(
            _network(t, f"{where}.blacklist")
            for t in _str_list(spec.get("blacklist"), f"{where}.blacklist")
        )
        out[address] = PeerHints(tries, black)
    return out


def read_local_conf(path: Path, overrides: Mapping[str, Any] | None = None) -> LocalConf:
    """Read and check ``path`` (no file: the defaults, with the overrides)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return LocalConf.parse({}, overrides)
    except OSError as e:
        raise LocalConfError("(file)", f"cannot read {path}: {e}") from None
    if size > MAX_FILE_BYTES:
        raise LocalConfError("(file)", f"{path} is {size} bytes; at most {MAX_FILE_BYTES}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise LocalConfError("(file)", f"cannot read {path}: {e}") from None
    if not text.strip():
        return LocalConf.parse({}, overrides)
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise LocalConfError("(file)", f"{path} is not JSON: {e}") from None
    return LocalConf.parse(obj, overrides)


class LocalConfWatcher:
    """Says when ``local.conf`` changed since it was last read (size, mtime or inode; its
    appearance or removal too). :meth:`changed` costs one ``stat``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def changed(self) -> bool:
        sig = self._signature()
        if sig == self._seen:
            return False
        self._seen = sig
        return True
