"""Bonds in the local API, as ``zerotier-one`` shows them (service/OneService.cpp).

* ``GET /peer`` and ``GET /peer/<address>``: a bonded peer carries ``isBonded``,
  ``bondingPolicyCode``/``Str``, ``numAliveLinks``/``numTotalLinks``, the bond's timers, and per
  path ``ifname``, ``latencyMean``, ``latencyVariance``, ``packetLossRatio``,
  ``packetErrorRatio``, ``assignedFlowCount``, ``lastInAge``/``lastOutAge``, ``bonded``,
  ``eligible``, ``givenLinkSpeed``, ``relativeQuality`` (the reference's names);
* ``GET /bond/show/<address>``: that peer with ``linkSelectMethod``;
* ``POST /bond/rotate/<address>``: active-backup moves to its next path;
* ``POST /bond/setmtu/<mtu>/<ifname>/<remote ip>``: the MTU of the bonded paths on that
  interface to that address (ZeroTier fragments above it).

ztnode adds per path what its monitor measures (``probeRtt``, ``probeLoss``, ``throughput``
from the peer's ACKs, bytes each way, ``active``) and ``/metrics`` families for each bonded
path (``ztnode_bond_*``). The loss and error ratios stay 0 as in ZeroTierOne 1.14.1, which
never computes them; ``probeLoss`` is the share of ztnode's own heartbeats that went
unanswered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ztnode.core.bond import Bond
from ztnode.core.bond.link import BondPath
from ztnode.core.node import Node
from ztnode.core.peer import Peer
from ztnode.identity import address_from_str, address_to_str
from ztnode.transport.httpapi import HttpError, JsonApi, Request
from ztnode.wire.constants import MAX_PHYSMTU, MIN_PHYSMTU

if TYPE_CHECKING:
    from ztnode.transport.localapi import _Exposition
    from ztnode.transport.service import NodeService


def bond_fields(bond: Bond) -> dict[str, Any]:
    """The peer-level fields of a bonded peer."""
    t = bond.template
    return {
        "isBonded": True,
        "bondingPolicyCode": int(bond.policy),
        "bondingPolicyStr": bond.policy.label,
        "numAliveLinks": sum(1 for bp in bond.paths if bp.eligible),
        "numTotalLinks": len(bond.paths),
        "failoverInterval": t.failover_interval,
        "downDelay": t.down_delay,
        "upDelay": t.up_delay,
        "packetsPerLink": t.packets_per_link,
        "linkSelectMethod": int(t.reselect),
        "policyName": t.name,
        "failovers": bond.failovers,
    }


def bond_path_fields(bond: Bond, bp: BondPath, now: int) -> dict[str, Any]:
    rtt = bp.rtt
    return {
        "ifname": bp.link.name,
        "latencyMean": bp.qos.latency,
        "latencyVariance": bp.qos.latency_variance,
        "packetLossRatio": 0.0,
        "packetErrorRatio": 0.0,
        "assignedFlowCount": bp.assigned_flows,
        "lastInAge": now - bp.last_in,
        "lastOutAge": now - bp.path.last_out,
        "bonded": bp.bonded,
        "eligible": bp.eligible,
        "givenLinkSpeed": bp.link.capacity,
        "relativeQuality": bp.relative_quality,
        "active": bond.active is bp,
        "probeRtt": -1.0 if rtt is None else round(rtt, 2),
        "probeLoss": bp.probe_loss,
        "throughput": round(bp.throughput),
        "bytesIn": bp.bytes_in,
        "bytesOut": bp.bytes_out,
    }


def add_bond_to_peer_json(node: Node, peer: Peer, pj: dict[str, Any], now: int) -> None:
    """Fill a peer's JSON (``peer_json``, whose ``paths`` follow ``peer.paths``) with its
    bond, if it has one."""
    bond = node.bond(peer.address)
    if bond is None:
        return
    pj.update(bond_fields(bond))
    for slot, pa in zip(peer.paths, pj.get("paths", ()), strict=False):
        bp = bond.find(slot.path)
        if bp is not None:
            pa.update(bond_path_fields(bond, bp, now))


def bond_metrics(node: Node, m: _Exposition, now: int) -> None:
    """``ztnode_bond_*`` families: per bonded path its state and figures."""
    rows = [
        (
            {
                "node_id": address_to_str(address),
                "path": f"{bp.path.local[0]}/{bp.path.local[1]}->{bp.path.remote[0]}/"
                f"{bp.path.remote[1]}",
                "ifname": bp.link.name,
            },
            bond,
            bp,
        )
        for address, bond in sorted(node.bonds.bonds.items())
        for bp in bond.paths
    ]
    m.family(
        "ztnode_bond_path_eligible",
        "gauge",
        "1 while the bond may use the path",
        [(labels, int(bp.eligible)) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_active",
        "gauge",
        "1 for the path active-backup sends on",
        [(labels, int(bond.active is bp)) for labels, bond, bp in rows],
    )
    m.family(
        "ztnode_bond_path_latency_ms",
        "gauge",
        "mean latency from QoS reports, as ZeroTierOne computes it",
        [(labels, bp.qos.latency) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_jitter_ms",
        "gauge",
        "latency variation (PDV) from QoS reports",
        [(labels, bp.qos.latency_variance) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_probe_rtt_ms",
        "gauge",
        "smoothed round trip of the bond's heartbeats on the path (-1 before one returned)",
        [(labels, -1.0 if bp.rtt is None else bp.rtt) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_probe_loss_ratio",
        "gauge",
        "share of recent heartbeats on the path that went unanswered",
        [(labels, bp.probe_loss) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_throughput_bytes_per_second",
        "gauge",
        "what the peer says it received from us on the path (ACK), smoothed",
        [(labels, round(bp.throughput)) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_path_bytes_total",
        "counter",
        "bytes the bond sent and received on the path",
        [({**labels, "direction": "tx"}, bp.bytes_out) for labels, _, bp in rows]
        + [({**labels, "direction": "rx"}, bp.bytes_in) for labels, _, bp in rows],
    )
    m.family(
        "ztnode_bond_failovers_total",
        "counter",
        "times active-backup moved a peer to another path after the first choice",
        [
            ({"node_id": address_to_str(a)}, b.failovers)
            for a, b in sorted(node.bonds.bonds.items())
        ],
    )


def register_bond_routes(api: JsonApi, service: NodeService) -> None:
    """``/bond/show/<address>`` and ``/bond/rotate/<address>`` on the local API."""
    from ztnode.transport.localapi import peer_json

    def bonded(req: Request) -> tuple[Node, int]:
        node = service.node
        if node is None:
            raise HttpError(503, "the node is not running")
        try:
            address = address_from_str(req.params["address"])
        except ValueError:
            raise HttpError(400, "a peer address is 10 hex digits") from None
        if node.bond(address) is None or address not in node.peers:
            raise HttpError(404, f"no bond with {req.params['address']}")
        return node, address

    async def show(req: Request) -> Any:
        node, address = bonded(req)
        return peer_json(node, node.peers[address], service.clock.now())

    async def rotate(req: Request) -> Any:
        node, address = bonded(req)
        if not service.call(lambda n, now: n.rotate_bond(address, now)):
            raise HttpError(400, "only active-backup with a path in its queue rotates")
        return peer_json(node, node.peers[address], service.clock.now())

    async def setmtu(req: Request) -> Any:
        node = service.node
        if node is None or not node.bonds.in_use:
            raise HttpError(400, "Bonding layer isn't active yet")
        try:
            mtu = int(req.params["mtu"])
        except ValueError:
            raise HttpError(400, "the MTU is a number") from None
        if not MIN_PHYSMTU <= mtu <= MAX_PHYSMTU:
            raise HttpError(400, f"an MTU from {MIN_PHYSMTU} to {MAX_PHYSMTU}, please")
        ifname, ip = req.params["ifname"], req.params["ip"]
        if not service.call(lambda n, now: n.bonds.set_mtu(mtu, ifname, ip)):
            raise HttpError(400, "Unable to find specified link")
        return {}

    api.route("GET", "/bond/show/{address}", show)
    api.route("POST", "/bond/rotate/{address}", rotate)
    api.route("PUT", "/bond/rotate/{address}", rotate)
    api.route("POST", "/bond/setmtu/{mtu}/{ifname}/{ip}", setmtu)
    api.route("PUT", "/bond/setmtu/{mtu}/{ifname}/{ip}", setmtu)
