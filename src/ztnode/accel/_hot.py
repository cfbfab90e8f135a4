"""The accelerator's per-packet calls: armor, dearmor and the two send cuts (a FRAME, a large
TCP segment), with the per-key AES state they share. Re-exported by :mod:`ztnode.accel`, whose
docstring has the contract (never raise for bad input: "done" or "not mine").

Why a module of their own: they run once or twice per packet each way, and as Python functions
their own glue (argument checks, buffers, the cffi calls' set-up) cost several microseconds a
call. Here they are compiled with the hot path (``ztnode._compiled``), and run from this source
wherever it is not.

The three send cuts call C directly where the extension made its module of CPython functions
(``csrc/fast.c``, :data:`ztnode.crypto._cext.fast`): a cut then costs its C and little more.
Their cffi calls (``_*_cffi``) remain, for a build without that module and as the reference
the direct calls are checked against (``tests/accel/test_fast_calls.py``).
"""

from __future__ import annotations

from typing import Any, Final

from ztnode.crypto import _cext
from ztnode.crypto.hashes import kbkdf_hmac_sha384
from ztnode.crypto.keys import (
    KBKDF_LABEL_AES_GMAC_SIV_K0,
    KBKDF_LABEL_AES_GMAC_SIV_K1,
    SymmetricKey,
)

_CIPHER_AES: Final = 3

# Bound once: each attribute lookup on a cffi module costs as much as a small C call.
_ffi: Final[Any] = _cext.ffi
_lib: Final[Any] = _cext.lib
_AES_AVAILABLE: Final[bool] = _cext.AES_AVAILABLE
_NULL: Final[Any] = _ffi.NULL if _ffi is not None else None
_from_buffer: Final[Any] = _ffi.from_buffer if _ffi is not None else None
_zt_armor: Final[Any] = _lib.zt_armor if _lib is not None else None
_zt_dearmor: Final[Any] = _lib.zt_dearmor if _lib is not None else None
_zt_tx_tcp: Final[Any] = _lib.zt_tx_tcp if _lib is not None else None
_zt_tx_frame: Final[Any] = _lib.zt_tx_frame if _lib is not None else None
_zt_tx_udp: Final[Any] = _lib.zt_tx_udp if _lib is not None else None
_fast: Final[Any] = _cext.fast
_fast_tx_tcp: Final[Any] = _fast.tx_tcp if _fast is not None else None
_fast_tx_frame: Final[Any] = _fast.tx_frame if _fast is not None else None
_fast_tx_udp: Final[Any] = _fast.tx_udp if _fast is not None else None
_OK: Final[int] = _lib.ZT_ACCEL_OK if _lib is not None else 0
_ENOKEY: Final[int] = _lib.ZT_ACCEL_ENOKEY if _lib is not None else -3


#: Datagrams one packet becomes at most (the protocol's head and 15 fragments).
_MAX_PIECES: Final = 16
#: The reusable output buffer's size: a one-piece TCP segment or a frame whose datagrams
#: (packet, and up to 16 fragment headers) fit; larger cuts allocate their own.
_SCRATCH_BYTES: Final = 4096


class _Scratch:
    """An output buffer and length array for one send cut's datagrams.

    Why: allocating a zeroed buffer, a cffi length array and a buffer pointer for every small
    segment cost more than the C call itself (glibc's malloc for the buffer, cffi parsing the
    array's type). Small cuts take one from :data:`_spare` and put it back, so a thread never
    shares one with another (cffi releases the GIL during the call): there are at most as many
    as threads that ever sent at once. A cut too large for it gets one of its own."""

    __slots__ = ("lens", "max_out", "out", "ptr", "size", "view")

    def __init__(self, size: int, max_out: int) -> None:
        self.size = size
        self.max_out = max_out
        self.out = bytearray(size)
        self.ptr: Any = _from_buffer(self.out)
        self.lens: Any = _ffi.new("unsigned int[]", max_out)
        self.view = memoryview(self.out)


_spare: list[_Scratch] = []


def _take(size: int, max_out: int) -> _Scratch:
    """A reused scratch when the cut fits one, else a new one just for it."""
    if size <= _SCRATCH_BYTES and max_out <= _MAX_PIECES:
        return _spare.pop() if _spare else _Scratch(_SCRATCH_BYTES, _MAX_PIECES)
    return _Scratch(size, max_out)


