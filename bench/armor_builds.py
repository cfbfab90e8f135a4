"""Per-packet armor cost of accelerator builds side by side: ``python -m bench.armor_builds
[--own-poly] [EXT ...]``.

Why: a change to the C primitives (ours instead of libsodium's, OpenSSL through a bound table)
is judged against the build before it, in the same minute, on the same packets. Each EXT is a
compiled ``_zt_accel`` file (none: this checkout's); an older build (before the ABI that binds
OpenSSL at run time) is loaded as it is, with its own linked libraries. ``--own-poly`` runs
current builds on our Poly1305 even where libsodium's would be lent (a wheel without
libsodium). Each build runs in its own process: one armor plus one dearmor of the same packet,
20 000 times, best of five, for ciphers 3, 1 and 0 at 100 and 1 400 bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1400)
CIPHERS = (3, 1, 0)
LOOPS = 20_000


def _load(path: str, own_poly: bool) -> tuple[Any, Any, str]:
    """``(ffi, lib, label)`` of the build at ``path`` ('' for this checkout's)."""
    if path:
        os.environ["ZTNODE_ACCEL_PATH"] = path
    from ztnode.crypto import _cext

    if _cext.lib is not None:
        if own_poly:
            _cext.lib.zt_poly1305_bind(_cext.ffi.NULL)
        label = f"{path or 'this checkout'} (ABI {_cext.ABI}, Poly1305 {_cext.poly1305_impl()})"
        return _cext.ffi, _cext.lib, label
    # An older build (another ABI), linked to its own libraries: loaded as it is.
    spec = importlib.util.spec_from_file_location("_zt_accel", path)
    assert spec is not None and spec.loader is not None, _cext.REASON
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if hasattr(mod.lib, "zt_accel_init"):
        mod.lib.zt_accel_init()
    return mod.ffi, mod.lib, f"{path} (ABI {mod.lib.ZT_ACCEL_ABI})"


def measure(path: str, own_poly: bool) -> dict[str, Any]:
    ffi, lib, label = _load(path, own_poly)
    key = os.urandom(32)
    aes = lib.zt_aes_new(os.urandom(32), os.urandom(32))
    out: dict[str, Any] = {"build": label}
    for cipher in CIPHERS:
        for size in SIZES:
            pkt = bytearray(os.urandom(size))
            pkt[18] = 0
            buf = ffi.from_buffer(pkt)
            state = aes if cipher == 3 else ffi.NULL
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(LOOPS):
                    lib.zt_armor(state, key, buf, size, cipher)
                    lib.zt_dearmor(state, key, buf, size)
                best = min(best, (time.perf_counter() - t0) / LOOPS)
            out[f"cipher {cipher}, {size} B (us)"] = round(best * 1e6, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ext", nargs="*", help="compiled _zt_accel files (default: this checkout's)")
    ap.add_argument("--own-poly", action="store_true", help="never borrow libsodium's Poly1305")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.own_poly)))
        return 0
    rows = []
    for ext in args.ext or [""]:
        cmd = [sys.executable, "-m", "bench.armor_builds", "--child", ext]
        cmd += ["--own-poly"] if args.own_poly else []
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT))
        r = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
