"""The optional C accelerator, with typed wrappers: packet armor/dearmor (ciphers 0, 1 and 3),
the receive burst engine (driven by :mod:`ztnode.transport.burst`), the TCP segmentation cut and
ones' complement sums.

Why: per packet, the pure-Python armor path spends about as long in glue (slicing the header,
folding and placing tags, several foreign calls) as in the ciphers themselves. The extension
``ztnode._zt_accel`` (built from the C files in ``csrc/`` by :mod:`ztnode.accel._build`; a wheel
carries it, a source install builds it with a C compiler and Python's headers, nothing more) does
the whole per-packet job in one cffi call per direction, in place on the packet's ``bytearray``.
It is loaded by :mod:`ztnode.crypto._cext`, which also binds OpenSSL's AES at run time.

The per-packet calls live in :mod:`ztnode.accel._hot` (compiled with the hot path) and are
re-exported here. It sits just above :mod:`ztnode.crypto` (it keeps its AES contexts on the
crypto layer's :class:`~ztnode.crypto.keys.SymmetricKey`) and below everything else: wire,
netstack and transport call it, and each keeps the Python code the C stands in for as
reference and fallback.

It is optional by design. If it was not built, was built for another ABI, or
``ZTNODE_NO_ACCEL=1`` (or ``ZTNODE_NO_NATIVE_CRYPTO=1``) is set before import, :data:`AVAILABLE`
is False and :mod:`ztnode.wire.packet` uses its Python path, which stays the
reference implementation: the C path must match it byte for byte (``tests/accel/test_accel.py``).

The wrappers never raise for bad input. They answer "done" or "not mine": anything the C side
refuses (a length outside 28..10024, cipher 2 or an unknown suite, a non-``bytearray`` buffer,
an OpenSSL allocation failure) is handed back untouched, and the caller's Python path then
produces exactly its usual result or exception.

Per-key state: cipher 3 needs four OpenSSL contexts keyed with K0/K1 (only when a libcrypto was
bound, :data:`AES_AVAILABLE`; otherwise cipher 3 packets take the Python path). They are made on the
first cipher-3 packet of a key and stored on :class:`~ztnode.crypto.keys.SymmetricKey` (slot
``_accel``), freed by ``ffi.gc`` when the key object dies. Like the Python contexts, one key's
state must not be used from two threads at once; the C call runs without the GIL.
"""

from __future__ import annotations

import os
from typing import Any, Final

from ztnode.accel._hot import (
    aes_state,
    armor,
    dearmor,
    frame_datagrams,
    tcp_pieces,
    udp_datagrams,
)
from ztnode.crypto import _cext
from ztnode.crypto._cext import ABI, DISABLE_ENV, MODULE, PATH_ENV

# The compiled module is loaded by the crypto layer (its primitives serve ztnode.crypto too).
_ffi: Any = _cext.ffi
_lib: Any = _cext.lib
#: Why the accelerator is off (None when it is on).
REASON: Final[str | None] = _cext.REASON
#: True when armor/dearmor run in C. :data:`REASON` says why not otherwise.
AVAILABLE: Final[bool] = _lib is not None
#: True when cipher 3 (AES-GMAC-SIV) runs in C too; :data:`AES_REASON` says why not.
AES_AVAILABLE: Final[bool] = _cext.AES_AVAILABLE
AES_REASON: Final[str | None] = _cext.AES_REASON

#: The packet lengths the C side accepts (the protocol's 28..10024); others go to Python.
MIN_PACKET: Final[int] = _lib.ZT_ACCEL_MIN_PACKET if _lib is not None else 28
MAX_PACKET: Final[int] = _lib.ZT_ACCEL_MAX_PACKET if _lib is not None else 10024


#: Set to 1 to run the per-datagram Python paths (no receive bursts, no segmentation offload)
#: in nodes started from then on, with the accelerator loaded: for comparisons and the tests of
#: those paths (the accelerator's other uses, such as the crypto primitives, stay on).
PYTHON_PATHS_ENV: Final = "ZTNODE_PYTHON_PATHS"


def python_paths_forced() -> bool:
    """Whether :data:`PYTHON_PATHS_ENV` asks for the Python packet paths (read when an endpoint
    or a stack is made, never per packet)."""
    return os.environ.get(PYTHON_PATHS_ENV, "") not in ("", "0")


def ffi_and_lib() -> tuple[Any, Any]:
    """The compiled module's ``ffi`` and ``lib`` (both None when unavailable), for the other
    C entry points it carries (the receive burst of :mod:`ztnode.transport.burst`)."""
    return _ffi, _lib


def fast_calls() -> Any:
    """The extension's direct CPython calls (``csrc/fast.c``; None where missing or turned off
    by ``ZTNODE_NO_FAST_CALLS``), for the receive burst's loop."""
    return _cext.fast


__all__ = [
    "ABI",
    "AES_AVAILABLE",
    "AES_REASON",
    "AVAILABLE",
    "DISABLE_ENV",
    "MAX_PACKET",
    "MIN_PACKET",
    "MODULE",
    "PATH_ENV",
    "REASON",
    "aes_state",
    "armor",
    "dearmor",
    "fast_calls",
    "ffi_and_lib",
    "frame_datagrams",
    "tcp_pieces",
    "udp_datagrams",
]
