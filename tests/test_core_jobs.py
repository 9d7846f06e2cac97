"""JobContext's progress reports: rate-limited, yet the latest state always reaches the listener.

A method reports a new phase right after the last one and then computes for long without reporting
(iSeg: "prior embeddings" right after "rendering views", then seconds of SAM): the UI must show that
phase, not the one before it.
"""

from __future__ import annotations

import itertools
import threading
import time

from waiting import wait_until

from segany.jobs import JobContext


class Listener:
    """Collects reports from whichever thread sends them."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __call__(self, fraction: float, message: str) -> None:
        with self._lock:
            self.seen.append((fraction, message))

    def last(self) -> tuple[float, str] | None:
        with self._lock:
            return self.seen[-1] if self.seen else None


def test_a_report_inside_the_interval_still_arrives() -> None:
    heard = Listener()
    ctx = JobContext(on_progress=heard)
    ctx.progress(0.0, "rendering views")
    ctx.progress(0.03, "prior embeddings")  # right after, then the job computes for long without reporting
    wait_until(lambda: heard.last() == (0.03, "prior embeddings"), timeout=30, what="the held-back report")
    assert heard.seen[0] == (0.0, "rendering views")
    ctx.close()


def test_sub_contexts_report_through_their_parent_without_being_lost() -> None:
    heard = Listener()
    ctx = JobContext(on_progress=heard)
    ctx.progress(0.0, "start")
    span = ctx.sub(0.5, 1.0)
    span.sub(0.0, 0.5).progress(1.0, "first half of the span")  # within the interval of "start"
    wait_until(lambda: heard.last() == (0.75, "first half of the span"), timeout=60, what="the sub-context report")
    span.progress(1.0, "span done")
    assert heard.last() == (1.0, "span done"), "the end of the job is never held back"
    ctx.close()


def test_reports_are_spaced_by_the_interval_in_order_and_end_with_the_last() -> None:
    heard = Listener()
    ctx = JobContext(on_progress=heard, interval=0.02)
    start = time.monotonic()
    for i in range(20_000):
        ctx.progress(i / 20_000, f"step {i}")
    ctx.progress(1.0, "done")
    elapsed = time.monotonic() - start
    ctx.close()
    fractions = [f for f, _ in heard.seen]
    assert fractions[-1] == 1.0 and heard.seen[-1][1] == "done"
    assert all(a <= b for a, b in itertools.pairwise(fractions)), "reports arrive in the order they were made"
    assert len(heard.seen) <= 2 + elapsed / ctx.interval, "no two reports inside one interval (but the last)"


def test_nothing_is_reported_after_close() -> None:
    heard = Listener()
    ctx = JobContext(on_progress=heard, interval=3600.0)
    ctx.progress(0.0, "start")
    ctx.progress(0.5, "held back")
    ctx.close()
    ctx.interval = 0.0
    ctx.progress(0.6, "after the end")  # even a report that would pass at once
    assert heard.seen == [(0.0, "start")]
