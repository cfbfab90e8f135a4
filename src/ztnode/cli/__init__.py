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

from ztnode.cli.common import EXIT_NEGATIVE, EXIT_OK, EXIT_USAGE
from ztnode.cli.logsetup import LOG_SUBSYSTEMS, JsonLogFormatter, configure_logging, parse_log_spec
from ztnode.cli.main import build_parser, main
from ztnode.cli.prometheus import parse_prometheus

__all__ = [
    "EXIT_NEGATIVE",
    "EXIT_OK",
    "EXIT_USAGE",
    "LOG_SUBSYSTEMS",
    "JsonLogFormatter",
    "build_parser",
    "configure_logging",
    "main",
    "parse_log_spec",
    "parse_prometheus",
]
