"""The ``ztnode`` command line.

Subcommands are small functions over the library API so that everything the CLI can do, a program
can do too. Exit codes: 0 success, 1 a negative answer (e.g. an identity that does not validate),
2 bad usage or unreadable input.

Against a running node's local API, with ``zerotier-cli``'s names and text formats (``-j`` prints
the API's JSON instead): ``info``, ``peers``, ``listpeers``, ``networks``/``listnetworks``,
``join``, ``leave``, ``set NWID allowManaged|allowGlobal|allowDefault|allowDNS=0|1``,
``listmoons``, ``orbit WORLD_ID SEED``, ``deorbit WORLD_ID``, and ``metrics`` (Prometheus text).

Logging (``ztnode node``): ``--log-level SPEC`` and the ``ZTNODE_LOG`` environment variable
take the same SPEC, comma-separated items ``LEVEL`` (all of ztnode) or ``NAME=LEVEL`` for one
subsystem, e.g. ``info,netstack=debug,ztnode.core=warning``; NAME is a logger name, with or
without its ``ztnode.`` prefix (``core`` the node, ``netstack``/``host`` the IP stacks,
``sockets``, ``service``, ``state``, ``api``, ``controller``). LEVEL is debug, info, warning,
error, critical or off. Items apply in order, ``--log-level`` after ``ZTNODE_LOG``.
``--log-format json`` (or ``ZTNODE_LOG_FORMAT=json``) writes one JSON object per line. A
subsystem's disabled level costs one cached comparison per call: messages are formatted only
when emitted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ztnode._version import __version__
from ztnode.errors import DecodeError, ZtError
from ztnode.identity import Identity

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2


# --- logging ----------------------------------------------------------------------------------

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}
#: The loggers ztnode has (``logging.getLogger`` names), for the help text and typo warnings.
LOG_SUBSYSTEMS = (
    "ztnode.core",
    "ztnode.netstack",
    "ztnode.host",
    "ztnode.sockets",
    "ztnode.service",
    "ztnode.state",
    "ztnode.api",
    "ztnode.controller",
)
_LOG_ALIASES = {"ztnode.node": "ztnode.core", "ztnode.stack": "ztnode.netstack"}
_TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_log_spec(spec: str) -> list[tuple[str, int]]:
    """``"info,netstack=debug"`` -> ``[("ztnode", INFO), ("ztnode.netstack", DEBUG)]``;
    ValueError names the item that is wrong."""
    out: list[tuple[str, int]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, level_text = item.rpartition("=")
        name = name.strip() if sep else "ztnode"
        if not name:
            raise ValueError(f"{item!r}: a logger name must come before '='")
        if name != "ztnode" and not name.startswith("ztnode."):
            name = f"ztnode.{name}"
        name = _LOG_ALIASES.get(name, name)
        level_text = level_text.strip().lower()
        if level_text in LOG_LEVELS:
            level = LOG_LEVELS[level_text]
        elif level_text.isdigit():
            level = int(level_text)
        else:
            raise ValueError(
                f"{item!r}: the level must be one of {', '.join(LOG_LEVELS)} (or a number)"
            )
        out.append((name, level))
    return out


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, the
    record's ``extra=`` fields, and ``exc`` with a traceback."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(
    spec: str | None = None, fmt: str | None = None, *, default: int = logging.INFO
) -> None:
    """Per-subsystem levels from ``default``, then ``ZTNODE_LOG``, then ``spec``; output to
    stderr as text or (``fmt``/``ZTNODE_LOG_FORMAT`` ``json``) JSON lines. Loggers outside
    ztnode stay at WARNING."""
    levels: list[tuple[str, int]] = [("ztnode", default)]
    for source in (os.environ.get("ZTNODE_LOG"), spec):
        if source:
            levels += parse_log_spec(source)
    fmt = (fmt or os.environ.get("ZTNODE_LOG_FORMAT") or "text").lower()
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if fmt == "json" else logging.Formatter(_TEXT_LOG_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name, level in levels:
        logging.getLogger(name).setLevel(level)
    unknown = sorted(
        {
            n
            for n, _ in levels
            if n != "ztnode" and not any(n == s or n.startswith(f"{s}.") for s in LOG_SUBSYSTEMS)
        }
    )
    if unknown:
        logging.getLogger("ztnode").warning(
            "no such log subsystem: %s (there are %s)",
            ", ".join(unknown),
            ", ".join(LOG_SUBSYSTEMS),
        )


def _fail(msg: str) -> int:
    print(f"ztnode: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _read_identity_arg(arg: str) -> Identity:
    """An identity given either as a file path or as the text itself.

    A string that parses as an identity is taken literally; otherwise it must name a file. This
    order means a file literally named like an identity cannot shadow the text form.
    """
    text = arg.strip()
    try:
        return Identity.from_string(text)
    except DecodeError as literal_error:
        path = Path(arg)
        if not path.is_file():
            if ":" in text:
                raise literal_error
            raise DecodeError(
                f"{arg!r} is neither an identity string nor a readable file"
            ) from None
        return Identity.from_string(path.read_text().strip())


def cmd_identity_new(args: argparse.Namespace) -> int:
    ident = Identity.generate()
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            return _fail(f"{out} exists; use --force to overwrite it")
        ident.save(out, include_private=True)
        if args.public_out:
            ident.save(Path(args.public_out), include_private=False)
        print(ident.to_string())
    else:
        print(ident.to_string(include_private=True))
    return EXIT_OK


def cmd_identity_public(args: argparse.Namespace) -> int:
    try:
        ident = _read_identity_arg(args.identity)
    except (DecodeError, OSError) as e:
        return _fail(str(e))
    print(ident.to_string())
    return EXIT_OK


def cmd_identity_validate(args: argparse.Namespace) -> int:
    try:
        ident = _read_identity_arg(args.identity)
    except (DecodeError, OSError) as e:
        return _fail(str(e))
    if ident.validate():
        if not args.quiet:
            print(f"{ident.address:010x}: valid")
        return EXIT_OK
    if not args.quiet:
        print(f"{ident.address:010x}: INVALID (address does not match the public key)")
    return EXIT_NEGATIVE


# --- worlds ------------------------------------------------------------------------------


def cmd_world_make(args: argparse.Namespace) -> int:
    from ztnode.root.worlds import KeyPair, describe_json, make_world, parse_root_spec
    from ztnode.wire.world import World, WorldType

    kind = WorldType.PLANET if args.type == "planet" else WorldType.MOON
    try:
        roots = [parse_root_spec(r) for r in args.root]
        if args.previous and not Path(args.signing_key).exists():
            return _fail(
                f"--previous needs the existing signing key the previous revision names; "
                f"{args.signing_key} does not exist"
            )
        signing, created = KeyPair.load_or_create(Path(args.signing_key))
        next_key = signing
        if args.next_key:
            next_key, _ = KeyPair.load_or_create(Path(args.next_key))
        previous = World.from_bytes(Path(args.previous).read_bytes()) if args.previous else None
        if args.id is not None:
            world_id = int(args.id, 0)
        elif previous is not None:
            world_id = previous.id
        elif kind == WorldType.MOON:
            world_id = roots[0].identity.address  # moon ids conventionally name the first root
        else:
            return _fail("a planet needs --id")
        ts = args.timestamp if args.timestamp is not None else int(time.time() * 1000)
        world = make_world(kind, world_id, ts, roots, signing, next_key, previous)
    except (ZtError, ValueError, OSError) as e:
        return _fail(str(e))
    out = Path(args.out)
    try:
        out.write_bytes(world.to_bytes())
    except OSError as e:
        return _fail(f"cannot write {out}: {e}")
    if created:
        print(f"created signing key {args.signing_key} (keep it secret)", file=sys.stderr)
    print(describe_json(world))
    return EXIT_OK


def cmd_world_show(args: argparse.Namespace) -> int:
    from ztnode.root.worlds import describe_json
    from ztnode.wire.world import World

    try:
        world = World.from_bytes(Path(args.file).read_bytes())
    except (ZtError, OSError) as e:
        return _fail(str(e))
    print(describe_json(world))
    return EXIT_OK


# --- the node -------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ztnode.demo import run_demo

    # Piped output (CI logs, tests) gets a width that fits the tables instead of 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    base = Path(args.home) if args.home else None
    if os.environ.get("ZTNODE_LOG"):
        try:
            configure_logging(default=logging.WARNING)
        except ValueError as e:
            return _fail(f"ZTNODE_LOG: {e}")
    try:
        return asyncio.run(run_demo(console, keep=args.keep, base=base))
    except (OSError, TimeoutError, ZtError) as e:
        return _fail(f"demo failed: {e}")


def cmd_node(args: argparse.Namespace) -> int:
    from ztnode.transport.localapi import serve_local_api
    from ztnode.transport.service import NodeService, ServiceConfig
    from ztnode.wire.world import World

    try:
        configure_logging(
            args.log_level,
            args.log_format,
            default=logging.DEBUG if args.verbose else logging.INFO,
        )
    except ValueError as e:
        return _fail(f"logging: {e}")
    home = Path(args.home)
    planet = None
    if args.planet:
        try:
            planet = World.from_bytes(Path(args.planet).read_bytes())
        except (ZtError, OSError) as e:
            return _fail(f"--planet: {e}")
    bind = tuple(args.bind) if args.bind else ("0.0.0.0", "::")
    config = ServiceConfig(
        home=home,
        port=args.port,
        bind=bind,
        planet=planet,
        allow_loopback=args.allow_loopback,
        controller=args.controller,
    )

    async def run() -> int:
        service = NodeService(config)
        try:
            node = await service.start()
        except (ZtError, OSError) as e:
            return _fail(f"cannot start: {e}")
        try:
            api, api_port = await serve_local_api(service, args.api_port)
        except OSError as e:
            await service.stop()
            return _fail(f"cannot serve the local API on port {args.api_port}: {e}")
        print(
            f"ztnode {__version__} node {node.identity.address:010x} on UDP port "
            f"{service.port}, local API on 127.0.0.1:{api_port}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await api.close()
        await service.stop()
        (home / "ztnode.port").unlink(missing_ok=True)
        print("stopped; state saved", flush=True)
        return EXIT_OK

    return asyncio.run(run())


def _api_target(args: argparse.Namespace) -> tuple[int, str]:
    home = Path(args.home)
    port = args.api_port
    if port is None:
        port_file = home / "ztnode.port"
        port = int(port_file.read_text().strip()) if port_file.exists() else 9993
    token_file = home / "authtoken.secret"
    token = args.token or (token_file.read_text().strip() if token_file.exists() else "")
    return port, token


def _api_get(
    args: argparse.Namespace, path: str, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    from ztnode.transport.httpapi import fetch_json

    port, token = _api_target(args)
    return asyncio.run(fetch_json("127.0.0.1", port, method, path, token, body))


class _ApiFailure(Exception):
    """The local API could not be reached or refused; the message is for the user."""


def _api_json(args: argparse.Namespace, path: str, method: str = "GET", send: Any = None) -> Any:
    """Call the running node's local API, printing the answer raw with ``--json``."""
    try:
        status, body = _api_get(args, path, method, send)
    except (OSError, ValueError) as e:
        raise _ApiFailure(f"cannot reach the node's local API: {e}") from None
    if status != 200:
        raise _ApiFailure(f"local API answered {status}: {body}")
    if args.json:
        print(json.dumps(body, indent=2))
    return body


