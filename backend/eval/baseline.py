"""The classical baseline every method is measured against: a random walker with concavity-aware weights.

No 2D model, no training. It walks on the concavity-weighted graph of `segany.graphwalk` (on meshes
the dual graph of faces, the weights of Lai et al. 2009). A click seeds the faces around its vertex
(on points: the point and its kNN neighbours).

- First click: a random walker is undefined without a background seed, so the baseline takes the
  region the seed's diffusion leaks out of least: a diffusion from the seed with uniform absorption,
  then its level set of lowest conductance (cut weight over volume, at most half the graph) — the
  sweep cut of local graph partitioning (Andersen, Chung, Lang 2006).
- Every later click refines the answer to the clicks before it, like an interactive tool keeps its
  selection: Grady's random walker (PAMI 2006) over all clicks so far (positive seeds 1, negative
  0) with the previous selection as a weak prior (Grady, "random walks with prior models", 2005),
  thresholded at 0.5. One sparse solve per click; answers to click prefixes are memoised, so the
  query stays a pure function of its click list.

The click rule is `segany.methods.walk.walker.ClickWalker`, the one the `walk` method answers with: on a
mesh `segany eval --method walk` gives this baseline's answers.

The constants (`segany.graphwalk`: FIRST_PULL, FIRST_SHARE, FOLLOW_PULL) were set once on a few of the
shared PSB development shapes; what else was tried is in docs/journal.md.

Per-vertex scores are the area-weighted mean of the face probabilities around each vertex, threshold
0.5; the harness's face rule (mean of three vertex scores ≥ 0.5) then gives back the face decision.
"""

from __future__ import annotations

import numpy as np

from ..graphwalk import CreaseGraph
from ..methods.base import Selection
from ..methods.walk.walker import ClickWalker
from .clicks import Click
from .geometry import Geometry


class RandomWalkBaseline:
    """Build once per scene (the graph), then answer click lists; the query is stateless."""

    name = "baseline"
    threshold = 0.5

    def __init__(self, geom: Geometry, normals: np.ndarray | None = None) -> None:
        self.geom = geom
        if geom.faces is not None:
            graph = CreaseGraph.for_mesh(geom.positions, geom.faces)
        else:
            graph = CreaseGraph.for_points(geom.positions, geom.click_edges, geom.click_lengths, normals)
        self.walker = ClickWalker(graph)

    @property
    def graph(self) -> CreaseGraph:
        return self.walker.graph

    def query(self, clicks: list[Click]) -> Selection:
        return Selection(self.walker.scores(clicks), self.threshold)
