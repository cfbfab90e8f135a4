"""IGMP and MLD from the stack, checked with scapy as the oracle: unsolicited reports when a
group is joined (and again a second later), leaves, answers to general and group queries,
and the older versions while an older querier is heard."""

from __future__ import annotations

import random
import warnings
from ipaddress import IPv4Address, ip_interface

with warnings.catch_warnings():  # scapy moves these to scapy.layers.igmp, renamed
    warnings.simplefilter("ignore", DeprecationWarning)
    from scapy.contrib.igmp import IGMP
    from scapy.contrib.igmpv3 import IGMPv3, IGMPv3mq, IGMPv3mr
from scapy.layers.inet import IP
from scapy.layers.inet6 import (
    ICMPv6MLQuery,
    ICMPv6MLQuery2,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    IPv6,
    IPv6ExtHdrHopByHop,
)

from ztnode.netstack.igmp import OLDER_QUERIER_MS, link_local_from_mac
from ztnode.netstack.multicast import solicited_node_address
from ztnode.netstack.stack import IpStack

MAC = 0x32AABBCCDDEE
V4, V6 = "10.9.0.1", "fd00::1"
GROUP = IPv4Address("239.1.2.3")
ETH_IP4, ETH_IP6 = 0x0800, 0x86DD


def make(*, v6: bool = False) -> IpStack:
    s = IpStack(MAC, random_bytes=random.Random(4).randbytes)
    s.set_addresses([ip_interface(f"{V6 if v6 else V4}/{88 if v6 else 24}")])
    return s


def igmp_sent(s: IpStack, now: int) -> list[IP]:
    frames = s.frames_to_send(now)
    return [IP(p) for mac, et, p in frames if et == ETH_IP4 and p[9] == 2]


def mld_sent(s: IpStack, now: int) -> list[IPv6]:
    frames = s.frames_to_send(now)
    return [IPv6(p) for mac, et, p in frames if et == ETH_IP6 and p[6] == 0]


def valid(p: IP) -> bool:
    """scapy recomputes both checksums and agrees; TTL 1 and Router Alert, as RFC 3376 says."""
    again = IP(bytes(p.__class__(bytes(p))))
    rebuilt = p.copy()
    del rebuilt[IP].chksum
    rebuilt[IP].payload.chksum = None
    return (
        p[IP].ttl == 1
        and any(o.option == 20 for o in p[IP].options)  # Router Alert
        and bytes(IP(bytes(rebuilt))) == bytes(again)
    )


def query_answered_at(s: IpStack, query: object, now: int) -> int:
    """A querier's IPv4 query reaches the stack at ``now``; the answer is due (and made) at
    the returned time, within the query's maximum response time."""
    packet = bytes(IP(src="10.9.0.254", dst="224.0.0.1", ttl=1) / query)  # type: ignore[operator]
    s.receive_frame(0x0200000000AA, 0x01005E000001, ETH_IP4, packet, now)
    when = s.get_timer()
    assert when is not None
    s.handle_timer(when)
    return when


def test_join_reports_twice_and_leave_says_so() -> None:
    s = make()
    s.frames_to_send(0)  # the address settles (no IPv6: nothing to report yet)
    s.join_group(GROUP)
    (report,) = igmp_sent(s, 10)
    assert report.dst == "224.0.0.22" and valid(report)
    mr = IGMPv3(bytes(report[IP].payload))
    assert mr.type == 0x22
    records = mr[IGMPv3mr].records
    assert [(r.rtype, r.maddr) for r in records] == [(4, str(GROUP))]  # CHANGE_TO_EXCLUDE
    assert s.get_timer() == 1010
    s.handle_timer(1010)
    assert len(igmp_sent(s, 1010)) == 1  # the robustness repeat
    s.leave_group(GROUP)
    (leave,) = igmp_sent(s, 2000)
    assert [r.rtype for r in IGMPv3(bytes(leave[IP].payload))[IGMPv3mr].records] == [3]


def test_general_query_is_answered_within_its_time_and_v2_querier_switches_versions() -> None:
    s = make()
    s.join_group(GROUP)
    s.frames_to_send(0)
    s.handle_timer(1000)
    s.frames_to_send(1000)
    query = IGMPv3(type=0x11, mrcode=50) / IGMPv3mq(gaddr="0.0.0.0")  # 5 s
    deadline = query_answered_at(s, query, 2000)
    assert 2000 <= deadline <= 7000
    (answer,) = igmp_sent(s, deadline)
    records = IGMPv3(bytes(answer[IP].payload))[IGMPv3mr].records
    assert [(r.rtype, r.maddr) for r in records] == [(2, str(GROUP))]  # MODE_IS_EXCLUDE
    # An IGMPv2 querier: v2 reports to the group itself from now on.
    v2q = IGMP(type=0x11, mrcode=100, gaddr="0.0.0.0")
    when = query_answered_at(s, v2q, 10_000)
    (v2,) = igmp_sent(s, when)
    assert v2.dst == str(GROUP) and IGMP(bytes(v2[IP].payload)).type == 0x16 and valid(v2)
    other = IPv4Address("239.9.9.9")
    s.join_group(other)
    assert [p.dst for p in igmp_sent(s, when + 1)] == [str(other)]
    # ... until the v2 querier has been silent long enough.
    later = 10_000 + OLDER_QUERIER_MS + 1
    s.join_group(IPv4Address("239.8.8.8"))
    assert [p.dst for p in igmp_sent(s, later)] == ["224.0.0.22"]


