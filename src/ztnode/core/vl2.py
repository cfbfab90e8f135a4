"""VL2: the networks a node has joined (ZeroTierOne's Network, seen from the node): joining
and leaving, config requests and their answers (from a remote controller, or from the hosted
one through :class:`~ztnode.core.controller_link.ControllerLink`, its pushes included), status,
and the ERRORs a network's controller or members send about it (SSO logins start here).

Why the split is here: a network's lifecycle changes rarely, once per join, config or refusal,
while its frames pass once per packet and its credentials once per member and push interval.
So the frames in and out are :class:`~ztnode.core.frames.FramePath`'s (with the remembered
routes and the frames held at the membership gate), and the credentials pushed and accepted
are :class:`~ztnode.core.credentials.CredentialExchange`'s; this part tells the frame path when
a new config may release held frames, and asks the credentials part to push when a member
says it needs our certificate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ztnode.core import events as ev
from ztnode.core.controller_iface import ConfigAnswer
from ztnode.core.counters import Drop
from ztnode.core.network import (
    Network,
    NetworkStatus,
    adhoc_config,
)
from ztnode.core.path import Path
from ztnode.core.peer import Peer
from ztnode.core.records import Rx
from ztnode.core.sso import authentication_required
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.netconf import (
    NetworkConfig,
    NetworkConfigRequestMetadata,
)
from ztnode.wire.verbs import (
    Error,
    NetconfAck,
    NetworkConfigChunk,
    NetworkConfigRequest,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node


# What an ERROR from a network's controller in answer to our config request means (§2.4).
# UNSUPPORTED_OPERATION (the controller's node hosts no controller) is NOT_FOUND, as in 1.14.1:
# nothing in the reference sets CLIENT_TOO_OLD (it exists only as a status value), so neither
# does ztnode.
ERROR_STATUS: Final = {
    int(ErrorCode.OBJ_NOT_FOUND): NetworkStatus.NOT_FOUND,
    int(ErrorCode.UNSUPPORTED_OPERATION): NetworkStatus.NOT_FOUND,
    int(ErrorCode.NETWORK_ACCESS_DENIED): NetworkStatus.ACCESS_DENIED,
    int(ErrorCode.NETWORK_AUTHENTICATION_REQUIRED): NetworkStatus.AUTHENTICATION_REQUIRED,
}


#: Statuses that mean the controller said no (a join asks again when it finds one).
REFUSED: Final = frozenset(ERROR_STATUS.values())


class Vl2:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt

    def join(self, network_id: int, now: int, cached_config: bytes | None = None) -> Network:
        """Join a network: ask its controller for a config (or build it, for ad-hoc ids).

        ``cached_config`` is a config dictionary the host saved earlier (``networks.d``); it is
        used at once but refreshed immediately, as the reference does.
        """
        if not 0 < network_id < 2**64:
            raise LocalProtocolError(f"{network_id:#x} is not a network id")
        net = self.rt.networks.get(network_id)
        if net is not None:
            if net.status in REFUSED and not net.is_adhoc:
                # Joining again asks again: the refusal may predate an authorization.
                self.request_config(net, now)
            return net
        net = self.rt.networks[network_id] = Network(
            network_id, self.rt.address, lambda: self.rt.rng.getrandbits(32)
        )
        self.rt.events.append(ev.NetworkStatusChanged(network_id, net.status.value))
        if cached_config:
            try:
                cfg = NetworkConfig.decode(cached_config)
            except DecodeError:
                cfg = None
            if cfg is not None and net.set_config(cfg, cached_config, now):
                net.last_config_update = 0  # use it, but refresh at once
                self._config_events(net, [], now)
        if net.is_adhoc:
            adhoc = adhoc_config(network_id, self.rt.identity, now)
            if adhoc is None:
                self.set_status(net, NetworkStatus.NOT_FOUND)
            else:
                self.apply_config(net, adhoc, adhoc.encode(), now)
        else:
            self.request_config(net, now)
        return net

    def leave(self, network_id: int) -> bool:
        net = self.rt.networks.pop(network_id, None)
        if net is None:
            return False
        for a in net.assigned_addresses():
            self.rt.events.append(ev.AddressRemoved(network_id, str(a)))
        self.rt.events.append(ev.NetworkLeft(network_id))
        return True

    def request_config(self, net: Network, now: int) -> None:
        net.last_request_sent = now
        net.unanswered_requests += 1
        metadata = NetworkConfigRequestMetadata().encode()
        if net.controller == self.rt.address:
            # Our own network: served in-process, as Node.cpp does for a local controller.
            if not self.rt.controller_link.request_own(net.id, metadata, now):
                self.set_status(net, NetworkStatus.NOT_FOUND)
            return
        cfg = net.config
        req = NetworkConfigRequest(
            net.id,
            metadata,
            cfg.revision if cfg is not None else 0,
            cfg.timestamp if cfg is not None else 0,
        )
        self.rt.switch.send(
            net.controller, Verb.NETWORK_CONFIG_REQUEST, req.encode(), now, compress=True
        )

    def apply_answer(self, net: Network, answer: ConfigAnswer, now: int) -> None:
        """Our own controller's answer to our own request."""
        if answer.config is not None:
            self.apply_config(net, answer.config, answer.config.encode(), now)
        elif answer.error is not None:
            status = ERROR_STATUS.get(int(answer.error))
            if status is not None:
                self.set_status(net, status)

    def controller_identity(self, net: Network, now: int) -> Identity | None:
        if net.controller == self.rt.address:
            return self.rt.identity
        peer = self.rt.peers.get(net.controller)
        if peer is None:
            self.rt.whois.request(net.controller, now)
            return None
        return peer.identity

    def config_chunk(
        self,
        peer: Peer,
        chunk: NetworkConfigChunk,
        pid: int,
        now: int,
        *,
        pushed: bool,
        path: Path,
    ) -> None:
        net = self.rt.networks.get(chunk.network_id)
        if net is None:
            return
        if chunk.signature is None:
            # Legacy unsigned form: only straight from the controller, and only whole.
            if peer.address != net.controller:
                self.rt.counters.drop(Drop.UNTRUSTED_SENDER)
                return
            data: bytes | None = chunk.data
        else:
            ctl = self.controller_identity(net, now)
            if ctl is None:
                return
            if not ctl.verify(chunk.signed_portion(), chunk.signature):
                self.rt.counters.drop(Drop.BAD_SIGNATURE)
                return
            data = net.add_chunk(chunk.update_id, chunk.total_length, chunk.chunk_index, chunk.data)
            if pushed and data is not None:
                # The reference acknowledges a completed push with in-re verb ECHO (a quirk).
                ack = NetconfAck(pid, net.id, chunk.update_id).encode()
                self.rt.switch.send_on(peer, path, Verb.OK, ack, now, expect=False)
        if data is None:
            return
        try:
            cfg = NetworkConfig.decode(data)
        except DecodeError:
            self.rt.counters.drop(Drop.MALFORMED)
            return
        self.apply_config(net, cfg, data, now)

    def apply_config(self, net: Network, cfg: NetworkConfig, raw: bytes, now: int) -> None:
        before = [str(a) for a in net.assigned_addresses()]
        old_status = net.status
        net.answers += 1
        changed = net.set_config(cfg, raw, now)
        if net.status != old_status:
            self.rt.events.append(ev.NetworkStatusChanged(net.id, net.status.value))
        if changed:
            self._config_events(net, before, now)
            self.rt.frames.retry_gated_frames(now)
            if old_status != NetworkStatus.OK:
                self.rt.multicaster.announce(net, now)

    def _config_events(self, net: Network, before: list[str], now: int) -> None:
        cfg = net.config
        if cfg is None or net.config_bytes is None:
            return
        self.rt.events.append(ev.NetworkConfigUpdated(net.id, cfg.revision, net.config_bytes))
        after = [str(a) for a in net.assigned_addresses()]
        for a in after:
            if a not in before:
                self.rt.events.append(ev.AddressAdded(net.id, a))
        for a in before:
            if a not in after:
                self.rt.events.append(ev.AddressRemoved(net.id, a))

    def set_status(self, net: Network, status: NetworkStatus) -> None:
        """The controller's refusal (or another status): counted as an answer."""
        net.answers += 1
        if net.status != status:
            net.status = status
            self.rt.events.append(ev.NetworkStatusChanged(net.id, status.value))

    def network_error(self, peer: Peer, net: Network, err: Error, now: int) -> None:
        """An ERROR about one of our networks (IncomingPacket::_doERROR, §2.4)."""
        code = err.code
        if code == ErrorCode.NEED_MEMBERSHIP_CERTIFICATE:
            if net.should_answer_credentials_request(peer.address, now):
                self.rt.credentials.push_credentials(net, peer.address, now)
        elif peer.address == net.controller:
            # NOT_FOUND and UNSUPPORTED_OPERATION count only in re a config request; ACCESS_DENIED
            # and AUTHENTICATION_REQUIRED from the controller count in re anything.
            status = ERROR_STATUS.get(int(code))
            counts = err.in_re_verb == Verb.NETWORK_CONFIG_REQUEST or code in (
                ErrorCode.NETWORK_ACCESS_DENIED,
                ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
            )
            sso = code == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED
            if (
                status is not None
                and counts
                and (not sso or authentication_required(net, err.dictionary, self.rt.events.append))
            ):
                self.set_status(net, status)

    def do_network_config(self, rx: Rx) -> None:
        chunk = NetworkConfigChunk.decode(rx.payload)
        self.config_chunk(rx.peer, chunk, rx.pid, rx.now, pushed=True, path=rx.path)
        self.rt.vl1.received(rx.peer, rx.path, rx.hops, rx.verb, rx.now, chunk.network_id)
