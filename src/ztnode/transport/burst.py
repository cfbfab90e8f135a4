"""Receive bursts in C: recvmmsg, reassembly, dearmor with cached keys, TCP coalescing.

Why: a bulk TCP transfer brings tens of thousands of datagrams a second, and the per-datagram
Python path (read, reassemble, dearmor, dispatch, Ethernet, IP, TCP) was the bottleneck of the
whole node, at about 45 us per full segment. :func:`zt_rx_burst` in the C accelerator
(``ztnode/accel/csrc/rx_burst.c``) reads up to :data:`BURST` datagrams in one ``recvmmsg``, puts
the pieces of a fragmented packet back together when they all arrived in the same burst,
authenticates and decrypts packets from peers whose key it caches, and joins consecutive
in-order segments of one TCP flow carried in FRAMEs into one large segment (Linux's GRO), with
fresh IP and TCP checksums after verifying every original one. Python then does its per-packet
work once per joined run instead of once per segment. A record of such a segment, joined or not,
says so (``ZT_RX_PLAIN_CHECKED``, ``checked`` for the sink): its checksums were verified once,
here, and the stack does not sum them again; so does a record of one UDP datagram whose IP and
UDP checksums C verified on the way.

It is also the node's first line against floods (``rx_guard.c``): datagrams that cannot be
ZeroTier packets for us are refused in C and counted by reason (:data:`DROP_REASONS`, handed to
the sink as counts after each burst); pieces of fragmented packets wait in a bounded C table,
where orphans cannot push out the packets of known peers; a packet that fails its MAC under a
cached key is a forgery and goes no further; and what C cannot authenticate (HELLO from a new
identity, packets from peers whose key is not cached, packets to relay, beacons) reaches Python
only through a token bucket per source prefix and one per socket (:class:`GatePolicy`). Traffic
from known peers is authenticated in C and never waits behind that. Cipher-2 packets (trusted
paths, :mod:`ztnode.core.trusted`) carry no MAC: C admits them by the node's own table of
trusted networks (``BurstSink.physical_paths``, handed to C when it changes), refuses them
otherwise, and treats those it admits from a cached peer as authenticated (joined like the
rest); the node checks each record's ID and source again.

Nothing here decides protocol questions: what passes comes back as the raw datagram or the whole
armored packet, and the node's ordinary path judges it exactly as before. The key cache is only
a cache: every decrypted record names the key that opened it, and the sink refuses it unless
that key is still the peer's (a record opened with a stale key is dropped and counted; the cache
entry is dropped). The node forgets a peer's key here whenever the peer goes, which is what
makes a MAC failure under a cached key a forgery.

Available on Linux with the accelerator built; otherwise :data:`AVAILABLE` is False and
:class:`~ztnode.transport.udp.UdpEndpoint` reads one datagram at a time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ztnode import accel
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.crypto.keys import SymmetricKey

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # mypyc reads the decorator at build time; at run time it does nothing

    def mypyc_attr(*_args: object, **_attrs: object) -> Callable[[type], type]:  # type: ignore[misc]
        return lambda cls: cls


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


_USABLE: Final = _lib_if_usable()
# Final: the compiled build reads them as C statics, not from the module's dict.
_ffi: Final[Any] = _USABLE[0]
_lib: Final[Any] = _USABLE[1]
REASON: Final[str | None] = _USABLE[2]
#: True when endpoints read in bursts; :data:`REASON` says why not otherwise.
AVAILABLE: Final[bool] = _lib is not None

#: Datagrams per burst. Every burst ends with the owner's flush (``batch_done``), so this is
#: also how many datagrams a TCP receiver reads before it ACKs (16 full segments).
BURST: Final = 32

# Bound once: an attribute of a cffi library costs about what a small C call does.
_zt_rx_burst: Final[Any] = _lib.zt_rx_burst if _lib is not None else None
# The burst and its authenticated records' hand-over as direct CPython calls (accel/csrc/fast.c):
# a burst of one small packet then costs a few thousand instructions less in glue (cffi's
# argument conversion, the records unpacked and indexed in Python). None where missing; the
# cffi call and the Python loop then run, the same computation (checked against each other).
_fast: Final[Any] = accel.fast_calls() if _lib is not None else None
_fast_read: Final[Any] = _fast.read if _fast is not None else None
_fast_plain_run: Final[Any] = _fast.plain_run if _fast is not None else None
_MAX_DGRAMS: Final[int] = _lib.ZT_RX_MAX_DGRAMS if _lib is not None else 64
_DATAGRAM: Final[int] = _lib.ZT_RX_DATAGRAM if _lib is not None else 0
_WHOLE: Final[int] = _lib.ZT_RX_WHOLE if _lib is not None else 1
_PLAIN: Final[int] = _lib.ZT_RX_PLAIN if _lib is not None else 2
_PLAIN_CHECKED: Final[int] = _lib.ZT_RX_PLAIN_CHECKED if _lib is not None else 3
#: A record as C writes it: kind, off, len, pieces, frames, wire_bytes, src, family, port,
#: ip_hi, ip_lo, scope, ids, pid, nwid, frame (sixteen native uint64s).
_REC: Final = struct.Struct("=16Q")
#: Where ``zt_rx_stats``'s datagram and drop counters sit, in 8-byte words.
_W_DATAGRAMS: Final[int] = _ffi.offsetof("zt_rx_stats", "datagrams") // 8 if _ffi is not None else 0
_W_DROPPED: Final[int] = _ffi.offsetof("zt_rx_stats", "dropped") // 8 if _ffi is not None else 0


#: The C drop counters (fields of ``zt_rx_stats``), each with the node's drop reason name.
DROP_REASONS: Final = {
    "truncated": "too_long",
    "too_long": "too_long",
    "too_short": "too_short",
    "from_self": "from_self",
    "bad_fragment": "bad_fragment",
    "dup_fragment": "duplicate_fragment",
    "reasm_evicted": "reassembly_evicted",
    "reasm_expired": "reassembly_expired",
    "bad_cipher": "unsupported_cipher",
    "mac_dropped": "mac_failed",
    "gated_prefix": "unauthenticated_gate",
    "gated_global": "unauthenticated_gate",
    "not_for_us": "not_for_us",
    "tpath_refused": "trusted_path_refused",
}


@dataclass(frozen=True)
class GatePolicy:
    """What C passes to Python unauthenticated: records per second (and burst) per source
    prefix (IPv4 /24, IPv6 /48) and for the whole socket. A burst of 0 turns a gate off.

    The defaults bound the Python path to a few percent of one core of unauthenticated work
    (tens of microseconds each: a HELLO's identity decoded, a WHOIS queued), whatever a flood
    offers, and still admit thousands of new peers a second to a root; a new peer's first
    packets may be refused while a flood lasts, and its retries get through."""

    prefix_rate: int = _lib.ZT_RX_GATE_PREFIX_RATE if _lib is not None else 200
    prefix_burst: int = _lib.ZT_RX_GATE_PREFIX_BURST if _lib is not None else 400
    global_rate: int = _lib.ZT_RX_GATE_GLOBAL_RATE if _lib is not None else 2000
    global_burst: int = _lib.ZT_RX_GATE_GLOBAL_BURST if _lib is not None else 4000


_NO_TRUSTED_PATHS: Final = PhysicalPathConfig()


@mypyc_attr(allow_interpreted_subclasses=True)
class BurstSink:
    """Where a burst's records go (the node service's sink subclasses it; so do the tests').

    A class, not a ``Protocol``: the reader calls five of these per burst, and through a
    ``Protocol`` each was a generic method call in the compiled build (a few hundred
    instructions apiece); on a native base class they are direct calls. This base is the sink
    that takes nothing: no keys, no networks to join, every record dropped."""

    def on_datagram(self, data: memoryview, remote: Addr) -> None:
        """A datagram as received; ``data`` is valid only during the call."""
        return None

    def on_whole(self, packet: bytearray, remote: Addr, pieces: int, wire_bytes: int) -> None:
        """A whole packet addressed to us, reassembled from ``pieces`` datagrams, still armored."""
        return None

    def on_plain(
        self,
        packet: bytearray,
        key: SymmetricKey,
        remote: Addr,
        pieces: int,
        wire_bytes: int,
        frames: int,
        packet_ids: tuple[int, ...] = (),
        checked: bool = False,
        src: int = -1,
        pid: int = -1,
        nwid: int = -1,
    ) -> bool:
        """A packet ``key`` authenticated and decrypted (``frames`` FRAMEs joined into one,
        whose packet ids are ``packet_ids`` when there are several). ``checked``: a FRAME
        carrying a TCP segment whose IPv4 header and TCP checksums C verified (or wrote, for
        joined segments); the stack need not sum them again. ``src``, ``pid``: the sender's
        address and the packet's id (the first one's, joined), as C read them from the header;
        ``nwid``: the network id of an uncompressed FRAME, -1 for anything else (the node then
        reads these itself: an int parsed from a slice of a bytearray costs about 1 800
        instructions in the compiled build, three a packet).

        Return False when ``key`` is no longer the sender's key: the record is then dropped
        and the cache entry forgotten."""
        return True

    def key_for(self, address: int) -> SymmetricKey | None:
        """The current key of the peer at ``address``, to cache; None if unknown."""
        return None

    def coalescing_networks(self) -> Iterable[int]:
        """Networks whose FRAMEs may be joined: an IP stack takes them and nothing taps them."""
        return ()

    def relaying(self) -> bool:
        """True for a root: packets for peers whose key is cached then pass ungated."""
        return False

    def physical_paths(self) -> PhysicalPathConfig:
        """The node's physical-path configuration (its trusted networks; the same object
        until it changes)."""
        return _NO_TRUSTED_PATHS

    def now(self) -> int:
        """The clock (ms) the gates and the reassembly table run on."""
        return 0

    def on_dropped(self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int) -> None:
        """Datagrams refused in C since the last call: counts by drop reason name."""
        return None


def c_trusted_paths(config: PhysicalPathConfig) -> tuple[Any, int]:
    """``config``'s trusted networks as the C table (an owning ``zt_tpath[]``) and its length."""
    assert _ffi is not None
    trusted = config.trusted
    table = _ffi.new("zt_tpath[]", max(1, len(trusted)))
    for i, p in enumerate(trusted):
        net = p.network
        table[i].id = p.trusted_path_id
        table[i].bits = net.prefixlen
        table[i].v6 = 1 if net.version == 6 else 0
        packed = net.network_address.packed
        _ffi.memmove(table[i].net, packed, len(packed))
    return table, len(trusted)


