"""The bonding layer's parts on their own: local.conf settings, flow ids, and the QoS
arithmetic as ZeroTierOne 1.14.1 does it (node/Bond.cpp, node/RingBuffer.hpp, node/Switch.cpp;
protocol-multipath.md sections 4-6)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztnode.core.bond import (
    NO_FLOW,
    BondConfigError,
    BondingSettings,
    BondPolicy,
    LinkMode,
    Reselect,
    flow_id,
)
from ztnode.core.bond.flows import FlowTable
from ztnode.core.bond.qos import (
    QosTracker,
    f32,
    latency_sample,
    ring_mean,
    ring_stddev,
    sampled,
)
from ztnode.wire.constants import Verb
from ztnode.wire.verbs.multipath import QosRecord

# ------------------------------------------------------------------ settings


def test_no_settings_means_no_bonding() -> None:
    s = BondingSettings.from_local_conf({"primaryPort": 9993})
    assert not s.in_use and s.template_for(0x0123456789) is None


def test_a_standard_default_policy_gets_the_reference_defaults() -> None:
    s = BondingSettings.from_local_conf({"defaultBondingPolicy": "balance-aware"})
    t = s.template_for(0x0123456789)
    assert s.in_use and t is not None and t.base == BondPolicy.BALANCE_AWARE
    assert (t.failover_interval, t.monitor_interval, t.qos_interval) == (5000, 1666, 10000)
    assert (t.up_delay, t.down_delay, t.packets_per_link, t.reselect) == (0, 0, 64, Reselect.ALWAYS)
    assert (t.quality.lat_max, t.quality.pdv_max, t.quality.plr_max) == (500.0, 100.0, 0.001)


def test_custom_policies_links_and_peer_specific_bonds() -> None:
    conf = {
        "defaultBondingPolicy": "ab",
        "policies": {
            "ab": {
                "basePolicy": "active-backup",
                "failoverInterval": 100,  # raised to the 500 ms minimum
                "activeReselect": "better",
                "links": {
                    "eth0": {"mode": "primary", "failoverTo": "wlan0", "ipvPref": 46},
                    "wlan0": {"capacity": 100, "mtu": 1400},
                },
            },
            "rr": {"basePolicy": "balance-rr", "packetsPerLink": 0},
        },
        "peerSpecificBonds": {"0123456789": "rr", "abcdef0123": "missing"},
    }
    s = BondingSettings.from_local_conf(conf)
    ab = s.template_for(0x1111111111)
    assert ab is not None and ab.name == "ab" and ab.failover_interval == 500
    assert ab.reselect == Reselect.BETTER and ab.user_primary and ab.user_failover
    eth0, wlan0 = ab.links["eth0"], ab.links["wlan0"]
    assert (eth0.mode, eth0.failover_to, eth0.ipv_pref) == (LinkMode.PRIMARY, "wlan0", 46)
    assert (wlan0.mode, wlan0.capacity, wlan0.mtu) == (LinkMode.SPARE, 100, 1400)
    rr = s.template_for(0x0123456789)
    assert rr is not None and rr.base == BondPolicy.BALANCE_RR and rr.packets_per_link == 0
    fallback = s.template_for(0xABCDEF0123)  # names no policy: the default, as the reference
    assert fallback is not None and fallback.name == "ab"


@pytest.mark.parametrize(
    ("conf", "complaint"),
    [
        ({"defaultBondingPolicy": "fastest"}, "unknown bonding policy"),
        ({"policies": {"active-backup": {"basePolicy": "broadcast"}}}, "standard name"),
        ({"policies": {"x": {}}}, "basePolicy is required"),
        ({"policies": {"x": {"basePolicy": "balance-xor", "upDelay": -1}}}, "upDelay"),
        (
            {"policies": {"x": {"basePolicy": "broadcast", "activeReselect": "often"}}},
            "activeReselect",
        ),
        (
            {"policies": {"x": {"basePolicy": "broadcast", "links": {"e": {"mode": "main"}}}}},
            "primary or spare",
        ),
        (
            {"policies": {"x": {"basePolicy": "broadcast", "links": {"e": {"failoverTo": "f"}}}}},
            "spare link may not have failoverTo",
        ),
        (
            {
                "policies": {
                    "x": {
                        "basePolicy": "broadcast",
                        "links": {"e": {"mode": "primary", "failoverTo": "f"}},
                    }
                }
            },
            "names no link",
        ),
        (
            {"policies": {"x": {"basePolicy": "broadcast", "links": {"e": {"ipvPref": 5}}}}},
            "ipvPref",
        ),
        (
            {"policies": {"x": {"basePolicy": "broadcast", "linkQuality": {"lat_max": 1}}}},
            "lacks",
        ),
        ({"peerSpecificBonds": {"xyz": "ab"}}, "not an address"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(
    conf: dict[str, object], complaint: str
) -> None:
    with pytest.raises(BondConfigError, match=complaint):
        BondingSettings.from_local_conf(conf)


def test_link_quality_needs_weights_that_sum_to_one() -> None:
    q = {"lat_max": 300, "pdv_max": 50, "plr_max": 0.01, "per_max": 0.01}
    good = {**q, "lat_weight": 0.5, "pdv_weight": 0.5, "plr_weight": 0.0, "per_weight": 0.0}
    s = BondingSettings.from_local_conf(
        {"policies": {"x": {"basePolicy": "balance-aware", "linkQuality": good}}}
    )
    assert s.policies["x"].quality.lat_max == 300.0
    bad = {**good, "per_weight": 0.5}
    with pytest.raises(BondConfigError, match="sum"):
        BondingSettings.from_local_conf(
            {"policies": {"x": {"basePolicy": "balance-aware", "linkQuality": bad}}}
        )


# ------------------------------------------------------------------ flows


def _ipv4(proto: int, payload: bytes, ihl: int = 5) -> bytes:
    head = bytearray(4 * ihl)
    head[0] = 0x40 | ihl
    head[9] = proto
    return bytes(head) + payload


def _ipv6(next_header: int, payload: bytes) -> bytes:
    head = bytearray(40)
    head[0] = 0x60
    head[6] = next_header
    return bytes(head) + payload


def test_flow_ids_as_the_reference_computes_them() -> None:
    ports = struct.pack(">HH", 40000, 443)
    assert flow_id(0x0800, _ipv4(6, ports + bytes(16))) == 40000 ^ 443 ^ 6
    assert flow_id(0x0800, _ipv4(17, ports + bytes(4), ihl=6)) == 40000 ^ 443 ^ 17
    assert flow_id(0x0800, _ipv4(1, bytes(8))) == NO_FLOW  # ICMP: any path
    assert flow_id(0x0800, _ipv4(6, ports)) == NO_FLOW  # len must exceed header + 4
    assert flow_id(0x0806, bytes(28)) == NO_FLOW  # ARP
    assert flow_id(0x86DD, _ipv6(17, ports + bytes(4))) == 40000 ^ 443 ^ 17
    hop_by_hop = bytes([6, 0]) + bytes(6)  # next header TCP, 8 bytes long
    assert flow_id(0x86DD, _ipv6(0, hop_by_hop + ports + bytes(16))) == 40000 ^ 443 ^ 6
    assert flow_id(0x86DD, _ipv6(44, bytes(8) + ports + bytes(8))) == NO_FLOW  # fragment hdr
    assert flow_id(0x86DD, _ipv6(58, bytes(8))) == NO_FLOW  # ICMPv6
    # Both directions of a connection are one flow.
    back = struct.pack(">HH", 443, 40000)
    assert flow_id(0x0800, _ipv4(6, back + bytes(16))) == 40000 ^ 443 ^ 6


@given(st.sampled_from([0x0800, 0x86DD, 0x0806]), st.binary(max_size=200))
def test_flow_id_never_raises_on_junk(ethertype: int, data: bytes) -> None:
    fid = flow_id(ethertype, data)
    assert fid == NO_FLOW or 0 <= fid <= 0xFFFF


def test_the_flow_table_is_bounded_and_says_what_it_evicted() -> None:
    t = FlowTable(limit=3)
    for i in range(3):
        t.add(i, 0, now=i)
    _, evicted = t.add(9, 0, now=10)
    assert evicted is not None and evicted.id == 0 and t.evicted == 1 and len(t) == 3
    assert [f.id for f in t.expire(now=10 + 243_001)] == [1, 2, 9]


# ------------------------------------------------------------------ QoS arithmetic


def test_qos_samples_odd_ids_and_not_its_own_verbs() -> None:
    assert sampled(0x1001, Verb.FRAME) and sampled(0x1001, Verb.HELLO)
    assert not sampled(0x1000, Verb.FRAME)
    assert not sampled(0x1001, Verb.QOS_MEASUREMENT) and not sampled(0x1001, Verb.ACK)


def test_latency_samples_wrap_like_uint16() -> None:
    assert latency_sample(now=1_000_100, sent=1_000_000, held=20) == 40
    assert latency_sample(now=1_000_101, sent=1_000_000, held=20) == 40  # C truncation
    # Held longer than the round trip: negative, stored as uint16 as the reference does.
    assert latency_sample(now=1_000_010, sent=1_000_000, held=30) == (-10) & 0xFFFF
    assert latency_sample(now=70_000, sent=0, held=0) == ((70_000 & 0xFFFF) // 2)


def _reference_mean(ring: list[int]) -> float:
    """RingBuffer::mean transcribed step by step (slots 0..n-1 filled, begin = 0)."""
    n = len(ring)
    it, total = 0, 0.0
    for _ in range(n):
        it = (it + 64 - 1) % n
        total = f32(total + ring[it])
    return f32(total / n) if n else 0.0


def test_ring_mean_keeps_the_references_stride_quirk() -> None:
    ring = [10, 20, 30]  # count 3 shares a factor with 63: the walk visits slot 0 only
    assert ring_mean(ring) == _reference_mean(ring) == 10.0
    ring7 = [1, 2, 3, 4, 5, 6, 7]  # 63 % 7 == 0: slot 0 seven times
    assert ring_mean(ring7) == 1.0
    ring5 = [1, 2, 3, 4, 5]  # coprime with 63: the true mean
    assert ring_mean(ring5) == 3.0
    rng = random.Random(5)
    for n in range(1, 65):
        r = [rng.randrange(0, 2000) for _ in range(n)]
        assert ring_mean(r) == _reference_mean(r)


def test_ring_stddev_divides_by_63_and_sums_in_uint16() -> None:
    ring = [10, 12, 14, 16]  # mean 10 (stride 63 mod 4 = 3: slots 3, 2, 1, 0 -> 13 exactly?)
    mean = ring_mean(ring)
    assert mean == 13.0
    expected = math.sqrt(sum(int((x - mean) ** 2) for x in ring) / 63)
    assert ring_stddev(ring) == pytest.approx(expected, rel=1e-6)
    # Squared deviations past 65535 lose their high bits in the uint16 accumulator.
    wide = [0, 1000, 0, 1000, 0]  # coprime count: mean 400
    acc = sum(int((x - 400.0) ** 2) & 0xFFFF for x in wide) & 0xFFFF
    assert ring_stddev(wide) == pytest.approx(math.sqrt(acc / 63), rel=1e-6)


def test_a_qos_round_trip_between_two_trackers() -> None:
    sender, receiver = QosTracker(), QosTracker()
    sent_at = {}
    for i in range(1, 400, 2):  # odd ids: sampled
        sender.record_out(i, now=1000 + i)
        sent_at[i] = 1000 + i
        receiver.record_in(i, now=1000 + i + 25)  # 25 ms one way
    assert receiver.needs_report(now=2000, interval=10_000)  # a full table's worth
    report = receiver.report(now=1500)
    assert len(report) == 140 and [r.packet_id for r in report] == sorted(sent_at)[:140]
    matched = sender.receive_report(report, now=1500 + 25)
    assert matched == 140 and len(sender.ring) == 64
    sender.summarize()
    assert sender.latency == 25.0 and sender.latency_variance == 0.0
    # Unknown ids are ignored; stale samples expire after 3 x qosSendInterval.
    assert sender.receive_report([QosRecord(2, 0)], now=1600) == 0
    sender.expire(now=1000 + 400 + 30_000, timeout=30_000)
    assert not sender.out


def test_acks_turn_into_a_smoothed_throughput() -> None:
    from ztnode.core.bond.link import BondPath
    from ztnode.core.bond.settings import LinkSpec
    from ztnode.core.path import Path

    bp = BondPath(Path(("10.0.0.1", 9993), ("10.0.0.2", 9993)), LinkSpec("eth0"), now=0)
    bp.ack_received(5_000, now=1_000)  # the first only starts the clock
    assert bp.throughput == 0.0
    bp.ack_received(2_000_000, now=3_000)  # 2 MB in 2 s
    assert bp.throughput == 1_000_000.0
    bp.ack_received(0, now=5_000)  # idle: the estimate decays, it does not jump
    assert bp.throughput == 750_000.0
