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
