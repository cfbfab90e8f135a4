"""The receive path under hostile input: every bad datagram is a counted drop, never an exception.

A root and two leaves are brought online on the fake network and their real datagrams are
captured (HELLO, OK, ECHO, WHOIS, relayed packets, fragments). Then a node is fed random bytes of
every length class, mutated copies of the captured packets, forgeries from known peers with bad
MACs, every cipher value, garbage behind the compressed flag, hop count variations and packets
addressed to others, from known and unknown source addresses. The node must never raise (no
``internal_error`` either), must count each kind of junk under a sensible reason, must keep its
queues within their limits, and the world must still work afterwards.

Everything is seeded (``random.Random`` and derandomized hypothesis), so failures reproduce.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.core.timing import MAX_WHOIS_PENDING, RX_QUEUE_SIZE, TX_QUEUE_SIZE
from ztnode.testing.world import LocalWorld
from ztnode.wire import packet as pk
from ztnode.wire.constants import (
    FLAG_FRAGMENTED,
    MAX_PACKET_LENGTH,
    RELAY_MAX_HOPS,
    Cipher,
    Verb,
)
from ztnode.wire.fragment import DEFAULT_REASSEMBLY_SLOTS, build_fragment

IDS = test_identities()
SEED = 0x5EED
Addr = tuple[str, int]
UNKNOWN_REMOTES: list[Addr] = [("10.66.0.1", 9993), ("192.168.7.7", 41000), ("10.0.0.200", 1)]


# --------------------------------------------------------------------------- helpers


def echo(w: LocalWorld, a: Node, b: Node, payload: bytes = b"hi", timeout: int = 20_000) -> bool:
    """ECHO a -> b and run until the reply event arrives."""
    rid = a.send_echo(b.address, payload, w.net.now)
    pending = w.net.events[id(a)]
    return w.run_until(
        lambda: any(
            isinstance(e, ev.EchoReply) and e.request_id == rid and e.payload == payload
            for e in pending
        ),
        timeout,
    )


def online_world() -> LocalWorld:
    """Root + 2 leaves, online, and the leaves direct with each other."""
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=SEED)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    assert echo(w, a, b)
    assert w.run_until(lambda: w.direct(a, b) and w.direct(b, a), 30_000)
    return w


def healthy(w: LocalWorld) -> None:
    """The world still works: everyone online, ECHO both ways between the leaves, no bugs hit."""
    a, b = w.leaves
    assert w.run_until(w.all_online, 30_000)
    assert echo(w, a, b, b"still alive")
    assert echo(w, b, a, b"and back")
    assert w.all_online()
    for n in w.nodes:
        assert n.counters.drops["internal_error"] == 0, dict(n.counters.drops)


def delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


@dataclass(frozen=True)
class Captured:
    """One datagram seen on the fake wire, labelled by what it carried."""

    kind: str  # "HELLO", "OK(ECHO)", "WHOIS", "fragment", "head", ...
    local: Addr  # sender's socket
    remote: Addr  # receiver's socket
    data: bytes


def _label(w: LocalWorld, local: Addr, remote: Addr, data: bytes) -> str:
    if len(data) > 16 and data[13] == 0xFF:
        return "fragment"
    if len(data) < 28:
        return "junk"
    if data[18] & FLAG_FRAGMENTED:
        return "head"
    by_addr = {n.address: n for n in w.nodes}
    dest = int.from_bytes(data[8:13], "big")
    receiver = by_addr.get(dest)  # the final destination holds the key, relayed or not
    peer = receiver.peer(int.from_bytes(data[13:18], "big")) if receiver is not None else None
    buf = bytearray(data)
    if peer is None or not pk.dearmor(buf, peer.key):
        return "opaque"
    pk.decompress(buf)
    verb = buf[27] & 0x1F
    name = Verb(verb).name
    if verb == Verb.OK and len(buf) > 28:
        name += f"({Verb(buf[28]).name})"
    return name if remote == w.addresses[dest] else f"relayed {name}"


@functools.cache
def captured() -> tuple[Captured, ...]:
    """Real traffic of a fresh world: the handshake, WHOIS, relaying, direct paths, fragments.

    Identities and seeds are fixed, so these packets authenticate in any world built with
    :func:`online_world` (same keys), though their packet IDs are not expected replies there.
    """
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=SEED)
    raw: list[tuple[Addr, Addr, bytes]] = []
    w.net.taps.append(lambda local, remote, data: raw.append((local, remote, data)))
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    assert echo(w, a, b)
    assert w.run_until(lambda: w.direct(a, b) and w.direct(b, a), 30_000)
    big = random.Random(SEED).randbytes(3000)  # incompressible: head + 2 fragments
    a.send_user_message(b.address, 0x10000, big, w.net.now)
    assert w.run_until(
        lambda: any(isinstance(e, ev.UserMessage) for e in w.net.events[id(b)]), 5_000
    )
    assert echo(w, b, a, b"direct")
    out = tuple(Captured(_label(w, *r), *r) for r in raw)
    kinds = {c.kind for c in out}
    for must in ("HELLO", "OK(HELLO)", "ECHO", "OK(ECHO)", "WHOIS", "OK(WHOIS)", "fragment"):
        assert must in kinds, kinds
    assert "head" in kinds and any(k.startswith("relayed") for k in kinds), kinds
    return out


def of_kind(kind: str, src: Node | None = None, dst: Node | None = None) -> list[Captured]:
    out = [c for c in captured() if c.kind == kind]
    if src is not None:
        out = [c for c in out if int.from_bytes(c.data[13:18], "big") == src.address]
    if dst is not None:
        out = [c for c in out if int.from_bytes(c.data[8:13], "big") == dst.address]
    return out


def feed(w: LocalWorld, node: Node, data: bytes, remote: Addr) -> None:
    """Deliver one datagram to ``node`` at its socket, as the network would, at the current time.

    ``receive_datagram`` must never raise whatever the bytes are; calling it bare (no
    ``pytest.raises`` around it) is the assertion.
    """
    before = node.counters.packets_in
    node.receive_datagram(data, w.addresses[node.address], remote, w.net.now)
    assert node.counters.packets_in == before + 1


def forge(
    sender: int,
    receiver: Node,
    verb: int,
    payload: bytes,
    rng: random.Random,
    cipher: Cipher = Cipher.POLY1305_SALSA2012,
    dest: int | None = None,
) -> bytearray:
    """A packet ``sender`` -> ``receiver`` armored with their real shared key."""
    peer = receiver.peer(sender)
    assert peer is not None
    buf = pk.new_packet(
        rng.randbytes(8), receiver.address if dest is None else dest, sender, verb, payload
    )
    pk.armor(buf, peer.key, cipher)
    return buf


# --------------------------------------------------------------------------- length classes


def test_short_datagrams_and_beacons() -> None:
    w = online_world()
    a, b = w.leaves
    rng = random.Random(1)
    c0 = Counter(b.counters.drops)
    n_short = 0
    for n in [*range(13), *range(14, 28)]:
        for remote in (w.addresses[a.address], UNKNOWN_REMOTES[0]):
            data = bytearray(rng.randbytes(n))
            if n > 13:
                data[13] = rng.choice([0x00, 0x7F, 0xFE]) if n > 16 else rng.randrange(256)
            feed(w, b, bytes(data), remote)
            n_short += 1
    assert delta(c0, b.counters.drops) == {"too_short": n_short}
    assert b.datagrams_to_send(w.net.now) == []

    # 13 bytes is a LAN beacon: ignored from unknown addresses, answered (with a NOP, at most
    # every 2.5 s per address) for a known peer, and never a drop.
    c1 = Counter(b.counters.drops)
    for _ in range(20):
        feed(w, b, rng.randbytes(8) + (0x1234567890).to_bytes(5, "big"), UNKNOWN_REMOTES[1])
    assert b.datagrams_to_send(w.net.now) == []
    beacon = rng.randbytes(8) + a.address.to_bytes(5, "big")
    for _ in range(20):
        feed(w, b, beacon, UNKNOWN_REMOTES[1])
    replies = b.datagrams_to_send(w.net.now)
    assert len(replies) == 1 and replies[0].remote == UNKNOWN_REMOTES[1]
    assert delta(c1, b.counters.drops) == {}
    healthy(w)


def test_random_datagrams_of_every_length_class() -> None:
    """Random bytes 28..2000 long, plus fragment-shaped ones, from known and unknown sources."""
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    rng = random.Random(2)
    remotes = [w.addresses[a.address], w.addresses[root.address], *UNKNOWN_REMOTES]
    for target in (b, root):
        c0 = Counter(target.counters.drops)
        for i in range(600):
            n = rng.choice([28, 29, 40, 100, 500, 1432, 1500, 2000, rng.randrange(28, 2001)])
            data = bytearray(rng.randbytes(n))
            shape = i % 4
            if shape == 1:  # addressed to the target, from a known peer
                data[8:13] = target.address.to_bytes(5, "big")
                data[13:18] = a.address.to_bytes(5, "big")
                data[18] &= 0xBF  # not a fragmented head
            elif shape == 2:  # fragment-shaped
                data[13] = 0xFF
                if rng.random() < 0.5:
                    data[8:13] = target.address.to_bytes(5, "big")
            elif shape == 3:  # addressed to the target from a random source
                data[8:13] = target.address.to_bytes(5, "big")
            feed(w, target, bytes(data), rng.choice(remotes))
            if i % 50 == 0:
                w.run_for(200)
        got = delta(c0, target.counters.drops)
        assert got.get("internal_error", 0) == 0
        assert sum(got.values()) > 0
        if target is b:
            # A leaf relays for nobody here: junk addressed elsewhere is "not for us".
            assert got.get("not_for_us", 0) > 0
        # Junk that claims to be from a known peer fails authentication.
        assert got.get("mac_failed", 0) > 0
        assert got.get("bad_fragment", 0) > 0
    w.run_for(10_000)
    healthy(w)


# --------------------------------------------------------------------------- authentication


def test_bad_macs_from_known_peers_are_counted_and_change_nothing() -> None:
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    rng = random.Random(3)
    w.run_for(5_000)
    samples = [
        c
        for kind in ("ECHO", "OK(ECHO)", "OK(HELLO)", "USER_MESSAGE", "NOP")
        for c in of_kind(kind, src=a, dst=b)
    ]
    samples += of_kind("WHOIS", src=b, dst=root)
    assert len(samples) >= 4
    for c in samples:
        target = b if int.from_bytes(c.data[8:13], "big") == b.address else root
        src = int.from_bytes(c.data[13:18], "big")
        peer = target.peer(src)
        assert peer is not None
        last = peer.last_receive
        for _ in range(8):
            data = bytearray(c.data)
            # Anything authenticated: packet id (the nonce), MAC, verb and payload.
            pos = rng.choice([*range(0, 8), *range(19, len(data))])
            data[pos] ^= 1 << rng.randrange(8)
            before = Counter(target.counters.drops)
            feed(w, target, bytes(data), c.local)
            assert delta(before, target.counters.drops) == {"mac_failed": 1}
        assert peer.last_receive == last  # a forgery refreshes nothing
    assert b.datagrams_to_send(w.net.now) == [] and root.datagrams_to_send(w.net.now) == []

    # Forged HELLOs (cipher 0, MAC only) from a known peer: same verdict, after the head parses.
    hellos = of_kind("HELLO", src=a, dst=b) + of_kind("HELLO", src=a, dst=root)
    assert hellos
    for c in hellos:
        target = b if int.from_bytes(c.data[8:13], "big") == b.address else root
        data = bytearray(c.data)
        data[rng.choice([*range(0, 8), *range(19, 27), len(data) - 1])] ^= 0x10
        before = Counter(target.counters.drops)
        feed(w, target, bytes(data), c.local)
        assert delta(before, target.counters.drops) == {"mac_failed": 1}
    healthy(w)


def test_every_cipher_value() -> None:
    w = online_world()
    a, b = w.leaves
    rng = random.Random(4)
    key_peer = b.peer(a.address)
    assert key_peer is not None
    # Genuine packets under each real cipher are accepted and counted by cipher.
    for cipher in (Cipher.POLY1305_NONE, Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV):
        c0 = Counter(b.counters.ciphers_in)
        feed(w, b, bytes(forge(a.address, b, Verb.NOP, b"x", rng, cipher)), UNKNOWN_REMOTES[0])
        assert delta(c0, b.counters.ciphers_in) == {cipher.name: 1}
    # The same packets with the cipher bits rewritten do not authenticate.
    for original in (Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV):
        genuine = forge(a.address, b, Verb.ECHO, b"payload", rng, original)
        for value in range(8):
            if value == original:
                continue
            data = bytearray(genuine)
            data[18] = (data[18] & 0xC7) | (value << 3)
            before = Counter(b.counters.drops)
            feed(w, b, bytes(data), w.addresses[a.address])
            got = delta(before, b.counters.drops)
            if value == Cipher.NONE_TRUSTED_PATH:
                assert got == {"trusted_path_refused": 1}
            elif value == Cipher.POLY1305_NONE and data[27] & 0x1F == Verb.HELLO:
                assert sum(got.values()) == 1  # parsed as a clear HELLO: refused somehow
            else:
                assert len(got) == 1 and next(iter(got)) in ("mac_failed", "unsupported_cipher")
                assert sum(got.values()) == 1
    # A cipher-2 (trusted path) packet from an unknown source is refused too, not queued.
    data = bytearray(forge(a.address, b, Verb.NOP, b"", rng))
    data[13:18] = (0x0102030405).to_bytes(5, "big")
    data[18] = (data[18] & 0xC7) | (Cipher.NONE_TRUSTED_PATH << 3)
    before = Counter(b.counters.drops)
    feed(w, b, bytes(data), UNKNOWN_REMOTES[2])
    assert delta(before, b.counters.drops) == {"trusted_path_refused": 1}
    healthy(w)


def test_compressed_flag_with_garbage() -> None:
    import lz4.block

    w = online_world()
    a, b = w.leaves
    rng = random.Random(5)
    bomb = lz4.block.compress(bytes(20_000), store_size=False)  # decodes past the 9996 cap
    bodies = [
        b"\xff" * 64,
        bytes(range(256)),
        b"\x00",
        b"\xf0" + bytes(20),
        bomb,
        rng.randbytes(300),
    ]
    for body in bodies:
        for cipher in (Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV):
            buf = pk.new_packet(rng.randbytes(8), b.address, a.address, Verb.ECHO, body)
            buf[27] |= 0x80  # "compressed"
            peer = b.peer(a.address)
            assert peer is not None
            pk.armor(buf, peer.key, cipher)
            before = Counter(b.counters.drops)
            feed(w, b, bytes(buf), w.addresses[a.address])
            assert delta(before, b.counters.drops) == {"decompress_failed": 1}, body[:8]
    # A genuine compressed packet still goes through.
    msg = b"compressible " * 40
    buf = pk.new_packet(
        rng.randbytes(8), b.address, a.address, Verb.USER_MESSAGE, (7).to_bytes(8, "big") + msg
    )
    assert pk.compress(buf)
    peer = b.peer(a.address)
    assert peer is not None
    pk.armor(buf, peer.key, Cipher.AES_GMAC_SIV)
    feed(w, b, bytes(buf), w.addresses[a.address])
    w.run_for(10)
    assert ev.UserMessage(a.address, 7, msg) in w.events(b)
    healthy(w)


# --------------------------------------------------------------------------- hops and relaying


def test_hops_variations() -> None:
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    rng = random.Random(6)
    # To us: the MAC excludes the hop count, so any hop count authenticates.
    for hops in range(8):
        buf = forge(a.address, b, Verb.NOP, b"", rng)
        pk.set_hops(buf, hops)
        before = Counter(b.counters.verbs_in)
        drops = Counter(b.counters.drops)
        feed(w, b, bytes(buf), w.addresses[root.address])
        assert delta(before, b.counters.verbs_in) == {"NOP": 1}
        assert delta(drops, b.counters.drops) == {}
    b.datagrams_to_send(w.net.now)
    # For others, at the root: relayed with one more hop while below the limit, else dropped.
    for hops in range(8):
        buf = forge(a.address, root, Verb.NOP, b"", rng, dest=b.address)
        pk.set_hops(buf, hops)
        before = Counter(root.counters.drops)
        feed(w, root, bytes(buf), w.addresses[a.address])
        out = [o for o in root.datagrams_to_send(w.net.now) if o.data[:8] == buf[:8]]
        if hops < RELAY_MAX_HOPS:
            assert len(out) == 1 and out[0].remote == w.addresses[b.address]
            assert out[0].data[18] & 7 == hops + 1
            assert out[0].data[19:] == buf[19:]
            assert delta(before, root.counters.drops) == {}
        else:
            assert out == []
            assert delta(before, root.counters.drops) == {"relay_hops_exceeded": 1}
    # Fragments carry their hop count in byte 15.
    for hops in (0, 2, 3, 200):
        frag = bytearray(build_fragment(rng.randbytes(8), b.address, 3, 1, rng.randbytes(100)))
        frag[15] = hops
        before = Counter(root.counters.drops)
        feed(w, root, bytes(frag), w.addresses[a.address])
        out = [o for o in root.datagrams_to_send(w.net.now) if o.data[:8] == frag[:8]]
        if hops < RELAY_MAX_HOPS:
            assert len(out) == 1 and out[0].data[15] == hops + 1
        else:
            assert out == [] and delta(before, root.counters.drops) == {"relay_hops_exceeded": 1}
    healthy(w)


def test_packets_for_others() -> None:
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    rng = random.Random(7)
    # A leaf is not an upstream and has no trust-established path: it relays nothing.
    c0 = Counter(b.counters.drops)
    n = 0
    others = [
        c
        for c in captured()
        if len(c.data) >= 28
        and c.kind != "fragment"
        and b.address not in (pk.peek_dest(c.data), pk.peek_source(c.data))
    ]
    assert {"WHOIS", "HELLO"} <= {c.kind for c in others}
    for c in others:
        feed(w, b, c.data, w.addresses[a.address])
        n += 1
    for dest in (root.address, a.address, 0x0102030405):
        feed(w, b, bytes(forge(a.address, b, Verb.NOP, b"", rng, dest=dest)), UNKNOWN_REMOTES[0])
        frag = build_fragment(rng.randbytes(8), dest, 2, 1, rng.randbytes(50))
        feed(w, b, frag, w.addresses[a.address])
        n += 2
    assert n > 3
    assert delta(c0, b.counters.drops) == {"not_for_us": n}
    assert b.datagrams_to_send(w.net.now) == []
    # The root relays for known destinations and counts what it cannot route.
    c1 = Counter(root.counters.drops)
    feed(
        w,
        root,
        bytes(forge(a.address, root, Verb.NOP, b"", rng, dest=0x0102030405)),
        ("10.0.0.2", 9993),
    )
    assert delta(c1, root.counters.drops) == {"relay_no_route": 1}
    healthy(w)


# --------------------------------------------------------------------------- unknown sources


def test_unknown_sources_are_parked_then_time_out() -> None:
    w = online_world()
    root, (_, b) = w.roots[0], w.leaves
    rng = random.Random(8)
    c0 = Counter(b.counters.drops)
    sources = [rng.randrange(1, 2**40 - 1) for _ in range(10)]
    for s in sources:
        buf = pk.new_packet(rng.randbytes(8), b.address, s, Verb.ECHO, b"who am i")
        buf[18] = Cipher.POLY1305_SALSA2012 << 3
        feed(w, b, bytes(buf), UNKNOWN_REMOTES[0])
    assert len(b.whois.rx_queue) == 10
    whois = [o for o in b.datagrams_to_send(w.net.now) if o.remote == w.addresses[root.address]]
    assert len(whois) == 10  # one WHOIS per unknown source, to the root
    w.run_for(6_000)  # the root does not know them either
    assert not b.whois.rx_queue
    assert delta(c0, b.counters.drops) == {"whois_timeout": 10}
    healthy(w)


def test_flood_of_unknown_sources_and_fragments_keeps_memory_bounded() -> None:
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    rng = random.Random(9)
    to_root: list[bytes] = []
    w.net.taps.append(
        lambda local, remote, data: (
            to_root.append(data)
            if local == w.addresses[b.address] and remote == w.addresses[root.address]
            else None
        )
    )
    n_sources = 3_000
    paths_before = len(b.paths)
    for i in range(n_sources):
        src = rng.randrange(1, 2**40 - 1)
        buf = pk.new_packet(rng.randbytes(8), b.address, src, Verb.ECHO, rng.randbytes(40))
        buf[18] = rng.choice([1, 3]) << 3
        feed(w, b, bytes(buf), (f"10.{100 + i // 60_000}.{i // 250 % 240}.{i % 250 + 1}", 9993))
        # Fragments addressed to us: new sets, duplicates, bad numbers, oversized pieces.
        pid = rng.randbytes(8)
        feed(
            w,
            b,
            build_fragment(pid, b.address, 7, rng.randrange(1, 7), rng.randbytes(1400)),
            UNKNOWN_REMOTES[0],
        )
        bad = bytearray(build_fragment(pid, b.address, 3, 1, rng.randbytes(30)))
        bad[14] = rng.choice([0x00, 0x11, 0x80, 0x33, 0xF1])
        feed(w, b, bytes(bad), UNKNOWN_REMOTES[0])
        if i % 500 == 0:
            # Every half virtual second, as a flood would spread out.
            w.run_for(100)
        assert len(b.paths) <= paths_before  # nothing kept for a source before it authenticates
        assert len(b.whois.rx_queue) <= RX_QUEUE_SIZE
        assert len(b.whois.tx_queue) <= TX_QUEUE_SIZE
        assert len(b.whois.pending) <= MAX_WHOIS_PENDING
        assert b.reassembler.pending <= DEFAULT_REASSEMBLY_SLOTS
        assert b.reassembler.buffered_bytes <= DEFAULT_REASSEMBLY_SLOTS * MAX_PACKET_LENGTH
    assert b.counters.drops["unknown_peer_queue_full"] >= n_sources - RX_QUEUE_SIZE - 100
    assert b.counters.drops["bad_fragment"] >= n_sources
    w.run_for(6_000)
    # WHOIS is asked once per unknown source; only what is still queued is asked again.
    assert len(to_root) <= n_sources + RX_QUEUE_SIZE * 12, len(to_root)
    assert len(b.whois.pending) <= 2 * RX_QUEUE_SIZE
    assert not b.whois.rx_queue
    w.run_for(60_000)
    assert len(b.paths) <= 4, len(b.paths)
    assert b.reassembler.pending == 0
    healthy(w)
    assert a.online


# --------------------------------------------------------------------------- property-based fuzz


def _mutate(data: bytes, ops: list[tuple[int, int, int]], rng_bytes: bytes) -> bytes:
    out = bytearray(data)
    for op, pos, val in ops:
        if not out:
            out += rng_bytes[: val % 64]
            continue
        p = pos % len(out)
        if op == 0:  # bit flip
            out[p] ^= 1 << (val % 8)
        elif op == 1:  # truncate
            del out[p:]
        elif op == 2:  # extend
            out += rng_bytes[: val % 64 + 1]
        elif op == 3:  # overwrite a byte
            out[p] = val & 0xFF
        elif op == 4:  # set the hop count
            if len(out) > 18:
                out[18] = (out[18] & 0xF8) | (val & 7)
        elif op == 5:  # set the cipher
            if len(out) > 18:
                out[18] = (out[18] & 0xC7) | ((val & 7) << 3)
        elif op == 6:  # set the compressed flag
            if len(out) > 27:
                out[27] |= 0x80
        elif op == 7 and len(out) > 16:  # make it look like a fragment
            out[13] = 0xFF
    return bytes(out)


def test_fuzz_random_and_mutated_packets() -> None:
    w = online_world()
    root, (a, b) = w.roots[0], w.leaves
    real = [c.data for c in captured()]
    remotes = [w.addresses[a.address], w.addresses[root.address], *UNKNOWN_REMOTES]
    seen: Counter[str] = Counter()

    @settings(
        max_examples=1500,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.one_of(
            st.binary(max_size=2000),
            st.tuples(
                st.sampled_from(real),
                st.lists(
                    st.tuples(st.integers(0, 7), st.integers(0, 10_000), st.integers(0, 255)),
                    min_size=1,
                    max_size=4,
                ),
                st.binary(min_size=64, max_size=64),
            ).map(lambda t: _mutate(*t)),
        ),
        st.sampled_from(remotes),
        st.booleans(),
    )
    def one(data: bytes, remote: Addr, at_root: bool) -> None:
        target = root if at_root else b
        drops = sum(target.counters.drops.values())
        feed(w, target, data, remote)
        assert target.counters.drops["internal_error"] == 0
        assert sum(target.counters.drops.values()) >= drops
        seen.update(k for k, v in target.counters.drops.items() if v)
        w.run_for(20)

    one()
    # The fuzz reached the interesting branches, not just the length check.
    for reason in (
        "too_short",
        "mac_failed",
        "not_for_us",
        "bad_fragment",
        "malformed_payload",
        "unexpected_ok",
        "from_self",
    ):
        assert seen[reason], seen
    w.run_for(30_000)
    healthy(w)


def test_identity_gate_table_is_bounded() -> None:
    """New identities from ever new source prefixes (spoofed) land in the per-prefix rate gate,
    whose keys are the reference's 14-bit bucket hash: at most 16 384 entries, whatever the
    number of prefixes."""
    from ztnode.core.path import Path

    w = online_world()
    b = w.leaves[1]
    b.config = dataclasses.replace(b.config, identity_validation_interval=2_000)  # on
    v = b.validator
    allowed = 0
    for i in range(40_000):
        remote = (f"{20 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}.1", 9993)  # a /24 each
        allowed += v.gate_ok(Path(("0.0.0.0", 9993), remote), w.net.now)
    assert len(v._gate) <= 1 << 14 and allowed <= 1 << 14


def test_every_verb_handler_with_authenticated_garbage() -> None:
    """Packets from a known peer that pass the MAC check (armored with the real key) but carry
    arbitrary payloads, for every verb number and both ciphers, reach the handlers themselves:
    the only way out of a handler is a counted drop (a ``DecodeError``), never an internal
    error, and the world keeps working."""
    w = online_world()
    a, b = w.leaves
    real = [c.data for c in captured()]
    rng = random.Random(77)
    reached: Counter[str] = Counter()

    @settings(
        max_examples=1200,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.integers(0, 31),
        st.one_of(
            st.binary(max_size=600),
            st.tuples(st.sampled_from(real), st.integers(0, 600), st.binary(max_size=64)).map(
                lambda t: t[0][28 : 28 + t[1]] + t[2]  # a real payload, cut and extended
            ),
        ),
        st.sampled_from([Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV]),
    )
    def one(verb: int, payload: bytes, cipher: Cipher) -> None:
        buf = forge(a.address, b, verb, payload, rng, cipher)
        before = Counter(b.counters.verbs_in)
        feed(w, b, bytes(buf), w.addresses[a.address])
        reached.update(k for k, v in b.counters.verbs_in.items() if v > before[k])
        assert b.counters.drops["internal_error"] == 0, dict(b.counters.drops)
        w.run_for(5)

    one()
    assert len(reached) >= 16, reached  # the handlers were reached, not just the MAC check
    assert b.counters.drops["malformed_payload"] > 0
    w.run_for(30_000)
    healthy(w)
