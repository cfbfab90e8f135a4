"""VL1 against a real ZeroTier 1.8.4 core (libzt), on a private network namespace.

One namespace (layout "single": every node on 192.168.217.1 with its own port) holds three
nodes:

* our **root**, the real ``ztnode node`` command run as a subprocess inside the namespace, named
  by a planet we make;
* a **libzt** node whose planet is that same world, so it must come online at our root;
* our **leaf**, an in-process :class:`~ztnode.transport.service.NodeService` on a socket that
  lives in the namespace.

The leaf ECHOes the libzt node's address. It has never heard from that node, so it must learn the
identity from the root (WHOIS); the ECHO is relayed by the root, which introduces the two
(RENDEZVOUS); they HELLO each other over the direct path and from then on the ECHOes go direct:
AES-GMAC-SIV on data, HELLO itself MAC-only, and OK(HELLO) Salsa20/12 until a side has learned
the other's protocol version (12).

A wiretap on the leaf (``Node.tap``) sees each datagram in and out: each whole packet is
classified (source, hops, cipher, verb) by opening a *copy* with the peer key. Whether the node
itself accepted a packet is judged only from what the node reports (events, counters, drops).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from tests.interop.conftest import need_root
from tests.interop.netns import NetNamespace
from tests.interop.peer import LibztPeer
from tests.interop.world import ControllerProcess
from tests.interop.world import make_planet as world_make_planet
from ztnode.core import events as ev
from ztnode.core.node import Node
from ztnode.identity import Identity
from ztnode.transport.service import NodeService, ServiceConfig
from ztnode.wire import packet as pk
from ztnode.wire.constants import IDX_PAYLOAD, Cipher, Verb
from ztnode.wire.world import World

IDS = test_identities()
PLANET_ID = 0x1DE57A11
P_ROOT, P_LIBZT, P_LEAF = 29993, 29994, 29995
ECHO_PERIOD = 1.1  # s; libzt 1.8.4 answers one ECHO per peer per second
IDENTITY_GATE = 2.2  # s; a 1.x root validates one new identity per 2 s per source /24

Addr = tuple[str, int]


def _ms() -> float:
    return time.monotonic() * 1000.0


# ------------------------------------------------------------------------------ the wiretap


@dataclass
class Seen:
    """One whole packet to or from the leaf, classified from a copy."""

    t: float  # monotonic ms
    inbound: bool
    remote: Addr
    src: int
    dest: int
    hops: int
    cipher: int
    verb: int | None  # None: could not be opened with a key we hold (yet)
    in_re: int | None = None  # for OK and ERROR: the verb answered


@dataclass
class Tap:
    leaf: Node
    seen: list[Seen] = field(default_factory=list)
    fragments: int = 0
    current: Seen | None = None  # the inbound datagram being processed right now
    causes: dict[int, Seen | None] = field(default_factory=dict)  # id(event) -> its datagram
    # Whole packets not opened yet: the tap sees a datagram before the node reads it, so a
    # packet from a peer the node is meeting in that very datagram (HELLO) opens later.
    unopened: list[tuple[Seen, bytes]] = field(default_factory=list)

    def install(self) -> None:
        self.leaf.tap = self

    # The node's wiretap (ztnode.core.tap.NodeTap).

    def datagram_in(self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr) -> None:
        self.current = self._record(bytes(data), remote, inbound=True)

    def datagrams_out(self, datagrams: list[Any]) -> None:
        for o in datagrams:
            self._record(o.data, o.remote, inbound=False)

    def timer(self) -> None:
        self.current = None  # events from a timer are not caused by a datagram

    def event(self, e: ev.Event) -> None:
        # The host drains the node's events right after each datagram (or timer), while
        # ``current`` still names their cause; the service hands them on later (once per
        # burst), so the cause is recorded here, at the source.
        self.causes[id(e)] = self.current

    def _record(self, data: bytes, remote: Addr, *, inbound: bool) -> Seen | None:
        if len(data) < IDX_PAYLOAD or (len(data) > 16 and data[13] == 0xFF):
            self.fragments += 1  # not classified; none are expected in this exchange
            return None
        flags = data[18]
        s = Seen(
            _ms(),
            inbound,
            remote,
            src=int.from_bytes(data[13:18], "big"),
            dest=int.from_bytes(data[8:13], "big"),
            hops=flags & 7,
            cipher=(flags >> 3) & 7,
            verb=None,
        )
        if not flags & 0x40:  # a fragmented packet's head alone cannot be opened
            self._open(s, data)
            if s.verb is None:
                self.unopened.append((s, data))
        self.seen.append(s)
        return s

    def classify(self) -> None:
        """Open what the node has since learned the keys for."""
        still = []
        for s, data in self.unopened:
            self._open(s, data)
            if s.verb is None:
                still.append((s, data))
        self.unopened = still

    def _open(self, s: Seen, data: bytes) -> None:
        """Classify from a copy: HELLO is in clear, the rest opens with the peer's key."""
        if s.cipher == Cipher.POLY1305_NONE:
            s.verb = data[27] & 0x1F
            return
        peer = self.leaf.peer(s.src if s.inbound else s.dest)
        buf = bytearray(data)
        if peer is None or not pk.dearmor(buf, peer.key):
            return
        if buf[27] & 0x80:
            pk.decompress(buf)
        s.verb = buf[27] & 0x1F
        if s.verb in (Verb.OK, Verb.ERROR) and len(buf) > IDX_PAYLOAD:
            s.in_re = buf[IDX_PAYLOAD] & 0x1F

    def select(self, pred: Callable[[Seen], bool]) -> list[Seen]:
        self.classify()
        return [s for s in self.seen if pred(s)]


