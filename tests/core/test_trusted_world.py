"""Trusted paths (cipher 2) between nodes on the fake network, under virtual time.

The root is 10.0.0.1, the controller 10.0.0.2 and the members a and b 10.0.0.3 and 10.0.0.4
(tests/helpers/ipworld.py); only the members' own addresses are marked trusted, so the root and
the controller keep talking with crypto, as they would if an operator trusted one rack.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from tests.helpers.ipworld import IpWorld, ip_connect, ip_transfer, ip_udp
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.netstack.handles import PingReply
from ztnode.netstack.host import Host
from ztnode.testing.fakenet import Addr
from ztnode.testing.world import LocalWorld
from ztnode.transport.localapi import peer_json
from ztnode.wire import packet as pk
from ztnode.wire.constants import Verb

TPID = 0x1234_5678_9ABC
TRUSTED = {"10.0.0.3/32": {"trustedPathId": TPID}, "10.0.0.4/32": {"trustedPathId": TPID}}


def trust(h: Host, physical: dict[str, object]) -> None:
    h.node.set_physical_paths(PhysicalPathConfig.from_local_conf(physical))


def udp(world: IpWorld, src: Host, dst: Host, port: int, data: bytes) -> bool:
    return ip_udp(world, src, dst, port, data) == data


def ping(world: IpWorld, src: Host, dst: Host) -> bool:
    """An ICMP echo from ``src`` to ``dst`` is answered (three tries: the first waits on ARP)."""
    replies: list[PingReply] = []

    def answered() -> bool:
        replies.extend(e for e in world.events(src) if isinstance(e, PingReply))
        return any(r.data == b"trusted" for r in replies)

    for seq in range(3):
        world.stack(src).ping(world.v4(dst), 7, seq, b"trusted", world.now)
        if world.run_until(answered, 1_000):
            return True
    return False


def tap(world: IpWorld, a: Addr, b: Addr) -> list[tuple[int, int, int]]:
    """(cipher, verb or -1, length) of every packet head a sends b from now on."""
    seen: list[tuple[int, int, int]] = []

    def record(local: Addr, remote: Addr, data: bytes) -> None:
        if local == a and remote == b and len(data) >= 28 and data[13] != 0xFF:
            cipher = pk.peek_cipher(data)
            seen.append((cipher, data[27] & 0x1F if cipher == 2 else -1, len(data)))

    world.w.net.taps.append(record)
    return seen


@pytest.fixture(scope="module")
def both_trusted(tmp_path_factory: pytest.TempPathFactory) -> IpWorld:
    world = IpWorld(tmp_path_factory.mktemp("trusted"), seed=3)
    trust(world.a, TRUSTED)
    trust(world.b, TRUSTED)
    return world


def test_both_ends_trusted_carry_udp_and_tcp_over_cipher_2(both_trusted: IpWorld) -> None:
    world, a, b = both_trusted, both_trusted.a, both_trusted.b
    addr_a, addr_b = (world.w.addresses[h.node.address] for h in (a, b))
    a_to_b = tap(world, addr_a, addr_b)
    b_to_a = tap(world, addr_b, addr_a)
    assert udp(world, a, b, 4000, b"over a trusted path")
    assert ping(world, a, b)
    sock = ip_connect(world, a, b, world.v4(b), 5001)
    rx = next(s for s in world.stack(b)._tcp.values() if s.remote == sock.local)
    ip_transfer(world, sock, rx, 200_000, 5)

    for node_a, node_b in ((a.node, b.node), (b.node, a.node)):
        assert node_a.counters.ciphers_out["NONE_TRUSTED_PATH"] > 0
        assert node_b.counters.ciphers_in["NONE_TRUSTED_PATH"] > 0
        assert node_b.counters.drops["trusted_path_refused"] == 0
    # Every FRAME between them went as cipher 2 (the verb is readable: nothing is encrypted);
    # what is still encrypted are small control packets (HELLO, ECHO, OK replies).
    frames = [s for s in a_to_b if s[1] == Verb.FRAME]
    assert len(frames) > 50
    big_crypted = [s for s in a_to_b + b_to_a if s[0] != 2 and s[2] > 300]
    assert big_crypted == []
    assert b.node.counters.verbs_in["FRAME"] >= len(frames)
    # /peer shows the path's trusted-path id, as the reference's trustedPathId field.
    pj = peer_json(a.node, a.node.peer(b.node.address), world.now)  # type: ignore[arg-type]
    assert [p["trustedPathId"] for p in pj["paths"]] == [TPID]


def test_one_side_trusting_is_dropped_as_the_reference(tmp_path: Path) -> None:
    world = IpWorld(tmp_path, seed=4)
    a, b = world.a, world.b
    trust(a, TRUSTED)  # b configures nothing: a's cipher-2 packets cannot be authentic there
    assert not udp(world, a, b, 4000, b"never")
    assert a.node.counters.ciphers_out["NONE_TRUSTED_PATH"] > 0
    assert b.node.counters.drops["trusted_path_refused"] > 0
    assert b.node.counters.ciphers_in["NONE_TRUSTED_PATH"] == 0


def _forged(src: int, dest: int, tpid: int, verb: int = Verb.NOP, payload: bytes = b"") -> bytes:
    buf = pk.new_packet(bytes(range(8)), dest, src, verb, payload)
    buf[18] = 0x10  # cipher 2, written by hand: armor_trusted refuses the forger's ID 0
    buf[19:27] = tpid.to_bytes(8, "big")
    return bytes(buf)


def test_forged_cipher_2_is_a_counted_drop_and_unknown_senders_wait_for_whois(
    both_trusted: IpWorld,
) -> None:
    world, a, b = both_trusted, both_trusted.a, both_trusted.b
    node = b.node
    local = world.w.addresses[node.address]
    c = node.counters
    refused = c.drops["trusted_path_refused"]
    verbs = sum(c.verbs_in.values())
    # From an untrusted address (the root's), then from a's address with the wrong id.
    node.receive_datagram(
        _forged(a.node.address, node.address, TPID), local, ("10.0.0.1", 9993), world.now
    )
    node.receive_datagram(
        _forged(a.node.address, node.address, TPID + 1), local, ("10.0.0.3", 9993), world.now
    )
    node.receive_datagram(
        _forged(a.node.address, node.address, 0), local, ("10.0.0.3", 9993), world.now
    )
    assert c.drops["trusted_path_refused"] == refused + 3
    assert sum(c.verbs_in.values()) == verbs
    # From the trusted address with the id: accepted as a's (an unknown verb is "received").
    node.receive_datagram(
        _forged(a.node.address, node.address, TPID, 0x1E), local, ("10.0.0.3", 9993), world.now
    )
    assert sum(c.verbs_in.values()) == verbs + 1
    # An unknown sender on the trusted path is parked for WHOIS, as the reference does.
    parked = len(node.whois.rx_queue)
    node.receive_datagram(
        _forged(0x0102030405, node.address, TPID), local, ("10.0.0.3", 9993), world.now
    )
    assert len(node.whois.rx_queue) == parked + 1
    assert c.drops["trusted_path_refused"] == refused + 3


IDS = test_identities()


@pytest.fixture(scope="module")
def small_world() -> LocalWorld:
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=9)
    assert w.run_until(w.all_online, 15_000)
    for n in w.leaves:
        n.set_physical_paths(
            PhysicalPathConfig.from_local_conf(TRUSTED | {"10.0.0.2/32": {"trustedPathId": TPID}})
        )
    return w


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.binary(min_size=0, max_size=120),
    st.sampled_from(["10.0.0.2", "10.0.0.3", "10.0.0.9", "::1"]),
    st.sampled_from([TPID, 0, TPID + 1]),
    st.booleans(),
)
def test_fuzz_cipher_2_input_never_raises(
    small_world: LocalWorld, body: bytes, host: str, tpid: int, known: bool
) -> None:
    node = small_world.leaves[1]
    src = small_world.leaves[0].address if known else 0x0A0B0C0D0E
    raw = bytearray(_forged(src, node.address, tpid) + body)
    if len(body) > 28:
        raw[27] = body[0]  # any verb, compressed or not
        raw[18] = (raw[18] & 0x40) | 0x10 | (body[1] & 0x47)  # cipher 2, any hops/fragment flag
    before = node.counters.drops.total() + sum(node.counters.verbs_in.values())
    node.receive_datagram(
        bytes(raw), small_world.addresses[node.address], (host, 9993), small_world.net.now
    )
    after = node.counters.drops.total() + sum(node.counters.verbs_in.values())
    assert node.counters.drops["internal_error"] == 0
    if (tpid != TPID or host not in ("10.0.0.2", "10.0.0.3")) and not raw[18] & 0x40:
        assert after > before  # refused, and counted (a fragment-flagged head waits instead)
    small_world.run_for(10)
