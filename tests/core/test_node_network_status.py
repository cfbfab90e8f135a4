"""What ERRORs do to a joined network's status (protocol-network.md §2.4).

ZeroTierOne 1.14.1 (node/IncomingPacket.cpp:169-316) changes a network's status only on an ERROR
from that network's controller: OBJ_NOT_FOUND and UNSUPPORTED_OPERATION in re a config request
mean NOT_FOUND, NETWORK_ACCESS_DENIED means ACCESS_DENIED and NETWORK_AUTHENTICATION_REQUIRED
means AUTHENTICATION_REQUIRED (those two in re anything). CLIENT_TOO_OLD is a status value the
reference defines but never sets (node/Network.cpp:1510-1527), so it must never appear.
"""

from __future__ import annotations

import pytest

from tests.helpers.controller_worlds import joined
from ztnode.core import events as ev
from ztnode.core.network import NetworkStatus
from ztnode.wire.constants import ErrorCode, Verb
from ztnode.wire.verbs import Error

NCR = Verb.NETWORK_CONFIG_REQUEST

# Every code whose ERROR names a network, and the status it leads to from the controller.
EFFECT: dict[ErrorCode, NetworkStatus] = {
    ErrorCode.OBJ_NOT_FOUND: NetworkStatus.NOT_FOUND,
    ErrorCode.UNSUPPORTED_OPERATION: NetworkStatus.NOT_FOUND,
    ErrorCode.NEED_MEMBERSHIP_CERTIFICATE: NetworkStatus.OK,
    ErrorCode.NETWORK_ACCESS_DENIED: NetworkStatus.ACCESS_DENIED,
    ErrorCode.UNWANTED_MULTICAST: NetworkStatus.OK,
    ErrorCode.NETWORK_AUTHENTICATION_REQUIRED: NetworkStatus.AUTHENTICATION_REQUIRED,
}


def error(in_re: int, code: ErrorCode, nwid: int) -> bytes:
    if code == ErrorCode.UNWANTED_MULTICAST:
        return Error(in_re, 1, code, nwid, mac=0xFFFFFFFFFFFF, adi=0).encode()
    return Error(in_re, 1, code, nwid).encode()


def statuses(events: list[object]) -> list[str]:
    return [e.status for e in events if isinstance(e, ev.NetworkStatusChanged)]


@pytest.mark.parametrize("code", list(EFFECT), ids=lambda c: c.name)
def test_config_request_errors_from_the_controller(code: ErrorCode) -> None:
    w, ctl_node, _ctl, nwid, a, _b = joined()
    w.events(a)
    ctl_node.switch.send(a.address, Verb.ERROR, error(NCR, code, nwid), w.net.now)
    w.run_for(1_000)
    net = a.network(nwid)
    assert net is not None and net.status == EFFECT[code]
    seen = statuses(w.events(a))
    assert seen == ([] if EFFECT[code] == NetworkStatus.OK else [EFFECT[code].value])
    assert NetworkStatus.CLIENT_TOO_OLD.value not in seen
    # The config is kept whatever the status says (the reference keeps it too).
    assert net.config is not None


@pytest.mark.parametrize("code", list(EFFECT), ids=lambda c: c.name)
def test_errors_from_other_members_leave_the_status_alone(code: ErrorCode) -> None:
    w, _ctl_node, _ctl, nwid, a, b = joined()
    w.events(a)
    b.switch.send(a.address, Verb.ERROR, error(NCR, code, nwid), w.net.now)
    assert w.run_until(lambda: a.counters.verbs_in["ERROR"] > 0, 2_000)
    w.run_for(500)
    assert a.network(nwid).status == NetworkStatus.OK  # type: ignore[union-attr]
    assert statuses(w.events(a)) == []


def test_not_found_counts_only_in_re_a_config_request() -> None:
    w, ctl_node, _ctl, nwid, a, _b = joined()
    for code in (ErrorCode.OBJ_NOT_FOUND, ErrorCode.UNSUPPORTED_OPERATION):
        ctl_node.switch.send(a.address, Verb.ERROR, error(Verb.FRAME, code, nwid), w.net.now)
    w.run_for(1_000)
    assert a.counters.verbs_in["ERROR"] == 2
    assert a.network(nwid).status == NetworkStatus.OK  # type: ignore[union-attr]
    # ACCESS_DENIED from the controller needs no particular in-re verb.
    ctl_node.switch.send(
        a.address, Verb.ERROR, error(Verb.FRAME, ErrorCode.NETWORK_ACCESS_DENIED, nwid), w.net.now
    )
    w.run_for(1_000)
    assert a.network(nwid).status == NetworkStatus.ACCESS_DENIED  # type: ignore[union-attr]


def test_a_node_without_a_controller_means_not_found_not_client_too_old() -> None:
    """The real exchange: the node a network id names runs no controller and answers the
    request with UNSUPPORTED_OPERATION."""
    w, _ctl_node, _ctl, _nwid, a, b = joined()
    nobody = (b.address << 24) | 0x99  # b hosts no controller
    a.join(nobody, w.net.now)
    assert w.run_until(
        lambda: a.network(nobody).status == NetworkStatus.NOT_FOUND,  # type: ignore[union-attr]
        20_000,
    )
    assert NetworkStatus.CLIENT_TOO_OLD.value not in statuses(w.net.events[id(a)])
