"""UDP endpoints on the asyncio event loop, built for per-datagram cost.

asyncio's stock ``DatagramProtocol`` path reads every datagram into a fresh 256 KiB buffer and
returns a new ``bytes`` object through several layers; on this project's machines that costs
2.6-18 us per datagram. Here the socket is registered with ``loop.add_reader`` and, when readable,
drained with ``recvfrom_into`` into one reused buffer until it would block, handing the handler a
``memoryview`` slice (valid only during the call). That costs well under 1 us per datagram plus
the handler. Sends go straight to ``sendto`` on the non-blocking socket; only when the kernel
buffer is full are datagrams queued (bounded) and flushed from a writer callback.

Where the C accelerator is built (Linux), the node service switches its endpoints to C bursts
(:meth:`UdpEndpoint.enable_bursts`, :mod:`ztnode.transport.burst`): one ``recvmmsg`` per burst,
with reassembly, decryption and TCP coalescing done before Python sees the records. Sends then
go through the accelerator's ``sendto`` with the destination packed once (``socket.sendto``
parses the address tuple and drops the GIL on every datagram: about 1 700 instructions).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ztnode import accel
from ztnode.transport import burst as _burst

Addr = tuple[str, int]
DatagramHandler = Callable[[memoryview, Addr], None]

RECV_BUFFER_SIZE = 65536  # larger than any UDP payload, so nothing is ever truncated
MAX_DRAIN_PER_WAKEUP = 256  # bound the work per callback so other tasks get a turn
# Within a long burst the owner still flushes every few datagrams: a TCP receiver that held its
# ACKs until the whole burst (often a whole window) was read would stall its sender meanwhile.
FLUSH_EVERY = 16
MAX_SEND_QUEUE = 1024  # datagrams held while the kernel buffer is full; older ones are dropped
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
#: Destinations whose packed socket address an endpoint keeps (cleared when full).
SOCKADDR_CACHE = 4096

_fast: Final[Any] = accel.fast_calls()
_fast_sendto: Final[Any] = getattr(_fast, "sendto", None)
_fast_sockaddr: Final[Any] = getattr(_fast, "sockaddr", None)


@dataclass
class EndpointStats:
    received: int = 0
    sent: int = 0
    send_queued: int = 0
    send_dropped: int = 0
    send_errors: int = 0
    receive_errors: int = 0


class UdpEndpoint:
    """One bound UDP socket, read by draining and written directly.

    The handler must not keep the memoryview past its return (copy what it needs). Errors the
    kernel reports on receive (ICMP unreachable surfacing as ECONNREFUSED, for example) are
    counted, never raised into the loop.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: DatagramHandler,
        loop: asyncio.AbstractEventLoop | None = None,
        batch_done: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self.handler = handler
        #: Called once after each drained burst: the owner flushes its output once per burst
        #: instead of once per datagram (a TCP receiver answers a burst with fewer ACKs).
        self.batch_done = batch_done
        self.loop = loop or asyncio.get_running_loop()
        self.stats = EndpointStats()
        self._buf = bytearray(RECV_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._pending: collections.deque[tuple[bytes, Addr]] = collections.deque()
        self._reader: _burst.BurstReader | None = None
        self._sink: _burst.BurstSink | None = None
        self._writing = False
        self._closed = False
        #: Packed socket addresses by destination, for the accelerator's sendto; b"" for one
        #: only socket.sendto takes (a name, a family other than the socket's).
        self._sockaddrs: dict[Addr, bytes] = {}
        self._fast_send = (
            _fast_sendto is not None
            and type(sock) is socket.socket  # not a stand-in with a sendto of its own
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and not accel.python_paths_forced()
        )
        self._fd = sock.fileno()
        sock.setblocking(False)
        for opt, force in (
            (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None)),
            (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)),
        ):
            # The *FORCE options pass the system's cap (net.core.rmem_max) when we may (as
            # root), so a burst of junk does not overflow the buffer the legitimate traffic
            # shares; otherwise the capped size. A smaller buffer only costs bursts.
            for which in (force, opt):
                if which is None:
                    continue
                try:
                    sock.setsockopt(socket.SOL_SOCKET, which, SOCKET_BUFFER_BYTES)
                    break
                except OSError:
                    continue
        self.loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    def bind(
        cls,
        host: str,
        port: int,
        handler: DatagramHandler,
        loop: asyncio.AbstractEventLoop | None = None,
        batch_done: Callable[[], None] | None = None,
    ) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            return cls(sock, handler, loop, batch_done)
        except BaseException:
            sock.close()
            raise

    @property
    def local_address(self) -> Addr:
        name = self.sock.getsockname()
        return (name[0], name[1])

    def enable_bursts(self, sink: _burst.BurstSink, self_address: int) -> bool:
        """Read in C bursts from now on (see :mod:`ztnode.transport.burst`), handing records
        to ``sink`` (whose ``on_datagram`` replaces the handler). False, and nothing changed,
        when bursts are unavailable here."""
        if not _burst.AVAILABLE or self._closed or accel.python_paths_forced():
            return False
        self._reader = _burst.BurstReader(self.sock, self_address)
        self._sink = sink
        return True

    @property
    def burst_stats(self) -> dict[str, int] | None:
        return None if self._reader is None else self._reader.stats

    def learn_peer(self, address: int) -> None:
        """A peer was learned: its key goes to the burst reader's cache."""
        if self._reader is not None and self._sink is not None:
            self._reader.learn(address, self._sink)

    def forget_peer(self, address: int) -> None:
        """A peer went away: its key must leave the burst reader's cache."""
        if self._reader is not None:
            self._reader.forget(address)

    def _on_readable(self) -> None:
        reader = self._reader
        if reader is not None and self._sink is not None:
            self._read_bursts(reader, self._sink)
            return
        recv = self.sock.recvfrom_into
        view = self._view
        handler = self.handler
        n_done = 0
        while n_done < MAX_DRAIN_PER_WAKEUP:
            try:
                n, addr = recv(self._buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.stats.receive_errors += 1
                continue
            n_done += 1
            handler(view[:n], (addr[0], addr[1]))
            if not n_done % FLUSH_EVERY and self.batch_done is not None:
                self.batch_done()
        self.stats.received += n_done
        if n_done % FLUSH_EVERY and self.batch_done is not None:
            self.batch_done()

    def _read_bursts(self, reader: _burst.BurstReader, sink: _burst.BurstSink) -> None:
        done = 0
        for _ in range(MAX_DRAIN_PER_WAKEUP // _burst.BURST):
            try:
                got = reader.read(sink)
            except OSError:  # an ICMP error surfacing (ECONNREFUSED): counted, read on
                self.stats.receive_errors += 1
                continue
            if not got:
                break
            done += got
            if self.batch_done is not None:
                self.batch_done()
            if got < _burst.BURST:
                break  # drained: the next read would only find the socket empty
        self.stats.received += done

    def send(self, data: bytes | bytearray | memoryview, addr: Addr) -> None:
        """Send now if the kernel takes it, else queue (bounded). Never raises for I/O errors."""
        if self._closed:
            return
        if not self._pending:
            try:
                sa = self._sockaddrs.get(addr) if self._fast_send else None
                if sa is None and self._fast_send:
                    sa = self._sockaddr(addr)
                if sa:
                    _fast_sendto(self._fd, data, sa)
                else:
                    self.sock.sendto(data, addr)
                self.stats.sent += 1
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                # Unreachable networks, refused ports, a family the socket can't reach: facts
                # about one destination, counted, never an exception into protocol code.
                self.stats.send_errors += 1
                return
        if len(self._pending) >= MAX_SEND_QUEUE:
            self._pending.popleft()
            self.stats.send_dropped += 1
        self._pending.append((bytes(data), addr))
        self.stats.send_queued += 1
        if not self._writing:
            self._writing = True
            self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _sockaddr(self, addr: Addr) -> bytes:
        """``addr`` packed for the accelerator's sendto (kept), or b"" where socket.sendto
        must parse it: anything but an IP literal of the socket's family (its errors, and a
        name's lookup, stay socket.sendto's)."""
        host, port = addr
        v6 = self.sock.family == socket.AF_INET6
        try:
            ip, _, scope = host.partition("%") if v6 else (host, "", "")
            packed = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, ip)
            scope_id = (
                (int(scope) if scope.isdigit() else socket.if_nametoindex(scope)) if scope else 0
            )
            sa: bytes = _fast_sockaddr(packed, port, scope_id)
        except (OSError, ValueError, TypeError, OverflowError, AttributeError):
            sa = b""
        if len(self._sockaddrs) >= SOCKADDR_CACHE:
            self._sockaddrs.clear()
        self._sockaddrs[addr] = sa
        return sa

    def _on_writable(self) -> None:
        while self._pending:
            data, addr = self._pending[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.send_errors += 1
            else:
                self.stats.sent += 1
            self._pending.popleft()
        self.loop.remove_writer(self.sock.fileno())
        self._writing = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            if self._writing:
                self.loop.remove_writer(fd)
        with contextlib.suppress(BufferError):  # a handler kept a slice; freed with it
            self._view.release()
        if self._reader is not None:
            with contextlib.suppress(BufferError):
                self._reader.close()
        self.sock.close()
