"""Suite-wide fixtures and the rule that CI may not skip interop tests."""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ztnode.identity import Identity

DATA = Path(__file__).parent / "data"

# .ci/run sets this: a skipped interop test is then a failure, because an interop suite that
# silently skips proves nothing.
REQUIRE_INTEROP = os.environ.get("ZTNODE_REQUIRE_INTEROP") == "1"


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


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_INTEROP and report.skipped and item.get_closest_marker("interop") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"interop test skipped while ZTNODE_REQUIRE_INTEROP=1: {reason}"
