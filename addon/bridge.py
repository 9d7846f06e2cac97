"""Background work for the UI without touching bpy off the main thread.

A worker thread runs the calls that may wait on the network (start the backend, send a scene, query);
everything they produce — and the job progress events from the client's reader thread — becomes a
callback in a queue. Only `drain()` runs callbacks, and the add-on calls it on Blender's main thread
from a bpy.app.timers timer (tests call it directly: timers do not run in background mode).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("segany.bridge")

Callback = Callable[..., Any]
_STOP = object()


class Bridge:
    """One worker thread plus a main-thread inbox."""

    def __init__(self) -> None:
        self._work: queue.Queue[Any] = queue.Queue()
        self._inbox: queue.Queue[tuple[Callback, tuple[Any, ...]]] = queue.Queue()
        self._inflight = 0  # work queued or running: its answer is on the way
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="segany-bridge", daemon=True)
        self._thread.start()

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callback | None = None,
        on_error: Callback | None = None,
        key: str | None = None,
    ) -> None:
        """Run fn on the worker; its result (or exception) comes back through drain() to on_done / on_error.

        Work with the same `key` supersedes queued work with that key that has not started yet (a burst
        of clicks sends only the newest query).
        """
        with self._lock:
            self._inflight += 1
        self._work.put((fn, on_done, on_error, key, time.perf_counter()))

    def post(self, callback: Callback, *args: Any) -> None:
        """From any thread: have callback(*args) run on the main thread at the next drain()."""
        self._inbox.put((callback, args))

    def drain(self, budget_s: float = 0.02) -> int:
        """Run queued callbacks on the calling (main) thread for at most budget_s; returns how many ran."""
        ran = 0
        deadline = time.perf_counter() + budget_s
        while True:
            try:
                callback, args = self._inbox.get_nowait()
            except queue.Empty:
                return ran
            try:
                callback(*args)
            except Exception:
                log.exception("SegAny callback %r failed", callback)
            ran += 1
            if time.perf_counter() > deadline:
                return ran

    def pending(self) -> bool:
        """True while work runs or waits, or callbacks wait for drain(): the timer should poll fast."""
        return self._inflight > 0 or not self._inbox.empty()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the worker has nothing queued or running (tests and batch scripts)."""
        done = threading.Event()
        self.run(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._work.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            try:
                self._one(*item[:4])
            finally:
                with self._lock:
                    self._inflight -= 1

    def _one(self, fn: Callable[[], Any], on_done: Callback | None, on_error: Callback | None, key: str | None) -> None:
        if key is not None and self._superseded(key):
            return
        try:
            value = fn()
        except Exception as exc:
            if on_error is not None:
                self.post(on_error, exc)
            else:
                log.exception("SegAny background call failed")
            return
        if on_done is not None:
            self.post(on_done, value)

    def _superseded(self, key: str) -> bool:
        """True when newer work with the same key waits in the queue (peeked without removing it)."""
        with self._work.mutex:
            return any(isinstance(it, tuple) and it[3] == key for it in self._work.queue)
