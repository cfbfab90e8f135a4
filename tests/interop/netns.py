"""Network namespaces that interop tests create, use and delete.

ZeroTier 1.x never uses loopback paths, so a libzt peer and our node must meet on a real,
non-loopback address. A test makes a private namespace with no route out, gives it veth
interfaces with private addresses, runs libzt workers inside it (``ip netns exec``) and opens our
own sockets inside it from this process (a helper thread ``setns()``-es itself into the namespace,
creates the socket and exits; a socket keeps its namespace for life). Nothing can leave the
namespace: it has no uplink and no default route.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class NetNamespace:
    """A throwaway namespace. ``addresses`` are the host addresses tests may bind to.

    Layout "single": one veth pair, both ends inside, one end holding ``192.168.217.1/24``; every
    node binds that address with its own port (delivery is local, like loopback, but the
    address is an ordinary private one). Layout "bridge": ``n`` veth pairs on a bridge, node ``i``
    owning ``192.168.(217+i).1/16`` on its own interface ``nsv{i}`` (so libzt peers can be told to
    ignore each other's interfaces), which needs the namespace's accept_local/rp_filter/arp
    settings.

    Interface names must not start with ``zt``, ``lo``, ``tun`` or ``tap``: libzt (like
    zerotier-one) never binds such interfaces, taking them for its own or for VPN tunnels, and
    would then send nothing at all.
    """

    layout: str = "single"
    count: int = 1
    name: str = field(default_factory=lambda: f"ztn{os.getpid()}x{next(_counter)}")
    addresses: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)

    def __enter__(self) -> NetNamespace:
        _ip("netns", "add", self.name)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _setup(self) -> None:
        n = self.name
        _ip("-n", n, "link", "set", "lo", "up")
        if self.layout == "empty":
            return  # interfaces come from elsewhere (LinkedPair)
        if self.layout == "single":
            _ip("-n", n, "link", "add", "nsv0", "type", "veth", "peer", "name", "nsp0")
            _ip("-n", n, "addr", "add", "192.168.217.1/24", "dev", "nsv0")
            _ip("-n", n, "link", "set", "nsv0", "up")
            _ip("-n", n, "link", "set", "nsp0", "up")
            self.addresses = ["192.168.217.1"]
            self.interfaces = ["nsv0"]
            return
        if self.layout != "bridge":
            raise ValueError(f"unknown layout {self.layout!r}")
        for key, val in (
            ("net.ipv4.conf.all.accept_local", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
        ):
            subprocess.run(
                ["ip", "netns", "exec", n, "sysctl", "-q", "-w", f"{key}={val}"],
                check=True,
                timeout=30,
            )
        _ip("-n", n, "link", "add", "nsbr", "type", "bridge")
        _ip("-n", n, "link", "set", "nsbr", "up")
        for i in range(self.count):
            veth, peer = f"nsv{i}", f"nsp{i}"
            _ip("-n", n, "link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("-n", n, "link", "set", peer, "master", "nsbr")
            _ip("-n", n, "addr", "add", f"192.168.{217 + i}.1/16", "dev", veth)
            _ip("-n", n, "link", "set", veth, "up")
            _ip("-n", n, "link", "set", peer, "up")
            self.addresses.append(f"192.168.{217 + i}.1")
            self.interfaces.append(veth)

    def socket(
        self,
        family: socket.AddressFamily = socket.AF_INET,
        kind: socket.SocketKind = socket.SOCK_DGRAM,
        bind: tuple[str, int] | None = None,
    ) -> socket.socket:
        """A socket that lives in this namespace, created from a short-lived helper thread."""

        def create() -> socket.socket:
            s = socket.socket(family, kind)
            if bind is not None:
                s.bind(bind)
            return s

        return self.in_namespace(create)

    def in_namespace(self, fn: Callable[[], T]) -> T:
        """``fn()`` run in a short-lived thread that entered this namespace (what it creates,
        sockets and TAP devices, stays in the namespace)."""
        result: list[T] = []
        error: list[BaseException] = []

        def enter_and_run() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
                finally:
                    os.close(fd)
                result.append(fn())
            except BaseException as e:
                error.append(e)

        t = threading.Thread(target=enter_and_run, name=f"setns-{self.name}")
        t.start()
        t.join(30)
        if error:
            raise error[0]
        if not result:
            raise TimeoutError(f"nothing came back from {self.name}")
        return result[0]

    def ip(self, *args: str) -> None:
        """``ip`` inside this namespace."""
        _ip("-n", self.name, *args)

    def close(self) -> None:
        subprocess.run(
            ["ip", "netns", "del", self.name], check=False, capture_output=True, timeout=30
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LinkedPair:
    """Two namespaces, ``a`` and ``b``, joined by ``links`` separate veth cables: link ``k`` is
    ``la<k>`` (``10.<71+k>.0.1/24``) in ``a`` and ``lb<k>`` (``10.<71+k>.0.2/24``) in ``b``. Like
    two machines with two network cards each; :meth:`cut` takes a cable's ``a`` end down (the
    ``b`` end loses carrier), :meth:`mend` brings it back."""

    def __init__(self, links: int = 2) -> None:
        self.links = links
        self.a = NetNamespace(layout="empty")
        self.b = NetNamespace(layout="empty")

    @staticmethod
    def ip_of(link: int, side: str) -> str:
        return f"10.{71 + link}.0.{1 if side == 'a' else 2}"

    def __enter__(self) -> LinkedPair:
        self.a.__enter__()
        try:
            self.b.__enter__()
            for k in range(self.links):
                _ip(
                    "link", "add", f"la{k}", "netns", self.a.name, "type", "veth",
                    "peer", "name", f"lb{k}", "netns", self.b.name,
                )  # fmt: skip
                for ns, side in ((self.a, "a"), (self.b, "b")):
                    dev = f"l{side}{k}"
                    ns.ip("addr", "add", f"{self.ip_of(k, side)}/24", "dev", dev)
                    ns.ip("link", "set", dev, "up")
                    ns.interfaces.append(dev)
                    ns.addresses.append(self.ip_of(k, side))
        except BaseException:
            self.close()
            raise
        return self

    def cut(self, link: int) -> None:
        self.a.ip("link", "set", f"la{link}", "down")

    def mend(self, link: int) -> None:
        self.a.ip("link", "set", f"la{link}", "up")

    def close(self) -> None:
        self.b.close()
        self.a.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
