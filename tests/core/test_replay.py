"""Replay protection: a packet accepted once from a peer is not accepted again, from any source
address, while no legitimate packet is ever refused by it."""

from __future__ import annotations

from tests.core.test_node_fuzz import echo, feed, online_world
from ztnode.core import events as ev
from ztnode.core.replay import GENERATION_IDS, GENERATION_MS, ReplayWindow


def test_window_remembers_two_generations_and_no_more() -> None:
    w = ReplayWindow()
    assert w.accept(1, 0) and not w.accept(1, 5)
    assert w.accept(2, GENERATION_MS)  # a new generation; 1 is still in the previous one
    assert not w.accept(1, GENERATION_MS + 1)
    assert w.accept(3, 2 * GENERATION_MS)  # two rotations: 1 has aged out
    assert w.accept(1, 2 * GENERATION_MS + 1)
    busy = ReplayWindow()
    for i in range(10 * GENERATION_IDS):
        assert busy.accept(i, 0)  # distinct ids are never refused, however many
        assert len(busy) <= 2 * GENERATION_IDS
    assert not busy.accept(10 * GENERATION_IDS - 1, 0)  # the recent ones are remembered


def test_captured_datagrams_sent_again_are_dropped() -> None:
    """Every datagram a leaf received in a run of ECHOs, sent to it again byte for byte from its
    sender's address and from another one: none is accepted a second time, and no ECHO reply
    event is seen twice; then the world works as before."""
    w = online_world()
    a, b = w.leaves
    captured: list[bytes] = []
    w.net.taps.append(
        lambda local, remote, data: (
            captured.append(data)
            if local == w.addresses[b.address] and remote == w.addresses[a.address]
            else None
        )
    )
    for i in range(20):
        w.run_for(200)  # the answering side rate-limits ECHO per path (166 ms)
        assert echo(w, a, b, f"ping {i}".encode())
    w.net.taps.clear()
    assert captured
    replies = [e for e in w.net.events[id(a)] if isinstance(e, ev.EchoReply)]
    before = a.counters.drops["replayed"]
    for data in captured:
        feed(w, a, data, w.addresses[b.address])
        feed(w, a, data, ("10.77.0.9", 4444))
    w.run_for(1_000)
    assert (
        a.counters.drops["replayed"] >= 2 * len(captured) - before - 4
    )  # HELLO/keepalive pieces aside
    assert [e for e in w.net.events[id(a)] if isinstance(e, ev.EchoReply)] == replies
    w.run_for(200)
    assert echo(w, a, b, b"after the replays")


def test_joined_inputs_are_checked_packet_by_packet() -> None:
    """An input the transport authenticated and joined from several packets carries every
    packet's id: all replays, it is dropped; some fresh, it goes on, each replay counted."""
    from ztnode.core.records import Inbound, InboundKind
    from ztnode.wire import packet as pk
    from ztnode.wire.constants import Verb

    w = online_world()
    a, b = w.leaves
    peer = b.peer(a.address)
    assert peer is not None
    body = (0x1122334455667788).to_bytes(8, "big") + (0x0800).to_bytes(2, "big") + bytes(40)
    clear = bytes(pk.new_packet(bytes(8), b.address, a.address, Verb.FRAME, body))

    def inbound(ids: tuple[int, ...]) -> Inbound:
        return Inbound(
            InboundKind.AUTHENTICATED,
            bytearray(clear),
            w.addresses[b.address],
            w.addresses[a.address],
            len(ids),
            -1,
            peer.key,
            len(ids),
            ids,
        )

    replayed = b.counters.drops["replayed"]
    frames = b.counters.verbs_in["FRAME"]
    assert b.receive(inbound((11, 12, 13)), w.net.now)
    assert b.counters.verbs_in["FRAME"] == frames + 3
    assert b.receive(inbound((11, 12, 13)), w.net.now)  # all three again: dropped
    assert b.counters.drops["replayed"] == replayed + 3
    assert b.counters.verbs_in["FRAME"] == frames + 3
    assert b.receive(inbound((13, 14)), w.net.now)  # one fresh: on it goes, one replay counted
    assert b.counters.drops["replayed"] == replayed + 4
    assert b.counters.verbs_in["FRAME"] == frames + 5
