"""The node's wiretap (``Node.tap``) and the host's sent-frame taps: a test or a diagnostic
sees the wire as the node saw it without replacing methods (which a compiled node forbids).

Checked against a pass-through participant between the fake network and the node: the tap
must see exactly the datagrams, timers and events that crossed the node's boundary, in order,
and name the datagram an event came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.data import test_identities
from tests.helpers.ipworld import IpWorld, ip_connect, ip_transfer, ip_udp
from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.core.records import Addr, Outgoing
from ztnode.core.tap import NodeTap
from ztnode.testing.world import LocalWorld

IDS = test_identities()


class Recorder:
    """A NodeTap keeping what it is told, with the datagram each event came from."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.current: tuple[bytes, Addr] | None = None
        self.causes: dict[int, tuple[bytes, Addr] | None] = {}

    def datagram_in(self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr) -> None:
        self.current = (bytes(data), remote)
        self.log.append(("in", self.current))

    def datagrams_out(self, datagrams: list[Outgoing]) -> None:
        self.log.extend(("out", (o.data, o.remote)) for o in datagrams)

    def timer(self) -> None:
        self.current = None
        self.log.append(("timer", None))

    def event(self, e: ev.Event) -> None:
        self.causes[id(e)] = self.current
        self.log.append(("event", e))


class Between:
    """The five verbs, passed through to a node and written down (the reference)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.log: list[tuple[str, Any]] = []

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None:
        self.log.append(("in", (bytes(data), remote)))
        self.node.receive_datagram(data, local, remote, now)

    def datagrams_to_send(self, now: int) -> list[Outgoing]:
        out = self.node.datagrams_to_send(now)
        self.log.extend(("out", (o.data, o.remote)) for o in out)
        return out

    def get_timer(self) -> int | None:
        return self.node.get_timer()

    def handle_timer(self, now: int) -> None:
        self.log.append(("timer", None))
        self.node.handle_timer(now)

    def next_event(self) -> ev.Event | None:
        e = self.node.next_event()
        if e is not None:
            self.log.append(("event", e))
        return e


def test_the_tap_sees_the_boundary_as_it_was_crossed() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=7)
    leaf, other = w.leaves
    between = Between(leaf)
    w.net.attach(between, *w.net.detach(leaf))
    rec = Recorder()
    tap: NodeTap = rec  # the protocol is what the node calls
    leaf.tap = tap
    assert w.run_until(w.all_online, 15_000)
    rid = leaf.send_echo(other.address, b"tapped", w.net.now)
    assert w.run_until(
        lambda: any(k == "event" and isinstance(e, ev.EchoReply) for k, e in between.log), 5_000
    )
    w.run_for(2_000)

    assert rec.log == between.log  # the same datagrams, timers and events, in the same order
    kinds = {k for k, _ in rec.log}
    assert kinds == {"in", "out", "timer", "event"}
    reply = next(e for k, e in rec.log if k == "event" and isinstance(e, ev.EchoReply))
    assert reply.request_id == rid and reply.payload == b"tapped"
    cause = rec.causes[id(reply)]
    assert cause is not None  # the OK(ECHO) came in a datagram, from the other leaf or the root
    assert cause[1] in (w.addresses[other.address], w.addresses[w.roots[0].address])
    assert int.from_bytes(cause[0][13:18], "big") == other.address  # its source: the other leaf

    # Untapped, the node runs as before and the tap hears nothing more.
    leaf.tap = None
    seen = len(rec.log)
    leaf.send_echo(other.address, b"untapped", w.net.now)
    w.run_for(2_000)
    assert len(rec.log) == seen
    assert len(between.log) > seen


def test_sent_taps_see_every_frame_a_stack_sends_as_on_the_wire(tmp_path: Path) -> None:
    world = IpWorld(tmp_path, seed=41)
    a, b = world.a, world.b
    sent: list[tuple[int, int, bytes]] = []
    a.sent_taps[world.nwid] = [lambda dst, et, payload: sent.append((dst, et, payload))]
    assert ip_udp(world, a, b, 4100, b"sent-tap") == b"sent-tap"
    udp = [p for _, et, p in sent if et == 0x0800 and p[9] == 17 and p.endswith(b"sent-tap")]
    assert udp, "the UDP datagram's frame was not shown"

    sent.clear()
    tx = ip_connect(world, a, b, world.v4(b), 4200)
    server = next(s for s in world.stack(b)._tcp.values() if s.remote == tx.local)
    ip_transfer(world, tx, server, 300_000, seed=5)
    mtu = world.stack(a).mtu
    tcp = [p for _, et, p in sent if et == 0x0800 and p[9] == 6]
    payload = sum(len(p) - (p[0] & 0x0F) * 4 - (p[32] >> 4) * 4 for p in tcp)
    assert payload >= 300_000  # every byte of the stream crossed the tap (plus retransmits)
    assert all(len(p) <= mtu for p in tcp)  # as on the wire: cut segments as their pieces
