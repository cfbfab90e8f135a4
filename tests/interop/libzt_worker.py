"""One libzt node per process, driven over a pipe with one JSON object per line.

libzt is a process-wide singleton, so every libzt peer in a test runs in its own ``python -m
tests.interop.libzt_worker`` subprocess. Requests are ``{"op": NAME, ...}``; each gets exactly one
reply line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The worker exits when stdin
closes, so a test that dies takes its peers with it.

Socket traffic runs as *jobs*: a request starts a daemon thread and answers ``{"job": id}`` at
once, so the pipe stays free for other requests (another job, a status poll) while bytes move;
``job_wait`` collects the outcome. Every job ends by itself after ``lifetime`` seconds (default
60), and ``stop`` ends all of them before it stops the node. Only ``zts_bsd_*`` calls are used: the
simple ``zts_tcp_*``/``zts_udp_*`` helpers of libzt 1.8.4 lose the socket they create. Addresses
travel as ``[ip, port]``; ``family`` is 4 or 6; ``rt`` (true = 10, or a priority 1..99) runs the
job's thread at SCHED_FIFO. Requests (optional fields with their defaults) and their replies:

``tcp_server {family: 4, addr: any, port, mode: "sink"|"echo"|"accept", nodelay: false,
digest: true, rt: false, lifetime: 60}``
    -> ``{job, port}`` once listening. sink and echo accept one connection (``nodelay`` sets
    TCP_NODELAY on it). Result, sink: ``{mode, peer, bytes, sha256, elapsed, data_elapsed, rt}``
    (``elapsed`` from accept to EOF, ``data_elapsed`` from the first byte; no ``sha256`` with
    ``digest`` false, which benchmarks use to keep hashing off the receiver); echo: the same
    without ``sha256``. accept (for ``tcp_client`` mode ``connects``) accepts and at once closes
    every connection until ``job_stop`` or its lifetime, both a normal end: ``{mode, accepted,
    ended: "stopped"|"lifetime", rt}``.
``tcp_client {addr, port, mode: "source"|"echo_check", bytes: 0, seed: 0, connect_tries: 20,
connect_timeout: 20, attempt_timeout: 2, close_wait: 30, window: 65536, rt: false, lifetime: 60}``
    -> ``{job}``. Sends ``pattern(seed, bytes)``. Result, source: ``{mode, connect_tries,
    connect_failures, connect_elapsed, local, bytes, sha256, send_elapsed, elapsed, peer_closed,
    unexpected_bytes, rt}``: ``connect_failures`` says why each earlier try failed, ``elapsed``
    runs from connect to the peer's close after our FIN (None if it never closed within
    ``close_wait``). echo_check: ``{mode, connect_tries, connect_failures, connect_elapsed,
    local, bytes, sha256 (of what came back), match, first_mismatch, elapsed, peer_closed,
    unexpected_bytes, rt}``.
``tcp_client {addr, port, mode: "connects", count: 10, ...}`` -> ``{job}``: first one untimed
    connection made with the retries above (routes, ARP and the peer's path may need a moment on a
    fresh network), closed, then ``count`` sequential connections, each one non-blocking connect
    of at most ``attempt_timeout`` and then closed; each timed from the call to its completion.
    Result: ``{mode, connect_tries, connect_elapsed, ms: [...], failures: [...], rt}``.
``tcp_client {addr, port, mode: "ping", count: 100, size: 1, nodelay: true, ...}`` -> ``{job}``:
    one connection to an echo server (with the retries above), then ``count`` round trips of
    ``size`` bytes, each sent once the previous one has fully come back, each timed from the send
    to the last byte received. Result: ``{mode, connect_tries, connect_elapsed, local, ms: [...],
    nodelay, rt}``. Pair it with a ``tcp_server`` echo with ``nodelay`` for a latency figure.
``tcp_server {..., mode: "echo_all"}``: accepts every connection until ``job_stop`` or its
    lifetime and echoes each on a thread of its own (``nodelay`` applies to each); result
    ``{mode, accepted, echoed_bytes, ended, rt}``. For ``tcp_client`` mode ``rps``.
``tcp_client {addr, port, mode: "rps", connections: 1, seconds: 5, size: 32, ...}`` -> ``{job}``:
    ``connections`` connections (TCP_NODELAY), each on its own thread sending ``size`` bytes and
    waiting for all of them back, again and again for ``seconds``. Result: ``{mode,
    connections, requests, elapsed, per_connection: [...], rt}``: the request/response rate of
    a small RPC protocol, against an ``echo_all`` server.
``udp_ping {addr, port, count: 100, size: 32, tries: 5, interval: 1.0, lifetime: 60}`` ->
    ``{job}``: one request resent as ``udp_request`` does until the echo server answers (lwIP
    resolves the neighbour), then ``count`` timed round trips of ``size`` bytes, each given
    ``interval`` before it counts as lost. Result: ``{ms: [...], lost, rt}``.
``udp_echo_server {family: 4, addr: any, port, rt: false, lifetime: 60}`` -> ``{job, port}`` once
    bound. Result (after ``job_stop`` or its lifetime): ``{echoed, bytes, peers, send_errors,
    ended: "stopped"|"lifetime", rt}``.
``udp_request {addr, port, payload: "" (hex), tries: 5, interval: 1.0, local_port: 0, rt: false,
lifetime: 60}`` -> ``{job}``. Result: ``{reply (hex), from, tries, rtt, local, rt}``.
``job_wait {job, wait: 30}`` / ``job_stop {job, wait: 5}`` -> ``{job, result}`` and the job is
    forgotten; an error if the job failed (a stopped TCP job fails with "stopped") or is not done
    within ``wait``.
``jobs {}`` -> ``{jobs: [{job, op, done, error}]}``.
``rt {priority: 10}`` -> ``{threads, priority}``: every thread of the process (libzt's own
    included) to SCHED_FIFO, or back to SCHED_OTHER with priority 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import itertools
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.interop.setup_libzt import LibztPaths, cache_dir

ID_BUF_LEN = 384  # ZTS_ID_STR_BUF_LEN
MAX_NUM_ROOTS = 16  # ZTS_MAX_NUM_ROOTS
MAX_ENDPOINTS_PER_ROOT = 32  # ZTS_MAX_ENDPOINTS_PER_ROOT
WORLD_MAX_LEN = 4096
SOCKADDR_STORAGE_SIZE = 28  # struct zts_sockaddr_storage (lwIP layout)
MAX_ASSIGNED_ADDRESSES = 16  # ZTS_MAX_ASSIGNED_ADDRESSES
MAX_NETWORK_ROUTES = 32  # ZT_MAX_NETWORK_ROUTES
NAME_LEN = 128  # ZT_MAX_NETWORK_SHORT_NAME_LENGTH + 1
# ``NodeService::leave`` (exported) begins by loading ``this->_node`` into the first argument of
# its call to ``Node::leave``: ``mov disp32(%rdi),%rdi``. Its displacement is where libzt's service
# object keeps the core's ``Node*`` (0x130 in the 1.8.4 wheel); see ``Worker._node_offset``.
_LEAVE_SYMBOL = "_ZN8ZeroTier11NodeService5leaveEm"
_MOV_RDI_FROM_RDI_DISP32 = b"\x48\x8b\xbf"
AF_INET, AF_INET6 = 0x02, 0x0A  # ZTS_AF_INET, ZTS_AF_INET6
NETWORK_STATUS = {
    0: "REQUESTING_CONFIGURATION",
    1: "OK",
    2: "ACCESS_DENIED",
    3: "NOT_FOUND",
    4: "PORT_ERROR",
    5: "CLIENT_TOO_OLD",
    6: "AUTHENTICATION_REQUIRED",
}


class SockaddrStorage(ctypes.Structure):
    """Linux ``struct sockaddr_storage`` (128 bytes, 8-aligned), as the core's own structs use."""

    _fields_ = [
        ("family", ctypes.c_uint16),
        ("data", ctypes.c_uint8 * 118),
        ("_align", ctypes.c_uint64),
    ]


class VirtualNetworkRoute(ctypes.Structure):
    """``ZT_VirtualNetworkRoute``: target (netmask bits in the port field), via, flags, metric."""

    _fields_ = [
        ("target", SockaddrStorage),
        ("via", SockaddrStorage),
        ("flags", ctypes.c_uint16),
        ("metric", ctypes.c_uint16),
    ]


