"""The network controller a node hosts: request policy, change propagation and the API's verbs.

This is the sans-I/O half of ZeroTierOne's ``EmbeddedNetworkController`` (fact sheet
``protocol-network.md`` §10.3/10.4). The node hands it each NETWORK_CONFIG_REQUEST for a network
whose id starts with our address and sends whatever it answers; the HTTP API calls its
``create_*`` / ``update_*`` / ``delete_*`` methods. It never reads a clock or the OS random
source (``now`` and ``random_bytes`` come in) and never sends anything itself: edits queue
:class:`ConfigPush` and :class:`RevocationPush` objects that the node drains with
:meth:`Controller.pending_pushes` / :meth:`Controller.pending_revocations` (the API's
``on_change`` callback makes it do so at once, so a change reaches online members immediately
instead of at their next 60 s refresh).

What it remembers only in memory, as ZeroTierOne does, is who asked recently: the last real
request of each member (for the 1 s rate limit and the 120 s "online" window that decides who
gets pushes and revocations), the identity and metadata of its last request (to re-run the
request for a push) and when it last issued it a config (for the node's 180 s
multicast courtesy). After a restart members simply ask again within a minute; everything an
API call acknowledged is in the store.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Final, Protocol, TypeVar, cast

from ztnode.controller.model import (
    ApiError,
    address_hex,
    apply_member_post,
    apply_network_post,
    finish_save,
    new_member,
    new_network,
    nwid_hex,
    set_authorized,
)
from ztnode.controller.store import JsonObject, Store, StoreError
from ztnode.core.controller_iface import ConfigAnswer, ConfigPush, RevocationPush
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.identity import Identity, is_reserved_address
from ztnode.wire.constants import ErrorCode
from ztnode.wire.credentials import REVOCATION_FLAG_FAST_PROPAGATE, CredentialType, Revocation
from ztnode.wire.dictionary import Dictionary
from ztnode.wire.netconf import AuthInfoKey, NetworkConfig, NetworkConfigRequestMetadata

log = logging.getLogger("ztnode.controller")

MIN_REQUEST_INTERVAL: Final = 1_000  # ZT_NETCONF_MIN_REQUEST_PERIOD
ONLINE_WINDOW: Final = 120_000  # 2 x ZT_NETWORK_AUTOCONF_DELAY: who gets pushes/revocations
RECENT_CONFIG_WINDOW: Final = 180_000  # the node's "recently configured member" courtesy
NETWORK_ID_TRIALS: Final = 100_000
PRUNE_INTERVAL: Final = 60_000
# With a shared database: where a member was seen is written at most this often (or when its
# address changes), and members seen by other instances within the window are contacted.
SEEN_RECORD_INTERVAL: Final = 300_000
CONTACT_WINDOW: Final = 600_000
MAX_CONTACTS: Final = 10_000
_ADDRESS_MASK: Final = (1 << 40) - 1
_NWID_MASK: Final = (1 << 64) - 1


class ConfigBuilder(Protocol):
    """Builds the signed config for an authorised member (``configbuild.build_config``):
    returns it and the member JSON as it must now be stored (auto-assigned IPs, tag defaults,
    default capabilities of a new member). ``allocated(nwid)`` lists the IPs other members
    hold; ``active_bridges`` the other members marked as bridges; ``new_member`` says whether
    this request created the member record. A full IP pool must not raise: the member is then
    served without an automatic address."""

    def __call__(
        self,
        controller: Identity,
        network: JsonObject,
        member: JsonObject,
        member_identity: Identity,
        now: int,
        random_bytes: Callable[[int], bytes],
        allocated: Callable[[int], Iterable[IPv4Address | IPv6Address]] | None = None,
        /,
        *,
        active_bridges: Iterable[int] | None = None,
        new_member: bool | None = None,
    ) -> tuple[NetworkConfig, JsonObject]: ...


@dataclass
class _MemberStatus:
    """What the controller remembers about one (network, member) between requests."""

    last_request: int | None = None  # last real request: rate limit and the online window
    physical_address: tuple[str, int] | None = None  # where it came from, if direct
    identity: Identity | None = None  # of the last real request that passed the identity check
    metadata: bytes | None = None  # sent with it: a push re-runs that request
    last_config: int | None = None  # when it was last issued a config
    seen_recorded: int | None = None  # when where it was seen last went to a shared database
    seen_recorded_at: tuple[str, int] | None = None

    def online(self, now: int) -> bool:
        return self.last_request is not None and now - self.last_request < ONLINE_WINDOW


_M = TypeVar("_M", bound=Callable[..., Any])


def _locked(method: _M) -> _M:
    """Run a Controller method under its lock: the host answers config requests on a worker
    thread while pushes, revocations and the HTTP API run on the event loop."""

    @functools.wraps(method)
    def wrapper(self: Controller, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(_M, wrapper)


class Controller:
    """A ZeroTier network controller for the networks whose ids begin with our address.

    Implements :class:`ztnode.core.controller_iface.HostedController` for the node, and the
    verbs of ZeroTierOne's controller API for :mod:`ztnode.transport.controllerapi`. The API
    verbs raise :class:`~ztnode.controller.model.ApiError` on bad input, before anything is
    stored.
    """

    def __init__(
        self,
        identity: Identity,
        store: Store,
        *,
        random_bytes: Callable[[int], bytes],
        config_builder: ConfigBuilder,
    ) -> None:
        if not identity.has_private:
            raise LocalProtocolError("a controller needs its identity's private key to sign")
        self.identity = identity
        self.store = store
        self.random_bytes = random_bytes
        self.config_builder = config_builder
        self._status: dict[tuple[int, int], _MemberStatus] = {}
        self._push_queue: dict[tuple[int, int], None] = {}  # an ordered set
        self._revocations: list[RevocationPush] = []
        #: SSO expiries of members served, by (network, member): at most one per member.
        self._expiring: dict[tuple[int, int], int] = {}
        self._last_prune = 0
        self._members_cache: dict[int, dict[str, JsonObject]] | None = None
        self._lock = threading.RLock()

    @property
    def address(self) -> int:
        return self.identity.address

    def close(self) -> None:
        self.store.close()

    # --- HostedController ----------------------------------------------------------------------

    def serves(self, network_id: int) -> bool:
        return 0 <= network_id <= _NWID_MASK and (network_id >> 24) == self.address

    @_locked
    def handle_request(
        self,
        member: Identity,
        network_id: int,
        metadata: bytes,
        now: int,
        physical_address: tuple[str, int] | None = None,
    ) -> ConfigAnswer | None:
        """Answer a member's NETWORK_CONFIG_REQUEST (§10.3); None to stay silent (not our
        network, or the same member asked at most a second ago, as ZeroTierOne counts it)."""
        if not self.serves(network_id):
            return None
        if now - self._last_prune >= PRUNE_INTERVAL:
            self._prune(now)
        status = self._status.setdefault((network_id, member.address), _MemberStatus())
        if status.last_request is not None and now - status.last_request <= MIN_REQUEST_INTERVAL:
            return None
        status.last_request = now
        if physical_address is not None:
            status.physical_address = physical_address
        answer = self._serve(member, network_id, bytes(metadata), now, real=True)
        self._record_seen(network_id, member.address, status, now)
        return answer

    def _record_seen(self, nwid: int, address: int, status: _MemberStatus, now: int) -> None:
        """Tell the other instances on a shared database where this member is (bounded: at
        most every SEEN_RECORD_INTERVAL, or when it moves)."""
        record = getattr(self.store, "record_seen", None)
        where = status.physical_address
        if record is None or where is None:
            return
        fresh = (
            status.seen_recorded is not None and now - status.seen_recorded < SEEN_RECORD_INTERVAL
        )
        if fresh and status.seen_recorded_at == where:
            return
        try:
            record(nwid, address, f"{where[0]}/{where[1]}", now)
        except StoreError as e:
            log.warning("network %016x: where %010x is not recorded: %s", nwid, address, e)
            return
        status.seen_recorded, status.seen_recorded_at = now, where

    @_locked
    def members_to_contact(self, now: int) -> list[tuple[Identity, tuple[str, int]]]:
        """Members other instances on a shared database served lately, with where they were:
        the node says hello to each, so that every instance has a path to every active member
        and a member whose instance dies finds another as soon as its path there goes quiet.
        Empty without a shared database."""
        recent = getattr(self.store, "recently_seen", None)
        if recent is None:
            return []
        out: list[tuple[Identity, tuple[str, int]]] = []
        for nwid, address, ident_text, physical in recent(now - CONTACT_WINDOW, MAX_CONTACTS):
            status = self._status.get((nwid, address))
            if status is not None and status.online(now):
                continue  # it talks to us already
            host, _, port = physical.rpartition("/")
            try:
                identity = Identity.from_string(ident_text)
                where = (host, int(port))
            except (DecodeError, ValueError):
                continue
            if identity.address == address:
                out.append((identity, where))
        return out

    @_locked
    def pending_pushes(self, now: int) -> list[ConfigPush]:
        """Configs for the members that edits concern (built now, from the current data)."""
        if not self._push_queue:
            return []
        keys = list(self._push_queue)
        self._push_queue.clear()
        out: list[ConfigPush] = []
        # One read of each network's members for the whole drain (kept current as pushes
        # assign addresses), not one per push: a network edit pushes to every online member.
        self._members_cache = {}
        try:
            for nwid, address in keys:
                status = self._status.get((nwid, address))
                if status is None or status.identity is None or status.metadata is None:
                    continue
                if self.store.get_member(nwid, address) is None:
                    continue  # deleted since: a push must not recreate it
                answer = self._serve(status.identity, nwid, status.metadata, now, real=False)
                if answer.config is not None:
                    out.append(ConfigPush(address, answer.config))
        finally:
            self._members_cache = None
        return out

    @_locked
    def pending_revocations(self, now: int) -> list[RevocationPush]:
        self._sso_expired(now)
        out, self._revocations = self._revocations, []
        return out

    def _sso_expired(self, now: int) -> None:
        """A member served on an SSO network whose authentication expired (and was not renewed
        since) loses its certificate at every member online, as ZeroTierOne's
        ``_ssoExpiryThread`` deauthorises it (EmbeddedNetworkController.cpp:2104-2138); its
        next request is answered AUTHENTICATION_REQUIRED."""
        due = [key for key, when in self._expiring.items() if when <= now]
        for nwid, address in due:
            del self._expiring[nwid, address]
            member = self.store.get_member(nwid, address)
            expiry = member.get("authenticationExpiryTime") if member is not None else None
            if member is not None and (not isinstance(expiry, int) or expiry <= now):
                self._queue_revocation(nwid, [address], now)

    def _prune(self, now: int) -> None:
        """Forget members that have been quiet longer than any window looks back, so that
        requests from many identities cannot grow memory without bound."""
        self._last_prune = now
        horizon = now - max(ONLINE_WINDOW, RECENT_CONFIG_WINDOW)
        stale = [
            key
            for key, st in self._status.items()
            if (st.last_request is None or st.last_request < horizon)
            and (st.last_config is None or st.last_config < horizon)
        ]
        for key in stale:
            del self._status[key]

    @_locked
    def has_recent_member(self, network_id: int, member: int, now: int) -> bool:
        status = self._status.get((network_id, member))
        return (
            status is not None
            and status.last_config is not None
            and now - status.last_config < RECENT_CONFIG_WINDOW
        )

    # --- request processing ----------------------------------------------------------------

    def _serve(
        self, identity: Identity, nwid: int, metadata_bytes: bytes, now: int, *, real: bool
    ) -> ConfigAnswer:
        network = self.store.get_network(nwid)
        if network is None:
            return ConfigAnswer(error=ErrorCode.OBJ_NOT_FOUND)
        stored = self.store.get_member(nwid, identity.address)
        # A deep copy: the builder may extend lists (ipAssignments) in place, and the save
        # below must still see them as changes against what is stored.
        member = (
            copy.deepcopy(stored) if stored is not None else new_member(nwid, identity.address, now)
        )

        known = member.get("identity")
        if isinstance(known, str) and known:
            try:
                same = Identity.from_string(known) == identity
            except DecodeError:
                same = False
            if not same:
                log.warning(
                    "network %016x: %010x asked with an identity that is not the one on record",
                    nwid,
                    identity.address,
                )
                return ConfigAnswer(error=ErrorCode.NETWORK_ACCESS_DENIED)
        else:
            member["identity"] = identity.public().to_string()
        member["id"] = member["address"] = address_hex(identity.address)
        member["nwid"] = nwid_hex(nwid)

        try:
            metadata = NetworkConfigRequestMetadata.decode(metadata_bytes)
        except DecodeError:
            metadata = NetworkConfigRequestMetadata.from_dictionary(Dictionary())
        authorized = self._authorize(network, member, metadata, now)

        sso_expiry = 0
        if network.get("ssoEnabled") is True and member.get("ssoExempt") is not True:
            expiry = member.get("authenticationExpiryTime")
            sso_expiry = expiry if isinstance(expiry, int) else 0
            if not isinstance(expiry, int) or expiry <= now:
                self._save_member(stored, member)
                info = Dictionary()
                info.add_int(AuthInfoKey.VERSION, 0)
                info.add_str(AuthInfoKey.AUTHENTICATION_URL, "")
                return ConfigAnswer(
                    error=ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
                    error_dictionary=info.to_bytes(),
                )

        status = self._status.setdefault((nwid, identity.address), _MemberStatus())
        if real:
            # Kept for pushes even when denied (ZeroTierOne keeps it only for authorised
            # requests), so that authorising a member who is waiting reaches it at once.
            status.identity = identity.public()
            status.metadata = metadata_bytes
        if not authorized:
            self._save_member(stored, member)
            return ConfigAnswer(error=ErrorCode.NETWORK_ACCESS_DENIED)
        if real:
            if sso_expiry > 0:  # revoked when it passes: _sso_expired
                self._expiring[(nwid, identity.address)] = sso_expiry
            member["vMajor"] = metadata.major_version
            member["vMinor"] = metadata.minor_version
            member["vRev"] = metadata.revision
            member["vProto"] = metadata.protocol_version

        try:
            config, built = self._build(network, member, identity, now, stored is None)
        except Exception:
            log.exception("network %016x: building %010x's config failed", nwid, identity.address)
            self._save_member(stored, member)
            return ConfigAnswer(error=ErrorCode.OBJ_NOT_FOUND)  # the reference's INTERNAL error
        self._save_member(stored, built)
        status.last_config = now
        return ConfigAnswer(config=config)

    def _authorize(
        self,
        network: JsonObject,
        member: JsonObject,
        metadata: NetworkConfigRequestMetadata,
        now: int,
    ) -> bool:
        """Whether the member may have a config; an automatic authorisation (public network,
        valid token) is written into ``member`` so that it is persisted."""
        if member.get("authorized") is True:
            return True
        if network.get("private") is False:
            set_authorized(member, True, now, "public", None)
            return True
        token = metadata.auth_token
        tokens = network.get("authTokens")
        if token is not None and isinstance(tokens, dict):
            expiry = tokens.get(token)
            if (
                isinstance(expiry, int)
                and not isinstance(expiry, bool)
                and (expiry == 0 or expiry > now)
            ):
                set_authorized(member, True, now, "token", token)
                return True
        return False

    def _build(
        self, network: JsonObject, member: JsonObject, identity: Identity, now: int, new: bool
    ) -> tuple[NetworkConfig, JsonObject]:
        """Run the config builder with what it needs to know about the other members: the IPs
        they hold (so no automatic address is handed out twice) and the active bridges."""
        nwid = int(network["id"], 16)
        others = [m for m in self._members_of(nwid).values() if m.get("id") != member["id"]]
        bridges = [int(m["id"], 16) for m in others if m.get("activeBridge") is True]

        def allocated(_nwid: int) -> list[IPv4Address | IPv6Address]:
            held: list[IPv4Address | IPv6Address] = []
            for m in others:
                for text in m.get("ipAssignments") or ():
                    with contextlib.suppress(ValueError, TypeError):
                        held.append(ip_address(text))
            return held

        config, built = self.config_builder(
            self.identity,
            network,
            member,
            identity,
            now,
            self.random_bytes,
            allocated,
            active_bridges=bridges,
            new_member=new,
        )
        if not isinstance(built, dict):
            raise TypeError(f"config builder returned {type(built).__name__} for the member")
        for key in ("id", "address", "nwid", "identity", "authorized"):
            built[key] = member[key]
        return config, built

    def _members_of(self, nwid: int) -> dict[str, JsonObject]:
        """Every member of a network by id, from the drain's cache when one is active."""
        cache = self._members_cache
        if cache is None:
            return {m["id"]: m for m in self.store.members(nwid)}
        if nwid not in cache:
            cache[nwid] = {m["id"]: m for m in self.store.members(nwid)}
        return cache[nwid]

    def _save_member(self, stored: JsonObject | None, member: JsonObject) -> None:
        """Persist a member changed by a request; a save with nothing changed writes nothing
        (and so keeps its revision)."""
        if finish_save(stored, member):
            self.store.put_member(member)
            cache = self._members_cache
            if cache is not None and (nwid := int(member["nwid"], 16)) in cache:
                cache[nwid][member["id"]] = copy.deepcopy(member)

    # --- propagation -----------------------------------------------------------------------

    def _online(self, nwid: int, now: int) -> list[tuple[int, _MemberStatus]]:
        return [
            (addr, st) for (n, addr), st in self._status.items() if n == nwid and st.online(now)
        ]

    def _queue_push(self, nwid: int, address: int | None, now: int) -> None:
        """Push fresh configs to the member (or, with ``address`` None, every member) that
        asked within the online window; the push is built (or, if it is not authorised then,
        dropped) when the node drains the queue."""
        for addr, st in self._online(nwid, now):
            if (address is None or addr == address) and st.metadata is not None:
                self._push_queue[(nwid, addr)] = None

    def _queue_revocation(
        self,
        nwid: int,
        targets: list[int],
        now: int,
        kind: CredentialType = CredentialType.COM,
        credential_id: int = 0,
        threshold: int | None = None,
    ) -> None:
        """Revoke a credential of the targets (by default their certificates of membership) at
        every member online now, the targets included so they stop presenting it."""
        recipients = tuple(sorted(addr for addr, _ in self._online(nwid, now)))
        if not recipients:
            return
        for target in targets:
            rev = Revocation(
                id=int.from_bytes(self.random_bytes(4), "big"),
                network_id=nwid,
                credential_id=credential_id,
                threshold=now if threshold is None else threshold,
                flags=REVOCATION_FLAG_FAST_PROPAGATE,
                target=target,
                credential_type=kind,
            ).sign(self.identity)
            self._revocations.append(RevocationPush(nwid, rev, recipients))

    def _revoke_withdrawn(
        self, nwid: int, address: int, old: JsonObject, new: JsonObject, now: int
    ) -> None:
        """Capabilities and tags taken away from a member are revoked where members hold them.

        The threshold is one millisecond back: receivers also raise the member's COM threshold
        on such revocations (a reference quirk), and the fresh config pushed with this change
        carries credentials stamped ``now`` that must stay acceptable.
        """
        for kind, ids_of in (
            (CredentialType.CAPABILITY, _capability_ids),
            (CredentialType.TAG, _tag_ids),
        ):
            for cid in sorted(ids_of(old) - ids_of(new)):
                self._queue_revocation(nwid, [address], now, kind, cid, now - 1)

    def _forget(self, nwid: int, address: int | None) -> None:
        """No more pushes for a deleted member (or all members of a deleted network)."""
        for (n, addr), st in self._status.items():
            if n == nwid and (address is None or addr == address):
                st.identity = st.metadata = None
                self._push_queue.pop((n, addr), None)

    # --- changes made by other controller instances (a shared database) ----------------------

    @_locked
    def note_remote_change(self, nwid: int, address: int | None, now: int) -> None:
        """Another instance on the same database changed a network (``address`` None) or a
        member: push what is current now to the members this instance serves, and revoke at
        them what the change took away. Only the store's present state is known here, not the
        old one, so a member found deleted or unauthorised is revoked (harmless if it never
        was authorised: a revocation only withdraws what the target held)."""
        if not self.serves(nwid):
            return
        if address is None:
            if self.store.has_network(nwid):
                self._queue_push(nwid, None, now)
            else:
                gone = sorted({a for (n, a) in self._status if n == nwid})
                self._queue_revocation(nwid, gone, now)
                self._forget(nwid, None)
            return
        member = self.store.get_member(nwid, address)
        if member is None:
            self._queue_revocation(nwid, [address], now)
            self._forget(nwid, address)
            return
        # The active-bridge list is in every member's config; any member change may touch it.
        self._queue_push(nwid, None if member.get("activeBridge") else address, now)
        if not member.get("authorized"):
            self._queue_revocation(nwid, [address], now)

    @_locked
    def member_status(self, nwid: int, now: int) -> dict[str, JsonObject]:
        """What this instance saw of each member lately, by address: ``lastSeen`` (ms, its last
        request), ``physicalAddress`` (``ip/port`` when it came direct), ``online`` (asked
        within the online window). For the console; members never seen here are absent."""
        out: dict[str, JsonObject] = {}
        for (n, address), st in self._status.items():
            if n != nwid or st.last_request is None:
                continue
            where = st.physical_address
            out[address_hex(address)] = {
                "lastSeen": st.last_request,
                "physicalAddress": f"{where[0]}/{where[1]}" if where else None,
                "online": st.online(now),
            }
        return out

    # --- API verbs ---------------------------------------------------------------------------

    def _require_ours(self, nwid: int) -> None:
        if not self.serves(nwid):
            raise ApiError(
                400,
                f"network {nwid_hex(nwid & _NWID_MASK)} is not served by this controller "
                f"(its id must start with {address_hex(self.address)})",
            )

    @_locked
    def network_ids(self) -> list[int]:
        return self.store.network_ids()

    @_locked
    def get_network(self, nwid: int) -> JsonObject:
        network = self.store.get_network(nwid)
        if network is None:
            raise ApiError(404, f"no network {nwid_hex(nwid)}")
        return network

    @_locked
    def new_network_id(self) -> int:
        """An unused id: our address, then 24 random bits (never all zero)."""
        prefix = self.address << 24
        for _ in range(NETWORK_ID_TRIALS):
            low = int.from_bytes(self.random_bytes(3), "big") & 0xFFFFFF
            nwid = prefix | (low or 1)
            if not self.store.has_network(nwid):
                return nwid
        raise ApiError(503, "no free network id found")

    @_locked
    def create_network(self, body: object, now: int, nwid: int | None = None) -> JsonObject:
        """A new network from a POST body, with a random id unless ``nwid`` is given (then it
        must be ours and unused)."""
        if nwid is None:
            nwid = self.new_network_id()
        else:
            self._require_ours(nwid)
            if self.store.has_network(nwid):
                raise ApiError(409, f"network {nwid_hex(nwid)} already exists")
        network = apply_network_post(new_network(nwid, now), body, now)
        self.store.put_network(network)
        self._queue_push(nwid, None, now)
        return network

    @_locked
    def update_network(self, nwid: int, body: object, now: int) -> JsonObject:
        """Create or change a network (POST ``/controller/network/<nwid>``); members online
        get the new config at once if anything changed."""
        self._require_ours(nwid)
        current = self.store.get_network(nwid)
        network = apply_network_post(
            current if current is not None else new_network(nwid, now), body, now
        )
        if current is None or network["revision"] != current.get("revision"):
            self.store.put_network(network)
            self._queue_push(nwid, None, now)
        return network

    @_locked
    def delete_network(self, nwid: int, now: int) -> JsonObject:
        """Erase a network and its members; every member is revoked at those online."""
        with self.store.transaction():
            members = self.store.member_ids(nwid)
            old = self.store.delete_network(nwid)
        if old is None:
            raise ApiError(404, f"no network {nwid_hex(nwid)}")
        self._queue_revocation(nwid, members, now)
        self._forget(nwid, None)
        return old

    @_locked
    def member_revisions(self, nwid: int) -> dict[str, int]:
        """``{address: revision}`` for GET ``/controller/network/<nwid>/member``."""
        self.get_network(nwid)
        return {m["id"]: int(m.get("revision", 0)) for m in self.store.members(nwid)}

    @_locked
    def members(self, nwid: int) -> list[JsonObject]:
        self.get_network(nwid)
        return self.store.members(nwid)

    @_locked
    def get_member(self, nwid: int, address: int) -> JsonObject:
        self.get_network(nwid)
        member = self.store.get_member(nwid, address)
        if member is None:
            raise ApiError(404, f"no member {address_hex(address)} in network {nwid_hex(nwid)}")
        return member

    @_locked
    def update_member(self, nwid: int, address: int, body: object, now: int) -> JsonObject:
        """Create or change a member; it gets a new config at once if it is online, and a
        member that loses its authorisation is revoked at every member online."""
        if address > _ADDRESS_MASK or is_reserved_address(address):
            raise ApiError(400, f"{address_hex(address & _ADDRESS_MASK)} is a reserved address")
        self.get_network(nwid)
        current = self.store.get_member(nwid, address)
        member = apply_member_post(
            current if current is not None else new_member(nwid, address, now), body, now
        )
        if current is None or member["revision"] != current.get("revision"):
            self.store.put_member(member)
            was_bridge = bool(current and current.get("activeBridge"))
            # Every member's config lists the active bridges: a change there goes to all of
            # them at once (ZeroTierOne lets the others learn it at their next refresh, up to
            # a minute in which their bridged frames are refused).
            everyone = bool(member.get("activeBridge")) != was_bridge
            self._queue_push(nwid, None if everyone else address, now)
            if current is not None and current.get("authorized") and not member["authorized"]:
                self._queue_revocation(nwid, [address], now)
            elif current is not None and member["authorized"]:
                self._revoke_withdrawn(nwid, address, current, member, now)
        return member

    @_locked
    def delete_member(self, nwid: int, address: int, now: int) -> JsonObject:
        """Erase a member; if it was authorised it is revoked at every member online."""
        self.get_network(nwid)
        old = self.store.delete_member(nwid, address)
        if old is None:
            raise ApiError(404, f"no member {address_hex(address)} in network {nwid_hex(nwid)}")
        if old.get("authorized"):
            self._queue_revocation(nwid, [address], now)
        self._forget(nwid, address)
        return old


def _capability_ids(member: JsonObject) -> set[int]:
    caps = member.get("capabilities")
    return {c for c in caps if isinstance(c, int)} if isinstance(caps, list) else set()


def _tag_ids(member: JsonObject) -> set[int]:
    tags = member.get("tags")
    if not isinstance(tags, list):
        return set()
    return {t[0] for t in tags if isinstance(t, list) and t and isinstance(t[0], int)}


__all__ = [
    "MIN_REQUEST_INTERVAL",
    "ONLINE_WINDOW",
    "RECENT_CONFIG_WINDOW",
    "ConfigBuilder",
    "Controller",
]
