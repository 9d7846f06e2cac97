"""Crease refinement: the decoder's answer snapped to the mesh's concave creases, every click kept.

iSeg's decoder answers with what the 2D prior taught it. With SAM that is a part; with a weight-free
prior it is a soft region whose edge wanders across faces, and the decoder, trained on one or two
clicks, answers later clicks weakly. This stage walks on the concavity-weighted face graph
(`segany.graphwalk`), where part boundaries cost little to cut:

- first click: a random walk from the clicked faces with the decoder's face probabilities as the prior,
  then, among its level sets holding at most half the surface, the one whose conductance plus
  `AGREEMENT` × (1 − IoU with the decoder's confident answer, ≥ `CONFIDENT`) is lowest — the
  crease-bounded region closest to the decoder's answer (a spill at 0.6 onto flat ground is not
  followed). Conductance alone often picks the smallest crease next to the click (a leg's hoof, not the leg);
  on separate pieces of the mesh, which no walk from the click reaches (a cup's inner wall), the decoder's
  own answer.
  A loose convex piece under the click (a leg modelled as its own cylinder) is one part and is taken
  whole (`CreaseGraph.convex_piece`): the decoder, trained through views, never sees the far side of a
  convex part together with the click and leaves it out, and a cut along the facets of a thin piece is
  cheap enough for the agreement term to follow that half answer.
  A decoder answer that leaves the clicked faces out (below 0.5 there) answers some other click: then the
  first answer is the geometric one alone, the sweep of a walk without a prior. Unlike the baseline's it
  may hold more than half the surface (up to `SILENT_SHARE`): nothing then says the part is small, and the
  cut around a cup's handle, seen from the body, is the body, which a decoder trained on the geometric
  prior answers with nothing;
- each later click refines the answer to the clicks before it, as an interactive tool keeps its
  selection: a random walk seeded by all clicks (positive 1, negative 0) with the previous answer as a
  weak prior, so each click moves the boundary to the creases between it and the other clicks. A
  positive click only adds and a negative one only takes away: with the walk alone, cutting one chair leg
  off a seat lets the next leg grow back in;
- a negative click also takes away the part under it — the geometric first answer to a click there, when
  it holds no positive click — except where a walk between the clicks alone, its prior a neutral 0.5,
  leans to the positive clicks (≥ 0.75): a negative click on a handle whose crease the sweep misses must
  not cut the cup body it runs into. The follow walk is not used for this: its pull towards the previous
  answer keeps much of a wrongly selected large part after a negative click on it;
- islands a negative click cut off from every positive click are dropped (`drop_cut_islands`).

Answers to click prefixes are memoised per mesh, so a query stays a pure function of its click list.

With a strong prior the decoder needs none of this: trained on the oracle's masks it answers later clicks
better than any walk (docs/methods/iseg.md). A query's default, "auto", refines when the decoder could
not fit its prior's masks — its final training loss (BCE + dice) above `WEAK_PRIOR_LOSS` — which is where
the prior's masks disagree across views: the geometric prior and the noisy oracle, not the clean oracle
(losses per prior in docs/methods/iseg.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ...graphwalk import FIRST_PULL, FIRST_SHARE, FOLLOW_PULL, CreaseGraph

Click = tuple[int, int]

CONFIDENT = 0.75  # first click: the decoder's faces at or above this guide the cut (PSB dev shapes)
AGREEMENT = 0.1  # first click: weight of disagreeing with the decoder against a cut's conductance (PSB dev shapes)
MEMO_SIZE = 256
SILENT_SHARE = 0.98  # first click, decoder silent there: the geometric cut may take all but a small part
PART_HOLD = 0.75  # a negative click's part stays where the neutral walk is at least this (PSB dev shapes)
WEAK_PRIOR_LOSS = 0.2  # "auto" refines when the decoder's final training loss is above this
REFINED_THRESHOLD = 0.5  # refined scores are area shares of selected faces around each vertex


def wants_refinement(decoder_loss: float | None) -> bool:
    """The "auto" rule: refine unless the decoder fitted its prior's masks well (unknown loss: refine)."""
    return decoder_loss is None or decoder_loss > WEAK_PRIOR_LOSS


class CreaseRefiner:
    """Per mesh: the crease graph and the answers to click prefixes seen so far."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.faces = np.asarray(faces, dtype=np.int64)
        self.n_vertices = len(vertices)
        self.graph = CreaseGraph.for_mesh(vertices, self.faces)
        self._memo: OrderedDict[tuple[Click, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, clicks: list[Click], decode: Callable[[list[Click]], np.ndarray]) -> np.ndarray:
        """Per-vertex scores in [0, 1] (threshold 0.5) for `clicks`; `decode` gives the decoder's per-vertex
        probabilities for a click list and is called only for the first click."""
        key = tuple((int(v), 1 if s > 0 else -1) for v, s in clicks)
        if not any(s > 0 for _, s in key):
            return np.zeros(self.n_vertices, dtype=np.float32)
        return self.graph.element_scores(self._answer(key, decode)).astype(np.float32)

    def _answer(self, clicks: tuple[Click, ...], decode: Callable[[list[Click]], np.ndarray]) -> np.ndarray:
        with self._lock:
            known = self._memo.get(clicks)
        if known is not None:
            return known
        g = self.graph
        seed = g.seeds(clicks)
        if len(clicks) == 1 or not any(s > 0 for _, s in clicks[:-1]):
            positives = [c for c in clicks if c[1] > 0]
            chosen = self._first(decode(positives[:1]), g.seeds(positives[:1]), seed)
        else:
            chosen = self._next(self._answer(clicks[:-1], decode) >= 0.5, clicks[-1], seed)
        chosen = chosen.astype(np.float64)
        with self._lock:
            self._memo[clicks] = chosen
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return chosen

    def _next(self, previous: np.ndarray, click: Click, seed: np.ndarray) -> np.ndarray:
        """A later click's answer: the follow walk, growing only on a positive click and shrinking only on a
        negative one, which also takes away the part under it where the clicks alone do not hold it."""
        g = self.graph
        x = g.follow_walk(previous, seed)
        if click[1] > 0:
            return previous | (x >= 0.5)
        chosen = previous & (x >= 0.5)
        part = g.first_region(g.seeds([(click[0], 1)]))
        if not (part & (seed > 0)).any():
            chosen &= ~(part & (g.walk(0.5, seed, FOLLOW_PULL) < PART_HOLD))
        return g.drop_cut_islands(chosen, previous, seed)

    def _first(self, vertex_probs: np.ndarray, first_seed: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """The crease-bounded region nearest the decoder's answer to the first positive click."""
        g = self.graph
        face_probs = np.asarray(vertex_probs, dtype=np.float64)[self.faces].mean(axis=1)
        if face_probs[first_seed > 0].mean() < 0.5:  # the decoder's answer leaves the click out: geometry decides
            chosen = g.first_region(first_seed, SILENT_SHARE)
        else:
            answer = face_probs >= 0.5
            unclicked = ~np.isin(g.pieces, g.pieces[first_seed > 0])
            chosen = g.convex_piece(first_seed)
            if chosen is None:
                x = g.walk(face_probs, first_seed, FIRST_PULL)
                x[unclicked] = -1.0  # the sweep stays on the clicked piece
                chosen = g.sweep(x, first_seed, FIRST_SHARE, face_probs >= CONFIDENT, AGREEMENT)
            chosen |= unclicked & answer  # no walk reaches a separate piece: the decoder decides there
        if (seed < 0).any():
            chosen = g.follow(chosen, seed)
        return chosen
