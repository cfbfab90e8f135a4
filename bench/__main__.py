"""Run the benchmarks and print Markdown tables: ``python -m bench [--quick] [--only NAME]``.

Every comparison is made in the same run on the same machine: ztnode against the raw library
calls or raw socket calls it is built from and, for TCP, against libzt 1.8.4 (which needs root for
a network namespace and ``python -m tests.interop.setup_libzt``; without them its columns say
why they are missing). Results go in docs/performance.md with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import (
    bond_bench,
    crypto_bench,
    names_bench,
    node_bench,
    peers_bench,
    relay_bench,
    rules_bench,
    scale_bench,
    tcp_bench,
)
from ztnode import __version__
from ztnode.transport import cpuidle


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument(
        "--only",
        choices=(
            "crypto",
            "identity",
            "node",
            "transport",
            "guard",
            "tcp",
            "rules",
            "bond",
            "scale",
            "churn",
            "burst",
            "peers",
            "relay",
            "names",
        ),
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args()
    q = args.quick
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "crypto": lambda: crypto_bench.armor_rows(2000 if q else 20000),
        "identity": lambda: crypto_bench.identity_rows(3 if q else 15, 5 if q else 30),
        "node": lambda: node_bench.echo_rows(500 if q else 5000),
        "transport": lambda: node_bench.transport_rows(200 if q else 1000),
        "guard": lambda: node_bench.guard_rows(2000 if q else 20000),
        "tcp": lambda: tcp_bench.rows(q),
        "rules": lambda: rules_bench.rows(q),
        "bond": lambda: bond_bench.rows(q),
        "scale": lambda: scale_bench.rows(q),
        "churn": lambda: scale_bench.churn_rows(q),
        "burst": lambda: scale_bench.burst_rows(q),
        "peers": lambda: peers_bench.rows(q),
        "relay": lambda: relay_bench.rows(q),
        "names": lambda: names_bench.rows(q),
    }
    results: dict[str, Any] = {
        "ztnode": __version__,
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpuidle.read().summary()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for name, fn in sections.items():
        if args.only and name != args.only:
            continue
        results[name] = fn()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"ztnode {results['ztnode']}, Python {results['python']}, {results['machine']}, "
        f"{results['date']}\n"
    )
    for name in sections:
        if name in results:
            print(f"### {name}\n")
            print(table(results[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