def _give_back(scratch: _Scratch) -> None:
    if scratch.size == _SCRATCH_BYTES and scratch.max_out == _MAX_PIECES:
        _spare.append(scratch)


def tcp_pieces(
    key: SymmetricKey,
    cipher: int,
    header: bytes | bytearray,
    packet_ids: bytes,
    network_id: int,
    ethertype: int,
    ip_tcp_header: bytes | bytearray,
    ip_id: int,
    payload: bytes | bytearray | memoryview,
    seg_size: int,
    flags_last: int,
    mtu: int,
) -> list[bytes] | None:
    """The datagrams of one large TCP segment cut into ``seg_size`` pieces, each a FRAME packet
    with its own IP and TCP header, armored and fragmented for ``mtu``; None if the C side
    cannot (no accelerator, a cipher other than 1, 2 or 3, a shape it does not take), and the
    caller then sends the pieces one by one through its Python path.

    ``header``: the 28-byte packet header (dest, source, verb FRAME; for cipher 2, a trusted
    path, the path's ID in its MAC field, as :func:`ztnode.wire.packet.armor_trusted` puts it:
    the pieces then go without crypto). ``ip_tcp_header``: the
    IP and TCP headers of the first piece; lengths, checksums and the IPv4 ident (``ip_id``,
    counted up per piece) are rewritten, and every piece but the last loses PSH and FIN. An
    empty ``payload`` makes one piece, the headers alone (a bare ACK or FIN)."""
    if _lib is None or seg_size <= 0:
        return None
    pieces = max(-(-len(payload) // seg_size), 1)  # no payload: one piece, the headers alone
    if len(packet_ids) < 8 * pieces:
        return None
    # Bytes go to C as they are; anything else is copied (headers) or pointed at (payload).
    ip_tcp = ip_tcp_header if type(ip_tcp_header) is bytes else bytes(ip_tcp_header)
    hdr = header if type(header) is bytes else bytes(header)
    if _fast_tx_tcp is None:
        return _tcp_pieces_cffi(
            key,
            cipher,
            hdr,
            packet_ids,
            network_id,
            ethertype,
            ip_tcp,
            ip_id,
            payload,
            seg_size,
            flags_last,
            mtu,
        )
    aes = _aes_address(key, cipher)
    if aes < 0:
        return None
    out: list[bytes] | None = _fast_tx_tcp(
        aes,
        key.salsa_key,
        cipher,
        hdr,
        packet_ids,
        network_id,
        ethertype,
        ip_tcp,
        ip_id,
        payload,
        seg_size,
        flags_last,
        mtu,
    )
    return out


def _tcp_pieces_cffi(
    key: SymmetricKey,
    cipher: int,
    hdr: bytes,
    packet_ids: bytes,
    network_id: int,
    ethertype: int,
    ip_tcp: bytes,
    ip_id: int,
    payload: bytes | bytearray | memoryview,
    seg_size: int,
    flags_last: int,
    mtu: int,
) -> list[bytes] | None:
    """:func:`tcp_pieces` through cffi (its checks done, headers as bytes)."""
    state = _aes_state(key) if cipher == _CIPHER_AES else _NULL
    if state is None:
        return None
    pieces = max(-(-len(payload) // seg_size), 1)
    data: Any = payload if type(payload) is bytes else _from_buffer(payload)
    # Each piece: the packet header, the FRAME's network id and ethertype, its IP/TCP headers
    # and payload, and at most 16 fragment headers.
    scratch = _take(pieces * (28 + 10 + len(ip_tcp) + seg_size + 16 * 16), pieces * _MAX_PIECES)
    try:
        n: int = _zt_tx_tcp(
            state,
            key.salsa_key,
            cipher,
            hdr,
            packet_ids,
            len(packet_ids) // 8,
            network_id,
            ethertype,
            ip_tcp,
            len(ip_tcp),
            ip_id,
            data,
            len(payload),
            seg_size,
            flags_last,
            mtu,
            scratch.ptr,
            scratch.size,
            scratch.lens,
            scratch.max_out,
        )
        return _datagrams(scratch, n)
    finally:
        _give_back(scratch)


def _datagrams(scratch: _Scratch, n: int) -> list[bytes] | None:
    """The ``n`` datagrams C wrote back to back into ``scratch`` (None for an error code),
    copied out, as the buffer may be used again."""
    if n <= 0:
        return None
    lens = scratch.lens
    view = scratch.view
    if n == 1:
        return [view[: lens[0]].tobytes()]
    result = []
    at = 0
    for i in range(n):
        m = lens[i]
        result.append(view[at : at + m].tobytes())
        at += m
    return result


def frame_datagrams(
    key: SymmetricKey,
    cipher: int,
    header: bytes,
    packet_id: bytes,
    network_id: int,
    ethertype: int,
    payload: bytes | bytearray | memoryview,
    mtu: int,
) -> list[bytes] | None:
    """The datagrams of one FRAME packet on a chosen route: ``header`` is the route's 28-byte
    template (as for :func:`tcp_pieces`), ``packet_id`` its 8 random bytes; sealed for
    ``cipher`` (1, 3, or 2 for a trusted path) and fragmented for ``mtu``. None when the C side
    cannot (no accelerator, another cipher, a packet over the protocol's size): the caller
    then sends through the node's Python path. The reference is what ``Switch.send_on`` makes
    of the same packet."""
    if _lib is None:
        return None
    if _fast_tx_frame is None:
        return _frame_datagrams_cffi(
            key, cipher, header, packet_id, network_id, ethertype, payload, mtu
        )
    aes = _aes_address(key, cipher)
    if aes < 0:
        return None
    out: list[bytes] | None = _fast_tx_frame(
        aes, key.salsa_key, cipher, header, packet_id, network_id, ethertype, payload, mtu
    )
    return out


def _frame_datagrams_cffi(
    key: SymmetricKey,
    cipher: int,
    header: bytes,
    packet_id: bytes,
    network_id: int,
    ethertype: int,
    payload: bytes | bytearray | memoryview,
    mtu: int,
) -> list[bytes] | None:
    """:func:`frame_datagrams` through cffi."""
    state = _aes_state(key) if cipher == _CIPHER_AES else _NULL
    if state is None:
        return None
    scratch = _take(38 + len(payload) + 16 * _MAX_PIECES, _MAX_PIECES)
    try:
        n: int = _zt_tx_frame(
            state,
            key.salsa_key,
            cipher,
            header,
            packet_id,
            network_id,
            ethertype,
            _from_buffer(payload),
            len(payload),
            mtu,
            scratch.ptr,
            scratch.size,
            scratch.lens,
            _MAX_PIECES,
        )
        return _datagrams(scratch, n)
    finally:
        _give_back(scratch)


def udp_datagrams(
    key: SymmetricKey,
    cipher: int,
    header: bytes,
    packet_id: bytes,
    network_id: int,
    ethertype: int,
    ip_udp_header: bytes,
    ip_id: int,
    payload: bytes,
    mtu: int,
) -> list[bytes] | None:
    """The datagrams of one UDP datagram sent as a FRAME on a chosen route, as
    :func:`frame_datagrams` sends a frame: ``ip_udp_header`` is its IP header (IPv4 without
    options, or IPv6) and UDP header with the ports set; the C side fills in the lengths, the
    IPv4 ident ``ip_id`` and both checksums. None when it cannot (as for
    :func:`frame_datagrams`, or a header of another shape); the reference is
    :meth:`ztnode.netstack.tso.UdpOffload.packet` sent through :func:`frame_datagrams`."""
    if _lib is None:
        return None
    if _fast_tx_udp is None:
        return _udp_datagrams_cffi(
            key,
            cipher,
            header,
            packet_id,
            network_id,
            ethertype,
            ip_udp_header,
            ip_id,
            payload,
            mtu,
        )
    aes = _aes_address(key, cipher)
    if aes < 0:
        return None
    out: list[bytes] | None = _fast_tx_udp(
        aes,
        key.salsa_key,
        cipher,
        header,
        packet_id,
        network_id,
        ethertype,
        ip_udp_header,
        ip_id,
        payload,
        mtu,
    )
    return out


def _udp_datagrams_cffi(
    key: SymmetricKey,
    cipher: int,
    header: bytes,
    packet_id: bytes,
    network_id: int,
    ethertype: int,
    ip_udp_header: bytes,
    ip_id: int,
    payload: bytes,
    mtu: int,
) -> list[bytes] | None:
    """:func:`udp_datagrams` through cffi."""
    state = _aes_state(key) if cipher == _CIPHER_AES else _NULL
    if state is None:
        return None
    scratch = _take(38 + len(ip_udp_header) + len(payload) + 16 * _MAX_PIECES, _MAX_PIECES)
    try:
        n: int = _zt_tx_udp(
            state,
            key.salsa_key,
            cipher,
            header,
            packet_id,
            network_id,
            ethertype,
            ip_udp_header,
            len(ip_udp_header),
            ip_id,
            payload,
            len(payload),
            mtu,
            scratch.ptr,
            scratch.size,
            scratch.lens,
            _MAX_PIECES,
        )
        return _datagrams(scratch, n)
    finally:
        _give_back(scratch)


def aes_state(key: SymmetricKey) -> Any:
    """The key's C AES-GMAC-SIV state (made now if needed); None if unavailable."""
    if _lib is None:
        return None
    return _aes_state(key)


def _aes_address(key: SymmetricKey, cipher: int) -> int:
    """What the direct calls take for the key's C AES contexts (they take pointers as
    integers): their address for cipher 3 (made now if needed; ``key._accel`` keeps them
    alive), 0 for the other ciphers, -1 if they cannot be made."""
    if cipher != _CIPHER_AES:
        return 0
    addr = key._accel_addr
    if addr:
        return addr
    state = _aes_state(key)
    if state is None:
        return -1
    addr = key._accel_addr = int(_ffi.cast("uintptr_t", state))
    return addr


def _aes_state(key: SymmetricKey) -> Any:
    """The key's C AES-GMAC-SIV contexts, made now (KBKDF for K0/K1) if they do not exist yet.

    Returns ``None`` if OpenSSL could not make them; the caller then uses the Python path.
    """
    state = key._accel
    if state is not None:
        return state
    if not _AES_AVAILABLE:
        return None
    k0 = kbkdf_hmac_sha384(key.raw, KBKDF_LABEL_AES_GMAC_SIV_K0)[:32]
    k1 = kbkdf_hmac_sha384(key.raw, KBKDF_LABEL_AES_GMAC_SIV_K1)[:32]
    ctx = _lib.zt_aes_new(k0, k1)
    if ctx == _NULL:
        return None
    state = key._accel = _ffi.gc(ctx, _lib.zt_aes_free)
    return state


def armor(packet: bytearray, key: SymmetricKey, cipher: int) -> bool:
    """Armor ``packet`` in place in C; True if done, False if the caller's Python path must.

    Same contract as :func:`ztnode.wire.packet.armor` for ciphers 0, 1 and 3; False (packet
    untouched) for everything else, including when the accelerator is not available.
    """
    if _lib is None or type(packet) is not bytearray:
        return False
    try:
        rc = _zt_armor(
            key._accel or _NULL, key.salsa_key, _from_buffer(packet), len(packet), cipher
        )
    except (TypeError, OverflowError):  # a cipher that is not a C int: the Python path decides
        return False
    if rc == _OK:
        return True
    if rc == _ENOKEY and cipher == _CIPHER_AES:
        state = _aes_state(key)
        if state is not None:
            return bool(
                _zt_armor(state, key.salsa_key, _from_buffer(packet), len(packet), cipher) == _OK
            )
    return False


def dearmor(packet: bytearray, key: SymmetricKey) -> int:
    """Dearmor ``packet`` in place in C: 1 authentic, 0 not, -1 if the Python path must decide.

    1 and 0 mean exactly what True and False mean for :func:`ztnode.wire.packet.dearmor`
    (including what is left in the buffer). -1 (packet untouched) covers lengths outside
    28..10024 and an unavailable accelerator.
    """
    if _lib is None or type(packet) is not bytearray:
        return -1
    rc: int = _zt_dearmor(key._accel or _NULL, key.salsa_key, _from_buffer(packet), len(packet))
    if rc >= 0:
        return rc
    if rc == _ENOKEY:
        state = _aes_state(key)
        if state is not None:
            rc = _zt_dearmor(state, key.salsa_key, _from_buffer(packet), len(packet))
            if rc >= 0:
                return rc
    return -1
