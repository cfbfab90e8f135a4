"""WHOIS and the queues of packets waiting for an identity (Switch's WHOIS, TX and RX queues).

A packet to an address we have no identity for waits in :attr:`WhoisQueue.tx_queue`; one from an
unknown sender waits in :attr:`WhoisQueue.rx_queue`; both are bounded (``TX_QUEUE_SIZE``,
``RX_QUEUE_SIZE``) and time out after ``QUEUE_TIMEOUT``, counted. WHOIS requests go to the best
upstream, at most every ``WHOIS_RETRY_DELAY`` per address, and their memos are bounded by
``MAX_WHOIS_PENDING``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.timing import (
    MAX_WHOIS_PENDING,
    QUEUE_TIMEOUT,
    RX_QUEUE_SIZE,
    TX_QUEUE_SIZE,
    WHOIS_RETRY_DELAY,
)
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError
from ztnode.identity import Identity
from ztnode.wire.buffer import Writer
from ztnode.wire.constants import (
    Verb,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node


@dataclass
class _TxEntry:
    dest: int
    verb: int
    payload: bytes
    compress: bool
    created: int
    echo_request: int | None = None


@dataclass
class _RxEntry:
    source: int
    packet: bytearray
    path: Path
    created: int


@dataclass
class _Whois:
    first: int
    last_sent: int


class WhoisQueue:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self.pending: dict[int, _Whois] = {}
        self.tx_queue: deque[_TxEntry] = deque()
        self.rx_queue: deque[_RxEntry] = deque()
        self.next_tick: int | None = None

    def queue_tx(
        self,
        dest: int,
        verb: int,
        payload: bytes,
        now: int,
        compress: bool,
        echo_request: int | None,
        *,
        ask: bool,
    ) -> None:
        """Keep a packet for a peer with no identity (``ask``: send WHOIS) or no route yet; the
        oldest waiting one is dropped beyond ``TX_QUEUE_SIZE``."""
        if len(self.tx_queue) >= TX_QUEUE_SIZE:
            self.tx_queue.popleft()
        self.tx_queue.append(_TxEntry(dest, verb, payload, compress, now, echo_request))
        self.arm(now)
        if ask:
            self.request(dest, now)

    def peer_added(self, now: int) -> None:
        """A new peer: whatever waits may now go out or be decoded, on a tick due at once."""
        if self.rx_queue or self.tx_queue:
            self.next_tick = now

    def request(self, address: int, now: int) -> None:
        w = self.pending.get(address)
        if w is None:
            if len(self.pending) >= MAX_WHOIS_PENDING:
                del self.pending[next(iter(self.pending))]
            self.pending[address] = w = _Whois(now, -(10**12))
        if now - w.last_sent < WHOIS_RETRY_DELAY:
            self.arm(now)
            return
        up = self.rt.switch.best_upstream(now, exclude=address)
        if up is not None:
            w.last_sent = now
            body = Writer().address(address).getvalue()
            path = up.best_path(now)
            if path is not None:
                self.rt.switch.send_on(up, path, Verb.WHOIS, body, now, trusted=True)
        self.arm(now)

    def answered(self, ident: Identity, now: int) -> None:
        """OK(WHOIS) from a root: trusted without validation, as in the reference (9.3)."""
        if not self.rt.peer_room(ident.address):
            self.pending.pop(ident.address, None)
            return
        try:
            key = SymmetricKey(self.rt.identity.agree(ident))
        except CryptoError:
            self.rt.counters.drop(Drop.IDENTITY_INVALID)
            return
        self.rt.add_peer(ident, key, now)
        self.pending.pop(ident.address, None)
        self.flush_for(ident.address, now)

    def park(self, src: int, buf: bytearray, path: Path, now: int) -> None:
        if len(self.rx_queue) >= RX_QUEUE_SIZE:
            self.rx_queue.popleft()
            self.rt.counters.drop(Drop.UNKNOWN_PEER)
        self.rx_queue.append(_RxEntry(src, buf, path, now))
        self.request(src, now)

    def arm(self, now: int) -> None:
        if self.next_tick is None:
            self.next_tick = now + WHOIS_RETRY_DELAY

    def flush_for(self, address: int, now: int) -> None:
        rx = [e for e in self.rx_queue if e.source == address]
        if rx:
            self.rx_queue = deque(e for e in self.rx_queue if e.source != address)
            for e in rx:
                self.rt.switch.process_packet(e.packet, e.path, now)
        self.retry_tx(now)

    def retry_tx(self, now: int) -> None:
        keep: deque[_TxEntry] = deque()
        for e in self.tx_queue:
            if now - e.created >= QUEUE_TIMEOUT:
                self.rt.counters.drop(Drop.WHOIS_TIMEOUT)
                continue
            peer = self.rt.peers.get(e.dest)
            path = self.rt.switch.route(peer, now) if peer is not None else None
            if peer is None or path is None:
                keep.append(e)
                continue
            self.rt.switch.send_on(
                peer,
                path,
                e.verb,
                e.payload,
                now,
                compress=e.compress,
                echo_request=e.echo_request,
                trusted=True,  # queued by Switch.send: the same route once it is known
            )
        self.tx_queue = keep

    def tick(self, now: int) -> None:
        self.next_tick = None
        self.retry_tx(now)
        keep_rx: deque[_RxEntry] = deque()
        ready: list[_RxEntry] = []
        for e in self.rx_queue:
            if e.source in self.rt.peers:
                ready.append(e)
            elif now - e.created >= QUEUE_TIMEOUT:
                self.rt.counters.drop(Drop.WHOIS_TIMEOUT)
            else:
                keep_rx.append(e)
        self.rx_queue = keep_rx
        for e in ready:
            self.rt.switch.process_packet(e.packet, e.path, now)
        # Only addresses something still waits for are asked again (Switch::doTimerTasks);
        # any other entry is just a rate memo, forgotten after two retry delays. Re-asking for
        # every unknown source seen would turn a flood of junk into ten WHOIS each.
        wanted = dict.fromkeys(
            [*(e.source for e in self.rx_queue), *(e.dest for e in self.tx_queue)]
        )
        for a in [
            a
            for a, w in self.pending.items()
            if a in self.rt.peers
            or (a not in wanted and now - max(w.first, w.last_sent) >= 2 * WHOIS_RETRY_DELAY)
        ]:
            del self.pending[a]
        for a in wanted:
            if a not in self.rt.peers:
                self.request(a, now)
        if self.rx_queue or self.tx_queue or self.pending:
            self.next_tick = now + WHOIS_RETRY_DELAY
