"""One libzt node per process, driven over a pipe with one JSON object per line.

libzt is a process-wide singleton, so every libzt peer in a test runs in its own ``python -m
tests.interop.libzt_worker`` subprocess. Requests are ``{"op": NAME, ...}``; each gets exactly one
reply line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The worker exits when stdin
closes, so a test that dies takes its peers with it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tests.interop.setup_libzt import LibztPaths, cache_dir

ID_BUF_LEN = 384  # ZTS_ID_STR_BUF_LEN
MAX_NUM_ROOTS = 16  # ZTS_MAX_NUM_ROOTS
MAX_ENDPOINTS_PER_ROOT = 32  # ZTS_MAX_ENDPOINTS_PER_ROOT
WORLD_MAX_LEN = 4096
SOCKADDR_STORAGE_SIZE = 28  # struct zts_sockaddr_storage (lwIP layout)
MAX_ASSIGNED_ADDRESSES = 16  # ZTS_MAX_ASSIGNED_ADDRESSES
MAX_NETWORK_ROUTES = 32  # ZT_MAX_NETWORK_ROUTES
NAME_LEN = 128  # ZT_MAX_NETWORK_SHORT_NAME_LENGTH + 1
# ``NodeService::leave`` (exported) begins by loading ``this->_node`` into the first argument of
# its call to ``Node::leave``: ``mov disp32(%rdi),%rdi``. Its displacement is where libzt's service
# object keeps the core's ``Node*`` (0x130 in the 1.8.4 wheel); see ``Worker._node_offset``.
_LEAVE_SYMBOL = "_ZN8ZeroTier11NodeService5leaveEm"
_MOV_RDI_FROM_RDI_DISP32 = b"\x48\x8b\xbf"
AF_INET, AF_INET6 = 0x02, 0x0A  # ZTS_AF_INET, ZTS_AF_INET6
NETWORK_STATUS = {
    0: "REQUESTING_CONFIGURATION",
    1: "OK",
    2: "ACCESS_DENIED",
    3: "NOT_FOUND",
    4: "PORT_ERROR",
    5: "CLIENT_TOO_OLD",
    6: "AUTHENTICATION_REQUIRED",
}


class SockaddrStorage(ctypes.Structure):
    """Linux ``struct sockaddr_storage`` (128 bytes, 8-aligned), as the core's own structs use."""

    _fields_ = [
        ("family", ctypes.c_uint16),
        ("data", ctypes.c_uint8 * 118),
        ("_align", ctypes.c_uint64),
    ]


class VirtualNetworkRoute(ctypes.Structure):
    """``ZT_VirtualNetworkRoute``: target (netmask bits in the port field), via, flags, metric."""

    _fields_ = [
        ("target", SockaddrStorage),
        ("via", SockaddrStorage),
        ("flags", ctypes.c_uint16),
        ("metric", ctypes.c_uint16),
    ]


class VirtualNetworkConfigHead(ctypes.Structure):
    """The leading fields of the core's ``ZT_VirtualNetworkConfig`` (ZeroTierOne.h, 1.8.4) up to
    its routes; the rest (multicast groups, DNS, SSO) is never read."""

    _fields_ = [
        ("nwid", ctypes.c_uint64),
        ("mac", ctypes.c_uint64),
        ("name", ctypes.c_char * NAME_LEN),
        ("status", ctypes.c_int),
        ("type", ctypes.c_int),
        ("mtu", ctypes.c_uint),
        ("dhcp", ctypes.c_int),
        ("bridge", ctypes.c_int),
        ("broadcast_enabled", ctypes.c_int),
        ("port_error", ctypes.c_int),
        ("netconf_revision", ctypes.c_ulong),
        ("assigned_address_count", ctypes.c_uint),
        ("assigned_addresses", SockaddrStorage * MAX_ASSIGNED_ADDRESSES),
        ("route_count", ctypes.c_uint),
        ("routes", VirtualNetworkRoute * MAX_NETWORK_ROUTES),
    ]


def _native_sockaddr(ss: SockaddrStorage) -> tuple[str, int] | None:
    """(ip, port) of a Linux sockaddr (the port of a ZeroTier address is its netmask bits)."""
    raw = bytes(ss)
    port = int.from_bytes(raw[2:4], "big")
    if ss.family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if ss.family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[8:24])), port
    return None


