"""A hostile sender for the flood test, run as its own process inside the test's namespace.

``python -m tests.interop.flooder --to IP:PORT --target ADDR --peer ADDR --peer-port PORT
--capture-seconds S --flood-seconds F`` first listens (AF_PACKET on the namespace's loopback) for
S seconds to the legitimate peer's datagrams to the target, then for F seconds sends, as fast as
one process can and in a fixed mix: random garbage, orphan fragment pieces addressed to the
target, HELLOs from made-up identities, packets forged in the peer's name with bad MACs, all of
those again from spoofed source addresses (a raw socket, a new source per datagram), and the
captured datagrams replayed byte for byte from this process's port and spoofed from the peer's
own address. It prints one JSON line when flooding starts and one with what it sent at the end.

Safety: it sends only to ``--to``, which the test sets to an address inside its own namespace;
the spoofed sources are in 10.0.0.0/8, for which that namespace has no route, so nothing answers
them; every loop is bounded by the deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import time

from ztnode.crypto import SymmetricKey
from ztnode.identity import Identity
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher, Verb
from ztnode.wire.verbs.hello import Hello

ETH_P_ALL = 0x0003
POOL = 8192  # prebuilt datagrams per kind: the send loop only cycles through them


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def spoofed(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4+UDP datagram with a chosen source (UDP checksum 0: allowed over IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp


def hostile(rng: random.Random, target: int, peer: int) -> dict[str, list[bytes]]:
    def garbage() -> bytes:
        return rng.randbytes(rng.randrange(20, 1400))

    def orphan() -> bytes:
        total = rng.randrange(2, 16)
        d = bytearray(rng.randbytes(rng.randrange(40, 1400)))
        d[8:13] = target.to_bytes(5, "big")
        d[13] = 0xFF
        d[14] = (total << 4) | rng.randrange(1, total)
        d[15] = 0
        return bytes(d)

    def hello() -> bytes:
        public = rng.randbytes(64)
        ident = Identity(rng.randrange(1, 0xFF_FFFF_FFFF) & ~(0xFF << 32) | (1 << 32), public)
        body = Hello(12, 1, 14, 1, int(time.time() * 1000), ident).encode()
        p = pk.new_packet(rng.randbytes(8), target, ident.address, Verb.HELLO, body)
        p[19:27] = rng.randbytes(8)  # a MAC nobody can check without the key agreement
        return bytes(p)

    def forged() -> bytes:
        p = pk.new_packet(rng.randbytes(8), target, peer, Verb.FRAME, rng.randbytes(200))
        pk.armor(p, SymmetricKey(rng.randbytes(48)), Cipher.POLY1305_SALSA2012)
        return bytes(p)

    makers = {"garbage": garbage, "orphan": orphan, "hello": hello, "forged": forged}
    return {kind: [make() for _ in range(POOL // 4)] for kind, make in makers.items()}


def capture(port_from: int, port_to: int, seconds: float) -> list[bytes]:
    """UDP payloads sent from port_from to port_to on this namespace's loopback."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind(("lo", 0))
    s.settimeout(0.1)
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and len(got) < 5000:
            try:
                frame, info = s.recvfrom(65536)
            except TimeoutError:
                continue
            if info[2] == socket.PACKET_OUTGOING:
                continue  # each loopback datagram shows twice: keep the incoming copy
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
            if sport == port_from and dport == port_to:
                got.append(bytes(ip[ihl + 8 :]))
    finally:
        s.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--peer-port", type=int, required=True)
    ap.add_argument("--capture-seconds", type=float, default=3.0)
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()
    host, port_s = a.to.rsplit(":", 1)
    port = int(port_s)
    if not (host.startswith("192.168.217.") or host.startswith("127.")):
        print(f"refusing to flood {host}: not the test namespace's address", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    kinds = hostile(rng, int(a.target, 16), int(a.peer, 16))
    replays = capture(a.peer_port, port, a.capture_seconds)

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect((host, port))
    udp.setblocking(False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setblocking(False)
    spoof_pool = []
    junk = [d for batch in kinds.values() for d in batch]
    for i in range(POOL):
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        spoof_pool.append(spoofed(src, rng.randrange(1024, 65535), host, port, junk[i]))
    replay_pool = [spoofed(host, a.peer_port, host, port, d) for d in replays]
    plain_pool = [d for pair in zip(*kinds.values(), strict=True) for d in pair]

    sent = dict.fromkeys(("plain", "spoofed", "replayed", "replayed_spoofed", "refused"), 0)
    print(json.dumps({"phase": "flood", "captured": len(replays)}), flush=True)
    deadline = time.monotonic() + a.flood_seconds
    i = 0
    while time.monotonic() < deadline:
        # A round: 256 plain, 64 spoofed, and (while material lasts) 2 replays of each kind.
        for _ in range(256):
            try:
                udp.send(plain_pool[i % len(plain_pool)])
                sent["plain"] += 1
            except OSError:
                sent["refused"] += 1
            i += 1
        for _ in range(64):
            try:
                raw.sendto(spoof_pool[i % POOL], (host, 0))
                sent["spoofed"] += 1
            except OSError:
                sent["refused"] += 1
            i += 1
        if replays:
            j = i % len(replays)
            for sock_send, kind, data in (
                (udp.send, "replayed", replays[j]),
                (lambda d: raw.sendto(d, (host, 0)), "replayed_spoofed", replay_pool[j]),
            ):
                try:
                    sock_send(data)
                    sent[kind] += 1
                except OSError:
                    sent["refused"] += 1
    elapsed = a.flood_seconds
    total = sum(v for k, v in sent.items() if k != "refused")
    print(json.dumps({"sent": sent, "rate": round(total / elapsed)}), flush=True)
    udp.close()
    raw.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
