"""Segmentation offload (send) and burst receive with coalescing (receive), against Python.

The oracles are the Python paths these C paths stand in for:

* send: :meth:`TcpBurst.packets` (checked here against the IP and TCP codecs) made into FRAME
  packets, armored by the Python armor and cut by ``fragment.split`` must give exactly the
  datagrams ``accel.tcp_pieces`` gives;
* receive: every datagram a burst reads must reach the sink either unchanged (DATAGRAM), or
  as the packet the Python reassembler and dearmor would have produced (WHOLE / PLAIN), or as
  a coalesced TCP segment whose payload is the concatenation of its parts with valid checksums.

Datagrams go to loopback sockets this test binds. Without the accelerator (or recvmmsg) the
tests skip, except under ``ZTNODE_REQUIRE_ACCEL=1`` (CI), where they fail.
"""

from __future__ import annotations

import functools
import operator
import random
import socket
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.accel.conftest import need
from ztnode import accel
from ztnode.core.trusted import PhysicalPathConfig
from ztnode.crypto import SymmetricKey
from ztnode.netstack import tcp as tcb
from ztnode.netstack.checksum import ones_sum, pseudo_header_sum_v4, pseudo_header_sum_v6
from ztnode.netstack.ipv4 import IPv4Header
from ztnode.netstack.ipv6 import IPv6Header
from ztnode.netstack.tcpwire import TcpSegmentHeader
from ztnode.netstack.tso import TcpBurst
from ztnode.transport import burst
from ztnode.wire import packet as pk
from ztnode.wire.constants import MAX_PACKET_FRAGMENTS, Cipher, Verb
from ztnode.wire.fragment import Reassembler, fragment_count, split

ME = 0x0102030405
PEER = 0x0A0B0C0D0E
NWID = 0x0102030405ABCDEF
MTU = 1432
SRC4, DST4 = IPv4Address("10.1.0.1"), IPv4Address("10.1.0.2")
SRC6, DST6 = IPv6Address("fd00::1"), IPv6Address("fd00::2")
ACK, PSH, FIN = 0x10, 0x08, 0x01


@pytest.fixture
def key() -> SymmetricKey:
    return SymmetricKey(bytes(range(48)))


# ------------------------------------------------------------------------------ helpers


def tcp_header(
    v6: bool, seq: int, flags: int, *, ts: bool = True, sport: int = 40000, dport: int = 5001
) -> bytes:
    """IP + TCP headers of one segment, lengths and checksums left zero (a TcpBurst header)."""
    thl = 32 if ts else 20
    tcp = bytearray(struct.pack(">HHIIBBHHH", sport, dport, seq, 7, thl << 2, flags, 512, 0, 0))
    if ts:
        tcp += struct.pack(">III", 0x0101080A, 1234, 5678)
    if v6:
        ip = struct.pack(">IHBB16s16s", 0x60000000, 0, 6, 64, SRC6.packed, DST6.packed)
    else:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 6, 0, SRC4.packed, DST4.packed)
    return bytes(ip) + bytes(tcp)


def segment(v6: bool, seq: int, payload: bytes, flags: int = ACK, **kw: object) -> bytes:
    """One complete, checksummed IP packet (the reference cut of a one-piece burst)."""
    hdr = tcp_header(v6, seq, flags, **kw)  # type: ignore[arg-type]
    (one,) = TcpBurst(hdr, 99, payload, max(len(payload), 1), flags).packets()
    return one


def frame_packet(
    ip_packet: bytes, pid: int, *, v6: bool, src: int = PEER, dest: int = ME
) -> bytearray:
    body = NWID.to_bytes(8, "big") + (0x86DD if v6 else 0x0800).to_bytes(2, "big") + ip_packet
    return pk.new_packet(pid.to_bytes(8, "big"), dest, src, Verb.FRAME, body)


def armored(
    packet: bytearray, key: SymmetricKey, cipher: Cipher = Cipher.AES_GMAC_SIV
) -> list[bytes]:
    """The datagrams the Python path sends for a clear packet."""
    p = bytearray(packet)
    if len(p) > MTU:
        p[18] |= 0x40
    pk._armor_python(p, key, cipher)
    return split(p, MTU)


def parse_tcp(ip_packet: bytes) -> tuple[TcpSegmentHeader, bytes]:
    if ip_packet[0] >> 4 == 6:
        h6, body6 = IPv6Header.parse(ip_packet)
        return TcpSegmentHeader.parse(body6, h6.src, h6.dst)[0], bytes(
            TcpSegmentHeader.parse(body6, h6.src, h6.dst)[1]
        )
    h4, body4 = IPv4Header.parse(ip_packet)
    th, data = TcpSegmentHeader.parse(body4, h4.src, h4.dst)
    return th, bytes(data)


def tcp_checksum_ok(ip_packet: bytes) -> bool:
    if ip_packet[0] >> 4 == 6:
        tcp = ip_packet[40:]
        ps = pseudo_header_sum_v6(ip_packet[8:24], ip_packet[24:40], 6, len(tcp))
    else:
        tcp = ip_packet[20:]
        ps = pseudo_header_sum_v4(ip_packet[12:16], ip_packet[16:20], 6, len(tcp))
    return ones_sum(tcp, ps) == 0xFFFF


