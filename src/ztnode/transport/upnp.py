"""UPnP IGD port mappings through async-upnp-client (the ``portmap`` extra).

async-upnp-client is the maintained asyncio UPnP stack (Home Assistant's); its IGD profile has
the WANIPConnection actions the mapper needs (GetExternalIPAddress, GetSpecificPortMappingEntry,
AddPortMapping, DeletePortMapping) and parses the router's XML with defusedxml. miniupnpc's
binding would be the reference's own library, but it blocks for seconds per call and would need
a thread; this one runs on the service's event loop like everything else in ``transport/``.

Without the extra installed, discovery finds nothing and says once why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from async_upnp_client.profiles.igd import IgdDevice

log = logging.getLogger(__name__)

SEARCH_TARGET: Final = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
"""IGD v2 devices answer searches for v1 too (UPnP device architecture, backward compatible)."""
HTTP_TIMEOUT_S: Final = 5
ONLY_PERMANENT_LEASES: Final = 725  # WANIPConnection error: lease must be 0
CONFLICT_IN_MAPPING: Final = 718


@dataclass
class Igd:
    """A router found by discovery: its profile, our LAN address towards it, its WAN one."""

    device: IgdDevice
    local_ip: ipaddress.IPv4Address
    external_ip: ipaddress.IPv4Address


def _local_ip_towards(location: str) -> ipaddress.IPv4Address | None:
    """The address the kernel would send from to the IGD (connect() on UDP sends nothing)."""
    host = urllib.parse.urlsplit(location).hostname
    if not host:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 1900))
            return ipaddress.IPv4Address(s.getsockname()[0])
    except (OSError, ValueError):
        return None


class UpnpClient:
    def __init__(self) -> None:
        self._said_missing = False
        #: SSDP answers ignored because their description URL named another host.
        self.foreign_locations = 0

    async def discover(self, budget_ms: int) -> Igd | None:
        """The first IGD that answers an SSDP search and tells its external address."""
        try:
            from async_upnp_client.aiohttp import AiohttpRequester
            from async_upnp_client.client_factory import UpnpFactory
            from async_upnp_client.profiles.igd import IgdDevice
            from async_upnp_client.search import SsdpSearchListener
        except ImportError:
            if not self._said_missing:
                log.warning(
                    "port mapping: UPnP needs async-upnp-client (pip install ztnode[portmap])"
                )
                self._said_missing = True
            return None
        loop = asyncio.get_running_loop()
        locations: asyncio.Queue[str] = asyncio.Queue(maxsize=32)

        def found(headers: Any) -> None:
            location = str(headers.get("location") or "")
            if headers.get("st") not in IgdDevice.DEVICE_TYPES or not location:
                return
            # Only a description served by the host that answered: an answer must not make
            # us fetch URLs elsewhere.
            if urllib.parse.urlsplit(location).hostname != headers.get("_host"):
                self.foreign_locations += 1
                return
            with contextlib.suppress(asyncio.QueueFull):
                locations.put_nowait(location)

        async def connected() -> None:
            listener.async_search()

        timeout_s = max(1, budget_ms // 1000)
        listener = SsdpSearchListener(
            callback=found,
            loop=loop,
            timeout=timeout_s,
            search_target=SEARCH_TARGET,
            async_connect_callback=connected,
        )
        deadline = loop.time() + budget_ms / 1000
        seen: set[str] = set()
        try:
            await listener.async_start()
        except OSError as e:
            log.debug("UPnP: cannot search: %s", e)
            return None
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    location = await asyncio.wait_for(locations.get(), left)
                except TimeoutError:
                    return None
                if location in seen:
                    continue
                seen.add(location)
                factory = UpnpFactory(AiohttpRequester(HTTP_TIMEOUT_S), non_strict=True)
                igd = await self._describe(location, factory)
                if igd is not None:
                    return igd
            return None
        finally:
            listener.async_stop()

    async def _describe(self, location: str, factory: Any) -> Igd | None:
        from async_upnp_client.exceptions import UpnpError
        from async_upnp_client.profiles.igd import IgdDevice

        local_ip = _local_ip_towards(location)
        if local_ip is None:
            return None
        try:
            device = await factory.async_create_device(location)
            igd = IgdDevice(device, None)
            text = await igd.async_get_external_ip_address()
            external = ipaddress.IPv4Address(text) if text else None
        except (UpnpError, OSError, ValueError) as e:
            log.debug("UPnP: %s is no usable IGD: %s", location, e)
            return None
        if external is None or external.is_unspecified:
            return None
        return Igd(igd, local_ip, external)

    async def add_udp(
        self, igd: Igd, external_port: int, internal_port: int, lease_s: int, description: str
    ) -> int | None:
        """Map ``external_port`` to our ``internal_port``: the lease granted (0 permanent) or
        None when the port is someone else's or the router refused."""
        from async_upnp_client.exceptions import UpnpActionError, UpnpError

        try:
            entry = await _call(igd, "GetSpecificPortMappingEntry", external_port)
        except (UpnpError, OSError, ValueError):
            entry = None  # no such entry (error 714), or a router without the action
        if entry is not None and (
            str(entry.get("NewInternalClient")) != str(igd.local_ip)
            or entry.get("NewInternalPort") != internal_port
        ):
            return None  # another client's mapping: the next port
        lease = lease_s
        for _ in range(2):
            try:
                await _call(
                    igd,
                    "AddPortMapping",
                    external_port,
                    NewInternalPort=internal_port,
                    NewInternalClient=str(igd.local_ip),
                    NewEnabled=True,
                    NewPortMappingDescription=description,
                    NewLeaseDuration=lease,
                )
                return lease
            except UpnpActionError as e:
                if e.error_code == ONLY_PERMANENT_LEASES and lease:
                    lease = 0
                    continue
                log.debug("UPnP: AddPortMapping %d refused: %s", external_port, e)
                return None
            except (UpnpError, OSError, ValueError) as e:
                log.debug("UPnP: AddPortMapping %d failed: %s", external_port, e)
                return None
        return None

    async def delete_udp(self, igd: Igd, external_port: int) -> bool:
        from async_upnp_client.exceptions import UpnpError

        try:
            await _call(igd, "DeletePortMapping", external_port)
        except (UpnpError, OSError, ValueError) as e:
            log.debug("UPnP: DeletePortMapping %d failed: %s", external_port, e)
            return False
        return True


_CONNECTION_SERVICES: Final = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)


async def _call(igd: Igd, action: str, external_port: int, **args: Any) -> dict[str, Any]:
    """One WANIPConnection action on the UDP ``external_port`` with the wildcard remote host,
    which the IGD specification writes as the empty string (the profile's helpers send
    ``0.0.0.0``, which routers without remote-host support refuse)."""
    from async_upnp_client.exceptions import UpnpError

    for device in igd.device.device.all_devices:
        for service_type in _CONNECTION_SERVICES:
            service = device.find_service(service_type)
            if service is not None and service.has_action(action):
                result = await service.action(action).async_call(
                    NewRemoteHost="", NewExternalPort=external_port, NewProtocol="UDP", **args
                )
                return dict(result)
    raise UpnpError(f"the IGD has no {action} action")
