"""``ztnode controller ...``: networks and members through a node's controller API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ztnode.cli.apiclient import _api_get, _ApiFailure, _unreachable, add_api_options
from ztnode.cli.common import EXIT_OK, _fail
from ztnode.cli.local import _network_arg


def _address_arg(text: str) -> str:
    t = text.strip().lower()
    if len(t) != 10 or any(c not in "0123456789abcdef" for c in t):
        raise argparse.ArgumentTypeError(f"{text!r} is not a member address (10 hex digits)")
    return t


def _controller_call(args: argparse.Namespace, method: str, path: str, send: Any = None) -> Any:
    """One controller API call; a refusal becomes a one-line :class:`_ApiFailure` carrying the
    server's own error message (with a hint when the node has no controller)."""
    try:
        status, body = _api_get(args, path, method, send)
    except (OSError, ValueError) as e:
        raise _ApiFailure(_unreachable(e)) from None
    if status != 200:
        msg = body.get("error") if isinstance(body, dict) else None
        text = " ".join(str(msg if msg is not None else body).split())
        if status == 404 and text.startswith("no such resource"):
            text += " (is the node running with --controller?)"
        raise _ApiFailure(f"controller answered {status}: {text}")
    return body


def _controller_json(args: argparse.Namespace, body: Any) -> bool:
    """Print ``body`` as JSON if ``--json`` was given; True if it was."""
    if args.json:
        print(json.dumps(body, indent=2))
    return bool(args.json)


def _network_create_body(args: argparse.Namespace) -> dict[str, Any]:
    import ipaddress

    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.private is not None:
        body["private"] = args.private
    routes = [{"target": r, "via": None} for r in args.route or ()]
    if routes:
        body["routes"] = routes
    if args.v4_pool:
        start, sep, end = args.v4_pool.partition("-")
        if not sep:
            raise _ApiFailure(
                f"--v4-pool {args.v4_pool!r}: use START-END, like 10.0.0.1-10.0.0.254"
            )
        try:
            first = ipaddress.IPv4Address(start.strip())
            nets = [ipaddress.ip_network(r, strict=False) for r in args.route or ()]
        except ValueError as e:
            raise _ApiFailure(f"--v4-pool/--route: {e}") from None
        if not any(first in n for n in nets):
            raise _ApiFailure("--v4-pool needs a --route that contains it (like 10.0.0.0/24)")
        body["ipAssignmentPools"] = [{"ipRangeStart": start.strip(), "ipRangeEnd": end.strip()}]
        body["v4AssignMode"] = {"zt": True}
    if args.v6 is not None:
        body["v6AssignMode"] = args.v6
    return body


def cmd_controller_network_create(args: argparse.Namespace) -> int:
    try:
        net = _controller_call(args, "POST", "/controller/network", _network_create_body(args))
    except _ApiFailure as e:
        return _fail(str(e))
    if not _controller_json(args, net):
        print(net["id"])
    return EXIT_OK


def cmd_controller_network_list(args: argparse.Namespace) -> int:
    try:
        body = _controller_call(args, "GET", "/unstable/controller/network")
    except _ApiFailure as e:
        return _fail(str(e))
    if _controller_json(args, body["data"]):
        return EXIT_OK
    print("<nwid>           <type>  <members> <authorized> <name>")
    for n in body["data"]:
        kind = "PRIVATE" if n.get("private", True) else "PUBLIC"
        meta = n.get("meta", {})
        print(
            f"{n['id']} {kind:<7} {meta.get('totalMemberCount', 0):>9} "
            f"{meta.get('authorizedMemberCount', 0):>12} {n.get('name') or '-'}"
        )
    return EXIT_OK


def cmd_controller_network_show(args: argparse.Namespace) -> int:
    try:
        net = _controller_call(args, "GET", f"/controller/network/{args.network}")
    except _ApiFailure as e:
        return _fail(str(e))
    print(json.dumps(net, indent=2))
    return EXIT_OK


