"""The switch (ZeroTierOne's Switch): the receive path from datagram to verb handler, and the
send path from a verb and payload to armored datagrams on the best path.

Receive: :meth:`Switch.receive` takes every :class:`~ztnode.core.records.Inbound` the host hands
the node: datagrams (fragments and heads reassembled, beacons answered, packets for others
handed to the relay), whole packets the transport reassembled, and packets it already
authenticated. A packet then meets, in this order, the sender-lookup and MAC check
(``process_packet``; unknown senders are parked by the WHOIS queue; a cipher-2 packet has no
MAC and is accepted only from a configured trusted network with its ID, see
:mod:`ztnode.core.trusted`), decompression, and the
dispatch: FRAME on its own fast path, every other verb through :data:`Switch.handlers`, a
table from verb number to a handler taking one :class:`~ztnode.core.records.Rx`. The place
where rate gates and a replay window will sit is ``process_packet`` after the MAC check, before
``_dispatch``: the one point every authenticated packet passes.

Send: ``send`` routes to the peer's best path (``route``: the one place a bond will choose a
path), else through an upstream, else queues and asks WHOIS; ``send_on`` builds, compresses,
armors (or, for what ``send`` routes onto a trusted path, marks cipher 2) and emits on a given
path, fragmenting above the path's MTU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from ztnode.core.bond.flows import NO_FLOW, flow_id
from ztnode.core.bond.settings import BALANCING, BondPolicy
from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.peer import (
    PEER_PATH_EXPIRATION,
    Peer,
)
from ztnode.core.records import Addr, Inbound, InboundKind, Outgoing, Rx
from ztnode.core.timing import (
    BEACON_REPLY_INTERVAL,
    PATH_HEARTBEAT,
    PATH_HELLO_INTERVAL,
)
from ztnode.errors import DecodeError, LocalProtocolError
from ztnode.wire import packet as pk
from ztnode.wire.constants import (
    FLAG_FRAGMENTED,
    IDX_PAYLOAD,
    PROTO_VERSION,
    SOFTWARE_MAJOR,
    SOFTWARE_MINOR,
    SOFTWARE_REVISION,
    Cipher,
    Verb,
)
from ztnode.wire.fragment import DropReason as FragmentDrop
from ztnode.wire.fragment import split
from ztnode.wire.verbs import (
    Hello,
    MoonRef,
)
from ztnode.wire.world import WorldType

if TYPE_CHECKING:
    from ztnode.core.node import Node

log = logging.getLogger("ztnode.core")


def _bad_fragments(drops: Mapping[FragmentDrop, int]) -> int:
    """How many pieces the reassembler judged malformed (per packet: no generator, no sum)."""
    return (
        drops.get(FragmentDrop.INVALID_FRAGMENT, 0)
        + drops.get(FragmentDrop.INVALID_HEAD, 0)
        + drops.get(FragmentDrop.INCONSISTENT_TOTAL, 0)
        + drops.get(FragmentDrop.TOO_LARGE, 0)
    )


# NamedTuple records built with tuple.__new__: a NamedTuple's own __new__ is a Python function,
# interpreted on every call from compiled code (about 3 000 instructions under callgrind, against
# a few hundred this way). Every field is then given, defaults included.
_new_rx: Final = tuple.__new__
_new_out: Final = tuple.__new__
_FRAMES: Final = (Verb.FRAME, Verb.EXT_FRAME)
# The record kinds as module constants: InboundKind lives in an interpreted module, so naming
# its members here would look them up on the class for every packet.
_DATAGRAM: Final = InboundKind.DATAGRAM
_AUTHENTICATED: Final = InboundKind.AUTHENTICATED


def _frame_flow(buf: bytearray, verb: int) -> int:
    """The flow of a received FRAME (for a bond's inbound flow learning), else NO_FLOW."""
    if verb != Verb.FRAME or len(buf) < IDX_PAYLOAD + 10:
        return NO_FLOW
    ethertype = (buf[IDX_PAYLOAD + 8] << 8) | buf[IDX_PAYLOAD + 9]
    return flow_id(ethertype, memoryview(buf)[IDX_PAYLOAD + 10 :])


def _as_bytearray(data: bytes | bytearray | memoryview) -> bytearray:
    """The packet itself when the transport handed a ``bytearray`` (decoded in place)."""
    return data if isinstance(data, bytearray) else bytearray(data)


class Switch:
    """See the module docstring."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self._beacon_answered: dict[int, int] = {}
        self.handlers: dict[int, Callable[[Rx], None]] = {}
        #: Sees every authenticated packet as it is dispatched (its peer, plaintext, path):
        #: a wiretap for diagnostics and tests, which cannot wrap the methods of this class
        #: once it is compiled (``ztnode._compiled``). None: nothing is called.
        self.dispatch_observer: Callable[[Peer, bytearray, Path], None] | None = None

    def receive(self, inbound: Inbound, now: int) -> bool:
        """Every input from the host (see :class:`~ztnode.core.records.Inbound`); a malformed or
        unwanted one is a counted drop, and a bug is logged and counted, never raised."""
        kind, data = inbound.kind, inbound.data
        if kind == _DATAGRAM:
            self.receive_datagram(data, inbound.local, inbound.remote, now)
            return True
        rt = self.rt
        rt.now = now
        c = rt.counters
        c.packets_in += inbound.pieces
        c.bytes_in += inbound.wire_bytes if inbound.wire_bytes >= 0 else len(data)
        try:
            if kind == _AUTHENTICATED:
                return self._receive_authenticated(inbound, now)
            path = rt.path_probe(inbound.local, inbound.remote)
            path.last_in = now
            self._decode_whole(_as_bytearray(data), path, now)
        except DecodeError:
            c.drop(Drop.MALFORMED)
        except Exception:
            log.exception("internal error on a packet from %s", inbound.remote)
            c.drop(Drop.INTERNAL_ERROR)
        return True

    def transport_dropped(
        self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int
    ) -> None:
        """Datagrams the transport refused before the node saw them (the C receive guard),
        counted as if they had been dropped here; ``reasons`` are :class:`Drop` values."""
        c = self.rt.counters
        c.packets_in += datagrams
        c.bytes_in += wire_bytes
        for reason, n in reasons.items():
            c.drop(Drop(reason), n)

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, local: Addr, remote: Addr, now: int
    ) -> None:
        """A plain datagram (the per-datagram path: no record built for it)."""
        rt = self.rt
        rt.now = now
        c = rt.counters
        c.packets_in += 1
        c.bytes_in += len(data)
        try:
            path = rt.path_probe(local, remote)
            path.last_in = now
            n = len(data)
            if n > 16 and data[13] == 0xFF:
                self._receive_fragment(data, path, now)
            elif n >= IDX_PAYLOAD:
                self._receive_head(data, path, now)
            elif n == 13:
                self._receive_beacon(data, path, now)
            else:
                c.drop(Drop.TOO_SHORT)
        except DecodeError:
            c.drop(Drop.MALFORMED)
        except Exception:
            log.exception("internal error on a datagram from %s", remote)
            c.drop(Drop.INTERNAL_ERROR)

    def _receive_authenticated(self, inbound: Inbound, now: int) -> bool:
        """A packet the transport authenticated and decrypted (or, cipher 2, admitted as from a
        trusted network; checked again here): accepted only with the sender's current key (no
        path is made for it before that); it stands for ``stands_for``
        packets in the counters."""
        packet = _as_bytearray(inbound.data)
        c = self.rt.counters
        src = inbound.src  # as the transport read it (C), else read here
        if src < 0:
            src = int.from_bytes(packet[13:18], "big")
        peer = self.rt.peers.get(src)
        if peer is None or peer.key is not inbound.key or len(packet) < IDX_PAYLOAD:
            c.drop(Drop.STALE_KEY)
            return False
        flags = packet[18]
        if (flags >> 3) & 7 == Cipher.NONE_TRUSTED_PATH and not self.rt.physical.inbound_trusted(
            inbound.remote[0], int.from_bytes(packet[19:27], "big")
        ):  # the transport judged with a table the node has replaced since
            c.drop(Drop.TRUSTED_PATH_REFUSED, inbound.stands_for)
            return True
        # The packet id, read once (by C, or here) for the replay check and the dispatch (the
        # verbs' answers cite it).
        pid = inbound.pid
        if pid < 0:
            pid = int.from_bytes(packet[0:8], "big")
        if not self._fresh(peer, inbound.packet_ids, pid, now):
            return True
        path = self.rt.path_for(inbound.local, inbound.remote)
        path.last_in = now
        more = inbound.stands_for - 1
        c.cipher_in_counts[(flags >> 3) & 7] += 1 + more
        if more:
            c.verb_in_counts[packet[27] & 0x1F] += more
        if packet[27] & 0x80:
            try:
                pk.decompress(packet)
            except DecodeError:
                c.drop(Drop.DECOMPRESS_FAILED)
                return True
        if inbound.checked:
            self.rt.rx_checked = True
            try:
                self._dispatch(peer, packet, path, flags & 7, now, pid, inbound.nwid)
            finally:
                self.rt.rx_checked = False
        else:
            self._dispatch(peer, packet, path, flags & 7, now, pid, inbound.nwid)
        return True

    def _fresh(self, peer: Peer, ids: tuple[int, ...], pid: int, now: int) -> bool:
        """Replay check of a C-authenticated input: its packet's id ``pid``, or every id of the
        packets the transport joined into it. A joined input is dropped only when all its
        packets are replays (a replay joins only onto other replays in practice: a replayed
        segment continues no fresh flow); each replay among them is counted."""
        window = peer.replay
        if not ids:
            if window.accept(pid, now):
                return True
            self.rt.counters.drop(Drop.REPLAYED)
            return False
        fresh = 0
        for one in ids:
            if window.accept(one, now):
                fresh += 1
            else:
                self.rt.counters.drop(Drop.REPLAYED)
        return fresh > 0

    def prune(self, now: int) -> None:
        """Forget beacon answers older than a minute (housekeeping)."""
        answered = self._beacon_answered
        for key in [key for key, t in answered.items() if now - t > 60_000]:
            del answered[key]

    def _receive_beacon(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        addr = int.from_bytes(data[8:13], "big")
        peer = self.rt.peers.get(addr)
        if peer is None or addr == self.rt.address:
            return
        if now - self._beacon_answered.get(addr, -(10**12)) < BEACON_REPLY_INTERVAL:
            return
        self._beacon_answered[addr] = now
        self.send_on(peer, path, Verb.NOP, b"", now, expect=False)

    def _receive_fragment(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        dest = int.from_bytes(data[8:13], "big")
        if dest != self.rt.address:
            self.rt.relay.relay(bytearray(data), dest, None, path, now, fragment=True)
            return
        whole = self._reassemble(data, now, head=False)
        if whole is not None:
            self._decode_whole(bytearray(whole), path, now)

    def _reassemble(
        self, data: bytes | bytearray | memoryview, now: int, *, head: bool
    ) -> bytearray | None:
        """Feed the reassembler; a piece it rejects as malformed is counted as a drop here too."""
        r = self.rt.reassembler
        drops = r.drops
        before = len(drops) and _bad_fragments(drops)
        whole = r.add_head(bytes(data), now) if head else r.add_fragment(bytes(data), now)
        if len(drops) and _bad_fragments(drops) != before:
            self.rt.counters.drop(Drop.BAD_FRAGMENT)
        return whole

    def _receive_head(self, data: bytes | bytearray | memoryview, path: Path, now: int) -> None:
        dest = int.from_bytes(data[8:13], "big")
        src = int.from_bytes(data[13:18], "big")
        if src == self.rt.address:
            self.rt.counters.drop(Drop.FROM_SELF)
            return
        if dest != self.rt.address:
            self.rt.relay.relay(bytearray(data), dest, src, path, now, fragment=False)
            return
        if data[18] & FLAG_FRAGMENTED:
            whole = self._reassemble(data, now, head=True)
            if whole is None:
                return
            self._decode_whole(bytearray(whole), path, now)
        else:
            # The common case: source and destination are already checked above.
            self.process_packet(bytearray(data), path, now)

    def _decode_whole(self, buf: bytearray, path: Path, now: int) -> None:
        if len(buf) < IDX_PAYLOAD:
            self.rt.counters.drop(Drop.TOO_SHORT)
            return
        src = int.from_bytes(buf[13:18], "big")
        if src == self.rt.address:
            self.rt.counters.drop(Drop.FROM_SELF)
            return
        self.process_packet(buf, path, now)

    def process_packet(self, buf: bytearray, path: Path, now: int) -> None:
        """tryDecode (protocol-core.md 8): authenticate, decompress, dispatch."""
        src = int.from_bytes(buf[13:18], "big")
        flags = buf[18]
        cipher = (flags >> 3) & 7
        hops = flags & 7
        if cipher == Cipher.POLY1305_NONE and (buf[27] & 0x1F) == Verb.HELLO:
            self.rt.vl1.do_hello(buf, path, hops, now, authenticated=False)
            return
        if cipher > Cipher.AES_GMAC_SIV:
            self.rt.counters.drop(Drop.BAD_CIPHER)
            return
        if cipher == Cipher.NONE_TRUSTED_PATH:
            # No MAC: the configured physical network vouches for it (5.6), checked before
            # the sender is looked up, as the reference does.
            if not self.rt.physical.inbound_trusted(
                path.remote[0], int.from_bytes(buf[19:27], "big")
            ):
                self.rt.counters.drop(Drop.TRUSTED_PATH_REFUSED)
                return
            peer = self.rt.peers.get(src)
            if peer is None:
                self.rt.whois.park(src, buf, path, now)
                return
        else:
            peer = self.rt.peers.get(src)
            if peer is None:
                self.rt.whois.park(src, buf, path, now)
                return
            if not pk.dearmor(buf, peer.key):
                self.rt.counters.drop(Drop.MAC_FAILED)
                return
        pid = int.from_bytes(buf[0:8], "big")
        if not peer.replay.accept(pid, now):
            self.rt.counters.drop(Drop.REPLAYED)
            return
        self.rt.counters.cipher_in_counts[cipher & 7] += 1
        if buf[27] & 0x80:
            try:
                pk.decompress(buf)
            except DecodeError:
                self.rt.counters.drop(Drop.DECOMPRESS_FAILED)
                return
        self._dispatch(peer, buf, path, hops, now, pid)

    def install_handlers(self) -> None:
        """The verb table; built once every part exists. FRAME is not in it: it takes the fast
        path in :meth:`_dispatch`."""
        rt = self.rt
        vl1, vl2, mc = rt.vl1, rt.vl2, rt.multicaster
        self.handlers = {
            Verb.NOP: vl1.do_nop,
            Verb.HELLO: vl1.do_hello_authenticated,
            Verb.ERROR: vl1.do_error,
            Verb.OK: vl1.do_ok,
            Verb.WHOIS: vl1.do_whois,
            Verb.RENDEZVOUS: vl1.do_rendezvous,
            Verb.ECHO: vl1.do_echo,
            Verb.PUSH_DIRECT_PATHS: vl1.do_push_direct_paths,
            Verb.USER_MESSAGE: vl1.do_user_message,
            Verb.REMOTE_TRACE: vl1.do_remote_trace,
            Verb.EXT_FRAME: rt.frames.do_ext_frame,
            Verb.NETWORK_CONFIG_REQUEST: rt.controller_link.do_config_request,
            Verb.NETWORK_CONFIG: vl2.do_network_config,
            Verb.NETWORK_CREDENTIALS: rt.credentials.do_credentials,
            Verb.MULTICAST_LIKE: mc.do_multicast_like,
            Verb.MULTICAST_GATHER: mc.do_multicast_gather,
            Verb.MULTICAST_FRAME: mc.do_multicast_frame,
            # Bonding verbs: MAC checked, then dropped without refreshing the peer, as a
            # non-bonding reference node does (protocol-multipath.md 1).
            Verb.ACK: rt.bonds.do_ack,
            Verb.QOS_MEASUREMENT: rt.bonds.do_qos,
            Verb.PATH_NEGOTIATION_REQUEST: self._no_bond,
        }

    def _no_bond(self, rx: Rx) -> None:
        self.rt.counters.drop(Drop.NO_BOND)

    def _dispatch(
        self,
        peer: Peer,
        buf: bytearray,
        path: Path,
        hops: int,
        now: int,
        pid: int,
        frame_nwid: int = -1,
    ) -> None:
        """Every authenticated packet, decompressed, ends here (``pid``: its packet id): FRAME
        on its fast path, other verbs through the table; unknown verbs (and VL2 traffic for
        networks we have not joined) only refresh the peer, like the reference.
        ``frame_nwid``: a FRAME's network id when the transport read it (else -1)."""
        if not path.kept:  # the first authenticated packet on this address: keep the path
            path = self.rt.adopt_path(path)
        observer = self.dispatch_observer
        if observer is not None:
            observer(peer, buf, path)
        verb = buf[27] & 0x1F
        self.rt.counters.verb_in_counts[verb] += 1
        bonds = self.rt.bonds.bonds
        if bonds and hops == 0:
            bond = bonds.get(peer.address)
            if bond is not None:
                flow = _frame_flow(buf, verb) if bond.policy in BALANCING else NO_FLOW
                bond.record_in(path, pid, verb, len(buf), flow, now)
        tr = self.rt.tracer  # the packet at hand, for trace records (restored: WHOIS nests)
        outer_pid, outer_path, outer_verb = tr.rx_pid, tr.rx_path, tr.rx_verb
        tr.rx_pid, tr.rx_path, tr.rx_verb = pid, path, verb
        try:
            if verb == Verb.FRAME:
                # Decoded by hand (what Frame.decode does, minus the objects): every data
                # packet of every network takes this branch.
                if len(buf) < IDX_PAYLOAD + 10:
                    raise DecodeError("FRAME shorter than its network id and ethertype")
                if frame_nwid < 0:
                    frame_nwid = int.from_bytes(buf[IDX_PAYLOAD : IDX_PAYLOAD + 8], "big")
                self.rt.frames.do_plain_frame(
                    peer,
                    frame_nwid,
                    (buf[IDX_PAYLOAD + 8] << 8) | buf[IDX_PAYLOAD + 9],
                    bytes(buf[IDX_PAYLOAD + 10 :]),
                    path,
                    pid,
                    hops,
                    now,
                )
                return
            # tuple.__new__ skips the NamedTuple's Python-level __new__ (a third of a
            # microsecond on every non-FRAME packet).
            rx = _new_rx(Rx, (peer, buf, memoryview(buf)[IDX_PAYLOAD:], path, pid, hops, verb, now))
            self.handlers.get(verb, self.rt.vl1.do_nop)(rx)
        except DecodeError:
            self.rt.counters.drop(Drop.MALFORMED)
        finally:
            tr.rx_pid, tr.rx_path, tr.rx_verb = outer_pid, outer_path, outer_verb

    def check_dest(self, dest: int) -> None:
        if dest == self.rt.address:
            raise LocalProtocolError("cannot send a ZeroTier packet to ourselves")
        if not 0 < dest < 2**40 or dest >> 32 == 0xFF:
            raise LocalProtocolError(f"{dest:#x} is not a valid ZeroTier address")

    def cipher_for(self, peer: Peer) -> Cipher:
        return Cipher.AES_GMAC_SIV if peer.supports_aes() else Cipher.POLY1305_SALSA2012

    def send(
        self,
        dest: int,
        verb: int,
        payload: bytes,
        now: int,
        *,
        compress: bool = False,
        echo_request: int | None = None,
        flow: int = NO_FLOW,
    ) -> None:
        """Switch::send: to the best path, else via an upstream, else queue and WHOIS.
        ``flow`` (see :func:`~ztnode.core.bond.flow_id`) lets a bond keep flows on a path."""
        peer = self.rt.peers.get(dest)
        path = self.route(peer, now, flow) if peer is not None else None
        if peer is None or path is None:
            self.rt.whois.queue_tx(
                dest, verb, payload, now, compress, echo_request, ask=peer is None
            )
            return
        self.send_on(
            peer,
            path,
            verb,
            payload,
            now,
            compress=compress,
            echo_request=echo_request,
            flow=flow,
            trusted=True,
        )

    def route(self, peer: Peer, now: int, flow: int = NO_FLOW, count: int = 1) -> Path | None:
        """The path for a packet (``count`` packets) to ``peer``: its bond's choice when it
        has one, else the best direct path, else an upstream to relay."""
        bonds = self.rt.bonds.bonds
        if bonds and peer.address in bonds:
            chosen = self.rt.bonds.route(peer, now, flow, count)
            if chosen is not None:
                return chosen
        path = peer.best_path(now)
        if path is not None:
            return path
        self.reconfirm(peer, now)
        if self.rt.path_policy.peers:
            self.rt.try_memorized_path(peer, now)
        up = self.best_upstream(now, exclude=peer.address)
        if up is not None:
            up_path = up.best_path(now)
            if up_path is not None:
                return up_path
        return peer.best_path(now, include_expired=True)

    def send_on(
        self,
        peer: Peer,
        path: Path,
        verb: int,
        payload: bytes,
        now: int,
        *,
        compress: bool = False,
        echo_request: int | None = None,
        cipher: Cipher | None = None,
        expect: bool = True,
        flow: int = NO_FLOW,
        trusted: bool = False,
    ) -> int:
        """Build, armor and send one packet on ``path``; returns its wire packet ID.

        Requests are registered so their OK is accepted (``expect``); replies sent straight back
        on the receiving path (Path::send in the reference) pass ``expect=False``.

        ``trusted``: the packet takes the reference's Switch::send route, so on a path into a
        configured trusted network it goes out as cipher 2 with the network's ID, unencrypted
        and without a MAC (``_sendViaSpecificPath``). What the reference armors and puts on a
        path itself (HELLO and ECHO probes, OK and ERROR replies, RENDEZVOUS, PUSH_DIRECT_PATHS,
        bond traffic) passes False and keeps its crypto. Unlike the reference, a trusted
        request's reply is still expected: it is authenticated either way, and the reference
        would drop the OK to its own NETWORK_CONFIG_REQUEST or WHOIS sent this way.
        """
        buf = pk.new_packet(self.rt.random_bytes(8), peer.address, self.rt.address, verb, payload)
        if compress:
            pk.compress(buf)
        bond = self.rt.bonds.bonds.get(peer.address) if self.rt.bonds.bonds else None
        targets = [path]
        if bond is not None and bond.policy == BondPolicy.BROADCAST and verb in _FRAMES:
            targets = bond.broadcast_paths() or targets  # the same packet on every live path
        # One MTU for all copies: the fragmented flag is under the MAC, so it must hold on
        # every path the packet takes.
        mtu = min(map(self.path_mtu, targets))
        if len(buf) > mtu:
            buf[18] |= FLAG_FRAGMENTED
        tpid = self.trusted_path_id(path) if trusted else 0
        if tpid and len(targets) == 1:  # a broadcast bond's one packet for all paths: armored
            pk.armor_trusted(buf, tpid)
            self.rt.counters.cipher_out_counts[Cipher.NONE_TRUSTED_PATH] += 1
        else:
            suite = cipher if cipher is not None else self.cipher_for(peer)
            pk.armor(buf, peer.key, suite)
            self.rt.counters.cipher_out_counts[suite & 7] += 1
        pid = int.from_bytes(buf[0:8], "big")
        if expect:
            self.rt.expected.expect(pid)
        if echo_request is not None:
            self.rt.vl1.expect_echo(pid, peer.address, now, echo_request)
        if bond is None:
            self.emit(path, buf, now, mtu)
            return pid
        for target in targets:
            bond.record_out(target, pid, verb, len(buf), flow, now)
            self.emit(target, buf, now, mtu)
        return pid

    def path_mtu(self, path: Path) -> int:
        """The physical MTU on ``path``: a bond link's own, else the configured physical
        network's (getOutboundPathInfo), else the node's."""
        if path.mtu:
            return path.mtu
        entry = self.rt.physical.outbound(path.remote[0])
        return entry.mtu if entry is not None else self.rt.mtu

    def emit(self, path: Path, buf: bytes | bytearray, now: int, mtu: int = 0) -> None:
        """Queue one armored packet on ``path``, in fragments above ``mtu`` (default:
        :meth:`path_mtu`; it must agree with the packet's fragmented flag)."""
        mtu = mtu or self.path_mtu(path)
        if len(buf) > mtu:
            for chunk in split(buf, mtu):
                self.rt.out.append(_new_out(Outgoing, (path.local, path.remote, chunk, 0)))
        else:
            self.rt.out.append(_new_out(Outgoing, (path.local, path.remote, bytes(buf), 0)))
        self.rt.counters.packets_out += 1
        self.rt.counters.bytes_out += len(buf)
        path.last_out = now

    def emit_datagrams(
        self, local: Addr, remote: Addr, datagrams: list[bytes], packets: int, now: int
    ) -> None:
        """Queue datagrams made outside the core (a :class:`FrameRoute` cut); ``packets`` is how
        many packets they carry. Like :meth:`emit`, they count as the path's last send, so a
        path busy with data needs no heartbeat (Path::send's ``_lastOut``)."""
        out = self.rt.out
        size = 0
        for d in datagrams:
            out.append(_new_out(Outgoing, (local, remote, d, 0)))
            size += len(d)
        c = self.rt.counters
        c.packets_out += packets
        c.bytes_out += size
        path = self.rt.known_path(local, remote)
        if path is not None:
            path.last_out = now

    def send_hello(self, peer: Peer, path: Path | None, now: int) -> None:
        """A full HELLO: cipher 0 (MAC only) with the moon list under cryptField (10.2)."""
        moons = [
            MoonRef(WorldType.MOON, m.id, m.timestamp) for m in self.rt.topology.moons.values()
        ]
        moons += [
            MoonRef(WorldType.MOON, wid, 0)
            for wid in self.rt.topology.seeds
            if wid not in self.rt.topology.moons
        ]
        planet = self.rt.topology.planet
        hello = Hello(
            PROTO_VERSION,
            SOFTWARE_MAJOR,
            SOFTWARE_MINOR,
            SOFTWARE_REVISION,
            now,
            self.rt.identity.public(),
            path.inet if path is not None else None,
            planet.id,
            planet.timestamp,
            tuple(moons),
        )
        payload, tail = hello.encode_with_tail_offset()
        buf = pk.new_packet(
            self.rt.random_bytes(8), peer.address, self.rt.address, Verb.HELLO, payload
        )
        if tail is not None:
            start = IDX_PAYLOAD + tail
            pk.crypt_field(buf, peer.key, start, len(buf) - start)
        pk.armor(buf, peer.key, Cipher.POLY1305_NONE)
        self.rt.counters.cipher_out_counts[Cipher.POLY1305_NONE] += 1
        self.rt.expected.expect(int.from_bytes(buf[0:8], "big"))
        peer.last_sent_full_hello = now
        if path is None:
            path = self.route(peer, now)
            if path is None:
                return
        self.emit(path, buf, now)

    def confirm_path(self, peer: Peer, path: Path, now: int) -> None:
        """A HELLO whose OK will teach us (and the peer) this path; at most once a second."""
        if now - path.last_hello_sent >= PATH_HELLO_INTERVAL:
            path.last_hello_sent = now
            self.send_hello(peer, path, now)

    def reconfirm(self, peer: Peer, now: int) -> Path | None:
        """Probe the peer's last unconfirmed direct address; return it if fresh enough to use.

        Sending a HELLO there is always safe (it is authenticated and its OK is what teaches a
        path), so it is tried for as long as a path could live; forwarding data there directly
        is done only while the address carried authenticated traffic within the heartbeat.
        """
        p = peer.unconfirmed
        if p is None or now - peer.unconfirmed_at >= PEER_PATH_EXPIRATION:
            return None
        self.confirm_path(peer, p, now)
        if p.alive(now) and now - peer.unconfirmed_at < PATH_HEARTBEAT:
            return p
        return None

    def trusted_path_id(self, path: Path) -> int:
        """The trusted-path id of packets that Switch::send routes over ``path`` (cipher 2),
        or 0: the one decision both send paths (``send_on``, ``FramePath.frame_route``) share."""
        return self.rt.physical.outbound_trust(path.remote[0])

    def contact(self, peer: Peer, path: Path, now: int, *, full_hello: bool) -> None:
        """attemptToContactAt: an empty ECHO if the peer takes it, else a HELLO (9.2)."""
        if full_hello or not peer.wants_echo_keepalive():
            self.send_hello(peer, path, now)
        else:
            self.send_on(peer, path, Verb.ECHO, b"", now)

    def best_upstream(self, now: int, exclude: int | None = None) -> Peer | None:
        best: Peer | None = None
        best_q = 0
        for a in self.rt.topology.upstreams:
            if a == exclude:
                continue
            p = self.rt.peers.get(a)
            if p is None or p.best_path(now) is None:
                continue
            q = p.relay_quality(now)
            if best is None or q < best_q:
                best, best_q = p, q
        return best
