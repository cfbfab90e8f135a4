"""Parsing and checking Prometheus text as `/metrics` serves it."""

from __future__ import annotations

import re

# ZeroTierOne 1.12+'s node metrics (node/Metrics.cpp): name -> type and label names. ztnode
# serves these where it has the same quantity, and its own under ``ztnode_``.
ZT_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "zt_packet": ("counter", frozenset({"packet_type", "direction"})),
    "zt_packet_error": ("counter", frozenset({"error_type", "direction"})),
    "zt_data": ("counter", frozenset({"protocol", "direction"})),
    "zt_num_networks": ("gauge", frozenset()),
    "zt_network_multicast_groups_subscribed": ("gauge", frozenset({"network_id"})),
    "zt_network_packets": ("counter", frozenset({"direction", "network_id", "accepted"})),
    "zt_peer_latency": ("histogram", frozenset({"node_id"})),
    "zt_peer_path_count": ("gauge", frozenset({"node_id", "status"})),
    "zt_peer_packets": ("counter", frozenset({"direction", "node_id"})),
    "zt_peer_packet_errors": ("counter", frozenset({"node_id"})),
}


# ZeroTierOne's packet_type label values (one per verb).
ZT_PACKET_TYPES = {
    "nop", "error", "ack", "qos", "hello", "ok", "whois", "rendezvous", "frame", "ext_frame",
    "echo", "multicast_like", "network_credentials", "network_config_request",
    "network_config", "multicast_gather", "multicast_frame", "push_direct_paths",
    "user_message", "remote_trace", "path_negotiation_request",
}  # fmt: skip


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (\S+)$'
)


_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Every line is a comment or ``name{labels} value``; samples by (name, labels), and the
    TYPE of every family (declared before its samples, once)."""
    samples: Samples = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped and name not in types, line
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m is not None, f"not a Prometheus sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        assert name in types, f"{name} has no TYPE before its samples"
        key = (name, frozenset(_LABEL.findall(labels)))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def check_zerotier_names(samples: Samples, types: dict[str, str]) -> None:
    """zt_* families are ZeroTierOne's, with its type and label names; ztnode's are ztnode_*."""
    for name, kind in types.items():
        if name.startswith("zt_"):
            assert name in ZT_METRICS, name
            assert kind == ZT_METRICS[name][0], (name, kind)
        else:
            assert name.startswith("ztnode_"), name
    for (name, labels), v in samples.items():
        assert v >= 0, (name, labels)
        if name in ZT_METRICS:
            assert {k for k, _ in labels} == ZT_METRICS[name][1], (name, labels)
        if name == "zt_packet":
            assert dict(labels)["packet_type"] in ZT_PACKET_TYPES, labels
            assert dict(labels)["direction"] in ("rx", "tx"), labels
