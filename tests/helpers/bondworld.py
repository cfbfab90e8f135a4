"""Two members with several links each (virtual time): a multipath world for bond tests.

Built on :class:`IpWorld` (root, controller, members a and b with IP stacks). Member a's link
``k`` is the address ``10.<k>.0.3``, b's ``10.<k>.0.4`` (link 0 is the world's own address
``10.0.0.x``). Links are separate wires: nothing crosses from one link's address to another
link's, and :meth:`BondWorld.cut` takes every address of a link off the network both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.helpers.ipworld import IpWorld
from ztnode.core.bond import Bond, BondingSettings
from ztnode.netstack.host import Host
from ztnode.testing.fakenet import LinkProfile
from ztnode.wire.inetaddr import InetAddress

PORT = 9993


def link_ip(link: int, host: int) -> str:
    return f"10.{link}.0.{host}"


class BondWorld(IpWorld):
    """See the module docstring. ``settings`` is the ``local.conf`` ``settings`` object both
    members run; ``profiles`` impairs links by index."""

    def __init__(
        self,
        home: Path,
        settings: Mapping[str, Any],
        *,
        links: int = 2,
        profiles: Mapping[int, LinkProfile] | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__(home, seed=seed)
        self.links = links
        self.cut_links: set[int] = set()
        net = self.w.net
        hosts = {3: self.a, 4: self.b}
        for host_no, h in hosts.items():
            base = self.w.addresses[h.node.address]
            assert base == (link_ip(0, host_no), PORT), base
            locals_ = [(link_ip(k, host_no), PORT) for k in range(links)]
            for addr in locals_[1:]:
                net.attach(h, addr)
            h.node.set_local_addresses(locals_)
            h.node.set_link_names({addr: f"eth{k}" for k, addr in enumerate(locals_)})
            h.node.set_interface_addresses([InetAddress.parse(f"{ip}/{p}") for ip, p in locals_])
        # Separate wires: a link's addresses reach each other and (link 0) the root and the
        # controller; nothing crosses between links.
        others = [self.w.addresses[n.address][0] for n in self.w.nodes]
        for k in range(links):
            for j in range(links):
                if j != k:
                    for h in (3, 4):
                        for g in (3, 4):
                            net.block(link_ip(k, h), link_ip(j, g))
            if k:
                for h in (3, 4):
                    for ip in others:
                        if ip not in (link_ip(0, 3), link_ip(0, 4)):
                            net.block(link_ip(k, h), ip)
        for k, prof in (profiles or {}).items():
            net.set_profile((link_ip(k, 3), PORT), (link_ip(k, 4), PORT), prof)
        parsed = BondingSettings.from_local_conf(settings)
        for h in (self.a, self.b):
            h.node.configure_bonding(parsed, self.now)

    def bond(self, h: Host, other: Host) -> Bond | None:
        return h.node.bond(other.node.address)

    def eligible(self, h: Host, other: Host) -> set[int]:
        """Link indexes whose paths from ``h`` to ``other`` are eligible in h's bond."""
        bond = self.bond(h, other)
        if bond is None:
            return set()
        return {int(bp.path.local[0].split(".")[1]) for bp in bond.paths if bp.eligible}

    def wait_bonded(self, links: int | None = None, ms: int = 60_000) -> None:
        """Until both members see every link to the other as eligible."""
        want = set(range(links if links is not None else self.links))

        def ready() -> bool:
            return self.eligible(self.a, self.b) >= want and self.eligible(self.b, self.a) >= want

        assert self.run_until(ready, ms), (
            self.eligible(self.a, self.b),
            self.eligible(self.b, self.a),
        )

    def cut(self, link: int) -> None:
        """The link's wire dies: both members' addresses on it reach nothing."""
        self.cut_links.add(link)
        net = self.w.net
        everyone = [self.w.addresses[n.address][0] for n in self.w.nodes]
        everyone += [link_ip(k, h) for k in range(self.links) for h in (3, 4)]
        for h in (3, 4):
            for ip in everyone:
                if ip != link_ip(link, h):
                    net.block(link_ip(link, h), ip)

    def restore(self, link: int) -> None:
        """The wire is back (as it was: still separate from the other links)."""
        self.cut_links.discard(link)
        net = self.w.net
        for h in (3, 4):
            net.unblock(link_ip(link, h), link_ip(link, 7 - h))
            if link == 0:
                for n in self.w.nodes:
                    net.unblock(link_ip(0, h), self.w.addresses[n.address][0])

    @staticmethod
    def link_of(path_local: tuple[str, int]) -> int:
        return int(path_local[0].split(".")[1])
