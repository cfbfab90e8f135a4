"""``local.conf`` in a running node (issue 19): read at start (primaryPort, errors naming the
key, the program's settings over the file's), reloaded when it changes (blacklists and path
rules applied live, a bad file changing nothing), the local API beyond loopback only for
``allowManagementFrom``, and no blacklisted interface's address ever pushed to a peer in
PUSH_DIRECT_PATHS."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.sockets.aio import Node
from ztnode.testing.local import LocalZtWorld
from ztnode.transport.httpapi import Request, fetch_json
from ztnode.transport.localapi import serve_local_api
from ztnode.transport.localconf import LocalConfError
from ztnode.wire.constants import Verb
from ztnode.wire.verbs import PushDirectPaths

IDS = test_identities()
ip = ipaddress.ip_address

#: A machine's interfaces as the Binder would list them; loopback addresses stand in for
#: real ones (a peer told of them contacts them, and tests send only to loopback).
IFACES = [
    ("eth0", ip("127.0.0.5")),
    ("docker0", ip("127.0.0.6")),
    ("zt3jnkd4", ip("127.0.0.7")),
    ("tun0", ip("127.0.0.8")),
    ("tap1", ip("127.0.0.9")),
    ("virbr0", ip("127.0.0.10")),
    ("wlan0", ip("127.0.0.11")),
    ("lo", ip("127.0.0.12")),
]
ADVERTISABLE = {"127.0.0.5", "127.0.0.11"}  # eth0 and wlan0 (unless blacklisted)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_setting_is_refused_where_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(LocalConfError, match=r"settings\.tertiaryPort"):
        Node(tmp_path, settings={"tertiaryPort": "x"})

    async def run() -> None:
        async with LocalZtWorld(tmp_path / "w", members=0, identities=IDS[:1]) as w:
            with pytest.raises(LocalConfError, match=r"physical\['10\.0\.0\.0/8'\]\.mtu"):
                await w.add_member(local_conf={"physical": {"10.0.0.0/8": {"mtu": "x"}}})

    asyncio.run(run())


def test_primary_port_from_the_file_and_the_programs_settings_win(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=0, identities=IDS[:1]) as w:
            port = _free_udp_port()
            node, _ = await w.add_member(
                IDS[1], local_conf={"settings": {"primaryPort": port}}, authorize=False
            )
            assert node.service.port == port
            other = _free_udp_port()
            node2, _ = await w.add_member(
                IDS[2],
                local_conf={"settings": {"primaryPort": port}},
                settings={"primaryPort": other, "allowTcpFallbackRelay": False},
                authorize=False,
            )
            assert node2.service.port == other
            assert not node2.service.local_conf.allow_tcp_fallback_relay

    asyncio.run(run())


def _push_recorder(node: Node) -> list[set[str]]:
    """Every PUSH_DIRECT_PATHS ``node`` receives, as its sets of advertised IPs."""
    core = node.service.node
    assert core is not None
    seen: list[set[str]] = []
    handler = core.switch.handlers[Verb.PUSH_DIRECT_PATHS]

    def record(rx: Any) -> None:
        push = PushDirectPaths.decode(rx.payload)
        seen.append({str(p.address.ip) for p in push.paths if p.address is not None})
        handler(rx)

    core.switch.handlers[Verb.PUSH_DIRECT_PATHS] = record
    return seen


def test_blacklisted_interfaces_are_never_advertised(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:2]) as w:
            receiver = w.members[0]
            pushes = _push_recorder(receiver)
            node, net = await w.add_member(
                IDS[2],
                bind=("0.0.0.0",),  # a wildcard socket advertises the interfaces' addresses
                interfaces=lambda: list(IFACES),
                local_conf={"settings": {"interfacePrefixBlacklist": ["wlan"]}},
            )
            assert net is not None
            peer_ip = w.networks[0].address(4)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not any("127.0.0.5" in p for p in pushes):  # proves pushes are seen at all
                assert loop.time() < deadline, "no PUSH_DIRECT_PATHS reached the peer"
                await net.ping(peer_ip, timeout=2)
                await asyncio.sleep(0.1)
            advertised = set().union(*pushes)
            assert "127.0.0.5" in advertised
            assert not advertised & {str(a) for _, a in IFACES} - {"127.0.0.5"}
            core = node.service.node
            assert core is not None
            ours = {str(a.ip) for a in core.interface_addresses}
            assert ours == {"127.0.0.5"}
            # Lifted live: wlan0 becomes advertisable; blacklisting eth too leaves nothing.
            home = node.service.home.path
            (home / "local.conf").write_text(json.dumps({"settings": {}}))
            assert node.service.reload_local_conf() is not None
            assert {str(a.ip) for a in core.interface_addresses} == ADVERTISABLE
            conf = {"settings": {"interfacePrefixBlacklist": ["eth", "wlan"]}}
            (home / "local.conf").write_text(json.dumps(conf))
            node.service.reload_local_conf()
            assert core.interface_addresses == []

    asyncio.run(run())


def test_a_reload_applies_path_rules_and_a_bad_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=2, identities=IDS[:3]) as w:
            a, b = w.members
            svc = a.service
            core = svc.node
            assert core is not None
            await w.networks[0].ping(w.networks[1].address(4), timeout=5)
            conf = {
                "physical": {
                    "127.0.0.0/8": {"blacklist": True},
                    "10.60.0.0/16": {"trustedPathId": 5, "mtu": 9000},
                },
                "virtual": {b.address: {"try": ["127.0.0.1/9"]}},
                "settings": {"primaryPort": 1, "someFutureKey": 2},
            }
            (svc.home.path / "local.conf").write_text(json.dumps(conf))
            with caplog.at_level(logging.WARNING, logger="ztnode.service"):
                assert svc.reload_local_conf() is not None
            text = caplog.text
            assert "primaryPort take effect at the next start" in text
            assert "settings.someFutureKey: unknown key" in text
            b_addr = int(b.address, 16)
            assert not core.path_policy.allows(b_addr, ip("127.0.0.1"))
            assert core.path_policy.hint(b_addr, 0) == ("127.0.0.1", 9)
            peer = core.peer(b_addr)
            assert peer is not None and peer.paths == []  # dropped at once
            assert core.physical.outbound_trust("10.60.1.1") == 5  # trusted paths, live too
            caplog.clear()
            (svc.home.path / "local.conf").write_text('{"settings": {"bind": 5}}')
            with caplog.at_level(logging.ERROR, logger="ztnode.service"):
                assert svc.reload_local_conf() is None
            assert "local.conf settings.bind: expected a list" in caplog.text
            assert not core.path_policy.allows(b_addr, ip("127.0.0.1"))  # still in force
            assert svc.local_conf.primary_port == 1

    asyncio.run(run())


def test_the_watcher_reloads_a_changed_file(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:2]) as w:
            svc = w.members[0].service
            reloaded: list[object] = []
            svc.local_conf_listeners.append(reloaded.append)
            svc._check_local_conf()  # nothing changed: nothing read
            assert reloaded == []
            (svc.home.path / "local.conf").write_text('{"settings": {"forceTcpRelay": false}}')
            svc._check_local_conf()
            assert len(reloaded) == 1 and not svc.local_conf.force_tcp_relay
            svc._check_local_conf()
            assert len(reloaded) == 1

    asyncio.run(run())


def _req(remote: str, token: str | None) -> Request:
    headers = {"x-zt1-auth": token} if token is not None else {}
    return Request("GET", "/status", {}, headers, b"", remote=remote)


def test_management_beyond_loopback(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:2]) as w:
            svc = w.members[0].service
            api, port = await serve_local_api(svc)
            token = (svc.home.path / "authtoken.secret").read_text().strip()
            try:
                assert api.hosts == ("127.0.0.1",)
                conf = {"settings": {"allowManagementFrom": ["10.20.0.0/16"]}}
                status, _ = await fetch_json(
                    "127.0.0.1", port, "POST", "/config/settings", token, conf["settings"]
                )
                assert status == 200
                await asyncio.sleep(0.05)  # the listener moves in a task of its own
                assert api.hosts[0] == "0.0.0.0"
                # Served on loopback as before (same port), by token.
                status, body = await fetch_json("127.0.0.1", port, "GET", "/status", token)
                assert status == 200 and body["config"]["settings"]["allowManagementFrom"] == [
                    "10.20.0.0/16"
                ]
                # Beyond loopback: an allowed address still needs the token; others get 401 {}.
                assert (await api.dispatch(_req("10.20.3.4", token)))[0] == 200
                assert (await api.dispatch(_req("10.20.3.4", "wrong")))[0] == 401
                assert await api.dispatch(_req("10.21.3.4", token)) == (401, {})
                assert await api.dispatch(_req("::ffff:10.21.3.4", token)) == (401, {})
                # A value the check refuses is never written.
                status, err = await fetch_json(
                    "127.0.0.1", port, "POST", "/config/settings", token,
                    {"allowManagementFrom": "everyone"},
                )  # fmt: skip
                assert status == 400 and err["key"] == "settings.allowManagementFrom"
                # Taken back: loopback only again.
                status, _ = await fetch_json(
                    "127.0.0.1", port, "POST", "/config/settings", token,
                    {"allowManagementFrom": []},
                )  # fmt: skip
                await asyncio.sleep(0.05)
                assert api.hosts == ("127.0.0.1",)
                assert (await fetch_json("127.0.0.1", port, "GET", "/health", None))[0] == 200
            finally:
                await api.close()

    asyncio.run(run())


def test_secondary_port_beside_wildcard_sockets(tmp_path: Path) -> None:
    """Embedded nodes keep one socket unless local.conf asks; asked, a second port on each
    bound address (random, or ``secondaryPort``), carrying traffic like the first."""

    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=1, identities=IDS[:2]) as w:
            assert len(w.members[0].service.endpoints) == 1
            fixed = _free_udp_port()
            node, net = await w.add_member(
                IDS[2], settings={"allowSecondaryPort": True, "secondaryPort": fixed}
            )
            svc = node.service
            assert list(svc.endpoints) == [("127.0.0.1", svc.port), ("127.0.0.1", fixed)]
            assert svc.secondary.port == fixed and svc.secondary.fixed
            assert net is not None
            assert await net.ping(w.networks[0].address(4), timeout=5) is not None

    asyncio.run(run())