def _addr_key(family: int, port: int, hi: int, lo: int, scope: int) -> object:
    """A sender's key in the reader's address table: the IPv4 address and port as one int, an
    IPv6 sender's (address halves, port, scope) as a tuple. fast.c's ``addr_key`` makes the
    same, so both paths share the table."""
    if family == 4:
        return lo << 16 | port
    return (hi, lo, port, scope)


class BurstReader:
    """The C receive state of one UDP socket (see the module docstring)."""

    def __init__(self, sock: socket.socket, self_address: int) -> None:
        if _lib is None or _ffi is None:
            raise RuntimeError(f"burst receive is unavailable: {REASON}")
        # The secret that keys the engine's table hashes (SipHash), so no sender can aim at a set.
        rx = _lib.zt_rx_new(self_address, os.urandom(16))
        if rx == _ffi.NULL:
            raise MemoryError("zt_rx_new failed")
        self._rx = _ffi.gc(rx, _lib.zt_rx_free)
        self._stats = _lib.zt_rx_get_stats(self._rx)
        # The two counters read on every burst, as native words: a cffi struct field read is a
        # generic attribute lookup in the compiled build (~340 instructions), an index ~150.
        self._stat_words = memoryview(_ffi.buffer(self._stats, _ffi.sizeof("zt_rx_stats"))).cast(
            "Q"
        )
        self._fd = sock.fileno()
        self._arena = bytearray(_lib.ZT_RX_ARENA)
        self._arena_c = _ffi.from_buffer(self._arena)
        #: Whether read() uses the direct calls (tests turn it off to compare the two).
        self.fast = _fast is not None
        self._view = memoryview(self._arena)
        self._recs = _ffi.new("zt_rx_rec[]", _lib.ZT_RX_MAX_DGRAMS)
        self._recs_mem = memoryview(_ffi.buffer(self._recs)).cast("B")
        #: Packet ids of the PLAIN records (one per packet, joined ones included).
        self._ids = _ffi.new("uint64_t[]", _lib.ZT_RX_MAX_DGRAMS)
        if _ffi.sizeof("zt_rx_rec") != _REC.size:
            raise RuntimeError("zt_rx_rec does not have the layout this module reads")
        # What the direct calls take, in one tuple: the C objects' addresses (kept alive by the
        # cffi objects above), the socket, the arena and the burst size.
        self._fixed = (
            int(_ffi.cast("uintptr_t", self._rx)),
            self._fd,
            self._arena,
            int(_ffi.cast("uintptr_t", self._recs)),
            int(_ffi.cast("uintptr_t", self._ids)),
            BURST,
        )
        #: Keys cached in C, kept alive here for as long as C holds their AES contexts.
        self._keys: dict[int, SymmetricKey] = {}
        self._refused: set[int] = set()  # addresses the full C table could not take
        #: Senders' socket addresses by :func:`_addr_key` (as fast.c's addr_key makes them).
        self._addrs: dict[object, Addr] = {}
        self._networks: tuple[int, ...] = ()
        self._physical = PhysicalPathConfig()
        self._relay = False
        self._policy = GatePolicy()
        self._dropped = 0
        self._counted = dict.fromkeys(DROP_REASONS, 0)
        self._dropped_bytes = 0
        self.stale_key_drops = 0
        self._closed = False

    def set_policy(self, policy: GatePolicy) -> None:
        """Change the gates' rates (their buckets start full)."""
        assert _lib is not None
        self._policy = policy
        self._apply_policy()

    def _apply_policy(self) -> None:
        assert _lib is not None
        p = self._policy
        _lib.zt_rx_set_policy(
            self._rx, self._relay, p.prefix_rate, p.prefix_burst, p.global_rate, p.global_burst
        )

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
            "dropped": int(s.dropped),
            "reassembly_held": int(s.reasm_held),
            "trusted_path_passed": int(s.tpath_passed),
            "stale_key_drops": self.stale_key_drops,
        } | {name: int(getattr(s, name)) for name in DROP_REASONS}

    def set_trusted_paths(self, config: PhysicalPathConfig) -> None:
        """The node's trusted networks, for the guard: cipher-2 packets from inside one with
        its ID pass ungated (the node checks them again), others are refused in C."""
        assert _lib is not None and _ffi is not None
        table, n = c_trusted_paths(config)
        if _lib.zt_rx_set_tpaths(self._rx, table, n) != 0:
            raise ValueError("more trusted networks than the receive engine holds")
        self._physical = config

    def forget(self, address: int) -> None:
        """Drop a cached key (its peer went away or changed)."""
        if _lib is not None:
            _lib.zt_rx_forget(self._rx, address)
        if self._keys.pop(address, None) is not None:
            self._refused.clear()  # a slot is free again: those turned away may take it

    def close(self) -> None:
        self._closed = True
        for address in list(self._keys):
            self.forget(address)
        for view in (self._recs_mem, self._stat_words, self._view):
            # Still exported while the Python loop iterates the records (a sink closing us
            # mid-burst): that one is released with its last user.
            with contextlib.suppress(BufferError):
                view.release()

    def _remote(self, family: int, port: int, hi: int, lo: int, scope: int) -> Addr:
        """A record's sender as a socket address, made once and kept by :func:`_addr_key`."""
        key = _addr_key(family, port, hi, lo, scope)
        addr = self._addrs.get(key)
        if addr is None:
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

    def learn(self, address: int, sink: BurstSink) -> None:
        """Cache a peer's key: after the node handled one of its packets, or learned it."""
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
        physical = sink.physical_paths()
        if physical is not self._physical:
            self.set_trusted_paths(physical)
        relay = sink.relaying()
        if relay != self._relay:
            self._relay = relay
            self._apply_policy()
        if self.fast:
            r: int = _fast_read(
                self._fixed, 1 if nets else 0, sink.now(), self._keys, self._addrs, sink.on_plain
            )
            if r < 0:
                raise OSError(-r, os.strerror(-r))
            n = (r >> 8) & 0xFF
            if (r & 0xFF) < (n << 1):  # C stopped short of the end: the rest from that record
                self._hand_over_rest(sink, n, r & 0xFF)
            if r & 0x10000:  # C refused some of the burst's datagrams
                self._report_drops(sink)
            return r >> 17
        words = self._stat_words
        before: int = words[_W_DATAGRAMS]
        n = _zt_rx_burst(
            self._rx,
            self._fd,
            self._arena_c,
            len(self._arena),
            self._recs,
            _MAX_DGRAMS,
            self._ids,
            BURST,
            1 if nets else 0,
            sink.now(),
        )
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        # Records unpacked whole and indexed: a starred target would build a list each.
        for rec in _REC.iter_unpack(self._recs_mem[: n * _REC.size]):
            if self._closed:  # a sink closed the reader: the rest of the burst goes with it
                break
            self._hand_over(sink, rec)
        if self._closed:  # its counters went with it: nothing more to read or report
            return 0
        if words[_W_DROPPED] != self._dropped:
            self._report_drops(sink)
        after: int = words[_W_DATAGRAMS]
        return after - before

    def _hand_over_rest(self, sink: BurstSink, n: int, stop: int) -> None:
        """The burst's records from where C stopped (``stop``: 2*i, or 2*i+1 when on_plain
        refused record i) to the end, in order: that record here, then runs of authenticated
        packets from C again, each record it stops at here."""
        while True:
            if self._closed:  # a sink closed the reader: the rest of the burst goes with it
                return
            i = stop >> 1
            rec = _REC.unpack_from(self._recs_mem, i * _REC.size)
            if stop & 1:  # on_plain refused it: the key C opened it with is stale
                self.stale_key_drops += 1
                self.forget(rec[6])
            else:
                self._hand_over(sink, rec)
            if i + 1 >= n:
                return
            stop = _fast_plain_run(self._fixed, n, i + 1, self._keys, self._addrs, sink.on_plain)
            if stop >= n << 1:
                return

    def _hand_over(self, sink: BurstSink, rec: tuple[int, ...]) -> None:
        """One record (as :data:`_REC` unpacks it) to ``sink``."""
        # Typed so the compiled build compares and adds native ints, not objects.
        kind: int = rec[0]
        off: int = rec[1]
        end = off + int(rec[2])
        addr = self._remote(rec[7], rec[8], rec[9], rec[10], rec[11])
        view = self._view
        if kind in (_PLAIN_CHECKED, _PLAIN):
            src: int = rec[6]
            frames: int = rec[4]
            k = self._keys.get(src)
            packet = bytearray(view[off:end])
            ids = self._ids
            joined = tuple(ids[rec[12] : rec[12] + frames]) if frames > 1 else ()
            if k is None or not sink.on_plain(
                packet,
                k,
                addr,
                rec[3],
                rec[5],
                frames,
                joined,
                kind == _PLAIN_CHECKED,
                src,
                rec[13],
                rec[14] if rec[15] else -1,
            ):
                self.stale_key_drops += 1
                self.forget(src)
        elif kind == _DATAGRAM:
            sink.on_datagram(view[off:end], addr)
        else:
            sink.on_whole(bytearray(view[off:end]), addr, rec[3], rec[5])
            self.learn(rec[6], sink)

    def _report_drops(self, sink: BurstSink) -> None:
        s = self._stats
        reasons: dict[str, int] = {}
        for field, reason in DROP_REASONS.items():
            now = int(getattr(s, field))
            if now != self._counted[field]:
                reasons[reason] = reasons.get(reason, 0) + now - self._counted[field]
                self._counted[field] = now
        dropped, wire = int(s.dropped), int(s.dropped_bytes)
        sink.on_dropped(reasons, dropped - self._dropped, wire - self._dropped_bytes)
        self._dropped, self._dropped_bytes = dropped, wire


__all__ = [
    "AVAILABLE",
    "BURST",
    "DISABLE_ENV",
    "DROP_REASONS",
    "REASON",
    "BurstReader",
    "BurstSink",
    "GatePolicy",
]