# ------------------------------------------------------------------------------ TcpBurst


@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 9000),
    size=st.integers(1, 1400),
    last=st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN, ACK | FIN]),
    seq=st.integers(0, 2**32 - 1),
)
@example(n=0, size=1388, last=ACK, seq=5)  # a bare ACK: one piece, the headers alone
@example(n=0, size=1388, last=ACK | FIN, seq=2**32 - 1)
@settings(max_examples=60, deadline=None)
def test_burst_cut_matches_the_codecs(v6: bool, n: int, size: int, last: int, seq: int) -> None:
    payload = random.Random(n * 7 + size).randbytes(n)
    b = TcpBurst(tcp_header(v6, seq, last), 0xFFF0, payload, size, last)
    pieces = b.packets()
    assert len(pieces) == max(-(-n // size), 1)
    got = b""
    for i, p in enumerate(pieces):
        th, data = parse_tcp(p)  # the codecs verify IP and TCP checksums
        assert th.seq == (seq + i * size) % 2**32
        is_last = i == len(pieces) - 1
        assert th.flags & 0x3F == (last if is_last else last & ~(PSH | FIN))
        assert th.timestamps == (1234, 5678)
        if not v6:
            assert IPv4Header.parse(p)[0].identification == (0xFFF0 + i) & 0xFFFF
        got += data
    assert got == payload


# ------------------------------------------------------------------------------ send (C cut)

TRUSTED_ID = 0x0123_4567_89AB_CDEF


@pytest.mark.parametrize(
    "cipher", [Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV, Cipher.NONE_TRUSTED_PATH]
)
@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 30000),
    size=st.sampled_from([1, 100, 1388, 1400, 2748, 2728]),
    last=st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN]),
    mtu=st.sampled_from([MTU, 576, 1500]),
)
@example(n=0, size=1388, last=ACK, mtu=MTU)  # bare ACKs and 1-byte segments take this cut too
@example(n=0, size=1388, last=ACK | PSH | FIN, mtu=576)
@example(n=1, size=1388, last=ACK | PSH, mtu=MTU)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_c_cut_equals_python_path(
    key: SymmetricKey, cipher: Cipher, v6: bool, n: int, size: int, last: int, mtu: int
) -> None:
    need(accel.AVAILABLE, accel.REASON)
    if (n + size - 1) // size > 64:
        n = size * 64
    payload = random.Random(n + size).randbytes(n)
    hdr = tcp_header(v6, 1000, last)
    b = TcpBurst(hdr, 7, payload, size, last)
    pieces = b.packets()
    pids = random.Random(n).randbytes(8 * len(pieces))
    header = pk.new_packet(bytes(8), ME, PEER, Verb.FRAME)
    if cipher == Cipher.NONE_TRUSTED_PATH:  # the route's header carries the path's id
        pk.armor_trusted(header, TRUSTED_ID)
    got = accel.tcp_pieces(
        key, cipher, header, pids, NWID, 0x86DD if v6 else 0x0800, hdr, 7, payload, size, last, mtu
    )
    assert got is not None
    want: list[bytes] = []
    for i, p in enumerate(pieces):
        body = NWID.to_bytes(8, "big") + (0x86DD if v6 else 0x0800).to_bytes(2, "big") + p
        clear = pk.new_packet(pids[8 * i : 8 * i + 8], ME, PEER, Verb.FRAME, body)
        if len(clear) > mtu:
            clear[18] |= 0x40
        if cipher == Cipher.NONE_TRUSTED_PATH:
            pk.armor_trusted(clear, TRUSTED_ID)  # what Switch.send_on does on a trusted path
        else:
            pk._armor_python(clear, key, cipher)
        want.extend(split(clear, mtu))
    assert got == want


@pytest.mark.parametrize(
    "cipher", [Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV, Cipher.NONE_TRUSTED_PATH]
)
@given(
    n=st.integers(0, 9000),
    ethertype=st.sampled_from([0x0800, 0x86DD, 0x0806, 0x1234]),
    mtu=st.sampled_from([MTU, 576, 1500, 64]),
    pid=st.binary(min_size=8, max_size=8),
)
@example(n=0, ethertype=0x0800, mtu=MTU, pid=bytes(8))
@example(n=MTU - 38, ethertype=0x0800, mtu=MTU, pid=bytes(8))  # exactly one datagram
@example(n=MTU - 37, ethertype=0x0800, mtu=MTU, pid=bytes(8))  # one byte over: two
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_c_frame_equals_switch_send_on(
    key: SymmetricKey, cipher: Cipher, n: int, ethertype: int, mtu: int, pid: bytes
) -> None:
    """A frame on a route, built and sealed in C, is what Switch.send_on makes of it: the
    packet with its ID, the fragmented flag when over the MTU, armor (or the trusted path's
    mark) and the fragments."""
    need(accel.AVAILABLE, accel.REASON)
    payload = random.Random(n).randbytes(n)
    header = pk.new_packet(bytes(8), ME, PEER, Verb.FRAME)
    if cipher == Cipher.NONE_TRUSTED_PATH:
        pk.armor_trusted(header, TRUSTED_ID)
    body = NWID.to_bytes(8, "big") + ethertype.to_bytes(2, "big") + payload
    clear = pk.new_packet(pid, ME, PEER, Verb.FRAME, body)
    want: list[bytes] | None = None
    if fragment_count(len(clear), mtu) <= MAX_PACKET_FRAGMENTS:
        if len(clear) > mtu:
            clear[18] |= 0x40
        if cipher == Cipher.NONE_TRUSTED_PATH:
            pk.armor_trusted(clear, TRUSTED_ID)
        else:
            pk._armor_python(clear, key, cipher)
        want = split(clear, mtu)
    got = accel.frame_datagrams(key, cipher, bytes(header), pid, NWID, ethertype, payload, mtu)
    assert got == want  # None when the packet needs more datagrams than the protocol allows


