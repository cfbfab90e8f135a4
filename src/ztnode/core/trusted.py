"""Physical-path configuration: trusted paths (cipher 2) and per-network MTUs.

An operator who controls a physical network end to end (a data-centre VLAN, a back-to-back
cable) may tell ZeroTier to skip encryption and MACs there: local.conf's
``"physical": {"10.0.0.0/24": {"trustedPathId": 12345, "mtu": 9000}}``. A packet sent to an
address in such a network carries cipher suite 2 and the 64-bit ID in its MAC field and nothing
else; a cipher-2 packet is accepted only from a source address inside a configured network whose
ID matches (protocol-core.md 5.6). The ID is no secret and no MAC: the network itself is what the
operator trusts, and both ends must be configured alike or the traffic is dropped.

What ZeroTierOne 1.14.1 does, and what this module reproduces (node/Topology.hpp,
service/OneService.cpp ``readLocalSettings``):

* At most :data:`MAX_PHYSICAL_PATHS` (``ZT_MAX_CONFIGURABLE_PATHS``) entries. The reference keeps
  the first 32 in its order and silently forgets the rest; here more is an error naming the count.
* Entries are kept in the reference's map order, InetAddress ``operator<``: IPv4 before IPv6, then
  the shorter prefix first, then the address (IPv4 compared as a little-endian word, the raw
  ``s_addr`` on x86; IPv6 byte by byte). Both lookups take the *first* entry that contains the
  address, so for nested networks the least specific one decides the outbound ID and MTU.
  Inbound, any entry that contains the source and has the packet's ID accepts it.
* Containment: IPv4 compares the top ``bits`` bits; IPv6 compares the masked address with the
  configured one as written, so an IPv6 network with host bits set contains nothing there. Here
  such a key is refused with an error; an IPv4 key with host bits behaves as its network (as in
  the reference) and is normalized, and two keys naming the same network are an error.
* ``mtu``: 0 or absent is the default physical MTU, otherwise clamped to
  :data:`~ztnode.wire.constants.MIN_PHYSMTU`..:data:`~ztnode.wire.constants.MAX_PHYSMTU`. Every
  entry with an object value takes a slot (a ``blacklist``-only entry too) and sets the MTU of its
  network, as in the reference.
* The legacy ``trustedpaths`` file in the home directory (still read by 1.14.1, with a
  deprecation warning): one ``<hex id> <network/bits>`` (or ``<hex id>=<network/bits>``) per line;
  its entries come first and a local.conf entry for the same network replaces its MTU, and its ID
  when the local.conf entry has a non-zero one.

The table itself (:class:`PhysicalPaths`) is what the node consults per packet; lookups of the
same remote host are cached (bounded caches of :data:`LOOKUP_CACHE` hosts, cleared when full:
spoofed sources can only churn them), since a parse of the address costs more than the rest of
the decision.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ztnode.errors import DecodeError
from ztnode.wire.constants import DEFAULT_PHYSMTU, MAX_PHYSMTU, MIN_PHYSMTU

__all__ = [
    "LEGACY_FILE",
    "MAX_PHYSICAL_PATHS",
    "PhysicalPath",
    "PhysicalPathConfig",
    "PhysicalPaths",
]

#: ZT_MAX_CONFIGURABLE_PATHS (include/ZeroTierOne.h): the table's bound.
MAX_PHYSICAL_PATHS: Final = 32
#: The deprecated flat file in the home directory that 1.14.1 still reads.
LEGACY_FILE: Final = "trustedpaths"
#: Remote hosts whose lookup result is cached (cleared when it would grow past this).
LOOKUP_CACHE: Final = 1024

_U64_MAX: Final = 2**64 - 1
_DECIMAL: Final = re.compile(r"[0-9]{1,20}")
_KEYS: Final = frozenset({"trustedPathId", "mtu", "blacklist"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class PhysicalPath:
    """One configured physical network."""

    network: Network
    trusted_path_id: int = 0
    """Non-zero: packets to this network use cipher 2 with this ID, and cipher-2 packets from it
    with this ID are accepted."""
    mtu: int = DEFAULT_PHYSMTU
    """The physical MTU of paths to this network (already clamped)."""

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip.version == self.network.version and ip in self.network


def _sort_key(p: PhysicalPath) -> tuple[int, int, int | bytes]:
    """InetAddress::operator< on the configured network (see the module docstring)."""
    net = p.network
    packed = net.network_address.packed
    if net.version == 4:
        return (4, net.prefixlen, int.from_bytes(packed, "little"))
    return (6, net.prefixlen, packed)


def _clamp_mtu(mtu: int) -> int:
    if mtu <= 0:
        return DEFAULT_PHYSMTU
    return max(MIN_PHYSMTU, min(MAX_PHYSMTU, mtu))


def _unsigned(value: object, where: str) -> int:
    """A JSON number or a decimal string (OSUtils::jsonInt), as an unsigned 64-bit integer."""
    if isinstance(value, bool):
        raise DecodeError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise DecodeError(f"{where}: {value!r} is not a decimal integer")
        value = int(value)
    if not isinstance(value, int):
        raise DecodeError(f"{where}: expected an integer, got {type(value).__name__}")
    if not 0 <= value <= _U64_MAX:
        raise DecodeError(f"{where}: {value} is not an unsigned 64-bit integer")
    return value


def _network(text: str, where: str, *, min_bits: int = 0) -> Network:
    if "/" not in text:
        # The reference reads a bare address as prefix length 0: every address of its family.
        raise DecodeError(f"{where}: {text!r} needs a prefix length (like 10.0.0.0/24)")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise DecodeError(f"{where}: {e}") from None
    if net.prefixlen < min_bits:
        raise DecodeError(f"{where}: a prefix length of at least {min_bits} is required")
    if net.version == 6 and net.network_address != ipaddress.ip_address(text.split("/", 1)[0]):
        raise DecodeError(
            f"{where}: host bits are set; ZeroTierOne matches no address with such an IPv6 "
            f"network (write {net})"
        )
    return net


@dataclass(frozen=True, slots=True)
class PhysicalPathConfig:
    """The parsed configuration, entries in the reference's order (see the module docstring)."""

    entries: tuple[PhysicalPath, ...] = ()

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_PHYSICAL_PATHS:
            raise DecodeError(
                f"physical: {len(self.entries)} networks configured, at most "
                f"{MAX_PHYSICAL_PATHS} are supported (ZT_MAX_CONFIGURABLE_PATHS)"
            )
        nets = [p.network for p in self.entries]
        if len(set(nets)) != len(nets):
            raise DecodeError("physical: a network is configured twice")
        ordered = tuple(sorted(self.entries, key=_sort_key))
        if ordered != self.entries:
            object.__setattr__(self, "entries", ordered)

    @property
    def trusted(self) -> tuple[PhysicalPath, ...]:
        return tuple(p for p in self.entries if p.trusted_path_id)

    @classmethod
    def from_local_conf(cls, physical: Mapping[str, Any]) -> PhysicalPathConfig:
        """local.conf's ``physical`` object: ``{"<cidr>": {"trustedPathId", "mtu",
        "blacklist"}}``; every bad key or value is a :class:`~ztnode.errors.DecodeError` naming
        it."""
        if not isinstance(physical, Mapping):
            raise DecodeError("physical: expected an object of networks")
        seen: dict[Network, str] = {}
        out: list[PhysicalPath] = []
        for cidr, spec in physical.items():
            where = f"physical[{cidr!r}]"
            net = _network(str(cidr), where)
            if net in seen:
                raise DecodeError(f"{where}: the same network as physical[{seen[net]!r}]")
            seen[net] = str(cidr)
            if not isinstance(spec, Mapping):
                raise DecodeError(f"{where}: expected an object")
            unknown = sorted(set(spec) - _KEYS)
            if unknown:
                raise DecodeError(
                    f"{where}: unknown key {unknown[0]!r} (known: blacklist, mtu, trustedPathId)"
                )
            tpid = _unsigned(spec.get("trustedPathId", 0), f"{where}.trustedPathId")
            mtu = _unsigned(spec.get("mtu", 0), f"{where}.mtu")
            black = spec.get("blacklist", False)
            if not isinstance(black, bool):
                raise DecodeError(f"{where}.blacklist: expected true or false")
            out.append(PhysicalPath(net, tpid, _clamp_mtu(mtu)))
        if len(out) > MAX_PHYSICAL_PATHS:
            raise DecodeError(
                f"physical: {len(out)} networks configured, at most {MAX_PHYSICAL_PATHS} are "
                "supported (ZT_MAX_CONFIGURABLE_PATHS)"
            )
        return cls(tuple(out))

    @classmethod
    def from_legacy_file(cls, text: str) -> PhysicalPathConfig:
        """The deprecated ``trustedpaths`` file: ``<hex id> <network/bits>`` per line; blank
        lines and ``#`` comments are skipped, anything else malformed is an error naming the
        line."""
        out: dict[Network, PhysicalPath] = {}
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.replace("=", " ").split()
            if not fields or fields[0].startswith("#"):
                continue
            where = f"{LEGACY_FILE} line {n}"
            if len(fields) < 2:
                raise DecodeError(f"{where}: expected '<hex id> <network/bits>'")
            try:
                tpid = int(fields[0], 16)
            except ValueError:
                raise DecodeError(f"{where}: {fields[0]!r} is not a hexadecimal ID") from None
            if not 0 < tpid <= _U64_MAX:
                raise DecodeError(f"{where}: the ID must be a non-zero unsigned 64-bit integer")
            net = _network(fields[1], where, min_bits=1)
            out[net] = PhysicalPath(net, tpid, DEFAULT_PHYSMTU)
        return cls(tuple(out.values()))

    def merged(self, later: PhysicalPathConfig) -> PhysicalPathConfig:
        """This configuration overlaid by ``later`` (the legacy file, then local.conf): a
        network in both takes ``later``'s MTU, and its ID when that is non-zero."""
        table = {p.network: p for p in self.entries}
        for p in later.entries:
            old = table.get(p.network)
            tpid = p.trusted_path_id or (old.trusted_path_id if old is not None else 0)
            table[p.network] = PhysicalPath(p.network, tpid, p.mtu)
        return PhysicalPathConfig(tuple(table.values()))


