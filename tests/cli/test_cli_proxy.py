"""``ztnode node``'s proxies as processes: a member started with ``--socks5``, ``--http-proxy``
and ``--forward``, another with ``--publish`` offering an HTTP server of this machine to the
network; curl reaches it through each, and bad option values fail with a message."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from tests.helpers.httpserver import greeting_handler
from tests.helpers.processes import (
    CTL_ID,
    MEMBER_HEX,
    MEMBER_ID,
    cli,
    create_network,
    free_udp_port,
    networks,
    node,
    online,
    status,
    wait_for,
    write_planet,
)

pytestmark = pytest.mark.e2e

SRV_ID = test_identities()[2]


_Hello = greeting_handler("local server says")


def printed_port(log: Path, what: str) -> int:
    found: list[int] = []

    def seen() -> bool:
        m = re.search(rf"{what} on 127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            found.append(int(m.group(1)))
        return bool(m)

    wait_for(seen, 15, f"the {what} line")
    return found[0]


def curl(*args: str) -> str:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_proxies_forward_and_publish_from_the_command_line(tmp_path: Path) -> None:
    local = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    serving = threading.Thread(target=local.serve_forever, args=(0.05,), daemon=True)
    serving.start()
    port = free_udp_port()
    planet = tmp_path / "planet"
    write_planet(planet, CTL_ID, port)
    try:
        with node(tmp_path / "ctl", planet, CTL_ID, port, controller=True) as ctl:
            nwid = create_network(ctl, "proxied")
            srv_hex = f"{SRV_ID.address:010x}"
            for who in (MEMBER_HEX, srv_hex):
                r = cli("controller", "member", "authorize", nwid, who, *ctl.h)
                assert r.returncode == 0, r.stderr
            publish = f"{nwid}:8080:127.0.0.1:{local.server_address[1]}"
            with node(tmp_path / "srv", planet, SRV_ID, extra=("--publish", publish)) as srv:
                wait_for(lambda: status(srv, nwid) == "OK", 20, "the publisher's network")
                srv_ip = next(
                    a.split("/")[0] for a in networks(srv)[nwid]["assignedAddresses"] if "." in a
                )
                proxies = (
                    "--socks5", "0", "--http-proxy", "0",
                    "--forward", f"0:{srv_ip}:8080",
                )  # fmt: skip
                with node(tmp_path / "member", planet, MEMBER_ID, extra=proxies) as member:
                    wait_for(lambda: online(member), 15, "the member to come online")
                    assert cli("join", nwid, *member.h).returncode == 0
                    wait_for(lambda: status(member, nwid) == "OK", 20, "the member's network")
                    socks = printed_port(member.log, "SOCKS5 proxy")
                    httpp = printed_port(member.log, "HTTP proxy")
                    url = f"http://{srv_ip}:8080"
                    # The publisher listens once its network is ready: allow for that.
                    wait_for(
                        lambda: subprocess.run(
                            ["curl", "-s", "--max-time", "3", "--socks5", f"127.0.0.1:{socks}",
                             f"{url}/probe"], capture_output=True, timeout=10, check=False,
                        ).returncode == 0,
                        20,
                        "the published port",
                    )  # fmt: skip
                    assert curl("--socks5", f"127.0.0.1:{socks}", f"{url}/a") == (
                        "local server says /a"
                    )
                    assert curl("-x", f"http://127.0.0.1:{httpp}", f"{url}/b") == (
                        "local server says /b"
                    )
                    fwd = re.search(r"forward 127\.0\.0\.1:(\d+) ->", member.log.read_text())
                    assert fwd is not None
                    assert curl(f"http://127.0.0.1:{fwd.group(1)}/c") == "local server says /c"
                    assert member.stop() == 0
                assert srv.stop() == 0
    finally:
        local.shutdown()
        serving.join(10)
        local.server_close()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--socks5", "99999"), "--socks5: port 99999 is out of range"),
        (("--http-proxy", "localhost:80"), "--http-proxy: 'localhost' is not an IP address"),
        (("--forward", "80:10.0.0.1"), "expected [BIND:]LOCAL_PORT:OVERLAY_ADDR:PORT"),
        (("--publish", "xyz:1:127.0.0.1:2"), "'xyz' is not a network id"),
        (("--proxy-auth", "nopassword"), "USER:PASSWORD"),
    ],
)
def test_bad_proxy_options_fail_with_a_message(
    tmp_path: Path, option: tuple[str, ...], message: str
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ztnode.cli", "node", "--home", str(tmp_path), *option],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
