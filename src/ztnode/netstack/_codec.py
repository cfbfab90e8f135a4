"""Small helpers shared by the packet codecs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def trusted_constructor(cls: type[T]) -> Callable[..., T]:
    """A constructor for a frozen, slotted dataclass that skips ``__init__``/``__post_init__``.

    Decoders build one header per packet from values that are in range by construction (a
    16-bit field unpacked by ``struct`` cannot exceed 16 bits), so the range checks in
    ``__post_init__`` that protect callers building headers by hand are wasted work there.
    Writing the slots through their descriptors skips both the checks and the frozen
    ``__setattr__``; measured on CPython 3.11 it takes a 12-field TCP header from ~1.6 us to
    ~0.9 us. Arguments are positional, in field order, and all are required. A class compiled
    with the hot path is its own constructor here.
    """
    if hasattr(cls, "__mypyc_attrs__"):
        # Compiled with the hot path: the class's own constructor, checks included, is native
        # code and cheaper than this shim; and a native object cannot be built field by field.
        return cls
    setters = [getattr(cls, f.name).__set__ for f in fields(cls)]  # type: ignore[arg-type]
    new = object.__new__

    def make(*values: Any) -> T:
        obj = new(cls)
        for setter, value in zip(setters, values, strict=True):
            setter(obj, value)
        return obj

    return make


__all__ = ["trusted_constructor"]
