"""iSeg's first click with a weak prior: the crease cut whose rim runs along creases (`CreaseGraph.rim_crease`)."""

from __future__ import annotations

import numpy as np
import pytest
from eval_shapes import tower_on_slab

from segany.eval.geometry import mesh_geometry
from segany.graphwalk import CreaseGraph
from segany.methods.iseg.refine import CreaseRefiner


def _tower() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    shape = tower_on_slab()
    v, f = np.asarray(shape.scene.vertices), np.asarray(shape.scene.faces)
    return v, f, shape.labels == 1, mesh_geometry(v, f).weights


def _rank_of(first: np.ndarray) -> np.ndarray:
    """A sweep order that takes the `first` nodes before all others."""
    order = np.r_[np.flatnonzero(first), np.flatnonzero(~first)]
    rank = np.empty(len(first), dtype=np.int64)
    rank[order] = np.arange(len(first))
    return rank


def test_a_rim_along_the_concave_crease_scores_low_and_one_across_flat_ground_high() -> None:
    """The tower's own faces end at the concave crease around its foot; the faces above a height end half-way
    up its flat walls; the whole mesh has no rim at all."""
    v, f, tower, _ = _tower()
    g = CreaseGraph.for_mesh(v, f)
    upper = v[f].mean(axis=1)[:, 2] > 6.5
    at_foot = g.rim_crease(_rank_of(tower))[tower.sum() - 1]
    across_walls = g.rim_crease(_rank_of(upper))[upper.sum() - 1]
    assert at_foot < 0.2 and across_walls > 0.8
    assert g.rim_crease(_rank_of(tower))[-1] == 0.0


def test_points_without_rims_sweep_as_before() -> None:
    """A graph built without rims (kNN points) ignores the rim weight."""
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60, 3))
    edges = np.array([(i, j) for i in range(60) for j in range(i + 1, min(i + 4, 60))])
    g = CreaseGraph.for_points(p, edges, np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1), None)
    seed = g.seeds([(0, 1)])
    x = g.walk(0.0, seed, 1e-3)
    assert (g.sweep_scored(x, seed, 0.9, None, 0.0, 0.5)[0] == g.sweep_scored(x, seed, 0.9)[0]).all()


@pytest.mark.parametrize("height", [5.5, 6.5])
def test_a_first_click_takes_the_whole_part_when_the_decoder_answers_only_its_upper_part(height: float) -> None:
    """A click on top of the tower, the decoder answering only the tower above `height` (a view's mask ends
    half-way down a part: the geometric prior's masks stop at what one view shows). The agreement term alone
    follows that edge across the flat walls (IoU 0.76 / 0.57 with `RIM_CREASE` 0); the rim term moves the cut
    to the crease at the tower's foot."""
    v, f, tower, area = _tower()
    top = int(np.argmin(np.linalg.norm(v - np.asarray([6.0, 6.0, 9.0]), axis=1)))
    answer = np.where(v[:, 2] > height, 0.9, 0.05)
    scores = CreaseRefiner(v, f)([(top, 1)], lambda clicks, rows=None: answer if rows is None else answer[rows])
    picked = scores[f].mean(axis=1) >= 0.5
    assert area[picked & tower].sum() / area[picked | tower].sum() > 0.95
