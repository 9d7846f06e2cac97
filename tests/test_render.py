"""The render stage: every scene kind, contributors and barycentrics, batching, cancel, and CUDA parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sa3d_scenes import point_blobs, splat_blobs

from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.jobs import JobContext
from segany.render import Renders, render, stage
from segany.samples import sample_mesh
from segany.scene import MeshScene, Scene

KINDS = ("mesh", "splats", "points")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scene]:
    tmp = Path(tmp_path_factory.mktemp("render"))
    return {"mesh": sample_mesh(max_edge=0.3), "splats": splat_blobs(tmp)[0], "points": point_blobs(tmp)[0]}


def _cameras(scene: Scene, n: int = 5):
    return cameras_for_scene(scene, n, 40, 32, seed=3)  # not square: rows and columns must not swap


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_what_a_prior_looks_at(scenes, kind):
    scene = scenes[kind]
    cams = _cameras(scene)
    r = render(scene, cams)
    v = r.views
    assert v.rgb.shape == (5, 32, 40, 3) and v.rgb.dtype == np.float32
    assert v.depth.shape == r.alpha.shape == v.ids.shape == (5, 32, 40) and v.ids.dtype == np.int64
    assert v.normals.shape == (5, 32, 40, 3) and v.cameras is cams and len(r) == 5
    assert r.bary is None and r.contrib_ids is None and r.contrib_weights is None
    n_ids = len(scene.faces) if isinstance(scene, MeshScene) else scene.n_elements
    fg = v.ids >= 0
    assert fg.mean() > 0.05 and (v.ids < n_ids).all()
    assert (v.depth[fg] > 0).all() and (v.depth[~fg] == 0).all()
    assert (v.normals[~fg] == 0).all()
    norm = np.linalg.norm(v.normals[v.depth > 0], axis=-1)
    unit = np.abs(norm - 1) < 1e-4
    assert unit.mean() > 0.98 and (unit | (norm == 0)).all(), "unit normals (0 where a depth map has no slope)"
    assert (r.alpha[fg] > 0.5).all() and (r.alpha[~fg] <= 0.5).all()


@pytest.mark.parametrize("kind", ["splats", "points"])
def test_gaussian_contributors_lead_with_the_id_and_add_up_to_alpha(scenes, kind):
    scene = scenes[kind]
    r = render(scene, _cameras(scene), contributors=16)
    ids, w = r.contrib_ids, r.contrib_weights
    assert ids.shape == w.shape == (5, 32, 40, 16) and ids.dtype == np.int32 and w.dtype == np.float32
    np.testing.assert_array_equal(r.views.ids, np.where(r.alpha > 0.5, ids[..., 0], -1))
    assert (w >= 0).all() and (np.diff(w, axis=-1) <= 0).all(), "weights decrease along K"
    assert ((ids == -1) == (w == 0)).all() and (ids < scene.n_elements).all()
    total = w.sum(-1)
    assert (total <= r.alpha + 1e-5).all()
    complete = ids[..., -1] == -1  # fewer contributors than K: every one of them is listed
    assert complete.mean() > 0.5
    np.testing.assert_allclose(total[complete], r.alpha[complete], atol=1e-5)
    fewer = render(scene, _cameras(scene), contributors=3)
    np.testing.assert_array_equal(fewer.contrib_ids, ids[..., :3])
    np.testing.assert_array_equal(fewer.contrib_weights, w[..., :3])


def test_mesh_barycentrics_reproduce_depth_and_weigh_the_corner_vertices(scenes):
    scene = scenes["mesh"]
    cams = _cameras(scene)
    r = render(scene, cams, barycentrics=True, contributors=4)
    tri, bary = r.views.ids, r.bary
    fg = tri >= 0
    np.testing.assert_allclose(bary[fg].sum(-1), 1.0, atol=1e-5)
    assert (bary[~fg] == 0).all() and (bary >= -1e-6).all()
    b, y, x = np.nonzero(fg)
    hit = (bary[fg][..., None] * scene.vertices[scene.faces[tri[fg]]]).sum(1)
    cam = np.einsum("nij,nj->ni", cams.viewmats[b].astype(np.float64), np.c_[hit, np.ones(len(hit))])
    np.testing.assert_allclose(cam[:, 2], r.views.depth[b, y, x], rtol=1e-4)
    ids, w = r.contrib_ids, r.contrib_weights
    assert (ids[..., 3] == -1).all() and (w[..., 3] == 0).all(), "a triangle has three corners: K = 4 pads one"
    np.testing.assert_array_equal(np.sort(ids[fg][:, :3], axis=1), np.sort(scene.faces[tri[fg]], axis=1))
    np.testing.assert_array_equal(w[fg][:, :3], -np.sort(-bary[fg], axis=1))
    assert (ids[~fg] == -1).all() and (w[~fg] == 0).all()
    np.testing.assert_allclose(w.sum(-1), r.alpha, atol=1e-5)
    np.testing.assert_array_equal(r.alpha, fg.astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_batching_changes_nothing(scenes, kind, monkeypatch):
    scene = scenes[kind]
    """Bit for bit; batches of one view are left out: the splat kernel's einsums round differently for one
    camera than for several (by ~1e-6 in camera-space means), which no batching rule here can undo."""
    cams = _cameras(scene, 8)
    options = {"contributors": 4, "barycentrics": kind == "mesh"}
    whole = render(scene, cams, **options)
    monkeypatch.setattr(stage, "PIXELS_PER_BATCH", 3 * 40 * 32 + 5)  # batches of 3, 3 and 2 views
    fractions: list[float] = []
    batched = render(scene, cams, progress=lambda f, _: fractions.append(f), **options)
    assert fractions == [0.0, 3 / 8, 6 / 8, 1.0]
    _assert_same(whole, batched)


def _assert_same(a: Renders, b: Renders) -> None:
    for name in ("rgb", "depth", "normals", "ids"):
        np.testing.assert_array_equal(getattr(a.views, name), getattr(b.views, name), err_msg=name)
    for name in ("alpha", "bary", "contrib_ids", "contrib_weights"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.views.key == b.views.key


def test_a_cancel_between_batches_stops_the_render(scenes, monkeypatch):
    scene = scenes["splats"]
    monkeypatch.setattr(stage, "PIXELS_PER_BATCH", 40 * 32)
    ctx = JobContext(interval=0.0)
    reported: list[float] = []

    def cancel_after_first_report(fraction: float, _: str) -> None:
        reported.append(fraction)
        ctx.cancel_event.set()

    ctx.on_progress = cancel_after_first_report
    with pytest.raises(SegAnyError) as err:
        render(scene, _cameras(scene), progress=ctx.progress)
    assert err.value.code == "cancelled" and reported == [0.0]


def test_requests_it_cannot_answer_are_refused(scenes):
    with pytest.raises(SegAnyError) as err:
        render(scenes["splats"], _cameras(scenes["splats"]), barycentrics=True)
    assert err.value.code == "unsupported" and "mesh" in str(err.value)
    for bad in (-1, stage.MAX_CONTRIBUTORS + 1, True):
        with pytest.raises(SegAnyError) as err:
            render(scenes["mesh"], _cameras(scenes["mesh"]), contributors=bad)
        assert err.value.code == "bad_request"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_renders_what_the_cpu_renders(scenes, kind):
    """Float order differs between the devices, so ids may differ on silhouette pixels and between
    near-equal contributors: compare most pixels."""
    scene = scenes[kind]
    cams = _cameras(scene)
    options = {"contributors": 4, "barycentrics": kind == "mesh"}
    cpu = render(scene, cams, **options)
    gpu = render(scene, cams, device="cuda", **options)
    assert (gpu.views.ids == cpu.views.ids).mean() > 0.97
    assert (gpu.contrib_ids[..., 0] == cpu.contrib_ids[..., 0]).mean() > 0.97
    same = (gpu.views.ids == cpu.views.ids) & (cpu.views.ids >= 0)
    np.testing.assert_allclose(gpu.views.depth[same], cpu.views.depth[same], rtol=1e-3, atol=1e-3)
    assert np.abs(gpu.alpha - cpu.alpha).mean() < 5e-3
    assert np.abs(gpu.views.rgb - cpu.views.rgb).mean() < 5e-3
