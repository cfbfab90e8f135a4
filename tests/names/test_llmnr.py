"""LlmnrEngine on a fake link under a virtual clock: RFC 4795 responder and querier."""

from __future__ import annotations

import random
import socket
import struct
from ipaddress import ip_address

import dns.rdatatype
import pytest

from tests.names.medium import Medium
from tests.names.util import IP_A, IP_B, IP_C, OUTSIDER, a_record, llmnr_node, name, parse, query
from tests.names.util import response as make_response
from ztnode.errors import LocalProtocolError
from ztnode.names.dnscodec import FLAG_QR, FLAG_TC, TYPE_A, TYPE_AAAA, Question
from ztnode.names.events import HostConflict, HostNotFound, HostResolved, RetryOverTcp
from ztnode.names.llmnr import FLAG_C, FLAG_T, LlmnrEngine, LlmnrLimits

GROUP = ("224.0.0.252", 5355)


def verified(*hosts: tuple[str, str]) -> tuple[Medium, list[LlmnrEngine]]:
    medium = Medium(5355)
    engines = [llmnr_node(medium, ip, host, i + 1) for i, (ip, host) in enumerate(hosts)]
    medium.run_until(3000)
    assert all(e.unique for e in engines)
    return medium, engines


def llmnr_query(qname: str, rdtype: int = TYPE_A, *, ident: int = 7, flags: int = 0) -> bytes:
    return query([Question(name(qname), rdtype)], ident=ident, flags=flags, mdns=False)


def test_uniqueness_check_sends_two_queries_a_second_apart_then_answers() -> None:
    medium = Medium(5355)
    a = llmnr_node(medium, IP_A, "alpha", 1)
    medium.run_until(3000)
    sent = medium.sent_by(IP_A)
    assert [s.datagram.dest for s in sent] == [GROUP, GROUP]
    assert 0 <= sent[0].at <= 100 and sent[1].at - sent[0].at == 1000
    asked = parse(sent[0].datagram.data, mdns=False)
    assert asked.questions == (Question(name("alpha."), TYPE_A),)
    assert a.unique and a.events() == []


def test_resolve_collects_the_answer_sent_by_unicast_from_the_right_source() -> None:
    medium, (a, b) = verified((IP_A, "alpha"), (IP_B, "beta"))
    t0 = medium.now
    qid = b.resolve("ALPHA", t0)
    medium.run_for(1500)
    assert b.events() == [HostResolved(qid, "ALPHA", [IP_A], 30_000, "llmnr")]
    replies = medium.sent_by(IP_A, t0)
    assert [(s.datagram.dest, s.datagram.source) for s in replies] == [
        ((IP_B, 5355), IP_A),
        ((IP_B, 5355), IP_A),
    ]
    # the A question is answered with our address, the AAAA one with an empty answer.
    parsed = sorted(
        (parse(s.datagram.data, mdns=False) for s in replies), key=lambda p: p.questions[0].rdtype
    )
    assert [str(r.rdata) for r in parsed[0].answers] == [IP_A]
    assert parsed[1].questions[0].rdtype == TYPE_AAAA and parsed[1].answers == ()
    assert not parsed[0].flags & (FLAG_T | FLAG_C | FLAG_TC)
    # an answer came: no retransmission.
    assert len([s for s in medium.sent_by(IP_B, t0)]) == 2
    assert a.counters["answered"] == 2


def test_resolve_not_found_after_one_retransmission() -> None:
    medium, (b,) = verified((IP_B, "beta"))
    t0 = medium.now
    qid = b.resolve("nobody", t0, family=socket.AF_INET)
    medium.run_for(1999)
    assert b.events() == []
    medium.run_for(1)
    assert b.events() == [HostNotFound(qid, "nobody", "llmnr")]
    assert [s.at - t0 for s in medium.sent_by(IP_B, t0)] == [0, 1000]


def test_resolve_own_name_and_validation() -> None:
    medium, (a,) = verified((IP_A, "alpha"))
    qid = a.resolve("alpha.", medium.now)
    assert a.events() == [HostResolved(qid, "alpha", [IP_A], 30_000, "llmnr")]
    for bad in ("a.b", "", "x" * 64):
        with pytest.raises(ValueError):
            a.resolve(bad, medium.now)
    with pytest.raises(ValueError):
        a.resolve("x", medium.now, family=3)
    with pytest.raises(LocalProtocolError):
        a.start(medium.now)


