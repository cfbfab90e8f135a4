"""Flow rules end to end in an in-memory world under virtual time: our controller issues rules,
capabilities and tags; three members with IP stacks enforce them as ZeroTierOne does.

Rules that match only on one side (the inbound characteristic) prove each side's enforcement
alone; a capability lets one member through where the base rules close; a tag difference rule
blocks two members until the controller changes a tag; TEE, WATCH and REDIRECT copies reach
the observer and nobody else."""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from tests.helpers.data import test_identities
from ztnode.controller import open_controller
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus
from ztnode.netstack.host import Host
from ztnode.netstack.tcp import TcpState
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.transport.localapi import network_json, render_metrics
from ztnode.wire.rules import Characteristic

IDS = test_identities()
INBOUND = f"{int(Characteristic.INBOUND):016x}"

pytestmark = pytest.mark.slow


def _r(kind: str, **fields: object) -> dict[str, object]:
    return {"type": kind, "not": False, "or": False, **fields}


def _not(rule: dict[str, object]) -> dict[str, object]:
    return {**rule, "not": True}


def dport(port: int) -> dict[str, object]:
    return _r("MATCH_IP_DEST_PORT_RANGE", start=port, end=port)


ACCEPT = _r("ACTION_ACCEPT")
DROP = _r("ACTION_DROP")
BREAK = _r("ACTION_BREAK")


