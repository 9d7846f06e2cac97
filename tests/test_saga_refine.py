"""SAGA's crease refinement on meshes (backend/methods/saga/refine.py): the first "auto" click climbing to a
coarser scale when the features' answer follows no crease, and a later click changing only what it asked for
(`CreaseGraph.asked`, shared with iSeg). Also the node-centre distances those rules measure with.

The similarity is a stand-in (a function of the clicks and the scale) in these tests: features that answer a
patch of a smooth part at one scale and the part at another cannot be trained to order on a small scene, and
the rules under test only read the similarity's answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from eval_shapes import tower_on_slab

from segany.eval.geometry import mesh_geometry
from segany.graphwalk import CreaseGraph
from segany.methods.base import State
from segany.methods.saga.query import FIT_LOSS, fits_its_prior
from segany.methods.saga.refine import CreaseRefiner
from segany.scene import MeshScene

Click = tuple[int, int]


def spheres(centres: list[float]) -> MeshScene:
    """Unit icospheres (642 vertices each) centred on the x axis at `centres`, no edge between them."""
    ball = trimesh.creation.icosphere(subdivisions=3)
    v = [ball.vertices + np.array([x, 0.0, 0.0]) for x in centres]
    f = [ball.faces + i * len(ball.vertices) for i in range(len(centres))]
    return MeshScene(vertices=np.concatenate(v), faces=np.concatenate(f))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_node_steps_are_face_centre_distances_on_a_mesh_and_point_distances_on_points() -> None:
    scene = spheres([0.0])
    mesh = CreaseGraph.for_mesh(scene.vertices, scene.faces)
    lengths, step = mesh.steps()
    centres = scene.vertices[scene.faces].mean(axis=1)
    a, b = mesh.edges.T
    expected = np.linalg.norm(centres[a] - centres[b], axis=1)
    np.testing.assert_allclose(np.asarray(lengths[a, b]).ravel(), expected, rtol=1e-5)
    assert abs(step - expected.mean()) < 1e-6
    points = scene.vertices[:50].astype(np.float64)
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    graph = CreaseGraph.for_points(points, edges, np.ones(3), None)
    got = np.asarray(graph.steps()[0][edges[:, 0], edges[:, 1]]).ravel()
    np.testing.assert_allclose(got, np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1), rtol=1e-5)


def test_a_first_cut_that_follows_no_crease_climbs_to_the_coarser_scale_whose_cut_does() -> None:
    """At the fine scale the similarity holds a cap around the click on a smooth sphere: no crease bounds it,
    so its best cut scores above `CLIMB`; at the coarser scale it holds the sphere, a separate piece whose cut
    is free. The answer is the sphere and its scale the coarser one; asked for the fine scale alone, the scale
    stays (the rim term, `RIM_CREASE`, takes the whole sphere there too: the cap's rim is all smooth ground)."""
    scene = spheres([0.0, 3.0])
    sphere = np.arange(len(scene.vertices)) < len(scene.vertices) // 2
    click = int(np.argmax(scene.vertices[:, 0] * sphere - 10 * ~sphere))  # the sphere's +x pole
    cap = sphere & (np.linalg.norm(scene.vertices - scene.vertices[click], axis=1) < 0.6)
    asked: list[float] = []

    def similarity(clicks: list[Click], scale: float) -> np.ndarray:
        asked.append(scale)
        return (cap if scale < 0.5 else sphere).astype(np.float32)

    refiner = CreaseRefiner(scene)
    scores, scale = refiner.scores([(click, 1)], [0.1, 1.0], similarity, cut_first=True, asked=True)
    assert scale == 1.0 and asked == [0.1, 1.0] and iou(scores >= 0.5, sphere) > 0.95
    fine, scale = CreaseRefiner(scene).scores([(click, 1)], [0.1], similarity, cut_first=True, asked=True)
    assert scale == 0.1 and iou(fine >= 0.5, sphere) > 0.95


def test_a_climbed_first_cut_takes_other_pieces_only_where_the_querys_scale_held_them() -> None:
    """Two separate spheres, a click on the first one's pole. At the query's scale the similarity holds a cap
    around the click (no crease bounds it: the cut climbs) and the far half of the second sphere; at the
    coarser scale it holds everything, as a coarse level's answer does (a mug's body with its separate handle).
    The climb decides the clicked sphere's extent only: the answer is the first sphere and the second one's
    far half, not the second sphere whole (which the coarser level's answer on it would add)."""
    scene = spheres([0.0, 3.0])
    sphere = np.arange(len(scene.vertices)) < len(scene.vertices) // 2
    click = int(np.argmax(scene.vertices[:, 0] * sphere - 10 * ~sphere))  # the first sphere's +x pole
    cap = sphere & (np.linalg.norm(scene.vertices - scene.vertices[click], axis=1) < 0.6)
    far_half = ~sphere & (scene.vertices[:, 0] > 3.0)

    def similarity(clicks: list[Click], scale: float) -> np.ndarray:
        return (cap | far_half if scale < 0.5 else np.ones(len(sphere), dtype=bool)).astype(np.float32)

    scores, scale = CreaseRefiner(scene).scores([(click, 1)], [0.1, 1.0], similarity, cut_first=True, asked=True)
    picked = scores >= 0.5
    assert scale == 1.0 and iou(picked & sphere, sphere) > 0.95
    assert iou(picked & ~sphere, far_half) > 0.9


def test_a_first_cut_that_follows_a_crease_keeps_the_querys_scale() -> None:
    """The similarity already holds the clicked sphere at the query's scale: its cut is free and agrees, so
    no coarser scale is asked for (a click costs one similarity, as before)."""
    scene = spheres([0.0, 3.0])
    sphere = np.arange(len(scene.vertices)) < len(scene.vertices) // 2
    asked: list[float] = []

    def similarity(clicks: list[Click], scale: float) -> np.ndarray:
        asked.append(scale)
        return sphere.astype(np.float32)

    scores, scale = CreaseRefiner(scene).scores([(0, 1)], [0.1, 1.0], similarity, cut_first=True, asked=True)
    assert scale == 0.1 and asked == [0.1] and iou(scores >= 0.5, sphere) > 0.95


@pytest.mark.parametrize("height", [5.5, 6.5])
def test_a_first_cut_runs_to_the_concave_crease_when_the_features_answer_only_a_parts_upper_half(
    height: float,
) -> None:
    """A click on top of the tower, the similarity answering only the tower above `height` (features trained
    on masks that end where one view stops seeing a part). The agreement term alone follows that edge across
    the flat walls; the rim term (`RIM_CREASE`, iSeg's rule) moves the cut to the crease at the tower's foot."""
    shape = tower_on_slab()
    v, f = np.asarray(shape.scene.vertices), np.asarray(shape.scene.faces)
    tower, area = shape.labels == 1, mesh_geometry(v, f).weights
    top = int(np.argmin(np.linalg.norm(v - np.asarray([6.0, 6.0, 9.0]), axis=1)))
    answer = np.where(v[:, 2] > height, 0.9, 0.05).astype(np.float32)
    scores, _ = CreaseRefiner(shape.scene).scores([(top, 1)], [1.0], lambda c, s: answer, cut_first=True, asked=True)
    picked = scores[f].mean(axis=1) >= 0.5
    assert area[picked & tower].sum() / area[picked | tower].sum() > 0.95


def test_a_negative_click_on_a_wrong_island_takes_the_island_not_the_selection_near_it() -> None:
    """The answer so far holds the faces of a sphere's upper half and, wrongly, a separate cap below the
    equator; the similarity answers the two clicks with nothing (a coarse scale: everything is as like the
    negative click as the positive one). The walk between the clicks then puts the selection's side nearest
    the negative click below 0.5 too, and without the rule (splats' and points' path) that side goes; on the
    crease-cut path the click asked only for the cap it is the middle of, so that goes and the upper half
    stays."""
    scene = spheres([0.0])
    refiner = CreaseRefiner(scene)
    centres = scene.vertices[scene.faces].mean(axis=1)
    centre = np.array([np.cos(np.pi / 3), 0.0, -np.sin(np.pi / 3)])  # 60° below the equator
    upper = centres[:, 2] > 0.0
    cap = np.linalg.norm(centres - centre, axis=1) < 0.35
    clicks = (
        (int(np.argmax(scene.vertices[:, 2])), 1),
        (int(np.argmin(np.linalg.norm(scene.vertices - centre, axis=1))), -1),
    )
    nothing = np.zeros(len(centres))
    after = refiner._then(upper | cap, clicks, nothing, asked=True)
    assert not (after & cap).any() and np.array_equal(after, upper)
    loose = refiner._then(upper | cap, clicks, nothing, asked=False)
    assert not (loose & cap).any() and iou(loose, upper) < 0.9  # the upper half's side near the click went too


def test_only_features_that_fitted_their_prior_make_later_clicks_take_only_what_they_asked_for() -> None:
    """The gate on splats and points (`fits_its_prior`): training's final loss at most `FIT_LOSS`."""
    low = State(tensors={}, meta={"losses": {"loss_first": 1.0, "loss_last": 0.9 * FIT_LOSS}})
    high = State(tensors={}, meta={"losses": {"loss_first": 1.0, "loss_last": 1.1 * FIT_LOSS}})
    assert fits_its_prior(low) and not fits_its_prior(high)
