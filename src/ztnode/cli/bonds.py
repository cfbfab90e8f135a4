"""``zerotier-cli``'s bond commands against a running node: ``bond list``, ``bond PEER show``,
``bond PEER rotate`` and ``bond setmtu MTU IFACE IP`` (one.cpp), with the same tables."""

from __future__ import annotations

import argparse
from typing import Any

from ztnode.cli.apiclient import _api_json, _ApiFailure, _listing_or_exit
from ztnode.cli.common import EXIT_OK, _fail


def _is_peer(text: str) -> bool:
    return len(text) == 10 and all(c in "0123456789abcdef" for c in text.lower())


def add_bond_parser(sub: Any, api_common: argparse.ArgumentParser) -> None:
    c = sub.add_parser(
        "bond",
        parents=[api_common],
        help="show or steer a running node's bonds "
        "(list | PEER show | PEER rotate | setmtu MTU IFACE IP)",
    )
    c.add_argument("words", nargs="+", metavar="list|PEER show|PEER rotate|setmtu MTU IFACE IP")
    c.set_defaults(func=cmd_bond)


def cmd_bond(args: argparse.Namespace) -> int:
    words = args.words
    if words == ["list"]:
        return _bond_list(args)
    if words[0] == "setmtu":
        if len(words) != 4 or not words[1].isdigit():
            return _fail("usage: bond setmtu MTU IFACE IP")
        try:
            _api_json(args, "/bond/setmtu/{}/{}/{}".format(*words[1:]), "POST", {})
        except _ApiFailure as e:
            return _fail(str(e))
        if not args.json:
            print("200 setmtu OK")
        return EXIT_OK
    if len(words) != 2 or not _is_peer(words[0]) or words[1] not in ("show", "rotate"):
        return _fail("usage: bond list | bond PEER show | bond PEER rotate | bond setmtu ...")
    args.peer, args.action = words[0].lower(), words[1]
    if args.action == "rotate":
        try:
            _api_json(args, f"/bond/rotate/{args.peer}", "POST", {})
        except _ApiFailure as e:
            return _fail(str(e))
        if not args.json:
            print("200 rotate OK")
        return EXIT_OK
    try:
        body = _api_json(args, f"/bond/show/{args.peer}")
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        _print_bond(args.peer, body)
    return EXIT_OK


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
