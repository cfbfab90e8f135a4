"""ZeroTierOne's controller HTTP API on the node's local JSON API server.

The routes, methods and JSON bodies are those of ZeroTierOne 1.14.1's embedded controller
(fact sheet ``protocol-network.md`` §10.5), so tools written for it (ztncui, zero-ui, curl
scripts) work unchanged against a ztnode controller:

=========================================================  =====================================
``GET /controller``                                        ``{"controller": true, "apiVersion":
                                                           4, "clock": ms, "databaseReady": true}``
``GET /controller/network``                                network ids (16 hex) as an array
``POST|PUT /controller/network``                           create with a random id
``POST|PUT /controller/network/<our 10 hex>______``        the same, legacy form
``GET|POST|PUT|DELETE /controller/network/<nwid>``         read, create-or-update, erase
``GET /controller/network/<nwid>/member``                  ``{"<address>": revision, ...}``
``GET|POST|PUT|DELETE .../member/<address>``               read, create-or-update, erase
``GET /unstable/controller/network``                       every network with member counts
``GET /unstable/controller/network/<nwid>/member``         every member object with counts
=========================================================  =====================================

Authentication (``X-ZT1-Auth``, ``Authorization: Bearer``, ``?auth=``) is the server's
(:class:`ztnode.transport.httpapi.JsonApi`). Unlike ZeroTierOne, which answers malformed JSON
with a 500 and quietly coerces wrong types, every client mistake here is a 4xx with
``{"error": "..."}`` and changes nothing; a POST to a network id that does not start with our
address is refused (ZeroTierOne would store a network no node could ever get a config for).

It lives in ``transport/`` beside the server it plugs into: the controller package below stays a
sans-I/O issuer with its storage, and knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ztnode.controller.controller import Controller
from ztnode.controller.model import ApiError, address_hex, nwid_hex, parse_address, parse_nwid
from ztnode.controller.store import StoreUnavailable
from ztnode.transport.httpapi import HttpError, JsonApi, Request

API_VERSION = 4  # ZT_NETCONF_CONTROLLER_API_VERSION


def register_controller_routes(
    api: JsonApi,
    controller: Controller,
    clock: Callable[[], int],
    on_change: Callable[[], None],
) -> None:
    """Add the controller routes to ``api``. ``clock`` gives the time in ms; ``on_change`` is
    called after every successful edit so that the host sends the queued pushes and
    revocations at once rather than on its next timer tick."""

    def call(fn: Callable[[], Any], *, edit: bool = False) -> Any:
        try:
            result = fn()
        except ApiError as e:
            raise HttpError(e.status, e.message) from None
        except StoreUnavailable as e:  # nothing was written; the store reconnects by itself
            raise HttpError(503, f"the controller database is unavailable: {e}") from None
        if edit:
            on_change()
        return result

    def body_of(req: Request) -> Any:
        """The JSON body; also a 400 for what ``json`` refuses with other exceptions than
        ``JSONDecodeError`` (nesting deeper than the recursion limit, integers of more than
        4300 digits), which would otherwise surface as a 500."""
        try:
            return req.json()
        except (RecursionError, ValueError) as e:
            raise HttpError(400, f"malformed JSON body: {str(e)[:200]}") from None

    def nwid_of(req: Request) -> int:
        try:
            return parse_nwid(req.params["nwid"])
        except ApiError as e:
            raise HttpError(e.status, e.message) from None

    def address_of(req: Request) -> int:
        try:
            return parse_address(req.params["address"])
        except ApiError as e:
            raise HttpError(e.status, e.message) from None

    async def controller_status(req: Request) -> Any:
        return {
            "controller": True,
            "apiVersion": API_VERSION,
            "clock": clock(),
            "databaseReady": database_ready(),
        }

    def database_ready() -> bool:
        try:
            controller.store.schema_version  # noqa: B018  # one round trip to the database
        except StoreUnavailable:
            return False
        return True

    async def network_list(req: Request) -> Any:
        return [nwid_hex(n) for n in call(controller.network_ids)]

    async def network_create(req: Request) -> Any:
        body = body_of(req)
        return call(lambda: controller.create_network(body, clock()), edit=True)

    async def network_create_legacy(req: Request) -> Any:
        prefix = req.params["prefix"]
        if prefix.lower() != address_hex(controller.address):
            raise HttpError(
                400,
                f"{prefix!r:.40}______ does not name this controller "
                f"(use {address_hex(controller.address)}______)",
            )
        body = body_of(req)
        return call(lambda: controller.create_network(body, clock()), edit=True)

    async def network_get(req: Request) -> Any:
        nwid = nwid_of(req)
        return call(lambda: controller.get_network(nwid))

    async def network_post(req: Request) -> Any:
        nwid = nwid_of(req)
        body = body_of(req)
        return call(lambda: controller.update_network(nwid, body, clock()), edit=True)

    async def network_delete(req: Request) -> Any:
        nwid = nwid_of(req)
        return call(lambda: controller.delete_network(nwid, clock()), edit=True)

    async def member_list(req: Request) -> Any:
        nwid = nwid_of(req)
        return call(lambda: controller.member_revisions(nwid))

    async def member_get(req: Request) -> Any:
        nwid, address = nwid_of(req), address_of(req)
        return call(lambda: controller.get_member(nwid, address))

    async def member_post(req: Request) -> Any:
        nwid, address = nwid_of(req), address_of(req)
        body = body_of(req)
        return call(lambda: controller.update_member(nwid, address, body, clock()), edit=True)

    async def member_delete(req: Request) -> Any:
        nwid, address = nwid_of(req), address_of(req)
        return call(lambda: controller.delete_member(nwid, address, clock()), edit=True)

    async def unstable_networks(req: Request) -> Any:
        data = []
        for nwid in call(controller.network_ids):
            network = controller.store.get_network(nwid)
            if network is None:
                continue
            members = controller.store.members(nwid)
            network["meta"] = {
                "totalMemberCount": len(members),
                "authorizedMemberCount": sum(1 for m in members if m.get("authorized") is True),
            }
            data.append(network)
        return {"data": data, "meta": {"networkCount": len(data)}}

    async def unstable_members(req: Request) -> Any:
        """The members with what this instance saw of them (``lastSeen``,
        ``physicalAddress``, ``online``): what the console's member table shows."""
        nwid = nwid_of(req)
        members: list[dict[str, Any]] = call(lambda: controller.members(nwid))
        seen = controller.member_status(nwid, clock())
        blank = {"lastSeen": None, "physicalAddress": None, "online": False}
        members = [{**m, **seen.get(str(m.get("id")), blank)} for m in members]
        return {
            "data": members,
            "meta": {
                "totalCount": len(members),
                "authorizedCount": sum(1 for m in members if m.get("authorized") is True),
            },
        }

    async def rules_post(req: Request) -> Any:
        """ztnode's extension: compile a rules script (ZeroTier's rules language) here and,
        unless ``"check": true``, make it the network's rules, capabilities and tags (the
        script kept as ``rulesSource``). A script the compiler refuses is a 400 with its
        ``line`` and ``column``: the console marks the line, the CLI prints it."""
        from ztnode.controller.rulescript import RuleScriptError, compile_rules

        nwid = nwid_of(req)
        body = body_of(req)
        if not isinstance(body, dict) or not isinstance(body.get("source"), str):
            raise HttpError(400, 'the body is {"source": "<rules script>", "check": false}')
        source = body["source"]
        try:
            compiled = compile_rules(source)
        except RuleScriptError as e:
            raise HttpError(
                400, str(e), {"line": e.line, "column": e.column, "message": e.message}
            ) from None
        summary = {
            "rules": len(compiled.rules),
            "capabilities": len(compiled.capabilities),
            "tags": len(compiled.tags),
        }
        if body.get("check") is True:
            return {**summary, "applied": False}
        update = {**compiled.network_json(), "rulesSource": source}
        network = call(lambda: controller.update_network(nwid, update, clock()), edit=True)
        return {**summary, "applied": True, "network": network}

    api.route("GET", "/controller", controller_status)
    api.route("GET", "/controller/network", network_list)
    for method in ("POST", "PUT"):
        api.route(method, "/controller/network", network_create)
        # Before the <nwid> routes: both templates match "/controller/network/xxx______".
        api.route(method, "/controller/network/{prefix}______", network_create_legacy)
    api.route("GET", "/controller/network/{nwid}", network_get)
    for method in ("POST", "PUT"):
        api.route(method, "/controller/network/{nwid}", network_post)
    api.route("DELETE", "/controller/network/{nwid}", network_delete)
    api.route("GET", "/controller/network/{nwid}/member", member_list)
    api.route("GET", "/controller/network/{nwid}/member/{address}", member_get)
    for method in ("POST", "PUT"):
        api.route(method, "/controller/network/{nwid}/member/{address}", member_post)
    api.route("DELETE", "/controller/network/{nwid}/member/{address}", member_delete)
    api.route("GET", "/unstable/controller/network", unstable_networks)
    api.route("GET", "/unstable/controller/network/{nwid}/member", unstable_members)
    api.route("POST", "/unstable/controller/network/{nwid}/rules", rules_post)


__all__ = ["API_VERSION", "register_controller_routes"]
