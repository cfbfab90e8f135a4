"""Receive bursts in C: recvmmsg, reassembly, dearmor with cached keys, TCP coalescing.

Why: a bulk TCP transfer brings tens of thousands of datagrams a second, and the per-datagram
Python path (read, reassemble, dearmor, dispatch, Ethernet, IP, TCP) was the bottleneck of the
whole node, at about 45 us per full segment. :func:`zt_rx_burst` in the C accelerator
(``ztnode/accel/csrc/rx_burst.c``) reads up to :data:`BURST` datagrams in one ``recvmmsg``, puts
the pieces of a fragmented packet back together when they all arrived in the same burst,
authenticates and decrypts packets from peers whose key it caches, and joins consecutive
in-order segments of one TCP flow carried in FRAMEs into one large segment (Linux's GRO), with
fresh IP and TCP checksums after verifying every original one. Python then does its per-packet
work once per joined run instead of once per segment.

Nothing here decides protocol questions. What the C side does not handle plainly (relayed
packets, pieces of packets split across bursts, unknown peers, HELLO, cipher 0 or 2, a MAC that
fails with the cached key) comes back as the raw datagram or the whole armored packet, and the
node's ordinary path judges it exactly as before. The key cache is only a cache: every decrypted
record names the key that opened it, and the sink refuses it unless that key is still the
peer's (a record opened with a stale key is dropped and counted; the cache entry is dropped).

Available on Linux with the accelerator built; otherwise :data:`AVAILABLE` is False and
:class:`~ztnode.transport.udp.UdpEndpoint` reads one datagram at a time.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from typing import Any, Final, Protocol

from ztnode import accel
from ztnode.crypto.keys import SymmetricKey

Addr = tuple[str, int]

DISABLE_ENV: Final = "ZTNODE_NO_BURST"


def _lib_if_usable() -> tuple[Any, Any, str | None]:
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None, None, f"disabled by {DISABLE_ENV}"
    ffi, lib = accel.ffi_and_lib()
    if lib is None:
        return None, None, f"no C accelerator ({accel.REASON})"
    if not lib.zt_rx_supported():
        return None, None, "recvmmsg is not available on this platform"
    return ffi, lib, None


_ffi, _lib, REASON = _lib_if_usable()
#: True when endpoints read in bursts; :data:`REASON` says why not otherwise.
AVAILABLE: Final[bool] = _lib is not None

#: Datagrams per burst. Every burst ends with the owner's flush (``batch_done``), so this is
#: also how many datagrams a TCP receiver reads before it ACKs (16 full segments).
BURST: Final = 32

_DATAGRAM: Final = _lib.ZT_RX_DATAGRAM if _lib is not None else 0
_WHOLE: Final = _lib.ZT_RX_WHOLE if _lib is not None else 1
_PLAIN: Final = _lib.ZT_RX_PLAIN if _lib is not None else 2
_TRUNCATED: Final = _lib.ZT_RX_TRUNCATED if _lib is not None else 3
#: A record as C writes it: kind, off, len, pieces, frames, wire_bytes, src, family, port,
#: ip_hi, ip_lo, scope, ids (thirteen native uint64s).
_REC: Final = struct.Struct("=13Q")


class BurstSink(Protocol):
    """Where a burst's records go (the node service implements it)."""

    def on_datagram(self, data: memoryview, remote: Addr) -> None:
        """A datagram as received; ``data`` is valid only during the call."""

    def on_whole(self, packet: bytearray, remote: Addr, pieces: int, wire_bytes: int) -> None:
        """A whole packet addressed to us, reassembled from ``pieces`` datagrams, still armored."""

    def on_plain(
        self,
        packet: bytearray,
        key: SymmetricKey,
        remote: Addr,
        pieces: int,
        wire_bytes: int,
        frames: int,
        packet_ids: tuple[int, ...] = (),
    ) -> bool:
        """A packet ``key`` authenticated and decrypted (``frames`` FRAMEs joined into one,
        whose packet ids are ``packet_ids`` when there are several).

        Return False when ``key`` is no longer the sender's key: the record is then dropped
        and the cache entry forgotten."""

    def key_for(self, address: int) -> SymmetricKey | None:
        """The current key of the peer at ``address``, to cache; None if unknown."""

    def coalescing_networks(self) -> Iterable[int]:
        """Networks whose FRAMEs may be joined: an IP stack takes them and nothing taps them."""

    def on_truncated(self, remote: Addr, wire_bytes: int) -> None:
        """A datagram longer than any ZeroTier packet could be: dropped."""


