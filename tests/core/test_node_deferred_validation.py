"""A node that validates new identities elsewhere (``defer_identity_validation``, as the service
does in its process pool) must answer the HELLO it deferred, not drop it at the rate gate.

Found by the libzt interop test: our root, run by the CLI, ignored every new node's first HELLO,
so each node came online one 5 s HELLO period late.
"""

from __future__ import annotations

import os

from tests.helpers.data import test_identities
from ztnode.core import events as ev
from ztnode.core.node import Node, NodeConfig
from ztnode.root.worlds import KeyPair
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import Root, World, WorldType

IDS = test_identities()
R = ("10.0.0.1", 9993)
L = ("10.0.0.2", 9993)


def test_deferred_hello_is_answered_once_validated() -> None:
    key = KeyPair.generate()
    root_ep = InetAddress.parse(f"{R[0]}/{R[1]}")
    planet = World.make(
        WorldType.PLANET, 1, 1_000, key.public, [Root(IDS[0].public(), (root_ep,))], key.private
    )
    config = NodeConfig(defer_identity_validation=True)
    root = Node(IDS[0], planet, now=0, random_bytes=os.urandom, local_addresses=[R], config=config)
    leaf = Node(IDS[1], planet, now=0, random_bytes=os.urandom, local_addresses=[L])
    leaf.handle_timer(0)
    hellos = leaf.datagrams_to_send(0)
    assert len(hellos) == 1
    root.receive_datagram(hellos[0].data, R, L, 0)
    assert root.datagrams_to_send(0) == []  # waiting for validation
    pending = root.identities_to_validate()
    assert [i.address for i in pending] == [IDS[1].address]

    root.identity_validated(pending[0], pending[0].validate(), 300)
    assert IDS[1].address in root.peers
    assert ev.PeerAdded(IDS[1].address) in iter(root.next_event, None)
    assert not root.counters.drops
    assert root.counters.ciphers_in["POLY1305_NONE"] == 1  # one HELLO, counted once
    for out in root.datagrams_to_send(300):  # OK(HELLO), then a HELLO confirming the path
        leaf.receive_datagram(out.data, L, R, 300)
    assert leaf.counters.verbs_in["OK"] == 1
    assert leaf.online
