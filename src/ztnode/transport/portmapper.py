"""The port mapper's driver: runs :class:`~ztnode.transport.portmap.MappingPlanner`'s steps on
the event loop with the NAT-PMP and UPnP clients, tells the service when the mapped address
changes, and deletes the mapping on stop. Whether it may run at all is decided by the service
(see :mod:`ztnode.transport.portmap` on network safety)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

from ztnode.transport.natpmp import NatPmpClient, default_gateway
from ztnode.transport.portmap import (
    REMOVAL_TIMEOUT_MS,
    AskNatPmpAddress,
    AskNatPmpMapping,
    AskUpnpMapping,
    DiscoverIgd,
    FindGateway,
    MappingPlanner,
    PortMapping,
    RemoveUpnpMapping,
    Step,
    Wait,
)
from ztnode.transport.upnp import Igd, UpnpClient
from ztnode.wire import natpmp

log = logging.getLogger(__name__)


class PortMapper:
    """Maps ``local_port`` (UDP) on the router until stopped.

    ``on_change`` is called with the mapping to advertise (None: none) whenever it changes,
    expiry included; ``clock`` gives the service's milliseconds. ``gateway``, ``upnp`` and
    ``natpmp_port`` are where the tests put a loopback gateway and a fake IGD.
    """

    def __init__(
        self,
        local_port: int,
        description: str,
        on_change: Callable[[PortMapping | None], None],
        clock: Callable[[], int],
        *,
        gateway: Callable[[], ipaddress.IPv4Address | None] = default_gateway,
        upnp: UpnpClient | None = None,
        natpmp_port: int = natpmp.PORT,
    ) -> None:
        self.planner = MappingPlanner(local_port, description)
        self._on_change = on_change
        self._clock = clock
        self._find_gateway = gateway
        self._upnp = upnp or UpnpClient()
        self._natpmp_port = natpmp_port
        self._gateway: ipaddress.IPv4Address | None = None
        self._natpmp: NatPmpClient | None = None
        self._igd: Igd | None = None
        self._published: PortMapping | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def mapping(self) -> PortMapping | None:
        return self._published

    def start(self) -> None:
        log.info(
            "port mapping: mapping UDP port %d on the router (NAT-PMP, then UPnP IGD)",
            self.planner.local_port,
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ztnode-portmap")

    async def stop(self) -> None:
        """Stop asking and delete the mapping (waiting at most two seconds for the router)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        removal = self.planner.removal()
        mapping = self._published
        if removal is not None and mapping is not None:
            try:
                async with asyncio.timeout(REMOVAL_TIMEOUT_MS / 1000):
                    done = await self._remove(removal)
            except TimeoutError:
                done = False
            if done:
                log.info("port mapping: removed %s", mapping)
            else:
                log.warning("port mapping: the router did not confirm removing %s", mapping)
        self._publish(None)

    async def _run(self) -> None:
        while True:
            now = self._clock()
            self._publish(self.planner.current(now))
            step = self.planner.next_step(now)
            if isinstance(step, Wait):
                await asyncio.sleep(max(0, step.until - now) / 1000)
                continue
            try:
                await self._perform(step)
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except Exception:  # a router's odd answer must not end the mapper
                log.exception("port mapping: %s failed", type(step).__name__)
                self._fail(step)
            for line in self.planner.notices:
                log.info("%s", line)
            self.planner.notices.clear()

    async def _perform(self, step: Step) -> None:
        p = self.planner
        if isinstance(step, FindGateway):
            self._gateway = self._find_gateway()
            if self._gateway is not None and (
                self._natpmp is None or self._natpmp.gateway != self._gateway
            ):
                self._natpmp = NatPmpClient(self._gateway, self._natpmp_port)
            p.gateway(self._clock(), self._gateway is not None)
        elif isinstance(step, AskNatPmpAddress):
            address = None
            if self._natpmp is not None:
                address = await self._natpmp.public_address(step.timeout_ms)
            p.natpmp_address(self._clock(), address)
        elif isinstance(step, AskNatPmpMapping):
            granted = None
            if self._natpmp is not None:
                granted = await self._natpmp.map_udp(
                    step.internal_port, step.external_port, step.lifetime, step.timeout_ms
                )
            if granted is None:
                p.natpmp_mapped(self._clock(), None)
            else:
                p.natpmp_mapped(self._clock(), granted.external_port, granted.lifetime)
        elif isinstance(step, DiscoverIgd):
            igd = await self._upnp.discover(step.timeout_ms)
            if igd is not None:  # the last one found stays, to delete its mapping on stop
                self._igd = igd
            p.igd(self._clock(), igd.external_ip if igd is not None else None)
        elif isinstance(step, AskUpnpMapping):
            lease = None
            if self._igd is not None:
                lease = await self._upnp.add_udp(
                    self._igd,
                    step.external_port,
                    step.internal_port,
                    step.lease_s,
                    step.description,
                )
            p.upnp_mapped(self._clock(), lease)

    def _fail(self, step: Step) -> None:
        p, now = self.planner, self._clock()
        if isinstance(step, FindGateway):
            p.gateway(now, False)
        elif isinstance(step, AskNatPmpAddress):
            p.natpmp_address(now, None)
        elif isinstance(step, AskNatPmpMapping):
            p.natpmp_mapped(now, None)
        elif isinstance(step, DiscoverIgd):
            p.igd(now, None)
        elif isinstance(step, AskUpnpMapping):
            p.upnp_mapped(now, None)

    async def _remove(self, step: Step) -> bool:
        if isinstance(step, AskNatPmpMapping) and self._natpmp is not None:
            answer = await self._natpmp.map_udp(step.internal_port, 0, 0, step.timeout_ms)
            return answer is not None
        if isinstance(step, RemoveUpnpMapping) and self._igd is not None:
            return await self._upnp.delete_udp(self._igd, step.external_port)
        return False

    def _publish(self, mapping: PortMapping | None) -> None:
        if mapping != self._published:
            if mapping is None and self._published is not None and self._task is not None:
                log.info("port mapping: %s expired unrenewed", self._published)
            self._published = mapping
            self._on_change(mapping)