def test_host_conflict_stops_answering_until_renamed() -> None:
    medium, _ = verified((IP_A, "alpha"))
    b = llmnr_node(medium, IP_B, "alpha", 2)
    medium.run_for(3000)
    assert b.events() == [HostConflict("alpha")] and b.conflicted
    c = llmnr_node(medium, IP_C, "gamma", 3)
    medium.run_for(3000)
    t0 = medium.now
    qid = c.resolve("alpha", t0)
    medium.run_for(1500)
    assert c.events() == [HostResolved(qid, "alpha", [IP_A], 30_000, "llmnr")]
    assert medium.sent_by(IP_B, t0) == []
    b.set_hostname("alpha-2", medium.now)
    medium.run_for(3000)
    assert b.unique and b.events() == []
    qid = c.resolve("alpha-2", medium.now)
    medium.run_for(1500)
    assert c.events() == [HostResolved(qid, "alpha-2", [IP_B], 30_000, "llmnr")]


def test_answers_during_verification_are_tentative_and_discarded_by_queriers() -> None:
    medium, (c,) = verified((IP_C, "gamma"))
    late = llmnr_node(medium, IP_A, "alpha", 9)
    qid = c.resolve("alpha", medium.now, timeout_ms=50, family=socket.AF_INET)
    medium.run_for(60)
    tentative = [
        parse(s.datagram.data, mdns=False)
        for s in medium.sent_by(IP_A)
        if s.datagram.dest[0] == IP_C
    ]
    assert tentative and all(p.flags & FLAG_T for p in tentative)
    assert c.counters["tentative_discarded"] >= 1
    medium.run_for(100)
    assert c.events() == [HostNotFound(qid, "alpha", "llmnr")]
    assert not late.unique


def test_a_query_with_the_c_bit_is_not_answered_and_the_name_is_checked_again() -> None:
    medium, (a,) = verified((IP_A, "alpha"))
    queries_before = a.counters["queries_sent"]
    medium.inject(llmnr_query("alpha", flags=FLAG_C), (OUTSIDER, 5355))
    medium.run_for(10)
    assert medium.unicast_out == [] and a.counters["conflict_notices"] == 1
    assert not a.unique
    medium.run_for(3000)
    assert a.unique and a.counters["queries_sent"] == queries_before + 2


def test_several_answers_for_one_name_are_reported_with_the_c_bit() -> None:
    medium, (c,) = verified((IP_C, "gamma"))
    qid = c.resolve("dup", medium.now, family=socket.AF_INET)
    medium.run_for(5)
    [wire_query] = [parse(s.datagram.data, mdns=False) for s in medium.sent_by(IP_C)[-1:]]
    for ip in ("10.0.0.41", "10.0.0.42"):
        answer = make_response(
            [a_record("dup.", ip, ttl=30, flush=False)],
            ident=wire_query.id,
            flags=FLAG_QR,
            questions=wire_query.questions,
            mdns=False,
        )
        medium.inject(answer, (ip, 5355))
    medium.run_for(1100)
    assert c.events() == [HostResolved(qid, "dup", ["10.0.0.41", "10.0.0.42"], 30_000, "llmnr")]
    notices = [s for s in medium.unicast_out if s.src == IP_C]
    assert sorted(s.datagram.dest for s in notices) == [("10.0.0.41", 5355), ("10.0.0.42", 5355)]
    assert all(parse(s.datagram.data, mdns=False).flags & FLAG_C for s in notices)


def test_one_host_answering_from_each_of_its_addresses_is_no_conflict() -> None:
    """Queries go to both groups, so a dual-stack host answers once from its IPv4 address and
    once from its IPv6 one, with the same records: that is one host, not two."""
    medium, (c,) = verified((IP_C, "gamma"))
    qid = c.resolve("dual", medium.now, family=socket.AF_INET)
    medium.run_for(5)
    [wire_query] = [parse(s.datagram.data, mdns=False) for s in medium.sent_by(IP_C)[-1:]]
    answer = make_response(
        [a_record("dual.", "10.0.0.51", ttl=30, flush=False)],
        ident=wire_query.id,
        flags=FLAG_QR,
        questions=wire_query.questions,
        mdns=False,
    )
    for src in ("10.0.0.51", "fd00::51"):
        medium.inject(answer, (src, 5355))
    medium.run_for(1100)
    assert c.events() == [HostResolved(qid, "dual", ["10.0.0.51"], 30_000, "llmnr")]
    assert not [s for s in medium.unicast_out if s.src == IP_C]  # no C-bit notices


