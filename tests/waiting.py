"""Waiting in tests on the event itself, never on a guessed duration.

`wait_until` polls a condition until it holds; its timeout is only a guard against a hang, so it is
generous and a slow or loaded machine only makes the wait longer, never the outcome different.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.005  # short enough that a test never waits noticeably longer than its event


def wait_until(pred: Callable[[], T], timeout: float = 120.0, what: str = "the condition") -> T:
    """Return pred()'s first truthy value; AssertionError naming `what` if none comes within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)
