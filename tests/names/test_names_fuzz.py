"""Property tests: whatever the link sends, the mDNS and LLMNR engines never raise and every
table stays within its bound (the h11 fuzzing discipline, applied to hostile multicast)."""

from __future__ import annotations

import random
import socket
from ipaddress import IPv4Address, ip_address

import dns.name
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.names.medium import Medium
from tests.names.util import IP_A, IP_B, IP_C, llmnr_node, mdns_node, parse, query, response
from ztnode.names.dnscodec import (
    CLASS_IN,
    TYPE_A,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Question,
    Record,
    a_rdata,
    ptr_rdata,
    srv_rdata,
    txt_rdata,
)
from ztnode.names.llmnr import LlmnrEngine, LlmnrLimits
from ztnode.names.mdns import MdnsEngine, MdnsLimits
from ztnode.names.mdns_records import ServiceSpec

MDNS_LIMITS = MdnsLimits(
    max_cache_entries=16, max_events=8, max_outgoing=4, max_lookups=8, max_queries=4
)
LLMNR_LIMITS = LlmnrLimits(max_events=4, max_outgoing=3, max_responders=3)


def _mdns_corpus() -> list[bytes]:
    """Real traffic between two engines: probes, announcements, queries, answers."""
    medium = Medium(5353, loopback=True)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    b = mdns_node(medium, IP_B, "zt-bbbb", 2)
    a.register(ServiceSpec("Printer", "_http._tcp", 80, {"a": "1", "b": None}, ["_sub1"]), 0)
    b.browse("_http._tcp", 0)
    b.resolve_host("zt-aaaa", 0)
    medium.run_until(6000)
    legacy = query([Question(dns.name.from_text("zt-aaaa.local."), TYPE_A)], ident=5)
    return [s.datagram.data for s in medium.sent] + [legacy]


def _llmnr_corpus() -> list[bytes]:
    medium = Medium(5355)
    llmnr_node(medium, IP_A, "alpha", 1)
    c = llmnr_node(medium, IP_C, "gamma", 3)
    medium.run_until(3000)
    c.resolve("alpha", medium.now)
    medium.run_for(1500)
    return [s.datagram.data for s in medium.sent]


MDNS_CORPUS = _mdns_corpus()
LLMNR_CORPUS = _llmnr_corpus()


