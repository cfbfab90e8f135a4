"""``zerotier-cli``'s commands against a running node's local API: info, peers, listpeers,
networks, join, leave, set, listmoons, orbit, deorbit, metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from typing import Any

from ztnode.cli.apiclient import (
    _api_get,
    _api_json,
    _api_target,
    _ApiFailure,
    _listing_or_exit,
    _node_clock,
    _unreachable,
    api_host,
)
from ztnode.cli.common import EXIT_OK, _fail
from ztnode.cli.prometheus import parse_prometheus


def cmd_info(args: argparse.Namespace) -> int:
    try:
        body = _api_json(args, "/status")
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        state = "ONLINE" if body.get("online") else "OFFLINE"
        if body.get("tcpFallbackActive"):
            state = "TUNNELED"
        print(f"200 info {body['address']} {body['version']} {state}")
        # stdout stays zerotier-cli's one line (scripts cut fields from it); which packet path
        # the node runs goes beside it, on stderr.
        fast = body.get("fastPath")
        if isinstance(fast, dict) and fast.get("summary"):
            print(fast["summary"], file=sys.stderr)
    return EXIT_OK


def _peer_rows(peers: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Per peer what ``zerotier-cli`` shows: its version (``-`` when unknown) and its
    preferred path with the milliseconds since the last send and receive (``-1`` if never)."""
    rows = []
    for p in peers:
        major = p.get("versionMajor", -1)
        ver = f"{major}.{p.get('versionMinor')}.{p.get('versionRev')}" if major >= 0 else "-"
        best = next((q for q in p.get("paths", ()) if q.get("preferred")), None)
        path = None
        if best is not None:
            tx = now - best["lastSend"] if best.get("lastSend") else -1
            rx = now - best["lastReceive"] if best.get("lastReceive") else -1
            path = (str(best["address"]), max(tx, -1), max(rx, -1))
        rows.append(
            {
                "address": p.get("address", "-"),
                "version": ver,
                "role": p.get("role", "-"),
                "latency": int(p.get("latency", 0)),
                "path": path,
                "tunneled": bool(p.get("tunneled")),
            }
        )
    return rows


