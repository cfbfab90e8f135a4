"""One DNS question asked of a network's pushed servers: queries, retransmissions, answers.

Why sans I/O: the schedule (which server when, how long to wait, when to give up, when to go
to TCP) is the part worth testing under a virtual clock; the adapter only moves datagrams and
runs the TCP exchange this asks for. Messages are dnspython's.

Schedule: the first server at once, then every ``attempt_ms`` the next server in turn (back to
the first after the last), the wait doubling after each full round, until ``timeout_ms``; the
first valid answer from any server asked wins (RFC 1035 4.2.1: the reply must come from the
server's address and port 53, with our id and our question). SERVFAIL, REFUSED or NOTIMP from a
server moves on to the next at once; an answer with the TC bit asks the adapter for TCP to that
server (RFC 7766), and a TCP failure goes back to the UDP schedule.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ztnode.names.datagram import Datagram

__all__ = ["DNS_PORT", "LookupResult", "UnicastLookup", "parse_answer"]

DNS_PORT = 53
#: EDNS(0) payload we advertise: the DNS Flag Day 2020 value, safe under ZeroTier's MTU.
EDNS_PAYLOAD = 1232
#: CNAME links followed inside one answer (a loop or a very long chain is a failure).
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True, slots=True)
class LookupResult:
    """How a question ended. ``status``: ``"ok"`` (``addresses`` set), ``"nxdomain"``,
    ``"nodata"`` (the name exists without such records), ``"cname"`` (the answer ends on
    ``target``, to be asked in turn), ``"servfail"`` (every server failed), ``"timeout"``.
    ``ttl`` is seconds: the smallest in the answer, or the negative TTL (RFC 2308)."""

    status: str
    addresses: tuple[str, ...] = ()
    ttl: int | None = None
    target: str | None = None
    server: str | None = None


def _soa_ttl(msg: dns.message.Message) -> int | None:
    """RFC 2308 5: a negative answer lives min(SOA TTL, SOA minimum)."""
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min(rrset.ttl, int(rrset[0].minimum))
    return None


def parse_answer(qname: dns.name.Name, rdtype: int, msg: dns.message.Message) -> LookupResult:
    """What a (validated) NOERROR or NXDOMAIN response says about ``qname``: addresses
    at the end of its CNAME chain, a chain to follow, or a negative answer."""
    rcode = msg.rcode()
    name = qname
    ttls: list[int] = []
    for _ in range(MAX_CNAME_CHAIN + 1):
        found = msg.get_rrset(msg.answer, name, dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype))
        if found is not None and len(found):
            ttls.append(found.ttl)
            addrs = tuple(str(r.address) for r in found)
            return LookupResult("ok", addrs, min(ttls))
        alias = msg.get_rrset(msg.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if alias is None or not len(alias):
            break
        ttls.append(alias.ttl)
        name = alias[0].target
    else:
        return LookupResult("servfail")  # a CNAME loop or a chain beyond reason
    if name != qname and rcode == dns.rcode.NOERROR:
        return LookupResult("cname", ttl=min(ttls), target=name.to_text(omit_final_dot=True))
    status = "nxdomain" if rcode == dns.rcode.NXDOMAIN else "nodata"
    return LookupResult(status, ttl=_soa_ttl(msg))


class UnicastLookup:
    """One question (``name``, A or AAAA) to the servers, on the module's schedule."""

    def __init__(
        self,
        name: str,
        rdtype: int,
        servers: Sequence[str],
        *,
        rng: random.Random,
        now: int,
        timeout_ms: int = 5000,
        attempt_ms: int = 1000,
    ) -> None:
        if not servers:
            raise ValueError("no DNS server to ask")
        self.qname = dns.name.from_text(name)
        self.rdtype = rdtype
        self.servers = list(servers)
        self.query = dns.message.make_query(
            self.qname, dns.rdatatype.RdataType(rdtype), use_edns=0, payload=EDNS_PAYLOAD
        )
        self.query.id = rng.randrange(0x10000)
        self.query.flags |= dns.flags.RD
        self._wire = self.query.to_wire()
        self._deadline = now + timeout_ms
        self._attempt_ms = attempt_ms
        self._next_send: int | None = now
        self._sent = 0
        self._asked: set[str] = set()
        self._failed: set[str] = set()
        #: The server whose truncated answer asks for TCP; the adapter clears it.
        self.tcp_wanted: str | None = None
        self.result: LookupResult | None = None
        self.counters: dict[str, int] = {"sent": 0, "bad_reply": 0, "mismatched": 0}

    @property
    def done(self) -> bool:
        return self.result is not None

    def tcp_query(self) -> bytes:
        """The query as sent over TCP (the adapter adds the two-byte length)."""
        return self._wire

    def next_deadline(self) -> int | None:
        if self.done or self.tcp_wanted is not None:
            return None
        return (
            min(self._deadline, self._next_send)
            if self._next_send is not None
            else (self._deadline)
        )

    def poll(self, now: int) -> list[Datagram]:
        """Transmissions due now; at the overall deadline the lookup ends in ``timeout``."""
        if self.done or self.tcp_wanted is not None:
            return []
        if now >= self._deadline:
            self.result = LookupResult("timeout")
            return []
        out: list[Datagram] = []
        if self._next_send is not None and now >= self._next_send:
            live = [s for s in self.servers if s not in self._failed]
            if not live:
                self.result = LookupResult("servfail")
                return []
            server = live[self._sent % len(live)]
            out.append(Datagram(self._wire, (server, DNS_PORT)))
            self._asked.add(server)
            self._sent += 1
            self.counters["sent"] += 1
            rounds = (self._sent - 1) // len(live)
            self._next_send = now + self._attempt_ms * (1 << min(rounds, 6))
        return out

    def receive(self, data: bytes, src: tuple[str, int], now: int) -> None:
        """A datagram on the lookup's socket: the answer, or something to count and ignore."""
        if self.done or src[1] != DNS_PORT or src[0] not in self._asked:
            self.counters["mismatched"] += 1
            return
        msg = self._parse(data)
        if msg is None:
            return
        if msg.flags & dns.flags.TC:
            self.tcp_wanted = src[0]
            return
        self._conclude(msg, src[0], now)

    def receive_tcp(self, data: bytes, server: str, now: int) -> None:
        """The TCP answer the adapter fetched from ``tcp_wanted``."""
        self.tcp_wanted = None
        msg = self._parse(data)
        if msg is None or msg.flags & dns.flags.TC:
            self.tcp_failed(server, now)
            return
        self._conclude(msg, server, now)

    def tcp_failed(self, server: str, now: int) -> None:
        """TCP to ``server`` did not work: back to UDP with the other servers."""
        self.server_failed(server, now)

    def server_failed(self, server: str, now: int) -> None:
        """``server`` cannot be asked (no route, TCP refused...): the next one, at once."""
        if self.tcp_wanted == server:
            self.tcp_wanted = None
        self._fail(server, now)

    def _parse(self, data: bytes) -> dns.message.Message | None:
        try:
            msg = dns.message.from_wire(data, question_only=False)
        except (dns.exception.DNSException, ValueError, IndexError):
            self.counters["bad_reply"] += 1
            return None
        if (
            msg.id != self.query.id
            or not msg.flags & dns.flags.QR
            or msg.opcode() != dns.opcode.QUERY
            or len(msg.question) != 1
            or msg.question[0].name != self.qname
            or msg.question[0].rdtype != self.rdtype
            or msg.question[0].rdclass != dns.rdataclass.IN
        ):
            self.counters["mismatched"] += 1
            return None
        return msg

    def _conclude(self, msg: dns.message.Message, server: str, now: int) -> None:
        if msg.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self._fail(server, now)
            return
        found = parse_answer(self.qname, self.rdtype, msg)
        self.result = LookupResult(found.status, found.addresses, found.ttl, found.target, server)

    def _fail(self, server: str, now: int) -> None:
        self._failed.add(server)
        if all(s in self._failed for s in self.servers):
            self.result = LookupResult("servfail", server=server)
        else:
            self._next_send = now  # the next server, at once
