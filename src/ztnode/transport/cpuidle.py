"""How this machine's idle CPUs wait, as Linux's sysfs tells: the cpuidle driver and governor,
and, for the ``haltpoll`` driver of virtual machines, how long an idle CPU polls before it
halts.

Why ztnode reads it: across two processes a small round trip is mostly waking the process at
each end, and what a wake-up costs depends on how the CPU it lands on went idle. A virtual CPU
that halts the moment it idles (``haltpoll`` with ``guest_halt_poll_ns`` 0) must be woken by the
host, tens of microseconds each time (``python -m bench.wake_floor``, docs/performance.md,
issue 16's seventh step), more than ztnode's own work on a small message. ``ztnode doctor`` and
the benchmarks report it, so that a latency figure comes with the reason for it, and with the
two remedies: busy polling (:mod:`ztnode.transport.busypoll`, ztnode's own) or the guest's
halt polling (the machine's, for every process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CPUIDLE = "devices/system/cpu/cpuidle"
_HALT_POLL = "module/haltpoll/parameters/guest_halt_poll_ns"


@dataclass(frozen=True, slots=True)
class IdlePolicy:
    """What :func:`read` found; None where sysfs does not say (another OS, a container without
    sysfs, a driver without the setting)."""

    driver: str | None
    governor: str | None
    halt_poll_us: int | None

    @property
    def halts_at_once(self) -> bool:
        """A guest whose idle CPUs halt without polling first: every wake-up across CPUs is an
        exit to the host."""
        return self.driver == "haltpoll" and self.halt_poll_us == 0

    def summary(self) -> str:
        if self.driver is None:
            return "cpuidle unknown"
        out = f"cpuidle {self.driver}"
        if self.governor and self.governor != self.driver:
            out += f" ({self.governor})"
        if self.halt_poll_us is not None:
            out += f", guest halt polling {self.halt_poll_us} us"
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "governor": self.governor,
            "haltPollUs": self.halt_poll_us,
            "haltsAtOnce": self.halts_at_once,
        }


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def read(sys_root: Path = Path("/sys")) -> IdlePolicy:
    """The idle policy under ``sys_root`` (Linux's ``/sys``; tests give a tree of their own).
    Never raises: what cannot be read is None."""
    idle = sys_root / _CPUIDLE
    driver = _read(idle / "current_driver")
    governor = _read(idle / "current_governor") or _read(idle / "current_governor_ro")
    poll_us: int | None = None
    if driver == "haltpoll":
        raw = _read(sys_root / _HALT_POLL)
        if raw is not None and raw.isdigit():
            poll_us = int(raw) // 1000
    return IdlePolicy(driver, governor, poll_us)


__all__ = ["IdlePolicy", "read"]
