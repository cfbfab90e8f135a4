"""Small immutable records that cross the core's seams: what the host hands in (:class:`Inbound`),
what goes out (:class:`Outgoing`), what a verb handler receives (:class:`Rx`) and what a frame
cutter outside the core needs to send on the node's behalf (:class:`FrameRoute`)."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

from ztnode.wire.constants import Cipher

if TYPE_CHECKING:
    from ztnode.core.path import Path
    from ztnode.core.peer import Peer
    from ztnode.crypto.keys import SymmetricKey
    from ztnode.identity import Identity

Addr = tuple[str, int]


class Outgoing(NamedTuple):
    local: Addr
    remote: Addr
    data: bytes
    ttl: int = 0  # 0 = the socket default; RENDEZVOUS hole punching uses 2


class InboundKind(IntEnum):
    """How far the host's transport got with what it hands in."""

    DATAGRAM = 0
    """A UDP payload as it arrived."""
    WHOLE = 1
    """A whole packet addressed to us, put together from ``pieces`` datagrams, still armored."""
    AUTHENTICATED = 2
    """A whole packet already authenticated and decrypted with ``key`` (still to be checked
    against the sender's current key)."""


class Inbound(NamedTuple):
    """One input to :meth:`ztnode.core.node.Node.receive`: the single receive entry, whatever the
    transport did before (read one datagram, or reassemble and decrypt a burst in C)."""

    kind: InboundKind
    data: bytes | bytearray | memoryview
    local: Addr
    remote: Addr
    pieces: int = 1
    """Datagrams this input was made of (counted as received packets)."""
    wire_bytes: int = -1
    """Their bytes on the wire; -1 means ``len(data)``."""
    key: SymmetricKey | None = None
    """For AUTHENTICATED: the key the transport used."""
    stands_for: int = 1
    """For AUTHENTICATED: how many packets of the sender this one stands for (the transport may
    join consecutive ones of a flow); each is counted as received."""
    packet_ids: tuple[int, ...] = ()
    """For AUTHENTICATED inputs standing for several packets: every one's packet id (checked
    against the sender's replay window); empty means the packet's own."""
    checked: bool = False
    """For AUTHENTICATED inputs: a FRAME carrying a TCP segment or UDP datagram whose IPv4
    header and TCP or UDP checksums the transport verified (``ZT_RX_PLAIN_CHECKED``); the frame
    goes to the stack with
    that said (:attr:`ztnode.core.node.Node.rx_checked`), which then does not sum them again."""
    src: int = -1
    """For AUTHENTICATED inputs: the sender's address as the transport read it from the header
    (-1: not read; the node reads it). Parsing it again costs more than the rest of the header
    check in the compiled build."""
    pid: int = -1
    """For AUTHENTICATED inputs: the packet's id (of joined ones, the first's); -1: not read."""
    nwid: int = -1
    """For AUTHENTICATED inputs that are uncompressed FRAMEs: the network id; -1 otherwise."""


class ConfigRequest(NamedTuple):
    """A network config request for the hosted controller, waiting for the host to answer it
    off the receive path (see :mod:`ztnode.core.controller_link`)."""

    member: Identity
    network_id: int
    metadata: bytes
    in_re: int | None
    """The request's packet id (the answer is in reply to it); None for our own request."""
    physical: Addr | None
    """The member's physical address when the request came straight from it."""

    def arguments(self, now: int) -> tuple[Identity, int, bytes, int, Addr | None]:
        """The arguments of ``HostedController.handle_request``."""
        return (self.member, self.network_id, self.metadata, now, self.physical)


class Rx(NamedTuple):
    """What every verb handler receives: an authenticated, decompressed packet and its context.
    One signature for all handlers keeps the dispatch a plain table."""

    peer: Peer
    buf: bytearray
    payload: memoryview
    path: Path
    pid: int
    hops: int
    verb: int
    now: int


class FrameRoute(NamedTuple):
    """Everything needed to send FRAMEs to one member without going through the core per frame
    (the host's segmentation offload cuts, armors and fragments them in C): obtained from
    :meth:`ztnode.core.node.Node.frame_route`, the datagrams made with it handed back to
    :meth:`ztnode.core.node.Node.send_routed`."""

    key: SymmetricKey
    cipher: Cipher
    local: Addr
    remote: Addr
    header: bytes
    """The 28-byte packet header template: destination, source and verb FRAME filled."""
    network_id: int
    mtu: int
    filtered: bool = False
    """The network's rules are not accept-all: before cutting, ask
    :meth:`ztnode.core.node.Node.filter_burst` about the burst's first and last piece."""