_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


class PhysicalPaths:
    """The node's table (Topology's ``_physicalPathConfig``): the lookups the send and receive
    paths make per packet. Empty unless the host configures it."""

    __slots__ = ("_cache", "_ids", "config", "entries", "trusted")

    def __init__(self, config: PhysicalPathConfig | None = None) -> None:
        self.config = config or PhysicalPathConfig()
        self.entries = self.config.entries
        self.trusted = self.config.trusted
        self._cache: dict[str, PhysicalPath | None] = {}
        self._ids: dict[str, frozenset[int]] = {}  # host -> IDs trusted from it

    @staticmethod
    def _ip(host: str) -> _Ip | None:
        try:
            return ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None

    def outbound(self, host: str) -> PhysicalPath | None:
        """The entry deciding packets to ``host`` (getOutboundPathInfo): the first that
        contains it, or None."""
        if not self.entries:
            return None
        cache = self._cache
        try:
            return cache[host]
        except KeyError:
            pass
        ip = self._ip(host)
        found = None
        if ip is not None:
            for p in self.entries:
                if p.contains(ip):
                    found = p
                    break
        if len(cache) >= LOOKUP_CACHE:
            cache.clear()
        cache[host] = found
        return found

    def outbound_trust(self, host: str) -> int:
        """getOutboundPathTrust: the trusted-path ID for packets to ``host``, 0 for none."""
        p = self.outbound(host)
        return p.trusted_path_id if p is not None else 0

    def inbound_trusted(self, host: str, trusted_path_id: int) -> bool:
        """shouldInboundPathBeTrusted: a cipher-2 packet from ``host`` carrying this ID is
        authentic (some entry contains the host and has the ID). ID 0 is never trusted: the
        reference would accept it from any network configured only for its MTU or blacklist,
        which would let anyone there skip authentication."""
        if not self.trusted or trusted_path_id == 0:
            return False
        ids = self._ids.get(host)
        if ids is None:
            ip = self._ip(host)
            ids = frozenset(
                p.trusted_path_id for p in self.trusted if ip is not None and p.contains(ip)
            )
            if len(self._ids) >= LOOKUP_CACHE:
                self._ids.clear()
            self._ids[host] = ids
        return trusted_path_id in ids
