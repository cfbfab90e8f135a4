"""The argument parser and ``main``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ztnode._version import __version__
from ztnode.cli.apiclient import add_api_options, api_port_arg
from ztnode.cli.bonds import add_bond_parser
from ztnode.cli.common import EXIT_OK, EXIT_USAGE
from ztnode.cli.controller import _add_controller_parser
from ztnode.cli.doctor import add_parser as add_doctor_parser
from ztnode.cli.identity import cmd_identity_new, cmd_identity_public, cmd_identity_validate
from ztnode.cli.local import (
    _network_arg,
    _seed_arg,
    _setting_arg,
    _world_id_arg,
    cmd_deorbit,
    cmd_dump,
    cmd_get,
    cmd_get_path,
    cmd_info,
    cmd_join,
    cmd_leave,
    cmd_listmoons,
    cmd_listpeers,
    cmd_metrics,
    cmd_networks,
    cmd_orbit,
    cmd_peers,
    cmd_set,
)
from ztnode.cli.logsetup import LOG_SUBSYSTEMS
from ztnode.cli.run import add_loop_option, cmd_demo, cmd_node
from ztnode.cli.worlds import cmd_world_make, cmd_world_show


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ztnode",
        description="A ZeroTier 1.x node with in-process sockets, a root server and a controller.",
    )
    p.add_argument("--version", action="version", version=f"ztnode {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ident = sub.add_parser("identity", help="create, inspect and validate ZeroTier identities")
    isub = ident.add_subparsers(dest="identity_command", metavar="ACTION")

    new = isub.add_parser(
        "new", help="generate an identity (prints the secret form unless --out is given)"
    )
    new.add_argument("--out", metavar="FILE", help="write the secret form here (mode 0600)")
    new.add_argument(
        "--public-out", metavar="FILE", help="with --out, also write the public form here"
    )
    new.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    new.set_defaults(func=cmd_identity_new)

    pub = isub.add_parser("public", help="print the public form of an identity")
    pub.add_argument("identity", metavar="FILE_OR_STRING")
    pub.set_defaults(func=cmd_identity_public)

    val = isub.add_parser(
        "validate", help="check that an identity's address derives from its key (exit 0 if valid)"
    )
    val.add_argument("identity", metavar="FILE_OR_STRING")
    val.add_argument("-q", "--quiet", action="store_true", help="no output, exit code only")
    val.set_defaults(func=cmd_identity_validate)

    world = sub.add_parser("world", help="make, update and inspect planets and moons")
    wsub = world.add_subparsers(dest="world_command", metavar="ACTION")
    make = wsub.add_parser(
        "make",
        help="create and sign a planet or moon (an update when --previous is given)",
        description=(
            "Signs with --signing-key (the key the previous revision names; created if missing) "
            "and embeds --next-key (default: the same key) as the key future updates need. "
            "Rotating keys: sign the next revision with the old key and --next-key NEW."
        ),
    )
    make.add_argument("--type", choices=("planet", "moon"), default="planet")
    make.add_argument("--id", help="world id (decimal or 0x hex); moons default to the first root")
    make.add_argument("--timestamp", type=int, help="revision timestamp in ms (default: now)")
    make.add_argument(
        "--root",
        action="append",
        required=True,
        metavar="IDENTITY=IP/PORT[,IP/PORT...]",
        help="a root: identity string or file, then its stable endpoints (repeat per root)",
    )
    make.add_argument("--signing-key", required=True, metavar="FILE")
    make.add_argument("--next-key", metavar="FILE")
    make.add_argument("--previous", metavar="FILE", help="the revision this one updates")
    make.add_argument("--out", required=True, metavar="FILE")
    make.set_defaults(func=cmd_world_make)
    show = wsub.add_parser("show", help="print a planet or moon file as JSON")
    show.add_argument("file")
    show.set_defaults(func=cmd_world_show)

    demo = sub.add_parser(
        "demo", help="a local world (root, controller, two members) shown working end to end"
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the world running and say how to reach it"
    )
    demo.add_argument("--home", help="where to keep its state (default: a temporary directory)")
    add_loop_option(demo)
    demo.set_defaults(func=cmd_demo)

    add_doctor_parser(sub)

    node = sub.add_parser("node", help="run a node in the foreground (Ctrl-C stops it)")
    node.add_argument("--home", required=True, help="state directory (identity, planet, ...)")
    node.add_argument(
        "--port",
        type=api_port_arg,
        help="UDP port (0 = any; default: local.conf's primaryPort, else 9993)",
    )
    node.add_argument("--planet", help="a planet file to use instead of ZeroTier's")
    node.add_argument(
        "--allow-loopback",
        action="store_true",
        help="accept loopback paths (single-machine worlds only)",
    )
    node.add_argument("--bind", action="append", help="address to bind (repeatable)")
    node.add_argument("--api-port", type=api_port_arg, default=0, help="local API port (0 = any)")
    node.add_argument(
        "--tcp-relay-listen",
        metavar="IP/PORT",
        help="accept ZeroTier TCP fallback tunnels here (members that cannot use UDP name "
        "this in their settings.tcpFallbackRelay; default: local.conf settings.tcpRelayListen, "
        "else off)",
    )
    node.add_argument(
        "--controller",
        action="store_true",
        help="also be the network controller for networks whose ids start with our address",
    )
    node.add_argument(
        "--controller-db",
        metavar="URL|FILE",
        help="the controller's database (implies --controller): postgresql://... to share it "
        "between several controller instances, or a SQLite file (default: HOME/controller.db)",
    )
    proxy = node.add_argument_group(
        "proxies", "let other programs on this machine reach the overlay (see docs/api.md)"
    )
    proxy.add_argument(
        "--socks5", metavar="[HOST:]PORT", help="a SOCKS5 proxy (default host 127.0.0.1)"
    )
    proxy.add_argument("--http-proxy", metavar="[HOST:]PORT", help="an HTTP proxy (CONNECT too)")
    proxy.add_argument(
        "--proxy-auth",
        metavar="USER:PASSWORD",
        help="credentials both proxies ask for (made and kept in HOME/proxy.secret when a "
        "proxy listens beyond loopback and none are given)",
    )
    proxy.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="[BIND:]PORT:OVERLAY_ADDR:OPORT",
        help="a local TCP port carried to an overlay address (repeatable)",
    )
    proxy.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="NWID:OPORT:HOST:PORT",
        help="an overlay TCP port carried to a local address (repeatable)",
    )
    names = node.add_argument_group("names")
    names.add_argument(
        "--hostname", help="the name this node answers to by mDNS and LLMNR (zt-<address>)"
    )
    names.add_argument("--hosts", metavar="FILE", help="a static map in /etc/hosts syntax")
    names.add_argument(
        "--serve-dns",
        choices=("auto", "yes", "no"),
        default="auto",
        help="answer the network's DNS for its members (auto: when this controller is listed "
        "among the network's DNS servers)",
    )
    names.add_argument(
        "--no-mdns", action="store_true", help="neither answer nor ask by mDNS/DNS-SD"
    )
    names.add_argument("--no-llmnr", action="store_true", help="neither answer nor ask by LLMNR")
    node.add_argument("-v", "--verbose", action="store_true", help="log level debug for ztnode")
    node.add_argument(
        "--log-level",
        metavar="SPEC",
        help="levels per subsystem, e.g. info,netstack=debug,core=warning (after $ZTNODE_LOG; "
        f"subsystems: {', '.join(s.removeprefix('ztnode.') for s in LOG_SUBSYSTEMS)})",
    )
    node.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text (default) or JSON objects ($ZTNODE_LOG_FORMAT)",
    )
    add_loop_option(node)
    node.set_defaults(func=cmd_node)

    api_common = argparse.ArgumentParser(add_help=False)
    add_api_options(api_common)
    for name, func, helptext, takes_network in (
        ("info", cmd_info, "show a running node's address and status", False),
        ("status", cmd_info, "the same as info (zerotier-cli's other name)", False),
        ("peers", cmd_peers, "list a running node's peers", False),
        ("listpeers", cmd_listpeers, "list peers in zerotier-cli's listpeers lines", False),
        ("networks", cmd_networks, "list the networks a running node has joined", False),
        ("listnetworks", cmd_networks, "the same as networks (zerotier-cli's name)", False),
        ("join", cmd_join, "join a network", True),
        ("leave", cmd_leave, "leave a network", True),
        ("listmoons", cmd_listmoons, "list the moons a running node orbits", False),
        ("metrics", cmd_metrics, "print a running node's metrics (Prometheus text)", False),
    ):
        c = sub.add_parser(name, help=helptext, parents=[api_common])
        if takes_network:
            c.add_argument("network", type=_network_arg, metavar="NWID")
        c.set_defaults(func=func)
    c = sub.add_parser(
        "dump",
        parents=[api_common],
        help="write status, networks, peers, local.conf and interfaces to zerotier_dump.txt",
    )
    c.add_argument("--out", metavar="FILE", help="where to write (default ./zerotier_dump.txt)")
    c.set_defaults(func=cmd_dump)
    c = sub.add_parser(
        "get",
        parents=[api_common],
        help="print one property of a joined network (name, status, ip, ip4, ip6, ...)",
        description="As zerotier-cli get: any field of the network's JSON (name, status, "
        "type, mac, mtu...), or its assigned addresses: ip, ip4, ip6, ip6plane, ip6prefix.",
    )
    c.add_argument("network", type=_network_arg, metavar="NWID")
    c.add_argument("property", metavar="PROPERTY")
    c.set_defaults(func=cmd_get)
    c = sub.add_parser(
        "set",
        parents=[api_common],
        help="change a joined network's local settings (allowManaged=0 ...)",
        description="allowManaged: take the controller's addresses and routes (default 1); "
        "allowGlobal: managed routes into public address space (0); allowDefault: a managed "
        "default route (0); allowDNS: ask the network's DNS servers for names under its domain "
        "(0).",
    )
    c.add_argument("network", type=_network_arg, metavar="NWID")
    c.add_argument(
        "settings", nargs="+", type=_setting_arg, metavar="allowManaged|allowGlobal|...=0|1"
    )
    c.set_defaults(func=cmd_set)
    c = sub.add_parser(
        "orbit", parents=[api_common], help="orbit a moon, asking one of its roots for it"
    )
    c.add_argument("world_id", type=_world_id_arg, metavar="WORLD_ID")
    c.add_argument("seed", type=_seed_arg, metavar="SEED")
    c.set_defaults(func=cmd_orbit)
    c = sub.add_parser("deorbit", parents=[api_common], help="stop orbiting a moon")
    c.add_argument("world_id", type=_world_id_arg, metavar="WORLD_ID")
    c.set_defaults(func=cmd_deorbit)
    c = sub.add_parser(
        "get-path",
        parents=[api_common],
        help="GET a local API path and print its JSON (zerotier-cli /PATH)",
    )
    c.add_argument("path", metavar="/PATH")
    c.set_defaults(func=cmd_get_path)
    add_bond_parser(sub, api_common)
    _add_controller_parser(sub)
    return p


#: zerotier-cli's switches, written before the command with their value attached
#: (``-p9993``), and the options of ours they stand for.
_CLI_SWITCHES = {"p": "--api-port", "D": "--home", "H": "--host", "T": "--token"}


def zerotier_cli_argv(argv: Sequence[str]) -> list[str]:
    """zerotier-cli's command lines made ours: ``-D/home -p9993 -j listnetworks`` becomes
    ``listnetworks --home /home --api-port 9993 -j``, and a command that is a path
    (``-j /status``) becomes ``get-path /status`` (the reference's raw GET). Anything else is
    left to the parser as it is."""
    moved: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args) and len(args[i]) >= 2 and args[i][0] == "-" and args[i][1] != "-":
        flag, value = args[i][1], args[i][2:]
        if flag in _CLI_SWITCHES and value:
            moved += [_CLI_SWITCHES[flag], value]
        elif flag == "j" and not value:
            moved.append("--json")
        elif flag == "q" and not value:
            pass  # the reference's "be zerotier-cli" switch
        else:
            break
        i += 1
    if not moved and (i >= len(args) or not args[i].startswith("/")):
        return args
    rest = args[i:]
    if rest and rest[0].startswith("/"):
        rest = ["get-path", *rest]
    if not rest:
        return args
    return [rest[0], *moved, *rest[1:]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(zerotier_cli_argv(sys.argv[1:] if argv is None else argv))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        rc: int = func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into a closed reader (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return rc
