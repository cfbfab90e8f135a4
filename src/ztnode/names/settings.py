"""What a node does about names: its own name, a static map, which protocols it speaks.

Why a value of its own: the asyncio node, the blocking node, the command line and
``local.conf``-style dictionaries all configure the same behaviour; one checked value keeps the
defaults (answer and ask by mDNS and LLMNR, ask the pushed servers for the pushed domain only)
in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ztnode.errors import LocalProtocolError
from ztnode.names.hostmap import HostMap, HostValue
from ztnode.names.labels import normalize_name

__all__ = ["NameSettings"]


@dataclass(frozen=True)
class NameSettings:
    """``hostname``: the single label this node answers to by mDNS (``<hostname>.local``) and
    LLMNR; None: ``zt-<its address>``, as ZeroTier's name service names members.
    ``hosts``: a static map, asked first. ``mdns``/``llmnr``: answer and ask on networks that
    allow multicast. ``dns_any``: ask the network's pushed DNS servers for any name, not only
    those under the pushed domain (off: names outside it go to the system's resolver where a
    library falls back to it). ``serve_dns``: answer as the network's DNS server (a controller
    joined to its own network): None decides by itself (when this node is the network's
    controller and one of its addresses is among the pushed servers). ``timeout``: seconds a
    name may take. ``cache_size``: answers kept per network."""

    hostname: str | None = None
    hosts: HostMap = field(default_factory=HostMap)
    mdns: bool = True
    llmnr: bool = True
    dns_any: bool = False
    serve_dns: bool | None = None
    timeout: float = 5.0
    cache_size: int = 4096

    def __post_init__(self) -> None:
        if self.hostname is not None:
            label = normalize_name(self.hostname)
            if not label or "." in label or len(label) > 63 or label.startswith("-"):
                raise LocalProtocolError(
                    f"hostname {self.hostname!r} must be one DNS label (letters, digits, hyphens)"
                )
            object.__setattr__(self, "hostname", label)
        if not 0 < self.timeout <= 300:
            raise LocalProtocolError("name timeout must be between 0 and 300 seconds")
        if self.cache_size < 1:
            raise LocalProtocolError("cache_size must be at least 1")

    @classmethod
    def build(
        cls,
        names: NameSettings | Mapping[str, Any] | None = None,
        *,
        hosts: HostMap | Mapping[str, HostValue] | None = None,
        hostname: str | None = None,
    ) -> NameSettings:
        """Settings from a value or a dict of the same keys, with the node's ``hosts`` and
        ``hostname`` shortcuts applied over them."""
        if names is None:
            base = cls()
        elif isinstance(names, NameSettings):
            base = names
        else:
            known = set(cls.__dataclass_fields__)
            unknown = set(names) - known
            if unknown:
                raise LocalProtocolError(f"unknown name settings: {', '.join(sorted(unknown))}")
            kw = dict(names)
            if "hosts" in kw and not isinstance(kw["hosts"], HostMap):
                kw["hosts"] = HostMap(kw["hosts"])
            base = cls(**kw)
        changes: dict[str, Any] = {}
        if hosts is not None:
            changes["hosts"] = hosts if isinstance(hosts, HostMap) else HostMap(hosts)
        if hostname is not None:
            changes["hostname"] = hostname
        if not changes:
            return base
        merged = {k: getattr(base, k) for k in cls.__dataclass_fields__}
        merged.update(changes)
        return cls(**merged)
