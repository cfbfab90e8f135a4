"""Remote traces sent: REMOTE_TRACE (0x15) records to a network's trace target.

A network config may name a trace target and level (netconf ``tt``/``tl``, the controller's
``remoteTraceTarget``/``remoteTraceLevel``). ZeroTierOne 1.14.1 (``node/Trace.cpp``) then sends
that node one REMOTE_TRACE packet per traced event concerning the network: a Dictionary record
(capacity ``ZT_MAX_REMOTE_TRACE_SIZE``), NUL-terminated, compressed. This module is that sender:
the record builders are pure functions (so a test can pin their bytes against Trace.cpp), and
:class:`Tracer` decides who gets a record, at which level, and within which budget.

Which events, at which level (``Trace.cpp``; levels from ``Trace.hpp:58-65``):

* any level (even 0): a peer's new path learned or an unknown path being confirmed for a packet
  about the network, a credential of the network rejected (with its reason); and at level >= 0
  (a level read as a negative 32-bit value gets nothing) our paths of a scope being reset;
* level >= 10 (VERBOSE): frames dropped on the way out (the reason: not a bridge, broadcast or
  multicast disabled, filter blocked) and on the way in (bridging or multicast not allowed),
  and access denied to a non-member's EXT_FRAME;
* level >= 15 (RULES): every rules decision on a frame, in or out, with the rule result logs
  of the base rules and of the capability that accepted (``networkFilter``). The network's
  :class:`~ztnode.core.enforcer.Enforcer` then judges every frame (no accept-all shortcut, no
  bursts judged by their ends, no segments joined before judgement), and the rules are run a
  second time with logging for the record, unless the budget is spent.

The reference has a node-wide target too (``Node::_remoteTraceTarget``), which alone receives
MAC failures, invalid packets, dropped HELLOs and config requests sent; 1.14.1 never sets it,
so those records are never sent there and we do not send them either.

Not as the reference: a record goes out at most :data:`REMOTE_TRACES_PER_SECOND` times a second
per node (the reference has no limit: a hostile peer could make a member spend a packet on
every frame it makes it drop), excess counted as ``remote_trace_over_budget``; an event raised
while a trace is being sent is not traced (``remote_trace_recursive``); we never trace to
ourselves (the reference's ``Switch::send`` drops such packets). The reference re-reads the
targets every 7.5 s (``updateMemoizedSettings``); we read the network's current config.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Final

from ztnode.budget import SecondBudget
from ztnode.core.counters import Drop
from ztnode.core.filter import Frame
from ztnode.wire.constants import Verb
from ztnode.wire.credentials import Capability as CapabilityCred
from ztnode.wire.credentials import (
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    Revocation,
    Tag,
)
from ztnode.wire.dictionary import Dictionary, DictionaryFullError
from ztnode.wire.inetaddr import InetAddress
from ztnode.wire.verbs import MAX_REMOTE_TRACE_SIZE

if TYPE_CHECKING:
    from ztnode.core.network import Membership, Network
    from ztnode.core.node import Node
    from ztnode.core.path import Path
    from ztnode.identity import Identity

__all__ = [
    "LEVEL_NORMAL",
    "LEVEL_VERBOSE",
    "REMOTE_TRACES_PER_SECOND",
    "Record",
    "Tracer",
    "credential_rejected",
    "incoming_frame_dropped",
    "network_access_denied",
    "network_filter",
    "outgoing_frame_dropped",
    "path_event",
    "resetting_paths_in_scope",
    "stale_reason",
]

LEVEL_NORMAL: Final = 0  # Trace::LEVEL_NORMAL
LEVEL_VERBOSE: Final = 10  # Trace::LEVEL_VERBOSE
LEVEL_RULES: Final = 15  # Trace::LEVEL_RULES
#: Records this node sends a second, all targets together; more are counted and dropped.
REMOTE_TRACES_PER_SECOND: Final = 64

# Event codes in hex string form (include/ZeroTierOne.h:348-361).
EV_RESETTING_PATHS_IN_SCOPE: Final = "1000"
EV_PEER_CONFIRMING_UNKNOWN_PATH: Final = "1001"
EV_PEER_LEARNED_NEW_PATH: Final = "1002"
EV_OUTGOING_NETWORK_FRAME_DROPPED: Final = "2000"
EV_INCOMING_NETWORK_ACCESS_DENIED: Final = "2001"
EV_INCOMING_NETWORK_FRAME_DROPPED: Final = "2002"
EV_CREDENTIAL_REJECTED: Final = "2003"
EV_NETWORK_FILTER_TRACE: Final = "2006"

Credential = CertificateOfMembership | CapabilityCred | Tag | CertificateOfOwnership | Revocation


class Record:
    """One trace record: a Dictionary of the reference's capacity whose ``add`` skips an entry
    that does not fit, as ``Dictionary::add`` returning false does (Trace.cpp ignores it)."""

    __slots__ = ("d",)

    def __init__(self, event: str) -> None:
        self.d = Dictionary(MAX_REMOTE_TRACE_SIZE)
        self.text("event", event)

    def text(self, key: str, value: str) -> None:
        self.raw(key, value.encode("utf-8"))

    def raw(self, key: str, value: bytes) -> None:
        with suppress(DictionaryFullError):
            self.d.add_bytes(key, value)

    def num(self, key: str, value: int) -> None:
        """``add(key, uint64_t|int64_t|Address)``: 16 hex digits, a negative's sign lost."""
        with suppress(DictionaryFullError):
            self.d.add_int(key, value)

    def path(self, remote: InetAddress, local_socket: int) -> None:
        self.text("remotePhyAddr", phy_text(remote))
        self.num("localSocket", local_socket)

    def to_bytes(self) -> bytes:
        return self.d.to_bytes()