def test_small_cuts_reuse_one_buffer_and_hand_out_copies(key: SymmetricKey) -> None:
    """The cffi cuts (where the direct calls of ``_zt_fast`` are missing) write small segments
    and frames into one reused buffer: what a call returned stays what it was after later calls
    write that buffer again, and calls one after another do not grow the pool of spare buffers
    (it grows only with calls running at once)."""
    need(accel.AVAILABLE, accel.REASON)
    from ztnode.accel import _hot

    header = bytes(pk.new_packet(bytes(8), ME, PEER, Verb.FRAME))
    hdr = tcp_header(False, 1000, ACK | PSH)
    cut = _hot._tcp_pieces_cffi
    first = cut(key, 3, header, bytes(8), NWID, 0x0800, hdr, 7, b"a", 1388, 0x18, MTU)
    frame = _hot._frame_datagrams_cffi(key, 1, header, bytes(8), NWID, 0x0800, b"b" * 2000, 576)
    assert first is not None and frame is not None and len(frame) == 4
    kept = [bytes(d) for d in first + frame]
    pooled = len(_hot._spare)  # other threads of this process may have left one each
    for i in range(50):
        ids = bytes([i]) * 8
        again = cut(key, 3, header, ids, NWID, 0x0800, hdr, 7, b"z" * 600, 1388, 0x18, MTU)
        assert again is not None and again != first
        _hot._frame_datagrams_cffi(key, 1, header, ids, NWID, 0x0800, b"y" * 900, 576)
    assert first + frame == kept
    assert len(_hot._spare) == pooled >= 1


def test_c_frame_declines_what_it_does_not_take(key: SymmetricKey) -> None:
    need(accel.AVAILABLE, accel.REASON)
    header = bytes(pk.new_packet(bytes(8), ME, PEER, Verb.FRAME))
    args = (header, bytes(8), NWID, 0x0800, b"x" * 100, MTU)
    assert accel.frame_datagrams(key, Cipher.POLY1305_NONE, *args) is None  # cipher 0
    assert accel.frame_datagrams(key, Cipher.NONE_TRUSTED_PATH, *args) is None  # id 0
    assert accel.frame_datagrams(key, 3, header, bytes(8), NWID, 0x0800, b"x", 40) is None  # mtu
    big = b"x" * accel.MAX_PACKET
    assert accel.frame_datagrams(key, 3, header, bytes(8), NWID, 0x0800, big, MTU) is None


def test_c_cut_declines_what_it_does_not_take(key: SymmetricKey) -> None:
    need(accel.AVAILABLE, accel.REASON)
    hdr = tcp_header(False, 1, ACK)
    header = pk.new_packet(bytes(8), ME, PEER, Verb.FRAME)
    args = (header, bytes(80), NWID, 0x0800, hdr, 1, b"x" * 100, 10, ACK, MTU)
    assert accel.tcp_pieces(key, Cipher.POLY1305_NONE, *args) is None  # cipher 0
    assert accel.tcp_pieces(key, Cipher.NONE_TRUSTED_PATH, *args) is None  # cipher 2, id 0
    assert accel.tcp_pieces(key, Cipher.AES_GMAC_SIV, header, bytes(8), *args[2:]) is None  # ids
    bad = bytearray(hdr)
    bad[0] = 0x46  # IPv4 options: not a shape the C side builds
    assert (
        accel.tcp_pieces(key, 3, header, bytes(80), NWID, 0x0800, bytes(bad), 1, b"x", 1, ACK, MTU)
        is None
    )
    big = (header, bytes(8), NWID, 0x0800, hdr, 1, b"x" * 9999, 9999, ACK, MTU)
    assert accel.tcp_pieces(key, 3, *big) is None  # one piece larger than a packet


# ------------------------------------------------------------------------------ the TCB


def gso_conn(gso: int, nodelay: bool = False) -> tcb.TcpConnection:
    """An established connection (client side of the TCB harness) with offload ``gso``."""
    from tests.helpers.tcp_harness import Pair

    pair = Pair(
        a_config=tcb.TcpConfig(gso_segments=gso, nodelay=nodelay, send_buffer=1 << 20),
        b_config=tcb.TcpConfig(recv_buffer=1 << 20),
    )
    pair.handshake()
    return pair.a


