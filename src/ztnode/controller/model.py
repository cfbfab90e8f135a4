"""ZeroTierOne's controller JSON: network and member objects, their defaults and POST semantics.

Tools written for ZeroTierOne's embedded controller (ztncui, zero-ui, scripts) read these objects
and write them back, often verbatim after a GET, so the field names, defaults and normalisations
follow ZeroTierOne 1.14.1 (``DB::initNetwork`` / ``initMember`` and the two POST handlers; fact
sheet ``protocol-network.md`` §10.1/10.2):

* defaults exactly as ZeroTierOne writes them, oddities included (``authTokens`` is ``[null]``,
  ``dns`` is ``[]``, the default rule carries ``not``/``or`` where rendered actions do not);
* a POST changes only the fields it names; ``mtu`` is clamped to 1280..10000; ``v4AssignMode``
  and ``v6AssignMode`` take the object or the legacy string form (``"zt"``, ``"rfc4193,6plane"``)
  and an object replaces the whole mode (absent keys become false, as ZeroTierOne reads them);
  capabilities and tags are de-duplicated by id and sorted; rules are stored in the rendered
  form the reference keeps (:func:`ztnode.wire.rules.rule_to_json`);
* member ``authorized`` changes stamp ``lastAuthorizedTime`` / ``lastDeauthorizedTime`` and
  record the credential type ``"api"``; member ``capabilities`` are sorted and de-duplicated,
  ``tags`` become sorted ``[id, value]`` pairs;
* ``revision`` grows by one on every save that changes something other than ``revision``, so an
  idempotent POST leaves it (and the members' configs) alone. A record that was never saved has
  revision 0 and always counts as changed.

Where ZeroTierOne quietly coerces or drops bad input (a string for a boolean, an unparsable IP,
an unknown rule type; a non-string IP even makes it answer 500), this module refuses the whole
request with :class:`ApiError` 400 and a message naming the field, so a typo cannot half-apply.
Read-only and unknown fields in a body (``id``, ``revision``, ``creationTime``, ``meta``...) are
ignored, which is what lets a GET result be POSTed back unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Final

from ztnode.controller.store import JsonObject
from ztnode.wire.constants import DEFAULT_MTU, MAX_MTU, MIN_MTU
from ztnode.wire.netconf import (
    MAX_DNS_SERVERS,
    MAX_NETWORK_CAPABILITIES,
    MAX_NETWORK_NAME,
    MAX_NETWORK_ROUTES,
    MAX_NETWORK_TAGS,
)
from ztnode.wire.rules import MAX_CAPABILITY_RULES, MAX_NETWORK_RULES, rule_from_json, rule_to_json

U32_MAX: Final = 0xFFFF_FFFF
I64_MAX: Final = (1 << 63) - 1
MAX_ARRAY: Final = 16384  # ZT_CONTROLLER_MAX_ARRAY_SIZE: longest list the reference keeps
DEFAULT_MULTICAST_LIMIT: Final = 32

# Rendered by ZeroTierOne's initNetwork with explicit not/or (a rendered action has neither).
DEFAULT_RULES: Final[tuple[JsonObject, ...]] = (
    {"not": False, "or": False, "type": "ACTION_ACCEPT"},
)
V6_MODES: Final = ("rfc4193", "zt", "6plane")


class ApiError(Exception):
    """A request the controller refuses: ``status`` 400 (bad value or type), 404 (no such
    network or member), 503 (no free network id). Nothing has been changed when it is raised."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> ApiError:
    return ApiError(400, message)


# --- ids -------------------------------------------------------------------------------------


def nwid_hex(nwid: int) -> str:
    return f"{nwid:016x}"


def address_hex(address: int) -> str:
    return f"{address:010x}"


def _parse_hex(text: str, width: int, what: str) -> int:
    if len(text) != width or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise ApiError(404, f"{what} must be {width} hex digits, not {text!r:.40}")
    return int(text, 16)


def parse_nwid(text: str) -> int:
    """A network id from a URL (16 hex digits); 404 otherwise, as no route would match."""
    return _parse_hex(text, 16, "network id")


def parse_address(text: str) -> int:
    """A member address from a URL (10 hex digits); 404 otherwise."""
    return _parse_hex(text, 10, "member address")


# --- value checks ----------------------------------------------------------------------------


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object" if isinstance(v, dict) else type(v).__name__


