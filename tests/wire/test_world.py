"""Worlds (planets and moons): the reference planets, signing, update rules and parser fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses
from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.data import load_vectors
from ztnode.crypto import c25519_generate
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import (
    DEFAULT_PLANET,
    MAX_ENDPOINTS_PER_ROOT,
    MAX_ROOTS,
    WORLD_ID_EARTH,
    Root,
    World,
    WorldType,
    should_replace,
)

H = bytes.fromhex
WORLDS = load_vectors()["worlds"]
ALL_WORLDS = [WORLDS["default_planet"], *WORLDS["historic"]]

# §12.5: the four roots of the 1.14.1 default planet and their stable endpoints.
SECTION_12_5 = {
    "cafe9efeb9": ["104.194.8.134/9993", "2605:9880:200:1200:30:571:e34:51/9993"],
    "778cde7190": ["103.195.103.66/9993", "2605:9880:400:c3:254:f2bc:a1f7:19/9993"],
    "62f865ae71": ["50.7.252.138/9993", "2001:49f0:d0db:2::2/9993"],
    "cafe04eba9": ["84.17.53.155/9993", "2a02:6ea0:d405::9993/9993"],
}

DEFAULT = World.from_bytes(DEFAULT_PLANET)
ROOT_IDS = [r.identity for r in DEFAULT.roots]


def _roots(n: int, endpoints: int = 2) -> tuple[Root, ...]:
    eps = tuple(InetAddress(ip_address(f"10.0.0.{i + 1}"), 9993 + i) for i in range(endpoints))
    return tuple(Root(ROOT_IDS[i % len(ROOT_IDS)], eps) for i in range(n))


# --- reference planets -------------------------------------------------------------------------


def test_vector_format_note_matches_layout() -> None:
    fmt = WORLDS["format"]
    for piece in ("type[1]", "id[8 BE]", "timestamp[8 BE, ms]", "updatesMustBeSignedBy[64]"):
        assert piece in fmt
    assert "signature[96]" in fmt and "numRoots[1]" in fmt and "dictLen[2 BE]" in fmt


@pytest.mark.parametrize("v", ALL_WORLDS, ids=lambda v: str(v["timestamp"]))
def test_world_vector(v: dict[str, Any]) -> None:
    raw = H(v["hex"])
    assert len(raw) == v["length"]
    w = World.from_bytes(raw)
    assert w.type == WorldType(v["type"]) == WorldType.PLANET
    assert w.id == v["id"] == int(v["id_hex"], 16) == WORLD_ID_EARTH
    assert w.timestamp == v["timestamp"]
    assert w.update_key == H(v["updates_must_be_signed_by"])
    assert w.signature == H(v["signature"])
    assert w.dictionary == b""
    assert w.signing_message() == H(v["signed_message_hex"])
    assert w.to_bytes() == raw
    assert w.verify_signature(w.update_key) is v["verified"]["status"] is True
    assert len(w.roots) == len(v["roots"])
    for root, spec in zip(w.roots, v["roots"], strict=True):
        assert root.identity == Identity.from_string(spec["identity"])
        assert [str(e) for e in root.endpoints] == spec["stable_endpoints"]
    assert "source" in v and "note" in v
    # Every revision is signed by the same key, so any later one replaces an earlier one.
    if v is not WORLDS["default_planet"]:
        assert w.timestamp < DEFAULT.timestamp
        assert should_replace(w, DEFAULT)
        assert not should_replace(DEFAULT, w)


def test_default_planet_constant() -> None:
    v = WORLDS["default_planet"]
    assert "Topology.cpp" in v["source"]
    assert H(v["hex"]) == DEFAULT_PLANET
    assert len(DEFAULT_PLANET) == 570
    assert DEFAULT.type == WorldType.PLANET
    assert DEFAULT.id == 149604618
    assert DEFAULT.timestamp == 1644592324813
    assert DEFAULT.update_key.hex().startswith("b8b388a469221491")
    assert DEFAULT.verify_signature(DEFAULT.update_key)
    got = {f"{r.identity.address:010x}": [str(e) for e in r.endpoints] for r in DEFAULT.roots}
    assert got == SECTION_12_5


def test_default_root_identities_validate() -> None:
    assert all(r.identity.validate() for r in DEFAULT.roots)


# --- building and signing ----------------------------------------------------------------------


def test_make_round_trip_and_signature() -> None:
    pub, priv = c25519_generate()
    w = World.make(WorldType.PLANET, 1234, 5678, pub, _roots(4, 3), priv)
    assert w.verify_signature(pub)
    assert not w.verify_signature(DEFAULT.update_key)
    assert not w.verify_signature(b"short")
    again = World.from_bytes(w.to_bytes())
    assert again == w
    assert again.verify_signature(pub)
    # The signed message frames the serialisation without the signature.
    msg = w.signing_message()
    raw = w.to_bytes()
    assert msg[:8] == b"\x7f" * 8 and msg[-8:] == b"\xf7" * 8
    assert msg[8:-8] == raw[:81] + raw[81 + 96 :]


def test_update_chain_key_rotation() -> None:
    _pub1, priv1 = c25519_generate()
    pub2, priv2 = c25519_generate()
    v1 = World.make(WorldType.PLANET, 7, 100, pub2, _roots(1), priv1)  # next update needs key 2
    v2 = World.make(WorldType.PLANET, 7, 200, pub2, _roots(2), priv2)
    forged = World.make(WorldType.PLANET, 7, 200, pub2, _roots(2), priv1)
    assert should_replace(v1, v2)
    assert not should_replace(v1, forged)  # signed with the old key, not the announced one


def test_should_replace_rules() -> None:
    pub, priv = c25519_generate()
    cur = World.make(WorldType.PLANET, 7, 100, pub, _roots(1), priv)
    newer = World.make(WorldType.PLANET, 7, 101, pub, _roots(2), priv)
    assert should_replace(None, cur)
    assert should_replace(cur, newer)
    assert not should_replace(newer, cur)  # older
    same_ts = World.make(WorldType.PLANET, 7, 100, pub, _roots(2), priv)
    assert not should_replace(cur, same_ts)  # strictly newer only
    assert not should_replace(cur, World.make(WorldType.PLANET, 8, 200, pub, _roots(1), priv))
    assert not should_replace(cur, World.make(WorldType.MOON, 7, 200, pub, _roots(1), priv))
    bad_sig = dataclasses.replace(newer, signature=bytes(96))
    assert not should_replace(cur, bad_sig)
    tampered = dataclasses.replace(newer, roots=_roots(3))
    assert not should_replace(cur, tampered)
    # A null current world (type NULL or id 0) is replaced by anything, unsigned.
    null = World(WorldType.NULL, 0, 0, bytes(64), bytes(96), ())
    assert null.is_null
    assert should_replace(null, bad_sig)
    assert should_replace(dataclasses.replace(cur, id=0), bad_sig)
    assert World.from_bytes(null.to_bytes()) == null


def test_moon_dictionary_round_trip_but_unsigned() -> None:
    pub, priv = c25519_generate()
    moon = World.make(WorldType.MOON, 0xDEADBEEF01, 42, pub, _roots(1), priv)
    raw = moon.to_bytes()
    assert raw[-2:] == b"\x00\x00"
    assert World.from_bytes(raw) == moon
    with_dict = dataclasses.replace(moon, dictionary=b"k=v\n")
    raw2 = with_dict.to_bytes()
    assert raw2.endswith(b"\x00\x04k=v\n")
    parsed = World.from_bytes(raw2)
    assert parsed.dictionary == b"k=v\n"
    # The reference signs (and checks) an empty dictionary whatever the moon carries.
    assert parsed.signing_message() == moon.signing_message()
    assert parsed.verify_signature(pub)


def test_read_inside_a_larger_buffer() -> None:
    r = Reader(b"\xaa" + DEFAULT_PLANET + b"tail")
    r.u8()
    assert World.read(r) == DEFAULT
    assert r.rest() == b"tail"
    w = Writer()
    DEFAULT.write(w)
    assert bytes(w.buf) == DEFAULT_PLANET
    with pytest.raises(DecodeError):
        World.from_bytes(DEFAULT_PLANET + b"\x00")


def test_constructor_rejects_misuse() -> None:
    pub, priv = c25519_generate()
    with pytest.raises(LocalProtocolError):
        World.make(WorldType.PLANET, 1, 1, pub, _roots(5), priv)
    with pytest.raises(LocalProtocolError):
        World.make(WorldType.PLANET, 1, 1, pub[:63], _roots(1), priv)
    with pytest.raises(LocalProtocolError):
        World.make(WorldType.PLANET, 1, 1, pub, _roots(1), priv[:32])
    with pytest.raises(LocalProtocolError):
        World.make(WorldType.PLANET, 1 << 64, 1, pub, _roots(1), priv)
    with pytest.raises(LocalProtocolError):
        _roots(1, MAX_ENDPOINTS_PER_ROOT + 1)
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(DEFAULT, dictionary=b"x")  # planets carry none
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(DEFAULT, signature=b"")


# --- limits and hostile input ------------------------------------------------------------------


def _serialised(n_roots: int, n_endpoints: int) -> bytes:
    """A world with counts beyond the limits, written by hand (the API refuses to build one)."""
    w = Writer()
    w.u8(1).u64(1).u64(1).raw(bytes(64)).raw(bytes(96)).u8(n_roots)
    for i in range(n_roots):
        ROOT_IDS[i % 4].write(w)
        w.u8(n_endpoints)
        for _ in range(n_endpoints):
            InetAddress(ip_address("10.1.2.3"), 9993).write(w)
    return bytes(w.buf)


def test_limits() -> None:
    World.from_bytes(_serialised(MAX_ROOTS, MAX_ENDPOINTS_PER_ROOT))
    with pytest.raises(DecodeError, match="roots"):
        World.from_bytes(_serialised(MAX_ROOTS + 1, 1))
    with pytest.raises(DecodeError, match="endpoints"):
        World.from_bytes(_serialised(1, MAX_ENDPOINTS_PER_ROOT + 1))
    with pytest.raises(DecodeError):
        World.from_bytes(_serialised(255, 0)[:400])  # count checked against the bytes left


def test_unknown_type_and_null_endpoint() -> None:
    for t in (2, 126, 128, 255):
        with pytest.raises(DecodeError, match="type"):
            World.from_bytes(bytes([t]) + DEFAULT_PLANET[1:])
    raw = bytearray(_serialised(1, 1))
    raw[-7:] = b"\x00"  # a null InetAddress where an endpoint belongs
    with pytest.raises(DecodeError, match="endpoint"):
        World.from_bytes(bytes(raw))


def test_every_truncation_fails_cleanly() -> None:
    for n in range(len(DEFAULT_PLANET)):
        with pytest.raises(DecodeError):
            World.from_bytes(DEFAULT_PLANET[:n])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_parser_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        World.from_bytes(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ALL_WORLDS), st.data())
def test_parser_mutated_planets(v: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(H(v["hex"]))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        w = World.from_bytes(bytes(raw))
    except DecodeError:
        return
    # Whatever parses re-serialises to the same bytes.
    assert w.to_bytes() == bytes(raw)
    assert isinstance(w.verify_signature(w.update_key), bool)
