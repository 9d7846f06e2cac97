"""What long work sees of its job: progress reports, cancellation, the device."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SegAnyError

ProgressFn = Callable[[float, str], None]
# At most one report per interval reaches `on_progress`; one held back is sent when the interval ends,
# so listeners always learn the latest state (a phase that starts right after another is not lost).
PROGRESS_INTERVAL = 0.1


@dataclass
class JobContext:
    """Handed to Method.prepare; `progress` is cheap to call often, `check` raises when cancelled."""

    device: str = "cpu"
    on_progress: ProgressFn | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    message: str = ""
    interval: float = PROGRESS_INTERVAL
    _last_sent: float = field(default=-math.inf, init=False, repr=False)
    _unsent: bool = field(default=False, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    _timer: threading.Timer | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _send_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        with self._lock:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
            self.message = message or self.message
            if self.on_progress is None or self._closed:
                return
            self._unsent = True
            wait = self._last_sent + self.interval - time.monotonic()
            if wait > 0 and self.fraction < 1.0:
                if self._timer is None:
                    self._arm(wait)
                return
        self._send()

    def _arm(self, wait: float) -> None:
        """Send the held-back report in `wait` s unless a report goes out first (caller holds _lock)."""
        self._timer = threading.Timer(wait, self._due)
        self._timer.daemon = True
        self._timer.start()

    def _due(self) -> None:
        self._send(timer=threading.current_thread())

    def _send(self, timer: threading.Thread | None = None) -> None:
        """Pass the latest state on (job thread or timer); one sender at a time keeps reports in order."""
        with self._send_lock:
            with self._lock:
                if timer is not None:
                    if timer is not self._timer:
                        return  # a report went out after this timer was set: nothing is held back for it
                    wait = self._last_sent + self.interval - time.monotonic()
                    if wait > 0:  # the timer's clock is not ours to the microsecond: the interval holds exactly
                        self._arm(wait)
                        return
                if self._timer is not None:
                    self._timer.cancel()  # this report carries what the timer would have sent
                    self._timer = None
                if not self._unsent or self._closed or self.on_progress is None:
                    return
                self._unsent, self._last_sent = False, time.monotonic()
                fraction, message, send = self.fraction, self.message, self.on_progress
            send(fraction, message)

    def close(self) -> None:
        """No report after this returns: the job is over and its final state is the engine's to tell."""
        with self._send_lock, self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise SegAnyError("cancelled", "the job was cancelled")

    def sub(self, start: float, end: float) -> JobContext:
        """A context whose 0..1 maps onto start..end of this one, sharing cancel; only the root rate-limits."""
        parent = self

        def emit(f: float, msg: str) -> None:
            parent.progress(start + (end - start) * f, msg)

        return JobContext(device=self.device, on_progress=emit, cancel_event=self.cancel_event, interval=0.0)
