"""Per-verb behaviours and timers of the node, on the fake network under virtual time.

Where test_node_world.py checks that a world works end to end, these pin down the rules one by
one (protocol-core.md sections 9 and 10): rate gates (ECHO per path, WHOIS per peer, inbound
PUSH_DIRECT_PATHS), the OK in-re gate, who may send RENDEZVOUS, events for USER_MESSAGE and
REMOTE_TRACE, verbs that are dropped or accepted like NOP, relaying rules, HELLO sanity checks,
keepalive cadence, path and peer expiry, and roaming.

Packets are forged with the wire codecs and armored with the real shared key
(``node.peer(addr).key``), then handed to ``receive_datagram``; what the node answers is read back
from ``datagrams_to_send`` (or from a tap on the fake network for timing tests).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node, NodeConfig, Outgoing
from ztnode.core.path import PATH_ALIVE_TIMEOUT, PATH_HEARTBEAT_PERIOD
from ztnode.core.peer import (
    PEER_ACTIVITY_TIMEOUT,
    PEER_PATH_EXPIRATION,
    PEER_PING_PERIOD,
    PEER_WHOIS_RATE_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_TIME,
)
from ztnode.core.timing import ECHO_ANSWER_INTERVAL, HOUSEKEEPING_PERIOD, PING_CHECK_INTERVAL
from ztnode.crypto import SymmetricKey
from ztnode.identity import Identity
from ztnode.testing.fakenet import FakeNetwork
from ztnode.testing.world import LocalWorld, seeded_random_bytes
from ztnode.wire import packet as pk
from ztnode.wire.constants import IDX_PAYLOAD, Cipher, Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import (
    Hello,
    OkEcho,
    OkHello,
    OkWhois,
    PushDirectPaths,
    PushedPath,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    Whois,
    decode_ok,
)
from ztnode.wire.verbs.peer import PUSH_FLAG_FORGET_PATH

IDS = test_identities()
Addr = tuple[str, int]


# --------------------------------------------------------------------------- helpers


def echo(w: LocalWorld, a: Node, b: Node, payload: bytes = b"hi", timeout: int = 20_000) -> bool:
    rid = a.send_echo(b.address, payload, w.net.now)
    pending = w.net.events[id(a)]
    return w.run_until(
        lambda: any(
            isinstance(e, ev.EchoReply) and e.request_id == rid and e.payload == payload
            for e in pending
        ),
        timeout,
    )


def online(seed: int = 7) -> tuple[LocalWorld, Node, Node, Node]:
    """Root + 2 leaves, online; the leaves know each other and are direct."""
    w = LocalWorld.build(IDS, roots=1, leaves=2, seed=seed)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    assert echo(w, a, b)
    assert w.run_until(lambda: w.direct(a, b) and w.direct(b, a), 30_000)
    w.run_for(2_000)  # let the handshake settle
    return w, w.roots[0], a, b


class Forger:
    """Builds authentic packets from one node to another with their shared key."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def packet(
        self,
        src: Node | Identity,
        to: Node,
        verb: int,
        payload: bytes = b"",
        *,
        cipher: Cipher = Cipher.POLY1305_SALSA2012,
        dest: int | None = None,
        compress: bool = False,
        key: SymmetricKey | None = None,
    ) -> bytes:
        address = src.address
        if key is None:
            peer = to.peer(address)
            assert peer is not None, "the receiver must know the sender"
            key = peer.key
        buf = pk.new_packet(
            self.rng.randbytes(8), to.address if dest is None else dest, address, verb, payload
        )
        if compress:
            assert pk.compress(buf)
        pk.armor(buf, key, cipher)
        return bytes(buf)

    def hello(
        self,
        ident: Identity,
        to: Node,
        now: int,
        *,
        protocol: int = 12,
        source: int | None = None,
    ) -> bytes:
        """A full HELLO as a node would send it: cipher 0, moon list under cryptField."""
        key = SymmetricKey(ident.agree(to.identity))
        planet = to.topology.planet
        hello = Hello(
            protocol, 1, 14, 1, now, ident.public(), None, planet.id, planet.timestamp, ()
        )
        payload, tail = hello.encode_with_tail_offset()
        src = ident.address if source is None else source
        buf = pk.new_packet(self.rng.randbytes(8), to.address, src, Verb.HELLO, payload)
        if tail is not None:
            start = IDX_PAYLOAD + tail
            pk.crypt_field(buf, key, start, len(buf) - start)
        pk.armor(buf, key, Cipher.POLY1305_NONE)
        return bytes(buf)