def test_truncated_answer_asks_for_tcp_and_merges_the_tcp_answer() -> None:
    medium, (c,) = verified((IP_C, "gamma"))
    qid = c.resolve("big", medium.now, family=socket.AF_INET)
    medium.run_for(5)
    wire_query = parse(medium.sent_by(IP_C)[-1].datagram.data, mdns=False)
    first = make_response(
        [a_record("big.", "10.0.1.1", flush=False)],
        ident=wire_query.id,
        flags=FLAG_QR | FLAG_TC,
        questions=wire_query.questions,
        mdns=False,
    )
    medium.inject(first, ("10.0.0.60", 5355))
    [retry] = c.events()
    assert isinstance(retry, RetryOverTcp)
    assert (retry.query_id, retry.address) == (qid, "10.0.0.60")
    tcp_query = parse(retry.query, mdns=False)
    assert tcp_query.id == wire_query.id and tcp_query.questions == wire_query.questions
    full = make_response(
        [a_record("big.", f"10.0.1.{i}", flush=False) for i in range(1, 5)],
        ident=wire_query.id,
        flags=FLAG_QR,
        questions=wire_query.questions,
        mdns=False,
    )
    c.receive_tcp_answer(qid, full, medium.now)
    medium.run_for(2500)
    [done] = c.events()
    assert isinstance(done, HostResolved)
    assert done.addresses == [f"10.0.1.{i}" for i in range(1, 5)]
    assert c.counters["tcp_answers"] == 1 and c.counters["truncated_responses"] == 1
    c.receive_tcp_answer(qid, full, medium.now)
    assert c.counters["tcp_bad"] == 1


def test_an_answer_too_big_for_udp_is_truncated_and_complete_over_tcp() -> None:
    medium = Medium(5355)
    a = LlmnrEngine("many", rng=random.Random(1))
    a.set_addresses([ip_address(f"fd00::{i:x}") for i in range(1, 32)], 0)
    a.start(0)
    medium.attach("fd00::1", a)
    medium.run_until(3000)
    question = llmnr_query("many", TYPE_AAAA, ident=99)
    a.receive(question, ("fd00::99", 5355), medium.now)
    [udp] = a.poll(medium.now)
    assert udp.source == "fd00::1" and udp.dest == ("fd00::99", 5355)
    small = parse(udp.data, mdns=False)
    assert small.truncated and len(udp.data) <= 512 and 0 < len(small.answers) < 31
    tcp = a.answer_tcp(question, ("fd00::99", 40000))
    assert tcp is not None
    whole = parse(tcp, mdns=False)
    assert not whole.truncated and len(whole.answers) == 31 and whole.id == 99
    assert a.answer_tcp(llmnr_query("other"), ("fd00::99", 1)) is None


def test_queries_not_for_us_or_malformed_are_not_answered() -> None:
    medium, (a,) = verified((IP_A, "alpha"))
    medium.inject(llmnr_query("beta"), (OUTSIDER, 5355))
    medium.inject(llmnr_query("alpha.example"), (OUTSIDER, 5355))
    medium.inject(llmnr_query("alpha", int(dns.rdatatype.MX)), (OUTSIDER, 5355))
    two = query([Question(name("alpha."), TYPE_A), Question(name("alpha."), TYPE_AAAA)], mdns=False)
    medium.inject(two, (OUTSIDER, 5355))
    with_answer = query(
        [Question(name("alpha."), TYPE_A)], [a_record("alpha.", "1.2.3.4")], mdns=False
    )
    medium.inject(with_answer, (OUTSIDER, 5355))
    medium.inject(llmnr_query("alpha"), (IP_A, 5355))  # our own, looped back
    medium.run_for(10)
    assert medium.unicast_out == []
    assert a.counters["not_ours"] == 3 and a.counters["bad_query"] == 2
    assert a.counters["own_packet"] == 1


