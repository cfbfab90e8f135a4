"""Which addresses the Binder binds (osdep/Binder.hpp, OneService::shouldBindInterface):
the reference's interface blacklist, ``settings.bind``, ``interfacePrefixBlacklist``,
``physical`` blacklisted networks, and what a refresh adds, closes and does not retry."""

from __future__ import annotations

import ipaddress

import pytest

from ztnode.errors import DecodeError
from ztnode.transport.binder import Binder, BindSettings

ip = ipaddress.ip_address

IFACES = [
    ("eth0", ip("192.168.1.10")),
    ("eth0", ip("2001:db8::10")),
    ("wlan0", ip("10.0.5.7")),
    ("docker0", ip("172.17.0.1")),
    ("zt3jnkd", ip("10.147.20.5")),
    ("tun0", ip("10.8.0.2")),
    ("tap1", ip("10.9.0.2")),
    ("lo", ip("127.0.0.1")),
]


def _binder(settings: BindSettings, ifaces: list[tuple[str, object]] | None = None) -> Binder:
    found = ifaces if ifaces is not None else IFACES  # read at every refresh
    return Binder(settings, enumerate_addresses=lambda: list(found))  # type: ignore[arg-type]


def test_the_references_blacklist_ours_and_the_users() -> None:
    b = _binder(BindSettings())
    # lo, zt, tun, tap as the reference; docker (and virbr) ours.
    assert set(b.wanted()) == {ip("192.168.1.10"), ip("2001:db8::10"), ip("10.0.5.7")}
    conf = {"interfacePrefixBlacklist": ["wlan"], "bind": []}
    physical = {"2001:db8::/64": {"blacklist": True}, "192.168.0.0/16": {"blacklist": False}}
    b = _binder(BindSettings.from_local_conf(conf, physical))
    assert b.wanted() == {ip("192.168.1.10"): "eth0"}
    only = BindSettings.from_local_conf({"bind": ["10.0.5.7"]})
    assert set(_binder(only).wanted()) == {ip("10.0.5.7")}


def test_extras_bypass_the_interface_blacklist() -> None:
    b = Binder(
        BindSettings.from_local_conf({"bind": ["127.0.0.1", "127.0.0.2"]}),
        enumerate_addresses=lambda: [("lo", ip("127.0.0.1"))],
        extra=[("lo", ip("127.0.0.1")), ("lo", ip("127.0.0.2"))],
    )
    assert set(b.wanted()) == {ip("127.0.0.1"), ip("127.0.0.2")}


def test_refresh_adds_closes_and_does_not_retry_failures() -> None:
    ifaces: list[tuple[str, object]] = [("eth0", ip("192.168.1.10")), ("wlan0", ip("10.0.5.7"))]
    b = _binder(BindSettings(), ifaces)
    added, gone = b.refresh()
    assert set(added) == {ip("192.168.1.10"), ip("10.0.5.7")} and gone == []
    b.bound_now(ip("192.168.1.10"), "eth0")
    b.failed.add(ip("10.0.5.7"))  # the bind failed: not tried at every refresh
    assert b.refresh() == ({}, [])
    ifaces.pop()  # wlan0 went away...
    assert b.refresh() == ({}, [])
    ifaces.append(("wlan0", ip("10.0.5.7")))  # ...and came back: worth another try
    assert b.refresh()[0] == {ip("10.0.5.7"): "wlan0"}
    ifaces.pop(0)
    assert b.refresh()[1] == [ip("192.168.1.10")]


@pytest.mark.parametrize(
    ("settings", "physical"),
    [
        ({"bind": "0.0.0.0"}, None),
        ({"bind": ["not-an-ip"]}, None),
        ({}, {"10.0.0.0/33": {"blacklist": True}}),
    ],
)
def test_bad_bind_settings_are_errors(
    settings: dict[str, object], physical: dict[str, object] | None
) -> None:
    with pytest.raises(DecodeError):
        BindSettings.from_local_conf(settings, physical)
