"""A wiretap on the node's sans-I/O boundary.

Why a hook and not wrapping the node's methods: the node is compiled (mypyc) in the fast
build, and a compiled instance's methods cannot be replaced. Protocol tests and diagnostics
still need to see the wire exactly as the node saw it (each datagram in, each datagram out,
which input an event came from), so the node calls a tap, when one is set, at its boundary.
With no tap set the cost is one attribute test per call.

What a tap sees: datagrams handed in as datagrams (``receive_datagram``, or ``receive`` of a
:attr:`~ztnode.core.records.InboundKind.DATAGRAM`). Packets the transport already reassembled
or opened in C (receive bursts) never existed as one datagram here; a host that must see every
datagram turns bursts off (``ServiceConfig.burst_receive``).
"""

from __future__ import annotations

from typing import Protocol

from ztnode.core.events import Event
from ztnode.core.records import Addr, Outgoing


class NodeTap(Protocol):
    """What a wiretap is told, in the order the node does things. Called synchronously from
    the node's own calls: a tap must not call back into the node."""

    def datagram_in(self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr) -> None:
        """A datagram about to be read (the node has not looked at it yet)."""

    def datagrams_out(self, datagrams: list[Outgoing]) -> None:
        """What the host is about to put on the wire."""

    def timer(self) -> None:
        """A timer fired: events until the next datagram come from it, not from a datagram."""

    def event(self, e: Event) -> None:
        """An event about to be handed to the host."""
