"""What long work sees of its job: progress reports, cancellation, the device."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SegAnyError

ProgressFn = Callable[[float, str], None]


@dataclass
class JobContext:
    """Handed to Method.prepare; `progress` is cheap to call often, `check` raises when cancelled."""

    device: str = "cpu"
    on_progress: ProgressFn | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    message: str = ""
    _last_emit: float = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message or self.message
        now = time.monotonic()
        if self.on_progress is not None and (now - self._last_emit > 0.1 or self.fraction >= 1.0):
            self._last_emit = now
            self.on_progress(self.fraction, self.message)

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise SegAnyError("cancelled", "the job was cancelled")

    def sub(self, start: float, end: float) -> JobContext:
        """A context whose 0..1 maps onto start..end of this one, sharing cancel."""
        parent = self

        def emit(f: float, msg: str) -> None:
            parent.progress(start + (end - start) * f, msg)

        return JobContext(device=self.device, on_progress=emit, cancel_event=self.cancel_event)
