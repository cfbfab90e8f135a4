"""Ready-made ends of Ethernet segments for ``network.bridge(port)``: a Linux TAP device and a
QEMU stream socket.

Why these two: a TAP device puts a kernel's own interface (and whatever a Linux bridge joins to
it) on a ZeroTier network through ztnode, as ZeroTierOne's bridging does, and needs privileges
(CAP_NET_ADMIN) only to create the device; a QEMU stream socket (``-netdev stream`` or the older
``-netdev socket``: each frame preceded by its length, four bytes big-endian) puts a virtual
machine on a network with no privileges at all. Any object with the three methods of
:class:`FramePort` is a port too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import struct
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("ztnode.sockets")

__all__ = ["FramePort", "StreamPort", "TapPort"]

Deliver = Callable[[bytes], None]

_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_MAX_FRAME = 65_536


class FramePort(Protocol):
    """The segment's end: ``open`` starts handing each frame it reads to ``deliver``; ``send``
    puts one frame on the segment (never blocking: a frame the segment cannot take now is
    dropped, as on a full NIC queue); ``close`` ends it."""

    async def open(self, deliver: Deliver) -> None: ...

    def send(self, frame: bytes) -> None: ...

    async def close(self) -> None: ...


class TapPort:
    """A Linux TAP device (``/dev/net/tun``), made by ``open`` (CAP_NET_ADMIN), or an open TAP
    descriptor passed in (``fd``): then no privilege is needed here at all."""

    def __init__(self, name: str = "zttap%d", *, fd: int | None = None) -> None:
        self.name = name
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0

    @staticmethod
    def create(name: str = "zttap%d") -> tuple[int, str]:
        """Make a TAP device: its descriptor (non-blocking) and its name."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            req = struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI)
            got = fcntl.ioctl(fd, _TUNSETIFF, req)
        except BaseException:
            os.close(fd)
            raise
        return fd, got[:16].rstrip(b"\0").decode()

    async def open(self, deliver: Deliver) -> None:
        if self._fd is None:
            self._fd, self.name = self.create(self.name)
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        fd = self._fd

        def readable() -> None:
            for _ in range(64):  # bounded per wake-up, so the loop stays fair
                try:
                    frame = os.read(fd, _MAX_FRAME)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    log.warning("TAP %s: %s", self.name, e)
                    return
                deliver(frame)

        self._loop.add_reader(fd, readable)

    def send(self, frame: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, frame)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the interface is down; nothing to tell
                log.debug("TAP %s: %s", self.name, e)
            self.dropped += 1

    async def close(self) -> None:
        if self._fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None


class StreamPort:
    """A QEMU stream netdev's other end: frames as ``[4-byte big-endian length][frame]`` over a
    TCP or Unix stream. ``StreamPort.listen(host, port)`` waits for the VM to connect
    (``-netdev stream,id=n,addr.type=inet,addr.host=...,addr.port=...``, or the older
    ``-netdev socket,connect=host:port``); one VM at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, path: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    @classmethod
    def listen(cls, host: str = "127.0.0.1", port: int = 0) -> StreamPort:
        return cls(host, port)

    @property
    def address(self) -> tuple[str, int] | str | None:
        """Where it listens (after ``open``)."""
        if self.path is not None:
            return self.path
        if self._server is None or not self._server.sockets:
            return None
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def open(self, deliver: Deliver) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._writer is not None:
                writer.close()  # one VM at a time
                return
            self._writer = writer
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                while True:
                    (n,) = struct.unpack("!I", await reader.readexactly(4))
                    if not 14 <= n <= _MAX_FRAME:
                        log.warning("stream port: a frame of %d bytes; closing", n)
                        return
                    deliver(await reader.readexactly(n))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                self._writer = None
                writer.close()
                if task is not None:
                    self._tasks.discard(task)

        if self.path is not None:
            self._server = await asyncio.start_unix_server(serve, self.path)
        else:
            self._server = await asyncio.start_server(serve, self.host, self.port)

    def send(self, frame: bytes) -> None:
        w = self._writer
        if w is None or w.is_closing():
            self.dropped += 1
            return
        if w.transport.get_write_buffer_size() > 4 * _MAX_FRAME * 16:
            self.dropped += 1  # the VM is not reading: drop rather than queue without bound
            return
        w.write(struct.pack("!I", len(frame)) + frame)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._writer is not None:
            self._writer.close()  # the reader ends with the connection, not by cancellation
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2.0)
            for t in stuck:
                t.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