def addr(w: LocalWorld, n: Node) -> Addr:
    return w.addresses[n.address]


def inject(w: LocalWorld, node: Node, data: bytes, remote: Addr) -> list[Outgoing]:
    """Deliver one datagram now and return exactly what the node sent in response."""
    node.datagrams_to_send(w.net.now)  # nothing of ours is pending before
    node.receive_datagram(data, addr(w, node), remote, w.net.now)
    return node.datagrams_to_send(w.net.now)


def opened(sender: Node, out: Outgoing | bytes) -> tuple[int, int, bytes]:
    """(dest, verb, payload) of a packet ``sender`` emitted, decrypted with the receiver's key."""
    data = out.data if isinstance(out, Outgoing) else out
    dest = pk.peek_dest(data)
    peer = sender.peer(dest)
    assert peer is not None
    buf = bytearray(data)
    assert pk.dearmor(buf, peer.key)
    pk.decompress(buf)
    return dest, buf[27] & 0x1F, bytes(buf[IDX_PAYLOAD:])


def events_of(w: LocalWorld, node: object) -> list[object]:
    out = w.net.take_events(node)  # type: ignore[arg-type]
    while (e := node.next_event()) is not None:  # type: ignore[attr-defined]
        out.append(e)
    return out


def delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def to_remote(outs: Sequence[Outgoing], remote: Addr) -> list[Outgoing]:
    return [o for o in outs if o.remote == remote]


# --------------------------------------------------------------------------- ECHO and OK


def test_echo_is_answered_at_most_every_166_ms_per_path() -> None:
    w, root, a, _ = online()
    f = Forger(1)
    pa = addr(w, a)
    other_port = (pa[0], pa[1] + 1)
    peer = root.peer(a.address)
    assert peer is not None

    def ask(remote: Addr, tag: bytes) -> list[bytes]:
        pkt = f.packet(a, root, Verb.ECHO, tag)
        outs = to_remote(inject(w, root, pkt, remote), remote)
        got = []
        for o in outs:
            _, verb, payload = opened(root, o)
            if verb == Verb.OK:
                ok = decode_ok(payload)
                assert isinstance(ok, OkEcho) and ok.in_re_packet_id == pk.peek_packet_id(pkt)
                got.append(ok.data)
        return got

    assert ask(pa, b"one") == [b"one"]
    w.run_for(100)
    drops = Counter(root.counters.drops)
    assert ask(pa, b"two") == []
    assert delta(drops, root.counters.drops) == {"rate_limited": 1}
    assert peer.last_receive == w.net.now  # a rate-limited ECHO still counts as heard from
    assert ask(other_port, b"three") == [b"three"]  # the gate is per path
    w.run_for(ECHO_ANSWER_INTERVAL - 100 - 1)
    assert ask(pa, b"four") == []
    w.run_for(1)
    assert ask(pa, b"five") == [b"five"]
    assert ECHO_ANSWER_INTERVAL == 166


def test_ok_is_processed_only_in_reply_to_something_we_sent() -> None:
    w, root, a, _ = online()
    f = Forger(2)
    peer = root.peer(a.address)
    assert peer is not None
    w.run_for(1_000)
    last = peer.last_receive
    drops = Counter(root.counters.drops)
    forged_ids = [f.rng.getrandbits(64) | 1 << 63 for _ in range(3)]
    oks = [
        OkEcho(forged_ids[0], b"unsolicited").encode(),
        OkHello(forged_ids[1], w.net.now, 12, 1, 14, 1, None, None).encode(),
        OkWhois(forged_ids[2], (IDS[5].public(),)).encode(),
    ]
    for body in oks:
        assert inject(w, root, f.packet(a, root, Verb.OK, body), addr(w, a)) == []
    assert delta(drops, root.counters.drops) == {"unexpected_ok": 3}
    assert peer.last_receive == last  # dropped before it could refresh the peer
    assert IDS[5].address not in root.peers
    assert not [e for e in events_of(w, root) if isinstance(e, ev.EchoReply)]

    # The same OK in reply to an ECHO the root really sent is taken.
    rid = root.send_echo(a.address, b"ping", w.net.now)
    sent = root.datagrams_to_send(w.net.now)
    assert len(sent) == 1
    pid = pk.peek_packet_id(sent[0].data)
    inject(w, root, f.packet(a, root, Verb.OK, OkEcho(pid, b"ping").encode()), addr(w, a))
    replies = [e for e in events_of(w, root) if isinstance(e, ev.EchoReply)]
    assert [(e.request_id, e.payload) for e in replies] == [(rid, b"ping")]
    assert peer.last_receive == w.net.now


