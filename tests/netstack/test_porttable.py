"""The bound-socket table's per-port holder count against a scan of its keys (the answer it
replaces), over random binds and closes; and the stack's use of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.netstack.porttable import PortTable

from .test_stack import Wire

_keys = st.tuples(st.booleans(), st.sampled_from([b"", b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"]),
                  st.integers(1, 4))  # fmt: skip


def _scan(table: PortTable[int], port: int, ipv6: bool | None) -> bool:
    return any(k[2] == port and (ipv6 is None or k[0] == ipv6) for k in table)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _keys, st.integers(0, 9)), max_size=40))
def test_holder_count_matches_a_scan(ops: list[tuple[bool, tuple[bool, bytes, int], int]]) -> None:
    table: PortTable[int] = PortTable()
    model: dict[tuple[bool, bytes, int], int] = {}
    for add, key, value in ops:
        if add:
            table[key] = value  # a second bind of a key replaces its holder, counts once
            model[key] = value
        else:
            assert table.pop(key) == model.pop(key, None)
        assert dict(table.items()) == model
        assert len(table) == len(model)
        for port in range(1, 5):
            for fam in (None, False, True):
                assert table.holds(port, fam) == _scan(table, port, fam)


def test_a_closed_listener_gives_its_port_back_to_the_draw() -> None:
    w = Wire()
    w.a.config.ephemeral_ports = (40000, 40000)
    lst = w.a.tcp_listen(None, 40000)
    w.b.tcp_listen(None, 80)
    with pytest.raises(OSError, match="no local port free"):
        w.a.tcp_connect("10.9.0.2", 80, w.now)
    lst.close(w.now)
    assert w.a.tcp_connect("10.9.0.2", 80, w.now).local[1] == 40000


def test_exclusive_binds_see_their_own_family_only() -> None:
    w = Wire()
    w.a.tcp_listen(None, 7000)
    with pytest.raises(OSError, match="in use"):
        w.a.tcp_listen(None, 7000)
    w.a.tcp_listen(None, 7000, ipv6=True)  # IPv6 has its own port space here
    u = w.a.udp_bind(None, 7001)
    with pytest.raises(OSError, match="in use"):
        w.a.udp_bind(None, 7001)
    u.close()
    w.a.udp_bind(None, 7001)
