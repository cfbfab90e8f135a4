"""python-zeroconf as an oracle for our mDNS packets, both ways.

Only zeroconf's pure message classes (``DNSIncoming``, ``DNSOutgoing`` and its records) are
used: a real ``zeroconf.Zeroconf`` would open sockets on the machine's interfaces.
"""

from __future__ import annotations

import pytest

zeroconf = pytest.importorskip("zeroconf")
const = pytest.importorskip("zeroconf.const")

from tests.names.medium import Medium  # noqa: E402
from tests.names.util import IP_A, IP_C, OUTSIDER, mdns_node, parse  # noqa: E402
from ztnode.names.events import ServiceFound, ServiceRegistered  # noqa: E402
from ztnode.names.mdns_records import ServiceSpec  # noqa: E402

ZC_IP = "10.0.0.50"
UNIQUE = const._CLASS_IN | const._CLASS_UNIQUE


def announced() -> tuple[Medium, list[bytes]]:
    medium = Medium(5353)
    a = mdns_node(medium, IP_A, "zt-aaaa", 1)
    key = a.register(ServiceSpec("Web Server", "_http._tcp", 8080, {"path": "/x", "flag": None}), 0)
    medium.run_until(5000)
    assert ServiceRegistered(key, "Web Server._http._tcp.local.") in a.events()
    return medium, [s.datagram.data for s in medium.sent_by(IP_A)]


def test_zeroconf_reads_our_announcement() -> None:
    _, sent = announced()
    incoming = [zeroconf.DNSIncoming(d) for d in sent]
    assert all(i.valid for i in incoming)
    announcement = next(
        i
        for i in incoming
        if i.is_response() and any(r.type == const._TYPE_SRV for r in i.answers())
    )
    by_type = {r.type: r for r in announcement.answers()}
    ptr = next(
        r
        for r in announcement.answers()
        if r.type == const._TYPE_PTR and r.name == "_http._tcp.local."
    )
    assert ptr.alias == "Web Server._http._tcp.local." and ptr.ttl == 4500 and not ptr.unique
    srv = by_type[const._TYPE_SRV]
    assert (srv.name, srv.port, srv.server, srv.ttl, srv.unique) == (
        "Web Server._http._tcp.local.",
        8080,
        "zt-aaaa.local.",
        120,
        True,
    )
    txt = by_type[const._TYPE_TXT]
    assert txt.text == b"\x07path=/x\x04flag" and txt.ttl == 4500 and txt.unique
    address = by_type[const._TYPE_A]
    assert (address.name, address.address, address.ttl, address.unique) == (
        "zt-aaaa.local.",
        bytes([10, 0, 0, 1]),
        120,
        True,
    )
    enumeration = [r for r in announcement.answers() if r.name == "_services._dns-sd._udp.local."]
    assert [r.alias for r in enumeration] == ["_http._tcp.local."]


def test_zeroconf_sees_our_probes_as_probes() -> None:
    _, sent = announced()
    probes = [zeroconf.DNSIncoming(d) for d in sent if not parse(d).is_response]
    assert probes and all(p.is_probe() and p.has_qu_question() for p in probes)


def _zeroconf_announcement() -> bytes:
    out = zeroconf.DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    out.add_answer_at_time(
        zeroconf.DNSPointer(
            "_http._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 4500, "Zc._http._tcp.local."
        ),
        0,
    )
    out.add_answer_at_time(
        zeroconf.DNSService(
            "Zc._http._tcp.local.", const._TYPE_SRV, UNIQUE, 120, 0, 0, 8081, "zc-host.local."
        ),
        0,
    )
    out.add_answer_at_time(
        zeroconf.DNSText("Zc._http._tcp.local.", const._TYPE_TXT, UNIQUE, 4500, b"\x03a=1"), 0
    )
    out.add_answer_at_time(
        zeroconf.DNSAddress("zc-host.local.", const._TYPE_A, UNIQUE, 120, bytes([10, 0, 0, 50])),
        0,
    )
    [packet] = out.packets()
    return bytes(packet)


def test_our_browser_understands_a_zeroconf_announcement() -> None:
    medium = Medium(5353)
    c = mdns_node(medium, IP_C, "zt-cccc", 3)
    bid = c.browse("_http._tcp", 0)
    medium.run_until(3000)
    c.events()
    # zeroconf compresses the SRV target: a name pointer inside IN-class rdata whose class
    # carries the cache-flush bit, which dnspython's message reader alone could not decode.
    medium.inject(_zeroconf_announcement(), (ZC_IP, 5353))
    found = [e for e in c.events() if isinstance(e, ServiceFound)]
    assert len(found) == 1 and found[0].browse_id == bid
    info = found[0].info
    assert (info.name, info.host, info.addresses, info.port, info.txt) == (
        "Zc._http._tcp.local.",
        "zc-host.local.",
        [ZC_IP],
        8081,
        {"a": b"1"},
    )


@pytest.mark.parametrize("unicast", [False, True])
def test_our_responder_answers_a_zeroconf_query(unicast: bool) -> None:
    medium, _ = announced()
    question = zeroconf.DNSQuestion("_http._tcp.local.", const._TYPE_PTR, const._CLASS_IN)
    question.unicast = unicast
    out = zeroconf.DNSOutgoing(const._FLAGS_QR_QUERY)
    out.add_question(question)
    [packet] = out.packets()
    t0 = medium.now
    medium.inject(packet, (OUTSIDER, 5353))
    medium.run_for(300)
    sent = medium.sent_by(IP_A, t0)
    assert len(sent) == 1
    # QU with the PTR multicast a few seconds ago: unicast back (RFC 6762 5.4).
    expected = (OUTSIDER, 5353) if unicast else ("224.0.0.251", 5353)
    assert sent[0].datagram.dest == expected
    reply = zeroconf.DNSIncoming(sent[0].datagram.data)
    assert reply.valid and reply.is_response()
    records = reply.answers()
    ptr = [r for r in records if r.type == const._TYPE_PTR]
    assert [(r.name, r.alias) for r in ptr] == [
        ("_http._tcp.local.", "Web Server._http._tcp.local.")
    ]
    assert {r.type for r in records} == {
        const._TYPE_PTR,
        const._TYPE_SRV,
        const._TYPE_TXT,
        const._TYPE_A,
    }
