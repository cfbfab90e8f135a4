"""The sans-I/O pieces of unicast DNS: the hosts map, the TTL cache, one lookup's schedule and
answers, and the zone a controller serves, checked against each other and against dnspython."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import LocalProtocolError
from ztnode.names.cache import DnsCache
from ztnode.names.hostmap import HostMap
from ztnode.names.labels import default_hostname, label_from_text
from ztnode.names.unicast import LookupResult, UnicastLookup
from ztnode.names.zone import Zone, answer

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA


def zone() -> Zone:
    return Zone.from_hosts(
        "zt.example",
        {"zt-8056c2e21c": ["10.1.0.5", "fd00::5"], "web": ["10.1.0.7"], "a.b": ["10.1.0.9"]},
    )


def serve(lk: UnicastLookup, z: Zone, now: int, *, tcp: bool = False) -> None:
    """Every due datagram of ``lk`` answered by ``z`` from the server it went to."""
    for d in lk.poll(now):
        reply = answer(z, d.data, tcp=tcp)
        assert reply is not None
        lk.receive(reply, d.dest, now)


# --- labels and the hosts map


def test_default_names_and_labels() -> None:
    assert default_hostname(0x8056C2E21C) == "zt-8056c2e21c"
    assert default_hostname(0x1) == "zt-0000000001"
    assert label_from_text("Alice's Laptop (2)") == "alice-s-laptop-2"
    assert label_from_text("  --  ") is None
    assert label_from_text("x" * 80) == "x" * 63


def test_host_map_from_mapping_and_hosts_text() -> None:
    hm = HostMap({"Web.": "10.0.0.1", "db": ["10.0.0.2", IPv6Address("fd00::2")]})
    assert hm.lookup("WEB") == [IPv4Address("10.0.0.1")]
    assert hm.lookup("db") == [IPv4Address("10.0.0.2"), IPv6Address("fd00::2")]
    assert hm.lookup("nope") == [] and "db" in hm and len(hm) == 2
    text = "# comment\n10.0.0.3  api api.zt  # trailing\n\nfd00::3 api\n"
    hosts = HostMap.from_hosts_text(text)
    assert hosts.lookup("api") == [IPv4Address("10.0.0.3"), IPv6Address("fd00::3")]
    assert hosts.lookup("api.zt") == [IPv4Address("10.0.0.3")]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"web": "not-an-ip"}, "not an IP address"),
        ({"": "10.0.0.1"}, "not a host name"),
        ({"a..b": "10.0.0.1"}, "not a host name"),
        ({"web": []}, "no address"),
    ],
)
def test_host_map_refuses_mistakes_clearly(entries: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        HostMap(entries)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="hosts line 1"):
        HostMap.from_hosts_text("10.0.0.1\n")


# --- cache


def test_cache_ttls_negative_answers_and_bound() -> None:
    c = DnsCache(capacity=2)
    c.put_positive("a", A, ("10.0.0.1",), 30, now=0)
    assert c.get("a", A, 29_999) is not None and c.get("a", A, 30_000) is None
    c.put_positive("zero", A, ("10.0.0.1",), 0, now=0)
    assert c.get("zero", A, 0) is None  # TTL 0 is never cached
    c.put_negative("gone", A, "nxdomain", 10, now=0)
    got = c.get("gone", A, 5_000)
    assert got is not None and got.status == "nxdomain" and got.addresses == ()
    c.put_positive("week", A, ("10.0.0.9",), 7 * 86400, now=0)
    assert c.get("week", A, 86_400_000) is None  # capped at one day
    c.put_positive("x", A, ("1.1.1.1",), 60, now=0)
    c.put_positive("y", A, ("1.1.1.2",), 60, now=0)
    c.put_positive("z", A, ("1.1.1.3",), 60, now=0)
    assert len(c) == 2 and c.counters["evicted"] >= 1 and c.get("x", A, 1) is None


# --- the zone, read by dnspython as a client would


def ask(z: Zone, name: str, rdtype: str, **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    wire = answer(z, q.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def test_zone_answers_members_authoritatively() -> None:
    z = zone()
    r = ask(z, "zt-8056c2e21c.zt.example", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert not r.flags & dns.flags.RA
    assert [str(x) for x in r.answer[0]] == ["10.1.0.5"]
    r6 = ask(z, "ZT-8056C2E21C.zt.example.", "AAAA")  # names are case-insensitive
    assert [str(x) for x in r6.answer[0]] == ["fd00::5"]
    both = ask(z, "zt-8056c2e21c.zt.example", "ANY")
    assert {rr.rdtype for rr in both.answer} == {A, AAAA}


def test_zone_negative_answers_carry_the_soa() -> None:
    z = zone()
    nx = ask(z, "nobody.zt.example", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = ask(z, "web.zt.example", "AAAA")  # exists, no IPv6
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    ent = ask(z, "b.zt.example", "A")  # an empty non-terminal above a.b
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
    apex = ask(z, "zt.example", "SOA")
    assert apex.answer[0].rdtype == dns.rdatatype.SOA


def test_zone_refuses_other_names_reverses_its_own_and_ignores_junk() -> None:
    z = zone()
    assert ask(z, "example.com", "A").rcode() == dns.rcode.REFUSED
    ptr = ask(z, "5.0.1.10.in-addr.arpa", "PTR")
    assert ptr.answer[0][0].to_text() == "zt-8056c2e21c.zt.example."
    assert ask(z, "9.9.9.9.in-addr.arpa", "PTR").rcode() == dns.rcode.REFUSED
    assert answer(z, b"\x00\x01garbage") is None
    resp = dns.message.make_response(dns.message.make_query("web.zt.example", "A"))
    assert answer(z, resp.to_wire()) is None  # never answer an answer
    notify = dns.message.make_query("web.zt.example", "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    got = answer(z, notify.to_wire())
    assert got is not None and dns.message.from_wire(got).rcode() == dns.rcode.NOTIMP


def test_zone_truncates_big_udp_answers_and_not_tcp() -> None:
    z = Zone("zt.example")
    z.add("many", [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(200)])
    q = dns.message.make_query("many.zt.example", "A")
    udp = dns.message.from_wire(answer(z, q.to_wire()) or b"")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = dns.message.from_wire(answer(z, q.to_wire(), tcp=True) or b"")
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 200
    edns = dns.message.make_query("web.zt.example", "A", use_edns=0, payload=4096)
    r = dns.message.from_wire(answer(zone(), edns.to_wire()) or b"")
    assert r.edns == 0 and r.payload == 1232


# --- one lookup's schedule and answers


def test_lookup_answered_by_the_first_server() -> None:
    lk = UnicastLookup("web.zt.example", A, ["10.1.0.1"], rng=random.Random(1), now=0)
    serve(lk, zone(), 0)
    assert lk.result == LookupResult("ok", ("10.1.0.7",), 60, None, "10.1.0.1")


def test_lookup_rotates_servers_doubles_waits_and_times_out() -> None:
    lk = UnicastLookup(
        "web.zt.example",
        A,
        ["10.1.0.1", "10.1.0.2"],
        rng=random.Random(2),
        now=0,
        timeout_ms=7000,
    )
    sent: list[tuple[int, str]] = []
    now = 0
    while not lk.done:
        sent += [(now, d.dest[0]) for d in lk.poll(now)]
        deadline = lk.next_deadline()
        assert deadline is not None or lk.done
        now = deadline if deadline is not None else now
    # one second per server in the first round, two in the second...
    assert sent == [
        (0, "10.1.0.1"),
        (1000, "10.1.0.2"),
        (2000, "10.1.0.1"),
        (4000, "10.1.0.2"),
        (6000, "10.1.0.1"),
    ]
    assert lk.result is not None and lk.result.status == "timeout" and now == 7000


def test_lookup_ignores_forgeries_and_strangers() -> None:
    lk = UnicastLookup("web.zt.example", A, ["10.1.0.1"], rng=random.Random(3), now=0)
    (d,) = lk.poll(0)
    good = answer(zone(), d.data)
    assert good is not None
    lk.receive(good, ("10.1.0.66", 53), 1)  # not a server we asked
    lk.receive(good, ("10.1.0.1", 5353), 1)  # wrong port
    wrong_id = bytearray(good)
    wrong_id[0] ^= 0xFF
    lk.receive(bytes(wrong_id), ("10.1.0.1", 53), 1)
    other = dns.message.make_query("evil.zt.example", "A")
    other.id = lk.query.id
    lk.receive(answer(zone(), other.to_wire()) or b"", ("10.1.0.1", 53), 1)  # other question
    lk.receive(b"\xff" * 5, ("10.1.0.1", 53), 1)
    assert not lk.done and lk.counters["mismatched"] == 4 and lk.counters["bad_reply"] == 1
    lk.receive(good, ("10.1.0.1", 53), 2)
    assert lk.result is not None and lk.result.addresses == ("10.1.0.7",)


def test_lookup_negative_servfail_and_next_server() -> None:
    nx = UnicastLookup("nobody.zt.example", A, ["10.1.0.1"], rng=random.Random(4), now=0)
    serve(nx, zone(), 0)
    assert nx.result is not None and nx.result.status == "nxdomain" and nx.result.ttl == 60
    lk = UnicastLookup("web.zt.example", A, ["10.1.0.1", "10.1.0.2"], rng=random.Random(5), now=0)
    (d,) = lk.poll(0)
    refused = dns.message.make_response(dns.message.from_wire(d.data))
    refused.set_rcode(dns.rcode.SERVFAIL)
    lk.receive(refused.to_wire(), d.dest, 10)
    assert not lk.done and lk.next_deadline() == 10  # the next server, at once
    (d2,) = lk.poll(10)
    assert d2.dest == ("10.1.0.2", 53)
    lk.receive(refused.to_wire(), d2.dest, 20)
    assert lk.result is not None and lk.result.status == "servfail"


def test_lookup_truncated_goes_to_tcp_and_back() -> None:
    z = Zone("zt.example")
    z.add("many", [f"10.2.0.{i}" for i in range(1, 200)])
    lk = UnicastLookup("many.zt.example", A, ["10.1.0.1"], rng=random.Random(6), now=0)
    serve(lk, z, 0)
    assert lk.tcp_wanted == "10.1.0.1" and not lk.done and lk.next_deadline() is None
    lk.receive_tcp(answer(z, lk.tcp_query(), tcp=True) or b"", "10.1.0.1", 5)
    assert lk.result is not None and len(lk.result.addresses) == 199
    failing = UnicastLookup(
        "many.zt.example", A, ["10.1.0.1", "10.1.0.2"], rng=random.Random(7), now=0
    )
    serve(failing, z, 0)
    failing.tcp_failed("10.1.0.1", 3)
    assert not failing.done and [d.dest[0] for d in failing.poll(3)] == ["10.1.0.2"]


def test_lookup_cname_chains() -> None:
    lk = UnicastLookup("www.zt.example", A, ["10.1.0.1"], rng=random.Random(8), now=0)
    (d,) = lk.poll(0)
    q = dns.message.from_wire(d.data)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.zt.example.", 300, "IN", "CNAME", "web.zt.example."))
    r.answer.append(dns.rrset.from_text("web.zt.example.", 20, "IN", "A", "10.1.0.7"))
    lk.receive(r.to_wire(), d.dest, 1)
    assert lk.result is not None and lk.result.addresses == ("10.1.0.7",) and lk.result.ttl == 20
    lk2 = UnicastLookup("www.zt.example", A, ["10.1.0.1"], rng=random.Random(8), now=0)
    (d,) = lk2.poll(0)
    r2 = dns.message.make_response(dns.message.from_wire(d.data))
    r2.answer.append(dns.rrset.from_text("www.zt.example.", 300, "IN", "CNAME", "far.example."))
    lk2.receive(r2.to_wire(), d.dest, 1)
    assert lk2.result is not None and (lk2.result.status, lk2.result.target) == (
        "cname",
        "far.example",
    )
    loop = UnicastLookup("x.zt.example", A, ["10.1.0.1"], rng=random.Random(9), now=0)
    (d,) = loop.poll(0)
    r3 = dns.message.make_response(dns.message.from_wire(d.data))
    r3.answer.append(dns.rrset.from_text("x.zt.example.", 300, "IN", "CNAME", "y.zt.example."))
    r3.answer.append(dns.rrset.from_text("y.zt.example.", 300, "IN", "CNAME", "x.zt.example."))
    loop.receive(r3.to_wire(), d.dest, 1)
    assert loop.result is not None and loop.result.status == "servfail"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_junk_never_raises(data: bytes) -> None:
    assert answer(zone(), data) is None or isinstance(answer(zone(), data), bytes)
    lk = UnicastLookup("web.zt.example", A, ["10.1.0.1"], rng=random.Random(10), now=0)
    lk.poll(0)
    lk.receive(data, ("10.1.0.1", 53), 1)
    lk.receive_tcp(data, "10.1.0.1", 2)
