"""Blocking sockets on a ZeroTier network, shaped like the stdlib's :class:`socket.socket`.

What users import (via ``ztnode``)::

    with ztnode.BlockingNode("zt-home") as node:
        net = node.join(0x8056C2E21C000001)
        with net.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.connect(("10.147.20.5", 80))
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print(s.recv(65536))

        conn = http.client.HTTPConnection("10.147.20.5", 80)
        conn._create_connection = net.create_connection  # http.client over ZeroTier

        tls = ssl.create_default_context().wrap_socket(net.create_connection((host, 443)),
                                                        server_hostname=host)  # TLS too

Programs that take a socket object (``http.client`` as above, ``socketserver`` with its
``socket`` attribute replaced, ``selectors`` loops) work unchanged: methods, flags, timeouts
and the ``OSError`` subclasses with their errno values follow the stdlib on Linux.

**Threads.** The asyncio :class:`~ztnode.sockets.aio.Node` runs on an event loop in one
background thread, the only thread of this facade. Socket calls run in whatever threads the
program uses; they never touch the transports but post to the loop (``call_soon_threadsafe``),
and the loop's protocol callbacks update per-socket state under a ``threading.Condition`` that
blocked callers wait on. A send is posted without waiting for the loop (the caller checks the
room itself), so it costs one wake-up of the loop thread, not a round trip.

**Readiness descriptor.** ``fileno()`` is one end ``a`` of a private ``socketpair()``
``(a, b)``, so that ``select``/``poll``/``selectors`` wait on ztnode sockets beside OS sockets:

* ``a`` is *readable* exactly while ``recv``/``accept`` would not block (data, EOF, an error, a
  queued connection): one byte is sent from ``b`` when that starts and read back when it ends;
* ``a`` is *writable* exactly while ``send`` would not block: when the send room runs out (or a
  non-blocking ``connect`` is in progress) ``a``'s minimal send buffer is filled, which makes
  it unwritable, and when room returns ``b`` reads that filler, which makes it writable again.

Both bits are recomputed under the socket's lock by whichever thread changed the state (the
loop thread when data, EOF, errors or send room arrive; the caller when ``recv``, ``accept`` or
``send`` used them up), before waiters are notified. So the descriptor is level-triggered like
a kernel socket's: it is readable whenever something waits, and stops being readable as soon as
nothing does.
"""

from __future__ import annotations

from ztnode.sockets.blocking import tls as _tls
from ztnode.sockets.blocking.facade import Socket
from ztnode.sockets.blocking.loop import LoopThread
from ztnode.sockets.blocking.node import BlockingNetwork, BlockingNode
from ztnode.sockets.blocking.tls import TlsSocket

_tls.install()  # context.wrap_socket() takes ztnode sockets from now on (see blocking/tls.py)

__all__ = ["BlockingNetwork", "BlockingNode", "LoopThread", "Socket", "TlsSocket"]
