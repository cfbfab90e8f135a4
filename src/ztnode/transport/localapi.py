"""The node's local control API, with ZeroTierOne's routes and JSON field names.

Routes as ``zerotier-one`` serves them (service/OneService.cpp), so ``zerotier-cli``-style
scripts and tools can drive a ztnode node:

* ``GET /status``; ``GET /peer``, ``GET /peer/<address>``;
* ``GET /network``, ``GET /network/<nwid>``; ``POST``/``PUT /network/<nwid>`` joins, and sets the
  local settings ``allowManaged``, ``allowGlobal``, ``allowDefault``, ``allowDNS`` given as JSON
  booleans in the body (``zerotier-cli set``; saved in ``networks.d/<nwid>.local.conf``; what
  they mean here: :class:`~ztnode.transport.state.NetworkSettings`); ``DELETE`` leaves;
* ``GET /moon``, ``GET /moon/<id>``; ``POST``/``PUT /moon/<id>`` with ``{"seed": "<root>"}``
  orbits (``zerotier-cli orbit``), ``DELETE /moon/<id>`` deorbits;
* ``GET /bond/show/<address>``, ``POST /bond/rotate/<address>``: bonds (see
  :mod:`ztnode.transport.bondapi`, which also adds the bond's fields to ``/peer``);
* ``GET /metrics``: Prometheus text (ZeroTierOne 1.12+'s metric names where ztnode has the same
  quantity, ``ztnode_*`` for the rest), authorised by the API token or by
  ``metricstoken.secret``.

ztnode adds ``GET /counters`` (packets, bytes and drops by reason as JSON, since a drop must
always be visible) and, in ``/network``, ``stackAddresses``: the addresses the network's IP
stack actually holds (none with ``allowManaged`` off), beside the ``assignedAddresses`` the
controller gave.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ztnode._version import __version__
from ztnode.core.network import Network
from ztnode.core.node import Node
from ztnode.core.peer import PEER_PATH_EXPIRATION, Peer
from ztnode.errors import DecodeError
from ztnode.identity import address_from_str, address_to_str
from ztnode.netstack.host import Host
from ztnode.netstack.stack import IpStack
from ztnode.transport import fastpath
from ztnode.transport.bondapi import add_bond_to_peer_json, bond_metrics, register_bond_routes
from ztnode.transport.httpapi import HttpError, JsonApi, RawResponse, Request
from ztnode.transport.localconf import LocalConf, LocalConfError
from ztnode.transport.service import NodeService
from ztnode.transport.ssoflow import SsoLogins, register_sso_routes
from ztnode.transport.state import SETTING_NAMES, NetworkSettings
from ztnode.wire.constants import SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION, Verb
from ztnode.wire.mac import mac_to_str
from ztnode.wire.rules import rules_to_json
from ztnode.wire.world import World


def peer_json(node: Node, peer: Peer, now: int, tunneled: bool = False) -> dict[str, Any]:
    """One peer as ZeroTierOne's ``/peer`` shows it. ``tunneled`` is the service's TCP
    fallback state, shown on every peer as the reference shows it."""
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
                "trustedPathId": node.physical.outbound_trust(p.remote[0]),
            }
        )
    pj = {
        "address": address_to_str(peer.address),
        "isBonded": False,
        "latency": -1 if latency is None else latency,
        "paths": paths,
        "role": node.topology.role(peer.address),
        "tunneled": tunneled,
        "version": f"{major}.{minor}.{rev}" if proto else "-1.-1.-1",
        "versionMajor": major if proto else -1,
        "versionMinor": minor if proto else -1,
        "versionRev": rev if proto else -1,
        "protocolVersion": proto if proto else -1,
    }
    add_bond_to_peer_json(node, peer, pj, now)
    return pj


def network_json(
    net: Network,
    settings: NetworkSettings | None = None,
    stack: IpStack | None = None,
    sso: SsoLogins | None = None,
) -> dict[str, Any]:
    """A joined network as ZeroTierOne's ``/network`` reports it, with its local ``settings``
    and (ztnode's ``stackAddresses``) the addresses its IP ``stack`` holds; ``sso``: the
    version-1 logins, whose URL and expiry it shows."""
    cfg = net.config
    nwid = f"{net.id:016x}"
    conf_sso = cfg.sso if cfg is not None else None
    auth = net.auth_info
    # Where to log in: the controller's AUTHENTICATION_REQUIRED info, else the config's; for
    # version 1 the URL the login module made (the central endpoint is no page for a user).
    login_url = (
        auth.login_url if auth is not None else (conf_sso.authentication_url if conf_sso else "")
    )
    expiry = conf_sso.authentication_expiry_time if conf_sso else 0
    if (auth is not None and auth.version == 1) or (conf_sso is not None and conf_sso.version == 1):
        login_url = (sso.login_url(net.id) if sso is not None else None) or ""
        expiry = sso.expiry_ms.get(net.id, expiry) if sso is not None else expiry
    return {
        **(settings or NetworkSettings()).as_json(),
        "assignedAddresses": [str(a) for a in net.assigned_addresses()],
        "authenticationURL": login_url,
        "authenticationExpiryTime": expiry,
        "ssoEnabled": bool(conf_sso and conf_sso.enabled) or auth is not None,
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
        "multicastSubscriptions": [
            {"mac": mac_to_str(mac), "adi": adi} for mac, adi in sorted(net.subscriptions)
        ],
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
        "rules": rules_to_json(cfg.rules) if cfg is not None else [],
        "status": net.status.value,
        "type": "PUBLIC" if cfg is not None and cfg.is_public else "PRIVATE",
        "stackAddresses": [str(a) for a in stack.addresses] if stack is not None else [],
    }


def moon_json(world: World) -> dict[str, Any]:
    """A moon as ZeroTierOne's ``/moon`` reports it."""
    return {
        "id": f"{world.id:016x}",
        "timestamp": world.timestamp,
        "signature": world.signature.hex(),
        "updatesMustBeSignedBy": world.update_key.hex(),
        "roots": [
            {"identity": r.identity.to_string(), "stableEndpoints": [str(e) for e in r.endpoints]}
            for r in world.roots
        ],
        "waiting": False,
    }


def waiting_moon_json(world_id: int) -> dict[str, Any]:
    """A moon we orbit but have not received yet (ZeroTierOne's answer to an orbit)."""
    return {
        "id": f"{world_id:016x}",
        "timestamp": 0,
        "signature": None,
        "updatesMustBeSignedBy": None,
        "roots": [],
        "waiting": True,
    }


# --- /metrics --------------------------------------------------------------------------------

# ZeroTierOne's packet_type label for each verb (node/Metrics.cpp).
_PACKET_TYPES: dict[str, str] = {v.name: v.name.lower() for v in Verb} | {
    Verb.QOS_MEASUREMENT.name: "qos",
}
_UNLISTED_VERBS = (Verb.UNASSIGNED_0F, Verb.DEPRECATED_11)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    """Prometheus text exposition format 0.0.4: HELP and TYPE, then one sample per line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], int | float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            self.lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


#: One metric family as a layer above the transport reports it: name, kind, help, samples.
MetricFamily = tuple[str, str, str, list[tuple[Mapping[str, str], int | float]]]


def render_metrics(
    node: Node,
    host: Host | None,
    now: int,
    extra: Iterable[Callable[[], list[MetricFamily]]] = (),
) -> str:
    """The node's metrics in Prometheus text format.

    ZeroTierOne's names (node/Metrics.cpp) where ztnode has the same quantity: ``zt_packet``
    (received packets by verb; ztnode does not count sent packets by verb), ``zt_data`` (UDP
    bytes), ``zt_num_networks``, ``zt_network_multicast_groups_subscribed``,
    ``zt_peer_path_count``. ztnode's own, as ``ztnode_*``: datagrams, drops by reason, peers by
    role, paths, the cipher suites of authenticated packets, online, and per network what its
    rules decided, the IP stack's drops and TCP retransmissions (connections gone included).
    """
    c = node.counters
    m = _Exposition()
    verbs = dict(c.verbs_in)
    rx = [
        ({"packet_type": _PACKET_TYPES[v.name], "direction": "rx"}, verbs.pop(v.name, 0))
        for v in Verb
        if v not in _UNLISTED_VERBS
    ]
    rx += [({"packet_type": k.lower(), "direction": "rx"}, n) for k, n in sorted(verbs.items())]
    m.family("zt_packet", "counter", "ZeroTier packet type counts", rx)
    m.family(
        "zt_data",
        "counter",
        "number of bytes ZeroTier has transmitted or received",
        [
            ({"protocol": "udp", "direction": "rx"}, c.bytes_in),
            ({"protocol": "udp", "direction": "tx"}, c.bytes_out),
        ],
    )
    nets = sorted(node.networks.items())
    m.family(
        "zt_num_networks",
        "gauge",
        "number of networks this instance is joined to",
        [({}, len(nets))],
    )
    m.family(
        "zt_network_multicast_groups_subscribed",
        "gauge",
        "number of multicast groups networks are subscribed to",
        [({"network_id": f"{nwid:016x}"}, len(net.subscriptions)) for nwid, net in nets],
    )
    peers = sorted(node.peers.values(), key=lambda p: p.address)
    path_samples: list[tuple[Mapping[str, str], int]] = []
    alive_total = dead_total = 0
    for p in peers:
        alive = sum(1 for slot in p.paths if slot.path.alive(now))
        dead = len(p.paths) - alive
        alive_total += alive
        dead_total += dead
        node_id = address_to_str(p.address)
        path_samples.append(({"node_id": node_id, "status": "alive"}, alive))
        path_samples.append(({"node_id": node_id, "status": "dead"}, dead))
    m.family("zt_peer_path_count", "gauge", "number of paths to peer", path_samples)

    m.family(
        "ztnode_packets_total",
        "counter",
        "UDP datagrams received and sent (ZeroTier packets and fragments)",
        [({"direction": "rx"}, c.packets_in), ({"direction": "tx"}, c.packets_out)],
    )
    m.family(
        "ztnode_drops_total",
        "counter",
        "received datagrams and packets dropped, by reason",
        [({"reason": r}, n) for r, n in sorted(c.drops.items())],
    )
    m.family(
        "ztnode_route_cache_full_total",
        "counter",
        "times the table of remembered FRAME routes was full and emptied (core/routecache.py)",
        [({}, node.frames.routes.overflows)],
    )
    m.family(
        "ztnode_packet_cipher_total",
        "counter",
        "authenticated packets received, by cipher suite",
        [({"cipher": k}, n) for k, n in sorted(c.ciphers_in.items())],
    )
    m.family(
        "ztnode_packet_cipher_out_total",
        "counter",
        "packets sent, by cipher suite (NONE_TRUSTED_PATH: over trusted paths)",
        [({"cipher": k}, n) for k, n in sorted(c.ciphers_out.items())],
    )
    roles: dict[str, int] = {"PLANET": 0, "MOON": 0, "LEAF": 0}
    for p in peers:
        role = node.topology.role(p.address)
        roles[role] = roles.get(role, 0) + 1
    m.family(
        "ztnode_peers",
        "gauge",
        "peers known, by role",
        [({"role": r.lower()}, n) for r, n in roles.items()],
    )
    m.family(
        "ztnode_paths",
        "gauge",
        "paths to peers, alive or not",
        [({"status": "alive"}, alive_total), ({"status": "dead"}, dead_total)],
    )
    m.family("ztnode_online", "gauge", "1 when the node is online", [({}, int(node.online))])
    m.family(
        "ztnode_network_filter_total",
        "counter",
        "frames judged by the network's rules, by direction and outcome",
        [
            ({"network_id": f"{nwid:016x}", "direction": d, "outcome": o}, n)
            for nwid, net in nets
            for (d, o), n in sorted(net.enforcer.counts.items())
        ],
    )
    stacks = sorted(host.stacks.items()) if host is not None else []
    rexmit = [(f"{nwid:016x}", st.tcp_retransmits()) for nwid, st in stacks]
    m.family(
        "ztnode_tcp_retransmitted_bytes_total",
        "counter",
        "TCP payload bytes retransmitted by the network's IP stack",
        [({"network_id": nwid}, b) for nwid, (b, _) in rexmit],
    )
    m.family(
        "ztnode_tcp_retransmitted_segments_total",
        "counter",
        "TCP segments retransmitted by the network's IP stack",
        [({"network_id": nwid}, n) for nwid, (_, n) in rexmit],
    )
    m.family(
        "ztnode_stack_drops_total",
        "counter",
        "frames and packets the network's IP stack dropped, by reason",
        [
            ({"network_id": f"{nwid:016x}", "reason": r}, n)
            for nwid, st in stacks
            for r, n in sorted(st.counters.items())
        ],
    )
    bond_metrics(node, m, now)
    for source in extra:
        for name, kind, help_text, samples in source():
            m.family(name, kind, help_text, samples)
    return m.text()


def _world_id(text: str) -> int:
    """A moon id: up to 16 hex digits (``zerotier-cli`` sends 10, the JSON shows 16)."""
    try:
        if not 1 <= len(text) <= 16:
            raise ValueError
        value = int(text, 16)
    except ValueError:
        raise HttpError(400, "a moon id is up to 16 hex digits") from None
    if value == 0:
        raise HttpError(400, "moon id 0 is not valid")
    return value


def _settings_changes(body: dict[str, Any]) -> dict[str, bool]:
    """The local settings a ``POST /network/<nwid>`` body sets, by field name."""
    changes: dict[str, bool] = {}
    for field, name in SETTING_NAMES.items():
        if name not in body:
            continue
        value = body[name]
        if not isinstance(value, bool):
            raise HttpError(400, f"{name} must be true or false, not {value!r}")
        changes[field] = value
    return changes


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


def build_api(
    service: NodeService,
    token: str | None,
    metrics_token: str | None = None,
    sso: SsoLogins | None = None,
) -> JsonApi:
    """The local API's routes; with ``sso``, ``GET /sso`` completes its logins."""
    api = JsonApi(token)
    if metrics_token:
        api.path_tokens["/metrics"] = metrics_token

    def node() -> Node:
        if service.node is None:
            raise HttpError(503, "the node is starting")
        return service.node

    def tunnel_active() -> bool:
        relay = service.tcp_relay
        return relay is not None and relay.active

    def tcp_relay_json() -> dict[str, Any]:
        """ztnode's own keys: the tunnel's counters, and the relay's when this node is one."""
        out: dict[str, Any] = {}
        relay = service.tcp_relay
        if relay is not None:
            out["tcpFallbackCounters"] = dict(relay.counters)
        server = service.tcp_relay_server
        if server is not None:
            out["tcpRelay"] = {
                "listen": f"{server.listen[0]}/{server.listen[1]}",
                "clients": len(server.clients),
                "counters": dict(server.counters),
            }
        return out

    async def status(req: Request) -> Any:
        n = node()
        relay = service.tcp_relay
        now = service.clock.now()
        listening = [f"{a[0]}/{a[1]}" for a in service.endpoints]
        surfaces = [str(a) for a in n.selfaware.surfaces(now)]
        mapped = service.mapped_address()
        if mapped is not None and str(mapped) not in surfaces:
            surfaces.append(str(mapped))  # as the router told us, before any peer does
        conf = service.local_conf
        # As the reference: local.conf's settings, with the values in force filled in.
        settings = dict(conf.settings)
        settings.update(
            {
                # In force: bonding turns both off, as in the reference.
                "allowTcpFallbackRelay": relay is not None and relay.decider.enabled,
                "forceTcpRelay": relay is not None and relay.force,
                "homeDir": str(service.home.path.resolve()),
                "listeningOn": listening,
                "portMappingEnabled": service.tertiary_port != 0,
                "primaryPort": service.port,
                "secondaryPort": service.secondary.port,
                "softwareUpdate": "disable",
                "softwareUpdateChannel": "release",
                "surfaceAddresses": surfaces,
                "tertiaryPort": service.tertiary_port,
            }
        )
        return {
            "address": address_to_str(n.address),
            "clock": now,
            "config": {"settings": settings},
            "online": n.online,
            "planetWorldId": n.topology.planet.id,
            "planetWorldTimestamp": n.topology.planet.timestamp,
            "publicIdentity": n.identity.to_string(),
            "tcpFallbackActive": tunnel_active(),
            "version": f"{SOFTWARE_MAJOR}.{SOFTWARE_MINOR}.{SOFTWARE_REVISION}",
            "versionBuild": 0,
            "versionMajor": SOFTWARE_MAJOR,
            "versionMinor": SOFTWARE_MINOR,
            "versionRev": SOFTWARE_REVISION,
            "ztnodeVersion": __version__,
            "counters": n.counters.as_dict(),
            "fastPath": fastpath.report().as_dict(),
            **tcp_relay_json(),
        }

    async def peers(req: Request) -> Any:
        n = node()
        now = service.clock.now()
        tunneled = tunnel_active()
        peers = sorted(n.peers.values(), key=lambda p: p.address)
        return [peer_json(n, p, now, tunneled) for p in peers]

    async def one_peer(req: Request) -> Any:
        n = node()
        try:
            addr = address_from_str(req.params["address"])
        except ValueError:
            raise HttpError(400, "a peer address is 10 hex digits") from None
        p = n.peers.get(addr)
        if p is None:
            raise HttpError(404, f"no peer {req.params['address']}")
        return peer_json(n, p, service.clock.now(), tunnel_active())

    async def counters(req: Request) -> Any:
        return node().counters.as_dict()

    def net_json(net: Network) -> dict[str, Any]:
        stack = service.host.stack(net.id) if service.host is not None else None
        return network_json(net, service.settings(net.id), stack, sso)

    async def networks(req: Request) -> Any:
        n = node()
        return [net_json(net) for _, net in sorted(n.networks.items())]

    async def one_network(req: Request) -> Any:
        net = node().network(_nwid(req.params["nwid"]))
        if net is None:
            raise HttpError(404, f"not a member of network {req.params['nwid']}")
        return net_json(net)

    async def join(req: Request) -> Any:
        """Join (if not yet a member) and apply any local settings in the body, as
        ZeroTierOne's ``POST /network/<nwid>`` does."""
        nwid = _nwid(req.params["nwid"])
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        changes = _settings_changes(body)
        node()
        service.join(nwid)
        if changes:
            service.update_settings(nwid, **changes)
        net = node().network(nwid)
        assert net is not None
        return net_json(net)

    async def leave(req: Request) -> Any:
        nwid = _nwid(req.params["nwid"])
        if not service.leave(nwid):
            raise HttpError(404, f"not a member of network {req.params['nwid']}")
        return {"result": True}

    def moon_list() -> list[dict[str, Any]]:
        topo = node().topology
        out = [moon_json(w) for _, w in sorted(topo.moons.items())]
        out += [waiting_moon_json(wid) for wid in sorted(topo.seeds) if wid not in topo.moons]
        return out

    async def moons(req: Request) -> Any:
        return moon_list()

    async def one_moon(req: Request) -> Any:
        wid = f"{_world_id(req.params['id']):016x}"
        for m in moon_list():
            if m["id"] == wid:
                return m
        raise HttpError(404, f"not orbiting moon {req.params['id']}")

    async def orbit(req: Request) -> Any:
        """Orbit through ``{"seed": "<root address>"}``; a moon we have is returned as is."""
        world_id = _world_id(req.params["id"])
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        world = node().topology.moons.get(world_id)
        if world is not None:
            return moon_json(world)
        seed_text = body.get("seed")
        try:
            if not isinstance(seed_text, str) or not 1 <= len(seed_text) <= 10:
                raise ValueError
            seed = int(seed_text, 16)
        except ValueError:
            raise HttpError(
                400, 'orbiting needs {"seed": "<address of one of the moon\'s roots>"}'
            ) from None
        if seed == 0 or seed == node().address:
            raise HttpError(400, f"{seed_text} cannot be a seed")
        service.orbit(world_id, seed)
        return waiting_moon_json(world_id)

    async def deorbit(req: Request) -> Any:
        service.deorbit(_world_id(req.params["id"]))
        return {"result": True}

    async def metrics(req: Request) -> Any:
        text = render_metrics(node(), service.host, service.clock.now(), service.metric_sources)
        return RawResponse(text.encode())

    api.route("GET", "/network", networks)
    api.route("GET", "/network/{nwid}", one_network)
    api.route("POST", "/network/{nwid}", join)
    api.route("PUT", "/network/{nwid}", join)
    api.route("DELETE", "/network/{nwid}", leave)

    async def health(req: Request) -> Any:
        """ZeroTierOne's ``/health``: served without the token, for load balancers and
        monitors (online and version only, nothing about peers or networks)."""
        n = node()
        return {
            "online": n.online,
            "versionMajor": SOFTWARE_MAJOR,
            "versionMinor": SOFTWARE_MINOR,
            "versionRev": SOFTWARE_REVISION,
            "versionBuild": 0,
            "version": f"{SOFTWARE_MAJOR}.{SOFTWARE_MINOR}.{SOFTWARE_REVISION}",
            "clock": int(time.time() * 1000),
        }

    async def config_get(req: Request) -> Any:
        try:
            return service.home.load_local_conf()
        except DecodeError as e:
            raise HttpError(500, str(e)) from None

    async def config_settings(req: Request) -> Any:
        """Merge the body into ``local.conf``'s ``settings`` and apply it at once (ZeroTierOne
        writes the file and its watcher applies it within 10 s); ``{}`` as the reference
        answers. A value that fails the check is refused (400, the key named) and nothing is
        written, where the reference would write it."""
        try:
            body = req.json()
        except (RecursionError, ValueError) as e:
            raise HttpError(400, f"malformed JSON body: {str(e)[:200]}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body is an object of local.conf settings")
        try:
            current = service.home.load_local_conf()
        except DecodeError as e:
            raise HttpError(500, str(e)) from None
        try:
            LocalConf.parse({**current, "settings": {**current.get("settings", {}), **body}})
        except LocalConfError as e:
            raise HttpError(400, str(e), {"key": e.key}) from None
        try:
            service.home.update_local_settings(body)
        except DecodeError as e:
            raise HttpError(500, str(e)) from None
        service.reload_local_conf()
        return {}

    api.route("GET", "/status", status)
    api.route("GET", "/health", health, public=True)
    api.route("GET", "/config", config_get)
    for method in ("POST", "PUT"):
        api.route(method, "/config/settings", config_settings)
    api.route("GET", "/peer", peers)
    api.route("GET", "/peer/{address}", one_peer)
    api.route("GET", "/counters", counters)
    api.route("GET", "/moon", moons)
    api.route("GET", "/moon/{id}", one_moon)
    api.route("POST", "/moon/{id}", orbit)
    api.route("PUT", "/moon/{id}", orbit)
    api.route("DELETE", "/moon/{id}", deorbit)
    api.route("GET", "/metrics", metrics)
    register_bond_routes(api, service)
    if sso is not None:
        register_sso_routes(api, sso)
    return api


async def serve_local_api(service: NodeService, port: int = 0) -> tuple[JsonApi, int]:
    """Start the node's local API on 127.0.0.1 (with the controller's routes when the node
    runs one) and record its port in ``ztnode.port`` for the CLI; returns the API and port."""
    sso = SsoLogins(lambda: service.node)
    api = build_api(service, service.home.auth_token(), service.home.metrics_token(), sso)
    if service.controller is not None:
        from ztnode.transport.controllerapi import register_controller_routes

        register_controller_routes(
            api, service.controller, service.clock.now, service.controller_changed
        )
    from ztnode.transport.console import register_console_routes

    register_console_routes(api)

    def management_allowed(ip: str) -> bool:  # by the local.conf in force at each request
        return service.local_conf.management_allowed(ip)

    api.allow_remote = management_allowed
    bound = await api.start(api_hosts(service.local_conf), port)
    sso.redirect_port = bound  # the provider sends the user back here
    service.subscribe(sso.on_event)

    def conf_changed(conf: LocalConf) -> None:
        asyncio.get_running_loop().create_task(api.rebind(api_hosts(conf)))

    service.local_conf_listeners.append(conf_changed)
    (service.home.path / "ztnode.port").write_text(f"{bound}\n")
    return api, bound


def api_hosts(conf: LocalConf) -> tuple[str, ...]:
    """Loopback, or every address when ``allowManagementFrom`` lets others in (each client
    is then checked against it, and still needs the token)."""
    if not conf.allow_management_from:
        return ("127.0.0.1",)
    return ("0.0.0.0", "::") if socket.has_ipv6 else ("0.0.0.0",)
