"""A joined virtual network: its config, our standing in it, and what we know of its members.

Follows ZeroTierOne 1.14.1 ``node/Network.cpp`` and ``node/Membership.cpp`` as described in
``shared/reference/protocol-network.md`` (section numbers below refer to it). The node owns the
wire; this module owns the per-network state machines: config chunk assembly and acceptance
(§2.3), status (§2.4), the membership gate (§4.3) and credential bookkeeping (§4.4, §5.5).
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

from ztnode.core.bridges import BridgeRoutes
from ztnode.core.enforcer import Enforcer
from ztnode.core.filter import Party
from ztnode.core.likes import LikeTable
from ztnode.identity import Identity
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    Revocation,
    Tag,
)
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.mac import mac_from_address
from ztnode.wire.netconf import NetconfFlag, NetworkConfig, NetworkType, SsoConfig
from ztnode.wire.rules import (
    ActionAccept,
    ActionDrop,
    Characteristic,
    MatchCharacteristics,
    MatchEthertype,
    MatchIpDestPortRange,
    MatchIpProtocol,
    Rule,
)

_C = TypeVar("_C", Tag, Capability, CertificateOfOwnership)

NETWORK_AUTOCONF_DELAY: Final = 60_000
CONFIG_REQUEST_INTERVAL: Final = 5_000  # at most one request per ping tick
#: While a network has no config its request is retried sooner: 1 s, 2 s, 4 s, then every
#: CONFIG_REQUEST_INTERVAL. A controller ignores a request that follows another within a second
#: (a leave and rejoin does that), and waiting a whole ping tick for the next try is slow.
CONFIG_RETRY_FIRST: Final = 1_000
MAX_UPDATES_IN_FLIGHT: Final = 3
NETCONF_DICT_CAPACITY: Final = 484_520
CREDENTIAL_PUSH_MAX_AGE: Final = 500_000
NEED_CREDENTIALS_PUSH_INTERVAL: Final = 1_000
ADHOC_CTMD: Final = 2 * 60 * 60 * 1000
MULTICAST_ANNOUNCE_PERIOD: Final = 60_000
MULTICAST_LIKE_EXPIRE: Final = 600_000
MULTICAST_GATHER_INTERVAL: Final = 60_000
MULTICAST_PENDING_TIMEOUT: Final = 5_000
MULTICAST_PENDING_MAX: Final = 32  # per group, as the reference's outbound queue
#: (group, member) LIKE entries a network keeps (ten minutes each); new ones past it are refused.
MAX_NETWORK_LIKES: Final = 65_536
BROADCAST_MAC: Final = 0xFFFFFFFFFFFF

Group = tuple[int, int]  # (MAC, ADI)


@dataclass
class PendingMulticast:
    """A multicast we sent before knowing every recipient: new members learned within a few
    seconds (from gathers or LIKEs) still get it, as the reference's outbound queue does."""

    group: Group
    ethertype: int
    payload: bytes
    source_mac: int
    created: int
    sent_to: set[int]


class NetworkStatus(StrEnum):
    """As ZeroTierOne reports it (``/network`` ``status``).

    CLIENT_TOO_OLD is here for the API's sake only: ZeroTierOne 1.14.1 defines it
    (include/ZeroTierOne.h:677) but never reports it (node/Network.cpp:1510-1527); an
    UNSUPPORTED_OPERATION answer to a config request means NOT_FOUND.
    """

    REQUESTING_CONFIGURATION = "REQUESTING_CONFIGURATION"
    OK = "OK"
    ACCESS_DENIED = "ACCESS_DENIED"
    NOT_FOUND = "NOT_FOUND"
    PORT_ERROR = "PORT_ERROR"
    CLIENT_TOO_OLD = "CLIENT_TOO_OLD"
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"