class VirtualNetworkConfigHead(ctypes.Structure):
    """The leading fields of the core's ``ZT_VirtualNetworkConfig`` (ZeroTierOne.h, 1.8.4) up to
    its routes; the rest (multicast groups, DNS, SSO) is never read."""

    _fields_ = [
        ("nwid", ctypes.c_uint64),
        ("mac", ctypes.c_uint64),
        ("name", ctypes.c_char * NAME_LEN),
        ("status", ctypes.c_int),
        ("type", ctypes.c_int),
        ("mtu", ctypes.c_uint),
        ("dhcp", ctypes.c_int),
        ("bridge", ctypes.c_int),
        ("broadcast_enabled", ctypes.c_int),
        ("port_error", ctypes.c_int),
        ("netconf_revision", ctypes.c_ulong),
        ("assigned_address_count", ctypes.c_uint),
        ("assigned_addresses", SockaddrStorage * MAX_ASSIGNED_ADDRESSES),
        ("route_count", ctypes.c_uint),
        ("routes", VirtualNetworkRoute * MAX_NETWORK_ROUTES),
    ]


def _native_sockaddr(ss: SockaddrStorage) -> tuple[str, int] | None:
    """(ip, port) of a Linux sockaddr (the port of a ZeroTier address is its netmask bits)."""
    raw = bytes(ss)
    port = int.from_bytes(raw[2:4], "big")
    if ss.family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if ss.family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[8:24])), port
    return None


class RootSetSpec(ctypes.Structure):
    """``zts_root_set_t``: NUL-terminated identity strings and "ip/port" endpoint strings."""

    _fields_ = [
        ("public_id_str", ctypes.c_char_p * MAX_NUM_ROOTS),
        ("endpoint_ip_str", (ctypes.c_char_p * MAX_ENDPOINTS_PER_ROOT) * MAX_NUM_ROOTS),
    ]


def load(paths: LibztPaths) -> ctypes.CDLL:
    ctypes.CDLL(str(paths.shim), mode=os.RTLD_GLOBAL)
    # use_errno: lwIP leaves each socket error in the calling thread's errno (see ZtsError).
    lib = ctypes.CDLL(str(paths.libzt), mode=os.RTLD_GLOBAL, use_errno=True)
    lib.zts_id_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
    lib.zts_id_pair_is_valid.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.zts_init_from_storage.argtypes = [ctypes.c_char_p]
    lib.zts_init_set_roots.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.zts_init_set_port.argtypes = [ctypes.c_ushort]
    lib.zts_init_allow_secondary_port.argtypes = [ctypes.c_uint]
    lib.zts_init_allow_port_mapping.argtypes = [ctypes.c_uint]
    lib.zts_init_blacklist_if.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.zts_node_get_id.restype = ctypes.c_uint64
    for name in (
        "zts_net_join",
        "zts_net_leave",
        "zts_net_get_status",
        "zts_net_transport_is_ready",
    ):
        getattr(lib, name).argtypes = [ctypes.c_uint64]
    lib.zts_addr_get_all.argtypes = [
        ctypes.c_uint64,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint),
    ]
    lib.ZT_Node_address.argtypes = [ctypes.c_void_p]
    lib.ZT_Node_address.restype = ctypes.c_uint64
    lib.ZT_Node_networkConfig.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    lib.ZT_Node_networkConfig.restype = ctypes.c_void_p
    lib.ZT_Node_freeQueryResult.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.zts_util_sign_root_set.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_uint64,
        ctypes.c_uint64,
        ctypes.POINTER(RootSetSpec),
    ]
    declare_sockets(lib)
    return lib


def declare_sockets(lib: ctypes.CDLL) -> None:
    """The ``zts_bsd_*`` calls as ZeroTierSockets.h (1.8.4) declares them; socklen_t is 32 bits,
    ssize_t results must not be truncated to int."""
    c_int, vp, u32 = ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32
    size_t, ssize_t = ctypes.c_size_t, ctypes.c_ssize_t
    p_u32 = ctypes.POINTER(ctypes.c_uint32)
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "zts_bsd_socket": (c_int, [c_int, c_int, c_int]),
        "zts_bsd_bind": (c_int, [c_int, vp, u32]),
        "zts_bsd_listen": (c_int, [c_int, c_int]),
        "zts_bsd_accept": (c_int, [c_int, vp, p_u32]),
        "zts_bsd_connect": (c_int, [c_int, vp, u32]),
        "zts_bsd_setsockopt": (c_int, [c_int, c_int, c_int, vp, u32]),
        "zts_bsd_getsockopt": (c_int, [c_int, c_int, c_int, vp, p_u32]),
        "zts_bsd_getsockname": (c_int, [c_int, vp, p_u32]),
        "zts_bsd_fcntl": (c_int, [c_int, c_int, c_int]),
        "zts_bsd_poll": (c_int, [vp, ctypes.c_uint, c_int]),
        "zts_bsd_send": (ssize_t, [c_int, vp, size_t, c_int]),
        "zts_bsd_recv": (ssize_t, [c_int, vp, size_t, c_int]),
        "zts_bsd_sendto": (ssize_t, [c_int, vp, size_t, c_int, vp, u32]),
        "zts_bsd_recvfrom": (ssize_t, [c_int, vp, size_t, c_int, vp, p_u32]),
        "zts_bsd_shutdown": (c_int, [c_int, c_int]),
        "zts_bsd_close": (c_int, [c_int]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    # lwIP's resolver: ``zts_dns_set_server(uint8_t, const zts_ip_addr *)`` and
    # ``struct zts_hostent *zts_bsd_gethostbyname(const char *)``.
    lib.zts_dns_set_server.restype = c_int
    lib.zts_dns_set_server.argtypes = [ctypes.c_uint8, vp]
    lib.zts_bsd_gethostbyname.restype = ctypes.POINTER(ZtsHostent)
    lib.zts_bsd_gethostbyname.argtypes = [ctypes.c_char_p]


class ZtsHostent(ctypes.Structure):
    """``struct zts_hostent`` (lwIP's ``hostent``): the address list holds ``ip_addr_t``
    values whose first four bytes are the IPv4 address."""

    _fields_ = [
        ("h_name", ctypes.c_char_p),
        ("h_aliases", ctypes.c_void_p),
        ("h_addrtype", ctypes.c_int),
        ("h_length", ctypes.c_int),
        ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8))),
    ]


def zts_ip4_addr(ip: str) -> ctypes.Array[ctypes.c_uint8]:
    """A ``zts_ip_addr`` holding an IPv4 address: the address in the union's first four bytes
    and everything else zero, so ``type`` reads ZTS_IPADDR_TYPE_V4 (0) whether or not lwIP
    was built with an IPv6 zone byte (the union is 16 or 20 bytes)."""
    buf = (ctypes.c_uint8 * 24)()
    buf[0:4] = list(ipaddress.IPv4Address(ip).packed)
    return buf


# ------------------------------------------------------------------------------ sockets (lwIP)
# Values from libzt 1.8.4's include/ZeroTierSockets.h. Levels, options and flags are lwIP's own
# numbering (not Linux's); errno values are Linux's, so ``errno.errorcode`` names them.
SOCK_STREAM, SOCK_DGRAM = 0x0001, 0x0002  # ZTS_SOCK_STREAM, ZTS_SOCK_DGRAM
SOL_SOCKET = 0x0FFF  # ZTS_SOL_SOCKET
SO_REUSEADDR, SO_SNDTIMEO, SO_RCVTIMEO, SO_ERROR = 0x0004, 0x1005, 0x1006, 0x1007
SHUT_WR = 0x1  # ZTS_SHUT_WR
IPPROTO_TCP, TCP_NODELAY = 0x0006, 0x0001  # ZTS_IPPROTO_TCP, ZTS_TCP_NODELAY
MSG_DONTWAIT = 0x0008  # ZTS_MSG_DONTWAIT
F_SETFL, O_NONBLOCK = 0x0004, 0x1  # ZTS_F_SETFL, ZTS_O_NONBLOCK
POLLOUT, POLLERR = 0x002, 0x004  # ZTS_POLLOUT, ZTS_POLLERR
ZTS_ERR_NAMES = {-1: "ZTS_ERR_SOCKET", -2: "ZTS_ERR_SERVICE", -3: "ZTS_ERR_ARG"}
RECV_BUF = 128 * 1024  # one recv drains everything lwIP has queued, up to this
SEND_CHUNK = 64 * 1024
IO_SLICE = 0.25  # s; how often a blocked socket call wakes to look at its job's stop flag
UDP_MAX = 65535
MAX_PATTERN = 1 << 30
MAX_TIMED = 100_000  # most timed connects or round trips one job may make
MAX_CONNECTIONS = 256  # most connections one echo_all server or rps client holds


