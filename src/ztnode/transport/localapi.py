"""The node's local control API, with ZeroTierOne's routes and JSON field names.

``GET /status`` and ``GET /peer[/<address>]`` answer like ``zerotier-one`` does
(service/OneService.cpp), so ``zerotier-cli``-style scripts can read a ztnode node. ztnode adds
``GET /counters`` (packets, bytes and drops by reason), since a drop must always be visible.
"""

from __future__ import annotations

from typing import Any

from ztnode._version import __version__
from ztnode.core.network import Network
from ztnode.core.node import Node
from ztnode.core.peer import PEER_PATH_EXPIRATION, Peer
from ztnode.identity import address_from_str, address_to_str
from ztnode.transport.httpapi import HttpError, JsonApi, Request
from ztnode.transport.service import NodeService
from ztnode.wire.constants import SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION
from ztnode.wire.mac import mac_to_str


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


def network_json(net: Network) -> dict[str, Any]:
    """A joined network as ZeroTierOne's ``/network`` reports it."""
    cfg = net.config
    nwid = f"{net.id:016x}"
    return {
        "allowDNS": False,
        "allowDefault": False,
        "allowGlobal": False,
        "allowManaged": True,
        "assignedAddresses": [str(a) for a in net.assigned_addresses()],
        "bridge": False,
        "broadcastEnabled": bool(cfg is not None and cfg.enable_broadcast),
        "dhcp": False,
        "dns": {
            "domain": cfg.dns.domain if cfg is not None else "",
            "servers": [str(x.ip) for x in cfg.dns.servers] if cfg is not None else [],
        },
        "id": nwid,
        "mac": mac_to_str(net.mac),
        "mtu": cfg.mtu if cfg is not None else 2800,
        "multicastSubscriptions": [],
        "name": cfg.name if cfg is not None else "",
        "netconfRevision": cfg.revision if cfg is not None else 0,
        "nwid": nwid,
        "portDeviceName": "",
        "portError": 0,
        "routes": [
            {
                "target": str(r.target) if r.target is not None else None,
                "via": str(r.via.ip) if r.via is not None else None,
                "flags": r.flags,
                "metric": r.metric,
            }
            for r in (cfg.routes if cfg is not None else ())
        ],
        "status": net.status.value,
        "type": "PUBLIC" if cfg is not None and cfg.is_public else "PRIVATE",
    }


def _nwid(text: str) -> int:
    try:
        if len(text) != 16:
            raise ValueError
        value = int(text, 16)
    except ValueError:
        raise HttpError(400, "a network id is 16 hex digits") from None
    if value == 0:
        raise HttpError(400, "network id 0 is not valid")
    return value


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

    async def networks(req: Request) -> Any:
        n = node()
        return [network_json(net) for _, net in sorted(n.networks.items())]

    async def one_network(req: Request) -> Any:
        net = node().network(_nwid(req.params["nwid"]))
        if net is None:
            raise HttpError(404, f"not a member of network {req.params['nwid']}")
        return network_json(net)

    async def join(req: Request) -> Any:
        nwid = _nwid(req.params["nwid"])
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        service.join(nwid)
        net = node().network(nwid)
        assert net is not None
        return network_json(net)

    async def leave(req: Request) -> Any:
        nwid = _nwid(req.params["nwid"])
        if not service.leave(nwid):
            raise HttpError(404, f"not a member of network {req.params['nwid']}")
        return {"result": True}

    api.route("GET", "/network", networks)
    api.route("GET", "/network/{nwid}", one_network)
    api.route("POST", "/network/{nwid}", join)
    api.route("PUT", "/network/{nwid}", join)
    api.route("DELETE", "/network/{nwid}", leave)
    api.route("GET", "/status", status)
    api.route("GET", "/peer", peers)
    api.route("GET", "/peer/{address}", one_peer)
    api.route("GET", "/counters", counters)
    return api


async def serve_local_api(service: NodeService, port: int = 0) -> tuple[JsonApi, int]:
    """Start the node's local API on 127.0.0.1 (with the controller's routes when the node
    runs one) and record its port in ``ztnode.port`` for the CLI; returns the API and port."""
    api = build_api(service, service.home.auth_token())
    if service.controller is not None:
        from ztnode.controller.api import register_controller_routes

        register_controller_routes(
            api, service.controller, service.clock.now, service.controller_changed
        )
    bound = await api.start("127.0.0.1", port)
    (service.home.path / "ztnode.port").write_text(f"{bound}\n")
    return api, bound