def phy_text(addr: InetAddress) -> str:
    """``InetAddress::toString``: ``inet_ntop`` text, ``/``, the port in decimal."""
    ip = addr.ip
    mapped = getattr(ip, "ipv4_mapped", None)
    text = f"::ffff:{mapped}" if mapped is not None else str(ip)
    return f"{text}/{addr.port}"


def path_event(
    learned: bool,
    network_id: int,
    peer: int,
    remote: InetAddress,
    local_socket: int,
    packet_id: int,
    verb: int,
) -> bytes:
    """peerLearnedNewPath (Trace.cpp:127-135) or peerConfirmingUnknownPath (Trace.cpp:84-95);
    ``network_id`` is nonzero (only such records have a network's target to go to)."""
    r = Record(EV_PEER_LEARNED_NEW_PATH if learned else EV_PEER_CONFIRMING_UNKNOWN_PATH)
    r.num("packetId", packet_id)
    if not learned:
        r.num("packetVerb", verb)
    r.num("networkId", network_id)
    r.num("remoteZtAddr", peer)
    r.path(remote, local_socket)
    return r.to_bytes()


def resetting_paths_in_scope(
    reporter: int, reporter_phy: InetAddress, my_phy: InetAddress, scope: int
) -> bytes:
    """resettingPathsInScope (Trace.cpp:55-60)."""
    r = Record(EV_RESETTING_PATHS_IN_SCOPE)
    r.num("remoteZtAddr", reporter)
    r.text("remotePhyAddr", phy_text(reporter_phy))
    r.text("localPhyAddr", phy_text(my_phy))
    r.num("phyAddrIpScope", scope)
    return r.to_bytes()


def outgoing_frame_dropped(
    network_id: int, source_mac: int, dest_mac: int, ethertype: int, length: int, reason: str
) -> bytes:
    """outgoingNetworkFrameDropped (Trace.cpp:195-205); the VLAN id is always 0 here."""
    r = Record(EV_OUTGOING_NETWORK_FRAME_DROPPED)
    r.num("networkId", network_id)
    r.num("sourceMac", source_mac)
    r.num("destMac", dest_mac)
    r.num("etherType", ethertype)
    r.num("vlanId", 0)
    r.num("frameLength", length)
    r.text("reason", reason)
    return r.to_bytes()


def network_access_denied(
    network_id: int,
    source: int,
    remote: InetAddress | None,
    local_socket: int,
    packet_id: int,
    verb: int,
) -> bytes:
    """incomingNetworkAccessDenied (Trace.cpp:229-238)."""
    return _incoming(
        EV_INCOMING_NETWORK_ACCESS_DENIED, network_id, source, remote, local_socket, packet_id, verb
    ).to_bytes()


