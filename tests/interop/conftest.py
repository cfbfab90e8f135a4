"""Fixtures for the libzt interop tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.interop.peer import LibztPeer
from tests.interop.setup_libzt import ensure_libzt


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/interop/" in str(item.path):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def libzt_installed() -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to build the libzt shim")
    try:
        ensure_libzt()
    except Exception as e:  # no network to PyPI, no compiler: the test cannot run here
        pytest.skip(f"libzt 1.8.4 could not be installed: {e}")


@pytest.fixture
def libzt(libzt_installed: None) -> Iterator[LibztPeer]:
    """A libzt process on the host network namespace, for tests that send no packets."""
    with LibztPeer() as peer:
        peer.call("ping")
        yield peer


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
