"""TCP's connection states and every transition between them, as data (RFC 9293 figure 5).

Why a table: a TCB that writes its state from a dozen methods can drift into a transition the
RFC does not have without any test noticing. :class:`~ztnode.netstack.tcp.TcpConnection` makes
every change through one method that looks the pair up in :data:`TRANSITIONS` and refuses
(as an internal error: a bug in the TCB, never the peer's doing) any pair not there. The states
in which each API call is legal are data here too, so the checks read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Final


class TcpState(IntEnum):
    """RFC 9293 section 3.3.2."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


S = TcpState

#: (from, to) -> what causes it. RFC 9293 figure 5, then the transitions its text adds.
TRANSITIONS: Final[dict[tuple[TcpState, TcpState], str]] = {
    # Figure 5.
    (S.CLOSED, S.LISTEN): "passive OPEN",
    (S.CLOSED, S.SYN_SENT): "active OPEN, send SYN",
    (S.LISTEN, S.SYN_RECEIVED): "rcv SYN, send SYN,ACK",
    (S.LISTEN, S.SYN_SENT): "SEND on a listening connection, send SYN",
    (S.LISTEN, S.CLOSED): "CLOSE",
    (S.SYN_SENT, S.SYN_RECEIVED): "rcv SYN (simultaneous open), send SYN,ACK",
    (S.SYN_SENT, S.ESTABLISHED): "rcv SYN,ACK, send ACK",
    (S.SYN_SENT, S.CLOSED): "CLOSE, or the handshake timed out",
    (S.SYN_RECEIVED, S.ESTABLISHED): "rcv ACK of SYN",
    (S.SYN_RECEIVED, S.FIN_WAIT_1): "CLOSE, send FIN",
    (S.ESTABLISHED, S.FIN_WAIT_1): "CLOSE, send FIN",
    (S.ESTABLISHED, S.CLOSE_WAIT): "rcv FIN, send ACK",
    (S.FIN_WAIT_1, S.FIN_WAIT_2): "rcv ACK of FIN",
    (S.FIN_WAIT_1, S.CLOSING): "rcv FIN (simultaneous close), send ACK",
    (S.FIN_WAIT_2, S.TIME_WAIT): "rcv FIN, send ACK",
    (S.CLOSE_WAIT, S.LAST_ACK): "CLOSE, send FIN",
    (S.CLOSING, S.TIME_WAIT): "rcv ACK of FIN",
    (S.LAST_ACK, S.CLOSED): "rcv ACK of FIN",
    (S.TIME_WAIT, S.CLOSED): "2 MSL timeout",
    # RFC 9293 3.10.7.4 (fourth): a RST in SYN-RECEIVED of a passive open returns to LISTEN.
    (S.SYN_RECEIVED, S.LISTEN): "rcv RST after a passive open",
    # 3.10.7.4 (eighth): a FIN in SYN-RECEIVED enters CLOSE-WAIT like one in ESTABLISHED.
    (S.SYN_RECEIVED, S.CLOSE_WAIT): "rcv FIN, send ACK",
    # 3.10.7.4 (eighth): a FIN that also acknowledges ours skips CLOSING.
    (S.FIN_WAIT_1, S.TIME_WAIT): "rcv FIN,ACK of our FIN, send ACK",
}

#: Every state may end in CLOSED (RFC 9293 3.10.7: RST, ABORT, user timeout, retransmission
#: limit delete the TCB); named apart so the figure's own edges stay readable above.
ABORTABLE: Final = frozenset(TcpState) - {TcpState.CLOSED}

#: RFC 9293's synchronized states: a segment is judged by sequence numbers and a RST is sent
#: on abort.
SYNCHRONIZED: Final = frozenset(
    {
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.CLOSE_WAIT,
        S.CLOSING,
        S.LAST_ACK,
        S.TIME_WAIT,
    }
)

# Where each API call is legal (RFC 9293 3.10).
CAN_LISTEN: Final = frozenset({S.CLOSED})
CAN_CONNECT: Final = frozenset({S.CLOSED, S.LISTEN})
#: SEND queues data before the handshake completes (3.10.2) and until our FIN.
CAN_SEND: Final = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
#: Segment text is accepted into the receive buffer (3.10.7.4 "seventh").
RECEIVES_TEXT: Final = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.SYN_RECEIVED})
#: CLOSE with our FIN still to send (3.10.4): where the connection goes.
AFTER_CLOSE: Final = {
    S.SYN_RECEIVED: S.FIN_WAIT_1,
    S.ESTABLISHED: S.FIN_WAIT_1,
    S.CLOSE_WAIT: S.LAST_ACK,
}
#: Keepalive probes an idle peer in these (RFC 1122 4.2.3.6: the connection is open both ways
#: or the peer alone has closed its side).
KEEPALIVE_STATES: Final = frozenset({S.ESTABLISHED, S.CLOSE_WAIT})
#: ABORT sends a RST from these (3.10.5).
ABORT_SENDS_RST: Final = frozenset(
    {S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT}
)


#: Called with every transition checked (tests record which edges conversations take): a hook,
#: since this module is compiled and its callers no longer look ``check_transition`` up by name.
TRANSITION_OBSERVERS: Final[list[Callable[[TcpState, TcpState], None]]] = []


def check_transition(old: TcpState, new: TcpState) -> None:
    """Raise AssertionError for a transition that is neither in the figure nor an abort: a bug
    in the TCB (the peer cannot cause it)."""
    for observe in TRANSITION_OBSERVERS:
        observe(old, new)
    if (old, new) not in TRANSITIONS and not (new is S.CLOSED and old in ABORTABLE):
        raise AssertionError(f"TCP state machine: no transition {old.name} -> {new.name}")
