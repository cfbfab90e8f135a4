"""Network credentials between members (ZeroTierOne's Membership::pushCredentials and
IncomingPacket::_doNETWORK_CREDENTIALS): ours pushed to a member before it needs them, and
theirs (certificates of membership, capabilities, tags, certificates of ownership,
revocations) checked against the network's controller and kept on the
:class:`~ztnode.core.network.Network`.

Why a part of its own: three other parts reach it, each at one moment. The frame path
(:class:`~ztnode.core.frames.FramePath`) pushes ours when a member is due for them and accepts
the COM an EXT_FRAME carries; the multicaster does both for multicast; VL2 pushes when a member
says it needs our certificate. The per-network bookkeeping (what is held, when it was pushed,
the membership gate) stays with the ``Network``; this part does the wire side and the
signature checks, and hands frames held at the gate back to the frame path once something
was accepted. The NETWORK_CREDENTIALS handler is its entry from the switch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ztnode.core.counters import Drop
from ztnode.core.network import Network
from ztnode.core.peer import PEER_CREDENTIALS_RATE_LIMIT
from ztnode.core.records import Rx
from ztnode.wire.constants import Verb
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    NetworkCredentials,
    Tag,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node


class CredentialExchange:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt

    def do_credentials(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        if now - peer.last_credentials_received < PEER_CREDENTIALS_RATE_LIMIT:
            self.rt.counters.drop(Drop.RATE_LIMITED)
            self.rt.vl1.received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)
            return
        peer.last_credentials_received = now
        creds, _error = NetworkCredentials.decode_partial(payload)
        accepted = False
        for com in creds.coms:
            accepted |= self.accept_com(com.network_id, com, now)
        others: tuple[Capability | Tag | CertificateOfOwnership, ...] = (
            *creds.capabilities,
            *creds.tags,
            *creds.certificates_of_ownership,
        )
        for cred in others:
            net = self.rt.networks.get(cred.network_id)
            ctl = self.rt.vl2.controller_identity(net, now) if net is not None else None
            if net is None or ctl is None or not self.rt.tracer.verified(net, cred, ctl, now):
                continue
            if isinstance(cred, Capability):
                added = net.add_capability(cred)
            elif isinstance(cred, Tag):
                added = net.add_tag(cred)
            else:
                added = net.add_coo(cred)
            accepted |= added or self.rt.tracer.refused(net, cred, now)
        for rev in creds.revocations:
            net = self.rt.networks.get(rev.network_id)
            ctl = self.rt.vl2.controller_identity(net, now) if net is not None else None
            if net is not None and ctl is not None and self.rt.tracer.verified(net, rev, ctl, now):
                accepted |= net.add_revocation(rev)
        if accepted:
            peer.last_trust_established = now
            path.last_trust_established = now
            self.rt.frames.retry_gated_frames(now)
        self.rt.vl1.received(peer, path, hops, Verb.NETWORK_CREDENTIALS, now)

    def accept_com(self, network_id: int, com: CertificateOfMembership, now: int) -> bool:
        net = self.rt.networks.get(network_id)
        if net is None:
            return False
        ctl = self.rt.vl2.controller_identity(net, now)
        if ctl is None or not self.rt.tracer.verified(net, com, ctl, now):
            return False
        return net.add_com(com) or self.rt.tracer.refused(net, com, now)

    def push_credentials(self, net: Network, dest: int, now: int) -> None:
        """Send our COM and the capabilities, tags and ownership certificates of our config."""
        cfg = net.config
        if cfg is None or (
            cfg.com is None and not (cfg.capabilities or cfg.tags or cfg.certificates_of_ownership)
        ):
            return
        creds = NetworkCredentials(
            coms=(cfg.com,) if cfg.com is not None else (),
            capabilities=cfg.capabilities,
            tags=cfg.tags,
            certificates_of_ownership=cfg.certificates_of_ownership,
        )
        self.rt.switch.send(dest, Verb.NETWORK_CREDENTIALS, creds.encode(), now, compress=True)
        net.membership(dest).last_pushed_credentials = now
