"""What the node tells its host, as small immutable records.

The core never calls out: it queues these, and whoever drives it (the asyncio adapter, a test
pump) drains them with ``Node.next_event()``. Addresses are 40-bit ints; physical addresses are
``(host, port)`` tuples as the transport uses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class, so hosts can ``match`` on type."""


@dataclass(frozen=True, slots=True)
class NodeOnline(Event):
    """Something arrived from an upstream (a root) recently: the node can reach the world."""


@dataclass(frozen=True, slots=True)
class NodeOffline(Event):
    """No upstream has been heard from within the activity timeout."""


@dataclass(frozen=True, slots=True)
class PeerAdded(Event):
    address: int


@dataclass(frozen=True, slots=True)
class PeerRemoved(Event):
    address: int


@dataclass(frozen=True, slots=True)
class PathUp(Event):
    """A direct path to a peer was learned (confirmed by an OK over it)."""

    address: int
    local: Addr
    remote: Addr


@dataclass(frozen=True, slots=True)
class PathDown(Event):
    """A direct path expired or was reset; traffic falls back to another path or a relay."""

    address: int
    local: Addr
    remote: Addr
    reason: str


@dataclass(frozen=True, slots=True)
class PeerDirect(Event):
    """A peer that was reachable only via a relay now has a direct path."""

    address: int


@dataclass(frozen=True, slots=True)
class PeerRelayed(Event):
    """A peer lost its last direct path; packets to it now go through a root."""

    address: int


@dataclass(frozen=True, slots=True)
class BondLinkChanged(Event):
    """A path of a bond became usable (``up``) or stopped being usable, with why."""

    address: int
    local: Addr
    remote: Addr
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BondActiveChanged(Event):
    """Active-backup moved a peer's traffic to another path (``previous_*`` None at first)."""

    address: int
    local: Addr
    remote: Addr
    previous_local: Addr | None
    previous_remote: Addr | None


@dataclass(frozen=True, slots=True)
class EchoReply(Event):
    """OK(ECHO) to an ECHO sent through the API, with its measured round trip."""

    address: int
    payload: bytes
    request_id: int
    rtt_ms: int


@dataclass(frozen=True, slots=True)
class UserMessage(Event):
    """A USER_MESSAGE from a peer (type IDs up to 65535 are reserved for ZeroTier)."""

    source: int
    type_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RemoteTrace(Event):
    """A REMOTE_TRACE record, still in ZeroTier's Dictionary text form."""

    source: int
    dictionary: bytes


@dataclass(frozen=True, slots=True)
class WorldUpdated(Event):
    """The planet or a moon was replaced by a newer signed revision, or a moon was added."""

    world_id: int
    world_type: int
    timestamp: int
    world: bytes


@dataclass(frozen=True, slots=True)
class IdentityCollision(Event):
    """An upstream says another node already uses our address: we must get a new identity.

    This is fatal for the identity in use; the reference treats it the same way.
    """

    reporter: int


@dataclass(frozen=True, slots=True)
class SurfaceAddressChanged(Event):
    """A trusted reporter says we appear at a different external IP (roaming or a new NAT)."""

    scope: int
    old: Addr | None
    new: Addr


@dataclass(frozen=True, slots=True)
class NetworkStatusChanged(Event):
    """A joined network's status changed (REQUESTING_CONFIGURATION, OK, ACCESS_DENIED, ...)."""

    network_id: int
    status: str


@dataclass(frozen=True, slots=True)
class NetworkAuthenticationRequired(Event):
    """The network's controller wants this node's user to log in (SSO) at ``url`` before it
    hands out a config; the status is AUTHENTICATION_REQUIRED meanwhile. For version-1 SSO
    ``url`` is the central endpoint; the page to send the user to is the network's
    ``authenticationURL`` in the local API (made by :mod:`ztnode.transport.ssoflow`)."""

    network_id: int
    url: str


@dataclass(frozen=True, slots=True)
class NetworkConfigUpdated(Event):
    """A new config was applied; ``config`` is its dictionary, for the host to persist."""

    network_id: int
    revision: int
    config: bytes


@dataclass(frozen=True, slots=True)
class AddressAdded(Event):
    """The controller assigned us an address on a network ("ip/bits")."""

    network_id: int
    address: str


@dataclass(frozen=True, slots=True)
class AddressRemoved(Event):
    network_id: int
    address: str


@dataclass(frozen=True, slots=True)
class NetworkLeft(Event):
    network_id: int


@dataclass(frozen=True, slots=True)
class FrameReceived(Event):
    """An Ethernet frame for us from a member that passed the network's gate."""

    network_id: int
    source: int
    source_mac: int
    dest_mac: int
    ethertype: int
    payload: bytes


# ------------------------------------------------------------------------------------- reprs
# Events are printed by users and in logs: ZeroTier's own forms (10-hex-digit addresses,
# 16-hex-digit network ids, colon MACs) and byte counts instead of whole configs and frames.

_ADDRESS_FIELDS = frozenset({"address", "source", "reporter"})
_ID_FIELDS = frozenset({"network_id", "world_id"})
_MAC_FIELDS = frozenset({"source_mac", "dest_mac"})


def _field_text(name: str, value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, int) and not isinstance(value, bool):
        if name in _ADDRESS_FIELDS:
            return f"{value:010x}"
        if name in _ID_FIELDS:
            return f"{value:016x}"
        if name in _MAC_FIELDS:
            return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))
        if name == "ethertype":
            return f"0x{value:04x}"
    return repr(value)


def _event_repr(self: Event) -> str:
    parts = [
        f"{f.name}={_field_text(f.name, getattr(self, f.name))}" for f in dataclasses.fields(self)
    ]
    return f"{type(self).__name__}({', '.join(parts)})"


def _install_reprs(base: type[Event]) -> None:
    for cls in base.__subclasses__():
        cls.__repr__ = _event_repr  # type: ignore[method-assign,assignment]
        _install_reprs(cls)


Event.__repr__ = _event_repr  # type: ignore[method-assign,assignment]
_install_reprs(Event)
