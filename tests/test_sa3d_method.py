"""SA3D on two labelled blobs (splats and points written to real PLY files), tiny sizes, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from budgets import tiny
from sa3d_scenes import centre_element, point_blobs, splat_blobs

from segany.errors import SegAnyError
from segany.jobs import JobContext
from segany.methods import get_method
from segany.methods.sa3d.lifting import MaskVotes, membership_threshold, render_values
from segany.methods.sa3d.options import SA3DOptions
from segany.methods.sa3d.prompts import self_prompts
from segany.options import parse_options
from segany.priors import Prior, get_prior
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sa3d")


@pytest.fixture(scope="module")
def splats(tmp: Path):
    return splat_blobs(tmp)


@pytest.fixture(scope="module")
def points(tmp: Path):
    return point_blobs(tmp)


@pytest.fixture(scope="module")
def oracle_splats(splats):
    scene, labels = splats
    method = get_method("sa3d")
    return method, method.prepare(scene, get_prior("oracle", labels=labels), tiny("sa3d"), JobContext())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _positions(scene) -> np.ndarray:
    return scene.means if scene.kind == "splats" else scene.xyz


@pytest.mark.parametrize("blob", [0, 1])
def test_a_click_selects_its_blob_on_splats(splats, oracle_splats, blob):
    scene, labels = splats
    method, state = oracle_splats
    sel = method.query(scene, state, {"clicks": [[centre_element(scene.means, labels, blob), 1]]})
    assert sel.scores.shape == (scene.n_elements,) and sel.scores.dtype == np.float32
    assert ((sel.scores >= 0) & (sel.scores <= 1)).all()
    assert sel.threshold == pytest.approx(membership_threshold(0.3))
    assert _iou(sel.mask, labels == blob) > 0.95
    assert len(sel.extras["accepted_views"]) >= tiny("sa3d").views // 2, "masks were lifted from many views"


def test_a_click_selects_its_blob_on_points(points):
    scene, labels = points
    method = get_method("sa3d")
    state = method.prepare(scene, get_prior("oracle", labels=labels), tiny("sa3d"), JobContext())
    for blob in (0, 1):
        sel = method.query(scene, state, {"clicks": [[centre_element(scene.xyz, labels, blob), 1]]})
        assert _iou(sel.mask, labels == blob) > 0.95


def test_geometric_prior_selects_a_blob(splats):
    """No labels anywhere: the weight-free prior's whole-object masks, lifted, give the clicked blob."""
    scene, labels = splats
    method = get_method("sa3d")
    state = method.prepare(scene, get_prior("geometric"), tiny("sa3d", resolution=80, mask="largest"), JobContext())
    sel = method.query(scene, state, {"clicks": [[centre_element(scene.means, labels, 0), 1]]})
    assert _iou(sel.mask, labels == 0) > 0.9


def test_hidden_elements_are_filled_only_when_asked(splats):
    scene, labels = splats
    method = get_method("sa3d")
    prior = get_prior("oracle", labels=labels)
    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    shell = method.query(scene, method.prepare(scene, prior, tiny("sa3d", fill_hidden=False), JobContext()), click)
    solid = method.query(scene, method.prepare(scene, prior, tiny("sa3d"), JobContext()), click)
    assert shell.mask.sum() < solid.mask.sum() and not (shell.mask & (labels != 0)).any()
    assert _iou(solid.mask, labels == 0) > 0.95


def test_negative_clicks_remove_and_element_zero_works(splats, oracle_splats):
    scene, labels = splats
    method, state = oracle_splats
    assert labels[0] == 1
    a = centre_element(scene.means, labels, 0)
    sel = method.query(scene, state, {"clicks": [[a, 1], [0, -1]]})
    assert sel.scores[0] == 0.0 and _iou(sel.mask, labels == 0) > 0.95
    only_zero = method.query(scene, state, {"clicks": [[0, 1]]})
    assert only_zero.mask[0] and _iou(only_zero.mask, labels == 1) > 0.95
    assert not method.query(scene, state, {"clicks": [[0, -1]]}).mask.any()
    shown = np.unique(state.tensors["contrib_ids"].numpy())
    hidden = np.setdiff1d(np.flatnonzero(labels == 0), shown)
    assert len(hidden), "the blob has elements inside it that no view shows"
    inner = method.query(scene, state, {"clicks": [[a, 1], [int(hidden[0]), -1]]})
    assert inner.scores[hidden[0]] == 0.0 and inner.mask.sum() > 0.9 * (labels == 0).sum()
    assert not method.query(scene, state, {"clicks": []}).mask.any()


