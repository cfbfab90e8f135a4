"""A whole ZeroTier world in this process over loopback UDP: root + controller + members.

``LocalZtWorld`` is what the tests, the examples and ``ztnode demo`` stand on: one root that is
also the network controller, a planet of its own naming it at ``127.0.0.1``, a private network
with IPv4 and rfc4193 addresses, and any number of member :class:`~ztnode.sockets.aio.Node`
objects already authorized and joined. Loopback paths are allowed, which ZeroTier refuses by
default: that is right for a single-machine world and wrong anywhere else.

Identities can be passed in (generating one costs about half a second); homes live under
``base``. Everything is torn down by ``stop()`` / the ``async with`` exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ztnode.crypto import c25519_generate
from ztnode.identity import Identity
from ztnode.sockets.aio import Network, Node
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

__all__ = ["DEFAULT_NETWORK", "LocalZtWorld", "generate_identities", "planet_for"]

DEFAULT_NETWORK: dict[str, Any] = {
    "name": "ztnode-local",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": True, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
    "routes": [{"target": "10.147.17.0/24", "via": None}],
}


class LocalZtWorld:
    """Root/controller plus members on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        members: int = 2,
        identities: Sequence[Identity] = (),
        network: dict[str, Any] | None = None,
        world_id: int = 0x10CA1,
        dns_domain: str | None = None,
        controller_db: str | None = None,
        member_options: Mapping[str, Any] | None = None,
    ) -> None:
        if identities and len(identities) < members + 1:
            raise ValueError(f"need {members + 1} identities, got {len(identities)}")
        self.base = Path(base)
        self.member_count = members
        self.identities = list(identities)
        self.network_spec = network or DEFAULT_NETWORK
        self.world_id = world_id
        #: With a domain, the root joins its own network and is pushed as its DNS server,
        #: answering ``zt-<address>.<domain>`` and members' names (:meth:`name_member`), and
        #: members join with ``allow_dns``.
        self.dns_domain = dns_domain
        #: The root's controller database (``postgresql://...`` to share it); None: SQLite.
        self.controller_db = controller_db
        #: More keyword arguments for every member's :class:`Node` (for example
        #: ``{"names": {"mdns": False, "llmnr": False}}`` for a world without multicast names).
        self.member_options = dict(member_options or {})
        self.root_network: Network | None = None
        self.root: Node | None = None
        self.members: list[Node] = []
        self.networks: list[Network] = []
        self.network_id = 0
        self.planet: World | None = None

    async def start(self, timeout: float = 60.0) -> LocalZtWorld:
        homes = [self.base / "root", *(self.base / f"member{i}" for i in range(self.member_count))]
        missing = [h for h in homes if not (h / "identity.secret").exists()]
        if not self.identities and len(missing) > 1:
            # Generating is the slow step (the memory-hard hash): do it in parallel, up front.
            self.identities = [Identity.from_string(t) for t in await _generate(len(homes))]
        for i, home in enumerate(homes):
            home.mkdir(parents=True, exist_ok=True)
            if self.identities and not (home / "identity.secret").exists():
                self.identities[i].save(home / "identity.secret", include_private=True)
        root_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        root_sock.bind(("127.0.0.1", 0))
        root_port = root_sock.getsockname()[1]
        root_identity = await _identity_for(homes[0])
        self.planet = planet_for(root_identity, root_port, self.world_id)
        self.root = Node(
            homes[0],
            planet=self.planet,
            allow_loopback=True,
            controller=True,
            controller_db=self.controller_db,
            sockets=(root_sock,),
            identity_validation_interval=0,
        )
        await self.root.start()
        created = self.root.controller.create_network(self.network_spec)
        self.network_id = int(str(created["id"]), 16)
        if self.dns_domain is not None:
            await self._serve_dns(self.dns_domain, timeout)
        self.members = [
            Node(
                h,
                planet=self.planet,
                allow_loopback=True,
                bind=("127.0.0.1",),
                **self.member_options,
            )
            for h in homes[1:]
        ]
        for m in self.members:
            await m.start()
            self.authorize(m)
        dns = True if self.dns_domain is not None else None  # members use the world's DNS
        self.networks = list(
            await asyncio.wait_for(
                asyncio.gather(*(m.join(self.network_id, allow_dns=dns) for m in self.members)),
                timeout,
            )
        )
        return self

    async def add_member(
        self,
        identity: Identity | None = None,
        *,
        authorize: bool = True,
        timeout: float = 60.0,
        local_conf: dict[str, Any] | None = None,
        **options: Any,
    ) -> tuple[Node, Network | None]:
        """Start one more member in this world (authorized and joined unless ``authorize`` is
        False, when it is started but not joined: its network is then None). ``local_conf``
        is written to its home's ``local.conf`` first; ``options`` go to :class:`Node`
        (``bonding=...``, or another ``bind``), over the world's ``member_options``."""
        if self.root is None or self.planet is None:
            raise RuntimeError("start the world first")
        home = self.base / f"member{len(self.members)}"
        while home.exists():
            home = home.with_name(home.name + "x")
        home.mkdir(parents=True)
        if identity is not None:
            identity.save(home / "identity.secret", include_private=True)
        if local_conf is not None:
            (home / "local.conf").write_text(json.dumps(local_conf))
        kwargs: dict[str, Any] = {
            "allow_loopback": True,
            "bind": ("127.0.0.1",),
            **self.member_options,
            **options,
        }
        node = Node(home, planet=self.planet, **kwargs)
        await node.start()
        self.members.append(node)
        if not authorize:
            return node, None
        self.authorize(node)
        dns = True if self.dns_domain is not None else None
        net = await node.join(self.network_id, timeout=timeout, allow_dns=dns)
        self.networks.append(net)
        return node, net

    def authorize(self, node: Node, *, authorized: bool = True) -> None:
        """Authorize (or deauthorize) a node on this world's network; pushed at once."""
        if self.root is None:
            raise RuntimeError("start the world first")
        ctl = self.root.controller
        if authorized:
            ctl.authorize(self.network_id, node.address)
        else:
            ctl.deauthorize(self.network_id, node.address)

    async def _serve_dns(self, domain: str, timeout: float) -> None:
        """The root joins its own network, and its address there becomes the network's
        pushed DNS server (the node then answers DNS by itself)."""
        assert self.root is not None
        self.authorize(self.root)
        self.root_network = net = await asyncio.wait_for(self.root.join(self.network_id), timeout)
        server = net.address(4)
        self.root.controller.update_network(
            self.network_id, {"dns": {"domain": domain, "servers": [server]}}
        )

        names = self.root.names.of(net)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while names.dns_server is None:  # the config comes back from our own controller
            if loop.time() > deadline:
                raise TimeoutError("the root never started answering DNS")
            names.update_roles()
            await asyncio.sleep(0.02)

    def name_member(self, node: Node, name: str) -> None:
        """Give ``node`` a name on the controller (``<name>.<domain>`` in the world's DNS)."""
        if self.root is None:
            raise RuntimeError("start the world first")
        self.root.controller.update_member(self.network_id, node.address, {"name": name})

    async def make_bridge(self, node: Node, timeout: float = 10.0) -> None:
        """Mark ``node`` an active bridge on this world's network and wait until its own
        config says so (then ``network.bridge(port)`` may be called on it) and every other
        member's does too (they send it multicasts and accept its bridged frames only then)."""
        if self.root is None:
            raise RuntimeError("start the world first")
        self.root.controller.update_member(self.network_id, node.address, {"activeBridge": True})
        address = int(node.address, 16)

        def knows(member: Node) -> bool:
            core = member.service.node
            net = core.network(self.network_id) if core is not None else None
            cfg = net.config if net is not None else None
            return cfg is not None and cfg.permits_bridging(address)

        for member in [node, *(m for m in self.members if m is not node and m.started)]:
            await member._wait_for(
                lambda m=member: knows(m),  # type: ignore[misc]
                timeout,
                f"{member.address} never learned that {node.address} is a bridge",
            )

    async def stop(self) -> None:
        for m in self.members:
            await m.stop()
        if self.root is not None:
            await self.root.stop()

    async def __aenter__(self) -> LocalZtWorld:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def planet_for(root: Identity, port: int, world_id: int = 0x10CA1) -> World:
    """A planet of one root, ``root`` on 127.0.0.1/``port``, signed by a fresh key (for worlds
    built by hand, such as a root apart from its controllers)."""
    pub, priv = c25519_generate(os.urandom)
    spec = Root(root.public(), (InetAddress.parse(f"127.0.0.1/{port}"),))
    return World.make(WorldType.PLANET, world_id, int(time.time() * 1000), pub, (spec,), priv)


def _new_identity(_: int) -> str:
    return Identity.generate().to_string(include_private=True)


async def _generate(n: int) -> list[str]:
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as pool:
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, _new_identity, i) for i in range(n)))
        )


async def generate_identities(n: int) -> list[Identity]:
    """``n`` new identities, generated in parallel processes (each costs about half a second
    of CPU, and several seconds for an unlucky one)."""
    return [Identity.from_string(t) for t in await _generate(n)]


async def _identity_for(home: Path) -> Identity:
    """The home's identity, generated off the event loop when there is none yet."""
    secret = home / "identity.secret"
    if not secret.exists():
        ident = await asyncio.get_running_loop().run_in_executor(None, Identity.generate)
        ident.save(secret, include_private=True)
        return ident
    return Identity.from_string(secret.read_text().strip())
