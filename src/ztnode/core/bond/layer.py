"""The node's bonding layer: which peers have bonds, and the bonds' periodic work.

Bonds are formed as ZeroTierOne 1.14.1 forms them (``Peer::doPingAndKeepalive`` and
``Bond::createBond``): when the layer is in use (a default or custom policy in ``local.conf``),
for every leaf peer with a live direct path, with the peer-specific policy or the default; the
remote's version is not consulted. Roots never get one. A bond ends when its peer does or when
it has no path left. ztnode also forms one as soon as a path is learned, not only at the next
5 s keepalive, so a second link joins the bond at once.

Sans-I/O like the rest of the core: :meth:`BondLayer.tick` (every :data:`BOND_TICK` ms while
there are bonds) sends heartbeats and QoS reports through the switch and queues events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ztnode.core import events as ev
from ztnode.core.bond.bond import Bond, LinkChange, clamp_mtu
from ztnode.core.bond.flows import NO_FLOW
from ztnode.core.bond.settings import BondingSettings
from ztnode.core.counters import Drop
from ztnode.core.path import Path
from ztnode.core.peer import PEER_PATH_EXPIRATION, Peer
from ztnode.core.records import Addr
from ztnode.errors import DecodeError
from ztnode.wire.buffer import Writer
from ztnode.wire.constants import Cipher, Verb
from ztnode.wire.verbs.multipath import Ack, QosMeasurement

if TYPE_CHECKING:
    from ztnode.core.node import Node
    from ztnode.core.records import FrameRoute, Rx

BOND_TICK: Final = 50  # ms; the reference's minimum is 60 (ZT_CORE_TIMER_TASK_GRANULARITY)


class BondLayer:
    """See the module docstring. ``bonds`` is read on every packet: keep it a plain dict."""

    def __init__(self, rt: Node) -> None:
        self.rt = rt
        self.settings = BondingSettings()
        self.bonds: dict[int, Bond] = {}
        #: Interface name of each local socket address (the Binder's knowledge).
        self.link_names: dict[Addr, str] = {}
        self._last_tick = 0

    # ------------------------------------------------------------------ configuration

    @property
    def in_use(self) -> bool:
        return self.settings.in_use

    def configure(self, settings: BondingSettings, now: int) -> None:
        """New settings: bonds are rebuilt from the peers' current paths."""
        self.settings = settings
        self.bonds.clear()
        if settings.in_use:
            for peer in list(self.rt.peers.values()):
                self.consider(peer, now)

    def link_of(self, path: Path) -> str:
        return self.link_names.get(path.local, "")

    # ------------------------------------------------------------------ membership

    def consider(self, peer: Peer, now: int) -> Bond | None:
        """Form a bond with ``peer`` if the settings say so and it has a live path."""
        bond = self.bonds.get(peer.address)
        if bond is not None or not self.settings.in_use:
            return bond
        if self.rt.topology.is_upstream(peer.address):
            return None  # roots: the reference forces policy none, which never bonds
        template = self.settings.template_for(peer.address)
        if template is None:
            return None
        live = [s.path for s in peer.paths if now - s.lr < PEER_PATH_EXPIRATION]
        if not live:
            return None
        bond = Bond(peer.address, template, now, self.rt.rng, self.link_of)
        self.bonds[peer.address] = bond
        for path in live:
            bond.nominate(path, now)
        return bond

    def path_learned(self, peer: Peer, path: Path, now: int) -> None:
        bond = self.bonds.get(peer.address)
        if bond is None:
            self.consider(peer, now)
        else:
            bond.nominate(path, now)

    def path_removed(self, address: int, path: Path) -> None:
        bond = self.bonds.get(address)
        if bond is not None:
            bond.remove(path)

    def peer_removed(self, address: int) -> None:
        self.bonds.pop(address, None)

    # ------------------------------------------------------------------ packets

    def route(self, peer: Peer, now: int, flow: int = NO_FLOW, count: int = 1) -> Path | None:
        bond = self.bonds.get(peer.address)
        if bond is None or not bond.ready:
            return None
        return bond.select(now, flow, count)

    def record_routed(self, route: FrameRoute, datagrams: list[bytes], now: int) -> None:
        """FRAMEs cut outside the core (segmentation offload): counted and QoS-sampled by
        the bond like the ones sent here (packet ids are the datagrams' first 8 bytes)."""
        bond = self.bonds.get(int.from_bytes(route.header[8:13], "big"))
        path = self.rt.paths.get((route.local, route.remote))
        if bond is None or path is None:
            return
        for d in datagrams:
            if len(d) > 13 and d[13] != 0xFF:  # a packet's head, not a later fragment
                bond.record_out(path, int.from_bytes(d[0:8], "big"), Verb.FRAME, len(d), -1, now)

    def do_qos(self, rx: Rx) -> None:
        """QOS_MEASUREMENT: processed by a bond (behind its rate gate), else dropped."""
        bond = self.bonds.get(rx.peer.address)
        if bond is None or not bond.qos_allowed(rx.now):
            self.rt.counters.drop(Drop.NO_BOND if bond is None else Drop.RATE_LIMITED)
            return
        try:
            qos = QosMeasurement.decode(rx.payload)
        except DecodeError:
            self.rt.counters.drop(Drop.MALFORMED)
            return
        bond.qos_received(rx.path, qos.records, rx.now)

    def do_ack(self, rx: Rx) -> None:
        """ACK: bytes the peer received on this path since its last ACK, our throughput on
        the path (ZeroTierOne 1.14.1 neither sends nor reads it; ztnode sends it every
        qosSendInterval to bonded peers, and a reference node counts and ignores it)."""
        bond = self.bonds.get(rx.peer.address)
        if bond is None or not bond.qos_allowed(rx.now):
            self.rt.counters.drop(Drop.NO_BOND if bond is None else Drop.RATE_LIMITED)
            return
        try:
            ack = Ack.decode(rx.payload)
        except DecodeError:
            self.rt.counters.drop(Drop.MALFORMED)
            return
        bond.ack_received(rx.path, ack.bytes_received, rx.now)

    def set_mtu(self, mtu: int, ifname: str, remote_ip: str) -> bool:
        """``bond setmtu``: the MTU of every bonded path on interface ``ifname`` to the remote
        address ``remote_ip``; False when no bond has such a path (setAllMtuByTuple)."""
        found = False
        for bond in self.bonds.values():
            for bp in bond.paths:
                if bp.link.name == ifname and bp.path.remote[0] == remote_ip:
                    bp.path.mtu = clamp_mtu(mtu)
                    found = True
        return found

    def rotate(self, address: int, now: int) -> bool:
        """Move an active-backup bond to its next path (announced like a failover)."""
        bond = self.bonds.get(address)
        change = bond.rotate(now) if bond is not None else None
        if change is None:
            return False
        self._announce(address, change)
        return True

    def echo_answered(self, peer: Peer, path: Path, in_re_id: int, now: int) -> bool:
        bond = self.bonds.get(peer.address)
        return bond is not None and bond.probe_answered(path, in_re_id, now)

    # ------------------------------------------------------------------ periodic work

    def next_deadline(self) -> int | None:
        return self._last_tick + BOND_TICK if self.bonds else None

    def tick(self, now: int) -> None:
        if now - self._last_tick < BOND_TICK:
            return
        self._last_tick = now
        for address, bond in list(self.bonds.items()):
            peer = self.rt.peers.get(address)
            if peer is None:
                del self.bonds[address]
                continue
            bond.legacy_echo = peer.protocol > 0 and peer.version[1:3] < (1, 10)
            work = bond.tick(now)
            for bp in work.probes:
                if peer.wants_echo_keepalive():
                    pid = self.rt.switch.send_on(peer, bp.path, Verb.ECHO, b"", now)
                    bp.probe_sent(pid, now)
            for bp, records in work.reports:
                body = Writer()
                QosMeasurement(tuple(records)).write(body)
                self.rt.switch.send_on(
                    peer,
                    bp.path,
                    Verb.QOS_MEASUREMENT,
                    bytes(body.buf),
                    now,
                    cipher=Cipher.POLY1305_NONE,
                    expect=False,
                )
            for bp, acked in work.acks:
                self.rt.switch.send_on(
                    peer,
                    bp.path,
                    Verb.ACK,
                    acked.to_bytes(4, "big"),
                    now,
                    cipher=Cipher.POLY1305_NONE,
                    expect=False,
                )
            for change in work.changes:
                self._announce(address, change)
            if not bond.paths:
                del self.bonds[address]

    def _announce(self, address: int, change: LinkChange) -> None:
        p = change.path
        if change.kind == "active":
            prev = change.previous
            self.rt.events.append(
                ev.BondActiveChanged(
                    address,
                    p.local,
                    p.remote,
                    prev.local if prev is not None else None,
                    prev.remote if prev is not None else None,
                )
            )
        else:
            self.rt.events.append(
                ev.BondLinkChanged(address, p.local, p.remote, change.kind == "up", change.reason)
            )
