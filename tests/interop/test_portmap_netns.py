"""The port mapper against a real router: miniupnpd in a namespace between a LAN and a WAN.

A ``ztnode node`` daemon runs on the LAN with ``settings.portMappingEnabled`` (the only place
in the suite where the ``ZTNODE_NO_PORT_MAPPING`` veto is lifted, for that process, inside the
test's namespaces). With miniupnpd serving only NAT-PMP, then only UPnP IGD, the test proves
the mapping was made by that protocol (the daemon's log line, miniupnpd's own log and its DNAT
rule in the router's firewall), that the node advertises the external address (``/status``'s
``surfaceAddresses``), that a peer on the WAN side reaches the node through it (an unsolicited
HELLO to the external address, answered: no relay, no hole punching, the planet's root does
not even run), and that stopping the node deletes the mapping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.conftest import need_root
from tests.interop.nat_router import LAN_IP, ROUTER_WAN_IP, WAN_IPS, NatRouter, missing_tools
from tests.interop.world import HttpApi, make_planet
from ztnode.identity import Identity
from ztnode.sockets.aio import Node
from ztnode.transport.portmap import VETO_ENV
from ztnode.transport.state import HomeDir
from ztnode.wire.inetaddr import InetAddress

PRIMARY = 29993
TERTIARY = 29994  # the mapped port, fixed so the expected external port is known
WAN_PEER_PORT = 29990


class LanNode:
    """``ztnode node`` in the LAN namespace, port mapping on, stopped by pid."""

    def __init__(self, router: NatRouter, home: Path, planet_file: Path) -> None:
        self.router = router
        self.home = home
        self.log = home.parent / "lan-node.log"
        env = {k: v for k, v in os.environ.items() if k != VETO_ENV}
        cmd = [
            "ip", "netns", "exec", router.lan.name,
            sys.executable, "-m", "ztnode.cli", "node",
            "--home", str(home), "--port", str(PRIMARY), "--bind", "0.0.0.0",
            "--planet", str(planet_file), "--api-port", "0", "--no-mdns", "--no-llmnr",
        ]  # fmt: skip
        with open(self.log, "wb") as log_f:
            self.proc = subprocess.Popen(
                cmd, stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.api: HttpApi | None = None

    def wait_ready(self, timeout: float) -> HttpApi:
        port_file = self.home / "ztnode.port"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}: {self.log_text()}")
            if "local API on" in self.log_text() and port_file.exists():
                token = (self.home / "authtoken.secret").read_text().strip()
                self.api = HttpApi(self.router.lan, int(port_file.read_text()), token)
                return self.api
            time.sleep(0.05)
        raise AssertionError(f"node not ready within {timeout} s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # ip netns exec execs: the node's pid
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def wait_for(what: str, check: object, timeout: float, why: object = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s: {why() if callable(why) else why}")


async def reach_through_mapping(router: NatRouter, tmp: Path, lan: Identity, planet: bytes) -> None:
    """A node on the WAN side that knows the LAN node only by its mapped address: its HELLO
    must cross the router and the OK come back over the same address."""
    home = tmp / "wan-peer"
    HomeDir(home).ensure()
    mapped = InetAddress.parse(f"{ROUTER_WAN_IP}/{TERTIARY}")
    HomeDir(home).save_peer(lan.public(), (1, 14, 1, 0), [mapped])
    sock = router.wan.socket(bind=(WAN_IPS[1], WAN_PEER_PORT))
    peer = Node(home, planet=planet, sockets=[sock], names={"mdns": False, "llmnr": False})
    await peer.start()
    try:
        core = peer.service.node
        assert core is not None
        for _ in range(150):
            p = core.peers.get(lan.address)
            if p is not None and any(s.path.inet == mapped for s in p.paths):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the WAN peer got no path to the LAN node through the mapping")
    finally:
        await peer.stop()


@pytest.mark.parametrize("protocol", ["NAT-PMP", "UPnP"])
def test_port_mapping_through_miniupnpd(protocol: str, tmp_path: Path) -> None:
    need_root()
    if missing_tools():
        pytest.skip(f"needs {', '.join(missing_tools())}")
    natpmp = protocol == "NAT-PMP"
    root = Identity.generate()  # the planet's root never runs: nothing but the mapping helps
    planet = make_planet(root, WAN_IPS[0])
    planet_file = tmp_path / "planet"
    planet_file.write_bytes(planet.to_bytes())
    lan_id = Identity.generate()
    home = tmp_path / "lan-node"
    home.mkdir()
    lan_id.save(home / "identity.secret", include_private=True)
    settings = {"settings": {"portMappingEnabled": True, "tertiaryPort": TERTIARY}}
    (home / "local.conf").write_text(json.dumps(settings))
    rule = f"dnat ip to {LAN_IP}:{TERTIARY}"
    with NatRouter(tmp_path, natpmp=natpmp, upnp=not natpmp) as router:
        node = LanNode(router, home, planet_file)
        try:
            api = node.wait_ready(30)
            wait_for("the mapping", lambda: f"by {protocol}" in node.log_text(), 30, node.log_text)
            line = f"UDP {ROUTER_WAN_IP}:{TERTIARY} -> local port {TERTIARY} by {protocol}"
            assert f"port mapping: {line}" in node.log_text()
            assert rule in router.redirects()
            if natpmp:
                assert "NAT-PMP port mapping request" in router.log_text()
            else:
                assert "AddPortMapping" in router.log_text()
                assert f"ZeroTier/{lan_id.address:010x}@{TERTIARY}" in router.log_text()
            status = api.call("GET", "/status")["config"]["settings"]
            assert f"{ROUTER_WAN_IP}/{TERTIARY}" in status["surfaceAddresses"]
            assert status["portMappingEnabled"] is True and status["tertiaryPort"] == TERTIARY
            asyncio.run(reach_through_mapping(router, tmp_path, lan_id, planet.to_bytes()))
        finally:
            node.stop()
        assert "port mapping: removed" in node.log_text(), node.log_text()
        assert rule not in router.redirects()
        removed = "mapping removed" if natpmp else "removing redirect rule"
        assert removed in router.log_text()
