"""The click-walker: what a list of clicks selects on a `CreaseGraph`, the rule the evaluation's baseline and
the `walk` method share. Another first-click or later-click rule is a subclass overriding `first` / `then`,
which keeps the prefix memo and the order of the rules.

- The first positive click takes the region its diffusion leaks out of least (`CreaseGraph.first_region`:
  the sweep cut of a walk from the click, at most half the graph), keeping out any negative click before it.
- Every later click refines the answer to the clicks before it, as an interactive tool keeps its selection
  (`CreaseGraph.follow`: Grady's walker over all clicks with the previous answer as a weak prior).
- Clicks with no positive one select nothing.

Answers to click prefixes are memoised, so a query stays a pure function of its click list and an artist's
next click costs one walk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from ... import deadline
from ...graphwalk import CreaseGraph

Click = tuple[int, int]  # (element, +1 or -1)
MEMO_SIZE = 256


class ClickWalker:
    """One scene's graph and the answers to the click prefixes seen so far; thread-safe."""

    def __init__(self, graph: CreaseGraph) -> None:
        self.graph = graph
        self._memo: OrderedDict[tuple[Click, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def nodes(self, clicks: Iterable[tuple[int, int]]) -> np.ndarray:
        """Per graph node, 1.0 where the clicks select it, else 0.0."""
        return self._answer(tuple((int(e), 1 if s > 0 else -1) for e, s in clicks))

    def scores(self, clicks: Iterable[tuple[int, int]]) -> np.ndarray:
        """Per element (vertex, point, Gaussian), a score in [0, 1] to threshold at 0.5."""
        return self.graph.element_scores(self.nodes(clicks)).astype(np.float32)

    def first(self, clicks: tuple[Click, ...]) -> np.ndarray:
        """The nodes selected when the last click is the first positive one."""
        return self.graph.first_region(self.graph.seeds(clicks))

    def then(self, previous: np.ndarray, clicks: tuple[Click, ...]) -> np.ndarray:
        """The nodes selected after a later click, given the answer to the clicks before it."""
        return self.graph.follow(previous, self.graph.seeds(clicks))

    def _answer(self, clicks: tuple[Click, ...]) -> np.ndarray:
        deadline.check()  # once per click: a query's deadline (or its client leaving) stops a long click list
        with self._lock:
            known = self._memo.get(clicks)
            if known is not None:
                self._memo.move_to_end(clicks)
                return known
        if not any(s > 0 for _, s in clicks):
            chosen = np.zeros(self.graph.n, dtype=bool)
        elif not any(s > 0 for _, s in clicks[:-1]):
            chosen = self.first(clicks)
        else:
            chosen = self.then(self._answer(clicks[:-1]), clicks)
        chosen = np.asarray(chosen, dtype=np.float64)
        with self._lock:
            self._memo[clicks] = chosen
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return chosen
