"""The C armor accelerator against the pure-Python path, byte for byte, and the fallback.

The Python implementation (``pk._armor_python`` / ``pk._dearmor_python``) is the oracle: it is
what the reference vectors pin down. Every test here runs both paths on the same input and
demands identical buffers and results, including for tampered and garbage packets.

Without the extension these tests skip, except under ``ZTNODE_REQUIRE_ACCEL=1`` (set by
``.ci/run``), where a missing accelerator fails: CI must prove the fast path was built.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers.armor_vectors import AES14, AES14_FRAGMENTED, KEY14, PLAIN14, POLY14_MAC, SALSA14
from tests.helpers.data import load_vectors
from ztnode import accel
from ztnode.crypto import SymmetricKey
from ztnode.errors import LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import MAX_PACKET_LENGTH, Cipher

H = bytes.fromhex
REQUIRE = os.environ.get("ZTNODE_REQUIRE_ACCEL", "") not in ("", "0")
ARMOR_VECTORS = load_vectors()["reference_generated"]["packet_armor"]
MODES = {0: Cipher.POLY1305_NONE, 1: Cipher.POLY1305_SALSA2012, 2: Cipher.AES_GMAC_SIV}
CIPHERS = (Cipher.POLY1305_NONE, Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV)


def need_accel() -> None:
    """Skip without the extension; fail instead when CI requires it."""
    if accel.AVAILABLE:
        return
    if REQUIRE:
        pytest.fail(f"ZTNODE_REQUIRE_ACCEL=1 but the C accelerator is unavailable: {accel.REASON}")
    pytest.skip(f"C accelerator unavailable: {accel.REASON}")


def c_armor(buf: bytearray, key: SymmetricKey, cipher: int) -> None:
    assert accel.armor(buf, key, cipher), "the C path declined a packet it should armor"


def c_dearmor(buf: bytearray, key: SymmetricKey) -> bool:
    rc = accel.dearmor(buf, key)
    assert rc in (0, 1), f"the C path declined a {len(buf)}-byte packet"
    return rc == 1


def random_packet(rng: random.Random, size: int, flags: int) -> bytearray:
    buf = bytearray(rng.randbytes(size))
    buf[18] = flags
    return buf


def test_accelerator_available() -> None:
    need_accel()
    assert accel.AVAILABLE and accel.REASON is None
    assert pk._accel_armor is not None and pk._accel_dearmor is not None
    assert (accel.MIN_PACKET, accel.MAX_PACKET) == (28, MAX_PACKET_LENGTH)


# --- C vs Python over generated packets -------------------------------------------------------

sizes = st.one_of(
    st.sampled_from([28, 29, 43, 44, 91, 92, 93, 1400, MAX_PACKET_LENGTH - 1, MAX_PACKET_LENGTH]),
    st.integers(28, 200),
    st.integers(28, MAX_PACKET_LENGTH),
)


@settings(max_examples=300, deadline=None)
@given(
    key48=st.binary(min_size=48, max_size=48),
    seed=st.integers(0, 2**32),
    size=sizes,
    flags=st.integers(0, 255),
    cipher=st.sampled_from(CIPHERS),
    relay_hops=st.integers(0, 7),
    tamper=st.integers(0, MAX_PACKET_LENGTH - 1),
    bit=st.integers(0, 7),
)
@example(bytes(range(48)), 0, 28, 0, Cipher.AES_GMAC_SIV, 0, 0, 0)
@example(bytes(48), 0, 28, 0, Cipher.POLY1305_SALSA2012, 0, 18, 4)  # the flip makes it AES
def test_c_matches_python(
    key48: bytes,
    seed: int,
    size: int,
    flags: int,
    cipher: Cipher,
    relay_hops: int,
    tamper: int,
    bit: int,
) -> None:
    need_accel()
    rng = random.Random(seed)
    # Separate key objects, so the C path's lazily made contexts cannot help the Python path.
    kc, kp = SymmetricKey(key48), SymmetricKey(key48)
    plain = random_packet(rng, size, flags)  # any hops, fragment flag, stale cipher/legacy bits

    c, p = bytearray(plain), bytearray(plain)
    c_armor(c, kc, cipher)
    pk._armor_python(p, kp, cipher)
    assert c == p
    wire = bytes(c)

    # Relayed (hops changed) packets verify on both paths, to the same plaintext.
    c, p = bytearray(wire), bytearray(wire)
    pk.set_hops(c, relay_hops)
    pk.set_hops(p, relay_hops)
    assert c_dearmor(c, kc) is pk._dearmor_python(p, kp) is True
    assert c == p
    assert c[27:] == plain[27:]

    # One flipped bit: same verdict, same bytes left behind (untouched for ciphers 0 and 1).
    c, p = bytearray(wire), bytearray(wire)
    i = tamper % size
    c[i] ^= 1 << bit
    p[i] ^= 1 << bit
    hops_only = i == 18 and bit < 3
    # The cipher the receiver reads: a flipped bit 3-5 of byte 18 changes it (to AES-GMAC-SIV,
    # whose failed open leaves its decryption attempt behind on both paths alike).
    read_as = (c[18] >> 3) & 7
    assert c_dearmor(c, kc) is pk._dearmor_python(p, kp) is hops_only
    assert c == p
    if not hops_only and read_as != Cipher.AES_GMAC_SIV:
        assert c == bytearray(wire[:i]) + bytes([wire[i] ^ (1 << bit)]) + wire[i + 1 :]


@settings(max_examples=300, deadline=None)
@given(
    key48=st.binary(min_size=48, max_size=48),
    seed=st.integers(0, 2**32),
    size=sizes,
    flags=st.integers(0, 255),
)
def test_c_matches_python_on_garbage(key48: bytes, seed: int, size: int, flags: int) -> None:
    """Random datagrams of every cipher suite (2 and 4..7 included): both say False, alike."""
    need_accel()
    kc, kp = SymmetricKey(key48), SymmetricKey(key48)
    c = random_packet(random.Random(seed), size, flags)
    p = bytearray(c)
    assert c_dearmor(c, kc) is pk._dearmor_python(p, kp) is False
    assert c == p


def _cpu_has_aesni() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "aes" in flags and "pclmulqdq" in flags and "ssse3" in flags


# Payload lengths (packet length - 27) around aesni.c's ZT_NI_SMALL = 512, and the small ones.
NI_EDGE = [1, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 497, 510, 511, 512, 513, 514, 600]


@pytest.mark.parametrize("n", NI_EDGE)
def test_small_packet_aes_path_equals_openssl(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """aesni.c (AES-NI + PCLMULQDQ for payloads up to 512 bytes) and OpenSSL's EVP path give
    the same bytes and verdicts, each way and across each other; both equal the Python path."""
    need_accel()
    rng = random.Random(n)
    key48 = rng.randbytes(48)
    fast = SymmetricKey(key48)
    accel.aes_state(fast)
    monkeypatch.setenv("ZTNODE_NO_AESNI", "1")
    slow = SymmetricKey(key48)
    accel.aes_state(slow)
    monkeypatch.delenv("ZTNODE_NO_AESNI")
    lib = accel.ffi_and_lib()[1]
    assert lib.zt_aes_small_path(slow._accel) == 0
    assert lib.zt_aes_small_path(fast._accel) == (1 if _cpu_has_aesni() else 0)
    for trial in range(8):
        plain = random_packet(rng, 27 + n, rng.randrange(256))
        a, b, p = bytearray(plain), bytearray(plain), bytearray(plain)
        c_armor(a, fast, Cipher.AES_GMAC_SIV)
        c_armor(b, slow, Cipher.AES_GMAC_SIV)
        pk._armor_python(p, SymmetricKey(key48), Cipher.AES_GMAC_SIV)
        assert a == b == p, f"payload {n}, trial {trial}"
        x, y = bytearray(a), bytearray(a)
        assert c_dearmor(x, slow) and c_dearmor(y, fast)
        assert x == y and x[27:] == plain[27:]
        bad = bytearray(a)
        bad[rng.randrange(27, len(bad))] ^= 1 << rng.randrange(8)
        x, y = bytearray(bad), bytearray(bad)
        assert not c_dearmor(x, fast) and not c_dearmor(y, slow)
        assert x == y


# --- reference vectors through the C path -----------------------------------------------------


@pytest.mark.parametrize("v", ARMOR_VECTORS, ids=[f"mode{v['mode']}" for v in ARMOR_VECTORS])
def test_packet_armor_vectors(v: dict[str, Any]) -> None:
    need_accel()
    key = SymmetricKey(H(v["key48"]))
    buf = bytearray(H(v["plain_packet"]))
    c_armor(buf, key, MODES[v["mode"]])
    assert bytes(buf) == H(v["wire"])
    buf = bytearray(H(v["wire"]))
    assert c_dearmor(buf, key) is v["reference_dearmor_ok"]
    assert bytes(buf) == H(v["dearmored"])


def test_section14_examples() -> None:
    need_accel()
    for cipher, fragmented, wire in (
        (Cipher.AES_GMAC_SIV, False, AES14),
        (Cipher.AES_GMAC_SIV, True, AES14_FRAGMENTED),
        (Cipher.POLY1305_SALSA2012, False, SALSA14),
        (Cipher.POLY1305_NONE, False, PLAIN14[:19] + POLY14_MAC + PLAIN14[27:]),
    ):
        key = SymmetricKey(KEY14.raw)
        buf = bytearray(PLAIN14)
        pk.set_fragmented(buf, fragmented)
        c_armor(buf, key, cipher)
        assert bytes(buf) == wire, cipher
        pk.set_hops(buf, 5)
        assert c_dearmor(buf, key)
        assert buf[27:] == PLAIN14[27:]


def test_tamper_and_wrong_key() -> None:
    need_accel()
    other = SymmetricKey(bytes(range(1, 49)))
    for cipher in CIPHERS:
        wire = bytearray(PLAIN14)
        c_armor(wire, KEY14, cipher)
        for i in range(len(wire)):
            bad = bytearray(wire)
            bad[i] ^= 0x80  # never a hops bit
            before = bytes(bad)
            assert not c_dearmor(bad, KEY14), (cipher, i)
            if cipher != Cipher.AES_GMAC_SIV:
                assert bytes(bad) == before
        assert not c_dearmor(bytearray(wire), other)
        assert not c_dearmor(bytearray(wire[:-1]), KEY14)
        assert not c_dearmor(wire + b"\x00", KEY14)


@pytest.mark.parametrize("suite", [2, 4, 5, 6, 7])
def test_unsupported_suites_not_authentic(suite: int) -> None:
    need_accel()
    buf = bytearray(PLAIN14)
    buf[18] = suite << 3
    assert accel.dearmor(buf, KEY14) == 0
    assert buf == PLAIN14[:18] + bytes([suite << 3]) + PLAIN14[19:]


# --- limits and what the C side declines -----------------------------------------------------


def test_length_limits() -> None:
    need_accel()
    for n in (0, 1, 27, MAX_PACKET_LENGTH + 1, 20000):
        buf = bytearray(random.Random(n).randbytes(n))
        before = bytes(buf)
        for cipher in CIPHERS:
            assert accel.armor(buf, KEY14, cipher) is False
            with pytest.raises(LocalProtocolError):
                pk.armor(buf, KEY14, cipher)
        assert accel.dearmor(buf, KEY14) == -1
        assert buf == before
    for n in (28, MAX_PACKET_LENGTH):
        buf = bytearray(n)
        c_armor(buf, KEY14, Cipher.AES_GMAC_SIV)
        assert c_dearmor(buf, KEY14)


def test_raw_entry_points_check_lengths() -> None:
    """The C functions refuse out-of-range lengths themselves and return before writing."""
    need_accel()
    lib: Any = accel._lib
    ffi: Any = accel._ffi
    key = SymmetricKey(KEY14.raw)
    state = accel.aes_state(key)
    for n in (0, 27, MAX_PACKET_LENGTH + 1):
        buf = bytearray(n + 64)  # room to spare, so a missing check would not crash
        p = ffi.from_buffer(buf)
        for cipher in (0, 1, 3):
            assert lib.zt_armor(state, key.salsa_key, p, n, cipher) == lib.ZT_ACCEL_ELENGTH
        assert lib.zt_dearmor(state, key.salsa_key, p, n) == lib.ZT_ACCEL_ELENGTH
        assert buf == bytes(n + 64)
    buf = bytearray(PLAIN14)
    p = ffi.from_buffer(buf)
    for cipher in (-1, 2, 4, 7, 8):
        assert lib.zt_armor(state, key.salsa_key, p, len(buf), cipher) == lib.ZT_ACCEL_ECIPHER
    assert lib.zt_armor(ffi.NULL, key.salsa_key, p, len(buf), 3) == lib.ZT_ACCEL_ENOKEY
    assert lib.zt_armor(state, ffi.NULL, p, len(buf), 1) == lib.ZT_ACCEL_ENOKEY
    assert buf == PLAIN14


def test_oversized_dearmor_falls_back_to_python() -> None:
    # Python's dearmor has no upper length limit; the dispatcher keeps that behaviour.
    big = bytearray(random.Random(1).randbytes(20000))
    big[18] = 0x18
    ref = bytearray(big)
    assert pk.dearmor(big, KEY14) is pk._dearmor_python(ref, KEY14) is False
    assert big == ref


def test_dispatch_keeps_python_errors() -> None:
    with pytest.raises(LocalProtocolError, match="armor_trusted"):
        pk.armor(bytearray(PLAIN14), KEY14, Cipher.NONE_TRUSTED_PATH)
    for bad in (5, -1, 2**70):
        with pytest.raises(LocalProtocolError, match="unknown cipher"):
            pk.armor(bytearray(PLAIN14), KEY14, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pk.armor(bytes(PLAIN14), KEY14, Cipher.AES_GMAC_SIV)  # type: ignore[arg-type]


def test_aes_state_is_per_key_and_lazy() -> None:
    need_accel()
    key = SymmetricKey(bytes(range(48)))
    buf = bytearray(PLAIN14)
    c_armor(buf, key, Cipher.POLY1305_SALSA2012)
    assert key._accel is None  # Salsa peers never pay for AES contexts
    receiver = SymmetricKey(bytes(range(48)))
    wire = bytearray(PLAIN14)
    c_armor(wire, key, Cipher.AES_GMAC_SIV)
    assert key._accel is not None
    assert c_dearmor(wire, receiver)  # first use on the receive side makes them too
    assert receiver._accel is not None
    del key, receiver
    gc.collect()  # ffi.gc frees the contexts; nothing to observe but the absence of a crash


# --- the fallback -------------------------------------------------------------------------------


def test_python_path_vectors() -> None:
    """The fallback, called directly, still gives the reference bytes."""
    for v in ARMOR_VECTORS:
        key = SymmetricKey(H(v["key48"]))
        buf = bytearray(H(v["plain_packet"]))
        pk._armor_python(buf, key, MODES[v["mode"]])
        assert bytes(buf) == H(v["wire"])
        assert pk._dearmor_python(buf, key) is v["reference_dearmor_ok"]
        assert bytes(buf) == H(v["dearmored"])


@pytest.mark.e2e
def test_no_accel_env_uses_python_path() -> None:
    code = textwrap.dedent(
        f"""
        from ztnode import accel
        from ztnode.crypto import SymmetricKey
        from ztnode.wire import packet as pk
        assert not accel.AVAILABLE and "ZTNODE_NO_ACCEL" in accel.REASON, accel.REASON
        assert pk._accel_armor is None and pk._accel_dearmor is None
        key = SymmetricKey(bytes(range(48)))
        buf = bytearray(bytes.fromhex("{PLAIN14.hex()}"))
        pk.armor(buf, key, 3)
        assert bytes(buf) == bytes.fromhex("{AES14.hex()}")
        pk.set_hops(buf, 2)
        assert pk.dearmor(buf, key)
        assert accel.armor(buf, key, 1) is False and accel.dearmor(buf, key) == -1
        """
    )
    env = {**os.environ, "ZTNODE_NO_ACCEL": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_the_build_compiles_every_c_file_in_the_package() -> None:
    """The builder's source list is the csrc folder: a C file added there and forgotten in the
    list would ship uncompiled; one listed but missing would break every install."""
    from ztnode.accel import _build

    on_disk = sorted(p.name for p in _build.CSRC.glob("*.c"))
    assert sorted(_build.SOURCES) == on_disk


def test_the_cdef_declares_every_interface_function_of_the_header() -> None:
    from ztnode.accel import _build

    cdef = _build.cdef_from_header(_build.HEADER.read_text())
    assert "#include" not in cdef and "ZT_ACCEL_H" not in cdef
    for name in ("zt_armor", "zt_dearmor", "zt_rx_burst", "zt_tx_tcp", "zt_ones_sum"):
        assert f"{name}(" in cdef
        assert hasattr(accel.ffi_and_lib()[1], name)
    assert "#define ZT_RX_SLOT ..." in cdef