class BurstReader:
    """The C receive state of one UDP socket (see the module docstring)."""

    def __init__(self, sock: socket.socket, self_address: int) -> None:
        if _lib is None or _ffi is None:
            raise RuntimeError(f"burst receive is unavailable: {REASON}")
        rx = _lib.zt_rx_new(self_address)
        if rx == _ffi.NULL:
            raise MemoryError("zt_rx_new failed")
        self._rx = _ffi.gc(rx, _lib.zt_rx_free)
        self._stats = _lib.zt_rx_get_stats(self._rx)
        self._fd = sock.fileno()
        self._arena = bytearray(_lib.ZT_RX_ARENA)
        self._arena_c = _ffi.from_buffer(self._arena)
        self._view = memoryview(self._arena)
        self._recs = _ffi.new("zt_rx_rec[]", _lib.ZT_RX_MAX_DGRAMS)
        self._recs_mem = memoryview(_ffi.buffer(self._recs)).cast("B")
        #: Packet ids of the PLAIN records (one per packet, joined ones included).
        self._ids = _ffi.new("uint64_t[]", _lib.ZT_RX_MAX_DGRAMS)
        if _ffi.sizeof("zt_rx_rec") != _REC.size:
            raise RuntimeError("zt_rx_rec does not have the layout this module reads")
        #: Keys cached in C, kept alive here for as long as C holds their AES contexts.
        self._keys: dict[int, SymmetricKey] = {}
        self._refused: set[int] = set()  # addresses the full C table could not take
        self._addrs: dict[tuple[int, ...], Addr] = {}
        self._networks: tuple[int, ...] = ()
        self.stale_key_drops = 0

    @property
    def stats(self) -> dict[str, int]:
        s = self._stats
        return {
            "datagrams": int(s.datagrams),
            "bursts": int(s.bursts),
            "reassembled": int(s.reassembled),
            "decrypted": int(s.decrypted),
            "mac_failed": int(s.mac_failed),
            "coalesced": int(s.coalesced),
            "truncated": int(s.truncated),
            "stale_key_drops": self.stale_key_drops,
        }

    def forget(self, address: int) -> None:
        """Drop a cached key (its peer went away or changed)."""
        if _lib is not None:
            _lib.zt_rx_forget(self._rx, address)
        if self._keys.pop(address, None) is not None:
            self._refused.clear()  # a slot is free again: those turned away may take it

    def close(self) -> None:
        for address in list(self._keys):
            self.forget(address)
        self._recs_mem.release()
        self._view.release()

    def _remote(self, key: tuple[int, ...]) -> Addr:
        """``(family, port, ip_hi, ip_lo, scope)`` from a record as a socket address."""
        addr = self._addrs.get(key)
        if addr is None:
            family, port, hi, lo, scope = key
            # inet_ntop, as recvfrom itself spells addresses ("::ffff:1.2.3.4" for a mapped one).
            if family == 4:
                host = socket.inet_ntop(socket.AF_INET, lo.to_bytes(4, "big"))
            else:
                host = socket.inet_ntop(socket.AF_INET6, ((hi << 64) | lo).to_bytes(16, "big"))
                if scope:  # a link-local sender: spelled as recvfrom spells it, "fe80::1%eth0"
                    try:
                        host += "%" + socket.if_indextoname(scope)
                    except OSError:
                        host += f"%{scope}"
            addr = (host, port)
            if len(self._addrs) >= 4096:  # a bound against address-spraying senders
                self._addrs.clear()
            self._addrs[key] = addr
        return addr

    def _learn(self, address: int, sink: BurstSink) -> None:
        """Cache the sender's key after the node handled one of its packets."""
        if address in self._refused:
            return
        key = sink.key_for(address)
        if key is None or self._keys.get(address) is key:
            return
        aes = accel.aes_state(key)
        if aes is None or _lib is None:
            return
        if _lib.zt_rx_set_peer(self._rx, address, aes, key.salsa_key) != 0:
            if len(self._refused) >= 65536:  # a root with very many peers: stay bounded
                self._refused.clear()
            self._refused.add(address)
            return
        self._keys[address] = key

    def read(self, sink: BurstSink) -> int:
        """One burst: read, hand every record to ``sink``; the number of datagrams read.

        0 means the socket had nothing. Raises OSError for a socket error other than "would
        block" (the caller counts it)."""
        assert _lib is not None
        nets = tuple(sink.coalescing_networks())
        if nets != self._networks:
            if _lib.zt_rx_set_networks(self._rx, list(nets), len(nets)) != 0:
                nets = ()
                _lib.zt_rx_set_networks(self._rx, [], 0)
            self._networks = nets
        before = self._stats.datagrams
        n = _lib.zt_rx_burst(
            self._rx,
            self._fd,
            self._arena_c,
            len(self._arena),
            self._recs,
            _lib.ZT_RX_MAX_DGRAMS,
            self._ids,
            BURST,
            1 if nets else 0,
        )
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        view = self._view
        remote = self._remote
        ids = self._ids
        for kind, off, size, pieces, frames, wire, src, *where, first in _REC.iter_unpack(
            self._recs_mem[: n * _REC.size]
        ):
            key = tuple(where)
            if kind == _PLAIN:
                k = self._keys.get(src)
                packet = bytearray(view[off : off + size])
                joined = tuple(ids[first : first + frames]) if frames > 1 else ()
                if k is None or not sink.on_plain(
                    packet, k, remote(key), pieces, wire, frames, joined
                ):
                    self.stale_key_drops += 1
                    self.forget(src)
            elif kind == _DATAGRAM:
                sink.on_datagram(view[off : off + size], remote(key))
            elif kind == _WHOLE:
                sink.on_whole(bytearray(view[off : off + size]), remote(key), pieces, wire)
                self._learn(src, sink)
            else:
                sink.on_truncated(remote(key), wire)
        return int(self._stats.datagrams - before)


__all__ = ["AVAILABLE", "BURST", "DISABLE_ENV", "REASON", "BurstReader", "BurstSink"]