@dataclass
class Membership:
    """What we hold for one other member: its credentials and the revocation thresholds."""

    com: CertificateOfMembership | None = None
    com_revocation_threshold: int = 0
    tags: dict[int, Tag] = field(default_factory=dict)
    capabilities: dict[int, Capability] = field(default_factory=dict)
    coos: dict[int, CertificateOfOwnership] = field(default_factory=dict)
    thresholds: dict[tuple[int, int], int] = field(default_factory=dict)
    last_pushed_credentials: int = -(10**12)
    #: When we last told this member our multicast groups (Network::gate's multicastLikeGate).
    last_like_sent: int = -(10**12)
    #: The last gate verdict, the two certificates it was reached with and their timestamp:
    #: every frame asks, and the answer only changes when either certificate is replaced (or
    #: a revocation raises the threshold, checked against the kept timestamp).
    agreement: tuple[CertificateOfMembership, CertificateOfMembership, bool, int] | None = None
    #: Bumped whenever a tag, capability, ownership certificate or revocation is filed, so the
    #: rules' view of this member (``party``, keyed by config generation and this) is rebuilt.
    credentials_version: int = 0
    party: tuple[tuple[int, int], Party] | None = None
    #: The member's MAC on this network (0: not derived yet), asked by every FRAME it sends.
    mac: int = 0


@dataclass
class _Assembly:
    total: int
    data: bytearray
    have: set[int]
    received: int
    counter: int


