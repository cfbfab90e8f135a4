"""Network configurations as controllers send them, and the metadata nodes send when asking.

A network config travels as a :class:`~ztnode.wire.dictionary.Dictionary`; this module maps it to
and from :class:`NetworkConfig` exactly as ``NetworkConfig::toDictionary`` / ``fromDictionary``
do in ZeroTierOne 1.14.1 (``node/NetworkConfig.cpp``; fact sheet ``protocol-network.md`` §3.2):

* written keys, in order: ``v nwid ts ctmd r id tt tl f ml t n mtu`` then the binary blobs
  ``C CAP TAG COO S RT I R DNS`` (``C`` only with a COM, ``CAP``/``TAG``/``COO``/``S``/``RT``/
  ``I``/``R`` only when non-empty, ``DNS`` always) then the SSO keys;
* integers are 16 hex digits, ``id`` and ``tt`` are 10-digit addresses, negative timestamps lose
  their sign (a 1.14.1 quirk, see :mod:`ztnode.wire.dictionary`);
* a dictionary without ``nwid``, without ``id`` or with ``v`` < 6 is refused (the legacy format
  is compiled out of 1.14.1), as is any malformed COM, COO, route, static IP, rule or DNS blob.
  Capabilities and tags are forgiving: the ones before a malformed one are kept. Both lists are
  sorted by id after reading, as the reference does.

Lists are capped on read where the reference's fixed arrays end: 128 routes, 32 static IPs,
256 specialists, 1024 rules, 128 capabilities and tags (the reference has no check there and
would overflow), 4 COOs (later ones parsed and dropped).

Chunk splitting for the controller side is :func:`split_config_chunks`; the chunk payload layout
and its signature belong to the verb codecs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final, Self, TypeVar

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf, Reader, Writer
from ztnode.wire.constants import (
    DEFAULT_MTU,
    IDX_PAYLOAD,
    MAX_MTU,
    MAX_PACKET_LENGTH,
    MIN_MTU,
    PROTO_VERSION,
    SOFTWARE_MAJOR,
    SOFTWARE_MINOR,
    SOFTWARE_REVISION,
)
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    Tag,
)
from ztnode.wire.dictionary import METADATA_DICT_CAPACITY, NETCONF_DICT_CAPACITY, Dictionary
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.rules import (
    MAX_CAPABILITY_RULES,
    MAX_NETWORK_RULES,
    RULES_ENGINE_REVISION,
    Rule,
    decode_rules,
    encode_rules,
)

NETCONF_VERSION: Final = 7  # ZT_NETWORKCONFIG_VERSION
NETCONF_MIN_VERSION: Final = 6  # older dictionaries are refused by 1.14.1

CREDENTIAL_TIME_MAX_DELTA_DEFAULT: Final = 30 * 60 * 1000
CREDENTIAL_TIME_MAX_DELTA_MAX: Final = 2 * 60 * 60 * 1000
CREDENTIAL_TIME_MAX_DELTA_MIN: Final = 5 * 60 * 1000

MAX_NETWORK_ROUTES: Final = 128
MAX_STATIC_IPS: Final = 32  # ZT_MAX_ZT_ASSIGNED_ADDRESSES
MAX_NETWORK_SPECIALISTS: Final = 256
MAX_NETWORK_CAPABILITIES: Final = 128
MAX_NETWORK_TAGS: Final = 128
MAX_CERTIFICATES_OF_OWNERSHIP: Final = 4
MAX_NETWORK_NAME: Final = 127  # ZT_MAX_NETWORK_SHORT_NAME_LENGTH
MAX_DNS_SERVERS: Final = 4
DNS_DOMAIN_FIELD: Final = 128  # bytes of the NUL-padded domain field; 127 usable

# Largest chunk of a serialised config per NETWORK_CONFIG / OK packet (node/Node.cpp:797).
CONFIG_CHUNK_MAX: Final = MAX_PACKET_LENGTH - (IDX_PAYLOAD + 256)

VENDOR_ZEROTIER: Final = 1
DEFAULT_OS_ARCH: Final = "linux/x86_64"

_ADDRESS_MASK: Final = (1 << 40) - 1
_U32: Final = 0xFFFF_FFFF
_U64: Final = (1 << 64) - 1

# SSO string fields: (key, usable bytes of the reference's char[] buffer).
_SSO_URL_MAX: Final = 2047
_SSO_NONCE_MAX: Final = 127
_SSO_STATE_MAX: Final = 255
_SSO_CLIENT_ID_MAX: Final = 255
_SSO_PROVIDER_MAX: Final = 63


class NetworkType(IntEnum):
    PRIVATE = 0
    PUBLIC = 1


class NetconfFlag(IntFlag):
    """Bits of the ``f`` key (node/NetworkConfig.hpp:58-76)."""

    ENABLE_BROADCAST = 0x02
    ENABLE_IPV6_NDP_EMULATION = 0x04
    RULES_RESULT_OF_UNSUPPORTED_MATCH = 0x08
    DISABLE_COMPRESSION = 0x10


class SpecialistType(IntFlag):
    """Role bits of a specialist entry; its low 40 bits are the address (NetworkConfig.hpp:78)."""

    ACTIVE_BRIDGE = 0x0000_0200_0000_0000
    ANCHOR = 0x0000_0400_0000_0000
    MULTICAST_REPLICATOR = 0x0000_0800_0000_0000


class Key:
    """Dictionary keys of a network config (node/NetworkConfig.hpp:138-201)."""

    VERSION: Final = "v"
    NETWORK_ID: Final = "nwid"
    TIMESTAMP: Final = "ts"
    REVISION: Final = "r"
    ISSUED_TO: Final = "id"
    REMOTE_TRACE_TARGET: Final = "tt"
    REMOTE_TRACE_LEVEL: Final = "tl"
    FLAGS: Final = "f"
    MULTICAST_LIMIT: Final = "ml"
    TYPE: Final = "t"
    NAME: Final = "n"
    MTU: Final = "mtu"
    CREDENTIAL_TIME_MAX_DELTA: Final = "ctmd"
    COM: Final = "C"
    SPECIALISTS: Final = "S"
    ROUTES: Final = "RT"
    STATIC_IPS: Final = "I"
    RULES: Final = "R"
    CAPABILITIES: Final = "CAP"
    TAGS: Final = "TAG"
    CERTIFICATES_OF_OWNERSHIP: Final = "COO"
    DNS: Final = "DNS"
    SSO_ENABLED: Final = "ssoe"
    SSO_VERSION: Final = "ssov"
    AUTHENTICATION_URL: Final = "aurl"
    AUTHENTICATION_EXPIRY_TIME: Final = "aexpt"
    ISSUER_URL: Final = "iurl"
    CENTRAL_ENDPOINT_URL: Final = "ssoce"
    NONCE: Final = "sson"
    STATE: Final = "ssos"
    CLIENT_ID: Final = "ssocid"
    SSO_PROVIDER: Final = "ssop"


class AuthInfoKey:
    """Keys of the dictionary in ERROR(NETWORK_AUTHENTICATION_REQUIRED) (NetworkConfig.hpp:205)."""

    VERSION: Final = "aV"
    AUTHENTICATION_URL: Final = "aU"
    ISSUER_URL: Final = "iU"
    CENTRAL_ENDPOINT_URL: Final = "aCU"
    NONCE: Final = "aN"
    STATE: Final = "aS"
    CLIENT_ID: Final = "aCID"
    SSO_PROVIDER: Final = "aSSOp"


class MetadataKey:
    """Keys of NETWORK_CONFIG_REQUEST metadata (node/NetworkConfig.hpp:104-134)."""

    VERSION: Final = "v"
    OS_ARCH: Final = "o"
    PROTOCOL_VERSION: Final = "pv"
    NODE_VENDOR: Final = "vend"
    NODE_MAJOR_VERSION: Final = "majv"
    NODE_MINOR_VERSION: Final = "minv"
    NODE_REVISION: Final = "revv"
    RULES_ENGINE_REV: Final = "revr"
    MAX_NETWORK_RULES: Final = "mr"
    MAX_NETWORK_CAPABILITIES: Final = "mc"
    MAX_CAPABILITY_RULES: Final = "mcr"
    MAX_NETWORK_TAGS: Final = "mt"
    AUTH: Final = "a"
    FLAGS: Final = "f"


def _text_len_check(value: str, limit: int, what: str) -> None:
    n = len(value.encode("utf-8", "surrogateescape"))
    if n > limit or "\0" in value:
        raise LocalProtocolError(f"{what} must be at most {limit} bytes with no NUL ({n} given)")


def _to_signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """A managed route: ``target`` network (prefix length in ``port``) via ``via`` (on-link when
    ``None``). The wire carries ``InetAddress target, InetAddress via, u16 flags, u16 metric``."""

    target: InetAddress | None
    via: InetAddress | None = None
    flags: int = 0
    metric: int = 0


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """Pushed DNS: a search domain (127 bytes at most) and up to four servers.

    Wire (always written): the domain NUL-padded to 128 bytes, then exactly four InetAddresses
    with unused slots as the null address. Null slots are dropped on read.
    """

    domain: str = ""
    servers: tuple[InetAddress, ...] = ()

    def write(self, writer: Writer) -> None:
        _text_len_check(self.domain, DNS_DOMAIN_FIELD - 1, "DNS domain")
        if len(self.servers) > MAX_DNS_SERVERS:
            raise LocalProtocolError(f"at most {MAX_DNS_SERVERS} DNS servers")
        writer.raw(self.domain.encode("utf-8", "surrogateescape").ljust(DNS_DOMAIN_FIELD, b"\0"))
        for i in range(MAX_DNS_SERVERS):
            InetAddress.write_optional(writer, self.servers[i] if i < len(self.servers) else None)

    @classmethod
    def read(cls, reader: Reader) -> Self:
        field = reader.raw(DNS_DOMAIN_FIELD, "DNS domain")[: DNS_DOMAIN_FIELD - 1]
        nul = field.find(b"\0")
        domain = (field if nul < 0 else field[:nul]).decode("utf-8", "surrogateescape")
        servers = [InetAddress.read(reader) for _ in range(MAX_DNS_SERVERS)]
        return cls(domain, tuple(s for s in servers if s is not None))


@dataclass(frozen=True, slots=True)
class SsoConfig:
    """Single sign-on fields. Which keys exist depends on ``version`` (0 implicit flow, 1 full
    OIDC flow); see :meth:`NetworkConfig.to_dictionary`. Keep fields the chosen version does not
    carry empty, or they will not survive a round trip."""

    version: int = 0
    enabled: bool = False
    authentication_url: str = ""
    authentication_expiry_time: int = 0
    issuer_url: str = ""
    central_auth_url: str = ""
    nonce: str = ""
    state: str = ""
    client_id: str = ""
    provider: str = ""

    @property
    def login_url(self) -> str:
        """Where a user logs in: the URL itself (version 0) or the central endpoint (1)."""
        return self.authentication_url if self.version == 0 else self.central_auth_url


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Everything a controller tells a member about a network (``NetworkConfig``).

    Fields, with their dictionary keys:

    * ``network_id`` (``nwid``), ``issued_to`` (``id``): both required; a node refuses a config
      issued to someone else.
    * ``timestamp`` (``ts``, controller clock) and ``credential_time_max_delta`` (``ctmd``):
      remote credentials are usable while their timestamps lie within ``ctmd`` of ``ts``.
    * ``revision`` (``r``): the network JSON's revision; unchanged by member-only edits.
    * ``remote_trace_target`` / ``remote_trace_level`` (``tt`` / ``tl``).
    * ``flags`` (``f``, :class:`NetconfFlag` bits, unknown bits kept), ``multicast_limit``
      (``ml``; 0 disables multicast, ARP included), ``type`` (``t``, :class:`NetworkType` or the
      raw int if unknown), ``name`` (``n``, at most 127 bytes), ``mtu`` (clamped 1280..10000 on
      read).
    * ``com`` (``C``), ``capabilities`` (``CAP``), ``tags`` (``TAG``),
      ``certificates_of_ownership`` (``COO``): this member's own credentials.
    * ``specialists`` (``S``): u64 entries, low 40 bits an address, high bits
      :class:`SpecialistType` roles.
    * ``routes`` (``RT``), ``static_ips`` (``I``, prefix length in ``port``), ``rules`` (``R``),
      ``dns`` (``DNS``), ``sso`` (``ssov``, ``ssoe``, ...).

    ``multicast_limit`` defaults to 32, the controller's default for new networks; the reader's
    default for a missing ``ml`` is 0, as in the reference.
    """

    network_id: int
    timestamp: int
    issued_to: int
    credential_time_max_delta: int = CREDENTIAL_TIME_MAX_DELTA_DEFAULT
    revision: int = 0
    remote_trace_target: int = 0
    remote_trace_level: int = 0
    flags: int = 0
    multicast_limit: int = 32
    type: int = NetworkType.PRIVATE
    name: str = ""
    mtu: int = DEFAULT_MTU
    com: CertificateOfMembership | None = None
    capabilities: tuple[Capability, ...] = ()
    tags: tuple[Tag, ...] = ()
    certificates_of_ownership: tuple[CertificateOfOwnership, ...] = ()
    specialists: tuple[int, ...] = ()
    routes: tuple[Route, ...] = ()
    static_ips: tuple[InetAddress, ...] = ()
    rules: tuple[Rule, ...] = ()
    dns: DnsConfig = DnsConfig()
    sso: SsoConfig = SsoConfig()

    # --- convenience ---------------------------------------------------------------------------

    @property
    def is_private(self) -> bool:
        return self.type == NetworkType.PRIVATE

    @property
    def is_public(self) -> bool:
        return self.type == NetworkType.PUBLIC

    @property
    def enable_broadcast(self) -> bool:
        return bool(self.flags & NetconfFlag.ENABLE_BROADCAST)

    @property
    def ndp_emulation(self) -> bool:
        return bool(self.flags & NetconfFlag.ENABLE_IPV6_NDP_EMULATION)

    @property
    def controller(self) -> int:
        return (self.network_id >> 24) & _ADDRESS_MASK

    def _specialists_with(self, bits: int) -> list[int]:
        return [s & _ADDRESS_MASK for s in self.specialists if s & bits]

    def active_bridges(self) -> list[int]:
        return self._specialists_with(SpecialistType.ACTIVE_BRIDGE)

    def anchors(self) -> list[int]:
        return self._specialists_with(SpecialistType.ANCHOR)

    def multicast_replicators(self) -> list[int]:
        return self._specialists_with(SpecialistType.MULTICAST_REPLICATOR)

    def always_contact_addresses(self) -> list[int]:
        return self._specialists_with(SpecialistType.ANCHOR | SpecialistType.MULTICAST_REPLICATOR)

    def permits_bridging(self, address: int) -> bool:
        """Whether ``address`` is an active bridge (may send frames with foreign source MACs)."""
        return any(
            s & _ADDRESS_MASK == address and s & SpecialistType.ACTIVE_BRIDGE
            for s in self.specialists
        )

    def capability(self, cap_id: int) -> Capability | None:
        return next((c for c in self.capabilities if c.id == cap_id), None)

    def tag(self, tag_id: int) -> Tag | None:
        return next((t for t in self.tags if t.id == tag_id), None)

    # --- dictionary ----------------------------------------------------------------------------

    def to_dictionary(self, capacity: int = NETCONF_DICT_CAPACITY) -> Dictionary:
        """Serialise as ``NetworkConfig::toDictionary`` (v7, no legacy keys).

        Raises :class:`~ztnode.errors.LocalProtocolError` (``DictionaryFullError``) when the
        result would not fit ``capacity``, as the reference then refuses to send anything.
        """
        _text_len_check(self.name, MAX_NETWORK_NAME, "network name")
        d = Dictionary(capacity)
        d.add_int(Key.VERSION, NETCONF_VERSION)
        d.add_int(Key.NETWORK_ID, self.network_id)
        d.add_int(Key.TIMESTAMP, self.timestamp)
        d.add_int(Key.CREDENTIAL_TIME_MAX_DELTA, self.credential_time_max_delta)
        d.add_int(Key.REVISION, self.revision)
        d.add_str(Key.ISSUED_TO, f"{self.issued_to & _ADDRESS_MASK:010x}")
        d.add_str(Key.REMOTE_TRACE_TARGET, f"{self.remote_trace_target & _ADDRESS_MASK:010x}")
        d.add_int(Key.REMOTE_TRACE_LEVEL, self.remote_trace_level)
        d.add_int(Key.FLAGS, self.flags)
        d.add_int(Key.MULTICAST_LIMIT, self.multicast_limit)
        d.add_int(Key.TYPE, self.type)
        d.add_str(Key.NAME, self.name)
        d.add_int(Key.MTU, self.mtu)

        if self.com:
            d.add_bytes(Key.COM, self.com.encode())
        if len(self.capabilities) > MAX_NETWORK_CAPABILITIES:
            raise LocalProtocolError(f"at most {MAX_NETWORK_CAPABILITIES} capabilities")
        if len(self.tags) > MAX_NETWORK_TAGS:
            raise LocalProtocolError(f"at most {MAX_NETWORK_TAGS} tags")
        if len(self.certificates_of_ownership) > MAX_CERTIFICATES_OF_OWNERSHIP:
            raise LocalProtocolError(f"at most {MAX_CERTIFICATES_OF_OWNERSHIP} COOs")
        _add_blob(d, Key.CAPABILITIES, self.capabilities)
        _add_blob(d, Key.TAGS, self.tags)
        _add_blob(d, Key.CERTIFICATES_OF_OWNERSHIP, self.certificates_of_ownership)

        if len(self.specialists) > MAX_NETWORK_SPECIALISTS:
            raise LocalProtocolError(f"at most {MAX_NETWORK_SPECIALISTS} specialists")
        if self.specialists:
            w = Writer()
            for s in self.specialists:
                w.u64(s)
            d.add_bytes(Key.SPECIALISTS, w.buf)

        if len(self.routes) > MAX_NETWORK_ROUTES:
            raise LocalProtocolError(f"at most {MAX_NETWORK_ROUTES} routes")
        if self.routes:
            w = Writer()
            for rt in self.routes:
                InetAddress.write_optional(w, rt.target)
                InetAddress.write_optional(w, rt.via)
                w.u16(rt.flags).u16(rt.metric)
            d.add_bytes(Key.ROUTES, w.buf)

        if len(self.static_ips) > MAX_STATIC_IPS:
            raise LocalProtocolError(f"at most {MAX_STATIC_IPS} static IPs")
        if self.static_ips:
            w = Writer()
            for ip in self.static_ips:
                ip.write(w)
            d.add_bytes(Key.STATIC_IPS, w.buf)

        if len(self.rules) > MAX_NETWORK_RULES:
            raise LocalProtocolError(f"at most {MAX_NETWORK_RULES} rules")
        if self.rules:
            d.add_bytes(Key.RULES, encode_rules(self.rules))

        w = Writer()
        self.dns.write(w)
        d.add_bytes(Key.DNS, w.buf)

        _write_sso(d, self.sso)
        return d

    def encode(self, capacity: int = NETCONF_DICT_CAPACITY) -> bytes:
        """The dictionary bytes a controller splits into chunks."""
        return self.to_dictionary(capacity).to_bytes()

    @classmethod
    def from_dictionary(cls, d: Dictionary) -> NetworkConfig:
        """Parse as ``NetworkConfig::fromDictionary``; :class:`DecodeError` where it fails."""
        nwid = d.get_int(Key.NETWORK_ID, 0)
        if not nwid:
            raise DecodeError("network config without a network id")
        issued_to = d.get_int(Key.ISSUED_TO, 0) & _ADDRESS_MASK
        if not issued_to:
            raise DecodeError("network config without an issued-to address")
        version = d.get_int(Key.VERSION, 0)
        if version < NETCONF_MIN_VERSION:
            raise DecodeError(f"network config version {version} is older than 6 (unsupported)")

        mtu = d.get_int(Key.MTU, DEFAULT_MTU) & _U32
        raw_type = d.get_int(Key.TYPE, NetworkType.PRIVATE)
        com: CertificateOfMembership | None = None
        blob = d.get_bytes(Key.COM)
        if blob is not None:
            com = CertificateOfMembership.read(Reader(blob)) or None

        return cls(
            network_id=nwid,
            timestamp=_to_signed64(d.get_int(Key.TIMESTAMP, 0)),
            issued_to=issued_to,
            credential_time_max_delta=_to_signed64(d.get_int(Key.CREDENTIAL_TIME_MAX_DELTA, 0)),
            revision=d.get_int(Key.REVISION, 0),
            remote_trace_target=d.get_int(Key.REMOTE_TRACE_TARGET, 0) & _ADDRESS_MASK,
            remote_trace_level=d.get_int(Key.REMOTE_TRACE_LEVEL, 0) & _U32,
            flags=d.get_int(Key.FLAGS, 0),
            multicast_limit=d.get_int(Key.MULTICAST_LIMIT, 0) & _U32,
            type=NetworkType(raw_type) if raw_type in (0, 1) else raw_type,
            name=d.get_str(Key.NAME, "", MAX_NETWORK_NAME),
            mtu=min(max(mtu, MIN_MTU), MAX_MTU),
            com=com,
            capabilities=_read_forgiving(
                d.get_bytes(Key.CAPABILITIES), Capability, MAX_NETWORK_CAPABILITIES
            ),
            tags=_read_forgiving(d.get_bytes(Key.TAGS), Tag, MAX_NETWORK_TAGS),
            certificates_of_ownership=_read_coos(d.get_bytes(Key.CERTIFICATES_OF_OWNERSHIP)),
            specialists=_read_specialists(d.get_bytes(Key.SPECIALISTS)),
            routes=_read_routes(d.get_bytes(Key.ROUTES)),
            static_ips=_read_static_ips(d.get_bytes(Key.STATIC_IPS)),
            rules=_read_network_rules(d.get_bytes(Key.RULES)),
            dns=_read_dns(d.get_bytes(Key.DNS)),
            sso=_read_sso(d),
        )

    @classmethod
    def decode(cls, data: Buf) -> NetworkConfig:
        """Parse reassembled config bytes (up to the first NUL, at most capacity - 1 bytes)."""
        return cls.from_dictionary(Dictionary.parse(data, NETCONF_DICT_CAPACITY))


