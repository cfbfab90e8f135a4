"""mDNS/DNS-SD and LLMNR on a network: the sockets, one timer, and the engines' events turned
into futures and async iterators.

Why a thin adapter: the protocols live in the sans-I/O engines (:mod:`ztnode.names.mdns`,
:mod:`ztnode.names.llmnr`); this module binds UDP 5353 and 5355 on the network (shared, as
Avahi shares them, so a program's own mDNS socket still works), joins the groups, feeds every
datagram to its engine, sends what the engines return, re-arms one ``loop.call_at`` for the
nearest deadline of both, runs LLMNR's TCP side (the responder on TCP 5355, and the retry a
truncated answer asks for), and delivers events: one-shot lookups to the resolver's futures,
registrations to :class:`Advertisement`, browse results to :class:`ServiceBrowser` queues.

It runs only on networks that carry multicast (the config's multicast limit is above zero) and
stops when the network goes. Every queue is bounded: a browser that is not read loses the
oldest changes, counted, and discovery traffic nobody asked for is dropped by the engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from ztnode.names.datagram import Datagram
from ztnode.names.events import (
    HostConflict,
    HostNotFound,
    HostRenamed,
    HostResolved,
    RetryOverTcp,
    ServiceFound,
    ServiceInfo,
    ServiceLost,
    ServiceRegistered,
    ServiceRenamed,
    ServiceUpdated,
)
from ztnode.names.llmnr import LLMNR_GROUP_V4, LLMNR_GROUP_V6, LLMNR_PORT, LlmnrEngine
from ztnode.names.mdns import MDNS_GROUP_V4, MDNS_GROUP_V6, MDNS_PORT, MdnsEngine
from ztnode.names.mdns_records import ServiceSpec

if TYPE_CHECKING:
    from ztnode.sockets.aio import Network
    from ztnode.sockets.aio_tcp import TcpServer
    from ztnode.sockets.names import NetworkNames

log = logging.getLogger("ztnode.names")

__all__ = ["Advertisement", "Discovery", "ServiceBrowser", "ServiceChange"]

#: Changes a browser holds for a reader that is behind (the oldest are dropped, counted).
BROWSER_QUEUE = 1024
#: LLMNR answers kept (names), and for how long at most (its responders' default TTL, 30 s).
LLMNR_CACHE = 256
LLMNR_ANSWER_TTL_MS = 30_000
#: LLMNR over TCP: connections served at once, and how long one may stay silent.
LLMNR_TCP_MAX = 16
LLMNR_TCP_IDLE = 5.0


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """What a browser reports: ``kind`` is ``"added"``, ``"updated"`` or ``"removed"``;
    ``service`` the instance as last known (for ``removed``, as it was before it left)."""

    kind: str
    service: ServiceInfo


class ServiceBrowser:
    """``async for change in network.browse("_http._tcp")``: services as they come and go;
    :attr:`services` is the current set by fully qualified name. ``close()`` stops browsing."""

    def __init__(self, discovery: Discovery, service_type: str, browse_id: int) -> None:
        self._discovery = discovery
        self.service_type = service_type
        self.browse_id = browse_id
        self.services: dict[str, ServiceInfo] = {}
        self._queue: deque[ServiceChange] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def _push(self, change: ServiceChange) -> None:
        if change.kind == "removed":
            self.services.pop(change.service.name, None)
        else:
            self.services[change.service.name] = change.service
        if len(self._queue) >= BROWSER_QUEUE:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(change)
        self._wake.set()

    def __aiter__(self) -> ServiceBrowser:
        return self

    async def __anext__(self) -> ServiceChange:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._discovery._stop_browse(self)

    async def __aenter__(self) -> ServiceBrowser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _instance_of(fqdn: str, service_type: str) -> str:
    """``My site._http._tcp.local.`` -> ``My site`` (RFC 6763 4.3 escapes undone)."""
    suffix = f".{service_type}.local"
    text = fqdn.rstrip(".")
    if text.lower().endswith(suffix.lower()):
        text = text[: -len(suffix)]
    return text.replace("\\.", ".").replace("\\\\", "\\")


class Advertisement:
    """A service published by mDNS/DNS-SD; :attr:`name` is the instance name it won (it may
    carry `` (2)`` after a conflict), :attr:`fqdn` the whole name. ``close()`` says goodbye
    (TTL 0)."""

    def __init__(self, discovery: Discovery, key: int, spec: ServiceSpec) -> None:
        self._discovery = discovery
        self.key = key
        self.spec = spec
        self.name: str | None = None
        self.fqdn: str | None = None
        self.registered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<Advertisement {self.name or self.spec.instance!r} {self.spec.service_type}>"

    def close(self) -> None:
        self._discovery._withdraw(self)

    async def __aenter__(self) -> Advertisement:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, deliver: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.deliver(data, (str(addr[0]), int(addr[1])))


class Discovery:
    """mDNS and LLMNR on one network (module docstring)."""

    def __init__(self, names: NetworkNames) -> None:
        self.names = names
        self.net: Network = names.net
        settings = names.service.settings
        hostname = names.service.hostname
        rng = names.service.rng
        self.mdns = MdnsEngine(hostname, rng=rng) if settings.mdns else None
        self.llmnr = LlmnrEngine(hostname, rng=rng) if settings.llmnr else None
        self._udp: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self._tcp: TcpServer | None = None
        self._groups: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lookups: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._ads: dict[int, Advertisement] = {}
        self._browsers: dict[int, ServiceBrowser] = {}
        self._addresses: tuple[IPv4Address | IPv6Address, ...] = ()
        self._own: frozenset[str] = frozenset()  # the same, as text: our own datagrams
        #: LLMNR answers by (name, family): until when, and the addresses (bounded).
        self._llmnr_cache: dict[tuple[str, int], tuple[int, tuple[str, ...]]] = {}
        self._llmnr_ttl_ms = LLMNR_ANSWER_TTL_MS
        self.started = False
        self.counters: dict[str, int] = {"send_errors": 0, "tcp_refused": 0, "tcp_retries": 0}

    # --- lifecycle

    @property
    def hostname(self) -> str:
        """The label this node holds on the network (another after a conflict)."""
        if self.mdns is not None:
            return self.mdns.hostname
        if self.llmnr is not None:
            return self.llmnr.hostname
        return self.names.service.hostname

    async def start(self) -> None:
        families = {a.version for a in self.net.addresses}
        for proto, groups in (
            (self.mdns, ((4, MDNS_GROUP_V4, MDNS_PORT), (6, MDNS_GROUP_V6, MDNS_PORT))),
            (self.llmnr, ((4, LLMNR_GROUP_V4, LLMNR_PORT), (6, LLMNR_GROUP_V6, LLMNR_PORT))),
        ):
            if proto is None:
                continue
            for family, group, port in groups:
                if family not in families:
                    continue
                engine: Any = proto
                deliver = self._receiver(engine)
                tr, _ = await self.net.create_datagram_endpoint(
                    lambda d=deliver: _Endpoint(d),  # type: ignore[misc]
                    local_addr=("0.0.0.0" if family == 4 else "::", port),
                    family=family,
                    reuse_port=True,
                )
                self._udp[(group, port)] = tr
                self.net.join_group(group)
                self._groups.append(group)
        if self.llmnr is not None:
            self._tcp = await self.net.start_server(self._serve_tcp, None, LLMNR_PORT, family=0)
        self.started = True
        self.refresh_addresses()
        now = self.net.node._now()
        for engine in self._engines():
            engine.start(now)
        self._pump()

    def close(self) -> None:
        """Goodbyes out, sockets closed, groups left, every waiter told."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.started:
            now = self.net.node._now()
            for engine in self._engines():
                with contextlib.suppress(Exception):
                    self._send(engine.close(now), engine)
        self.started = False
        for tr in self._udp.values():
            tr.close()
        self._udp.clear()
        for group in self._groups:
            with contextlib.suppress(OSError):
                self.net.leave_group(group)
        self._groups.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        for fut in self._lookups.values():
            if not fut.done():
                fut.set_result([])
        for ad in self._ads.values():
            if not ad.registered.done():
                ad.registered.set_exception(ConnectionAbortedError("discovery stopped"))
                ad.registered.exception()
        for browser in list(self._browsers.values()):
            browser._closed = True
            browser._wake.set()

    def _engines(self) -> list[Any]:
        return [e for e in (self.mdns, self.llmnr) if e is not None]

    def refresh_addresses(self) -> None:
        """The network's addresses changed: the engines answer with the new ones."""
        addrs = tuple(a.ip for a in self.net.addresses)
        if addrs == self._addresses or not self.started:
            return
        self._addresses = addrs
        self._own = frozenset(str(a) for a in addrs)
        now = self.net.node._now()
        for engine in self._engines():
            engine.set_addresses(list(addrs), now)
        self._pump()

    # --- the engines' I/O

    def _receiver(self, engine: Any) -> Callable[[bytes, tuple[str, int]], None]:
        def deliver(data: bytes, src: tuple[str, int]) -> None:
            if src[0] in self._own:
                return  # our own multicast, looped back by a bridge or a shared socket
            engine.receive(data, src, self.net.node._now())
            self._pump()

        return deliver

    def _send(self, datagrams: Sequence[Datagram], engine: object) -> None:
        mdns = engine is self.mdns
        for d in datagrams:
            # The engine's socket for the destination's family: everything mDNS sends goes
            # from 5353 (RFC 6762 6, legacy unicast answers included), LLMNR's from 5355.
            v6 = ":" in d.dest[0]
            if mdns:
                key = (MDNS_GROUP_V6 if v6 else MDNS_GROUP_V4, MDNS_PORT)
            else:
                key = (LLMNR_GROUP_V6 if v6 else LLMNR_GROUP_V4, LLMNR_PORT)
            tr = self._udp.get(key)
            if tr is None:
                self.counters["send_errors"] += 1
                continue
            tr.sendto(d.data, d.dest)

    def _pump(self) -> None:
        """Send what is due, handle events, re-arm the one timer."""
        if not self.started:
            return
        now = self.net.node._now()
        deadlines: list[int] = []
        for engine in self._engines():
            self._send(engine.poll(now), engine)
            for e in engine.events():
                self._event(e)
            d = engine.next_deadline()
            if d is not None:
                deadlines.append(d)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            loop = asyncio.get_running_loop()
            delay = max(0.0, (min(deadlines) - now) / 1000)
            self._timer = loop.call_later(delay, self._pump)

    def _event(self, e: object) -> None:
        if isinstance(e, HostResolved | HostNotFound):
            fut = self._lookups.pop((e.protocol, e.query_id), None)
            if fut is not None and not fut.done():
                fut.set_result(list(e.addresses) if isinstance(e, HostResolved) else [])
        elif isinstance(e, ServiceRegistered):
            ad = self._ads.get(e.key)
            if ad is not None:
                ad.fqdn = e.name
                ad.name = _instance_of(e.name, ad.spec.service_type)
                if not ad.registered.done():
                    ad.registered.set_result(ad.name)
        elif isinstance(e, ServiceRenamed):
            log.info("mDNS: %s is taken on the network, using %s", e.old, e.new)
        elif isinstance(e, ServiceFound | ServiceUpdated):
            browser = self._browsers.get(e.browse_id)
            if browser is not None:
                kind = "added" if isinstance(e, ServiceFound) else "updated"
                browser._push(ServiceChange(kind, e.info))
        elif isinstance(e, ServiceLost):
            browser = self._browsers.get(e.browse_id)
            if browser is not None and e.name in browser.services:
                browser._push(ServiceChange("removed", browser.services[e.name]))
        elif isinstance(e, HostRenamed):
            log.warning("mDNS: host name %s is taken on the network, now %s", e.old, e.new)
        elif isinstance(e, HostConflict):
            self._llmnr_conflict(e.hostname)
        elif isinstance(e, RetryOverTcp):
            self._spawn(self._llmnr_tcp_retry(e))

    def _llmnr_conflict(self, hostname: str) -> None:
        if self.llmnr is None:
            return
        new = self.mdns.hostname if self.mdns is not None else f"{hostname}-2"
        if new == hostname:
            new = f"{hostname}-2"
        log.warning("LLMNR: another host answers for %s on the network, now %s", hostname, new)
        self.llmnr.set_hostname(new, self.net.node._now())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- LLMNR over TCP

    async def _llmnr_tcp_retry(self, e: RetryOverTcp) -> None:
        assert self.llmnr is not None
        self.counters["tcp_retries"] += 1
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(2.0):
                reader, writer = await self.net.open_connection(e.address, LLMNR_PORT)
                writer.write(len(e.query).to_bytes(2, "big") + e.query)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
            self.llmnr.receive_tcp_answer(e.query_id, data, self.net.node._now())
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.close()
            self._pump()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.llmnr is None or len(self._tasks) >= LLMNR_TCP_MAX:
            self.counters["tcp_refused"] += 1
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        try:
            while True:
                async with asyncio.timeout(LLMNR_TCP_IDLE):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    query = await reader.readexactly(size)
                reply = self.llmnr.answer_tcp(query, (str(peer[0]), int(peer[1])))
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    # --- what the resolver and programs ask

    async def resolve(self, proto: str, name: str, family: int, timeout: float) -> list[str]:
        """One lookup by ``proto`` ("mdns" or "llmnr"); [] when nobody answered in time.

        LLMNR collects answers for LLMNR_TIMEOUT (1 s, RFC 4795 2.7) and is asked again up to
        three times in ``timeout``; its answers are kept for their TTL (bounded), mDNS keeps
        its own cache."""
        if proto != "llmnr":
            return await self._resolve_once(proto, name, family, timeout)
        key = (name.lower(), family)
        now = self.net.node._now()
        hit = self._llmnr_cache.get(key)
        if hit is not None and hit[0] > now:
            return list(hit[1])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _ in range(3):
            left = deadline - loop.time()
            if left <= 0:
                break
            got = await self._resolve_once(proto, name, family, min(1.0, left))
            if got:
                if len(self._llmnr_cache) >= LLMNR_CACHE:
                    self._llmnr_cache.pop(next(iter(self._llmnr_cache)))
                self._llmnr_cache[key] = (self.net.node._now() + self._llmnr_ttl_ms, tuple(got))
                return got
        return []

    async def _resolve_once(self, proto: str, name: str, family: int, timeout: float) -> list[str]:
        engine: Any = self.mdns if proto == "mdns" else self.llmnr
        if engine is None or not self.started:
            return []
        now = self.net.node._now()
        ms = max(1, int(timeout * 1000))
        family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family, 0)
        try:
            if proto == "mdns":
                qid = engine.resolve_host(name, now, ms, family)
            else:
                qid = engine.resolve(name, now, ms, family)
        except ValueError:
            return []  # not a name this protocol can ask (LLMNR: one label only)
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._lookups[(proto, qid)] = fut
        self._pump()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout + 0.5)
        except TimeoutError:
            return []
        finally:
            if self._lookups.pop((proto, qid), None) is not None:
                engine.cancel(qid)

    async def advertise(
        self,
        instance: str,
        service_type: str,
        port: int,
        *,
        txt: Mapping[str, str | bytes | None] | None = None,
        subtypes: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> Advertisement:
        if self.mdns is None:
            raise RuntimeError("mDNS is off on this node (NameSettings(mdns=False))")
        spec = ServiceSpec(instance, service_type, port, dict(txt or {}), tuple(subtypes))
        key = self.mdns.register(spec, self.net.node._now())
        ad = self._ads[key] = Advertisement(self, key, spec)
        self._pump()
        try:
            await asyncio.wait_for(asyncio.shield(ad.registered), timeout)
        except BaseException:
            self._withdraw(ad)
            raise
        return ad

    def _withdraw(self, ad: Advertisement) -> None:
        if self._ads.pop(ad.key, None) is None or self.mdns is None or not self.started:
            return
        self.mdns.unregister(ad.key, self.net.node._now())
        self._pump()

    def browse(self, service_type: str) -> ServiceBrowser:
        if self.mdns is None:
            raise RuntimeError("mDNS is off on this node (NameSettings(mdns=False))")
        bid = self.mdns.browse(service_type, self.net.node._now())
        browser = self._browsers[bid] = ServiceBrowser(self, service_type, bid)
        self._pump()
        return browser

    def _stop_browse(self, browser: ServiceBrowser) -> None:
        if self._browsers.pop(browser.browse_id, None) is not None and self.mdns is not None:
            self.mdns.stop_browse(browser.browse_id)


class MulticastResolverView:
    """One protocol of a :class:`Discovery`, as the resolver sees it."""

    def __init__(self, discovery: Discovery, proto: str) -> None:
        self.discovery = discovery
        self.proto = proto

    async def resolve(self, name: str, family: int, timeout: float) -> list[str]:
        return await self.discovery.resolve(self.proto, name, family, timeout)
