"""Segment everything as an operation: the engine's `everything`, the server's op through a real backend
process and the client, hierarchies, and the refusals (bad scales, methods that cannot, nothing prepared).

The scene is the SAGA tests' two blobs of Gaussians (tests/sa3d_scenes.py, radius 0.4, 2 apart) with the
tiny preset. At scale 1.0 no prior mask ever held both blobs, so the parts split them: a Rand Index above
0.8 against the blob labels, where one part for everything scores 0.5 (the two blobs are equal halves) and
the tiny preset's few training steps leave some elements on the wrong side (the click tests' IoU > 0.8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import server_harness
from budgets import TINY
from sa3d_scenes import splat_blobs

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.rand_index import rand_index
from segany.methods.base import Parts
from segany.methods.saga.train import SCALE_MARGIN
from segany.scene import scene_arrays

BLOB_SCALE = 1.0
PATCH_SCALE = 0.05


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("everything_op")
    scene, labels = splat_blobs(tmp)
    engine = Engine(cache_dir=tmp / "cache", device="cpu")
    sid = engine.add_scene(scene)
    engine.prepare("saga", sid, options=TINY)
    yield engine, sid, scene, labels
    engine.close()


def test_engine_everything_splits_the_blobs_at_a_blobs_scale(prepared):
    engine, sid, scene, labels = prepared
    parts = engine.everything("saga", sid, {"scale": BLOB_SCALE})
    assert isinstance(parts, Parts)
    assert parts.labels.shape == (scene.n_elements,) and parts.labels.dtype == np.int32
    k = int(parts.labels.max()) + 1
    assert parts.labels.min() >= 0 and parts.colours.shape == (k, 3) and parts.colours.dtype == np.float32
    assert k >= 2 and rand_index(parts.labels, labels) > 0.8
    assert parts.extras["scales"].tolist() == [BLOB_SCALE]
    again = engine.everything("saga", sid, {"scale": BLOB_SCALE})
    np.testing.assert_array_equal(parts.labels, again.labels)  # stateless: seeded subsample


def test_auto_is_half_the_largest_mask(prepared):
    engine, sid, _, _ = prepared
    parts = engine.everything("saga", sid, {})
    largest = engine.state("saga", sid).meta["scale_range"][1] / SCALE_MARGIN  # the range is widened by it
    assert float(parts.extras["scales"][0]) == pytest.approx(largest / 2, rel=1e-6)


def test_several_scales_give_nested_levels_coarse_first(prepared):
    engine, sid, scene, _ = prepared
    query = {"scales": [PATCH_SCALE, BLOB_SCALE], "min_cluster_size": 5, "creases": False}  # a blob has no crease
    parts = engine.everything("saga", sid, query)
    levels = parts.extras["levels"]
    assert levels.shape == (2, scene.n_elements) and levels.dtype == np.int32
    assert parts.extras["scales"].tolist() == pytest.approx([BLOB_SCALE, PATCH_SCALE])
    np.testing.assert_array_equal(parts.labels, levels[-1])
    for fine in np.unique(levels[1]):  # every fine part lies inside one coarse part
        assert len(np.unique(levels[0][levels[1] == fine])) == 1
    assert len(np.unique(levels[1])) > len(np.unique(levels[0]))  # patches are finer than blobs


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"scale": 0}, "number > 0"),
        ({"scale": -1.0}, "number > 0"),
        ({"scale": float("nan")}, "number > 0"),
        ({"scale": float("inf")}, "number > 0"),
        ({"scale": "big"}, "number > 0"),
        ({"scales": [0.5, "auto"]}, 'not "auto"'),
        ({"scales": [0.5, 0.0]}, "number > 0"),
        ({"scales": [0.1] * 9}, "scales"),
        ({"sample": 100, "min_cluster_size": 200}, "must not exceed sample"),
        ({"sample": 10**9}, "sample"),
        ({"clicks": [[0, 1]]}, "clicks"),
    ],
)
def test_bad_everything_queries_are_bad_requests(prepared, query, says):
    engine, sid, _, _ = prepared
    with pytest.raises(SegAnyError, match=says) as exc:
        engine.everything("saga", sid, query)
    assert exc.value.code == "bad_request"


def test_a_method_that_cannot_is_refused_naming_those_that_can(prepared):
    engine, sid, _, _ = prepared
    with pytest.raises(SegAnyError, match=r"walk cannot segment everything; methods that can: \['saga'\]") as exc:
        engine.everything("walk", sid, {})
    assert exc.value.code == "bad_request"
    details = {m["name"]: m["segments_everything"] for m in engine.methods()}
    assert details["saga"] is True and details["walk"] is False


def test_nothing_prepared_is_not_prepared(prepared, tmp_path: Path):
    scene = prepared[2]
    other = Engine(cache_dir=tmp_path / "empty", device="cpu")
    try:
        sid = other.add_scene(scene)
        with pytest.raises(SegAnyError) as exc:
            other.everything("saga", sid, {"scale": BLOB_SCALE})
        assert exc.value.code == "not_prepared"
    finally:
        other.close()


def test_a_one_element_scene_is_refused_before_anything_runs(tmp_path: Path):
    """One element is refused as the scene arrives (no view can show a single point), so no prepare and no
    everything ever sees it; two coincident ones the same way."""
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        for n in (1, 2):
            with pytest.raises(SegAnyError, match="same point") as exc:
                engine.add_arrays("points", {"xyz": np.zeros((n, 3), np.float32)})
            assert exc.value.code == "invalid_geometry"
    finally:
        engine.close()


def test_server_round_trip(prepared, tmp_path: Path):
    """The op through a real backend process and the client: the same parts as the engine in this process,
    and the refusals arrive with their codes.

    The backend shares the engine's cache, so both answer from the same prepared state: two processes that
    each train it can differ in the features' last bits (seen when this test ran alone; floating-point sums
    need not repeat bit for bit across processes), and HDBSCAN's fine split can flip on that. From one state
    the op is deterministic, so any difference is the protocol's."""
    engine, sid, scene, _ = prepared
    state = tmp_path / "run" / "server.json"
    proc = server_harness.start(state, engine.cache.root)
    try:
        with server_harness.connect(state) as client:
            info = client.request("info")[0]
            assert {m["name"]: m["segments_everything"] for m in info["method_details"]}["saga"] is True
            remote = client.add_scene(scene.kind, scene_arrays(scene))["scene_id"]
            assert remote == sid
            assert client.prepare("saga", remote, options=TINY, timeout=300)["message"] == "loaded from cache"
            parts = client.everything("saga", remote, {"scales": [BLOB_SCALE, PATCH_SCALE], "min_cluster_size": 5})
            local = engine.everything("saga", sid, {"scales": [BLOB_SCALE, PATCH_SCALE], "min_cluster_size": 5})
            np.testing.assert_array_equal(parts.labels, local.labels)
            np.testing.assert_array_equal(parts.extras["levels"], local.extras["levels"])
            np.testing.assert_allclose(parts.colours, local.colours)
            assert parts.labels.dtype == np.int32 and parts.extras["scales"].dtype == np.float32
            from segany.addon.client import RemoteError

            with pytest.raises(RemoteError) as exc:
                client.everything("saga", remote, {"scale": -1})
            assert exc.value.code == "bad_request" and "number > 0" in exc.value.message
            with pytest.raises(RemoteError) as exc:
                client.everything("walk", remote, {})
            assert exc.value.code == "bad_request" and "cannot segment everything" in exc.value.message
    finally:
        proc.terminate()
        proc.wait(timeout=30)
