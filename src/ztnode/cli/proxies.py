"""``ztnode node``'s proxy options: parsing ``--socks5``, ``--http-proxy``, ``--proxy-auth``,
``--forward`` and ``--publish``, and starting what they ask for on a running node.

Why here: the proxies themselves (:mod:`ztnode.sockets.proxy`) take parsed values; the
command line's spellings, their error messages and the rule that a proxy listening beyond
loopback never runs without credentials are the command's business.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ztnode.fsutil import write_atomic
from ztnode.sockets.aio import Node
from ztnode.sockets.proxy import Credentials, HttpProxy, PortForward, PortPublish, Socks5Proxy

log = logging.getLogger("ztnode.proxy")

__all__ = ["ProxyPlan", "parse_plan", "start_plan"]

SECRET_FILE = "proxy.secret"


def _port(text: str, what: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is out of range (0-65535)")
    return port


def _host(text: str, what: str) -> str:
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IP address") from None
    return host


def _fields(spec: str) -> list[str]:
    """``a:b:[v6]:c`` into its fields, brackets keeping an IPv6 address whole."""
    out: list[str] = []
    cur = ""
    depth = 0
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def parse_listen(spec: str, what: str) -> tuple[str, int]:
    """``PORT`` (loopback) or ``HOST:PORT`` (``[v6]:PORT``)."""
    parts = _fields(spec)
    if len(parts) == 1:
        return "127.0.0.1", _port(parts[0], what)
    if len(parts) == 2:
        return _host(parts[0], what), _port(parts[1], what)
    raise ValueError(f"{what}: {spec!r} is not PORT or HOST:PORT")


@dataclass
class Forward:
    bind: str
    port: int
    host: str
    dest_port: int


@dataclass
class Publish:
    network: int
    port: int
    host: str
    dest_port: int


@dataclass
class ProxyPlan:
    """What the options asked for."""

    socks5: tuple[str, int] | None = None
    http: tuple[str, int] | None = None
    credentials: Credentials | None = None
    forwards: list[Forward] = field(default_factory=list)
    publishes: list[Publish] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.socks5 or self.http or self.forwards or self.publishes)


def parse_forward(spec: str) -> Forward:
    """``[BIND:]LOCAL_PORT:OVERLAY_ADDR:PORT``."""
    parts = _fields(spec)
    what = f"--forward {spec}"
    if len(parts) == 3:
        parts = ["127.0.0.1", *parts]
    if len(parts) != 4:
        raise ValueError(f"{what}: expected [BIND:]LOCAL_PORT:OVERLAY_ADDR:PORT")
    bind, lport, host, port = parts
    dest = _port(port, what)
    if dest == 0:
        raise ValueError(f"{what}: the overlay port must not be 0")
    return Forward(_host(bind, what), _port(lport, what), _host(host, what), dest)


def parse_publish(spec: str) -> Publish:
    """``NWID:OVERLAY_PORT:LOCAL_HOST:LOCAL_PORT``."""
    parts = _fields(spec)
    what = f"--publish {spec}"
    if len(parts) != 4:
        raise ValueError(f"{what}: expected NWID:OVERLAY_PORT:LOCAL_HOST:LOCAL_PORT")
    nwid, oport, host, port = parts
    try:
        network = int(nwid, 16)
    except ValueError:
        raise ValueError(f"{what}: {nwid!r} is not a network id (16 hex digits)") from None
    if len(nwid) != 16:
        raise ValueError(f"{what}: {nwid!r} is not a network id (16 hex digits)")
    return Publish(network, _port(oport, what), _host(host, what), _port(port, what))


def _is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def parse_plan(
    home: Path,
    socks5: str | None,
    http: str | None,
    auth: str | None,
    forwards: list[str],
    publishes: list[str],
) -> ProxyPlan:
    """The options, checked; ValueError with the option's name for anything wrong. A proxy
    listening beyond loopback gets credentials: ``auth``, or those kept in HOME/proxy.secret
    (made on first use, 0600)."""
    plan = ProxyPlan(
        socks5=parse_listen(socks5, "--socks5") if socks5 else None,
        http=parse_listen(http, "--http-proxy") if http else None,
        credentials=Credentials.parse(auth) if auth else None,
        forwards=[parse_forward(f) for f in forwards],
        publishes=[parse_publish(p) for p in publishes],
    )
    exposed = [p for p in (plan.socks5, plan.http) if p is not None and not _is_loopback(p[0])]
    if exposed and plan.credentials is None:
        plan.credentials = _stored_credentials(home)
    return plan


def _stored_credentials(home: Path) -> Credentials:
    path = home / SECRET_FILE
    try:
        return Credentials.parse(path.read_text().strip())
    except FileNotFoundError:
        pass
    creds = Credentials("ztnode", secrets.token_urlsafe(18))
    home.mkdir(parents=True, exist_ok=True)
    write_atomic(path, f"{creds.user}:{creds.password}\n".encode(), mode=0o600)
    return creds


Closer = Callable[[], Awaitable[None]]


async def start_plan(node: Node, plan: ProxyPlan) -> tuple[list[Closer], list[str]]:
    """Start everything in ``plan``: closers for shutdown, and one line per service to print.
    Published ports start once their network is ready (in the background)."""
    closers: list[Closer] = []
    lines: list[str] = []
    try:
        if plan.socks5 is not None:
            socks = Socks5Proxy(node, plan.credentials)
            host, port = await socks.start(*plan.socks5)
            closers.append(socks.close)
            lines.append(f"SOCKS5 proxy on {host}:{port}")
        if plan.http is not None:
            http = HttpProxy(node, plan.credentials)
            host, port = await http.start(*plan.http)
            closers.append(http.close)
            lines.append(f"HTTP proxy on {host}:{port}")
        for f in plan.forwards:
            fwd = PortForward(node, f.host, f.dest_port)
            host, port = await fwd.start(f.bind, f.port)
            closers.append(fwd.close)
            lines.append(f"forward {host}:{port} -> {f.host} port {f.dest_port}")
        for p in plan.publishes:
            closers.append(_publish_when_ready(node, p))
            lines.append(f"publish {p.network:016x} port {p.port} -> {p.host} port {p.dest_port}")
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
    return closers, lines


def _publish_when_ready(node: Node, p: Publish) -> Closer:
    state: dict[str, PortPublish] = {}

    async def run() -> None:
        net = node.network(p.network)
        if net is None:
            net = await node.join(p.network, wait=False)
        await net.wait_ready(None, wait_authorized=True)
        pub = PortPublish(net, p.port, p.host, p.dest_port)
        await pub.start()
        state["pub"] = pub
        log.info("published %016x port %d -> %s port %d", p.network, p.port, p.host, p.dest_port)

    task = asyncio.get_running_loop().create_task(run())

    async def close() -> None:
        task.cancel()
        if "pub" in state:
            await state["pub"].close()

    return close