def want_bool(v: object, what: str) -> bool:
    if not isinstance(v, bool):
        raise bad(f"{what} must be true or false, not {_type_name(v)}")
    return v


def want_int(v: object, what: str, lo: int = 0, hi: int = I64_MAX) -> int:
    """An integer (a JSON number without fraction; ``2.0`` counts) within ``lo..hi``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"{what} must be an integer, not {_type_name(v)}")
    if not lo <= v <= hi:
        raise bad(f"{what} must be between {lo} and {hi}, not {v}")
    return v


def want_str(v: object, what: str) -> str:
    if not isinstance(v, str):
        raise bad(f"{what} must be a string, not {_type_name(v)}")
    return v


def want_list(v: object, what: str, limit: int) -> list[Any]:
    if not isinstance(v, list):
        raise bad(f"{what} must be an array, not {_type_name(v)}")
    if len(v) > limit:
        raise bad(f"{what} has {len(v)} entries; at most {limit} are allowed")
    return v


def want_object(v: object, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad(f"{what} must be an object, not {_type_name(v)}")
    return v


def _short_text(v: object, what: str, limit: int) -> str:
    """A string that fits a NUL-terminated field of ``limit`` usable bytes in the config."""
    s = want_str(v, what)
    n = len(s.encode("utf-8", "surrogatepass"))
    if n > limit or "\0" in s:
        raise bad(f"{what} must be at most {limit} bytes with no NUL character")
    return s


def want_ip(v: object, what: str) -> IPv4Address | IPv6Address:
    """A bare IPv4 or IPv6 address (no prefix, no zone)."""
    s = want_str(v, what)
    if "%" in s:
        raise bad(f"{what}: scoped IPv6 addresses are not allowed ({s!r:.60})")
    try:
        return ip_address(s)
    except ValueError:
        raise bad(f"{what}: {s!r:.60} is not an IP address") from None


def want_cidr(v: object, what: str) -> tuple[IPv4Address | IPv6Address, int]:
    """``ip/bits`` as ZeroTierOne writes route targets (host bits are kept, as it does)."""
    s = want_str(v, what)
    ip_text, sep, bits_text = s.partition("/")
    if not sep:
        raise bad(f"{what}: {s!r:.60} needs a prefix length (like 10.0.0.0/24)")
    ip = want_ip(ip_text, what)
    if not (bits_text.isascii() and bits_text.isdigit()) or int(bits_text) > ip.max_prefixlen:
        raise bad(f"{what}: bad prefix length in {s!r:.60}")
    return ip, int(bits_text)


def want_trace_target(v: object, what: str) -> str | None:
    """A 10-hex address or null (empty string counts as null)."""
    if v is None or v == "":
        return None
    s = want_str(v, what)
    if len(s) != 10 or not all(c in "0123456789abcdefABCDEF" for c in s):
        raise bad(f"{what} must be a 10-digit hex address or null, not {s!r:.40}")
    return s.lower()


def want_rule(v: object, what: str) -> JsonObject:
    """One rule in the controller's JSON, parsed and rendered back as the reference stores it."""
    want_object(v, what)
    rule = rule_from_json(v)
    if rule is None:
        kind = v.get("type") if isinstance(v, dict) else None
        raise bad(f"{what}: not a rule the controller can use (type {kind!r:.40})")
    return rule_to_json(rule)


def want_rules(v: object, what: str, limit: int) -> list[JsonObject]:
    return [want_rule(r, f"{what}[{i}]") for i, r in enumerate(want_list(v, what, limit))]


# --- records ---------------------------------------------------------------------------------


def same_record(a: JsonObject, b: JsonObject) -> bool:
    """Equal apart from ``revision`` (ZeroTierOne's test for "did this save change anything")."""
    return {k: v for k, v in a.items() if k != "revision"} == {
        k: v for k, v in b.items() if k != "revision"
    }


def finish_save(old: JsonObject | None, new: JsonObject) -> bool:
    """Bump ``new["revision"]`` if saving it over ``old`` changes anything; True if it does.

    A record that was never saved (``old`` is None, or its revision is 0) always counts as
    changed, so every stored record has revision 1 or more, as in ZeroTierOne.
    """
    base = 0 if old is None else int(old.get("revision") or 0)
    if old is not None and base > 0 and same_record(old, new):
        new["revision"] = base
        return False
    new["revision"] = base + 1
    return True


