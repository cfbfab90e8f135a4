"""The node's pooled random source: every byte the OS gave handed out at most once, requests
served in order, big ones straight from the OS, nothing of a page kept across a fork."""

from __future__ import annotations

import os

import pytest

from ztnode.transport.randompool import DIRECT, PAGE, RandomPool


class Counting:
    """A deterministic stand-in for the OS source that numbers every byte it produces."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.made = 0

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        out = bytes((self.made + i) % 251 for i in range(n))
        self.made += n
        return out


def test_slices_of_one_page_then_a_new_page() -> None:
    src = Counting()
    pool = RandomPool(src)
    got = b"".join(pool(8) for _ in range(PAGE // 8))
    assert src.calls == [PAGE]  # one read served 512 packet ids
    assert got == bytes(i % 251 for i in range(PAGE))  # each byte once, in order
    pool(8)
    assert src.calls == [PAGE, PAGE]


def test_a_request_past_the_page_end_starts_a_new_page_without_reusing_bytes() -> None:
    src = Counting()
    pool = RandomPool(src)
    for _ in range((PAGE - 4) // 4):
        pool(4)
    tail = pool(8)  # 4 left: not enough, so a fresh page; the 4 are never handed out
    assert tail == bytes((PAGE + i) % 251 for i in range(8))
    assert src.calls == [PAGE, PAGE]


def test_big_requests_go_to_the_os_directly() -> None:
    src = Counting()
    pool = RandomPool(src)
    assert len(pool(DIRECT)) == DIRECT
    assert src.calls == [DIRECT]
    assert pool(0) == b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_hands_out_the_parents_bytes() -> None:
    pool = RandomPool()
    pool(8)  # a page is loaded
    expected_next = pool._page[pool._at : pool._at + 8]  # what the parent hands out next
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write what it would hand out, and leave at once
        try:
            os.write(w, pool(8))
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 8
    assert child != expected_next  # the child read its own page
    assert pool(8) == expected_next  # and the parent's page is untouched
