"""``local.conf`` checked whole (service/OneService.cpp readLocalSettings/applyLocalConfig):
each key's values and errors (the key named), the reference's lenient booleans, unknown and
not-applicable keys warned about, the program's settings over the file's, the watcher, and
arbitrary JSON never raising anything but :class:`LocalConfError`."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.core.pathpolicy import MAX_ENTRIES, PeerHints
from ztnode.transport.localconf import (
    LocalConf,
    LocalConfError,
    LocalConfWatcher,
    read_local_conf,
)

net = ipaddress.ip_network


def parse(settings: dict[str, Any] | None = None, **top: Any) -> LocalConf:
    return LocalConf.parse({"settings": settings or {}, **top})


def test_defaults_are_the_references() -> None:
    c = LocalConf.parse({})
    assert (c.primary_port, c.secondary_port, c.tertiary_port) == (0, 0, 0)
    assert c.allow_secondary_port is None and c.allow_tcp_fallback_relay
    assert c.port_mapping_enabled is None  # unsaid: on for the daemon, off when embedded
    assert not c.force_tcp_relay and c.tcp_fallback_relay is None
    assert c.interface_prefix_blacklist == () and c.bind == () and c.allow_management_from == ()
    assert c.physical.entries == () and dict(c.virtual) == {} and c.warnings == ()


def test_every_applied_key() -> None:
    c = parse(
        {
            "primaryPort": 9994,
            "secondaryPort": 40000,
            "tertiaryPort": 40001,
            "allowSecondaryPort": False,
            "portMappingEnabled": 0,
            "allowTcpFallbackRelay": "1",
            "forceTcpRelay": "yes",
            "tcpFallbackRelay": "10.1.2.3/443",
            "interfacePrefixBlacklist": ["eth1", "wg"],
            "bind": ["10.0.0.5", "fd00::5"],
            "allowManagementFrom": ["10.0.0.0/8", "192.168.1.7"],
            "controllerDbPath": "/var/lib/ctl",
            "tcpRelayListen": "0.0.0.0/443",
            "defaultBondingPolicy": "active-backup",
        },
        physical={"10.9.0.0/16": {"blacklist": True}, "10.8.0.0/16": {"trustedPathId": 7}},
        virtual={"89e92ceee5": {"try": ["10.0.0.9/9993"], "blacklist": ["10.5.0.0/16"]}},
    )
    assert (c.primary_port, c.secondary_port, c.tertiary_port) == (9994, 40000, 40001)
    assert c.allow_secondary_port is False and c.port_mapping_enabled is False
    assert c.allow_tcp_fallback_relay and c.force_tcp_relay
    assert c.tcp_fallback_relay == ("10.1.2.3", 443)
    assert c.tcp_relay_listen == ("0.0.0.0", 443)
    assert c.interface_prefix_blacklist == ("eth1", "wg")
    assert c.bind == (ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("fd00::5"))
    assert c.allow_management_from == (net("10.0.0.0/8"), net("192.168.1.7/32"))
    assert c.controller_db_path == "/var/lib/ctl"
    assert c.bonding.default_policy == "active-backup"
    assert c.blacklisted_networks == (net("10.9.0.0/16"),)
    assert [(str(p.network), p.trusted_path_id) for p in c.physical.entries] == [
        ("10.8.0.0/16", 7),
        ("10.9.0.0/16", 0),
    ]
    assert c.virtual[0x89E92CEEE5] == PeerHints((("10.0.0.9", 9993),), (net("10.5.0.0/16"),))
    assert c.warnings == ()
    policy = c.path_policy()
    assert not policy.allows(1, ipaddress.ip_address("10.9.3.4"))
    assert not policy.allows(0x89E92CEEE5, ipaddress.ip_address("10.5.1.1"))
    assert policy.allows(1, ipaddress.ip_address("10.5.1.1"))
    assert policy.hint(0x89E92CEEE5, 0) == ("10.0.0.9", 9993)
    assert policy.hint(0x89E92CEEE5, 1) is None  # no IPv6 hint: nothing this time


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"settings": {"primaryPort": 70000}}, "settings.primaryPort"),
        ({"settings": {"primaryPort": "9993"}}, "settings.primaryPort"),
        ({"settings": {"secondaryPort": True}}, "settings.secondaryPort"),
        ({"settings": {"tertiaryPort": -1}}, "settings.tertiaryPort"),
        ({"settings": {"portMappingEnabled": "maybe"}}, "settings.portMappingEnabled"),
        ({"settings": {"allowTcpFallbackRelay": 2}}, "settings.allowTcpFallbackRelay"),
        ({"settings": {"forceTcpRelay": []}}, "settings.forceTcpRelay"),
        (
            {"settings": {"forceTcpRelay": True, "allowTcpFallbackRelay": False}},
            "settings.forceTcpRelay",
        ),
        ({"settings": {"tcpFallbackRelay": "10.0.0.1"}}, "settings.tcpFallbackRelay"),
        ({"settings": {"tcpFallbackRelay": "relay.example/443"}}, "settings.tcpFallbackRelay"),
        ({"settings": {"interfacePrefixBlacklist": "eth"}}, "settings.interfacePrefixBlacklist"),
        ({"settings": {"interfacePrefixBlacklist": [""]}}, "settings.interfacePrefixBlacklist"),
        ({"settings": {"bind": ["nope"]}}, "settings.bind"),
        ({"settings": {"allowManagementFrom": ["10.0.0.0/40"]}}, "settings.allowManagementFrom"),
        ({"settings": {"controllerDbPath": 5}}, "settings.controllerDbPath"),
        ({"settings": {"defaultBondingPolicy": "fastest"}}, "settings"),
        ({"settings": []}, "settings"),
        # physical: the core's parser (core/trusted.py) names the network and key in its text
        ({"physical": []}, "physical"),
        ({"physical": {"10.0.0.0": {}}}, "physical"),
        ({"physical": {"0.0.0.0/0": {"blacklist": True}}}, "physical.0.0.0.0/0"),
        ({"physical": {"10.0.0.0/8": {"mtu": "big"}}}, "physical"),
        ({"physical": {"10.0.0.0/8": {"trustedPathId": -3}}}, "physical"),
        ({"physical": {"10.0.0.0/8": {"blacklist": "sure"}}}, "physical"),
        ({"physical": {"10.0.0.0/8": {"trusted": 1}}}, "physical"),
        ({"physical": {"10.0.0.0/8": True}}, "physical"),
        ({"virtual": {"xyz": {}}}, "virtual.xyz"),
        ({"virtual": {"0000000000": {}}}, "virtual.0000000000"),
        ({"virtual": {"89e92ceee5": {"try": ["10.0.0.9"]}}}, "virtual.89e92ceee5.try"),
        ({"virtual": {"89e92ceee5": {"blacklist": ["x"]}}}, "virtual.89e92ceee5.blacklist"),
        ({"virtual": {"89e92ceee5": {"hints": []}}}, "virtual.89e92ceee5.hints"),
        ({"settings": {"bind": ["10.0.0.1"] * (MAX_ENTRIES + 1)}}, "settings.bind"),
    ],
)
def test_a_bad_value_names_its_key(conf: dict[str, Any], key: str) -> None:
    with pytest.raises(LocalConfError) as e:
        LocalConf.parse(conf)
    assert e.value.key == key
    assert str(e.value).startswith(f"local.conf {key}: ")


def test_unknown_and_not_applicable_keys_are_kept_and_warned_about() -> None:
    c = LocalConf.parse(
        {
            "settings": {"portMapingEnabled": True, "softwareUpdate": "apply", "primaryPort": 1},
            "extra": {"anything": 1},
        }
    )
    assert c.raw["extra"] == {"anything": 1}
    assert c.settings["portMapingEnabled"] is True
    text = "\n".join(c.warnings)
    assert "local.conf extra: unknown key" in text
    assert "local.conf settings.portMapingEnabled: unknown key" in text
    assert "local.conf settings.softwareUpdate: ztnode is updated by pip" in text
    assert len(c.warnings) == 3


def test_the_programs_settings_win_key_by_key() -> None:
    c = LocalConf.parse(
        {"settings": {"primaryPort": 9994, "forceTcpRelay": True}}, {"primaryPort": 9995}
    )
    assert c.primary_port == 9995 and c.force_tcp_relay
    with pytest.raises(LocalConfError, match=r"settings\.primaryPort"):
        LocalConf.parse({}, {"primaryPort": "x"})


def test_management_networks() -> None:
    c = parse({"allowManagementFrom": ["10.0.0.0/8", "fd00::/8"]})
    assert c.management_allowed("127.0.0.1") and c.management_allowed("::1")
    assert c.management_allowed("10.3.4.5") and c.management_allowed("::ffff:10.3.4.5")
    assert c.management_allowed("fd12::1")
    assert not c.management_allowed("192.168.1.1") and not c.management_allowed("garbage")
    assert not LocalConf.parse({}).management_allowed("10.3.4.5")


def test_reading_the_file(tmp_path: Path) -> None:
    f = tmp_path / "local.conf"
    assert read_local_conf(f) == LocalConf.parse({})  # none: the defaults
    f.write_text("   \n")
    assert read_local_conf(f).primary_port == 0  # empty, as the reference
    f.write_text('{"settings": {"primaryPort": 9996}}')
    assert read_local_conf(f, {"tertiaryPort": 5}).tertiary_port == 5
    f.write_text("{not json")
    with pytest.raises(LocalConfError, match="is not JSON"):
        read_local_conf(f)
    f.write_text("[1, 2]")
    with pytest.raises(LocalConfError, match="JSON object"):
        read_local_conf(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(LocalConfError, match="cannot read"):
        read_local_conf(f)


def test_the_watcher_sees_writes_replacements_and_removal(tmp_path: Path) -> None:
    f = tmp_path / "local.conf"
    w = LocalConfWatcher(f)
    assert not w.changed()
    f.write_text("{}")
    assert w.changed() and not w.changed()
    f.write_text('{"settings": {}}')  # another size
    assert w.changed()
    st = f.stat()
    f.write_text('{"settings": {1}}')  # same size, other content: mtime moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert w.changed()
    tmp = tmp_path / "new"
    tmp.write_text('{"settings": {2}}')
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    tmp.replace(f)  # an atomic replacement: a new inode
    assert w.changed()
    f.unlink()
    assert w.changed() and not w.changed()


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["10.0.0.0/8", "10.0.0.1/9993", "89e92ceee5", "fd00::/8", "eth"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "settings",
                    "physical",
                    "virtual",
                    "primaryPort",
                    "bind",
                    "allowManagementFrom",
                    "interfacePrefixBlacklist",
                    "tcpFallbackRelay",
                    "10.0.0.0/8",
                    "89e92ceee5",
                    "try",
                    "blacklist",
                    "mtu",
                    "trustedPathId",
                    "policies",
                    "peerSpecificBonds",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_arbitrary_json_is_a_conf_or_a_named_error(obj: Any) -> None:
    try:
        c = LocalConf.parse(obj)
    except LocalConfError as e:
        assert e.key
        return
    json.dumps(c.raw)  # still serialisable: /config shows it
