"""The hosted network controller in Python: ``node.controller`` of a node started with
``controller=True``.

Why: the controller's HTTP API (ZeroTierOne's, on the local API port) serves other programs;
a program that runs the node itself should not need HTTP, a token, or private attributes to
authorize a member. The methods take and return the same JSON objects as that API (network and
member objects as ZeroTierOne's controller spells them), raise ``LookupError`` for an unknown
network or member and ``ValueError`` for a refused value (nothing changed), and push every edit
to the members concerned at once, as the HTTP API does. They are quick database operations on
the controller's own store, run on the node's event loop thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ztnode.controller.controller import Controller
from ztnode.controller.model import ApiError

if TYPE_CHECKING:
    from ztnode.sockets.aio import Node

__all__ = ["ControllerApi"]

JsonObject = dict[str, Any]
_T = TypeVar("_T")


def _nwid(network: int | str) -> int:
    value = int(network, 16) if isinstance(network, str) else network
    if not 0 < value < 1 << 64:
        raise ValueError(f"network id {network!r} is not 16 hex digits")
    return value


def _address(member: int | str) -> int:
    value = int(member, 16) if isinstance(member, str) else member
    if not 0 < value < 1 << 40:
        raise ValueError(f"member address {member!r} is not 10 hex digits")
    return value


class ControllerApi:
    """Networks and members of the controller a node hosts (module docstring)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def _controller(self) -> Controller:
        ctl = self._node.service.controller
        if not isinstance(ctl, Controller):
            if not self._node.started:
                raise RuntimeError("the node is not started")
            raise RuntimeError("this node hosts no controller: start it with controller=True")
        return ctl

    def _now(self) -> int:
        return self._node.service.clock.now()

    def _call(self, fn: Callable[[Controller], _T], *, edit: bool = False) -> _T:
        try:
            result = fn(self._controller())
        except ApiError as e:
            if e.status == 404:
                raise LookupError(e.message) from None
            raise ValueError(e.message) from None
        if edit:
            self._node.service.controller_changed()
        return result

    # --- networks

    def networks(self) -> list[str]:
        """The ids (16 hex digits) of the networks this controller serves."""
        return [f"{n:016x}" for n in self._call(lambda c: c.network_ids())]

    def network(self, network: int | str) -> JsonObject:
        return self._call(lambda c: c.get_network(_nwid(network)))

    def create_network(
        self, spec: Mapping[str, Any] | None = None, *, network: int | str | None = None
    ) -> JsonObject:
        """A new network (a free id of this controller's, or ``network``), configured by
        ``spec`` as the HTTP API's POST body; the network object, with its ``id``."""
        nwid = None if network is None else _nwid(network)
        body = dict(spec or {})
        return self._call(lambda c: c.create_network(body, self._now(), nwid), edit=True)

    def update_network(self, network: int | str, changes: Mapping[str, Any]) -> JsonObject:
        body = dict(changes)
        return self._call(lambda c: c.update_network(_nwid(network), body, self._now()), edit=True)

    def set_rules(self, network: int | str, script: str) -> JsonObject:
        """Compile a script in ZeroTier's rules language and make it the network's rules,
        capabilities and tags (the script kept as ``rulesSource``); a script with an error
        raises ``ztnode.controller.rulescript.RuleScriptError`` naming its line."""
        from ztnode.controller.rulescript import compile_rules

        compiled = compile_rules(script)
        return self.update_network(network, {**compiled.network_json(), "rulesSource": script})

    def delete_network(self, network: int | str) -> JsonObject:
        return self._call(lambda c: c.delete_network(_nwid(network), self._now()), edit=True)

    # --- members

    def members(self, network: int | str) -> list[JsonObject]:
        return self._call(lambda c: c.members(_nwid(network)))

    def member(self, network: int | str, member: int | str) -> JsonObject:
        return self._call(lambda c: c.get_member(_nwid(network), _address(member)))

    def update_member(
        self, network: int | str, member: int | str, changes: Mapping[str, Any]
    ) -> JsonObject:
        """Create or change a member as the HTTP API's POST does (``authorized``,
        ``ipAssignments``, ``tags``, ``capabilities``, ``activeBridge``, ``name``...)."""
        body = dict(changes)
        return self._call(
            lambda c: c.update_member(_nwid(network), _address(member), body, self._now()),
            edit=True,
        )

    def authorize(self, network: int | str, member: int | str) -> JsonObject:
        return self.update_member(network, member, {"authorized": True})

    def deauthorize(self, network: int | str, member: int | str) -> JsonObject:
        return self.update_member(network, member, {"authorized": False})

    def set_ips(self, network: int | str, member: int | str, ips: Iterable[str]) -> JsonObject:
        return self.update_member(network, member, {"ipAssignments": list(ips)})

    def set_tags(
        self, network: int | str, member: int | str, tags: Mapping[int, int]
    ) -> JsonObject:
        pairs = [[int(k), int(v)] for k, v in tags.items()]
        return self.update_member(network, member, {"tags": pairs})

    def set_capabilities(
        self, network: int | str, member: int | str, capabilities: Iterable[int]
    ) -> JsonObject:
        return self.update_member(network, member, {"capabilities": [int(c) for c in capabilities]})

    def delete_member(self, network: int | str, member: int | str) -> JsonObject:
        return self._call(
            lambda c: c.delete_member(_nwid(network), _address(member), self._now()), edit=True
        )
