"""Exit codes and the one way a command fails with a message."""

from __future__ import annotations

import sys

EXIT_OK = 0


EXIT_NEGATIVE = 1


EXIT_USAGE = 2


def _fail(msg: str) -> int:
    print(f"ztnode: {msg}", file=sys.stderr)
    return EXIT_USAGE
