"""VL1 verb handlers (IncomingPacket's peer-level verbs) and ``Peer::received``: HELLO and its
OK, ECHO, WHOIS, ERROR, RENDEZVOUS, PUSH_DIRECT_PATHS, USER_MESSAGE, REMOTE_TRACE, and the path
learning and direct-path pushes that follow every authenticated packet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ztnode.core import events as ev
from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.peer import (
    DIRECT_PATH_PUSH_INTERVAL,
    DIRECT_PATH_PUSH_INTERVAL_HAVEPATH,
    PEER_WHOIS_RATE_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_LIMIT,
    PUSH_DIRECT_PATHS_CUTOFF_TIME,
    Peer,
)
from ztnode.core.records import Addr, Outgoing, Rx
from ztnode.core.timing import (
    ECHO_ANSWER_INTERVAL,
    MAX_API_ECHOES,
    MAX_PUSH_PAYLOAD,
    PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY,
    REMOTE_TRACE_MAX,
)
from ztnode.crypto import SymmetricKey
from ztnode.errors import CryptoError, DecodeError
from ztnode.identity import Identity
from ztnode.wire import packet as pk
from ztnode.wire.buffer import Writer
from ztnode.wire.constants import (
    IDX_PAYLOAD,
    PROTO_VERSION,
    PROTO_VERSION_MIN,
    SOFTWARE_MAJOR,
    SOFTWARE_MINOR,
    SOFTWARE_REVISION,
    Cipher,
    ErrorCode,
    Verb,
)
from ztnode.wire.inetaddr import InetAddress, IpScope
from ztnode.wire.verbs import (
    Error,
    Hello,
    OkEcho,
    OkHello,
    OkMulticastFrame,
    OkMulticastGather,
    OkNetworkConfigRequest,
    OkWhois,
    PushDirectPaths,
    PushedPath,
    RemoteTrace,
    Rendezvous,
    UserMessage,
    Whois,
    decode_ok,
)

if TYPE_CHECKING:
    from ztnode.core.node import Node


@dataclass
class _ApiEcho:
    dest: int
    sent: int
    request_id: int


class Vl1:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._echo_answered: dict[Path, int] = {}
        self.api_echo: dict[int, _ApiEcho] = {}
        self._echo_seq = 0

    def do_hello(
        self, buf: bytearray, path: Path, hops: int, now: int, *, authenticated: bool
    ) -> None:
        payload = memoryview(buf)[IDX_PAYLOAD:]
        tail = Hello.encrypted_tail_offset(payload)  # validates the clear-text head
        head = Hello.decode(payload[:tail] if tail is not None else payload)
        ident = head.identity
        src = int.from_bytes(buf[13:18], "big")
        if head.protocol_version < PROTO_VERSION_MIN:
            self.rt.counters.drop(Drop.OLD_PROTOCOL)
            return
        if ident.address != src:
            self.rt.counters.drop(Drop.IDENTITY_MISMATCH)
            return
        peer = self.rt.peers.get(src)
        if peer is not None and peer.identity != ident:
            self._hello_collision(buf, ident, path, now)
            return
        if peer is None:
            if not self.rt.peer_room(src):
                return
            if not self.rt.validator.gate_ok(path, now):
                self.rt.counters.drop(Drop.RATE_LIMITED)
                return
            try:
                key = SymmetricKey(self.rt.identity.agree(ident))
            except CryptoError:
                self.rt.counters.drop(Drop.IDENTITY_INVALID)
                return
            if not authenticated and not pk.dearmor(buf, key):
                self.rt.counters.drop(Drop.MAC_FAILED)
                return
            if not authenticated:
                self.rt.counters.cipher_in_counts[(buf[18] >> 3) & 7] += 1
            if not self.rt.validator.is_known_valid(ident):
                if self.rt.config.defer_identity_validation:
                    self.rt.validator.defer(ident, buf, path)
                    return
                if not ident.validate():
                    self.rt.counters.drop(Drop.IDENTITY_INVALID)
                    return
                self.rt.validator.remember_valid(ident)
            peer = self.rt.add_peer(ident, key, now)
            peer.replay.accept(int.from_bytes(buf[0:8], "big"), now)  # its first packet
        elif not authenticated:
            if not pk.dearmor(buf, peer.key):
                self.rt.counters.drop(Drop.MAC_FAILED)
                return
            if not peer.replay.accept(int.from_bytes(buf[0:8], "big"), now):
                self.rt.counters.drop(Drop.REPLAYED)  # a HELLO sent again by a third party
                return
            self.rt.counters.cipher_in_counts[(buf[18] >> 3) & 7] += 1
        self._after_hello(peer, buf, tail, path, hops, now)

    def _after_hello(
        self, peer: Peer, buf: bytearray, tail: int | None, path: Path, hops: int, now: int
    ) -> None:
        if not path.kept:  # authenticated now: the path is worth keeping
            path = self.rt.adopt_path(path)
        if tail is not None:
            start = IDX_PAYLOAD + tail
            pk.crypt_field(buf, peer.key, start, len(buf) - start)
        hello = Hello.decode(memoryview(buf)[IDX_PAYLOAD:])
        pid = int.from_bytes(buf[0:8], "big")
        if hops == 0 and hello.destination is not None:
            self.surface_report(peer, path, hello.destination, now)
        # OK(HELLO): encrypted with what the peer supported *before* this HELLO (so a new peer
        # gets Salsa20/12, as in the reference), sent straight back on the receiving path.
        surface = path.inet if hello.protocol_version >= 5 else path.inet.with_port(0)
        ok = OkHello(
            pid,
            hello.timestamp,
            PROTO_VERSION,
            SOFTWARE_MAJOR,
            SOFTWARE_MINOR,
            SOFTWARE_REVISION,
            surface,
            self._world_updates_for(hello),
        )
        self.rt.switch.send_on(peer, path, Verb.OK, ok.encode(), now, expect=False)
        peer.version = (
            hello.protocol_version,
            hello.version_major,
            hello.version_minor,
            hello.version_revision,
        )
        self.received(peer, path, hops, Verb.HELLO, now)

    def _world_updates_for(self, hello: Hello) -> bytes:
        out = bytearray()
        planet = self.rt.topology.planet
        if (
            hello.planet_id == planet.id
            and hello.planet_timestamp is not None
            and hello.planet_timestamp < planet.timestamp
        ):
            out += planet.to_bytes()
        for m in hello.moon_refs():
            have = self.rt.topology.moons.get(m.world_id)
            if have is not None and m.timestamp < have.timestamp:
                out += have.to_bytes()
        return bytes(out)

    def _hello_collision(self, buf: bytearray, ident: Identity, path: Path, now: int) -> None:
        """A second identity claims a known address: tell it, if its HELLO is genuine."""
        self.rt.counters.drop(Drop.IDENTITY_COLLISION)
        if not self.rt.validator.gate_ok(path, now):
            return
        try:
            key = SymmetricKey(self.rt.identity.agree(ident))
        except CryptoError:
            return
        if not pk.dearmor(buf, key):
            return
        pid = int.from_bytes(buf[0:8], "big")
        err = Error.identity_collision(pid).encode()
        packet = pk.new_packet(
            self.rt.random_bytes(8), ident.address, self.rt.address, Verb.ERROR, err
        )
        pk.armor(packet, key, Cipher.POLY1305_SALSA2012)
        self.rt.switch.emit(path, bytes(packet), now)

    def do_ok(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        if len(payload) < 9:
            raise DecodeError("OK shorter than its header")
        in_re_id = int.from_bytes(payload[1:9], "big")
        if not self.rt.expected.expecting(in_re_id):
            self.rt.counters.drop(Drop.UNEXPECTED_OK)
            return
        ok = decode_ok(payload)
        if isinstance(ok, OkHello):
            self._ok_hello(peer, ok, path, hops, now)
        elif isinstance(ok, OkWhois):
            if self.rt.topology.is_upstream(peer.address):
                ident = ok.identities[0]
                if ident.address not in self.rt.peers and ident.address != self.rt.address:
                    self.rt.whois.answered(ident, now)
        elif isinstance(ok, OkEcho):
            req = self.api_echo.pop(in_re_id, None)
            if req is not None and req.dest == peer.address:
                self.rt.events.append(
                    ev.EchoReply(peer.address, bytes(ok.data), req.request_id, now - req.sent)
                )
            elif req is None and hops == 0 and self.rt.bonds.bonds:
                self.rt.bonds.echo_answered(peer, path, in_re_id, now)
        elif isinstance(ok, OkNetworkConfigRequest):
            self.rt.vl2.config_chunk(peer, ok.chunk, in_re_id, now, pushed=False, path=path)
        elif isinstance(ok, OkMulticastGather):
            self.rt.multicaster.learn_gathered(ok.network_id, ok.mac, ok.adi, ok.members, now)
        elif isinstance(ok, OkMulticastFrame) and ok.gather is not None:  # implicit gather
            members = ok.gather.members
            self.rt.multicaster.learn_gathered(ok.network_id, ok.mac, ok.adi, members, now)
        nwid = 0  # the network an OK is about (IncomingPacket.cpp:642-661)
        if isinstance(ok, OkNetworkConfigRequest):
            nwid = ok.chunk.network_id
        elif isinstance(ok, OkMulticastGather | OkMulticastFrame):
            nwid = ok.network_id
        self.received(peer, path, hops, Verb.OK, now, nwid)

    def _ok_hello(self, peer: Peer, ok: OkHello, path: Path, hops: int, now: int) -> None:
        if ok.protocol_version < PROTO_VERSION_MIN:
            self.rt.counters.drop(Drop.OLD_PROTOCOL)
            return
        if ok.worlds and self.rt.topology.should_accept_world_from(peer.address):
            try:
                worlds = ok.parse_worlds()
            except DecodeError:
                worlds = ()
            for w in worlds:
                if self.rt.topology.add_world(w, always_accept_new=False, via=peer.address):
                    self.rt.events.append(
                        ev.WorldUpdated(w.id, int(w.type), w.timestamp, w.to_bytes())
                    )
                    self.rt.housekeeper.make_upstream_peers()
        if hops == 0:
            path.update_latency(now - ok.timestamp)
        peer.version = (
            ok.protocol_version,
            ok.version_major,
            ok.version_minor,
            ok.version_revision,
        )
        if hops == 0 and ok.surface is not None:
            self.surface_report(peer, path, ok.surface, now)

    def do_echo(self, rx: Rx) -> None:
        peer, payload, path, pid, hops, now = rx.peer, rx.payload, rx.path, rx.pid, rx.hops, rx.now
        last = self._echo_answered.get(path, -(10**12))
        if now - last >= ECHO_ANSWER_INTERVAL:
            self._echo_answered[path] = now
            body = Writer().u8(Verb.ECHO).u64(pid).raw(payload)
            self.rt.switch.send_on(peer, path, Verb.OK, bytes(body.buf), now, expect=False)
        else:
            self.rt.counters.drop(Drop.RATE_LIMITED)
        self.received(peer, path, hops, Verb.ECHO, now)

    def do_whois(self, rx: Rx) -> None:
        peer, payload, path, pid, hops, now = rx.peer, rx.payload, rx.path, rx.pid, rx.hops, rx.now
        req = Whois.decode(payload)
        if not self.rt.topology.am_upstream:
            if now - peer.last_whois_answered < PEER_WHOIS_RATE_LIMIT:
                self.rt.counters.drop(Drop.RATE_LIMITED)
                self.received(peer, path, hops, Verb.WHOIS, now)
                return
            peer.last_whois_answered = now
        found: list[Identity] = []
        for a in req.addresses:
            if a == self.rt.address:
                found.append(self.rt.identity.public())
            elif (p := self.rt.peers.get(a)) is not None:
                found.append(p.identity)
            elif not self.rt.topology.am_upstream:
                self.rt.whois.request(a, now)
        if found:
            body = OkWhois(pid, tuple(found)).encode()
            self.rt.switch.send_on(peer, path, Verb.OK, body, now, expect=False)
        self.received(peer, path, hops, Verb.WHOIS, now)

    def do_error(self, rx: Rx) -> None:
        """IncomingPacket::_doERROR (node/IncomingPacket.cpp:169-316, protocol-network.md §2.4)."""
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        err = Error.decode(payload)
        code = err.code
        net = self.rt.networks.get(err.network_id) if err.network_id is not None else None
        if code == ErrorCode.IDENTITY_COLLISION:
            if self.rt.topology.is_upstream(peer.address):
                self.rt.events.append(ev.IdentityCollision(peer.address))
        elif net is not None:
            self.rt.vl2.network_error(peer, net, err, now)
        self.received(peer, path, hops, Verb.ERROR, now, err.network_id or 0)

    def do_nop(self, rx: Rx) -> None:
        """NOP, unknown verbs, and VL2 verbs for networks we have not joined: accepted, and they
        only refresh the peer, like the reference."""
        self.received(rx.peer, rx.path, rx.hops, rx.verb, rx.now)

    def do_hello_authenticated(self, rx: Rx) -> None:
        """A HELLO that arrived armored with a cipher (its MAC already checked)."""
        self.do_hello(rx.buf, rx.path, rx.hops, rx.now, authenticated=True)

    def do_user_message(self, rx: Rx) -> None:
        m = UserMessage.decode(rx.payload)
        self.rt.events.append(ev.UserMessage(rx.peer.address, m.type_id, m.data))
        self.received(rx.peer, rx.path, rx.hops, rx.verb, rx.now)

    def do_remote_trace(self, rx: Rx) -> None:
        t = RemoteTrace.decode(rx.payload)
        for rec in t.records:
            if rec and len(rec) <= REMOTE_TRACE_MAX:
                self.rt.events.append(ev.RemoteTrace(rx.peer.address, bytes(rec)))
        self.received(rx.peer, rx.path, rx.hops, rx.verb, rx.now)

    def next_echo_request(self) -> int:
        """A new request id for an ECHO sent through the API."""
        self._echo_seq += 1
        return self._echo_seq

    def expect_echo(self, pid: int, dest: int, now: int, request: int) -> None:
        """Remember an API ECHO's packet id so its OK becomes an EchoReply (bounded by
        ``MAX_API_ECHOES``: the oldest is forgotten)."""
        self.api_echo[pid] = _ApiEcho(dest, now, request)
        if len(self.api_echo) > MAX_API_ECHOES:
            self.api_echo.pop(next(iter(self.api_echo)))

    def prune(self, now: int, used: set[Path]) -> None:
        """Forget echo rate memos of paths no peer uses and API ECHOs unanswered for a minute
        (housekeeping)."""
        self._echo_answered = {p: t for p, t in self._echo_answered.items() if p in used}
        self.api_echo = {k: v for k, v in self.api_echo.items() if now - v.sent < 60_000}

    def do_rendezvous(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        rv = Rendezvous.decode(payload)
        if self.rt.topology.is_upstream(peer.address):
            target = self.rt.peers.get(rv.address)
            if target is not None and rv.port > 0:
                remote: Addr = (str(rv.ip), rv.port)
                if self.rt.should_use_path(target.address, remote):
                    for local in self.rt.locals_for(remote):
                        # Junk with a short TTL opens our NAT/firewall toward the other side
                        # without reaching it (protocol-core.md 9.7).
                        self.rt.out.append(Outgoing(local, remote, self.rt.random_bytes(4), 2))
                        self.rt.switch.contact(
                            target, self.rt.path_for(local, remote), now, full_hello=False
                        )
        self.received(peer, path, hops, Verb.RENDEZVOUS, now)

    def do_push_direct_paths(self, rx: Rx) -> None:
        peer, payload, path, hops, now = rx.peer, rx.payload, rx.path, rx.hops, rx.now
        if now - peer.last_direct_path_push_receive > PUSH_DIRECT_PATHS_CUTOFF_TIME:
            peer.push_cutoff_count = 0
        peer.last_direct_path_push_receive = now
        if peer.push_cutoff_count >= PUSH_DIRECT_PATHS_CUTOFF_LIMIT:
            self.rt.counters.drop(Drop.RATE_LIMITED)
            self.received(peer, path, hops, Verb.PUSH_DIRECT_PATHS, now)
            return
        peer.push_cutoff_count += 1
        push = PushDirectPaths.decode(payload)
        per_kind: dict[tuple[int, bool], int] = {}
        for rec in push.paths:
            if rec.forget or rec.address is None:
                continue
            remote = rec.address.to_sockaddr()
            if not self.rt.should_use_path(peer.address, remote):
                continue
            locals_ = [
                local
                for local in self.rt.locals_for(remote)
                if (known := self.rt.paths.get((local, remote))) is None
                or peer.find(known) is None
                or not known.alive(now)
            ]
            if not locals_:
                continue
            kind = (int(rec.address.scope()), rec.address.is_ipv6())
            if per_kind.get(kind, 0) >= PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY:
                continue
            per_kind[kind] = per_kind.get(kind, 0) + 1
            for local in locals_:
                self.rt.switch.contact(peer, self.rt.path_for(local, remote), now, full_hello=False)
        self.received(peer, path, hops, Verb.PUSH_DIRECT_PATHS, now)

    def received(
        self, peer: Peer, path: Path, hops: int, verb: int, now: int, network_id: int = 0
    ) -> None:
        """Path learning and direct-path pushes after any authenticated packet (9.1, 9.8).
        ``network_id``: the network the packet was about, whose trace target hears of a path
        learned or being confirmed (Peer::received's ``networkId``)."""
        if not path.kept:
            path = self.rt.adopt_path(path)
        peer.last_receive = now
        if verb in (
            Verb.FRAME,
            Verb.EXT_FRAME,
            Verb.NETWORK_CONFIG_REQUEST,
            Verb.NETWORK_CONFIG,
            Verb.MULTICAST_FRAME,
        ):
            peer.last_frame = now
        if peer.address in self.rt.topology.upstream_identities:  # is_upstream, inlined: per packet
            self.rt.housekeeper.set_online(True)
        if hops != 0:
            return
        slot = peer.find(path)
        if slot is not None:
            slot.lr = now
        elif self.rt.should_use_path(peer.address, path.remote):
            if peer.has_alive_path_to_ip(path, now):
                pass
            elif verb == Verb.OK:
                had_direct = peer.direct_path_count(now) > 0
                evicted = peer.learn(path, now)
                self.rt.frames.routes.clear()  # a route through an upstream may now go direct
                if evicted is not None:
                    self.rt.bonds.path_removed(peer.address, evicted.path)
                    self.rt.events.append(
                        ev.PathDown(
                            peer.address, evicted.path.local, evicted.path.remote, "replaced"
                        )
                    )
                self.rt.events.append(ev.PathUp(peer.address, path.local, path.remote))
                if self.rt.bonds.in_use:
                    self.rt.bonds.path_learned(peer, path, now)
                if not had_direct:
                    self.rt.events.append(ev.PeerDirect(peer.address))
                if network_id:
                    self.rt.tracer.path(True, network_id, peer.address, path, verb, now)
            else:
                peer.unconfirmed, peer.unconfirmed_at = path, now
                self.rt.switch.confirm_path(peer, path, now)
                if network_id and path.last_hello_sent == now:  # tried now, not too recently
                    self.rt.tracer.path(False, network_id, peer.address, path, verb, now)
        self._maybe_push_direct_paths(peer, path, hops, now)

    def _maybe_push_direct_paths(self, peer: Peer, path: Path, hops: int, now: int) -> None:
        if not peer.trust_established(now):
            return
        interval = DIRECT_PATH_PUSH_INTERVAL_HAVEPATH if hops == 0 else DIRECT_PATH_PUSH_INTERVAL
        if now - peer.last_direct_path_push_sent < interval:
            return
        addrs = [*self.rt.interface_addresses, *self.rt.selfaware.surfaces(now)]
        if not addrs:
            return
        peer.last_direct_path_push_sent = now
        records = [PushedPath.for_address(a) for a in dict.fromkeys(addrs)]
        while records:
            chunk: list[PushedPath] = []
            size = 2
            while records and size + records[0].encoded_size() <= MAX_PUSH_PAYLOAD:
                r = records.pop(0)
                chunk.append(r)
                size += r.encoded_size()
            if not chunk:
                break
            body = PushDirectPaths(tuple(chunk)).encode()
            self.rt.switch.send_on(peer, path, Verb.PUSH_DIRECT_PATHS, body, now, compress=True)

    def surface_report(self, peer: Peer, path: Path, surface: InetAddress, now: int) -> None:
        trusted = self.rt.topology.is_upstream(peer.address)
        change = self.rt.selfaware.report(
            peer.address, path.local, path.remote, IpScope(path.scope), surface, trusted, now
        )
        if change is None:
            return
        self.rt.tracer.resetting_paths(peer.address, path.inet, surface, now)
        old = change.old.to_sockaddr() if change.old is not None else None
        self.rt.events.append(
            ev.SurfaceAddressChanged(int(change.scope), old, surface.to_sockaddr())
        )
        # We moved: every path of that family and scope must prove itself again.
        for p in self.rt.peers.values():
            for slot in p.paths:
                if slot.path.scope == change.scope and slot.path.is_ipv6 == change.ipv6:
                    slot.lr = 0
                    self.rt.switch.contact(p, slot.path, now, full_hello=False)
