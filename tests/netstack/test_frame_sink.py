"""The node hands received frames straight to the host's stack (``Node.frame_sink``) instead
of as ``FrameReceived`` events, except when order or another consumer needs the event."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.ipworld import IpWorld, ip_udp
from ztnode.core import events as ev
from ztnode.core.node import Node


def _udp_once(world: IpWorld, port: int, data: bytes) -> bytes | None:
    return ip_udp(world, world.a, world.b, port, data, wait_ms=2_000)


def _count_frame_events(node: Node) -> list[int]:
    """Wrap the node's event queue so every FrameReceived appended is counted."""
    seen = [0]
    queue = node.events
    append = queue.append

    class Counting(type(queue)):  # type: ignore[misc]
        pass

    def counted(e: ev.Event) -> None:
        if isinstance(e, ev.FrameReceived):
            seen[0] += 1
        append(e)

    wrapped = Counting(queue)
    wrapped.append = counted  # type: ignore[method-assign]
    node.events = wrapped
    return seen


def test_frames_reach_the_stack_without_events(tmp_path: Path) -> None:
    world = IpWorld(tmp_path, seed=31)
    assert _udp_once(world, 4000, b"warm") == b"warm"
    seen = _count_frame_events(world.b.node)
    assert _udp_once(world, 4001, b"direct") == b"direct"
    assert seen[0] == 0  # the sink took the frame: no event object was made


def test_a_tap_or_a_pending_event_keeps_the_event_path(tmp_path: Path) -> None:
    world = IpWorld(tmp_path, seed=32)
    b = world.b
    assert _udp_once(world, 4000, b"warm") == b"warm"
    tapped: list[ev.FrameReceived] = []
    b.frame_taps[world.nwid] = [tapped.append]
    assert _udp_once(world, 4002, b"tapped") == b"tapped"
    assert any(b"tapped" in f.payload for f in tapped)  # the tap saw it, then the stack did
    b.frame_taps.clear()
    # With another event waiting in the node, a frame queues behind it instead of jumping it.
    node = b.node
    net = node.network(world.nwid)
    assert net is not None
    assert node.frame_sink is not None
    marker = ev.NetworkStatusChanged(world.nwid, net.status)
    node.events.append(marker)
    taken = node.frame_sink(world.nwid, 0x020000000001, net.mac, 0x0800, b"")
    assert taken  # the sink itself takes it (a malformed IP packet the stack counts) ...
    delivered = node.frames.deliver_frame(
        net, 0x0102030405, 0x020000000001, net.mac, 0x88B5, b"x", 0
    )
    assert delivered
    kinds = [type(e) for e in node.events]
    assert kinds[:2] == [ev.NetworkStatusChanged, ev.FrameReceived]  # ... but not past an event
    node.events.clear()