def test_tcb_without_offload_sends_mss_segments() -> None:
    conn = gso_conn(1)
    conn.send(b"z" * 20000)
    segs = conn.segments_to_send(10_000)
    assert len(segs) > 1 and all(len(s.payload) <= conn.snd.mss for s in segs)


def test_tcb_offload_sends_whole_pieces_and_holds_a_short_tail() -> None:
    conn = gso_conn(16)
    mss = conn.snd.mss
    conn.send(b"z" * (3 * mss + 100))
    segs = conn.segments_to_send(10_000)
    assert [len(s.payload) for s in segs] == [3 * mss]  # Nagle holds the tail behind it
    assert not segs[0].flags & (FIN | PSH)


def test_tcb_offload_is_bounded_by_the_congestion_window() -> None:
    conn = gso_conn(64)
    mss = conn.snd.mss
    conn.send(b"z" * (100 * mss))
    segs = conn.segments_to_send(10_000)
    assert sum(len(s.payload) for s in segs) <= conn.cc.cwnd
    assert all(len(s.payload) % mss == 0 for s in segs)


def test_tcb_offload_with_nodelay_and_fin_sends_the_tail_in_the_burst() -> None:
    conn = gso_conn(16, nodelay=True)
    mss = conn.snd.mss
    conn.send(b"z" * (2 * mss + 100))
    conn.shutdown(10_000)
    segs = conn.segments_to_send(10_000)
    assert [len(s.payload) for s in segs] == [2 * mss + 100]
    assert segs[0].flags & FIN and segs[0].flags & PSH


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tcb_offload_transfer_over_a_lossy_link(seed: int) -> None:
    """Whole bursts lost, duplicated and reordered: the data still arrives intact."""
    from tests.helpers.tcp_harness import LinkParams, Pair, transfer

    pair = Pair(
        a_config=tcb.TcpConfig(gso_segments=16, send_buffer=1 << 20),
        b_config=tcb.TcpConfig(recv_buffer=1 << 20),
        link=LinkParams(loss=0.1, dup=0.05, delay_ms=10, jitter_ms=15),
        seed=seed,
    )
    pair.handshake()
    data = random.Random(seed).randbytes(2_000_000)
    assert transfer(pair, "a", data) == data
    assert any(len(s.payload) > pair.a.snd.mss for s in pair.segments("a>b"))


# ------------------------------------------------------------------------------ receive bursts


@dataclass
class Sink(burst.BurstSink):
    key: SymmetricKey | None
    networks: list[int] = field(default_factory=lambda: [NWID])
    datagrams: list[bytes] = field(default_factory=list)
    wholes: list[tuple[bytes, int]] = field(default_factory=list)
    plains: list[tuple[bytes, int, int]] = field(default_factory=list)
    #: Per PLAIN record: whether C vouched for its IP and TCP checksums (``checked``).
    checked: list[bool] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    accept_key: bool = True
    relay: bool = False
    clock: int = 10**9
    #: Packet ids the records stood for (the packet's own, or every joined one's).
    ids: list[int] = field(default_factory=list)
    #: Packet ids of what was sent (set by ``run_flow``).
    sent_ids: list[int] = field(default_factory=list)
    physical: PhysicalPathConfig = field(default_factory=PhysicalPathConfig)
    #: PLAIN records whose header fields (src, pid, nwid) were checked against the bytes.
    header_reads: int = 0

    def on_datagram(self, data: memoryview, remote: tuple[str, int]) -> None:
        assert remote[0] == "127.0.0.1"
        self.datagrams.append(bytes(data))

    def on_whole(self, packet: bytearray, remote: tuple[str, int], pieces: int, wire: int) -> None:
        self.wholes.append((bytes(packet), pieces))

    def on_plain(
        self,
        packet: bytearray,
        key: SymmetricKey,
        remote: tuple[str, int],
        pieces: int,
        wire: int,
        frames: int,
        packet_ids: tuple[int, ...] = (),
        checked: bool = False,
        src: int = -1,
        pid: int = -1,
        nwid: int = -1,
    ) -> bool:
        assert key is self.key
        assert len(packet_ids) == (frames if frames > 1 else 0)
        # What C read from the header is what the bytes say (the node trusts it unread).
        assert src == int.from_bytes(packet[13:18], "big")
        assert pid == int.from_bytes(packet[0:8], "big")
        assert pid == (packet_ids[0] if packet_ids else pid)
        is_frame = len(packet) >= 38 and packet[27] == 0x06
        assert nwid == (int.from_bytes(packet[28:36], "big") if is_frame else -1)
        self.header_reads += 1
        self.plains.append((bytes(packet), pieces, frames))
        self.checked.append(checked)
        self.ids += packet_ids or (int.from_bytes(packet[0:8], "big"),)
        return self.accept_key

    def key_for(self, address: int) -> SymmetricKey | None:
        return self.key if address == PEER else None

    def coalescing_networks(self) -> list[int]:
        return self.networks

    def relaying(self) -> bool:
        return self.relay

    def physical_paths(self) -> PhysicalPathConfig:
        return self.physical

    def now(self) -> int:
        return self.clock

    def on_dropped(self, reasons: Mapping[str, int], datagrams: int, wire_bytes: int) -> None:
        assert sum(reasons.values()) == datagrams
        self.dropped.update(reasons)


