"""The classical random-walker baseline on a simple two-part mesh and on points."""

from __future__ import annotations

import numpy as np
from eval_shapes import tower_on_slab

from segany.eval.generate import points_from_mesh
from segany.eval.geometry import mesh_geometry, point_geometry
from segany.eval.run import click_target
from segany.eval.scorers import BaselineScorer
from segany.eval.targets import select_targets


def test_baseline_segments_a_tower_on_a_slab() -> None:
    shape = tower_on_slab()
    geom = mesh_geometry(shape.scene.vertices, shape.scene.faces)
    scorer = BaselineScorer()
    scorer.prepare(shape, geom)
    slab, tower = select_targets(shape.labels, geom.weights)
    run = click_target(geom, tower, scorer, 5)
    assert run["iou"][0] >= 0.8  # one click on the tower: the concave crease bounds it
    assert max(run["iou"]) >= 0.95
    run = click_target(geom, slab, scorer, 5)
    assert max(run["iou"]) >= 0.9
    assert run["iou"][-1] > run["iou"][0]


def test_baseline_answers_are_scores_and_stateless() -> None:
    shape = tower_on_slab()
    geom = mesh_geometry(shape.scene.vertices, shape.scene.faces)
    scorer = BaselineScorer()
    scorer.prepare(shape, geom)
    clicks = [(763, 1), (545, -1), (513, 1)]
    first = scorer.query(clicks[:1])
    assert first.scores.shape == (len(shape.scene.vertices),) and first.threshold == 0.5
    assert first.scores.min() >= 0.0 and first.scores.max() <= 1.0
    scorer.query(clicks)
    np.testing.assert_array_equal(scorer.query(clicks[:1]).scores, first.scores)
    fresh = BaselineScorer()
    fresh.prepare(shape, geom)
    np.testing.assert_array_equal(fresh.query(clicks).scores, scorer.query(clicks).scores)


def test_baseline_on_points() -> None:
    shape = tower_on_slab()
    scene, labels = points_from_mesh(shape.scene, shape.labels, 3000, seed=2)
    geom = point_geometry(scene.xyz)
    scorer = BaselineScorer()
    scorer.prepare(type(shape)("pts", "synthetic", scene, labels, "generated"), geom)
    tower = select_targets(labels, geom.weights)[1]
    run = click_target(geom, tower, scorer, 5)
    assert max(run["iou"]) >= 0.8
