"""Click simulation: where the protocol clicks, on a synthetic split box, a real PSB shape and points."""

from __future__ import annotations

import numpy as np
from eval_shapes import PSB, split_box

from segany.eval.clicks import error_regions, next_click
from segany.eval.data import load_psb_shape
from segany.eval.generate import points_from_mesh
from segany.eval.geometry import mesh_geometry, point_geometry
from segany.eval.targets import select_targets


def test_first_click_is_deepest_inside_the_target() -> None:
    shape = split_box()
    geom = mesh_geometry(shape.scene.vertices, shape.scene.faces)
    gt = shape.labels == 0  # the x < 0 half; its boundary is the loop x = 0
    vertex, sign = next_click(geom, gt, np.zeros_like(gt))
    assert sign == 1
    # farthest from x = 0 along the surface: the middle of the face x = -0.5
    np.testing.assert_allclose(geom.positions[vertex], [-0.5, 0.0, 0.0], atol=1e-9)


def test_positive_in_missed_region_negative_in_false_region_largest_first() -> None:
    shape = split_box()
    geom = mesh_geometry(shape.scene.vertices, shape.scene.faces)
    gt = shape.labels == 0
    c = geom.positions[geom.faces].mean(axis=1)
    small_miss = gt & (c[:, 0] < -0.49) & (np.abs(c[:, 1]) < 0.25) & (np.abs(c[:, 2]) < 0.25)
    big_false = (~gt) & (c[:, 0] > 0.49)  # the whole face x = +0.5
    pred = (gt & ~small_miss) | big_false
    _, sizes, signs = error_regions(geom, gt, pred)
    assert len(sizes) == 2 and sorted(signs.tolist()) == [-1, 1]
    vertex, sign = next_click(geom, gt, pred)
    assert sign == -1  # the false region is the larger one
    np.testing.assert_allclose(geom.positions[vertex], [0.5, 0.0, 0.0], atol=1e-9)
    vertex, sign = next_click(geom, gt, gt & ~small_miss)
    assert sign == 1
    assert geom.positions[vertex][0] == -0.5 and np.abs(geom.positions[vertex][1:]).max() < 0.25
    assert next_click(geom, gt, gt) is None


def test_clicks_on_a_real_psb_shape_land_inside_their_region() -> None:
    shape = load_psb_shape(PSB, "1")  # human, 4.7K vertices
    geom = mesh_geometry(shape.scene.vertices, shape.scene.faces)
    targets = select_targets(shape.labels, geom.weights)
    assert 2 <= len(targets) <= 8
    for t in targets:
        vertex, sign = next_click(geom, t.mask, np.zeros_like(t.mask))
        assert sign == 1
        around = np.any(geom.faces == vertex, axis=1)
        assert t.mask[around].all(), f"first click of segment {t.label} touches faces outside it"
        # selecting everything: the false region (the rest of the body) gets a negative click outside
        vertex, sign = next_click(geom, t.mask, np.ones_like(t.mask))
        assert sign == -1 and not t.mask[np.any(geom.faces == vertex, axis=1)].any()


def test_clicks_on_points_use_the_knn_graph() -> None:
    shape = split_box()
    scene, labels = points_from_mesh(shape.scene, shape.labels, n=3000, seed=1)
    geom = point_geometry(scene.xyz)
    gt = labels == 1
    index, sign = next_click(geom, gt, np.zeros_like(gt))
    assert sign == 1 and gt[index]
    assert geom.positions[index][0] > 0.3  # deep inside the x > 0 half, far from x = 0
