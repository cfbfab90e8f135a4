"""The service's part of trusted paths: local.conf ``physical`` and the legacy ``trustedpaths``
file read at start (errors naming the key or line stop the start), handed to the node."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.crypto import c25519_generate
from ztnode.errors import DecodeError
from ztnode.sockets.aio import Node
from ztnode.transport.state import HomeDir
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()


def test_legacy_file_then_local_conf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = HomeDir(tmp_path)
    none = PhysicalPathConfig()
    assert home.load_physical_paths(none).entries == ()
    (tmp_path / "trustedpaths").write_text("2a 10.1.0.0/16\n")
    with caplog.at_level(logging.WARNING):
        cfg = home.load_physical_paths(
            PhysicalPathConfig.from_local_conf({"10.2.0.0/16": {"trustedPathId": 7}})
        )
    assert "deprecated" in caplog.text
    assert {(str(p.network), p.trusted_path_id) for p in cfg.entries} == {
        ("10.1.0.0/16", 0x2A),
        ("10.2.0.0/16", 7),
    }
    (tmp_path / "trustedpaths").write_text("2a 10.1.0.0\n")
    with pytest.raises(DecodeError, match="trustedpaths line 1"):
        home.load_physical_paths(none)


def _planet() -> World:
    pub, priv = c25519_generate(os.urandom)
    nowhere = Root(IDS[0].public(), (InetAddress.parse("127.0.0.1/9"),))  # discard port
    return World.make(WorldType.PLANET, 0x77, int(time.time() * 1000), pub, (nowhere,), priv)


@pytest.mark.e2e
def test_start_applies_physical_and_refuses_a_bad_key(tmp_path: Path) -> None:
    async def main() -> None:
        planet = _planet()
        home = tmp_path / "n"
        home.mkdir()
        IDS[1].save(home / "identity.secret", include_private=True)
        conf = {"physical": {"127.0.0.0/8": {"trustedPathId": 99, "mtu": 9000}}}
        (home / "local.conf").write_text(json.dumps(conf))
        async with Node(home, planet=planet, allow_loopback=True, bind=("127.0.0.1",)) as n:
            core = n.service.node
            assert core is not None
            assert core.physical.outbound_trust("127.0.0.2") == 99
            entry = core.physical.outbound("127.0.0.2")
            assert entry is not None and entry.mtu == 9000
        conf = {"physical": {"127.0.0.0/8": {"trustedPathId": "twelve"}}}
        (home / "local.conf").write_text(json.dumps(conf))
        node = Node(home, planet=planet, allow_loopback=True, bind=("127.0.0.1",))
        with pytest.raises(DecodeError, match=r"physical\['127.0.0.0/8'\].trustedPathId"):
            await node.start()

    asyncio.run(main())
