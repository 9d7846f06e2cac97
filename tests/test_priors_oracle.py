"""The ground-truth prior: exact without noise, wrong in the intended ways with it, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.priors import get_prior
from segany.priors.oracle import OracleNoise
from segany.render import render
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def stool():
    scene = sample_mesh()
    views = render(scene, cameras_for_scene(scene, 2, 96, 96)).views
    parts = np.where(views.ids >= 0, scene.face_parts[np.maximum(views.ids, 0)], -1)
    return scene, views, parts


def _click(mask: np.ndarray) -> np.ndarray:
    d = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return np.array([[x + 0.5, y + 0.5]])


def test_exact_without_noise(stool) -> None:
    scene, views, parts = stool
    prior = get_prior("oracle", labels=scene.face_parts)
    fg = views.ids[0] >= 0
    levels = prior.auto_masks(views, 0)
    assert len(levels) == 3
    shown = np.unique(parts[0][fg])
    assert len(levels[0]) == len(shown)
    assert {tuple(np.unique(parts[0][m])) for m in levels[0]} == {(p,) for p in shown}
    assert len(levels[1]) < len(levels[0])
    np.testing.assert_array_equal(levels[2].any(axis=0), fg)
    seat = parts[0] == 0
    res = prior.prompt(views, 0, _click(seat), np.array([1]))
    np.testing.assert_array_equal(res.masks[0], seat)
    assert res.masks[0].sum() < res.masks[1].sum() <= res.masks[2].sum()
    assert (res.masks[1] & ~seat).any() and (res.masks[1] >= seat).all()
    np.testing.assert_array_equal(res.masks[2], fg)  # the stool's primitives touch: one object


def test_negative_and_previous(stool) -> None:
    scene, views, parts = stool
    prior = get_prior("oracle", labels=scene.face_parts)
    seat, back = parts[0] == 0, parts[0] == 1
    clicks = np.concatenate([_click(seat), _click(back)])
    res = prior.prompt(views, 0, clicks, np.array([1, 0]))
    assert not (res.masks & back).any()
    grown = prior.prompt(views, 0, clicks, np.array([1, 1]), prev=res.logits[0])
    np.testing.assert_array_equal(grown.masks[0], seat | back)


def test_noise_is_reproducible_and_changes_the_answer(stool) -> None:
    scene, views, parts = stool
    clean = get_prior("oracle", labels=scene.face_parts)
    noisy = get_prior("oracle", labels=scene.face_parts, noise="default", seed=3)
    again = get_prior("oracle", labels=scene.face_parts, noise="default", seed=3)
    for a, b in zip(noisy.auto_masks(views, 1), again.auto_masks(views, 1), strict=True):
        np.testing.assert_array_equal(a, b)
    heavy = get_prior("oracle", labels=scene.face_parts, noise={"split": 1.0, "jitter": 0, "missing": 0.0}, seed=1)
    assert len(heavy.auto_masks(views, 1)[0]) == 2 * len(clean.auto_masks(views, 1)[0])
    merged = get_prior("oracle", labels=scene.face_parts, noise=OracleNoise(merge=1.0))
    assert len(merged.auto_masks(views, 1)[0]) < len(clean.auto_masks(views, 1)[0])
    gone = get_prior("oracle", labels=scene.face_parts, noise={"missing": 1.0, "spurious": 2.0}, seed=2)
    invented = gone.auto_masks(views, 1)[0]
    assert all(not np.array_equal(m, parts[1] == p) for m in invented for p in range(7))
    assert all((m <= (views.ids[1] >= 0)).all() for m in invented)
    seat = parts[1] == 0
    ious = []
    for s in range(4):
        jittered = get_prior("oracle", labels=scene.face_parts, noise={"jitter": 3}, seed=s)
        m = jittered.prompt(views, 1, _click(seat), np.array([1])).masks[0]
        ious.append((m & seat).sum() / (m | seat).sum())
    assert min(ious) < 1.0 and min(ious) > 0.5


def test_embeddings(stool) -> None:
    scene, views, parts = stool
    emb = get_prior("oracle", labels=scene.face_parts, noise={"embed": 0.2}).embed(views)
    assert emb.shape == (*views.ids.shape, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    a, b = emb[0][parts[0] == 0], emb[0][parts[0] == 1]
    assert (a[:50] @ a[50:100].T).mean() > 0.8
    assert abs((a[:50] @ b[:50].T).mean()) < 0.5


def test_bad_inputs(stool) -> None:
    scene, views, _ = stool
    with pytest.raises(SegAnyError, match="labels"):
        get_prior("oracle", labels=scene.face_parts[:10]).auto_masks(views, 0)
    with pytest.raises(SegAnyError, match="noise"):
        get_prior("oracle", labels=scene.face_parts, noise="loud")
    with pytest.raises(SegAnyError, match="integers"):
        get_prior("oracle", labels=scene.face_parts.astype(np.float32))
