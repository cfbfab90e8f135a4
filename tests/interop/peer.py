"""Test-side handle on a libzt worker subprocess (see ``libzt_worker.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]


class LibztError(RuntimeError):
    """The worker answered with an error, died, or did not answer in time."""


class LibztPeer:
    """A libzt process. Always use as a context manager: it is killed by pid on exit."""

    def __init__(self, netns: str | None = None, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "tests.interop.libzt_worker"]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = str(_REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=_REPO,
            env=full_env,
            text=True,
            bufsize=1,
        )
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request and wait (bounded) for its one reply line."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise LibztError(f"libzt worker died (exit {self.proc.poll()})") from None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LibztError(f"libzt worker did not answer {op!r} within {timeout} s")
            if self._sel.select(left):
                line = self.proc.stdout.readline()
                if not line:
                    raise LibztError(f"libzt worker exited ({self.proc.wait(5)}) during {op!r}")
                reply: dict[str, Any] = json.loads(line)
                if not reply.get("ok"):
                    raise LibztError(f"{op}: {reply.get('error')}")
                return reply

    def wait_job(self, job: int, timeout: float = 30.0) -> dict[str, Any]:
        """A socket job's result (see the worker's ``job_wait``); the pipe gets a margin over
        the worker's own wait so that a slow job reports as such, not as a dead worker."""
        reply = self.call("job_wait", timeout + 10.0, job=job, wait=timeout)
        result: dict[str, Any] = reply["result"]
        return result

    def stop_job(self, job: int, timeout: float = 5.0) -> dict[str, Any]:
        reply = self.call("job_stop", timeout + 10.0, job=job, wait=timeout)
        result: dict[str, Any] = reply["result"]
        return result

    def pin(self, cpu: int) -> int:
        """Every thread of the worker (and so every thread it starts later) onto one CPU; how
        many threads were moved. With ``rt`` as well, libzt's threads then run one at a time,
        each until it blocks (see LIBZT_PEER.md on its unlocked IPv6 receive path)."""
        tids = [int(t) for t in os.listdir(f"/proc/{self.proc.pid}/task")]
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(tid, {cpu})
        return len(tids)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):  # unflushed input to a dead worker
                    f.close()
        self._sel.close()

    def __enter__(self) -> LibztPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
