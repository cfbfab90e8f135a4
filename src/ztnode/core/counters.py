"""Counters for packets, bytes and drops by reason.

A malformed, unauthenticated or unwanted packet is never an exception out of the receive path: it
is a drop, counted here under a short reason name, so an operator can see (in ``/status`` and
``/metrics``) why traffic disappears.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Final

from ztnode.wire.constants import Cipher, Verb

# Counter labels by cipher suite and by verb number, for every value of the 3- and 5-bit
# fields (so a label lookup never fails on hostile input), built once.
CIPHER_LABELS: Final = {c.value: c.name for c in Cipher} | {v: f"cipher{v}" for v in range(4, 8)}
VERB_LABELS: Final = tuple(
    Verb(v).name if v in Verb._value2member_map_ else f"0x{v:02x}" for v in range(32)
)


class Drop(StrEnum):
    """Why a datagram or packet was discarded. Values are the names shown to operators."""

    TOO_SHORT = "too_short"
    BAD_FRAGMENT = "bad_fragment"
    FROM_SELF = "from_self"
    NOT_FOR_US = "not_for_us"  # not addressed to us and we may not relay it
    RELAY_HOPS = "relay_hops_exceeded"
    RELAY_NO_ROUTE = "relay_no_route"
    UNKNOWN_PEER = "unknown_peer_queue_full"
    WHOIS_TIMEOUT = "whois_timeout"
    MAC_FAILED = "mac_failed"
    BAD_CIPHER = "unsupported_cipher"
    TRUSTED_PATH_REFUSED = "trusted_path_refused"
    DECOMPRESS_FAILED = "decompress_failed"
    MALFORMED = "malformed_payload"
    RATE_LIMITED = "rate_limited"
    UNEXPECTED_OK = "unexpected_ok"
    OLD_PROTOCOL = "protocol_too_old"
    IDENTITY_MISMATCH = "identity_mismatch"
    IDENTITY_INVALID = "identity_invalid"
    IDENTITY_COLLISION = "identity_collision"
    UNTRUSTED_SENDER = "untrusted_sender"
    INVALID_PATH = "invalid_path_address"
    NO_BOND = "no_bond"
    BAD_SIGNATURE = "bad_signature"
    NOT_A_MEMBER = "not_a_member"
    TOO_LONG = "too_long"  # a datagram longer than any packet (the burst reader's slots)
    DUPLICATE_FRAGMENT = "duplicate_fragment"  # a piece already held (the C reassembly table)
    REASSEMBLY_EVICTED = "reassembly_evicted"  # pieces pushed out of a full reassembly table
    REASSEMBLY_EXPIRED = "reassembly_expired"  # pieces of a packet that never became whole
    PEER_TABLE_FULL = "peer_table_full"  # a new identity past NodeConfig.max_peers
    UNAUTHENTICATED_GATE = "unauthenticated_gate"  # over the transport's rate for such work
    STALE_KEY = "stale_key"  # decrypted by the transport with a key the peer no longer has
    INTERNAL_ERROR = "internal_error"
    CONFIG_QUEUE_FULL = "config_request_queue_full"  # requests waiting for the controller
    REPLAYED = "replayed"  # an authenticated packet whose id this peer's window has seen
    LIKE_TABLE_FULL = "like_table_full"  # a MULTICAST_LIKE past the LIKE tables' bound
    RULES_OUTBOUND = "rules_outbound"  # a frame we were to send, dropped by the network's rules
    RULES_INBOUND = "rules_inbound"  # a frame received, dropped by the network's rules
    BRIDGING_NOT_ALLOWED = "bridging_not_allowed"  # EXT_FRAME with foreign MACs, no bridge role
    NO_BRIDGE = "no_bridge"  # a frame for a MAC no member has, on a network with no bridge
    TRACE_OVER_BUDGET = "remote_trace_over_budget"  # a trace record past the per-second budget
    TRACE_RECURSIVE = "remote_trace_recursive"  # an event raised while sending a trace


class Counters:
    """Monotonic counts. Cheap enough for the hot path: one dict increment per event."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "ciphers_in",
        "ciphers_out",
        "drops",
        "packets_in",
        "packets_out",
        "verbs_in",
    )

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()
        self.verbs_in: Counter[str] = Counter()
        # Authenticated packets by cipher suite: proof of what peers actually use with us.
        self.ciphers_in: Counter[str] = Counter()
        # Packets sent by cipher suite (NONE_TRUSTED_PATH: over configured trusted paths).
        self.ciphers_out: Counter[str] = Counter()

    def drop(self, reason: Drop, n: int = 1) -> None:
        self.drops[reason.value] += n

    def as_dict(self) -> dict[str, object]:
        return {
            "packetsIn": self.packets_in,
            "packetsOut": self.packets_out,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "drops": dict(sorted(self.drops.items())),
            "dropsTotal": sum(self.drops.values()),
            "verbsIn": dict(sorted(self.verbs_in.items())),
            "ciphersIn": dict(sorted(self.ciphers_in.items())),
            "ciphersOut": dict(sorted(self.ciphers_out.items())),
        }
