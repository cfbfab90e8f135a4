"""The records a DNS-SD service and an mDNS host publish, and the names they live under.

Why a module of its own: what we publish is decided by two RFCs' worth of rules (RFC 6763 4-9
for the service names, PTR/SRV/TXT layout and the TXT format; RFC 6762 10 for the TTLs and which
records are unique), and both the responder (answers, probes, announcements, goodbyes) and the
browser (reading other hosts' TXT records, showing instance names) use them. Validation of what
the application asks to publish lives here too, so a bad service type fails at ``register`` with
a clear message instead of producing names other hosts ignore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

import dns.name

from ztnode.names.dnscodec import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    Record,
    a_rdata,
    ptr_rdata,
    srv_rdata,
    txt_rdata,
)

__all__ = [
    "HOST_TTL",
    "LOCAL",
    "OTHER_TTL",
    "SERVICES_NAME",
    "ServiceRecords",
    "ServiceSpec",
    "decode_txt",
    "display_name",
    "encode_txt",
    "host_name",
    "host_records",
    "instance_name",
    "normalize_service_type",
    "numbered_host",
    "numbered_instance",
    "service_records",
    "service_type_name",
    "service_type_text",
    "validate_hostname",
]

# RFC 6762 10: records that name a host (A, AAAA, SRV) live 120 s, everything else 75 minutes.
HOST_TTL = 120
OTHER_TTL = 4500
# RFC 6763 6.1 / 6.2: one TXT string is at most 255 bytes; the whole rdata should stay under
# 1300 bytes so the record fits a datagram together with the rest of an answer.
MAX_TXT_STRING = 255
MAX_TXT_TOTAL = 1300
MAX_LABEL = 63
# RFC 6335 5.1: a service name is 1-15 letters, digits and hyphens, with at least one letter,
# no hyphen at either end and no two hyphens in a row.
MAX_SERVICE_NAME = 15
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")

LOCAL = dns.name.from_text("local.")
# RFC 6763 9: the service type enumeration name.
SERVICES_NAME = dns.name.from_text("_services._dns-sd._udp.local.")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def validate_hostname(hostname: str) -> str:
    """``hostname`` as one DNS label (1-63 bytes of UTF-8, no dot, no control character)."""
    if not isinstance(hostname, str):
        raise ValueError(f"host name must be a string, not {type(hostname).__name__}")
    label = hostname.strip()
    if label.endswith(".local") or label.endswith(".local."):
        label = label.rsplit(".local", 1)[0]
    size = len(label.encode())
    if not 1 <= size <= MAX_LABEL or "." in label or _has_control(label):
        raise ValueError(
            f"host name {hostname!r} must be a single label of 1-63 bytes, "
            "without dots or control characters (the engine serves <label>.local.)"
        )
    return label


def normalize_service_type(service_type: str) -> str:
    """``_name._tcp`` or ``_name._udp`` (a trailing ``.local.`` is accepted and removed).

    RFC 6763 7: the protocol label is ``_tcp`` or ``_udp``; RFC 6335 5.1: the service name."""
    text = service_type.strip().rstrip(".") if isinstance(service_type, str) else ""
    if text.lower().endswith(".local"):
        text = text[: -len(".local")]
    parts = text.split(".")
    if (
        len(parts) != 2
        or not parts[0].startswith("_")
        or parts[1].lower() not in ("_tcp", "_udp")
        or not _valid_service_name(parts[0][1:])
    ):
        raise ValueError(
            f"service type {service_type!r} must look like '_http._tcp' or '_name._udp': "
            "an underscore, 1-15 letters, digits or hyphens (RFC 6335 5.1), then _tcp or _udp"
        )
    return f"{parts[0]}.{parts[1].lower()}"


def _valid_service_name(name: str) -> bool:
    return (
        1 <= len(name) <= MAX_SERVICE_NAME
        and _SERVICE_NAME.match(name) is not None
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def _valid_instance(instance: str) -> str:
    if not isinstance(instance, str):
        raise ValueError(f"instance name must be a string, not {type(instance).__name__}")
    size = len(instance.encode())
    if not 1 <= size <= MAX_LABEL or _has_control(instance):
        raise ValueError(
            f"instance name {instance!r} must be 1-63 bytes of UTF-8 without control "
            f"characters (RFC 6763 4.1.1); it is {size} bytes"
        )
    return instance


def encode_txt(txt: Mapping[str, str | bytes | None]) -> list[bytes]:
    """The TXT character-strings for ``txt`` (RFC 6763 6): ``key=value``, ``key`` alone for None;
    an empty mapping is one empty string (6.1: a TXT record is never empty)."""
    strings: list[bytes] = []
    seen: set[str] = set()
    for key, value in txt.items():
        if (
            not isinstance(key, str)
            or not key
            or "=" in key
            or any(not 0x20 <= ord(c) <= 0x7E for c in key)
        ):
            raise ValueError(
                f"TXT key {key!r} must be 1 or more printable ASCII characters without '=' "
                "(RFC 6763 6.4)"
            )
        if key.lower() in seen:
            raise ValueError(f"TXT key {key!r} repeats another key (keys are case-insensitive)")
        seen.add(key.lower())
        if value is None:
            item = key.encode()
        elif isinstance(value, str):
            item = key.encode() + b"=" + value.encode()
        elif isinstance(value, bytes | bytearray):
            item = key.encode() + b"=" + bytes(value)
        else:
            raise ValueError(f"TXT value for {key!r} must be str, bytes or None")
        if len(item) > MAX_TXT_STRING:
            raise ValueError(
                f"TXT entry {key!r} is {len(item)} bytes; each key=value is at most 255 bytes"
            )
        strings.append(item)
    if not strings:
        return [b""]
    total = sum(len(s) + 1 for s in strings)
    if total > MAX_TXT_TOTAL:
        raise ValueError(f"TXT record is {total} bytes; keep it under {MAX_TXT_TOTAL} (6763 6.2)")
    return strings


def decode_txt(strings: Iterable[bytes]) -> dict[str, bytes | None]:
    """RFC 6763 6.4-6.5: keys compared case-insensitively (reported lowercased), the first
    occurrence wins, ``key`` alone is None, ``key=`` an empty value; strings with an empty or
    non-ASCII key are ignored."""
    out: dict[str, bytes | None] = {}
    for item in strings:
        if not item:
            continue
        raw_key, eq, value = item.partition(b"=")
        if not raw_key or any(not 0x20 <= b <= 0x7E for b in raw_key):
            continue
        key = raw_key.decode("ascii").lower()
        if key in out:
            continue
        out[key] = value if eq else None
    return out


def numbered_instance(base: str, number: int) -> str:
    """RFC 6763 appendix D's renaming: ``Base (2)``, ``Base (3)``..., the base cut (on a character
    boundary) so the label stays within 63 bytes."""
    if number <= 1:
        return base
    suffix = f" ({number})"
    return _cut(base, MAX_LABEL - len(suffix.encode())) + suffix


def numbered_host(base: str, number: int) -> str:
    """``base-2``, ``base-3``... for a host name another host already owns, within 63 bytes."""
    if number <= 1:
        return base
    suffix = f"-{number}"
    return _cut(base, MAX_LABEL - len(suffix)) + suffix


def _cut(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def host_name(hostname: str) -> dns.name.Name:
    """``<hostname>.local.``"""
    return dns.name.Name([hostname.encode(), b"local", b""])


def service_type_name(service_type: str) -> dns.name.Name:
    """``_http._tcp`` -> ``_http._tcp.local.``"""
    return dns.name.Name([*(p.encode() for p in service_type.split(".")), b"local", b""])


def instance_name(instance: str, service_type: str) -> dns.name.Name:
    """``Instance._type._proto.local.``: the instance is one label whatever it contains."""
    return dns.name.Name([instance.encode(), *service_type_name(service_type).labels])


def service_type_text(type_name: dns.name.Name) -> str:
    """``_http._tcp.local.`` -> ``_http._tcp``"""
    return ".".join(label.decode("ascii", errors="replace") for label in type_name.labels[:2])


def display_name(name: dns.name.Name) -> str:
    """An instance name as people read it: the first label as UTF-8 with only ``.`` and ``\\``
    escaped (RFC 6763 4.3), then the service type and domain."""
    if len(name.labels) < 2:
        return name.to_text()
    first = name.labels[0].decode("utf-8", errors="replace")
    first = first.replace("\\", "\\\\").replace(".", "\\.")
    return f"{first}.{name.parent().to_text()}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A DNS-SD service to publish; validated on construction (ValueError saying what is wrong).

    ``instance`` is the user-visible label (RFC 6763 4.1.1), ``service_type`` ``_name._tcp`` or
    ``_name._udp``, ``txt`` key/value pairs (RFC 6763 6), ``subtypes`` optional subtype labels
    (RFC 6763 7.1, e.g. ``_printer``)."""

    instance: str
    service_type: str
    port: int
    txt: Mapping[str, str | bytes | None] = field(default_factory=dict)
    subtypes: Sequence[str] = ()

    def __post_init__(self) -> None:
        _valid_instance(self.instance)
        object.__setattr__(self, "service_type", normalize_service_type(self.service_type))
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValueError(f"port must be an int, not {type(self.port).__name__}")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} is outside 0-65535")
        encode_txt(self.txt)
        if isinstance(self.subtypes, str):
            raise ValueError("subtypes is a sequence of labels, not one string")
        for sub in self.subtypes:
            if not isinstance(sub, str) or not 1 <= len(sub.encode()) <= MAX_LABEL or "." in sub:
                raise ValueError(f"subtype {sub!r} must be one label of 1-63 bytes (RFC 6763 7.1)")


