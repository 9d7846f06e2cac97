"""SA3D through the Engine (cache write and reload) and over a real backend process and socket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import server_harness
from budgets import TINY
from sa3d_scenes import centre_element, splat_blobs

from segany.engine import Engine
from segany.scene import scene_arrays


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory):
    return splat_blobs(tmp_path_factory.mktemp("sa3d_blobs"))


def test_prepare_is_cached_and_a_fresh_engine_queries_it(tmp_path: Path, blobs):
    """A restarted backend answers from the cache: the oracle prior comes back from the state itself."""
    scene, labels = blobs
    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    assert "sa3d" in [m["name"] for m in engine.methods()]
    assert (
        engine.prepare("sa3d", sid, prior="oracle", options=TINY, prior_options={"labels": labels})["message"]
        == "prepared"
    )
    first = engine.query("sa3d", sid, click, prior="oracle")
    engine.close()

    fresh = Engine(cache_dir=tmp_path, device="cpu")
    sid2 = fresh.add_scene(scene)
    assert sid2 == sid and fresh.status("sa3d", sid, "oracle") == "cached"
    again = fresh.query("sa3d", sid, click, prior="oracle")
    np.testing.assert_array_equal(again.scores, first.scores)
    assert (again.mask == (labels == 0)).mean() > 0.95
    result = fresh.prepare("sa3d", sid, prior="oracle", options=TINY, prior_options={"labels": labels})
    assert result["message"] == "loaded from cache"
    fresh.close()


def test_sa3d_over_the_wire_and_after_a_restart(tmp_path: Path, blobs):
    """Real server process: send splats, prepare with the default (geometric) prior, click; restart, click again."""
    scene, labels = blobs
    state_file, cache = tmp_path / "run" / "server.json", tmp_path / "cache"
    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    scores = []
    for restart in (False, True):
        proc = server_harness.start(state_file, cache)
        try:
            with server_harness.connect(state_file) as client:
                sid = client.add_scene("splats", scene_arrays(scene))["scene_id"]
                if not restart:
                    result = client.prepare("sa3d", sid, options={**TINY, "resolution": 80}, timeout=120)
                    assert result["status"] == "done"
                sel = client.query("sa3d", sid, click)
                assert sel.scores.shape == (scene.n_elements,) and sel.scores.dtype == np.float32
                assert len(sel.extras["accepted_views"]) >= 1 and 0 < sel.threshold < 1
                scores.append(sel.scores)
                client.shutdown()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    np.testing.assert_array_equal(scores[0], scores[1])


def test_a_sam_state_comes_back_after_a_restart_from_the_engines_checkpoint(tmp_path: Path, blobs):
    """SA3D prompts SAM at query time. After a restart the engine makes the prior again from the checkpoint
    it is configured with (add-on preferences or SEGANY_SAM_CHECKPOINT); another model is refused, and so
    is an engine with none. The real vit_b architecture with random weights: masks are meaningless, so only
    the plumbing is judged (two small views: two encoder runs, about 30 s on a 2-core CPU)."""
    import torch
    from segment_anything import sam_model_registry

    from segany.errors import SegAnyError

    scene, labels = blobs
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        checkpoints.append(tmp_path / f"random_vit_b_{seed}.pth")
        torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), checkpoints[-1])
    cache = tmp_path / "cache"
    options = {**TINY, "views": 2}
    engine = Engine(cache_dir=cache, device="cpu", checkpoints={"sam": str(checkpoints[0])})
    sid = engine.add_scene(scene)
    assert engine.prepare("sa3d", sid, prior="sam", options=options)["message"] == "prepared"
    first_model = engine.state("sa3d", sid, "sam").prior.model_key
    engine.close()

    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    for configured, problem in ((None, "checkpoint"), (checkpoints[1], "SAM model")):
        other = Engine(cache_dir=cache, device="cpu", checkpoints={"sam": str(configured)} if configured else None)
        other.add_scene(scene)
        with pytest.raises(SegAnyError) as err:
            other.query("sa3d", sid, click, prior="sam")
        assert problem in err.value.message, err.value.message
        other.close()

    fresh = Engine(cache_dir=cache, device="cpu", checkpoints={"sam": str(checkpoints[0])})
    fresh.add_scene(scene)
    assert fresh.prepare("sa3d", sid, prior="sam", options=options)["message"] == "loaded from cache"
    sel = fresh.query("sa3d", sid, click, prior="sam")
    assert sel.scores.shape == (scene.n_elements,) and np.isfinite(sel.scores).all()
    assert list((cache / "sam").iterdir())  # SAM's encoder outputs went to the engine's cache, not ~/.cache
    fresh.close()

    # a prepare job on an engine whose checkpoint holds another model makes the state again, not a dead entry
    switched = Engine(cache_dir=cache, device="cpu", checkpoints={"sam": str(checkpoints[1])})
    switched.add_scene(scene)
    message = switched.prepare("sa3d", sid, prior="sam", options=options)["message"]
    assert message.startswith("prepared again") and "SAM model" in message, message
    assert switched.state("sa3d", sid, "sam").prior.model_key != first_model
    switched.close()

    # the add-on's way: the checkpoint travels as a prior option, so the state records it and a restarted
    # backend configured with none still rebuilds that prior
    given = {"checkpoint": str(checkpoints[0])}
    bare = Engine(cache_dir=cache, device="cpu")
    bare.add_scene(scene)
    assert bare.prepare("sa3d", sid, prior="sam", options=options, prior_options=given)["message"] == "prepared"
    bare.close()
    restarted = Engine(cache_dir=cache, device="cpu")
    restarted.add_scene(scene)
    assert restarted.state("sa3d", sid, "sam").prior.describe().options["checkpoint"] == str(checkpoints[0])
    restarted.close()


def test_an_sa3d_query_checks_its_deadline_per_view(tmp_path: Path, blobs):
    """The real method: the lifting loop meets the request's deadline at its next view and stops with
    `timeout`; a departed client stops it with `cancelled`; the same query without a deadline answers."""
    import threading

    from segany import deadline
    from segany.errors import SegAnyError

    scene, labels = blobs
    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    engine = Engine(cache_dir=tmp_path, device="cpu")
    try:
        sid = engine.add_scene(scene)
        engine.prepare("sa3d", sid, prior="geometric", options=TINY)
        for ctx, code in (
            (deadline.within(0.0), "timeout"),
            (deadline.within(3600.0, gone=threading.Event()), "cancelled"),
        ):
            with ctx as d, pytest.raises(SegAnyError) as info:
                if d.gone is not None:
                    d.gone.set()
                engine.query("sa3d", sid, click, prior="geometric")
            assert info.value.code == code
        assert engine.query("sa3d", sid, click, prior="geometric").scores.shape == (scene.n_elements,)
    finally:
        engine.close()
