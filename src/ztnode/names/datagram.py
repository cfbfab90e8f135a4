"""What a names engine hands its adapter to send.

Why one type: the mDNS, LLMNR and unicast DNS engines are sans-I/O; each returns datagrams with
the destination (a multicast group or a unicast address) and, where the protocol requires it,
the local address to send from (LLMNR answers from the address that was asked). The asyncio
adapter owns the sockets and needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Datagram"]


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP payload to send: ``dest`` is ``(ip, port)``; ``source`` the local IP to send
    from, or None for the stack's choice."""

    data: bytes
    dest: tuple[str, int]
    source: str | None = None
