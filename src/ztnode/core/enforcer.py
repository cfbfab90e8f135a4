"""A joined network's rules in force: which frames VL2 may send and deliver.

:mod:`ztnode.core.filter` is the stateless engine; this module keeps, per network, what the
engine is run with and what it decided:

* from our config: the base rules, our capabilities (tried in id order), our tags and ownership
  certificates, the "unsupported match" flag, and the network's NDP-emulated IPv6 prefixes;
* per other member, the :class:`~ztnode.core.filter.Party` its credentials make (tags and
  ownership certificates in force, §5.5: timestamp within ``ctmd`` of our config's and above
  any revocation) and the capabilities it presented that are in force; cached on the membership
  and rebuilt when its credentials or our config change;
* counts of what was decided, by direction and outcome, for ``/metrics``.

It also answers two questions the send paths ask before the per-frame work: whether the rules
accept everything (a default network: nothing to evaluate) and whether a burst of TCP pieces
may be judged by its first and last piece (no rule that tells equal-looking pieces apart or
copies frames).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ztnode.budget import SecondBudget
from ztnode.core.filter import (
    FLAG_REDIRECT_IN,
    FLAG_REDIRECT_OUT,
    Decision,
    FilterEnv,
    Frame,
    Party,
    Prepared,
    Program,
    Verdict,
    evaluate_logged,
    filter_inbound,
    filter_outbound,
    ipv6_payload,
    is_accept_all,
    prepare,
)
from ztnode.core.tracer import traces_rules
from ztnode.wire.credentials import Capability, CredentialType
from ztnode.wire.netconf import NetconfFlag, NetworkConfig
from ztnode.wire.rules import Characteristic, MatchCharacteristics, Rule, RuleType

if TYPE_CHECKING:
    from ztnode.core.network import Membership

__all__ = ["LOG_LINES_PER_SECOND", "Enforcer"]

#: Decisions remembered per network, by flow (cleared when full, and on every config).
FLOW_CACHE_MAX: Final = 4096
#: Prepared capabilities of other members kept per network (each a handful of rules).
PREPARED_CAPS_MAX: Final = 1024
#: Debug lines about dropped frames per network and second (the rest are only counted).
LOG_LINES_PER_SECOND: Final = 20

#: Rule types that can tell apart pieces of one TCP burst which differ only in sequence
#: numbers, lengths, checksums and the last piece's PSH/FIN (or that act per frame): with any of
#: them every piece is judged alone.
_PER_FRAME_TYPES: Final = frozenset(
    (
        RuleType.ACTION_TEE,
        RuleType.ACTION_WATCH,
        RuleType.ACTION_REDIRECT,
        RuleType.MATCH_RANDOM,
        RuleType.MATCH_INTEGER_RANGE,
    )
)


def _burst_safe(rules: tuple[Rule, ...] | list[Rule]) -> bool:
    return not any(r.type_code in _PER_FRAME_TYPES for r in rules)


def _flow_safe(rules: tuple[Rule, ...] | list[Rule]) -> bool:
    """Rules whose decision is the same for every frame of a flow with the same headers (see
    ``_flow_key``): nothing random, nothing reading the payload or the frame's length, and no
    copies (whose length is the frame's)."""
    return _burst_safe(rules) and not any(
        r.type_code == RuleType.MATCH_FRAME_SIZE_RANGE for r in rules
    )


def _flow_key(
    inbound: bool, member: int, frame: Frame, m: Membership | None, generation: int
) -> tuple[object, ...] | None:
    """Everything a flow-safe rule list can read of a frame, as a dictionary key: the
    addressing, the member's credentials version, and the header bytes the matches look at
    (IPv4 or IPv6 header fields, then ports and TCP flags, or ICMP type and code). None for
    frames not worth caching (ARP, ICMPv6 with its NDP special cases, other ethertypes)."""
    d = frame.data
    et = frame.ethertype
    n = len(d)
    if et == 0x0800 and n >= 20:
        hl = (d[0] & 0x0F) * 4
        proto = d[9]
        head = bytes(d[0:2]) + bytes(d[9:10]) + bytes(d[12:20])
    elif et == 0x86DD and n >= 40:
        walked = ipv6_payload(d)
        if walked is None or walked[1] == 0x3A:
            return None
        hl, proto = walked
        head = bytes(d[0:2]) + bytes(d[6:7]) + bytes(d[8:40]) + bytes((hl & 0xFF, hl >> 8, proto))
    else:
        return None
    if proto == 6:
        tail = bytes(d[hl : hl + 4]) + bytes(d[hl + 12 : hl + 14])
    elif proto in (17, 132, 136):
        tail = bytes(d[hl : hl + 4])
    elif proto == 1:
        tail = bytes(d[hl : hl + 2])
    else:
        tail = b""
    creds = m.credentials_version if m is not None else -1
    return (
        inbound,
        member,
        creds,
        generation,
        frame.mac_source,
        frame.mac_dest,
        et,
        n > hl + 4,
        n > hl + 14,
        head + tail,
    )


def _coalesce_safe(rules: tuple[Rule, ...] | list[Rule]) -> bool:
    """Received segments joined by the transport are judged as one frame: its size and its PSH
    bit are the joined segment's, so rules reading either must see every piece."""
    return _burst_safe(rules) and not any(
        r.type_code == RuleType.MATCH_FRAME_SIZE_RANGE
        or (isinstance(r, MatchCharacteristics) and r.mask & Characteristic.TCP_PSH)
        for r in rules
    )


class Enforcer:
    """The rules of one network as this member applies them (see the module docstring)."""

    def __init__(
        self,
        me: int,
        network_id: int,
        random32: Callable[[], int],
        ndp_prefixes: Callable[[NetworkConfig], tuple[bytes, ...]],
    ) -> None:
        self.me = me
        self.network_id = network_id
        self._random32 = random32
        self._ndp_prefixes = ndp_prefixes
        self.config: NetworkConfig | None = None
        self.rules: tuple[Rule, ...] = ()
        self.capabilities: tuple[Capability, ...] = ()
        self.program = Program.of(())
        self.own_caps: list[Prepared] = []
        #: Members' capabilities prepared for evaluation, by identity of the credential (at
        #: most PREPARED_CAPS_MAX; cleared when full, rebuilt on use).
        self._prepared: dict[int, tuple[Capability, Prepared, bool]] = {}
        #: Decisions by flow (see ``_flow_key``) while the rules allow it (``cacheable``).
        self._flows: dict[tuple[object, ...], Decision] = {}
        self.cacheable = False
        self.env = FilterEnv(me, Party(), random32)
        self.accept_all = False
        #: The config's trace target wants a record of every rules decision (level >= 15).
        self.trace_rules = False
        self.burst_safe = True
        self.prefixes: tuple[bytes, ...] = ()
        #: May the transport join received TCP segments (GRO) before the rules see them?
        self.coalesce_safe = True
        #: Bumped on every config: cached parties of other members from before are stale.
        self.generation = 0
        #: Decisions by ``(direction, outcome)``: ``("out"|"in", "accept"|"drop"|...)``.
        self.counts: Counter[tuple[str, str]] = Counter()
        self._log_budget = SecondBudget()

    def may_log(self, now: int) -> bool:
        """At most LOG_LINES_PER_SECOND debug lines a second about dropped frames: a flood of
        frames the rules drop must not become a flood of log lines."""
        return self._log_budget.take(now, LOG_LINES_PER_SECOND)

    def configure(self, cfg: NetworkConfig) -> None:
        """A new config: its rules, our capabilities and credentials take effect now."""
        self.config = cfg
        self.rules = cfg.rules
        self.capabilities = tuple(sorted(cfg.capabilities, key=lambda c: c.id))
        self.program = Program.of(cfg.rules)
        self.own_caps = [prepare(c) for c in self.capabilities]
        own = Party({t.id: t.value for t in cfg.tags}, cfg.certificates_of_ownership)
        unsupported = bool(cfg.flags & NetconfFlag.RULES_RESULT_OF_UNSUPPORTED_MATCH)
        self.env = FilterEnv(self.me, own, self._random32, unsupported)
        # A trace target at level RULES sees every frame judged (Network.cpp:756-928), so no
        # frame may skip the rules, go in a burst judged by its ends, or be joined unjudged.
        self.trace_rules = traces_rules(cfg.remote_trace_target, cfg.remote_trace_level)
        self.accept_all = is_accept_all(cfg.rules) and not self.trace_rules
        self.burst_safe = (
            not self.trace_rules
            and _burst_safe(cfg.rules)
            and all(_burst_safe(c.rules) for c in self.capabilities)
        )
        self.prefixes = self._ndp_prefixes(cfg)
        self.cacheable = not self.accept_all and (
            _flow_safe(cfg.rules) and all(_flow_safe(c.rules) for c in self.capabilities)
        )
        self._flows.clear()
        self.coalesce_safe = not self.trace_rules and (
            self.accept_all
            or (
                _coalesce_safe(cfg.rules)
                and all(_coalesce_safe(c.rules) for c in self.capabilities)
            )
        )
        self.generation += 1

    def note_capability(self, cap: Capability) -> None:
        """A member presented a capability: if its rules could judge a joined TCP segment
        differently from its pieces, stop joining them (until the next config)."""
        if not self.accept_all and not _coalesce_safe(cap.rules):
            self.coalesce_safe = False

    # --- the other member's credentials ---------------------------------------------------------

    def _in_force(self, m: Membership, kind: CredentialType, cred_id: int, ts: int) -> bool:
        cfg = self.config
        if cfg is None or abs(ts - cfg.timestamp) > cfg.credential_time_max_delta:
            return False
        threshold = m.thresholds.get((int(kind), cred_id))
        return threshold is None or ts > threshold

    def party(self, m: Membership) -> Party:
        """What the rules see of a member: tags and ownership certificates in force."""
        cached = m.party
        if cached is not None and cached[0] == (self.generation, m.credentials_version):
            return cached[1]
        tags = {
            t.id: t.value
            for t in m.tags.values()
            if self._in_force(m, CredentialType.TAG, t.id, t.timestamp)
        }
        coos = tuple(
            c for c in m.coos.values() if self._in_force(m, CredentialType.COO, c.id, c.timestamp)
        )
        p = Party(tags, coos, self.prefixes)
        m.party = ((self.generation, m.credentials_version), p)
        return p

    def presented_capabilities(self, m: Membership) -> list[Prepared]:
        """The capabilities a member presented that are in force, prepared, in id order."""
        return self._presented(m)[0]

    def _presented(self, m: Membership) -> tuple[list[Prepared], bool]:
        """:meth:`presented_capabilities`, and whether all of them allow the flow cache."""
        out: list[Prepared] = []
        cacheable = True
        for c in m.capabilities.values():
            if not self._in_force(m, CredentialType.CAPABILITY, c.id, c.timestamp):
                continue
            held = self._prepared.get(id(c))
            if held is None or held[0] is not c:
                if len(self._prepared) >= PREPARED_CAPS_MAX:
                    self._prepared.clear()
                held = self._prepared[id(c)] = (c, prepare(c), _flow_safe(c.rules))
            out.append(held[1])
            cacheable = cacheable and held[2]
        out.sort(key=lambda p: p[0])
        return out, cacheable

    # --- decisions ----------------------------------------------------------------------------

    def outbound(
        self,
        dest: int,
        frame: Frame,
        membership: Membership | None,
        *,
        no_tee: bool = False,
        weight: int = 1,
    ) -> Decision:
        """A frame we send to member ``dest`` (0: multicast first pass or unknown bridge)."""
        key = None
        if self.cacheable:
            key = _flow_key(False, dest, frame, membership, self.generation)
            d = self._flows.get(key) if key is not None else None
            if d is not None:
                if weight:
                    self.counts["out", _outcome(d)] += weight
                return d
        d = filter_outbound(
            self.program,
            self.own_caps,
            self.env,
            zt_dest=dest,
            frame=frame,
            remote=self.party(membership) if membership is not None else None,
            no_tee=no_tee,
        )
        if key is not None:
            self._remember(key, d)
        if weight:
            self.counts["out", _outcome(d)] += weight
        return d

    def _remember(self, key: tuple[object, ...], d: Decision) -> None:
        if len(self._flows) >= FLOW_CACHE_MAX:
            self._flows.clear()
            self.counts["cache", "flushed"] += 1
        self._flows[key] = d

    def inbound(self, source: int, frame: Frame, membership: Membership) -> Decision:
        """A frame member ``source`` sent us."""
        key = None
        caps, caps_cacheable = self._presented(membership)
        if self.cacheable and caps_cacheable:
            key = _flow_key(True, source, frame, membership, self.generation)
            d = self._flows.get(key) if key is not None else None
            if d is not None:
                self.counts["in", _outcome(d)] += 1
                return d
        d = filter_inbound(
            self.program,
            caps,
            self.env,
            zt_source=source,
            frame=frame,
            remote=self.party(membership),
        )
        if key is not None:
            self._remember(key, d)
        self.counts["in", _outcome(d)] += 1
        return d

    def rule_logs(
        self, inbound: bool, peer: int, frame: Frame, membership: Membership | None
    ) -> tuple[bytes, tuple[int, bytes] | None]:
        """For a trace of a decision: the base rules' result log, and the accepting
        capability's id and log if one accepted (the only one the reference reports). ``peer``
        is the sender inbound, the destination (0: none yet) outbound."""
        remote = self.party(membership) if membership is not None else None
        src, dst = (peer, self.me) if inbound else (self.me, peer)

        def run(program: Program) -> tuple[Verdict, bytes]:
            return evaluate_logged(
                program,
                self.env,
                inbound=inbound,
                zt_source=src,
                zt_dest=dst,
                frame=frame,
                remote=remote,
            )

        verdict, base = run(self.program)
        if verdict != Verdict.NO_MATCH:
            return base, None
        caps = self.own_caps
        if inbound:
            caps = self.presented_capabilities(membership) if membership is not None else []
        for cap_id, program in caps:
            v, log = run(program)
            if v not in (Verdict.NO_MATCH, Verdict.DROP):
                return base, (cap_id, log)
        return base, None


def _outcome(d: Decision) -> str:
    if d.accept:
        return "accept" if d.capability is None else "accept_capability"
    if any(c.flags in (FLAG_REDIRECT_OUT, FLAG_REDIRECT_IN) for c in d.copies):
        return "redirect"
    return "drop" if d.verdict == Verdict.DROP else "no_match"
