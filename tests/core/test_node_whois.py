"""WHOIS retries on the reference schedule (protocol-core.md 9.3; node/Switch.cpp:949-1077).

While a packet waits for an unknown peer (to send, or to decode), the node asks its best upstream
for the identity at once and then on every 500 ms queue tick, never more than once per 500 ms per
address. The waiting packet lives 5 s; after that the node stops asking. An answer stops the
asking at once.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.counters import Drop
from ztnode.core.node import Node
from ztnode.core.timing import QUEUE_TIMEOUT, WHOIS_RETRY_DELAY
from ztnode.crypto import SymmetricKey
from ztnode.testing.world import LocalWorld
from ztnode.wire import packet as pk
from ztnode.wire.constants import IDX_PAYLOAD, Cipher, Verb
from ztnode.wire.verbs import Whois

IDS = test_identities()
STRANGER = IDS[-1]  # never part of the world: nobody can answer for it


def whois_log(w: LocalWorld, asker: Node, root: Node) -> list[tuple[int, tuple[int, ...]]]:
    """(time, addresses) of every WHOIS ``asker`` puts on the wire to ``root`` from now on."""
    log: list[tuple[int, tuple[int, ...]]] = []
    src, dst = w.addresses[asker.address], w.addresses[root.address]
    peer = asker.peer(root.address)
    assert peer is not None
    key = peer.key

    def tap(local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        if (local, remote) != (src, dst) or len(data) <= IDX_PAYLOAD:
            return
        buf = bytearray(data)
        if (buf[18] >> 3) & 7 == Cipher.POLY1305_NONE or not pk.dearmor(buf, key):
            return
        pk.decompress(buf)
        if buf[27] & 0x1F == Verb.WHOIS:
            log.append((w.net.now, Whois.decode(bytes(buf[IDX_PAYLOAD:])).addresses))

    w.net.taps.append(tap)
    return log


def check_schedule(times: list[int], start: int) -> None:
    assert times[0] == start  # asked at once
    gaps = [b - a for a, b in pairwise(times)]
    assert all(WHOIS_RETRY_DELAY <= g <= WHOIS_RETRY_DELAY + 50 for g in gaps), gaps
    # Asked for as long as the packet waits (5 s), and not after.
    n = QUEUE_TIMEOUT // WHOIS_RETRY_DELAY
    assert n <= len(times) <= n + 1, times
    assert times[-1] - start <= QUEUE_TIMEOUT


@pytest.mark.parametrize("waiting", ["to_send", "to_decode"])
def test_whois_retries_every_500_ms_then_stops(waiting: str) -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=1)
    assert w.run_until(w.all_online, 15_000)
    a, root = w.leaves[0], w.roots[0]
    w.run_for(1_000)
    log = whois_log(w, a, root)
    start = w.net.now
    if waiting == "to_send":
        a.send_echo(STRANGER.address, b"anyone?", start)
    else:
        # An authentic packet from a stranger: a can only decode it once it knows the key.
        key = SymmetricKey(STRANGER.agree(a.identity))
        buf = pk.new_packet(b"\x01" * 8, a.address, STRANGER.address, Verb.ECHO, b"?")
        pk.armor(buf, key, Cipher.POLY1305_SALSA2012)
        a.receive_datagram(bytes(buf), w.addresses[a.address], ("10.0.7.7", 9993), start)
    w.run_for(QUEUE_TIMEOUT + 20_000)
    assert {addrs for _, addrs in log} == {(STRANGER.address,)}
    check_schedule([t for t, _ in log], start)
    assert a.counters.drops[Drop.WHOIS_TIMEOUT.value] == 1
    # Nothing is left waiting or remembered, so the queue timer has gone quiet.
    assert not a.whois.tx_queue and not a.whois.rx_queue and not a.whois.pending
    assert a.whois.next_tick is None


def test_an_answer_stops_the_asking() -> None:
    w = LocalWorld.build(IDS, roots=1, leaves=2)
    assert w.run_until(w.all_online, 15_000)
    a, b = w.leaves
    root = w.roots[0]
    log = whois_log(w, a, root)
    rid = a.send_echo(b.address, b"hi", w.net.now)
    assert w.run_until(
        lambda: any(
            isinstance(e, ev.EchoReply) and e.request_id == rid for e in w.net.events[id(a)]
        ),
        5_000,
    )
    w.run_for(10_000)
    assert [addrs for _, addrs in log] == [(b.address,)]
    assert b.address not in a.whois.pending
