"""Files that survive a crash: written whole or not at all.

Identities, planets, moons, network configs, local settings and API tokens are written to a
temporary file beside the target, flushed to disk, renamed over it, and the directory flushed
too, so a process killed at any instant (or a power cut) leaves either the old file or the new
one, never a torn mix. What a kill can leave is the temporary file; :func:`remove_stale_temps`
sweeps those when a node starts on its home directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Final

__all__ = ["remove_stale_temps", "write_atomic"]

_TEMP: Final = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permissions ``mode``
    exactly (not reduced by the umask: secrets are 0600 whatever it is)."""
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def remove_stale_temps(directory: Path) -> int:
    """Delete the temporary files :func:`write_atomic` leaves when killed mid-write (only
    names of its own form); how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and _TEMP.match(entry.name):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed
