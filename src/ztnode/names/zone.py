"""An authoritative zone for a network's domain: what a controller's DNS role answers.

Why: ZeroTier controllers push a DNS domain and servers (``dns`` in the network JSON), but
nothing in ZeroTierOne answers for members; ZeroNSD, a separate daemon, names them
``zt-<member id>.<domain>`` and ``<member name>.<domain>``. A ztnode controller joined to its own
network serves the same names itself, so the DNS it pushes works with no other server.

:func:`answer` is a pure function from a query to a response (authoritative, no recursion):
names of the zone get their A/AAAA (NXDOMAIN or NODATA with the SOA, RFC 2308, otherwise),
reverse names of members' addresses get PTRs, anything else is REFUSED. UDP answers larger than
the client allows (512 bytes, or its EDNS size up to 1232) are truncated with TC set (RFC 7766),
so the client asks again over TCP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from ztnode.names.labels import normalize_name

__all__ = ["MAX_ZONE_NAMES", "Zone", "answer"]

#: Names one zone holds (members x names per member): a network's size is the controller's.
MAX_ZONE_NAMES = 200_000
#: UDP payload used when the query carries EDNS (RFC 6891), the largest we send.
EDNS_PAYLOAD = 1232
PLAIN_UDP_LIMIT = 512

Address = IPv4Address | IPv6Address


class Zone:
    """Names under ``domain`` and their addresses, and the reverse map."""

    def __init__(self, domain: str, *, ttl: int = 60, serial: int = 1) -> None:
        domain = normalize_name(domain)
        if not domain:
            raise ValueError("a zone needs a domain")
        self.origin = dns.name.from_text(domain)
        self.ttl = ttl
        self.serial = serial & 0xFFFFFFFF
        self._names: dict[dns.name.Name, list[Address]] = {}
        self._reverse: dict[dns.name.Name, dns.name.Name] = {}

    @classmethod
    def from_hosts(
        cls, domain: str, hosts: Mapping[str, Iterable[Address | str]], **kw: int
    ) -> Zone:
        """A zone from ``{label or relative name: addresses}``."""
        zone = cls(domain, **kw)
        for name, addrs in hosts.items():
            zone.add(name, addrs)
        return zone

    def add(self, relative: str, addresses: Iterable[Address | str]) -> None:
        """Serve ``relative.<domain>`` (and its reverse names) with ``addresses``."""
        if len(self._names) >= MAX_ZONE_NAMES:
            raise ValueError(f"a zone holds at most {MAX_ZONE_NAMES} names")
        name = dns.name.from_text(normalize_name(relative), origin=self.origin)
        have = self._names.setdefault(name, [])
        for a in addresses:
            ip = ip_address(str(a))
            if ip not in have:
                have.append(ip)
            self._reverse.setdefault(dns.reversename.from_address(str(ip)), name)

    def addresses(self, name: dns.name.Name) -> list[Address] | None:
        return self._names.get(name)

    def exists(self, name: dns.name.Name) -> bool:
        """A name with records, the apex, or an empty non-terminal above one (RFC 8020)."""
        if name == self.origin or name in self._names:
            return True
        return any(n.is_subdomain(name) for n in self._names)

    def reverse(self, name: dns.name.Name) -> dns.name.Name | None:
        return self._reverse.get(name)

    def soa(self) -> dns.rrset.RRset:
        text = f"ns.{self.origin} hostmaster.{self.origin} {self.serial} 3600 600 86400 {self.ttl}"
        return dns.rrset.from_text(self.origin, self.ttl, "IN", "SOA", text)

    def __len__(self) -> int:
        return len(self._names)


def answer(zone: Zone, wire: bytes, *, tcp: bool = False) -> bytes | None:
    """The response to one query, or None for bytes that are not a query worth answering
    (unparseable, a response, several questions' worth of garbage): silence is the cheapest
    answer to junk."""
    try:
        query = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError, IndexError):
        return None
    if query.flags & dns.flags.QR:
        return None
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.flags &= ~dns.flags.RA
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response.to_wire()
    if len(query.question) != 1 or query.question[0].rdclass != dns.rdataclass.IN:
        response.set_rcode(dns.rcode.FORMERR if len(query.question) != 1 else dns.rcode.REFUSED)
        return response.to_wire()
    q = query.question[0]
    _fill(zone, q.name, q.rdtype, response)
    limit = 65535 if tcp else _udp_limit(query)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        short = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        short.flags |= dns.flags.TC | dns.flags.AA
        short.flags &= ~dns.flags.RA
        return short.to_wire()


def _udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return PLAIN_UDP_LIMIT
    return max(PLAIN_UDP_LIMIT, min(query.payload, EDNS_PAYLOAD))


def _fill(zone: Zone, qname: dns.name.Name, rdtype: int, response: dns.message.Message) -> None:
    target = zone.reverse(qname)
    if target is not None:
        response.flags |= dns.flags.AA
        if rdtype in (dns.rdatatype.PTR, dns.rdatatype.ANY):
            response.answer.append(
                dns.rrset.from_text(qname, zone.ttl, "IN", "PTR", target.to_text())
            )
        return
    if not qname.is_subdomain(zone.origin):
        response.set_rcode(dns.rcode.REFUSED)  # not ours, and we do not recurse
        return
    response.flags |= dns.flags.AA
    if qname == zone.origin and rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
        response.answer.append(zone.soa())
    addrs = zone.addresses(qname) or []
    for wanted, version in ((dns.rdatatype.A, 4), (dns.rdatatype.AAAA, 6)):
        if rdtype not in (wanted, dns.rdatatype.ANY):
            continue
        mine = [str(a) for a in addrs if a.version == version]
        if mine:
            response.answer.append(
                dns.rrset.from_text_list(qname, zone.ttl, "IN", dns.rdatatype.to_text(wanted), mine)
            )
    if response.answer:
        return
    if not zone.exists(qname):
        response.set_rcode(dns.rcode.NXDOMAIN)
    response.authority.append(zone.soa())
