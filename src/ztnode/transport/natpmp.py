"""NAT-PMP exchanges with the default gateway (RFC 6886), over asyncio.

One request at a time on a UDP socket connected to the gateway's port 5351 (so the kernel
drops datagrams from anyone else, the source check of section 3.1), retransmitted after 250 ms
and then at doubling intervals, within the caller's time budget. A gateway without a NAT-PMP
server usually answers with ICMP port unreachable, which ends the exchange at once. Answers
that do not decode or do not answer the request are counted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Final

from ztnode.errors import DecodeError
from ztnode.wire import natpmp

log = logging.getLogger(__name__)

FIRST_RETRANSMIT_MS: Final = 250
MAX_SENDS: Final = 9  # RFC 6886 section 3.1: 250 ms doubling, nine times in all


def default_gateway(route_table: Path = Path("/proc/net/route")) -> ipaddress.IPv4Address | None:
    """The IPv4 default route's gateway in this network namespace (libnatpmp reads the same
    table), or None."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) < 4 or cols[1] != "00000000":
            continue
        try:
            flags = int(cols[3], 16)
            raw = int(cols[2], 16)
        except ValueError:
            continue
        if flags & 0x2 and raw:  # RTF_GATEWAY
            return ipaddress.IPv4Address(raw.to_bytes(4, "little"))
    return None


def send_times(budget_ms: int) -> list[int]:
    """When (ms after the first send) each transmission goes, within ``budget_ms``."""
    times: list[int] = []
    at, gap = 0, FIRST_RETRANSMIT_MS
    while at < budget_ms and len(times) < MAX_SENDS:
        times.append(at)
        at += gap
        gap *= 2
    return times


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr: object) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(exc)


class NatPmpClient:
    """Requests to one gateway. ``drops`` counts the answers ignored, by reason."""

    def __init__(self, gateway: ipaddress.IPv4Address, port: int = natpmp.PORT) -> None:
        self.gateway = gateway
        self.port = port
        self.drops: Counter[str] = Counter()

    async def public_address(self, budget_ms: int) -> ipaddress.IPv4Address | None:
        answer = await self._exchange(natpmp.PublicAddressRequest().encode(), None, budget_ms)
        if isinstance(answer, natpmp.PublicAddressResponse):
            return answer.address
        return None

    async def map_udp(
        self, internal_port: int, external_port: int, lifetime: int, budget_ms: int
    ) -> natpmp.MappingResponse | None:
        """The granted mapping (its lifetime 0 when this was a deletion), or None."""
        request = natpmp.MappingRequest(internal_port, external_port, lifetime)
        answer = await self._exchange(request.encode(), internal_port, budget_ms)
        return answer if isinstance(answer, natpmp.MappingResponse) else None

    async def _exchange(
        self, request: bytes, internal_port: int | None, budget_ms: int
    ) -> natpmp.Response | None:
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_datagram_endpoint(
                _Receiver, remote_addr=(str(self.gateway), self.port), family=socket.AF_INET
            )
        except OSError as e:
            log.debug("NAT-PMP: no socket to %s: %s", self.gateway, e)
            return None
        try:
            start = loop.time()
            deadline = start + budget_ms / 1000
            times = send_times(budget_ms)
            for i in range(len(times)):
                transport.sendto(request)
                until = start + times[i + 1] / 1000 if i + 1 < len(times) else deadline
                answer = await self._await_answer(proto, request, internal_port, until)
                if answer is not None:
                    return None if isinstance(answer, OSError) else answer
            return None
        finally:
            transport.close()

    async def _await_answer(
        self, proto: _Receiver, request: bytes, internal_port: int | None, until: float
    ) -> natpmp.Response | OSError | None:
        """The answer before ``until`` (the next retransmission or the deadline), or an
        OSError when the gateway refused the datagram (no server) or the request."""
        loop = asyncio.get_running_loop()
        while (left := until - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(proto.queue.get(), left)
            except TimeoutError:
                return None
            if isinstance(item, OSError):
                log.debug("NAT-PMP: %s refused: %s", self.gateway, item)
                return item
            try:
                answer = natpmp.decode_response(item)
            except DecodeError:
                self.drops["malformed"] += 1
                continue
            if not self._answers(answer, request, internal_port):
                self.drops["unrelated"] += 1
                continue
            if answer.result != natpmp.ResultCode.SUCCESS:
                log.debug("NAT-PMP: %s answered result code %d", self.gateway, answer.result)
                return OSError(f"NAT-PMP result code {answer.result}")
            return answer
        return None

    @staticmethod
    def _answers(answer: natpmp.Response, request: bytes, internal_port: int | None) -> bool:
        if request[1] == natpmp.OP_PUBLIC_ADDRESS:
            return isinstance(answer, natpmp.PublicAddressResponse)
        if not isinstance(answer, natpmp.MappingResponse) or not answer.udp:
            return False
        # A short error answer carries no port; a full one must be about our port.
        return answer.internal_port in (internal_port, 0)
