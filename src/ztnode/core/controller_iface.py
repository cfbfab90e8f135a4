"""What the node needs from a network controller it hosts (``ztnode.controller`` implements it).

The node owns the wire: it receives NETWORK_CONFIG_REQUEST, asks the controller for an answer,
then chunks, signs and sends the config (OK in reply, NETWORK_CONFIG when pushed) or the ERROR.
The controller owns policy and storage and is sans-I/O like the node: it is called with ``now``
and queues the pushes and revocations that API edits cause, which the node drains on its timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ztnode.identity import Identity
from ztnode.wire.constants import ErrorCode
from ztnode.wire.credentials import Revocation
from ztnode.wire.netconf import NetworkConfig


@dataclass(frozen=True, slots=True)
class ConfigAnswer:
    """Either a config for the member, or the ERROR code to answer with (and its optional
    dictionary, for NETWORK_AUTHENTICATION_REQUIRED)."""

    config: NetworkConfig | None = None
    error: ErrorCode | None = None
    error_dictionary: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConfigPush:
    """Send this config to this member now, unasked (NETWORK_CONFIG)."""

    member: int
    config: NetworkConfig


@dataclass(frozen=True, slots=True)
class RevocationPush:
    """Send this revocation (in NETWORK_CREDENTIALS) to each of ``recipients``."""

    network_id: int
    revocation: Revocation
    recipients: tuple[int, ...]


class HostedController(Protocol):
    def serves(self, network_id: int) -> bool:
        """True for networks this controller issues configs for (nwid >> 24 is its address)."""
        ...

    def handle_request(
        self,
        member: Identity,
        network_id: int,
        metadata: bytes,
        now: int,
        physical_address: tuple[str, int] | None = None,
    ) -> ConfigAnswer | None:
        """Answer a NETWORK_CONFIG_REQUEST; ``None`` means stay silent (rate limit, not ours)."""
        ...

    def pending_pushes(self, now: int) -> list[ConfigPush]:
        """Configs to push because the network or member changed (drained by the call)."""
        ...

    def pending_revocations(self, now: int) -> list[RevocationPush]:
        """Revocations to send because members lost access (drained by the call)."""
        ...

    def has_recent_member(self, network_id: int, member: int, now: int) -> bool:
        """True if we sent this member a config recently (the reference's 180 s window), which
        lets it announce multicast groups to us before its own COM reaches us."""
        ...
