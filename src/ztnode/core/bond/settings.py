"""Bonding configuration as ZeroTierOne reads it from ``local.conf`` (``settings`` object).

The keys, defaults and checks follow ZeroTierOne 1.14.1 ``service/OneService.cpp`` and
``node/Bond.cpp`` (``shared/reference/protocol-multipath.md`` section 5):

* ``defaultBondingPolicy``: a standard policy name or the name of a custom policy;
* ``policies``: custom policies, each with a required ``basePolicy`` and optional timers,
  ``activeReselect``, ``linkQuality`` and per-interface ``links``;
* ``peerSpecificBonds``: ``{"<10-hex address>": "<policy name>"}``.

Unlike the reference, which logs and skips what it cannot use, every mistake here is a
:class:`BondConfigError` naming the key: a bond silently running another policy than the one
written is worse than a node that refuses to start. ztnode adds one key per policy,
``fastFailover`` (default true): links carrying traffic are probed faster than the reference's
heartbeat, so a dead one is noticed within about half a second (see :mod:`.link`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ztnode.errors import ZtError

FAILOVER_DEFAULT_INTERVAL: Final = 5_000  # ZT_BOND_FAILOVER_DEFAULT_INTERVAL
FAILOVER_MIN_INTERVAL: Final = 500  # ZT_BOND_FAILOVER_MIN_INTERVAL
ECHOS_PER_FAILOVER_INTERVAL: Final = 3
PACKETS_PER_LINK_DEFAULT: Final = 64


class BondConfigError(ZtError, ValueError):
    """A bonding setting that cannot be used as written."""


class BondPolicy(enum.IntEnum):
    """The reference's policy codes (ZT_BOND_POLICY_*), as shown by ``bond show``."""

    NONE = 0
    ACTIVE_BACKUP = 1
    BROADCAST = 2
    BALANCE_RR = 3
    BALANCE_XOR = 4
    BALANCE_AWARE = 5

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> BondPolicy:
        for p in cls:
            if p.label == label:
                return p
        raise BondConfigError(f"unknown bonding policy {label!r}")


#: The policies that place flows (balance-rr learns them too, for its counters).
BALANCING: Final = frozenset(
    (BondPolicy.BALANCE_RR, BondPolicy.BALANCE_XOR, BondPolicy.BALANCE_AWARE)
)


class Reselect(enum.IntEnum):
    """``activeReselect``: when active-backup goes back to a better (primary) link."""

    ALWAYS = 0
    BETTER = 1
    FAILURE = 2
    OPTIMIZE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class LinkMode(enum.IntEnum):
    PRIMARY = 0
    SPARE = 1


IPV_PREFS: Final = (0, 4, 6, 46, 64)


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """Limits past which a path is avoided, and the weights of the four metrics."""

    lat_max: float = 500.0
    pdv_max: float = 100.0
    plr_max: float = 0.001
    per_max: float = 0.0001
    lat_weight: float = 0.25
    pdv_weight: float = 0.25
    plr_weight: float = 0.25
    per_weight: float = 0.25


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """What the user said about one local interface (``links.<ifname>``)."""

    name: str
    mode: LinkMode = LinkMode.SPARE
    failover_to: str = ""
    ipv_pref: int = 0
    capacity: int = 0
    mtu: int = 0
    enabled: bool = True
    user_specified: bool = True


