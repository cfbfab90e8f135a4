"""``zerotier-cli``'s bond commands against a running node: ``bond list``, ``bond PEER show``
and ``bond PEER rotate`` (one.cpp), with the same tables."""

from __future__ import annotations

import argparse
from typing import Any

from ztnode.cli.apiclient import _api_json, _ApiFailure, _listing_or_exit
from ztnode.cli.common import EXIT_OK, _fail


def _peer_arg(text: str) -> str:
    t = text.strip().lower()
    if t == "list":
        return t
    if len(t) != 10 or any(c not in "0123456789abcdef" for c in t):
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'list' nor a peer address")
    return t


def add_bond_parser(sub: Any, api_common: argparse.ArgumentParser) -> None:
    c = sub.add_parser(
        "bond",
        parents=[api_common],
        help="show or steer a running node's bonds (list | PEER show | PEER rotate)",
    )
    c.add_argument("peer", type=_peer_arg, metavar="list|PEER")
    c.add_argument("action", nargs="?", choices=("show", "rotate"))
    c.set_defaults(func=cmd_bond)


def cmd_bond(args: argparse.Namespace) -> int:
    if args.peer == "list":
        return _bond_list(args)
    if args.action == "rotate":
        try:
            _api_json(args, f"/bond/rotate/{args.peer}", "POST", {})
        except _ApiFailure as e:
            return _fail(str(e))
        if not args.json:
            print("200 rotate OK")
        return EXIT_OK
    if args.action == "show":
        try:
            body = _api_json(args, f"/bond/show/{args.peer}")
        except _ApiFailure as e:
            return _fail(str(e))
        if not args.json:
            _print_bond(args.peer, body)
        return EXIT_OK
    return _fail("bond PEER needs show or rotate")


def _bond_list(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/peer")
    if isinstance(body, int):
        return body
    print("    <peer>                        <bondtype>     <links>")
    bonded = [p for p in body if p.get("isBonded")]
    for p in bonded:
        print(
            f"{p.get('address', '-'):>10}  {p.get('bondingPolicyStr', 'none'):>32}"
            f"         {p.get('numAliveLinks', 0)}/{p.get('numTotalLinks', 0)}"
        )
    if not bonded:
        print("      NONE\t\t\t\tNONE\t    NONE       NONE")
    return EXIT_OK


def _print_bond(peer: str, j: dict[str, Any]) -> None:
    print(f"Peer                   : {peer}")
    print(f"Bond                   : {j.get('bondingPolicyStr', '-')}")
    print(f"Link Select Method     : {j.get('linkSelectMethod', 0)}")
    print(f"Links                  : {j.get('numAliveLinks', 0)}/{j.get('numTotalLinks', 0)}")
    print(f"Failover Interval (ms) : {j.get('failoverInterval', 0)}")
    print(f"Up Delay (ms)          : {j.get('upDelay', 0)}")
    print(f"Down Delay (ms)        : {j.get('downDelay', 0)}")
    print(f"Packets Per Link       : {j.get('packetsPerLink', 0)}")
    paths = [p for p in j.get("paths", ()) if "eligible" in p]
    print(f"\nidx{'interface':>27}{'path':>55}{'socket':>19}{'local port':>17}")
    print("-" * 120)
    for i, p in enumerate(paths):
        print(
            f"{i:2d}: {p.get('ifname', '-'):>26} {p.get('address', '-'):>51} "
            f"{int(p.get('localSocket', 0)):016x} {int(p.get('localPort', 0)):12d}"
        )
    print(
        "\nidx     lat      pdv    capacity    qual      "
        "rx_age      tx_age  eligible  bonded   flows"
    )
    print("-" * 120)
    for i, p in enumerate(paths):
        print(
            f"{i:2d}: {float(p.get('latencyMean', 0)):8.2f}"
            f" {float(p.get('latencyVariance', 0)):8.2f}"
            f" {int(p.get('givenLinkSpeed', 0)):10d} {float(p.get('relativeQuality', 0)):7.4f}"
            f" {int(p.get('lastInAge', 0)):11d} {int(p.get('lastOutAge', 0)):11d}"
            f" {int(bool(p.get('eligible'))):9d} {int(bool(p.get('bonded'))):7d}"
            f" {int(p.get('assignedFlowCount', 0)):7d}"
        )
