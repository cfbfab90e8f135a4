"""Property tests: reassembly from arbitrary arrival orders, and "anything the peer sends is a
counted drop or a protocol reaction, never an exception" (the h11 fuzzing discipline)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.tcp_peer import (
    close_wait,
    established,
    fin_wait_1,
    fin_wait_2,
    last_ack,
    new,
    syn_received,
    syn_sent,
    time_wait,
)
from ztnode.netstack.tcp import Flags, Segment, TcpConnection, TcpState, seq_add

DATA = bytes((i * 7 + 3) & 0xFF for i in range(3000))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2999), st.integers(1, 700)),
        min_size=1,
        max_size=40,
    )
)
def test_reassembly_from_any_order_with_overlaps(pieces: list[tuple[int, int]]) -> None:
    c, p = established()
    base = p.seq
    # Always deliver the whole stream eventually, after the random pieces.
    pieces = [*pieces, (0, 3000)]
    got = bytearray()
    for t, (off, n) in enumerate(pieces):
        chunk = DATA[off : off + n]
        seg = Segment(
            seq=seq_add(base, off), ack=p.ack, flags=Flags.ACK, window=1000, payload=chunk
        )
        c.receive_segment(seg, 20 + t)
        for out in c.segments_to_send(20 + t):
            assert out.ack == seq_add(base, len(got) + c.readable)
        got += c.recv()
    assert bytes(got) == DATA
    assert c._ooo == [] and c.rxq.ooo_bytes == 0


STATES: list[Callable[[], TcpConnection | tuple[TcpConnection, object]]] = [
    new,
    syn_sent,
    syn_received,
    established,
    fin_wait_1,
    fin_wait_2,
    close_wait,
    last_ack,
    time_wait,
]

segments = st.builds(
    Segment,
    seq=st.integers(0, 0xFFFF_FFFF),
    ack=st.integers(0, 0xFFFF_FFFF),
    flags=st.integers(0, 0x3F).map(Flags),
    window=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=64),
    mss=st.none() | st.integers(0, 0xFFFF),
    wscale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(
        st.tuples(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF_FFFF)), max_size=4
    ).map(tuple),
    ts=st.none() | st.tuples(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF_FFFF)),
)


def _near(c: TcpConnection, seg: Segment, k: int) -> Segment:
    """Bias some segments towards the live windows so deep paths are reached."""
    if k % 3 == 0:
        return seg
    return Segment(
        seq=seq_add(c.irs, c.rcv_nxt + (seg.seq % 64) - 8),
        ack=seq_add(c.snd.iss, c.snd.una + (seg.ack % 64) - 8),
        flags=seg.flags,
        window=seg.window,
        payload=seg.payload,
        mss=seg.mss,
        wscale=seg.wscale,
        sack_permitted=seg.sack_permitted,
        sack_blocks=seg.sack_blocks,
        ts=seg.ts,
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(STATES) - 1), st.lists(segments, max_size=12), st.data())
def test_arbitrary_segments_never_raise(
    which: int, segs: list[Segment], data: st.DataObject
) -> None:
    made = STATES[which]()
    c = made if isinstance(made, TcpConnection) else made[0]
    now = 100
    for k, seg in enumerate(segs):
        c.receive_segment(_near(c, seg, k), now)
        for out in c.segments_to_send(now):
            assert 0 <= out.seq <= 0xFFFF_FFFF and 0 <= out.ack <= 0xFFFF_FFFF
            assert 0 <= out.window <= 0xFFFF
        if data.draw(st.booleans()):
            c.recv()
        t = c.get_timer()
        if t is not None and data.draw(st.booleans()):
            now = max(now, t)
            c.handle_timer(now)
        now += 1
        while c.next_event() is not None:
            pass
    assert isinstance(c.state, TcpState)
