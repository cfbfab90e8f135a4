"""Config chunks on the member side: signature checks, trusted senders and assembly.

protocol-network.md §2.3: a signed chunk counts only if the network's controller signed it (from
whoever relays it); the legacy unsigned form only straight from the controller; chunks of one
update are assembled by byte offset in any order, duplicates are harmless, chunks reaching past
the announced total or a total beyond the dictionary capacity are refused, and at most three
updates are assembled at once (a new one evicts the stalest).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from tests.helpers.controller_worlds import IDS, MiniController, joined
from ztnode.core import events as ev
from ztnode.core.counters import Drop
from ztnode.core.network import (
    MAX_UPDATES_IN_FLIGHT,
    NETCONF_DICT_CAPACITY,
    Network,
)
from ztnode.core.node import Node
from ztnode.identity import Identity
from ztnode.testing.world import LocalWorld
from ztnode.wire.constants import Verb
from ztnode.wire.netconf import NetworkConfig
from ztnode.wire.verbs import NetworkConfigChunk

# --------------------------------------------------------------------------- Network.add_chunk

BLOB = bytes(range(256)) * 3  # 768 bytes


def pieces(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    edges = [0, *cuts, len(data)]
    return [(lo, data[lo:hi]) for lo, hi in pairwise(edges)]


def test_chunks_assemble_in_any_order() -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    parts = pieces(BLOB, [100, 101, 400, 700])
    order = [3, 0, 4, 2, 1]
    for n, i in enumerate(order):
        off, data = parts[i]
        got = net.add_chunk(9, len(BLOB), off, data)
        assert (got is None) == (n < len(order) - 1)
    assert got == BLOB
    # Completed updates leave nothing behind.
    assert net._assemblies == {}


def test_duplicate_chunks_neither_complete_nor_corrupt() -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    (o1, d1), (o2, d2) = pieces(BLOB, [384])
    assert net.add_chunk(9, len(BLOB), o1, d1) is None
    # The same chunk again must not count its bytes twice (that would "complete" half a config).
    assert net.add_chunk(9, len(BLOB), o1, d1) is None
    assert net.add_chunk(9, len(BLOB), o1, d1) is None
    assert net.add_chunk(9, len(BLOB), o2, d2) == BLOB
    # A late duplicate of a finished update starts a new assembly and never completes alone.
    assert net.add_chunk(9, len(BLOB), o2, d2) is None


@pytest.mark.parametrize(
    ("total", "index", "size"),
    [
        (100, 90, 11),  # reaches one byte past the total
        (100, 101, 0),  # starts past the total
        (0, 0, 0),  # nothing announced
        (NETCONF_DICT_CAPACITY, 0, 10),  # no room for the terminating NUL
        (NETCONF_DICT_CAPACITY + 10**6, 0, 10),
    ],
)
def test_chunks_out_of_bounds_are_refused(total: int, index: int, size: int) -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    assert net.add_chunk(5, total, index, b"x" * size) is None
    assert net._assemblies == {}  # nothing allocated for them


def test_chunk_within_the_capacity_limit_is_taken() -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    total = NETCONF_DICT_CAPACITY - 1
    assert net.add_chunk(5, total, total - 3, b"end") is None
    assert 5 in net._assemblies


def test_a_fourth_update_evicts_the_stalest() -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    half = len(BLOB) // 2
    for uid in (1, 2, 3):
        assert net.add_chunk(uid, len(BLOB), 0, BLOB[:half]) is None
    assert net.add_chunk(1, len(BLOB), 0, BLOB[:half]) is None  # touch 1: 2 is now stalest
    assert MAX_UPDATES_IN_FLIGHT == 3
    assert net.add_chunk(4, len(BLOB), 0, BLOB[:half]) is None
    assert sorted(net._assemblies) == [1, 3, 4]
    # The evicted update lost its first half: its second half alone does not complete it.
    assert net.add_chunk(2, len(BLOB), half, BLOB[half:]) is None
    # ... and restarting it evicted the next stalest (3); 1 and 4 still complete.
    assert sorted(net._assemblies) == [1, 2, 4]
    assert net.add_chunk(1, len(BLOB), half, BLOB[half:]) == BLOB
    assert net.add_chunk(4, len(BLOB), half, BLOB[half:]) == BLOB


def test_a_changed_total_restarts_only_that_update() -> None:
    net = Network(0x1122334455000001, 0x0102030405)
    half = len(BLOB) // 2
    for uid in (2, 3, 1):  # 2 is the stalest
        assert net.add_chunk(uid, len(BLOB), 0, BLOB[:half]) is None
    # Update 1 now claims another total: it starts over, and no other update is evicted.
    assert net.add_chunk(1, len(BLOB) + 1, 0, BLOB[:half]) is None
    assert sorted(net._assemblies) == [1, 2, 3]
    assert net.add_chunk(2, len(BLOB), half, BLOB[half:]) == BLOB
    assert net.add_chunk(3, len(BLOB), half, BLOB[half:]) == BLOB
    assert net.add_chunk(1, len(BLOB), half, BLOB[half:]) is None  # its first half is gone


# --------------------------------------------------------------------------- over the wire


def new_config(w: LocalWorld, ctl: MiniController, member: Node, name: str) -> bytes:
    cfg = ctl.config_for(ctl.identities[member.address], w.net.now + 1)
    return replace(cfg, name=name, revision=7).encode()


def signed(nwid: int, raw: bytes, signer: Identity, uid: int, off: int = 0, size: int = 0) -> bytes:
    data = raw[off : off + size] if size else raw
    chunk = NetworkConfigChunk.signed(
        nwid, data, update_id=uid, total_length=len(raw), chunk_index=off, sign=signer.sign
    )
    return chunk.encode()


def name_of(net: Network | None) -> str:
    assert net is not None and net.config is not None
    return net.config.name


def test_chunk_signed_by_another_key_is_dropped() -> None:
    w, ctl_node, ctl, nwid, a, _b = joined()
    before = a.counters.drops[Drop.BAD_SIGNATURE.value]
    raw = new_config(w, ctl, a, "forged")
    impostor = IDS[-1]  # not the controller (nwid >> 24)
    assert impostor.address != nwid >> 24
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, signed(nwid, raw, impostor, 11), w.net.now)
    w.run_for(1_000)
    assert a.counters.drops[Drop.BAD_SIGNATURE.value] == before + 1
    assert name_of(a.network(nwid)) == "test"
    # A genuine signature over other bytes fails the same way (data swapped after signing).
    good = NetworkConfigChunk.decode(signed(nwid, raw, ctl_node.identity, 12))
    tampered = replace(good, data=raw.replace(b"forged", b"fooled"))
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, tampered.encode(), w.net.now)
    w.run_for(1_000)
    assert a.counters.drops[Drop.BAD_SIGNATURE.value] == before + 2
    assert name_of(a.network(nwid)) == "test"
    # The same update with the controller's signature is taken.
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, good.encode(), w.net.now)
    assert w.run_until(lambda: name_of(a.network(nwid)) == "forged", 2_000)
    assert a.counters.drops[Drop.BAD_SIGNATURE.value] == before + 2


def test_signed_chunk_relayed_by_another_member_is_accepted() -> None:
    """The signature, not the sender, makes a signed chunk trusted (fast propagation)."""
    w, ctl_node, ctl, nwid, a, b = joined()
    raw = new_config(w, ctl, a, "via-b")
    chunk = signed(nwid, raw, ctl_node.identity, 21)
    b.switch.send(a.address, Verb.NETWORK_CONFIG, chunk, w.net.now)
    assert w.run_until(lambda: name_of(a.network(nwid)) == "via-b", 2_000)


def test_unsigned_chunk_only_from_the_controller() -> None:
    w, ctl_node, ctl, nwid, a, b = joined()
    before = a.counters.drops[Drop.UNTRUSTED_SENDER.value]
    legacy = NetworkConfigChunk.legacy(nwid, new_config(w, ctl, a, "from-b")).encode()
    b.switch.send(a.address, Verb.NETWORK_CONFIG, legacy, w.net.now)
    assert w.run_until(lambda: a.counters.drops[Drop.UNTRUSTED_SENDER.value] == before + 1, 2_000)
    assert name_of(a.network(nwid)) == "test"
    # The legacy form straight from the controller is still honoured (old controllers).
    legacy = NetworkConfigChunk.legacy(nwid, new_config(w, ctl, a, "from-ctl")).encode()
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, legacy, w.net.now)
    assert w.run_until(lambda: name_of(a.network(nwid)) == "from-ctl", 2_000)
    assert a.counters.drops[Drop.UNTRUSTED_SENDER.value] == before + 1


def test_multi_chunk_push_out_of_order_with_duplicates() -> None:
    w, ctl_node, ctl, nwid, a, _b = joined()
    raw = new_config(w, ctl, a, "chunked")
    assert len(raw) > 400
    cuts = [0, 100, 250, len(raw) - 30, len(raw)]
    chunks = [signed(nwid, raw, ctl_node.identity, 31, lo, hi - lo) for lo, hi in pairwise(cuts)]
    w.events(a)
    for i in (2, 0, 2, 3, 0):
        ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, chunks[i], w.net.now, compress=True)
        w.run_for(100)
        assert name_of(a.network(nwid)) == "test"  # chunk 1 is still missing
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, chunks[1], w.net.now, compress=True)
    assert w.run_until(lambda: name_of(a.network(nwid)) == "chunked", 2_000)
    updates = [e for e in w.events(a) if isinstance(e, ev.NetworkConfigUpdated)]
    assert [u.revision for u in updates] == [7]
    assert NetworkConfig.decode(updates[0].config).name == "chunked"
    # Late duplicates of the finished update change nothing.
    for c in chunks:
        ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, c, w.net.now, compress=True)
    w.run_for(500)
    assert not [e for e in w.events(a) if isinstance(e, ev.NetworkConfigUpdated)]


def test_oversized_total_over_the_wire_is_ignored() -> None:
    w, ctl_node, ctl, nwid, a, _b = joined()
    raw = new_config(w, ctl, a, "huge")
    chunk = NetworkConfigChunk.signed(
        nwid,
        raw,
        update_id=41,
        total_length=NETCONF_DICT_CAPACITY,
        chunk_index=0,
        sign=ctl_node.identity.sign,
    )
    ctl_node.switch.send(a.address, Verb.NETWORK_CONFIG, chunk.encode(), w.net.now, compress=True)
    w.run_for(1_000)
    net = a.network(nwid)
    assert name_of(net) == "test"
    assert net is not None and net._assemblies == {}
