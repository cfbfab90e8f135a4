"""Protocol numbers of ZeroTier 1.x VL1, owned here and imported everywhere else.

Values follow ZeroTierOne 1.14.1 (``node/Packet.hpp``, ``node/Constants.hpp``,
``include/ZeroTierOne.h``); see ``shared/reference/protocol-core.md`` sections 1 and 10.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# The version we announce in HELLO. Protocol 12 promises AES-GMAC-SIV, which we implement, so peers
# at 12 will pick it for traffic to us (Packet.hpp:65; Peer.hpp:618).
PROTO_VERSION: Final = 12
PROTO_VERSION_MIN: Final = 4  # HELLO / OK(HELLO) below this is dropped silently
SOFTWARE_MAJOR: Final = 1
SOFTWARE_MINOR: Final = 14
SOFTWARE_REVISION: Final = 1

PROTO_MAX_HOPS: Final = 7
RELAY_MAX_HOPS: Final = 3
DEFAULT_PORT: Final = 9993

# Packet layout (Packet.hpp:224-230).
IDX_IV: Final = 0
IDX_DEST: Final = 8
IDX_SOURCE: Final = 13
IDX_FLAGS: Final = 18
IDX_MAC: Final = 19
IDX_VERB: Final = 27
IDX_PAYLOAD: Final = 28
HEADER_SIZE: Final = 27
MIN_PACKET_LENGTH: Final = 28

FLAG_ENCRYPTED_DEPRECATED: Final = 0x80  # set iff cipher == 1; receivers ignore it
FLAG_FRAGMENTED: Final = 0x40
FLAGS_CIPHER_MASK: Final = 0x38
FLAGS_HOPS_MASK: Final = 0x07
VERB_FLAG_COMPRESSED: Final = 0x80
VERB_MASK: Final = 0x1F

# Fragments (Packet.hpp:392-531).
FRAGMENT_INDICATOR: Final = 0xFF
FRAGMENT_INDICATOR_INDEX: Final = 13
FRAGMENT_HEADER_SIZE: Final = 16
MIN_FRAGMENT_LENGTH: Final = 16
MAX_PACKET_FRAGMENTS: Final = 7

DEFAULT_PHYSMTU: Final = 1432
MIN_PHYSMTU: Final = 1400
MAX_PHYSMTU: Final = 10324
MAX_PACKET_LENGTH: Final = MAX_PACKET_FRAGMENTS * DEFAULT_PHYSMTU  # 10024, buffer capacity
MAX_DECOMPRESSED_PAYLOAD: Final = MAX_PACKET_LENGTH - IDX_PAYLOAD  # 9996
COMPRESSION_MIN_PACKET: Final = IDX_PAYLOAD + 64  # only larger packets are worth trying

ADDRESS_LENGTH: Final = 5
ADDRESS_RESERVED_PREFIX: Final = 0xFF

# Virtual Ethernet MTU (ZeroTierOne.h:77,82; Constants.hpp:294).
DEFAULT_MTU: Final = 2800
MIN_MTU: Final = 1280
MAX_MTU: Final = 10000


class Cipher(IntEnum):
    """Cipher suite, bits 5..3 of the flags byte (Packet.hpp)."""

    POLY1305_NONE = 0
    POLY1305_SALSA2012 = 1
    NONE_TRUSTED_PATH = 2
    AES_GMAC_SIV = 3


#: A suite's name by number, for per-packet counters: an enum member's ``.name`` is a Python
#: property call each time, even from compiled code.
CIPHER_NAMES: Final[dict[int, str]] = {c.value: c.name for c in Cipher}


class Verb(IntEnum):
    """VL1 verbs, the low five bits of the verb byte (Packet.hpp:536-1054)."""

    NOP = 0x00
    HELLO = 0x01
    ERROR = 0x02
    OK = 0x03
    WHOIS = 0x04
    RENDEZVOUS = 0x05
    FRAME = 0x06
    EXT_FRAME = 0x07
    ECHO = 0x08
    MULTICAST_LIKE = 0x09
    NETWORK_CREDENTIALS = 0x0A
    NETWORK_CONFIG_REQUEST = 0x0B
    NETWORK_CONFIG = 0x0C
    MULTICAST_GATHER = 0x0D
    MULTICAST_FRAME = 0x0E
    UNASSIGNED_0F = 0x0F  # treated as NOP by the reference
    PUSH_DIRECT_PATHS = 0x10
    DEPRECATED_11 = 0x11  # old circuit test; treated as NOP
    ACK = 0x12
    QOS_MEASUREMENT = 0x13
    USER_MESSAGE = 0x14
    REMOTE_TRACE = 0x15
    PATH_NEGOTIATION_REQUEST = 0x16


class ErrorCode(IntEnum):
    """ERROR payload codes (Packet.hpp; handled in IncomingPacket.cpp:169-316)."""

    NONE = 0x00
    INVALID_REQUEST = 0x01
    BAD_PROTOCOL_VERSION = 0x02
    OBJ_NOT_FOUND = 0x03
    IDENTITY_COLLISION = 0x04
    UNSUPPORTED_OPERATION = 0x05
    NEED_MEMBERSHIP_CERTIFICATE = 0x06
    NETWORK_ACCESS_DENIED = 0x07
    UNWANTED_MULTICAST = 0x08
    NETWORK_AUTHENTICATION_REQUIRED = 0x09
