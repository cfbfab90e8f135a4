"""``ztnode doctor``: checks an installation end to end and says what to fix.

Why: a wrong install (no accelerator, a stale build, a libcrypto that will not bind) still
works, ten times slower, and nothing else points at it. The doctor reports which packet path
runs (:mod:`ztnode.transport.fastpath`), proves the C path computes what the Python reference
does on fresh random packets of every cipher, and then runs real traffic: a root and two
members in this process on loopback UDP, ping, TCP echo and a bulk transfer, on the event loop
``ztnode node`` would run on (:mod:`ztnode.transport.eventloop`), which it names. It also says
how the machine's idle CPUs wait (:mod:`ztnode.transport.cpuidle`): where they halt at once,
every wake-up costs tens of microseconds, and busy polling is the remedy for latency.

Exit status: 0 when every check passed; 1 when one failed; with ``--require-fast`` also 1 when
the packet path is not the fast one (release builds test their wheels so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ztnode._version import __version__
from ztnode.cli.common import EXIT_OK, _fail
from ztnode.cli.run import add_loop_option, loop_choice
from ztnode.transport import cpuidle, eventloop

EXIT_FAILED = 1
# Enough bulk data to measure a rate over a second or more on the fast path.
DEFAULT_MEGABYTES = 64


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _self_test(rounds: int = 64) -> list[Check]:
    """The C armor against the Python reference on random packets of ciphers 0, 1 and 3: each
    side must make the same bytes and open what the other made. What is not in C (no module, no
    libcrypto for cipher 3) is not checked here: the fast-path report already says it is off,
    and a slow install is not a broken one."""
    from ztnode import accel
    from ztnode.crypto.keys import SymmetricKey
    from ztnode.wire import packet
    from ztnode.wire.constants import Cipher

    if not accel.AVAILABLE:
        return []
    checks = []
    for cipher in (Cipher.POLY1305_NONE, Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV):
        if cipher == Cipher.AES_GMAC_SIV and not accel.AES_AVAILABLE:
            continue
        bad = 0
        for i in range(rounds):
            raw = os.urandom(48)
            kc, kp = SymmetricKey(raw), SymmetricKey(raw)  # C state lives on its key object
            plain = bytearray(os.urandom(28 + (i * 37) % 1400))
            plain[18] = 0
            c_pkt, py_pkt = bytearray(plain), bytearray(plain)
            done = accel.armor(c_pkt, kc, cipher)
            packet._armor_python(py_pkt, kp, cipher)
            if not done or c_pkt != py_pkt:
                bad += 1
                continue
            by_c, by_py = bytearray(py_pkt), bytearray(c_pkt)
            if (
                accel.dearmor(by_c, kc) != 1
                or not packet._dearmor_python(by_py, kp)
                or by_c[27:] != plain[27:]
                or by_py != by_c
            ):
                bad += 1
        checks.append(
            Check(
                f"cipher {int(cipher)}: C armor matches Python",
                bad == 0,
                f"{rounds} random packets" if bad == 0 else f"{bad} of {rounds} differ",
            )
        )
    return checks


def _transfer(megabytes: int, choice: eventloop.LoopChoice) -> tuple[Check, float | None]:
    """The end-to-end check and the bulk rate it measured (None when it failed to run)."""
    from ztnode.demo import transfer_check

    with tempfile.TemporaryDirectory(prefix="ztnode-doctor-") as tmp:
        try:
            r = eventloop.run(transfer_check(Path(tmp), megabytes * 1_000_000), choice)
        except (OSError, TimeoutError, ConnectionError) as e:
            return Check("end to end", False, f"{type(e).__name__}: {e}"), None
    ok = r.echo_ok and r.throughput_mb_s > 0
    detail = (
        f"ping {r.ping_ms:.2f} ms, TCP echo {'ok' if r.echo_ok else 'FAILED'}, "
        f"{megabytes} MB at {r.throughput_mb_s:.1f} MB/s ({r.path})"
    )
    return Check("end to end", ok, detail), r.throughput_mb_s


def _idle_line(policy: cpuidle.IdlePolicy, choice: eventloop.LoopChoice) -> str:
    """The idle CPUs' line: "--" where they halt at once and nothing polls instead."""
    if policy.halts_at_once and not choice.busy_poll_us:
        return (
            f"  [--] idle CPUs: {policy.summary()}: an idle CPU halts at once, so each wake-up "
            "costs tens of microseconds; for low latency, busy polling (--busy-poll US) or the "
            "guest's halt polling (/sys/module/haltpoll/parameters/guest_halt_poll_ns)"
        )
    return f"  [ok] idle CPUs: {policy.summary()}"


def cmd_doctor(args: argparse.Namespace) -> int:
    from ztnode.transport import fastpath

    try:
        choice = loop_choice(args)
    except eventloop.LoopChoiceError as e:
        return _fail(str(e))
    fp = fastpath.report()
    idle = cpuidle.read()
    checks: list[Check] = []
    checks.extend(_self_test())
    rate: float | None = None
    if not args.quick:
        transfer, rate = _transfer(args.megabytes, choice)
        checks.append(transfer)
    failed = [c for c in checks if not c.ok]
    slow = not fp.fast
    if args.json:
        print(
            json.dumps(
                {
                    "ztnode": __version__,
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "fastPath": fp.as_dict(),
                    "eventLoop": choice.as_dict(),
                    "cpuIdle": idle.as_dict(),
                    "checks": [c.as_dict() for c in checks],
                    "throughputMBs": rate,
                    "ok": not failed and not (slow and args.require_fast),
                },
                indent=2,
            )
        )
    else:
        print(f"ztnode {__version__} on Python {sys.version.split()[0]}, {platform.platform()}")
        for part in fp.parts:
            print(f"  [{'ok' if part.on else '--'}] {part.name}: {part.detail}")
        print(f"  [{'ok' if choice.name == 'uvloop' else '--'}] event loop: {choice.summary()}")
        print(_idle_line(idle, choice))
        for c in checks:
            print(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        if slow:
            print(f"fast path: OFF. {fp.hint or ''}".rstrip())
        print("all checks passed" if not failed else f"{len(failed)} check(s) FAILED")
    if failed or (slow and args.require_fast):
        return EXIT_FAILED
    return EXIT_OK


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check this installation: which packet path runs, a self-test, real traffic",
    )
    doctor.add_argument(
        "--quick", action="store_true", help="skip the end-to-end transfer (a few seconds)"
    )
    doctor.add_argument(
        "--require-fast",
        action="store_true",
        help="fail (exit 1) unless the C fast path is active (for release builds)",
    )
    doctor.add_argument(
        "--megabytes",
        type=int,
        default=DEFAULT_MEGABYTES,
        help=f"bulk data for the transfer check (default {DEFAULT_MEGABYTES})",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    add_loop_option(doctor)
    doctor.set_defaults(func=cmd_doctor)


__all__ = ["add_parser", "cmd_doctor"]
