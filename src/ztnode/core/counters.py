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


_CIPHER_LABEL_LIST: Final = tuple(CIPHER_LABELS[v] for v in range(8))


def _labelled(counts: list[int], labels: tuple[str, ...]) -> Counter[str]:
    return Counter({labels[i]: n for i, n in enumerate(counts) if n})


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
    """Monotonic counts. Cheap enough for the hot path: one increment per event.

    Why the per-packet counts (by cipher suite in and out, by verb in) are lists indexed by
    the header's 3- and 5-bit fields rather than ``Counter``s keyed by label: a ``Counter`` is
    a dict subclass written in Python, and each ``c[label] += 1`` on it went through the
    type's generic item slots, about 1 300 instructions a packet, a share of a small round
    trip (docs/performance.md, issue 16). The labelled views (:attr:`verbs_in`,
    :attr:`ciphers_in`, :attr:`ciphers_out`) are snapshots made when read, for operators and
    tests; drops stay a ``Counter`` (rare, and keyed by reasons that are not small numbers)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "cipher_in_counts",
        "cipher_out_counts",
        "drops",
        "packets_in",
        "packets_out",
        "verb_in_counts",
    )

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()
        #: Packets received by verb number (the low 5 bits of the verb byte).
        self.verb_in_counts: list[int] = [0] * 32
        #: Authenticated packets by cipher suite number (3 bits): proof of what peers use.
        self.cipher_in_counts: list[int] = [0] * 8
        #: Packets sent by cipher suite number (NONE_TRUSTED_PATH: over trusted paths).
        self.cipher_out_counts: list[int] = [0] * 8

    @property
    def verbs_in(self) -> Counter[str]:
        """Packets received by verb name (a snapshot; verbs never seen are absent)."""
        return _labelled(self.verb_in_counts, VERB_LABELS)

    @property
    def ciphers_in(self) -> Counter[str]:
        """Authenticated packets received by cipher suite name (a snapshot)."""
        return _labelled(self.cipher_in_counts, _CIPHER_LABEL_LIST)

    @property
    def ciphers_out(self) -> Counter[str]:
        """Packets sent by cipher suite name (a snapshot)."""
        return _labelled(self.cipher_out_counts, _CIPHER_LABEL_LIST)

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
