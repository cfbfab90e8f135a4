"""Port mapping on the local router: settings, safety switch and the decisions, without I/O.

ZeroTierOne 1.14.1 (``osdep/PortMapper.cpp``, started by ``service/OneService.cpp`` when
``settings.portMappingEnabled``, default on) binds a third UDP port, the *tertiary* port (random
unless ``settings.tertiaryPort``; the primary and secondary ports stay unmapped because some
NATs mangle explicitly mapped ports), and asks the router to forward an external UDP port to
it. What it does, and what :class:`MappingPlanner` does the same way:

- It first needs a default gateway; without one it tries again after 0.5 s, doubling to 30 s.
- NAT-PMP first: the gateway's external address, then a mapping of the tertiary port asking
  for the same external port (then +1, +2... 60 ports, wrapping above 65534 to 1025), lifetime
  600 s. No answer to the address request, or 60 refused ports: UPnP instead, at once.
- UPnP IGD: discovery (5 s), the IGD's external address, then for each of the same 60 ports
  AddPortMapping, pausing 1 s after each refusal. No IGD or no external address: back to
  NAT-PMP for the next round.
- A round, successful or not, is followed by another after 300 s (a mapping refreshes
  itself by being asked for again); the mapped address, external IP and port, is added to the
  node's interface addresses, so it goes to peers in PUSH_DIRECT_PATHS.

Where ztnode differs, on purpose: a mapping is advertised only while its lifetime lasts (a
router that stopped answering no longer has us advertise a dead address); a NAT-PMP lifetime
shorter than 600 s is renewed at half of it (RFC 6886 section 3.3); UPnP asks for a 600 s lease
like NAT-PMP instead of a permanent one (taking a permanent one from a router that only grants
those) and renews it every round, so a crashed node's mapping expires; the mapping is deleted
on stop; and one log line says what was mapped, one that no router answered.

**Network safety.** A mapper sends SSDP multicast on the LAN and NAT-PMP to the default
gateway: real traffic off the machine. So it runs only when asked twice: the service's
``ServiceConfig.port_mapping`` default (off for the embedded API, ``Node`` and the test
worlds; on for the ``ztnode node`` daemon, as ZeroTierOne) or ``settings.portMappingEnabled``
in ``local.conf`` turns it on, and the environment variable ``ZTNODE_NO_PORT_MAPPING`` (any
value but empty or ``0``) vetoes it whatever the settings say. The test suite's root
``conftest.py`` sets that variable for itself and every process it starts; only the namespace
test that proves the mapper against miniupnpd removes it, for a node it runs inside its own
namespaces.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ztnode.transport.localconf import LocalConf

VETO_ENV: Final = "ZTNODE_NO_PORT_MAPPING"

REFRESH_MS: Final = 300_000
"""Time between two rounds (ZT_PORTMAPPER_REFRESH_DELAY)."""
LIFETIME_S: Final = 600
"""Asked lifetime of a NAT-PMP mapping and lease of a UPnP one: two rounds."""
PORT_TRIES: Final = 60
GATEWAY_RETRY_MIN_MS: Final = 500
GATEWAY_RETRY_MAX_MS: Final = REFRESH_MS // 10
UPNP_RETRY_PAUSE_MS: Final = 1_000
NATPMP_ADDRESS_TIMEOUT_MS: Final = 5_000
NATPMP_MAP_TIMEOUT_MS: Final = 10_000
UPNP_DISCOVERY_MS: Final = 5_000
REMOVAL_TIMEOUT_MS: Final = 2_000
"""How long stopping waits for the router to delete the mapping."""


def vetoed(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``ZTNODE_NO_PORT_MAPPING`` forbids any port mapping in this process."""
    value = (os.environ if environ is None else environ).get(VETO_ENV, "")
    return value not in ("", "0")


@dataclass(frozen=True)
class PortMapSettings:
    """``settings.portMappingEnabled`` (None: not set, the service's default decides) and
    ``settings.tertiaryPort`` (0: random), the port that is mapped."""

    enabled: bool | None = None
    tertiary_port: int = 0

    @classmethod
    def from_conf(cls, conf: LocalConf) -> PortMapSettings:
        """The mapper's part of a checked ``local.conf``."""
        return cls(enabled=conf.port_mapping_enabled, tertiary_port=conf.tertiary_port)

    @classmethod
    def from_local_conf(cls, settings: Mapping[str, Any]) -> PortMapSettings:
        """From a ``settings`` object alone (checked as the whole file is)."""
        return cls.from_conf(LocalConf.parse({"settings": settings}))


