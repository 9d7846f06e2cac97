"""SAGA's answers snapped to the scene's creases by random walks seeded with the clicks.

Why: at one scale the gated similarity answers every click with "what looks like the clicked element",
everywhere. Features trained on a weight-free prior's masks do not separate every human part, so the first
answer's edge wanders, and a later click can only add or remove everything like it: after session 9 the
third click was barely better than the first (splats mIoU@1/3 60.0/63.1) while the plain walk, which
knows nothing of the features, reached 78.5. Here the walk graph of the scene (`segany.methods.walk.graph`:
concave creases and colour edges cheap to cut; a mesh's face graph) carries the clicks, and SAGA's answer
guides it — the way iSeg's refinement guides a walk with its decoder (`segany.methods.iseg.refine`):

- the first positive click (with `cut_first`: `SAGA.query` asks for it with "auto" on a mesh, whose creases
  are exact) takes, among the level sets of a walk from it, the one whose conductance plus
  `AGREEMENT` × (1 − its IoU with SAGA's confident answer, ≥ `CONFIDENT`) plus `RIM_CREASE` × its rim's share
  off concave creases (`CreaseGraph.rim_crease`, iSeg's term) is lowest: the crease-bounded region nearest the
  features' answer. The rim term because the features learnt the prior's masks, which end a part where one view
  stops seeing it: the agreement term alone followed that edge across flat ground (on meshes only: a point
  graph has no rims). On a separate piece of the scene, which no walk from the click
  reaches, SAGA's answer at the query's scale stands (where the click itself is in it). When even that cut scores
  above `CLIMB`, the features' part at the query's scale follows no crease (a patch of a smooth cup body: the
  prior split it at three of its four granularities), so the answer at the next coarser scale the prior saw
  around the click is tried, and taken when its cut scores lower; that scale then answers the later clicks too.
  The climb is judged on the clicked piece's cut alone, so it changes only that piece: the coarser level's
  answer on another piece is the whole object (it took a mug's body with a click on its separate handle);
- each later click runs Grady's random walker (2006) seeded by every click (positive 1, negative 0), its
  prior the mean of the previous answer and SAGA's answer to all the clicks at the same scale, at the
  first click's pull. The clicks are hard evidence and spread only as far as the graph lets them (to the
  creases around them); the prior keeps what no click has spoken about where it was and lets the features
  say what belongs together beyond a crease. A positive click only adds and a negative one only takes
  away, as in every interactive tool.

Answers to click prefixes are memoised per scene and scale, so a query stays a pure function of its clicks
and scale and a next click costs one walk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from ... import deadline
from ...graphwalk import AGREEMENT, CONFIDENT, FIRST_MAX_SHARE, FIRST_PULL, RIM_CREASE
from ...scene import MeshScene, Scene
from ..walk.graph import element_attributes, point_graph
from ..walk.solve import SeededCreaseGraph

Click = tuple[int, int]  # (element, +1 or -1)
Similarity = Callable[[list[Click], float], np.ndarray]  # clicks, scale → SAGA's per-element scores
MEMO_SIZE = 256
THRESHOLD = 0.5
# A cut scoring above this is worse than a crease-free cut (conductance 0) sharing half the guide: geometry and
# features disagree at that scale.
CLIMB = 0.5 * AGREEMENT


def scene_graph(scene: Scene) -> SeededCreaseGraph:
    """The `walk` method's graph of the scene (its default options), with one-pass seeded solves."""
    if isinstance(scene, MeshScene):
        return SeededCreaseGraph.for_mesh(scene.vertices, scene.faces)
    positions, normals, colours = element_attributes(scene)
    graph = point_graph(positions, normals, colours, 1.0)
    if not isinstance(graph, SeededCreaseGraph):
        raise TypeError(f"point_graph gave a {type(graph).__name__}, not a SeededCreaseGraph")
    return graph


