"""Names on the overlay for every API that takes a host: the resolver's policy and its I/O.

Why here: which protocol answers a name is a policy of the node (its static map, its own name,
the domain and servers each network pushes, mDNS and LLMNR where the network allows
multicast), and asking means sockets on the overlay itself. The sans-I/O pieces
(:mod:`ztnode.names`) decide what to send and what an answer means; this module moves their
datagrams, runs the TCP exchange a truncated answer asks for, shares one lookup between callers
asking the same name at once, and turns failures into ``socket.gaierror`` as the stdlib does.

Which names a network answers (its *scope*), first match wins:

1. IP literals; the node's static map (``hosts``); the node's own name (``<hostname>``,
   ``<hostname>.local``, ``<hostname>.<domain>``).
2. ``*.local``: mDNS.
3. A single label: LLMNR, mDNS (``label.local``) and the pushed domain (``label.<domain>``)
   at once; the first answer wins.
4. Names under the network's pushed domain: its pushed DNS servers.
5. Any other name: the pushed servers only with ``dns_any``; otherwise the name is out of
   scope, and :meth:`NameService.lookup` returns nothing so that callers able to fall back
   to the system's resolver (``patch_loop``, the HTTP clients) do so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import dns.rdatatype

from ztnode.core.events import AddressAdded, AddressRemoved, NetworkConfigUpdated
from ztnode.names.cache import DnsCache
from ztnode.names.labels import default_hostname, normalize_name
from ztnode.names.settings import NameSettings
from ztnode.names.unicast import DNS_PORT, LookupResult, UnicastLookup
from ztnode.sockets.addresses import ip_literal
from ztnode.sockets.discovery import Discovery, MulticastResolverView
from ztnode.sockets.dnsserver import DnsServer, controller_zone_source

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network, Node

log = logging.getLogger("ztnode.names")

__all__ = [
    "MAX_INFLIGHT",
    "AddrInfo",
    "NameService",
    "NetworkNames",
    "OverlayNameError",
    "addrinfo",
    "gaierror_for",
    "service_port",
]

#: Unicast lookups one network runs at once (coalesced by name and type); more is EAI_AGAIN.
MAX_INFLIGHT = 256
#: CNAME hops followed across answers.
MAX_CNAME_HOPS = 8

_EAI_NODATA: int = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
_MESSAGES = {
    socket.EAI_NONAME: "Name or service not known",
    _EAI_NODATA: "No address associated with hostname",
    socket.EAI_AGAIN: "Temporary failure in name resolution",
}


class OverlayNameError(socket.gaierror):
    """A ``socket.gaierror`` that also says whether the overlay only stayed silent (mDNS and
    LLMNR asked, nobody answered): then the name may well be the system's to resolve."""

    silent = False


def gaierror_for(
    code: int, name: str, detail: str = "", *, silent: bool = False
) -> socket.gaierror:
    """The stdlib's error for a name that did not resolve, with what was tried."""
    text = f"{_MESSAGES.get(code, 'name resolution failed')}: {name!r}"
    err = OverlayNameError(code, f"{text} ({detail})" if detail else text)
    err.silent = silent
    return err


#: RFC 6761 6.3: these are the host's own, never asked of a network.
_NEVER_ASKED = ("localhost", "localhost.localdomain")
#: How long a name nobody on the link claimed stays unclaimed for routing callers (ms), and how
#: many such names a network remembers.
SILENCE_MS = 5000
MAX_SILENT_NAMES = 1024


def _family_ok(ip: str, family: int) -> bool:
    return family == 0 or (family == 6) == (":" in ip)


class MulticastResolver(Protocol):
    """What the discovery adapter offers the resolver (mDNS or LLMNR on one network)."""

    async def resolve(self, name: str, family: int, timeout: float) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class _Outcome:
    addresses: list[str]
    status: str  # "ok", "nxdomain", "nodata", "timeout", "servfail", "silent" (multicast)
    detail: str


_STATUS_RANK = {"nxdomain": 4, "nodata": 3, "timeout": 2, "servfail": 2, "silent": 1}


