"""Identities: the reference's known answers, both serialisations, parsing robustness, key use,
generation and identity files."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode import crypto
from ztnode.errors import CryptoError, DecodeError, LocalProtocolError
from ztnode.identity import (
    ADDRESS_RESERVED_PREFIX,
    Identity,
    address_from_str,
    address_to_str,
    is_reserved_address,
)
from ztnode.wire.buffer import Reader, Writer

H = bytes.fromhex
VECTORS = load_vectors()
IDS = VECTORS["identities"]
RG = VECTORS["reference_generated"]
KNOWN_GOOD = IDS["known_good"][0]["identity"]
ALL = [
    pytest.param(v, id=v["identity"][:10] + ("-bad" if not v["expected_valid"] else ""))
    for v in IDS["known_good"] + IDS["known_bad"]
]

# Keys with known public halves, for identities that need no hashing (address is arbitrary).
C25519 = VECTORS["c25519"]["vectors"]
PAIRS = [(H(v["pub1"]), H(v["priv1"])) for v in C25519] + [
    (H(v["pub2"]), H(v["priv2"])) for v in C25519
]


def known_good() -> Identity:
    return Identity.from_string(KNOWN_GOOD)


def root(addr: str) -> Identity:
    for r in VECTORS["worlds"]["default_planet"]["roots"]:
        if r["identity"].startswith(addr):
            return Identity.from_string(r["identity"])
    raise KeyError(addr)


# --- known answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", ALL)
def test_vectors(v: dict[str, Any]) -> None:
    ident = Identity.from_string(v["identity"])
    assert ident.has_private == v["has_private"]
    assert (ident.private_key is not None) == v["has_private"]
    assert ident.to_string(include_private=v["has_private"]) == v["identity"]
    assert str(ident) == ":".join(v["identity"].split(":")[:3])
    assert ident.address == int(v["identity"][:10], 16)
    assert ident.validate() == v["expected_valid"]
    assert ident.validate() == v["expected_valid"]  # cached answer is the same
    assert Identity.from_bytes(ident.to_bytes(include_private=True)) == ident
    assert Identity.from_bytes(ident.to_bytes()).has_private is False


def test_identity_binary_vector() -> None:
    (v,) = RG["identity_binary"]
    assert v["string"] == "known-good"
    ident = known_good()
    assert ident.to_bytes() == H(v["public_binary"])
    assert ident.to_bytes(include_private=True) == H(v["with_private_binary"])
    parsed = Identity.from_bytes(H(v["with_private_binary"]))
    assert parsed == ident and parsed.private_key == ident.private_key
    assert not Identity.from_bytes(H(v["public_binary"])).has_private
    assert len(H(v["public_binary"])) == 71
    # "8e4df28b72 00 <pub64> 00" (protocol-core.md section 14)
    assert H(v["public_binary"]) == H("8e4df28b72") + b"\0" + ident.public_key + b"\0"


def test_peer_key_vector() -> None:
    (v,) = RG["peer_key"]
    assert v["my_identity_secret"] == "known-good"
    me, them = known_good(), root(v["their_identity_public"].split()[-1])
    assert me.validate() == bool(v["me_valid"])
    assert them.validate() == bool(v["root_valid"])
    assert me.agree(them) == H(v["key48"])


def test_fact_sheet_signature_and_self_agreement() -> None:
    """protocol-core.md section 14, produced by the reference from KNOWN_GOOD_IDENTITY."""
    me = known_good()
    sig = me.sign(b"hello zerotier")
    assert sig == H(
        "335adb4ceaa1aa59aae8dc30cb0cb2966a9ed27f9c9c006100e185894c37896f"
        "ed474fa4a6356d65e48f6646adb01af6fb49b2aff7d7c7f4ccd36b1ffd759c05"
        "b5c21fd112ddd332126e5629ffc213977525c5621f42d05b1249f5339ee1322a"
    )
    assert me.public().verify(b"hello zerotier", sig)
    assert me.agree(me) == H(
        "5e912d05aab6562b1252f6e93f9ef85dd03c5fdf5cf0c0d0014bb21781a1cb08"
        "0497c73264833e319f0484b569668d20"
    )


def test_known_bad_parses_but_does_not_validate() -> None:
    bad = Identity.from_string(IDS["known_bad"][0]["identity"])
    assert bad.has_private
    assert not bad.validate()
    assert bad.public_key == known_good().public_key
    assert bad != known_good()


# --- addresses ------------------------------------------------------------------------------------


def test_address_helpers() -> None:
    assert ADDRESS_RESERVED_PREFIX == 0xFF
    assert address_to_str(0x8E4DF28B72) == "8e4df28b72"
    assert address_to_str(1) == "0000000001"
    assert address_from_str("8E4DF28B72") == 0x8E4DF28B72
    for a in (0, 0xFF00000000, 0xFFFFFFFFFF, 0xFF12345678):
        assert is_reserved_address(a)
    for a in (1, 0xFEFFFFFFFF, 0x8E4DF28B72):
        assert not is_reserved_address(a)
    for bad in (-1, 1 << 40):
        with pytest.raises(LocalProtocolError):
            address_to_str(bad)


@pytest.mark.parametrize(
    "s",
    [
        "",
        "8e4df28b7",
        "8e4df28b722",
        "0x8e4df28b",
        " 8e4df28b7",
        "8e4df28b7g",
        "8e4df_28b7",
        "\uff18e4df28b72",
    ],
)
def test_address_from_str_is_strict(s: str) -> None:
    with pytest.raises(DecodeError):
        address_from_str(s)


# --- parsing --------------------------------------------------------------------------------------

ADDR, TYPE, PUB, PRIV = KNOWN_GOOD.split(":")


@pytest.mark.parametrize(
    "s",
    [
        "",
        f"{ADDR}:0",
        f"{ADDR}:0:{PUB}:{PRIV}:",
        f"{ADDR}:0:{PUB}:",
        f"{ADDR}::0:{PUB}",
        f"{ADDR}:1:{PUB}",
        f"{ADDR}:00:{PUB}",
        f"{ADDR}:0:{PUB[:-2]}",
        f"{ADDR}:0:{PUB}00",
        f"{ADDR}:0:{PUB[:-1]}x",
        f"{ADDR}:0:{PUB[:64]} {PUB[65:]}",
        f"0000000000:0:{PUB}",
        f"ff{ADDR[2:]}:0:{PUB}",
        f"{ADDR}:0:{PUB}:{PRIV[:-2]}",
        f"{ADDR}:0:{PUB}:{PRIV[:-2]}00",  # a private key of somebody else
        f"{ADDR}:0:{PUB}\n",
    ],
)
def test_from_string_rejects(s: str) -> None:
    with pytest.raises(DecodeError):
        Identity.from_string(s)


def test_from_string_accepts_uppercase_hex_and_normalises() -> None:
    ident = Identity.from_string(KNOWN_GOOD.upper())
    assert ident.to_string(include_private=True) == KNOWN_GOOD


def test_from_string_rejects_non_str() -> None:
    with pytest.raises(DecodeError):
        Identity.from_string(b"8e4df28b72:0:00")  # type: ignore[arg-type]


def test_binary_rejects() -> None:
    good = known_good().to_bytes(include_private=True)
    with pytest.raises(DecodeError, match="type"):
        Identity.from_bytes(good[:5] + b"\x01" + good[6:])
    with pytest.raises(DecodeError, match="length"):
        Identity.from_bytes(good[:70] + b"\x20" + good[71:103])
    with pytest.raises(DecodeError, match="trailing"):
        Identity.from_bytes(known_good().to_bytes() + b"\0")
    wrong_priv = bytearray(good)
    wrong_priv[-1] ^= 1
    with pytest.raises(DecodeError, match="belong"):
        Identity.from_bytes(bytes(wrong_priv))
    for n in range(len(good)):
        with pytest.raises(DecodeError):
            Identity.from_bytes(good[:n])


def test_read_and_write_inside_a_larger_buffer() -> None:
    ident = known_good()
    w = Writer(b"head")
    ident.write(w)
    ident.write(w, include_private=True)
    w.raw(b"tail")
    r = Reader(w.getvalue())
    assert r.raw(4) == b"head"
    first, second = Identity.read(r), Identity.read(r)
    assert r.rest() == b"tail"
    assert not first.has_private and second.has_private
    assert first == second == ident


# --- properties -----------------------------------------------------------------------------------

addresses = st.integers(1, 0xFEFFFFFFFF)
pair_index = st.integers(0, len(PAIRS) - 1)


@settings(max_examples=100, deadline=None)
@given(address=addresses, which=pair_index, with_private=st.booleans())
def test_round_trips(address: int, which: int, with_private: bool) -> None:
    pub, priv = PAIRS[which]
    ident = Identity(address, pub, priv if with_private else None)
    text = ident.to_string(include_private=True)
    assert Identity.from_string(text) == ident
    assert Identity.from_string(text).private_key == ident.private_key
    data = ident.to_bytes(include_private=True)
    assert len(data) == (135 if with_private else 71)
    again = Identity.from_bytes(data)
    assert again == ident and again.private_key == ident.private_key
    assert Identity.from_bytes(memoryview(bytearray(data))) == ident
    assert hash(again) == hash(ident)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=160))
def test_from_bytes_on_random_input_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Identity.from_bytes(data)
    with contextlib.suppress(DecodeError):
        Identity.read(Reader(data))


ENCODED = [known_good().to_bytes(include_private=True), known_good().to_bytes()]


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, 1),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 200),
)
def test_from_bytes_on_mutated_input_raises_only_decode_error(
    which: int, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(ENCODED[which])
    for pos, val in edits:
        data[pos % len(data)] = val
    for candidate in (bytes(data), bytes(data[:cut]), bytes(data) + bytes(cut % 3)):
        try:
            ident = Identity.from_bytes(candidate)
        except DecodeError:
            continue
        assert ident.to_bytes(include_private=True) == candidate


@settings(max_examples=300, deadline=None)
@given(s=st.text(max_size=300))
def test_from_string_on_random_text_raises_only_decode_error(s: str) -> None:
    with contextlib.suppress(DecodeError):
        Identity.from_string(s)


@settings(max_examples=300, deadline=None)
@given(
    pos=st.integers(0, 400),
    char=st.characters(codec="utf-8"),
    cut=st.integers(0, 400),
    delete=st.booleans(),
)
def test_from_string_on_mutated_text_raises_only_decode_error(
    pos: int, char: str, cut: int, delete: bool
) -> None:
    s = KNOWN_GOOD
    p = pos % len(s)
    mutated = s[:p] + ("" if delete else char) + s[p + 1 :]
    for candidate in (mutated, mutated[:cut]):
        try:
            ident = Identity.from_string(candidate)
        except DecodeError:
            continue
        assert ident.to_string(include_private=True) == candidate.lower()


# --- using the keys -------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(which=pair_index, msg=st.binary(max_size=200), flip=st.integers(0, 10**6))
def test_sign_verify_round_trip_and_tamper(which: int, msg: bytes, flip: int) -> None:
    pub, priv = PAIRS[which]
    me = Identity(0x0102030405, pub, priv)
    sig = me.sign(msg)
    assert me.verify(msg, sig) and me.public().verify(msg, sig)
    assert crypto.c25519_verify(pub, msg, sig)
    bad = bytearray(sig)
    bad[flip % 96] ^= 1 << (flip % 8)
    assert not me.verify(msg, bytes(bad))
    assert not me.verify(msg + b"!", sig)
    other_pub, _ = PAIRS[(which + 1) % len(PAIRS)]
    assert not Identity(0x0102030405, other_pub).verify(msg, sig)
    assert not me.verify(msg, sig[:95])


def test_agreement_is_symmetric() -> None:
    (pa, sa), (pb, sb) = PAIRS[0], PAIRS[1]
    a, b = Identity(0x1111111111, pa, sa), Identity(0x2222222222, pb, sb)
    key = a.agree(b)
    assert key == b.agree(a) == b.agree(a.public())
    assert len(key) == 48


def test_operations_that_need_the_private_key() -> None:
    pub = known_good().public()
    with pytest.raises(LocalProtocolError, match="private key"):
        pub.sign(b"m")
    with pytest.raises(LocalProtocolError):
        pub.agree(known_good())


def test_agree_with_a_low_order_point_is_a_crypto_error() -> None:
    evil = Identity(0x1234567890, bytes(32) + known_good().public_key[32:])
    with pytest.raises(CryptoError):
        known_good().agree(evil)


def test_public_copy() -> None:
    me = known_good()
    pub = me.public()
    assert pub == me and hash(pub) == hash(me)
    assert not pub.has_private and pub.private_key is None
    assert pub.public() is pub
    assert pub.to_string(include_private=True) == pub.to_string()


# --- value semantics ------------------------------------------------------------------------------


def test_ordering_by_address_then_public_key() -> None:
    (p0, _), (p1, _) = PAIRS[0], PAIRS[1]
    lo_pub, hi_pub = sorted([p0, p1])
    a = Identity(0x0000000002, hi_pub)
    b = Identity(0x0000000003, lo_pub)
    c = Identity(0x0000000003, hi_pub)
    assert sorted([c, b, a]) == [a, b, c]
    assert a < b < c and c > b > a
    assert a <= Identity(2, hi_pub) <= b and c >= Identity(3, hi_pub) >= b
    assert Identity(0x0000000003, hi_pub) == c
    assert len({a, b, c, Identity(3, hi_pub)}) == 3
    assert a != "not an identity"


def test_repr_and_str_never_show_the_private_key() -> None:
    me = known_good()
    assert me.private_key is not None
    priv_hex = me.private_key.hex()
    for text in (repr(me), str(me), f"{me}", repr([me]), repr(me.public())):
        assert priv_hex[:16] not in text
        assert priv_hex[-16:] not in text
    assert "8e4df28b72" in repr(me) and "secret=True" in repr(me)
    assert "secret=False" in repr(me.public())


def test_pickle_round_trip() -> None:
    me = known_good()
    me.sign(b"warm the caches")
    again = pickle.loads(pickle.dumps(me))
    assert again == me and again.private_key == me.private_key


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, bytes(64)), "address"),
        ((1 << 40, bytes(64)), "address"),
        ((1, bytes(63)), "public"),
        ((1, "00" * 64), "public"),
        ((1, PAIRS[0][0], bytes(63)), "private"),
        ((1, PAIRS[0][0], PAIRS[1][1]), "belong"),
    ],
)
def test_constructor_checks_its_arguments(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        Identity(*args)


def test_reserved_address_never_validates() -> None:
    pub = known_good().public_key
    assert not Identity(0xFF4DF28B72, pub).validate()
    assert not Identity(0, pub).validate()


# --- generation -----------------------------------------------------------------------------------


def test_generate() -> None:
    me = Identity.generate()
    assert me.has_private and me.validate()
    assert not is_reserved_address(me.address)
    assert crypto.c25519_public_from_private(me.private_key or b"") == me.public_key
    fresh = Identity.from_string(me.to_string(include_private=True))
    assert fresh.validate()  # a fresh object recomputes the hash
    assert crypto.identity_hash(me.public_key)[0] < 17


def test_generate_terminates_on_a_constant_random_source() -> None:
    me = Identity.generate(lambda n: b"\x07" * n)
    assert me.private_key is not None
    assert me.private_key[32:] == b"\x07" * 32  # the Ed25519 half is kept as drawn
    assert me.private_key[:8] == b"\x07" * 8 and me.private_key[16:32] == b"\x07" * 16
    assert Identity.from_string(me.to_string(include_private=True)).validate()
    with pytest.raises(LocalProtocolError):
        Identity.generate(lambda n: bytes(n // 2))


# --- files ----------------------------------------------------------------------------------------


@pytest.fixture
def umask022() -> Any:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_save_and_load(tmp_path: Path, umask022: None) -> None:
    me = known_good()
    secret, public = tmp_path / "identity.secret", tmp_path / "identity.public"
    me.save(secret, include_private=True)
    me.save(str(public), include_private=False)
    assert _mode(secret) == 0o600
    assert _mode(public) == 0o644
    assert secret.read_text() == KNOWN_GOOD  # exactly the string, no newline (as the reference)
    assert public.read_text() == str(me)
    loaded = Identity.load(secret)
    assert loaded == me and loaded.private_key == me.private_key
    assert not Identity.load(public).has_private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.public", "identity.secret"]


def test_save_secret_over_a_world_readable_file_tightens_the_mode(
    tmp_path: Path, umask022: None
) -> None:
    path = tmp_path / "identity.secret"
    path.write_text("old")
    path.chmod(0o644)
    known_good().save(path, include_private=True)
    assert _mode(path) == 0o600
    assert Identity.load(path).has_private


def test_save_secret_without_private_key(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        known_good().public().save(tmp_path / "x", include_private=True)
    assert list(tmp_path.iterdir()) == []


def test_load_tolerates_whitespace_and_rejects_garbage(tmp_path: Path) -> None:
    p = tmp_path / "identity.public"
    p.write_text("  " + str(known_good()) + "\n")
    assert Identity.load(p) == known_good()
    p.write_bytes(b"\xff\xfe not ascii")
    with pytest.raises(DecodeError):
        Identity.load(p)
    p.write_text("nonsense")
    with pytest.raises(DecodeError):
        Identity.load(p)
    with pytest.raises(FileNotFoundError):
        Identity.load(tmp_path / "missing")


def test_random_identities_for_other_tests_are_cheap() -> None:
    """Identity(...) with a known key pair skips hashing; it is what property tests above use."""
    rng = random.Random(3)
    pub, priv = crypto.c25519_generate(rng.randbytes)
    ident = Identity(0x0A0B0C0D0E, pub, priv)
    assert ident.has_private and not ident.validate()
