"""Physical paths: one local socket and one remote UDP address, with liveness and latency.

Timers and the quality formula follow ZeroTierOne 1.14.1 ``node/Path.hpp`` (see
``shared/reference/protocol-multipath.md`` section 2): a path is alive while something arrived on
it within 19 s, needs a heartbeat after 14 s without sending, and its latency is a running
``(old + new) / 2`` fed only by OK(HELLO) round trips.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from ztnode.wire.inetaddr import InetAddress, IpScope, ip_scope

Addr = tuple[str, int]

PATH_HEARTBEAT_PERIOD: Final = 14_000
PATH_ALIVE_TIMEOUT: Final = PATH_HEARTBEAT_PERIOD + 5_000
TRUST_EXPIRATION: Final = 600_000
LATENCY_UNKNOWN: Final = 0xFFFF
_QUALITY_AGE_CAP: Final = 140_000


class Path:
    """Shared by every peer that uses the same (local, remote) pair; interned by the node.

    A datagram from an address the node has no path for gets a *transient* Path (``kept``
    False), held by nobody once the datagram is handled: nothing is stored for a source until
    one of its packets authenticates (``Node.adopt_path``), so junk from spoofed addresses
    costs no memory."""

    __slots__ = (
        "_inet",
        "_scope",
        "kept",
        "last_hello_sent",
        "last_in",
        "last_out",
        "last_trust_established",
        "latency",
        "local",
        "mtu",
        "remote",
    )

    def __init__(self, local: Addr, remote: Addr) -> None:
        self.local = local
        self.remote = remote
        self.last_in = 0
        self.last_out = 0
        self.last_trust_established = 0
        self.last_hello_sent = -(10**12)
        self.latency = LATENCY_UNKNOWN
        self._inet: InetAddress | None = None
        self._scope: IpScope | None = None
        #: Interned in the node's path table (see the class docstring).
        self.kept = False
        #: This path's physical MTU when a bond link sets one (``links.<if>.mtu``, ``bond
        #: setmtu``); 0: the node's.
        self.mtu = 0

    @property
    def scope(self) -> IpScope:
        """The remote address's scope, worked out on first use (not for every junk datagram)."""
        if self._scope is None:
            try:
                self._scope = ip_scope(ipaddress.ip_address(self.remote[0]))
            except ValueError:
                self._scope = IpScope.NONE
        return self._scope

    @property
    def inet(self) -> InetAddress:
        """The remote address as a wire codec object, built once on first use."""
        if self._inet is None:
            self._inet = InetAddress(ipaddress.ip_address(self.remote[0]), self.remote[1])
        return self._inet

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.remote[0]

    def alive(self, now: int) -> bool:
        return now - self.last_in < PATH_ALIVE_TIMEOUT

    def needs_heartbeat(self, now: int) -> bool:
        return now - self.last_out >= PATH_HEARTBEAT_PERIOD

    def trust_established(self, now: int) -> bool:
        return self.last_trust_established > 0 and now - self.last_trust_established < (
            TRUST_EXPIRATION
        )

    def update_latency(self, sample: int) -> None:
        sample = max(0, min(sample, LATENCY_UNKNOWN - 1))
        if self.latency == LATENCY_UNKNOWN:
            self.latency = sample
        else:
            self.latency = (self.latency + sample) // 2

    def quality(self, now: int) -> int:
        """Lower is better. A path silent for 19 s is heavily penalised; LAN beats WAN."""
        age = min(now - self.last_in, _QUALITY_AGE_CAP)
        base = self.latency if age < PATH_ALIVE_TIMEOUT else self.latency + 0xFFFF + age
        return base * ((IpScope.PRIVATE - int(self.scope)) + 1)

    def __repr__(self) -> str:
        return f"Path({self.local[0]}:{self.local[1]} -> {self.remote[0]}:{self.remote[1]})"