class CreaseRefiner:
    """One scene's graph and the answers to the click prefixes seen so far; thread-safe."""

    def __init__(self, scene: Scene) -> None:
        self.graph = scene_graph(scene)
        to = self.graph.to_elements  # None when the nodes are the elements
        self.to_nodes: sp.csr_matrix | None = None
        if to is not None:  # element values → node values: a node's mean over its elements (a face's corners)
            share = sp.csc_matrix((to > 0).astype(np.float64))
            counts = np.maximum(np.asarray(share.sum(axis=0)).ravel(), 1e-30)
            self.to_nodes = (share @ sp.diags(1.0 / counts)).T.tocsr()
        self._memo: OrderedDict[
            tuple[tuple[tuple[float, ...], bool, bool], tuple[Click, ...]], tuple[np.ndarray, float]
        ]
        self._memo = OrderedDict()
        self._lock = threading.Lock()

    def warm(self) -> None:
        """The factorisation and the compiled walk kernels, loaded before a click needs them."""
        if self.graph.n:
            seed = np.zeros(self.graph.n, dtype=np.int64)
            seed[0] = 1
            self.graph.walk(0.0, seed, FIRST_PULL)

    def scores(
        self, clicks: list[Click], scales: Sequence[float], similarity: Similarity, cut_first: bool, asked: bool
    ) -> tuple[np.ndarray, float]:
        """Per element, a score in [0, 1] to threshold at 0.5, for clicks holding a positive one, and the scale
        that answered them. The first positive click's answer is the crease cut with `cut_first` (at
        `scales[0]`, or a coarser one of `scales` when that cut is poor: module docstring), else SAGA's own
        at `scales[0]`; with `asked` a later click changes only what it asked for (`_then`)."""
        key = tuple((int(e), 1 if s > 0 else -1) for e, s in clicks)
        first = next(i for i, (_, s) in enumerate(key) if s > 0)
        mode = (tuple(float(s) for s in scales), cut_first, asked)
        answer, scale = self._answer(mode, key, first, similarity)
        return self.graph.element_scores(answer).astype(np.float32), scale

    def _nodes(self, element_values: np.ndarray) -> np.ndarray:
        values = np.asarray(element_values, dtype=np.float64)
        return values if self.to_nodes is None else self.to_nodes @ values

    def _answer(
        self, mode: tuple[tuple[float, ...], bool, bool], clicks: tuple[Click, ...], first: int, similarity: Similarity
    ) -> tuple[np.ndarray, float]:
        """The answer and its scale built one click at a time from the longest memoised prefix (a loop: any
        number of clicks)."""
        scales, cut_first, asked = mode
        with self._lock:
            done = next((i for i in range(len(clicks), first, -1) if (mode, clicks[:i]) in self._memo), first)
            chosen, scale = self._memo[(mode, clicks[:done])] if done > first else (None, scales[0])
        for i in range(done, len(clicks)):
            deadline.check()  # a query's deadline (or its client leaving) stops a long click list here
            prefix = clicks[: i + 1]
            if chosen is None and cut_first:
                chosen, scale = self._first(prefix, first, scales, similarity)
            elif chosen is None:
                chosen = self._nodes(similarity(list(prefix), scale)) >= THRESHOLD
            else:
                saga = self._nodes(similarity(list(prefix), scale))
                chosen = self._then(chosen >= THRESHOLD, prefix, saga, asked)
            chosen = np.asarray(chosen, dtype=np.float64)
            with self._lock:
                self._memo[(mode, prefix)] = (chosen, scale)
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        assert chosen is not None  # the loop ran at least once (done ≤ first < len(clicks)) or the memo held it
        return chosen, scale

    def _first(
        self, clicks: tuple[Click, ...], first: int, scales: tuple[float, ...], similarity: Similarity
    ) -> tuple[np.ndarray, float]:
        """The crease cut from the first positive click nearest SAGA's answer, climbing to a coarser scale
        while the cut scores above `CLIMB` and the coarser answer's cut scores lower (module docstring); other
        pieces keep the query's scale's answer; negative clicks before it then take their side of the creases."""
        g = self.graph
        seed = g.seeds(clicks[first:])
        unclicked = ~np.isin(g.pieces, g.pieces[seed > 0])
        x = g.walk(0.0, seed, FIRST_PULL)
        x[unclicked] = -1.0  # the sweep stays on the clicked piece
        best: tuple[float, np.ndarray, float] | None = None
        others: np.ndarray | None = None
        for scale in scales:
            if best is not None and best[0] <= CLIMB:
                break
            saga = self._nodes(similarity(list(clicks), scale))
            covers = bool((saga[seed > 0] >= THRESHOLD).any())  # else SAGA answers another click: geometry decides
            guide = saga >= CONFIDENT if covers else None
            chosen, score = g.sweep_scored(x, seed, FIRST_MAX_SHARE, guide, AGREEMENT, RIM_CREASE)
            if others is None:  # the query's own scale answers the other pieces: a climb is judged on the clicked one
                others = unclicked & (saga >= THRESHOLD) if covers else np.zeros_like(unclicked)
            chosen |= others
            if best is None or score < best[0]:
                best = (score, chosen, scale)
        assert best is not None  # `scales` holds the query's scale at least
        _, chosen, scale = best
        everything = g.seeds(clicks)
        return (g.follow(chosen, everything) if (everything < 0).any() else chosen), scale

    def _then(self, previous: np.ndarray, clicks: tuple[Click, ...], saga: np.ndarray, asked: bool) -> np.ndarray:
        """A later click: the walk seeded by every click over the prior of the previous and SAGA's answers
        proposes; a positive click only adds, a negative one only takes away. With `asked` only what the click
        asked for (`CreaseGraph.asked`, iSeg's rule), where the previous answer deserves it: on a mesh with
        "auto" (at a coarse scale a negative click's similarity answer is near nothing, so the walk's prior
        halves over the whole selection: it took half a cup body away with one click on its handle, PSB 21,
        IoU 98.9 → 46.7), and where the features fitted their prior's masks (`fits_its_prior`: a second
        click on an oracle-trained splat scene cut 87.9 → 83.8 on average). Where the features did not fit
        (the geometric prior on splats and points) the previous answer is wrong in many places and the walk's
        whole change mends more (the rule lowered mIoU@5 87.8 → 85.1 and 87.9 → 85.7 there: journal,
        session 11)."""
        g = self.graph
        grow = clicks[-1][1] > 0
        x = g.walk(0.5 * (previous + saga), g.seeds(clicks), FIRST_PULL)
        change = ~previous & (x >= THRESHOLD) if grow else previous & (x < THRESHOLD)
        if asked:
            here = g.seeds(clicks[-1:]) != 0
            change = g.asked(here, change, g.near(here, ~previous if grow else previous))
        return previous | change if grow else previous & ~change