def new_network(nwid: int, now: int) -> JsonObject:
    """A network as ZeroTierOne's ``initNetwork`` fills it, never saved (revision 0)."""
    ids = nwid_hex(nwid)
    return {
        "id": ids,
        "nwid": ids,
        "objtype": "network",
        "name": "",
        "private": True,
        "enableBroadcast": True,
        "multicastLimit": DEFAULT_MULTICAST_LIMIT,
        "mtu": DEFAULT_MTU,
        "v4AssignMode": {"zt": False},
        "v6AssignMode": {"rfc4193": False, "zt": False, "6plane": False},
        "authTokens": [None],
        "capabilities": [],
        "tags": [],
        "routes": [],
        "ipAssignmentPools": [],
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
        "rulesSource": "",
        "rules": copy.deepcopy(list(DEFAULT_RULES)),
        "dns": [],
        "ssoEnabled": False,
        "clientId": "",
        "authorizationEndpoint": "",
        "creationTime": now,
        "revision": 0,
    }


def new_member(nwid: int, address: int, now: int) -> JsonObject:
    """A member as ZeroTierOne's ``initMember`` fills it, never saved (revision 0). It has no
    ``identity`` until the node's first request, and no ``name`` until one is set."""
    addr = address_hex(address)
    return {
        "id": addr,
        "address": addr,
        "nwid": nwid_hex(nwid),
        "objtype": "member",
        "authorized": False,
        "activeBridge": False,
        "noAutoAssignIps": False,
        "ssoExempt": False,
        "ipAssignments": [],
        "tags": [],
        "capabilities": [],
        "creationTime": now,
        "revision": 0,
        "lastAuthorizedTime": 0,
        "lastDeauthorizedTime": 0,
        "lastAuthorizedCredentialType": None,
        "lastAuthorizedCredential": None,
        "authenticationExpiryTime": 0,
        "vMajor": -1,
        "vMinor": -1,
        "vRev": -1,
        "vProto": -1,
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
    }


# --- network POST ----------------------------------------------------------------------------


def _v4_mode(v: object) -> JsonObject:
    if isinstance(v, str):  # legacy form: "zt" (on) or "" (off)
        if v not in ("zt", ""):
            raise bad(f'v4AssignMode: unknown mode {v!r:.40}; use "zt" or {{"zt": true}}')
        return {"zt": v == "zt"}
    obj = want_object(v, "v4AssignMode")
    return {"zt": want_bool(obj.get("zt", False), "v4AssignMode.zt")}


def _v6_mode(v: object) -> JsonObject:
    if isinstance(v, str):  # legacy form: a comma list of mode names
        names = {n.strip() for n in v.split(",") if n.strip()}
        unknown = names.difference(V6_MODES)
        if unknown:
            raise bad(f"v6AssignMode: unknown mode(s) {sorted(unknown)}; use {list(V6_MODES)}")
        return {m: m in names for m in V6_MODES}
    obj = want_object(v, "v6AssignMode")
    return {m: want_bool(obj.get(m, False), f"v6AssignMode.{m}") for m in V6_MODES}


def _routes(v: object) -> list[JsonObject]:
    out: list[JsonObject] = []
    for i, item in enumerate(want_list(v, "routes", MAX_NETWORK_ROUTES)):
        what = f"routes[{i}]"
        rt = want_object(item, what)
        ip, bits = want_cidr(rt.get("target"), f"{what}.target")
        via_raw = rt.get("via")
        via: str | None = None
        if via_raw is not None and via_raw != "":
            via_ip = want_ip(via_raw, f"{what}.via")
            if via_ip.version != ip.version:
                raise bad(f"{what}.via must be of the target's address family")
            via = str(via_ip)
        out.append({"target": f"{ip}/{bits}", "via": via})
    return out


def _pools(v: object) -> list[JsonObject]:
    out: list[JsonObject] = []
    for i, item in enumerate(want_list(v, "ipAssignmentPools", MAX_ARRAY)):
        what = f"ipAssignmentPools[{i}]"
        pool = want_object(item, what)
        start = want_ip(pool.get("ipRangeStart"), f"{what}.ipRangeStart")
        end = want_ip(pool.get("ipRangeEnd"), f"{what}.ipRangeEnd")
        if start.version != end.version:
            raise bad(f"{what}: ipRangeStart and ipRangeEnd must be of the same address family")
        if int(start) > int(end):
            raise bad(f"{what}: ipRangeStart {start} is after ipRangeEnd {end}")
        out.append({"ipRangeStart": str(start), "ipRangeEnd": str(end)})
    return out