class RootSetSpec(ctypes.Structure):
    """``zts_root_set_t``: NUL-terminated identity strings and "ip/port" endpoint strings."""

    _fields_ = [
        ("public_id_str", ctypes.c_char_p * MAX_NUM_ROOTS),
        ("endpoint_ip_str", (ctypes.c_char_p * MAX_ENDPOINTS_PER_ROOT) * MAX_NUM_ROOTS),
    ]


def load(paths: LibztPaths) -> ctypes.CDLL:
    ctypes.CDLL(str(paths.shim), mode=os.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(paths.libzt), mode=os.RTLD_GLOBAL)
    lib.zts_id_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
    lib.zts_id_pair_is_valid.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.zts_init_from_storage.argtypes = [ctypes.c_char_p]
    lib.zts_init_set_roots.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.zts_init_set_port.argtypes = [ctypes.c_ushort]
    lib.zts_init_allow_secondary_port.argtypes = [ctypes.c_uint]
    lib.zts_init_allow_port_mapping.argtypes = [ctypes.c_uint]
    lib.zts_init_blacklist_if.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.zts_node_get_id.restype = ctypes.c_uint64
    for name in (
        "zts_net_join",
        "zts_net_leave",
        "zts_net_get_status",
        "zts_net_transport_is_ready",
    ):
        getattr(lib, name).argtypes = [ctypes.c_uint64]
    lib.zts_addr_get_all.argtypes = [
        ctypes.c_uint64,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint),
    ]
    lib.ZT_Node_address.argtypes = [ctypes.c_void_p]
    lib.ZT_Node_address.restype = ctypes.c_uint64
    lib.ZT_Node_networkConfig.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    lib.ZT_Node_networkConfig.restype = ctypes.c_void_p
    lib.ZT_Node_freeQueryResult.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.zts_util_sign_root_set.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_uint64,
        ctypes.c_uint64,
        ctypes.POINTER(RootSetSpec),
    ]
    return lib


