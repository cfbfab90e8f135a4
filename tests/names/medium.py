"""An in-memory multicast link under a virtual clock, for the sans-I/O names engines.

Why: mDNS and LLMNR behaviour (probing, tie-breaks, suppression, timing) only shows between
several engines sharing a link. Every engine attached here gets each multicast datagram another
engine sends (after ``latency_ms``, dropped with probability ``loss`` from a seeded rng), and
unicast datagrams reach the engine that owns the destination address; unicast to anyone else is
kept in ``unicast_out`` for the test to look at. Time only moves when the test runs the clock.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Protocol

from ztnode.names.datagram import Datagram


class Engine(Protocol):
    def receive(self, data: bytes, src: tuple[str, int], now: int) -> None: ...

    def poll(self, now: int) -> list[Datagram]: ...

    def next_deadline(self) -> int | None: ...


@dataclass
class Sent:
    """One datagram an engine sent, as the medium saw it."""

    at: int
    src: str
    datagram: Datagram


@dataclass(order=True)
class _Flight:
    at: int
    seq: int
    src: tuple[str, int] = field(compare=False)
    datagram: Datagram = field(compare=False)
    only: str | None = field(compare=False)


class Medium:
    """A link of engines, each known by one IP; ``port`` is the protocol's (5353 or 5355)."""

    def __init__(
        self,
        port: int,
        *,
        seed: int = 1,
        loss: float = 0.0,
        latency_ms: int = 1,
        loopback: bool = False,
    ) -> None:
        self.port = port
        self.now = 0
        self.loss = loss
        self.latency_ms = latency_ms
        self.loopback = loopback
        self._rng = random.Random(seed)
        self.nodes: dict[str, Engine] = {}
        self._flight: list[_Flight] = []
        self._seq = 0
        self.sent: list[Sent] = []
        self.unicast_out: list[Sent] = []

    def attach(self, ip: str, engine: Engine) -> Engine:
        self.nodes[ip] = engine
        return engine

    def detach(self, ip: str) -> None:
        """The host vanishes without a word (no goodbye)."""
        del self.nodes[ip]

    def inject(self, data: bytes, src: tuple[str, int], to: str | None = None) -> None:
        """A datagram from outside the engines: to every engine, or only to ``to``."""
        for ip, engine in list(self.nodes.items()):
            if to is None or ip == to:
                engine.receive(data, src, self.now)

    def _send(self, src_ip: str, datagram: Datagram) -> None:
        self.sent.append(Sent(self.now, src_ip, datagram))
        dest_ip = datagram.dest[0]
        multicast = dest_ip.startswith(("224.", "ff02:"))
        if not multicast and dest_ip not in self.nodes:
            self.unicast_out.append(Sent(self.now, src_ip, datagram))
            return
        if self.loss and self._rng.random() < self.loss:
            return
        self._seq += 1
        only = None if multicast else dest_ip
        flight = _Flight(self.now + self.latency_ms, self._seq, (src_ip, self.port), datagram, only)
        heapq.heappush(self._flight, flight)

    def _deliver_due(self) -> None:
        while self._flight and self._flight[0].at <= self.now:
            flight = heapq.heappop(self._flight)
            for ip, engine in list(self.nodes.items()):
                if flight.only is not None and ip != flight.only:
                    continue
                if flight.only is None and ip == flight.src[0] and not self.loopback:
                    continue
                engine.receive(flight.datagram.data, flight.src, self.now)

    def _poll_due(self) -> None:
        for ip, engine in list(self.nodes.items()):
            deadline = engine.next_deadline()
            if deadline is not None and deadline <= self.now:
                for datagram in engine.poll(self.now):
                    self._send(ip, datagram)

    def flush(self, ip: str, datagrams: list[Datagram]) -> None:
        """Send what an engine returned outside ``poll`` (``close``)."""
        for datagram in datagrams:
            self._send(ip, datagram)

    def run_until(self, t: int) -> None:
        """Advance the clock to ``t``, polling every engine when its deadline comes and
        delivering what is in flight."""
        for _ in range(1_000_000):
            self._deliver_due()
            self._poll_due()
            times = [f.at for f in self._flight[:1]]
            for engine in self.nodes.values():
                deadline = engine.next_deadline()
                if deadline is not None:
                    times.append(max(deadline, self.now + 1) if deadline <= self.now else deadline)
            upcoming = min(times, default=None)
            if upcoming is None or upcoming > t:
                self.now = t
                self._deliver_due()
                return
            self.now = upcoming
        raise AssertionError("the medium did not settle: an engine keeps asking to be polled")

    def run_for(self, ms: int) -> None:
        self.run_until(self.now + ms)

    def sent_by(self, ip: str, since: int = 0) -> list[Sent]:
        return [s for s in self.sent if s.src == ip and s.at >= since]
