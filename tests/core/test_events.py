"""Events print in ZeroTier's forms and stay short (users log them)."""

from __future__ import annotations

from ztnode.core import events as ev


def test_event_reprs_use_hex_ids_and_count_bytes() -> None:
    e = ev.NetworkConfigUpdated(0x8056C2E21C000001, 3, b"x" * 5000)
    assert (
        repr(e)
        == "NetworkConfigUpdated(network_id=8056c2e21c000001, revision=3, config=<5000 bytes>)"
    )
    assert repr(ev.PeerAdded(0x1234)) == "PeerAdded(address=0000001234)"
    frame = ev.FrameReceived(1, 0xABCDEF0123, 0x020000000001, 0xFFFFFFFFFFFF, 0x0800, b"\0" * 60)
    text = repr(frame)
    assert "source=abcdef0123" in text and "dest_mac=ff:ff:ff:ff:ff:ff" in text
    assert "ethertype=0x0800" in text and "payload=<60 bytes>" in text
    assert repr(ev.NodeOnline()) == "NodeOnline()"
    for cls in (ev.PathUp, ev.NetworkStatusChanged, ev.EchoReply):  # every subclass covered
        assert cls.__repr__ is ev.Event.__repr__