def deliver(link: tuple[socket.socket, socket.socket], datagrams: list[bytes], sink: Sink) -> int:
    """Send, then read bursts until the socket is empty; the number of bursts that read."""
    rx, tx = link
    reader = burst.BurstReader(rx, ME)
    for d in datagrams:
        tx.send(d)
    reads = 0
    for _ in range(1000):
        if not reader.read(sink):
            break
        reads += 1
    reader.close()
    return reads


def deliver_with(
    reader: burst.BurstReader, tx: socket.socket, datagrams: list[bytes], sink: Sink
) -> None:
    for d in datagrams:
        tx.send(d)
    for _ in range(1000):
        if not reader.read(sink):
            break


def learned(
    link: tuple[socket.socket, socket.socket],
    key: SymmetricKey,
    sink: Sink | None = None,
    policy: burst.GatePolicy | None = None,
) -> tuple[burst.BurstReader, Sink]:
    """A reader (with ``policy``) that has seen one packet from PEER: PEER's key is cached."""
    sink = sink if sink is not None else Sink(key)
    reader = burst.BurstReader(link[0], ME)
    if policy is not None:
        reader.set_policy(policy)
    deliver_with(reader, link[1], armored(frame_packet(b"x", 1, v6=False), key), sink)
    sink.wholes.clear()
    return reader, sink


