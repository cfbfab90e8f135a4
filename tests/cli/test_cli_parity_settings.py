"""``zerotier-cli set``'s local network settings: the file, the policy, and what the stack gets.

``networks.d/<nwid>.local.conf`` is read and written as ZeroTierOne does (service/OneService.cpp
``setNetworkSettings``, and ``Dictionary::getB`` for reading); the route filter follows its
``checkIfManagedIsAllowed``; and, in memory on a controller's network, allowManaged=0 takes a
running member's managed addresses out of its IP stack (it stops answering pings), keeps them
out when a new config arrives, and allowManaged=1 puts them back. The process-level test that
drives ``ztnode set`` is in ``tests/cli/test_cli_parity.py``.
"""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from tests.helpers.ipworld import IpWorld
from ztnode.netstack.host import Host, ManagedPolicy
from ztnode.netstack.stack import PingReply
from ztnode.transport.state import HomeDir, NetworkSettings

NWID = 0x8056C2E21C000001


def test_local_conf_is_zerotier_ones_format() -> None:
    s = NetworkSettings(allow_managed=False, allow_global=True)
    assert s.to_local_conf() == b"allowManaged=0\nallowGlobal=1\nallowDefault=0\nallowDNS=0\n"
    assert NetworkSettings.from_local_conf(s.to_local_conf().decode()) == s
    assert s.as_json() == {
        "allowManaged": False,
        "allowGlobal": True,
        "allowDefault": False,
        "allowDNS": False,
    }
    assert NetworkSettings() == NetworkSettings.from_local_conf("")
    assert NetworkSettings().as_json() == {
        "allowManaged": True,
        "allowGlobal": False,
        "allowDefault": False,
        "allowDNS": False,
    }


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("allowDNS=1", NetworkSettings(allow_dns=True)),
        ("allowDefault=true\r\nallowManaged=false\n", NetworkSettings(False, False, True)),
        ("allowGlobal=T", NetworkSettings(allow_global=True)),
        ("allowGlobal=yes", NetworkSettings()),  # getB: only 1, t, T are true
        ("allowManaged=0\nnonsense\nother=1\n=1", NetworkSettings(allow_managed=False)),
        # ZeroTierOne's allowManaged whitelist (a list of CIDRs): taken as allowManaged=1.
        ("allowManaged=10.0.0.0/8,fd00::/8", NetworkSettings()),
    ],
)
def test_local_conf_parsing(text: str, want: NetworkSettings) -> None:
    assert NetworkSettings.from_local_conf(text) == want


def test_home_dir_keeps_settings_per_network(tmp_path: Path) -> None:
    home = HomeDir(tmp_path)
    home.ensure()
    assert home.load_network_settings(NWID) == NetworkSettings()
    home.remember_network(NWID)
    home.save_network_settings(NWID, NetworkSettings(allow_dns=True))
    f = tmp_path / "networks.d" / f"{NWID:016x}.local.conf"
    assert f.read_bytes() == b"allowManaged=1\nallowGlobal=0\nallowDefault=0\nallowDNS=1\n"
    assert f.stat().st_mode & 0o077 == 0
    assert home.load_network_settings(NWID) == NetworkSettings(allow_dns=True)
    assert home.load_network_settings(NWID + 1) == NetworkSettings()
    # The local.conf is not a joined network of its own.
    assert [n for n, _ in home.load_networks()] == [NWID]
    home.forget_network(NWID)
    assert not f.exists() and home.load_networks() == []


