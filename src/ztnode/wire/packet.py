"""VL1 packets: the 27-byte header, armor/dearmor, cryptField, LZ4 compression, hop counting.

Layout (node/Packet.hpp:224-230; fact sheet ``protocol-core.md`` §4)::

    0   8  packet ID / IV (AES-GMAC-SIV replaces it with tag bytes 0..7)
    8   5  destination address
    13  5  source address
    18  1  flags FFCCCHHH: 0x80 legacy "encrypted", 0x40 fragmented, cipher, hops
    19  8  MAC (truncated Poly1305, GMAC-SIV tag bytes 8..15, or trusted-path ID)
    27  1  verb (inside the envelope; 0x80 = payload LZ4-compressed)
    28  …  payload

Everything works on one ``bytearray`` in place, because that is what a receive path holds and
because Python object churn, not the ciphers, dominates per-packet cost. Send order is
(§5, §6, §7; Switch.cpp:1130-1173):

1. :func:`new_packet`, append payload; 2. :func:`crypt_field` (HELLO only); 3. :func:`compress`;
4. :func:`set_fragmented` if :func:`~ztnode.wire.fragment.needs_fragmentation`;
5. :func:`armor`; 6. :func:`~ztnode.wire.fragment.split`.

Receive order is the reverse: reassemble, :func:`dearmor`, :func:`decompress`, cryptField.

The packet ID and key come in as arguments: nothing here reads a clock or the OS random source.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import lz4.block

from ztnode import accel
from ztnode.crypto import (
    SymmetricKey,
    salsa20_xor_into,
    salsa2012_poly1305_open_into,
    salsa2012_poly1305_seal_into,
)
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Buf
from ztnode.wire.constants import (
    COMPRESSION_MIN_PACKET,
    FLAG_ENCRYPTED_DEPRECATED,
    FLAG_FRAGMENTED,
    FLAGS_CIPHER_MASK,
    FLAGS_HOPS_MASK,
    FRAGMENT_INDICATOR,
    FRAGMENT_INDICATOR_INDEX,
    HEADER_SIZE,
    IDX_DEST,
    IDX_FLAGS,
    IDX_MAC,
    IDX_PAYLOAD,
    IDX_SOURCE,
    IDX_VERB,
    MAX_DECOMPRESSED_PAYLOAD,
    MAX_PACKET_LENGTH,
    MIN_FRAGMENT_LENGTH,
    MIN_PACKET_LENGTH,
    PROTO_MAX_HOPS,
    VERB_FLAG_COMPRESSED,
    VERB_MASK,
    Cipher,
)
from ztnode.wire.fragment import is_fragment

# Bytes in the raw packet ID, and the 13-byte datagram that is a legacy LAN beacon (§7).
PACKET_ID_SIZE: Final = 8
MAC_SIZE: Final = 8
BEACON_LENGTH: Final = 13
_ADDRESS_MAX: Final = (1 << 40) - 1
_U64_MAX: Final = (1 << 64) - 1

# Flags bits that survive a cipher change: the fragmented flag and the hop count.
_KEEP_ON_CIPHER_CHANGE: Final = FLAG_FRAGMENTED | FLAGS_HOPS_MASK
_AUTH_FLAGS_MASK: Final = 0xF8  # flags with hops masked, as authenticated by every cipher
_CIPHER_SHIFT: Final = 3
_FLAGS_CIPHER_0: Final = 0x00
_FLAGS_CIPHER_1: Final = (Cipher.POLY1305_SALSA2012 << _CIPHER_SHIFT) | FLAG_ENCRYPTED_DEPRECATED
_FLAGS_CIPHER_2: Final = Cipher.NONE_TRUSTED_PATH << _CIPHER_SHIFT
_FLAGS_CIPHER_3: Final = Cipher.AES_GMAC_SIV << _CIPHER_SHIFT
_CS_POLY: Final = int(Cipher.POLY1305_NONE)
_CS_SALSA: Final = int(Cipher.POLY1305_SALSA2012)
_CS_AES: Final = int(Cipher.AES_GMAC_SIV)

# Header: packet id u64, dest as u32+u8, source as u32+u8, flags, 8 MAC bytes = 27 bytes.
_HEADER: Final = struct.Struct(">QIBIBB8s")
_U64: Final = struct.Struct(">Q")
_VERB_UNCOMPRESSED: Final = VERB_FLAG_COMPRESSED ^ 0xFF


# --- header ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """The 27 clear-text header bytes of a packet, decoded.

    For logging, tests and slow paths; the receive path uses the ``peek_*`` functions, which read
    one field without building an object. ``packet_id`` is the big-endian u64 of the raw ID bytes,
    the form the reference uses for reply matching (Node.hpp:206-235) and fragment keys.
    """

    packet_id: int
    dest: int
    source: int
    flags: int
    mac: bytes

    @property
    def cipher(self) -> int:
        """Cipher suite, bits 5..3 (a plain int: 4..7 are undefined but can arrive)."""
        return (self.flags & FLAGS_CIPHER_MASK) >> _CIPHER_SHIFT

    @property
    def hops(self) -> int:
        return self.flags & FLAGS_HOPS_MASK

    @property
    def fragmented(self) -> bool:
        """True when fragments follow this head (flag 0x40)."""
        return bool(self.flags & FLAG_FRAGMENTED)

    @property
    def packet_id_bytes(self) -> bytes:
        return _U64.pack(self.packet_id)

    @classmethod
    def parse(cls, buf: Buf) -> PacketHeader:
        """Decode the header of a packet (at least 28 bytes: header plus verb)."""
        if len(buf) < MIN_PACKET_LENGTH:
            raise DecodeError(f"packet of {len(buf)} bytes is shorter than {MIN_PACKET_LENGTH}")
        pid, d_hi, d_lo, s_hi, s_lo, flags, mac = _HEADER.unpack_from(buf, 0)
        return cls(pid, (d_hi << 8) | d_lo, (s_hi << 8) | s_lo, flags, mac)

    def to_bytes(self) -> bytes:
        """The 27 header bytes (without the verb)."""
        _check_address(self.dest, "dest")
        _check_address(self.source, "source")
        if not 0 <= self.packet_id <= _U64_MAX or not 0 <= self.flags <= 0xFF:
            raise LocalProtocolError("packet_id must fit in 64 bits and flags in 8")
        if len(self.mac) != MAC_SIZE:
            raise LocalProtocolError(f"the MAC field is {MAC_SIZE} bytes, got {len(self.mac)}")
        return _HEADER.pack(
            self.packet_id,
            self.dest >> 8,
            self.dest & 0xFF,
            self.source >> 8,
            self.source & 0xFF,
            self.flags,
            self.mac,
        )


def _check_address(addr: int, what: str) -> None:
    if not 0 <= addr <= _ADDRESS_MAX:
        raise LocalProtocolError(f"{what} address {addr:#x} does not fit in 40 bits")


def new_packet(
    packet_id: bytes, dest: int, source: int, verb: int, payload: Buf = b""
) -> bytearray:
    """A clear packet: header with flags 0 and a zero MAC field, the verb byte, ``payload``.

    ``packet_id`` is the 8 raw ID bytes, which the caller draws from a secure random source (the
    reference uses ``getSecureRandom``); passing it in keeps this function deterministic. The MAC
    field is filled by :func:`armor`.
    """
    if len(packet_id) != PACKET_ID_SIZE:
        raise LocalProtocolError(f"packet_id must be {PACKET_ID_SIZE} bytes, got {len(packet_id)}")
    _check_address(dest, "dest")
    _check_address(source, "source")
    if not 0 <= verb <= VERB_MASK:
        raise LocalProtocolError(f"verb {verb:#x} is not a 5-bit verb number")
    pkt = bytearray(packet_id)
    pkt += dest.to_bytes(5, "big")
    pkt += source.to_bytes(5, "big")
    pkt += bytes(9)  # flags + MAC
    pkt.append(verb)
    pkt += payload
    return pkt


# --- fast accessors for the receive path ---------------------------------------------------------


def _need(buf: Buf, n: int, what: str) -> None:
    if len(buf) < n:
        raise DecodeError(f"{len(buf)}-byte datagram too short for the {what}")


def peek_packet_id(buf: Buf) -> int:
    """Packet ID as a big-endian u64 (the same bytes key fragments and heads)."""
    _need(buf, PACKET_ID_SIZE, "packet ID")
    return int(_U64.unpack_from(buf, 0)[0])


def peek_dest(buf: Buf) -> int:
    """Destination address; at the same offset in packets and fragments."""
    _need(buf, IDX_SOURCE, "destination")
    return int.from_bytes(buf[IDX_DEST:IDX_SOURCE], "big")


def peek_source(buf: Buf) -> int:
    _need(buf, IDX_FLAGS, "source")
    return int.from_bytes(buf[IDX_SOURCE:IDX_FLAGS], "big")


def peek_flags(buf: Buf) -> int:
    _need(buf, IDX_FLAGS + 1, "flags")
    return buf[IDX_FLAGS]


def peek_cipher(buf: Buf) -> int:
    _need(buf, IDX_FLAGS + 1, "flags")
    return (buf[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> _CIPHER_SHIFT


def peek_hops(buf: Buf) -> int:
    _need(buf, IDX_FLAGS + 1, "flags")
    return buf[IDX_FLAGS] & FLAGS_HOPS_MASK


def is_fragmented(buf: Buf) -> bool:
    """True for a packet head whose fragments follow (flag 0x40); not for fragments themselves."""
    _need(buf, IDX_FLAGS + 1, "flags")
    return bool(buf[IDX_FLAGS] & FLAG_FRAGMENTED)


def peek_verb(buf: Buf) -> int:
    """The verb number (low 5 bits). Meaningful only after :func:`dearmor`."""
    _need(buf, MIN_PACKET_LENGTH, "verb")
    return buf[IDX_VERB] & VERB_MASK


def is_compressed(buf: Buf) -> bool:
    """Verb flag 0x80. Meaningful only after :func:`dearmor`."""
    _need(buf, MIN_PACKET_LENGTH, "verb")
    return bool(buf[IDX_VERB] & VERB_FLAG_COMPRESSED)


def peek_trusted_path_id(buf: Buf) -> int:
    """The MAC field as a big-endian u64: the trusted-path ID of a cipher-2 packet (§5.6)."""
    _need(buf, HEADER_SIZE, "MAC field")
    return int(_U64.unpack_from(buf, IDX_MAC)[0])


class DatagramKind(IntEnum):
    """What an incoming UDP payload is, decided from its length and byte 13 (§7, Switch.cpp)."""

    INVALID = 0  # any other length: dropped
    BEACON = 1  # exactly 13 bytes: legacy LAN beacon, bytes 8..12 are an address
    FRAGMENT = 2  # longer than 16 bytes with 0xff at byte 13
    PACKET = 3  # at least 28 bytes otherwise: a whole packet or a fragmented head


def classify_datagram(buf: Buf) -> DatagramKind:
    """Classify a received datagram the way ``Switch::onRemotePacket`` does, in the same order.

    The fragment test comes first, which is why an address starting with 0xff is reserved: a
    packet to such an address would be taken for a fragment.
    """
    n = len(buf)
    if n == BEACON_LENGTH:
        return DatagramKind.BEACON
    if n > MIN_FRAGMENT_LENGTH:
        if buf[FRAGMENT_INDICATOR_INDEX] == FRAGMENT_INDICATOR:
            return DatagramKind.FRAGMENT
        if n >= MIN_PACKET_LENGTH:
            return DatagramKind.PACKET
    return DatagramKind.INVALID


# --- mutable header fields -----------------------------------------------------------------------


def set_hops(packet: bytearray, hops: int) -> None:
    """Set the 3-bit hop count; it is outside every MAC, so relays may change it."""
    if not 0 <= hops <= PROTO_MAX_HOPS:
        raise LocalProtocolError(f"hops must be 0..{PROTO_MAX_HOPS}, got {hops}")
    _need_packet(packet)
    packet[IDX_FLAGS] = (packet[IDX_FLAGS] & _AUTH_FLAGS_MASK) | hops


def increment_hops(packet: bytearray) -> int:
    """Add one hop, wrapping within 3 bits like ``Packet::incrementHops``; returns the new count.

    Relays check ``hops < RELAY_MAX_HOPS`` before calling this (Switch.cpp:223-269).
    """
    _need_packet(packet)
    f = packet[IDX_FLAGS]
    h = (f + 1) & FLAGS_HOPS_MASK
    packet[IDX_FLAGS] = (f & _AUTH_FLAGS_MASK) | h
    return h


def set_fragmented(packet: bytearray, fragmented: bool = True) -> None:
    """Set or clear flag 0x40. Do this **before** :func:`armor`: both MAC families cover it."""
    _need_packet(packet)
    if fragmented:
        packet[IDX_FLAGS] |= FLAG_FRAGMENTED
    else:
        packet[IDX_FLAGS] &= FLAG_FRAGMENTED ^ 0xFF


def _need_packet(packet: bytearray) -> None:
    if len(packet) < MIN_PACKET_LENGTH:
        raise LocalProtocolError(
            f"a packet has at least {MIN_PACKET_LENGTH} bytes (header and verb), got {len(packet)}"
        )


# --- armor ---------------------------------------------------------------------------------------


def _mangled_key(salsa_key: bytes, packet: bytearray, length: int) -> bytes:
    """The per-packet Salsa20/12 key of ciphers 0 and 1 (§5.1, Packet.hpp:1407-1431).

    Key bytes 0..17 are XORed with the packet ID and both addresses, byte 18 with the flags minus
    hops, bytes 19..20 with the little-endian total length. As one little-endian integer XOR this
    is two big-int operations instead of 21 byte operations (about 0.5 µs against 1.2 µs).
    """
    mix = (
        int.from_bytes(packet[0:IDX_FLAGS], "little")
        | ((packet[IDX_FLAGS] & _AUTH_FLAGS_MASK) << 144)
        | ((length & 0xFFFF) << 152)
    )
    return (int.from_bytes(salsa_key, "little") ^ mix).to_bytes(32, "little")


def _aad(packet: bytearray) -> bytes:
    """GMAC-SIV associated data: destination, source and flags with the hops masked (§5.4)."""
    return bytes(packet[IDX_DEST:IDX_FLAGS]) + (packet[IDX_FLAGS] & _AUTH_FLAGS_MASK).to_bytes()


# The fused AES-GMAC-SIV packet path (§5.4). It is AesGmacSiv.encrypt_into/decrypt_into
# specialised to the packet layout: IV = bytes 0..7, AAD = bytes 8..18 with the hops masked and
# zero-padded to 16, payload from byte 27, tag into bytes 0..7 and 19..26. Doing it here, straight
# on the bound C calls, halves the Python work per packet (measured in bench/crypto_bench.py).
_QQ: Final = struct.Struct(">QQ")
_Q8: Final = struct.Struct(">Q")
_CTR_MASK: Final = 0xFFFFFFFF7FFFFFFF  # byte 12 &= 0x7f: the 32-bit counter never wraps
_NONCE_PAD: Final = bytes(4)
_AAD_PAD: Final = bytes(5)


def _armor_aes(packet: bytearray, ops: tuple[Any, ...]) -> None:
    gmac, ecb_enc, _, set_nonce, update_into = ops
    iv = packet[0:8]
    aad = packet[8:19]
    if aad[10] & FLAGS_HOPS_MASK:
        aad[10] &= _AUTH_FLAGS_MASK
    body = memoryview(packet)[IDX_VERB:]
    hi, lo = _QQ.unpack(gmac(iv + _NONCE_PAD, b"", b"".join((aad, _AAD_PAD, body))))
    tag = ecb_enc(iv + _Q8.pack(hi ^ lo))
    hi, lo = _QQ.unpack(tag)
    set_nonce(_QQ.pack(hi, lo & _CTR_MASK))
    update_into(body, body)
    # pack_into, not slice assignment: the latter costs ~0.25 us while ``body`` is exported.
    _Q8.pack_into(packet, 0, hi)
    _Q8.pack_into(packet, IDX_MAC, lo)


def _dearmor_aes(packet: bytearray, ops: tuple[Any, ...]) -> bool:
    gmac, _, ecb_dec, set_nonce, update_into = ops
    tag = packet[0:8] + packet[IDX_MAC:IDX_VERB]
    hi, lo = _QQ.unpack(tag)
    body = memoryview(packet)[IDX_VERB:]
    set_nonce(_QQ.pack(hi, lo & _CTR_MASK))
    update_into(body, body)
    d = ecb_dec(tag)
    aad = packet[8:19]
    if aad[10] & FLAGS_HOPS_MASK:
        aad[10] &= _AUTH_FLAGS_MASK
    hi, lo = _QQ.unpack(gmac(d[0:8] + _NONCE_PAD, b"", b"".join((aad, _AAD_PAD, body))))
    return hmac.compare_digest(_Q8.pack(hi ^ lo), d[8:16])


# The C accelerator (ztnode.accel) does a whole armor or dearmor in one foreign call; it
# is bound here once, or None, so the dispatch below costs one test when it is absent.
_accel_armor: Final = accel.armor if accel.AVAILABLE else None
_accel_dearmor: Final = accel.dearmor if accel.AVAILABLE else None


def armor(packet: bytearray, key: SymmetricKey, cipher: Cipher) -> None:
    """Authenticate (and for ciphers 1 and 3 encrypt) ``packet`` in place (Packet.cpp:1008-1068).

    Sets the cipher bits (and bit 0x80 iff cipher 1), keeping the fragmented flag and hops; the
    packet must be at its final size and flags, because both are authenticated. Cipher 3
    **rewrites bytes 0..7**: afterwards the packet ID on the wire, which replies and fragments
    refer to, is ``packet[0:8]``, not the ID it was built with.

    The hop count is masked out of what is authenticated, on both sides, so a packet armored
    with non-zero hops still verifies (the reference always armors with hops 0).

    Runs in C when the accelerator is built; whatever it declines (bad length or cipher) goes to
    :func:`_armor_python`, the reference implementation, which gives the same bytes or error.
    """
    if _accel_armor is not None and _accel_armor(packet, key, cipher):
        return
    _armor_python(packet, key, cipher)


def _armor_python(packet: bytearray, key: SymmetricKey, cipher: Cipher) -> None:
    """The pure-Python :func:`armor`: the fallback, and the oracle the C path must match."""
    n = len(packet)
    if not MIN_PACKET_LENGTH <= n <= MAX_PACKET_LENGTH:
        raise LocalProtocolError(
            f"cannot armor a {n}-byte packet: packets are {MIN_PACKET_LENGTH}.."
            f"{MAX_PACKET_LENGTH} bytes"
        )
    keep = packet[IDX_FLAGS] & _KEEP_ON_CIPHER_CHANGE
    if cipher == _CS_AES:
        packet[IDX_FLAGS] = keep | _FLAGS_CIPHER_3
        _armor_aes(packet, key.aes.ops)
    elif cipher in (_CS_SALSA, _CS_POLY):
        encrypt = cipher == _CS_SALSA
        packet[IDX_FLAGS] = keep | (_FLAGS_CIPHER_1 if encrypt else _FLAGS_CIPHER_0)
        mk = _mangled_key(key.salsa_key, packet, n)
        mv = memoryview(packet)
        tag = salsa2012_poly1305_seal_into(mv[IDX_VERB:], mk, bytes(mv[0:PACKET_ID_SIZE]), encrypt)
        packet[IDX_MAC:IDX_VERB] = tag[0:MAC_SIZE]
    elif cipher == Cipher.NONE_TRUSTED_PATH:
        raise LocalProtocolError("cipher 2 carries a trusted-path ID: use armor_trusted()")
    else:
        raise LocalProtocolError(f"unknown cipher suite {cipher!r}")


def armor_trusted(packet: bytearray, trusted_path_id: int) -> None:
    """Mark ``packet`` for a configured trusted path: cipher 2, ID in the MAC field, no crypto.

    Only for physical paths both ends have configured with the same non-zero ID (§5.6,
    Switch.cpp:1142-1144); the receiver checks the ID and the source network itself.
    """
    _need_packet(packet)
    if not 0 < trusted_path_id <= _U64_MAX:
        raise LocalProtocolError("a trusted path ID is a non-zero unsigned 64-bit integer")
    packet[IDX_FLAGS] = (packet[IDX_FLAGS] & _KEEP_ON_CIPHER_CHANGE) | _FLAGS_CIPHER_2
    _U64.pack_into(packet, IDX_MAC, trusted_path_id)


def dearmor(packet: bytearray, key: SymmetricKey) -> bool:
    """Verify (and decrypt) ``packet`` in place; False if it is not authentic under ``key``.

    Accepts ciphers 0, 1 and 3 whatever we send ourselves (pitfall 8), with hops masked so relayed
    packets verify. Cipher 2 and the undefined suites 4..7 give False: trusted paths are checked by
    the caller against its configuration (:func:`peek_trusted_path_id`), not with a key.

    Failure is an ordinary outcome on the receive path (a forged or corrupted datagram), so it is a
    return value, not an exception. After False, ciphers 0 and 1 leave the packet untouched, while
    for cipher 3 the bytes from the verb on are unspecified: drop the packet.

    Runs in C when the accelerator is built, else (or for what it declines) in
    :func:`_dearmor_python`.
    """
    if _accel_dearmor is not None:
        rc = _accel_dearmor(packet, key)
        if rc >= 0:
            return rc == 1
    return _dearmor_python(packet, key)


def _dearmor_python(packet: bytearray, key: SymmetricKey) -> bool:
    """The pure-Python :func:`dearmor`: the fallback, and the oracle the C path must match."""
    n = len(packet)
    if n < MIN_PACKET_LENGTH:
        return False
    cs = (packet[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> _CIPHER_SHIFT
    if cs == _CS_AES:
        return _dearmor_aes(packet, key.aes.ops)
    if cs in (_CS_SALSA, _CS_POLY):
        mk = _mangled_key(key.salsa_key, packet, n)
        mv = memoryview(packet)
        return salsa2012_poly1305_open_into(
            mv[IDX_VERB:],
            mk,
            bytes(mv[0:PACKET_ID_SIZE]),
            bytes(mv[IDX_MAC:IDX_VERB]),
            cs == _CS_SALSA,
        )
    return False


def crypt_field(packet: bytearray, key: SymmetricKey, start: int, length: int) -> None:
    """XOR ``packet[start:start+length]`` with Salsa20/12 (§5.5, Packet.cpp:1142-1152).

    The HELLO tail encryption: key ``key48[0:32]`` *unmangled*, nonce = packet bytes 0..7 with
    byte 7 & 0xf8, keystream from block 0. Its own inverse. Apply it before :func:`armor` on send
    and after :func:`dearmor` on receive, once each.
    """
    n = len(packet)
    if start < 0 or length < 0 or start + length > n:
        raise LocalProtocolError(f"field [{start}, {start + length}) outside a {n}-byte packet")
    if n < PACKET_ID_SIZE:
        raise LocalProtocolError("cryptField needs the 8-byte packet ID as nonce")
    nonce = bytearray(packet[0:PACKET_ID_SIZE])
    nonce[7] &= 0xF8
    field = memoryview(packet)[start : start + length]
    salsa20_xor_into(field, field, key.salsa_key, bytes(nonce))


# --- compression ---------------------------------------------------------------------------------


def compress(packet: bytearray) -> bool:
    """LZ4-compress the payload in place if that pays; True if the packet was changed (§6).

    Only packets longer than 92 bytes are tried, and the result is kept only when strictly
    smaller (Packet.cpp:1154-1173). The payload ``packet[28:]`` becomes a raw LZ4 block (no
    frame, no size prefix) and verb flag 0x80 is set; the verb byte itself stays clear. Call it
    before :func:`armor`. Never used for HELLO, unicast FRAME/EXT_FRAME and most OKs. Calling it on
    a packet already flagged compressed is a :class:`LocalProtocolError` (the reference would
    silently clear the flag and corrupt the packet).
    """
    _need_packet(packet)
    if packet[IDX_VERB] & VERB_FLAG_COMPRESSED:
        raise LocalProtocolError("packet is already compressed")
    n = len(packet)
    if n <= COMPRESSION_MIN_PACKET:
        return False
    # A copy, not a memoryview: an exported view would stop the bytearray from shrinking.
    out: bytes = lz4.block.compress(packet[IDX_PAYLOAD:], store_size=False)
    if len(out) >= n - IDX_PAYLOAD:
        return False
    packet[IDX_PAYLOAD:] = out
    packet[IDX_VERB] |= VERB_FLAG_COMPRESSED
    return True


def decompress(packet: bytearray) -> None:
    """Undo :func:`compress` in place after :func:`dearmor`; a no-op if the flag is clear.

    Raises :class:`DecodeError` for a block that is corrupt, decodes to nothing, or would exceed
    9996 payload bytes (the reference's packet buffer minus the header, Packet.cpp:1175-1194).
    python-lz4 treats ``uncompressed_size`` as the destination capacity, so the output buffer is
    never larger than that cap whatever the input claims.
    """
    if len(packet) < MIN_PACKET_LENGTH:
        raise DecodeError(f"packet of {len(packet)} bytes has no verb byte")
    if not packet[IDX_VERB] & VERB_FLAG_COMPRESSED:
        return
    if len(packet) > IDX_PAYLOAD:
        # A copy, not a memoryview: a view kept alive by a caught exception's traceback would
        # pin the bytearray's size.
        data = packet[IDX_PAYLOAD:]
        try:
            out: bytes = lz4.block.decompress(data, uncompressed_size=MAX_DECOMPRESSED_PAYLOAD)
        except (lz4.block.LZ4BlockError, ValueError) as e:
            raise DecodeError(f"invalid LZ4 payload: {e}") from None
        if not out:
            raise DecodeError("LZ4 payload decodes to nothing")
        packet[IDX_PAYLOAD:] = out
    packet[IDX_VERB] &= _VERB_UNCOMPRESSED


__all__ = [
    "BEACON_LENGTH",
    "MAC_SIZE",
    "PACKET_ID_SIZE",
    "DatagramKind",
    "PacketHeader",
    "armor",
    "armor_trusted",
    "classify_datagram",
    "compress",
    "crypt_field",
    "dearmor",
    "decompress",
    "increment_hops",
    "is_compressed",
    "is_fragment",
    "is_fragmented",
    "new_packet",
    "peek_cipher",
    "peek_dest",
    "peek_flags",
    "peek_hops",
    "peek_packet_id",
    "peek_source",
    "peek_trusted_path_id",
    "peek_verb",
    "set_fragmented",
    "set_hops",
]
