"""The node's local control API, with ZeroTierOne's routes and JSON field names.

``GET /status`` and ``GET /peer[/<address>]`` answer like ``zerotier-one`` does
(service/OneService.cpp), so ``zerotier-cli``-style scripts can read a ztnode node. ztnode adds
``GET /counters`` (packets, bytes and drops by reason), since a drop must always be visible.
"""

from __future__ import annotations

from typing import Any

from ztnode._version import __version__
from ztnode.core.node import Node
from ztnode.core.peer import PEER_PATH_EXPIRATION, Peer
from ztnode.identity import address_from_str, address_to_str
from ztnode.transport.httpapi import HttpError, JsonApi, Request
from ztnode.transport.service import NodeService
from ztnode.wire.constants import SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION


def peer_json(node: Node, peer: Peer, now: int) -> dict[str, Any]:
    best = peer.best_path(now)
    proto, major, minor, rev = peer.version
    latency = peer.latency(now)
    paths = []
    for slot in peer.paths:
        p = slot.path
        paths.append(
            {
                "active": p.alive(now),
                "address": f"{p.remote[0]}/{p.remote[1]}",
                "expired": now - slot.lr >= PEER_PATH_EXPIRATION,
                "lastReceive": p.last_in,
                "lastSend": p.last_out,
                "localPort": p.local[1],
                "localSocket": hash(p.local) & 0x7FFFFFFF,
                "preferred": p is best,
                "trustedPathId": 0,
            }
        )
    return {
        "address": address_to_str(peer.address),
        "isBonded": False,
        "latency": -1 if latency is None else latency,
        "paths": paths,
        "role": node.topology.role(peer.address),
        "tunneled": False,
        "version": f"{major}.{minor}.{rev}" if proto else "-1.-1.-1",
        "versionMajor": major if proto else -1,
        "versionMinor": minor if proto else -1,
        "versionRev": rev if proto else -1,
        "protocolVersion": proto if proto else -1,
    }


def build_api(service: NodeService, token: str | None) -> JsonApi:
    api = JsonApi(token)

    def node() -> Node:
        if service.node is None:
            raise HttpError(503, "the node is starting")
        return service.node

    async def status(req: Request) -> Any:
        n = node()
        now = service.clock.now()
        listening = [f"{a[0]}/{a[1]}" for a in service.endpoints]
        return {
            "address": address_to_str(n.address),
            "clock": now,
            "config": {
                "settings": {
                    "allowTcpFallbackRelay": False,
                    "listeningOn": listening,
                    "portMappingEnabled": False,
                    "primaryPort": service.port,
                    "surfaceAddresses": [str(a) for a in n.selfaware.surfaces(now)],
                }
            },
            "online": n.online,
            "planetWorldId": n.topology.planet.id,
            "planetWorldTimestamp": n.topology.planet.timestamp,
            "publicIdentity": n.identity.to_string(),
            "tcpFallbackActive": False,
            "version": f"{SOFTWARE_MAJOR}.{SOFTWARE_MINOR}.{SOFTWARE_REVISION}",
            "versionBuild": 0,
            "versionMajor": SOFTWARE_MAJOR,
            "versionMinor": SOFTWARE_MINOR,
            "versionRev": SOFTWARE_REVISION,
            "ztnodeVersion": __version__,
            "counters": n.counters.as_dict(),
        }

    async def peers(req: Request) -> Any:
        n = node()
        now = service.clock.now()
        return [peer_json(n, p, now) for p in sorted(n.peers.values(), key=lambda p: p.address)]

    async def one_peer(req: Request) -> Any:
        n = node()
        try:
            addr = address_from_str(req.params["address"])
        except ValueError:
            raise HttpError(400, "a peer address is 10 hex digits") from None
        p = n.peers.get(addr)
        if p is None:
            raise HttpError(404, f"no peer {req.params['address']}")
        return peer_json(n, p, service.clock.now())

    async def counters(req: Request) -> Any:
        return node().counters.as_dict()

    api.route("GET", "/status", status)
    api.route("GET", "/peer", peers)
    api.route("GET", "/peer/{address}", one_peer)
    api.route("GET", "/counters", counters)
    return api
