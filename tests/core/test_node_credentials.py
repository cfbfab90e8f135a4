"""NETWORK_CREDENTIALS exchange and its rate limits (protocol-network.md §2.4, §4.3, §4.4).

* Outbound, before frames (``pushCredentialsIfNeeded``, node/Network.hpp:396-404): our
  credentials go to a member before the first frame, then again only once our config has changed
  or after ``CREDENTIAL_PUSH_MAX_AGE``.
* On ERROR NEED_MEMBERSHIP_CERTIFICATE (``peerRequestedCredentials``, node/Network.hpp:379-387):
  pushed if our config has a COM and we have not pushed since the config changed or within the
  last second.
* Inbound (node/Peer.hpp:403-410): one NETWORK_CREDENTIALS packet per second per peer; the rest
  are dropped.
"""

from __future__ import annotations

from dataclasses import replace

from tests.helpers.controller_worlds import IDS, MiniController, joined
from ztnode.core import events as ev
from ztnode.core.counters import Drop
from ztnode.core.network import (
    CREDENTIAL_PUSH_MAX_AGE,
    NEED_CREDENTIALS_PUSH_INTERVAL,
    Network,
)
from ztnode.core.node import Node
from ztnode.core.peer import PEER_CREDENTIALS_RATE_LIMIT
from ztnode.testing.world import LocalWorld
from ztnode.wire.constants import Verb
from ztnode.wire.credentials import NetworkCredentials
from ztnode.wire.mac import mac_from_address
from ztnode.wire.netconf import NetworkType
from ztnode.wire.verbs import Error

NWID = (IDS[1].address << 24) | 0x42
T0 = 1_700_000_000_000


def creds_in(node: Node) -> int:
    return node.counters.verbs_in["NETWORK_CREDENTIALS"]


def frames(w: LocalWorld, node: Node) -> list[bytes]:
    return [e.payload for e in w.net.events[id(node)] if isinstance(e, ev.FrameReceived)]


def configured(now: int) -> Network:
    me = IDS[2]
    net = Network(NWID, me.address)
    ctl = MiniController(IDS[1], NWID)
    cfg = ctl.config_for(me, now)
    assert net.set_config(cfg, cfg.encode(), now)
    return net


# --------------------------------------------------------------------------- the rules alone


def test_push_before_frames_once_then_after_max_age_or_config_change() -> None:
    net = configured(T0)
    peer = IDS[3].address
    assert net.should_push_credentials(peer, T0 + 1)  # never pushed
    net.membership(peer).last_pushed_credentials = T0 + 1
    assert not net.should_push_credentials(peer, T0 + 2)
    assert not net.should_push_credentials(peer, T0 + 1 + CREDENTIAL_PUSH_MAX_AGE)
    assert net.should_push_credentials(peer, T0 + 2 + CREDENTIAL_PUSH_MAX_AGE)
    # A newer config makes the next frame carry credentials again.
    cfg = MiniController(IDS[1], NWID).config_for(IDS[2], T0 + 10)
    assert net.set_config(cfg, cfg.encode(), T0 + 10)
    assert net.should_push_credentials(peer, T0 + 11)


def test_answer_credential_requests_at_most_once_a_second() -> None:
    net = configured(T0)
    peer = IDS[3].address
    assert net.should_answer_credentials_request(peer, T0 + 1)
    net.membership(peer).last_pushed_credentials = T0 + 1
    assert not net.should_answer_credentials_request(peer, T0 + 1 + NEED_CREDENTIALS_PUSH_INTERVAL)
    assert net.should_answer_credentials_request(peer, T0 + 2 + NEED_CREDENTIALS_PUSH_INTERVAL)
    # Without a COM of our own there is nothing to answer with.
    bare = Network(NWID, IDS[2].address)
    assert not bare.should_answer_credentials_request(peer, T0 + 5_000)


# --------------------------------------------------------------------------- over the wire


def test_credentials_go_out_with_the_first_frame_only() -> None:
    w, _ctl_node, _ctl, nwid, a, b = joined()
    base = creds_in(b)
    to_b = mac_from_address(b.address, nwid)
    assert a.send_frame(nwid, to_b, 0x0800, b"first", w.net.now)
    assert w.run_until(lambda: b"first" in frames(w, b), 2_000)
    assert creds_in(b) == base + 1
    assert b.network(nwid).gate(a.address, a.identity)  # type: ignore[union-attr]
    # A request right after that push is not answered: one rate limit covers both kinds of push.
    need = Error.need_membership_certificate(Verb.FRAME, 1, nwid).encode()
    b.switch.send(a.address, Verb.ERROR, need, w.net.now)
    w.run_for(500)
    assert a.counters.verbs_in["ERROR"] == 1
    assert creds_in(b) == base + 1
    # More frames within the limit carry no credentials.
    for i in range(5):
        w.run_for(2_000)
        assert a.send_frame(nwid, to_b, 0x0800, b"more %d" % i, w.net.now)
    assert w.run_until(lambda: b"more 4" in frames(w, b), 2_000)
    assert creds_in(b) == base + 1
    # The periodic refresh brings a newer config: the next frame pushes again, once.
    t = w.net.now
    assert w.run_until(lambda: a.network(nwid).last_config_update > t, 70_000)  # type: ignore[union-attr]
    for i in range(3):
        assert a.send_frame(nwid, to_b, 0x0800, b"after refresh %d" % i, w.net.now)
        w.run_for(300)
    assert b"after refresh 2" in frames(w, b)
    assert creds_in(b) == base + 2