def test_queries_are_stateless(splats, oracle_splats):
    scene, labels = splats
    method, state = oracle_splats
    q = {"clicks": [[centre_element(scene.means, labels, 1), 1]]}
    first = method.query(scene, state, q).scores
    method.query(scene, state, {"clicks": [[centre_element(scene.means, labels, 0), 1]]})
    np.testing.assert_array_equal(method.query(scene, state, q).scores, first)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"clicks": "3"},
        {"clicks": [[1, 1, 1]]},
        {"clicks": [[-1, 1]]},
        {"clicks": [[300, 1]]},
        {"clicks": [[1.5, 1]]},
        {"clicks": [[1, 0]]},
        {"clicks": [[float("nan"), 1]]},
    ],
)
def test_bad_clicks_are_bad_requests(splats, oracle_splats, query):
    scene, _ = splats
    method, state = oracle_splats
    with pytest.raises(SegAnyError) as err:
        method.query(scene, state, query)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"voxels": 3}, "unknown"),
        ({"views": 0}, "views"),
        ({"views": True}, "views"),
        ({"resolution": 8.5}, "resolution"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"negative_weight": float("nan")}, "negative_weight"),
        ({"mask": "huge"}, "mask"),
        ({"fill_hidden": "yes"}, "fill_hidden"),
    ],
)
def test_bad_options_are_bad_requests(splats, options, word):
    scene, labels = splats
    with pytest.raises(SegAnyError) as err:
        get_method("sa3d").prepare(scene, get_prior("oracle", labels=labels), tiny("sa3d", **options), JobContext())
    assert err.value.code == "bad_request" and word in err.value.message


class _NoPrompts(Prior):
    """A real prior without the prompt capability (SA3D must refuse it up front)."""

    name = "no_prompts"


def test_refusals(splats, points, oracle_splats):
    scene = splats[0]
    method, state = oracle_splats
    with pytest.raises(SegAnyError) as err:
        method.prepare(sample_mesh(max_edge=0.5), get_prior("geometric"), tiny("sa3d"), JobContext())
    assert err.value.code == "unsupported"
    with pytest.raises(SegAnyError) as err:
        method.prepare(scene, _NoPrompts(), tiny("sa3d"), JobContext())
    assert err.value.code == "unsupported"
    with pytest.raises(SegAnyError) as err:
        method.query(points[0], state, {"clicks": [[0, 1]]})
    assert err.value.code == "not_prepared"


def test_prepare_reports_progress_and_cancels(splats):
    scene = splats[0]
    seen: list[float] = []
    method = get_method("sa3d")
    method.prepare(scene, get_prior("geometric"), tiny("sa3d"), JobContext(on_progress=lambda f, m: seen.append(f)))
    assert seen[-1] == 1.0
    ctx = JobContext()
    ctx.cancel_event.set()
    with pytest.raises(SegAnyError) as err:
        method.prepare(scene, get_prior("geometric"), tiny("sa3d"), ctx)
    assert err.value.code == "cancelled"


def test_default_options_follow_the_device(splats):
    cpu, gpu = (parse_options(SA3DOptions, preset=device, scene=splats[0]) for device in ("cpu", "cuda"))
    assert cpu.views < gpu.views and cpu.resolution < gpu.resolution
    assert cpu.prompts == 3 and cpu.iou_threshold == 0.5 and cpu.negative_weight == 0.3


def test_lifting_is_the_closed_form_of_sa3d_loss():
    """Two elements sharing pixels: membership flips exactly where λ·(outside weight) = inside weight."""
    ids = np.array([[[0, 1], [0, 1]], [[0, -1], [1, -1]]])
    weights = np.array([[[0.6, 0.3], [0.6, 0.3]], [[0.9, 0.0], [0.9, 0.0]]])
    mask = np.array([[True, False], [True, False]])
    votes = MaskVotes(2)
    votes.add(ids, weights, mask)
    conf = votes.confidence()
    np.testing.assert_allclose(conf, [(0.6 + 0.9) / (1.2 + 0.9), 0.3 / (0.6 + 0.9)])
    lam = 0.3
    for c, inside, total in zip(conf, votes.inside, votes.total, strict=True):
        assert (c > membership_threshold(lam)) == (inside - lam * (total - inside) > 0)
    alpha = np.ones((2, 2))
    np.testing.assert_allclose(render_values(ids, weights, alpha, np.array([1.0, 0.0])), [[2 / 3, 2 / 3], [1, 0]])


def test_self_prompts_spread_over_the_confident_region():
    score = np.full((40, 40), -0.5)
    score[5:35, 5:35] = 0.4
    score[20, 20] = 0.5
    depth = np.ones((40, 40))
    pts = self_prompts(score, depth, 3)
    assert len(pts) == 3 and tuple(pts[0]) == (20.5, 20.5)
    assert all(5 <= x < 35 and 5 <= y < 35 for x, y in pts)
    assert np.min(np.linalg.norm(pts[1:] - pts[0], axis=1)) > 2
    assert len(self_prompts(np.full((8, 8), -0.5), np.ones((8, 8)), 3)) == 0
