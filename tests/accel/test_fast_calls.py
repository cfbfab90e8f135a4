"""The direct CPython calls of ``accel/csrc/fast.c`` (``ztnode._zt_fast``) against their cffi
twins: the same send cuts byte for byte, and a receive burst handed to the sink in the same
order with the same arguments, whether C hands over the authenticated records (``plain_run``)
or the Python loop does. Their arguments are checked: a wrong call raises, it never crashes."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.accel.conftest import loopback_link, need
from tests.accel.test_offload import (
    ACK,
    FIN,
    ME,
    MTU,
    NWID,
    PEER,
    PSH,
    Sink,
    armored,
    frame_packet,
    segment,
    tcp_header,
)
from ztnode import accel
from ztnode.accel import _hot
from ztnode.crypto import SymmetricKey, _cext
from ztnode.netstack.tso import TcpBurst
from ztnode.transport import burst
from ztnode.wire import packet as pk
from ztnode.wire.constants import Cipher, Verb

KEY = SymmetricKey(bytes(range(48)))
TRUSTED_ID = 0x1122334455667788
CIPHERS = [Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV, Cipher.NONE_TRUSTED_PATH]


def need_fast() -> None:
    need(accel.AVAILABLE, accel.REASON)
    need(_cext.fast is not None, f"no direct calls ({_cext.NO_FAST_ENV} set?)")


def route_header(cipher: Cipher) -> bytes:
    header = pk.new_packet(bytes(8), PEER, ME, Verb.FRAME)
    if cipher == Cipher.NONE_TRUSTED_PATH:
        pk.armor_trusted(header, TRUSTED_ID)
    return bytes(header)


# ------------------------------------------------------------------------------ send cuts


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 30000),
    size=st.sampled_from([1, 100, 1388, 1400, 2748, 9999]),
    last=st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN]),
    mtu=st.sampled_from([MTU, 576, 1500, 40]),
    short_ids=st.booleans(),
)
@example(n=0, size=1388, last=ACK, mtu=MTU, short_ids=False)  # a bare ACK
@example(n=1, size=1388, last=ACK | PSH, mtu=MTU, short_ids=False)  # the echo's segment
@example(n=20000, size=1388, last=ACK | PSH, mtu=MTU, short_ids=False)  # heap output, no GIL
@settings(max_examples=40, deadline=None)
def test_direct_tcp_cut_equals_the_cffi_cut(
    cipher: Cipher, v6: bool, n: int, size: int, last: int, mtu: int, short_ids: bool
) -> None:
    need_fast()
    payload = random.Random(n + size).randbytes(n)
    hdr = tcp_header(v6, 1000, last)
    pieces = max(-(-n // size), 1)
    ids = random.Random(n).randbytes(8 * pieces - (8 if short_ids and pieces > 1 else 0))
    args = (route_header(cipher), ids, NWID, 0x86DD if v6 else 0x0800, hdr, 7)
    direct = accel.tcp_pieces(KEY, cipher, *args, payload, size, last, mtu)
    via_cffi = _hot._tcp_pieces_cffi(KEY, cipher, *args, payload, size, last, mtu)
    assert direct == via_cffi
    # A memoryview or bytearray payload is read in place, to the same result.
    view = accel.tcp_pieces(KEY, cipher, *args, memoryview(bytearray(payload)), size, last, mtu)
    assert view == direct
    if size in (1388, 1400) and mtu == MTU and not short_ids and pieces <= 64:
        assert direct is not None  # the common shapes are taken, not declined by both
        if cipher != Cipher.NONE_TRUSTED_PATH:
            assert len(direct) >= pieces


@pytest.mark.parametrize("cipher", [*CIPHERS, Cipher.POLY1305_NONE])
@given(
    n=st.integers(0, 12000),
    ethertype=st.sampled_from([0x0800, 0x86DD, 0x0806]),
    mtu=st.sampled_from([MTU, 576, 64, 40]),
    pid=st.binary(min_size=8, max_size=8),
)
@example(n=1, ethertype=0x0800, mtu=MTU, pid=bytes(8))
@example(n=MTU - 37, ethertype=0x0800, mtu=MTU, pid=bytes(8))  # just over one datagram
@settings(max_examples=40, deadline=None)
def test_direct_frame_equals_the_cffi_frame(
    cipher: Cipher, n: int, ethertype: int, mtu: int, pid: bytes
) -> None:
    need_fast()
    payload = random.Random(n).randbytes(n)
    args = (route_header(cipher), pid, NWID, ethertype, payload, mtu)
    assert accel.frame_datagrams(KEY, cipher, *args) == _hot._frame_datagrams_cffi(
        KEY, cipher, *args
    )


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("v6", [False, True])
@given(
    n=st.integers(0, 9000),
    mtu=st.sampled_from([MTU, 576, 40]),
    ident=st.integers(0, 0xFFFF),
    bad_header=st.booleans(),
)
@example(n=32, mtu=MTU, ident=1, bad_header=False)  # the UDP echo's datagram
@settings(max_examples=40, deadline=None)
def test_direct_udp_equals_the_cffi_udp(
    cipher: Cipher, v6: bool, n: int, mtu: int, ident: int, bad_header: bool
) -> None:
    need_fast()
    payload = random.Random(n).randbytes(n)
    hdr = bytearray(tcp_header(v6, 1, ACK, ts=False)[: 48 if v6 else 28])
    hdr[6 if v6 else 9] = 17  # UDP
    if bad_header:
        hdr = hdr[:-1]
    args = (route_header(cipher), bytes(8), NWID, 0x86DD if v6 else 0x0800, bytes(hdr), ident)
    direct = accel.udp_datagrams(KEY, cipher, *args, payload, mtu)
    assert direct == _hot._udp_datagrams_cffi(KEY, cipher, *args, payload, mtu)
    if not bad_header and mtu == MTU and n < 1300:
        assert direct is not None


def test_direct_cuts_hand_out_independent_copies() -> None:
    """Datagrams of small cuts come from a buffer on the C stack: each call's are new objects
    that later calls do not touch."""
    need_fast()
    header = route_header(Cipher.AES_GMAC_SIV)
    hdr = tcp_header(False, 1000, ACK | PSH)
    first = accel.tcp_pieces(KEY, 3, header, bytes(8), NWID, 0x0800, hdr, 7, b"a", 1388, 24, MTU)
    assert first is not None
    kept = [bytes(d) for d in first]
    for i in range(20):
        ids = bytes([i + 1]) * 8
        again = accel.tcp_pieces(KEY, 3, header, ids, NWID, 0x0800, hdr, 7, b"z", 1388, 24, MTU)
        assert again is not None and again != first
    assert first == kept


def test_wrong_calls_raise_and_never_crash() -> None:
    need_fast()
    fast = _cext.fast
    header = route_header(Cipher.AES_GMAC_SIV)
    hdr = tcp_header(False, 1, ACK)
    good = [0, KEY.salsa_key, 1, header, bytes(8), NWID, 0x0800, hdr, 1, b"x", 1388, ACK, MTU]
    assert fast.tx_tcp(*good) is not None
    with pytest.raises(TypeError):
        fast.tx_tcp(*good[:-1])
    for i, bad in [
        (1, b"short key"),  # a key shorter than Salsa20's
        (3, header[:27]),  # a packet header cut short
        (3, bytearray(header)),  # not bytes
        (0, -1),  # a negative address
        (2, 2**40),  # a cipher out of a C int's range
        (9, 12345),  # no buffer
    ]:
        args = list(good)
        args[i] = bad
        with pytest.raises((TypeError, ValueError, OverflowError)):
            fast.tx_tcp(*args)
    # Shapes C does not build decline with None, as the cffi cut does.
    assert fast.tx_tcp(*good[:10], 0, ACK, MTU) is None  # no segment size
    assert fast.tx_tcp(*good[:7], bytes(300), *good[8:]) is None  # headers too long
    reader = (0, -1, bytearray(16), 0, 0, 32)
    with pytest.raises(TypeError):
        fast.plain_run((0, -1, b"not a bytearray", 0, 0, 32), 0, 0, {}, {}, print)
    with pytest.raises(TypeError):
        fast.plain_run(reader[:5], 0, 0, {}, {}, print)
    with pytest.raises(ValueError):
        fast.plain_run(reader, 65, 0, {}, {}, print)  # more records than a burst holds
    with pytest.raises(ValueError):
        fast.read((*reader[:5], 65), 0, 0, {}, {}, print)  # a burst larger than the table
    with pytest.raises(ValueError):
        fast.read(reader, 0, 0, {}, {}, print)  # an arena smaller than a burst's
    assert fast.plain_run(reader, 0, 0, {}, {}, print) == 0  # nothing to hand over


def test_sendto_sends_what_socket_sendto_sends() -> None:
    """The transport's send: the same datagram at the same address, the kernel's errors as the
    same exceptions (a full buffer is BlockingIOError, which the endpoint queues on)."""
    need_fast()
    fast = _cext.fast
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        host, port = rx.getsockname()
        sa = fast.sockaddr(socket.inet_pton(socket.AF_INET, host), port, 0)
        assert fast.sendto(tx.fileno(), b"hello", sa) == 5
        assert rx.recvfrom(100) == (b"hello", tx.getsockname())
        assert fast.sendto(tx.fileno(), memoryview(b"xhelloy")[1:6], sa) == 5
        assert rx.recv(100) == b"hello"
        with pytest.raises(OSError):
            fast.sendto(-1, b"x", sa)  # EBADF
        with pytest.raises(ValueError):
            fast.sendto(tx.fileno(), b"x", sa[:-1])
        with pytest.raises(ValueError):
            fast.sockaddr(b"\x7f\0\0\1", 70000, 0)
        v6 = fast.sockaddr(socket.inet_pton(socket.AF_INET6, "::1"), port, 0)
        with pytest.raises(OSError):  # an IPv6 address on an IPv4 socket, as sendto refuses it
            fast.sendto(tx.fileno(), b"x", v6)
        with pytest.raises(OSError):
            tx.sendto(b"x", ("::1", port))
    finally:
        rx.close()
        tx.close()


# ------------------------------------------------------------------------------ receive bursts


@dataclass
class LogSink(Sink):
    """Records every call in order, with what it was given."""

    log: list[tuple[object, ...]] = field(default_factory=list)
    refuse_after: int = -1

    def on_datagram(self, data: memoryview, remote: tuple[str, int]) -> None:
        self.log.append(("datagram", bytes(data), remote))

    def on_whole(self, packet: bytearray, remote: tuple[str, int], pieces: int, wire: int) -> None:
        self.log.append(("whole", bytes(packet), remote, pieces, wire))

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
        assert type(packet) is bytearray and type(packet_ids) is tuple
        args = (bytes(packet), remote, pieces, wire, frames, packet_ids, checked, src, pid, nwid)
        self.log.append(("plain", *args))
        super().on_plain(
            packet, key, remote, pieces, wire, frames, packet_ids, checked, src, pid, nwid
        )
        plains = sum(1 for e in self.log if e[0] == "plain")
        return not (0 <= self.refuse_after < plains)


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def any_link(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    yield from loopback_link(request.param)


def run(
    link: tuple[socket.socket, socket.socket],
    datagrams: list[bytes],
    fast: bool,
    networks: list[int],
    refuse_after: int,
) -> tuple[list[tuple[object, ...]], int, dict[str, int], dict[str, int], list[int]]:
    """The datagrams through a reader whose PEER key is cached: what the sink was given, the
    stale-key drops, the reader's counters, the drops it reported to the sink and what each
    read said it read."""
    rx, tx = link
    sink = LogSink(KEY, networks=networks)
    reader = burst.BurstReader(rx, ME)
    reader.fast = fast
    tx.send(armored(frame_packet(b"x", 1, v6=False), KEY)[0])
    assert reader.read(sink) == 1  # a WHOLE record: PEER's key is cached after it
    sink.log.clear()
    sink.refuse_after = refuse_after
    for d in datagrams:
        tx.send(d)
    reads: list[int] = []
    for _ in range(1000):
        reads.append(reader.read(sink))
        if not reads[-1]:
            break
    stats = reader.stats
    reader.close()
    assert sum(reads) == stats["datagrams"] - 1
    return sink.log, reader.stale_key_drops, stats, dict(sink.dropped), reads


@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(["tcp", "tcp6", "frame", "big", "stranger", "junk", "flip"]),
            st.integers(0, 3000),
        ),
        min_size=1,
        max_size=40,
    ),
    join=st.booleans(),
    refuse_after=st.sampled_from([-1, -1, 0, 3]),
    cipher=st.sampled_from([Cipher.POLY1305_SALSA2012, Cipher.AES_GMAC_SIV]),
)
@example(items=[("tcp", 1)], join=True, refuse_after=-1, cipher=Cipher.AES_GMAC_SIV)
@example(  # joined runs, a record C stops at, a refusal in the middle
    items=[("tcp", 100)] * 5 + [("stranger", 1)] + [("tcp", 100)] * 3 + [("junk", 5)],
    join=True,
    refuse_after=3,
    cipher=Cipher.AES_GMAC_SIV,
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_burst_reaches_the_sink_the_same_through_c_and_through_the_python_loop(
    any_link: tuple[socket.socket, socket.socket],
    items: list[tuple[str, int]],
    join: bool,
    refuse_after: int,
    cipher: Cipher,
) -> None:
    need_fast()
    rnd = random.Random(len(items) * 7919 + refuse_after)
    datagrams: list[bytes] = []
    seq = 1000
    for i, (what, n) in enumerate(items):
        pid = 100 + i
        if what in ("tcp", "tcp6"):
            ip = segment(what == "tcp6", seq, rnd.randbytes(1 + n % 1300), ACK | PSH)
            seq += 1 + n % 1300
            datagrams += armored(frame_packet(ip, pid, v6=what == "tcp6"), KEY, cipher)
        elif what == "frame":
            datagrams += armored(frame_packet(rnd.randbytes(n), pid, v6=False), KEY, cipher)
        elif what == "big":  # fragmented
            datagrams += armored(frame_packet(rnd.randbytes(2000 + n), pid, v6=False), KEY, cipher)
        elif what == "stranger":  # no cached key: a WHOLE record
            packet = frame_packet(b"s" * (1 + n % 50), pid, v6=False, src=0x0C0C0C0C0C)
            datagrams += armored(packet, KEY, cipher)
        elif what == "junk":
            datagrams.append(rnd.randbytes(1 + n % 200))
        else:  # a forgery under the cached key: dropped in C
            d = bytearray(armored(frame_packet(b"f" * 40, pid, v6=False), KEY, cipher)[0])
            d[30 + n % 40] ^= 1
            datagrams.append(bytes(d))
    networks = [NWID] if join else []
    slow = run(any_link, datagrams, False, networks, refuse_after)
    quick = run(any_link, datagrams, True, networks, refuse_after)
    assert quick == slow
    assert slow[0] or not any(w in ("tcp", "tcp6", "frame", "big") for w, _ in items)


def test_the_burst_loop_serves_senders_as_the_python_loop_names_them(
    any_link: tuple[socket.socket, socket.socket],
) -> None:
    """The address table is shared by both paths (C looks senders up by the key
    ``_addr_key`` makes): the first record from a sender is named in Python, the rest in C,
    and both spell the address as recvfrom does."""
    need_fast()
    tx = any_link[1]
    datagrams = [armored(frame_packet(b"p", 10 + i, v6=False), KEY)[0] for i in range(3)]
    log = run(any_link, datagrams, True, [], -1)[0]
    assert [e[0] for e in log] == ["plain"] * 3
    assert {e[2] for e in log} == {tx.getsockname()[:2]}


def test_a_burst_cut_from_tso_is_what_the_stack_would_have_sent() -> None:
    """One end to end check beside the differential ones: the direct cut's pieces are the
    Python burst's packets, sealed."""
    need_fast()
    hdr = tcp_header(False, 5000, ACK | PSH)
    payload = bytes(range(256)) * 20
    b = TcpBurst(hdr, 9, payload, 1388, ACK | PSH)
    got = accel.tcp_pieces(
        KEY, Cipher.NONE_TRUSTED_PATH, route_header(Cipher.NONE_TRUSTED_PATH),
        bytes(8 * b.count()), NWID, 0x0800, hdr, 9, payload, 1388, ACK | PSH, 9000,
    )  # fmt: skip
    assert got is not None and len(got) == b.count()
    assert [d[38:] for d in got] == b.packets()


