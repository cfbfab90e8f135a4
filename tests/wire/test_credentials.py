"""Credentials: layouts, signing bytes, sign/verify/tamper, COM agreement, NETWORK_CREDENTIALS."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import any_rules
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.credentials import (
    EMPTY_SIGNATURE,
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    ComQualifier,
    CredentialType,
    CustodyEntry,
    NetworkCredentials,
    OwnedThing,
    Revocation,
    Tag,
    ThingType,
    VerifyingIdentity,
    VerifyResult,
    controller_for,
    identity_hash_words,
)
from ztnode.wire.rules import ActionAccept, ActionDrop, MatchEthertype, MatchIpProtocol

H = bytes.fromhex
MARK = b"\x7f" * 8
TS = 1_700_000_000_000
DELTA = 30 * 60 * 1000


@dataclass(frozen=True)
class Ids:
    controller: Identity
    member: Identity
    other: Identity

    @property
    def nwid(self) -> int:
        return (self.controller.address << 24) | 0x000001


@pytest.fixture(scope="module")
def ids() -> Ids:
    return Ids(Identity.generate(), Identity.generate(), Identity.generate())


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


# --- COM -------------------------------------------------------------------------------------


def test_com_issue_sign_verify(ids: Ids) -> None:
    com = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.member)
    assert [q.id for q in com.qualifiers] == list(range(7))
    assert com.timestamp == TS and com.network_id == ids.nwid
    assert com.issued_to == ids.member.address and not com.is_signed
    h = hashlib.sha384(ids.member.address.to_bytes(5, "big") + ids.member.public_key).digest()
    assert [q.value for q in com.qualifiers[3:]] == [
        int.from_bytes(h[i : i + 8], "big") for i in (0, 8, 16, 24)
    ]
    assert com.qualifiers[2].max_delta == (1 << 64) - 1 and com.qualifiers[1].max_delta == 0
    signed = com.sign(ids.controller)
    assert signed.signed_by == ids.controller.address
    wire = signed.encode()
    assert len(wire) == 272
    assert wire[:3] == H("010007")
    back = CertificateOfMembership.decode(wire)
    assert back == signed
    assert back.verify(ids.controller)
    assert signed.signing_message() == wire[3 : 3 + 7 * 24]


def test_com_tamper(ids: Ids) -> None:
    signed = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.member).sign(ids.controller)
    assert not signed.verify(ids.member)  # wrong identity
    q = list(signed.qualifiers)
    q[0] = replace(q[0], value=TS + 1)
    assert not replace(signed, qualifiers=tuple(q)).verify(ids.controller)
    assert not replace(signed, signature=_flip(signed.signature, 5)).verify(ids.controller)
    assert not replace(signed, signed_by=0).verify(ids.controller)
    # Signed by someone who is not the network's controller.
    by_member = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.other).sign(ids.member)
    assert not by_member.verify(ids.member)


def test_com_unsigned_layout() -> None:
    com = CertificateOfMembership((ComQualifier(0, 5, 10),))
    wire = com.encode()
    assert wire == H("01000100000000000000000000000000000005000000000000000a0000000000")
    assert CertificateOfMembership.decode(wire) == com
    assert not CertificateOfMembership(())
    assert CertificateOfMembership(()).timestamp == 0


@pytest.mark.parametrize(
    "wire",
    [
        "0200000000000000",  # format byte
        "010009" + "00" * (9 * 24) + "0000000000",  # too many qualifiers
        "010002" + "0000000000000001" + "00" * 16 + "00" * 24 + "0000000000",  # unsorted ids
        "010001" + "00" * 23,  # truncated qualifier
        "010000" + "0000000001" + "00" * 95,  # truncated signature
        "01",
    ],
)
def test_com_bad(wire: str) -> None:
    with pytest.raises(DecodeError):
        CertificateOfMembership.decode(H(wire.replace(" ", "")))


def test_com_write_validation() -> None:
    with pytest.raises(LocalProtocolError):
        CertificateOfMembership(tuple(ComQualifier(i, 0, 0) for i in range(9))).encode()
    with pytest.raises(LocalProtocolError):
        CertificateOfMembership((ComQualifier(2, 0, 0), ComQualifier(1, 0, 0))).encode()
    with pytest.raises(LocalProtocolError):
        CertificateOfMembership((ComQualifier(0, 0, 0),), signed_by=1, signature=b"x").encode()


def test_com_agreement_windows(ids: Ids) -> None:
    mine = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.member)
    theirs = CertificateOfMembership.issue(TS + DELTA, DELTA, ids.nwid, ids.other)
    assert mine.agrees_with(theirs, ids.other)
    late = CertificateOfMembership.issue(TS + DELTA + 1, DELTA, ids.nwid, ids.other)
    assert not mine.agrees_with(late, ids.other)
    early = CertificateOfMembership.issue(TS - DELTA - 1, DELTA, ids.nwid, ids.other)
    assert not mine.agrees_with(early, ids.other)
    # Asymmetric: the window is the *checking* side's max delta.
    wide = CertificateOfMembership.issue(TS, 10 * DELTA, ids.nwid, ids.member)
    assert wide.agrees_with(late, ids.other) and not late.agrees_with(mine, ids.member)
    # Another network never agrees; neither does a COM bound to a different identity.
    other_net = CertificateOfMembership.issue(TS, DELTA, ids.nwid + 1, ids.other)
    assert not mine.agrees_with(other_net, ids.other)
    assert not mine.agrees_with(theirs, ids.member)
    assert not mine.agrees_with(CertificateOfMembership(()), ids.other)
    assert not CertificateOfMembership(()).agrees_with(theirs, ids.other)


def test_com_agreement_legacy_without_hash(ids: Ids) -> None:
    full = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.other)
    legacy = CertificateOfMembership(full.qualifiers[:3])
    # Mine has no identity hash: extra qualifiers in theirs are ignored, no identity check.
    assert legacy.agrees_with(full, ids.member)
    # Mine has it: theirs must carry all four words.
    mine = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.member)
    assert not mine.agrees_with(legacy, ids.other)
    assert identity_hash_words(ids.other) == tuple(q.value for q in full.qualifiers[3:])


# --- capability ------------------------------------------------------------------------------


def _cap(ids: Ids, mccl: int = 1) -> Capability:
    rules = (MatchEthertype(0x0800), MatchIpProtocol(6), ActionAccept(), ActionDrop())
    return Capability(9, ids.nwid, TS, rules, mccl)


def test_capability_layout_and_signing_bytes(ids: Ids) -> None:
    cap = _cap(ids)
    msg = cap.signing_message()
    body = (
        ids.nwid.to_bytes(8, "big")
        + TS.to_bytes(8, "big")
        + H("00000009 0004 25020800 240106 0100 0000 01".replace(" ", ""))
    )
    assert msg == MARK + body + H("0000") + MARK
    signed = cap.sign(ids.controller, ids.member.address)
    wire = signed.encode()
    assert wire.startswith(body)
    hop = wire[len(body) :]
    assert hop[:5] == ids.member.address.to_bytes(5, "big")
    assert hop[5:10] == ids.controller.address.to_bytes(5, "big")
    assert hop[10:13] == H("010060")
    assert hop[13 + 96 :] == H("00000000000000")
    assert Capability.decode(wire) == signed
    assert signed.issued_to == ids.member.address
    assert ids.controller.verify(msg, signed.custody[0].signature)


def test_capability_sign_verify_tamper(ids: Ids) -> None:
    signed = _cap(ids).sign(ids.controller, ids.member.address)
    assert signed.verify(ids.controller)
    assert not signed.verify(ids.member)
    assert not replace(signed, rules=(ActionAccept(),)).verify(ids.controller)
    assert not replace(signed, timestamp=TS + 1).verify(ids.controller)
    bad_sig = CustodyEntry(ids.member.address, ids.controller.address, EMPTY_SIGNATURE)
    assert not replace(signed, custody=(bad_sig,)).verify(ids.controller)
    # Issued by a non-controller: refused whatever the signature.
    assert not _cap(ids).sign(ids.member, ids.other.address).verify(ids.member)
    assert not _cap(ids).verify(ids.controller)  # no custody at all
    with pytest.raises(LocalProtocolError):
        signed.sign(ids.member, ids.other.address)  # mccl 1: chain full
    with pytest.raises(LocalProtocolError):
        _cap(ids).sign(ids.controller, 0)


def test_capability_custody_chain(ids: Ids) -> None:
    cap = _cap(ids, mccl=3).sign(ids.controller, ids.member.address)
    chained = cap.sign(ids.member, ids.other.address)
    known: dict[int, VerifyingIdentity] = {
        ids.controller.address: ids.controller,
        ids.member.address: ids.member,
    }
    assert chained.verify_chain(known.get) is VerifyResult.OK
    assert chained.issued_to == ids.other.address
    assert chained.verify_chain({ids.controller.address: ids.controller}.get) is (
        VerifyResult.NEED_IDENTITY
    )
    # A hop not signed by the previous holder breaks the chain.
    broken = cap.sign(ids.other, ids.member.address)
    assert broken.verify_chain(known.get) is VerifyResult.BAD
    assert Capability.decode(chained.encode()) == chained
    assert replace(chained, max_custody_chain_length=9).verify_chain(known.get) is VerifyResult.BAD


def test_capability_decode_errors(ids: Ids) -> None:
    wire = _cap(ids).sign(ids.controller, ids.member.address).encode()
    rc_at = 8 + 8 + 4
    too_many_rules = wire[:rc_at] + (65).to_bytes(2, "big") + wire[rc_at + 2 :]
    mccl_at = len(wire) - (5 + 5 + 3 + 96 + 5 + 2) - 1
    assert wire[mccl_at] == 1
    for bad in (
        too_many_rules,
        wire[:mccl_at] + b"\x00" + wire[mccl_at + 1 :],
        wire[:mccl_at] + b"\x08" + wire[mccl_at + 1 :],
        wire[:-3],
    ):
        with pytest.raises(DecodeError):
            Capability.decode(bad)
    # Two hops but mccl 1.
    two = _cap(ids, 2).sign(ids.controller, ids.member.address).sign(ids.member, ids.other.address)
    w2 = two.encode()
    with pytest.raises(DecodeError):
        Capability.decode(w2[:mccl_at] + b"\x01" + w2[mccl_at + 1 :])


def test_capability_foreign_signature_type(ids: Ids) -> None:
    body = _cap(ids).encode()[: -(5 + 2)]  # up to mccl
    hop = ids.member.address.to_bytes(5, "big") + ids.controller.address.to_bytes(5, "big")
    wire = body + hop + H("02 0003 aabbcc 0000000000 0002 ffff".replace(" ", ""))
    cap = Capability.decode(wire)
    assert cap.custody == (CustodyEntry(ids.member.address, ids.controller.address),)
    with pytest.raises(DecodeError):  # signature type 1 but length not 96
        Capability.decode(body + hop + H("010005") + bytes(5) + bytes(7))


def test_write_validation(ids: Ids) -> None:
    cap = _cap(ids)
    hop = CustodyEntry(ids.member.address, ids.controller.address)
    for bad in (
        replace(cap, custody=(hop, hop)),  # longer than mccl 1
        replace(cap, custody=(CustodyEntry(0, 1),)),
        replace(cap, custody=(CustodyEntry(1, 1, b"short"),)),
        replace(cap, rules=(ActionAccept(),) * 65),
    ):
        w = Writer()
        with pytest.raises(LocalProtocolError):
            bad.write(w)
        assert len(w) == 0
    for rec in (
        Tag(1, 1, 1, 1, 1, signature=b"x"),
        Revocation(1, 1, 1, 1, 1, 1, 1, signature=b"x"),
        CertificateOfOwnership(1, 1, 1, 1, signature=b"x"),
    ):
        w = Writer()
        with pytest.raises(LocalProtocolError):
            rec.write(w)
        assert len(w) == 0


# --- tag -------------------------------------------------------------------------------------


def test_tag(ids: Ids) -> None:
    tag = Tag(7, 42, ids.nwid, TS, ids.member.address)
    signed = tag.sign(ids.controller)
    wire = signed.encode()
    assert len(wire) == 135
    body = (
        ids.nwid.to_bytes(8, "big")
        + TS.to_bytes(8, "big")
        + H("00000007 0000002a".replace(" ", ""))
        + ids.member.address.to_bytes(5, "big")
        + ids.controller.address.to_bytes(5, "big")
    )
    assert signed.signing_message() == MARK + body + H("0000") + MARK
    assert wire == body + H("010060") + signed.signature + H("0000")
    assert Tag.decode(wire) == signed
    assert signed.verify(ids.controller)
    assert not signed.verify(ids.member)
    assert not replace(signed, value=43).verify(ids.controller)
    assert not replace(signed, issued_to=ids.other.address).verify(ids.controller)
    assert not replace(signed, signature=_flip(signed.signature, 90)).verify(ids.controller)
    assert not tag.sign(ids.member).verify(ids.member)  # not the controller
    # Extra fields and a foreign signature block are skipped.
    odd = body + H("00 0002 abcd 0003 010203".replace(" ", ""))
    assert Tag.decode(odd) == replace(signed, signature=EMPTY_SIGNATURE)
    with pytest.raises(DecodeError):
        Tag.decode(wire[:-1])


# --- certificate of ownership ----------------------------------------------------------------


def test_coo(ids: Ids) -> None:
    things = (
        OwnedThing.ip(IPv4Address("10.1.2.3")),
        OwnedThing.ip(IPv6Address("fd00::1")),
        OwnedThing.mac(0x0A0B0C0D0E0F),
    )
    coo = CertificateOfOwnership(ids.nwid, TS, 1, ids.member.address, things, flags=0)
    signed = coo.sign(ids.controller)
    wire = signed.encode()
    assert len(wire) == 8 + 8 + 8 + 4 + 2 + 3 * 17 + 5 + 5 + 99 + 2
    assert wire[30:47] == H("02 0a010203".replace(" ", "")) + bytes(12)
    assert CertificateOfOwnership.decode(wire) == signed
    assert signed.verify(ids.controller)
    assert not signed.verify(ids.other)
    assert not replace(signed, things=things[:2]).verify(ids.controller)
    assert signed.signing_message() == MARK + wire[: -(99 + 2)] + H("0000") + MARK
    assert signed.owns_ip(IPv4Address("10.1.2.3")) and not signed.owns_ip(IPv4Address("10.1.2.4"))
    assert signed.owns_ip(IPv6Address("fd00::1"))
    assert signed.owns_mac(0x0A0B0C0D0E0F) and not signed.owns_mac(0x0A0B0C0D0E0E)
    assert things[2].type == ThingType.MAC
    with pytest.raises(ValueError):
        OwnedThing(ThingType.IPV4, b"\x00" * 4)


def test_coo_limits(ids: Ids) -> None:
    thing = OwnedThing.ip(IPv4Address("10.0.0.1"))
    with pytest.raises(LocalProtocolError):
        CertificateOfOwnership(ids.nwid, TS, 1, 5, (thing,) * 17).encode()
    wire = CertificateOfOwnership(ids.nwid, TS, 1, 5, (thing,) * 16).encode()
    assert len(CertificateOfOwnership.decode(wire).things) == 16
    over = wire[:28] + (17).to_bytes(2, "big") + wire[30:] + bytes(17)
    with pytest.raises(DecodeError):
        CertificateOfOwnership.decode(over)
    huge = wire[:28] + b"\xff\xff" + wire[30:]
    with pytest.raises(DecodeError):
        CertificateOfOwnership.decode(huge)


# --- revocation ------------------------------------------------------------------------------


def test_revocation(ids: Ids) -> None:
    rev = Revocation(0x11223344, ids.nwid, 0, TS, 1, ids.member.address, CredentialType.COM)
    signed = rev.sign(ids.controller)
    wire = signed.encode()
    assert len(wire) == 152
    body = (
        H("00000000 11223344".replace(" ", ""))
        + ids.nwid.to_bytes(8, "big")
        + H("00000000 00000000".replace(" ", ""))
        + TS.to_bytes(8, "big")
        + (1).to_bytes(8, "big")
        + ids.member.address.to_bytes(5, "big")
        + ids.controller.address.to_bytes(5, "big")
        + b"\x01"
    )
    assert wire[: len(body)] == body
    assert signed.signing_message() == MARK + body + H("0000") + MARK
    assert Revocation.decode(wire) == signed
    assert signed.verify(ids.controller) and signed.fast_propagate
    assert not signed.verify(ids.member)
    assert not replace(signed, threshold=TS + 1).verify(ids.controller)
    assert not replace(signed, credential_type=CredentialType.TAG).verify(ids.controller)
    # The reserved words are ignored on read.
    noisy = b"\xff" * 4 + wire[4:16] + b"\xee" * 4 + wire[20:]
    assert Revocation.decode(noisy) == signed
    assert controller_for(ids.nwid) == ids.controller.address


# --- NETWORK_CREDENTIALS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_creds(ids: Ids) -> NetworkCredentials:
    com = CertificateOfMembership.issue(TS, DELTA, ids.nwid, ids.member).sign(ids.controller)
    cap = _cap(ids).sign(ids.controller, ids.member.address)
    tag = Tag(1, 2, ids.nwid, TS, ids.member.address).sign(ids.controller)
    rev = Revocation(5, ids.nwid, 1, TS, 0, ids.other.address, CredentialType.TAG).sign(
        ids.controller
    )
    thing = OwnedThing.ip(IPv4Address("10.0.0.9"))
    coo = CertificateOfOwnership(ids.nwid, TS, 1, ids.member.address, (thing,))
    return NetworkCredentials((com,), (cap,), (tag,), (rev,), (coo.sign(ids.controller),))


def test_network_credentials_round_trip(full_creds: NetworkCredentials) -> None:
    wire = full_creds.encode()
    assert wire[272] == 0  # COM list terminator
    assert wire[273:275] == H("0001")
    assert NetworkCredentials.decode(wire) == full_creds
    assert NetworkCredentials.VERB == 0x0A
    empty = NetworkCredentials()
    assert empty.encode() == H("00 0000 0000 0000 0000".replace(" ", ""))
    assert NetworkCredentials.decode(empty.encode()) == empty
    # The controller's deauthorisation push: 0x00, 0 caps, 0 tags, 1 revocation, 0 COOs.
    rev_only = NetworkCredentials(revocations=full_creds.revocations)
    assert rev_only.encode()[:7] == H("00 0000 0000 0001".replace(" ", ""))


def test_network_credentials_old_senders(full_creds: NetworkCredentials) -> None:
    com = full_creds.coms[0].encode()
    assert NetworkCredentials.decode(b"") == NetworkCredentials()
    assert NetworkCredentials.decode(com) == NetworkCredentials(coms=full_creds.coms)
    assert NetworkCredentials.decode(com + b"\x00") == NetworkCredentials(coms=full_creds.coms)
    caps = b"\x00\x01" + full_creds.capabilities[0].encode()
    assert NetworkCredentials.decode(com + b"\x00" + caps) == NetworkCredentials(
        coms=full_creds.coms, capabilities=full_creds.capabilities
    )
    # Trailing bytes after the COO section are ignored.
    assert NetworkCredentials.decode(full_creds.encode() + b"junk") == full_creds


def test_network_credentials_partial(full_creds: NetworkCredentials) -> None:
    com = full_creds.coms[0].encode()
    creds, err = NetworkCredentials.decode_partial(com + b"\x00\x00\x02" + b"\x01")
    assert creds.coms == full_creds.coms and err is not None
    with pytest.raises(DecodeError):
        NetworkCredentials.decode(com + b"\x05")
    ok, none = NetworkCredentials.decode_partial(full_creds.encode())
    assert ok == full_creds and none is None


def test_count_bounded_before_allocation() -> None:
    with pytest.raises(DecodeError):
        NetworkCredentials.decode(b"\x00\xff\xff" + bytes(100))


# --- properties and fuzzing ------------------------------------------------------------------

U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, (1 << 64) - 1)
I64 = st.integers(-(1 << 63), (1 << 63) - 1)
ADDR = st.integers(0, (1 << 40) - 1)
NZ_ADDR = st.integers(1, (1 << 40) - 1)
SIG = st.binary(min_size=96, max_size=96)

qualifier_lists = st.lists(st.tuples(U64, U64, U64), max_size=8).map(
    lambda qs: tuple(ComQualifier(i, v, d) for i, v, d in sorted(qs))
)
coms = st.one_of(
    st.builds(CertificateOfMembership, qualifier_lists),
    st.builds(CertificateOfMembership, qualifier_lists, NZ_ADDR, SIG),
)
caps = st.integers(1, 7).flatmap(
    lambda mccl: st.builds(
        Capability,
        U32,
        U64,
        I64,
        st.lists(any_rules, max_size=6).map(tuple),
        st.just(mccl),
        st.lists(st.builds(CustodyEntry, NZ_ADDR, ADDR, SIG), max_size=mccl).map(tuple),
    )
)
tags = st.builds(Tag, U32, U32, U64, I64, ADDR, ADDR, SIG)
things = st.builds(OwnedThing, st.integers(0, 255), st.binary(min_size=16, max_size=16))
coos = st.builds(
    CertificateOfOwnership,
    U64,
    I64,
    U32,
    ADDR,
    st.lists(things, max_size=16).map(tuple),
    U64,
    ADDR,
    SIG,
)
revs = st.builds(Revocation, U32, U64, U32, I64, U64, ADDR, st.integers(0, 255), ADDR, SIG)
creds = st.builds(
    NetworkCredentials,
    st.lists(coms, max_size=2).map(tuple),
    st.lists(caps, max_size=2).map(tuple),
    st.lists(tags, max_size=2).map(tuple),
    st.lists(revs, max_size=2).map(tuple),
    st.lists(coos, max_size=2).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(coms, caps, tags, coos, revs)
def test_each_credential_round_trips(
    com: CertificateOfMembership,
    cap: Capability,
    tag: Tag,
    coo: CertificateOfOwnership,
    rev: Revocation,
) -> None:
    assert CertificateOfMembership.decode(com.encode()) == com
    assert Capability.decode(cap.encode()) == cap
    assert Tag.decode(tag.encode()) == tag
    assert CertificateOfOwnership.decode(coo.encode()) == coo
    assert Revocation.decode(rev.encode()) == rev
    r = Reader(cap.encode() + tag.encode())
    assert Capability.read(r) == cap and Tag.read(r) == tag and r.at_end()


@settings(max_examples=60, deadline=None)
@given(creds)
def test_network_credentials_property(c: NetworkCredentials) -> None:
    assert NetworkCredentials.decode(c.encode()) == c


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random(data: bytes) -> None:
    for parse in (
        NetworkCredentials.decode,
        CertificateOfMembership.decode,
        Capability.decode,
        Tag.decode,
        CertificateOfOwnership.decode,
        Revocation.decode,
    ):
        with contextlib.suppress(DecodeError):
            parse(data)


@settings(max_examples=150, deadline=None)
@given(creds, st.data())
def test_fuzz_truncated_and_mutated(c: NetworkCredentials, data: st.DataObject) -> None:
    wire = bytearray(c.encode())
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(DecodeError):
        NetworkCredentials.decode(bytes(wire[:cut]))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        NetworkCredentials.decode(bytes(wire))