def cmd_controller_network_rules(args: argparse.Namespace) -> int:
    """Compile a rules script (ZeroTier's rules language) and, unless ``--check``, make it the
    network's rules, capabilities and tags (the script itself kept as ``rulesSource``)."""
    from ztnode.controller.rulescript import RuleScriptError, compile_rules

    try:
        with open(args.file, encoding="utf-8") as f:
            script = f.read()
    except (OSError, UnicodeDecodeError) as e:
        return _fail(f"cannot read {args.file}: {e}")
    try:
        compiled = compile_rules(script)
    except RuleScriptError as e:
        return _fail(f"{args.file} line {e.line} column {e.column}: {e.message}")
    counts = (
        f"{len(compiled.rules)} rules, {len(compiled.capabilities)} capabilities, "
        f"{len(compiled.tags)} tags"
    )
    if args.check:
        if not _controller_json(args, compiled.as_json()):
            print(f"{args.file}: {counts}")
        return EXIT_OK
    body = {**compiled.network_json(), "rulesSource": script}
    try:
        net = _controller_call(args, "POST", f"/controller/network/{args.network}", body)
    except _ApiFailure as e:
        return _fail(str(e))
    if not _controller_json(args, net):
        print(f"network {net['id']}: {counts} (revision {net.get('revision')})")
    return EXIT_OK


def cmd_controller_network_delete(args: argparse.Namespace) -> int:
    try:
        old = _controller_call(args, "DELETE", f"/controller/network/{args.network}")
    except _ApiFailure as e:
        return _fail(str(e))
    if not _controller_json(args, old):
        print(f"deleted network {old['id']}")
    return EXIT_OK


def cmd_controller_member_list(args: argparse.Namespace) -> int:
    try:
        body = _controller_call(args, "GET", f"/unstable/controller/network/{args.network}/member")
    except _ApiFailure as e:
        return _fail(str(e))
    if _controller_json(args, body["data"]):
        return EXIT_OK
    print("<address>  <authorized> <ips> <name>")
    for m in body["data"]:
        ips = ",".join(m.get("ipAssignments") or ()) or "-"
        auth = "yes" if m.get("authorized") else "no"
        print(f"{m['id']} {auth:<12} {ips} {m.get('name') or '-'}")
    return EXIT_OK


def _member_post(args: argparse.Namespace, send: dict[str, Any]) -> Any:
    return _controller_call(
        args, "POST", f"/controller/network/{args.network}/member/{args.address}", send
    )


def cmd_controller_member_authorize(args: argparse.Namespace) -> int:
    authorize = args.controller_action == "authorize"
    try:
        m = _member_post(args, {"authorized": authorize})
    except _ApiFailure as e:
        return _fail(str(e))
    if not _controller_json(args, m):
        print(f"{m['id']} {'authorized' if m['authorized'] else 'deauthorized'}")
    return EXIT_OK


def _settings(items: list[str]) -> dict[str, Any] | str:
    """``KEY=VALUE`` arguments as a POST body (VALUE as JSON, else a plain string), or the
    error to print."""
    send: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return f"{item!r}: use KEY=VALUE (VALUE as JSON, e.g. name='\"pc\"' or tags=[[1,2]])"
        try:
            send[key] = json.loads(value)
        except ValueError:
            send[key] = value  # not JSON: a plain string, so name=laptop works
    return send


def cmd_controller_member_set(args: argparse.Namespace) -> int:
    send = _settings(args.settings)
    if isinstance(send, str):
        return _fail(send)
    try:
        m = _member_post(args, send)
    except _ApiFailure as e:
        return _fail(str(e))
    print(json.dumps(m, indent=2))
    return EXIT_OK


def cmd_controller_network_set(args: argparse.Namespace) -> int:
    """What the console's settings, pools, routes and DNS forms post: any network fields."""
    send = _settings(args.settings)
    if isinstance(send, str):
        return _fail(send)
    try:
        net = _controller_call(args, "POST", f"/controller/network/{args.network}", send)
    except _ApiFailure as e:
        return _fail(str(e))
    print(json.dumps(net, indent=2))
    return EXIT_OK