@pytest.mark.parametrize(
    ("target", "default", "managed_only", "with_global", "with_default"),
    [
        ("10.147.17.0/24", True, False, True, True),
        ("172.16.0.0/12", True, False, True, True),
        ("100.64.0.0/10", True, False, True, True),
        ("fd00::/8", True, False, True, True),
        ("8.8.8.0/24", False, False, True, False),
        ("2001:4860::/32", False, False, True, False),
        ("0.0.0.0/0", False, False, False, True),
        ("::/0", False, False, False, True),
        ("169.254.0.0/16", False, False, False, False),
        ("127.0.0.0/8", False, False, False, False),
        ("224.0.0.0/4", False, False, False, False),
        ("0.0.0.0/8", False, False, False, False),
    ],
)
def test_route_filter_is_check_if_managed_is_allowed(
    target: str, default: bool, managed_only: bool, with_global: bool, with_default: bool
) -> None:
    net = ip_network(target)
    assert ManagedPolicy().allows_route(net) is default
    assert ManagedPolicy(allow_managed=False, allow_global=True, allow_default=True).allows_route(
        net
    ) is (managed_only)
    assert ManagedPolicy(allow_global=True).allows_route(net) is with_global
    assert ManagedPolicy(allow_default=True).allows_route(net) is with_default


def _pings(world: IpWorld, src: Host, target: str, seq: int) -> bool:
    world.events(src)
    world.stack(src).ping(target, 9, seq, b"managed?", world.now)

    def got() -> bool:
        return any(
            isinstance(e, PingReply) and e.sequence == seq and e.source == target
            for e in world.events(src)
        )

    return world.run_until(got, 3_000)


def test_allow_managed_off_takes_the_addresses_out_of_a_running_stack(tmp_path: Path) -> None:
    world = IpWorld(tmp_path)
    a, b = world.a, world.b
    st = world.stack(b)
    managed = list(st.addresses)
    assert len(managed) == 2
    target = world.v4(b)
    assert _pings(world, a, target, 1)
    groups = st.multicast_groups()

    b.set_policy(world.nwid, ManagedPolicy(allow_managed=False), world.now)
    assert world.stack(b) is st and st.addresses == []
    assert not st.route_exists(world.v4(a))
    assert st.multicast_groups() != groups  # its ARP/NDP groups went with the addresses
    assert not _pings(world, a, target, 2)
    # The config still assigns them (ZeroTierOne's assignedAddresses stays the same) ...
    net = b.node.network(world.nwid)
    assert net is not None and len(net.assigned_addresses()) == 2
    # ... and a new config does not bring them back.
    rev = net.config.revision if net.config is not None else 0
    world.ctl.update_network(world.nwid, {"name": "renamed"}, world.now)
    world.w.leaves[0].flush_controller(world.now)
    assert world.run_until(lambda: net.config is not None and net.config.revision > rev, 10_000)
    assert st.addresses == []

    b.set_policy(world.nwid, ManagedPolicy(), world.now)
    assert st.addresses == managed
    assert _pings(world, a, target, 3)


def test_allow_default_and_allow_global_gate_managed_routes(tmp_path: Path) -> None:
    world = IpWorld(tmp_path)
    a = world.a
    routes = [
        {"target": "10.147.20.0/24", "via": None},
        {"target": "0.0.0.0/0", "via": "10.147.20.1"},
        {"target": "8.8.8.0/24", "via": "10.147.20.1"},
        {"target": "192.168.77.0/24", "via": "10.147.20.1"},
    ]
    world.ctl.update_network(world.nwid, {"routes": routes}, world.now)
    world.w.leaves[0].flush_controller(world.now)
    net = a.node.network(world.nwid)
    assert net is not None
    assert world.run_until(lambda: net.config is not None and len(net.config.routes) == 4, 10_000)
    st = world.stack(a)
    nwid = world.nwid

    def reach() -> tuple[bool, bool, bool]:
        return (
            st.route_exists("192.168.77.5"),  # private: always
            st.route_exists("8.8.8.8"),  # global: allowGlobal
            st.route_exists("1.1.1.1"),  # only the default route: allowDefault
        )

    assert reach() == (True, False, False)
    a.set_policy(nwid, ManagedPolicy(allow_global=True), world.now)
    assert reach() == (True, True, False)
    a.set_policy(nwid, ManagedPolicy(allow_default=True), world.now)
    assert reach() == (True, True, True)  # 8.8.8.8 now by the default route
    a.set_policy(nwid, ManagedPolicy(allow_default=True, allow_managed=False), world.now)
    assert reach() == (False, False, False)
    a.set_policy(nwid, ManagedPolicy(), world.now)
    assert reach() == (True, False, False)
