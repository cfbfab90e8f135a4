"""Trusted paths (cipher 2) in the C receive engine: ``zt_tpath_match`` against its Python
reference (``PhysicalPaths.inbound_trusted``), and the burst reader passing cipher-2 packets
from a trusted network ungated while refusing the rest, as the node would."""

from __future__ import annotations

import ipaddress
import random
import socket
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.accel.conftest import need
from tests.accel.test_offload import (
    ME,
    PEER,
    Sink,
    armored,
    deliver_with,
    frame_packet,
    learned,
    segment,
)
from ztnode import accel
from ztnode.core.trusted import PhysicalPath, PhysicalPathConfig, PhysicalPaths
from ztnode.crypto import SymmetricKey
from ztnode.transport import burst
from ztnode.wire import packet as pk
from ztnode.wire.fragment import Reassembler, split

Link = tuple[socket.socket, socket.socket]
TPID = 0xFEED_0000_0001
MTU = 1432


def lib() -> tuple[object, object]:
    ffi, lib = accel.ffi_and_lib()
    need(lib is not None, accel.REASON)
    return ffi, lib


def c_match(config: PhysicalPathConfig, host: str, tpid: int) -> bool:
    _ffi, c = lib()
    table, n = burst.c_trusted_paths(config)
    ip = ipaddress.ip_address(host)
    return bool(
        c.zt_tpath_match(table, n, 1 if ip.version == 6 else 0, ip.packed, tpid)  # type: ignore[attr-defined]
    )


_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_ids = st.sampled_from([1, 2, 2**64 - 1, TPID])


@st.composite
def configs(draw: st.DrawFn) -> PhysicalPathConfig:
    out: dict[object, PhysicalPath] = {}
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(
                (draw(_v4), draw(st.integers(0, 32))), strict=False
            )
        else:
            net = ipaddress.ip_network((draw(_v6), draw(st.integers(0, 128))), strict=False)
        out[net] = PhysicalPath(net, draw(st.sampled_from([0, 1, 2, TPID])))
    return PhysicalPathConfig(tuple(out.values()))


@settings(max_examples=500, deadline=None)
@given(configs(), st.data(), _ids)
def test_c_matching_equals_the_python_reference(
    config: PhysicalPathConfig, data: st.DataObject, tpid: int
) -> None:
    table = PhysicalPaths(config)
    hosts = [data.draw(_v4), data.draw(_v6)]
    for p in config.entries:  # addresses inside, at the edges of, and just outside each net
        net = p.network
        hosts += [net.network_address, net.broadcast_address]
        if int(net.broadcast_address) < (2**32 if net.version == 4 else 2**128) - 1:
            hosts.append(net.broadcast_address + 1)
    for ip in hosts:
        for t in (tpid, *(p.trusted_path_id for p in config.entries), 0):
            assert c_match(config, str(ip), t) == table.inbound_trusted(str(ip), t), (ip, t)


def test_c_table_bound_is_the_references() -> None:
    ffi, c = lib()
    assert c.ZT_RX_TPATHS == 32  # type: ignore[attr-defined]
    reader_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        need(burst.AVAILABLE, burst.REASON)
        reader = burst.BurstReader(reader_sock, ME)
        table = ffi.new("zt_tpath[]", 33)  # type: ignore[attr-defined]
        assert c.zt_rx_set_tpaths(reader._rx, table, 33) == c.ZT_RX_EARGS  # type: ignore[attr-defined]
        reader.close()
    finally:
        reader_sock.close()


def trusted_packets(n: int, tpid: int, size: int = 60, first_pid: int = 100) -> list[bytes]:
    out: list[bytes] = []
    for i in range(n):
        p = frame_packet(bytes(size), first_pid + i, v6=False, src=PEER)
        if len(p) > MTU:
            p[18] |= 0x40
        pk.armor_trusted(p, tpid)
        out += split(p, MTU)
    return out


def run(
    link: Link, sink: Sink, datagrams: list[bytes], policy: burst.GatePolicy
) -> burst.BurstReader:
    need(burst.AVAILABLE, burst.REASON)
    reader = burst.BurstReader(link[0], ME)
    reader.set_policy(policy)
    for d in datagrams:
        link[1].send(d)
    for _ in range(1000):
        if not reader.read(sink):
            break
    return reader


TIGHT = burst.GatePolicy(prefix_rate=1, prefix_burst=1, global_rate=1, global_burst=1)
LOOPBACK = PhysicalPathConfig.from_local_conf({"127.0.0.0/8": {"trustedPathId": TPID}})


@pytest.mark.e2e
def test_trusted_cipher_2_passes_ungated_and_armored(link: Link) -> None:
    sink = Sink(None, networks=[], physical=LOOPBACK)
    wire = trusted_packets(20, TPID)
    reader = run(link, sink, wire, TIGHT)
    assert [w for w, _ in sink.wholes] == wire  # all of them, as they came: the node judges
    assert not sink.dropped and not sink.plains
    assert reader.stats["trusted_path_passed"] == 20
    reader.close()


@pytest.mark.e2e
def test_trusted_fragments_are_reassembled_and_passed(link: Link) -> None:
    sink = Sink(None, networks=[], physical=LOOPBACK)
    wire = trusted_packets(3, TPID, size=4000)
    assert len(wire) == 9
    reader = run(link, sink, wire, TIGHT)
    assert len(sink.wholes) == 3 and all(pieces == 3 for _, pieces in sink.wholes)
    assert all(pk.peek_trusted_path_id(w) == TPID for w, _ in sink.wholes)
    reader.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "physical",
    [
        PhysicalPathConfig(),
        PhysicalPathConfig.from_local_conf({"127.0.0.0/8": {"trustedPathId": TPID + 1}}),
        PhysicalPathConfig.from_local_conf({"10.0.0.0/8": {"trustedPathId": TPID}}),
        PhysicalPathConfig.from_local_conf({"127.0.0.0/8": {"mtu": 1500}}),
    ],
)
def test_untrusted_cipher_2_is_refused_in_c_and_counted_as_the_node_counts_it(
    link: Link, physical: PhysicalPathConfig
) -> None:
    sink = Sink(None, networks=[], physical=physical)
    reader = run(link, sink, trusted_packets(5, TPID), burst.GatePolicy())
    assert not sink.wholes
    assert sink.dropped == Counter({"trusted_path_refused": 5})
    reader.close()


