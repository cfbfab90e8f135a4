"""Suite-wide fixtures and the rule that CI may not skip interop or distribution tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from typing import Any

import pytest

from tests.helpers.data import load_vectors

# The throwaway PostgreSQL server (pg_server, pg_url) for the controller's PostgreSQL tests.
pytest_plugins = ["tests.helpers.postgres"]

# .ci/run sets this: a skipped interop (or dist) test is then a failure, because a suite that
# silently skips proves nothing. Interop and dist need root (network and mount namespaces),
# postgres and browser need Debian's postgresql and chromium packages (.ci/run installs them).
REQUIRE_INTEROP = os.environ.get("ZTNODE_REQUIRE_INTEROP") == "1"

# Network safety: a port mapper sends SSDP multicast and NAT-PMP to the default gateway, real
# traffic off the machine. This veto (ztnode.transport.portmap) holds for the whole suite and
# every process it starts, whatever a node's settings say; only the namespace test that proves
# the mapper against miniupnpd lifts it, for a node it runs inside its own namespaces.
os.environ["ZTNODE_NO_PORT_MAPPING"] = "1"
_MANDATORY_MARKERS = ("interop", "dist", "postgres", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop every test's asyncio.run / new_event_loop makes (uvloop: the "
        "uvloop extra's loop, through its event loop policy)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The policy is what asyncio.run, asyncio.Runner and asyncio.new_event_loop ask for a loop,
    # so one switch moves every test (and every BlockingNode's loop thread) onto uvloop, as an
    # application that installs uvloop's policy would.
    if config.getoption("--loop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise pytest.UsageError("--loop uvloop: uvloop is not installed") from None
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    mandatory = any(item.get_closest_marker(m) is not None for m in _MANDATORY_MARKERS)
    if REQUIRE_INTEROP and report.skipped and mandatory:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"test skipped while ZTNODE_REQUIRE_INTEROP=1: {reason}"
