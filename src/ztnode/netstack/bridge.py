"""A bridge port: an Ethernet segment (a TAP device, a VM's NIC, a container) attached to a
ZeroTier network through this node, as ZeroTierOne's bridging does through the OS.

Why here, sans-I/O: the port decides per frame where it goes, between three places that only
the host knows together: the segment, this node's own IP stack on the network, and the
overlay. Like a learning switch with three ports:

* a frame from the segment teaches which MACs are on the segment; for our own MAC it goes to
  our stack; a multicast goes to our stack and to the network; a unicast to a MAC on the
  segment stays there (the segment delivered it); anything else goes to the network
  (``Node.send_bridged_frame``: EXT_FRAME or MULTICAST_FRAME with its source MAC, which the
  network's controller must allow by marking this member an active bridge);
* a frame from the network for our MAC is our stack's alone; every other one (multicasts,
  MACs on the segment, MACs nobody knows) goes to the segment;
* a frame our stack sends to a MAC on the segment goes straight there, and its multicasts go
  to the segment as well as to the network.

The segment's MAC table is bounded and aged (:class:`~ztnode.core.bridges.BridgeRoutes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ztnode.core.bridges import BridgeRoutes
from ztnode.errors import LocalProtocolError
from ztnode.wire.mac import first_octet_for_network

if TYPE_CHECKING:
    from ztnode.core.node import Node
    from ztnode.netstack.stack import IpStack

log = logging.getLogger("ztnode.netstack")

__all__ = ["BridgePort", "FrameOutput", "ethernet", "parse_ethernet"]

#: Where a port's frames to the segment go: one whole Ethernet frame (no FCS).
FrameOutput = Callable[[bytes], None]

_LOCAL = 0  # the owner recorded for MACs on the segment
_MIN_FRAME = 14
#: Segment MACs warned about at most (see BridgePort._looks_like_a_member).
_WARNED_MAX = 64


def ethernet(dst: int, src: int, ethertype: int, payload: bytes) -> bytes:
    return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + ethertype.to_bytes(2, "big") + payload


def parse_ethernet(frame: bytes) -> tuple[int, int, int, bytes] | None:
    """``(dst, src, ethertype, payload)``; None for a runt."""
    if len(frame) < _MIN_FRAME:
        return None
    return (
        int.from_bytes(frame[0:6], "big"),
        int.from_bytes(frame[6:12], "big"),
        int.from_bytes(frame[12:14], "big"),
        bytes(frame[14:]),
    )


def _multicast(mac: int) -> bool:
    return bool(mac >> 40 & 0x01)


class BridgePort:
    """One segment on one network (module docstring)."""

    def __init__(
        self, node: Node, network_id: int, output: FrameOutput, *, max_macs: int = 4096
    ) -> None:
        self.node = node
        self.network_id = network_id
        self.output = output
        self.segment = BridgeRoutes(max_macs)
        self.counters = {"from_segment": 0, "to_segment": 0, "dropped": 0, "refused": 0}
        self._member_octet = first_octet_for_network(network_id)
        self._warned: set[int] = set()

    def _looks_like_a_member(self, src: int) -> None:
        """A host on the segment whose MAC starts with this network's member octet: every
        member (ours and ZeroTierOne alike) takes frames to it for a member's and sends them
        as FRAMEs to the address the MAC spells, so it can hear but not be reached. Random
        locally administered MACs (TAP devices, VMs) hit this one time in 64; say so once per
        MAC instead of leaving a silent black hole."""
        if src in self._warned or len(self._warned) >= _WARNED_MAX:
            return
        self._warned.add(src)
        log.warning(
            "network %016x: bridged host %012x has a MAC that reads as a ZeroTier member's "
            "(first octet %02x); members cannot reach it. Give it another MAC (a globally "
            "administered one never collides)",
            self.network_id,
            src,
            self._member_octet,
        )

    def _our_mac(self) -> int | None:
        net = self.node.network(self.network_id)
        return net.mac if net is not None else None

    def from_segment(self, frame: bytes, stack: IpStack | None, now: int) -> None:
        """A frame the segment sent."""
        parsed = parse_ethernet(frame)
        ours = self._our_mac()
        if parsed is None or ours is None:
            self.counters["dropped"] += 1
            return
        dst, src, ethertype, payload = parsed
        if src == 0 or _multicast(src) or src == ours:
            self.counters["dropped"] += 1  # no source, or our own MAC looping back
            return
        self.counters["from_segment"] += 1
        if src >> 40 == self._member_octet:
            self._looks_like_a_member(src)
        self.segment.learn(src, _LOCAL, now)
        if dst == ours or _multicast(dst):
            if stack is not None:
                stack.receive_frame(src, dst, ethertype, payload, now)
            if dst == ours:
                return
        elif self.segment.lookup(dst, now) is not None:
            return  # between two hosts of the segment: it is already there
        try:
            sent = self.node.send_bridged_frame(self.network_id, src, dst, ethertype, payload, now)
        except LocalProtocolError:  # no longer an active bridge (the controller changed it)
            sent = False
        if not sent:
            self.counters["refused"] += 1

    def from_network(self, source_mac: int, dest_mac: int, ethertype: int, payload: bytes) -> None:
        """A frame the node received on the network (our stack has it too when it is ours)."""
        if dest_mac == self._our_mac():
            return
        self.counters["to_segment"] += 1
        self.output(ethernet(dest_mac, source_mac, ethertype, payload))

    def from_stack(self, dest_mac: int, ethertype: int, payload: bytes, now: int) -> bool:
        """A frame our stack sends: to the segment when it belongs there. True when that was
        all (a MAC on the segment); False when it must also go to the network."""
        ours = self._our_mac()
        if ours is None:
            return False
        if _multicast(dest_mac):
            self.counters["to_segment"] += 1
            self.output(ethernet(dest_mac, ours, ethertype, payload))
            return False
        if self.segment.lookup(dest_mac, now) is not None:
            self.counters["to_segment"] += 1
            self.output(ethernet(dest_mac, ours, ethertype, payload))
            return True
        return False