def _add_blob(
    d: Dictionary,
    key: str,
    items: tuple[Capability, ...] | tuple[Tag, ...] | tuple[CertificateOfOwnership, ...],
) -> None:
    if items:
        w = Writer()
        for item in items:
            item.write(w)
        d.add_bytes(key, w.buf)


_T = TypeVar("_T", Capability, Tag)


def _read_forgiving(blob: bytes | None, cls: type[_T], limit: int) -> tuple[_T, ...]:
    """CAP and TAG: parse until the blob ends or an entry is malformed, keep what parsed, sort
    by id (stable)."""
    if blob is None:
        return ()
    reader = Reader(blob)
    out: list[_T] = []
    try:
        while not reader.at_end() and len(out) < limit:
            out.append(cls.read(reader))
    except DecodeError:
        pass
    return tuple(sorted(out, key=lambda c: c.id))


def _read_coos(blob: bytes | None) -> tuple[CertificateOfOwnership, ...]:
    if blob is None:
        return ()
    reader = Reader(blob)
    out: list[CertificateOfOwnership] = []
    while not reader.at_end():
        coo = CertificateOfOwnership.read(reader)
        if len(out) < MAX_CERTIFICATES_OF_OWNERSHIP:
            out.append(coo)
    return tuple(out)


def _read_specialists(blob: bytes | None) -> tuple[int, ...]:
    if blob is None:
        return ()
    n = min(len(blob) // 8, MAX_NETWORK_SPECIALISTS)
    return tuple(int.from_bytes(blob[8 * i : 8 * i + 8], "big") for i in range(n))


def _read_routes(blob: bytes | None) -> tuple[Route, ...]:
    if blob is None:
        return ()
    reader = Reader(blob)
    out: list[Route] = []
    while not reader.at_end() and len(out) < MAX_NETWORK_ROUTES:
        target = InetAddress.read(reader)
        via = InetAddress.read(reader)
        out.append(Route(target, via, reader.u16("route flags"), reader.u16("route metric")))
    return tuple(out)


def _read_static_ips(blob: bytes | None) -> tuple[InetAddress, ...]:
    """Null entries use up one of the 32 slots, as in the reference, but are not kept."""
    if blob is None:
        return ()
    reader = Reader(blob)
    out: list[InetAddress] = []
    slots = 0
    while not reader.at_end() and slots < MAX_STATIC_IPS:
        ip = InetAddress.read(reader)
        slots += 1
        if ip is not None:
            out.append(ip)
    return tuple(out)


def _read_network_rules(blob: bytes | None) -> tuple[Rule, ...]:
    return () if blob is None else decode_rules(blob, MAX_NETWORK_RULES)


def _read_dns(blob: bytes | None) -> DnsConfig:
    return DnsConfig() if blob is None else DnsConfig.read(Reader(blob))


def _write_sso(d: Dictionary, sso: SsoConfig) -> None:
    if sso.version == 0:
        d.add_int(Key.SSO_VERSION, 0)
        d.add_bool(Key.SSO_ENABLED, sso.enabled)
        if sso.enabled:
            if sso.authentication_url:
                _text_len_check(sso.authentication_url, _SSO_URL_MAX, "authentication URL")
                d.add_str(Key.AUTHENTICATION_URL, sso.authentication_url)
            d.add_int(Key.AUTHENTICATION_EXPIRY_TIME, sso.authentication_expiry_time)
    elif sso.version == 1:
        d.add_int(Key.SSO_VERSION, 1)
        d.add_bool(Key.SSO_ENABLED, sso.enabled)
        for key, value, limit in (
            (Key.ISSUER_URL, sso.issuer_url, _SSO_URL_MAX),
            (Key.CENTRAL_ENDPOINT_URL, sso.central_auth_url, _SSO_URL_MAX),
            (Key.NONCE, sso.nonce, _SSO_NONCE_MAX),
            (Key.STATE, sso.state, _SSO_STATE_MAX),
            (Key.CLIENT_ID, sso.client_id, _SSO_CLIENT_ID_MAX),
            (Key.SSO_PROVIDER, sso.provider, _SSO_PROVIDER_MAX),
        ):
            _text_len_check(value, limit, key)
            d.add_str(key, value)


# The reference's Dictionary<8192> for ERROR(NETWORK_AUTHENTICATION_REQUIRED)'s auth info.
AUTH_INFO_CAPACITY: Final = 8192


def decode_auth_info(blob: bytes) -> SsoConfig:
    """ERROR(NETWORK_AUTHENTICATION_REQUIRED)'s dictionary (its own keys, AuthInfoKey) as the
    SSO fields a config carries, read as the reference reads it: the blob cut to 8 KiB, each
    field cut to its buffer (so it never fails)."""
    d = Dictionary.parse(blob, AUTH_INFO_CAPACITY, truncate=True)
    return SsoConfig(
        version=d.get_int(AuthInfoKey.VERSION, 0),
        enabled=True,
        authentication_url=d.get_str(AuthInfoKey.AUTHENTICATION_URL, "", _SSO_URL_MAX),
        issuer_url=d.get_str(AuthInfoKey.ISSUER_URL, "", _SSO_URL_MAX),
        central_auth_url=d.get_str(AuthInfoKey.CENTRAL_ENDPOINT_URL, "", _SSO_URL_MAX),
        nonce=d.get_str(AuthInfoKey.NONCE, "", _SSO_NONCE_MAX),
        state=d.get_str(AuthInfoKey.STATE, "", _SSO_STATE_MAX),
        client_id=d.get_str(AuthInfoKey.CLIENT_ID, "", _SSO_CLIENT_ID_MAX),
        provider=d.get_str(AuthInfoKey.SSO_PROVIDER, "", _SSO_PROVIDER_MAX),
    )


def _read_sso(d: Dictionary) -> SsoConfig:
    version = d.get_int(Key.SSO_VERSION, 0)
    enabled = d.get_bool(Key.SSO_ENABLED, False)
    if not enabled or version not in (0, 1):
        return SsoConfig(version=version, enabled=enabled)
    url = d.get_str(Key.AUTHENTICATION_URL, "", _SSO_URL_MAX)
    if version == 0:
        expiry = d.get_signed_int(Key.AUTHENTICATION_EXPIRY_TIME, 0) & _U64
        return SsoConfig(0, True, url, expiry)
    return SsoConfig(
        version=1,
        enabled=True,
        authentication_url=url,
        issuer_url=d.get_str(Key.ISSUER_URL, "", _SSO_URL_MAX),
        central_auth_url=d.get_str(Key.CENTRAL_ENDPOINT_URL, "", _SSO_URL_MAX),
        nonce=d.get_str(Key.NONCE, "", _SSO_NONCE_MAX),
        state=d.get_str(Key.STATE, "", _SSO_STATE_MAX),
        client_id=d.get_str(Key.CLIENT_ID, "", _SSO_CLIENT_ID_MAX),
        provider=d.get_str(Key.SSO_PROVIDER, "", _SSO_PROVIDER_MAX) or "default",
    )


# --- controller-side chunking ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigChunk:
    """One slice of a serialised config: ``offset`` is the byte index the reference sends as
    ``chunkIndex``."""

    offset: int
    data: bytes


def split_config_chunks(dict_bytes: Buf, chunk_size: int = CONFIG_CHUNK_MAX) -> list[ConfigChunk]:
    """Cut a serialised config into consecutive chunks of at most ``chunk_size`` bytes, as
    ``Node::ncSendConfig`` does (9740 bytes by default so each fits one packet). Empty input
    gives no chunks."""
    if chunk_size < 1:
        raise LocalProtocolError("chunk size must be positive")
    data = bytes(dict_bytes)
    if len(data) >= NETCONF_DICT_CAPACITY:
        raise LocalProtocolError(
            f"a config of {len(data)} bytes is not below the receivers' limit of "
            f"{NETCONF_DICT_CAPACITY}"
        )
    return [
        ConfigChunk(off, data[off : off + chunk_size]) for off in range(0, len(data), chunk_size)
    ]


# --- request metadata ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkConfigRequestMetadata:
    """The dictionary a node sends in NETWORK_CONFIG_REQUEST (``Network::requestConfiguration``).

    Defaults are what a 1.14.1 node sends. ``auth`` (key ``a``, e.g. ``token:<t>``) is not sent
    by the stock node; a controller checks it against the network's ``authTokens``. Written in the
    reference order ``v vend pv majv minv revv mr mc mcr mt f revr o`` (then ``a``).
    """

    version: int = NETCONF_VERSION
    vendor: int = VENDOR_ZEROTIER
    protocol_version: int = PROTO_VERSION
    major_version: int = SOFTWARE_MAJOR
    minor_version: int = SOFTWARE_MINOR
    revision: int = SOFTWARE_REVISION
    max_network_rules: int = MAX_NETWORK_RULES
    max_capabilities: int = MAX_NETWORK_CAPABILITIES
    max_capability_rules: int = MAX_CAPABILITY_RULES
    max_tags: int = MAX_NETWORK_TAGS
    flags: int = 0
    rules_engine_revision: int = RULES_ENGINE_REVISION
    os_arch: str = DEFAULT_OS_ARCH
    auth: str | None = None

    @property
    def auth_token(self) -> str | None:
        """The token of an ``a`` value of the form ``token:<t>`` (t non-empty), as the
        controller extracts it."""
        if self.auth is not None and len(self.auth) > 6 and self.auth.startswith("token:"):
            return self.auth[6:]
        return None

    def to_dictionary(self) -> Dictionary:
        d = Dictionary(METADATA_DICT_CAPACITY)
        d.add_int(MetadataKey.VERSION, self.version)
        d.add_int(MetadataKey.NODE_VENDOR, self.vendor)
        d.add_int(MetadataKey.PROTOCOL_VERSION, self.protocol_version)
        d.add_int(MetadataKey.NODE_MAJOR_VERSION, self.major_version)
        d.add_int(MetadataKey.NODE_MINOR_VERSION, self.minor_version)
        d.add_int(MetadataKey.NODE_REVISION, self.revision)
        d.add_int(MetadataKey.MAX_NETWORK_RULES, self.max_network_rules)
        d.add_int(MetadataKey.MAX_NETWORK_CAPABILITIES, self.max_capabilities)
        d.add_int(MetadataKey.MAX_CAPABILITY_RULES, self.max_capability_rules)
        d.add_int(MetadataKey.MAX_NETWORK_TAGS, self.max_tags)
        d.add_int(MetadataKey.FLAGS, self.flags)
        d.add_int(MetadataKey.RULES_ENGINE_REV, self.rules_engine_revision)
        d.add_str(MetadataKey.OS_ARCH, self.os_arch)
        if self.auth is not None:
            d.add_str(MetadataKey.AUTH, self.auth)
        return d

    def encode(self) -> bytes:
        return self.to_dictionary().to_bytes()

    @classmethod
    def from_dictionary(cls, d: Dictionary) -> NetworkConfigRequestMetadata:
        """Read as the controller does: missing integers are 0 (so an old node's missing
        ``revr`` reads as 0 and gets a single ACCEPT rule), ``a`` up to 511 bytes."""
        auth = d.get_str(MetadataKey.AUTH, None, 511)
        return cls(
            version=d.get_int(MetadataKey.VERSION, 0),
            vendor=d.get_int(MetadataKey.NODE_VENDOR, 0),
            protocol_version=d.get_int(MetadataKey.PROTOCOL_VERSION, 0),
            major_version=d.get_int(MetadataKey.NODE_MAJOR_VERSION, 0),
            minor_version=d.get_int(MetadataKey.NODE_MINOR_VERSION, 0),
            revision=d.get_int(MetadataKey.NODE_REVISION, 0),
            max_network_rules=d.get_int(MetadataKey.MAX_NETWORK_RULES, 0),
            max_capabilities=d.get_int(MetadataKey.MAX_NETWORK_CAPABILITIES, 0),
            max_capability_rules=d.get_int(MetadataKey.MAX_CAPABILITY_RULES, 0),
            max_tags=d.get_int(MetadataKey.MAX_NETWORK_TAGS, 0),
            flags=d.get_int(MetadataKey.FLAGS, 0),
            rules_engine_revision=d.get_int(MetadataKey.RULES_ENGINE_REV, 0),
            os_arch=d.get_str(MetadataKey.OS_ARCH, ""),
            auth=auth or None,
        )

    @classmethod
    def decode(cls, data: Buf) -> NetworkConfigRequestMetadata:
        """Parse received metadata, truncated to 1023 bytes as the controller's fixed buffer
        does (never an error for length)."""
        return cls.from_dictionary(Dictionary.parse(data, METADATA_DICT_CAPACITY, truncate=True))


__all__ = [
    "CONFIG_CHUNK_MAX",
    "CREDENTIAL_TIME_MAX_DELTA_DEFAULT",
    "CREDENTIAL_TIME_MAX_DELTA_MAX",
    "CREDENTIAL_TIME_MAX_DELTA_MIN",
    "DEFAULT_OS_ARCH",
    "DNS_DOMAIN_FIELD",
    "MAX_CERTIFICATES_OF_OWNERSHIP",
    "MAX_DNS_SERVERS",
    "MAX_NETWORK_CAPABILITIES",
    "MAX_NETWORK_NAME",
    "MAX_NETWORK_ROUTES",
    "MAX_NETWORK_SPECIALISTS",
    "MAX_NETWORK_TAGS",
    "MAX_STATIC_IPS",
    "NETCONF_MIN_VERSION",
    "NETCONF_VERSION",
    "VENDOR_ZEROTIER",
    "AuthInfoKey",
    "ConfigChunk",
    "DnsConfig",
    "Key",
    "MetadataKey",
    "NetconfFlag",
    "NetworkConfig",
    "NetworkConfigRequestMetadata",
    "NetworkType",
    "Route",
    "SpecialistType",
    "SsoConfig",
    "decode_auth_info",
    "split_config_chunks",
]