def external_port_to_try(local_port: int, tries: int) -> int:
    """The reference's sequence: the local port, then up, wrapping from 65535 to 1025."""
    port = local_port + tries
    if port >= 65535:
        port = port - 65535 + 1025
    return port


class Protocol(enum.Enum):
    NATPMP = "NAT-PMP"
    UPNP = "UPnP"


@dataclass(frozen=True)
class PortMapping:
    """A mapping the router granted: ``external_ip``:``external_port`` forwards to our
    ``internal_port``; ``expires`` in the planner's milliseconds, None when permanent."""

    protocol: Protocol
    external_ip: ipaddress.IPv4Address
    external_port: int
    internal_port: int
    lifetime_s: int
    expires: int | None

    def __str__(self) -> str:
        life = f"lifetime {self.lifetime_s} s" if self.lifetime_s else "permanent"
        return (
            f"UDP {self.external_ip}:{self.external_port} -> local port {self.internal_port} "
            f"by {self.protocol.value} ({life})"
        )


# The steps the planner asks its driver to take, one at a time.
@dataclass(frozen=True)
class Wait:
    until: int


@dataclass(frozen=True)
class FindGateway:
    pass


@dataclass(frozen=True)
class AskNatPmpAddress:
    timeout_ms: int = NATPMP_ADDRESS_TIMEOUT_MS


@dataclass(frozen=True)
class AskNatPmpMapping:
    """Also the deletion, with ``external_port`` and ``lifetime`` 0."""

    internal_port: int
    external_port: int
    lifetime: int
    timeout_ms: int = NATPMP_MAP_TIMEOUT_MS


@dataclass(frozen=True)
class DiscoverIgd:
    timeout_ms: int = UPNP_DISCOVERY_MS


@dataclass(frozen=True)
class AskUpnpMapping:
    internal_port: int
    external_port: int
    lease_s: int
    description: str


@dataclass(frozen=True)
class RemoveUpnpMapping:
    external_port: int


Step = (
    Wait
    | FindGateway
    | AskNatPmpAddress
    | AskNatPmpMapping
    | DiscoverIgd
    | AskUpnpMapping
    | RemoveUpnpMapping
)


class _State(enum.Enum):
    GATEWAY = enum.auto()
    NATPMP_ADDRESS = enum.auto()
    NATPMP_MAP = enum.auto()
    UPNP_DISCOVER = enum.auto()
    UPNP_MAP = enum.auto()


