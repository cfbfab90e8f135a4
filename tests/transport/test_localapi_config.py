"""ZeroTierOne's /health, /config and /config/settings on a running node's local API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.helpers.data import test_identities
from ztnode.testing.local import LocalZtWorld
from ztnode.transport.httpapi import fetch_json
from ztnode.transport.localapi import serve_local_api

IDS = test_identities()


def test_health_config_and_settings(tmp_path: Path) -> None:
    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=0, identities=IDS[:1]) as world:
            assert world.root is not None
            service = world.root.service
            api, port = await serve_local_api(service)
            token = (service.home.path / "authtoken.secret").read_text().strip()
            try:
                # /health: no token needed, online and version only.
                status, health = await fetch_json("127.0.0.1", port, "GET", "/health", None)
                assert status == 200 and set(health) == {
                    "online", "versionMajor", "versionMinor", "versionRev", "versionBuild",
                    "version", "clock",
                }  # fmt: skip
                assert health["version"] == "{versionMajor}.{versionMinor}.{versionRev}".format(
                    **health
                )
                assert (await fetch_json("127.0.0.1", port, "GET", "/config", None))[0] == 401
                # /config: local.conf as it is ({} without one); settings merged into it.
                assert await fetch_json("127.0.0.1", port, "GET", "/config", token) == (200, {})
                status, body = await fetch_json(
                    "127.0.0.1", port, "POST", "/config/settings", token,
                    {"primaryPort": 19993, "allowTcpFallbackRelay": False},
                )  # fmt: skip
                assert (status, body) == (200, {})
                await fetch_json(
                    "127.0.0.1", port, "PUT", "/config/settings", token, {"primaryPort": 29993}
                )
                status, conf = await fetch_json("127.0.0.1", port, "GET", "/config", token)
                expected = {"settings": {"primaryPort": 29993, "allowTcpFallbackRelay": False}}
                assert status == 200 and conf == expected
                on_disk = json.loads((service.home.path / "local.conf").read_text())
                assert on_disk == expected
                status, err = await fetch_json(
                    "127.0.0.1", port, "POST", "/config/settings", token, [1, 2]
                )
                assert status == 400 and "object" in err["error"]
            finally:
                await api.close()

    asyncio.run(run())
