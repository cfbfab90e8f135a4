"""Every program in ``examples/`` runs with ``--local`` (an embedded world on loopback) and says
what it did. Their network forms (``--home --network``) would contact ZeroTier's public roots,
so they are never run here; only that each one offers them is checked."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts processes or uses real sockets (loopback only)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 90.0  # seconds for each example, from the moment they all start (side by side)

V4 = r"10\.147\.17\.\d+"
V6 = r"fd[0-9a-f:]+"

# Each example, and lines (regular expressions) its output must contain.
EXPECTED: dict[str, list[str]] = {
    "echo_server": [
        rf"server: echo on {V4} port 7",
        rf"server: connection from {V4} port \d+",
        r"client: echoed 'hello over ZeroTier'",
    ],
    "echo_client": [
        r"client: echoed 'hello over ZeroTier' in [\d.]+ ms",
        r"client: echoed 'and once more' in [\d.]+ ms",
        rf"client: connected to {V6} port 7",
    ],
    "udp_echo": [
        rf"server: 10 bytes from {V4} port \d+",
        r"client: IPv4 echo b'hello, UDP'",
        r"client: IPv6 echo b'hello, UDP'",
    ],
    "ping": [
        rf"64 bytes from {V4}: icmp_seq=\d+ time=[\d.]+ ms",
        rf"64 bytes from {V6}: icmp_seq=\d+ time=[\d.]+ ms",
        r"4 packets transmitted, [1-4] received",
        r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms",
    ],
    "http_server": [
        r"client: GET / -> 200 OK: 'Hello from ztnode! You asked for /'",
        r"client: GET /hello\?from=ztnode -> 200 OK: 'Hello from ztnode! You asked for "
        r"/hello\?from=ztnode'",
    ],
    "blocking_client": [
        rf"client: connected from {V4} to {V4} port 7",
        rf"client: connected from {V6} to {V6} port 7",
        r"client: recv b'hello, blocking world\\n'",
        r"client: readline b'two\\n'",
    ],
    "vm_bridge": [
        rf"vm: ARP who-has 10\.147\.17\.250 from {V4}",
        r"64 bytes from 10\.147\.17\.250: icmp_seq=2 time=[\d.]+ ms",
        r"bridge: \{'from_segment': \d+, 'to_segment': \d+, 'dropped': 0, 'refused': 0\}",
    ],
    "tap_bridge": [
        r"bridge: zttap\d+ \(in namespace ztnode-tap-example-\d+\) on [0-9a-f]{16}",
        r"64 bytes from 10\.147\.17\.250: icmp_seq=2 time=[\d.]+ ms",
        r"bridge: \{'from_segment': \d+, 'to_segment': \d+, 'dropped': 0, 'refused': 0\}",
    ],
    "discovery": [
        rf"resolve: web\.zt\.example -> {V4}, {V6}",
        rf"resolve: zt-[0-9a-f]{{10}}\.local -> {V4}, {V6}",
        rf"resolve: zt-[0-9a-f]{{10}} -> {V4}, {V6}",
        r"connect: web\.zt\.example port 80 said 'hello from web'",
        r"advertise: 'Team wiki' on zt-[0-9a-f]{10}\.local",
        rf"browse: added 'Team wiki' at zt-[0-9a-f]{{10}}\.local\.? port 80 \['{V4}'",
    ],
    "http_httpx": [
        rf"httpx: GET http://{V4}:80/hello -> 200 \{{'path': '/hello', 'from': '{V4}', "
        r"'received': 0\}",
        rf"httpx: POST http://{V4}:80/upload -> 200 .*'received': 100000\}}",
        rf"httpx: GET http://\[{V6}\]/ -> 200",
    ],
    "http_requests": [
        rf"requests: GET http://{V4}:8000/one -> 200 \{{'path': '/one', 'from': '{V4}'\}}",
        rf"requests: GET http://{V4}:8000/two -> 200",
    ],
    "http_urllib": [
        rf"urllib: 200 'hello {V4}, you asked for /via-urllib'",
        rf"http\.client: 200 'hello {V6}, you asked for /via-http\.client'",
    ],
    "asgi_server": [
        r"server: lifespan startup",
        rf"server: serving http://{V4}:8000/",
        rf"client: 200 'hello from ztnode, visit 2 \(you are {V4}\)'",
        r"server: lifespan shutdown",
    ],
    "wsgi_server": [
        rf"server: serving http://{V4}:8000/",
        rf"client: 'GET /hello from {V4}: 0 bytes received'",
        rf"client: 'POST /upload from {V6}: 50000 bytes received'",
    ],
    "events": [
        r"NetworkStatusChanged +network_id=[0-9a-f]{16} status=OK",
        rf"AddressAdded +network_id=[0-9a-f]{{16}} address={V4}/24",
        r"PathUp +address=[0-9a-f]{10} ",
        r"NetworkLeft +network_id=[0-9a-f]{16}",
    ],
}


# Examples that make devices (a TAP in a namespace of their own): run only as root.
NEEDS_ROOT = frozenset({"tap_bridge"})

Run = tuple["subprocess.Popen[bytes]", Path, float]  # the process, its output file, its start


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """All examples start at once: each spends most of its time waiting (for its world to
    form, for timers), so side by side the module takes about as long as the slowest one."""
    base = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started: dict[str, Run] = {}
    try:
        for path in example_files():
            out = base / f"{path.stem}.out"
            with out.open("w") as f:
                proc = subprocess.Popen(
                    [sys.executable, str(path), "--local"],
                    cwd=base,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a process group: see kill()
                )
            started[path.stem] = (proc, out, time.monotonic())
        yield started
    finally:
        for name, (proc, _, _) in started.items():
            kill(proc)
            if name == "tap_bridge" and os.geteuid() == 0:
                # A killed example never reached its own cleanup: its namespace goes here.
                subprocess.run(
                    ["ip", "netns", "del", f"ztnode-tap-example-{proc.pid}"],
                    stderr=subprocess.DEVNULL,
                    check=False,
                )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill an example's process group (its own session), the example and any worker of the
    process pools it started: those would outlive a killed parent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_every_example_is_run() -> None:
    """An example added to examples/ must be added to EXPECTED, and so run by the test below."""
    assert {p.stem for p in example_files()} == set(EXPECTED)


def test_examples_offer_the_network_form() -> None:
    for path in example_files():
        text = path.read_text()
        for option in ("--local", "--home", "--network", "--planet"):
            assert f'"{option}"' in text, f"{path.name} has no {option} option"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_locally(name: str, runs: dict[str, Run]) -> None:
    assert name in runs, f"examples/{name}.py does not exist"
    if name in NEEDS_ROOT and os.geteuid() != 0:
        if os.environ.get("ZTNODE_REQUIRE_INTEROP", "") not in ("", "0"):
            pytest.fail(f"examples/{name}.py needs root, and CI runs as root")
        pytest.skip(f"examples/{name}.py needs root (it makes a TAP device)")
    proc, out, t_start = runs[name]
    try:
        code = proc.wait(timeout=max(0.0, t_start + TIMEOUT - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill(proc)
        pytest.fail(f"examples/{name}.py --local ran over {TIMEOUT} s:\n{out.read_text()}")
    output = out.read_text()
    assert code == 0, f"examples/{name}.py --local exited {code}:\n{output}"
    for pattern in EXPECTED[name]:
        assert re.search(pattern, output), f"no line like {pattern!r} in:\n{output}"