@pytest.mark.e2e
def test_unknown_sender_gives_the_armored_packet_then_its_key_is_cached(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    rx, tx = link
    sink = Sink(key)
    reader = burst.BurstReader(rx, ME)
    first = armored(frame_packet(segment(False, 1, b"a" * 100), 1, v6=False), key)
    deliver_with(reader, tx, first, sink)
    assert sink.wholes == [(first[0], 1)] and not sink.plains
    clear = frame_packet(segment(False, 101, b"b" * 100), 2, v6=False)
    deliver_with(reader, tx, armored(clear, key), sink)
    assert len(sink.plains) == 1
    want = bytearray(armored(clear, key)[0])
    assert pk._dearmor_python(want, key)
    assert sink.plains[0] == (bytes(want), 1, 1)
    reader.close()


@pytest.mark.e2e
def test_plain_records_carry_the_header_fields_c_read(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    """The node takes a PLAIN record's sender, packet id and (uncompressed FRAME) network id
    from C without reading the bytes again: the sink checks each against the bytes (see
    ``Sink.on_plain``), for a FRAME, another verb, and a FRAME with the compressed flag (whose
    payload C must not read as a network id)."""
    reader, sink = learned(link, key)
    frame = frame_packet(b"z" * 60, 0x0123456789ABCDEF, v6=False)
    echo = pk.new_packet((77).to_bytes(8, "big"), ME, PEER, Verb.ECHO, b"hello")
    squeezed = frame_packet(b"w" * 60, 78, v6=False)
    squeezed[27] |= 0x80  # claims LZ4: its payload is no network id
    sent = []
    for clear in (frame, echo, squeezed):
        wire = armored(clear, key)
        sent.append(int.from_bytes(wire[0][0:8], "big"))  # AES-GMAC-SIV's tag is the id
        deliver_with(reader, link[1], wire, sink)
    reader.close()
    assert len(sink.plains) == 3 and sink.header_reads == 3
    assert sink.ids == sent


@pytest.mark.e2e
@pytest.mark.parametrize("cipher", [Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV])
def test_fragments_within_a_burst_are_reassembled_and_decrypted(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey, cipher: Cipher
) -> None:
    rx, tx = link
    sink = Sink(key, networks=[])
    reader = burst.BurstReader(rx, ME)
    deliver_with(reader, tx, armored(frame_packet(b"x" * 40, 9, v6=False), key, cipher), sink)
    clear = frame_packet(b"y" * 5000, 10, v6=False)  # 4 datagrams
    wire = armored(clear, key, cipher)
    assert len(wire) == 4
    deliver_with(reader, tx, [wire[2], wire[0], wire[3], wire[1]], sink)
    r = Reassembler()
    whole = None
    for d in wire:
        whole = (r.add_head if d[13] != 0xFF else r.add_fragment)(d, 0) or whole
    assert whole is not None and pk._dearmor_python(whole, key)
    assert sink.plains[-1] == (bytes(whole), 4, 1)
    assert not sink.datagrams
    reader.close()


@pytest.mark.e2e
def test_pieces_wait_across_bursts_and_junk_is_refused_in_c(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    rx, tx = link
    sink = Sink(key)
    reader = burst.BurstReader(rx, ME)
    relayed = armored(frame_packet(b"r" * 3000, 12, v6=False, dest=0x0F0F0F0F0F), key)
    deliver_with(reader, tx, relayed, sink)  # not for us, from a sender never authenticated
    assert sink.dropped == Counter({"not_for_us": 3}) and not sink.datagrams
    deliver_with(reader, tx, armored(frame_packet(b"x", 1, v6=False), key), sink)  # learned
    deliver_with(reader, tx, armored(frame_packet(b"x", 2, v6=False), key), sink)  # trusted
    sink.wholes.clear()
    sink.plains.clear()
    wire = armored(frame_packet(b"y" * 3000, 11, v6=False), key)
    beacon = bytes(13)
    stray = [b"\x00" * 5, b"short but > 16 bytes" + bytes(5)]
    deliver_with(reader, tx, [wire[0], wire[2], *relayed, beacon, *stray], sink)
    # The lone pieces wait (no record); what is not for us, and the beacon, go to the node.
    assert sorted(sink.datagrams) == sorted([*relayed, beacon])
    assert not sink.wholes and not sink.plains
    assert reader.stats["reassembly_held"] == 2
    assert sink.dropped == Counter({"not_for_us": 3, "too_short": 2})
    deliver_with(reader, tx, [wire[1]], sink)  # the missing piece, a burst later
    assert [(p[1], p[2]) for p in sink.plains] == [(3, 1)]
    assert reader.stats["reassembly_held"] == 0
    reader.close()


@pytest.mark.e2e
def test_duplicate_and_inconsistent_pieces_are_refused(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    sink = Sink(key)
    wire = armored(frame_packet(b"y" * 3000, 13, v6=False), key)
    liar = bytearray(wire[1])
    liar[14] = (5 << 4) | 2  # claims 5 pieces where the others say 3
    deliver(link, [wire[0], wire[1], wire[1], bytes(liar), wire[2]], sink)
    assert not sink.wholes and not sink.plains and not sink.datagrams
    # The liar discards the set it lied to (3 datagrams); wire[2] then starts a new one.
    assert sink.dropped == Counter({"duplicate_fragment": 1, "bad_fragment": 3})


@pytest.mark.e2e
def test_a_failed_mac_with_the_cached_key_is_dropped_in_c(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    reader, sink = learned(link, key)
    tx = link[1]
    other = SymmetricKey(bytes(48))
    forged = armored(frame_packet(b"z" * 2000, 2, v6=False), other)
    deliver_with(reader, tx, forged, sink)
    assert not sink.wholes and not sink.plains
    assert reader.stats["mac_failed"] == 1
    assert sink.dropped == Counter({"mac_failed": 2})  # both pieces
    reader.close()


@pytest.mark.e2e
def test_a_clear_hello_failing_the_cached_key_goes_to_the_node(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    """Another identity claiming a known address: a collision the node must judge."""
    reader, sink = learned(link, key)
    tx = link[1]
    hello = bytearray(frame_packet(b"h" * 50, 3, v6=False))
    hello[27] = Verb.HELLO
    (wire,) = armored(hello, SymmetricKey(bytes(48)), Cipher.POLY1305_NONE)
    deliver_with(reader, tx, [wire], sink)
    assert sink.wholes == [(wire, 1)] and not sink.dropped
    reader.close()


@pytest.mark.e2e
def test_a_refused_key_drops_the_record_and_forgets_the_key(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    rx, tx = link
    sink = Sink(key, accept_key=False)
    reader = burst.BurstReader(rx, ME)
    deliver_with(reader, tx, armored(frame_packet(b"x", 1, v6=False), key), sink)
    deliver_with(reader, tx, armored(frame_packet(b"y", 2, v6=False), key), sink)
    assert len(sink.plains) == 1 and reader.stats["stale_key_drops"] == 1
    deliver_with(reader, tx, armored(frame_packet(b"w", 3, v6=False), key), sink)
    assert len(sink.wholes) == 2  # not decrypted any more until learned again
    reader.close()


@pytest.mark.e2e
def test_an_oversized_datagram_is_counted_and_dropped(
    link: tuple[socket.socket, socket.socket],
) -> None:
    sink = Sink(None)
    deliver(link, [bytes(20000), bytes(13)], sink)
    assert sink.dropped == Counter({"too_long": 1})
    assert sink.datagrams == [bytes(13)]  # a beacon, for the node


def run_flow(
    link: tuple[socket.socket, socket.socket],
    key: SymmetricKey,
    segments: list[bytes],
    *,
    v6: bool,
    networks: list[int] | None = None,
) -> Sink:
    rx, tx = link
    sink = Sink(key, networks=[NWID] if networks is None else networks)
    reader = burst.BurstReader(rx, ME)
    deliver_with(reader, tx, armored(frame_packet(b"x", 1, v6=v6), key), sink)
    sink.wholes.clear()
    sink.ids.clear()
    wire: list[bytes] = []
    for i, s in enumerate(segments):
        datagrams = armored(frame_packet(s, 100 + i, v6=v6), key)
        sink.sent_ids.append(int.from_bytes(datagrams[0][0:8], "big"))
        wire += datagrams
    deliver_with(reader, tx, wire, sink)
    reader.close()
    return sink


def ip_of(plain: bytes) -> bytes:
    return plain[28 + 10 :]


@pytest.mark.e2e
@pytest.mark.parametrize("v6", [False, True])
def test_in_order_segments_of_one_flow_are_joined(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey, v6: bool
) -> None:
    rng = random.Random(5)
    datas = [rng.randbytes(2700) for _ in range(6)]
    seq = 2**32 - 3000  # the joined run crosses the sequence wrap
    segs = []
    for i, d in enumerate(datas):
        segs.append(segment(v6, seq, d, ACK | (PSH if i == 5 else 0)))
        seq = (seq + len(d)) % 2**32
    sink = run_flow(link, key, segs, v6=v6)
    assert [(p[1], p[2]) for p in sink.plains] == [(12, 6)]
    assert sink.checked == [True]
    ip = ip_of(sink.plains[0][0])
    assert tcp_checksum_ok(ip)
    th, data = parse_tcp(ip)
    assert data == b"".join(datas)
    assert th.seq == 2**32 - 3000 and th.flags & 0x3F == ACK | PSH
    assert th.timestamps == (1234, 5678)


@pytest.mark.e2e
def test_runs_break_where_the_flow_does(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    d = b"q" * 1000
    segs = [
        segment(False, 0, d),
        segment(False, 1000, d, ACK | PSH),  # PSH ends a run
        segment(False, 2000, d),
        segment(False, 4000, d),  # a gap
        segment(False, 5000, d, sport=1),  # another flow
        segment(False, 6000, d, ts=False),  # other options
        segment(False, 7000, d, ts=False),
        segment(False, 8000, b""),  # a pure ACK never joins
    ]
    bad = bytearray(segment(False, 8000, d))
    bad[-1] ^= 1  # a corrupt checksum never joins either
    sink = run_flow(link, key, [*segs, bytes(bad)], v6=False)
    assert [p[2] for p in sink.plains] == [2, 1, 1, 1, 2, 1, 1]
    # C vouches for the checksums of data segments it took apart (joined or not), never for
    # a pure ACK (it does not take those apart) nor a corrupt one, which arrives as sent, for
    # the stack to count and drop.
    assert sink.checked == [True, True, True, True, True, False, False]
    assert ip_of(sink.plains[-1][0]) == bytes(bad)
    for p in sink.plains[:-1]:
        assert tcp_checksum_ok(ip_of(p[0]))


@pytest.mark.e2e
def test_no_joining_for_networks_not_listed(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    segs = [segment(False, i * 500, b"p" * 500) for i in range(4)]
    sink = run_flow(link, key, segs, v6=False, networks=[])
    assert [p[2] for p in sink.plains] == [1, 1, 1, 1]
    assert sink.checked == [False] * 4  # not taken apart: the stack sums them
    assert [ip_of(p[0]) for p in sink.plains] == segs


@given(st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=40), st.randoms())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.e2e
def test_fuzz_every_datagram_is_accounted_for(
    link: tuple[socket.socket, socket.socket],
    key: SymmetricKey,
    blobs: list[bytes],
    rnd: random.Random,
) -> None:
    """Garbage, and garbage dressed as our fragments and heads: nothing is lost or invented."""
    out = []
    for b in blobs:
        d = bytearray(b)
        shape = rnd.random()
        if len(d) > 16 and shape < 0.4:
            d[8:13] = ME.to_bytes(5, "big")
            d[13] = 0xFF
            d[14] = rnd.randrange(256)
            d[0:8] = bytes(8)  # pieces of one packet ID
        elif len(d) >= 28 and shape < 0.8:
            d[0:8] = bytes(8)
            d[8:13] = ME.to_bytes(5, "big")
            d[13:18] = PEER.to_bytes(5, "big")
            d[18] |= 0x40 if rnd.random() < 0.5 else 0
        out.append(bytes(d))
    sink = Sink(key)
    rx, tx = link
    reader = burst.BurstReader(rx, ME)
    deliver_with(reader, tx, out, sink)
    seen = len(sink.datagrams) + sum(p for _, p in sink.wholes) + sum(p for _, p, _ in sink.plains)
    held = reader.stats["reassembly_held"]
    reader.close()
    assert seen + sum(sink.dropped.values()) + held == len(out)
    assert all(d in out for d in sink.datagrams)


def test_ipv6_senders_are_named_as_recvfrom_names_them(key: SymmetricKey) -> None:
    need(burst.AVAILABLE, burst.REASON)
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        try:
            rx.bind(("::1", 0))
            tx.bind(("::1", 0))
        except OSError as e:
            pytest.skip(f"no IPv6 loopback here: {e}")
        rx.setblocking(False)
        seen: list[tuple[str, int]] = []

        class V6Sink(Sink):
            def on_datagram(self, data: memoryview, remote: tuple[str, int]) -> None:
                seen.append(remote)

        reader = burst.BurstReader(rx, ME)
        tx.sendto(b"hello over v6", rx.getsockname()[:2])
        for _ in range(100):
            if reader.read(V6Sink(key)):
                break
        reader.close()
        assert seen == [("::1", tx.getsockname()[1])]
    finally:
        rx.close()
        tx.close()


@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=14),
    shuffle=st.booleans(),
    flags=st.lists(
        st.sampled_from([ACK, ACK, ACK, ACK | PSH, ACK | FIN]), min_size=14, max_size=14
    ),
    tsvals=st.lists(st.integers(0, 2), min_size=14, max_size=14),
    v6=st.booleans(),
    rnd=st.randoms(),
)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.e2e
def test_joined_records_carry_exactly_the_segments_sent(
    link: tuple[socket.socket, socket.socket],
    key: SymmetricKey,
    sizes: list[int],
    shuffle: bool,
    flags: list[int],
    tsvals: list[int],
    v6: bool,
    rnd: random.Random,
) -> None:
    """Whatever mix of sizes, flags, timestamps and order: each record is a valid TCP segment
    (checksums verified by the codec), and the records' (seq, payload) cover exactly the bytes
    of the segments sent, each byte once, with the same flags union."""
    seq0 = rnd.randrange(2**32)
    stream = rnd.randbytes(sum(sizes))
    segs = []
    at = 0
    for i, n in enumerate(sizes):
        hdr = tcp_header(v6, (seq0 + at) % 2**32, flags[i])
        hdr = hdr[: len(hdr) - 8] + struct.pack(">II", 1000 + tsvals[i], 5678)
        (one,) = TcpBurst(hdr, 1, stream[at : at + n], n, flags[i]).packets()
        segs.append(one)
        at += n
    if shuffle:
        rnd.shuffle(segs)
    sink = run_flow(link, key, segs, v6=v6)
    assert sum(p[2] for p in sink.plains) == len(segs)
    got = {}
    seen_flags = 0
    for plain, _, _ in sink.plains:
        th, data = parse_tcp(ip_of(plain))  # verifies IP and TCP checksums
        off = (th.seq - seq0) % 2**32
        for j, byte in enumerate(data):
            assert off + j not in got
            got[off + j] = byte
        seen_flags |= th.flags & 0x3F
    assert bytes(got[i] for i in range(len(stream))) == stream
    assert seen_flags == functools.reduce(operator.or_, flags[: len(sizes)])
    # Every packet's id is reported, joined or not (the node checks each against replays).
    assert sorted(sink.ids) == sorted(sink.sent_ids)


def test_ipv4_mapped_senders_are_named_as_recvfrom_names_them(key: SymmetricKey) -> None:
    """A dual-stack socket (one a caller may pass in) sees IPv4 senders as mapped addresses."""
    need(burst.AVAILABLE, burst.REASON)
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        try:
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            rx.bind(("::", 0))
        except OSError as e:
            pytest.skip(f"no dual-stack socket here: {e}")
        tx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        # What recvfrom says for this sender, taken from a second dual-stack socket.
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        tx.sendto(b"probe", ("127.0.0.1", probe.getsockname()[1]))
        _, (want_host, want_port, *_) = probe.recvfrom(100)
        rx.setblocking(False)
        seen: list[tuple[str, int]] = []

        class MappedSink(Sink):
            def on_datagram(self, data: memoryview, remote: tuple[str, int]) -> None:
                seen.append(remote)

        reader = burst.BurstReader(rx, ME)
        tx.sendto(b"hello from v4", ("127.0.0.1", port))
        for _ in range(100):
            if reader.read(MappedSink(key)):
                break
        reader.close()
        assert seen == [(want_host, want_port)] and want_host == "::ffff:127.0.0.1"
    finally:
        rx.close()
        tx.close()
        probe.close()


def udp_packet(v6: bool, payload: bytes, *, sport: int = 4000) -> bytes:
    """One complete UDP datagram as the stack sends it (the checksum offload's reference)."""
    from ztnode.netstack.tso import UdpOffload
    from ztnode.netstack.udpmux import _udp_head

    src, dst = (SRC6.packed, DST6.packed) if v6 else (SRC4.packed, DST4.packed)
    return UdpOffload(_udp_head(src, dst, sport, 53, 64), 7, payload).packet()


def with_ipv4_sum(ip: bytearray) -> bytes:
    ip[10:12] = b"\0\0"
    struct.pack_into(">H", ip, 10, ~ones_sum(ip[:20]) & 0xFFFF)
    return bytes(ip)


@pytest.mark.e2e
@pytest.mark.parametrize("v6", [False, True])
def test_udp_datagrams_with_right_sums_are_marked_checked(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey, v6: bool
) -> None:
    """C vouches for a UDP datagram's checksums when they verify and a checksum is present;
    a corrupt one, one without a checksum (IPv4 allows that), a fragment, or a datagram with
    bytes past its IP length arrives unmarked, as sent, for the stack to judge."""
    good = udp_packet(v6, b"question")
    corrupt = bytearray(udp_packet(v6, b"question"))
    corrupt[-1] ^= 1
    packets = [good, bytes(corrupt), good + b"\0\0"]  # the last: Ethernet-style padding
    want = [True, False, False]
    if not v6:
        no_sum = bytearray(good)
        no_sum[26:28] = b"\0\0"
        fragment = bytearray(good)
        fragment[6] |= 0x20  # MF: the first fragment of a larger datagram
        packets += [bytes(no_sum), with_ipv4_sum(fragment)]
        want += [False, False]
    sink = run_flow(link, key, packets, v6=v6)
    assert [ip_of(p[0]) for p in sink.plains] == packets  # never changed, whatever the mark
    assert sink.checked == want


@pytest.mark.e2e
def test_udp_datagrams_on_networks_not_listed_are_not_checked(
    link: tuple[socket.socket, socket.socket], key: SymmetricKey
) -> None:
    sink = run_flow(link, key, [udp_packet(False, b"q")], v6=False, networks=[])
    assert sink.checked == [False]
