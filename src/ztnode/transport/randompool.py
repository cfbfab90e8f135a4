"""The node's random bytes, read from the OS a page at a time.

Why: the node asks for 8 random bytes per packet it sends (the packet id, which is also the
cipher's nonce), and ``os.urandom`` is one ``getrandom`` system call per request: about as much
as the rest of a small packet's armor. Reading 4 KiB per call and handing out slices keeps the
bytes exactly as good (they are the kernel's CSPRNG output, each byte handed out once) for one
system call per 512 packets.

What must never happen is two processes handing out the same bytes: a fork would copy the
unread part of the page into the child, so a fork in the child starts a new generation
(``os.register_at_fork``: ``os.fork`` and multiprocessing's fork both run it) and a pool hands
out nothing of a page read in another generation.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: Bytes read from the OS per refill.
PAGE = 4096
#: Requests at least this long go to the OS directly (keys, seeds): the pool serves packets.
DIRECT = 256

#: Forks this process descends from (counted in each child), so a page read before a fork is
#: never used after it. A list: compiled code reads a module's mutable global through it.
_generation: list[int] = [0]


class RandomPool:
    """A ``random_bytes(n)`` callable over the OS's random source (``os.urandom`` by default);
    not for use from two threads at once (the node and its host run on one)."""

    def __init__(self, source: Callable[[int], bytes] = os.urandom) -> None:
        self._source = source
        self._page = b""
        self._at = 0
        self._generation = _generation[0]

    def __call__(self, n: int) -> bytes:
        at = self._at
        end = at + n
        if end <= len(self._page) and self._generation == _generation[0]:
            self._at = end
            return self._page[at:end]
        if n >= DIRECT or n < 0:
            return self._source(n)
        self._page = self._source(PAGE)
        self._generation = _generation[0]
        self._at = n
        return self._page[:n]


def _after_fork_in_child() -> None:
    _generation[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["DIRECT", "PAGE", "RandomPool"]
