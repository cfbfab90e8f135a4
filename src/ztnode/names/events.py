"""What the mDNS and LLMNR engines report to the adapter that drives them.

Why plain dataclasses: the engines are sans-I/O, so everything that happens asynchronously (a
probe that won a name, a service found on the link, a one-shot lookup answered or timed out)
comes out as a value the adapter drains with ``events()`` and turns into futures, callbacks or
async iterators as it likes. The two protocols share the lookup results (``HostResolved``,
``HostNotFound``, told apart by ``protocol``), so a caller racing mDNS against LLMNR for one name
handles a single type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "HostConflict",
    "HostNotFound",
    "HostRegistered",
    "HostRenamed",
    "HostResolved",
    "LlmnrEvent",
    "MdnsEvent",
    "Protocol",
    "RetryOverTcp",
    "ServiceFound",
    "ServiceInfo",
    "ServiceLost",
    "ServiceRegistered",
    "ServiceRenamed",
    "ServiceUpdated",
]

Protocol = Literal["mdns", "llmnr"]


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A DNS-SD service instance as a browser sees it once it can be reached (RFC 6763 4, 5, 6).

    ``name`` is the fully qualified instance name in the form people read (the instance label
    with only ``.`` and ``\\`` escaped, RFC 6763 4.3); ``host`` the SRV target; ``txt`` the
    key/value pairs decoded per RFC 6763 6.4 (keys lowercased, first occurrence wins, a key
    alone maps to None, ``key=`` to ``b""``)."""

    instance: str
    service_type: str
    name: str
    host: str
    addresses: list[str]
    port: int
    txt: dict[str, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceRegistered:
    """Our service ``key`` won its probes (RFC 6762 8.1) under ``name`` and is being announced."""

    key: int
    name: str


@dataclass(frozen=True, slots=True)
class ServiceRenamed:
    """Another host owns ``old``: our service ``key`` now probes as ``new`` (RFC 6762 9)."""

    key: int
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class HostRegistered:
    """Our host name (a single label) won its probes and its addresses are being announced."""

    hostname: str


@dataclass(frozen=True, slots=True)
class HostRenamed:
    """Another host owns the label ``old`` on the link: we now use ``new`` (single labels)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class HostConflict:
    """LLMNR found another responder for our name (RFC 4795 4.2): the engine stopped answering
    for ``hostname`` until the adapter gives it another name with ``set_hostname``."""

    hostname: str


@dataclass(frozen=True, slots=True)
class ServiceFound:
    """Browse ``browse_id`` found an instance with its SRV and at least one address."""

    browse_id: int
    info: ServiceInfo


@dataclass(frozen=True, slots=True)
class ServiceUpdated:
    """An instance already reported changed its SRV, TXT or addresses."""

    browse_id: int
    info: ServiceInfo


@dataclass(frozen=True, slots=True)
class ServiceLost:
    """An instance said goodbye, expired or was flushed (``name`` as in :class:`ServiceInfo`)."""

    browse_id: int
    name: str


@dataclass(frozen=True, slots=True)
class HostResolved:
    """A one-shot lookup got addresses; ``ttl_ms`` is the smallest TTL among them."""

    query_id: int
    name: str
    addresses: list[str]
    ttl_ms: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class HostNotFound:
    """A one-shot lookup reached its deadline without an address."""

    query_id: int
    name: str
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class RetryOverTcp:
    """An LLMNR answer came truncated (TC bit, RFC 4795 2.1.1) from ``address``: the adapter
    sends ``query`` (one DNS message, without TCP's two-byte length) to ``address`` over TCP
    port 5355 and feeds the answer to ``receive_tcp_answer(query_id, ...)``."""

    query_id: int
    address: str
    query: bytes = b""


MdnsEvent = (
    ServiceRegistered
    | ServiceRenamed
    | HostRegistered
    | HostRenamed
    | ServiceFound
    | ServiceUpdated
    | ServiceLost
    | HostResolved
    | HostNotFound
)
LlmnrEvent = HostConflict | HostResolved | HostNotFound | RetryOverTcp
