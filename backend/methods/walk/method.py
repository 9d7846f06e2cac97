"""`walk` as a SegAny method: the evaluation's classical baseline, offered to users on every scene kind.

No 2D model, no training, nothing to prepare: the first click on a scene builds its graph (graph.py; the
one-time cost), every click after that is one walk (walker.py). Prepare is optional and only builds the
graph ahead of the first click; its state holds no tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ...errors import SegAnyError
from ...graphwalk import FIRST_PULL, FOLLOW_PULL
from ...jobs import JobContext
from ...priors import Prior
from ...scene import Scene
from ..base import Method, PerState, Selection, State
from ..clicks import parse_clicks
from .graph import KNN, scene_graph
from .solve import SeededCreaseGraph
from .walker import ClickWalker

FORMAT = "walk/1"
MAX_CLICKS = 64  # each click seeds ~10 nodes; the walk's seeded block grows with their square
THRESHOLD = 0.5

# name: (default, smallest, largest)
NUMBERS: dict[str, tuple[float, float, float]] = {"colour": (1.0, 0.0, 100.0)}
INTEGERS: dict[str, tuple[int, int, int]] = {"neighbours": (KNN, 3, 64), "max_nodes": (50_000, 1_000, 2_000_000)}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged in; unknown keys, wrong types and out-of-range values refused, naming the option."""
    known = set(NUMBERS) | set(INTEGERS)
    unknown = sorted(set(options) - known)
    if unknown:
        raise SegAnyError("bad_request", f"unknown walk options {unknown}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    for k, (default, lo, hi) in NUMBERS.items():
        v = options.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not lo <= v <= hi:
            raise SegAnyError("bad_request", f"walk option {k!r} must be a number in [{lo}, {hi}], got {v!r}")
        out[k] = float(v)
    for k, (default, lo, hi) in INTEGERS.items():
        v = options.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise SegAnyError("bad_request", f"walk option {k!r} must be an integer in {lo}..{hi}, got {v!r}")
        out[k] = int(v)
    return out


class Walk(Method):
    """A random walker on the scene's concavity-, normal- and colour-weighted graph (see graph.py, walker.py)."""

    name: ClassVar[str] = "walk"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh", "splats", "points")
    default_prior: ClassVar[str] = "geometric"  # no prior is used; the engine names one for every state
    needs_prepare: ClassVar[bool] = False
    state_format: ClassVar[str | None] = FORMAT

    def __init__(self) -> None:
        self._walkers: PerState[ClickWalker] = PerState(size=8)

    def default_options(self, scene: Scene, device: str) -> dict[str, Any]:
        return check_options({})

    def prepare(self, scene: Scene, prior: Prior, options: dict[str, Any], ctx: JobContext) -> State:
        opts = check_options(options)
        t0 = time.perf_counter()
        walker = self._build(scene, opts, ctx.progress)
        state = State(tensors={}, meta={"format": FORMAT, "options": opts, "seconds": time.perf_counter() - t0})
        self._walkers.get(state, lambda: walker)
        return state

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        if scene.kind not in self.scene_kinds:
            raise SegAnyError("unsupported", f"walk segments {list(self.scene_kinds)} scenes, not {scene.kind!r}")
        elements, positive = parse_clicks(query, scene.n_elements, method="walk", element="element")
        if len(elements) > MAX_CLICKS:
            raise SegAnyError(
                "bad_request", f"a walk query takes at most {MAX_CLICKS} clicks, got {len(elements)}; start a new one"
            )
        opts = check_options(state.meta.get("options", {}))
        walker = self._walkers.get(state, lambda: self._build(scene, opts))
        clicks = [(int(e), 1 if p else -1) for e, p in zip(elements.tolist(), positive.tolist(), strict=True)]
        return Selection(walker.scores(clicks), THRESHOLD)

    @staticmethod
    def _build(scene: Scene, opts: dict[str, Any], progress: Callable[[float, str], None] | None = None) -> ClickWalker:
        """The scene's graph with both walks' factorisations, so the first click pays for no setup;
        `progress` (a job's, which also raises on cancel) hears of each stage."""
        report = progress or (lambda fraction, message: None)
        report(0.0, "building the walk graph")
        graph = scene_graph(scene, opts["colour"], opts["neighbours"], opts["max_nodes"])
        if isinstance(graph, SeededCreaseGraph):
            for i, gamma in enumerate((FIRST_PULL, FOLLOW_PULL)):
                report(0.6 + 0.2 * i, "factorising the walk")
                graph.factor(gamma)
        return ClickWalker(graph)