class Network:
    """One network we have joined."""

    def __init__(self, network_id: int, me: int, random32: Callable[[], int] | None = None) -> None:
        self.id = network_id
        self.me = me
        if random32 is None:  # tests: a fixed stream per network (the node injects its own)
            random32 = functools.partial(random.Random(network_id ^ me).getrandbits, 32)
        #: The rules in force (see :mod:`ztnode.core.enforcer`), configured with each config.
        self.enforcer = Enforcer(me, network_id, random32, self.ndp_prefixes)
        self.mac = mac_from_address(me, network_id)
        self.status = NetworkStatus.REQUESTING_CONFIGURATION
        self.config: NetworkConfig | None = None
        #: The config the gate last read, whether it is public and its COM (configs are
        #: immutable: a new one is a new object).
        self._gate_config: NetworkConfig | None = None
        self._gate_public = False
        self._gate_com: CertificateOfMembership | None = None
        #: Where to log in, from the controller's last AUTHENTICATION_REQUIRED (None: none).
        self.auth_info: SsoConfig | None = None
        self.config_bytes: bytes | None = None
        self.last_config_update = 0
        self.last_request_sent = -(10**12)
        self.unanswered_requests = 0
        #: Answers from the controller so far (configs and refusals): a caller that saw n of
        #: them can tell a fresh answer from a stale one (a refusal from before it was
        #: authorized, say).
        self.answers = 0
        self.memberships: dict[int, Membership] = {}
        self._assemblies: dict[int, _Assembly] = {}
        self._assembly_counter = 0
        self.subscriptions: set[Group] = set()
        #: Members' LIKEs of this network's groups (bounded, see MAX_NETWORK_LIKES).
        self.multicast_members: LikeTable[Group] = LikeTable(MAX_NETWORK_LIKES)
        self.last_gather: dict[Group, int] = {}
        #: Foreign MACs learned behind the network's active bridges (bounded, aged).
        self.bridge_routes = BridgeRoutes()
        self.pending_multicasts: list[PendingMulticast] = []
        self.last_announce = -(10**12)

    @property
    def controller(self) -> int:
        return self.id >> 24

    @property
    def is_adhoc(self) -> bool:
        return self.id >> 56 == 0xFF

    def membership(self, address: int) -> Membership:
        m = self.memberships.get(address)
        if m is None:
            m = self.memberships[address] = Membership()
        return m

    def member_mac(self, address: int) -> int:
        """``address``'s MAC on this network (MAC::fromAddress), kept with its membership."""
        m = self.memberships.get(address)
        if m is None:
            return mac_from_address(address, self.id)
        if not m.mac:
            m.mac = mac_from_address(address, self.id)
        return m.mac

    def next_config_retry(self) -> int | None:
        """When to ask again while we have no config (see CONFIG_RETRY_FIRST), else None."""
        if self.config is not None or self.is_adhoc or not self.unanswered_requests:
            return None
        delay = CONFIG_RETRY_FIRST << min(self.unanswered_requests - 1, 8)
        return self.last_request_sent + min(delay, CONFIG_REQUEST_INTERVAL)

    def needs_config_request(self, now: int) -> bool:
        if self.is_adhoc:
            return False
        stale = self.config is None or now - self.last_config_update >= NETWORK_AUTOCONF_DELAY
        return stale and now - self.last_request_sent >= CONFIG_REQUEST_INTERVAL

    # -- config chunks (§2.3) -------------------------------------------------------------

    def add_chunk(self, update_id: int, total: int, index: int, data: bytes) -> bytes | None:
        """Store a verified chunk; returns the whole dictionary once every byte is in.

        At most three updates are assembled at once; a fourth evicts the stalest. Overlapping
        or duplicate chunks are harmless (the same bytes land in the same place).
        """
        if total <= 0 or total >= NETCONF_DICT_CAPACITY or index + len(data) > total:
            return None
        a = self._assemblies.get(update_id)
        if a is None or a.total != total:
            # A changed total restarts this update in its own slot; only a new one evicts.
            if a is None and len(self._assemblies) >= MAX_UPDATES_IN_FLIGHT:
                stalest = min(self._assemblies, key=lambda k: self._assemblies[k].counter)
                del self._assemblies[stalest]
            a = self._assemblies[update_id] = _Assembly(total, bytearray(total), set(), 0, 0)
        self._assembly_counter += 1
        a.counter = self._assembly_counter
        if index in a.have:
            return None
        a.have.add(index)
        a.data[index : index + len(data)] = data
        a.received += len(data)
        if a.received < total:
            return None
        del self._assemblies[update_id]
        return bytes(a.data)

    def set_config(self, config: NetworkConfig, raw: bytes, now: int) -> bool:
        """Apply a complete config; False if it is not for us or identical to the current one."""
        if config.issued_to != self.me or config.network_id != self.id:
            return False
        self.last_config_update = now
        self.status = NetworkStatus.OK
        self.unanswered_requests = 0
        # A config means the controller let us in: authentication, if it was required, is
        # done, and where to log in is the config's again (Network::setConfiguration).
        self.auth_info = None
        if raw == self.config_bytes:
            return False
        old = self.config
        self.config = config
        self.config_bytes = raw
        self.enforcer.configure(config)
        if old is not None:  # a member no longer a bridge carries nothing any more
            for bridge in set(old.active_bridges()) - set(config.active_bridges()):
                self.bridge_routes.forget_bridge(bridge)
        return True

    def bridges(self) -> list[int]:
        """The network's active bridges other than ourselves."""
        cfg = self.config
        return [b for b in cfg.active_bridges() if b != self.me] if cfg is not None else []

    def ndp_prefixes(self, cfg: NetworkConfig) -> tuple[bytes, ...]:
        """With NDP emulation on, the IPv6 prefixes whose addresses count as owned by whoever
        sends from them: the 6plane /40 and rfc4193 /88 of this network, each only when our
        own config carries our address in it (node/Membership.hpp:110-160)."""
        if not cfg.flags & NetconfFlag.ENABLE_IPV6_NDP_EMULATION:
            return ()
        ours = {a.ip for a in cfg.static_ips}
        out: list[bytes] = []
        for mine, keep in (
            (sixplane_address(self.id, self.me), 5),
            (rfc4193_address(self.id, self.me), 11),
        ):
            if mine.ip in ours:
                out.append(mine.ip.packed[:keep])
        return tuple(out)

    def assigned_addresses(self) -> list[InetAddress]:
        return list(self.config.static_ips) if self.config is not None else []

    # -- credentials and the gate (§4, §5.5) ----------------------------------------------

    def gate(self, peer: int, identity: Identity) -> bool:
        """May this member send us frames? Needs our config, and for private networks a COM of
        theirs that is newer than any revocation and agrees with ours."""
        cfg = self.config
        if cfg is None:
            return False
        if cfg is not self._gate_config:  # what the gate reads of a config, once per config
            self._gate_config = cfg
            self._gate_public = cfg.type == NetworkType.PUBLIC
            self._gate_com = cfg.com
        if self._gate_public:
            return True
        m = self.memberships.get(peer)
        mine = self._gate_com
        if m is None or m.com is None or mine is None:
            return False
        com = m.com
        cached = m.agreement
        if cached is not None and cached[0] is mine and cached[1] is com:
            return cached[2] and cached[3] > m.com_revocation_threshold
        stamp = com.timestamp  # read from the qualifiers: kept with the verdict, not per frame
        ok = mine.agrees_with(com, identity)
        m.agreement = (mine, com, ok, stamp)
        return ok and stamp > m.com_revocation_threshold

    def add_com(self, com: CertificateOfMembership) -> bool:
        """File a verified COM under its issued-to member; False if stale or revoked."""
        m = self.membership(com.issued_to)
        if com.timestamp <= m.com_revocation_threshold:
            return False
        if m.com is not None and com.timestamp < m.com.timestamp:
            return False
        m.com = com
        return True

    def add_revocation(self, rev: Revocation) -> bool:
        """Apply a verified revocation to its target; True if it changed anything."""
        m = self.membership(rev.target)
        changed = False
        if rev.credential_type != CredentialType.COM:
            key = (int(rev.credential_type), rev.credential_id)
            if m.thresholds.get(key, 0) < rev.threshold:
                m.thresholds[key] = rev.threshold
                changed = True
        # Revoking any credential type also raises the COM threshold (a reference quirk).
        if m.com_revocation_threshold < rev.threshold:
            m.com_revocation_threshold = rev.threshold
            changed = True
        if changed:
            m.credentials_version += 1
        return changed

    def add_tag(self, tag: Tag) -> bool:
        return self._add_keyed(self.membership(tag.issued_to).tags, CredentialType.TAG, tag)

    def add_capability(self, cap: Capability) -> bool:
        m = self.membership(cap.issued_to)
        added = self._add_keyed(m.capabilities, CredentialType.CAPABILITY, cap)
        if added:
            self.enforcer.note_capability(cap)
        return added

    def add_coo(self, coo: CertificateOfOwnership) -> bool:
        return self._add_keyed(self.membership(coo.issued_to).coos, CredentialType.COO, coo)

    def _add_keyed(self, held: dict[int, _C], kind: CredentialType, cred: _C) -> bool:
        """Keep the newest credential per id unless a revocation covers its timestamp (§5.5)."""
        m = self.membership(cred.issued_to)
        if m.thresholds.get((int(kind), cred.id), 0) >= cred.timestamp:
            return False
        old = held.get(cred.id)
        if old is not None and old.timestamp > cred.timestamp:
            return False
        held[cred.id] = cred
        m.credentials_version += 1
        return True

    # -- multicast (§7) --------------------------------------------------------------------

    def announced_groups(self) -> list[Group]:
        """What we LIKE: our subscriptions, plus broadcast when the network enables it."""
        groups = set(self.subscriptions)
        if self.config is not None and self.config.enable_broadcast:
            groups.add((BROADCAST_MAC, 0))
        return sorted(groups)

    def learn_member(self, group: Group, address: int, now: int) -> bool:
        """A member LIKEs a group; False when the table is full (the caller counts it)."""
        return address == self.me or self.multicast_members.note(group, address, now)

    def members_of(self, group: Group, now: int) -> list[int]:
        held = self.multicast_members.members(group)
        return [a for a, t in held.items() if now - t < MULTICAST_LIKE_EXPIRE]

    def expire_multicast(self, now: int) -> None:
        self.multicast_members.expire(now, MULTICAST_LIKE_EXPIRE)
        self.pending_multicasts = [
            p for p in self.pending_multicasts if now - p.created < MULTICAST_PENDING_TIMEOUT
        ]

    def should_answer_credentials_request(self, peer: int, now: int) -> bool:
        """On ERROR NEED_MEMBERSHIP_CERTIFICATE from this member: push ours if our config has a
        COM and we have not pushed to it since the config changed or within the last second
        (``peerRequestedCredentials``, node/Network.hpp:379-387; node/IncomingPacket.cpp:218-227).
        """
        if self.config is None or self.config.com is None:
            return False
        m = self.membership(peer)
        return (
            m.last_pushed_credentials < self.last_config_update
            or now - m.last_pushed_credentials > NEED_CREDENTIALS_PUSH_INTERVAL
        )

    def should_push_credentials(self, peer: int, now: int) -> bool:
        """Before a frame to this member: push ours if the config changed since the last push
        or it has been a while (node/Network.hpp:396-404)."""
        m = self.membership(peer)
        return (
            m.last_pushed_credentials < self.last_config_update
            or now - m.last_pushed_credentials > CREDENTIAL_PUSH_MAX_AGE
        )


