"""The C receive guard (``accel/csrc/rx_guard.c``): rate gates for unauthenticated work, the
bounded reassembly table that orphan pieces cannot take from known peers, and a differential
fuzz of the whole burst reader against the Python receive path."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
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
)
from ztnode.crypto import SymmetricKey
from ztnode.transport import burst
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher
from ztnode.wire.fragment import Reassembler

Link = tuple[socket.socket, socket.socket]
KEY = SymmetricKey(bytes(range(48)))
STRANGER = 0x0C0C0C0C0C


@pytest.fixture
def key() -> SymmetricKey:
    return KEY


def reader_for(link: Link, policy: burst.GatePolicy | None = None) -> burst.BurstReader:
    need(burst.AVAILABLE, burst.REASON)
    reader = burst.BurstReader(link[0], ME)
    if policy is not None:
        reader.set_policy(policy)
    return reader


def strangers(n: int, first_pid: int = 1000) -> list[bytes]:
    """Packets from an address whose key is not cached: unauthenticated work."""
    return [
        armored(frame_packet(b"s", first_pid + i, v6=False, src=STRANGER), KEY)[0] for i in range(n)
    ]


@pytest.mark.e2e
def test_the_prefix_gate_bounds_unauthenticated_work_and_refills_with_time(link: Link) -> None:
    reader = reader_for(link, burst.GatePolicy(prefix_rate=10, prefix_burst=3))
    sink = Sink(KEY)
    deliver_with(reader, link[1], strangers(10), sink)
    assert len(sink.wholes) == 3
    assert sink.dropped == Counter({"unauthenticated_gate": 7})
    sink.clock += 200  # two tokens earned
    deliver_with(reader, link[1], strangers(5, 2000), sink)
    assert len(sink.wholes) == 5
    assert reader.stats["gated_prefix"] == 10 and reader.stats["gated_global"] == 0
    reader.close()


@pytest.mark.e2e
def test_the_socket_gate_bounds_what_every_prefix_together_sends(link: Link) -> None:
    reader = reader_for(link, burst.GatePolicy(global_rate=1, global_burst=4))
    sink = Sink(KEY)
    deliver_with(reader, link[1], strangers(9), sink)
    assert len(sink.wholes) == 4 and reader.stats["gated_global"] == 5
    reader.close()


@pytest.mark.e2e
def test_known_peers_pass_whatever_the_gates_say(link: Link) -> None:
    reader, sink = learned(link, KEY, Sink(KEY), burst.GatePolicy(global_rate=1, global_burst=1))
    deliver_with(reader, link[1], strangers(5), sink)
    wire = [armored(frame_packet(b"k" * 100, 50 + i, v6=False), KEY)[0] for i in range(20)]
    deliver_with(reader, link[1], wire, sink)
    assert len(sink.plains) == 20 and not sink.wholes
    reader.close()


@pytest.mark.e2e
def test_a_root_relays_for_cached_peers_ungated(link: Link) -> None:
    reader, sink = learned(
        link, KEY, Sink(KEY, relay=True), burst.GatePolicy(global_rate=1, global_burst=1)
    )
    # Not for us: to the cached peer (relayed) and to a stranger (a root judges it, through the
    # gate, whose token is gone).
    to_peer = [armored(frame_packet(b"r", 60 + i, v6=False, dest=PEER), KEY)[0] for i in range(5)]
    to_stranger = armored(frame_packet(b"r", 70, v6=False, dest=STRANGER), KEY)[0]
    deliver_with(reader, link[1], [*to_peer, to_stranger], sink)
    assert sink.datagrams == to_peer
    assert sink.dropped == Counter({"unauthenticated_gate": 1})
    reader.close()


@pytest.mark.e2e
def test_orphan_pieces_do_not_push_out_a_known_peers_packet(link: Link) -> None:
    reader, sink = learned(link, KEY, Sink(KEY, networks=[]))
    wire = armored(frame_packet(b"y" * 3000, 80, v6=False), KEY)
    assert len(wire) == 3
    rng = random.Random(3)
    orphans = []
    for _ in range(3000):  # far more sets than the table has
        d = bytearray(rng.randbytes(200))
        d[8:13] = ME.to_bytes(5, "big")
        d[13] = 0xFF
        d[14] = (4 << 4) | 1
        orphans.append(bytes(d))
    deliver_with(reader, link[1], wire[:2], sink)
    for at in range(0, len(orphans), 500):
        deliver_with(reader, link[1], orphans[at : at + 500], sink)
    deliver_with(reader, link[1], wire[2:], sink)
    assert [(p[1], p[2]) for p in sink.plains] == [(3, 1)]
    assert reader.stats["reasm_evicted"] > 2000  # orphans pushed out orphans
    assert reader.stats["reassembly_held"] <= 256  # the table's bound
    reader.close()


@pytest.mark.e2e
def test_an_incomplete_packet_expires(link: Link) -> None:
    reader, sink = learned(link, KEY, Sink(KEY))
    wire = armored(frame_packet(b"y" * 3000, 90, v6=False), KEY)
    deliver_with(reader, link[1], wire[:1], sink)
    sink.clock += 5001
    deliver_with(reader, link[1], wire[1:], sink)
    assert not sink.plains
    assert sink.dropped == Counter({"reassembly_expired": 1})
    assert reader.stats["reassembly_held"] == 2  # the rest waits for a head that is gone
    reader.close()


# ------------------------------------------------------------------------- differential


def python_path(datagrams: list[bytes]) -> set[bytes]:
    """The packets the Python receive path authenticates from these datagrams (per-datagram
    reassembly, then dearmor with the peer's key), as plaintexts."""
    r = Reassembler()
    out: set[bytes] = set()
    for d in datagrams:
        if len(d) > 16 and d[13] == 0xFF:
            if int.from_bytes(d[8:13], "big") != ME:
                continue
            whole = r.add_fragment(d, 0)
        elif len(d) >= 28:
            # As Switch._receive_head: a head for us from anyone but ourselves goes into
            # reassembly (the reference keys it by packet id alone), so a head whose sender
            # bytes were damaged, arriving first, takes the place of the good one and the
            # packet fails its MAC; the sender is judged on the whole packet below.
            if int.from_bytes(d[8:13], "big") != ME or int.from_bytes(d[13:18], "big") == ME:
                continue
            whole = r.add_head(d, 0) if d[18] & 0x40 else bytearray(d)
        else:
            continue
        if whole is not None and len(whole) >= 28 and int.from_bytes(whole[13:18], "big") == PEER:
            buf = bytearray(whole)
            if pk.dearmor(buf, KEY):
                out.add(bytes(buf))
    return out


@given(
    sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=8),
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["dup", "drop", "flip", "cut", "junk", "swap"]), st.integers(0, 999)
        ),
        max_size=8,
    ),
    cipher=st.sampled_from([Cipher.POLY1305_NONE, Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV]),
    rnd=st.randoms(use_true_random=False),
)
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# A fragmented packet's head arriving first with its sender's bytes damaged (CI, 2026-12-08).
@example(
    sizes=[2811, 1, 1],
    mutations=[("dup", 0)] * 4 + [("drop", 0), ("flip", 16)],
    cipher=Cipher.POLY1305_NONE,
    rnd=random.Random(0),
)
@pytest.mark.e2e
def test_c_burst_reader_authenticates_what_the_python_path_does(
    link: Link,
    sizes: list[int],
    mutations: list[tuple[str, int]],
    cipher: Cipher,
    rnd: random.Random,
) -> None:
    """Same datagrams (fragmented packets, duplicates, losses, bit flips, truncations, junk,
    reordering) through C and through Python: the same packets come out authenticated. C then
    hands over what it could not judge (WHOLE records), which the node dearmors itself."""
    datagrams: list[bytes] = []
    for i, n in enumerate(sizes):
        datagrams += armored(frame_packet(rnd.randbytes(n), 500 + i, v6=False), KEY, cipher)
    for what, at in mutations:
        if not datagrams:
            break
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
    reader, sink = learned(link, KEY, Sink(KEY, networks=[]))
    sink.plains.clear()
    deliver_with(reader, link[1], datagrams, sink)
    reader.close()
    got = {p for p, _, _ in sink.plains}
    for whole, _ in sink.wholes:
        buf = bytearray(whole)
        if int.from_bytes(buf[13:18], "big") == PEER and pk.dearmor(buf, KEY):
            got.add(bytes(buf))
    assert got == python_path(datagrams)
