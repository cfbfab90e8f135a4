"""In-memory worlds with a controller (a small one, and the real one), under virtual time."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.core import events as ev
from ztnode.core.controller_iface import ConfigAnswer, ConfigPush, RevocationPush
from ztnode.core.network import (
    NetworkStatus,
    rfc4193_address,
)
from ztnode.core.node import Node
from ztnode.identity import Identity
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.wire.constants import ErrorCode
from ztnode.wire.credentials import CertificateOfMembership, CredentialType, Revocation
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.mac import mac_from_address
from ztnode.wire.netconf import NetworkConfig, NetworkType
from ztnode.wire.rules import ActionAccept

IDS = test_identities()


NETWORK = {
    "name": "office",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": True, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
    "routes": [{"target": "10.147.20.0/24", "via": None}],
}


class World:
    """A LocalWorld whose first leaf hosts the controller (database in ``home``)."""

    def __init__(self, home: Path, members: int = 2, network: dict[str, object] | None = None):
        self.w = LocalWorld.build(IDS, roots=1, leaves=members + 1)
        self.host = self.w.leaves[0]
        self.members = self.w.leaves[1:]
        self.home = home
        self.ctl = open_controller(self.host.identity, home, seeded_random_bytes(99))
        self.host.controller = self.ctl
        assert self.w.run_until(self.w.all_online, 15_000)
        net = self.ctl.create_network(network or NETWORK, self.now)
        self.nwid = int(str(net["id"]), 16)

    @property
    def now(self) -> int:
        return self.w.net.now

    def changed(self) -> None:
        """What the HTTP API does after an edit: flush pushes and revocations at once."""
        self.host.flush_controller(self.now)

    def authorize(self, node: Node, yes: bool = True) -> None:
        self.ctl.update_member(self.nwid, node.address, {"authorized": yes}, self.now)
        self.changed()

    def status(self, node: Node) -> NetworkStatus | None:
        net = node.network(self.nwid)
        return net.status if net is not None else None

    def wait_status(self, node: Node, status: NetworkStatus, ms: int = 10_000) -> bool:
        return self.w.run_until(lambda: self.status(node) == status, ms)

    def addresses(self, node: Node) -> set[str]:
        net = node.network(self.nwid)
        return {str(a) for a in net.assigned_addresses()} if net is not None else set()

    def frames(self, node: Node, payload: bytes) -> int:
        return sum(
            1
            for e in self.w.net.events[id(node)]
            if isinstance(e, ev.FrameReceived) and e.payload == payload
        )

    def send(self, a: Node, b: Node, payload: bytes) -> None:
        assert a.send_frame(
            self.nwid, mac_from_address(b.address, self.nwid), 0x0800, payload, self.now
        )


def joined() -> tuple[LocalWorld, Node, MiniController, int, Node, Node]:
    """Controller node, member ``a`` (status OK) and a second member ``b`` that knows ``a``."""
    w, ctl_node, ctl, nwid = world_with_controller(leaves=2)
    a, b = w.leaves[1], w.leaves[2]
    ctl.authorized |= {a.address, b.address}
    for n in (a, b):
        n.join(nwid, w.net.now)
    assert w.run_until(
        lambda: all(n.network(nwid).status == NetworkStatus.OK for n in (a, b)),  # type: ignore[union-attr]
        20_000,
    )
    b.send_echo(a.address, b"x", w.net.now)  # a and b learn each other
    assert w.run_until(lambda: a.peer(b.address) is not None, 10_000)
    w.run_for(1_000)
    return w, ctl_node, ctl, nwid, a, b


CTMD = 30 * 60 * 1000


@dataclass
class MiniController:
    """Authorizes a set of members on one private network and hands out 10.9.0.x addresses."""

    identity: Identity
    network_id: int
    authorized: set[int] = field(default_factory=set)
    pushes: list[ConfigPush] = field(default_factory=list)
    revocations: list[RevocationPush] = field(default_factory=list)
    identities: dict[int, Identity] = field(default_factory=dict)

    def serves(self, network_id: int) -> bool:
        return network_id == self.network_id

    def config_for(self, member: Identity, now: int) -> NetworkConfig:
        com = CertificateOfMembership.issue(now, CTMD, self.network_id, member).sign(self.identity)
        ip = InetAddress(ipaddress.ip_address(f"10.9.0.{member.address & 0x7F}"), 24)
        return NetworkConfig(
            network_id=self.network_id,
            timestamp=now,
            issued_to=member.address,
            revision=1,
            type=NetworkType.PRIVATE,
            name="test",
            com=com,
            static_ips=(ip, rfc4193_address(self.network_id, member.address)),
            rules=(ActionAccept(),),  # a controller's default network (an empty list drops all)
        )

    def handle_request(
        self,
        member: Identity,
        network_id: int,
        metadata: bytes,
        now: int,
        physical_address: tuple[str, int] | None = None,
    ) -> ConfigAnswer | None:
        if network_id != self.network_id:
            return ConfigAnswer(error=ErrorCode.OBJ_NOT_FOUND)
        self.identities[member.address] = member
        if member.address not in self.authorized:
            return ConfigAnswer(error=ErrorCode.NETWORK_ACCESS_DENIED)
        return ConfigAnswer(config=self.config_for(member, now))

    def pending_pushes(self, now: int) -> list[ConfigPush]:
        out, self.pushes = self.pushes, []
        return out

    def pending_revocations(self, now: int) -> list[RevocationPush]:
        out, self.revocations = self.revocations, []
        return out

    def has_recent_member(self, network_id: int, member: int, now: int) -> bool:
        return member in self.identities

    def deauthorize(self, member: int, recipients: tuple[int, ...], now: int) -> None:
        self.authorized.discard(member)
        rev = Revocation(
            id=1,
            network_id=self.network_id,
            credential_id=0,
            threshold=now,
            flags=1,
            target=member,
            credential_type=CredentialType.COM,
        ).sign(self.identity)
        self.revocations.append(RevocationPush(self.network_id, rev, recipients))


def world_with_controller(leaves: int = 2) -> tuple[LocalWorld, Node, MiniController, int]:
    w = LocalWorld.build(IDS, roots=1, leaves=leaves + 1)
    ctl_node = w.leaves[0]
    nwid = (ctl_node.address << 24) | 0x000042
    ctl = MiniController(ctl_node.identity, nwid)
    ctl_node.controller = ctl
    assert w.run_until(w.all_online, 15_000)
    return w, ctl_node, ctl, nwid
