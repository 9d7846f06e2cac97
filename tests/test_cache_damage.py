"""The cache never leaves a user stuck (issue 16): a damaged entry is moved aside and prepared again, a crashed
writer's temp dir is swept on start, and a cache that cannot be written keeps the prepared state in memory.

Real Engine, real SA3D prepares (tiny sizes), real files, real writer processes killed mid-write.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from budgets import TINY
from sa3d_scenes import centre_element, splat_blobs
from waiting import wait_until

from segany.cache import Cache
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.methods.base import State

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory):
    return splat_blobs(tmp_path_factory.mktemp("cache_damage_blobs"))


def _prepare(engine: Engine, sid: str, labels: np.ndarray) -> dict:
    return engine.prepare("sa3d", sid, prior="oracle", options=TINY, prior_options={"labels": labels})


def _click(scene, labels: np.ndarray) -> dict:
    return {"clicks": [[centre_element(scene.means, labels, 0), 1]]}


def _damage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "segany.cache" and "damaged" in r.getMessage()]


def test_a_truncated_state_blocks_nothing_a_query_says_so_once_and_prepare_rebuilds(tmp_path, blobs, caplog):
    """The issue's example: state.safetensors cut to 5 bytes made every later query and prepare fail with
    `internal`, also after a restart."""
    scene, labels = blobs
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    assert _prepare(engine, sid, labels)["message"] == "prepared"
    first = engine.query("sa3d", sid, _click(scene, labels), prior="oracle")
    engine.close()
    (entry,) = Cache(tmp_path).entries(sid)
    state_file = entry.path / "state.safetensors"
    state_file.write_bytes(state_file.read_bytes()[:5])
    damaged = {p.name: p.read_bytes() for p in entry.path.iterdir()}

    fresh = Engine(cache_dir=tmp_path, device="cpu")
    fresh.add_scene(scene)
    with caplog.at_level(logging.WARNING, logger="segany.cache"):
        with pytest.raises(SegAnyError) as info:
            fresh.query("sa3d", sid, _click(scene, labels), prior="oracle")
        assert info.value.code == "not_prepared" and "damaged" in info.value.message
        assert "moved aside" in info.value.message and "run prepare again" in info.value.message
        with pytest.raises(SegAnyError) as info:
            fresh.query("sa3d", sid, _click(scene, labels), prior="oracle")
        assert info.value.code == "not_prepared" and "damaged" not in info.value.message, "reported once"
        assert fresh.status("sa3d", sid, "oracle") == "none"
        assert _prepare(fresh, sid, labels)["message"] == "prepared"
    assert len(_damage_warnings(caplog)) == 1
    np.testing.assert_array_equal(fresh.query("sa3d", sid, _click(scene, labels), prior="oracle").scores, first.scores)
    fresh.close()
    (aside,) = (tmp_path / "v1" / ".quarantine").iterdir()
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == damaged, "moved aside, not deleted"

    again = Engine(cache_dir=tmp_path, device="cpu")
    again.add_scene(scene)
    assert again.status("sa3d", sid, "oracle") == "cached"
    np.testing.assert_array_equal(again.query("sa3d", sid, _click(scene, labels), prior="oracle").scores, first.scores)
    again.close()


def test_a_tensor_changed_on_disk_is_caught_by_prepare_which_rebuilds_and_says_so(tmp_path, blobs, caplog):
    """A tensor of another shape, or bytes changed inside one, used to be 'loaded from cache'."""
    scene, labels = blobs
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    _prepare(engine, sid, labels)
    first = engine.query("sa3d", sid, _click(scene, labels), prior="oracle")
    engine.close()
    (entry,) = Cache(tmp_path).entries(sid)
    state_file = entry.path / "state.safetensors"
    data = bytearray(state_file.read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's values: the file still parses
    state_file.write_bytes(bytes(data))

    fresh = Engine(cache_dir=tmp_path, device="cpu")
    fresh.add_scene(scene)
    with caplog.at_level(logging.WARNING, logger="segany.cache"):
        result = _prepare(fresh, sid, labels)
    assert result["status"] == "done" and result["message"].startswith("prepared again")
    assert "damaged" in result["message"] and "checksum" in result["message"]
    assert len(_damage_warnings(caplog)) == 1
    np.testing.assert_array_equal(fresh.query("sa3d", sid, _click(scene, labels), prior="oracle").scores, first.scores)
    fresh.close()
    assert len(list((tmp_path / "v1" / ".quarantine").iterdir())) == 1
    rerun = Engine(cache_dir=tmp_path, device="cpu")
    rerun.add_scene(scene)
    assert _prepare(rerun, sid, labels)["message"] == "loaded from cache"
    rerun.close()


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch, server_harness
from segany.cache import Cache
from segany.methods.base import State
server_harness.hold_cache_writes(Path(sys.argv[3]))
Cache(sys.argv[2]).save("s", "m", sys.argv[4], State({"x": torch.zeros(250_000)}), {"prior": "p"})
"""


