"""A remote node we hold a key with, and the direct paths we know for it.

Path learning, expiry and selection follow ZeroTierOne 1.14.1 ``node/Peer.cpp`` (see
``shared/reference/protocol-multipath.md`` section 3): a path enters the table only when an OK to
one of our requests arrives directly over it; other direct traffic from an unknown address only
earns that address a confirming HELLO. A slot lapses 243 s after its last authenticated receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ztnode.core.path import Path
from ztnode.core.replay import ReplayWindow
from ztnode.crypto import SymmetricKey
from ztnode.identity import Identity

PEER_PATH_EXPIRATION: Final = 4 * 60_000 + 3_000
PEER_ACTIVITY_TIMEOUT: Final = 500_000
PEER_PING_PERIOD: Final = 60_000
MAX_PEER_PATHS: Final = 64
TRUST_EXPIRATION: Final = 600_000
DIRECT_PATH_PUSH_INTERVAL: Final = 15_000
DIRECT_PATH_PUSH_INTERVAL_HAVEPATH: Final = 120_000
PUSH_DIRECT_PATHS_CUTOFF_TIME: Final = 30_000
PUSH_DIRECT_PATHS_CUTOFF_LIMIT: Final = 8
PEER_WHOIS_RATE_LIMIT: Final = 100
PEER_CREDENTIALS_RATE_LIMIT: Final = 1_000


@dataclass(slots=True)
class PeerPath:
    """One slot of a peer's path table: the shared Path plus this peer's receive time on it."""

    path: Path
    lr: int  # last authenticated direct receive from this peer on this path
    priority: int = 1


class Peer:
    """Everything per remote address. ``key`` is computed once, when the peer is created."""

    __slots__ = (
        "address",
        "created",
        "identity",
        "key",
        "last_credentials_received",
        "last_direct_path_push_receive",
        "last_direct_path_push_sent",
        "last_frame",
        "last_receive",
        "last_sent_full_hello",
        "last_tried_memorized",
        "last_trust_established",
        "last_whois_answered",
        "paths",
        "push_cutoff_count",
        "replay",
        "unconfirmed",
        "unconfirmed_at",
        "version",
    )

    def __init__(self, identity: Identity, key: SymmetricKey, now: int = 0) -> None:
        self.identity = identity
        self.created = now
        #: When the operator's ``try`` hints for this peer were last tried (Peer.cpp's
        #: ``_lastTriedMemorizedPath``); see :mod:`ztnode.core.pathpolicy`.
        self.last_tried_memorized = -(1 << 62)
        # The latest direct path that carried an authenticated packet from this peer but is not
        # (yet) confirmed by an OK. The reference forgets it; we use it to re-confirm promptly
        # when we need to reach the peer, so one lost OK does not strand a peer for minutes.
        self.unconfirmed: Path | None = None
        self.unconfirmed_at = 0
        self.address = identity.address
        self.key = key
        #: Packet ids accepted recently (replay protection, see :mod:`ztnode.core.replay`).
        self.replay = ReplayWindow()
        self.version: tuple[int, int, int, int] = (0, 0, 0, 0)  # proto, major, minor, revision
        self.paths: list[PeerPath] = []
        self.last_receive = 0
        self.last_frame = 0
        self.last_sent_full_hello = 0
        self.last_trust_established = 0
        self.last_direct_path_push_sent = 0
        self.last_direct_path_push_receive = 0
        self.push_cutoff_count = 0
        self.last_whois_answered = -(10**12)
        self.last_credentials_received = -(10**12)

    @property
    def protocol(self) -> int:
        return self.version[0]

    def supports_aes(self) -> bool:
        """AES-GMAC-SIV only to peers that announced protocol 12 (Peer.hpp:618)."""
        return self.version[0] >= 12

    def wants_echo_keepalive(self) -> bool:
        """Protocol >= 5 answers ECHO; 1.1.0 exactly had a broken ECHO, so it gets HELLO."""
        return self.version[0] >= 5 and self.version[1:] != (1, 1, 0)

    def alive(self, now: int) -> bool:
        """Heard from recently; a peer we just created gets the same grace period."""
        return now - max(self.last_receive, self.created) < PEER_ACTIVITY_TIMEOUT

    def active(self, now: int) -> bool:
        """Frames or network configs flowed recently, so the peer is kept warm with keepalives."""
        return now - self.last_frame < PEER_ACTIVITY_TIMEOUT

    def trust_established(self, now: int) -> bool:
        return self.last_trust_established > 0 and now - self.last_trust_established < (
            TRUST_EXPIRATION
        )

    def find(self, path: Path) -> PeerPath | None:
        for slot in self.paths:
            if slot.path is path:
                return slot
        return None

    def has_alive_path_to_ip(self, path: Path, now: int) -> bool:
        """True if another live slot reaches the same IP from the same socket (port ignored).

        That stops a NAT that rewrites ports from making us learn a new path per port.
        """
        ip, local = path.remote[0], path.local
        return any(
            s.path is not path
            and s.path.local == local
            and s.path.remote[0] == ip
            and s.path.alive(now)
            for s in self.paths
        )

    def learn(self, path: Path, now: int) -> PeerPath | None:
        """Store a confirmed path. Returns the evicted slot, if one had to go."""
        for i, s in enumerate(self.paths):
            if (
                s.path.local == path.local
                and s.path.remote[0] == path.remote[0]
                and not s.path.alive(now)
            ):
                self.paths[i] = PeerPath(path, now)
                return s
        if len(self.paths) < MAX_PEER_PATHS:
            self.paths.append(PeerPath(path, now))
            return None
        oldest = min(range(len(self.paths)), key=lambda i: self.paths[i].path.last_in)
        evicted = self.paths[oldest]
        self.paths[oldest] = PeerPath(path, now)
        return evicted

    def best_path(self, now: int, include_expired: bool = False) -> Path | None:
        """Lowest quality/priority among unexpired slots; on a tie the later slot wins."""
        best: Path | None = None
        best_q = 0
        for s in self.paths:
            if not include_expired and now - s.lr >= PEER_PATH_EXPIRATION:
                continue
            q = s.path.quality(now) // s.priority
            if best is None or q <= best_q:
                best, best_q = s.path, q
        return best

    def direct_path_count(self, now: int) -> int:
        return sum(1 for s in self.paths if now - s.lr < PEER_PATH_EXPIRATION)

    def expire_paths(self, now: int) -> list[PeerPath]:
        """Drop slots past expiry (and below the top priority); returns what was dropped."""
        if not self.paths:
            return []
        top = max(s.priority for s in self.paths)
        keep: list[PeerPath] = []
        gone: list[PeerPath] = []
        for s in self.paths:
            (gone if now - s.lr >= PEER_PATH_EXPIRATION or s.priority < top else keep).append(s)
        self.paths = keep
        return gone

    def relay_quality(self, now: int) -> int:
        """How good this peer is as a relay (upstream choice): lower is better."""
        if now - self.last_receive >= PEER_ACTIVITY_TIMEOUT:
            return 2**32 - 1
        best = self.best_path(now)
        latency = best.latency if best is not None and best.latency != 0 else 0xFFFF
        return latency * (1 + (now - self.last_receive) // 61_000)

    def latency(self, now: int) -> int | None:
        best = self.best_path(now)
        if best is None or best.latency == 0xFFFF:
            return None
        return best.latency