class Worker:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self._core_node: int | None = None
        self._node_field: int | None = None
        self.ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda req: {},
            "id_new": self.id_new,
            "id_pair_is_valid": self.id_pair_is_valid,
            "sign_root_set": self.sign_root_set,
            "start": self.start,
            "status": self.status,
            "stop": self.stop,
            "join": self.join,
            "leave": self.leave,
            "network": self.network,
        }

    def id_new(self, req: dict[str, Any]) -> dict[str, Any]:
        buf = ctypes.create_string_buffer(ID_BUF_LEN)
        n = ctypes.c_uint(ID_BUF_LEN)
        rc = self.lib.zts_id_new(buf, ctypes.byref(n))
        if rc != 0:
            raise RuntimeError(f"zts_id_new returned {rc}")
        return {"identity": buf.raw[: n.value].split(b"\0", 1)[0].decode()}

    def id_pair_is_valid(self, req: dict[str, Any]) -> dict[str, Any]:
        # libzt insists on the full string-buffer length, NUL padded (Controls.cpp).
        buf = ctypes.create_string_buffer(req["identity"].encode(), ID_BUF_LEN)
        return {"valid": bool(self.lib.zts_id_pair_is_valid(buf, ID_BUF_LEN))}

    def sign_root_set(self, req: dict[str, Any]) -> dict[str, Any]:
        spec = RootSetSpec()
        keep: list[bytes] = []  # keep the C strings alive during the call
        for i, root in enumerate(req["roots"]):
            ident = root["identity"].encode()
            keep.append(ident)
            spec.public_id_str[i] = ident
            for j, ep in enumerate(root["endpoints"]):
                e = ep.encode()
                keep.append(e)
                spec.endpoint_ip_str[i][j] = e
        out = ctypes.create_string_buffer(WORLD_MAX_LEN)
        out_len = ctypes.c_uint(WORLD_MAX_LEN)
        prev = ctypes.create_string_buffer(128)
        prev_len = ctypes.c_uint(128)
        cur = ctypes.create_string_buffer(128)
        cur_len = ctypes.c_uint(128)
        # The call reads previous.c25519/current.c25519 from the working directory when present.
        old = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                rc = self.lib.zts_util_sign_root_set(
                    out,
                    ctypes.byref(out_len),
                    prev,
                    ctypes.byref(prev_len),
                    cur,
                    ctypes.byref(cur_len),
                    int(req["id"]),
                    int(req["timestamp"]),
                    ctypes.byref(spec),
                )
            finally:
                os.chdir(old)
        if rc != 0:
            raise RuntimeError(f"zts_util_sign_root_set returned {rc}")
        return {
            "world": out.raw[: out_len.value].hex(),
            "previous_key": prev.raw[: prev_len.value].hex(),
            "current_key": cur.raw[: cur_len.value].hex(),
        }

    def start(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start the node with our planet: storage dir, roots, one port, other interfaces off."""
        lib = self.lib
        checks = [
            ("zts_init_from_storage", lib.zts_init_from_storage(req["storage"].encode())),
        ]
        planet = bytes.fromhex(req["planet"])
        checks.append(("zts_init_set_roots", lib.zts_init_set_roots(planet, len(planet))))
        checks.append(("zts_init_set_port", lib.zts_init_set_port(int(req["port"]))))
        checks.append(("zts_init_allow_secondary_port", lib.zts_init_allow_secondary_port(0)))
        checks.append(("zts_init_allow_port_mapping", lib.zts_init_allow_port_mapping(0)))
        for prefix in req.get("blacklist_if", []):
            p = prefix.encode()
            checks.append(("zts_init_blacklist_if", lib.zts_init_blacklist_if(p, len(p))))
        checks.append(("zts_node_start", lib.zts_node_start()))
        bad = [f"{name}={rc}" for name, rc in checks if rc != 0]
        if bad:
            raise RuntimeError("libzt start failed: " + ", ".join(bad))
        return {}

    def status(self, req: dict[str, Any]) -> dict[str, Any]:
        online = bool(self.lib.zts_node_is_online())
        node_id = int(self.lib.zts_node_get_id()) if online else 0
        return {"online": online, "address": f"{node_id:010x}" if online else None}

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        """Join; right after ``start`` this first waits (bounded) for the core node to exist:
        libzt 1.8.4 accepts ``zts_net_join`` as soon as its service thread runs but dereferences
        the core's ``Node*`` (a segfault) until that thread has created it."""
        deadline = time.monotonic() + float(req.get("wait", 20.0))
        while not self._node_pointer():
            if time.monotonic() > deadline:
                raise RuntimeError("libzt's core node was not created in time")
            time.sleep(0.01)
        rc = self.lib.zts_net_join(ctypes.c_uint64(int(req["nwid"], 16)))
        if rc != 0:
            raise RuntimeError(f"zts_net_join returned {rc}")
        return {}

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        rc = self.lib.zts_net_leave(ctypes.c_uint64(int(req["nwid"], 16)))
        return {"rc": rc}

    def network(self, req: dict[str, Any]) -> dict[str, Any]:
        """How libzt sees a network, twice over.

        The libzt wrapper's view (``zts_net_get_status``, ``zts_addr_get_all``): its copy of the
        core's network state, refreshed only when the core reports a new config. ``status``,
        ``ready``, ``addresses`` (plain IPs) and ``cidrs`` ("ip/bits") come from there.

        The core's own view, ``core``: ``ZT_Node_networkConfig`` on the ZeroTier 1.8.4 node inside
        libzt (the query zerotier-one's ``listnetworks`` answers from): status, name, revision,
        type, assigned addresses and routes with their netmask bits. Only the core's status
        follows an ERROR(NETWORK_ACCESS_DENIED): the core sets its failure flag without telling
        the wrapper, so ``zts_net_get_status`` never shows ACCESS_DENIED in libzt 1.8.4.
        """
        nwid = ctypes.c_uint64(int(req["nwid"], 16))
        code = self.lib.zts_net_get_status(nwid)
        addrs: list[str] = []
        cidrs: list[str] = []
        buf = (ctypes.c_uint8 * (SOCKADDR_STORAGE_SIZE * MAX_ASSIGNED_ADDRESSES))()
        count = ctypes.c_uint(MAX_ASSIGNED_ADDRESSES)
        if self.lib.zts_addr_get_all(nwid, buf, ctypes.byref(count)) == 0:
            raw = bytes(buf)
            for i in range(count.value):
                ss = raw[i * SOCKADDR_STORAGE_SIZE : (i + 1) * SOCKADDR_STORAGE_SIZE]
                bits = int.from_bytes(ss[2:4], "big")  # the netmask bits ride in the port
                if ss[1] == AF_INET:
                    addrs.append(str(ipaddress.IPv4Address(ss[4:8])))
                elif ss[1] == AF_INET6:
                    addrs.append(str(ipaddress.IPv6Address(ss[8:24])))
                else:
                    continue
                cidrs.append(f"{addrs[-1]}/{bits}")
        return {
            "status": NETWORK_STATUS.get(code, f"code {code}"),
            "ready": bool(self.lib.zts_net_transport_is_ready(nwid) == 1),
            "addresses": addrs,
            "cidrs": cidrs,
            "core": self.core_network(nwid.value),
        }

    def _node_offset(self) -> int:
        """The offset of ``_node`` in ``NodeService``, read off ``NodeService::leave``'s code."""
        if self._node_field is None:
            fn = ctypes.cast(getattr(self.lib, _LEAVE_SYMBOL), ctypes.c_void_p).value
            code = ctypes.string_at(fn, 32) if fn else b""
            i = code.find(_MOV_RDI_FROM_RDI_DISP32)
            if i < 0:
                raise RuntimeError("unknown libzt build: cannot locate NodeService::_node")
            self._node_field = int.from_bytes(code[i + 3 : i + 7], "little")
        return self._node_field

    def _node_pointer(self) -> int | None:
        """``zts_service->_node`` as it is now (None before the service or its node exists)."""
        service = ctypes.c_void_p.in_dll(self.lib, "_ZN8ZeroTier11zts_serviceE").value
        if not service:
            return None
        return ctypes.c_void_p.from_address(service + self._node_offset()).value or None

    def core_node(self) -> int | None:
        """The core's ``ZT_Node*`` (None until the node is online), checked against the node
        id before its first use."""
        if self._core_node is not None:
            return self._core_node
        if not self.lib.zts_node_is_online():
            return None
        node = self._node_pointer()
        if node is None:
            return None
        node_id = int(self.lib.zts_node_get_id())
        if int(self.lib.ZT_Node_address(node)) != node_id:
            raise RuntimeError("libzt's Node* is not where this build of libzt 1.8.4 keeps it")
        self._core_node = node
        return node

    def core_network(self, nwid: int) -> dict[str, Any] | None:
        node = self.core_node()
        if node is None:
            return None
        ptr = self.lib.ZT_Node_networkConfig(node, ctypes.c_uint64(nwid))
        if not ptr:
            return None
        try:
            c = VirtualNetworkConfigHead.from_address(ptr)
            addresses = []
            for i in range(min(c.assigned_address_count, MAX_ASSIGNED_ADDRESSES)):
                a = _native_sockaddr(c.assigned_addresses[i])
                if a is not None:
                    addresses.append(f"{a[0]}/{a[1]}")
            routes = []
            for i in range(min(c.route_count, MAX_NETWORK_ROUTES)):
                r = c.routes[i]
                target = _native_sockaddr(r.target)
                via = _native_sockaddr(r.via)
                routes.append(
                    {
                        "target": f"{target[0]}/{target[1]}" if target else None,
                        "via": via[0] if via else None,
                        "flags": int(r.flags),
                        "metric": int(r.metric),
                    }
                )
            return {
                "status": NETWORK_STATUS.get(c.status, f"code {c.status}"),
                "name": c.name.decode(errors="replace"),
                "revision": int(c.netconf_revision),
                "type": "PUBLIC" if c.type == 1 else "PRIVATE",
                "mac": f"{c.mac:012x}",
                "mtu": int(c.mtu),
                "addresses": addresses,
                "routes": routes,
            }
        finally:
            self.lib.ZT_Node_freeQueryResult(node, ctypes.c_void_p(ptr))

    def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        self.lib.zts_node_stop()
        return {}

    def serve(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                reply = {"ok": True, **self.ops[req["op"]](req)}
            except Exception as e:  # reported to the test, which decides
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


def main() -> None:
    paths = LibztPaths(cache_dir())
    if not paths.ready():
        sys.stdout.write(json.dumps({"ok": False, "error": "libzt not installed"}) + "\n")
        return
    Worker(load(paths)).serve()


if __name__ == "__main__":
    main()
