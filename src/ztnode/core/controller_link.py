"""The hosted controller seen from the node: member requests answered, our own requests for
our own networks, and the pushes and revocations the controller queues.

Answering a request reads the controller's database and may commit to it (an fsync), so with
``NodeConfig.defer_config_requests`` a request never waits on storage inside ``receive()``: it
goes to a bounded queue (``MAX_PENDING_CONFIG_REQUESTS``; beyond it a counted drop, and the
member asks again), the host answers it off the event loop (``config_requests_to_serve`` /
``config_request_answered``, as identity validation works) and the answer is sent from here.
Without it (in-memory worlds, tests) requests are answered at once.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ztnode.core.controller_iface import ConfigAnswer
from ztnode.core.counters import Drop
from ztnode.core.records import ConfigRequest, Rx
from ztnode.core.timing import MAX_PENDING_CONFIG_REQUESTS
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.credentials import CredentialType, NetworkCredentials
from ztnode.wire.netconf import NetworkConfig, split_config_chunks
from ztnode.wire.verbs import (
    Error,
    NetworkConfigChunk,
    NetworkConfigRequest,
    OkNetworkConfigRequest,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node
    from ztnode.core.peer import Peer


class ControllerLink:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._queue: deque[ConfigRequest] = deque()

    def do_config_request(self, rx: Rx) -> None:
        """NETWORK_CONFIG_REQUEST from a member (or anyone: the controller decides)."""
        peer, path, hops, now = rx.peer, rx.path, rx.hops, rx.now
        req = NetworkConfigRequest.decode(rx.payload)
        ctl = self.rt.controller
        if ctl is None:
            err = Error.unsupported_operation(Verb.NETWORK_CONFIG_REQUEST, rx.pid, req.network_id)
            self.rt.switch.send_on(peer, path, Verb.ERROR, err.encode(), now, expect=False)
        elif ctl.serves(req.network_id):
            # Where the member is reached directly: the path the request came on, or, for a
            # relayed one, its live direct path if it has one.
            physical = path.remote if hops == 0 else self._direct(peer, now)
            self._serve(
                ConfigRequest(peer.identity, req.network_id, bytes(req.metadata), rx.pid, physical),
                now,
            )
        self.rt.vl1.received(peer, path, hops, Verb.NETWORK_CONFIG_REQUEST, now)

    @staticmethod
    def _direct(peer: Peer, now: int) -> tuple[str, int] | None:
        best = peer.best_path(now)
        return best.remote if best is not None and best.alive(now) else None

    def request_own(self, network_id: int, metadata: bytes, now: int) -> bool:
        """Our request for a network of our own controller; False if it does not serve it."""
        ctl = self.rt.controller
        if ctl is None or not ctl.serves(network_id):
            return False
        self._serve(ConfigRequest(self.rt.identity.public(), network_id, metadata, None, None), now)
        return True

    def _serve(self, request: ConfigRequest, now: int) -> None:
        ctl = self.rt.controller
        if ctl is None:
            return
        if not self.rt.config.defer_config_requests:
            self.answered(request, ctl.handle_request(*request.arguments(now)), now)
        elif len(self._queue) >= MAX_PENDING_CONFIG_REQUESTS:
            self.rt.counters.drop(Drop.CONFIG_QUEUE_FULL)
        else:
            self._queue.append(request)

    def requests_to_serve(self) -> list[ConfigRequest]:
        out = list(self._queue)
        self._queue.clear()
        return out

    def answered(self, request: ConfigRequest, answer: ConfigAnswer | None, now: int) -> None:
        """Send the controller's answer (None: it stays silent, e.g. a request repeated within
        a second); our own requests' answers are applied here."""
        if answer is None:
            return
        if request.in_re is None:
            net = self.rt.networks.get(request.network_id)
            if net is not None:
                self.rt.vl2.apply_answer(net, answer, now)
            return
        member = request.member.address
        if answer.config is not None:
            self._send_config(member, answer.config, request.in_re, now)
        elif answer.error is not None:
            err = Error(
                Verb.NETWORK_CONFIG_REQUEST,
                request.in_re,
                answer.error,
                request.network_id,
                dictionary=answer.error_dictionary
                if answer.error == ErrorCode.NETWORK_AUTHENTICATION_REQUIRED
                else None,
            )
            self.rt.switch.send(member, Verb.ERROR, err.encode(), now)

    def flush_controller(self, now: int) -> None:
        """Send the config pushes and revocations the hosted controller has queued."""
        ctl = self.rt.controller
        if ctl is None:
            return
        for push in ctl.pending_pushes(now):
            if push.member == self.rt.address:
                net = self.rt.networks.get(push.config.network_id)
                if net is not None:
                    self.rt.vl2.apply_config(net, push.config, push.config.encode(), now)
            else:
                self._send_config(push.member, push.config, None, now)
        for rp in ctl.pending_revocations(now):
            body = NetworkCredentials(revocations=(rp.revocation,)).encode()
            for r in rp.recipients:
                if r == self.rt.address:
                    net = self.rt.networks.get(rp.network_id)
                    if net is not None:
                        net.add_revocation(rp.revocation)
                else:
                    self.rt.switch.send(r, Verb.NETWORK_CREDENTIALS, body, now, compress=True)
            target = rp.revocation.target
            if rp.revocation.credential_type == CredentialType.COM and target != self.rt.address:
                # Tell the member itself at once: an ERROR in re a config request needs no
                # expected packet id, so its status becomes ACCESS_DENIED now rather than at its
                # next refresh (the reference only lets it find out then).
                err = Error(
                    Verb.NETWORK_CONFIG_REQUEST, 0, ErrorCode.NETWORK_ACCESS_DENIED, rp.network_id
                )
                self.rt.switch.send(target, Verb.ERROR, err.encode(), now)

    def _send_config(self, member: int, config: NetworkConfig, in_re: int | None, now: int) -> None:
        """Sign and send a config in chunks: OK chunks in reply, NETWORK_CONFIG when pushed."""
        raw = config.encode()
        update_id = int.from_bytes(self.rt.random_bytes(8), "big") or 1
        for c in split_config_chunks(raw):
            chunk = NetworkConfigChunk.signed(
                config.network_id,
                bytes(c.data),
                update_id=update_id,
                total_length=len(raw),
                chunk_index=c.offset,
                sign=self.rt.identity.sign,
            )
            if in_re is not None:
                body = OkNetworkConfigRequest(in_re, chunk).encode()
                self.rt.switch.send(member, Verb.OK, body, now, compress=True)
            else:
                self.rt.switch.send(member, Verb.NETWORK_CONFIG, chunk.encode(), now, compress=True)