@dataclass
class MappingPlanner:
    """What to do next, from ``now`` and the outcome of the last step (module docstring).

    The driver loops: ``next_step(now)``, performs it, reports the outcome with the method
    named after it; ``notices`` collects the lines worth logging. Time is in milliseconds of
    the driver's clock; nothing here reads a clock or touches the network.
    """

    local_port: int
    description: str
    notices: list[str] = field(default_factory=list)
    _state: _State = _State.GATEWAY
    _mode: Protocol = Protocol.NATPMP
    _wake: int = 0
    _gateway_retry: int = GATEWAY_RETRY_MIN_MS
    _tries: int = 0
    _public: ipaddress.IPv4Address | None = None
    _mapping: PortMapping | None = None
    _natpmp_failed: bool = False
    _said_none: bool = False
    _said_no_gateway: bool = False

    def next_step(self, now: int) -> Step:
        expiry = self._mapping.expires if self._mapping is not None else None
        if now < self._wake:
            if expiry is not None and now < expiry < self._wake:
                return Wait(expiry)  # the driver wakes to stop advertising it
            return Wait(self._wake)
        tried = external_port_to_try(self.local_port, self._tries)
        if self._state is _State.GATEWAY:
            return FindGateway()
        if self._state is _State.NATPMP_ADDRESS:
            return AskNatPmpAddress()
        if self._state is _State.NATPMP_MAP:
            return AskNatPmpMapping(self.local_port, tried, LIFETIME_S)
        if self._state is _State.UPNP_DISCOVER:
            return DiscoverIgd()
        return AskUpnpMapping(self.local_port, tried, LIFETIME_S, self.description)

    def current(self, now: int) -> PortMapping | None:
        """The mapping to advertise: granted and not expired."""
        m = self._mapping
        if m is None or (m.expires is not None and now >= m.expires):
            return None
        return m

    # outcomes -----------------------------------------------------------------------------

    def gateway(self, now: int, found: bool) -> None:
        if not found:
            if not self._said_no_gateway:
                self.notices.append("port mapping: no default gateway yet, waiting for one")
                self._said_no_gateway = True
            self._wake = now + self._gateway_retry
            self._gateway_retry = min(self._gateway_retry * 2, GATEWAY_RETRY_MAX_MS)
            return
        self._said_no_gateway = False
        self._gateway_retry = GATEWAY_RETRY_MIN_MS
        if self._mode is Protocol.NATPMP:
            self._natpmp_failed = False
            self._state = _State.NATPMP_ADDRESS
        else:
            self._state = _State.UPNP_DISCOVER

    def natpmp_address(self, now: int, address: ipaddress.IPv4Address | None) -> None:
        if address is None:
            self._to_upnp()
            return
        self._public = address
        self._state = _State.NATPMP_MAP

    def natpmp_mapped(self, now: int, external_port: int | None, lifetime_s: int = 0) -> None:
        """``external_port`` None: refused or unanswered; lifetime 0 counts as refused."""
        if external_port is None or lifetime_s <= 0 or self._public is None:
            self._tries += 1
            if self._tries >= PORT_TRIES:
                self._to_upnp()
            else:
                self._state = _State.NATPMP_ADDRESS
            return
        expires = now + lifetime_s * 1000
        self._granted(Protocol.NATPMP, self._public, external_port, lifetime_s, expires)
        self._wake = now + min(REFRESH_MS, lifetime_s * 500)

    def igd(self, now: int, external_ip: ipaddress.IPv4Address | None) -> None:
        """Discovery's outcome: an IGD and its external address, or nothing usable."""
        if external_ip is None:
            if self._natpmp_failed and not self._said_none:
                self.notices.append(
                    "port mapping: no router answered (NAT-PMP nor UPnP IGD); "
                    f"trying again every {REFRESH_MS // 1000} s"
                )
                self._said_none = True
            self._mode = Protocol.NATPMP
            self._state = _State.GATEWAY
            self._wake = now + REFRESH_MS
            return
        self._public = external_ip
        self._tries = 0
        self._state = _State.UPNP_MAP

    def upnp_mapped(self, now: int, lease_s: int | None) -> None:
        """``lease_s`` None: refused; 0: a permanent mapping (routers granting no other)."""
        if lease_s is None or self._public is None:
            self._tries += 1
            if self._tries >= PORT_TRIES:
                self._tries = 0
                self._state = _State.GATEWAY
                self._wake = now + REFRESH_MS
            else:
                self._wake = now + UPNP_RETRY_PAUSE_MS
            return
        port = external_port_to_try(self.local_port, self._tries)
        expires = now + lease_s * 1000 if lease_s else None
        self._granted(Protocol.UPNP, self._public, port, lease_s, expires)
        self._wake = now + REFRESH_MS

    def removal(self) -> Step | None:
        """The step that deletes the mapping (on stop), or None; forgets the mapping."""
        m, self._mapping = self._mapping, None
        if m is None:
            return None
        if m.protocol is Protocol.NATPMP:
            return AskNatPmpMapping(m.internal_port, 0, 0, timeout_ms=REMOVAL_TIMEOUT_MS)
        return RemoveUpnpMapping(m.external_port)

    # -------------------------------------------------------------------------------------

    def _to_upnp(self) -> None:
        self._natpmp_failed = True
        self._mode = Protocol.UPNP
        self._tries = 0
        self._state = _State.GATEWAY

    def _granted(
        self,
        protocol: Protocol,
        ip: ipaddress.IPv4Address,
        port: int,
        lifetime_s: int,
        expires: int | None,
    ) -> None:
        old = self._mapping
        new = PortMapping(protocol, ip, port, self.local_port, lifetime_s, expires)
        if old is None or (old.protocol, old.external_ip, old.external_port) != (
            protocol,
            ip,
            port,
        ):
            self.notices.append(f"port mapping: {new}")
        self._mapping = new
        self._said_none = False
        self._tries = 0
        self._state = _State.GATEWAY
