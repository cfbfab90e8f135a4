"""Host names as ZeroTier names members, and DNS labels made from free text.

Why: a member's default name is derived from its ZeroTier address as ZeroTier's own name
service does (``zt-<10 hex digits>``), and names that people give members ("Alice's laptop")
become single DNS labels by the same folding everywhere (controller DNS role, mDNS, LLMNR), so a
name asked for matches the name served.
"""

from __future__ import annotations

import re

__all__ = ["default_hostname", "label_from_text", "normalize_name"]

_NOT_LDH = re.compile(r"[^a-z0-9-]+")
MAX_LABEL = 63


def default_hostname(address: int) -> str:
    """``zt-`` and the node's 40-bit address in 10 lowercase hex digits."""
    return f"zt-{address:010x}"


def label_from_text(text: str) -> str | None:
    """One DNS label (letters, digits, hyphens; at most 63) from a member's free-text name, or
    None when nothing usable is left: lowercase, runs of anything else become one hyphen,
    hyphens trimmed at both ends."""
    label = _NOT_LDH.sub("-", text.strip().lower()).strip("-")[:MAX_LABEL].rstrip("-")
    return label or None


def normalize_name(name: str) -> str:
    """A name as compared everywhere: lowercase, no trailing dot."""
    return name.strip().rstrip(".").lower()