@dataclass(frozen=True, slots=True)
class ServiceRecords:
    """What one service publishes: ``unique`` (SRV, TXT under the instance name, cache-flush
    set in responses) and ``shared`` (the PTRs: type -> instance, 6763 9 enumeration, subtypes)."""

    unique: tuple[Record, ...]
    shared: tuple[Record, ...]

    def all(self) -> tuple[Record, ...]:
        return self.shared + self.unique


def service_records(spec: ServiceSpec, instance: str, hostname: str) -> ServiceRecords:
    """The records of ``spec`` published as ``instance`` on host ``hostname`` (RFC 6763 4-9,
    TTLs per RFC 6762 10)."""
    type_name = service_type_name(spec.service_type)
    name = instance_name(instance, spec.service_type)
    srv = Record(
        name, TYPE_SRV, CLASS_IN, HOST_TTL, srv_rdata(spec.port, host_name(hostname)), True
    )
    txt = Record(name, TYPE_TXT, CLASS_IN, OTHER_TTL, txt_rdata(encode_txt(spec.txt)), True)
    shared = [
        Record(type_name, TYPE_PTR, CLASS_IN, OTHER_TTL, ptr_rdata(name)),
        Record(SERVICES_NAME, TYPE_PTR, CLASS_IN, OTHER_TTL, ptr_rdata(type_name)),
    ]
    for sub in spec.subtypes:
        sub_name = dns.name.Name([sub.encode(), b"_sub", *type_name.labels])
        shared.append(Record(sub_name, TYPE_PTR, CLASS_IN, OTHER_TTL, ptr_rdata(name)))
    return ServiceRecords((srv, txt), tuple(shared))


def host_records(
    hostname: str, addresses: Sequence[IPv4Address | IPv6Address]
) -> tuple[Record, ...]:
    """The host's A and AAAA records (unique, RFC 6762 10: 120 s)."""
    name = host_name(hostname)
    return tuple(
        Record(
            name,
            TYPE_A if isinstance(address, IPv4Address) else TYPE_AAAA,
            CLASS_IN,
            HOST_TTL,
            a_rdata(address),
            True,
        )
        for address in addresses
    )
