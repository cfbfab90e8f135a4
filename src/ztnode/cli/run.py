"""``ztnode demo`` and ``ztnode node``: the commands that run a node in this process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from ztnode._version import __version__
from ztnode.cli.common import EXIT_OK, _fail
from ztnode.cli.logsetup import configure_logging
from ztnode.controller.store import StoreError
from ztnode.errors import ZtError
from ztnode.transport import eventloop


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    """``--loop`` and ``--busy-poll`` for the commands that run a node in this process (see
    :mod:`ztnode.transport.eventloop`)."""
    parser.add_argument(
        "--loop",
        choices=eventloop.CHOICES,
        help=f"the event loop (default: ${eventloop.ENV}, else auto: uvloop when installed, "
        "else asyncio's)",
    )
    parser.add_argument(
        "--busy-poll",
        type=int,
        metavar="US",
        help="after traffic, poll for up to US microseconds before sleeping: lower latency "
        "for CPU time while traffic flows; asyncio's loop only (default: "
        f"${eventloop.BUSY_POLL_ENV}, else off)",
    )


def loop_choice(args: argparse.Namespace) -> eventloop.LoopChoice:
    """The loop the command's switches (and the environment) ask for; LoopChoiceError if none."""
    return eventloop.choose(args.loop, busy_poll=args.busy_poll)


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
        choice = loop_choice(args)
    except eventloop.LoopChoiceError as e:
        return _fail(str(e))
    try:
        return eventloop.run(run_demo(console, keep=args.keep, base=base), choice)
    except (OSError, TimeoutError, ZtError) as e:
        return _fail(f"demo failed: {e}")


def cmd_node(args: argparse.Namespace) -> int:
    from ztnode.cli.proxies import parse_plan, start_plan
    from ztnode.names.hostmap import HostMap
    from ztnode.names.settings import NameSettings
    from ztnode.sockets.aio import Node
    from ztnode.transport.localapi import serve_local_api
    from ztnode.transport.localconf import LocalConfError, read_local_conf
    from ztnode.wire.constants import DEFAULT_PORT
    from ztnode.wire.world import World

    try:
        configure_logging(
            args.log_level,
            args.log_format,
            default=logging.DEBUG if args.verbose else logging.INFO,
        )
    except ValueError as e:
        return _fail(f"logging: {e}")
    try:
        choice = loop_choice(args)
    except eventloop.LoopChoiceError as e:
        return _fail(str(e))
    home = Path(args.home)
    planet = None
    if args.planet:
        try:
            planet = World.from_bytes(Path(args.planet).read_bytes())
        except (ZtError, OSError) as e:
            return _fail(f"--planet: {e}")
    try:
        plan = parse_plan(
            home, args.socks5, args.http_proxy, args.proxy_auth, args.forward, args.publish
        )
    except (ValueError, OSError) as e:
        return _fail(str(e))
    bind = tuple(args.bind) if args.bind else ("0.0.0.0", "::")
    try:
        names = NameSettings(
            hostname=args.hostname,
            hosts=HostMap.from_hosts_text(Path(args.hosts).read_text())
            if args.hosts
            else HostMap(),
            mdns=not args.no_mdns,
            llmnr=not args.no_llmnr,
            serve_dns={"auto": None, "yes": True, "no": False}[args.serve_dns],
        )
    except (ZtError, OSError) as e:
        return _fail(f"names: {e}")

    port = args.port
    if port is None:  # local.conf's primaryPort, else ZeroTier's port
        try:
            port = read_local_conf(home / "local.conf").primary_port or DEFAULT_PORT
        except LocalConfError as e:
            return _fail(str(e))
    relay_listen = None
    if args.tcp_relay_listen:
        from ztnode.transport.tcprelay import parse_ip_port

        try:
            relay_listen = parse_ip_port(args.tcp_relay_listen, "tcpRelayListen")
        except ZtError as e:
            return _fail(f"--tcp-relay-listen: {e}")

    async def run() -> int:
        node = Node(
            home,
            port=port,
            planet=planet,
            allow_loopback=args.allow_loopback,
            bind=bind,
            controller=args.controller,
            controller_db=args.controller_db,
            names=names,
        )
        # The daemon maps a port on the router unless local.conf says not to, as
        # ZeroTierOne; embedded nodes never do unless asked (ztnode.transport.portmap).
        node.service.config.port_mapping = True
        node.service.config.secondary_port = True  # as ZeroTierOne, unless local.conf says
        node.service.config.tcp_relay_listen = relay_listen
        try:
            await node.start()
        except (ZtError, OSError, RuntimeError, StoreError) as e:
            return _fail(f"cannot start: {e}")
        service = node.service
        try:
            api, api_port = await serve_local_api(service, args.api_port)
        except OSError as e:
            await node.stop()
            return _fail(f"cannot serve the local API on port {args.api_port}: {e}")
        try:
            closers, lines = await start_plan(node, plan)
        except OSError as e:
            await api.close()
            await node.stop()
            return _fail(f"cannot start the proxies: {e}")
        print(
            f"ztnode {__version__} node {node.address} on UDP port "
            f"{service.port}, local API on "
            + ", ".join(f"[{h}]:{api_port}" if ":" in h else f"{h}:{api_port}" for h in api.hosts),
            flush=True,
        )
        for line in lines:
            print(line, flush=True)
        if plan.credentials is not None and not args.proxy_auth:
            print(f"proxy credentials in {home / 'proxy.secret'}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for close in reversed(closers):
            await close()
        await api.close()
        await node.stop()
        (home / "ztnode.port").unlink(missing_ok=True)
        print("stopped; state saved", flush=True)
        return EXIT_OK

    logging.getLogger("ztnode.service").info("event loop: %s", choice.summary())
    return eventloop.run(run(), choice)