def test_inbound_credentials_are_taken_once_a_second_per_peer() -> None:
    w, _ctl_node, _ctl, nwid, a, b = joined()
    cfg = a.network(nwid).config  # type: ignore[union-attr]
    assert cfg is not None and cfg.com is not None
    body = NetworkCredentials(coms=(cfg.com,)).encode()
    before = b.counters.drops[Drop.RATE_LIMITED.value]
    a.switch.send(b.address, Verb.NETWORK_CREDENTIALS, body, w.net.now)
    w.run_for(PEER_CREDENTIALS_RATE_LIMIT // 2)
    a.switch.send(b.address, Verb.NETWORK_CREDENTIALS, body, w.net.now)
    w.run_for(PEER_CREDENTIALS_RATE_LIMIT // 4)
    assert b.counters.drops[Drop.RATE_LIMITED.value] == before + 1
    assert b.network(nwid).gate(a.address, a.identity)  # type: ignore[union-attr]  # the first
    w.run_for(PEER_CREDENTIALS_RATE_LIMIT)
    a.switch.send(b.address, Verb.NETWORK_CREDENTIALS, body, w.net.now)
    w.run_for(100)
    assert b.counters.drops[Drop.RATE_LIMITED.value] == before + 1


def test_need_membership_certificate_makes_the_node_push() -> None:
    w, _ctl_node, _ctl, nwid, a, b = joined()
    base = creds_in(b)
    assert not b.network(nwid).gate(a.address, a.identity)  # type: ignore[union-attr]
    need = Error.need_membership_certificate(Verb.FRAME, 1, nwid).encode()
    b.switch.send(a.address, Verb.ERROR, need, w.net.now)
    assert w.run_until(lambda: creds_in(b) == base + 1, 2_000)
    assert b.network(nwid).gate(a.address, a.identity)  # type: ignore[union-attr]
    # Asked again within a second: no second push; after it: pushed again.
    b.switch.send(a.address, Verb.ERROR, need, w.net.now)
    w.run_for(NEED_CREDENTIALS_PUSH_INTERVAL // 2)
    assert creds_in(b) == base + 1
    w.run_for(NEED_CREDENTIALS_PUSH_INTERVAL)
    b.switch.send(a.address, Verb.ERROR, need, w.net.now)
    assert w.run_until(lambda: creds_in(b) == base + 2, 2_000)
    # A request for a network the node has not joined is ignored.
    other = Error.need_membership_certificate(Verb.FRAME, 1, nwid ^ 1).encode()
    w.run_for(2 * NEED_CREDENTIALS_PUSH_INTERVAL)
    b.switch.send(a.address, Verb.ERROR, other, w.net.now)
    w.run_for(1_000)
    assert creds_in(b) == base + 2


def test_a_lost_push_is_repaired_by_the_members_request() -> None:
    """b refuses a frame from a member whose COM it lacks and asks for it; a answers, and b then
    delivers the frame it held."""
    w, _ctl_node, _ctl, nwid, a, b = joined()
    # a believes it pushed to b 1.5 s ago, after its config came (the push was lost), so the
    # frame goes alone.
    w.run_for(2_000)
    net = a.network(nwid)
    assert net is not None and net.last_config_update < w.net.now - 1_500
    net.membership(b.address).last_pushed_credentials = w.net.now - 1_500
    assert not net.should_push_credentials(b.address, w.net.now)
    refused = b.counters.drops[Drop.NOT_A_MEMBER.value]
    assert a.send_frame(nwid, mac_from_address(b.address, nwid), 0x0800, b"held", w.net.now)
    assert w.run_until(lambda: b"held" in frames(w, b), 3_000)
    assert b.counters.drops[Drop.NOT_A_MEMBER.value] == refused + 1
    assert a.counters.verbs_in["ERROR"] >= 1


def test_member_mac_is_the_derived_mac_and_kept_with_the_membership() -> None:
    """Every FRAME asks for its sender's MAC: the network keeps it with the membership, and it
    is MAC::fromAddress whether or not a membership exists yet."""
    net = Network(NWID, IDS[0].address)
    stranger, member = IDS[1].address, IDS[2].address
    assert net.member_mac(stranger) == mac_from_address(stranger, NWID)
    assert stranger not in net.memberships  # asking makes no membership
    m = net.membership(member)
    assert net.member_mac(member) == mac_from_address(member, NWID) == m.mac
    assert net.mac == mac_from_address(IDS[0].address, NWID)


def test_gate_follows_a_replaced_config() -> None:
    """The gate keeps what it reads of a config (public? our COM) per config object: a new
    config, public or private, is judged by its own terms at once."""
    net = configured(T0)
    stranger = IDS[3]
    assert net.config is not None and not net.config.is_public
    assert not net.gate(stranger.address, stranger)  # private, no COM of theirs
    private = net.config
    net.config = replace(private, type=NetworkType.PUBLIC)
    assert net.gate(stranger.address, stranger)
    net.config = private
    assert not net.gate(stranger.address, stranger)
