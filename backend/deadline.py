"""A deadline for work done on behalf of one request: the server sets it, long loops check it.

A context variable, so no method signature carries it: the server opens `within(...)` around a query
on its pool thread, and a loop deep inside a method calls `check()` once per step (a click, a view).
Outside any `within` (jobs, tests, scripts) `check()` does nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from .errors import SegAnyError


@dataclass(frozen=True)
class Deadline:
    """When the work must stop (monotonic seconds), why, and an event that ends it early (its client left)."""

    at: float
    seconds: float
    what: str
    gone: threading.Event | None = None


_current: ContextVar[Deadline | None] = ContextVar("segany_deadline", default=None)


@contextmanager
def within(seconds: float, what: str = "query", gone: threading.Event | None = None) -> Iterator[Deadline]:
    """Run the block under a deadline `seconds` from now; `gone` being set cancels it at the next check."""
    deadline = Deadline(time.monotonic() + seconds, seconds, what, gone)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def check() -> None:
    """Raise `cancelled` when the requester left, `timeout` when the deadline passed; else return at once."""
    deadline = _current.get()
    if deadline is None:
        return
    if deadline.gone is not None and deadline.gone.is_set():
        raise SegAnyError("cancelled", f"the {deadline.what} was stopped: the client that asked for it went away")
    if time.monotonic() >= deadline.at:
        raise SegAnyError(
            "timeout",
            f"the {deadline.what} ran past its deadline of {deadline.seconds:g} s and was stopped; "
            "ask for less at once (fewer clicks, a smaller scene) or give it a longer deadline",
        )


def wait(seconds: float) -> None:
    """Block for up to `seconds`, waking at once when the requester leaves or the deadline passes, then
    `check()`: a pause that a request's end interrupts instead of outlasting it."""
    current = _current.get()
    gone = current.gone if current is not None and current.gone is not None else threading.Event()
    limit = seconds if current is None else max(0.0, min(seconds, current.at - time.monotonic()))
    gone.wait(limit)
    check()
