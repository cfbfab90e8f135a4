"""NAT-PMP (RFC 6886) messages, bytes to objects and back.

The port mapper (:mod:`ztnode.transport.portmap`) asks the default gateway for its external
address and for a UDP mapping; no maintained Python library speaks NAT-PMP (PyPI has
``py-natpmp`` and ``nat-pmp``, both blocking and unmaintained), so the few fixed layouts of
RFC 6886 section 3 live here, stateless. Responses come from the network: every reader raises
only :class:`~ztnode.errors.DecodeError`, and error responses are accepted in the short 8-byte
form the RFC allows a server that cannot parse the request (section 3.5).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ztnode.errors import DecodeError

PORT: Final = 5351
"""The gateway's NAT-PMP port (RFC 6886 section 3)."""
VERSION: Final = 0
OP_PUBLIC_ADDRESS: Final = 0
OP_MAP_UDP: Final = 1
OP_MAP_TCP: Final = 2
RESPONSE_BIT: Final = 128

_HEADER = struct.Struct("!BBHI")  # version, opcode, result code, seconds since epoch
_MAP_REQUEST = struct.Struct("!BBHHHI")
_MAP_BODY = struct.Struct("!HHI")


class ResultCode(IntEnum):
    """RFC 6886 section 3.5."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


@dataclass(frozen=True)
class PublicAddressRequest:
    def encode(self) -> bytes:
        return bytes((VERSION, OP_PUBLIC_ADDRESS))


@dataclass(frozen=True)
class MappingRequest:
    """A new mapping, a renewal (the same request again), or with ``lifetime`` 0 and
    ``external_port`` 0 the deletion of the mapping of ``internal_port`` (section 3.4)."""

    internal_port: int
    external_port: int
    lifetime: int
    udp: bool = True

    def encode(self) -> bytes:
        for name, port in (("internal", self.internal_port), ("external", self.external_port)):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"{name} port {port} is not a port")
        if not 0 <= self.lifetime <= 0xFFFFFFFF:
            raise ValueError(f"lifetime {self.lifetime} does not fit 32 bits")
        op = OP_MAP_UDP if self.udp else OP_MAP_TCP
        return _MAP_REQUEST.pack(
            VERSION, op, 0, self.internal_port, self.external_port, self.lifetime
        )


@dataclass(frozen=True)
class PublicAddressResponse:
    result: int
    epoch: int
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class MappingResponse:
    """``udp`` tells which protocol was mapped; ``external_port`` is the one the gateway chose,
    which may differ from the one asked for."""

    result: int
    epoch: int
    udp: bool
    internal_port: int
    external_port: int
    lifetime: int


Response = PublicAddressResponse | MappingResponse


def decode_response(data: bytes) -> Response:
    """A gateway's answer; a request (opcode below 128), another version or a cut layout is a
    :class:`DecodeError`. A non-zero result code is decoded, not raised: the caller decides."""
    if len(data) < _HEADER.size:
        raise DecodeError(f"NAT-PMP response of {len(data)} bytes, at least 8 expected")
    version, op, result, epoch = _HEADER.unpack_from(data)
    if version != VERSION:
        raise DecodeError(f"NAT-PMP version {version}, 0 expected")
    if op < RESPONSE_BIT:
        raise DecodeError(f"NAT-PMP opcode {op} is a request")
    request_op = op - RESPONSE_BIT
    if request_op not in (OP_PUBLIC_ADDRESS, OP_MAP_UDP, OP_MAP_TCP):
        raise DecodeError(f"NAT-PMP response to unknown opcode {request_op}")
    short = result != ResultCode.SUCCESS and len(data) == _HEADER.size
    if request_op == OP_PUBLIC_ADDRESS:
        if short:
            return PublicAddressResponse(result, epoch, ipaddress.IPv4Address(0))
        if len(data) < _HEADER.size + 4:
            raise DecodeError("NAT-PMP public address response cut short")
        raw = data[_HEADER.size : _HEADER.size + 4]
        return PublicAddressResponse(result, epoch, ipaddress.IPv4Address(raw))
    udp = request_op == OP_MAP_UDP
    if short:
        return MappingResponse(result, epoch, udp, 0, 0, 0)
    if len(data) < _HEADER.size + _MAP_BODY.size:
        raise DecodeError("NAT-PMP mapping response cut short")
    internal, external, lifetime = _MAP_BODY.unpack_from(data, _HEADER.size)
    return MappingResponse(result, epoch, udp, internal, external, lifetime)


def encode_response(response: Response) -> bytes:
    """The server's side, for tests and for a gateway written on top of ztnode."""
    if isinstance(response, PublicAddressResponse):
        head = _HEADER.pack(
            VERSION, RESPONSE_BIT + OP_PUBLIC_ADDRESS, response.result, response.epoch
        )
        return head + response.address.packed
    op = OP_MAP_UDP if response.udp else OP_MAP_TCP
    head = _HEADER.pack(VERSION, RESPONSE_BIT + op, response.result, response.epoch)
    body = _MAP_BODY.pack(response.internal_port, response.external_port, response.lifetime)
    return head + body
