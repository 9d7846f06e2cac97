"""The `walk` method through the real Engine on a mesh, a point cloud and a splat scene read from files, and
over a real backend process: no prepare, parts selected, negative clicks, the baseline's answers on a mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import server_harness
from eval_shapes import tower_on_slab

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.generate import points_from_mesh, splats_from_mesh
from segany.eval.geometry import mesh_geometry
from segany.eval.run import click_target
from segany.eval.scorers import BaselineScorer, EngineScorer
from segany.eval.targets import select_targets
from segany.formats import load_scene_with_labels, write_labelled_ply
from segany.methods.queries import MAX_CLICKS
from segany.scene import SplatScene, scene_arrays

SLAB, TOWER = 0, 1
SAMPLES = 3000


@pytest.fixture(scope="module")
def tower():
    return tower_on_slab()


@pytest.fixture
def engine(tmp_path: Path):
    e = Engine(cache_dir=tmp_path / "cache", device="cpu")
    yield e
    e.close()


def _from_file(tmp: Path, scene, labels: np.ndarray, name: str):
    """The scene as the user would give it: written to a labelled PLY and read back."""
    loaded, read = load_scene_with_labels(write_labelled_ply(tmp / f"{name}.ply", scene, labels))
    return loaded, np.asarray(read)


def _positions(scene) -> np.ndarray:
    return scene.means if isinstance(scene, SplatScene) else scene.xyz


def _inner(scene, labels: np.ndarray, label: int) -> int:
    """The element of part `label` farthest from the other part: a click well inside it."""
    p = _positions(scene)
    inside, outside = np.flatnonzero(labels == label), np.flatnonzero(labels != label)
    gap = np.linalg.norm(p[inside][:, None, :] - p[outside[::7]][None, :, :], axis=2).min(axis=1)
    return int(inside[np.argmax(gap)])


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / max((mask | truth).sum(), 1))


@pytest.fixture(scope="module")
def kinds(tower, tmp_path_factory: pytest.TempPathFactory):
    """The tower on its slab as points (with normals and colours) and as splats, read from files."""
    tmp = tmp_path_factory.mktemp("walk_scenes")
    points, point_labels = points_from_mesh(tower.scene, tower.labels, SAMPLES, seed=3)
    splats, splat_labels = splats_from_mesh(tower.scene, tower.labels, SAMPLES, seed=4)
    return {
        "points": _from_file(tmp, points, point_labels, "points"),
        "splats": _from_file(tmp, splats, splat_labels, "splats"),
    }


def test_walk_needs_no_prepare_and_answers_like_the_baseline_on_a_mesh(engine: Engine, tower) -> None:
    """A query straight after adding the scene; every click of the evaluation's protocol gives the baseline's
    answer (same simulated clicks, same IoU curve)."""
    sid = engine.add_scene(tower.scene)
    assert "walk" in [m["name"] for m in engine.methods()]
    geom = mesh_geometry(tower.scene.vertices, tower.scene.faces)
    baseline = BaselineScorer()
    baseline.prepare(tower, geom)
    walk = EngineScorer(engine, "walk", None)
    walk._sid = sid  # the scene is in; no prepare is run
    for target in select_targets(tower.labels, geom.weights):
        ours, theirs = click_target(geom, target, walk, 6), click_target(geom, target, baseline, 6)
        assert ours["clicks"] == theirs["clicks"] and ours["iou"] == theirs["iou"]
    clicks = [[763, 1], [545, -1], [513, 1]]
    np.testing.assert_array_equal(
        engine.query("walk", sid, {"clicks": clicks}).scores, baseline.query([(e, s) for e, s in clicks]).scores
    )
    assert engine.jobs() == []


@pytest.mark.parametrize("kind", ["points", "splats"])
def test_a_click_selects_the_part_and_a_negative_click_removes_one(engine: Engine, kinds, kind: str) -> None:
    scene, labels = kinds[kind]
    sid = engine.add_scene(scene)
    tower_click, slab_click = _inner(scene, labels, TOWER), _inner(scene, labels, SLAB)
    one = engine.query("walk", sid, {"clicks": [[tower_click, 1]]})
    assert _iou(one.mask, labels == TOWER) >= 0.8
    both = engine.query("walk", sid, {"clicks": [[tower_click, 1], [slab_click, 1]]})
    assert both.mask[slab_click] and both.mask.sum() > one.mask.sum()  # a second positive click adds
    back = engine.query("walk", sid, {"clicks": [[tower_click, 1], [slab_click, 1], [slab_click, -1]]})
    assert _iou(back.mask, labels == TOWER) >= 0.8
    assert not back.mask[slab_click]


def test_prepare_is_optional_cached_and_gives_the_same_answer(tmp_path: Path, kinds) -> None:
    scene, labels = kinds["splats"]
    clicks = {"clicks": [[_inner(scene, labels, TOWER), 1]]}
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    lazy = engine.query("walk", sid, clicks)
    assert engine.prepare("walk", sid)["message"] == "prepared"
    np.testing.assert_array_equal(engine.query("walk", sid, clicks).scores, lazy.scores)
    engine.close()
    fresh = Engine(cache_dir=tmp_path, device="cpu")
    fresh.add_scene(scene)
    assert fresh.prepare("walk", sid)["message"] == "loaded from cache"
    np.testing.assert_array_equal(fresh.query("walk", sid, clicks).scores, lazy.scores)
    fresh.close()


def test_a_coarsened_graph_still_selects_the_part(engine: Engine, kinds) -> None:
    """Above `max_nodes` elements the walk runs on centres; the answer still follows the crease."""
    scene, labels = kinds["points"]
    sid = engine.add_scene(scene)
    engine.prepare("walk", sid, options={"max_nodes": SAMPLES // 3})
    sel = engine.query("walk", sid, {"clicks": [[_inner(scene, labels, TOWER), 1]]})
    assert sel.scores.shape == (SAMPLES,)
    assert _iou(sel.mask, labels == TOWER) >= 0.8


def test_splat_axes_with_arbitrary_signs_still_select_the_part(engine: Engine, kinds) -> None:
    """A trained Gaussian's shortest axis points either way: half of them flipped (a half turn about the
    Gaussian's own x axis) must not turn flat ground into creases."""
    scene, labels = kinds["splats"]
    w, x, y, z = scene.quats.T
    flipped = np.stack([-x, w, z, -y], axis=1)  # q ⊗ (0, 1, 0, 0): the local z axis reversed
    half = (np.arange(len(w)) % 2 == 1)[:, None]
    turned = SplatScene(
        means=scene.means,
        quats=np.where(half, flipped, scene.quats),
        log_scales=scene.log_scales,
        logit_opacities=scene.logit_opacities,
        sh=scene.sh,
    )
    sid = engine.add_scene(turned)
    sel = engine.query("walk", sid, {"clicks": [[_inner(turned, labels, TOWER), 1]]})
    assert _iou(sel.mask, labels == TOWER) >= 0.8