@pytest.mark.parametrize("fast", [True, False])
def test_a_sink_that_closes_the_reader_mid_burst_ends_the_burst_quietly(
    any_link: tuple[socket.socket, socket.socket], fast: bool
) -> None:
    """The endpoint may close while a burst is handed over (a node stopping on what it
    received): the records after that are dropped with the reader, nothing raises, in C's
    hand-over as in the Python loop's."""
    need_fast()
    rx, tx = any_link
    reader = burst.BurstReader(rx, ME)
    reader.fast = fast

    @dataclass
    class Closing(LogSink):
        def on_plain(self, packet: bytearray, *args: Any) -> bool:
            reader.close()
            return super().on_plain(packet, *args)

    sink = Closing(KEY, networks=[])
    tx.send(armored(frame_packet(b"x", 1, v6=False), KEY)[0])
    assert reader.read(sink) == 1  # PEER's key is cached
    sink.log.clear()
    stranger = frame_packet(b"s", 5, v6=False, src=0x0C0C0C0C0C)
    for d in [
        armored(frame_packet(b"a", 2, v6=False), KEY)[0],
        armored(stranger, KEY)[0],  # a WHOLE record: C stops there, after the close
        armored(frame_packet(b"b", 3, v6=False), KEY)[0],
    ]:
        tx.send(d)
    assert reader.read(sink) == (3 if fast else 0)  # the Python loop's counters went with it
    assert [e[0] for e in sink.log] == ["plain"]