# --------------------------------------------------------------------------- WHOIS


def _whois_answers(node: Node, outs: Sequence[Outgoing], remote: Addr) -> list[tuple[int, ...]]:
    got = []
    for o in to_remote(outs, remote):
        _, verb, payload = opened(node, o)
        if verb == Verb.OK:
            ok = decode_ok(payload)
            assert isinstance(ok, OkWhois)
            got.append(tuple(i.address for i in ok.identities))
            for i in ok.identities:
                assert not i.has_private
                assert i == (node.peers[i.address].identity if i.address in node.peers else i)
    return got


def test_whois_is_answered_by_roots_without_rate_limit() -> None:
    w, root, a, b = online()
    f = Forger(3)
    pa = addr(w, a)
    ask = Whois((b.address,)).encode()
    for _ in range(5):  # back to back, same instant
        outs = inject(w, root, f.packet(a, root, Verb.WHOIS, ask), pa)
        assert _whois_answers(root, outs, pa) == [(b.address,)]
    # Several at once, ourselves included; unknown addresses are left out and not chased.
    many = Whois((0x0102030405, b.address, root.address)).encode()
    outs = inject(w, root, f.packet(a, root, Verb.WHOIS, many), pa)
    assert _whois_answers(root, outs, pa) == [(b.address, root.address)]
    assert len(outs) == 1
    # Nothing known: no OK at all.
    outs = inject(w, root, f.packet(a, root, Verb.WHOIS, Whois((0x0102030405,)).encode()), pa)
    assert outs == []
    # The identity in the answer is the real one, usable to talk to b.
    ok = opened(root, inject(w, root, f.packet(a, root, Verb.WHOIS, ask), pa)[0])[2]
    answer = decode_ok(ok)
    assert isinstance(answer, OkWhois) and answer.identities[0] == b.identity.public()


def test_whois_is_rate_gated_per_peer_on_leaves() -> None:
    w, root, a, b = online()
    f = Forger(4)
    pa = addr(w, a)
    ask = Whois((b.address,)).encode()
    outs = inject(w, b, f.packet(a, b, Verb.WHOIS, ask), pa)
    assert _whois_answers(b, outs, pa) == [(b.address,)]
    w.run_for(PEER_WHOIS_RATE_LIMIT - 1)
    drops = Counter(b.counters.drops)
    assert inject(w, b, f.packet(a, b, Verb.WHOIS, ask), pa) == []
    assert delta(drops, b.counters.drops) == {"rate_limited": 1}
    w.run_for(1)
    outs = inject(w, b, f.packet(a, b, Verb.WHOIS, ask), pa)
    assert _whois_answers(b, outs, pa) == [(b.address,)]
    # A leaf asked about an address it does not know asks its root in turn.
    w.run_for(PEER_WHOIS_RATE_LIMIT)
    unknown = 0x0A0B0C0D0E
    outs = inject(w, b, f.packet(a, b, Verb.WHOIS, Whois((unknown,)).encode()), pa)
    assert to_remote(outs, pa) == []
    up = to_remote(outs, addr(w, root))
    assert len(up) == 1
    dest, verb, payload = opened(b, up[0])
    assert (dest, verb, Whois.decode(payload).addresses) == (root.address, Verb.WHOIS, (unknown,))


# --------------------------------------------------------------------------- PUSH_DIRECT_PATHS


def _push(*addrs: str, flags: int = 0) -> bytes:
    return PushDirectPaths(
        tuple(PushedPath.for_address(InetAddress.parse(x), flags) for x in addrs)
    ).encode()


def _contacted(outs: Sequence[Outgoing], ip_prefix: str) -> set[Addr]:
    return {o.remote for o in outs if o.remote[0].startswith(ip_prefix)}


