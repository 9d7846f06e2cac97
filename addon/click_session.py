"""The click tool's logic without the modal operator: clicks, undo, live scores, accept / cancel.

The modal operator only turns events into these calls; tests and the benchmark call them directly
(modal operators do not run in background mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .client import Selection
from .runtime import Runtime, error_text

Show = Callable[[np.ndarray, float], None]
OURS = frozenset({"LEFTMOUSE", "RIGHTMOUSE", "RET", "NUMPAD_ENTER", "ESC"})  # and Ctrl+Z; the rest is Blender's
PRESSED = ("PRESS", "DOUBLE_CLICK")  # Blender sends a quick second click as DOUBLE_CLICK, not PRESS


class ClickSession:
    """Positive / negative clicks on one object; every change re-queries, the newest answer is shown."""

    def __init__(
        self,
        rt: Runtime,
        key: int,
        show: Show,
        clear: Callable[[], None],
        count: Callable[[], int] | None = None,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.rt = rt
        self.key = key
        self.show = show
        self.clear = clear
        self.count = count  # the object's element count now (None: the prepared scene's, nothing to check)
        self.extra = extra or dict  # the query's keys besides the clicks, read when it is sent (the scale slider)
        self.clicks: list[tuple[int, int]] = []
        self.scores: np.ndarray | None = None
        self.extras: dict[str, np.ndarray] = {}  # the newest answer's extras (saga: the scale it used)
        self.threshold = 0.5
        self.error = ""
        self.timings: dict[str, float] = {}
        self._generation = 0

    def on_event(self, kind: str, value: str, shift: bool, ctrl: bool, pick: Callable[[], int]) -> str:
        """One viewport event (Blender's event type and value): LMB adds, Shift+LMB removes, Ctrl+Z undoes the
        last click, Enter accepts, Esc or RMB cancels; every other event (navigation, numpad views, Home,
        View Selected, a 3D mouse, menus) passes to Blender. Returns 'pass', 'running', 'accept' or 'cancel';
        pick() (element under the mouse, -1 on a miss) runs only on a click."""
        pressed = value in PRESSED
        if kind == "Z" and ctrl:
            if pressed:
                self.undo()
            return "running"
        if kind not in OURS:
            return "pass"
        if not pressed:
            return "running"  # the release and click of our keys stay ours: a passed LMB click would select
        if kind == "LEFTMOUSE":
            self.add(pick(), positive=not shift)
            return "running"
        return "accept" if kind in ("RET", "NUMPAD_ENTER") else "cancel"

    def add(self, element: int, positive: bool = True) -> bool:
        """A click on element (from the picker); -1 (a miss) is ignored. Returns whether a query went out."""
        if element < 0:
            return False
        self.error = self.geometry_problem()
        if self.error:  # the picked index is the edited object's, not the prepared scene's
            return False
        limit = self.rt.max_clicks
        if limit is not None and len(self.clicks) >= limit:
            self.error = f"At most {limit} clicks in one segment: press Enter to keep it, then click on"
            return False
        self.clicks.append((int(element), 1 if positive else -1))
        self._send()
        return True

    def undo(self) -> None:
        """Forget the last click (Ctrl+Z in the tool)."""
        if not self.clicks:
            return
        self.clicks.pop()
        if self.clicks:
            self._send()
        else:
            self._generation += 1
            self.scores = None
            self.clear()

    def refresh(self) -> None:
        """Ask again with the same clicks: a setting the query reads changed (the scale slider). Cheap to call
        on every step of a drag: only the newest query is sent and only its answer is shown."""
        if self.clicks:
            self._send()

    def _send(self) -> None:
        self._generation += 1
        generation = self._generation
        clicks = [list(c) for c in self.clicks]
        query = {"clicks": clicks, **self.extra()}
        t_event = time.perf_counter()

        def done(sel: Selection, timing: dict[str, float]) -> None:
            if generation != self._generation:
                return  # an older answer arriving after a newer click or an undo
            self.error = self.geometry_problem(len(sel.scores))
            if self.error:  # edited while the answer was on its way: these scores fit no element
                self.scores = None
                self.clear()
                return
            self.scores = np.asarray(sel.scores, np.float32)
            self.threshold = float(sel.threshold)
            self.extras = dict(sel.extras)
            self.error = ""
            t0 = time.perf_counter()
            self.show(self.scores, self.threshold)
            t1 = time.perf_counter()
            self.timings = {**timing, "write_s": t1 - t0, "event_to_result_s": t1 - t_event}

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                self.error = error_text(exc)

        self.rt.query(self.key, query, done, failed)

    def geometry_problem(self, n_scores: int | None = None) -> str:
        """Why answers cannot be shown on the object ('' when they can): it changed since Prepare, or an
        answer's scores do not match its elements one to one."""
        n_now = self.count() if self.count is not None else self.rt.state(self.key).n_elements
        problem = self.rt.state(self.key).geometry_problem(n_now)
        if not problem and n_scores is not None and n_scores != n_now:
            problem = f"{n_scores:,} scores for {n_now:,} elements: press Prepare again"
        return problem

    @property
    def selected(self) -> int:
        return 0 if self.scores is None else int((self.scores >= self.threshold).sum())
