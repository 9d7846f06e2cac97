"""An answer a button waits for in the background (segment everything, label from words): it arrives, or its
error does, through the bridge on the main thread, where the button's operator writes it."""

from __future__ import annotations

from typing import Any


class Pending:
    """The answer (or error) of background work; the operator calls `step` at each look and writes `answer` once
    `done`. A subclass whose work needs the main thread between its stages does that in `step`."""

    def __init__(self) -> None:
        self.answer: Any = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    def step(self) -> None:
        """Work the main thread does while waiting; work that runs whole in the background has none."""

    def answered(self, answer: Any) -> None:
        self.answer = answer

    def failed(self, exc: BaseException) -> None:
        self.error = exc
