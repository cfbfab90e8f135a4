"""Verb payload codecs: layouts, reference quirks, and round trips for every verb.

The strategies at the top build canonical records (what a decoder can produce); the fuzz tests in
``test_verbs_fuzz.py`` reuse them to derive truncated and mutated inputs.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.strategies import (
    IDENTITIES,
    IDENTITY_BYTES,
    PAYLOADS,
    VECTORS,
    H,
    com_bytes,
)
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import IDX_PAYLOAD, ErrorCode, Verb
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import (
    Ack,
    Echo,
    Error,
    ExtFrame,
    ExtFrameSubtype,
    Frame,
    GatherResults,
    Hello,
    MoonRef,
    MulticastFrame,
    MulticastGather,
    MulticastLike,
    MulticastSubscription,
    NetconfAck,
    NetworkConfigChunk,
    NetworkConfigRequest,
    Nop,
    OkEcho,
    OkExtFrame,
    OkHello,
    OkMulticastFrame,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkOther,
    OkWhois,
    PathNegotiationRequest,
    PushDirectPaths,
    PushedPath,
    QosMeasurement,
    QosRecord,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    VerbPayload,
    Whois,
    decode_ok,
    decode_payload,
)

# --- strategies --------------------------------------------------------------------------------


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    msg: VerbPayload = data.draw(PAYLOADS[name])
    assert PAYLOAD_VERBS.get(name, Verb.OK) == msg.VERB
    wire = msg.encode()
    assert type(msg).decode(wire) == msg
    assert decode_payload(msg.VERB, wire) == msg
    assert type(msg).decode(wire).encode() == wire
    # write() appends into an existing writer without disturbing what is there.
    w = Writer(b"head")
    msg.write(w)
    assert bytes(w.buf) == b"head" + wire


PAYLOAD_VERBS: dict[str, Verb] = {
    "nop": Verb.NOP,
    "hello": Verb.HELLO,
    "error": Verb.ERROR,
    "whois": Verb.WHOIS,
    "rendezvous": Verb.RENDEZVOUS,
    "frame": Verb.FRAME,
    "ext_frame": Verb.EXT_FRAME,
    "echo": Verb.ECHO,
    "multicast_like": Verb.MULTICAST_LIKE,
    "ncr": Verb.NETWORK_CONFIG_REQUEST,
    "network_config": Verb.NETWORK_CONFIG,
    "multicast_gather": Verb.MULTICAST_GATHER,
    "multicast_frame": Verb.MULTICAST_FRAME,
    "push_direct_paths": Verb.PUSH_DIRECT_PATHS,
    "ack": Verb.ACK,
    "qos": Verb.QOS_MEASUREMENT,
    "user_message": Verb.USER_MESSAGE,
    "remote_trace": Verb.REMOTE_TRACE,
    "path_negotiation": Verb.PATH_NEGOTIATION_REQUEST,
}


def test_every_verb_has_a_round_trip_strategy() -> None:
    assert set(PAYLOAD_VERBS) | {n for n in PAYLOADS if n.startswith("ok_")} == set(PAYLOADS)
    assert set(PAYLOAD_VERBS.values()) | {Verb.OK} == set(Verb) - {
        Verb.NETWORK_CREDENTIALS,  # the credentials codec's
        Verb.UNASSIGNED_0F,
        Verb.DEPRECATED_11,
    }


@pytest.mark.parametrize("verb", [0x0F, 0x11, *range(0x17, 0x20)])
def test_unassigned_verbs_are_nop(verb: int) -> None:
    assert decode_payload(verb, b"anything at all") == Nop()
    assert decode_payload(verb, b"") == Nop()


def test_decode_payload_rejects_unmasked_verbs() -> None:
    with pytest.raises(LocalProtocolError):
        decode_payload(0x86, b"")
    with pytest.raises(LocalProtocolError):
        decode_payload(-1, b"")


def test_network_credentials_delegates() -> None:
    from ztnode.wire.credentials import NetworkCredentials

    payload = b"\x00" + b"\x00\x00" * 4
    assert decode_payload(Verb.NETWORK_CREDENTIALS, payload) == NetworkCredentials.decode(payload)


def test_nop_accepts_anything() -> None:
    assert Nop.decode(b"\xff" * 100) == Nop()
    assert Nop().encode() == b""


# --- HELLO -------------------------------------------------------------------------------------

HELLO_VECTOR = VECTORS["reference_generated"]["hello"][0]


def test_hello_reference_vector() -> None:
    plain = H(HELLO_VECTOR["plain_packet"])
    payload = plain[IDX_PAYLOAD:]
    hello = Hello.decode(payload)
    assert hello.protocol_version == 12
    assert (hello.version_major, hello.version_minor, hello.version_revision) == (1, 14, 1)
    assert hello.timestamp == HELLO_VECTOR["timestamp"] == 1700000000000
    assert hello.identity == IDENTITIES[0]
    assert hello.identity.address == 0x8E4DF28B72
    assert hello.destination == InetAddress(ip_address("104.194.8.134"), 9993)
    planet = VECTORS["worlds"]["default_planet"]
    assert hello.planet_id == planet["id"] == 149604618
    assert hello.planet_timestamp == planet["timestamp"] == 1644592324813
    assert hello.moons == ()
    assert hello.moon_refs() == ()
    # Re-encoding reproduces the reference's bytes, and the tail starts where it applied
    # cryptField.
    assert hello.encode() == payload
    encoded, tail = hello.encode_with_tail_offset()
    assert encoded == payload
    assert tail is not None
    assert IDX_PAYLOAD + tail == HELLO_VECTOR["crypt_field_start"] == 135
    assert Hello.encrypted_tail_offset(payload) == tail


def test_hello_tail_offset_readable_from_ciphertext() -> None:
    # A receiver finds the tail before it can decrypt it: the head is clear text.
    encrypted = H(HELLO_VECTOR["after_cryptfield"])[IDX_PAYLOAD:]
    assert IDX_PAYLOAD + Hello.encrypted_tail_offset(encrypted) == 135  # type: ignore[operator]
    # The encrypted count (0x0680) would be read as 1664 moons without the 17*1664 bytes.
    with pytest.raises(DecodeError, match="count"):
        Hello.decode(encrypted)


def _hello_head(identity_bytes: bytes = IDENTITY_BYTES[1]) -> bytes:
    return H("0c010e0001") + (1234).to_bytes(8, "big") + identity_bytes


def test_hello_optional_fields_follow_the_reference() -> None:
    head = _hello_head()
    # Nothing after the identity: an old node.
    h = Hello.decode(head)
    assert (h.destination, h.planet_id, h.moons) == (None, None, None)
    assert Hello.encrypted_tail_offset(head) is None
    # Address only.
    h = Hello.decode(head + H("0401020304270f"))
    assert h.destination == InetAddress(IPv4Address("1.2.3.4"), 9999)
    assert h.planet_id is None
    # Fewer than 16 bytes after the address: no planet, and the bytes are the encrypted tail.
    data = head + H("00") + b"\x00\x00" + bytes(13)
    assert Hello.encrypted_tail_offset(data) == len(head) + 1
    h = Hello.decode(data)
    assert h.planet_id is None
    assert h.moons == ()
    # A single byte after the planet is not a count and is ignored (the reference needs 2).
    data = head + H("00") + bytes(16) + b"\x07"
    h = Hello.decode(data)
    assert (h.planet_id, h.planet_timestamp, h.moons) == (0, 0, None)
    assert Hello.encrypted_tail_offset(data) == len(head) + 17
    # Moons, including a non-moon type which is kept but not reported by moon_refs().
    moons = b"\x00\x02" + b"\x7f" + bytes(7) + b"\x01" + bytes(8) + b"\x01" + bytes(16)
    h = Hello.decode(head + H("00") + bytes(16) + moons + b"trailing junk")
    assert h.moons == (MoonRef(127, 1, 0), MoonRef(1, 0, 0))
    assert h.moon_refs() == (MoonRef(127, 1, 0),)


def test_hello_rejects_truncated_moons_and_bad_identity() -> None:
    head = _hello_head()
    with pytest.raises(DecodeError):
        Hello.decode(head + H("00") + bytes(16) + b"\x00\x01" + bytes(16))
    with pytest.raises(DecodeError):
        Hello.decode(head[:-1])
    with pytest.raises(DecodeError):
        Hello.decode(head + H("09"))  # unknown InetAddress type


def test_hello_construction_rules() -> None:
    ident = IDENTITIES[0]
    with pytest.raises(LocalProtocolError):
        Hello(12, 1, 14, 1, 0, ident, None, 5, None)
    with pytest.raises(LocalProtocolError):
        Hello(12, 1, 14, 1, 0, ident, None, None, None, (MoonRef(127, 1, 0),))
    # An empty list without a planet is what a short HELLO decodes to, so it is allowed.
    h = Hello(12, 1, 14, 1, 0, ident, None, None, None, ())
    assert Hello.decode(h.encode()) == h
    h = Hello(12, 1, 14, 1, 0, ident)
    payload, tail = h.encode_with_tail_offset()
    assert tail is None
    assert payload.endswith(b"\x00")  # the null destination is always written


# --- ERROR -------------------------------------------------------------------------------------

PID = 0x0102030405060708


def test_error_need_membership_certificate_layout() -> None:
    e = Error.need_membership_certificate(Verb.FRAME, PID, 0x8056C2E21C000001)
    assert e.encode() == H("060102030405060708068056c2e21c000001")
    d = Error.decode(e.encode())
    assert d == e
    assert d.in_re_verb is Verb.FRAME
    assert d.code is ErrorCode.NEED_MEMBERSHIP_CERTIFICATE


def test_error_identity_collision() -> None:
    e = Error.identity_collision(PID)
    assert e.encode() == H("01010203040506070804")
    assert Error.decode(e.encode()).network_id is None


def test_error_unwanted_multicast() -> None:
    e = Error.unwanted_multicast(Verb.MULTICAST_FRAME, PID, 7, 0xFFFFFFFFFFFF, 0x0A000001)
    wire = H("0e0102030405060708080000000000000007ffffffffffff0a000001")
    assert e.encode() == wire
    assert Error.decode(wire) == e
    with pytest.raises(DecodeError):
        Error.decode(wire[:-1])


def test_error_authentication_required() -> None:
    base = H("0b0102030405060708090000000000000007")
    e = Error.decode(base + b"\x00\x05aU=xy" + b"extra")
    assert (e.network_id, e.dictionary, e.data) == (7, b"aU=xy", b"extra")
    e = Error.decode(base)
    assert (e.dictionary, e.data) == (None, b"")
    e = Error.decode(base + b"\x01")
    assert (e.dictionary, e.data) == (None, b"\x01")
    assert Error.decode(base + b"\x00\x00").dictionary == b""
    with pytest.raises(DecodeError):
        Error.decode(base + b"\x00\x09short")
    with pytest.raises(DecodeError):
        Error.decode(base[:-2])


def test_error_not_found_network_id_depends_on_in_re() -> None:
    ncr = H("0b01020304050607080300000000000000090003") + b"a=b"
    e = Error.decode(ncr)
    assert (e.network_id, e.data) == (9, b"\x00\x03a=b")  # dictionary not interpreted here
    with pytest.raises(DecodeError):
        Error.decode(H("0b0102030405060708030000"))  # NCR: nwid required
    e = Error.decode(H("040102030405060708050000"))  # in re WHOIS: optional
    assert (e.network_id, e.data) == (None, b"\x00\x00")
    assert Error.decode(H("0b0102030405060708050000000000000009")) == (
        Error.unsupported_operation(Verb.NETWORK_CONFIG_REQUEST, PID, 9)
    )


def test_error_unknown_code_keeps_payload() -> None:
    e = Error.decode(H("0101020304050607087fabcdef"))
    assert (e.code, e.data) == (0x7F, H("abcdef"))
    assert Error.decode(H("01010203040506070801")).data == b""
    with pytest.raises(DecodeError):
        Error.decode(H("0101020304050607"))


def test_error_construction_rules() -> None:
    with pytest.raises(LocalProtocolError):
        Error(Verb.FRAME, PID, ErrorCode.NEED_MEMBERSHIP_CERTIFICATE)
    with pytest.raises(LocalProtocolError):
        Error(Verb.FRAME, PID, ErrorCode.INVALID_REQUEST, network_id=1)
    with pytest.raises(LocalProtocolError):
        Error(Verb.FRAME, PID, ErrorCode.UNWANTED_MULTICAST, 1, mac=1)
    with pytest.raises(LocalProtocolError):
        Error(Verb.FRAME, PID, ErrorCode.NETWORK_ACCESS_DENIED, 1, dictionary=b"")
    with pytest.raises(LocalProtocolError):
        Error(Verb.NETWORK_CONFIG_REQUEST, PID, ErrorCode.OBJ_NOT_FOUND)
    with pytest.raises(LocalProtocolError):
        Error(Verb.WHOIS, PID, ErrorCode.OBJ_NOT_FOUND, data=bytes(8))
    with pytest.raises(LocalProtocolError):
        Error(
            Verb.NETWORK_CONFIG_REQUEST,
            PID,
            ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
            1,
            data=b"ab",
        )


# --- OK ----------------------------------------------------------------------------------------


def test_ok_hello_layout_and_worlds() -> None:
    ok = OkHello(PID, 1700000000000, 12, 1, 14, 1, InetAddress(ip_address("10.0.0.2"), 9993), b"")
    wire = H("0101020304050607080000018bcfe568000c010e0001040a00000227090000")
    assert ok.encode() == wire
    assert decode_ok(wire) == ok
    assert ok.in_re_verb == Verb.HELLO
    assert ok.parse_worlds() == ()
    # Old responders stop after the address, or even before it.
    assert decode_ok(wire[:-2]) == replace(ok, worlds=None)
    assert decode_ok(wire[:-9]) == replace(ok, surface=None, worlds=None)
    with pytest.raises(DecodeError):
        decode_ok(wire[:-2] + b"\x00\x05abc")


def test_ok_hello_parse_worlds_uses_world_codec() -> None:
    world = pytest.importorskip("ztnode.wire.world")
    planet = H(VECTORS["worlds"]["default_planet"]["hex"])
    ok = OkHello(PID, 0, 12, 1, 14, 1, None, planet + planet)
    worlds = ok.parse_worlds()
    assert len(worlds) == 2
    assert all(isinstance(w, world.World) for w in worlds)
    with pytest.raises(DecodeError):
        replace(ok, worlds=planet[:-1]).parse_worlds()


def test_ok_whois_keeps_every_identity_that_parses() -> None:
    head = H("040102030405060708")
    ok = decode_ok(head + IDENTITY_BYTES[1] + IDENTITY_BYTES[2])
    assert isinstance(ok, OkWhois)
    assert ok.identities == (IDENTITIES[1], IDENTITIES[2])
    # Junk after the first identity is tolerated, as the reference reads only the first.
    ok = decode_ok(head + IDENTITY_BYTES[3] + b"\x01\x02junk")
    assert isinstance(ok, OkWhois)
    assert ok.identities == (IDENTITIES[3],)
    with pytest.raises(DecodeError):
        decode_ok(head)
    with pytest.raises(DecodeError):
        decode_ok(head + IDENTITY_BYTES[1][:-3])
    with pytest.raises(LocalProtocolError):
        OkWhois(PID, ())


def test_ok_whois_writes_public_identities_only() -> None:
    kg = VECTORS["reference_generated"]["identity_binary"][0]
    secret = Identity.read(Reader(H(kg["with_private_binary"])))
    assert OkWhois(PID, (secret,)).encode()[9:] == H(kg["public_binary"])


def test_in_re_echo_is_ambiguous() -> None:
    # The ack of a NETWORK_CONFIG push is an OK in re ECHO (0x08), not 0x0c.
    ack = NetconfAck(PID, 0x8056C2E21C000001, 0x1122334455667788)
    wire = ack.encode()
    assert wire == H("0801020304050607088056c2e21c0000011122334455667788")
    assert ack.in_re_verb == Verb.ECHO
    decoded = decode_payload(Verb.OK, wire)
    assert isinstance(decoded, OkEcho)
    assert decoded.data == wire[9:]
    assert decoded.as_netconf_ack() == ack
    assert NetconfAck.decode(wire) == ack
    assert OkEcho(PID, b"").as_netconf_ack() is None
    assert OkEcho(PID, bytes(17)).as_netconf_ack() is None
    with pytest.raises(DecodeError):
        NetconfAck.decode(wire + b"\x00")


def test_ok_records_check_their_in_re_verb() -> None:
    wire = OkExtFrame(PID, 5).encode()
    assert wire == H("0701020304050607080000000000000005")
    with pytest.raises(DecodeError):
        OkEcho.decode(wire)
    with pytest.raises(DecodeError):
        OkHello.decode(wire)
    with pytest.raises(LocalProtocolError):
        OkOther(Verb.HELLO, PID)


def test_ok_other_verbs_stay_raw() -> None:
    ok = decode_ok(H("100102030405060708abcd"))
    assert ok == OkOther(Verb.PUSH_DIRECT_PATHS, PID, H("abcd"))
    assert decode_ok(H("810102030405060708")) == OkOther(0x81, PID)  # high bits: no match
    with pytest.raises(DecodeError):
        decode_ok(b"")


def test_ok_network_config_request() -> None:
    chunk = NetworkConfigChunk(7, b"v=7\n", 0, 99, 4, 0, bytes(range(96)))
    ok = OkNetworkConfigRequest(PID, chunk)
    wire = ok.encode()
    assert wire[:9] == H("0b0102030405060708")
    assert wire[9:] == chunk.encode()
    assert decode_ok(wire) == ok
    legacy = OkNetworkConfigRequest(PID, NetworkConfigChunk.legacy(7, b"v=7"))
    assert legacy.encode() == H("0b010203040506070800000000000000070003") + b"v=7"
    assert decode_ok(legacy.encode()) == legacy


def test_ok_multicast_gather_layout() -> None:
    ok = OkMulticastGather(PID, 1, 0xFFFFFFFFFFFF, 0x0A000001, 3, (0x1111111111, 0x2222222222))
    wire = H(
        "0d01020304050607080000000000000001ffffffffffff0a00000100000003000211111111112222222222"
    )
    assert ok.encode() == wire
    assert decode_ok(wire) == ok


def test_ok_multicast_frame_gather_flag_is_0x02() -> None:
    ok = OkMulticastFrame(PID, 1, 2, 3, 0x02, None, GatherResults(1, (0x0102030405,)))
    wire = ok.encode()
    assert wire[27] == 0x02
    assert wire[28:] == H("0000000100010102030405")
    assert decode_ok(wire) == ok
    bare = OkMulticastFrame(PID, 1, 2, 3, 0)
    assert decode_ok(bare.encode()) == bare
    with pytest.raises(LocalProtocolError):
        OkMulticastFrame(PID, 1, 2, 3, 0x02)


@pytest.mark.parametrize(
    "wire",
    [
        # OK(GATHER) claiming 65535 members with two present.
        H("0d0102030405060708" + "00" * 18 + "00000009ffff" + "11" * 10),
        # OK(MULTICAST_FRAME) gather results claiming 4096 members.
        H("0e0102030405060708" + "00" * 18 + "02000000001000" + "22" * 5),
    ],
)
def test_ok_gather_counts_checked_before_allocation(wire: bytes) -> None:
    with pytest.raises(DecodeError, match="count"):
        decode_ok(wire)


# --- WHOIS, RENDEZVOUS, ECHO -------------------------------------------------------------------


def test_whois() -> None:
    w = Whois((0x8E4DF28B72, 0xCAFE9EFEB9))
    assert w.encode() == H("8e4df28b72cafe9efeb9")
    assert Whois.decode(H("8e4df28b72cafe9efeb9") + b"\x01\x02") == w  # partial tail ignored
    assert Whois.decode(b"") == Whois(())


def test_rendezvous() -> None:
    r = Rendezvous.create(0x778CDE7190, InetAddress(ip_address("103.195.103.66"), 9993))
    wire = H("00778cde719027090467c36742")
    assert r.encode() == wire
    assert Rendezvous.decode(wire) == r
    assert r.endpoint == InetAddress(ip_address("103.195.103.66"), 9993)
    v6 = Rendezvous(1, ip_address("2001:49f0:d0db:2::2"), 9993)
    assert v6.encode()[8] == 16
    assert Rendezvous.decode(v6.encode()) == v6
    for bad in (H("00778cde71902709056767676767"), wire[:-1]):
        with pytest.raises(DecodeError):
            Rendezvous.decode(bad)


def test_echo() -> None:
    assert Echo.decode(b"") == Echo()
    assert Echo(b"ping").encode() == b"ping"


# --- FRAME and EXT_FRAME -----------------------------------------------------------------------


def test_frame_layout() -> None:
    f = Frame(0x8056C2E21C000001, 0x0800, b"\x45\x00")
    assert f.encode() == H("8056c2e21c00000108004500")
    assert Frame.decode(f.encode()) == f
    assert Frame.decode(f.encode()[:10]).payload == b""
    with pytest.raises(DecodeError):
        Frame.decode(f.encode()[:9])


@pytest.mark.parametrize(
    ("subtype", "ack", "flags"),
    [
        (ExtFrameSubtype.NORMAL, False, 0x00),
        (ExtFrameSubtype.TEE_OUTBOUND, False, 0x02),
        (ExtFrameSubtype.REDIRECT_OUTBOUND, False, 0x04),
        (ExtFrameSubtype.WATCH_OUTBOUND, True, 0x16),
        (ExtFrameSubtype.TEE_INBOUND, False, 0x08),
        (ExtFrameSubtype.REDIRECT_INBOUND, False, 0x0A),
        (ExtFrameSubtype.WATCH_INBOUND, True, 0x1C),
    ],
)
def test_ext_frame_subtype_flags_as_the_code_sends_them(
    subtype: ExtFrameSubtype, ack: bool, flags: int
) -> None:
    f = ExtFrame.create(
        1, 0x0212344A9A52, 0x3212567890AB, 0x86DD, b"x", subtype=subtype, ack_requested=ack
    )
    assert f.flags == flags
    wire = f.encode()
    assert wire == H("0000000000000001") + bytes([flags]) + H("0212344a9a523212567890ab86dd") + b"x"
    d = ExtFrame.decode(wire)
    assert (d.subtype, d.ack_requested, d.com) == (subtype, ack, None)


def test_ext_frame_truncated() -> None:
    wire = ExtFrame.create(1, 2, 3, 4, b"").encode()
    assert ExtFrame.decode(wire).payload == b""
    with pytest.raises(DecodeError):
        ExtFrame.decode(wire[:-1])


def test_flag_and_optional_field_must_agree() -> None:
    with pytest.raises(LocalProtocolError):
        ExtFrame(1, 0x01, 2, 3, 4, b"")
    with pytest.raises(LocalProtocolError):
        MulticastFrame(1, 0x02, 2, 3, 4, b"")
    with pytest.raises(LocalProtocolError):
        MulticastFrame(1, 0x00, 2, 3, 4, b"", source_mac=5)
    with pytest.raises(LocalProtocolError):
        MulticastGather(1, 0x01, 2, 3, 4)


def test_inline_com_positions() -> None:
    from ztnode.wire.credentials import CertificateOfMembership

    raw = com_bytes(
        [(0, 100, 5), (1, 7, 0), (2, 0x1122334455, 2**64 - 1)], 0x1234567890, bytes(range(96))
    )
    com = CertificateOfMembership.read(Reader(raw))
    # EXT_FRAME: right after the flags.
    f = ExtFrame.create(7, 1, 2, 0x0800, b"p", com=com)
    assert f.flags == 0x01
    assert f.encode() == H("000000000000000701") + raw + H("0000000000010000000000020800") + b"p"
    assert ExtFrame.decode(f.encode()) == f
    # MULTICAST_FRAME: after the flags, before the gather limit and source MAC.
    m = MulticastFrame.create(
        7, 0xFFFFFFFFFFFF, 9, 0x0806, b"a", gather_limit=5, source_mac=3, com=com
    )
    assert m.flags == 0x07
    assert m.encode() == (
        H("000000000000000707") + raw + H("00000005000000000003ffffffffffff000000090806") + b"a"
    )
    assert MulticastFrame.decode(m.encode()) == m
    # MULTICAST_GATHER: last.
    g = MulticastGather.create(7, 0xFFFFFFFFFFFF, 9, 32, com)
    assert g.encode() == H("000000000000000701ffffffffffff0000000900000020") + raw
    assert MulticastGather.decode(g.encode()) == g
    # OK(MULTICAST_FRAME): after its flags, before the gather results.
    ok = OkMulticastFrame(PID, 7, 1, 2, 0x03, com, GatherResults(0, ()))
    assert ok.encode() == H("0e010203040506070800000000000000070000000000010000000203") + raw + H(
        "000000000000"
    )
    assert decode_ok(ok.encode()) == ok


def test_gather_discards_a_broken_com_like_the_reference() -> None:
    wire = H("000000000000000701ffffffffffff000000090000002002")
    g = MulticastGather.decode(wire)
    assert (g.com, g.flags, g.gather_limit) == (None, 0x00, 32)
    # EXT_FRAME has no such leniency.
    with pytest.raises(DecodeError):
        ExtFrame.decode(H("00000000000000070102") + bytes(14))


# --- multicast ---------------------------------------------------------------------------------


def test_multicast_like() -> None:
    like = MulticastLike(
        (
            MulticastSubscription(1, 0xFFFFFFFFFFFF, 0x0A000001),
            MulticastSubscription(1, 0x3333FF000001, 0),
        )
    )
    wire = like.encode()
    assert wire == H("0000000000000001ffffffffffff0a00000100000000000000013333ff00000100000000")
    assert MulticastLike.decode(wire) == like
    assert MulticastLike.decode(b"") == MulticastLike(())
    with pytest.raises(DecodeError):
        MulticastLike.decode(wire[:-1])


def test_multicast_frame_layout() -> None:
    m = MulticastFrame.create(1, 0xFFFFFFFFFFFF, 0x0A000001, 0x0806, b"arp", replicate=True)
    assert m.flags == 0x08
    assert m.replicate
    assert m.encode() == H("000000000000000108ffffffffffff0a0000010806") + b"arp"
    assert MulticastFrame.decode(m.encode()) == m
    # Empty frames decode: the reference still answers the implicit gather.
    m = MulticastFrame.create(1, 0xFFFFFFFFFFFF, 0, 0x0800, b"", gather_limit=16)
    assert MulticastFrame.decode(m.encode()) == m
    with pytest.raises(DecodeError):
        MulticastFrame.decode(m.encode()[:-1])


def test_multicast_gather_layout() -> None:
    g = MulticastGather.create(1, 0x3333FF000001, 0, 0x20)
    assert g.encode() == H("0000000000000001003333ff0000010000000000000020")
    assert MulticastGather.decode(g.encode()) == g


# --- network config ----------------------------------------------------------------------------


def test_network_config_request_variants() -> None:
    full = NetworkConfigRequest(1, b"v=7", 5, 6)
    wire = full.encode()
    assert wire == H("00000000000000010003") + b"v=7" + H("00000000000000050000000000000006")
    assert NetworkConfigRequest.decode(wire) == full
    assert NetworkConfigRequest.decode(wire[:13]) == NetworkConfigRequest(1, b"v=7")
    assert NetworkConfigRequest.decode(wire[:20]) == NetworkConfigRequest(1, b"v=7")
    assert NetworkConfigRequest.decode(wire[:8]) == NetworkConfigRequest(1)
    assert NetworkConfigRequest.decode(wire + b"more") == full
    for cut in (9, 12, 4):
        with pytest.raises(DecodeError):
            NetworkConfigRequest.decode(wire[:cut])
    with pytest.raises(LocalProtocolError):
        NetworkConfigRequest(1, b"", 5)


def test_config_chunk_signed_portion_and_signing() -> None:
    def fake_sign(msg: bytes) -> bytes:
        return (msg * 96)[:96]

    chunk = NetworkConfigChunk.signed(
        0x8056C2E21C000001,
        b"abc",
        update_id=9,
        total_length=10,
        chunk_index=7,
        sign=fake_sign,
        flags=1,
    )
    signed = H("8056c2e21c0000010003") + b"abc" + H("0100000000000000090000000a00000007")
    assert chunk.signed_portion() == signed
    assert chunk.signature == fake_sign(signed)
    assert chunk.fast_propagate
    assert not chunk.is_legacy
    wire = chunk.encode()
    assert wire == signed + H("010060") + fake_sign(signed)
    decoded = NetworkConfigChunk.decode(wire)
    assert decoded == chunk
    assert decoded.signed_portion() == wire[: len(signed)]
    assert NetworkConfigChunk.decode(wire + b"junk") == chunk
    assert decode_payload(Verb.NETWORK_CONFIG, wire) == chunk


def test_config_chunk_rejections() -> None:
    sig = bytes(96)
    good = NetworkConfigChunk(1, b"abc", 0, 9, 10, 7, sig).encode()
    bad_type = bytearray(good)
    bad_type[-99] = 2
    bad_len = bytearray(good)
    bad_len[-97] = 0x5F
    past_end = (
        NetworkConfigChunk(1, b"abc", 0, 9, 10, 7, sig)
        .encode()
        .replace(H("0000000a00000007"), H("0000000a00000008"))
    )
    for bad in (bytes(bad_type), bytes(bad_len), past_end, good[:-1], good[:12], good[:14]):
        with pytest.raises(DecodeError):
            NetworkConfigChunk.decode(bad)
    with pytest.raises(LocalProtocolError):
        NetworkConfigChunk(1, b"abc", 0, 9, 10, 7, bytes(95))
    with pytest.raises(LocalProtocolError):
        NetworkConfigChunk(1, b"abc", 0, 9, 3, 0, None)
    legacy = NetworkConfigChunk.decode(H("00000000000000010002") + b"hi")
    assert legacy == NetworkConfigChunk.legacy(1, b"hi")
    assert legacy.is_legacy
    assert legacy.total_length == 2


# --- PUSH_DIRECT_PATHS -------------------------------------------------------------------------


def test_push_direct_paths_layout() -> None:
    p4 = PushedPath.for_address(InetAddress(ip_address("10.0.0.1"), 9993))
    p6 = PushedPath.for_address(InetAddress(ip_address("fd00::1"), 9993), flags=0x02)
    other = PushedPath(0x01, None, 0x09, b"xyz", ext=b"e")
    msg = PushDirectPaths((p4, p6, other))
    wire = msg.encode()
    assert wire == (
        H("0003")
        + H("00000004060a0000012709")
        + H("0200000612fd0000000000000000000000000000012709")
        + H("01000165090378797a")
    )
    assert 2 + sum(p.encoded_size() for p in msg.paths) == len(wire)
    decoded = PushDirectPaths.decode(wire + b"ignored")
    assert decoded == msg
    assert decoded.paths[1].cluster_redirect
    assert decoded.paths[2].forget
    assert decoded.paths[2].address is None


def test_push_direct_paths_rejections() -> None:
    with pytest.raises(DecodeError, match="count"):
        PushDirectPaths.decode(H("ffff") + bytes(20))
    with pytest.raises(DecodeError):
        PushDirectPaths.decode(H("000100000004050a00000127"))  # short IPv4
    with pytest.raises(DecodeError):
        PushDirectPaths.decode(H("000100000504"))  # ext runs past the end
    with pytest.raises(LocalProtocolError):
        PushedPath(0, None, 4)
    with pytest.raises(LocalProtocolError):
        PushedPath(0, InetAddress(ip_address("10.0.0.1"), 1), 6)


# --- multipath ---------------------------------------------------------------------------------


def test_qos_is_little_endian() -> None:
    q = QosMeasurement((QosRecord(0x0102030405060708, 0x0A0B), QosRecord(1, 2)))
    wire = q.encode()
    assert wire == H("08070605040302010b0a01000000000000000200")
    assert QosMeasurement.decode(wire) == q
    assert QosMeasurement.decode(b"") == QosMeasurement(())
    with pytest.raises(DecodeError):
        QosMeasurement.decode(wire[:-1])
    with pytest.raises(DecodeError):
        QosMeasurement.decode(bytes(1410))
    assert len(QosMeasurement.decode(bytes(1400)).records) == 140
    with pytest.raises(LocalProtocolError):
        QosMeasurement((QosRecord(0, 0),) * 141)
    with pytest.raises(ValueError):
        QosMeasurement((QosRecord(0, 70000),)).encode()


def test_ack_and_path_negotiation_are_big_endian_and_exact() -> None:
    assert Ack(0x01020304).encode() == H("01020304")
    assert Ack.decode(H("01020304")) == Ack(0x01020304)
    assert PathNegotiationRequest(-2).encode() == H("fffe")
    assert PathNegotiationRequest.decode(H("fffe")) == PathNegotiationRequest(-2)
    for cls, bad in (
        (Ack, H("010203")),
        (Ack, H("0102030405")),
        (PathNegotiationRequest, H("01")),
        (PathNegotiationRequest, H("000102")),
    ):
        with pytest.raises(DecodeError):
            cls.decode(bad)


# --- USER_MESSAGE, REMOTE_TRACE ----------------------------------------------------------------


def test_user_message() -> None:
    m = UserMessage(0x10000, b"hello")
    assert m.encode() == H("0000000000010000") + b"hello"
    assert UserMessage.decode(m.encode()) == m
    with pytest.raises(DecodeError):
        UserMessage.decode(bytes(7))


def test_remote_trace_follows_reference_filtering() -> None:
    big = b"x" * 10001
    wire = b"a=1\0\0" + big + b"\0" + b"b=2\0" + b"unterminated"
    assert RemoteTrace.decode(wire) == RemoteTrace((b"a=1", b"b=2"))
    assert RemoteTrace.decode(b"x" * 10000 + b"\0").records == (b"x" * 10000,)
    assert RemoteTrace((b"a=1", b"b=2")).encode() == b"a=1\0b=2\0"
    for bad in ((b"",), (b"a\0b",), (big,)):
        with pytest.raises(LocalProtocolError):
            RemoteTrace(bad)


# --- payload sizes stay proportional -----------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "payload"),
    [
        (Verb.HELLO, _hello_head() + H("00") + bytes(16) + H("ffff") + bytes(40)),
        (Verb.PUSH_DIRECT_PATHS, H("ffff")),
        (Verb.OK, H("0d0102030405060708") + bytes(18) + H("00000000ffff")),
    ],
)
def test_counts_beyond_the_data_are_rejected(verb: int, payload: bytes) -> None:
    with pytest.raises(DecodeError, match="count"):
        decode_payload(verb, payload)