def mutated(corpus: list[bytes]) -> st.SearchStrategy[bytes]:
    """A real packet with some bytes replaced, cut short, or grown."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(corpus)))
        for _ in range(draw(st.integers(0, 6))):
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if data:
                data[at] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        tail = draw(st.binary(max_size=16))
        return bytes(data[:cut]) + tail if draw(st.booleans()) else bytes(data)

    return build()


HTTP = dns.name.from_text("_http._tcp.local.")
labels = st.sampled_from([b"i1", b"i2", b"I1", b"x", b"zt-aaaa", b"h"])


@st.composite
def hostile_records(draw: st.DrawFn) -> Record:
    """Well-formed records aimed at what a browser caches: PTRs under the browsed type, SRVs,
    TXTs and addresses of the names they lead to, any TTL (goodbyes too), either flush bit."""
    instance = dns.name.Name([draw(labels), *HTTP.labels])
    host = dns.name.Name([draw(labels), b"local", b""])
    ttl = draw(st.sampled_from([0, 1, 2, 120, 4500, 2**31 - 1]))
    flush = draw(st.booleans())
    kind = draw(st.sampled_from(["ptr", "srv", "txt", "a"]))
    if kind == "ptr":
        return Record(HTTP, TYPE_PTR, CLASS_IN, ttl, ptr_rdata(instance), flush)
    if kind == "srv":
        port = draw(st.integers(0, 65535))
        return Record(instance, TYPE_SRV, CLASS_IN, ttl, srv_rdata(port, host), flush)
    if kind == "txt":
        strings = draw(st.lists(st.binary(max_size=20), min_size=1, max_size=4))
        return Record(instance, TYPE_TXT, CLASS_IN, ttl, txt_rdata(strings), flush)
    address = IPv4Address(draw(st.integers(0, 2**32 - 1)))
    return Record(host, TYPE_A, CLASS_IN, ttl, a_rdata(address), flush)


@st.composite
def hostile_packets(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(hostile_records(), min_size=1, max_size=12))
    if draw(st.booleans()):
        return response(records)
    names = [r.name for r in records]
    questions = [
        Question(
            n, draw(st.sampled_from([TYPE_ANY, TYPE_PTR, TYPE_A])), CLASS_IN, draw(st.booleans())
        )
        for n in names[:3]
    ]
    return query(questions, records, authorities=records[:2] if draw(st.booleans()) else ())


mdns_inputs = st.one_of(st.binary(max_size=700), mutated(MDNS_CORPUS), hostile_packets())
sources = st.sampled_from(
    [("10.0.0.66", 5353), ("10.0.0.67", 5353), ("fe80::9", 5353), ("10.0.0.66", 40000)]
)


def _fuzzed_mdns() -> MdnsEngine:
    engine = MdnsEngine("zt-aaaa", rng=random.Random(4), limits=MDNS_LIMITS)
    engine.set_addresses([ip_address(IP_A), ip_address("fd00::1")], 0)
    engine.start(0)
    engine.register(ServiceSpec("Printer", "_http._tcp", 80), 0)
    engine.browse("_http._tcp", 0)
    engine.resolve_host("h", 0, timeout_ms=100_000)
    for t in range(0, 5000, 50):
        engine.poll(t)
    return engine


def _check_mdns_bounds(engine: MdnsEngine, now: int) -> None:
    assert engine.cache_size <= MDNS_LIMITS.max_cache_entries
    assert engine.pending_lookups <= MDNS_LIMITS.max_lookups
    assert len(engine._events) <= MDNS_LIMITS.max_events
    assert len(engine._outbox) <= MDNS_LIMITS.max_outgoing
    for datagram in engine.poll(now):
        assert len(datagram.data) <= MDNS_LIMITS.max_payload


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(mdns_inputs, sources, st.integers(0, 3000)), min_size=1, max_size=12))
def test_mdns_never_raises_and_stays_bounded(
    inputs: list[tuple[bytes, tuple[str, int], int]],
) -> None:
    engine = _fuzzed_mdns()
    now = 5000
    for data, src, advance in inputs:
        now += advance
        engine.receive(data, src, now)
        _check_mdns_bounds(engine, now)
        deadline = engine.next_deadline()
        assert deadline is None or isinstance(deadline, int)
    # and it keeps working: time runs on, everything expires or is refreshed without error.
    for t in range(now, now + 130_000, 5000):
        engine.poll(t)
        _check_mdns_bounds(engine, t)
    engine.events()
    engine.close(now + 130_000)


@st.composite
def hostile_llmnr(draw: st.DrawFn) -> bytes:
    qname = dns.name.Name([draw(st.sampled_from([b"alpha", b"ALPHA", b"x", b"a.b"])), b""])
    rdtype = draw(st.sampled_from([TYPE_A, 28, TYPE_ANY, 15]))
    ident = draw(st.integers(0, 65535))
    flags = draw(st.sampled_from([0, 0x0400, 0x8000, 0x8200, 0x8100, 0x8003]))
    answers = [
        Record(
            qname,
            TYPE_A,
            CLASS_IN,
            draw(st.integers(0, 2**31 - 1)),
            a_rdata(IPv4Address(draw(st.integers(0, 2**32 - 1)))),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    return response(
        answers, ident=ident, flags=flags, questions=[Question(qname, rdtype)], mdns=False
    )


llmnr_inputs = st.one_of(st.binary(max_size=600), mutated(LLMNR_CORPUS), hostile_llmnr())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(llmnr_inputs, sources, st.integers(0, 800)), min_size=1, max_size=12))
def test_llmnr_never_raises_and_stays_bounded(
    inputs: list[tuple[bytes, tuple[str, int], int]],
) -> None:
    engine = LlmnrEngine("alpha", rng=random.Random(5), limits=LLMNR_LIMITS)
    engine.set_addresses([ip_address(IP_A)], 0)
    engine.start(0)
    engine.resolve("beta", 0, timeout_ms=5000, family=socket.AF_INET)
    now = 0
    for data, src, advance in inputs:
        now += advance
        engine.receive(data, src, now)
        answer = engine.answer_tcp(data, src)
        if answer is not None:  # whatever we answer is a well-formed response
            assert parse(answer, mdns=False).is_response
        engine.receive_tcp_answer(1, data, now)
        assert len(engine._events) <= LLMNR_LIMITS.max_events
        assert len(engine._outbox) <= LLMNR_LIMITS.max_outgoing
        assert all(
            len(lk.responders) <= LLMNR_LIMITS.max_responders for lk in engine._lookups.values()
        )
        engine.poll(now)
    for t in range(now, now + 20_001, 1000):
        engine.poll(t)
    assert engine._lookups == {}  # every lookup ended, whatever came in
    engine.events()
