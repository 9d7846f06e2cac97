"""SAGA's bad input end to end (issue 17): a prepare cancelled mid-training through a real backend process and
the client leaves nothing in the cache and prepares again; a scene of one Gaussian is refused with its code and
leaves nothing cached. The per-query refusals (a scale <= 0, NaN, inf) and a click on an element no view shows
are tested beside the query (test_saga_method.py, test_saga_everything_op.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import server_harness
from budgets import TINY
from sa3d_scenes import one_gaussian, splat_blobs

from segany.addon.client import RemoteError
from segany.cache import LAYOUT
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.scene import scene_arrays

LONG = {**TINY, "steps": 1_000_000}  # training that cannot end before the cancel arrives


def _entries(cache: Path, sid: str) -> list[str]:
    """Everything under the scene's saga folder in the cache: finished entries and writers' temp folders."""
    folder = cache / LAYOUT / sid / "saga"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_prepare_cancelled_mid_training_leaves_nothing_cached_and_prepares_again(tmp_path: Path) -> None:
    scene, _ = splat_blobs(tmp_path)
    cache, state = tmp_path / "cache", tmp_path / "run" / "server.json"
    proc = server_harness.start(state, cache)
    try:
        with server_harness.connect(state) as client:
            sid = client.add_scene(scene.kind, scene_arrays(scene))["scene_id"]
            training = threading.Event()

            def progress(_fraction: float, message: str) -> None:
                if message.startswith("training step"):
                    training.set()

            job = client.submit("saga", sid, options=LONG, on_progress=progress)
            assert training.wait(300), f"no training progress: {job.status} {job.message!r}"
            job.cancel()
            with pytest.raises(RemoteError) as exc:
                job.result(timeout=120)
            assert exc.value.code == "cancelled"
            assert _entries(cache, sid) == []  # no entry and no temp folder of a writer
            with pytest.raises(RemoteError) as exc:
                client.query("saga", sid, {"clicks": [[0, 1]], "scale": 1.0})
            assert exc.value.code == "not_prepared"  # the backend kept no half-trained state in memory either

            again = {**TINY, "steps": 25}  # a whole prepare, kept short: what matters is that it runs and is kept
            assert client.prepare("saga", sid, options=again, timeout=300)["message"] == "prepared"
            (entry,) = _entries(cache, sid)
            assert not entry.startswith(".tmp-")
            assert client.query("saga", sid, {"clicks": [[0, 1]], "scale": 1.0}).scores.shape == (scene.n_elements,)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_scene_of_one_gaussian_is_refused_and_nothing_is_cached(tmp_path: Path) -> None:
    """One Gaussian arrives (its own extent makes it visible), but SAGA needs two elements to contrast: the job
    fails with bad_request naming why, and no state is written."""
    one = one_gaussian()
    engine = Engine(cache_dir=tmp_path, device="cpu")
    try:
        sid = engine.add_scene(one)
        with pytest.raises(SegAnyError, match="at least 2 elements") as exc:
            engine.prepare("saga", sid, options=TINY)
        assert exc.value.code == "bad_request"
        assert engine.status("saga", sid, "geometric") == "none" and _entries(tmp_path, sid) == []
        with pytest.raises(SegAnyError) as exc:
            engine.everything("saga", sid, {"scale": 1.0})
        assert exc.value.code == "not_prepared"
    finally:
        engine.close()