@dataclass(frozen=True, slots=True)
class PolicyTemplate:
    """One policy as bonds are made from it (a standard one or a custom one)."""

    name: str
    base: BondPolicy
    failover_interval: int = FAILOVER_DEFAULT_INTERVAL
    up_delay: int = 0
    down_delay: int = 0
    packets_per_link: int = PACKETS_PER_LINK_DEFAULT
    reselect: Reselect = Reselect.ALWAYS
    quality: LinkQuality = LinkQuality()
    links: Mapping[str, LinkSpec] = field(default_factory=dict)
    fast_failover: bool = True

    @property
    def monitor_interval(self) -> int:
        return self.failover_interval // ECHOS_PER_FAILOVER_INTERVAL

    @property
    def qos_interval(self) -> int:
        """QoS send, quality estimation and ACK intervals are all twice the failover."""
        return self.failover_interval * 2

    def link(self, ifname: str) -> LinkSpec | None:
        return self.links.get(ifname)

    @property
    def user_links(self) -> bool:
        return bool(self.links)

    @property
    def user_primary(self) -> bool:
        return any(s.mode == LinkMode.PRIMARY for s in self.links.values())

    @property
    def user_failover(self) -> bool:
        return any(s.failover_to for s in self.links.values())


@dataclass(frozen=True, slots=True)
class BondingSettings:
    """The whole bonding layer's configuration; ``in_use`` when any policy is configured."""

    default_policy: str = ""
    policies: Mapping[str, PolicyTemplate] = field(default_factory=dict)
    peer_specific: Mapping[int, str] = field(default_factory=dict)

    @property
    def in_use(self) -> bool:
        return bool(self.default_policy) or bool(self.policies)

    def template_for(self, address: int) -> PolicyTemplate | None:
        """The policy a bond with ``address`` runs (peer-specific, else the default), or None
        for no bond. A peer-specific name that no policy has falls back to the default, as
        the reference does."""
        name = self.peer_specific.get(address)
        if name is not None and name in self.policies:
            return self.policies[name]
        return self._template(self.default_policy)

    def _template(self, name: str) -> PolicyTemplate | None:
        if not name:
            return None
        if name in self.policies:
            return self.policies[name]
        policy = BondPolicy.from_label(name)
        if policy == BondPolicy.NONE:
            return None
        return PolicyTemplate(name, policy)

    @classmethod
    def from_local_conf(cls, settings: Mapping[str, Any] | None) -> BondingSettings:
        """Read the bonding keys of a ``local.conf`` ``settings`` object (others ignored)."""
        if not settings:
            return cls()
        policies: dict[str, PolicyTemplate] = {}
        raw_policies = settings.get("policies", {})
        if not isinstance(raw_policies, Mapping):
            raise BondConfigError("settings.policies must be an object")
        standard = {p.label for p in BondPolicy}
        for name, spec in raw_policies.items():
            if name in standard:
                raise BondConfigError(f"custom policy {name!r} may not reuse a standard name")
            policies[name] = _parse_policy(str(name), spec)
        default = settings.get("defaultBondingPolicy", "")
        if not isinstance(default, str):
            raise BondConfigError("settings.defaultBondingPolicy must be a string")
        if default and default not in policies:
            BondPolicy.from_label(default)  # raises for an unknown name
        peers: dict[int, str] = {}
        raw_peers = settings.get("peerSpecificBonds", {})
        if not isinstance(raw_peers, Mapping):
            raise BondConfigError("settings.peerSpecificBonds must be an object")
        for addr, name in raw_peers.items():
            try:
                address = int(str(addr), 16)
            except ValueError:
                raise BondConfigError(f"peerSpecificBonds: {addr!r} is not an address") from None
            if not 0 < address < 1 << 40 or not isinstance(name, str):
                raise BondConfigError(f"peerSpecificBonds: bad entry {addr!r}: {name!r}")
            peers[address] = name
        return cls(default, policies, peers)


def _int(spec: Mapping[str, Any], key: str, default: int, where: str, lo: int = 0) -> int:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise BondConfigError(f"{where}.{key} must be an integer >= {lo}, not {v!r}")
    return v