def test_mld_reports_solicited_node_groups_from_the_link_local_address() -> None:
    s = make(v6=True)
    (report,) = mld_sent(s, 0)
    assert report.dst == "ff02::16" and report.hlim == 1
    assert report.src == str(link_local_from_mac(MAC))
    assert IPv6ExtHdrHopByHop in report and ICMPv6MLReport2 in report
    mr = report[ICMPv6MLReport2]
    checked = IPv6(bytes(report))
    del checked[ICMPv6MLReport2].cksum
    assert IPv6(bytes(checked))[ICMPv6MLReport2].cksum == mr.cksum
    sn = str(solicited_node_address(ip_interface(f"{V6}/88").ip))  # type: ignore[arg-type]
    assert [(r.rtype, r.dst) for r in mr.records] == [(4, sn)]
    s.handle_timer(1000)
    assert len(mld_sent(s, 1000)) == 1  # the repeat
    # An MLDv1 query for the group: a v1 report to the group.
    q = (
        IPv6(src="fe80::99", dst="ff02::1", hlim=1)
        / IPv6ExtHdrHopByHop()
        / ICMPv6MLQuery(mrd=1000, mladdr=sn)
    )
    s.receive_frame(0x0200000000AA, 0x333300000001, ETH_IP6, bytes(q), 5000)
    when = s.get_timer()
    assert when is not None and 5000 <= when <= 6000
    s.handle_timer(when)
    (v1,) = mld_sent(s, when)
    assert v1.dst == sn and ICMPv6MLReport in v1
    # An MLDv2 general query (after the v1 querier is gone): v2 current-state records.
    q2 = (
        IPv6(src="fe80::99", dst="ff02::1", hlim=1)
        / IPv6ExtHdrHopByHop()
        / ICMPv6MLQuery2(mrd=1000)
    )
    t = 5000 + OLDER_QUERIER_MS + 1
    s.receive_frame(0x0200000000AA, 0x333300000001, ETH_IP6, bytes(q2), t)
    when = s.get_timer()
    assert when is not None
    s.handle_timer(when)
    (v2,) = mld_sent(s, when)
    assert [(r.rtype, r.dst) for r in v2[ICMPv6MLReport2].records] == [(2, sn)]


def test_source_specific_joins_report_their_sources_and_filter_input() -> None:
    from scapy.layers.inet import UDP

    s = make()
    s.frames_to_send(0)
    s1, s2, s3 = IPv4Address("10.9.0.7"), IPv4Address("10.9.0.8"), IPv4Address("10.9.0.9")
    s.join_group(GROUP, s1)

    def records(now: int) -> list[tuple[int, str, list[str]]]:
        (p,) = igmp_sent(s, now)
        recs = IGMPv3(bytes(p[IP].payload))[IGMPv3mr].records
        return [(r.rtype, r.maddr, list(r.srcaddrs)) for r in recs]

    assert records(10) == [(5, str(GROUP), [str(s1)])]  # ALLOW_NEW_SOURCES
    s.join_group(GROUP, s2)
    assert records(20) == [(5, str(GROUP), [str(s2)])]
    s.leave_group(GROUP, s1)
    assert records(30) == [(6, str(GROUP), [str(s1)])]  # BLOCK_OLD_SOURCES
    s.handle_timer(1030)  # the repeats: only the last change still holds
    assert [r[0] for r in records(1030)] == [6]
    query = IGMPv3(type=0x11, mrcode=10) / IGMPv3mq(gaddr="0.0.0.0")
    when = query_answered_at(s, query, 2000)
    assert records(when) == [(1, str(GROUP), [str(s2)])]  # MODE_IS_INCLUDE
    # Datagrams to the group: from s2 taken, from s3 filtered.
    sock = s.udp_bind(None, 5000)
    for src in (s2, s3):
        dgram = IP(src=str(src), dst=str(GROUP)) / UDP(sport=9, dport=5000) / b"x"
        s.receive_frame(0x0200000000BB, 0x01005E010203, ETH_IP4, bytes(dgram), 3000)
    got = sock.recv()
    assert got is not None and got[1][0] == str(s2) and sock.recv() is None
    assert s.counters["multicast_source_filtered"] == 1
