"""The foundation layer against a real ZeroTier core: identities and worlds made by libzt 1.8.4.

These need no packets, so they run in the host namespace: libzt's utility calls (identity
generation and validation, signing a root set) are pure computations inside its core.
"""

from __future__ import annotations

from ipaddress import ip_address

from tests.interop.peer import LibztPeer
from ztnode.identity import Identity
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.world import World, WorldType, should_replace


def test_libzt_identities_validate_here(libzt: LibztPeer) -> None:
    for _ in range(3):
        text = libzt.call("id_new")["identity"]
        ident = Identity.from_string(text)
        assert ident.has_private
        assert ident.validate()
        assert ident.to_string(include_private=True) == text
        # The key pair is consistent: a signature made here verifies with the public half.
        sig = ident.sign(b"interop")
        assert Identity.from_string(ident.to_string()).verify(b"interop", sig)


def test_our_identities_validate_in_libzt(libzt: LibztPeer) -> None:
    for _ in range(2):
        ident = Identity.generate()
        assert libzt.call("id_pair_is_valid", identity=ident.to_string(include_private=True))[
            "valid"
        ]


def test_libzt_rejects_a_tampered_identity_like_we_do(libzt: LibztPeer) -> None:
    text = libzt.call("id_new")["identity"]
    addr, kind, pub, priv = text.split(":")
    flipped = ("0" if addr[0] != "0" else "1") + addr[1:]
    bad = ":".join((flipped, kind, pub, priv))
    assert not libzt.call("id_pair_is_valid", identity=bad)["valid"]
    assert not Identity.from_string(bad).validate()


def test_libzt_signed_planet_parses_and_verifies(libzt: LibztPeer) -> None:
    roots = [Identity.generate().public(), Identity.from_string(libzt.call("id_new")["identity"])]
    spec = [
        {"identity": roots[0].to_string(), "endpoints": ["10.9.8.7/9993", "fd00::1/9994"]},
        {"identity": roots[1].to_string(), "endpoints": ["192.168.217.1/30000"]},
    ]
    reply = libzt.call("sign_root_set", id=0x1234ABCD, timestamp=1_700_000_000_123, roots=spec)
    raw = bytes.fromhex(reply["world"])
    key = bytes.fromhex(reply["current_key"])
    world = World.from_bytes(raw)
    assert world.type == WorldType.PLANET
    assert world.id == 0x1234ABCD
    assert world.timestamp == 1_700_000_000_123
    assert world.update_key == key[:64]
    assert [r.identity for r in world.roots] == [roots[0], roots[1].public()]
    assert world.roots[0].endpoints == (
        InetAddress(ip_address("10.9.8.7"), 9993),
        InetAddress(ip_address("fd00::1"), 9994),
    )
    # libzt's first world is signed by the same key it embeds (mkworld's bootstrap rule).
    assert world.verify_signature(key[:64])
    assert world.to_bytes() == raw
    # And our own World.make with that key reproduces libzt's bytes exactly (Ed25519 is
    # deterministic), which proves our signing message and layout.
    ours = World.make(
        WorldType.PLANET, world.id, world.timestamp, key[:64], world.roots, key[64:128]
    )
    assert ours.to_bytes() == raw
    # A newer revision signed with the embedded key replaces it; the same timestamp does not.
    newer = World.make(
        WorldType.PLANET, world.id, world.timestamp + 1, key[:64], world.roots, key[64:128]
    )
    assert should_replace(world, newer)
    assert not should_replace(world, ours)