class ZtsSockaddrIn(ctypes.Structure):
    """``struct zts_sockaddr_in`` (lwIP's BSD layout: a length byte, then a one-byte family)."""

    _fields_ = [
        ("len", ctypes.c_uint8),
        ("family", ctypes.c_uint8),
        ("port", ctypes.c_uint8 * 2),  # network order
        ("addr", ctypes.c_uint8 * 4),
        ("zero", ctypes.c_uint8 * 8),
    ]


class ZtsSockaddrIn6(ctypes.Structure):
    """``struct zts_sockaddr_in6``."""

    _fields_ = [
        ("len", ctypes.c_uint8),
        ("family", ctypes.c_uint8),
        ("port", ctypes.c_uint8 * 2),  # network order
        ("flowinfo", ctypes.c_uint32),
        ("addr", ctypes.c_uint8 * 16),
        ("scope_id", ctypes.c_uint32),
    ]


class ZtsTimeval(ctypes.Structure):
    """``struct zts_timeval``, the SO_RCVTIMEO/SO_SNDTIMEO argument (this lwIP is built with the
    standard timeval form, not the nonstandard int of milliseconds)."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class ZtsPollfd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


assert ctypes.sizeof(ZtsSockaddrIn) == 16 and ctypes.sizeof(ZtsSockaddrIn6) == 28
assert ctypes.sizeof(ZtsSockaddrIn6) == SOCKADDR_STORAGE_SIZE


def pattern(seed: int, n: int) -> bytes:
    """What ``tcp_client`` sends: tests rebuild it to know the digest without trusting a worker."""
    if not 0 <= n <= MAX_PATTERN:
        raise ValueError(f"bytes must be within 0..{MAX_PATTERN}")
    return random.Random(seed).randbytes(n)


def sockaddr(ip: str, port: int) -> ZtsSockaddrIn | ZtsSockaddrIn6:
    a = ipaddress.ip_address(ip)
    sa: ZtsSockaddrIn | ZtsSockaddrIn6
    if a.version == 4:
        sa = ZtsSockaddrIn(len=ctypes.sizeof(ZtsSockaddrIn), family=AF_INET)
    else:
        sa = ZtsSockaddrIn6(len=ctypes.sizeof(ZtsSockaddrIn6), family=AF_INET6)
    sa.port[:] = port.to_bytes(2, "big")
    sa.addr[:] = a.packed
    return sa


def parse_sockaddr(raw: bytes) -> list[Any] | None:
    """[ip, port] of an lwIP sockaddr (a list, as it travels in JSON)."""
    port = int.from_bytes(raw[2:4], "big")
    if raw[1] == AF_INET:
        return [str(ipaddress.IPv4Address(raw[4:8])), port]
    if raw[1] == AF_INET6:
        return [str(ipaddress.IPv6Address(raw[8:24])), port]
    return None


def family_of(req: dict[str, Any]) -> int:
    fam = int(req.get("family", 4))
    if fam not in (4, 6):
        raise ValueError("family must be 4 or 6")
    return AF_INET if fam == 4 else AF_INET6


class ZtsError(OSError):
    """A failed ``zts_bsd_*`` call. ``errno`` is the calling thread's own: lwIP stores each
    socket error in the thread's libc errno as well as in the process-wide ``zts_errno``, which
    any other thread's socket call may overwrite in between (both are reported)."""

    def __init__(self, call: str, rc: int, err: int, global_err: int) -> None:
        name = errno.errorcode.get(err, str(err)) if err else "no errno"
        kind = ZTS_ERR_NAMES.get(rc, str(rc))
        super().__init__(err, f"{call}: {kind}, errno {err} ({name}), zts_errno {global_err}")
        self.rc = rc


class JobStopped(Exception):
    """The job was told to stop (``job_stop`` or the worker's ``stop``)."""


class JobExpired(TimeoutError):
    """The job outlived the lifetime it was started with."""


