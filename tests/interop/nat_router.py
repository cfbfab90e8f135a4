"""A home router in namespaces: LAN, router (NAT + miniupnpd), WAN, all made and deleted here.

::

    lan ns                      router ns                                  wan ns
    eth0 10.77.1.2/24 ── lan0 10.77.1.1/24 | wan0 11.77.0.1/24 ── eth0 11.77.0.2/24, .3/24
         default via 10.77.1.1   forwarding, masquerade out wan0,
                                 miniupnpd (NAT-PMP and/or UPnP IGD on lan0)

The WAN side borrows a public-looking prefix because miniupnpd refuses to map anything behind
a reserved or private external address. No namespace here has an uplink or a route out of
these three, so nothing sent to those addresses can leave them. miniupnpd runs from a config
in the test's temporary directory (lease file there too) with nftables chains of its own
(``nft`` tables ``ztpm_filter``/``ztpm_nat`` in the router namespace), and is stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.interop.netns import NetNamespace

LAN_IP = "10.77.1.2"
ROUTER_LAN_IP = "10.77.1.1"
ROUTER_WAN_IP = "11.77.0.1"
WAN_IPS = ("11.77.0.2", "11.77.0.3")

_RULES = """
table inet ztpm_filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
}
table inet ztpm_nat {
  chain prerouting { type nat hook prerouting priority -100; policy accept;
                     jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept;
                      jump postrouting_miniupnpd; oifname "wan0" masquerade; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
"""


def missing_tools() -> list[str]:
    """What this machine lacks (Debian: miniupnpd-nftables, nftables, iproute2)."""
    missing = [t for t in ("miniupnpd", "nft", "ip") if shutil.which(t) is None]
    if not missing:
        done = subprocess.run(
            ["miniupnpd", "--version"], check=False, capture_output=True, timeout=10
        )
        if b"nftables" not in done.stdout + done.stderr:
            missing.append("miniupnpd with the nftables backend (miniupnpd-nftables)")
    return missing


class NatRouter:
    """The three namespaces and miniupnpd; ``natpmp``/``upnp`` choose what it serves."""

    def __init__(self, workdir: Path, *, natpmp: bool, upnp: bool) -> None:
        self.workdir = workdir
        self.natpmp = natpmp
        self.upnp = upnp
        self.lan = NetNamespace(layout="empty")
        self.router = NetNamespace(layout="empty")
        self.wan = NetNamespace(layout="empty")
        self.log = workdir / "miniupnpd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NatRouter:
        made: list[NetNamespace] = []
        try:
            for ns in (self.lan, self.router, self.wan):
                ns.__enter__()
                made.append(ns)
            self._wire()
            self._start_miniupnpd()
        except BaseException:
            self.close()
            raise
        return self

    def _wire(self) -> None:
        r = self.router
        r.ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", self.lan.name)
        r.ip("link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", self.wan.name)
        self.lan.ip("addr", "add", f"{LAN_IP}/24", "dev", "eth0")
        self.lan.ip("link", "set", "eth0", "up")
        self.lan.ip("route", "add", "default", "via", ROUTER_LAN_IP)
        r.ip("addr", "add", f"{ROUTER_LAN_IP}/24", "dev", "lan0")
        r.ip("addr", "add", f"{ROUTER_WAN_IP}/24", "dev", "wan0")
        r.ip("link", "set", "lan0", "up")
        r.ip("link", "set", "wan0", "up")
        for ip in WAN_IPS:
            self.wan.ip("addr", "add", f"{ip}/24", "dev", "eth0")
        self.wan.ip("link", "set", "eth0", "up")
        self.exec(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        rules = self.workdir / "router.nft"
        rules.write_text(_RULES)
        self.exec(r, "nft", "-f", str(rules))

    def _start_miniupnpd(self) -> None:
        conf = self.workdir / "miniupnpd.conf"
        conf.write_text(
            "\n".join(
                [
                    "ext_ifname=wan0",
                    "listening_ip=lan0",
                    "http_port=0",
                    f"enable_natpmp={'yes' if self.natpmp else 'no'}",
                    f"enable_upnp={'yes' if self.upnp else 'no'}",
                    "secure_mode=yes",
                    "system_uptime=yes",
                    "uuid=3f6c9a52-1d2e-4b7a-9c55-6a0d8e2b1f01",
                    f"lease_file={self.workdir / 'upnp.leases'}",
                    "upnp_table_name=ztpm_filter",
                    "upnp_nat_table_name=ztpm_nat",
                    "upnp_forward_chain=miniupnpd",
                    "upnp_nat_chain=prerouting_miniupnpd",
                    "upnp_nat_postrouting_chain=postrouting_miniupnpd",
                    "allow 1024-65535 10.77.1.0/24 1024-65535",
                    "deny 0-65535 0.0.0.0/0 0-65535",
                    "",
                ]
            )
        )
        log_f = open(self.log, "wb")  # noqa: SIM115  (the child holds it; closed below)
        try:
            cmd = ["ip", "netns", "exec", self.router.name, "miniupnpd", "-d", "-f", str(conf)]
            cmd += ["-P", str(self.workdir / "miniupnpd.pid")]
            self._proc = subprocess.Popen(
                cmd, stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log_f.close()
        deadline = time.monotonic() + 10
        ready = "Listening for NAT-PMP" if self.natpmp else "HTTP listening on port"
        while ready not in self.log_text():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"miniupnpd did not start: {self.log_text()}")
            time.sleep(0.05)

    def exec(self, ns: NetNamespace, *cmd: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", ns.name, *cmd], check=True, capture_output=True, timeout=30
        )
        return done.stdout.decode()

    def redirects(self) -> str:
        """miniupnpd's port forwards as the firewall holds them."""
        return self.exec(self.router, "nft", "list", "chain", "inet", "ztpm_nat",
                         "prerouting_miniupnpd")  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # ip netns exec execs miniupnpd: this pid is the daemon itself.
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for ns in (self.wan, self.router, self.lan):
            ns.close()  # deleting a namespace deletes its veths, addresses and tables

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