def test_push_direct_paths_inbound_gate_is_8_per_30_s() -> None:
    w, root, a, _ = online()
    f = Forger(5)
    pa = addr(w, a)
    # One push: at most 8 contacts per (scope, family); forget-flagged, loopback and our
    # already-live paths are skipped.
    first = _push(*[f"10.1.0.{i}/9993" for i in range(1, 11)], "127.0.0.1/9993", f"{pa[0]}/{pa[1]}")
    forget = _push("10.1.1.1/9993", flags=PUSH_FLAG_FORGET_PATH)
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, first), pa)
    assert len(_contacted(outs, "10.1.0.")) == 8
    assert not _contacted(outs, "127.") and not to_remote(outs, pa)
    for o in outs:  # a contact is an ECHO (the peer's protocol is known), or a HELLO
        assert opened(root, o)[1] in (Verb.ECHO, Verb.HELLO)
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, forget), pa)
    assert outs == []
    # Pushes 3..8 within 30 s are processed; the 9th is refused.
    for i in range(3, PUSH_DIRECT_PATHS_CUTOFF_LIMIT + 1):
        w.run_for(1_000)
        outs = inject(
            w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, _push(f"10.2.0.{i}/1")), pa
        )
        assert _contacted(outs, "10.2.0.") == {(f"10.2.0.{i}", 1)}
    w.run_for(1_000)
    drops = Counter(root.counters.drops)
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, _push("10.3.0.1/1")), pa)
    assert outs == []
    assert delta(drops, root.counters.drops) == {"rate_limited": 1}
    # Refused pushes keep the window open; 30 s of quiet closes it.
    w.run_for(PUSH_DIRECT_PATHS_CUTOFF_TIME)
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, _push("10.3.0.2/1")), pa)
    assert outs == []
    w.run_for(PUSH_DIRECT_PATHS_CUTOFF_TIME + 1)
    outs = inject(w, root, f.packet(a, root, Verb.PUSH_DIRECT_PATHS, _push("10.3.0.3/1")), pa)
    assert _contacted(outs, "10.3.0.") == {("10.3.0.3", 1)}


# --------------------------------------------------------------------------- RENDEZVOUS


def test_rendezvous_is_taken_only_from_an_upstream() -> None:
    w, root, a, b = online()
    f = Forger(6)
    target: Addr = ("10.2.0.9", 4444)
    rv = Rendezvous.create(b.address, InetAddress.parse(f"{target[0]}/{target[1]}")).encode()
    # From b itself (a leaf): ignored, though authentic.
    verbs = Counter(a.counters.verbs_in)
    assert to_remote(inject(w, a, f.packet(b, a, Verb.RENDEZVOUS, rv), addr(w, b)), target) == []
    assert delta(verbs, a.counters.verbs_in) == {"RENDEZVOUS": 1}
    # From the root: 4 junk bytes with TTL 2 to open our NAT, then a contact attempt.
    outs = to_remote(inject(w, a, f.packet(root, a, Verb.RENDEZVOUS, rv), addr(w, root)), target)
    assert len(outs) == 2
    assert (len(outs[0].data), outs[0].ttl) == (4, 2)
    assert outs[1].ttl == 0 and opened(a, outs[1])[:2] == (b.address, Verb.ECHO)
    # Naming a peer we do not know, or port 0: nothing.
    for named, port in ((0x0102030405, 4444), (b.address, 0)):
        body = Rendezvous.create(named, InetAddress.parse(f"10.2.0.10/{port}")).encode()
        outs = inject(w, a, f.packet(root, a, Verb.RENDEZVOUS, body), addr(w, root))
        assert to_remote(outs, ("10.2.0.10", port)) == []


# --------------------------------------------------------------------------- events


def test_user_message_events() -> None:
    w, _, a, b = online()
    f = Forger(7)
    pa = addr(w, a)
    events_of(w, b)
    cases = [(0x10000, b"plain"), (1, b""), (2**64 - 1, b"compressible " * 30)]
    for type_id, data in cases:
        body = UserMessage(type_id, data).encode()
        outs = inject(w, b, f.packet(a, b, Verb.USER_MESSAGE, body, compress=len(data) > 100), pa)
        assert outs == []  # no reply, ever
    got = [e for e in events_of(w, b) if isinstance(e, ev.UserMessage)]
    assert got == [ev.UserMessage(a.address, t, d) for t, d in cases]
    drops = Counter(b.counters.drops)
    inject(w, b, f.packet(a, b, Verb.USER_MESSAGE, b"short"), pa)  # no full type id
    assert delta(drops, b.counters.drops) == {"malformed_payload": 1}
    assert not [e for e in events_of(w, b) if isinstance(e, ev.UserMessage)]


