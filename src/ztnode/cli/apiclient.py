"""A client of a running node's local API (address and token from its home directory), with
the errors a command reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from ztnode.cli.common import EXIT_OK, _fail


def add_api_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that talks to a running node, with zerotier-cli's
    switches as short forms (``-D/var/lib/zerotier-one -p9993 -H10.0.0.5 -Ttoken -j``)."""
    parser.add_argument("-D", "--home", default=".", help="the node's state directory")
    parser.add_argument(
        "-p", "--api-port", type=api_port_arg, help="local API port (default: from --home)"
    )
    parser.add_argument(
        "-H",
        "--host",
        default="127.0.0.1",
        help="the node's address (another machine's node must allow it: allowManagementFrom)",
    )
    parser.add_argument("-T", "--token", help="auth token (default: HOME/authtoken.secret)")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")


def api_port_arg(text: str) -> int:
    """A port number, 0-65535, as argparse wants its types (a clear usage error otherwise)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return port


def _api_target(args: argparse.Namespace) -> tuple[int, str]:
    """The API port and token from the node's home. A home that does not exist, or where no
    node runs, is said so (an OSError the caller reports) rather than a refused connection to
    a guessed port."""
    home = Path(args.home)
    port = args.api_port
    if port is None:
        if not home.is_dir():
            raise FileNotFoundError(f"{home} does not exist: no node runs with this home")
        # Ours, then ZeroTierOne's port file; a ZeroTierOne home without one uses 9993.
        for name in ("ztnode.port", "zerotier-one.port"):
            port_file = home / name
            if port_file.exists():
                port = int(port_file.read_text().strip())
                break
        else:
            if not (home / "authtoken.secret").exists():
                raise FileNotFoundError(
                    f"no node runs with home {home} (start one: ztnode node --home {home})"
                )
            port = 9993
    token_file = home / "authtoken.secret"
    token = args.token or (token_file.read_text().strip() if token_file.exists() else "")
    return port, token


def _api_get(
    args: argparse.Namespace, path: str, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    from ztnode.transport.httpapi import fetch_json

    port, token = _api_target(args)
    return asyncio.run(fetch_json(api_host(args), port, method, path, token, body))


def api_host(args: argparse.Namespace) -> str:
    """Where the node's API is (``-H``; loopback unless told)."""
    host = getattr(args, "host", None) or "127.0.0.1"
    return str(host).strip("[]")


def _unreachable(e: Exception) -> str:
    if isinstance(e, FileNotFoundError) and e.args and isinstance(e.args[0], str):
        return e.args[0]
    return f"cannot reach the node's local API: {e}"


class _ApiFailure(Exception):
    """The local API could not be reached or refused; the message is for the user."""


def _api_json(args: argparse.Namespace, path: str, method: str = "GET", send: Any = None) -> Any:
    """Call the running node's local API, printing the answer raw with ``--json``."""
    try:
        status, body = _api_get(args, path, method, send)
    except (OSError, ValueError) as e:
        raise _ApiFailure(_unreachable(e)) from None
    if status != 200:
        raise _ApiFailure(f"local API answered {status}: {body}")
    if args.json:
        print(json.dumps(body, indent=2))
    return body


def _node_clock(args: argparse.Namespace) -> int:
    """The node's clock (``/status``), against which its path times are meaningful."""
    try:
        status, body = _api_get(args, "/status")
        if status == 200 and isinstance(body.get("clock"), int):
            return int(body["clock"])
    except (OSError, ValueError):
        pass
    return int(time.time() * 1000)


def _listing_or_exit(args: argparse.Namespace, path: str) -> Any:
    """A list from the local API for a text listing, or an exit code (an error, or ``-j``,
    whose JSON ``_api_json`` already printed)."""
    try:
        body = _api_json(args, path)
    except _ApiFailure as e:
        return _fail(str(e))
    return EXIT_OK if args.json else body