def _incoming(
    event: str,
    network_id: int,
    source: int,
    remote: InetAddress | None,
    local_socket: int,
    packet_id: int,
    verb: int,
) -> Record:
    """The fields every record about an incoming packet of a network starts with, in the
    reference's order (packet, sender, path, network)."""
    r = Record(event)
    r.num("packetId", packet_id)
    r.num("packetVerb", verb)
    r.num("remoteZtAddr", source)
    if remote is not None:
        r.path(remote, local_socket)
    r.num("networkId", network_id)
    return r


def incoming_frame_dropped(
    network_id: int,
    source: int,
    remote: InetAddress | None,
    local_socket: int,
    packet_id: int,
    verb: int,
    source_mac: int,
    dest_mac: int,
    reason: str,
) -> bytes:
    """incomingNetworkFrameDropped (Trace.cpp:262-276)."""
    r = _incoming(
        EV_INCOMING_NETWORK_FRAME_DROPPED, network_id, source, remote, local_socket, packet_id, verb
    )
    r.num("sourceMac", source_mac)
    r.num("destMac", dest_mac)
    r.text("reason", reason)
    return r.to_bytes()


def network_filter(
    network_id: int,
    zt_source: int,
    zt_dest: int,
    frame: Frame,
    no_tee: bool,
    inbound: bool,
    accept: int,
    base_log: bytes,
    capability: tuple[int, bytes] | None,
) -> bytes:
    """networkFilter (Trace.cpp:393-415): the decision, both rule result logs as raw bytes,
    and the frame's first 256 bytes; the VLAN id is always 0 here."""
    r = Record(EV_NETWORK_FILTER_TRACE)
    r.num("networkId", network_id)
    r.num("sourceZtAddr", zt_source)
    r.num("destZtAddr", zt_dest)
    r.num("sourceMac", frame.mac_source)
    r.num("destMac", frame.mac_dest)
    r.num("etherType", frame.ethertype)
    r.num("vlanId", 0)
    r.text("filterNoTee", "1" if no_tee else "0")
    r.text("filterInbound", "1" if inbound else "0")
    r.num("filterResult", accept)
    r.raw("filterBaseRuleLog", base_log)
    if capability is not None:
        r.raw("filterCapRuleLog", capability[1])
        r.num("filterMatchingCapId", capability[0])
    r.num("frameLength", len(frame.data))
    if frame.data:
        r.raw("frameData", bytes(frame.data[:256]))
    return r.to_bytes()


def credential_rejected(cred: Credential, reason: str) -> bytes:
    """credentialRejected, one overload per credential type (Trace.cpp:426-569): type, id,
    then timestamp and issued-to (a tag adds its value), or a revocation's target."""
    r = Record(EV_CREDENTIAL_REJECTED)
    r.num("networkId", cred.network_id)
    if isinstance(cred, Revocation):
        r.num("credType", CredentialType.REVOCATION)
        r.num("credId", cred.id)
        r.num("credRevocationTarget", cred.target)
    else:
        if isinstance(cred, CertificateOfMembership):
            kind, cid = CredentialType.COM, 0  # CertificateOfMembership::id() is always 0
        elif isinstance(cred, CapabilityCred):
            kind, cid = CredentialType.CAPABILITY, cred.id
        elif isinstance(cred, Tag):
            kind, cid = CredentialType.TAG, cred.id
        else:
            kind, cid = CredentialType.COO, cred.id
        r.num("credType", kind)
        r.num("credId", cid)
        r.num("credTs", cred.timestamp)
        r.num("credIssuedTo", cred.issued_to)
        if isinstance(cred, Tag):
            r.num("credInfo", cred.value)
    r.text("reason", reason)
    return r.to_bytes()


def _signed32(level: int) -> int:
    """The config's 32-bit level as the reference compares it (cast to a C ``int``)."""
    level &= 0xFFFF_FFFF
    return level - (1 << 32) if level >= 1 << 31 else level


def traces_rules(target: int, level: int) -> bool:
    """Whether a config's trace target wants a record of every rules decision."""
    return bool(target) and _signed32(level) >= LEVEL_RULES