def test_remote_trace_events() -> None:
    w, _, a, b = online()
    f = Forger(8)
    events_of(w, b)
    body = b"a=1\nb=2\0\0second=x\0" + b"ok=" + b"y" * 9_000 + b"\0tail"
    inject(w, b, f.packet(a, b, Verb.REMOTE_TRACE, body, compress=True), addr(w, a))
    got = [e for e in events_of(w, b) if isinstance(e, ev.RemoteTrace)]
    # Empty records and the unterminated tail are skipped. (Records over 10000 bytes cannot
    # arrive: a packet decompresses to at most 9996 payload bytes.)
    assert [e.dictionary for e in got] == [b"a=1\nb=2", b"second=x", b"ok=" + b"y" * 9_000]
    assert {e.source for e in got} == {a.address}
    assert RemoteTrace.decode(body).records == tuple(e.dictionary for e in got)


# --------------------------------------------------------------------------- dropped / NOP verbs


def test_bonding_verbs_are_dropped_without_refreshing_the_peer() -> None:
    w, _, a, b = online()
    f = Forger(9)
    peer = b.peer(a.address)
    assert peer is not None
    w.run_for(1_000)
    last = peer.last_receive
    verbs = Counter(b.counters.verbs_in)
    drops = Counter(b.counters.drops)
    cases = [
        (Verb.ACK, (1234).to_bytes(4, "big"), Cipher.POLY1305_SALSA2012),
        (Verb.QOS_MEASUREMENT, bytes(10), Cipher.POLY1305_NONE),
        (Verb.PATH_NEGOTIATION_REQUEST, (5).to_bytes(2, "big"), Cipher.POLY1305_NONE),
    ]
    for verb, payload, cipher in cases:
        assert inject(w, b, f.packet(a, b, verb, payload, cipher=cipher), addr(w, a)) == []
    assert delta(drops, b.counters.drops) == {"no_bond": 3}
    assert delta(verbs, b.counters.verbs_in) == {
        "ACK": 1,
        "QOS_MEASUREMENT": 1,
        "PATH_NEGOTIATION_REQUEST": 1,
    }
    assert peer.last_receive == last


def test_unknown_verbs_are_accepted_like_nop() -> None:
    w, _, a, b = online()
    f = Forger(10)
    peer = b.peer(a.address)
    assert peer is not None
    drops = Counter(b.counters.drops)
    for verb in (Verb.NOP, 0x0F, 0x11):
        w.run_for(1_000)
        assert inject(w, b, f.packet(a, b, verb, b"whatever"), addr(w, a)) == []
        assert peer.last_receive == w.net.now
    assert delta(drops, b.counters.drops) == {}
    assert b.counters.verbs_in["UNASSIGNED_0F"] == 1
    assert b.counters.verbs_in["DEPRECATED_11"] == 1


# --------------------------------------------------------------------------- relaying


def test_only_upstreams_relay_for_strangers() -> None:
    w, root, a, b = online()
    f = Forger(11)
    pa = addr(w, a)
    # a -> root packet (authentic for the root) sent to leaf b: b is not in the planet and the
    # path has no established trust, so b refuses to relay it.
    pkt = f.packet(a, root, Verb.NOP, b"", key=root.peer(a.address).key)  # type: ignore[union-attr]
    drops = Counter(b.counters.drops)
    assert inject(w, b, pkt, pa) == []
    frag = pkt[:8] + root.address.to_bytes(5, "big") + bytes((0xFF, 0x21, 0)) + b"x" * 20
    assert inject(w, b, frag, pa) == []
    assert delta(drops, b.counters.drops) == {"not_for_us": 2}
    # The root relays a -> b unchanged but for one more hop.
    pkt = f.packet(a, b, Verb.NOP, b"relay me", cipher=Cipher.AES_GMAC_SIV)
    outs = inject(w, root, pkt, pa)
    relayed = [o for o in outs if o.data[:8] == pkt[:8]]
    assert [o.remote for o in relayed] == [addr(w, b)]
    assert relayed[0].data[18] == pkt[18] + 1 and relayed[0].data[19:] == pkt[19:]
    # A leaf relays too once the path is trust-established (a network member proved itself).
    path = b.paths[(addr(w, b), pa)]
    path.last_trust_established = w.net.now
    pkt = f.packet(a, root, Verb.NOP, b"", key=root.peer(a.address).key)  # type: ignore[union-attr]
    outs = inject(w, b, pkt, pa)
    assert [o.remote for o in outs if o.data[:8] == pkt[:8]] == [addr(w, root)]