def adhoc_config(network_id: int, me: Identity, now: int) -> NetworkConfig | None:
    """The config a node builds for itself on an ad-hoc (``ff...``) network (§1.2).

    ``ffSSSSEEEE000000``: IPv6-only 6plane network with TCP/UDP destination ports S..E open;
    ``ffAAhhhhhhhhhh01``: IPv4 ``AA.x.y.z/8`` plus 6plane, everything allowed. Anything else has
    no config (None).
    """
    plane = sixplane_address(network_id, me.address)
    if network_id & 0xFFFFFF == 0:
        start, end = (network_id >> 40) & 0xFFFF, (network_id >> 24) & 0xFFFF
        if end < start:
            return None
        rules: tuple[Rule, ...] = (
            MatchEthertype(0x86DD, not_=True),
            ActionDrop(),
            MatchIpProtocol(0x3A),
            ActionAccept(),
            MatchIpProtocol(17),
            MatchIpProtocol(6, or_=True),
            MatchIpDestPortRange(start, end),
            ActionAccept(),
            MatchCharacteristics(int(Characteristic.TCP_SYN), not_=True),
            ActionAccept(),
            MatchCharacteristics(int(Characteristic.TCP_SYN)),
            MatchCharacteristics(int(Characteristic.TCP_ACK)),
            ActionAccept(),
            ActionDrop(),
        )
        return NetworkConfig(
            network_id=network_id,
            timestamp=now,
            issued_to=me.address,
            credential_time_max_delta=ADHOC_CTMD,
            revision=1,
            flags=int(NetconfFlag.ENABLE_IPV6_NDP_EMULATION),
            multicast_limit=0,
            type=NetworkType.PUBLIC,
            name=f"adhoc-{start:04x}-{end:04x}",
            static_ips=(plane,),
            rules=rules,
        )
    if network_id & 0xFF == 0x01:
        a = (network_id >> 48) & 0xFF
        low = me.address & 0xFFFFFF
        v4 = InetAddress(ipaddress.IPv4Address((a << 24) | low), 8)
        return NetworkConfig(
            network_id=network_id,
            timestamp=now,
            issued_to=me.address,
            credential_time_max_delta=ADHOC_CTMD,
            revision=1,
            flags=int(NetconfFlag.ENABLE_IPV6_NDP_EMULATION),
            multicast_limit=1024,
            type=NetworkType.PUBLIC,
            name=f"adhoc-{a}.0.0.0",
            static_ips=(plane, v4),
            rules=(ActionAccept(),),
        )
    return None


def sixplane_address(network_id: int, address: int) -> InetAddress:
    """``fc`` + 32-bit network hash + the 40-bit address + 5 zero bytes + ``01``, /40 (§9)."""
    h = (network_id ^ (network_id >> 32)) & 0xFFFFFFFF
    raw = b"\xfc" + h.to_bytes(4, "big") + address.to_bytes(5, "big") + bytes(5) + b"\x01"
    return InetAddress(ipaddress.IPv6Address(raw), 40)


def rfc4193_address(network_id: int, address: int) -> InetAddress:
    """``fd`` + the network id + ``9993`` + the 40-bit address, /88 (§9)."""
    raw = b"\xfd" + network_id.to_bytes(8, "big") + b"\x99\x93" + address.to_bytes(5, "big")
    return InetAddress(ipaddress.IPv6Address(raw), 88)