def test_clicks_and_options_are_checked(engine: Engine, kinds) -> None:
    scene, _ = kinds["points"]
    sid = engine.add_scene(scene)
    assert not engine.query("walk", sid, {"clicks": [[5, -1]]}).mask.any()  # nothing to remove from
    for bad in ({"clicks": [[SAMPLES, 1]]}, {"clicks": [[0, 2]]}, {"click": [[0, 1]]}):
        with pytest.raises(SegAnyError) as err:
            engine.query("walk", sid, bad)
        assert err.value.code == "bad_request"
    many = {"clicks": [[i, 1] for i in range(MAX_CLICKS + 1)]}
    with pytest.raises(SegAnyError, match=f"at most {MAX_CLICKS} clicks") as err:
        engine.query("walk", sid, many)
    assert err.value.code == "bad_request"
    for options in ({"colour": -1}, {"neighbours": 2.5}, {"radius": 3}):
        with pytest.raises(SegAnyError) as err:
            engine.prepare("walk", sid, options=options)
        assert err.value.code == "bad_request"


def test_walk_over_a_real_backend_without_prepare(tmp_path: Path, kinds) -> None:
    """The method list and the answer come from the backend process: the add-on needs nothing for walk."""
    scene, labels = kinds["points"]
    state_file = tmp_path / "run" / "server.json"
    proc = server_harness.start(state_file, tmp_path / "cache")
    try:
        with server_harness.connect(state_file) as client:
            sid = client.add_scene("points", scene_arrays(scene))["scene_id"]
            assert "walk" in client.info()["methods"]
            sel = client.query("walk", sid, {"clicks": [[_inner(scene, labels, TOWER), 1]]})
            assert sel.scores.shape == (SAMPLES,) and sel.scores.dtype == np.float32
            assert _iou(sel.mask, labels == TOWER) >= 0.8
            client.shutdown()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
