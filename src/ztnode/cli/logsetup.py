"""Logging for ``ztnode node``: the ``--log-level``/``ZTNODE_LOG`` spec, per-subsystem levels and
the JSON line format."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any

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
    "ztnode.rules",
    "ztnode.netstack",
    "ztnode.host",
    "ztnode.sockets",
    "ztnode.service",
    "ztnode.state",
    "ztnode.api",
    "ztnode.controller",
    "ztnode.proxy",
    "ztnode.names",
    "ztnode.http",
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
