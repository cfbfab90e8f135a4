"""The asyncio loop in a background thread that every blocking socket's work runs on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ztnode.sockets.blocking.common import T, _oserror
from ztnode.transport.eventloop import new_loop


class LoopThread:
    """An asyncio loop in a daemon thread, and the ways other threads hand it work.

    Work handed over after the loop stopped fails with ENETDOWN instead of waiting forever:
    futures still pending when the loop closes are failed from here. ``busy_poll_us`` > 0
    makes the loop poll that long after traffic before it sleeps
    (:mod:`ztnode.transport.busypoll`).
    """

    def __init__(self, name: str, busy_poll_us: int = 0) -> None:
        self.name = name
        self.loop = new_loop(busy_poll_us)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._futures: set[concurrent.futures.Future[Any]] = set()

    def start(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            try:
                self.loop.run_forever()
            finally:
                self._finish()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        started.wait()

    def stop(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not thread:
            thread.join()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; its future fails with ENETDOWN if the loop ends first."""
        with self._lock:
            if self._closed or self._thread is None:
                coro.close()
                raise _oserror(errno.ENETDOWN, "the node's event loop is not running")
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut

    def _forget(self, fut: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; on a timeout it is cancelled."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("a blocking ztnode call from the node's own event loop thread")
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except TimeoutError:
            if fut.done():
                return fut.result()
            fut.cancel()
            raise TimeoutError("timed out") from None

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the loop thread and wait for its result."""
        if self.in_loop():
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        with self._lock:
            self._post_locked(runner)
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut.result()

    def post(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` on the loop without waiting (FIFO with every other post)."""
        with self._lock:
            self._post_locked(fn, *args)

    def _post_locked(self, fn: Callable[..., object], *args: object) -> None:
        if self._closed or self._thread is None:
            raise _oserror(errno.ENETDOWN, "the node's event loop is not running")
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            raise _oserror(errno.ENETDOWN, "the node's event loop is not running") from None

    def _finish(self) -> None:
        loop = self.loop
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            with self._lock:
                self._closed = True
                left = list(self._futures)
            loop.close()
            for f in left:
                if not f.cancel():
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        f.set_exception(_oserror(errno.ENETDOWN, "the node stopped"))
