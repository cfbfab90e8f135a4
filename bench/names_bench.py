"""What a node spends on each mDNS or LLMNR datagram it hears (``python -m bench --only names``).

Every member on a network with mDNS speakers hears their queries and announcements, so this is a
cost per datagram per member, paid whether or not the datagram concerns it. Each row feeds one
kind of datagram to the engine (``ztnode.names``, sans-I/O: no sockets, no event loop) and polls
it as the node does after each input (which sends whatever the input called for); microseconds
per datagram, the fastest of several rounds (as ``timeit`` reports: the round the rest of the
machine disturbed least):

- a query for a name that is not ours (the common case: other members asking each other);
- a query for our DNS-SD service type: we answer with its PTR and the SRV, TXT and address
  records as additionals (RFC 6763 12.1);
- an announcement from another member (one address record, cached);
- LLMNR: a query for another member's name (ignored) and one for ours (answered).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import dns.name

from ztnode.names.dnscodec import (
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    TYPE_A,
    TYPE_PTR,
    Question,
    Record,
    a_rdata,
    encode,
)
from ztnode.names.llmnr import LlmnrEngine
from ztnode.names.mdns import MdnsEngine
from ztnode.names.mdns_records import ServiceSpec

_OTHER = ("10.147.17.9", 5353)


def _message(
    questions: list[Question], answers: list[Record], *, flags: int = 0, mdns: bool = True
) -> bytes:
    out = encode(ident=0 if mdns else 4242, flags=flags, questions=questions,
                 answers=answers, max_size=9000, mdns=mdns)  # fmt: skip
    return out.datagrams[0]


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _settled(engine: MdnsEngine | LlmnrEngine, seconds: int) -> int:
    """Start ``engine`` on our address and poll it through ``seconds`` of its probes and
    announcements; the clock (ms) afterwards."""
    engine.set_addresses([ip_address("10.147.17.1")], 0)
    engine.start(0)
    for now in range(100, seconds * 1000 + 1, 100):
        engine.poll(now)
    return seconds * 1000


def _mdns_engine() -> tuple[MdnsEngine, int]:
    """A member that owns its host name and one service, past its probes and announcements."""
    engine = MdnsEngine("zt-bench", rng=random.Random(1))
    engine.register(ServiceSpec("Bench", "_http._tcp", 80), 0)
    return engine, _settled(engine, 20)


def _llmnr_engine() -> tuple[LlmnrEngine, int]:
    engine = LlmnrEngine("zt-bench", rng=random.Random(1))
    return engine, _settled(engine, 10)


def _per_datagram(
    receive: Callable[[bytes, tuple[str, int], int], None],
    poll: Callable[[int], object],
    data: bytes,
    start: int,
    count: int,
    rounds: int = 7,
) -> float:
    """The fastest of ``rounds`` rounds, as time per datagram (us), each datagram a second
    apart (so rate limits on answers never turn one away)."""
    now = start
    results = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(count):
            now += 1000
            receive(data, _OTHER, now)
            poll(now)
        results.append((time.perf_counter() - t0) / count * 1e6)
    return min(results)


def rows(quick: bool = False) -> list[dict[str, Any]]:
    count = 200 if quick else 2000
    out: list[dict[str, Any]] = []
    mdns_cases = [
        ("mDNS query for another member's name", _message(
            [Question(_name("zt-other.local."), TYPE_A)], [])),
        ("mDNS query for our service type (answered: PTR, SRV, TXT, A)", _message(
            [Question(_name("_http._tcp.local."), TYPE_PTR)], [])),
        ("mDNS announcement from another member (1 address, cached)", _message(
            [], [Record(_name("zt-other.local."), TYPE_A, CLASS_IN, 120,
                        a_rdata(ip_address("10.147.17.9")), cache_flush=True)],
            flags=FLAG_QR | FLAG_AA)),
    ]  # fmt: skip
    for what, data in mdns_cases:
        engine, now = _mdns_engine()
        us = _per_datagram(engine.receive, engine.poll, data, now, count)
        out.append({"what": what, "bytes": len(data), "us per datagram": round(us, 1)})
    llmnr_cases = [
        ("LLMNR query for another member's name", _message(
            [Question(_name("zt-other."), TYPE_A)], [], mdns=False)),
        ("LLMNR query for our name (answered)", _message(
            [Question(_name("zt-bench."), TYPE_A)], [], mdns=False)),
    ]  # fmt: skip
    for what, data in llmnr_cases:
        llmnr, now = _llmnr_engine()
        us = _per_datagram(llmnr.receive, llmnr.poll, data, now, count)
        out.append({"what": what, "bytes": len(data), "us per datagram": round(us, 1)})
    return out
