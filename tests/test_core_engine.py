"""Engine: real iSeg prepare jobs (tiny sizes) with progress, cancel, the cache and queries."""

import itertools
import json
import threading

import numpy as np
import pytest
import torch
from budgets import TINY

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def mesh():
    return sample_mesh(max_edge=0.2)


def test_prepare_reports_progress_then_queries_then_reuses_cache(tmp_path, mesh):
    engine = Engine(cache_dir=tmp_path)
    sid = engine.add_scene(mesh)
    assert engine.status("iseg", sid, "oracle") == "none"
    seen = []
    job = engine.submit("iseg", sid, prior="oracle", options=TINY, prior_options={"labels": mesh.face_parts},
                        on_progress=lambda j: seen.append(j.fraction))  # fmt: skip
    result = job.result(timeout=600)
    assert result["status"] == "done" and seen and seen[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(seen))
    sel = engine.query("iseg", sid, {"clicks": [[0, 1]]}, prior="oracle")
    assert sel.scores.shape == (len(mesh.vertices),) and np.isfinite(sel.scores).all()
    engine.close()

    fresh = Engine(cache_dir=tmp_path)
    sid2 = fresh.add_scene(sample_mesh(max_edge=0.2))
    assert sid2 == sid and fresh.status("iseg", sid, "oracle") == "cached"
    again = fresh.query("iseg", sid, {"clicks": [[0, 1]]}, prior="oracle")
    np.testing.assert_allclose(again.scores, sel.scores, atol=1e-6)
    job = fresh.submit("iseg", sid, prior="oracle", options=TINY, prior_options={"labels": mesh.face_parts})
    assert job.result(timeout=60)["message"] == "loaded from cache"
    fresh.close()

    (entry,) = fresh.cache.entries(sid)  # as if an older SegAny had written it: another state format
    record = json.loads((entry.path / "record.json").read_text())
    record["meta"]["format"] = "iseg/0"
    (entry.path / "record.json").write_text(json.dumps(record))
    upgraded = Engine(cache_dir=tmp_path)
    upgraded.add_scene(sample_mesh(max_edge=0.2))
    assert upgraded.status("iseg", sid, "oracle") == "none"
    with pytest.raises(SegAnyError) as info:
        upgraded.query("iseg", sid, {"clicks": [[0, 1]]}, prior="oracle")
    assert info.value.code == "not_prepared" and "run prepare again" in info.value.message
    job = upgraded.submit("iseg", sid, prior="oracle", options=TINY, prior_options={"labels": mesh.face_parts})
    assert job.result(timeout=600)["message"] == "prepared"  # prepared again, not the stale entry
    assert upgraded.query("iseg", sid, {"clicks": [[0, 1]]}, prior="oracle").scores.shape == sel.scores.shape
    assert [
        json.loads((e.path / "record.json").read_text())["meta"]["format"] for e in upgraded.cache.entries(sid)
    ] == ["iseg/1"]
    upgraded.close()


def test_cancel_stops_a_running_job_and_leaves_no_cache(tmp_path, mesh):
    engine = Engine(cache_dir=tmp_path)
    sid = engine.add_scene(mesh)
    started = threading.Event()
    job = engine.submit("iseg", sid, prior="oracle", options={**TINY, "decoder_steps": 5000},
                        prior_options={"labels": mesh.face_parts},
                        on_progress=lambda j: j.fraction > 0 and started.set())  # fmt: skip
    assert started.wait(300)
    job.cancel()
    assert job.wait(60)
    assert job.status == "cancelled"
    with pytest.raises(SegAnyError) as info:
        job.result()
    assert info.value.code == "cancelled"
    assert engine.cache.entries() == []
    engine.close()


def test_clear_errors(tmp_path, mesh):
    engine = Engine(cache_dir=tmp_path)
    sid = engine.add_scene(mesh)
    cases = [
        (lambda: engine.query("iseg", sid, {"clicks": [[0, 1]]}), "not_prepared"),
        (lambda: engine.submit("nope", sid), "not_found"),
        (lambda: engine.get_scene("0" * 32), "not_found"),
        (lambda: engine.submit("iseg", sid, prior="nope").result(timeout=60), "not_found"),
    ]  # fmt: skip
    for fn, code in cases:
        with pytest.raises(SegAnyError) as info:
            fn()
        assert info.value.code == code, info.value
    if not torch.cuda.is_available():
        with pytest.raises(SegAnyError, match="no CUDA"):
            Engine(cache_dir=tmp_path, device="cuda")
    engine.drop_scene(sid)
    assert engine.scenes() == []
    engine.close()


def test_finished_jobs_are_kept_up_to_a_bound_and_let_go_of_their_listeners(tmp_path, monkeypatch):
    """A backend that runs for days must not grow per prepare: only the newest KEPT_JOBS finished jobs stay
    listed, an older id is not_found saying why, and a finished job holds no listener (a closed connection)."""
    import segany.engine as engine_module

    monkeypatch.setattr(engine_module, "KEPT_JOBS", 2)
    engine = Engine(cache_dir=tmp_path)
    sid = engine.add_scene(sample_mesh(max_edge=0.5))
    jobs = []
    for _ in range(4):
        job = engine.submit("walk", sid, on_progress=lambda j: None)
        job.result(timeout=600)
        jobs.append(job)
    engine.submit("walk", sid).result(timeout=600)  # submitting prunes the finished ones past the bound
    listed = [j["job"] for j in engine.jobs()]
    assert len(listed) == 3 and jobs[0].id not in listed and jobs[3].id in listed
    with pytest.raises(SegAnyError, match="only the newest 2 finished jobs") as err:
        engine.job(jobs[0].id)
    assert err.value.code == "not_found"
    assert all(not j._listeners for j in jobs)
    engine.close()


def test_methods_are_listed_in_order_of_preference(tmp_path):
    """The add-on (and scripts) take the first listed method that fits a scene kind: the registry's order,
    so SA3D stays the default on splats and points while SAGA is being finished, and iSeg on meshes."""
    engine = Engine(cache_dir=tmp_path)
    listed = engine.methods()
    first = {kind: next(m["name"] for m in listed if kind in m["scene_kinds"]) for kind in ("mesh", "splats", "points")}
    assert first == {"mesh": "iseg", "splats": "sa3d", "points": "sa3d"}
    assert [m["name"] for m in listed] == engine.info()["methods"]
    engine.close()