def describe(s: Seen) -> str:
    verb = Verb(s.verb).name if s.verb is not None else "?"
    if s.in_re is not None:
        verb += f"({Verb(s.in_re).name})"
    arrow = "<-" if s.inbound else "->"
    return (
        f"{s.t:.0f} {arrow} {s.remote[0]}:{s.remote[1]} {s.src:010x}>{s.dest:010x} "
        f"hops={s.hops} {Cipher(s.cipher).name if s.cipher < 4 else s.cipher} {verb}"
    )


# ------------------------------------------------------------------------------ our root (CLI)


class RootProcess(ControllerProcess):
    """``ztnode node`` (no controller) inside the namespace, stopped by pid; ``api`` reads its
    state through the CLI, as a user would."""

    def __init__(self, ns: NetNamespace, home: Path, planet_file: Path, ip: str) -> None:
        super().__init__(ns, home, planet_file, ip, P_ROOT, controller=False)

    def cli_json(self, what: str) -> Any:
        cmd = ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "ztnode.cli"]
        r = subprocess.run(
            [*cmd, what, "--home", str(self.home), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if r.returncode != 0:
            return {"error": r.stderr.strip()}
        return json.loads(r.stdout)


def make_planet(root: Identity, ip: str) -> World:
    return world_make_planet(root, ip, P_ROOT, PLANET_ID)


# ------------------------------------------------------------------------------ the test


async def _until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()


def test_leaf_and_libzt_meet_at_our_root_and_echo_directly(
    libzt_installed: None, tmp_path: Path
) -> None:
    need_root()
    t0 = time.monotonic()
    root_id, leaf_id = IDS[0], IDS[1]
    with NetNamespace() as ns:
        ip = ns.addresses[0]
        planet = make_planet(root_id, ip)
        planet_file = tmp_path / "planet"
        planet_file.write_bytes(planet.to_bytes())
        root_home = tmp_path / "root"
        root_home.mkdir()
        root_id.save(root_home / "identity.secret", include_private=True)
        leaf_home = tmp_path / "leaf"
        leaf_home.mkdir()
        leaf_id.save(leaf_home / "identity.secret", include_private=True)
        (tmp_path / "libzt").mkdir()

        root = RootProcess(ns, root_home, planet_file, ip)
        try:
            root.wait_ready(20)
            with LibztPeer(netns=ns.name) as lz:
                lz.call(
                    "start",
                    storage=str(tmp_path / "libzt"),
                    planet=planet.to_bytes().hex(),
                    port=P_LIBZT,
                    blacklist_if=[],
                )
                # libzt makes its identity (0.1-0.7 s here, written to storage), then HELLOs the
                # root at once. Starting our leaf once the root's identity gate for this /24 has
                # reopened saves one of the two a 5 s retry (both would get there anyway).
                ident_file = tmp_path / "libzt" / "identity.public"
                deadline = time.monotonic() + 20
                while not ident_file.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(IDENTITY_GATE)
                asyncio.run(_scenario(ns, ip, planet, leaf_home, lz, root, t0))
        finally:
            root.stop()
    print(f"total {time.monotonic() - t0:.1f} s")


async def _scenario(
    ns: NetNamespace,
    ip: str,
    planet: World,
    leaf_home: Path,
    lz: LibztPeer,
    root: RootProcess,
    t0: float,
) -> None:
    root_addr = IDS[0].address
    sock = ns.socket(bind=(ip, P_LEAF))
    # One datagram at a time (no C bursts): the wiretap sees datagrams, not opened bursts.
    service = NodeService(
        ServiceConfig(home=leaf_home, planet=planet, sockets=(sock,), burst_receive=False)
    )
    events: list[tuple[float, ev.Event, Seen | None]] = []
    try:
        node = await service.start()
    except BaseException:
        sock.close()
        raise
    tap = Tap(node)
    tap.install()
    service.subscribe(lambda e: events.append((_ms(), e, tap.causes.get(id(e)))))
    libzt_direct: Addr = (ip, P_LIBZT)

    def report(what: str) -> str:
        lines = [
            what,
            f"elapsed {time.monotonic() - t0:.1f} s",
            f"leaf counters {json.dumps(node.counters.as_dict())}",
            "leaf peers "
            + repr({f"{a:010x}": [s.path.remote for s in p.paths] for a, p in node.peers.items()}),
            f"root info {json.dumps(root.cli_json('info'))}",
            f"root peers {json.dumps(root.cli_json('peers'))}",
            "events: " + ", ".join(type(e).__name__ for _, e, _ in events),
            "tap:",
            *(describe(s) for s in tap.select(lambda s: True)[-80:]),
            "root log:",
            root.log_text(),
        ]
        return "\n".join(lines)

    try:
        # Both come online at our root (libzt about 5 s after its start: it reports online at
        # its next 5 s tick after the root's OK(HELLO)).
        lz_status: dict[str, Any] = {}

        async def libzt_online() -> None:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                st = await asyncio.to_thread(lz.call, "status", 10)
                if st["online"]:
                    times["libzt"] = time.monotonic() - t0
                    lz_status.update(st)
                    return
                await asyncio.sleep(0.25)

        async def leaf_online() -> bool:
            ok = await _until(lambda: node.online, 40)
            times["leaf"] = time.monotonic() - t0
            return ok

        times: dict[str, float] = {}
        ok_leaf, _ = await asyncio.gather(leaf_online(), libzt_online())
        assert lz_status.get("online"), report("libzt did not come online at our root")
        assert ok_leaf, report("our leaf did not come online at our root")
        lz_addr = int(lz_status["address"], 16)
        assert lz_addr not in node.peers, "the leaf cannot know libzt before asking"
        root_peers = {p["address"]: p for p in root.cli_json("peers")}
        assert f"{node.address:010x}" in root_peers, report("the root does not list our leaf")
        lz_at_root = root_peers.get(f"{lz_addr:010x}")
        assert lz_at_root is not None, report("the root does not list the libzt node")
        # The root parsed libzt's HELLO: ZeroTier 1.8.4, protocol 12, at its direct address.
        assert (lz_at_root["version"], lz_at_root["protocolVersion"]) == ("1.8.4", 12)
        assert [q["address"] for q in lz_at_root["paths"]] == [f"{ip}/{P_LIBZT}"]
        assert tap.select(lambda s: s.src == lz_addr) == []  # libzt never spoke to the leaf

        # ECHO until one answer arrives over the direct path.
        payload = b"ztnode<->libzt"
        sent: dict[int, float] = {}
        direct_reply: tuple[float, ev.EchoReply, Seen] | None = None
        deadline = time.monotonic() + 60
        while direct_reply is None and time.monotonic() < deadline:
            rid = service.call(lambda n, now: n.send_echo(lz_addr, payload, now))
            assert isinstance(rid, int)
            sent[rid] = _ms()

            def replied(rid: int = rid) -> bool:
                return any(
                    isinstance(e, ev.EchoReply) and e.request_id == rid for _, e, _ in events
                )

            # libzt answers at most one ECHO per second per peer (and the first one it gets
            # relayed counts), so ECHOes go out 1.1 s apart.
            await _until(replied, ECHO_PERIOD)
            await asyncio.sleep(max(0.0, ECHO_PERIOD - (_ms() - sent[rid]) / 1000))
            for t, e, via in events:
                if (
                    isinstance(e, ev.EchoReply)
                    and via is not None
                    and via.hops == 0
                    and via.remote == libzt_direct
                ):
                    direct_reply = (t, e, via)
                    break
        assert direct_reply is not None, report("no ECHO answered over a direct path in 60 s")
        t_direct = time.monotonic() - t0
        _, reply, via = direct_reply
        tap.classify()

        # 1. The identity came from the root: PeerAdded(libzt) before any packet from libzt.
        added = [t for t, e, _ in events if isinstance(e, ev.PeerAdded) and e.address == lz_addr]
        assert added, report("no PeerAdded for the libzt node")
        first_from_lz = min(s.t for s in tap.seen if s.inbound and s.src == lz_addr)
        assert added[0] < first_from_lz, report("libzt's identity did not come from WHOIS")
        ok_whois = tap.select(
            lambda s: s.inbound and s.src == root_addr and s.verb == Verb.OK and s.in_re == 4
        )
        assert ok_whois and ok_whois[0].t <= added[0], report("no OK(WHOIS) from the root")
        assert node.counters.verbs_in["OK"] > 0
        # libzt, handed a relayed ECHO from a stranger, asked our root about the leaf in turn.
        our_whois = tap.select(lambda s: not s.inbound and s.verb == Verb.WHOIS)
        root_whois = root.cli_json("info").get("counters", {}).get("verbsIn", {}).get("WHOIS", 0)
        assert root_whois > len(our_whois) >= 1, report("libzt sent our root no WHOIS")

        # 2. Before the direct path, traffic with libzt went through the root.
        relayed = tap.select(lambda s: s.inbound and s.src == lz_addr and s.hops > 0)
        assert relayed and all(s.remote == (ip, P_ROOT) for s in relayed), report("no relay")
        replies = [(e, v) for _, e, v in events if isinstance(e, ev.EchoReply)]
        first_reply, first_via = replies[0]
        assert first_reply.address == lz_addr and first_reply.payload == payload
        assert first_via is not None and first_via.hops > 0, report("first reply not relayed")
        assert first_via.src == lz_addr and first_via.remote == (ip, P_ROOT)
        # The root introduced the two (RENDEZVOUS naming libzt's direct address).
        assert tap.select(
            lambda s: s.inbound and s.src == root_addr and s.verb == Verb.RENDEZVOUS
        ), report("no RENDEZVOUS from the root")

        # 3. The direct reply: OK(ECHO) with our payload, AES-GMAC-SIV, straight from libzt.
        assert reply.address == lz_addr and reply.payload == payload
        assert via.src == lz_addr and via.verb == Verb.OK and via.in_re == Verb.ECHO
        assert via.cipher == Cipher.AES_GMAC_SIV, report("direct OK(ECHO) not AES-GMAC-SIV")
        peer = node.peer(lz_addr)
        assert peer is not None and peer.version[0] >= 12, report("libzt's version not learned")
        best = peer.best_path(service.clock.now())
        assert best is not None and best.remote == libzt_direct, report("no direct path")
        assert any(s.path.remote == libzt_direct for s in peer.paths)
        # Our direct ECHOes to libzt are AES-GMAC-SIV too, and libzt answered them.
        our_direct_echo = tap.select(
            lambda s: (
                not s.inbound
                and s.dest == lz_addr
                and s.remote == libzt_direct
                and s.verb == Verb.ECHO
                and s.cipher == Cipher.AES_GMAC_SIV
            )
        )
        assert our_direct_echo, report("we sent no AES-GMAC-SIV ECHO directly")

        # 4. The HELLO path: libzt's HELLOs came directly, MAC-only, and every HELLO the leaf
        # received (libzt's and the root's path confirmations) authenticated: the node counts
        # one POLY1305_NONE packet per accepted HELLO. libzt answered our direct HELLO.
        hellos = tap.select(lambda s: s.inbound and s.verb == Verb.HELLO)
        lz_hellos = [s for s in hellos if s.src == lz_addr]
        assert lz_hellos, report("libzt never sent us a HELLO")
        assert all(s.remote == libzt_direct and s.hops == 0 for s in lz_hellos)
        assert all(s.cipher == Cipher.POLY1305_NONE for s in hellos)
        # Ours to libzt went direct and MAC-only too (libzt answered them: see below).
        our_hellos = tap.select(lambda s: not s.inbound and s.verb == Verb.HELLO)
        assert all(s.cipher == Cipher.POLY1305_NONE for s in our_hellos)
        assert any(s.dest == lz_addr and s.remote == libzt_direct for s in our_hellos)
        assert node.counters.ciphers_in["POLY1305_NONE"] == len(hellos), report("HELLO auth")
        # Each side encrypts OK(HELLO) with what it knew of the other *before* that HELLO, so the
        # first OK(HELLO) either side sends is Salsa20/12 unless it had already received an
        # OK(HELLO) (and with it the other's protocol 12); the very first one in the pair is
        # always Salsa20/12. libzt 1.8.4 and our node must both behave so.
        ok_from_lz = tap.select(
            lambda s: s.inbound and s.src == lz_addr and s.verb == Verb.OK and s.in_re == 1
        )
        ok_to_lz = tap.select(
            lambda s: not s.inbound and s.dest == lz_addr and s.verb == Verb.OK and s.in_re == 1
        )
        assert ok_from_lz, report("libzt never answered our HELLO")
        assert ok_to_lz, report("we never answered libzt's HELLO")
        first_lz, first_ours = ok_from_lz[0], ok_to_lz[0]
        salsa, aes = Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV
        lz_knew = first_ours.t < first_lz.t  # we had answered libzt before its first answer
        we_knew = first_lz.t < first_ours.t
        assert first_lz.cipher == salsa or (lz_knew and first_lz.cipher == aes), report("lz")
        assert first_ours.cipher == salsa or (we_knew and first_ours.cipher == aes), report("us")
        assert min(ok_from_lz + ok_to_lz, key=lambda s: s.t).cipher == salsa
        # After both versions are known, every later OK(HELLO) either way is AES-GMAC-SIV.
        assert all(s.cipher == aes for s in ok_from_lz[1:] + ok_to_lz[1:]), report("later")
        first_ok = first_lz
        our_ok_hello_before = lz_knew

        # 5. Counters agree: AES-GMAC-SIV packets authenticated, nothing failed its MAC.
        from_lz_aes = tap.select(
            lambda s: s.inbound and s.src == lz_addr and s.cipher == Cipher.AES_GMAC_SIV
        )
        assert node.counters.ciphers_in["AES_GMAC_SIV"] >= len(from_lz_aes) > 0
        assert node.counters.drops["mac_failed"] == 0, report("MAC failures")
        root_info = root.cli_json("info")
        print(
            f"online: libzt {times['libzt']:.1f} s, leaf {times['leaf']:.1f} s; "
            f"direct ECHO after {t_direct:.1f} s "
            f"(rtt {reply.rtt_ms} ms, {len(sent)} ECHOes); libzt {lz_addr:010x}; "
            f"first OK(HELLO) from libzt {Cipher(first_ok.cipher).name}"
            f"{' (after ours)' if our_ok_hello_before else ''}; "
            f"leaf ciphers {dict(node.counters.ciphers_in)}; "
            f"root verbs {root_info.get('counters', {}).get('verbsIn')}"
        )
        print("\n".join(describe(s) for s in tap.select(lambda s: True)))
    finally:
        await service.stop()


if __name__ == "__main__":  # pragma: no cover - manual runs
    sys.exit(pytest.main([__file__, "-s", "-q"]))
