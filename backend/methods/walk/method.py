"""`walk` as a SegAny method: the evaluation's classical baseline, offered to users on every scene kind.

No 2D model, no training, nothing to prepare: the first click on a scene builds its graph (graph.py; the
one-time cost), every click after that is one walk (walker.py). Prepare is optional and only builds the
graph ahead of the first click; its state holds no tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from ...errors import SegAnyError
from ...graphwalk import FIRST_PULL, FOLLOW_PULL
from ...jobs import JobContext
from ...options import parse_options
from ...priors import Prior
from ...scene import Scene
from ..base import Method, PerState, Selection, State
from ..queries import parse_query
from .graph import scene_graph
from .options import WalkOptions, WalkQuery
from .solve import SeededCreaseGraph
from .walker import ClickWalker

FORMAT = "walk/1"
THRESHOLD = 0.5


class Walk(Method):
    """A random walker on the scene's concavity-, normal- and colour-weighted graph (see graph.py, walker.py)."""

    name: ClassVar[str] = "walk"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh", "splats", "points")
    default_prior: ClassVar[str] = "geometric"  # no prior is used; the engine names one for every state
    needs_prepare: ClassVar[bool] = False
    state_format: ClassVar[str | None] = FORMAT
    Options: ClassVar[type[WalkOptions]] = WalkOptions
    Query: ClassVar[type[WalkQuery]] = WalkQuery

    def __init__(self) -> None:
        self._walkers: PerState[ClickWalker] = PerState(size=8)

    def prepare(self, scene: Scene, prior: Prior, options: WalkOptions, ctx: JobContext) -> State:
        t0 = time.perf_counter()
        walker = self._build(scene, options, ctx.progress)
        meta = {"format": FORMAT, "options": options.to_dict(), "seconds": time.perf_counter() - t0}
        state = State(tensors={}, meta=meta)
        self._walkers.get(state, lambda: walker)
        return state

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        if scene.kind not in self.scene_kinds:
            raise SegAnyError("unsupported", f"walk segments {list(self.scene_kinds)} scenes, not {scene.kind!r}")
        clicks = parse_query(self.Query, query, scene).clicks()
        opts = parse_options(self.Options, state.meta.get("options", {}))
        walker = self._walkers.get(state, lambda: self._build(scene, opts))
        return Selection(walker.scores(clicks), THRESHOLD)

    @staticmethod
    def _build(scene: Scene, opts: WalkOptions, progress: Callable[[float, str], None] | None = None) -> ClickWalker:
        """The scene's graph with both walks' factorisations, so the first click pays for no setup;
        `progress` (a job's, which also raises on cancel) hears of each stage."""
        report = progress or (lambda fraction, message: None)
        report(0.0, "building the walk graph")
        graph = scene_graph(scene, opts.colour, opts.neighbours, opts.max_nodes)
        if isinstance(graph, SeededCreaseGraph):
            for i, gamma in enumerate((FIRST_PULL, FOLLOW_PULL)):
                report(0.6 + 0.2 * i, "factorising the walk")
                graph.factor(gamma)
        return ClickWalker(graph)
