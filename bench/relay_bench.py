"""A ztnode root relaying between two members that cannot reach each other directly.
``python -m bench --only relay`` (needs root for network namespaces).

Three namespaces the benchmark creates and deletes: the root's (``R``) and one per member
(``A``, ``B``), each member joined to ``R`` by its own veth cable (``10.81.0.0/24`` and
``10.82.0.0/24``). The root listens on ``10.80.0.1`` (on ``R``'s loopback, routed to by both
members); ``R`` does not forward IP, and neither member has a route to the other's subnet, so
when the root introduces them (RENDEZVOUS) their direct attempts fail and every packet between
them goes through the root, as between two members behind symmetric NATs.

Measured through the root: TCP bulk (MB/s of payload, median of the runs), the echo round trip,
the datagrams the root relayed per second during bulk (the kernel's counters on the root's two
cables), the root process's CPU (``/proc``) and its memory after. Beside them, the crypto+UDP
floor of the same segment on the same underlay (one armor, one dearmor and the datagrams'
trips through the kernel: what a member pays per segment; the root, which relays without
decrypting, pays only the UDP part). libzt cannot be a root, and no ZeroTierOne root runs here,
so the floor is the reference.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
ROOT_IP = "10.80.0.1"
LINKS = {"a": ("10.81.0.1", "10.81.0.2"), "b": ("10.82.0.1", "10.82.0.2")}
BULK_BYTES = 40_000_000
SINK = 5001
SEGMENT = 2800 - 40 - 12  # TCP payload of a full segment (as bench.tcp_bench)


def _link_stats(ns: str, dev: str) -> tuple[int, int]:
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    st = json.loads(out.stdout)[0]["stats64"]
    return int(st["rx"]["packets"]), int(st["tx"]["packets"])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rows(quick: bool) -> list[dict[str, Any]]:
    from bench.tcp_netns import why_no_namespace

    why = why_no_namespace()
    if why:
        return [{"what": "relayed TCP", "value": "n/a", "note": why}]
    size = BULK_BYTES // (8 if quick else 1)
    relayed = _run(runs=1 if quick else 5, size=size, forward=False)
    direct = _run(runs=1 if quick else 3, size=size, forward=True)
    return _rows(relayed, direct, size)


def _run(runs: int, size: int, *, forward: bool) -> dict[str, Any]:
    """One world on the three namespaces; ``forward`` lets ``R`` route between the members'
    cables (the control: the same cables and hops, a direct ZeroTier path)."""
    from bench.tcp_netns import ZTNODE_NETWORK, ZtnodeProc, _identities
    from tests.interop.netns import NetNamespace
    from tests.interop.world import ControllerProcess, authorize, make_planet

    ids = _identities()
    root_id, members = ids[0], ids[4:6]
    r_ns, a_ns, b_ns = (NetNamespace(layout="empty") for _ in range(3))
    procs: list[ZtnodeProc] = []
    root: ControllerProcess | None = None
    with tempfile.TemporaryDirectory(prefix="ztrelay-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            for ns in (r_ns, a_ns, b_ns):
                ns.__enter__()
            subprocess.run(
                ["ip", "netns", "exec", r_ns.name, "sysctl", "-q", "-w",
                 f"net.ipv4.ip_forward={int(forward)}"],
                check=True, timeout=30,
            )  # fmt: skip
            r_ns.ip("addr", "add", f"{ROOT_IP}/32", "dev", "lo")
            for side, ns in (("a", a_ns), ("b", b_ns)):
                r_ip, m_ip = LINKS[side]
                subprocess.run(
                    ["ip", "link", "add", f"r{side}", "netns", r_ns.name, "type", "veth",
                     "peer", "name", f"m{side}", "netns", ns.name],
                    check=True, timeout=30,
                )  # fmt: skip
                r_ns.ip("addr", "add", f"{r_ip}/24", "dev", f"r{side}")
                r_ns.ip("link", "set", "dev", f"r{side}", "up")
                ns.ip("addr", "add", f"{m_ip}/24", "dev", f"m{side}")
                ns.ip("link", "set", "dev", f"m{side}", "up")
                ns.ip("route", "add", f"{ROOT_IP}/32", "via", r_ip)
                if forward:
                    other = LINKS["b" if side == "a" else "a"][1].rsplit(".", 1)[0] + ".0/24"
                    ns.ip("route", "add", other, "via", r_ip)
            planet = make_planet(root_id, ROOT_IP)
            planet_file = tmp / "planet"
            planet_file.write_bytes(planet.to_bytes())
            home = tmp / "root"
            home.mkdir()
            root_id.save(home / "identity.secret", include_private=True)
            root = ControllerProcess(r_ns, home, planet_file, ROOT_IP)
            api = root.wait_ready(30)
            nwid = str(api.call("POST", "/controller/network", ZTNODE_NETWORK)["id"])
            for ident in members:
                authorize(api, nwid, ident)
            for i, (ident, ns, side) in enumerate(zip(members, (a_ns, b_ns), "ab", strict=True)):
                mh = tmp / f"member{i}"
                mh.mkdir()
                ident.save(mh / "identity.secret", include_private=True)
                procs.append(
                    ZtnodeProc(ns.name, mh, planet_file, LINKS[side][1], tmp / f"m{i}.log")
                )
            for p in procs:
                p.recv(60)
            for p in procs:
                p.send(op="join", nwid=nwid)
            ips = [p.recv(60) for p in procs]
            procs[1].call(op="serve", port=SINK)
            server, client = ips[1]["ip4"], procs[0]
            client.call(120, op="bulk", host=server, port=SINK, bytes=1 << 20)  # warm-up
            pid = root.proc.pid
            secs: list[float] = []
            relayed: list[float] = []
            cpu: list[float] = []
            for _ in range(runs):
                rx0 = _link_stats(r_ns.name, "ra")[0] + _link_stats(r_ns.name, "rb")[0]
                c0, t0 = _cpu_s(pid), time.monotonic()
                r = client.call(300, op="bulk", host=server, port=SINK, bytes=size)
                wall = time.monotonic() - t0
                rx1 = _link_stats(r_ns.name, "ra")[0] + _link_stats(r_ns.name, "rb")[0]
                if r["bytes"] != size:
                    raise RuntimeError(f"sink got {r['bytes']} of {size} bytes")
                secs.append(float(r["seconds"]))
                relayed.append((rx1 - rx0) / wall)
                cpu.append((_cpu_s(pid) - c0) / wall)
            rtt = client.call(120, op="rtt", host=server, port=SINK + 1, count=2000)["ms"]
            out: dict[str, Any] = {
                "mb": [size / x / 1e6 for x in secs],
                "pps": statistics.median(relayed),
                "cpu": statistics.median(cpu),
                "rss": _rss_mb(pid),
                "rtt": rtt,
            }
            if not forward:
                out["floor_us"] = _floor(a_ns, r_ns)
                out["bare_rtt"] = _bare_relay_rtts(r_ns, a_ns, b_ns)
            return out
        finally:
            for p in procs:
                p.close()
            if root is not None:
                root.stop()
            for ns in (r_ns, a_ns, b_ns):
                ns.close()


def _rows(relayed: dict[str, Any], direct: dict[str, Any], size: int) -> list[dict[str, Any]]:
    mb = statistics.median(relayed["mb"])
    floor_mb = SEGMENT / relayed["floor_us"]

    def runs(xs: list[float]) -> str:
        return " ".join(f"{x:.1f}" for x in xs)

    def rtt(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} ms"

    return [
        {
            "what": f"TCP bulk through the root, MB/s (median of {size // 1_000_000} MB runs)",
            "value": f"{mb:.1f}",
            "note": f"runs {runs(relayed['mb'])}; direct on the same cables "
            f"{statistics.median(direct['mb']):.1f} ({runs(direct['mb'])})",
        },
        {
            "what": "datagrams into the root per second during relayed bulk",
            "value": f"{relayed['pps']:.0f}",
            "note": "kernel counters on the root's two cables (each is relayed once)",
        },
        {
            "what": "root CPU during relayed bulk",
            "value": f"{relayed['cpu'] * 100:.0f} % of one core",
            "note": f"root RSS after: {relayed['rss']:.0f} MB; during direct bulk: "
            f"{direct['cpu'] * 100:.0f} %",
        },
        {
            "what": "TCP echo round trip through the root, 1 byte (median of 2000)",
            "value": rtt(relayed["rtt"]),
            "note": f"direct on the same cables {rtt(direct['rtt'])}; the datagrams alone "
            f"through a bare user-space relay {rtt(relayed['bare_rtt'])} "
            "(bench.udp_relay_floor)",
        },
        {
            "what": "crypto+UDP floor of a full segment over one cable, MB/s",
            "value": f"{floor_mb:.1f}",
            "note": f"ztnode through the root / floor: {mb / floor_mb:.2f}",
        },
    ]


def _bare_relay_rtts(r_ns: Any, a_ns: Any, b_ns: Any) -> list[float]:
    """Round trips of a 91-byte datagram (a 1-byte TCP segment's ZeroTier packet) from A to B
    and back through a bare relay process in R: what the cables, the kernels and a user-space
    hop cost before any ZeroTier work."""
    port, count = 29000, 2000
    mod = [sys.executable, "-m", "bench.udp_relay_floor"]
    env = {**os.environ, "PYTHONPATH": str(_REPO)}

    def start(ns: Any, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns.name, *mod, *args],
            stdout=subprocess.PIPE, text=True, cwd=_REPO, env=env,
        )  # fmt: skip

    procs: list[subprocess.Popen[str]] = []
    try:
        for ns, args in (
            (r_ns, ("relay", ROOT_IP, str(port), "30")),
            (b_ns, ("echo", LINKS["b"][1], ROOT_IP, str(port), "30")),
        ):
            procs.append(start(ns, *args))
            assert procs[-1].stdout is not None
            if procs[-1].stdout.readline().strip() != "ready":  # bound, or registered
                raise RuntimeError(f"udp_relay_floor {args[0]} did not start")
        pinger = start(a_ns, "ping", LINKS["a"][1], ROOT_IP, str(port), str(count), "91")
        out, _ = pinger.communicate(timeout=60)
        return [float(x) for x in json.loads(out)]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def _floor(a_ns: Any, r_ns: Any) -> float:
    """The per-segment floor (us) over one of the cables, member A to the root's end: armor,
    the datagrams through the kernel and the veth, dearmor. A relayed segment crosses two
    such cables (the root adds a receive and a send, and no crypto)."""
    from bench.tcp_bench import segment_floor_us

    tx = a_ns.socket(bind=(LINKS["a"][1], 0))
    rx = r_ns.socket(bind=(LINKS["a"][0], 0))
    try:
        return segment_floor_us(20_000, 2800, tx, rx)
    finally:
        tx.close()
        rx.close()