def cmd_controller_member_delete(args: argparse.Namespace) -> int:
    path = f"/controller/network/{args.network}/member/{args.address}"
    try:
        old = _controller_call(args, "DELETE", path)
    except _ApiFailure as e:
        return _fail(str(e))
    if not _controller_json(args, old):
        print(f"deleted member {old['id']} of network {old['nwid']}")
    return EXIT_OK


def _add_controller_parser(sub: Any) -> None:
    """``ztnode controller network|member ...``: drive a running node's controller API."""
    common = argparse.ArgumentParser(add_help=False)
    add_api_options(common)

    ctl = sub.add_parser("controller", help="manage the networks a running node controls")
    csub = ctl.add_subparsers(dest="controller_command", metavar="OBJECT")
    net = csub.add_parser("network", help="create, list, show and delete networks")
    nsub = net.add_subparsers(dest="controller_action", metavar="ACTION")
    create = nsub.add_parser("create", parents=[common], help="create a network (prints its id)")
    create.add_argument("--name", help="network name")
    vis = create.add_mutually_exclusive_group()
    vis.add_argument(
        "--private",
        dest="private",
        action="store_true",
        default=None,
        help="members need authorization (the default)",
    )
    vis.add_argument("--public", dest="private", action="store_false", help="anyone may join")
    create.add_argument("--v4-pool", metavar="START-END", help="assign IPv4 addresses from here")
    create.add_argument(
        "--route",
        action="append",
        metavar="CIDR",
        help="a managed route (repeatable); the pool must lie in one",
    )
    create.add_argument("--v6", metavar="MODES", help="IPv6 modes, e.g. rfc4193,6plane")
    create.set_defaults(func=cmd_controller_network_create)
    for name, func, helptext in (
        ("list", cmd_controller_network_list, "list networks"),
        ("show", cmd_controller_network_show, "print a network's JSON"),
        ("delete", cmd_controller_network_delete, "delete a network and its members"),
    ):
        c = nsub.add_parser(name, parents=[common], help=helptext)
        if name != "list":
            c.add_argument("network", type=_network_arg, metavar="NWID")
        c.set_defaults(func=func)
    nset = nsub.add_parser(
        "set",
        parents=[common],
        help="change network fields (KEY=VALUE, JSON values: name, private, routes, "
        "ipAssignmentPools, v4AssignMode, dns, multicastLimit, enableBroadcast...)",
    )
    nset.add_argument("network", type=_network_arg, metavar="NWID")
    nset.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    nset.set_defaults(func=cmd_controller_network_set)
    rules = nsub.add_parser(
        "rules",
        parents=[common],
        help="compile a rules script (ZeroTier's rules language) and apply it",
    )
    rules.add_argument("network", type=_network_arg, metavar="NWID")
    rules.add_argument("file", metavar="FILE", help="the script")
    rules.add_argument(
        "--check", action="store_true", help="only compile and report (no node needed)"
    )
    rules.set_defaults(func=cmd_controller_network_rules)

    mem = csub.add_parser("member", help="list, authorize, deauthorize and change members")
    msub = mem.add_subparsers(dest="controller_action", metavar="ACTION")
    mlist = msub.add_parser("list", parents=[common], help="list a network's members")
    mlist.add_argument("network", type=_network_arg, metavar="NWID")
    mlist.set_defaults(func=cmd_controller_member_list)
    for name, func, helptext in (
        ("authorize", cmd_controller_member_authorize, "let a member in"),
        ("deauthorize", cmd_controller_member_authorize, "revoke a member at once"),
        ("set", cmd_controller_member_set, "change member fields (KEY=VALUE, JSON values)"),
        ("delete", cmd_controller_member_delete, "erase a member (revoked if it was authorized)"),
    ):
        c = msub.add_parser(name, parents=[common], help=helptext)
        c.add_argument("network", type=_network_arg, metavar="NWID")
        c.add_argument("address", type=_address_arg, metavar="ADDRESS")
        if name == "set":
            c.add_argument("settings", nargs="+", metavar="KEY=VALUE")
        c.set_defaults(func=func)
