"""The fake network itself: determinism, impairments and virtual time."""

from __future__ import annotations

from typing import Any

from ztnode.testing.fakenet import Addr, FakeNetwork, LinkProfile


class Pinger:
    """Sends ``count`` numbered datagrams, one every ``interval`` ms; records what it receives."""

    def __init__(self, me: Addr, peer: Addr, count: int, interval: int = 10) -> None:
        self.me, self.peer, self.count, self.interval = me, peer, count, interval
        self.sent = 0
        self.next_send: int | None = 0 if count else None
        self.out: list[tuple[Addr, Addr, bytes]] = []
        self.received: list[tuple[int, bytes]] = []
        self.events: list[Any] = []

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None:
        self.received.append((now, data))
        if data.startswith(b"ping"):
            self.out.append((local, remote, b"pong" + data[4:]))
        self.events.append(("rx", data))

    def datagrams_to_send(self, now: int) -> list[tuple[Addr, Addr, bytes]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> int | None:
        return self.next_send

    def handle_timer(self, now: int) -> None:
        if self.next_send is not None and now >= self.next_send:
            self.out.append((self.me, self.peer, b"ping%d" % self.sent))
            self.sent += 1
            self.next_send = now + self.interval if self.sent < self.count else None

    def next_event(self) -> Any | None:
        return self.events.pop(0) if self.events else None


A, B = ("10.0.0.1", 9993), ("10.0.0.2", 9993)


def run(seed: int, profile: LinkProfile) -> tuple[list[tuple[int, bytes]], FakeNetwork]:
    net = FakeNetwork(seed=seed, profile=profile)
    a, b = Pinger(A, B, 200), Pinger(B, A, 0)
    net.attach(a, A)
    net.attach(b, B)
    net.run_for(10_000)
    return a.received, net


def test_perfect_link_delivers_everything_in_order() -> None:
    got, net = run(1, LinkProfile(latency_ms=5))
    assert [d for _, d in got] == [b"pong%d" % i for i in range(200)]
    assert net.stats.lost == net.stats.duplicated == 0
    assert got[0][0] == 10  # one round trip of 2 x 5 ms


def test_impairments_are_seeded_and_reproducible() -> None:
    prof = LinkProfile(loss=0.1, duplicate=0.1, reorder=0.2, latency_ms=3, jitter_ms=4)
    first, net1 = run(7, prof)
    again, _ = run(7, prof)
    other, _ = run(8, prof)
    assert first == again
    assert first != other
    assert net1.stats.lost > 0 and net1.stats.duplicated > 0
    seqs = [int(d[4:]) for _, d in first]
    assert seqs != sorted(seqs)  # reordered
    assert len(seqs) != len(set(seqs))  # duplicated


def test_block_and_events() -> None:
    net = FakeNetwork()
    a, b = Pinger(A, B, 3), Pinger(B, A, 0)
    net.attach(a, A)
    net.attach(b, B)
    net.block(A[0], B[0])
    net.run_for(1000)
    assert a.received == [] and net.stats.blocked == 3
    net.unblock(A[0], B[0])
    a.count, a.next_send = 6, net.now
    assert net.run_until_true(lambda: len(a.received) == 3, 1000)
    assert len(net.take_events(b)) == 3
    assert net.take_events(b) == []
