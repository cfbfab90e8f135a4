"""Config requests for a hosted controller answered off the receive path
(``NodeConfig.defer_config_requests``): nothing touches the controller inside ``receive()``; the
host serves the queued requests and hands the answers back."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.helpers.controller_worlds import MiniController, world_with_controller
from ztnode.core.counters import Drop
from ztnode.core.network import NetworkStatus
from ztnode.core.node import Node
from ztnode.core.timing import MAX_PENDING_CONFIG_REQUESTS
from ztnode.wire.constants import Verb
from ztnode.wire.netconf import NetworkConfigRequestMetadata
from ztnode.wire.verbs import NetworkConfigRequest


def deferring(node: Node) -> None:
    node.config = dataclasses.replace(node.config, defer_config_requests=True)


def counting(ctl: MiniController) -> list[Any]:
    calls: list[Any] = []
    original = ctl.handle_request

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    ctl.handle_request = wrapped  # type: ignore[method-assign]
    return calls


def serve(node: Node, ctl: MiniController, now: int) -> int:
    requests = node.config_requests_to_serve()
    for r in requests:
        node.config_request_answered(r, ctl.handle_request(*r.arguments(now)), now)
    return len(requests)


def test_requests_wait_for_the_host_then_the_answer_goes_out() -> None:
    w, ctl_node, ctl, nwid = world_with_controller()
    deferring(ctl_node)
    calls = counting(ctl)
    a = w.leaves[1]
    ctl.authorized.add(a.address)
    a.join(nwid, w.net.now)
    w.run_for(2_000)
    assert calls == []  # the request arrived, and nothing asked the controller
    assert a.network(nwid).status == NetworkStatus.REQUESTING_CONFIGURATION  # type: ignore[union-attr]
    assert serve(ctl_node, ctl, w.net.now) >= 1
    assert len(calls) >= 1 and calls[0][0].address == a.address
    assert w.run_until(lambda: a.network(nwid).status == NetworkStatus.OK, 5_000)  # type: ignore[union-attr]


def test_our_own_network_is_served_the_same_way() -> None:
    w, ctl_node, ctl, nwid = world_with_controller()
    deferring(ctl_node)
    ctl.authorized.add(ctl_node.address)
    ctl_node.join(nwid, w.net.now)
    assert ctl_node.network(nwid).status != NetworkStatus.OK  # type: ignore[union-attr]
    assert serve(ctl_node, ctl, w.net.now) == 1
    assert ctl_node.network(nwid).status == NetworkStatus.OK  # type: ignore[union-attr]


def test_a_silent_answer_sends_nothing() -> None:
    w, ctl_node, _ctl, nwid = world_with_controller()
    deferring(ctl_node)
    a = w.leaves[1]
    a.join(nwid, w.net.now)
    w.run_for(2_000)
    (request, *_) = ctl_node.config_requests_to_serve()
    before = ctl_node.counters.packets_out
    ctl_node.config_request_answered(request, None, w.net.now)
    assert ctl_node.counters.packets_out == before


def test_the_queue_is_bounded_and_its_overflow_counted() -> None:
    w, ctl_node, _ctl, nwid = world_with_controller()
    deferring(ctl_node)
    a = w.leaves[1]
    a.join(nwid, w.net.now)  # a learns a direct path to the controller meanwhile
    w.run_for(2_000)
    ctl_node.config_requests_to_serve()
    body = NetworkConfigRequest(nwid, NetworkConfigRequestMetadata().encode(), 0, 0).encode()
    extra = 20
    for _ in range(MAX_PENDING_CONFIG_REQUESTS + extra):
        a.switch.send(ctl_node.address, Verb.NETWORK_CONFIG_REQUEST, body, w.net.now)
    w.run_for(1_000)
    assert len(ctl_node.config_requests_to_serve()) == MAX_PENDING_CONFIG_REQUESTS
    assert ctl_node.counters.drops[Drop.CONFIG_QUEUE_FULL.value] == extra