# --------------------------------------------------------------------------- HELLO sanity


def test_hello_below_protocol_4_is_dropped() -> None:
    w, _, _, b = online()
    f = Forger(12)
    stranger = IDS[5]
    there: Addr = ("10.0.7.7", 9993)
    drops = Counter(b.counters.drops)
    assert inject(w, b, f.hello(stranger, b, w.net.now, protocol=3), there) == []
    assert delta(drops, b.counters.drops) == {"protocol_too_old": 1}
    assert stranger.address not in b.peers
    # Protocol 4 is the oldest accepted: answered with OK(HELLO), and the peer is learned.
    pkt = f.hello(stranger, b, w.net.now, protocol=4)
    outs = inject(w, b, pkt, there)
    assert stranger.address in b.peers and b.peers[stranger.address].protocol == 4
    assert {o.remote for o in outs} == {there}
    # The OK(HELLO), then a HELLO of ours to confirm the new path (only an OK teaches it).
    assert [opened(b, o)[:2] for o in outs] == [
        (stranger.address, Verb.OK),
        (stranger.address, Verb.HELLO),
    ]
    ok = decode_ok(opened(b, outs[0])[2])
    assert isinstance(ok, OkHello) and ok.in_re_packet_id == pk.peek_packet_id(pkt)
    assert ok.surface is not None and ok.surface.port == 0  # protocol < 5 gets no port


def test_hello_whose_source_is_not_its_identity_is_dropped() -> None:
    w, _, a, b = online()
    f = Forger(13)
    there: Addr = ("10.0.7.8", 9993)
    drops = Counter(b.counters.drops)
    for claimed in (IDS[6].address, a.address):
        assert inject(w, b, f.hello(IDS[5], b, w.net.now, source=claimed), there) == []
    assert delta(drops, b.counters.drops) == {"identity_mismatch": 2}
    assert IDS[5].address not in b.peers and IDS[6].address not in b.peers
    assert b.peers[a.address].identity == a.identity


# --------------------------------------------------------------------------- timers


def test_a_root_is_always_online_and_a_leaf_only_while_it_hears_a_root() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=1, seed=3)
    root, leaf = w.roots[0], w.leaves[0]
    ip_root, ip_leaf = addr(w, root)[0], addr(w, leaf)[0]
    w.net.block(ip_root, ip_leaf)
    w.run_for(PING_CHECK_INTERVAL)
    # As in the reference (Node.cpp: online = heard from an upstream || amUpstream).
    assert root.online and ev.NodeOnline() in events_of(w, root)
    assert not leaf.online
    w.net.unblock(ip_root, ip_leaf)
    assert w.run_until(lambda: leaf.online, 10_000)
    w.net.block(ip_root, ip_leaf)
    w.run_for(PEER_ACTIVITY_TIMEOUT + PING_CHECK_INTERVAL)
    assert not leaf.online and root.online
    assert ev.NodeOffline() in events_of(w, leaf)
    assert ev.NodeOffline() not in events_of(w, root)


