"""Connect times one by one, in the namespace bench's world: ztnode (stock loop, uvloop and
busy-polling) beside libzt, back to back and with ztnode idle for a while after each close.

    python -m bench.connect_tail [--connects 200] [--rounds 3] [--pause-ms 5]   (root, libzt)

``python -m bench --only tcp`` reports each connect run's median; this prints the spread
(p10, p50, p75, p90, max per run), which is where the namespace connect time's swing from run
to run comes from (docs/performance.md, issue 16's third step). The pause applies to ztnode's
client only: libzt's C client has no such switch, so its rows are back to back in both passes.
"""

from __future__ import annotations

import argparse

from bench import tcp_netns


def _plan(connects: int, rounds: int, pause_ms: float) -> tcp_netns.Plan:
    """Connects only: the other measurements at their smallest."""
    return tcp_netns.Plan(
        size=1_000_000,
        rounds=1,
        rounds6=0,
        rtt_rounds=1,
        rtts=100,
        connect_rounds=rounds,
        connects=connects,
        connect_pause_ms=pause_ms,
        budget=10,
        floor_count=1000,
        udp_rounds=0,
        udps=10,
        rps_rounds=0,
        rps_conns=(),
    )


def _percentiles(ms: list[float]) -> str:
    s = sorted(ms)

    def q(p: float) -> float:
        return s[int(p * (len(s) - 1))]

    return " | ".join(f"{v:.3f}" for v in (q(0.1), q(0.5), q(0.75), q(0.9), s[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connects", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pause-ms", type=float, default=5.0)
    args = ap.parse_args()
    print("| ztnode idle after each close (ms) | column | p10 | p50 | p75 | p90 | max |")
    print("|---|---|---|---|---|---|---|")
    for pause in (0.0, args.pause_ms):
        res = tcp_netns.run(_plan(args.connects, args.rounds, pause))
        for name, col in (
            ("ztnode", res.ztnode),
            ("ztnode (uvloop)", res.ztnode_uv),
            ("ztnode (busy poll)", res.ztnode_bp),
            ("asyncio (kernel)", res.kernel),
            ("libzt", res.libzt),
        ):
            if col.missing:
                print(f"| {pause:g} | {name} | not run: {col.missing} | | | | |")
            for run in col.connect:
                print(f"| {pause:g} | {name} | {_percentiles(run)} |")


__all__ = ["main"]

if __name__ == "__main__":
    main()