def _held_writer(cache: Path, signals: Path, key: str) -> tuple[subprocess.Popen, Path]:
    """A real writer process stopped half-way through its cache write; returns it and its temp dir."""
    signals.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(TESTS), str(cache), str(signals), key])
    held = wait_until(lambda: (signals / "held").is_file() and (signals / "held").read_text(),
                      what="the cache write to reach its hold")  # fmt: skip
    return proc, Path(held).parent


def test_a_crashed_writers_temp_dir_is_swept_on_start_and_a_live_ones_is_kept(tmp_path):
    """Today such a leftover (up to 128 MB) stayed until `cache clear`, which also deletes every good entry."""
    cache = tmp_path / "cache"
    good = Cache(cache).save("s", "m", "good", State({"x": torch.ones(3)}), {"prior": "p"})
    crashed, crashed_tmp = _held_writer(cache, tmp_path / "a", "k1")
    live, live_tmp = _held_writer(cache, tmp_path / "b", "k2")
    try:
        os.kill(crashed.pid, signal.SIGKILL)
        crashed.wait(timeout=60)
        assert crashed_tmp.is_dir() and live_tmp.is_dir()
        Engine(cache_dir=cache, device="cpu").close()
        assert not crashed_tmp.exists(), "the crashed writer's temp dir is swept on start"
        assert live_tmp.is_dir(), "a running writer's temp dir is left alone, however long it takes"
        assert good.is_dir() and Cache(cache).load("s", "m", "good") is not None
    finally:
        os.kill(live.pid, signal.SIGKILL)
        live.wait(timeout=60)
    Engine(cache_dir=cache, device="cpu").close()
    assert not live_tmp.exists() and [e.key for e in Cache(cache).entries()] == ["good"]


@contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real tiny file system; mounting needs root (CAP_SYS_ADMIN), so elsewhere the case is skipped and the
    cache-under-a-file case alone covers a cache that cannot be written."""
    path.mkdir()
    mount = shutil.which("mount")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True) \
        if mount else None  # fmt: skip
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() if done else 'no mount command'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _fill(root: Path) -> None:
    """Write until the file system says it is full."""
    with open(root / "filler", "wb") as fh:
        while True:
            try:
                fh.write(b"\0" * 65536)
                fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return


@contextmanager
def _unwritable_cache(tmp_path: Path, how: str) -> Iterator[Path]:
    if how == "under_a_file":  # refuses writes even to root, which read-only permission bits do not stop
        (tmp_path / "a_file").write_text("not a directory")
        yield tmp_path / "a_file" / "cache"
    elif how == "read_only_fs":
        with _tmpfs(tmp_path / "ro", "ro,size=1m") as root:
            yield root
    else:
        with _tmpfs(tmp_path / "full", "size=1m") as root:
            _fill(root)
            yield root


@pytest.mark.parametrize("how", ["under_a_file", "read_only_fs", "full_fs"])
def test_a_cache_that_cannot_be_written_keeps_the_prepared_state_for_the_session(tmp_path, blobs, how):
    """The job used to fail (io_error, or `internal` for a full disk) and throw the finished work away."""
    scene, labels = blobs
    with _unwritable_cache(tmp_path, how) as root:
        with pytest.raises(SegAnyError) as info:
            Cache(root).save("s", "m", "k", State({"x": torch.ones(3)}), {"prior": "p"})
        assert info.value.code == "io_error" and str(root / "v1") in info.value.message
        assert "free disk space" in info.value.message and "SEGANY_CACHE" in info.value.message
        engine = Engine(cache_dir=root, device="cpu")
        sid = engine.add_scene(scene)
        result = _prepare(engine, sid, labels)
        assert result["status"] == "done" and "not saved" in result["message"] and str(root) in result["message"]
        assert engine.status("sa3d", sid, "oracle") == "prepared"
        sel = engine.query("sa3d", sid, _click(scene, labels), prior="oracle")
        assert (sel.mask == (labels == 0)).mean() > 0.95
        engine.close()
        assert Cache(root).entries() == []


def test_a_damaged_entry_on_a_cache_turned_read_only_is_still_prepared_again(tmp_path, blobs, caplog):
    """Neither moving the entry aside nor saving the new one can succeed: the prepare still finishes, says both,
    and the session queries the state it keeps in memory."""
    scene, labels = blobs
    with _tmpfs(tmp_path / "cache", "size=4m") as root:
        engine = Engine(cache_dir=root, device="cpu")
        sid = engine.add_scene(scene)
        _prepare(engine, sid, labels)
        engine.close()
        (entry,) = Cache(root).entries(sid)
        (entry.path / "state.safetensors").write_bytes(b"\0" * 5)
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        fresh = Engine(cache_dir=root, device="cpu")
        fresh.add_scene(scene)
        with caplog.at_level(logging.WARNING, logger="segany.cache"):
            result = _prepare(fresh, sid, labels)
        assert result["status"] == "done" and "could not be moved aside" in result["message"]
        assert "not saved" in result["message"] and len(_damage_warnings(caplog)) == 1
        sel = fresh.query("sa3d", sid, _click(scene, labels), prior="oracle")
        assert (sel.mask == (labels == 0)).mean() > 0.95
        fresh.close()
