"""A parser of the Prometheus text exposition format, for ``ztnode metrics``."""

from __future__ import annotations

import re
from typing import Any

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")


_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text: str) -> list[dict[str, Any]]:
    """Samples of Prometheus text as ``{"name", "labels", "value"}``; ValueError on a line
    that is neither a sample, a comment nor blank."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample: {line!r}")
        name, label_text, value_text = m.groups()
        labels: dict[str, str] = {}
        pos = 0
        label_text = label_text or ""
        while pos < len(label_text):
            lm = _LABEL.match(label_text, pos)
            if lm is None or lm.end() == pos:
                raise ValueError(f"bad labels in {line!r}")
            raw = lm.group(2)
            labels[lm.group(1)] = (
                raw.replace("\\\\", "\0")
                .replace('\\"', '"')
                .replace("\\n", "\n")
                .replace("\0", "\\")
            )
            pos = lm.end()
        value = float(value_text)
        out.append(
            {"name": name, "labels": labels, "value": int(value) if value.is_integer() else value}
        )
    return out