def _parse_policy(name: str, spec: object) -> PolicyTemplate:
    where = f"policies.{name}"
    if not isinstance(spec, Mapping):
        raise BondConfigError(f"{where} must be an object")
    base_label = spec.get("basePolicy")
    if not isinstance(base_label, str):
        raise BondConfigError(f"{where}.basePolicy is required")
    base = BondPolicy.from_label(base_label)
    failover = max(
        FAILOVER_MIN_INTERVAL,
        _int(spec, "failoverInterval", FAILOVER_DEFAULT_INTERVAL, where),
    )
    reselect_label = spec.get("activeReselect", "always")
    try:
        reselect = Reselect[str(reselect_label).upper()]
    except KeyError:
        raise BondConfigError(f"{where}.activeReselect: {reselect_label!r}") from None
    fast = spec.get("fastFailover", True)
    if not isinstance(fast, bool):
        raise BondConfigError(f"{where}.fastFailover must be true or false")
    links_raw = spec.get("links", {})
    if not isinstance(links_raw, Mapping):
        raise BondConfigError(f"{where}.links must be an object")
    links = {str(k): _parse_link(str(k), v, f"{where}.links") for k, v in links_raw.items()}
    for link in links.values():
        if link.failover_to and link.failover_to not in links:
            raise BondConfigError(
                f"{where}.links.{link.name}.failoverTo names no link ({link.failover_to!r})"
            )
    return PolicyTemplate(
        name,
        base,
        failover_interval=failover,
        up_delay=_int(spec, "upDelay", 0, where),
        down_delay=_int(spec, "downDelay", 0, where),
        packets_per_link=_int(spec, "packetsPerLink", PACKETS_PER_LINK_DEFAULT, where),
        reselect=reselect,
        quality=_parse_quality(spec.get("linkQuality"), where),
        links=links,
        fast_failover=fast,
    )


_QUALITY_KEYS: Final = (
    "lat_max",
    "pdv_max",
    "plr_max",
    "per_max",
    "lat_weight",
    "pdv_weight",
    "plr_weight",
    "per_weight",
)


def _parse_quality(spec: object, where: str) -> LinkQuality:
    """All eight keys with weights summing to 1 (within 0.01), or the defaults."""
    if spec is None:
        return LinkQuality()
    if not isinstance(spec, Mapping):
        raise BondConfigError(f"{where}.linkQuality must be an object")
    missing = [k for k in _QUALITY_KEYS if k not in spec]
    if missing:
        raise BondConfigError(f"{where}.linkQuality lacks {', '.join(missing)}")
    values: dict[str, float] = {}
    for k in _QUALITY_KEYS:
        v = spec[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise BondConfigError(f"{where}.linkQuality.{k} must be a number >= 0")
        values[k] = float(v)
    total = sum(values[k] for k in _QUALITY_KEYS[4:])
    if not 0.99 < total < 1.01:
        raise BondConfigError(f"{where}.linkQuality weights sum to {total:g}, not 1")
    return LinkQuality(**values)


def _parse_link(name: str, spec: object, where: str) -> LinkSpec:
    where = f"{where}.{name}"
    if not isinstance(spec, Mapping):
        raise BondConfigError(f"{where} must be an object")
    mode_label = spec.get("mode", "spare")
    if mode_label not in ("primary", "spare"):
        raise BondConfigError(f"{where}.mode must be primary or spare, not {mode_label!r}")
    mode = LinkMode.PRIMARY if mode_label == "primary" else LinkMode.SPARE
    failover_to = spec.get("failoverTo", "")
    if not isinstance(failover_to, str):
        raise BondConfigError(f"{where}.failoverTo must be an interface name")
    if failover_to and mode == LinkMode.SPARE:
        raise BondConfigError(f"{where}: a spare link may not have failoverTo")
    ipv_pref = _int(spec, "ipvPref", 0, where)
    if ipv_pref not in IPV_PREFS:
        raise BondConfigError(f"{where}.ipvPref must be one of {IPV_PREFS}")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BondConfigError(f"{where}.enabled must be true or false")
    return LinkSpec(
        name,
        mode,
        failover_to,
        ipv_pref,
        capacity=_int(spec, "capacity", 0, where),
        mtu=_int(spec, "mtu", 0, where),
        enabled=enabled,
    )
