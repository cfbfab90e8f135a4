"""The test data files: ZeroTierOne's known answers and our fixed identities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ztnode.identity import Identity

DATA = Path(__file__).resolve().parents[1] / "data"


def load_vectors() -> dict[str, Any]:
    """Known answers from ZeroTierOne 1.14.1: a copy of shared/vectors/zt-vectors.json."""
    with open(DATA / "zt-vectors.json") as f:
        data: dict[str, Any] = json.load(f)
    return data


def test_identities() -> list[Identity]:
    """Fixed identities for tests (generated once with ``ztnode identity new``; private keys
    included). Generating identities costs about a second each, so tests reuse these."""
    lines = (DATA / "test-identities.txt").read_text().split()
    return [Identity.from_string(line) for line in lines]


test_identities.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
