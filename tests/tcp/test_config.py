"""``TcpConfig`` writes its ``__init__`` and its copies out by hand (a dataclass's generated
ones stay interpreted Python in the compiled build): they must agree with the fields."""

from __future__ import annotations

import dataclasses

from ztnode.netstack.tcp import TcpConfig


def _field_default(f: dataclasses.Field[object]) -> object:
    assert f.default is not dataclasses.MISSING, f"{f.name} has no default"
    return f.default


def _distinct_values() -> dict[str, object]:
    """A value for every field that differs from its default (so a field left out of a copy
    shows)."""
    out: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(TcpConfig)):
        d = _field_default(f)
        if isinstance(d, bool):
            out[f.name] = not d
        elif isinstance(d, int):
            out[f.name] = d + 1000 + i
        elif d is None or f.name == "fin_wait_2_timeout_ms":
            out[f.name] = 12_345
        else:
            out[f.name] = lambda mss: None  # the congestion-control factory
    return out


def test_init_takes_every_field_in_order_with_the_fields_defaults() -> None:
    # Checked by behaviour (a compiled __init__ has no inspectable signature): defaults, then
    # every field by position (the order) and by name.
    fields = dataclasses.fields(TcpConfig)
    made = TcpConfig()
    for f in fields:
        assert getattr(made, f.name) == _field_default(f), f.name
    values = _distinct_values()
    by_position = TcpConfig(*(values[f.name] for f in fields))
    by_name = TcpConfig(**values)  # type: ignore[arg-type]
    for f in fields:
        assert getattr(by_position, f.name) == values[f.name], f.name
        assert getattr(by_name, f.name) == values[f.name], f.name


def test_copy_and_derive_carry_every_field() -> None:
    values = _distinct_values()
    cfg = TcpConfig(**values)  # type: ignore[arg-type]
    assert all(getattr(cfg, k) == v for k, v in values.items())
    copied = cfg.copy()
    assert copied == cfg and copied is not cfg
    derived = cfg.derive(mtu=1280, ipv6=not cfg.ipv6, gso_segments=7)
    want = dataclasses.replace(cfg, mtu=1280, ipv6=not cfg.ipv6, gso_segments=7)
    assert derived == want
    copied.nodelay = not copied.nodelay  # a connection's option setter: its own copy only
    assert cfg.nodelay == values["nodelay"]


def test_replace_and_equality_still_work_as_a_dataclass() -> None:
    a = TcpConfig(mtu=1400)
    assert dataclasses.replace(a, sack=False) == TcpConfig(mtu=1400, sack=False)
    assert a != TcpConfig()
    assert "mtu=1400" in repr(a)