KEY = SymmetricKey(bytes(range(48)))


@pytest.mark.e2e
def test_from_a_known_peer_cipher_2_is_authenticated_and_joined_in_c(link: Link) -> None:
    reader, sink = learned(link, KEY, Sink(KEY, physical=LOOPBACK))
    seq, wire = 1000, []
    for i in range(6):
        p = frame_packet(segment(False, seq, bytes([i]) * 1000), 900 + i, v6=False)
        pk.armor_trusted(p, TPID)
        wire.append(bytes(p))
        seq += 1000
    deliver_with(reader, link[1], wire, sink)
    # One record standing for the six, as for decrypted traffic; its flags say cipher 2.
    assert [(pieces, frames) for _, pieces, frames in sink.plains] == [(6, 6)]
    assert pk.peek_cipher(sink.plains[0][0]) == 2 and not sink.wholes
    # Encrypted segments continuing the flow are not joined onto the trusted record.
    more = frame_packet(segment(False, seq, b"z" * 1000), 990, v6=False)
    deliver_with(reader, link[1], armored(more, KEY), sink)
    assert [frames for _, _, frames in sink.plains] == [6, 1]
    reader.close()


@pytest.mark.e2e
def test_the_table_follows_the_node(link: Link) -> None:
    sink = Sink(None, networks=[])
    reader = run(link, sink, trusted_packets(2, TPID), burst.GatePolicy())
    assert sink.dropped == Counter({"trusted_path_refused": 2})
    sink.physical = LOOPBACK  # the node was configured: the next burst uses it
    for d in trusted_packets(2, TPID, first_pid=500):
        link[1].send(d)
    for _ in range(10):
        if not reader.read(sink):
            break
    assert len(sink.wholes) == 2
    reader.close()


def python_trusted(datagrams: list[bytes], table: PhysicalPaths) -> set[bytes]:
    """What the node's own path accepts from these datagrams sent from 127.0.0.1: per-datagram
    reassembly, then the trusted-path check (Switch.process_packet)."""
    r = Reassembler()
    out: set[bytes] = set()
    for d in datagrams:
        if len(d) > 16 and d[13] == 0xFF:
            whole = r.add_fragment(d, 0) if int.from_bytes(d[8:13], "big") == ME else None
        elif len(d) >= 28 and int.from_bytes(d[8:13], "big") == ME:
            whole = r.add_head(d, 0) if d[18] & 0x40 else bytearray(d)
        else:
            continue
        if whole is not None and accepted(bytes(whole), table):
            out.add(bytes(whole))
    return out


def accepted(packet: bytes, table: PhysicalPaths) -> bool:
    return (
        len(packet) >= 28
        and pk.peek_cipher(packet) == 2
        and int.from_bytes(packet[13:18], "big") != ME
        and table.inbound_trusted("127.0.0.1", pk.peek_trusted_path_id(packet))
    )


@given(
    sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=8),
    mutations=st.lists(
        st.tuples(st.sampled_from(["dup", "drop", "flip", "cut", "junk", "swap"]), st.integers()),
        max_size=8,
    ),
    physical=st.sampled_from(
        [
            LOOPBACK,
            PhysicalPathConfig(),
            PhysicalPathConfig.from_local_conf({"127.0.0.0/8": {"trustedPathId": TPID ^ 1}}),
        ]
    ),
    rnd=st.randoms(use_true_random=False),
)
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.e2e
def test_c_passes_exactly_the_cipher_2_packets_the_node_accepts(
    link: Link,
    sizes: list[int],
    mutations: list[tuple[str, int]],
    physical: PhysicalPathConfig,
    rnd: random.Random,
) -> None:
    """Fragmented cipher-2 packets, duplicated, lost, bit-flipped, cut, mixed with junk and
    reordered, through the C reader and through the node's path: the packets C hands over that
    the node then accepts are exactly those the node accepts from the raw datagrams."""
    datagrams: list[bytes] = []
    for i, n in enumerate(sizes):
        datagrams += trusted_packets(1, TPID, size=n, first_pid=700 + i)
    for what, at in mutations:
        if not datagrams:
            break
        at = abs(at) % 100_000
        j = at % len(datagrams)
        d = bytearray(datagrams[j])
        if what == "dup":
            datagrams.insert(j, bytes(d))
        elif what == "drop":
            del datagrams[j]
        elif what == "flip":
            d[at % len(d)] ^= 1 << (at % 8)
            datagrams[j] = bytes(d)
        elif what == "cut":
            datagrams[j] = bytes(d[: max(1, at % len(d))])
        elif what == "junk":
            datagrams.insert(j, rnd.randbytes(1 + at % 300))
        else:
            k = (j + 1) % len(datagrams)
            datagrams[j], datagrams[k] = datagrams[k], datagrams[j]
    sink = Sink(None, networks=[], physical=physical)
    reader = run(link, sink, datagrams, burst.GatePolicy())
    reader.close()
    table = PhysicalPaths(physical)
    got = {w for w, _ in sink.wholes if accepted(w, table)}
    got |= {p for p, _, _ in sink.plains}  # none here: no peer's key is cached
    assert got == python_trusted(datagrams, table)
