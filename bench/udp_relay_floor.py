"""The bare user-space relay the relay benchmark compares a ztnode root with: one process that
forwards UDP datagrams between two others, and those two playing echo server and pinger.

    python -m bench.udp_relay_floor relay BIND_IP PORT SECONDS
    python -m bench.udp_relay_floor echo BIND_IP RELAY_IP PORT SECONDS
    python -m bench.udp_relay_floor ping BIND_IP RELAY_IP PORT COUNT SIZE

Each runs in its own namespace (``ip netns exec``). ``relay`` forwards every datagram from one
of the two addresses it has heard to the other (no parsing, no crypto: the floor of relaying);
``echo`` registers with the relay and sends back what it receives; ``ping`` registers, then
times ``COUNT`` round trips of ``SIZE``-byte datagrams and prints their milliseconds as JSON.
``relay`` and ``echo`` print ``ready`` once bound or registered. Every loop ends after its time
or count, so nothing outlives the benchmark.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def relay(bind_ip: str, port: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind_ip, port))
    s.settimeout(0.5)
    print("ready", flush=True)
    ends: list[tuple[str, int]] = []
    buf = bytearray(65536)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            n, src = s.recvfrom_into(buf)
        except TimeoutError:
            continue
        if src not in ends:
            if len(ends) == 2:
                continue
            ends.append(src)
            continue  # a registration
        if len(ends) == 2:
            s.sendto(memoryview(buf)[:n], ends[1] if src == ends[0] else ends[0])


def _register(bind_ip: str, relay_ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind_ip, 0))
    s.connect((relay_ip, port))
    s.send(b"hello")
    return s


def echo(bind_ip: str, relay_ip: str, port: int, seconds: float) -> None:
    s = _register(bind_ip, relay_ip, port)
    s.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        s.send(data)


def ping(bind_ip: str, relay_ip: str, port: int, count: int, size: int) -> None:
    s = _register(bind_ip, relay_ip, port)
    s.settimeout(2.0)
    payload = bytes(size)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.send(payload)
        s.recv(65536)
        out.append((time.perf_counter() - t0) * 1000)
    print(json.dumps(out))


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "relay":
        relay(args[0], int(args[1]), float(args[2]))
    elif role == "echo":
        echo(args[0], args[1], int(args[2]), float(args[3]))
    elif role == "ping":
        ping(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    else:
        sys.exit(f"unknown role {role!r}")