def _auth_tokens(v: object) -> Any:
    if v is None or v in ([], [None]):  # the default, or its shape echoed back
        return [None]
    obj = want_object(v, "authTokens")
    out: JsonObject = {}
    for token, expiry in obj.items():
        out[token] = want_int(expiry, f"authTokens[{token!r:.40}] (expiry, 0 = never)")
    return out


def _capabilities(v: object) -> list[JsonObject]:
    caps: dict[int, JsonObject] = {}
    for i, item in enumerate(want_list(v, "capabilities", MAX_ARRAY)):
        what = f"capabilities[{i}]"
        cap = want_object(item, what)
        cap_id = want_int(cap.get("id"), f"{what}.id", 0, U32_MAX)
        caps[cap_id] = {
            "id": cap_id,
            "default": want_bool(cap.get("default", False), f"{what}.default"),
            "rules": want_rules(cap.get("rules", []), f"{what}.rules", MAX_CAPABILITY_RULES),
        }
    if len(caps) > MAX_NETWORK_CAPABILITIES:
        raise bad(f"capabilities: at most {MAX_NETWORK_CAPABILITIES} distinct ids")
    return [caps[k] for k in sorted(caps)]


def _network_tags(v: object) -> list[JsonObject]:
    tags: dict[int, JsonObject] = {}
    for i, item in enumerate(want_list(v, "tags", MAX_ARRAY)):
        what = f"tags[{i}]"
        tag = want_object(item, what)
        tag_id = want_int(tag.get("id"), f"{what}.id", 0, U32_MAX)
        dfl = tag.get("default")
        tags[tag_id] = {
            "id": tag_id,
            "default": None if dfl is None else want_int(dfl, f"{what}.default", 0, U32_MAX),
        }
    if len(tags) > MAX_NETWORK_TAGS:
        raise bad(f"tags: at most {MAX_NETWORK_TAGS} distinct ids")
    return [tags[k] for k in sorted(tags)]


def _dns(v: object) -> Any:
    if v is None or v == []:
        return []
    obj = want_object(v, "dns")
    domain = _short_text(obj.get("domain", ""), "dns.domain", 127)
    servers = [
        str(want_ip(s, f"dns.servers[{i}]"))
        for i, s in enumerate(want_list(obj.get("servers", []), "dns.servers", MAX_DNS_SERVERS))
    ]
    return {"domain": domain, "servers": servers}


_NETWORK_FIELDS: Final[dict[str, Callable[[object], Any]]] = {
    "name": lambda v: _short_text(v, "name", MAX_NETWORK_NAME),
    "private": lambda v: want_bool(v, "private"),
    "enableBroadcast": lambda v: want_bool(v, "enableBroadcast"),
    "multicastLimit": lambda v: want_int(v, "multicastLimit", 0, U32_MAX),
    "mtu": lambda v: max(MIN_MTU, min(MAX_MTU, want_int(v, "mtu", -I64_MAX, I64_MAX))),
    "remoteTraceTarget": lambda v: want_trace_target(v, "remoteTraceTarget"),
    "remoteTraceLevel": lambda v: want_int(v, "remoteTraceLevel", 0, 255),
    "v4AssignMode": _v4_mode,
    "v6AssignMode": _v6_mode,
    "routes": _routes,
    "ipAssignmentPools": _pools,
    "rules": lambda v: want_rules(v, "rules", MAX_NETWORK_RULES),
    "authTokens": _auth_tokens,
    "capabilities": _capabilities,
    "tags": _network_tags,
    "dns": _dns,
    "rulesSource": lambda v: want_str(v, "rulesSource"),
}

# Summary fields ZeroTierOne strips before saving (DB::cleanNetwork / cleanMember).
_NETWORK_TRANSIENT: Final = (
    "clock",
    "authorizedMemberCount",
    "activeMemberCount",
    "totalMemberCount",
    "lastModified",
)
_MEMBER_TRANSIENT: Final = (
    "clock",
    "physicalAddr",
    "recentLog",
    "lastModified",
    "lastRequestMetaData",
    "authenticationURL",
    "authenticationClientID",
)