class RulesWorld:
    """Root, controller and three members (a, b and the observer c) on one private network."""

    def __init__(
        self, home: Path, rules: list[dict[str, object]], extra: dict[str, object] | None = None
    ) -> None:
        self.w = LocalWorld.build(IDS, roots=1, leaves=4, ip_stacks=True, seed=7)
        self.ctl_node = self.w.leaves[0]
        self.ctl = open_controller(self.ctl_node.identity, home, seeded_random_bytes(5))
        self.ctl_node.controller = self.ctl
        assert self.w.run_until(self.w.all_online, 15_000)
        body: dict[str, object] = {
            "name": "rules",
            "private": True,
            "v4AssignMode": {"zt": True},
            "ipAssignmentPools": [{"ipRangeStart": "10.9.9.1", "ipRangeEnd": "10.9.9.254"}],
            "routes": [{"target": "10.9.9.0/24", "via": None}],
            "rules": rules,
            **(extra or {}),
        }
        self.nwid = int(str(self.ctl.create_network(body, self.now)["id"]), 16)
        self.a, self.b, self.c = (self.w.hosts[n.address] for n in self.w.leaves[1:])
        for h in self.members:
            h.node.join(self.nwid, self.now)
            self.member(h, {"authorized": True})
        assert self.run_until(lambda: all(self.ready(h) for h in self.members), 20_000)
        self.frames: dict[int, list[ev.FrameReceived]] = {h.node.address: [] for h in self.members}
        for h in self.members:
            h.frame_taps.setdefault(self.nwid, []).append(self.frames[h.node.address].append)

    @property
    def members(self) -> tuple[Host, Host, Host]:
        return (self.a, self.b, self.c)

    @property
    def now(self) -> int:
        return self.w.net.now

    def member(self, h: Host, body: dict[str, object]) -> None:
        self.ctl.update_member(self.nwid, h.node.address, body, self.now)
        self.ctl_node.flush_controller(self.now)

    def run_until(self, cond: Callable[[], bool], ms: int) -> bool:
        return self.w.run_until(cond, ms)

    def ready(self, h: Host) -> bool:
        net = h.node.network(self.nwid)
        st = h.stack(self.nwid)
        return (
            net is not None
            and net.status == NetworkStatus.OK
            and st is not None
            and bool(st.addresses)
        )

    def ip(self, h: Host) -> str:
        st = h.stack(self.nwid)
        assert st is not None
        return next(str(a.ip) for a in st.addresses if isinstance(a, IPv4Interface))

    def udp(self, src: Host, dst: Host, port: int, data: bytes, *, wait_ms: int = 3_000) -> bool:
        """Send one datagram (after ARP); True when it arrived."""
        rx_stack, tx_stack = dst.stack(self.nwid), src.stack(self.nwid)
        assert rx_stack is not None and tx_stack is not None
        rx = rx_stack.udp_bind(None, port)
        tx = tx_stack.udp_bind(None, 0)
        try:
            got: list[bytes] = []

            def arrived() -> bool:
                m = rx.recv()
                if m is not None:
                    got.append(m[0])
                return bool(got)

            for _ in range(3):  # the first may wait on ARP
                tx.sendto(data, self.ip(dst), port, self.now)
                if self.run_until(arrived, wait_ms // 3):
                    break
            return got == [data] or (bool(got) and got[0] == data)
        finally:
            rx.close()
            tx.close()

    def tcp_connects(self, src: Host, dst: Host, port: int, *, wait_ms: int = 4_000) -> bool:
        rx_stack, tx_stack = dst.stack(self.nwid), src.stack(self.nwid)
        assert rx_stack is not None and tx_stack is not None
        lst = rx_stack.tcp_listen(None, port)
        sock = tx_stack.tcp_connect(self.ip(dst), port, self.now)
        try:
            return self.run_until(
                lambda: sock.state == TcpState.ESTABLISHED and bool(lst.queue), wait_ms
            )
        finally:
            sock.abort(self.now)
            lst.close(self.now)

    def drops(self, h: Host, reason: str) -> int:
        return h.node.counters.drops[reason]


def test_each_side_enforces_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rules = [
        # Only a receiver can match these: inbound UDP to port 9 is dropped.
        _r("MATCH_CHARACTERISTICS", mask=INBOUND),
        dport(9),
        DROP,
        # Only a sender can match these: outbound UDP to port 10 is dropped.
        _not(_r("MATCH_CHARACTERISTICS", mask=INBOUND)),
        dport(10),
        DROP,
        ACCEPT,
    ]
    rw = RulesWorld(tmp_path, rules)
    a, b = rw.a, rw.b
    assert rw.udp(a, b, 8, b"open")
    assert not rw.udp(a, b, 9, b"receiver drops")
    assert rw.drops(b, "rules_inbound") >= 1 and rw.drops(a, "rules_outbound") == 0
    with caplog.at_level(logging.DEBUG, logger="ztnode.rules"):
        assert not rw.udp(a, b, 10, b"sender drops")
    assert rw.drops(a, "rules_outbound") >= 1
    assert a.node.network(rw.nwid).enforcer.counts["out", "drop"] >= 1  # type: ignore[union-attr]
    assert "dropped by rule 5 (DROP)" in caplog.text  # the debug line names the rule
    # Visible to operators: the API shows the rules, /metrics what they decided.
    net = b.node.network(rw.nwid)
    assert net is not None
    assert network_json(net)["rules"][1] == {**dport(9), "type": "MATCH_IP_DEST_PORT_RANGE"}
    text = render_metrics(b.node, b, rw.now)
    labels = f'direction="in",network_id="{rw.nwid:016x}",outcome="drop"'
    assert f"ztnode_network_filter_total{{{labels}}}" in text


def test_capability_opens_what_base_rules_close(tmp_path: Path) -> None:
    rules = [
        dport(22),
        BREAK,
        _r("MATCH_IP_PROTOCOL", ipProtocol=6),
        ACCEPT,
        _r("MATCH_ETHERTYPE", etherType=0x0806),
        ACCEPT,
        _r("MATCH_IP_PROTOCOL", ipProtocol=17),
        ACCEPT,
    ]
    caps = [{"id": 1, "rules": [dport(22), ACCEPT]}]
    rw = RulesWorld(tmp_path, rules, {"capabilities": caps})
    a, b = rw.a, rw.b
    assert not rw.tcp_connects(a, b, 22)  # nobody holds the capability yet
    rw.member(a, {"capabilities": [1]})
    assert rw.run_until(lambda: bool(a.node.network(rw.nwid).config.capabilities), 5_000)  # type: ignore[union-attr]
    assert rw.tcp_connects(a, b, 22)  # a's capability, pushed to b, passes both sides
    assert not rw.tcp_connects(b, a, 22)  # b has none
    assert rw.tcp_connects(b, a, 80)  # the base rules still accept other TCP


def test_tag_difference_blocks_until_the_controller_changes_a_tag(tmp_path: Path) -> None:
    dept = 1000
    rules = [_not(_r("MATCH_TAGS_DIFFERENCE", id=dept, value=0)), DROP, ACCEPT]
    rw = RulesWorld(tmp_path, rules, {"tags": [{"id": dept, "default": 1}]})
    a, b = rw.a, rw.b
    rw.member(b, {"tags": [[dept, 2]]})
    assert rw.run_until(lambda: b.node.network(rw.nwid).enforcer.env.own.tags.get(dept) == 2, 5_000)  # type: ignore[union-attr]
    assert not rw.udp(a, b, 5000, b"different departments")
    # One config push changes the tag while everything runs; the next frames pass.
    rw.member(b, {"tags": [[dept, 1]]})
    assert rw.run_until(lambda: b.node.network(rw.nwid).enforcer.env.own.tags.get(dept) == 1, 5_000)  # type: ignore[union-attr]
    assert rw.udp(a, b, 5000, b"same department", wait_ms=6_000)


def test_tee_watch_and_redirect_reach_the_observer_only(tmp_path: Path) -> None:
    observer = f"{IDS[4].address:010x}"
    rules = [
        dport(7777),
        _r("ACTION_TEE", address=observer, flags=0, length=0),
        dport(7778),
        _r("ACTION_REDIRECT", address=observer, flags=0, length=0),
        dport(7779),
        _r("ACTION_WATCH", address=observer, flags=0, length=16),
        ACCEPT,
    ]
    rw = RulesWorld(tmp_path, rules)
    a, b, c = rw.a, rw.b, rw.c
    assert c.node.address == IDS[4].address

    def udp_to(frames: list[ev.FrameReceived], port: int) -> list[ev.FrameReceived]:
        return [
            f
            for f in frames
            if f.ethertype == 0x0800
            and len(f.payload) > 24
            and int.from_bytes(f.payload[22:24], "big") == port
        ]

    fa, fb, fc = (rw.frames[h.node.address] for h in (a, b, c))
    assert rw.udp(a, b, 7777, b"teed")
    assert rw.run_until(
        lambda: len(udp_to(fc, 7777)) == 2, 2_000
    )  # a's outbound and b's inbound TEE
    assert not udp_to(fa, 7777)
    assert not rw.udp(a, b, 7778, b"redirected")  # REDIRECT: b never sees it
    assert rw.run_until(lambda: len(udp_to(fc, 7778)) >= 1, 2_000)
    assert not udp_to(fb, 7778) and not udp_to(fa, 7778)
    assert rw.udp(a, b, 7779, b"watched")

    def watched() -> list[ev.FrameReceived]:  # WATCH copies carry the first 16 bytes only
        return [f for f in fc if len(f.payload) == 16]

    assert rw.run_until(lambda: len(watched()) == 2, 2_000)
    b_mac = b.node.network(rw.nwid).mac  # type: ignore[union-attr]
    assert all(f.dest_mac == b_mac for f in watched())
    assert not [f for f in fa + fb if len(f.payload) == 16]
