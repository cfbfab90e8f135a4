"""Validation of new identities: the per-source rate gate, the cache of identities already
validated, and (with ``defer_identity_validation``) the hand-off of the memory-hard check to
the host so it never stalls the receive path for known peers.

Bounds: the gate keeps one timestamp per source address bucket (pruned by housekeeping after a
minute), the cache ``MAX_VALIDATION_CACHE`` identities, the deferral ``MAX_PENDING_VALIDATIONS``
identities with ``MAX_PACKETS_PER_PENDING_VALIDATION`` HELLOs each (more is a counted drop).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.timing import (
    MAX_VALIDATION_CACHE,
)
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError, DecodeError
from ztnode.identity import Identity
from ztnode.wire.inetaddr import IpScope

if TYPE_CHECKING:
    from ztnode.core.node import Node


@dataclass
class _PendingValidation:
    identity: Identity
    packets: list[tuple[bytearray, Path]] = field(default_factory=list)


class IdentityValidator:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._gate: dict[int, int] = {}
        self._validated: OrderedDict[int, bytes] = OrderedDict()
        self._pending: dict[int, _PendingValidation] = {}
        self._to_validate: deque[Identity] = deque()

    def identities_to_validate(self) -> list[Identity]:
        """Identities waiting for validation (only with ``defer_identity_validation``)."""
        if not self._to_validate:  # asked after every pump
            return []
        out = list(self._to_validate)
        self._to_validate.clear()
        return out

    def identity_validated(self, identity: Identity, valid: bool, now: int) -> None:
        """The host's answer for an identity from ``identities_to_validate``."""
        pending = self._pending.pop(identity.address, None)
        if pending is None or pending.identity != identity:
            return
        if not valid:
            self.rt.counters.drop(Drop.IDENTITY_INVALID)
            return
        self.remember_valid(identity)
        # Every waiting HELLO passed the rate gate and its MAC check before it was deferred.
        # Replayed through the receive path it would meet the gate again (still closed, since
        # it was just used for this identity) and be dropped, so learn the peer here and
        # finish the HELLOs as authenticated.
        if identity.address not in self.rt.peers:
            if not self.rt.peer_room(identity.address):
                return
            try:
                key = SymmetricKey(self.rt.identity.agree(identity))
            except CryptoError:
                self.rt.counters.drop(Drop.IDENTITY_INVALID)
                return
            self.rt.add_peer(identity, key, now)
        peer = self.rt.peers[identity.address]
        for buf, path in pending.packets:
            if not peer.replay.accept(int.from_bytes(buf[0:8], "big"), now):
                self.rt.counters.drop(Drop.REPLAYED)  # the same HELLO queued twice
                continue
            try:
                self.rt.vl1.do_hello(buf, path, buf[18] & 7, now, authenticated=True)
            except DecodeError:
                self.rt.counters.drop(Drop.MALFORMED)

    def prune(self, now: int) -> None:
        """Forget gate entries older than a minute (housekeeping)."""
        for key in [key for key, t in self._gate.items() if now - t > 60_000]:
            del self._gate[key]

    def gate_ok(self, path: Path, now: int) -> bool:
        interval = self.rt.config.identity_validation_interval
        if interval <= 0:
            return True
        bucket = path.inet.bucket() if path.scope != IpScope.NONE else 0
        last = self._gate.get(bucket)
        if last is not None and now - last < interval:
            return False
        self._gate[bucket] = now
        return True

    def is_known_valid(self, ident: Identity) -> bool:
        return self._validated.get(ident.address) == ident.public_key

    def remember_valid(self, ident: Identity) -> None:
        self._validated[ident.address] = ident.public_key
        self._validated.move_to_end(ident.address)
        while len(self._validated) > MAX_VALIDATION_CACHE:
            self._validated.popitem(last=False)

    def defer(self, ident: Identity, buf: bytearray, path: Path) -> None:
        pending = self._pending.get(ident.address)
        if pending is None:
            if len(self._pending) >= 64:
                self.rt.counters.drop(Drop.RATE_LIMITED)
                return
            pending = self._pending[ident.address] = _PendingValidation(ident)
            self._to_validate.append(ident)
        if len(pending.packets) < 4:
            pending.packets.append((buf, path))