def cmd_info(args: argparse.Namespace) -> int:
    try:
        body = _api_json(args, "/status")
    except _ApiFailure as e:
        return _fail(str(e))
    if not args.json:
        state = "ONLINE" if body.get("online") else "OFFLINE"
        print(f"200 info {body['address']} {body['version']} {state}")
    return EXIT_OK


def _node_clock(args: argparse.Namespace) -> int:
    """The node's clock (``/status``), against which its path times are meaningful."""
    try:
        status, body = _api_get(args, "/status")
        if status == 200 and isinstance(body.get("clock"), int):
            return int(body["clock"])
    except (OSError, ValueError):
        pass
    return int(time.time() * 1000)


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


def _listing_or_exit(args: argparse.Namespace, path: str) -> Any:
    """A list from the local API for a text listing, or an exit code (an error, or ``-j``,
    whose JSON ``_api_json`` already printed)."""
    try:
        body = _api_json(args, path)
    except _ApiFailure as e:
        return _fail(str(e))
    return EXIT_OK if args.json else body


def cmd_peers(args: argparse.Namespace) -> int:
    body = _listing_or_exit(args, "/peer")
    if isinstance(body, int):
        return body
    print("200 peers")
    print("<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>")
    for r in _peer_rows(body, _node_clock(args)):
        if r["path"] is None:
            link = "RELAY"
        else:
            where, tx, rx = r["path"]
            link = f"{'RELAY ' if r['tunneled'] else 'DIRECT   '}{tx:<8} {rx:<8} {where}"
        print(f"{r['address']} {r['version']:<6} {r['role']:<6} {r['latency']:>5} {link}")
    return EXIT_OK


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


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text: str) -> list[dict[str, Any]]:
    """Samples of Prometheus text as ``{"name", "labels", "value"}``; ValueError on a line
    that is neither a sample, a comment nor blank."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample: {line!r}")
        name, label_text, value_text = m.groups()
        labels: dict[str, str] = {}
        pos = 0
        label_text = label_text or ""
        while pos < len(label_text):
            lm = _LABEL.match(label_text, pos)
            if lm is None or lm.end() == pos:
                raise ValueError(f"bad labels in {line!r}")
            raw = lm.group(2)
            labels[lm.group(1)] = (
                raw.replace("\\\\", "\0")
                .replace('\\"', '"')
                .replace("\\n", "\n")
                .replace("\0", "\\")
            )
            pos = lm.end()
        value = float(value_text)
        out.append(
            {"name": name, "labels": labels, "value": int(value) if value.is_integer() else value}
        )
    return out


def cmd_metrics(args: argparse.Namespace) -> int:
    from ztnode.transport.httpapi import fetch_raw

    port, token = _api_target(args)
    try:
        status, _ctype, payload = asyncio.run(
            fetch_raw("127.0.0.1", port, "GET", "/metrics", token)
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


# --- controller ----------------------------------------------------------------------------


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
        raise _ApiFailure(f"cannot reach the node's local API: {e}") from None
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


def cmd_controller_member_set(args: argparse.Namespace) -> int:
    send: dict[str, Any] = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _fail(
                f"{item!r}: use KEY=VALUE (VALUE as JSON, e.g. name='\"pc\"' or tags=[[1,2]])"
            )
        try:
            send[key] = json.loads(value)
        except ValueError:
            send[key] = value  # not JSON: a plain string, so name=laptop works
    try:
        m = _member_post(args, send)
    except _ApiFailure as e:
        return _fail(str(e))
    print(json.dumps(m, indent=2))
    return EXIT_OK


def _add_controller_parser(sub: Any) -> None:
    """``ztnode controller network|member ...``: drive a running node's controller API."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=".", help="the node's state directory")
    common.add_argument("--api-port", type=int, help="local API port (default: from --home)")
    common.add_argument("--token", help="auth token (default: HOME/authtoken.secret)")
    common.add_argument("-j", "--json", action="store_true", help="print JSON")

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

    mem = csub.add_parser("member", help="list, authorize, deauthorize and change members")
    msub = mem.add_subparsers(dest="controller_action", metavar="ACTION")
    mlist = msub.add_parser("list", parents=[common], help="list a network's members")
    mlist.add_argument("network", type=_network_arg, metavar="NWID")
    mlist.set_defaults(func=cmd_controller_member_list)
    for name, func, helptext in (
        ("authorize", cmd_controller_member_authorize, "let a member in"),
        ("deauthorize", cmd_controller_member_authorize, "revoke a member at once"),
        ("set", cmd_controller_member_set, "change member fields (KEY=VALUE, JSON values)"),
    ):
        c = msub.add_parser(name, parents=[common], help=helptext)
        c.add_argument("network", type=_network_arg, metavar="NWID")
        c.add_argument("address", type=_address_arg, metavar="ADDRESS")
        if name == "set":
            c.add_argument("settings", nargs="+", metavar="KEY=VALUE")
        c.set_defaults(func=func)


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
    demo.set_defaults(func=cmd_demo)

    node = sub.add_parser("node", help="run a node in the foreground (Ctrl-C stops it)")
    node.add_argument("--home", required=True, help="state directory (identity, planet, ...)")
    node.add_argument("--port", type=int, default=9993, help="UDP port (0 = any)")
    node.add_argument("--planet", help="a planet file to use instead of ZeroTier's")
    node.add_argument(
        "--allow-loopback",
        action="store_true",
        help="accept loopback paths (single-machine worlds only)",
    )
    node.add_argument("--bind", action="append", help="address to bind (repeatable)")
    node.add_argument("--api-port", type=int, default=0, help="local API port (0 = any)")
    node.add_argument(
        "--controller",
        action="store_true",
        help="also be the network controller for networks whose ids start with our address",
    )
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
    node.set_defaults(func=cmd_node)

    api_common = argparse.ArgumentParser(add_help=False)
    api_common.add_argument("--home", default=".", help="the node's state directory")
    api_common.add_argument("--api-port", type=int, help="local API port (default: from --home)")
    api_common.add_argument("--token", help="auth token (default: HOME/authtoken.secret)")
    api_common.add_argument("-j", "--json", action="store_true", help="print JSON")
    for name, func, helptext, takes_network in (
        ("info", cmd_info, "show a running node's address and status", False),
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
        "set",
        parents=[api_common],
        help="change a joined network's local settings (allowManaged=0 ...)",
        description="allowManaged: take the controller's addresses and routes (default 1); "
        "allowGlobal: managed routes into public address space (0); allowDefault: a managed "
        "default route (0); allowDNS: use the network's DNS settings (0; stored and reported, "
        "ztnode has no resolver).",
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
    _add_controller_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
