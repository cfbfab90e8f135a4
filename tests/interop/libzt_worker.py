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
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from tests.interop.setup_libzt import LibztPaths, cache_dir

ID_BUF_LEN = 384  # ZTS_ID_STR_BUF_LEN
MAX_NUM_ROOTS = 16  # ZTS_MAX_NUM_ROOTS
MAX_ENDPOINTS_PER_ROOT = 32  # ZTS_MAX_ENDPOINTS_PER_ROOT
WORLD_MAX_LEN = 4096
SOCKADDR_STORAGE_SIZE = 28  # struct zts_sockaddr_storage (lwIP layout)
MAX_ASSIGNED_ADDRESSES = 16  # ZTS_MAX_ASSIGNED_ADDRESSES
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
        rc = self.lib.zts_net_join(ctypes.c_uint64(int(req["nwid"], 16)))
        if rc != 0:
            raise RuntimeError(f"zts_net_join returned {rc}")
        return {}

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        rc = self.lib.zts_net_leave(ctypes.c_uint64(int(req["nwid"], 16)))
        return {"rc": rc}

    def network(self, req: dict[str, Any]) -> dict[str, Any]:
        """Status name, transport readiness and every assigned address ("ip/bits" unknown to
        libzt's query, so plain IPs), as libzt itself sees the network."""
        nwid = ctypes.c_uint64(int(req["nwid"], 16))
        code = self.lib.zts_net_get_status(nwid)
        addrs: list[str] = []
        buf = (ctypes.c_uint8 * (SOCKADDR_STORAGE_SIZE * MAX_ASSIGNED_ADDRESSES))()
        count = ctypes.c_uint(MAX_ASSIGNED_ADDRESSES)
        if self.lib.zts_addr_get_all(nwid, buf, ctypes.byref(count)) == 0:
            raw = bytes(buf)
            for i in range(count.value):
                ss = raw[i * SOCKADDR_STORAGE_SIZE : (i + 1) * SOCKADDR_STORAGE_SIZE]
                if ss[1] == AF_INET:
                    addrs.append(str(ipaddress.IPv4Address(ss[4:8])))
                elif ss[1] == AF_INET6:
                    addrs.append(str(ipaddress.IPv6Address(ss[8:24])))
        return {
            "status": NETWORK_STATUS.get(code, f"code {code}"),
            "ready": bool(self.lib.zts_net_transport_is_ready(nwid) == 1),
            "addresses": addrs,
        }

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
