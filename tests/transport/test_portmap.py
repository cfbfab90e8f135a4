"""Port mapping: settings, the veto, the planner's order and timing under a virtual clock (as
ZeroTierOne's PortMapper), the NAT-PMP exchange and the driver against a NAT-PMP server on
loopback. No test here sends anything off loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztnode.errors import DecodeError
from ztnode.transport import portmap as pm
from ztnode.transport.natpmp import NatPmpClient, default_gateway, send_times
from ztnode.transport.portmapper import PortMapper
from ztnode.transport.service import NodeService, ServiceConfig
from ztnode.transport.upnp import Igd, UpnpClient
from ztnode.wire import natpmp

EXT = ipaddress.IPv4Address("203.0.113.7")
LOCAL = 29994


# settings and veto ---------------------------------------------------------------------------


def test_settings_from_local_conf() -> None:
    assert pm.PortMapSettings.from_local_conf({}) == pm.PortMapSettings(None, 0)
    got = pm.PortMapSettings.from_local_conf({"portMappingEnabled": True, "tertiaryPort": 4000})
    assert got == pm.PortMapSettings(True, 4000)
    assert pm.PortMapSettings.from_local_conf({"portMappingEnabled": False}).enabled is False


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        # ("yes" and 1 are true, as ZeroTierOne's jsonBool reads them)
        ({"portMappingEnabled": "maybe"}, "settings.portMappingEnabled"),
        ({"portMappingEnabled": 2}, "settings.portMappingEnabled"),
        ({"tertiaryPort": 70000}, "settings.tertiaryPort"),
        ({"tertiaryPort": "9"}, "settings.tertiaryPort"),
        ({"tertiaryPort": True}, "settings.tertiaryPort"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(DecodeError, match=key):
        pm.PortMapSettings.from_local_conf(settings)


def test_veto() -> None:
    assert pm.vetoed({pm.VETO_ENV: "1"})
    assert pm.vetoed({pm.VETO_ENV: "yes"})
    assert not pm.vetoed({pm.VETO_ENV: "0"})
    assert not pm.vetoed({pm.VETO_ENV: ""})
    assert not pm.vetoed({})
    assert pm.vetoed(), "the suite's conftest must veto port mapping for every test"


def test_external_ports_wrap_as_the_reference() -> None:
    assert pm.external_port_to_try(9993, 0) == 9993
    assert pm.external_port_to_try(9993, 59) == 10052
    assert pm.external_port_to_try(65530, 4) == 65534
    assert pm.external_port_to_try(65530, 5) == 1025
    assert pm.external_port_to_try(65530, 6) == 1026


# the planner ---------------------------------------------------------------------------------


def planner() -> pm.MappingPlanner:
    return pm.MappingPlanner(LOCAL, f"ZeroTier/0123456789@{LOCAL}")


def test_gateway_retries_back_off_to_30_seconds() -> None:
    p, now, waits = planner(), 1000, []
    for _ in range(10):
        assert p.next_step(now) == pm.FindGateway()
        p.gateway(now, False)
        step = p.next_step(now)
        assert isinstance(step, pm.Wait)
        waits.append(step.until - now)
        now = step.until
    assert waits == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
    assert p.notices == ["port mapping: no default gateway yet, waiting for one"]
    p.gateway(now, True)
    assert p.next_step(now) == pm.AskNatPmpAddress()


def test_natpmp_first_then_refresh_every_five_minutes() -> None:
    p, now = planner(), 0
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    assert p.next_step(now) == pm.AskNatPmpAddress()
    p.natpmp_address(now, EXT)
    assert p.next_step(now) == pm.AskNatPmpMapping(LOCAL, LOCAL, 600)
    p.natpmp_mapped(now, LOCAL, 600)
    m = p.current(now)
    assert m is not None and (m.protocol, m.external_ip, m.external_port) == (
        pm.Protocol.NATPMP,
        EXT,
        LOCAL,
    )
    assert p.notices == [f"port mapping: UDP {EXT}:{LOCAL} -> local port {LOCAL} by NAT-PMP "
                         "(lifetime 600 s)"]  # fmt: skip
    assert p.next_step(now) == pm.Wait(300_000)
    # The refresh asks again for the same port; an unchanged mapping is not announced again.
    now = 300_000
    p.notices.clear()
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    p.natpmp_address(now, EXT)
    assert p.next_step(now) == pm.AskNatPmpMapping(LOCAL, LOCAL, 600)
    p.natpmp_mapped(now, LOCAL, 600)
    assert p.notices == []
    assert p.current(now + 599_999) is not None


def test_short_natpmp_lifetime_renews_at_half_of_it() -> None:
    p = planner()
    p.gateway(0, True)
    p.natpmp_address(0, EXT)
    p.natpmp_mapped(0, LOCAL + 3, 120)
    assert p.next_step(0) == pm.Wait(60_000)
    m = p.current(0)
    assert m is not None and m.external_port == LOCAL + 3  # the gateway's choice is kept


def test_natpmp_refusals_walk_60_ports_then_upnp() -> None:
    p, now = planner(), 0
    p.gateway(now, True)
    asked = []
    for _ in range(pm.PORT_TRIES):
        assert p.next_step(now) == pm.AskNatPmpAddress()  # asked again before each port
        p.natpmp_address(now, EXT)
        step = p.next_step(now)
        assert isinstance(step, pm.AskNatPmpMapping)
        asked.append(step.external_port)
        p.natpmp_mapped(now, None)
    assert asked == list(range(LOCAL, LOCAL + 60))
    # At once, no pause: the gateway check, then UPnP discovery.
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    assert p.next_step(now) == pm.DiscoverIgd()


def test_no_natpmp_answer_falls_back_to_upnp_with_a_pause_between_refusals() -> None:
    p, now = planner(), 0
    p.gateway(now, True)
    p.natpmp_address(now, None)
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    assert p.next_step(now) == pm.DiscoverIgd()
    p.igd(now, EXT)
    step = p.next_step(now)
    assert step == pm.AskUpnpMapping(LOCAL, LOCAL, 600, f"ZeroTier/0123456789@{LOCAL}")
    p.upnp_mapped(now, None)
    assert p.next_step(now) == pm.Wait(1000)
    now = 1000
    assert p.next_step(now) == pm.AskUpnpMapping(LOCAL, LOCAL + 1, 600, p.description)
    p.upnp_mapped(now, 600)
    m = p.current(now)
    assert m is not None and (m.protocol, m.external_port) == (pm.Protocol.UPNP, LOCAL + 1)
    # UPnP stays the mode for the next round (as the reference).
    now += 300_000
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    assert p.next_step(now) == pm.DiscoverIgd()


def test_sixty_upnp_refusals_wait_for_the_next_round() -> None:
    p, now = planner(), 0
    p.gateway(now, True)
    p.natpmp_address(now, None)
    p.gateway(now, True)
    p.igd(now, EXT)
    pauses = []
    for i in range(pm.PORT_TRIES):
        step = p.next_step(now)
        assert isinstance(step, pm.AskUpnpMapping) and step.external_port == LOCAL + i
        p.upnp_mapped(now, None)
        wait = p.next_step(now)
        assert isinstance(wait, pm.Wait)
        pauses.append(wait.until - now)
        now = wait.until
    assert pauses == [1000] * 59 + [300_000]
    assert p.current(now) is None
    assert p.next_step(now) == pm.FindGateway()
    p.gateway(now, True)
    assert p.next_step(now) == pm.DiscoverIgd()  # still UPnP, as the reference


def test_permanent_upnp_lease_never_expires() -> None:
    p = planner()
    p.gateway(0, True)
    p.natpmp_address(0, None)
    p.gateway(0, True)
    p.igd(0, EXT)
    p.upnp_mapped(0, 0)
    m = p.current(10**12)
    assert m is not None and m.expires is None and "permanent" in str(m)


def test_nothing_answers_says_so_once_and_returns_to_natpmp() -> None:
    p, now = planner(), 0
    for _ in range(3):
        assert p.next_step(now) == pm.FindGateway()
        p.gateway(now, True)
        assert p.next_step(now) == pm.AskNatPmpAddress()
        p.natpmp_address(now, None)
        p.gateway(now, True)
        assert p.next_step(now) == pm.DiscoverIgd()
        p.igd(now, None)
        assert p.next_step(now) == pm.Wait(now + 300_000)
        now += 300_000
    assert p.notices == [
        "port mapping: no router answered (NAT-PMP nor UPnP IGD); trying again every 300 s"
    ]


def test_a_mapping_not_renewed_stops_being_advertised_at_its_expiry() -> None:
    p, now = planner(), 0
    p.gateway(now, True)
    p.natpmp_address(now, EXT)
    p.natpmp_mapped(now, LOCAL, 600)
    now = 300_000  # the refresh round: nothing answers any more
    p.gateway(now, True)
    p.natpmp_address(now, None)
    p.gateway(now, True)
    p.igd(now, None)
    # The next round is at 600 000 + ..., later than the expiry: the driver wakes at expiry.
    assert p.next_step(now) == pm.Wait(600_000)
    assert p.current(599_999) is not None
    assert p.current(600_000) is None


def test_removal_on_stop() -> None:
    p = planner()
    assert p.removal() is None
    p.gateway(0, True)
    p.natpmp_address(0, EXT)
    p.natpmp_mapped(0, LOCAL + 2, 600)
    assert p.removal() == pm.AskNatPmpMapping(LOCAL, 0, 0, timeout_ms=pm.REMOVAL_TIMEOUT_MS)
    assert p.current(0) is None and p.removal() is None
    q = planner()
    q.gateway(0, True)
    q.natpmp_address(0, None)
    q.gateway(0, True)
    q.igd(0, EXT)
    q.upnp_mapped(0, 600)
    assert q.removal() == pm.RemoveUpnpMapping(LOCAL)


# the NAT-PMP exchange ------------------------------------------------------------------------


def test_retransmission_schedule_is_rfc_6886() -> None:
    assert send_times(5000) == [0, 250, 750, 1750, 3750]
    assert send_times(10_000) == [0, 250, 750, 1750, 3750, 7750]
    assert len(send_times(10**9)) == 9  # nine sends at most (64 s in all)


def test_default_gateway_from_the_route_table(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert default_gateway(table) == ipaddress.IPv4Address("192.168.1.1")
    table.write_text("Iface\tDestination\tGateway\tFlags\n")
    assert default_gateway(table) is None
    assert default_gateway(tmp_path / "missing") is None


class FakeGateway:
    """A NAT-PMP server on loopback: ignores the first ``deaf`` requests, can send junk first,
    and records what it was asked."""

    def __init__(self, deaf: int = 0, junk: bool = False, refuse: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.deaf, self.junk, self.refuse = deaf, junk, refuse
        self.requests: list[bytes] = []

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        data, addr = self.sock.recvfrom(64)
        self.requests.append(data)
        if len(self.requests) <= self.deaf:
            return
        if self.junk:
            self.sock.sendto(b"\x00\x81\x00", addr)  # malformed
            self.sock.sendto(natpmp.encode_response(
                natpmp.MappingResponse(0, 1, True, 1, 1, 1)), addr)  # fmt: skip
        if data[1] == natpmp.OP_PUBLIC_ADDRESS:
            reply: natpmp.Response = natpmp.PublicAddressResponse(0, 5, EXT)
        else:
            internal, external, life = int.from_bytes(data[4:6]), int.from_bytes(data[6:8]), 0
            life = int.from_bytes(data[8:12])
            result = natpmp.ResultCode.OUT_OF_RESOURCES if self.refuse and life else 0
            reply = natpmp.MappingResponse(result, 5, True, internal, external, life)
        self.sock.sendto(natpmp.encode_response(reply), addr)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def test_exchange_retransmits_and_ignores_junk(loop: asyncio.AbstractEventLoop) -> None:
    gw = FakeGateway(deaf=2, junk=True)
    gw.attach(loop)
    client = NatPmpClient(LOOPBACK, gw.port)
    try:
        start = time.monotonic()
        got = loop.run_until_complete(client.map_udp(LOCAL, LOCAL, 600, 10_000))
        took = time.monotonic() - start
    finally:
        gw.close(loop)
    assert got == natpmp.MappingResponse(0, 5, True, LOCAL, LOCAL, 600)
    assert len(gw.requests) == 3 and 0.7 < took < 3  # sent at 0, 250 and 750 ms
    assert client.drops == {"malformed": 1, "unrelated": 1}


def test_exchange_gives_up_within_its_budget(loop: asyncio.AbstractEventLoop) -> None:
    gw = FakeGateway(deaf=100)
    gw.attach(loop)
    try:
        start = time.monotonic()
        got = loop.run_until_complete(NatPmpClient(LOOPBACK, gw.port).public_address(1000))
        took = time.monotonic() - start
    finally:
        gw.close(loop)
    assert got is None and 0.9 < took < 2 and len(gw.requests) == 3


def test_no_server_is_known_at_once(loop: asyncio.AbstractEventLoop) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    start = time.monotonic()
    got = loop.run_until_complete(NatPmpClient(LOOPBACK, closed_port).public_address(5000))
    assert got is None and time.monotonic() - start < 1  # ICMP port unreachable


def test_refusal_result_code_is_a_failure(loop: asyncio.AbstractEventLoop) -> None:
    gw = FakeGateway(refuse=True)
    gw.attach(loop)
    try:
        got = loop.run_until_complete(NatPmpClient(LOOPBACK, gw.port).map_udp(1, 1, 600, 2000))
    finally:
        gw.close(loop)
    assert got is None and len(gw.requests) == 1


# the driver ----------------------------------------------------------------------------------


class NoIgd(UpnpClient):
    def __init__(self) -> None:
        super().__init__()
        self.searches = 0

    async def discover(self, budget_ms: int) -> Igd | None:
        self.searches += 1
        return None


def test_driver_maps_advertises_and_removes(loop: asyncio.AbstractEventLoop) -> None:
    gw = FakeGateway()
    gw.attach(loop)
    changes: list[pm.PortMapping | None] = []
    upnp = NoIgd()
    mapper = PortMapper(
        LOCAL,
        "test",
        changes.append,
        lambda: int(time.monotonic() * 1000),
        gateway=lambda: LOOPBACK,
        upnp=upnp,
        natpmp_port=gw.port,
    )

    async def run() -> None:
        mapper.start()
        for _ in range(100):
            if mapper.mapping is not None:
                break
            await asyncio.sleep(0.02)
        await mapper.stop()

    try:
        loop.run_until_complete(run())
    finally:
        gw.close(loop)
    assert len(changes) == 2 and changes[-1] is None
    first = changes[0]
    assert first is not None and (first.external_ip, first.external_port) == (EXT, LOCAL)
    assert upnp.searches == 0  # NAT-PMP answered: no UPnP at all
    # The last request deletes the mapping: lifetime 0, suggested external port 0.
    assert gw.requests[-1] == natpmp.MappingRequest(LOCAL, 0, 0).encode()
    assert mapper.mapping is None


def test_driver_without_any_router_tries_upnp_and_maps_nothing(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="ztnode.transport.portmapper")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    changes: list[pm.PortMapping | None] = []
    upnp = NoIgd()
    mapper = PortMapper(
        LOCAL,
        "test",
        changes.append,
        lambda: int(time.monotonic() * 1000),
        gateway=lambda: LOOPBACK,
        upnp=upnp,
        natpmp_port=closed_port,
    )

    async def run() -> None:
        mapper.start()
        for _ in range(100):
            if "no router answered" in caplog.text:
                break
            await asyncio.sleep(0.02)
        await mapper.stop()

    loop.run_until_complete(run())
    assert upnp.searches == 1 and changes == []
    assert caplog.text.count("no router answered") == 1


# the service's part --------------------------------------------------------------------------


def _service(
    home: Path, *, port_mapping: bool, conf: dict[str, object] | None = None
) -> NodeService:
    home.mkdir(parents=True, exist_ok=True)
    if conf is not None:
        (home / "local.conf").write_text(json.dumps({"settings": conf}))
    return NodeService(
        ServiceConfig(
            home=home,
            port=0,
            bind=("127.0.0.1",),
            allow_loopback=True,
            validate_in_process_pool=False,
            port_mapping=port_mapping,
        )
    )


@pytest.mark.parametrize(
    ("port_mapping", "conf", "logged"),
    [
        (False, None, None),  # embedded: off unless asked
        (False, {"portMappingEnabled": False}, None),
        (True, {"portMappingEnabled": False}, None),  # local.conf says no to the daemon
        (True, None, "ZTNODE_NO_PORT_MAPPING is set"),  # the daemon's default, vetoed here
        (False, {"portMappingEnabled": True}, "ZTNODE_NO_PORT_MAPPING is set"),
    ],
)
def test_service_never_maps_unless_asked_and_not_vetoed(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    port_mapping: bool,
    conf: dict[str, object] | None,
    logged: str | None,
) -> None:
    caplog.set_level("INFO", logger="ztnode")
    svc = _service(tmp_path / "home", port_mapping=port_mapping, conf=conf)

    async def run() -> tuple[int, PortMapper | None, int]:
        await svc.start()
        try:
            return svc.tertiary_port, svc.port_mapper, len(svc.endpoints)
        finally:
            await svc.stop()

    tertiary, mapper, endpoints = asyncio.run(run())
    assert (tertiary, mapper, endpoints) == (0, None, 1)
    if logged is None:
        assert "port mapping" not in caplog.text
    else:
        assert logged in caplog.text


def test_bad_local_conf_fails_start_naming_the_key(tmp_path: Path) -> None:
    svc = _service(tmp_path / "home", port_mapping=True, conf={"portMappingEnabled": "on"})
    with pytest.raises(DecodeError, match=r"settings\.portMappingEnabled"):
        asyncio.run(svc.start())


def test_mapped_address_is_advertised_while_it_lasts(tmp_path: Path) -> None:
    from ztnode.wire.inetaddr import InetAddress

    svc = _service(tmp_path / "home", port_mapping=False)
    assert svc._interface_addresses() == []
    mapping = pm.PortMapping(pm.Protocol.UPNP, EXT, 30001, LOCAL, 600, 10**9)
    svc.port_mapper = SimpleNamespace(mapping=mapping)  # type: ignore[assignment]
    assert svc._interface_addresses() == [InetAddress(EXT, 30001)]
    svc.port_mapper = SimpleNamespace(mapping=None)  # type: ignore[assignment]
    assert svc.mapped_address() is None


# the planner under any outcomes --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 65535),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 700_000)), max_size=300),
)
def test_planner_invariants_under_any_outcomes(
    local_port: int, outcomes: list[tuple[int, int]]
) -> None:
    """Whatever routers answer and whenever: time only moves forward through Waits, ports are
    real ports, a mapping is never advertised past its expiry, and no more than 60 ports are
    asked in a row in one protocol."""
    p = pm.MappingPlanner(local_port, "fuzz")
    now, in_a_row = 0, 0
    for choice, dt in outcomes:
        step = p.next_step(now)
        if isinstance(step, pm.Wait):
            assert step.until > now
            now = step.until if choice else min(step.until, now + dt)
            continue
        if isinstance(step, pm.FindGateway):
            p.gateway(now, choice != 0)
        elif isinstance(step, pm.AskNatPmpAddress):
            p.natpmp_address(now, EXT if choice else None)
        elif isinstance(step, pm.AskNatPmpMapping):
            assert 1 <= step.external_port <= 65534 and step.internal_port == local_port
            in_a_row += 1
            assert in_a_row <= pm.PORT_TRIES
            granted = choice >= 2
            p.natpmp_mapped(now, step.external_port if granted else None, dt // 1000)
            if granted and dt >= 1000:
                in_a_row = 0
        elif isinstance(step, pm.DiscoverIgd):
            p.igd(now, EXT if choice else None)
            in_a_row = 0
        else:
            assert isinstance(step, pm.AskUpnpMapping)
            assert 1 <= step.external_port <= 65534
            in_a_row += 1
            assert in_a_row <= pm.PORT_TRIES
            p.upnp_mapped(now, [None, None, 600, 0][choice])
            if choice >= 2:
                in_a_row = 0
        if isinstance(step, pm.AskNatPmpAddress) and not choice:
            in_a_row = 0  # the switch to UPnP starts a new count
        m = p.current(now)
        assert m is None or m.expires is None or m.expires > now
        if m is None or m.expires is None:
            continue
        assert p.current(m.expires) is None


# UPnP actions, against a fake IGD ------------------------------------------------------------


class FakeAction:
    def __init__(self, service: FakeService, name: str) -> None:
        self.service, self.name = service, name

    async def async_call(self, **args: object) -> dict[str, object]:
        return self.service.called(self.name, args)


class FakeService:
    def __init__(self, entries: dict[int, dict[str, object]], permanent_only: bool) -> None:
        self.entries = entries
        self.permanent_only = permanent_only
        self.calls: list[tuple[str, dict[str, object]]] = []

    def has_action(self, name: str) -> bool:
        return name in ("GetSpecificPortMappingEntry", "AddPortMapping", "DeletePortMapping")

    def action(self, name: str) -> FakeAction:
        return FakeAction(self, name)

    def called(self, name: str, args: dict[str, object]) -> dict[str, object]:
        from async_upnp_client.exceptions import UpnpActionError

        self.calls.append((name, args))
        assert args["NewRemoteHost"] == "" and args["NewProtocol"] == "UDP"
        port = int(str(args["NewExternalPort"]))
        if name == "GetSpecificPortMappingEntry":
            if port not in self.entries:
                raise UpnpActionError(error_code=714, error_desc="NoSuchEntryInArray")
            return self.entries[port]
        if name == "AddPortMapping":
            if self.permanent_only and args["NewLeaseDuration"] != 0:
                raise UpnpActionError(error_code=725, error_desc="OnlyPermanentLeasesSupported")
            self.entries[port] = {
                "NewInternalClient": args["NewInternalClient"],
                "NewInternalPort": args["NewInternalPort"],
            }
            return {}
        self.entries.pop(port, None)
        return {}


def fake_igd(service: FakeService) -> Igd:
    device = SimpleNamespace(
        find_service=lambda t: service if t.endswith("WANIPConnection:1") else None
    )
    profile = SimpleNamespace(device=SimpleNamespace(all_devices=[device]))
    return Igd(profile, ipaddress.IPv4Address("10.0.0.2"), EXT)  # type: ignore[arg-type]


def test_upnp_add_refresh_skip_and_delete() -> None:
    pytest.importorskip("async_upnp_client")
    svc = FakeService({30000: {"NewInternalClient": "10.0.0.9", "NewInternalPort": 30000}}, False)
    igd, client = fake_igd(svc), UpnpClient()

    async def run() -> None:
        # Someone else's port: refused without touching it.
        assert await client.add_udp(igd, 30000, LOCAL, 600, "d") is None
        assert [c[0] for c in svc.calls] == ["GetSpecificPortMappingEntry"]
        assert await client.add_udp(igd, 30001, LOCAL, 600, "d") == 600
        add = svc.calls[-1][1]
        assert add["NewInternalClient"] == "10.0.0.2" and add["NewLeaseDuration"] == 600
        # Ours already: asked again, which renews the lease.
        assert await client.add_udp(igd, 30001, LOCAL, 600, "d") == 600
        assert svc.calls[-1][0] == "AddPortMapping"
        assert await client.delete_udp(igd, 30001)
        assert 30001 not in svc.entries

    asyncio.run(run())


def test_upnp_router_granting_only_permanent_leases() -> None:
    pytest.importorskip("async_upnp_client")
    svc = FakeService({}, True)
    igd = fake_igd(svc)
    assert asyncio.run(UpnpClient().add_udp(igd, 30001, LOCAL, 600, "d")) == 0
    leases = [c[1]["NewLeaseDuration"] for c in svc.calls if c[0] == "AddPortMapping"]
    assert leases == [600, 0]


class FakeUpnp(UpnpClient):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    async def discover(self, budget_ms: int) -> Igd | None:
        self.calls.append(("discover", 0))
        return fake_igd(FakeService({}, False))

    async def add_udp(
        self, igd: Igd, external_port: int, internal_port: int, lease_s: int, description: str
    ) -> int | None:
        self.calls.append(("add", external_port))
        return None if external_port == LOCAL else lease_s  # the first port is taken

    async def delete_udp(self, igd: Igd, external_port: int) -> bool:
        self.calls.append(("delete", external_port))
        return True


def test_driver_falls_back_to_upnp_and_deletes_its_mapping(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="ztnode.transport.portmapper")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # no NAT-PMP server: refused at once
    upnp = FakeUpnp()
    changes: list[pm.PortMapping | None] = []
    mapper = PortMapper(
        LOCAL,
        "test",
        changes.append,
        lambda: int(time.monotonic() * 1000),
        gateway=lambda: LOOPBACK,
        upnp=upnp,
        natpmp_port=closed_port,
    )

    async def run() -> None:
        mapper.start()
        for _ in range(200):  # the 1 s pause after the refused first port, then the next
            if mapper.mapping is not None:
                break
            await asyncio.sleep(0.02)
        await mapper.stop()

    loop.run_until_complete(run())
    assert upnp.calls == [
        ("discover", 0),
        ("add", LOCAL),
        ("add", LOCAL + 1),
        ("delete", LOCAL + 1),
    ]
    first = changes[0]
    assert first is not None and first.protocol is pm.Protocol.UPNP
    assert (first.external_ip, first.external_port) == (EXT, LOCAL + 1)
    assert changes[-1] is None
    assert f"port mapping: UDP {EXT}:{LOCAL + 1} -> local port {LOCAL} by UPnP" in caplog.text
    assert "port mapping: removed" in caplog.text
