"""Network configuration transfer: NETWORK_CONFIG_REQUEST (0x0b) and config chunks (0x0c).

A controller answers a request with one or more signed chunks of the configuration dictionary,
either as OK(NETWORK_CONFIG_REQUEST) or pushed as NETWORK_CONFIG; both carry the same body
(Node.cpp:774-831, Network.cpp:964-1108; protocol-network.md section 2). The dictionaries
themselves stay raw bytes here: the dictionary codec is separate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Final, Self

from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.constants import IDX_PAYLOAD, MAX_PACKET_LENGTH, Verb
from ztnode.wire.verbs._common import VerbPayload

CHUNK_SIGNATURE_TYPE_C25519: Final = 1  # the only type the reference accepts
CHUNK_SIGNATURE_LENGTH: Final = 96
CHUNK_FLAG_FAST_PROPAGATE: Final = 0x01
# Largest dictionary slice a controller puts in one chunk (Node.cpp:797): room is left for the
# header, the other chunk fields, the signature and compression overhead.
MAX_CHUNK_DATA: Final = MAX_PACKET_LENGTH - (IDX_PAYLOAD + 256)
_HAVE_FIELDS_SIZE: Final = 16


@dataclass(frozen=True, slots=True)
class NetworkConfigRequest(VerbPayload):
    """NETWORK_CONFIG_REQUEST: ``nwid | u16 len | metadata dictionary | [u64 rev | u64 ts]``.

    The reference sends the revision and timestamp of the config it holds (zeros for none); the
    embedded controller ignores them (IncomingPacket.cpp:1162-1189). Old requests may stop after
    the network id (metadata then decodes as empty) or after the metadata (``have_*`` then
    ``None``). Trailing bytes are ignored.
    """

    VERB: ClassVar[Verb] = Verb.NETWORK_CONFIG_REQUEST

    network_id: int
    metadata: bytes = b""
    have_revision: int | None = None
    have_timestamp: int | None = None

    def __post_init__(self) -> None:
        if (self.have_revision is None) != (self.have_timestamp is None):
            raise LocalProtocolError("have_revision and have_timestamp go together")

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("NCR network id")
        metadata = b""
        if not r.at_end():
            metadata = r.raw(r.u16("NCR metadata length"), "NCR metadata")
        rev = ts = None
        if r.remaining >= _HAVE_FIELDS_SIZE:
            rev = r.u64("NCR revision")
            ts = r.u64("NCR timestamp")
        return cls(nwid, metadata, rev, ts)

    def write(self, writer: Writer) -> None:
        writer.u64(self.network_id).u16(len(self.metadata)).raw(self.metadata)
        if self.have_revision is not None and self.have_timestamp is not None:
            writer.u64(self.have_revision).u64(self.have_timestamp)


@dataclass(frozen=True, slots=True)
class NetworkConfigChunk(VerbPayload):
    """One signed slice of a network configuration dictionary (NETWORK_CONFIG payload).

    Layout::

        u64 nwid | u16 len | data[len]                       (legacy form ends here)
        u8 flags | u64 update id | u32 total length | u32 chunk index (a byte offset)
        u8 signature type (1) | u16 signature length (96) | signature[96]

    The controller signs everything from nwid through chunk index (:meth:`signed_portion`) with
    its identity; verifying is the caller's job since it needs the controller identity.

    The legacy form (no fields after the data, ``signature is None``) is what old controllers
    send as OK(NETWORK_CONFIG_REQUEST); the reference accepts it only from the controller itself
    and treats it as a whole config (update id = packet id). Packet.hpp says NETWORK_CONFIG
    never uses it, but ``Network::handleConfigChunk`` does not distinguish, so neither does this
    decoder. Decoded legacy chunks have ``flags = update_id = chunk_index = 0`` and
    ``total_length = len(data)``, and the constructor insists on exactly that.

    Decoding rejects a signature type other than 1, a signature length other than 96 and a
    chunk reaching past ``total_length`` (the reference ignores such chunks). Bytes after the
    signature are ignored. The dictionary-capacity limit on ``total_length`` is left to the
    assembler.
    """

    VERB: ClassVar[Verb] = Verb.NETWORK_CONFIG

    network_id: int
    data: bytes
    flags: int
    update_id: int
    total_length: int
    chunk_index: int
    signature: bytes | None

    def __post_init__(self) -> None:
        if self.signature is None:
            if self.flags or self.update_id or self.chunk_index:
                raise LocalProtocolError("a legacy (unsigned) chunk has no flags/update id/index")
            if self.total_length != len(self.data):
                raise LocalProtocolError("a legacy (unsigned) chunk is the whole dictionary")
        elif len(self.signature) != CHUNK_SIGNATURE_LENGTH:
            raise LocalProtocolError(f"chunk signatures are {CHUNK_SIGNATURE_LENGTH} bytes")

    @classmethod
    def legacy(cls, network_id: int, data: bytes) -> NetworkConfigChunk:
        """An unsigned single-chunk config as pre-1.2 controllers sent it."""
        return cls(network_id, data, 0, 0, len(data), 0, None)

    @classmethod
    def signed(
        cls,
        network_id: int,
        data: bytes,
        *,
        update_id: int,
        total_length: int,
        chunk_index: int,
        sign: Callable[[bytes], bytes],
        flags: int = 0,
    ) -> NetworkConfigChunk:
        """Build a chunk and sign it with ``sign`` (e.g. the controller identity's ``sign``)."""
        unsigned = cls(
            network_id,
            data,
            flags,
            update_id,
            total_length,
            chunk_index,
            bytes(CHUNK_SIGNATURE_LENGTH),
        )
        return replace(unsigned, signature=sign(unsigned.signed_portion()))

    @property
    def is_legacy(self) -> bool:
        return self.signature is None

    @property
    def fast_propagate(self) -> bool:
        """Receivers should re-send the verified chunk to their other members (flag 0x01)."""
        return bool(self.flags & CHUNK_FLAG_FAST_PROPAGATE)

    @classmethod
    def _read(cls, r: Reader) -> Self:
        nwid = r.u64("config network id")
        data = r.raw(r.u16("config chunk length"), "config chunk")
        if r.at_end():
            return cls(nwid, data, 0, 0, len(data), 0, None)
        flags = r.u8("config chunk flags")
        update_id = r.u64("config update id")
        total = r.u32("config total length")
        index = r.u32("config chunk index")
        if index + len(data) > total:
            raise DecodeError(
                f"config chunk [{index}, {index + len(data)}) runs past total length {total}"
            )
        sig_type = r.u8("config signature type")
        sig_len = r.u16("config signature length")
        if sig_type != CHUNK_SIGNATURE_TYPE_C25519 or sig_len != CHUNK_SIGNATURE_LENGTH:
            raise DecodeError(f"unsupported config chunk signature type {sig_type}/{sig_len}")
        signature = r.raw(sig_len, "config signature")
        return cls(nwid, data, flags, update_id, total, index, signature)

    def _write_signed(self, w: Writer) -> None:
        w.u64(self.network_id).u16(len(self.data)).raw(self.data)
        if self.signature is not None:
            w.u8(self.flags).u64(self.update_id).u32(self.total_length).u32(self.chunk_index)

    def signed_portion(self) -> bytes:
        """The bytes the controller signs: nwid through chunk index, as on the wire.

        Every field is fixed-format, so re-serialising reproduces the received bytes exactly.
        Controllers use :meth:`signed` rather than calling this themselves. Meaningless for
        legacy chunks, which are unsigned.
        """
        w = Writer()
        self._write_signed(w)
        return bytes(w.buf)

    def write(self, writer: Writer) -> None:
        self._write_signed(writer)
        if self.signature is not None:
            writer.u8(CHUNK_SIGNATURE_TYPE_C25519).u16(len(self.signature)).raw(self.signature)


__all__ = [
    "CHUNK_FLAG_FAST_PROPAGATE",
    "CHUNK_SIGNATURE_LENGTH",
    "CHUNK_SIGNATURE_TYPE_C25519",
    "MAX_CHUNK_DATA",
    "NetworkConfigChunk",
    "NetworkConfigRequest",
]
