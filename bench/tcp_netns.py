"""TCP between two ztnode nodes and between two libzt 1.8.4 nodes, on one namespace underlay.

libzt (like every ZeroTier 1.x node) never uses loopback, so this part of the TCP benchmark runs
in a network namespace that it creates and deletes (``tests.interop.netns``, layout "bridge":
one veth and one /24 per node on a bridge, no route out). Inside it:

- our root+controller (``ztnode node --controller``) on ``192.168.217.1``, the planet's root;
- two ztnode members (``bench.tcp_peer`` processes) on ``.218.1`` and ``.219.1``, on a network
  with IPv4 and rfc4193 IPv6;
- two libzt members (``tests.interop.libzt_worker`` processes) on ``.220.1`` and ``.221.1``, each
  told to ignore the other interfaces, on a second network with IPv4 only (libzt 1.8.4 crashes on
  its own IPv6 receive path, LIBZT_PEER.md).

A second ztnode pair runs on uvloop (``bench.tcp_peer --loop uvloop``, on the same interfaces
and network) for the round trips, where the event loop's own cost shows: echo, connect and UDP
echo, measured in the same rounds as the others; its column says why when uvloop is missing. A
third pair busy-polls (``--busy-poll`` :data:`BUSY_POLL_US`, on asyncio's loop: after traffic
each polls that long before it sleeps, :mod:`ztnode.transport.busypoll`), measured for the round
trips and the request rates; its identities are made at the start (about a second each). A
fourth pair runs no node at all (``bench.tcp_peer --kernel``): the same program's echo, connect,
UDP echo and request rates on asyncio's own sockets between the same two interfaces, the cost
any asyncio program pays before ZeroTier adds anything (libzt's client and server are C calls
from threads, with no event loop between them and the socket).

Measured: bulk, echo round trip and connect; UDP echo round trips; and the request rate of a
small RPC protocol over 1, 10 and 100 connections (libzt's ``echo_all`` server and ``rps``
client, ``bench.tcp_peer``'s ``rps`` against its echo). All the members run for the whole
measurement and every round measures ztnode, libzt at ordinary priority and libzt with its
receiver at real-time priority one after the other, so a burst of outside load lands on all
three columns alike. "Receiver at real-time priority": the
server-side job thread that reads from libzt's sockets (the sink, the echo, the acceptor) at
SCHED_FIFO 10 (the worker's ``rt`` job flag), for bulk, echo and connect alike; libzt's own
threads and the client side stay at ordinary priority. (Every thread of the receiving process at
SCHED_FIFO, the worker's ``rt`` op, did worse here: about 40 to 65 MB/s against 50 to 90.)

Every process is stopped by its pid and the namespace deleted on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ztnode.identity import Identity

_REPO = Path(__file__).resolve().parents[1]
P_LIBZT = 29995  # libzt member i's underlay UDP port is P_LIBZT + 3 + i (ztnode's are random)
SINK, ECHO = 5001, 5002  # ztnode peers: sink on SINK, echo on SINK + 1 (bench.tcp_peer)
UDP_ECHO = 5003  # ztnode peers: the UDP echo
KERNEL_SINK = 6001  # the asyncio-over-the-kernel pair: sink, echo, UDP echo on 6001-6003
LIBZT_PORTS = 7100  # libzt servers: a fresh port per job
SMALL_SEGMENT = 20 + 32 + 1  # a 1-byte TCP segment's IPv4 packet (timestamps option included)

ZTNODE_NETWORK: dict[str, Any] = {
    "name": "bench-ztnode",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": True, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.31.1", "ipRangeEnd": "10.147.31.254"}],
    "routes": [{"target": "10.147.31.0/24", "via": None}],
}
LIBZT_NETWORK: dict[str, Any] = {
    "name": "bench-libzt",
    "private": True,
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"rfc4193": False, "6plane": False, "zt": False},
    "ipAssignmentPools": [{"ipRangeStart": "10.147.32.1", "ipRangeEnd": "10.147.32.254"}],
    "routes": [{"target": "10.147.32.0/24", "via": None}],
}


#: The busy-polling pair's poll (us): longer than the namespace's round trip, so that both sides
#: stay awake through an exchange.
BUSY_POLL_US = 200


@dataclass
class Plan:
    size: int  # bytes per bulk transfer (the same for every column)
    rounds: int  # rounds of bulk v4 (each: ztnode, libzt, libzt rt)
    rounds6: int  # ztnode IPv6 bulk runs
    rtt_rounds: int
    rtts: int  # round trips per echo run
    connect_rounds: int
    connects: int  # connects per connect run
    connect_pause_ms: float = 0.0  # ztnode's idleness after each close (libzt's client has none)
    budget: float = 100.0  # s for the bulk rounds: later rounds are skipped (and said so)
    floor_count: int = 20000  # segments timed for each floor
    udp_rounds: int = 3
    udps: int = 2000  # UDP round trips per run
    rps_rounds: int = 2
    rps_seconds: float = 5.0  # per request-rate run
    rps_conns: tuple[int, ...] = (1, 10, 100)
    rps_size: int = 32  # bytes per request (and per answer)


@dataclass
class Column:
    """One implementation's samples; ``missing`` says why there are none."""

    missing: str = ""
    bulk: list[float] = field(default_factory=list)  # seconds per transfer
    bulk6: list[float] = field(default_factory=list)
    rtt: list[list[float]] = field(default_factory=list)  # ms, one list per run
    connect: list[list[float]] = field(default_factory=list)
    udp_rtt: list[list[float]] = field(default_factory=list)  # ms, one list per run
    rps: dict[int, list[float]] = field(default_factory=dict)  # connections -> req/s per run
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    ztnode: Column
    libzt: Column
    libzt_rt: Column
    ztnode_uv: Column = field(default_factory=Column)  # the uvloop pair: echo, connect, UDP
    ztnode_bp: Column = field(default_factory=Column)  # the busy-polling pair: the same, and rps
    kernel: Column = field(default_factory=Column)  # asyncio over the kernel: the same as bp
    underlay: str = ""
    floor_us: float | None = None  # one full segment's crypto + UDP, namespace underlay
    floor_small_us: float | None = None  # one small (1-byte payload) segment's
    seconds: float = 0.0


