"""The core's timers and table bounds (protocol-core.md 1.3 where the reference has them).

One module for all of them because several collaborators share them (a queued packet and a
gated frame both wait :data:`QUEUE_TIMEOUT`), and because every bound on state that hostile
input can grow is a security fact worth reading in one place.
"""

from __future__ import annotations

from typing import Final

# Periodic work.
PING_CHECK_INTERVAL: Final = 5_000
HOUSEKEEPING_PERIOD: Final = 30_000
PATH_HEARTBEAT: Final = 14_000
ROOT_HELLO_SCALE: Final = 16
LEAF_ALWAYS_CONTACT_SCALE: Final = 2

# WHOIS and the queues of packets waiting for an identity.
WHOIS_RETRY_DELAY: Final = 500
QUEUE_TIMEOUT: Final = 5_000
TX_QUEUE_SIZE: Final = 32
RX_QUEUE_SIZE: Final = 32
MAX_WHOIS_PENDING: Final = 1024  # per-address WHOIS memos; a flood evicts the oldest

# Rate limits on answers, per path or per peer.
PATH_HELLO_INTERVAL: Final = 1_000  # confirming HELLO to an unlearned path, per path
ECHO_ANSWER_INTERVAL: Final = 1_000 // 6  # 166 ms per path
BEACON_REPLY_INTERVAL: Final = 2_500
MIN_UNITE_INTERVAL: Final = 30_000

# Identity validation.
MAX_VALIDATION_CACHE: Final = 4096
MAX_PENDING_VALIDATIONS: Final = 64  # identities waiting for the host's validation
MAX_PACKETS_PER_PENDING_VALIDATION: Final = 4

# Sizes.
PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY: Final = 8
MAX_PUSH_PAYLOAD: Final = 1200
REMOTE_TRACE_MAX: Final = 10_000
USER_MESSAGE_RESERVED_MAX: Final = 0xFFFF
MAX_API_ECHOES: Final = 4096  # ECHOs sent through the API whose OK we still await

# VL2.
#: (group, member) LIKE entries a root keeps to answer gathers; new ones past it are refused.
MAX_ROOT_LIKES: Final = 262_144
MAX_PENDING_CONFIG_REQUESTS: Final = 256  # config requests waiting for the host to answer
MULTICAST_LIKE_EXPIRE: Final = 600_000
GATED_FRAME_QUEUE: Final = 64
LIKES_PER_PACKET: Final = 64  # 18 bytes each: well inside one unfragmented packet