def test_keepalive_echo_after_14_s_idle_and_full_hello_every_60_s() -> None:
    w, root, a, b = online()
    f = Forger(14)
    pa, pb, pr = addr(w, a), addr(w, b), addr(w, root)
    log: list[tuple[int, Addr, Addr, bytes]] = []
    w.net.taps.append(lambda local, remote, data: log.append((w.net.now, local, remote, data)))
    # A frame makes a an "active" peer of b (for a network b has not joined: only counted).
    frame = (0x1122334455667788).to_bytes(8, "big") + (0x0800).to_bytes(2, "big") + b"x" * 40
    inject(w, b, f.packet(a, b, Verb.FRAME, frame), pa)
    assert b.peers[a.address].active(w.net.now)
    start = w.net.now
    w.run_for(240_000)
    sent = [(t, opened(b, d)[1]) for t, lo, re, d in log if lo == pb and re == pa]
    hellos = [t for t, v in sent if v == Verb.HELLO]
    echos = [t for t, v in sent if v == Verb.ECHO]
    assert {v for _, v in sent} <= {Verb.HELLO, Verb.ECHO}
    assert len(hellos) >= 3 and len(echos) >= 6
    for x, y in pairwise(hellos):
        assert PEER_PING_PERIOD <= y - x <= PEER_PING_PERIOD + PING_CHECK_INTERVAL
    times = [start] + [t for t, _ in sent]
    for (x, _), (y, verb) in pairwise(sent):
        # An ECHO goes out once the path was idle 14 s (seen within one 5-s check); a full
        # HELLO goes on its own 60-s schedule, idle or not.
        if verb == Verb.ECHO:
            assert PATH_HEARTBEAT_PERIOD <= y - x <= PATH_HEARTBEAT_PERIOD + PING_CHECK_INTERVAL
    for x, y in pairwise(times):
        assert y - x <= PATH_HEARTBEAT_PERIOD + PING_CHECK_INTERVAL  # never idle longer
    # A peer that is not active gets no keepalives from a: b never sent a frame.
    assert not [1 for t, lo, re, d in log if lo == pa and re == pb and opened(a, d)[1] == Verb.ECHO]
    # Roots get a full HELLO only every 16 heartbeats (about 224 s) once they have a path.
    w.run_for(300_000)
    to_root = [t for t, lo, re, d in log if lo == pa and re == pr]
    assert len(to_root) >= 2 and all(
        opened(a, d)[1] == Verb.HELLO for _, lo, re, d in log if lo == pa and re == pr
    )
    for x, y in pairwise(to_root):
        assert (
            16 * PATH_HEARTBEAT_PERIOD < y - x <= 16 * PATH_HEARTBEAT_PERIOD + PING_CHECK_INTERVAL
        )
    assert w.all_online()


def test_direct_path_expires_243_s_after_its_last_receive() -> None:
    w, _, a, b = online()
    pa, pb = addr(w, a), addr(w, b)
    w.net.block(pa[0], pb[0])
    w.run_for(100)  # what was in flight lands
    slots = [s for s in a.peers[b.address].paths if s.path.remote == pb]
    assert len(slots) == 1
    slot = slots[0]
    lr = slot.lr
    events_of(w, a)
    w.net.run_until(lr + PEER_PATH_EXPIRATION - 1)
    assert slot in a.peers[b.address].paths and w.direct(a, b)
    assert not slot.path.alive(w.net.now)  # long dead, but not yet expired
    w.net.run_until(lr + PEER_PATH_EXPIRATION + PING_CHECK_INTERVAL)
    assert not a.peers[b.address].paths
    evs = events_of(w, a)
    assert ev.PathDown(b.address, pa, pb, "expired") in evs
    assert ev.PeerRelayed(b.address) in evs
    assert echo(w, a, b, b"via the root")  # still reachable, relayed
    assert PEER_PATH_EXPIRATION == 243_000 and PATH_ALIVE_TIMEOUT == 19_000


def test_silent_peers_are_forgotten_after_500_s_but_roots_never() -> None:
    w, root, a, b = online()
    pa, pb, pr = addr(w, a), addr(w, b), addr(w, root)
    w.net.block(pb[0], pa[0])
    w.net.block(pb[0], pr[0])
    w.run_for(100)
    heard = b.peers[a.address].last_receive
    events_of(w, b)
    w.net.run_until(heard + PEER_ACTIVITY_TIMEOUT - 1)
    assert a.address in b.peers
    w.net.run_until(heard + PEER_ACTIVITY_TIMEOUT + HOUSEKEEPING_PERIOD)
    assert a.address not in b.peers
    assert root.address in b.peers  # unreachable for over 500 s, but an upstream
    evs = events_of(w, b)
    assert ev.PeerRemoved(a.address) in evs and ev.PeerRemoved(root.address) not in evs
    assert ev.NodeOffline() in evs and not b.online
    assert b.address not in root.peers and b.address not in a.peers  # b was silent for them too
    assert a.address in root.peers and a.online
    w.net.unblock(pb[0], pa[0])
    w.net.unblock(pb[0], pr[0])
    assert w.run_until(lambda: b.online, 10_000)
    assert echo(w, b, a, b"back")


# --------------------------------------------------------------------------- roaming


