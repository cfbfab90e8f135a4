"""Per-packet armor and dearmor against the raw library calls they are made of.

"Raw" means the same C functions with every argument prepared in advance: for AES-GMAC-SIV the
GMAC (``AESGCM.encrypt`` over aad||pad||payload), one AES-ECB block, and AES-CTR with a new nonce
on a reused context, each once for armor and once for dearmor; for Salsa20/12 + Poly1305 the
libsodium stream (64 zero bytes + payload) and one Poly1305, each once per direction. Both sides
start from a fresh copy of the same plaintext packet, so the ratio is the price of ztnode's own
glue (header handling, key mangling, tag placement, checks).

Each row times ztnode twice: ``ztnode_us`` is :func:`ztnode.wire.packet.armor`/``dearmor`` as
shipped, which use the C accelerator (:mod:`ztnode.accel`) when it is built (``accel``
says whether it was), and ``python_us`` is the pure-Python fallback (``packet._armor_python`` /
``_dearmor_python``) on the same packets. The C path can beat the "raw" baseline because that
baseline still pays Python and ``cryptography`` per-call overhead for each of its C calls.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher as CCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench._timing import once_ms, per_call_us
from ztnode import accel
from ztnode.crypto import SymmetricKey, _sodium, kbkdf_hmac_sha384
from ztnode.identity import Identity
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher, Verb

SIZES = (64, 1400)


def _packet(size: int) -> bytearray:
    """A FRAME-like packet of ``size`` bytes in total (header, verb and payload)."""
    payload = os.urandom(size - 28)
    return pk.new_packet(os.urandom(8), 0x1122334455, 0x66778899AA, Verb.FRAME, payload)


def _raw_aes(key48: bytes, template: bytearray) -> Any:
    k0 = kbkdf_hmac_sha384(key48, ord("0"))[:32]
    k1 = kbkdf_hmac_sha384(key48, ord("1"))[:32]
    gmac = AESGCM(k0).encrypt
    ecb = CCipher(algorithms.AES(k1), modes.ECB())
    ecb_enc = ecb.encryptor().update
    ecb_dec = ecb.decryptor().update
    ctr = CCipher(algorithms.AES(k1), modes.CTR(bytes(16))).encryptor()
    reset = ctr.reset_nonce  # type: ignore[attr-defined]
    update_into = ctr.update_into
    nonce = bytes(template[0:8]) + bytes(4)
    gmac_input = bytes(template[8:19]) + bytes(5) + bytes(template[27:])
    block = bytes(16)
    ctr_iv = os.urandom(16)

    def run() -> None:
        buf = bytearray(template)
        mv = memoryview(buf)[27:]
        gmac(nonce, b"", gmac_input)
        ecb_enc(block)
        reset(ctr_iv)
        update_into(mv, mv)
        reset(ctr_iv)
        update_into(mv, mv)
        ecb_dec(block)
        gmac(nonce, b"", gmac_input)

    return run


def _raw_salsa(key32: bytes, template: bytearray) -> Any:
    lib, ffi = _sodium.lib, _sodium.ffi
    n = len(template) - 27
    nonce = bytes(template[0:8])
    tag = bytearray(16)
    t = ffi.from_buffer(tag)

    def run() -> None:
        buf = bytearray(template)
        scratch = bytearray(64 + n)
        s = ffi.from_buffer(scratch)
        lib.crypto_stream_salsa2012_xor(s, s, 64 + n, nonce, key32)
        lib.crypto_onetimeauth_poly1305(t, s + 64, n, s)
        scratch2 = bytearray(64 + n)
        s2 = ffi.from_buffer(scratch2)
        lib.crypto_stream_salsa2012_xor(s2, s2, 64 + n, nonce, key32)
        lib.crypto_onetimeauth_poly1305(t, s2 + 64, n, s2)
        del buf

    return run


def _ours(key: SymmetricKey, template: bytearray, cipher: Cipher, python: bool = False) -> Any:
    armor = pk._armor_python if python else pk.armor
    dearmor = pk._dearmor_python if python else pk.dearmor

    def run() -> None:
        buf = bytearray(template)
        armor(buf, key, cipher)
        if not dearmor(buf, key):
            raise AssertionError("dearmor failed")

    return run


def armor_rows(calls: int) -> list[dict[str, Any]]:
    key48 = os.urandom(48)
    key = SymmetricKey(key48)
    rows = []
    for size in SIZES:
        template = _packet(size)
        for cipher, raw in (
            (Cipher.POLY1305_SALSA2012, _raw_salsa(key48[:32], template)),
            (Cipher.AES_GMAC_SIV, _raw_aes(key48, template)),
        ):
            if cipher == Cipher.POLY1305_SALSA2012 and _sodium.lib is None:
                continue
            ours = per_call_us(_ours(key, template, cipher), calls)
            python = per_call_us(_ours(key, template, cipher, python=True), calls)
            base = per_call_us(raw, calls)
            rows.append(
                {
                    "what": f"armor+dearmor cipher {int(cipher)} ({cipher.name})",
                    "bytes": size,
                    "accel": accel.AVAILABLE,
                    "ztnode_us": round(ours, 2),
                    "python_us": round(python, 2),
                    "raw_calls_us": round(base, 2),
                    "ratio": round(ours / base, 2),
                    "python_ratio": round(python / base, 2),
                }
            )
    return rows


def identity_rows(generations: int, validations: int) -> list[dict[str, Any]]:
    ident = Identity.generate()
    public = Identity.from_string(ident.to_string())
    val = once_ms(lambda: Identity.from_string(public.to_string()).validate(), validations)
    gen = once_ms(Identity.generate, generations)
    return [
        {
            "what": "identity validation (memory-hard hash)",
            "median_ms": round(statistics.median(val), 1),
            "max_ms": round(max(val), 1),
            "runs": validations,
        },
        {
            "what": "identity generation",
            "median_ms": round(statistics.median(gen), 1),
            "max_ms": round(max(gen), 1),
            "runs": generations,
        },
    ]
