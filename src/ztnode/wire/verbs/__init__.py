"""Payload codecs for every VL1 verb (0x00-0x16) of ZeroTier 1.x.

Each payload is a frozen dataclass with ``decode(payload) -> Self`` and ``encode() -> bytes``
(plus ``write(writer)``), where ``payload`` is what follows the verb byte once the packet is
dearmoured and decompressed (``packet[IDX_PAYLOAD:]``). Every decoder raises only
:class:`~ztnode.errors.DecodeError` on bad bytes; see :mod:`ztnode.wire.verbs._common` for the
policy on optional and trailing bytes.

:func:`decode_payload` dispatches on the verb. OK bodies depend on the verb being answered, so
OK decodes through :func:`decode_ok` into one record per in-re verb. NETWORK_CREDENTIALS belongs
to :mod:`ztnode.wire.credentials` and is delegated there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ztnode.errors import LocalProtocolError
from ztnode.wire.buffer import Buf
from ztnode.wire.constants import VERB_MASK, Verb
from ztnode.wire.verbs._common import VerbPayload
from ztnode.wire.verbs.frames import (
    MULTICAST_LIKE_ENTRY_SIZE,
    ExtFrame,
    ExtFrameFlag,
    ExtFrameSubtype,
    Frame,
    GatherResults,
    MulticastFrame,
    MulticastFrameFlag,
    MulticastGather,
    MulticastGatherFlag,
    MulticastLike,
    MulticastSubscription,
)
from ztnode.wire.verbs.hello import (
    MOON_RECORD_SIZE,
    WORLD_TYPE_MOON,
    WORLD_TYPE_PLANET,
    Hello,
    MoonRef,
)
from ztnode.wire.verbs.multipath import (
    QOS_MAX_PACKET_SIZE,
    QOS_MAX_RECORDS,
    QOS_RECORD_SIZE,
    Ack,
    PathNegotiationRequest,
    QosMeasurement,
    QosRecord,
)
from ztnode.wire.verbs.netconf import (
    CHUNK_FLAG_FAST_PROPAGATE,
    CHUNK_SIGNATURE_LENGTH,
    CHUNK_SIGNATURE_TYPE_C25519,
    MAX_CHUNK_DATA,
    NetworkConfigChunk,
    NetworkConfigRequest,
)
from ztnode.wire.verbs.peer import (
    MAX_REMOTE_TRACE_SIZE,
    PUSH_FLAG_CLUSTER_REDIRECT,
    PUSH_FLAG_FORGET_PATH,
    PUSH_MIN_RECORD_SIZE,
    USER_MESSAGE_RESERVED_TYPES,
    Echo,
    Nop,
    PushDirectPaths,
    PushedPath,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    Whois,
)
from ztnode.wire.verbs.replies import (
    REPLY_HEADER_SIZE,
    Error,
    NetconfAck,
    OkEcho,
    OkExtFrame,
    OkHello,
    OkMulticastFrame,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkOther,
    OkPayload,
    OkWhois,
    decode_ok,
)


def _decode_credentials(payload: Buf) -> object:
    # Owned by the credentials codec; imported on first use so VL1-only users never load it.
    from ztnode.wire.credentials import NetworkCredentials

    return NetworkCredentials.decode(payload)


_DECODERS: Final[dict[int, Callable[[Buf], object]]] = {
    Verb.NOP: Nop.decode,
    Verb.HELLO: Hello.decode,
    Verb.ERROR: Error.decode,
    Verb.OK: decode_ok,
    Verb.WHOIS: Whois.decode,
    Verb.RENDEZVOUS: Rendezvous.decode,
    Verb.FRAME: Frame.decode,
    Verb.EXT_FRAME: ExtFrame.decode,
    Verb.ECHO: Echo.decode,
    Verb.MULTICAST_LIKE: MulticastLike.decode,
    Verb.NETWORK_CREDENTIALS: _decode_credentials,
    Verb.NETWORK_CONFIG_REQUEST: NetworkConfigRequest.decode,
    Verb.NETWORK_CONFIG: NetworkConfigChunk.decode,
    Verb.MULTICAST_GATHER: MulticastGather.decode,
    Verb.MULTICAST_FRAME: MulticastFrame.decode,
    Verb.PUSH_DIRECT_PATHS: PushDirectPaths.decode,
    Verb.ACK: Ack.decode,
    Verb.QOS_MEASUREMENT: QosMeasurement.decode,
    Verb.USER_MESSAGE: UserMessage.decode,
    Verb.REMOTE_TRACE: RemoteTrace.decode,
    Verb.PATH_NEGOTIATION_REQUEST: PathNegotiationRequest.decode,
}


def decode_payload(verb: int, payload: Buf) -> object:
    """Decode ``payload`` for ``verb`` (the low five bits of the verb byte).

    Unassigned verbs (0x0f, the deprecated 0x11, and 0x17-0x1f) decode to :class:`Nop`: the
    reference accepts them and does nothing (protocol-core.md section 8, step 5). Passing a verb
    outside 0..31 (for instance with the compression bit still set) is a caller bug.
    """
    if not 0 <= verb <= VERB_MASK:
        raise LocalProtocolError(f"verb {verb:#x} is not a 5-bit verb; mask the verb byte first")
    return _DECODERS.get(verb, Nop.decode)(payload)


__all__ = [
    "CHUNK_FLAG_FAST_PROPAGATE",
    "CHUNK_SIGNATURE_LENGTH",
    "CHUNK_SIGNATURE_TYPE_C25519",
    "MAX_CHUNK_DATA",
    "MAX_REMOTE_TRACE_SIZE",
    "MOON_RECORD_SIZE",
    "MULTICAST_LIKE_ENTRY_SIZE",
    "PUSH_FLAG_CLUSTER_REDIRECT",
    "PUSH_FLAG_FORGET_PATH",
    "PUSH_MIN_RECORD_SIZE",
    "QOS_MAX_PACKET_SIZE",
    "QOS_MAX_RECORDS",
    "QOS_RECORD_SIZE",
    "REPLY_HEADER_SIZE",
    "USER_MESSAGE_RESERVED_TYPES",
    "WORLD_TYPE_MOON",
    "WORLD_TYPE_PLANET",
    "Ack",
    "Echo",
    "Error",
    "ExtFrame",
    "ExtFrameFlag",
    "ExtFrameSubtype",
    "Frame",
    "GatherResults",
    "Hello",
    "MoonRef",
    "MulticastFrame",
    "MulticastFrameFlag",
    "MulticastGather",
    "MulticastGatherFlag",
    "MulticastLike",
    "MulticastSubscription",
    "NetconfAck",
    "NetworkConfigChunk",
    "NetworkConfigRequest",
    "Nop",
    "OkEcho",
    "OkExtFrame",
    "OkHello",
    "OkMulticastFrame",
    "OkMulticastGather",
    "OkNetworkConfigRequest",
    "OkOther",
    "OkPayload",
    "OkWhois",
    "PathNegotiationRequest",
    "PushDirectPaths",
    "PushedPath",
    "QosMeasurement",
    "QosRecord",
    "RemoteTrace",
    "Rendezvous",
    "UserMessage",
    "VerbPayload",
    "Whois",
    "decode_ok",
    "decode_payload",
]
