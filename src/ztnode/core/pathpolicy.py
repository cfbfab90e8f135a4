"""Which physical addresses may carry ZeroTier traffic, and where to try a peer we lost.

ZeroTierOne asks its host two questions through callbacks (``pathCheck`` and ``pathLookup``,
service/OneService.cpp ``nodePathCheckFunction``/``nodePathLookupFunction``), answered from
``local.conf``: a remote address is refused when it lies in a network ``physical`` marks
``"blacklist": true``, in one of the peer's own ``virtual.<address>.blacklist`` networks, or
inside an address range of a network this node has joined (ZeroTier carried over ZeroTier).
And a peer with no direct path is tried, every 30 s, at one of its ``virtual.<address>.try``
addresses (``Peer::tryMemorizedPath``), which is how an operator pins a peer behind a NAT
that never lets a hole punch through.

The core is sans-I/O, so the host hands it the answers as one immutable :class:`PathPolicy`
(replaced whole when ``local.conf`` changes) and the core consults it where the reference
calls the callbacks: path learning, PUSH_DIRECT_PATHS, RENDEZVOUS and the cached peers'
greetings (all through ``Node.should_use_path``), and the switch's route when it finds no
direct path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ztnode.core.records import Addr

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ZT_TRY_MEMORIZED_PATH_INTERVAL (node/Constants.hpp): a peer's hints are tried this often.
TRY_MEMORIZED_PATH_INTERVAL: Final = 30_000
#: Bounds of the table (it comes from the operator's file, but a node must not let a
#: generated file of a million entries cost it a million lookups per packet): peers with
#: entries, and networks or hints per peer or in the global blacklist. ``local.conf`` beyond
#: them is refused with an error naming the key.
MAX_PEERS: Final = 4096
MAX_ENTRIES: Final = 64


@dataclass(frozen=True, slots=True)
class PeerHints:
    """``virtual.<address>``: addresses to try the peer at, networks never to use for it."""

    try_addresses: tuple[Addr, ...] = ()
    blacklist: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """The operator's path rules; the default allows every address and hints nothing."""

    global_blacklist: tuple[IpNetwork, ...] = ()
    peers: Mapping[int, PeerHints] = field(default_factory=dict)

    def allows(self, address: int, ip: IpAddress) -> bool:
        """False when ``ip`` lies in the global blacklist or in the peer's own."""
        for net in self.global_blacklist:
            if ip.version == net.version and ip in net:
                return False
        hints = self.peers.get(address)
        if hints is not None:
            for net in hints.blacklist:
                if ip.version == net.version and ip in net:
                    return False
        return True

    def hint(self, address: int, choice: int) -> Addr | None:
        """One of the peer's ``try`` addresses, picked by ``choice`` (a random number: the
        reference picks a family at random, then an address of it at random)."""
        hints = self.peers.get(address)
        if hints is None or not hints.try_addresses:
            return None
        v4 = [a for a in hints.try_addresses if ":" not in a[0]]
        v6 = [a for a in hints.try_addresses if ":" in a[0]]
        family = v4 if (choice & 1) == 0 else v6
        if not family:  # the family drawn has none: the reference answers nothing this time
            return None
        return family[(choice >> 1) % len(family)]
