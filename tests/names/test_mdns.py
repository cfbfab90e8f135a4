"""MdnsEngine on a fake multicast link under a virtual clock: RFC 6762/6763 behaviour.

Each test drives real engines (or an engine and hand-built packets standing for another host)
and checks what went on the wire and what events came out.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
from ipaddress import ip_address
from typing import Any

import dns.message
import pytest

from tests.names.medium import Medium
from tests.names.util import (
    IP_A,
    IP_B,
    IP_C,
    OUTSIDER,
    a_record,
    mdns_node,
    name,
    parse,
    query,
    response,
)
from ztnode.errors import LocalProtocolError
from ztnode.names.dnscodec import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Fit,
    Packet,
    Question,
    Record,
    encode,
    ptr_rdata,
    srv_rdata,
    txt_rdata,
)
from ztnode.names.events import (
    HostNotFound,
    HostRegistered,
    HostRenamed,
    HostResolved,
    MdnsEvent,
    ServiceFound,
    ServiceLost,
    ServiceRegistered,
    ServiceRenamed,
    ServiceUpdated,
)
from ztnode.names.mdns import MdnsEngine, MdnsLimits
from ztnode.names.mdns_cache import RecordCache
from ztnode.names.mdns_probe import ConflictLimiter, compare_probes
from ztnode.names.mdns_records import ServiceSpec, decode_txt, encode_txt

GROUP = ("224.0.0.251", 5353)
HTTP = name("_http._tcp.local.")


def packets(medium: Medium, ip: str, since: int = 0) -> list[tuple[int, Packet, tuple[str, int]]]:
    return [(s.at, parse(s.datagram.data), s.datagram.dest) for s in medium.sent_by(ip, since)]


def responses(medium: Medium, ip: str, since: int = 0) -> list[tuple[int, Packet]]:
    return [(t, p) for t, p, _ in packets(medium, ip, since) if p.is_response]


def published(seed: int = 1) -> tuple[Medium, MdnsEngine, int]:
    """Engine A with ``Printer._http._tcp`` announced, at a quiet moment (every record last
    multicast well over a second ago)."""
    medium = Medium(5353, seed=seed)
    a = mdns_node(medium, IP_A, "zt-aaaa", seed)
    key = a.register(ServiceSpec("Printer", "_http._tcp", 631, {"rp": "x"}), 0)
    medium.run_until(5000)
    assert ServiceRegistered(key, "Printer._http._tcp.local.") in a.events()
    return medium, a, key


def run_collecting(
    medium: Medium, engine: MdnsEngine, until: int, step: int = 10
) -> list[tuple[int, MdnsEvent]]:
    """Events with the virtual time they came out at."""
    out: list[tuple[int, MdnsEvent]] = []
    while medium.now < until:
        medium.run_for(step)
        out += [(medium.now, e) for e in engine.events()]
    return out


# --------------------------------------------------------------------------- the wire


def test_cache_flush_and_qu_bits_are_the_top_bit_of_the_class_on_the_wire() -> None:
    medium, _, _ = published()
    announcement = next(
        s.datagram.data for s in medium.sent_by(IP_A) if parse(s.datagram.data).is_response
    )
    # dnspython's own reader, which knows nothing of mDNS, sees class 0x8001 on unique records
    # and plain IN on the shared PTRs.
    plain = dns.message.from_wire(announcement)
    classes = {int(rrset.rdtype): int(rrset.rdclass) for rrset in plain.answer}
    assert classes[TYPE_A] == 0x8001
    probe = next(
        s.datagram.data for s in medium.sent_by(IP_A) if not parse(s.datagram.data).is_response
    )
    assert dns.message.from_wire(probe).question[0].rdclass == 0x8001
    ours = parse(probe)
    assert ours.questions[0].unicast and ours.questions[0].rdclass == CLASS_IN


# --------------------------------------------------------------------------- probing


def test_host_probes_three_times_250_ms_apart_then_announces_twice() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 7)
    medium.run_until(4000)
    sent = packets(medium, IP_A)
    probes = [(t, p) for t, p, _ in sent if not p.is_response]
    announces = [(t, p) for t, p, _ in sent if p.is_response]
    assert len(probes) == 3 and len(announces) == 2
    assert 0 <= probes[0][0] <= 250
    assert [b[0] - a_[0] for a_, b in itertools.pairwise(probes)] == [250, 250]
    for _, p in probes:
        assert p.questions == (Question(name("zt-aaaa.local."), TYPE_ANY, CLASS_IN, True),)
        assert [(r.rdtype, r.ttl, str(r.rdata)) for r in p.authorities] == [(TYPE_A, 120, IP_A)]
    assert announces[0][0] == probes[-1][0] + 250
    assert announces[1][0] - announces[0][0] == 1000
    for _, p in announces:
        assert [(r.rdtype, r.ttl, r.cache_flush) for r in p.answers] == [(TYPE_A, 120, True)]
    assert all(dest == GROUP for _, _, dest in sent)
    assert a.events() == [HostRegistered("zt-aaaa")]


def test_nothing_is_probed_before_start_or_without_an_address() -> None:
    medium = Medium(5353)
    a = MdnsEngine("zt-aaaa", rng=random.Random(1))
    medium.attach(IP_A, a)
    a.register(ServiceSpec("X", "_http._tcp", 80), 0)
    a.start(0)
    medium.run_until(3000)
    assert medium.sent == [] and a.next_deadline() is None
    a.set_addresses([ip_address(IP_A)], medium.now)
    medium.run_for(3000)
    assert {type(e) for e in a.events()} == {HostRegistered, ServiceRegistered}
    with pytest.raises(LocalProtocolError):
        a.start(medium.now)


def test_service_announcement_has_the_dns_sd_records_with_rfc_ttls_and_flags() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 3)
    a.register(ServiceSpec("Printer", "_ipp._tcp", 631, {"rp": "q"}, subtypes=["_color"]), 0)
    medium.run_until(4000)
    announce = next(
        p for _, p in responses(medium, IP_A) if any(r.rdtype == TYPE_SRV for r in p.answers)
    )
    inst = name("Printer._ipp._tcp.local.")
    got = {
        (r.name.to_text(), r.rdtype, r.ttl, r.cache_flush, str(r.rdata)) for r in announce.answers
    }
    assert got == {
        ("_ipp._tcp.local.", TYPE_PTR, 4500, False, "Printer._ipp._tcp.local."),
        ("_services._dns-sd._udp.local.", TYPE_PTR, 4500, False, "_ipp._tcp.local."),
        ("_color._sub._ipp._tcp.local.", TYPE_PTR, 4500, False, "Printer._ipp._tcp.local."),
        ("Printer._ipp._tcp.local.", TYPE_SRV, 120, True, "0 0 631 zt-aaaa.local."),
        ("Printer._ipp._tcp.local.", TYPE_TXT, 4500, True, '"rp=q"'),
    }
    assert inst in {r.name for r in announce.answers}
    # RFC 6763 12: the host's address rides along.
    assert [(r.rdtype, str(r.rdata)) for r in announce.additionals] == [(TYPE_A, IP_A)]


def test_two_hosts_probing_one_service_name_end_with_one_renamed() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 11)
    b = mdns_node(medium, IP_B, "zt-bbbb", 12)
    ka = a.register(ServiceSpec("Printer", "_http._tcp", 80), 0)
    kb = b.register(ServiceSpec("Printer", "_http._tcp", 80), 0)
    medium.run_until(8000)
    ea, eb = a.events(), b.events()
    # RFC 6762 8.2: SRV rdata compare, "zt-aaaa" sorts before "zt-bbbb", so A defers and then
    # finds B defending the name.
    assert a.counters["tiebreak_lost"] >= 1 and b.counters["tiebreak_lost"] == 0
    assert ServiceRenamed(ka, "Printer._http._tcp.local.", "Printer (2)._http._tcp.local.") in ea
    assert ServiceRegistered(ka, "Printer (2)._http._tcp.local.") in ea
    assert ServiceRegistered(kb, "Printer._http._tcp.local.") in eb
    assert not any(isinstance(e, ServiceRenamed) for e in eb)


def test_a_late_prober_is_answered_by_the_owner_and_renames() -> None:
    medium, _, _ = published()
    b = mdns_node(medium, IP_B, "zt-bbbb", 5)
    kb = b.register(ServiceSpec("Printer", "_http._tcp", 80), medium.now)
    medium.run_for(5000)
    assert ServiceRegistered(kb, "Printer (2)._http._tcp.local.") in b.events()
    assert b.counters["conflicts"] == 1 and b.counters["tiebreak_lost"] == 0
    # A answered the probe (QU, record multicast recently: by unicast to B, RFC 5.4).
    assert any(s.datagram.dest == (IP_B, 5353) for s in medium.sent_by(IP_A))


def test_simultaneous_host_probes_are_decided_by_the_records() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-same", 21)
    b = mdns_node(medium, IP_B, "zt-same", 22)
    medium.run_until(8000)
    # 10.0.0.1 < 10.0.0.2: A's proposed A record is earlier, A loses and then is defended off.
    assert a.events() == [HostRenamed("zt-same", "zt-same-2"), HostRegistered("zt-same-2")]
    assert b.events() == [HostRegistered("zt-same")]
    assert a.hostname == "zt-same-2" and b.hostname == "zt-same"


def test_compare_probes_orders_by_class_type_then_raw_rdata() -> None:
    n = name("x.local.")
    low = Record(n, TYPE_A, CLASS_IN, 120, a_record("x.local.", "10.0.0.1").rdata)
    high = Record(n, TYPE_A, CLASS_IN, 120, a_record("x.local.", "10.0.0.2").rdata)
    txt = Record(n, TYPE_TXT, CLASS_IN, 120, txt_rdata([b"zzz"]))
    assert compare_probes([low], [high]) < 0
    assert compare_probes([high], [low]) > 0
    assert compare_probes([low], [low]) == 0
    # type A (1) sorts before TXT (16), whatever the rdata.
    assert compare_probes([txt], [low]) > 0
    # equal as far as they go: the longer list is later.
    assert compare_probes([low], [low, high]) < 0


def test_a_conflicting_answer_after_registration_makes_the_name_probed_again() -> None:
    medium, a, _ = published()
    probes_before = a.counters["probes_sent"]
    # the very same record from elsewhere is no conflict (RFC 6762 9).
    srv = Record(
        name("Printer._http._tcp.local."),
        TYPE_SRV,
        CLASS_IN,
        120,
        srv_rdata(631, name("zt-aaaa.local.")),
        True,
    )
    medium.inject(response([srv]), (OUTSIDER, 5353))
    assert a.counters["conflicts"] == 0
    other = Record(srv.name, TYPE_SRV, CLASS_IN, 120, srv_rdata(80, name("evil.local.")), True)
    medium.inject(response([other]), (OUTSIDER, 5353))
    assert a.counters["conflicts"] == 1
    medium.run_for(4000)
    # probed again (nobody defends), kept its name, announced again; no new event.
    assert a.counters["probes_sent"] == probes_before + 3
    assert a.events() == []


def test_record_keys_compare_names_without_case_and_rdata_canonically() -> None:
    """A record's key (what caches, answers and conflicts compare) is made once and says equal
    exactly when RFC 6762 does: owner names without regard to case, rdata in canonical form
    (names inside it lowercased too)."""
    srv = Record(name("Printer._http._tcp.local."), TYPE_SRV, CLASS_IN, 120,
                 srv_rdata(631, name("zt-aaaa.local.")), True)  # fmt: skip
    shouting = Record(name("PRINTER._HTTP._tcp.LOCAL."), TYPE_SRV, CLASS_IN, 60,
                      srv_rdata(631, name("ZT-AAAA.local.")), False)  # fmt: skip
    assert srv.key == shouting.key and srv.key is srv.key
    assert srv.key != Record(srv.name, TYPE_SRV, CLASS_IN, 120, srv_rdata(80, srv.rdata.target)).key
    assert a_record("h.local.", "10.0.0.3").key != a_record("h.local.", "10.0.0.4").key


def test_a_conflicting_answer_in_other_case_is_still_a_conflict() -> None:
    medium, a, _ = published()
    other = Record(name("PRINTER._HTTP._TCP.LOCAL."), TYPE_SRV, CLASS_IN, 120,
                   srv_rdata(80, name("evil.local.")), True)  # fmt: skip
    medium.inject(response([other]), (OUTSIDER, 5353))
    assert a.counters["conflicts"] == 1
    same = Record(name("printer._http._tcp.local."), TYPE_SRV, CLASS_IN, 120,
                  srv_rdata(631, name("ZT-AAAA.LOCAL.")), True)  # fmt: skip
    medium.run_for(4000)
    conflicts = a.counters["conflicts"]
    medium.inject(response([same]), (OUTSIDER, 5353))  # ours, in other case: no conflict
    assert a.counters["conflicts"] == conflicts


def test_responses_before_the_first_probe_are_not_conflicts() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    medium.inject(response([a_record("zt-aaaa.local.", "10.9.9.9")]), (OUTSIDER, 5353))
    medium.run_until(3000)
    assert a.counters["conflicts"] == 0 and a.hostname == "zt-aaaa"


def test_conflict_rate_limit_waits_five_seconds_after_fifteen_conflicts() -> None:
    limiter = ConflictLimiter()
    rng = random.Random(1)
    for t in range(14):
        limiter.conflict(t * 100)
        assert limiter.probe_delay(t * 100, rng) <= 250
    limiter.conflict(1400)
    assert limiter.probe_delay(1400, rng) == 5000
    assert limiter.probe_delay(11_000, rng) <= 250


def test_repeated_conflicts_slow_probing_down() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    medium.run_until(3000)
    a.events()
    key = a.register(ServiceSpec("Busy", "_http._tcp", 80), medium.now)
    # someone answers every name A tries, the moment it has probed once.
    start = medium.now
    seen = 0
    while medium.now < start + 60_000 and seen < 20:
        medium.run_for(10)
        for event in a.events():
            if isinstance(event, ServiceRenamed):
                seen += 1
        for svc_name in {
            p.questions[0].name
            for _, p, _ in packets(medium, IP_A, medium.now - 10)
            if not p.is_response and p.questions
        }:
            if svc_name.labels[0].startswith(b"Busy"):
                bad = Record(
                    svc_name, TYPE_SRV, CLASS_IN, 120, srv_rdata(1, name("o.local.")), True
                )
                medium.inject(response([bad]), (OUTSIDER, 5353))
    assert key and seen >= 16
    renames = [t for t, p, _ in packets(medium, IP_A, start) if not p.is_response]
    gaps = [b - a_ for a_, b in itertools.pairwise(renames)]
    assert max(gaps) >= 5000  # RFC 6762 9.2


# --------------------------------------------------------------------------- browsing


def test_browse_finds_a_service_with_addresses_port_and_txt() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    bid = c.browse("_http._tcp", medium.now)
    medium.run_for(3000)
    found = [e for e in c.events() if isinstance(e, ServiceFound)]
    assert len(found) == 1 and found[0].browse_id == bid
    info = found[0].info
    assert (info.instance, info.service_type, info.name) == (
        "Printer",
        "_http._tcp",
        "Printer._http._tcp.local.",
    )
    assert (info.host, info.addresses, info.port, info.txt) == (
        "zt-aaaa.local.",
        [IP_A],
        631,
        {"rp": b"x"},
    )


def test_browse_queries_back_off_and_carry_known_answers() -> None:
    medium, a, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    t0 = medium.now
    c.browse("_http._tcp", t0)
    medium.run_for(40_000)
    ptr_queries = [
        (t, p)
        for t, p, _ in packets(medium, IP_C, t0)
        if not p.is_response and any(q.name == HTTP and q.rdtype == TYPE_PTR for q in p.questions)
    ]
    times = [t - t0 for t, _ in ptr_queries]
    assert 20 <= times[0] <= 120
    assert [b - a_ for a_, b in itertools.pairwise(times)][:5] == [
        1000,
        2000,
        4000,
        8000,
        16000,
    ]
    # RFC 6762 7.1: later queries list the PTR C already has, with its remaining TTL.
    later = ptr_queries[2][1]
    assert [(r.rdtype, str(r.rdata)) for r in later.answers] == [
        (TYPE_PTR, "Printer._http._tcp.local.")
    ]
    assert 4400 < later.answers[0].ttl <= 4500 and not later.answers[0].cache_flush
    # and A, hearing its answer known, stays silent.
    assert a.counters["known_answer_suppressed"] >= 1


def test_goodbye_removes_the_service_from_a_browser_within_a_second() -> None:
    medium, a, key = published()
    b_key = a.register(ServiceSpec("Other", "_http._tcp", 81), medium.now)
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", medium.now)
    medium.run_for(5000)
    assert len([e for e in c.events() if isinstance(e, ServiceFound)]) == 2
    t0 = medium.now
    a.unregister(key, t0)
    events = run_collecting(medium, c, t0 + 3000)
    assert [e for _, e in events] == [ServiceLost(1, "Printer._http._tcp.local.")]
    assert 1000 <= events[0][0] - t0 <= 1100
    goodbye = responses(medium, IP_A, t0)[0][1]
    assert {r.ttl for r in goodbye.answers} == {0}
    assert not any(r.cache_flush for r in goodbye.answers)
    # the type enumeration PTR stays: "Other" still has that type.
    assert not any(r.name == name("_services._dns-sd._udp.local.") for r in goodbye.answers)
    assert b_key


def test_cache_flush_replaces_stale_addresses() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", medium.now)
    medium.run_for(3000)
    c.events()
    medium.inject(response([a_record("zt-aaaa.local.", "10.0.0.9")]), (IP_A, 5353), to=IP_C)
    updated = [e for e in c.events() if isinstance(e, ServiceUpdated)]
    assert [e.info.addresses for e in updated] == [["10.0.0.9"]]
    medium.run_for(1500)
    assert not [e for e in c.events() if isinstance(e, ServiceUpdated | ServiceLost)]


def test_without_the_flush_bit_addresses_accumulate() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", medium.now)
    medium.run_for(3000)
    c.events()
    record = a_record("zt-aaaa.local.", "10.0.0.9", flush=False)
    medium.inject(response([record]), (IP_A, 5353), to=IP_C)
    updated = [e for e in c.events() if isinstance(e, ServiceUpdated)]
    assert [e.info.addresses for e in updated] == [[IP_A, "10.0.0.9"]]


def test_cache_flush_spares_records_received_within_the_last_second() -> None:
    cache = RecordCache(16, random.Random(1), {})
    one = a_record("h.local.", "10.0.0.1")
    two = a_record("h.local.", "10.0.0.2")
    cache.add(one, 0)
    cache.add(two, 1500)
    # 10.2: at 2000, "one" (received 2 s ago) is flushed, "two" (0.5 s ago) is kept.
    assert cache.flush_others(one.name, TYPE_A, {a_record("h.local.", "10.0.0.3").key}, 2000)
    live = {str(e.record.rdata): e.doomed for e in cache.get(one.name, TYPE_A, 2000)}
    assert live == {"10.0.0.1": True, "10.0.0.2": False}
    cache.expire(3000)
    assert [str(e.record.rdata) for e in cache.get(one.name, TYPE_A, 3000)] == ["10.0.0.2"]


def test_a_host_that_vanishes_is_refreshed_then_lost_at_ttl_expiry() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", medium.now)
    medium.run_for(3000)
    assert any(isinstance(e, ServiceFound) for e in c.events())
    last_heard = max(s.at for s in medium.sent_by(IP_A))
    medium.detach(IP_A)
    events = run_collecting(medium, c, last_heard + 125_000, step=100)
    lost = [(t, e) for t, e in events if isinstance(e, ServiceLost)]
    assert len(lost) == 1
    assert last_heard + 119_000 <= lost[0][0] <= last_heard + 121_000
    srv_name = name("Printer._http._tcp.local.")
    refreshes = [
        t - last_heard
        for t, p, _ in packets(medium, IP_C, last_heard)
        if not p.is_response
        and any(q.name == srv_name and q.rdtype == TYPE_SRV for q in p.questions)
    ]
    # RFC 6762 5.2: at 80-82, 85-87, 90-92 and 95-97 % of the 120 s TTL; after the loss, the
    # PTR (75 minutes) still names the instance, so its SRV is looked for again.
    assert [t for t in refreshes if t >= 120_000][:2] == [120_001, 121_001]
    refreshes = [t for t in refreshes if t < 120_000]
    assert len(refreshes) == 4
    for got, percent in zip(refreshes, (80, 85, 90, 95), strict=True):
        assert percent * 1200 - 100 <= got <= (percent + 2) * 1200 + 100


def test_records_nobody_asked_for_are_not_cached() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    medium.run_for(3000)
    before = c.counters["unsolicited"]
    spam = [
        Record(
            name("_ftp._tcp.local."),
            TYPE_PTR,
            CLASS_IN,
            4500,
            ptr_rdata(name("x._ftp._tcp.local.")),
        ),
        a_record("random.local.", "10.1.1.1"),
    ]
    medium.inject(response(spam), (OUTSIDER, 5353), to=IP_C)
    assert c.cache_size == 0 and c.counters["unsolicited"] == before + 2


def test_responses_from_another_port_are_ignored() -> None:
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", 0)
    ptr = Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name("x._http._tcp.local.")))
    medium.inject(response([ptr]), (OUTSIDER, 4444))
    assert c.cache_size == 0 and c.counters["bad_source_port"] == 1


# --------------------------------------------------------------------------- responding


def _qm(qname: str, rdtype: int, **kw: object) -> bytes:
    return query([Question(name(qname), rdtype)], **kw)  # type: ignore[arg-type]


def test_unique_answers_go_at_once_and_shared_ones_after_20_to_120_ms() -> None:
    medium, _, _ = published()
    t0 = medium.now
    medium.inject(_qm("zt-aaaa.local.", TYPE_A), (OUTSIDER, 5353))
    medium.run_for(200)
    assert [t - t0 for t, _ in responses(medium, IP_A, t0)] == [0]
    t1 = medium.now
    medium.inject(_qm("_http._tcp.local.", TYPE_PTR), (OUTSIDER, 5353))
    medium.run_for(200)
    [(t, p)] = responses(medium, IP_A, t1)
    assert 20 <= t - t1 <= 120
    assert [r.rdtype for r in p.answers] == [TYPE_PTR]
    # RFC 6763 12.1: SRV, TXT and the address as additional records.
    assert sorted(r.rdtype for r in p.additionals) == [TYPE_A, TYPE_TXT, TYPE_SRV]


def test_shared_answers_to_several_queries_are_aggregated() -> None:
    medium, a, _ = published()
    a.register(ServiceSpec("Second", "_http._tcp", 82), medium.now)
    medium.run_for(5000)
    t0 = medium.now
    medium.inject(_qm("_http._tcp.local.", TYPE_PTR), (OUTSIDER, 5353))
    medium.inject(_qm("_http._tcp.local.", TYPE_PTR), ("10.0.0.98", 5353))
    medium.run_for(300)
    [(_, p)] = responses(medium, IP_A, t0)
    assert len([r for r in p.answers if r.rdtype == TYPE_PTR]) == 2


def test_known_answer_suppression_removes_what_the_querier_has() -> None:
    medium, a, _ = published()
    a.register(ServiceSpec("Second", "_http._tcp", 82), medium.now)
    medium.run_for(5000)
    known = Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name("Printer._http._tcp.local.")))
    t0 = medium.now
    medium.inject(query([Question(HTTP, TYPE_PTR)], [known]), (OUTSIDER, 5353))
    medium.run_for(300)
    [(_, p)] = responses(medium, IP_A, t0)
    assert [str(r.rdata) for r in p.answers] == ["Second._http._tcp.local."]
    # both known: nothing at all.
    second = Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name("Second._http._tcp.local.")))
    t1 = medium.now + 2000
    medium.run_until(t1)
    medium.inject(query([Question(HTTP, TYPE_PTR)], [known, second]), (OUTSIDER, 5353))
    medium.run_for(300)
    assert responses(medium, IP_A, t1) == []
    # a known answer with less than half the TTL left does not suppress (RFC 6762 7.1).
    medium.inject(
        query([Question(HTTP, TYPE_PTR)], [known.with_ttl(2000), second]), (OUTSIDER, 5353)
    )
    medium.run_for(300)
    [(_, p)] = responses(medium, IP_A, t1)
    assert [str(r.rdata) for r in p.answers] == ["Printer._http._tcp.local."]


def test_truncated_query_waits_for_the_rest_of_its_known_answers() -> None:
    medium, a, _ = published()
    known = Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name("Printer._http._tcp.local.")))
    t0 = medium.now
    medium.inject(query([Question(HTTP, TYPE_PTR)], flags=0x0200), (OUTSIDER, 5353))
    medium.run_for(100)
    medium.inject(query([], [known]), (OUTSIDER, 5353))
    medium.run_for(1000)
    assert responses(medium, IP_A, t0) == []
    assert a.counters["known_answer_suppressed"] == 1


def test_legacy_unicast_query_gets_a_legacy_answer() -> None:
    medium, a, _ = published()
    question = Question(name("ZT-AAAA.local."), TYPE_A)
    medium.inject(query([question], ident=0x1234), (OUTSIDER, 40000))
    medium.run_for(10)
    [sent] = medium.unicast_out
    assert sent.datagram.dest == (OUTSIDER, 40000)
    reply = parse(sent.datagram.data)
    assert reply.id == 0x1234 and reply.is_response
    assert reply.questions == (question,)
    assert [(r.rdtype, r.ttl, r.cache_flush, str(r.rdata)) for r in reply.answers] == [
        (TYPE_A, 10, False, IP_A)
    ]
    assert dns.message.from_wire(sent.datagram.data).answer[0].rdclass == 1
    assert a.counters["legacy_responses_sent"] == 1


def test_qu_question_is_answered_by_unicast_while_the_record_was_multicast_recently() -> None:
    medium, _, _ = published()
    srv = Question(name("Printer._http._tcp.local."), TYPE_SRV, CLASS_IN, unicast=True)
    t0 = medium.now
    medium.inject(query([srv]), (OUTSIDER, 5353))
    medium.run_for(200)
    assert [s.datagram.dest for s in medium.unicast_out] == [(OUTSIDER, 5353)]
    assert responses(medium, IP_A, t0) == [(t0, parse(medium.unicast_out[0].datagram.data))]
    assert [r.rdtype for r in parse(medium.unicast_out[0].datagram.data).answers] == [TYPE_SRV]
    # a quarter of the SRV's 120 s TTL later without a multicast, the answer is multicast.
    medium.run_for(31_000)
    t1 = medium.now
    medium.inject(query([srv]), (OUTSIDER, 5353))
    medium.run_for(200)
    assert len(medium.unicast_out) == 1
    assert [dest for _, _, dest in packets(medium, IP_A, t1)] == [GROUP]


def test_a_record_is_multicast_at_most_once_per_second() -> None:
    medium, a, _ = published()
    t0 = medium.now
    medium.inject(_qm("zt-aaaa.local.", TYPE_A), (OUTSIDER, 5353))
    medium.run_for(300)
    medium.inject(_qm("zt-aaaa.local.", TYPE_A), (OUTSIDER, 5353))
    medium.run_for(500)
    assert len(responses(medium, IP_A, t0)) == 1 and a.counters["rate_limited"] == 1
    medium.run_for(300)
    medium.inject(_qm("zt-aaaa.local.", TYPE_A), (OUTSIDER, 5353))
    medium.run_for(100)
    assert len(responses(medium, IP_A, t0)) == 2


def test_probe_defence_may_repeat_after_250_ms() -> None:
    medium, a, _ = published()
    proposal = a_record("zt-aaaa.local.", "10.7.7.7", flush=False)
    probe = query([Question(name("zt-aaaa.local."), TYPE_ANY)], authorities=[proposal])
    t0 = medium.now
    medium.inject(probe, (OUTSIDER, 5353))
    medium.run_for(100)
    medium.inject(probe, (OUTSIDER, 5353))
    medium.run_for(200)
    medium.inject(probe, (OUTSIDER, 5353))
    medium.run_for(100)
    times = [t - t0 for t, _ in responses(medium, IP_A, t0)]
    assert times == [0, 300]
    assert a.counters["rate_limited"] == 1


def test_a_response_another_host_just_sent_cancels_ours() -> None:
    medium, a, _ = published()
    ptr = Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name("Printer._http._tcp.local.")))
    t0 = medium.now
    medium.inject(_qm("_http._tcp.local.", TYPE_PTR), (OUTSIDER, 5353))
    medium.inject(response([ptr]), ("10.0.0.98", 5353))  # RFC 6762 7.4
    medium.run_for(300)
    assert responses(medium, IP_A, t0) == []
    assert a.counters["duplicate_suppressed"] == 1


def test_large_answers_are_split_into_datagrams_of_at_most_max_payload() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    for i in range(12):
        a.register(ServiceSpec(f"Service {i}", "_http._tcp", 80 + i, {"k": "v" * 250}), 0)
    medium.run_until(6000)
    t0 = medium.now
    medium.inject(_qm("_http._tcp.local.", TYPE_PTR), (OUTSIDER, 5353))
    medium.run_for(300)
    sent = [s for s in medium.sent_by(IP_A, t0)]
    assert len(sent) > 1 and all(len(s.datagram.data) <= 1440 for s in sent)
    ptrs = {str(r.rdata) for s in sent for r in parse(s.datagram.data).answers}
    assert len(ptrs) == 12


def test_address_change_says_goodbye_and_announces() -> None:
    medium, a, _ = published()
    t0 = medium.now
    a.set_addresses([ip_address("10.0.0.5")], t0)
    medium.run_for(3000)
    sent = responses(medium, IP_A, t0)
    assert [(r.ttl, str(r.rdata)) for r in sent[0][1].answers] == [(0, IP_A)]
    announced = [p for _, p in sent[1:] if p.answers and p.answers[0].rdtype == TYPE_A]
    assert len(announced) == 2
    assert all(
        [(r.ttl, r.cache_flush, str(r.rdata)) for r in p.answers] == [(120, True, "10.0.0.5")]
        for p in announced
    )


def test_close_says_goodbye_to_everything() -> None:
    medium, a, key = published()
    out = a.close(medium.now)
    records = [r for d in out for r in parse(d.data).answers]
    assert {r.ttl for r in records} == {0}
    assert {r.rdtype for r in records} == {TYPE_A, TYPE_PTR, TYPE_SRV, TYPE_TXT}
    assert a.close(medium.now) == [] and a.poll(medium.now + 10_000) == []
    a.receive(b"\x00" * 12, (OUTSIDER, 5353), medium.now)
    with pytest.raises(LocalProtocolError):
        a.register(ServiceSpec("x", "_http._tcp", 1), medium.now)
    assert key


def test_unregister_of_an_unknown_key_is_an_error() -> None:
    _, a, key = published()
    a.unregister(key, 6000)
    with pytest.raises(LocalProtocolError):
        a.unregister(key, 6000)


def test_registering_a_name_we_already_use_renames_locally() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    a.register(ServiceSpec("Dup", "_http._tcp", 80), 0)
    k2 = a.register(ServiceSpec("dup", "_http._tcp", 81), 0)
    assert a.events() == [ServiceRenamed(k2, "dup._http._tcp.local.", "dup (2)._http._tcp.local.")]


# --------------------------------------------------------------------------- one-shot lookups


def test_resolve_host_asks_qu_then_qm_and_reports_the_answer() -> None:
    medium, _, _ = published()
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    medium.run_for(3000)
    c.events()
    t0 = medium.now
    qid = c.resolve_host("zt-aaaa", t0)
    medium.run_for(100)
    [event] = c.events()
    assert isinstance(event, HostResolved)
    assert (event.query_id, event.name, event.addresses, event.protocol) == (
        qid,
        "zt-aaaa.local",
        [IP_A],
        "mdns",
    )
    assert 119_000 <= event.ttl_ms <= 120_000
    first = next(p for _, p, _ in packets(medium, IP_C, t0) if not p.is_response)
    assert [(q.rdtype, q.unicast) for q in first.questions] == [(TYPE_A, True), (TYPE_AAAA, True)]
    # now cached: answered within the call.
    qid2 = c.resolve_host("zt-aaaa.local", medium.now, family=socket.AF_INET)
    assert [type(e) for e in c.events()] == [HostResolved]
    assert qid2 != qid


def test_resolve_host_not_found_at_the_deadline_after_one_retry() -> None:
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    medium.run_for(3000)
    c.events()
    t0 = medium.now
    qid = c.resolve_host("nobody.local.", t0, timeout_ms=2500)
    events = run_collecting(medium, c, t0 + 4000)
    assert events == [(t0 + 2500, HostNotFound(qid, "nobody.local", "mdns"))]
    asked = [
        (t - t0, p.questions[0].unicast)
        for t, p, _ in packets(medium, IP_C, t0)
        if not p.is_response
    ]
    assert asked == [(0, True), (1000, False)]


def test_resolve_own_name_and_cancel() -> None:
    medium, a, _ = published()
    qid = a.resolve_host("zt-aaaa", medium.now)
    assert a.events() == [HostResolved(qid, "zt-aaaa.local", [IP_A], 120_000, "mdns")]
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    qid = c.resolve_host("nobody", medium.now)
    c.cancel(qid)
    c.cancel(12345)
    medium.run_for(5000)
    assert not [e for e in c.events() if isinstance(e, HostNotFound)]


@pytest.mark.parametrize(
    "bad",
    ["", "a.b.example", "x" * 64, "a..local", "host.com"],
)
def test_resolve_host_rejects_names_outside_local(bad: str) -> None:
    engine = MdnsEngine("zt-aaaa", rng=random.Random(1))
    with pytest.raises(ValueError):
        engine.resolve_host(bad, 0)


def test_resolve_host_rejects_bad_family_and_timeout() -> None:
    engine = MdnsEngine("zt-aaaa", rng=random.Random(1))
    with pytest.raises(ValueError):
        engine.resolve_host("x", 0, family=99)
    with pytest.raises(ValueError):
        engine.resolve_host("x", 0, timeout_ms=0)


# --------------------------------------------------------------------------- bounds


def test_cache_bound_is_counted() -> None:
    limits = MdnsLimits(max_cache_entries=3)
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3, limits=limits)
    c.browse("_http._tcp", 0)
    ptrs = [
        Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name(f"i{i}._http._tcp.local.")))
        for i in range(10)
    ]
    medium.inject(response(ptrs), (OUTSIDER, 5353))
    assert c.cache_size == 3 and c.counters["cache_full"] == 7


def test_lookup_bound_is_counted() -> None:
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3, limits=MdnsLimits(max_lookups=2))
    c.browse("_http._tcp", 0)
    ptrs = [
        Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name(f"i{i}._http._tcp.local.")))
        for i in range(3)
    ]
    medium.inject(response(ptrs), (OUTSIDER, 5353))
    assert c.pending_lookups == 2 and c.counters["lookups_full"] == 4


def test_service_browse_and_query_bounds_raise_and_count() -> None:
    limits = MdnsLimits(max_services=1, max_browses=1, max_queries=1)
    engine = MdnsEngine("zt-aaaa", rng=random.Random(1), limits=limits)
    engine.register(ServiceSpec("a", "_http._tcp", 1), 0)
    with pytest.raises(LocalProtocolError):
        engine.register(ServiceSpec("b", "_http._tcp", 1), 0)
    engine.browse("_http._tcp", 0)
    with pytest.raises(LocalProtocolError):
        engine.browse("_ipp._tcp", 0)
    engine.resolve_host("x", 0)
    with pytest.raises(LocalProtocolError):
        engine.resolve_host("y", 0)
    assert (
        engine.counters["services_full"],
        engine.counters["browses_full"],
        engine.counters["queries_full"],
    ) == (1, 1, 1)


def test_event_queue_keeps_the_oldest_and_counts_the_rest() -> None:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1, limits=MdnsLimits(max_events=2))
    for i in range(3):
        a.register(ServiceSpec(f"s{i}", "_http._tcp", 1), 0)
    medium.run_until(5000)
    events = a.events()
    assert len(events) == 2 and a.counters["events_dropped"] == 2
    assert isinstance(events[0], HostRegistered | ServiceRegistered)


def test_outgoing_queue_and_unicast_rate_limit_are_counted() -> None:
    medium, _, _ = published()
    a = mdns_node(
        medium,
        "10.0.0.7",
        "zt-limit",
        1,
        limits=MdnsLimits(max_outgoing=1, max_unicast_replies_per_second=3),
    )
    medium.run_for(5000)
    legacy = _qm("zt-limit.local.", TYPE_A)
    for port in range(40000, 40005):
        a.receive(legacy, (OUTSIDER, port), medium.now)
    assert a.counters["unicast_rate_limited"] == 2
    assert a.counters["outgoing_full"] == 2
    assert len(a.poll(medium.now)) == 1


def test_oversized_and_overfull_packets_are_dropped_unread() -> None:
    engine = MdnsEngine("zt-aaaa", rng=random.Random(1))
    engine.receive(b"\x00" * 9001, (OUTSIDER, 5353), 0)
    engine.receive(struct.pack("!6H", 0, 0, 65, 0, 0, 0), (OUTSIDER, 5353), 0)
    engine.receive(struct.pack("!6H", 0, 0x8400, 0, 200, 0, 57), (OUTSIDER, 5353), 0)
    engine.receive(b"\x01\x02\x03", (OUTSIDER, 5353), 0)
    engine.receive(struct.pack("!6H", 0, 0, 1, 0, 0, 0) + b"\x05abc", (OUTSIDER, 5353), 0)
    engine.receive(struct.pack("!6H", 0, 0x2800, 0, 0, 0, 0), (OUTSIDER, 5353), 0)
    c = engine.counters
    assert (
        c["oversize"],
        c["too_many_questions"],
        c["too_many_records"],
        c["malformed"],
        c["bad_opcode"],
    ) == (1, 1, 1, 2, 1)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"instance": ""}, "instance"),
        ({"instance": "x" * 64}, "instance"),
        ({"instance": "bad\x07"}, "instance"),
        ({"service_type": "http._tcp"}, "service type"),
        ({"service_type": "_http._sctp"}, "service type"),
        ({"service_type": "_abcdefghijklmnop._tcp"}, "service type"),
        ({"service_type": "_a--b._tcp"}, "service type"),
        ({"service_type": "_123._tcp"}, "service type"),
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"port": True}, "port"),
        ({"txt": {"k": "v" * 254}}, "255 bytes"),
        ({"txt": {"a=b": "v"}}, "TXT key"),
        ({"txt": {"": "v"}}, "TXT key"),
        ({"txt": {"K": "1", "k": "2"}}, "repeats"),
        ({"txt": {f"k{i}": "v" * 200 for i in range(8)}}, "1300"),
        ({"subtypes": "_printer"}, "subtypes"),
        ({"subtypes": ["a.b"]}, "subtype"),
    ],
)
def test_service_spec_validation(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {"instance": "x", "service_type": "_http._tcp", "port": 80}
    with pytest.raises(ValueError, match=match):
        ServiceSpec(**{**base, **kwargs})


def test_service_type_forms_are_normalized() -> None:
    assert ServiceSpec("x", "_HTTP._TCP.local.", 1).service_type == "_HTTP._tcp"
    assert ServiceSpec("x", "_http._udp.", 1).service_type == "_http._udp"


@pytest.mark.parametrize("bad", ["", "a.b", "x" * 64, "tab\there"])
def test_hostname_validation(bad: str) -> None:
    with pytest.raises(ValueError):
        MdnsEngine(bad, rng=random.Random(1))


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        MdnsLimits(max_cache_entries=0)
    with pytest.raises(ValueError):
        MdnsLimits(max_payload=100)


def test_txt_encoding_and_decoding_follow_rfc_6763_6() -> None:
    assert encode_txt({}) == [b""]
    assert encode_txt({"a": "1", "flag": None, "empty": b""}) == [b"a=1", b"flag", b"empty="]
    decoded = decode_txt([b"A=1", b"a=2", b"flag", b"empty=", b"=novalue", b"", b"bin=\xff\x00"])
    assert decoded == {"a": b"1", "flag": None, "empty": b"", "bin": b"\xff\x00"}


def test_empty_txt_is_one_zero_byte_on_the_wire() -> None:
    medium, a, _ = published()
    a.register(ServiceSpec("Plain", "_http._tcp", 80), medium.now)
    medium.run_for(4000)
    txts = [
        r
        for _, p in responses(medium, IP_A)
        for r in p.answers
        if r.rdtype == TYPE_TXT and r.name.labels[0] == b"Plain"
    ]
    assert txts and txts[0].raw_rdata() == b"\x00"


# --------------------------------------------------------------------------- the codec


def _ptrs(count: int) -> list[Record]:
    return [
        Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(name(f"instance-{i}._http._tcp.local.")))
        for i in range(count)
    ]


def test_known_answers_that_do_not_fit_continue_in_packets_marked_truncated() -> None:
    encoded = encode(
        ident=0,
        flags=0,
        questions=[Question(HTTP, TYPE_PTR)],
        answers=_ptrs(60),
        max_size=512,
        fit=Fit.CONTINUE,
    )
    parsed = [parse(d) for d in encoded.datagrams]
    assert len(parsed) > 2 and all(len(d) <= 512 for d in encoded.datagrams)
    assert [p.truncated for p in parsed] == [True] * (len(parsed) - 1) + [False]
    assert [len(p.questions) for p in parsed] == [1] + [0] * (len(parsed) - 1)
    assert sum(len(p.answers) for p in parsed) == 60


def test_split_repeats_questions_and_truncate_sets_tc() -> None:
    question = Question(HTTP, TYPE_PTR)
    split = encode(ident=9, flags=0x8400, questions=[question], answers=_ptrs(60), max_size=512)
    assert all(
        parse(d).questions == (question,) and not parse(d).truncated for d in split.datagrams
    )
    truncated = encode(
        ident=9,
        flags=0x8400,
        questions=[question],
        answers=_ptrs(60),
        max_size=512,
        fit=Fit.TRUNCATE,
    )
    [only] = truncated.datagrams
    assert parse(only).truncated and 0 < len(parse(only).answers) < 60


def test_a_record_larger_than_a_datagram_is_left_out_and_counted() -> None:
    big = Record(name("x.local."), TYPE_TXT, CLASS_IN, 1, txt_rdata([b"x" * 255] * 4))
    encoded = encode(ident=0, flags=0x8400, answers=[big, *_ptrs(1)], max_size=512)
    assert encoded.left_out == 1
    assert [r.rdtype for d in encoded.datagrams for r in parse(d).answers] == [TYPE_PTR]


def test_edns_opt_records_are_skipped_not_taken_for_cache_flush() -> None:
    message = dns.message.make_query("zt-aaaa.local.", "A", use_edns=0, payload=1440)
    packet = parse(message.to_wire())
    assert packet.additionals == () and packet.questions[0].rdtype == TYPE_A
    assert not packet.questions[0].unicast


def test_multicast_goes_to_the_groups_of_our_address_families() -> None:
    both = MdnsEngine("zt-dual", rng=random.Random(1))
    both.set_addresses([ip_address(IP_A), ip_address("fd00::1")], 0)
    both.start(0)
    v6 = MdnsEngine("zt-six", rng=random.Random(1))
    v6.set_addresses([ip_address("fd00::2")], 0)
    v6.start(0)
    dests_both = {d.dest for t in range(0, 3000, 10) for d in both.poll(t)}
    dests_v6 = {d.dest for t in range(0, 3000, 10) for d in v6.poll(t)}
    assert dests_both == {GROUP, ("ff02::fb", 5353)}
    assert dests_v6 == {("ff02::fb", 5353)}


def test_a_service_is_found_whatever_the_record_order_in_the_packet() -> None:
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    c.browse("_http._tcp", 0)
    medium.run_until(3000)
    inst = name("Rev._http._tcp.local.")
    records = [
        a_record("rev-host.local.", "10.0.0.77"),
        Record(inst, TYPE_SRV, CLASS_IN, 120, srv_rdata(9, name("rev-host.local.")), True),
        Record(HTTP, TYPE_PTR, CLASS_IN, 4500, ptr_rdata(inst)),
    ]
    medium.inject(response(records), (OUTSIDER, 5353))
    [found] = [e for e in c.events() if isinstance(e, ServiceFound)]
    assert (found.info.addresses, found.info.port, found.info.txt) == (["10.0.0.77"], 9, {})
    # the TXT is still missing: C asks for it.
    medium.run_for(100)
    asked = {(q.name, q.rdtype) for _, p, _ in packets(medium, IP_C, 3000) for q in p.questions}
    assert (inst, TYPE_TXT) in asked