def test_responses_that_match_no_query_are_ignored() -> None:
    medium, (c,) = verified((IP_C, "gamma"))
    qid = c.resolve("alpha", medium.now, family=socket.AF_INET)
    medium.run_for(5)
    wire_query = parse(medium.sent_by(IP_C)[-1].datagram.data, mdns=False)
    stray = make_response(
        [a_record("alpha.", "10.9.9.9", flush=False)],
        ident=wire_query.id ^ 1,
        flags=FLAG_QR,
        questions=wire_query.questions,
        mdns=False,
    )
    wrong_name = make_response(
        [a_record("beta.", "10.9.9.9", flush=False)],
        ident=wire_query.id,
        flags=FLAG_QR,
        questions=[Question(name("beta."), TYPE_A)],
        mdns=False,
    )
    medium.inject(stray, ("10.0.0.70", 5355))
    medium.inject(wrong_name, ("10.0.0.70", 5355))
    medium.run_for(2500)
    assert c.counters["unmatched_response"] == 2
    assert c.events() == [HostNotFound(qid, "alpha", "llmnr")]


def test_llmnr_bounds_are_counted() -> None:
    limits = LlmnrLimits(max_queries=1, max_events=1, max_outgoing=1, max_replies_per_second=2)
    medium = Medium(5355)
    a = llmnr_node(medium, IP_A, "alpha", 1, limits=limits)
    medium.run_until(3000)
    a.resolve("x", medium.now)
    with pytest.raises(LocalProtocolError):
        a.resolve("y", medium.now)
    a.resolve("alpha", medium.now)  # answered at once: no pending lookup
    a.resolve("alpha", medium.now)
    assert len(a.events()) == 1 and a.counters["events_dropped"] == 1
    for port in range(40000, 40004):
        a.receive(llmnr_query("alpha"), (OUTSIDER, port), medium.now)
    assert a.counters["unicast_rate_limited"] == 2 and a.counters["outgoing_full"] == 1
    a.receive(b"\x00" * 9001, (OUTSIDER, 5355), medium.now)
    a.receive(struct.pack("!6H", 1, 0, 65, 0, 0, 0), (OUTSIDER, 5355), medium.now)
    a.receive(struct.pack("!6H", 1, 0, 1, 300, 0, 0), (OUTSIDER, 5355), medium.now)
    a.receive(b"\xff", (OUTSIDER, 5355), medium.now)
    c = a.counters
    assert (
        c["queries_full"],
        c["oversize"],
        c["too_many_questions"],
        c["too_many_records"],
        c["malformed"],
    ) == (1, 1, 1, 1, 1)


def test_responders_per_lookup_are_bounded() -> None:
    medium, (c,) = verified((IP_C, "gamma"))
    c2 = LlmnrEngine("x", rng=random.Random(1), limits=LlmnrLimits(max_responders=2))
    c2.set_addresses([ip_address(IP_C)], medium.now)
    qid = c2.resolve("dup", medium.now, family=socket.AF_INET)
    [sent] = c2.poll(medium.now)
    wire_query = parse(sent.data, mdns=False)
    for i in range(4):
        answer = make_response(
            [a_record("dup.", f"10.0.2.{i}", ttl=30, flush=False)],
            ident=wire_query.id,
            flags=FLAG_QR,
            questions=wire_query.questions,
            mdns=False,
        )
        c2.receive(answer, (f"10.0.2.{i}", 5355), medium.now)
    c2.poll(medium.now + 1000)
    [event] = c2.events()
    assert isinstance(event, HostResolved) and event.query_id == qid
    assert event.addresses == ["10.0.2.0", "10.0.2.1"]
    assert c2.counters["responders_full"] == 2
    assert c.unique


def test_close_and_limits_validation() -> None:
    medium, (a,) = verified((IP_A, "alpha"))
    a.close(medium.now)
    a.receive(llmnr_query("alpha"), (OUTSIDER, 5355), medium.now)
    assert a.poll(medium.now) == [] and a.next_deadline() is None
    with pytest.raises(LocalProtocolError):
        a.resolve("x", medium.now)
    with pytest.raises(ValueError):
        LlmnrLimits(udp_payload=100)
    with pytest.raises(ValueError):
        LlmnrEngine("a.b", rng=random.Random(1))