class Nat:
    """A node behind a NAT whose public address can change: the node keeps its socket
    (``inside``); the network sees it at ``public``."""

    def __init__(self, node: Node, inside: Addr, public: Addr) -> None:
        self.node, self.inside, self.public = node, inside, public

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: int) -> None:
        self.node.receive_datagram(data, self.inside, remote, now)

    def datagrams_to_send(self, now: int) -> list[tuple[Addr, Addr, bytes]]:
        return [(self.public, o.remote, o.data) for o in self.node.datagrams_to_send(now)]

    def get_timer(self) -> int | None:
        return self.node.get_timer()

    def handle_timer(self, now: int) -> None:
        self.node.handle_timer(now)

    def next_event(self) -> ev.Event | None:
        return self.node.next_event()

    def move(self, net: FakeNetwork, public: Addr) -> None:
        net.detach_address(self.public)
        self.public = public
        net.attach(self, public)


def _roaming_world() -> tuple[LocalWorld, Node, Node, Node, Nat]:
    w = LocalWorld.build(IDS, roots=1, leaves=1, seed=21)
    root, b = w.roots[0], w.leaves[0]
    inside: Addr = ("192.168.1.10", 9993)
    roamer = Node(
        IDS[2],
        w.planet,
        now=w.net.now,
        random_bytes=seeded_random_bytes(2121),
        local_addresses=[inside],
        config=NodeConfig(identity_validation_interval=0),
    )
    nat = Nat(roamer, inside, ("10.0.3.1", 9993))
    w.net.attach(nat, nat.public)
    assert w.run_until(lambda: roamer.online and b.online, 15_000)
    rid = roamer.send_echo(b.address, b"x", w.net.now)
    assert w.run_until(
        lambda: any(
            isinstance(e, ev.EchoReply) and e.request_id == rid for e in w.net.events[id(nat)]
        ),
        20_000,
    )
    assert w.run_until(lambda: _follows(w, b, roamer, nat.public), 30_000)
    return w, root, b, roamer, nat


def _follows(w: LocalWorld, n: Node, roamer: Node, public: Addr) -> bool:
    """``n`` uses a direct path to ``roamer`` at ``public``."""
    p = n.peer(roamer.address)
    best = p.best_path(w.net.now) if p is not None else None
    return best is not None and best.remote == public and best.alive(w.net.now)


def test_roaming_node_is_followed_by_its_peers() -> None:
    w, root, b, roamer, nat = _roaming_world()
    assert _follows(w, root, roamer, nat.public)
    w.run_for(20_000)
    w.net.take_events(nat)
    new_public: Addr = ("10.0.4.1", 9993)
    nat.move(w.net, new_public)
    # With no traffic of its own, the roamer's next HELLO to the root (at most ~229 s away)
    # tells the root, whose OK(HELLO) reports a new surface; the roamer then re-contacts every
    # path of that scope, and its peers confirm the new address.
    assert w.run_until(
        lambda: _follows(w, root, roamer, new_public) and _follows(w, b, roamer, new_public),
        16 * PATH_HEARTBEAT_PERIOD + 2 * PING_CHECK_INTERVAL,
    )
    changes = [e for e in w.net.take_events(nat) if isinstance(e, ev.SurfaceAddressChanged)]
    assert [c.new for c in changes] == [new_public]
    assert roamer.online and b.online
    rid = b.send_echo(roamer.address, b"found you", w.net.now)
    assert w.run_until(
        lambda: any(isinstance(e, ev.EchoReply) and e.request_id == rid for e in w.events(b)),
        5_000,
    )


def test_roaming_node_that_talks_is_followed_at_once() -> None:
    w, root, b, roamer, nat = _roaming_world()
    new_public: Addr = ("10.0.5.1", 9993)
    nat.move(w.net, new_public)
    moved = w.net.now
    for target in (b, root):
        rid = roamer.send_echo(target.address, b"moved", w.net.now)
        assert w.run_until(
            lambda rid=rid: any(  # type: ignore[misc]
                isinstance(e, ev.EchoReply) and e.request_id == rid for e in w.net.events[id(nat)]
            ),
            5_000,
        )
    assert w.run_until(
        lambda: _follows(w, b, roamer, new_public) and _follows(w, root, roamer, new_public),
        5_000,
    )
    assert w.net.now - moved < 5_000