class Job:
    """One socket task on a daemon thread, bounded by ``deadline``."""

    def __init__(
        self, jid: int, op: str, lifetime: float, body: Callable[[Job], dict[str, Any]]
    ) -> None:
        self.id = jid
        self.op = op
        self.deadline = time.monotonic() + lifetime
        self.stop = threading.Event()
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self._body = body
        self.thread = threading.Thread(target=self._run, name=f"job{jid}-{op}", daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._body(self)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done.set()

    def check(self) -> None:
        """Called at every wake-up of a job's loops: ends the job once stopped or expired."""
        if self.stop.is_set():
            raise JobStopped("stopped")
        if time.monotonic() > self.deadline:
            raise JobExpired(f"{self.op} job {self.id} outlived its lifetime")

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise JobStopped("stopped")


def set_realtime(tid: int, priority: int) -> None:
    """SCHED_FIFO at ``priority`` (0: back to SCHED_OTHER) for one thread."""
    policy = os.SCHED_FIFO if priority > 0 else os.SCHED_OTHER
    os.sched_setscheduler(tid, policy, os.sched_param(priority))


def rt_priority(req: dict[str, Any]) -> int:
    rt = req.get("rt", False)
    if rt is True:
        return 10
    prio = int(rt or 0)
    if not 0 <= prio <= 99:
        raise ValueError("rt priority must be within 0..99")
    return prio


class Zsock:
    """One lwIP socket, used by one thread at a time: this lwIP is built without full-duplex
    netconns, so a socket must not be read in one thread while written in another."""

    def __init__(self, lib: ctypes.CDLL, family: int, fd: int) -> None:
        self.lib = lib
        self.family = family
        self.fd = fd

    @classmethod
    def open(cls, lib: ctypes.CDLL, family: int, kind: int) -> Zsock:
        sock = cls(lib, family, -1)
        sock.fd = sock.check("zts_bsd_socket", family, kind, 0)
        return sock

    def call(self, name: str, *args: Any) -> tuple[int, int]:
        ctypes.set_errno(0)
        rc = int(getattr(self.lib, name)(*args))
        return rc, ctypes.get_errno()

    def fail(self, name: str, rc: int, err: int) -> ZtsError:
        return ZtsError(name, rc, err, ctypes.c_int.in_dll(self.lib, "zts_errno").value)

    def check(self, name: str, *args: Any) -> int:
        rc, err = self.call(name, *args)
        if rc < 0:
            raise self.fail(name, rc, err)
        return rc

    def set_timeout(self, option: int, seconds: float) -> None:
        # lwIP counts whole milliseconds and reads 0 as "no timeout".
        usec = max(1000, round(seconds * 1e6))
        tv = ZtsTimeval(usec // 1_000_000, usec % 1_000_000)
        self.check(
            "zts_bsd_setsockopt", self.fd, SOL_SOCKET, option, ctypes.byref(tv), ctypes.sizeof(tv)
        )

    def set_int(self, level: int, option: int, value: int) -> None:
        v = ctypes.c_int(value)
        self.check("zts_bsd_setsockopt", self.fd, level, option, ctypes.byref(v), 4)

    def bind(self, ip: str, port: int) -> None:
        sa = sockaddr(ip, port)
        self.check("zts_bsd_bind", self.fd, ctypes.byref(sa), ctypes.sizeof(sa))

    def local(self) -> list[Any] | None:
        raw = (ctypes.c_uint8 * SOCKADDR_STORAGE_SIZE)()
        n = ctypes.c_uint32(SOCKADDR_STORAGE_SIZE)
        self.check("zts_bsd_getsockname", self.fd, raw, ctypes.byref(n))
        return parse_sockaddr(bytes(raw))

    def accept(self, job: Job) -> tuple[Zsock, list[Any] | None]:
        """Waits (in IO_SLICE steps: the listener has that SO_RCVTIMEO) for one connection."""
        raw = (ctypes.c_uint8 * SOCKADDR_STORAGE_SIZE)()
        while True:
            n = ctypes.c_uint32(SOCKADDR_STORAGE_SIZE)
            rc, err = self.call("zts_bsd_accept", self.fd, raw, ctypes.byref(n))
            if rc >= 0:
                return Zsock(self.lib, self.family, rc), parse_sockaddr(bytes(raw))
            if rc != -1 or err != errno.EAGAIN:
                raise self.fail("zts_bsd_accept", rc, err)
            job.check()

    def connect(self, ip: str, port: int, job: Job, timeout: float) -> str | None:
        """One non-blocking connect, waited for with poll so that a SYN nobody answers costs
        ``timeout`` rather than lwIP's minute of SYN retries. None once connected (the socket
        is blocking again), else why not."""
        sa = sockaddr(ip, port)
        self.check("zts_bsd_fcntl", self.fd, F_SETFL, O_NONBLOCK)
        rc, err = self.call("zts_bsd_connect", self.fd, ctypes.byref(sa), ctypes.sizeof(sa))
        if rc < 0 and err != errno.EINPROGRESS:
            return str(self.fail("zts_bsd_connect", rc, err))
        if rc < 0:
            end = time.monotonic() + timeout
            pfd = ZtsPollfd(self.fd, POLLOUT, 0)
            while True:
                job.check()
                left = end - time.monotonic()
                if left <= 0:
                    return f"no answer within {timeout:.1f} s"
                ms = max(1, int(min(left, IO_SLICE) * 1000))
                pfd.revents = 0
                n = self.check("zts_bsd_poll", ctypes.byref(pfd), 1, ms)
                if n > 0 and pfd.revents & (POLLOUT | POLLERR):
                    break
            so_err = ctypes.c_int(0)
            size = ctypes.c_uint32(4)
            self.check(
                "zts_bsd_getsockopt",
                self.fd,
                SOL_SOCKET,
                SO_ERROR,
                ctypes.byref(so_err),
                ctypes.byref(size),
            )
            if so_err.value:
                e = so_err.value
                return f"SO_ERROR {e} ({errno.errorcode.get(e, '?')})"
        self.check("zts_bsd_fcntl", self.fd, F_SETFL, 0)
        return None

    def recv(self, buf: Any, size: int, job: Job, block: bool = True) -> int | None:
        """Bytes read (0 at EOF); None when not blocking and nothing is queued. A blocking read
        wakes every SO_RCVTIMEO (EAGAIN) to honour the job's stop flag and deadline."""
        flags = 0 if block else MSG_DONTWAIT
        while True:
            rc, err = self.call("zts_bsd_recv", self.fd, buf, size, flags)
            if rc >= 0:
                return rc
            if rc != -1 or err != errno.EAGAIN:
                raise self.fail("zts_bsd_recv", rc, err)
            job.check()
            if not block:
                return None

    def send_some(self, ptr: int, size: int, job: Job) -> int:
        """One send: lwIP's SO_SNDTIMEO makes it return what fitted (possibly nothing)."""
        rc, err = self.call("zts_bsd_send", self.fd, ptr, size, 0)
        if rc >= 0:
            return rc
        if rc != -1 or err != errno.EAGAIN:
            raise self.fail("zts_bsd_send", rc, err)
        job.check()
        return 0

    def send_all(self, ptr: int, size: int, job: Job) -> None:
        off = 0
        while off < size:
            off += self.send_some(ptr + off, min(SEND_CHUNK, size - off), job)

    def shutdown_write(self) -> None:
        self.check("zts_bsd_shutdown", self.fd, SHUT_WR)

    def wait_eof(self, job: Job, timeout: float) -> tuple[bool, int]:
        """After our FIN: (the peer closed too within ``timeout``, bytes it sent meanwhile)."""
        buf = (ctypes.c_uint8 * 4096)()
        end = time.monotonic() + timeout
        extra = 0
        while time.monotonic() < end:
            try:
                n = self.recv(buf, len(buf), job, block=False)
            except ZtsError:
                return False, extra
            if n == 0:
                return True, extra
            if n is None:
                job.sleep(0.005)
            else:
                extra += n
        return False, extra

    def sendto(self, ptr: Any, size: int, addr: Any, addrlen: int) -> int:
        return self.check("zts_bsd_sendto", self.fd, ptr, size, 0, addr, addrlen)

    def recvfrom(self, buf: Any, size: int, job: Job) -> tuple[int, Any, int] | None:
        """(length, sender sockaddr buffer, its length), or None after SO_RCVTIMEO."""
        raw = (ctypes.c_uint8 * SOCKADDR_STORAGE_SIZE)()
        n = ctypes.c_uint32(SOCKADDR_STORAGE_SIZE)
        rc, err = self.call("zts_bsd_recvfrom", self.fd, buf, size, 0, raw, ctypes.byref(n))
        if rc >= 0:
            return rc, raw, n.value
        if rc != -1 or err != errno.EAGAIN:
            raise self.fail("zts_bsd_recvfrom", rc, err)
        job.check()
        return None

    def close(self) -> None:
        if self.fd >= 0:
            self.lib.zts_bsd_close(self.fd)
            self.fd = -1


class Worker:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self._core_node: int | None = None
        self._node_field: int | None = None
        self.jobs: dict[int, Job] = {}
        self._job_ids = itertools.count(1)
        self.ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda req: {},
            "resolve": self.resolve,
            "id_new": self.id_new,
            "id_pair_is_valid": self.id_pair_is_valid,
            "sign_root_set": self.sign_root_set,
            "start": self.start,
            "status": self.status,
            "stop": self.stop,
            "join": self.join,
            "leave": self.leave,
            "network": self.network,
            "tcp_server": self.tcp_server,
            "tcp_client": self.tcp_client,
            "udp_echo_server": self.udp_echo_server,
            "udp_request": self.udp_request,
            "udp_ping": self.udp_ping,
            "job_wait": self.job_wait,
            "job_stop": self.job_stop,
            "jobs": self.list_jobs,
            "rt": self.rt,
        }

    def id_new(self, req: dict[str, Any]) -> dict[str, Any]:
        buf = ctypes.create_string_buffer(ID_BUF_LEN)
        n = ctypes.c_uint(ID_BUF_LEN)
        rc = self.lib.zts_id_new(buf, ctypes.byref(n))
        if rc != 0:
            raise RuntimeError(f"zts_id_new returned {rc}")
        return {"identity": buf.raw[: n.value].split(b"\0", 1)[0].decode()}

    def id_pair_is_valid(self, req: dict[str, Any]) -> dict[str, Any]:
        # libzt insists on the full string-buffer length, NUL padded (Controls.cpp).
        buf = ctypes.create_string_buffer(req["identity"].encode(), ID_BUF_LEN)
        return {"valid": bool(self.lib.zts_id_pair_is_valid(buf, ID_BUF_LEN))}

    def sign_root_set(self, req: dict[str, Any]) -> dict[str, Any]:
        spec = RootSetSpec()
        keep: list[bytes] = []  # keep the C strings alive during the call
        for i, root in enumerate(req["roots"]):
            ident = root["identity"].encode()
            keep.append(ident)
            spec.public_id_str[i] = ident
            for j, ep in enumerate(root["endpoints"]):
                e = ep.encode()
                keep.append(e)
                spec.endpoint_ip_str[i][j] = e
        out = ctypes.create_string_buffer(WORLD_MAX_LEN)
        out_len = ctypes.c_uint(WORLD_MAX_LEN)
        prev = ctypes.create_string_buffer(128)
        prev_len = ctypes.c_uint(128)
        cur = ctypes.create_string_buffer(128)
        cur_len = ctypes.c_uint(128)
        # The call reads previous.c25519/current.c25519 from the working directory when present.
        old = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                rc = self.lib.zts_util_sign_root_set(
                    out,
                    ctypes.byref(out_len),
                    prev,
                    ctypes.byref(prev_len),
                    cur,
                    ctypes.byref(cur_len),
                    int(req["id"]),
                    int(req["timestamp"]),
                    ctypes.byref(spec),
                )
            finally:
                os.chdir(old)
        if rc != 0:
            raise RuntimeError(f"zts_util_sign_root_set returned {rc}")
        return {
            "world": out.raw[: out_len.value].hex(),
            "previous_key": prev.raw[: prev_len.value].hex(),
            "current_key": cur.raw[: cur_len.value].hex(),
        }

    def start(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start the node with our planet: storage dir, roots, one port, other interfaces off."""
        lib = self.lib
        checks = [
            ("zts_init_from_storage", lib.zts_init_from_storage(req["storage"].encode())),
        ]
        planet = bytes.fromhex(req["planet"])
        checks.append(("zts_init_set_roots", lib.zts_init_set_roots(planet, len(planet))))
        checks.append(("zts_init_set_port", lib.zts_init_set_port(int(req["port"]))))
        checks.append(("zts_init_allow_secondary_port", lib.zts_init_allow_secondary_port(0)))
        checks.append(("zts_init_allow_port_mapping", lib.zts_init_allow_port_mapping(0)))
        for prefix in req.get("blacklist_if", []):
            p = prefix.encode()
            checks.append(("zts_init_blacklist_if", lib.zts_init_blacklist_if(p, len(p))))
        checks.append(("zts_node_start", lib.zts_node_start()))
        bad = [f"{name}={rc}" for name, rc in checks if rc != 0]
        if bad:
            raise RuntimeError("libzt start failed: " + ", ".join(bad))
        return {}

    def status(self, req: dict[str, Any]) -> dict[str, Any]:
        online = bool(self.lib.zts_node_is_online())
        node_id = int(self.lib.zts_node_get_id()) if online else 0
        return {"online": online, "address": f"{node_id:010x}" if online else None}

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        """Join; right after ``start`` this first waits (bounded) for the core node to exist:
        libzt 1.8.4 accepts ``zts_net_join`` as soon as its service thread runs but dereferences
        the core's ``Node*`` (a segfault) until that thread has created it."""
        deadline = time.monotonic() + float(req.get("wait", 20.0))
        while not self._node_pointer():
            if time.monotonic() > deadline:
                raise RuntimeError("libzt's core node was not created in time")
            time.sleep(0.01)
        rc = self.lib.zts_net_join(ctypes.c_uint64(int(req["nwid"], 16)))
        if rc != 0:
            raise RuntimeError(f"zts_net_join returned {rc}")
        return {}

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        rc = self.lib.zts_net_leave(ctypes.c_uint64(int(req["nwid"], 16)))
        return {"rc": rc}

    def network(self, req: dict[str, Any]) -> dict[str, Any]:
        """How libzt sees a network, twice over.

        The libzt wrapper's view (``zts_net_get_status``, ``zts_addr_get_all``): its copy of the
        core's network state, refreshed only when the core reports a new config. ``status``,
        ``ready``, ``addresses`` (plain IPs) and ``cidrs`` ("ip/bits") come from there.

        The core's own view, ``core``: ``ZT_Node_networkConfig`` on the ZeroTier 1.8.4 node inside
        libzt (the query zerotier-one's ``listnetworks`` answers from): status, name, revision,
        type, assigned addresses and routes with their netmask bits. Only the core's status
        follows an ERROR(NETWORK_ACCESS_DENIED): the core sets its failure flag without telling
        the wrapper, so ``zts_net_get_status`` never shows ACCESS_DENIED in libzt 1.8.4.
        """
        nwid = ctypes.c_uint64(int(req["nwid"], 16))
        code = self.lib.zts_net_get_status(nwid)
        addrs: list[str] = []
        cidrs: list[str] = []
        buf = (ctypes.c_uint8 * (SOCKADDR_STORAGE_SIZE * MAX_ASSIGNED_ADDRESSES))()
        count = ctypes.c_uint(MAX_ASSIGNED_ADDRESSES)
        if self.lib.zts_addr_get_all(nwid, buf, ctypes.byref(count)) == 0:
            raw = bytes(buf)
            for i in range(count.value):
                ss = raw[i * SOCKADDR_STORAGE_SIZE : (i + 1) * SOCKADDR_STORAGE_SIZE]
                bits = int.from_bytes(ss[2:4], "big")  # the netmask bits ride in the port
                if ss[1] == AF_INET:
                    addrs.append(str(ipaddress.IPv4Address(ss[4:8])))
                elif ss[1] == AF_INET6:
                    addrs.append(str(ipaddress.IPv6Address(ss[8:24])))
                else:
                    continue
                cidrs.append(f"{addrs[-1]}/{bits}")
        return {
            "status": NETWORK_STATUS.get(code, f"code {code}"),
            "ready": bool(self.lib.zts_net_transport_is_ready(nwid) == 1),
            "addresses": addrs,
            "cidrs": cidrs,
            "core": self.core_network(nwid.value),
        }

    def _node_offset(self) -> int:
        """The offset of ``_node`` in ``NodeService``, read off ``NodeService::leave``'s code."""
        if self._node_field is None:
            fn = ctypes.cast(getattr(self.lib, _LEAVE_SYMBOL), ctypes.c_void_p).value
            code = ctypes.string_at(fn, 32) if fn else b""
            i = code.find(_MOV_RDI_FROM_RDI_DISP32)
            if i < 0:
                raise RuntimeError("unknown libzt build: cannot locate NodeService::_node")
            self._node_field = int.from_bytes(code[i + 3 : i + 7], "little")
        return self._node_field

    def _node_pointer(self) -> int | None:
        """``zts_service->_node`` as it is now (None before the service or its node exists)."""
        service = ctypes.c_void_p.in_dll(self.lib, "_ZN8ZeroTier11zts_serviceE").value
        if not service:
            return None
        return ctypes.c_void_p.from_address(service + self._node_offset()).value or None

    def core_node(self) -> int | None:
        """The core's ``ZT_Node*`` (None until the node is online), checked against the node
        id before its first use."""
        if self._core_node is not None:
            return self._core_node
        if not self.lib.zts_node_is_online():
            return None
        node = self._node_pointer()
        if node is None:
            return None
        node_id = int(self.lib.zts_node_get_id())
        if int(self.lib.ZT_Node_address(node)) != node_id:
            raise RuntimeError("libzt's Node* is not where this build of libzt 1.8.4 keeps it")
        self._core_node = node
        return node

    def core_network(self, nwid: int) -> dict[str, Any] | None:
        node = self.core_node()
        if node is None:
            return None
        ptr = self.lib.ZT_Node_networkConfig(node, ctypes.c_uint64(nwid))
        if not ptr:
            return None
        try:
            c = VirtualNetworkConfigHead.from_address(ptr)
            addresses = []
            for i in range(min(c.assigned_address_count, MAX_ASSIGNED_ADDRESSES)):
                a = _native_sockaddr(c.assigned_addresses[i])
                if a is not None:
                    addresses.append(f"{a[0]}/{a[1]}")
            routes = []
            for i in range(min(c.route_count, MAX_NETWORK_ROUTES)):
                r = c.routes[i]
                target = _native_sockaddr(r.target)
                via = _native_sockaddr(r.via)
                routes.append(
                    {
                        "target": f"{target[0]}/{target[1]}" if target else None,
                        "via": via[0] if via else None,
                        "flags": int(r.flags),
                        "metric": int(r.metric),
                    }
                )
            return {
                "status": NETWORK_STATUS.get(c.status, f"code {c.status}"),
                "name": c.name.decode(errors="replace"),
                "revision": int(c.netconf_revision),
                "type": "PUBLIC" if c.type == 1 else "PRIVATE",
                "mac": f"{c.mac:012x}",
                "mtu": int(c.mtu),
                "addresses": addresses,
                "routes": routes,
            }
        finally:
            self.lib.ZT_Node_freeQueryResult(node, ctypes.c_void_p(ptr))

    def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        """Jobs end first (each closes its own sockets), so no thread is inside lwIP when the
        node goes away."""
        for job in self.jobs.values():
            job.stop.set()
        deadline = time.monotonic() + 3.0
        for job in self.jobs.values():
            job.done.wait(max(0.0, deadline - time.monotonic()))
        self.jobs.clear()
        self.lib.zts_node_stop()
        return {}

    # -------------------------------------------------------------------------- socket jobs

    def _start_job(
        self, op: str, req: dict[str, Any], body: Callable[[Job], dict[str, Any]]
    ) -> Job:
        """Runs ``body`` on a daemon thread, at real-time priority when ``req["rt"]`` asks."""
        prio = rt_priority(req)

        def run(job: Job) -> dict[str, Any]:
            if prio:
                set_realtime(threading.get_native_id(), prio)
            result = body(job)
            result["rt"] = prio
            return result

        job = Job(next(self._job_ids), op, float(req.get("lifetime", 60.0)), run)
        self.jobs[job.id] = job
        job.thread.start()
        return job

    def tcp_server(self, req: dict[str, Any]) -> dict[str, Any]:
        """Listens before answering, so the test may connect as soon as it has the reply; the
        job accepts one connection and then either sinks it (digesting what arrives) or echoes
        it, until the peer's EOF."""
        mode = req.get("mode", "sink")
        if mode not in ("sink", "echo", "accept", "echo_all"):
            raise ValueError("mode must be sink, echo, accept or echo_all")
        nodelay = bool(req.get("nodelay", False))
        digest = bool(req.get("digest", True))
        family = family_of(req)
        addr = req.get("addr") or ("0.0.0.0" if family == AF_INET else "::")
        listener = Zsock.open(self.lib, family, SOCK_STREAM)
        try:
            listener.set_int(SOL_SOCKET, SO_REUSEADDR, 1)
            listener.bind(addr, int(req["port"]))
            # accept mode: a backlog, so a connection completed before the previous one was
            # accepted is not dropped (which would cost the client a SYN retransmission)
            backlog = 128 if mode == "echo_all" else 16 if mode == "accept" else 1
            listener.check("zts_bsd_listen", listener.fd, backlog)
            listener.set_timeout(SO_RCVTIMEO, IO_SLICE)
            local = listener.local()
        except BaseException:
            listener.close()
            raise

        def accept_each(
            job: Job, take: Callable[[Zsock], None], limit: int | None = None
        ) -> tuple[int, str]:
            """Accepted connections handed to ``take`` until the job is stopped ("stopped")
            or its lifetime ends ("lifetime"), at most ``limit``."""
            accepted = 0
            try:
                while limit is None or accepted < limit:
                    try:
                        conn, _ = listener.accept(job)
                    except JobStopped:
                        break
                    except JobExpired:
                        return accepted, "lifetime"
                    take(conn)
                    accepted += 1
            finally:
                listener.close()
            return accepted, "stopped"

        def accept_all(job: Job) -> dict[str, Any]:
            accepted, ended = accept_each(job, lambda conn: conn.close())
            return {"mode": mode, "accepted": accepted, "ended": ended}

        def echo_all(job: Job) -> dict[str, Any]:
            threads: list[threading.Thread] = []
            echoed = [0]
            lock = threading.Lock()

            def serve_one(conn: Zsock) -> None:
                try:
                    if nodelay:
                        conn.set_int(IPPROTO_TCP, TCP_NODELAY, 1)
                    conn.set_timeout(SO_RCVTIMEO, IO_SLICE)
                    conn.set_timeout(SO_SNDTIMEO, IO_SLICE)
                    n = self._serve(conn, "echo", job)["bytes"]
                    with lock:
                        echoed[0] += n
                except (JobStopped, JobExpired, ZtsError, ConnectionError):
                    pass
                finally:
                    conn.close()

            def start(conn: Zsock) -> None:
                t = threading.Thread(target=serve_one, args=(conn,), daemon=True)
                t.start()
                threads.append(t)

            accepted, ended = accept_each(job, start, MAX_CONNECTIONS)
            for t in threads:
                t.join(IO_SLICE * 4)
            return {"mode": mode, "accepted": accepted, "echoed_bytes": echoed[0],
                    "ended": ended}  # fmt: skip

        def body(job: Job) -> dict[str, Any]:
            if mode == "accept":
                return accept_all(job)
            if mode == "echo_all":
                return echo_all(job)
            try:
                conn, peer = listener.accept(job)
            finally:
                listener.close()
            try:
                if nodelay:
                    conn.set_int(IPPROTO_TCP, TCP_NODELAY, 1)
                conn.set_timeout(SO_RCVTIMEO, IO_SLICE)
                conn.set_timeout(SO_SNDTIMEO, IO_SLICE)
                return {"mode": mode, "peer": peer, **self._serve(conn, mode, job, digest)}
            finally:
                conn.close()

        job = self._start_job("tcp_server", req, body)
        return {"job": job.id, "port": local[1] if local else int(req["port"])}

    @staticmethod
    def _serve(conn: Zsock, mode: str, job: Job, digest_sink: bool = True) -> dict[str, Any]:
        buf = (ctypes.c_uint8 * RECV_BUF)()
        view = memoryview(buf)
        base = ctypes.addressof(buf)
        digest = hashlib.sha256()
        total = 0
        t0 = time.monotonic()
        t_first: float | None = None
        while True:
            n = conn.recv(buf, RECV_BUF, job)
            if not n:  # EOF (a blocking recv never answers None)
                break
            if t_first is None:
                t_first = time.monotonic()
            total += n
            if mode == "sink":
                if digest_sink:
                    digest.update(view[:n])
            else:
                conn.send_all(base, n, job)
        t_end = time.monotonic()
        out: dict[str, Any] = {
            "bytes": total,
            "elapsed": t_end - t0,
            "data_elapsed": (t_end - t_first) if t_first is not None else 0.0,
        }
        if mode == "sink" and digest_sink:
            out["sha256"] = digest.hexdigest()
        return out

    def tcp_client(self, req: dict[str, Any]) -> dict[str, Any]:
        """Connects (retrying: routes and ARP may need a moment on a fresh network) and then
        either sources ``bytes`` of ``pattern(seed, bytes)`` and waits for the peer to close
        (so ``elapsed`` covers delivery, not just queueing), or sends them to an echo server
        and checks what returns. The data is built before connecting, so it costs no time on
        the clock. Modes ``connects`` and ``ping`` time connection setup and small round trips
        (see the module docstring)."""
        mode = req.get("mode", "source")
        if mode not in ("source", "echo_check", "connects", "ping", "rps"):
            raise ValueError("mode must be source, echo_check, connects, ping or rps")
        if mode == "rps":
            return self._rps_client(req)
        ip, port = str(req["addr"]), int(req["port"])
        family = AF_INET if ipaddress.ip_address(ip).version == 4 else AF_INET6
        size = int(req.get("bytes", 0)) if mode in ("source", "echo_check") else 0
        data = bytearray(pattern(int(req.get("seed", 0)), size))
        tries = int(req.get("connect_tries", 20))
        connect_budget = float(req.get("connect_timeout", 20.0))
        attempt_timeout = float(req.get("attempt_timeout", 2.0))
        close_wait = float(req.get("close_wait", 30.0))
        window = int(req.get("window", SEND_CHUNK))
        count = int(req.get("count", 10 if mode == "connects" else 100))
        if not 0 <= count <= MAX_TIMED:
            raise ValueError(f"count must be within 0..{MAX_TIMED}")
        ping_size = int(req.get("size", 1))
        if not 1 <= ping_size <= RECV_BUF:
            raise ValueError(f"size must be within 1..{RECV_BUF}")
        nodelay = bool(req.get("nodelay", True))

        def body(job: Job) -> dict[str, Any]:
            t_start = time.monotonic()
            sock, failures = self._connect(
                family, ip, port, job, tries, connect_budget, attempt_timeout
            )
            if mode == "connects":
                sock.close()
                return {
                    "mode": mode,
                    "connect_tries": len(failures) + 1,
                    "connect_elapsed": time.monotonic() - t_start,
                    **self._connects(family, ip, port, job, count, attempt_timeout),
                }
            try:
                if mode == "ping":
                    if nodelay:
                        sock.set_int(IPPROTO_TCP, TCP_NODELAY, 1)
                    return {
                        "mode": mode,
                        "connect_tries": len(failures) + 1,
                        "connect_elapsed": time.monotonic() - t_start,
                        "local": sock.local(),
                        "nodelay": nodelay,
                        **self._ping(sock, job, count, ping_size),
                    }
                out: dict[str, Any] = {
                    "mode": mode,
                    "connect_tries": len(failures) + 1,
                    "connect_failures": failures,
                    "connect_elapsed": time.monotonic() - t_start,
                    "local": sock.local(),
                }
                sock.set_timeout(SO_RCVTIMEO, IO_SLICE)
                sock.set_timeout(SO_SNDTIMEO, IO_SLICE)
                if mode == "source":
                    out.update(self._source(sock, data, job, close_wait))
                else:
                    out.update(self._echo_check(sock, data, job, window, close_wait))
                return out
            finally:
                sock.close()

        job = self._start_job("tcp_client", req, body)
        return {"job": job.id}

    def _rps_client(self, req: dict[str, Any]) -> dict[str, Any]:
        ip, port = str(req["addr"]), int(req["port"])
        family = AF_INET if ipaddress.ip_address(ip).version == 4 else AF_INET6
        conns = int(req.get("connections", 1))
        if not 1 <= conns <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be within 1..{MAX_CONNECTIONS}")
        seconds = float(req.get("seconds", 5.0))
        size = int(req.get("size", 32))
        if not 1 <= size <= RECV_BUF:
            raise ValueError(f"size must be within 1..{RECV_BUF}")

        def body(job: Job) -> dict[str, Any]:
            socks = [self._connect(family, ip, port, job, 20, 20.0, 2.0)[0] for _ in range(conns)]
            counts = [0] * conns
            errors: list[str] = []
            start = threading.Event()
            end_at = [0.0]

            def run(i: int, sock: Zsock) -> None:
                try:
                    sock.set_int(IPPROTO_TCP, TCP_NODELAY, 1)
                    sock.set_timeout(SO_RCVTIMEO, IO_SLICE)
                    sock.set_timeout(SO_SNDTIMEO, IO_SLICE)
                    out = (ctypes.c_uint8 * size)(*([0x72] * size))
                    base = ctypes.addressof(out)
                    rbuf = (ctypes.c_uint8 * RECV_BUF)()
                    start.wait(30)
                    while time.monotonic() < end_at[0]:
                        sock.send_all(base, size, job)
                        got = 0
                        while got < size:
                            n = sock.recv(rbuf, RECV_BUF, job)
                            if not n:
                                raise ConnectionError("echo server closed")
                            got += n
                        counts[i] += 1
                    sock.shutdown_write()
                except Exception as e:  # reported, and the others go on
                    errors.append(f"{type(e).__name__}: {e}"[:120])

            threads = [
                threading.Thread(target=run, args=(i, sk), daemon=True)
                for i, sk in enumerate(socks)
            ]
            try:
                for t in threads:
                    t.start()
                t0 = time.monotonic()
                end_at[0] = t0 + seconds
                start.set()
                for t in threads:
                    t.join(seconds + 10)
                elapsed = time.monotonic() - t0
            finally:
                for sk in socks:
                    sk.close()
            return {
                "mode": "rps",
                "connections": conns,
                "requests": sum(counts),
                "elapsed": elapsed,
                "per_connection": counts,
                "errors": errors[:5],
            }

        job = self._start_job("tcp_client", req, body)
        return {"job": job.id}

    def _connects(
        self, family: int, ip: str, port: int, job: Job, count: int, attempt_timeout: float
    ) -> dict[str, Any]:
        """``count`` single connects, each closed once made; a failed one is reported, not
        retried, and takes no time sample."""
        ms: list[float] = []
        failures: list[str] = []
        for _ in range(count):
            job.check()
            t0 = time.perf_counter()
            sock = Zsock.open(self.lib, family, SOCK_STREAM)
            try:
                why = sock.connect(ip, port, job, attempt_timeout)
                t1 = time.perf_counter()
            finally:
                sock.close()
            if why:
                failures.append(why)
            else:
                ms.append((t1 - t0) * 1000)
        return {"ms": ms, "failures": failures}

    @staticmethod
    def _ping(sock: Zsock, job: Job, count: int, size: int) -> dict[str, Any]:
        """``count`` timed round trips of ``size`` bytes through an echo server."""
        sock.set_timeout(SO_RCVTIMEO, IO_SLICE)
        sock.set_timeout(SO_SNDTIMEO, IO_SLICE)
        out = (ctypes.c_uint8 * size)(*([0x78] * size))
        base = ctypes.addressof(out)
        rbuf = (ctypes.c_uint8 * RECV_BUF)()
        ms: list[float] = []
        for _ in range(count):
            t0 = time.perf_counter()
            sock.send_all(base, size, job)
            got = 0
            while got < size:
                n = sock.recv(rbuf, RECV_BUF, job)
                if not n:
                    raise ConnectionError(f"echo peer closed after {len(ms)} round trips")
                got += n
            if got != size:
                raise ConnectionError(f"echo peer returned {got} bytes for {size}")
            ms.append((time.perf_counter() - t0) * 1000)
        sock.shutdown_write()
        return {"ms": ms}

    def _connect(
        self,
        family: int,
        ip: str,
        port: int,
        job: Job,
        tries: int,
        budget: float,
        attempt_timeout: float,
    ) -> tuple[Zsock, list[str]]:
        """A connected socket and why the attempts before it failed."""
        end = time.monotonic() + budget
        failures: list[str] = []
        for _ in range(max(1, tries)):
            left = end - time.monotonic()
            if left <= 0:
                break
            t_try = time.monotonic()
            sock = Zsock.open(self.lib, family, SOCK_STREAM)
            try:
                why = sock.connect(ip, port, job, min(attempt_timeout, left)) or ""
            except BaseException:
                sock.close()
                raise
            if not why:
                return sock, failures
            failures.append(why)
            sock.close()
            # A refusal comes back at once: pace the retries at about one a second.
            job.sleep(min(1.0 - (time.monotonic() - t_try), end - time.monotonic()))
        raise ConnectionError(
            f"connect to {ip} port {port} failed after {len(failures)} tries: {failures}"
        )

    @staticmethod
    def _source(sock: Zsock, data: bytearray, job: Job, close_wait: float) -> dict[str, Any]:
        size = len(data)
        cbuf = (ctypes.c_uint8 * size).from_buffer(data)
        t0 = time.monotonic()
        sock.send_all(ctypes.addressof(cbuf), size, job)
        t_sent = time.monotonic()
        sock.shutdown_write()
        closed, extra = sock.wait_eof(job, close_wait)
        t_end = time.monotonic()
        del cbuf  # release the export on ``data``
        return {
            "bytes": size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "send_elapsed": t_sent - t0,
            "elapsed": (t_end - t0) if closed else None,
            "peer_closed": closed,
            "unexpected_bytes": extra,
        }

    @staticmethod
    def _echo_check(
        sock: Zsock, data: bytearray, job: Job, window: int, close_wait: float
    ) -> dict[str, Any]:
        """Keeps at most ``window`` bytes unanswered: one thread must both send and read (see
        ``Zsock``), and a full window on both sides would deadlock a blocking echo."""
        size = len(data)
        cbuf = (ctypes.c_uint8 * size).from_buffer(data)
        base = ctypes.addressof(cbuf)
        rbuf = (ctypes.c_uint8 * RECV_BUF)()
        digest = hashlib.sha256()
        sent = got = 0
        first_mismatch: int | None = None
        t0 = time.monotonic()
        while got < size:
            n: int | None
            if sent < size and sent - got < window:
                sent += sock.send_some(
                    base + sent, min(SEND_CHUNK, window - (sent - got), size - sent), job
                )
                n = sock.recv(rbuf, RECV_BUF, job, block=False)
            else:
                n = sock.recv(rbuf, RECV_BUF, job)
            if n is None:
                continue
            if n == 0:
                raise ConnectionError(f"echo peer closed after returning {got} of {size} bytes")
            back = bytes(rbuf[:n])
            digest.update(back)
            if first_mismatch is None and back != data[got : got + n]:
                want = data[got : got + n]
                first_mismatch = got + next(
                    (i for i, (a, b) in enumerate(zip(back, want, strict=False)) if a != b),
                    min(len(back), len(want)),
                )
            got += n
        t_done = time.monotonic()
        sock.shutdown_write()
        closed, extra = sock.wait_eof(job, close_wait)
        del cbuf
        return {
            "bytes": got,
            "sha256": digest.hexdigest(),
            "match": first_mismatch is None,
            "first_mismatch": first_mismatch,
            "elapsed": t_done - t0,
            "peer_closed": closed,
            "unexpected_bytes": extra,
        }

    def udp_echo_server(self, req: dict[str, Any]) -> dict[str, Any]:
        """Binds before answering; echoes every datagram to its sender until ``job_stop`` or
        the end of its lifetime (both a normal end: the result counts what was echoed)."""
        family = family_of(req)
        addr = req.get("addr") or ("0.0.0.0" if family == AF_INET else "::")
        sock = Zsock.open(self.lib, family, SOCK_DGRAM)
        try:
            sock.bind(addr, int(req["port"]))
            sock.set_timeout(SO_RCVTIMEO, IO_SLICE)
            local = sock.local()
        except BaseException:
            sock.close()
            raise

        def body(job: Job) -> dict[str, Any]:
            buf = (ctypes.c_uint8 * UDP_MAX)()
            count = total = send_errors = 0
            peers: list[list[Any]] = []
            ended = "stopped"
            try:
                while True:
                    try:
                        got = sock.recvfrom(buf, UDP_MAX, job)
                    except JobStopped:
                        break
                    except JobExpired:
                        ended = "lifetime"
                        break
                    if got is None:
                        continue
                    n, raw, raw_len = got
                    try:
                        sock.sendto(buf, n, raw, raw_len)
                    except ZtsError:  # e.g. lwIP's ARP queue full: the sender will resend
                        send_errors += 1
                        continue
                    count += 1
                    total += n
                    peer = parse_sockaddr(bytes(raw))
                    if peer is not None and peer not in peers and len(peers) < 16:
                        peers.append(peer)
            finally:
                sock.close()
            return {
                "echoed": count,
                "bytes": total,
                "peers": peers,
                "send_errors": send_errors,
                "ended": ended,
            }

        job = self._start_job("udp_echo_server", req, body)
        return {"job": job.id, "port": local[1] if local else int(req["port"])}

    def resolve(self, req: dict[str, Any]) -> dict[str, Any]:
        """lwIP's own resolver: ``server`` becomes DNS server 0, then
        ``zts_bsd_gethostbyname(name)`` (a job: lwIP blocks until an answer or its retries
        end). The result is the first IPv4 address, or an error."""
        server, name = str(req["server"]), str(req["name"])

        def body(job: Job) -> dict[str, Any]:
            rc = self.lib.zts_dns_set_server(0, ctypes.byref(zts_ip4_addr(server)))
            if rc != 0:
                raise RuntimeError(f"zts_dns_set_server: {ZTS_ERR_NAMES.get(rc, rc)}")
            t0 = time.monotonic()
            hostent = self.lib.zts_bsd_gethostbyname(name.encode())
            took = time.monotonic() - t0
            if not hostent or not hostent.contents.h_addr_list[0]:
                raise LookupError(f"zts_bsd_gethostbyname({name!r}) found nothing in {took:.1f} s")
            raw = bytes(hostent.contents.h_addr_list[0][0:4])
            return {"address": str(ipaddress.IPv4Address(raw)), "seconds": took}

        job = self._start_job("resolve", req, body)
        return {"job": job.id}

    def udp_request(self, req: dict[str, Any]) -> dict[str, Any]:
        """One datagram, resent every ``interval`` until a reply (the first datagram to a
        fresh neighbour may be dropped while lwIP resolves its MAC)."""
        ip, port = str(req["addr"]), int(req["port"])
        payload = bytes.fromhex(req.get("payload", ""))
        tries = int(req.get("tries", 5))
        interval = float(req.get("interval", 1.0))
        local_port = int(req.get("local_port", 0))

        def body(job: Job) -> dict[str, Any]:
            dest = sockaddr(ip, port)
            family = int(dest.family)
            sock = Zsock.open(self.lib, family, SOCK_DGRAM)
            try:
                if local_port:
                    sock.bind("0.0.0.0" if family == AF_INET else "::", local_port)
                sock.set_timeout(SO_RCVTIMEO, min(IO_SLICE, interval))
                out = (ctypes.c_uint8 * max(1, len(payload))).from_buffer_copy(payload or b"\0")
                buf = (ctypes.c_uint8 * UDP_MAX)()
                send_error = ""
                for attempt in range(1, max(1, tries) + 1):
                    t_send = time.monotonic()
                    try:
                        sock.sendto(out, len(payload), ctypes.byref(dest), ctypes.sizeof(dest))
                    except ZtsError as e:  # e.g. no route yet: try again next interval
                        send_error = f" (last send: {e})"
                    while time.monotonic() - t_send < interval:
                        got = sock.recvfrom(buf, UDP_MAX, job)
                        if got is not None:
                            n, raw, _ = got
                            return {
                                "reply": bytes(buf[:n]).hex(),
                                "from": parse_sockaddr(bytes(raw)),
                                "tries": attempt,
                                "rtt": time.monotonic() - t_send,
                                "local": sock.local(),
                            }
                raise TimeoutError(
                    f"no reply from {ip} port {port} to {tries} datagrams{send_error}"
                )
            finally:
                sock.close()

        job = self._start_job("udp_request", req, body)
        return {"job": job.id}

    def udp_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        ip, port = str(req["addr"]), int(req["port"])
        count = int(req.get("count", 100))
        if not 0 <= count <= MAX_TIMED:
            raise ValueError(f"count must be within 0..{MAX_TIMED}")
        size = int(req.get("size", 32))
        tries = int(req.get("tries", 5))
        interval = float(req.get("interval", 1.0))

        def body(job: Job) -> dict[str, Any]:
            dest = sockaddr(ip, port)
            sock = Zsock.open(self.lib, int(dest.family), SOCK_DGRAM)
            try:
                sock.set_timeout(SO_RCVTIMEO, min(IO_SLICE, interval))
                out = (ctypes.c_uint8 * size)(*([0x75] * size))
                buf = (ctypes.c_uint8 * UDP_MAX)()

                def round_trip() -> float | None:
                    t0 = time.perf_counter()
                    sock.sendto(out, size, ctypes.byref(dest), ctypes.sizeof(dest))
                    while time.perf_counter() - t0 < interval:
                        if sock.recvfrom(buf, UDP_MAX, job) is not None:
                            return (time.perf_counter() - t0) * 1000
                    return None

                for _ in range(max(1, tries)):
                    try:
                        if round_trip() is not None:
                            break
                    except ZtsError:  # no route yet: the next interval
                        job.sleep(interval)
                else:
                    raise TimeoutError(f"no echo from {ip} port {port} in {tries} tries")
                ms: list[float] = []
                lost = 0
                for _ in range(count):
                    r = round_trip()
                    if r is None:
                        lost += 1
                    else:
                        ms.append(r)
                return {"ms": ms, "lost": lost}
            finally:
                sock.close()

        job = self._start_job("udp_ping", req, body)
        return {"job": job.id}

    def _finish(self, job: Job, timeout: float) -> dict[str, Any]:
        if not job.done.wait(timeout):
            raise TimeoutError(f"job {job.id} ({job.op}) not done within {timeout} s")
        self.jobs.pop(job.id, None)
        if job.error is not None:
            raise RuntimeError(f"job {job.id} ({job.op}) failed: {job.error}")
        return {"job": job.id, "result": job.result}

    def _job(self, req: dict[str, Any]) -> Job:
        jid = int(req["job"])
        if jid not in self.jobs:
            raise KeyError(f"no job {jid} (never started, or already collected)")
        return self.jobs[jid]

    def job_wait(self, req: dict[str, Any]) -> dict[str, Any]:
        """Blocks the pipe for at most ``wait`` seconds; a finished job is collected (forgotten)."""
        return self._finish(self._job(req), float(req.get("wait", 30.0)))

    def job_stop(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self._job(req)
        job.stop.set()
        return self._finish(job, float(req.get("wait", 5.0)))

    def list_jobs(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "jobs": [
                {"job": j.id, "op": j.op, "done": j.done.is_set(), "error": j.error}
                for j in self.jobs.values()
            ]
        }

    def rt(self, req: dict[str, Any]) -> dict[str, Any]:
        """Every thread of the process (libzt's own included; threads started later inherit
        it) to SCHED_FIFO at ``priority``, or back to SCHED_OTHER with 0: libzt's TCP receiver
        drops segments whenever its threads wait for a CPU (LIBZT_PEER.md)."""
        prio = int(req.get("priority", 10))
        if not 0 <= prio <= 99:
            raise ValueError("priority must be within 0..99")
        tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                set_realtime(tid, prio)
        return {"threads": len(tids), "priority": prio}

    def serve(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                reply = {"ok": True, **self.ops[req["op"]](req)}
            except Exception as e:  # reported to the test, which decides
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


def main() -> None:
    paths = LibztPaths(cache_dir())
    if not paths.ready():
        sys.stdout.write(json.dumps({"ok": False, "error": "libzt not installed"}) + "\n")
        return
    Worker(load(paths)).serve()


if __name__ == "__main__":
    main()