def cmd_peers(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/peer")
    if isinstance(body, int):
        return body
    print("200 peers")
    print("<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>")
    for r, p in zip(_peer_rows(body, _node_clock(args)), body, strict=True):
        if r["path"] is None:
            link = "RELAY"
        else:
            where, tx, rx = r["path"]
            link = f"{'RELAY ' if r['tunneled'] else 'DIRECT   '}{tx:<8} {rx:<8} {where}"
        print(f"{r['address']} {r['version']:<6} {r['role']:<6} {r['latency']:>5} {link}")
        if p.get("isBonded"):
            _print_bond_paths(p)
    return EXIT_OK


def _print_bond_paths(p: dict[str, Any]) -> None:
    """Under a bonded peer: its policy, then per path the interface, state and figures."""
    print(
        f"           bond {p.get('bondingPolicyStr')} {p.get('numAliveLinks')}/"
        f"{p.get('numTotalLinks')} links"
    )
    for q in p.get("paths", ()):
        if "eligible" not in q:
            continue
        state = "active" if q.get("active") else ("up" if q.get("eligible") else "down")
        print(
            f"           {q.get('ifname') or '-':<10} {state:<6} "
            f"lat {float(q.get('latencyMean', 0)):.1f} ms  pdv "
            f"{float(q.get('latencyVariance', 0)):.1f}  rtt {float(q.get('probeRtt', -1)):.1f}"
            f" ms  loss {float(q.get('probeLoss', 0)):.2f}  {q.get('address')}"
        )


def cmd_listpeers(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/peer")
    if isinstance(body, int):
        return body
    print("200 listpeers <ztaddr> <path> <latency> <version> <role>")
    for r in _peer_rows(body, _node_clock(args)):
        path = "-" if r["path"] is None else "{};{};{}".format(*r["path"])
        print(f"200 listpeers {r['address']} {path} {r['latency']} {r['version']} {r['role']}")
    return EXIT_OK


def _network_arg(text: str) -> str:
    t = text.strip().lower()
    if len(t) != 16 or any(c not in "0123456789abcdef" for c in t) or int(t, 16) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network id (16 hex digits)")
    return t


def cmd_join(args: argparse.Namespace) -> int:
    try:
        body = _api_json(args, f"/network/{args.network}", "POST", {})
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        print(f"200 join OK ({body['status']})")
    return EXIT_OK


def cmd_leave(args: argparse.Namespace) -> int:
    try:
        _api_json(args, f"/network/{args.network}", "DELETE")
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        print("200 leave OK")
    return EXIT_OK


def cmd_networks(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/network")
    if isinstance(body, int):
        return body
    print("200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>")
    for n in body:
        ips = ",".join(n["assignedAddresses"]) or "-"
        print(
            f"200 listnetworks {n['nwid']} {n['name'] or '-'} {n['mac']} {n['status']} "
            f"{n['type']} {n.get('portDeviceName') or '-'} {ips}"
        )
    return EXIT_OK


# zerotier-cli get's address properties: every assigned address, or one family, or the
# 6plane address (fc...) and its /40-style prefix text (its first 24 characters).
_ADDRESS_PROPERTIES = ("ip", "ip4", "ip6", "ip6plane", "ip6prefix")


def get_property(network: dict[str, Any], name: str) -> str | None:
    """zerotier-cli's ``get NWID PROPERTY`` on a network's JSON: the field as text, or the
    assigned addresses (without their prefix length) one per line; None for a field the
    network does not have (the reference prints "error, unknown property name")."""
    if name not in _ADDRESS_PROPERTIES:
        value = network.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        return str(value)
    lines: list[str] = []
    for cidr in network.get("assignedAddresses") or []:
        if not isinstance(cidr, str):
            continue
        ip = cidr.split("/", 1)[0]
        if (name == "ip4" and "." not in cidr) or (name.startswith("ip6") and ":" not in cidr):
            continue
        if name in ("ip6plane", "ip6prefix"):
            if not cidr.startswith("fc"):
                continue
            ip = ip if name == "ip6plane" else ip[:24]
        lines.append(ip)
    return "\n".join(lines)


def cmd_get(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/network")
    if isinstance(body, int):
        return body
    want = f"{args.network:016x}" if isinstance(args.network, int) else str(args.network)
    for n in body:
        if n.get("id") == want or n.get("nwid") == want:
            value = get_property(n, args.property)
            if value is None:
                print("error, unknown property name")
                return EXIT_OK
            print(value)
            return EXIT_OK
    print("unknown network ID, check that you are a member of the network", file=sys.stderr)
    return EXIT_OK


def cmd_get_path(args: argparse.Namespace) -> int:
    """zerotier-cli ``/PATH``: GET it and print the body as the node sent it; on any other
    status than 200, ``STATUS PATH BODY`` and exit 1, as the reference does."""
    from ztnode.transport.httpapi import fetch_raw

    try:
        port, token = _api_target(args)
        status, _ctype, body = asyncio.run(fetch_raw(api_host(args), port, "GET", args.path, token))
    except (OSError, ValueError) as e:
        return _fail(_unreachable(e))
    text = body.decode("utf-8", "replace")
    if status == 200:
        sys.stdout.write(text)
        return EXIT_OK
    print(f"{status} {args.path} {text.strip()}")
    return 1


def _interfaces_text() -> str:
    """The "Network Interfaces" section of zerotier-cli dump: each non-loopback interface with
    an address, its MTU and MAC (Linux's /sys) and addresses."""
    from collections import defaultdict
    from pathlib import Path

    from ztnode.transport.ifaddrs import named_interface_addresses

    by_name: dict[str, list[str]] = defaultdict(list)
    for name, ip in named_interface_addresses():
        if not ip.is_loopback:
            by_name[name].append(str(ip))
    out: list[str] = []
    for i, (name, ips) in enumerate(by_name.items()):
        out += [f"Interface {i}", "-----------", f"Name: {name}"]
        sysdir = Path("/sys/class/net") / name
        for label, file in (("MTU", "mtu"), ("MAC", "address")):
            with contextlib.suppress(OSError):  # not Linux, or the interface went away
                out.append(f"{label}: {(sysdir / file).read_text().strip()}")
        out += ["Addresses: ", *ips]
    return "\n".join(out)


def cmd_dump(args: argparse.Namespace) -> int:
    """zerotier-cli dump: status, networks, peers, local.conf and the machine's interfaces in
    one text file for a bug report (``zerotier_dump.txt`` in the current directory)."""
    import platform
    from pathlib import Path

    from ztnode.wire.constants import SOFTWARE_MAJOR, SOFTWARE_MINOR, SOFTWARE_REVISION

    quiet = argparse.Namespace(**{**vars(args), "json": False})
    try:
        sections = [
            (title, json.dumps(_api_json(quiet, path), indent=2))
            for title, path in (("status", "/status"), ("networks", "/network"), ("peers", "/peer"))
        ]
    except _ApiFailure as e:
        return _fail(str(e))
    conf_file = Path(args.home) / "local.conf"
    conf = conf_file.read_text() if conf_file.exists() else ""
    text = [
        f"platform: {'Linux' if sys.platform.startswith('linux') else platform.system()}",
        f"zerotier version: {SOFTWARE_MAJOR}.{SOFTWARE_MINOR}.{SOFTWARE_REVISION}",
        "",
    ]
    for title, body in sections:
        text += [title, "-" * len(title), body, ""]
    text += ["local.conf", "----------", conf.rstrip("\n") or "None Present", ""]
    text += ["Network Interfaces", "------------------", "", _interfaces_text(), ""]
    target = Path(args.out) if args.out else Path.cwd() / "zerotier_dump.txt"
    try:
        target.write_text("\n".join(text))
    except OSError as e:
        return _fail(f"cannot write {target}: {e}")
    print(f"Writing dump to: {target}")
    return EXIT_OK


_SETTING_KEYS = ("allowManaged", "allowGlobal", "allowDefault", "allowDNS")


_TRUE = ("1", "true", "t", "yes", "y", "on")


_FALSE = ("0", "false", "f", "no", "n", "off")


def _setting_arg(text: str) -> tuple[str, bool]:
    key, sep, value = text.partition("=")
    if key not in _SETTING_KEYS or not sep:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use {'|'.join(_SETTING_KEYS)}=0|1 (zerotier-cli's names)"
        )
    v = value.strip().lower()
    if v in _TRUE:
        return key, True
    if v in _FALSE:
        return key, False
    raise argparse.ArgumentTypeError(f"{text!r}: the value must be 0 or 1 (or true/false)")


def cmd_set(args: argparse.Namespace) -> int:
    """Local settings of a joined network (``POST /network/<nwid>`` with JSON booleans). The
    API would join an unknown network, as ZeroTierOne's does; the command refuses instead."""
    try:
        status, _ = _api_get(args, f"/network/{args.network}")
    except (OSError, ValueError) as e:
        return _fail(f"cannot reach the node's local API: {e}")
    if status == 404:
        return _fail(f"not a member of network {args.network} (join it first)")
    try:
        body = _api_json(args, f"/network/{args.network}", "POST", dict(args.settings))
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        values = " ".join(f"{k}={int(bool(body.get(k)))}" for k in _SETTING_KEYS)
        print(f"200 set {body['nwid']} {values}")
    return EXIT_OK


def _world_id_arg(text: str) -> int:
    t = text.strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{1,16}", t) or int(t, 16) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a moon id (1 to 16 hex digits)")
    return int(t, 16)


def _seed_arg(text: str) -> str:
    t = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,10}", t) or int(t, 16) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed (the address of one of the moon's roots, 10 hex digits)"
        )
    return f"{int(t, 16):010x}"


def _moon_path(world_id: int) -> str:
    """``/moon/<id>``: 10 digits when the id fits, which is all ZeroTierOne's route takes."""
    return f"/moon/{world_id:010x}" if world_id < 1 << 40 else f"/moon/{world_id:016x}"


def cmd_listmoons(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/moon")
    if isinstance(body, int):
        return body
    print("200 listmoons <id> <timestamp> <roots>")
    for m in body:
        if m.get("waiting"):
            print(f"200 listmoons {m['id']} - WAITING")
            continue
        roots = ",".join(
            r["identity"].split(":", 1)[0] + "@" + ";".join(r.get("stableEndpoints") or ["-"])
            for r in m.get("roots", ())
        )
        print(f"200 listmoons {m['id']} {m['timestamp']} {roots or '-'}")
    return EXIT_OK


def cmd_orbit(args: argparse.Namespace) -> int:
    try:
        _api_json(args, _moon_path(args.world_id), "POST", {"seed": args.seed})
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        print("200 orbit OK")
    return EXIT_OK


def cmd_deorbit(args: argparse.Namespace) -> int:
    try:
        _api_json(args, _moon_path(args.world_id), "DELETE")
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        print("200 deorbit OK")
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    from ztnode.transport.httpapi import fetch_raw

    port, token = _api_target(args)
    try:
        status, _ctype, payload = asyncio.run(
            fetch_raw(api_host(args), port, "GET", "/metrics", token)
        )
    except (OSError, ValueError) as e:
        return _fail(f"cannot reach the node's local API: {e}")
    text = payload.decode("utf-8", "replace")
    if status != 200:
        return _fail(f"local API answered {status}: {' '.join(text.split())}")
    if args.json:
        try:
            print(json.dumps(parse_prometheus(text), indent=2))
        except ValueError as e:
            return _fail(f"unreadable metrics: {e}")
    else:
        sys.stdout.write(text)
    return EXIT_OK