def test_a_frame_the_transport_checked_skips_the_sums_and_vouches_for_nothing_else(
    tmp_path: Path,
) -> None:
    """An input the transport marks ``checked`` (C verified its IPv4 header and TCP checksums,
    ``ZT_RX_PLAIN_CHECKED``) reaches the TCP fast path with that said, and the mark ends with its
    frame. Shown with a segment whose TCP checksum is wrong: refused when unmarked, taken
    when marked (the sums are not done again), and the mark gone after either, also after a
    marked packet that carried no frame."""
    from tests.helpers.ipworld import ip_connect
    from ztnode.core.records import Inbound, InboundKind
    from ztnode.netstack.tso import TcpBurst
    from ztnode.wire import packet as pk
    from ztnode.wire.constants import Verb

    world = IpWorld(tmp_path, seed=33)
    a, b = world.a, world.b
    c = ip_connect(world, a, b, world.v4(b), 7000)
    s = next(x for x in world.stack(b)._tcp.values() if x.remote == c.local)
    c.send(b"hello")
    frames = world.stack(a).frames_to_send(world.now)  # taken here: a never sends them
    tcp = [f for f in frames if f[1] == 0x0800]
    assert len(tcp) == 1
    first = tcp[0][2]
    ip = bytearray(first.packets()[0] if isinstance(first, TcpBurst) else first)
    ip[20 + 16] ^= 0xFF  # the TCP checksum, wrong now
    key = b.node.peers[a.node.address].key
    local, remote = world.w.addresses[b.node.address], world.w.addresses[a.node.address]
    pids = iter(range(1000, 2000))

    def inbound(verb: Verb, body: bytes, checked: bool) -> Inbound:
        clear = pk.new_packet(
            next(pids).to_bytes(8, "big"), b.node.address, a.node.address, verb, body
        )
        return Inbound(InboundKind.AUTHENTICATED, clear, local, remote, 1, -1, key, 1, (), checked)

    frame = world.nwid.to_bytes(8, "big") + (0x0800).to_bytes(2, "big") + bytes(ip)
    counters = world.stack(b).counters
    before = counters.get("tcp_checksum", 0)
    assert b.receive(inbound(Verb.FRAME, frame, False), world.now)
    assert counters.get("tcp_checksum", 0) == before + 1 and s.recv() == b""
    assert b.receive(inbound(Verb.NOP, b"", True), world.now)  # marked, no frame in it
    assert not b.node.rx_checked
    assert b.receive(inbound(Verb.FRAME, frame, False), world.now)  # still refused
    assert counters.get("tcp_checksum", 0) == before + 2 and s.recv() == b""
    assert b.receive(inbound(Verb.FRAME, frame, True), world.now)
    assert not b.node.rx_checked
    assert s.recv() == b"hello"
    assert counters.get("tcp_checksum", 0) == before + 2


def test_a_udp_datagram_the_transport_checked_is_not_summed_again(tmp_path: Path) -> None:
    """As for TCP above: a UDP datagram marked ``checked`` (C verified its IPv4 header and UDP
    checksums) reaches the socket without its sums done again. Shown with a wrong UDP
    checksum: refused (and counted) when unmarked, delivered when marked."""
    from ipaddress import IPv4Address

    from ztnode.core.records import Inbound, InboundKind
    from ztnode.netstack.tso import UdpOffload
    from ztnode.netstack.udpmux import _udp_head
    from ztnode.wire import packet as pk
    from ztnode.wire.constants import Verb

    world = IpWorld(tmp_path, seed=34)
    a, b = world.a, world.b
    assert _udp_once(world, 4000, b"warm") == b"warm"  # keys and paths in place
    sock = world.stack(b).udp_bind(None, 4100)
    src, dst = IPv4Address(world.v4(a)).packed, IPv4Address(world.v4(b)).packed
    ip = bytearray(UdpOffload(_udp_head(src, dst, 5555, 4100, 64), 9, b"ping").packet())
    ip[26] ^= 0xFF  # the UDP checksum, wrong now
    key = b.node.peers[a.node.address].key
    local, remote = world.w.addresses[b.node.address], world.w.addresses[a.node.address]
    pids = iter(range(3000, 4000))

    def inbound(body: bytes, checked: bool) -> Inbound:
        clear = pk.new_packet(
            next(pids).to_bytes(8, "big"), b.node.address, a.node.address, Verb.FRAME, body
        )
        return Inbound(InboundKind.AUTHENTICATED, clear, local, remote, 1, -1, key, 1, (), checked)

    frame = world.nwid.to_bytes(8, "big") + (0x0800).to_bytes(2, "big") + bytes(ip)
    counters = world.stack(b).counters
    before = dict(counters)
    assert b.receive(inbound(frame, False), world.now)
    assert sock.recv() is None and dict(counters) != before  # refused, and counted
    assert b.receive(inbound(frame, True), world.now)
    assert not b.node.rx_checked
    assert sock.recv() == (b"ping", (world.v4(a), 5555))
