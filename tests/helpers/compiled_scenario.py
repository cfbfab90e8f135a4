"""A deterministic run of the hot path, printed as one JSON line: what tests/test_compiled.py
runs once from the sources (``ZTNODE_PURE=1``) and once compiled, and compares.

    python -m tests.helpers.compiled_scenario HOME

Two members of an in-memory world (virtual time, seeded loss, duplication and reordering) move
TCP streams both ways over IPv4 and IPv6, then exchange UDP datagrams. The transcript is every
datagram the fake network carried (when, between which addresses, how long; not the bytes, which
hold random packet ids and MACs) and what each side received, hashed; the counters of both
stacks and nodes come along. Any difference in what the code decides (a segment size, a
retransmission, a timer, a drop) changes it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from tests.helpers.ipworld import IpWorld, ip_connect, ip_transfer
from ztnode import _compiled
from ztnode.testing.fakenet import LinkProfile


def run(home: Path) -> dict[str, Any]:
    world = IpWorld(home, LinkProfile(loss=0.05, duplicate=0.02, reorder=0.05, jitter_ms=2))
    net = world.w.net
    wire = hashlib.sha256()
    carried = [0]
    send = net._send

    def record(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        wire.update(f"{net.now} {local} {remote} {len(data)};".encode())
        carried[0] += 1
        send(local, remote, data)

    net._send = record  # type: ignore[method-assign]
    for family, port in (("v4", 7001), ("v6", 7002)):
        host = world.v4(world.b) if family == "v4" else world.v6(world.b)
        a_sock = ip_connect(world, world.a, world.b, host, port)
        server = next(s for s in world.stack(world.b)._tcp.values() if s.remote == a_sock.local)
        ip_transfer(world, a_sock, server, 1_000_000, seed=port)
        ip_transfer(world, server, a_sock, 500_000, seed=port + 1)
    rx = world.stack(world.b).udp_bind(None, 9000)
    tx = world.stack(world.a).udp_bind(None, 0)
    for i in range(20):
        tx.sendto(bytes([i]) * (50 + 40 * i), world.v4(world.b), 9000, world.now)
        world.w.run_for(20)
    world.w.run_for(1_000)
    got = []
    while (d := rx.recv()) is not None:
        got.append(len(d[0]))
    stacks = {
        side: dict(sorted(world.stack(h).counters.items()))
        for side, h in (("a", world.a), ("b", world.b))
    }
    nodes = {
        side: {
            "packets_in": h.node.counters.packets_in,
            "packets_out": h.node.counters.packets_out,
            "drops": dict(sorted((str(k), v) for k, v in h.node.counters.drops.items())),
        }
        for side, h in (("a", world.a), ("b", world.b))
    }
    return {
        "compiled": _compiled.active(),
        "now": world.now,
        "datagrams": carried[0],
        "wire": wire.hexdigest(),
        "udp": got,
        "stacks": stacks,
        "nodes": nodes,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1])), sort_keys=True))