def apply_network_post(current: JsonObject, body: object, now: int) -> JsonObject:
    """The network ``current`` (stored, or fresh from :func:`new_network`) after a POST of
    ``body``; ``current`` itself is not touched. The result's ``revision`` is already bumped if
    anything changed. ``now`` is accepted for symmetry with members (nothing here is timed).
    """
    del now
    fields = want_object(body, "request body")
    out = copy.deepcopy(current)
    for name, parse in _NETWORK_FIELDS.items():
        if name in fields:
            out[name] = parse(fields[name])
    for name in _NETWORK_TRANSIENT:
        out.pop(name, None)
    out["objtype"] = "network"
    finish_save(current, out)
    return out


# --- member POST -----------------------------------------------------------------------------


def _ip_assignments(v: object) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(want_list(v, "ipAssignments", MAX_ARRAY)):
        text = str(want_ip(item, f"ipAssignments[{i}]"))
        if text not in out:
            out.append(text)
    return out


def _member_tags(v: object) -> list[list[int]]:
    tags: dict[int, int] = {}
    for i, item in enumerate(want_list(v, "tags", MAX_ARRAY)):
        what = f"tags[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise bad(f"{what} must be an [id, value] pair")
        tags[want_int(item[0], f"{what} id", 0, U32_MAX)] = want_int(
            item[1], f"{what} value", 0, U32_MAX
        )
    if len(tags) > MAX_NETWORK_TAGS:
        raise bad(f"tags: at most {MAX_NETWORK_TAGS} distinct ids")
    return [[k, tags[k]] for k in sorted(tags)]


def _member_caps(v: object) -> list[int]:
    ids = {
        want_int(c, f"capabilities[{i}]", 0, U32_MAX)
        for i, c in enumerate(want_list(v, "capabilities", MAX_ARRAY))
    }
    if len(ids) > MAX_NETWORK_CAPABILITIES:
        raise bad(f"capabilities: at most {MAX_NETWORK_CAPABILITIES} distinct ids")
    return sorted(ids)


_MEMBER_FIELDS: Final[dict[str, Callable[[object], Any]]] = {
    "activeBridge": lambda v: want_bool(v, "activeBridge"),
    "noAutoAssignIps": lambda v: want_bool(v, "noAutoAssignIps"),
    "authenticationExpiryTime": lambda v: want_int(v, "authenticationExpiryTime"),
    "name": lambda v: want_str(v, "name"),
    "remoteTraceTarget": lambda v: want_trace_target(v, "remoteTraceTarget"),
    "remoteTraceLevel": lambda v: want_int(v, "remoteTraceLevel", 0, 255),
    "ipAssignments": _ip_assignments,
    "tags": _member_tags,
    "capabilities": _member_caps,
}


def apply_member_post(current: JsonObject, body: object, now: int) -> JsonObject:
    """The member ``current`` (stored, or fresh from :func:`new_member`) after a POST of
    ``body``; ``current`` is not touched, the result's ``revision`` is already bumped.

    ``authenticationURL`` is checked but, as in ZeroTierOne (which computes it), not stored.
    """
    fields = want_object(body, "request body")
    out = copy.deepcopy(current)
    for name, parse in _MEMBER_FIELDS.items():
        if name in fields:
            out[name] = parse(fields[name])
    if "authenticationURL" in fields:
        want_str(fields["authenticationURL"], "authenticationURL")
    if "authorized" in fields:
        set_authorized(out, want_bool(fields["authorized"], "authorized"), now, "api", None)
    for name in _MEMBER_TRANSIENT:
        out.pop(name, None)
    out["objtype"] = "member"
    finish_save(current, out)
    return out


def set_authorized(
    member: JsonObject, authorized: bool, now: int, credential_type: str, credential: str | None
) -> bool:
    """Change ``member["authorized"]`` in place, stamping the time of the change and, when it
    becomes authorised, how. Nothing happens if it already has that value; True if it changed."""
    if bool(member.get("authorized")) == authorized:
        return False
    member["authorized"] = authorized
    if authorized:
        member["lastAuthorizedTime"] = now
        member["lastAuthorizedCredentialType"] = credential_type
        member["lastAuthorizedCredential"] = credential
    else:
        member["lastDeauthorizedTime"] = now
    return True


__all__ = [
    "DEFAULT_RULES",
    "ApiError",
    "address_hex",
    "apply_member_post",
    "apply_network_post",
    "finish_save",
    "new_member",
    "new_network",
    "nwid_hex",
    "parse_address",
    "parse_nwid",
    "same_record",
    "set_authorized",
]
