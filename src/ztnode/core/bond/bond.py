"""A bond with one peer: its paths, their eligibility, and which one each packet takes.

The policies follow ZeroTierOne 1.14.1 ``node/Bond.cpp`` (``shared/reference/
protocol-multipath.md`` section 6): ``curateBond`` (eligibility, the bonded set per link),
``estimatePathQuality`` (the QoS figures and relative qualities), ``getAppropriatePath`` and
the policies' own tasks (active-backup's failover queue and reselection, balance-* flow
moves). Sans-I/O: :meth:`Bond.tick` returns the probes and QoS reports to send and the events.

Deliberate differences, each because the reference's behaviour is an accident:

* capacities left unset mean equal links (the reference divides 0 by 0 and ends up with no
  relative quality at all, and balance-aware then indexes past its table);
* a link configured ``"enabled": false`` carries nothing (the reference reads and ignores it);
* ``packetsPerLink`` from a custom policy is used (the reference never copies it to bonds);
* balance-aware gives a new flow the least loaded acceptable path (flows per unit of
  capacity), where the reference draws one at random;
* a path's 15 s trial excuses it only from the QoS requirement: a path silent past
  failoverInterval (or dead to probes, see :mod:`.link`) is not kept eligible by its trial;
* the avoidance of a path over a quality limit is decided afresh at each estimate (the
  reference clears it at every other estimate, so a bad path alternates in and out).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ztnode.core.bond.flows import NO_FLOW, Flow, FlowTable
from ztnode.core.bond.link import OPTIMIZE_INTERVAL, PROBE_SPACING, BondPath
from ztnode.core.bond.qos import is_frame, sampled
from ztnode.core.bond.settings import (
    BALANCING,
    BondPolicy,
    LinkMode,
    LinkSpec,
    PolicyTemplate,
    Reselect,
)
from ztnode.core.path import Path
from ztnode.wire.constants import MAX_PHYSMTU, MIN_PHYSMTU, Verb
from ztnode.wire.verbs.multipath import QosRecord

MAX_BOND_PATHS: Final = 64  # ZT_MAX_PEER_NETWORK_PATHS
EXPIRED_PATH_TRIAL_PERIOD: Final = 600_000  # ineligible this long: dropped from the bond
PEER_PATH_EXPIRATION: Final = 4 * 60_000 + 3_000
HANDICAP_PREFERRED: Final = 500
HANDICAP_PRIMARY: Final = 1000
OPTIMIZE_MIN_THRESHOLD: Final = 0.10
LEGACY_ECHO_SPACING: Final = 1_050  # ZeroTierOne < 1.10 answers one ECHO per peer per second
BUSY_WINDOW: Final = 2_000  # frames within this long: links are probed fast (fastFailover)
QOS_GATE_LIMIT: Final = 128


@dataclass(slots=True)
class LinkChange:
    """A path of the bond became (in)eligible, or active-backup changed its active path."""

    kind: str  # "up", "down" or "active"
    path: Path
    previous: Path | None = None
    reason: str = ""


@dataclass(slots=True)
class TickWork:
    """What one tick asks the node to send, and what changed."""

    probes: list[BondPath] = field(default_factory=list)
    reports: list[tuple[BondPath, list[QosRecord]]] = field(default_factory=list)
    acks: list[tuple[BondPath, int]] = field(default_factory=list)
    changes: list[LinkChange] = field(default_factory=list)


def auto_link(name: str) -> LinkSpec:
    """A link nobody configured: the reference creates it as a primary with no capacity."""
    return LinkSpec(name, LinkMode.PRIMARY, user_specified=False)


class Bond:
    """See the module docstring. ``link_of`` names the local interface of a path's socket."""

    def __init__(
        self,
        peer: int,
        template: PolicyTemplate,
        now: int,
        rng: random.Random,
        link_of: Callable[[Path], str],
    ) -> None:
        self.peer = peer
        self.template = template
        self.policy = template.base
        self.rng = rng
        self._link_of = link_of
        self.paths: list[BondPath] = []
        self.bonded: list[BondPath] = []  # balance-*: the reference's _realIdxMap order
        self.active: BondPath | None = None  # active-backup
        self.queue: list[BondPath] = []  # active-backup failover queue (insertion order)
        self.flows = FlowTable()
        self.created = now
        self.rr_index = 0
        self.rr_sent = 0
        self.last_frame = 0
        self.last_data = 0  # FRAME or EXT_FRAME either way (not our probes): "busy"
        self.last_quality_estimation = now
        self.last_flow_expiration = now
        self.last_active_change = 0
        #: Times active-backup moved off a path it had chosen (``bond rotate`` included).
        self.failovers = 0
        #: The peer answers one ECHO per second in all (ZeroTierOne before 1.10 gates ECHO
        #: per peer, later versions per path): heartbeats are spaced for it and the fast
        #: probing is off (its misses would be the gate's, not the link's).
        self.legacy_echo = False
        self._last_any_probe = -(10**12)
        self._qos_gate_at = 0
        self._qos_gate_count = 0
        self.qos_gated = 0

    # ------------------------------------------------------------------ membership

    def find(self, path: Path) -> BondPath | None:
        for bp in self.paths:
            if bp.path is path:
                return bp
        return None

    def nominate(self, path: Path, now: int) -> BondPath | None:
        """Add a (confirmed) path; None when its link is not allowed by the policy."""
        existing = self.find(path)
        if existing is not None:
            return existing
        name = self._link_of(path)
        spec = self.template.link(name)
        if spec is None:
            if self.template.user_links:
                return None  # the user listed the links; this one is not among them
            spec = auto_link(name)
        if len(self.paths) >= MAX_BOND_PATHS:
            return None
        bp = BondPath(path, spec, now)
        if spec.mtu:
            path.mtu = clamp_mtu(spec.mtu)
        for other in self.paths:
            if other.link.name == spec.name:
                other.only_path_on_link = bp.only_path_on_link = False
        self.paths.append(bp)
        self.curate(now, rebuild=True, work=None)
        self.estimate_quality(now)
        return bp

    def remove(self, path: Path) -> None:
        bp = self.find(path)
        if bp is None:
            return
        self.paths.remove(bp)
        if bp in self.bonded:
            self.bonded.remove(bp)
            self._reset_rr()
        if bp in self.queue:
            self.queue.remove(bp)
        if self.active is bp:
            self.active = None
        for flow in self.flows:
            if flow.slot == id(bp):
                self._reassign(flow, 0)

    @property
    def ready(self) -> bool:
        """The bond decides paths (else the peer's ordinary best path is used)."""
        if self.policy == BondPolicy.ACTIVE_BACKUP:
            return self.active is not None
        if self.policy == BondPolicy.BROADCAST:
            return any(bp.eligible for bp in self.paths)
        return bool(self.bonded)

    # ------------------------------------------------------------------ per packet

    def select(self, now: int, flow: int = NO_FLOW, count: int = 1) -> Path | None:
        """getAppropriatePath: the path for a packet (``count`` packets for a burst)."""
        policy = self.policy
        if policy == BondPolicy.ACTIVE_BACKUP:
            return self.active.path if self.active is not None else None
        if policy == BondPolicy.BROADCAST:
            live = self.broadcast_paths()
            return live[0] if live else None
        bonded = self.bonded
        if not bonded:
            return None
        if policy == BondPolicy.BALANCE_RR:
            return self._round_robin(count).path
        if flow == NO_FLOW:
            return bonded[self.rng.randrange(len(bonded))].path
        f = self.flows.get(flow)
        if f is None:
            f = self._new_flow(flow, None, now)
        f.last_activity = now
        return self._flow_path(f).path

    def broadcast_paths(self) -> list[Path]:
        """Broadcast policy: every eligible path carries each frame."""
        return [bp.path for bp in self.paths if bp.eligible and bp.allowed()]

    def _round_robin(self, count: int) -> BondPath:
        bonded = self.bonded
        ppl = self.template.packets_per_link
        if ppl == 0:
            return bonded[self.rng.randrange(len(bonded))]
        if self.rr_index >= len(bonded):
            self.rr_index = 0
        if self.rr_sent < ppl:
            self.rr_sent += count
            return bonded[self.rr_index]
        self.rr_sent = count
        n = len(bonded)
        for step in range(1, n + 1):
            idx = (self.rr_index + step) % n
            if bonded[idx].eligible:
                self.rr_index = idx
                break
        return bonded[self.rr_index]

    def _reset_rr(self) -> None:
        self.rr_sent = self.template.packets_per_link
        self.rr_index = 0

    def record_out(
        self, path: Path, packet_id: int, verb: int, size: int, flow: int, now: int
    ) -> None:
        bp = self.find(path)
        if bp is None:
            return
        if is_frame(verb):
            bp.packets_out += 1
            self.last_frame = now
            if verb != Verb.ECHO:
                self.last_data = now
        bp.bytes_out += size
        if sampled(packet_id, verb):
            bp.qos.record_out(packet_id, now)
        if flow != NO_FLOW:
            f = self.flows.get(flow)
            if f is not None:
                f.bytes_out += size

    def record_in(
        self, path: Path, packet_id: int, verb: int, size: int, flow: int, now: int
    ) -> None:
        """recordIncomingPacket, after authentication; also this path's liveness."""
        bp = self.find(path)
        if bp is None:
            return
        if not bp.alive:
            bp.last_alive_toggle = now
        bp.received(now)
        bp.bytes_in += size
        bp.bytes_since_ack += size
        if bp.allowed():
            if is_frame(verb):
                bp.packets_in += 1
                self.last_frame = now
                if verb != Verb.ECHO:
                    self.last_data = now
            if sampled(packet_id, verb):
                bp.qos.record_in(packet_id, now)
        if flow != NO_FLOW and self.policy in BALANCING:
            f = self.flows.get(flow)
            if f is None and self.bonded:
                f = self._new_flow(flow, bp, now)
            if f is not None:
                f.bytes_in += size
                f.last_activity = now

    def qos_allowed(self, now: int) -> bool:
        """The reference's QoS rate gate: 128 reports arriving closer than interval/64."""
        if now - self._qos_gate_at < self.template.qos_interval // 64:
            self._qos_gate_count += 1
        else:
            self._qos_gate_count = 0
        self._qos_gate_at = now
        if self._qos_gate_count >= QOS_GATE_LIMIT:
            self.qos_gated += 1
            return False
        return True

    def ack_received(self, path: Path, acked: int, now: int) -> None:
        bp = self.find(path)
        if bp is not None:
            bp.ack_received(acked, now)

    def qos_received(self, path: Path, records: tuple[QosRecord, ...], now: int) -> int:
        bp = self.find(path)
        return 0 if bp is None else bp.qos.receive_report(records, now)

    def probe_answered(self, path: Path, packet_id: int, now: int) -> bool:
        bp = self.find(path)
        return bp is not None and bp.probe_answered(packet_id, now)

    # ------------------------------------------------------------------ flows

    def path_of_flow(self, fid: int) -> Path | None:
        """Where a known flow goes now (None for a flow the bond has not seen)."""
        flow = self.flows.get(fid)
        return self._flow_path(flow).path if flow is not None and self.bonded else None

    def _flow_path(self, flow: Flow) -> BondPath:
        for bp in self.paths:
            if id(bp) == flow.slot:
                return bp
        self._reassign(flow, 0)
        for bp in self.paths:
            if id(bp) == flow.slot:
                return bp
        return self.bonded[0]

    def _new_flow(self, fid: int, inbound: BondPath | None, now: int) -> Flow:
        flow, evicted = self.flows.add(fid, 0, now)
        if evicted is not None:
            self._unassign(evicted.slot)
        if inbound is not None:
            flow.slot = id(inbound)
            inbound.assigned_flows += 1
        else:
            self._assign(flow, reassign=False)
        return flow

    def _unassign(self, slot: int) -> None:
        for bp in self.paths:
            if id(bp) == slot and bp.assigned_flows:
                bp.assigned_flows -= 1

    def _reassign(self, flow: Flow, _now: int) -> None:
        self._unassign(flow.slot)
        self._assign(flow, reassign=True)

    def _assign(self, flow: Flow, *, reassign: bool) -> None:
        """assignFlowToBondedPath for balance-xor and balance-aware (others: the first)."""
        bonded = self.bonded
        if not bonded:
            flow.slot = 0
            return
        n = len(bonded)
        if self.policy == BondPolicy.BALANCE_AWARE:
            chosen = self._aware_choice(flow, reassign)
        else:
            chosen = bonded[abs(flow.id) % n]
        flow.slot = id(chosen)
        chosen.assigned_flows += 1

    def _aware_choice(self, flow: Flow, reassign: bool) -> BondPath:
        """The acceptable (not avoided) path with the fewest flows per unit of capacity, a
        random one among equals; with none acceptable, the best relative quality. (The
        reference draws a path at random, which can stack every flow on one link.)"""
        candidates = [
            bp
            for bp in self.bonded
            if not bp.should_avoid and not (reassign and id(bp) == flow.slot)
        ]
        if not candidates:
            return max(self.bonded, key=lambda bp: bp.relative_quality)

        def load(bp: BondPath) -> float:
            return bp.assigned_flows / max(bp.relative_capacity, 1e-6)

        least = min(load(bp) for bp in candidates)
        tied = [bp for bp in candidates if load(bp) <= least + 1e-9]
        return tied[self.rng.randrange(len(tied))]

    # ------------------------------------------------------------------ periodic work

    def tick(self, now: int) -> TickWork:
        """processBackgroundBondTasks: curate, estimate, monitor, then the policy's tasks."""
        work = TickWork()
        self._monitor(now, work)
        self.curate(now, rebuild=False, work=work)
        if now - self.last_quality_estimation > self.template.qos_interval:
            self.last_quality_estimation = now
            self.estimate_quality(now)
        if self.policy == BondPolicy.ACTIVE_BACKUP:
            self._active_backup_tasks(now, work)
        elif self.policy in BALANCING:
            self._balance_tasks(now)
        return work

    def busy(self, now: int) -> bool:
        """Data flowed lately: links are worth probing fast (``fastFailover``)."""
        return now - self.last_data < BUSY_WINDOW

    def _monitor(self, now: int, work: TickWork) -> None:
        """Heartbeats (reference), probe timeouts and fast probes (``fastFailover``), QoS."""
        t = self.template
        fast = t.fast_failover and not self.legacy_echo and self.busy(now)
        # Quietest paths first, so a per-peer ECHO budget goes where it is needed most.
        for bp in sorted(self.paths, key=lambda b: b.last_in):
            if not bp.allowed():
                continue
            # Probe misses count only while data flows; idle, failoverInterval decides alone.
            bp.check_probes(now, count=fast)
            quiet = now - bp.last_in
            due = quiet >= (t.monitor_interval if bp.alive else t.failover_interval)
            if fast and not due and bp.eligible:
                due = quiet >= bp.probe_quiet()
            if due and now - bp.last_probe >= PROBE_SPACING:
                if self.legacy_echo:
                    if now - self._last_any_probe < LEGACY_ECHO_SPACING:
                        continue
                    self._last_any_probe = now
                work.probes.append(bp)
            if bp.qos.needs_report(now, t.qos_interval):
                work.reports.append((bp, bp.qos.report(now)))
            if bp.bytes_since_ack and now - bp.last_ack_sent >= t.qos_interval:
                work.acks.append((bp, min(bp.bytes_since_ack, 0xFFFFFFFF)))
                bp.bytes_since_ack, bp.last_ack_sent = 0, now

    def curate(self, now: int, *, rebuild: bool, work: TickWork | None) -> None:
        """curateBond: aliveness, eligibility (and its events), the bonded set."""
        t = self.template
        for bp in list(self.paths):
            in_trial = bp.in_trial(now)
            if now - bp.last_eligibility > EXPIRED_PATH_TRIAL_PERIOD and not in_trial:
                self.remove(bp.path)
                continue
            alive = now - bp.last_in < t.failover_interval and not bp.probe_failed
            bp.alive = alive
            acceptable_age = now - bp.last_in < t.failover_interval + t.down_delay
            up_delay_ok = now - bp.last_alive_toggle >= t.up_delay
            qos_ok = self.policy == BondPolicy.ACTIVE_BACKUP or (
                (bp.qos.last_qos_received == 0 and in_trial)
                or now - bp.qos.last_qos_received < EXPIRED_PATH_TRIAL_PERIOD
            )
            eligible = (
                bp.allowed()
                and not bp.probe_failed
                and acceptable_age
                and up_delay_ok
                and (qos_ok or in_trial)
            )
            if eligible:
                bp.last_eligibility = now
            if eligible != bp.eligible:
                if work is not None:
                    reason = "probes unanswered" if bp.probe_failed else "silent"
                    work.changes.append(
                        LinkChange("up" if eligible else "down", bp.path, reason=reason)
                    )
                if eligible:
                    rebuild = True
                elif bp.bonded:
                    rebuild = True
                    bp.should_avoid = True
                    bp.bonded = False
            bp.eligible = eligible
        usable_primary = any(bp.bonded and bp.alive for bp in self.paths)
        rebuild = rebuild or not usable_primary
        if self.policy in BALANCING and (rebuild or not self.bonded):
            self._rebuild(usable_primary)

    def _rebuild(self, usable_primary: bool) -> None:
        for bp in self.paths:
            bp.bonded = False
        chosen: list[BondPath] = []
        by_link: dict[str, list[BondPath]] = {}
        for bp in self.paths:
            by_link.setdefault(bp.link.name, []).append(bp)
        for group in by_link.values():
            if not usable_primary:
                chosen += [bp for bp in group if bp.eligible and bp.allowed() and bp.is_spare()]
            pref = group[0].link.ipv_pref
            usable = [bp for bp in group if bp.eligible and bp.allowed() and not bp.is_spare()]
            if pref in (46, 64):
                preferred = [bp for bp in usable if bp.preferred()]
                chosen += preferred or [bp for bp in group if bp.eligible and not bp.is_spare()]
            else:
                chosen += usable
        for bp in chosen:
            bp.bonded = True
        self.bonded = list(dict.fromkeys(chosen))
        if self.policy == BondPolicy.BALANCE_RR:
            self._reset_rr()

    def estimate_quality(self, now: int) -> None:
        """estimatePathQuality: QoS summaries, relative capacity and quality, avoidance."""
        q = self.template.quality
        timeout = self.template.qos_interval * 3
        considered = [bp for bp in self.paths if bp.allowed()]
        scores: dict[int, tuple[float, float, float, float]] = {}
        for bp in considered:
            bp.qos.expire(now, timeout)
            scores[id(bp)] = (
                _decay(bp.qos.latency, q.lat_max),
                _decay(bp.qos.latency_variance, q.pdv_max),
                _decay(0.0, q.plr_max),  # loss and error ratios: never measured (reference)
                _decay(0.0, q.per_max),
            )
        maxima = [max((s[i] for s in scores.values()), default=0.0) for i in range(4)]
        caps = [bp.link.capacity for bp in considered]
        max_cap = max(caps, default=0)
        for bp in considered:
            bp.relative_capacity = bp.link.capacity / max_cap if max_cap > 0 else 1.0
        weights = (q.lat_weight, q.pdv_weight, q.plr_weight, q.per_weight)
        absolute: dict[int, float] = {}
        for bp in considered:
            if not bp.bonded and bp is not self.active:
                continue
            s = scores[id(bp)]
            a = sum((s[i] / maxima[i] if maxima[i] > 0 else 0.0) * weights[i] for i in range(4))
            absolute[id(bp)] = a * bp.relative_capacity
        total = sum(absolute.values())
        if total > 0:
            for bp in considered:
                if id(bp) in absolute:
                    bp.relative_quality = absolute[id(bp)] / total
        for bp in considered:
            bp.qos.summarize()
        for bp in considered:
            bp.should_avoid = bp.qos.latency > q.lat_max or bp.qos.latency_variance > q.pdv_max

    def _balance_tasks(self, now: int) -> None:
        """Expire flows; move flows off ineligible paths (all) and avoided ones (one)."""
        if not self.bonded:
            return
        if now - self.last_flow_expiration > PEER_PATH_EXPIRATION:
            for flow in self.flows.expire(now):
                self._unassign(flow.slot)
            for flow in self.flows:
                flow.bytes_in = flow.bytes_out = 0
            self.last_flow_expiration = now
        if self.policy == BondPolicy.BALANCE_RR:
            return
        by_slot = {id(bp): bp for bp in self.paths}
        for flow in self.flows:
            bp = by_slot.get(flow.slot)
            if bp is None or not bp.eligible:
                self._reassign(flow, now)
        if self.policy == BondPolicy.BALANCE_AWARE:
            for flow in self.flows:
                bp = by_slot.get(flow.slot)
                if bp is not None and bp.should_avoid:
                    self._reassign(flow, now)
                    return  # one flow per tick, as the reference moves them

    def _first_active(self) -> BondPath | None:
        t = self.template
        if not t.user_links or not t.user_primary:
            return next((bp for bp in self.paths if bp.eligible), None)
        fallback: BondPath | None = None
        for bp in self.paths:
            if bp.eligible and bp.link.mode == LinkMode.PRIMARY:
                if bp.preferred():
                    return bp
                fallback = fallback or bp
        return fallback

    def _active_backup_tasks(self, now: int, work: TickWork) -> None:
        """processActiveBackupTasks: the active path, the failover queue, reselection."""
        before = self.active
        if self.active is not None and self.active not in self.paths:
            self.active = None
        if self.active is None:
            self.active = self._first_active()
        if self.active is None:
            self._note_active(before, now, work)
            return
        self.queue = [bp for bp in self.queue if bp in self.paths and bp.eligible]
        self._fill_queue()
        if self.queue and not self.active.eligible:
            self.active = self.queue.pop(0)
        if self.queue:
            self._reselect(now)
        self._note_active(before, now, work)

    def _fill_queue(self) -> None:
        t = self.template
        if t.user_failover:
            self._fill_queue_user()
            return
        for bp in self.paths:
            if not bp.allowed() or not bp.eligible:
                continue
            handicap = HANDICAP_PREFERRED if bp.preferred() else 0
            if bp.link.mode == LinkMode.PRIMARY and t.reselect != Reselect.OPTIMIZE:
                handicap = HANDICAP_PRIMARY
            bp.failover_score = bp.relative_quality + handicap
            self._enqueue(bp)

    def _fill_queue_user(self) -> None:
        """Failover instructions (``failoverTo``): scores inherited down the chain."""
        for bp in self.paths:
            bp.failover_score = 0
        for bp in self.paths:
            if not bp.allowed() or not bp.eligible:
                continue
            handicap = bp.failover_score
            if bp.preferred():
                handicap += HANDICAP_PREFERRED
            if bp.link.mode == LinkMode.PRIMARY:
                handicap += HANDICAP_PRIMARY
            if not bp.failover_score:
                bp.failover_score = handicap if handicap else int(bp.relative_quality * 255.0)
            target = bp.link.failover_to
            if target:
                for other in self.paths:
                    if other.link.name == target:
                        inherited = max(other.failover_score, handicap - 10)
                        other.failover_score = inherited - (0 if other.preferred() else 1)
            self._enqueue(bp)

    def _enqueue(self, bp: BondPath) -> None:
        if bp is not self.active and bp not in self.queue:
            self.queue.append(bp)
            bp.bonded = True

    def _reselect(self, now: int) -> None:
        active, front = self.active, self.queue[0]
        assert active is not None
        mode = self.template.reselect
        active_primary = active.link.mode == LinkMode.PRIMARY
        front_primary = front.link.mode == LinkMode.PRIMARY
        if mode == Reselect.ALWAYS and not active_primary and front_primary:
            self.active = self.queue.pop(0)
        elif mode == Reselect.BETTER and not active_primary and front_primary:
            if front.failover_score > active.failover_score:
                self.active = self.queue.pop(0)
        elif mode == Reselect.OPTIMIZE and now - self.last_active_change > OPTIMIZE_INTERVAL:
            gain = front.failover_score - active.failover_score
            if gain > 0 and gain > OPTIMIZE_MIN_THRESHOLD * active.relative_quality:
                self.active = self.queue.pop(0)

    def _note_active(self, before: BondPath | None, now: int, work: TickWork) -> None:
        if self.active is not before:
            self.last_active_change = now
            if before is not None:
                self.failovers += 1
            for bp in self.paths:
                bp.packets_in = bp.packets_out = 0
            if self.active is not None:
                work.changes.append(
                    LinkChange(
                        "active", self.active.path, before.path if before is not None else None
                    )
                )

    def rotate(self, now: int) -> LinkChange | None:
        """``bond rotate``: active-backup moves to the next path in its failover queue (made
        up to date first: a path nominated since the last tick counts)."""
        if self.policy != BondPolicy.ACTIVE_BACKUP or self.active is None:
            return None
        self.queue = [bp for bp in self.queue if bp in self.paths and bp.eligible]
        self._fill_queue()
        if not self.queue:
            return None
        before = self.active
        self.active = self.queue.pop(0)
        self.last_active_change = now
        self.failovers += 1
        return LinkChange("active", self.active.path, before.path)


def clamp_mtu(mtu: int) -> int:
    """A link's configured MTU as the node can use it (ZeroTier's fragment arithmetic needs at
    least MIN_PHYSMTU; the reference would take anything from 68)."""
    return max(MIN_PHYSMTU, min(MAX_PHYSMTU, mtu))


def _decay(value: float, limit: float) -> float:
    """``1 / exp(4 * value / limit)``: how the reference scores a metric against its limit."""
    if limit <= 0:
        return 0.0 if value > 0 else 1.0
    return 1.0 / math.exp(4.0 * value / limit)
