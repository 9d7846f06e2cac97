"""The weight-free prior on real renders of the built-in stool: its parts are separate primitives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segany.cameras import Cameras, cameras_for_scene
from segany.priors import get_prior
from segany.priors.geometric import GeometricPrior
from segany.render import render
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def stool():
    scene = sample_mesh()
    views = render(scene, cameras_for_scene(scene, 3, 128, 128)).views
    parts = np.where(views.ids >= 0, scene.face_parts[np.maximum(views.ids, 0)], -1)
    return views, parts


def _centre(mask: np.ndarray) -> tuple[float, float]:
    """The pixel farthest from the mask's boundary, as a click (x, y) at its centre."""
    d = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return x + 0.5, y + 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_capabilities_by_name() -> None:
    prior = get_prior("geometric")
    assert isinstance(prior, GeometricPrior)
    assert prior.capabilities == {"prompt", "auto", "embed"}


def test_auto_masks_are_nested_partitions_from_parts_to_objects(stool) -> None:
    views, _ = stool
    prior = GeometricPrior()
    for i in range(len(views)):
        fg = views.ids[i] >= 0
        levels = prior.auto_masks(views, i)
        assert len(levels) >= 4
        counts = [len(m) for m in levels]
        assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
        for masks in levels:
            assert masks.dtype == bool and masks.shape[1:] == fg.shape
            np.testing.assert_array_equal(masks.sum(axis=0), fg)  # disjoint and covering the foreground
        assert counts[-1] == ndimage.label(fg)[1]  # whole objects: the connected foreground


def test_click_on_a_part_gives_that_part(stool) -> None:
    views, parts = stool
    prior = GeometricPrior()
    best = []
    for i in range(len(views)):
        for part in np.unique(parts[i][parts[i] >= 0]):
            gt = parts[i] == part
            if gt.sum() < 60:
                continue
            res = prior.prompt(views, i, np.array([_centre(gt)]), np.array([1]))
            assert res.masks.shape == (3, *gt.shape) and res.scores.shape == (3,)
            areas = res.masks.sum(axis=(1, 2))
            assert list(areas) == sorted(areas)  # small → large
            assert np.all((res.scores >= 0) & (res.scores <= 1))
            best.append(max(_iou(m, gt) for m in res.masks))
    assert len(best) >= 10
    assert np.mean(best) > 0.6, best


def test_negative_click_removes_and_previous_mask_is_kept(stool) -> None:
    views, parts = stool
    prior = GeometricPrior()
    seat, back = parts[0] == 0, parts[0] == 1
    ps, pb = _centre(seat), _centre(back)
    both = prior.prompt(views, 0, np.array([ps]), np.array([1]))
    cut = prior.prompt(views, 0, np.array([ps, pb]), np.array([1, 0]))
    x, y = int(pb[0]), int(pb[1])
    assert both.masks[2, y, x]  # the whole stool contains the back...
    assert not cut.masks[:, y, x].any()  # ...until it is clicked negative
    assert cut.masks[:, int(ps[1]), int(ps[0])].all()
    first = prior.prompt(views, 0, np.array([ps]), np.array([1]))
    pick = int(np.argmax([_iou(m, seat) for m in first.masks]))
    grown = prior.prompt(views, 0, np.array([ps, pb]), np.array([1, 1]), prev=first.logits[pick])
    for m in grown.masks:
        assert (m & first.masks[pick]).sum() == first.masks[pick].sum()
        assert m[y, x]


def test_embeddings_are_unit_and_separate_parts(stool) -> None:
    views, parts = stool
    emb = get_prior("geometric", embed_dim=24).embed(views)
    assert emb.shape == (*views.ids.shape, 24) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-4)
    rng = np.random.default_rng(0)
    fg = np.argwhere(views.ids >= 0)
    a, b = fg[rng.integers(len(fg), size=3000)], fg[rng.integers(len(fg), size=3000)]
    sim = (emb[tuple(a.T)] * emb[tuple(b.T)]).sum(-1)
    same = parts[tuple(a.T)] == parts[tuple(b.T)]
    assert sim[same].mean() > sim[~same].mean() + 0.2
    assert (emb[views.ids < 0] @ emb[tuple(fg[0])]).max() < 1e-5  # background is orthogonal to objects


def test_an_empty_view_gives_no_masks_and_background_embeddings(stool) -> None:
    views, _ = stool
    away = views.cameras.viewmats.copy()
    away[:, :3, 3] += np.array([0.0, 0.0, -100.0])  # everything behind the cameras
    empty = render(sample_mesh(), Cameras(away, views.cameras.Ks, 128, 128)).views
    prior = GeometricPrior()
    assert all(len(m) == 0 for m in prior.auto_masks(empty, 0))
    res = prior.prompt(empty, 0, np.array([[64.0, 64.0]]), np.array([1]))
    assert not res.masks.any()
    assert np.allclose(prior.embed(empty)[..., -1], 1.0)  # the region tree's speed: `segany bench priors`
