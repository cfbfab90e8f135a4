"""IP protocol numbers (IANA's registry: IPv4's protocol field and IPv6's next header share it),
defined once for every codec and the stack."""

from __future__ import annotations

from typing import Final

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMPV6: Final = 58

# IPv6 next headers besides the transports (RFC 8200 section 4).
NH_HOP_BY_HOP: Final = 0
NH_TCP: Final = PROTO_TCP
NH_UDP: Final = PROTO_UDP
NH_ROUTING: Final = 43
NH_FRAGMENT: Final = 44
NH_ESP: Final = 50
NH_AH: Final = 51
NH_ICMPV6: Final = PROTO_ICMPV6
NH_NONE: Final = 59
NH_DESTINATION_OPTIONS: Final = 60