class NetworkNames:
    """Names on one network: its scope, its unicast DNS lookups and cache (module docstring)."""

    def __init__(self, service: NameService, net: Network) -> None:
        self.service = service
        self.net = net
        self.cache = DnsCache(service.settings.cache_size)
        self._inflight: dict[tuple[str, int], asyncio.Future[LookupResult]] = {}
        self._dns_seen: tuple[str, tuple[str, ...]] | None = None
        #: Names the links stayed silent about, until when (bounded, oldest out first).
        self._silent: dict[str, int] = {}
        #: mDNS and LLMNR, set by the discovery adapter when the network allows multicast.
        self.mdns: MulticastResolver | None = None
        self.llmnr: MulticastResolver | None = None
        #: The controller's DNS role on this network, when it runs (:meth:`update_roles`).
        self.dns_server: DnsServer | None = None
        #: mDNS and LLMNR, when the network carries multicast (:meth:`update_roles`).
        self.discovery: Discovery | None = None
        self._roles_task: asyncio.Task[None] | None = None
        self.counters: dict[str, int] = {
            "lookups": 0,
            "coalesced": 0,
            "inflight_full": 0,
            "tcp_fallbacks": 0,
            "answered_from_cache": 0,
            "silent_evicted": 0,
        }

    # --- what the network pushes

    def pushed_dns(self) -> tuple[str, tuple[str, ...]]:
        """What the network's config pushes: the domain (normalized, "" for none) and the
        servers (IP strings), whether or not this node uses them."""
        core = self.net.node._core.network(self.net.id) if self.net.node.started else None
        cfg = core.config if core is not None else None
        if cfg is None:
            return "", ()
        return normalize_name(cfg.dns.domain), tuple(str(s.ip) for s in cfg.dns.servers)

    def dns_config(self) -> tuple[str, tuple[str, ...]]:
        """The pushed domain and servers this node asks: those of :meth:`pushed_dns` when the
        network's ``allowDNS`` is on (``Node.join(allow_dns=True)``, ``ztnode set NWID
        allowDNS=1``), none otherwise, as ZeroTierOne leaves the system's resolver alone."""
        allowed = self.net.node.started and self.net.node.service.settings(self.net.id).allow_dns
        seen = self.pushed_dns() if allowed else ("", ())
        if self._dns_seen is not None and self._dns_seen != seen:
            self.cache.clear()  # new servers or domain: old answers are someone else's
        self._dns_seen = seen
        return seen

    def own_addresses(self, family: int = 0) -> list[str]:
        out = [str(a.ip) for a in self.net.addresses]
        v4 = [a for a in out if ":" not in a]
        v6 = [a for a in out if ":" in a]
        return [a for a in v4 + v6 if _family_ok(a, family)]

    def own_names(self) -> set[str]:
        name = self.discovery.hostname if self.discovery is not None else self.service.hostname
        domain, _ = self.dns_config()
        names = {name, f"{name}.local"}
        if domain:
            names.add(f"{name}.{domain}")
        return names

    # --- the controller's DNS role

    def wants_dns_role(self) -> bool:
        """Whether this node should answer the network's DNS: it hosts the network's
        controller, and ``serve_dns`` is on, or unset and one of its addresses on the network
        is among the servers the network pushes."""
        node = self.net.node
        choice = self.service.settings.serve_dns
        if choice is False or not node.started or node.service.controller is None:
            return False
        if self.net.id >> 24 != int(node.address, 16):
            return False
        if choice:
            return True
        _, servers = self.pushed_dns()
        return bool(set(servers) & set(self.own_addresses()))

    def wants_discovery(self) -> bool:
        """mDNS/LLMNR run where the network carries multicast and this node has addresses."""
        settings = self.service.settings
        if not (settings.mdns or settings.llmnr) or not self.net.node.started:
            return False
        core = self.net.node._core.network(self.net.id)
        cfg = core.config if core is not None else None
        return cfg is not None and cfg.multicast_limit > 0 and bool(self.net.addresses)

    def update_roles(self) -> None:
        """Start or stop the DNS role and discovery after a config or address change."""
        if self._roles_task is not None and not self._roles_task.done():
            return
        if self.discovery is not None:
            self.discovery.refresh_addresses()
        want = self.wants_dns_role()
        discover = self.wants_discovery()
        if (want and self.dns_server is None) or (discover and self.discovery is None):
            self._roles_task = asyncio.ensure_future(self._start_roles(want, discover))
        if not want and self.dns_server is not None:
            self.dns_server.close()
            self.dns_server = None
        if not discover and self.discovery is not None:
            self._stop_discovery()

    async def _start_roles(self, dns_role: bool, discover: bool) -> None:
        if dns_role and self.dns_server is None:
            await self._start_dns_role()
        if discover and self.discovery is None:
            disc = Discovery(self)
            try:
                await disc.start()
            except OSError as exc:
                disc.close()
                log.warning("network %016x: no mDNS/LLMNR: %s", self.net.id, exc)
                return
            self.discovery = disc
            self.mdns = MulticastResolverView(disc, "mdns") if disc.mdns is not None else None
            self.llmnr = MulticastResolverView(disc, "llmnr") if disc.llmnr is not None else None

    def _stop_discovery(self) -> None:
        if self.discovery is not None:
            self.discovery.close()
        self.discovery = None
        self.mdns = self.llmnr = None

    async def ready(self) -> None:
        """Wait for roles being started (tests and ``advertise`` need the sockets bound)."""
        self.update_roles()
        task = self._roles_task
        if task is not None and not task.done():
            await asyncio.shield(task)

    async def _start_dns_role(self) -> None:
        server = DnsServer(self.net, controller_zone_source(self.net))
        try:
            await server.start()
        except OSError as exc:
            log.warning("network %016x: cannot serve DNS: %s", self.net.id, exc)
            return
        self.dns_server = server
        log.info("network %016x: answering DNS for its members", self.net.id)

    def close(self) -> None:
        if self._roles_task is not None:
            self._roles_task.cancel()
        if self.dns_server is not None:
            self.dns_server.close()
            self.dns_server = None
        self._stop_discovery()

    # --- names nobody claimed

    def recently_silent(self, name: str, now: int) -> bool:
        until = self._silent.get(name)
        if until is None:
            return False
        if until <= now:
            del self._silent[name]
            return False
        return True

    def note_silent(self, name: str, now: int) -> None:
        if len(self._silent) >= MAX_SILENT_NAMES:
            self._silent.pop(next(iter(self._silent)))
            self.counters["silent_evicted"] += 1
        self._silent[name] = now + SILENCE_MS

    # --- resolution

    def in_scope(self, host: str) -> bool:
        """Whether this network would try to answer ``host`` (module docstring)."""
        return self._plan(normalize_name(host), 0) is not None

    async def resolve(self, host: str, family: int = 0) -> list[str] | None:
        """Addresses of ``host`` on this network, IPv4 first (RFC 6724 ranks IPv4 above the
        ULAs ZeroTier assigns); None when the name is out of this network's scope; a
        ``socket.gaierror`` when it is in scope and did not resolve."""
        ip = ip_literal(host)
        if ip is not None:
            return [ip] if _family_ok(ip, family) else []
        name = normalize_name(host)
        fixed = [str(a) for a in self.service.settings.hosts.lookup(name)]
        if fixed:
            return [a for a in fixed if _family_ok(a, family)]
        if name in self.own_names():
            return self.own_addresses(family)
        plan = self._plan(name, family)
        if plan is None:
            return None
        attempts, detail = plan
        outcome = await self._first_answer(attempts, detail)
        if outcome.addresses:
            return outcome.addresses
        code = {
            "nxdomain": socket.EAI_NONAME,
            "silent": socket.EAI_NONAME,
            "nodata": _EAI_NODATA,
        }.get(outcome.status, socket.EAI_AGAIN)
        raise gaierror_for(code, host, outcome.detail, silent=outcome.status == "silent")

    def _plan(
        self, name: str, family: int
    ) -> tuple[list[Callable[[], Awaitable[_Outcome]]], str] | None:
        """The lookups that may answer ``name``, run at once; None: out of scope."""
        if not name or ip_literal(name) is not None:
            return None
        if name in _NEVER_ASKED or name.endswith(".localhost"):
            return None
        domain, servers = self.dns_config()
        timeout = self.service.settings.timeout
        attempts: list[Callable[[], Awaitable[_Outcome]]] = []
        tried: list[str] = []

        def by_multicast(proto: MulticastResolver | None, label: str, what: str) -> None:
            if proto is None:
                return
            tried.append(what)
            # A link answers quickly or not at all (RFC 4795's LLMNR_TIMEOUT is 1 s, RFC 6762
            # 5.1 one-shot queries wait about as long), but over ZeroTier the first contact
            # with a member (its identity, a path, its credentials, ARP) can take a second of
            # its own: three seconds, the queries repeated inside them.
            wait = min(timeout, 3.0)

            async def go() -> _Outcome:
                try:
                    got = await proto.resolve(label, family, wait)
                except TimeoutError:
                    got = []
                # On a link, silence is the answer: nobody holds the name (nss-mdns says
                # NOTFOUND too); a DNS server that did not answer says nothing of the kind.
                return _Outcome(got, "ok" if got else "silent", what)

            attempts.append(go)

        def by_dns(qname: str) -> None:
            if not servers:
                return
            tried.append(f"DNS {', '.join(servers)}")
            attempts.append(lambda: self._dns(qname, family))

        if name.endswith(".local"):
            by_multicast(self.mdns, name, "mDNS")
        elif "." not in name:
            by_multicast(self.llmnr, name, "LLMNR")
            by_multicast(self.mdns, f"{name}.local", "mDNS")
            if domain:
                by_dns(f"{name}.{domain}")
        else:
            under = bool(domain) and (name == domain or name.endswith("." + domain))
            if under or self.service.settings.dns_any:
                by_dns(name)
        if not attempts:
            return None
        return attempts, f"network {self.net.id:016x}: {'; '.join(tried)}"

    async def _first_answer(
        self, attempts: list[Callable[[], Awaitable[_Outcome]]], detail: str
    ) -> _Outcome:
        tasks = [asyncio.ensure_future(a()) for a in attempts]
        best = _Outcome([], "silent", detail)
        try:
            for fut in asyncio.as_completed(tasks):
                got = await fut
                if got.addresses:
                    return _Outcome(got.addresses, "ok", detail)
                if _STATUS_RANK.get(got.status, 0) > _STATUS_RANK.get(best.status, 0):
                    best = _Outcome([], got.status, detail)
            return best
        finally:
            for t in tasks:
                t.cancel()

    async def _dns(self, name: str, family: int) -> _Outcome:
        kinds = [k for k, f in ((dns.rdatatype.A, 4), (dns.rdatatype.AAAA, 6)) if family in (0, f)]
        results = await asyncio.gather(*(self._dns_follow(name, k) for k in kinds))
        addrs = [a for r in results for a in r.addresses]
        if addrs:
            return _Outcome(addrs, "ok", "")
        statuses = [r.status for r in results]
        if "nxdomain" in statuses:
            return _Outcome([], "nxdomain", "")
        if all(s == "nodata" for s in statuses):
            return _Outcome([], "nodata", "")
        return _Outcome([], "timeout" if "timeout" in statuses else "servfail", "")

    async def _dns_follow(self, name: str, rdtype: int) -> LookupResult:
        """One record type of ``name``, CNAMEs followed across answers."""
        for _ in range(MAX_CNAME_HOPS):
            result = await self._dns_cached(name, rdtype)
            if result.status != "cname" or result.target is None:
                return result
            name = normalize_name(result.target)
        return LookupResult("servfail")

    async def _dns_cached(self, name: str, rdtype: int) -> LookupResult:
        now = self.net.node._now()
        hit = self.cache.get(name, rdtype, now)
        if hit is not None:
            self.counters["answered_from_cache"] += 1
            return LookupResult(hit.status, hit.addresses)
        key = (name, rdtype)
        pending = self._inflight.get(key)
        if pending is not None:
            self.counters["coalesced"] += 1
            return await asyncio.shield(pending)
        if len(self._inflight) >= MAX_INFLIGHT:
            self.counters["inflight_full"] += 1
            return LookupResult("servfail")
        fut: asyncio.Future[LookupResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._ask(name, rdtype)
            fut.set_result(result)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: callers sharing it see it, nobody else must
            raise
        finally:
            del self._inflight[key]
        later = self.net.node._now()
        if result.status == "ok" and result.ttl is not None:
            self.cache.put_positive(name, rdtype, result.addresses, result.ttl, later)
        elif result.status in ("nxdomain", "nodata"):
            self.cache.put_negative(name, rdtype, result.status, result.ttl, later)
        return result

    async def _ask(self, name: str, rdtype: int) -> LookupResult:
        """One lookup driven to its end: datagrams out, answers in, TCP when truncated."""
        _, servers = self.dns_config()
        if not servers:
            return LookupResult("servfail")
        node = self.net.node
        self.counters["lookups"] += 1
        lk = UnicastLookup(
            name,
            rdtype,
            servers,
            rng=self.service.rng,
            now=node._now(),
            timeout_ms=int(self.service.settings.timeout * 1000),
        )
        wake = asyncio.Event()
        endpoints: dict[int, asyncio.DatagramTransport] = {}

        class Answers(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                lk.receive(data, (str(addr[0]), int(addr[1])), node._now())
                wake.set()

            def error_received(self, exc: Exception) -> None:
                wake.set()

        try:
            while not lk.done:
                now = node._now()
                for d in lk.poll(now):
                    fam = 6 if ":" in d.dest[0] else 4
                    try:
                        tr = endpoints.get(fam)
                        if tr is None:
                            tr, _ = await self.net.create_datagram_endpoint(Answers, family=fam)
                            endpoints[fam] = tr
                        tr.sendto(d.data, d.dest)
                    except OSError:
                        lk.server_failed(d.dest[0], now)
                if lk.done:
                    break
                if lk.tcp_wanted is not None:
                    await self._tcp(lk)
                    continue
                deadline = lk.next_deadline()
                wait = max(0.0, ((deadline if deadline is not None else now) - now) / 1000)
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
        finally:
            for tr in endpoints.values():
                tr.close()
        assert lk.result is not None
        return lk.result

    async def _tcp(self, lk: UnicastLookup) -> None:
        server = lk.tcp_wanted
        assert server is not None
        self.counters["tcp_fallbacks"] += 1
        query = lk.tcp_query()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.service.settings.timeout):
                reader, writer = await self.net.open_connection(server, DNS_PORT)
                writer.write(len(query).to_bytes(2, "big") + query)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
            lk.receive_tcp(data, server, self.net.node._now())
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            lk.tcp_failed(server, self.net.node._now())
        finally:
            if writer is not None:
                writer.close()


class NameService:
    """The node's names: settings, one :class:`NetworkNames` per network, lookups across
    networks (module docstring)."""

    def __init__(self, node: Node, settings: NameSettings) -> None:
        self.node = node
        self.settings = settings
        self.rng = random.SystemRandom()
        self._networks: dict[int, NetworkNames] = {}

    @property
    def hostname(self) -> str:
        """The label this node answers to: configured, or ``zt-<address>``."""
        if self.settings.hostname is not None:
            return self.settings.hostname
        return default_hostname(int(self.node.address, 16))

    def of(self, net: Network) -> NetworkNames:
        names = self._networks.get(net.id)
        if names is None or names.net is not net:
            names = self._networks[net.id] = NetworkNames(self, net)
        return names

    def metrics(self) -> list[Any]:
        """``ztnode_names_*`` families for ``GET /metrics``: per network the resolver's
        counters and cache, mDNS, LLMNR and the DNS role's counters."""
        lookups: list[tuple[dict[str, str], int | float]] = []
        cache: list[tuple[dict[str, str], int | float]] = []
        proto: list[tuple[dict[str, str], int | float]] = []
        server: list[tuple[dict[str, str], int | float]] = []
        for nwid, names in sorted(self._networks.items()):
            net = {"network_id": f"{nwid:016x}"}
            lookups += [({**net, "event": k}, v) for k, v in sorted(names.counters.items())]
            lookups += [
                ({**net, "event": f"cache_{k}"}, v) for k, v in sorted(names.cache.counters.items())
            ]
            cache.append((net, len(names.cache)))
            disc = names.discovery
            for label, engine in (
                ("mdns", disc.mdns if disc else None),
                ("llmnr", disc.llmnr if disc else None),
            ):
                if engine is not None:
                    proto += [
                        ({**net, "protocol": label, "event": k}, v)
                        for k, v in sorted(engine.counters.items())
                    ]
            if names.dns_server is not None:
                server += [
                    ({**net, "event": k}, v) for k, v in sorted(names.dns_server.counters.items())
                ]
        return [
            ("ztnode_names_resolver_total", "counter", "the resolver's lookups and cache", lookups),
            ("ztnode_names_cache_entries", "gauge", "DNS answers cached", cache),
            (
                "ztnode_names_multicast_total",
                "counter",
                "mDNS and LLMNR datagrams and events, by protocol (drops included)",
                proto,
            ),
            ("ztnode_names_dns_server_total", "counter", "the DNS role's queries", server),
        ]

    def forget(self, network_id: int) -> None:
        names = self._networks.pop(network_id, None)
        if names is not None:
            names.close()

    def close(self) -> None:
        """The node stops: every network's roles end."""
        for names in self._networks.values():
            names.close()
        self._networks.clear()

    def on_event(self, e: object) -> None:
        """Config and address changes may start or stop a network's roles."""
        nwid = getattr(e, "network_id", None)
        if not isinstance(e, (NetworkConfigUpdated, AddressAdded, AddressRemoved)):
            return
        net = self.node._network_object(nwid) if isinstance(nwid, int) else None
        if net is not None:
            # After the host has applied the change (the stack's addresses follow the event).
            asyncio.get_running_loop().call_soon(self.of(net).update_roles)

    async def lookup(self, host: str, family: int = 0) -> list[tuple[Network, str]]:
        """``(network, address)`` pairs for ``host`` in preference order: the network that
        routes an IP literal; for a name, every network whose scope holds it (the static map
        answers on the network that routes the address). Empty when no network's scope
        holds the name (the caller may use the system's resolver); ``socket.gaierror`` when
        some did and none resolved it."""
        node = self.node
        ip = ip_literal(host)
        if ip is not None:
            net = node.network_for(ip)
            return [(net, ip)] if net is not None and _family_ok(ip, family) else []
        nets = node.networks
        fixed = [str(a) for a in self.settings.hosts.lookup(host)]
        if fixed:
            routed = [(node.network_for(a), a) for a in fixed if _family_ok(a, family)]
            return [(n, a) for n, a in routed if n is not None]
        names = [self.of(n) for n in nets]
        key = normalize_name(host)
        now = node._now()
        scoped = [
            n
            for n in names
            if (n.in_scope(host) or key in n.own_names()) and not n.recently_silent(key, now)
        ]
        if not scoped:
            return []
        results = await asyncio.gather(
            *(n.resolve(host, family) for n in scoped), return_exceptions=True
        )
        out: list[tuple[Network, str]] = []
        errors: list[socket.gaierror] = []
        for n, r in zip(scoped, results, strict=True):
            if isinstance(r, socket.gaierror):
                errors.append(r)
            elif isinstance(r, BaseException):
                raise r
            elif r:
                out += [(n.net, a) for a in r]
        if out:
            return out
        if errors and all(getattr(e, "silent", False) for e in errors):
            # Asked on the links, claimed by nobody: not an overlay name after all (a kernel
            # name like a container's, for callers that fall back). Remembered briefly, so a
            # loop of connections does not wait on the links each time.
            for n in scoped:
                n.note_silent(key, now)
            return []
        if errors:
            nonames = [e for e in errors if e.errno in (socket.EAI_NONAME, _EAI_NODATA)]
            raise (nonames or errors)[0]
        raise gaierror_for(_EAI_NODATA, host, "no address of the family asked for")


AddrInfo = tuple[
    socket.AddressFamily,
    socket.SocketKind,
    int,
    str,
    tuple[str, int] | tuple[str, int, int, int],
]

_KINDS = (
    (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    (socket.SOCK_RAW, 0),
)


def service_port(port: int | str | bytes | None) -> int:
    """A port as ``getaddrinfo`` takes it: a number, its text, a service name, or None."""
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, int):
        value = port
    elif port.isdigit():
        value = int(port)
    else:
        try:
            value = socket.getservbyname(port)
        except OSError:
            raise socket.gaierror(socket.EAI_SERVICE, f"Servname not supported: {port!r}") from None
    if not 0 <= value <= 0xFFFF:
        raise socket.gaierror(socket.EAI_SERVICE, f"port {value} out of range")
    return value


def addrinfo(
    addresses: list[str], port: int, family: int = 0, type: int = 0, proto: int = 0
) -> list[AddrInfo]:
    """``socket.getaddrinfo``'s tuples for overlay addresses: one per address and socket kind
    (all three kinds when ``type`` is 0, as the C library answers)."""
    out: list[AddrInfo] = []
    for ip in addresses:
        v6 = ":" in ip
        if family not in (0, socket.AF_INET6 if v6 else socket.AF_INET):
            continue
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        sa: tuple[str, int] | tuple[str, int, int, int] = (ip, port, 0, 0) if v6 else (ip, port)
        for kind, kproto in _KINDS:
            if type not in (0, kind) or proto not in (0, kproto):
                continue
            out.append((fam, kind, kproto, "", sa))
    return out
