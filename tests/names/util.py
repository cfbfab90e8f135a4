"""Small builders shared by the names engine tests: engines on a medium, packets by hand.

Why: the tests talk to the engines as a remote host would, with bytes; these helpers build the
queries and responses (through the codec under test's dnspython renderer, so the bytes are
exactly what another implementation would send) and read back what the engines sent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import ip_address

import dns.name

from tests.names.medium import Medium
from ztnode.names.dnscodec import (
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    Packet,
    Question,
    Record,
    a_rdata,
    decode,
    encode,
)
from ztnode.names.llmnr import LlmnrEngine, LlmnrLimits
from ztnode.names.mdns import MdnsEngine, MdnsLimits

IP_A = "10.0.0.1"
IP_B = "10.0.0.2"
IP_C = "10.0.0.3"
OUTSIDER = "10.0.0.99"


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def mdns_node(
    medium: Medium,
    ip: str,
    host: str,
    seed: int,
    *,
    limits: MdnsLimits | None = None,
    start: bool = True,
) -> MdnsEngine:
    engine = MdnsEngine(host, rng=random.Random(seed), limits=limits)
    engine.set_addresses([ip_address(ip)], medium.now)
    if start:
        engine.start(medium.now)
    medium.attach(ip, engine)
    return engine


def llmnr_node(
    medium: Medium,
    ip: str,
    host: str,
    seed: int,
    *,
    limits: LlmnrLimits | None = None,
    start: bool = True,
) -> LlmnrEngine:
    engine = LlmnrEngine(host, rng=random.Random(seed), limits=limits)
    engine.set_addresses([ip_address(ip)], medium.now)
    if start:
        engine.start(medium.now)
    medium.attach(ip, engine)
    return engine


def parse(data: bytes, *, mdns: bool = True) -> Packet:
    return decode(data, max_bytes=65535, max_questions=1000, max_records=1000, mdns=mdns)


def query(
    questions: Sequence[Question],
    known: Sequence[Record] = (),
    *,
    ident: int = 0,
    flags: int = 0,
    authorities: Sequence[Record] = (),
    mdns: bool = True,
) -> bytes:
    encoded = encode(
        ident=ident,
        flags=flags,
        questions=questions,
        answers=known,
        authorities=authorities,
        max_size=9000,
        mdns=mdns,
    )
    assert len(encoded.datagrams) == 1
    return encoded.datagrams[0]


def response(
    answers: Sequence[Record],
    *,
    ident: int = 0,
    flags: int = FLAG_QR | FLAG_AA,
    additionals: Sequence[Record] = (),
    questions: Sequence[Question] = (),
    mdns: bool = True,
) -> bytes:
    encoded = encode(
        ident=ident,
        flags=flags,
        questions=questions,
        answers=answers,
        additionals=additionals,
        max_size=9000,
        mdns=mdns,
    )
    assert len(encoded.datagrams) == 1
    return encoded.datagrams[0]


def a_record(host: str, ip: str, ttl: int = 120, flush: bool = True) -> Record:
    address = ip_address(ip)
    rdtype = 1 if address.version == 4 else 28
    return Record(name(host), rdtype, CLASS_IN, ttl, a_rdata(address), flush)