def _identities() -> list[Identity]:
    """The suite's fixed identities (private keys included): generating some costs seconds."""
    lines = (_REPO / "tests" / "data" / "test-identities.txt").read_text().split()
    return [Identity.from_string(line) for line in lines]


def why_no_namespace() -> str:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root for a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip) for a network namespace"
    return ""


def why_no_libzt() -> str:
    try:
        from tests.interop.setup_libzt import LibztPaths, cache_dir
    except ImportError as e:  # an installed copy without the tests directory
        return f"tests.interop not importable ({e})"
    if not LibztPaths(cache_dir()).ready():
        return "libzt 1.8.4 not installed (python -m tests.interop.setup_libzt)"
    return ""


class ZtnodeProc:
    """A ``bench.tcp_peer`` process inside the namespace, driven over its pipe with bounded
    reads; killed by pid on close."""

    def __init__(
        self, ns: str, home: Path, planet: Path, bind: str, log: Path, loop: str = "asyncio"
    ) -> None:
        """``loop``: ``asyncio``, ``uvloop``, ``busy`` (asyncio's, busy-polling) or ``kernel``
        (no node: asyncio's own sockets, serving on :data:`KERNEL_SINK` and the next two)."""
        env = {**os.environ}
        env["PYTHONPATH"] = str(_REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log: TextIO = open(log, "w")  # noqa: SIM115  (closed in close())
        cmd = [
            "ip", "netns", "exec", ns, sys.executable, "-m", "bench.tcp_peer",
            "--home", str(home), "--planet", str(planet), "--bind", bind,
            *(("--loop", "asyncio", "--busy-poll", str(BUSY_POLL_US)) if loop == "busy"
              else ("--loop", "asyncio", "--kernel") if loop == "kernel"
              else ("--loop", loop)),
        ]  # fmt: skip
        #: Its servers' first port: the sink there, the echo next, the UDP echo after it.
        self.port_base = KERNEL_SINK if loop == "kernel" else SINK
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=_REPO, env=env, text=True, bufsize=1,
        )  # fmt: skip
        self.log = log
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, **req: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"ztnode peer died (exit {self.proc.poll()})") from None

    def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self._sel.select(timeout):
            raise TimeoutError(f"ztnode peer did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"ztnode peer exited ({self.proc.wait(5)}): {tail}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"ztnode peer: {reply['error']}")
        return reply

    def call(self, timeout: float = 120.0, **req: Any) -> dict[str, Any]:
        self.send(**req)
        return self.recv(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.call(timeout=5, op="stop")
                self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()  # by pid: ip netns exec execs the peer itself
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._sel.close()
        self._log.close()


def _floor_us(ns: Any, a_ip: str, b_ip: str, payload: int, count: int) -> float:
    from bench.tcp_bench import segment_floor_us

    a = ns.socket()
    b = ns.socket(bind=(b_ip, 0))
    try:
        a.bind((a_ip, 0))
        return segment_floor_us(count, payload, a, b)
    finally:
        a.close()
        b.close()


def _wait_libzt_ipv4(lz: Any, nwid: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = lz.call("network", 10, nwid=nwid)
        core = st.get("core") or {}
        v4 = [a for a in st["addresses"] if "." in a]
        if core.get("status") == "OK" and st["ready"] and v4:
            return str(v4[0])
        time.sleep(0.1)
    raise TimeoutError(f"libzt not ready on {nwid} within {timeout} s: {st}")


class _LibztPair:
    """Server (B) and client (A) libzt workers and the jobs the benchmark runs between them."""

    def __init__(self, a: Any, b: Any, b_ip: str) -> None:
        self.a, self.b, self.b_ip = a, b, b_ip
        self._port = LIBZT_PORTS
        self._rt = 0

    def _next_port(self) -> int:
        self._port += 1
        return self._port

    def priority(self, rt: bool) -> None:
        """The server's next jobs run their thread at SCHED_FIFO 10, or at ordinary priority."""
        self._rt = 10 if rt else 0

    def bulk(self, size: int, timeout: float, seed: int = 1) -> float:
        port = self._next_port()
        life = timeout + 5
        srv = self.b.call(
            "tcp_server", port=port, mode="sink", digest=False, rt=bool(self._rt), lifetime=life
        )
        cli = self.a.call(
            "tcp_client", addr=self.b_ip, port=port, mode="source", bytes=size, seed=seed,
            close_wait=timeout, lifetime=life,
        )  # fmt: skip
        sent = self.a.wait_job(cli["job"], life)
        got = self.b.wait_job(srv["job"], 10)
        if got["bytes"] != size or sent["elapsed"] is None:
            raise RuntimeError(f"libzt bulk incomplete: sent {sent}, received {got}")
        return float(sent["elapsed"])

    def rtt(self, count: int, timeout: float) -> list[float]:
        port = self._next_port()
        life = timeout + 5
        srv = self.b.call(
            "tcp_server", port=port, mode="echo", nodelay=True, rt=bool(self._rt), lifetime=life
        )
        cli = self.a.call(
            "tcp_client", addr=self.b_ip, port=port, mode="ping", count=count, lifetime=life
        )
        res = self.a.wait_job(cli["job"], life)
        self.b.wait_job(srv["job"], 10)
        if len(res["ms"]) != count:
            raise RuntimeError(f"libzt echo: {len(res['ms'])} of {count} round trips")
        return [float(x) for x in res["ms"]]

    def udp_rtt(self, count: int, size: int, timeout: float) -> list[float]:
        port = self._next_port()
        life = timeout + 5
        srv = self.b.call("udp_echo_server", port=port, rt=bool(self._rt), lifetime=life)
        try:
            cli = self.a.call(
                "udp_ping", addr=self.b_ip, port=port, count=count, size=size, lifetime=life
            )
            res = self.a.wait_job(cli["job"], life)
        finally:
            self.b.stop_job(srv["job"])
        if res["lost"]:
            raise RuntimeError(f"libzt UDP: {res['lost']} of {count} round trips lost")
        return [float(x) for x in res["ms"]]

    def rps(self, conns: int, seconds: float, size: int) -> float:
        port = self._next_port()
        life = seconds + 60
        srv = self.b.call(
            "tcp_server", port=port, mode="echo_all", nodelay=True, rt=bool(self._rt),
            lifetime=life,
        )  # fmt: skip
        try:
            cli = self.a.call(
                "tcp_client", addr=self.b_ip, port=port, mode="rps", connections=conns,
                seconds=seconds, size=size, lifetime=life,
            )  # fmt: skip
            res = self.a.wait_job(cli["job"], life)
        finally:
            self.b.stop_job(srv["job"])
        if res["errors"]:
            raise RuntimeError(f"libzt rps: {res['errors']}")
        return float(res["requests"]) / float(res["elapsed"])

    def connects(self, count: int, timeout: float) -> tuple[list[float], list[str]]:
        port = self._next_port()
        life = timeout + 5
        srv = self.b.call("tcp_server", port=port, mode="accept", rt=bool(self._rt), lifetime=life)
        try:
            cli = self.a.call(
                "tcp_client", addr=self.b_ip, port=port, mode="connects", count=count,
                attempt_timeout=2.0, lifetime=life,
            )  # fmt: skip
            res = self.a.wait_job(cli["job"], life)
        finally:
            self.b.stop_job(srv["job"])
        return [float(x) for x in res["ms"]], [str(f) for f in res["failures"]]


def _guard(col: Column, what: str, fn: Callable[[], None]) -> None:
    """Runs one measurement; a failure empties nothing already measured, but is recorded and
    ends that column's part in later rounds."""
    if col.missing:
        return
    try:
        fn()
    except Exception as e:
        col.missing = f"{what} failed: {type(e).__name__}: {e}"[:200]


@contextlib.contextmanager
def _started(items: list[Any]) -> Iterator[list[Any]]:
    try:
        yield items
    finally:
        for it in items:
            with contextlib.suppress(Exception):
                it.close()


def run(plan: Plan, log: Callable[[str], None] = lambda s: None) -> Result:
    """Both pairs measured on one namespace underlay; columns say why they are missing."""
    t_start = time.monotonic()
    res = Result(Column(), Column(), Column(), underlay="netns bridge (veth)")
    why_ns = why_no_namespace()
    if why_ns:
        res.ztnode.missing = res.libzt.missing = res.libzt_rt.missing = why_ns
        res.ztnode_uv.missing = res.ztnode_bp.missing = res.kernel.missing = why_ns
        return res
    if importlib.util.find_spec("uvloop") is None:
        res.ztnode_uv.missing = "uvloop not installed (pip install 'ztnode[uvloop]')"
    why_lz = why_no_libzt()
    if why_lz:
        res.libzt.missing = res.libzt_rt.missing = why_lz
    from tests.interop.netns import NetNamespace
    from tests.interop.world import controller_world

    ids = _identities()
    root_id, z_ids, l_ids, uv_ids = ids[0], ids[4:6], ids[2:4], ids[6:8]
    bp_ids = [Identity.generate() for _ in range(2)]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ztbench-") as tmp,
            NetNamespace(layout="bridge", count=5) as ns,
            controller_world(ns, Path(tmp), root_id, ns.addresses[0]) as world,
        ):
            _run_in(plan, res, ns, world, Path(tmp), z_ids, l_ids, uv_ids, bp_ids, log)
    except Exception as e:  # the namespace or the root itself failed
        why = f"namespace world failed: {type(e).__name__}: {e}"[:200]
        for col in (res.ztnode, res.libzt, res.libzt_rt, res.ztnode_uv, res.ztnode_bp, res.kernel):
            col.missing = col.missing or why
    res.seconds = time.monotonic() - t_start
    return res


def _run_in(
    plan: Plan,
    res: Result,
    ns: Any,
    world: Any,
    tmp: Path,
    z_ids: list[Identity],
    l_ids: list[Identity],
    uv_ids: list[Identity],
    bp_ids: list[Identity],
    log: Callable[[str], None],
) -> None:
    from tests.interop.world import authorize, start_libzt_member

    if res.ztnode_uv.missing:
        uv_ids = []

    api = world.api
    planet = tmp / "planet"  # written by controller_world
    z_nwid = str(api.call("POST", "/controller/network", ZTNODE_NETWORK)["id"])
    l_nwid = str(api.call("POST", "/controller/network", LIBZT_NETWORK)["id"])
    for nwid, members in ((z_nwid, [*z_ids, *uv_ids, *bp_ids]), (l_nwid, l_ids)):
        for ident in members:
            authorize(api, nwid, ident)
    zt: list[ZtnodeProc] = []
    uv: list[ZtnodeProc] = []  # the uvloop pair, on the same interfaces as the first
    bp: list[ZtnodeProc] = []  # the busy-polling pair, the same
    kn: list[ZtnodeProc] = []  # asyncio over the kernel, the same interfaces, no node
    lz: list[Any] = []
    with _started(zt), _started(uv), _started(bp), _started(kn), _started(lz):
        # Everyone starts at once: each member has its own /24, so the root's one new
        # identity per 2 s per /24 never holds anyone back.
        def start_pair(ids: list[Identity], loop: str, out: list[ZtnodeProc]) -> None:
            for i, ident in enumerate(ids):
                home = tmp / f"ztnode-{loop}{i}"
                home.mkdir()
                ident.save(home / "identity.secret", include_private=True)
                addr, log_file = ns.addresses[1 + i], tmp / f"{loop}{i}.log"
                out.append(ZtnodeProc(ns.name, home, planet, addr, log_file, loop=loop))

        start_pair(z_ids, "asyncio", zt)
        start_pair(uv_ids, "uvloop", uv)  # on the same interfaces as the first pair
        start_pair(bp_ids, "busy", bp)
        start_pair(z_ids, "kernel", kn)  # identities unused: only the homes' names
        if not res.libzt.missing:
            from tests.interop.peer import LibztPeer

            def l_start() -> None:
                for i, ident in enumerate(l_ids):
                    peer = LibztPeer(netns=ns.name)
                    lz.append(peer)
                    own = 3 + i  # its interface, address and port
                    start_libzt_member(
                        peer,
                        tmp / f"libzt{i}",
                        ident,
                        world.planet,
                        P_LIBZT + own,
                        l_nwid,
                        [n for j, n in enumerate(ns.interfaces) if j != own],
                    )

            _guard(res.libzt, "libzt start", l_start)
        t0 = time.monotonic()

        def join_pair(pair_: list[ZtnodeProc], ips: list[dict[str, Any]]) -> Callable[[], None]:
            def go() -> None:
                for p in pair_:
                    p.recv(60)  # its address line
                for p in pair_:
                    p.send(op="join", nwid=z_nwid)
                ips.extend(p.recv(60) for p in pair_)
                base = pair_[0].port_base
                pair_[0].call(op="serve", port=base)
                pair_[0].call(op="udp_serve", port=base + 2)

            return go

        z_ips: list[dict[str, Any]] = []
        _guard(res.ztnode, "ztnode join", join_pair(zt, z_ips))
        log(f"ztnode pair ready {time.monotonic() - t0:.1f} s after start")
        uv_ips: list[dict[str, Any]] = []
        if uv:
            _guard(res.ztnode_uv, "ztnode (uvloop) join", join_pair(uv, uv_ips))
            log(f"ztnode uvloop pair ready {time.monotonic() - t0:.1f} s after start")
        bp_ips: list[dict[str, Any]] = []
        _guard(res.ztnode_bp, "ztnode (busy poll) join", join_pair(bp, bp_ips))
        log(f"ztnode busy-polling pair ready {time.monotonic() - t0:.1f} s after start")
        kn_ips: list[dict[str, Any]] = []
        _guard(res.kernel, "asyncio (kernel) start", join_pair(kn, kn_ips))
        pair: _LibztPair | None = None

        def l_join() -> None:
            nonlocal pair
            _wait_libzt_ipv4(lz[0], l_nwid, 40)
            b_ip = _wait_libzt_ipv4(lz[1], l_nwid, 40)
            pair = _LibztPair(lz[0], lz[1], b_ip)

        _guard(res.libzt, "libzt join", l_join)
        if pair is not None:
            log(f"libzt pair ready {time.monotonic() - t0:.1f} s after start")
        if res.libzt.missing:
            res.libzt_rt.missing = res.libzt_rt.missing or res.libzt.missing

        # Floors on this underlay, between the two ztnode members' addresses.
        a_ip, b_ip = ns.addresses[1], ns.addresses[2]
        try:
            res.floor_us = _floor_us(ns, a_ip, b_ip, 2800, plan.floor_count)
            res.floor_small_us = _floor_us(ns, a_ip, b_ip, SMALL_SEGMENT, plan.floor_count)
        except OSError as e:
            log(f"no floor on the namespace underlay: {e}")

        _measure(plan, res, zt, z_ips, pair, log, uv, uv_ips, bp, bp_ips, kn, kn_ips)


def _measure(
    plan: Plan,
    res: Result,
    zt: list[ZtnodeProc],
    z_ips: list[dict[str, Any]],
    pair: _LibztPair | None,
    log: Callable[[str], None],
    uv: list[ZtnodeProc],
    uv_ips: list[dict[str, Any]],
    bp: list[ZtnodeProc],
    bp_ips: list[dict[str, Any]],
    kn: list[ZtnodeProc],
    kn_ips: list[dict[str, Any]],
) -> None:
    z, lz, lzr, zu, zb = res.ztnode, res.libzt, res.libzt_rt, res.ztnode_uv, res.ztnode_bp
    zk = res.kernel
    size = plan.size
    # The slowest credible transfer: libzt's ordinary-priority receiver at about 1 MB/s.
    bulk_timeout = 20 + size / 1e6
    client = zt[1] if len(zt) > 1 else None
    host = z_ips[0]["ip4"] if z_ips else ""
    host6 = z_ips[0]["ip6"] if z_ips else ""
    uv_client = uv[1] if len(uv) > 1 else None
    uv_host = uv_ips[0]["ip4"] if uv_ips else ""
    if uv_client is None:
        zu.missing = zu.missing or "no uvloop pair"
    bp_client = bp[1] if len(bp) > 1 else None
    bp_host = bp_ips[0]["ip4"] if bp_ips else ""
    if bp_client is None:
        zb.missing = zb.missing or "no busy-polling pair"
    kn_client = kn[1] if len(kn) > 1 else None
    kn_host = kn_ips[0]["ip4"] if kn_ips else ""
    if kn_client is None:
        zk.missing = zk.missing or "no asyncio-over-the-kernel pair"

    def z_bulk(h: str, out: list[float]) -> Callable[[], None]:
        def go() -> None:
            assert client is not None
            r = client.call(bulk_timeout, op="bulk", host=h, port=SINK, bytes=size)
            if r["bytes"] != size:
                raise RuntimeError(f"ztnode sink got {r['bytes']} of {size} bytes")
            out.append(float(r["seconds"]))

        return go

    def l_bulk(out: list[float], n: int = size) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            out.append(pair.bulk(n, bulk_timeout))

        return go

    def with_priority(rt: bool, fn: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            pair.priority(rt)
            fn()

        return go

    def each(
        what: str,
        z_fn: Callable[[], None],
        l_for: Callable[[Column], Callable[[], None]],
        uv_fn: Callable[[], None] | None = None,
        bp_fn: Callable[[], None] | None = None,
        kn_fn: Callable[[], None] | None = None,
    ) -> None:
        """One measurement in every column, back to back (see the module docstring)."""
        _guard(z, f"ztnode {what}", z_fn)
        if uv_fn is not None:
            _guard(zu, f"ztnode {what} (uvloop)", uv_fn)
        if bp_fn is not None:
            _guard(zb, f"ztnode {what} (busy poll)", bp_fn)
        if kn_fn is not None:
            _guard(zk, f"asyncio {what} (kernel)", kn_fn)
        if pair is not None:
            _guard(lz, f"libzt {what}", with_priority(False, l_for(lz)))
            _guard(lzr, f"libzt {what} (rt)", with_priority(True, l_for(lzr)))

    ztnode_pairs = (
        (client, host, z),
        (uv_client, uv_host, zu),
        (bp_client, bp_host, zb),
        (kn_client, kn_host, zk),
    )

    def each_pair(
        what: str,
        make: Callable[[ZtnodeProc | None, str, Column], Callable[[], None]],
        l_for: Callable[[Column], Callable[[], None]],
    ) -> None:
        """:func:`each` with every ztnode pair's measurement made by ``make(client, host,
        column)``."""
        z_fn, uv_fn, bp_fn, kn_fn = (make(peer, to, col) for peer, to, col in ztnode_pairs)
        each(what, z_fn, l_for, uv_fn, bp_fn, kn_fn)

    # Warm-ups: first connections (paths, ARP, slow start caches), not on the clock.
    warm: list[float] = []
    _guard(z, "ztnode warm-up", z_bulk(host, warm))
    _guard(lz, "libzt warm-up", l_bulk(warm, 1 << 20))
    t_bulk = time.monotonic()
    for i in range(plan.rounds):
        if i >= 2 and time.monotonic() - t_bulk > plan.budget:
            z.notes.append(f"bulk rounds stopped after {i} of {plan.rounds}: time budget")
            break
        _guard(z, "ztnode bulk", z_bulk(host, z.bulk))
        if pair is not None:
            _guard(lz, "libzt bulk", with_priority(False, l_bulk(lz.bulk)))
            _guard(lzr, "libzt bulk (rt)", with_priority(True, l_bulk(lzr.bulk)))
        log(
            f"bulk round {i + 1}: ztnode {_mb(size, z.bulk[-1:])} libzt {_mb(size, lz.bulk[-1:])}"
            f" libzt-rt {_mb(size, lzr.bulk[-1:])} MB/s"
        )
    for _ in range(plan.rounds6):
        _guard(z, "ztnode bulk IPv6", z_bulk(host6, z.bulk6))

    rtt_timeout = 20 + plan.rtts * 0.05

    def z_rtt_on(peer: ZtnodeProc | None, to: str, col: Column, n: int) -> Callable[[], None]:
        def go() -> None:
            assert peer is not None
            port = peer.port_base + 1
            col.rtt.append(peer.call(rtt_timeout, op="rtt", host=to, port=port, count=n)["ms"])

        return go

    z_rtt = z_rtt_on(client, host, z, plan.rtts)
    uv_rtt = z_rtt_on(uv_client, uv_host, zu, plan.rtts)
    bp_rtt = z_rtt_on(bp_client, bp_host, zb, plan.rtts)
    kn_rtt = z_rtt_on(kn_client, kn_host, zk, plan.rtts)
    # The other pairs' first connections (paths, ARP), not on the clock.
    _guard(zu, "ztnode (uvloop) warm-up", z_rtt_on(uv_client, uv_host, Column(), 200))
    _guard(zb, "ztnode (busy poll) warm-up", z_rtt_on(bp_client, bp_host, Column(), 200))
    _guard(zk, "asyncio (kernel) warm-up", z_rtt_on(kn_client, kn_host, Column(), 200))

    def l_rtt(col: Column) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            col.rtt.append(pair.rtt(plan.rtts, rtt_timeout))

        return go

    for _ in range(plan.rtt_rounds):
        each("echo", z_rtt, l_rtt, uv_rtt, bp_rtt, kn_rtt)
    log("echo done")

    conn_timeout = 20 + plan.connects * 2.5

    def z_conn_on(peer: ZtnodeProc | None, to: str, col: Column) -> Callable[[], None]:
        def go() -> None:
            assert peer is not None
            r = peer.call(
                conn_timeout,
                op="connect",
                host=to,
                port=peer.port_base + 1,
                count=plan.connects,
                pause_ms=plan.connect_pause_ms,
            )
            col.connect.append(r["ms"])

        return go

    def l_conn(col: Column) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            ms, failures = pair.connects(plan.connects, conn_timeout)
            col.connect.append(ms)
            if failures:
                col.notes.append(f"{len(failures)} failed connects: {failures[:3]}")

        return go

    for _ in range(plan.connect_rounds):
        each_pair("connect", z_conn_on, l_conn)
    log("connect done")

    udp_timeout = 20 + plan.udps * 0.05

    def z_udp_on(peer: ZtnodeProc | None, to: str, col: Column) -> Callable[[], None]:
        def go() -> None:
            assert peer is not None
            r = peer.call(
                udp_timeout,
                op="udp_rtt",
                host=to,
                port=peer.port_base + 2,
                count=plan.udps,
                size=32,
            )
            if r["lost"]:
                raise RuntimeError(f"ztnode UDP: {r['lost']} of {plan.udps} round trips lost")
            col.udp_rtt.append(r["ms"])

        return go

    def l_udp(col: Column) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            col.udp_rtt.append(pair.udp_rtt(plan.udps, 32, udp_timeout))

        return go

    for _ in range(plan.udp_rounds):
        each_pair("UDP echo", z_udp_on, l_udp)
    log("UDP echo done")

    def z_rps_on(peer: ZtnodeProc | None, to: str, col: Column, n: int) -> Callable[[], None]:
        def go() -> None:
            assert peer is not None
            r = peer.call(
                plan.rps_seconds + 60, op="rps", host=to, port=peer.port_base + 1, connections=n,
                seconds=plan.rps_seconds, size=plan.rps_size,
            )  # fmt: skip
            col.rps.setdefault(n, []).append(r["requests"] / r["elapsed"])

        return go

    def l_rps(col: Column, n: int) -> Callable[[], None]:
        def go() -> None:
            assert pair is not None
            rate = pair.rps(n, plan.rps_seconds, plan.rps_size)
            col.rps.setdefault(n, []).append(rate)

        return go

    for _ in range(plan.rps_rounds):
        for n in plan.rps_conns:
            each(
                f"rps {n}",
                z_rps_on(client, host, z, n),
                lambda col, n=n: l_rps(col, n),
                None,
                z_rps_on(bp_client, bp_host, zb, n),
                z_rps_on(kn_client, kn_host, zk, n),
            )
    log("request rates done")


def _mb(size: int, seconds: list[float]) -> str:
    return f"{size / seconds[0] / 1e6:.1f}" if seconds else "-"


def median_or_none(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summary(res: Result, size: int) -> dict[str, Any]:
    """Medians per column (a quick look; the table is built by bench.tcp_bench)."""
    out: dict[str, Any] = {
        "seconds": round(res.seconds, 1),
        "floor_us": res.floor_us,
        "floor_small_us": res.floor_small_us,
    }
    for name in ("ztnode", "ztnode_uv", "ztnode_bp", "libzt", "libzt_rt"):
        c: Column = getattr(res, name)
        out[name] = {
            "missing": c.missing,
            "bulk_mb_s": [round(size / s / 1e6, 1) for s in c.bulk],
            "bulk6_mb_s": [round(size / s / 1e6, 1) for s in c.bulk6],
            "rtt_ms": [round(statistics.median(r), 3) for r in c.rtt if r],
            "connect_ms": [round(statistics.median(r), 3) for r in c.connect if r],
            "notes": c.notes,
        }
    return out


if __name__ == "__main__":  # a quick look on its own: python -m bench.tcp_netns [MB]
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    r = run(
        Plan(mb * 1_000_000, 3, 1, 2, 500, 2, 20, 60, 3000), log=lambda s: print(s, file=sys.stderr)
    )
    print(json.dumps(summary(r, mb * 1_000_000), indent=1))
