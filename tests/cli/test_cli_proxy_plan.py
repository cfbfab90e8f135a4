"""The proxy options' parsing: spellings, and credentials made for a proxy that listens beyond
loopback (kept 0600 in the home, the same ones next time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztnode.cli.proxies import parse_plan


def test_forms_and_defaults(tmp_path: Path) -> None:
    plan = parse_plan(
        tmp_path,
        "1080",
        "[::1]:8080",
        None,
        ["2222:10.147.17.5:22", "0.0.0.0:8443:[fd00::5]:443"],
        ["8056c2e21c000001:80:127.0.0.1:8000"],
    )
    assert plan.socks5 == ("127.0.0.1", 1080) and plan.http == ("::1", 8080)
    assert plan.credentials is None  # loopback only: no credentials needed
    assert [(f.bind, f.port, f.host, f.dest_port) for f in plan.forwards] == [
        ("127.0.0.1", 2222, "10.147.17.5", 22),
        ("0.0.0.0", 8443, "fd00::5", 443),
    ]
    (p,) = plan.publishes
    assert (p.network, p.port, p.host, p.dest_port) == (0x8056C2E21C000001, 80, "127.0.0.1", 8000)


def test_a_proxy_beyond_loopback_gets_credentials(tmp_path: Path) -> None:
    plan = parse_plan(tmp_path, "0.0.0.0:1080", None, None, [], [])
    assert plan.credentials is not None
    secret = tmp_path / "proxy.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_text().strip() == f"{plan.credentials.user}:{plan.credentials.password}"
    again = parse_plan(tmp_path, None, "0.0.0.0:8080", None, [], [])
    assert again.credentials == plan.credentials
    given = parse_plan(tmp_path, "0.0.0.0:1080", None, "me:pw", [], [])
    assert given.credentials is not None and given.credentials.user == "me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("70000", None, None, [], []), "out of range"),
        ((None, None, None, ["1:2:3:4:5"], []), "expected [BIND:]LOCAL_PORT"),
        ((None, None, None, ["80:10.0.0.1:0"], []), "must not be 0"),
        ((None, None, None, [], ["abc:1:127.0.0.1:2"]), "not a network id"),
        ((None, None, "user", [], []), "USER:PASSWORD"),
    ],
)
def test_bad_values(tmp_path: Path, args: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_plan(tmp_path, *args)