class Tracer:
    """Decides which network target gets a record and sends it (see the module docstring).

    The switch keeps :attr:`rx_pid`, :attr:`rx_path` and :attr:`rx_verb` on the packet being
    dispatched, as the reference's trace calls take them from the ``IncomingPacket`` at hand.
    """

    __slots__ = ("_budget", "_sending", "rt", "rx_path", "rx_pid", "rx_verb", "sent")

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._budget = SecondBudget()
        self._sending = False
        self.rx_pid = 0
        self.rx_path: Path | None = None
        self.rx_verb = 0
        self.sent = 0

    # -- who gets it ------------------------------------------------------------------------

    def target(self, network_id: int, level: int | None) -> int:
        """The network's trace target if it wants records of ``level`` (None: any level, as
        the path and credential events check none), else 0."""
        net = self.rt.networks.get(network_id)
        cfg = net.config if net is not None else None
        if cfg is None or not cfg.remote_trace_target:
            return 0
        if level is not None and _signed32(cfg.remote_trace_level) < level:
            return 0
        return cfg.remote_trace_target

    def _send(self, dest: int, record: bytes, now: int) -> None:
        rt = self.rt
        if dest == rt.address or not record:
            return
        if self._sending:
            rt.counters.drop(Drop.TRACE_RECURSIVE)
            return
        if not self._budget.take(now, REMOTE_TRACES_PER_SECOND):
            rt.counters.drop(Drop.TRACE_OVER_BUDGET)
            return
        self._sending = True
        try:
            rt.switch.send(dest, Verb.REMOTE_TRACE, record + b"\0", now, compress=True)
            self.sent += 1
        finally:
            self._sending = False

    def _rx(self) -> tuple[InetAddress | None, int]:
        p = self.rx_path
        return (p.inet, p.local[1]) if p is not None else (None, 0)

    # -- the events -------------------------------------------------------------------------

    def path(
        self, learned: bool, network_id: int, peer: int, path: Path, verb: int, now: int
    ) -> None:
        """A new path learned from an OK, or an unknown one being confirmed (Peer::received),
        for a packet about ``network_id``."""
        dest = self.target(network_id, None) if network_id else 0
        if dest:
            rec = path_event(learned, network_id, peer, path.inet, path.local[1], self.rx_pid, verb)
            self._send(dest, rec, now)

    def resetting_paths(
        self, reporter: int, reporter_phy: InetAddress, mine: InetAddress, now: int
    ) -> None:
        """A trusted peer saw us at a new address: to every network's target (level >= 0)."""
        nets = list(self.rt.networks)
        dests = dict.fromkeys(t for t in (self.target(n, LEVEL_NORMAL) for n in nets) if t)
        if dests:
            rec = resetting_paths_in_scope(reporter, reporter_phy, mine, int(mine.scope()))
            for dest in dests:
                self._send(dest, rec, now)

    def outgoing_dropped(
        self,
        net: Network,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        length: int,
        why: str,
        now: int,
    ) -> None:
        dest = self.target(net.id, LEVEL_VERBOSE)
        if dest:
            rec = outgoing_frame_dropped(net.id, source_mac, dest_mac, ethertype, length, why)
            self._send(dest, rec, now)

    def outgoing_filtered(
        self,
        net: Network,
        dest: int,
        no_tee: bool,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        length: int,
        now: int,
    ) -> None:
        """The rules refused a frame we send. A multicast's per-recipient checks (``no_tee``
        with a recipient) are not traced, as OutboundMulticast's are not; a unicast checked
        with ``no_tee`` is a bridge's copy (Switch.cpp:666)."""
        if dest and no_tee:
            if dest_mac >> 40 & 0x01:
                return
            why = "filter blocked (bridge replication)"
        else:
            why = "filter blocked"
        self.outgoing_dropped(net, source_mac, dest_mac, ethertype, length, why, now)

    def access_denied(self, network_id: int, source: int, now: int) -> None:
        """An EXT_FRAME from a member not in good standing (IncomingPacket.cpp:902)."""
        dest = self.target(network_id, LEVEL_VERBOSE)
        if dest:
            remote, sock = self._rx()
            rec = network_access_denied(
                network_id, source, remote, sock, self.rx_pid, Verb.EXT_FRAME
            )
            self._send(dest, rec, now)

    def incoming_dropped(
        self,
        net: Network,
        source: int,
        source_mac: int,
        dest_mac: int,
        member_mac: int,
        now: int,
        why: str = "",
    ) -> None:
        """A frame refused for bridging or multicast (IncomingPacket.cpp:925-937, 1303, 1330);
        unless given, the reason follows from the MACs as the reference's branches do."""
        dest = self.target(net.id, LEVEL_VERBOSE)
        if not dest:
            return
        if why:
            pass
        elif source_mac != member_mac:
            why = "bridging not allowed (remote)"
        elif dest_mac >> 40 & 0x01:
            why = "multicast disabled"
        else:
            why = "bridging not allowed (local)"
        remote, sock = self._rx()
        verb = self.rx_verb or Verb.EXT_FRAME
        rec = incoming_frame_dropped(
            net.id, source, remote, sock, self.rx_pid, verb, source_mac, dest_mac, why
        )
        self._send(dest, rec, now)

    def filtered(
        self,
        net: Network,
        inbound: bool,
        peer: int,
        frame: Frame,
        no_tee: bool,
        accept: int,
        membership: Membership | None,
        now: int,
    ) -> None:
        """A rules decision on a frame, at level >= 15 (Network.cpp:756-808 out, 880-928 in):
        the rules are run again keeping their result logs, unless the budget is spent."""
        dest = self.target(net.id, LEVEL_RULES)
        if not dest or dest == self.rt.address:
            return
        b = self._budget
        if now - b.start < 1000 and b.used >= REMOTE_TRACES_PER_SECOND:
            self.rt.counters.drop(Drop.TRACE_OVER_BUDGET)
            return
        base, cap = net.enforcer.rule_logs(inbound, peer, frame, membership)
        src, dst = (peer, self.rt.address) if inbound else (self.rt.address, peer)
        result = accept if inbound else int(bool(accept))  # outbound reports 1, never 2
        rec = network_filter(net.id, src, dst, frame, no_tee, inbound, result, base, cap)
        self._send(dest, rec, now)

    def credential_rejected(self, cred: Credential, reason: str, now: int) -> None:
        dest = self.target(cred.network_id, None)
        if dest:
            self._send(dest, credential_rejected(cred, reason), now)

    def verified(self, net: Network, cred: Credential, controller: Identity, now: int) -> bool:
        """``cred.verify``; a failed one is rejected as the reference words it: stale reasons
        first (Membership.cpp checks them before the signature), else ``invalid``."""
        if cred.verify(controller):
            return True
        if self.target(net.id, None):
            self.credential_rejected(cred, stale_reason(net, cred) or "invalid", now)
        return False

    def refused(self, net: Network, cred: Credential, now: int) -> bool:
        """A verified credential the network would not take: traced with its reason; False."""
        if self.target(net.id, None):
            reason = stale_reason(net, cred)
            if reason is not None:
                self.credential_rejected(cred, reason, now)
        return False


def stale_reason(net: Network, cred: Credential) -> str | None:
    """Why Membership::addCredential refuses a credential before its signature is checked
    (Membership.cpp:110-121 for a COM, 143-158 for the others), or None."""
    if isinstance(cred, Revocation):
        return None
    m = net.memberships.get(cred.issued_to)
    if m is None:
        return None
    if isinstance(cred, CertificateOfMembership):
        if cred.timestamp <= m.com_revocation_threshold:
            return "revoked"
        if m.com is not None and cred.timestamp < m.com.timestamp:
            return "old"
        return None
    held: CapabilityCred | Tag | CertificateOfOwnership | None
    if isinstance(cred, CapabilityCred):
        kind, held = CredentialType.CAPABILITY, m.capabilities.get(cred.id)
    elif isinstance(cred, Tag):
        kind, held = CredentialType.TAG, m.tags.get(cred.id)
    else:
        kind, held = CredentialType.COO, m.coos.get(cred.id)
    if held is not None and held.timestamp > cred.timestamp:
        return "old"
    if m.thresholds.get((int(kind), cred.id), 0) >= cred.timestamp:
        return "revoked"
    return None
