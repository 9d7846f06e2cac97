"""Small mistakes get the right stable code and, on the command line, one error line before any work (issue 16)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trimesh

from segany.errors import SegAnyError
from segany.formats import load_scene

SEGANY = [sys.executable, "-m", "segany.cli"]


def code(fn, *args, **kw) -> SegAnyError:
    with pytest.raises(SegAnyError) as info:
        fn(*args, **kw)
    return info.value


def test_a_path_too_long_for_the_file_system_is_not_found(tmp_path):
    e = code(load_scene, tmp_path / ("a" * 300 + ".ply"))
    assert e.code == "not_found" and "too long" in e.message


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    """Opening a FIFO with no writer would block the reader forever; the refusal comes from stat alone."""
    fifo = tmp_path / "scene.ply"
    os.mkfifo(fifo)
    e = code(load_scene, fifo)
    assert e.code == "unknown_format" and "FIFO" in e.message
    assert code(load_scene, Path("/dev/null")).code == "unknown_format"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_file_that_refuses_to_be_read_is_an_io_error(tmp_path):
    """/proc/self/mem is a regular file whose first page cannot be read (EIO): a real unreadable file."""
    link = tmp_path / "mem.xyz"
    link.symlink_to("/proc/self/mem")
    assert code(load_scene, link).code == "io_error"


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*SEGANY, *args, "--cache-dir", str(cache)], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


def one_error_line(res: subprocess.CompletedProcess, want: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error [{want}]"), res.stderr
    assert "prepare" not in res.stdout, res.stdout  # refused before any prepare ran
    return lines[0]


def test_segment_checks_its_arguments_before_preparing(tmp_path):
    box = tmp_path / "box.obj"
    trimesh.creation.box().export(box)
    assert "--click" in one_error_line(run("segment", str(box), "--click", "three", cache=tmp_path), "bad_request")
    huge = run("segment", str(box), "--click", "9" * 30, cache=tmp_path)
    assert "0..7" in one_error_line(huge, "bad_request")  # a box has 8 vertices
    past_float = run("segment", str(box), "--click", "9" * 400, cache=tmp_path)  # no float64 holds it
    assert "too large" in one_error_line(past_float, "bad_request")
    assert "gpu" in one_error_line(run("segment", str(box), "--click", "3", "--device", "gpu", cache=tmp_path),
                                   "bad_request")  # fmt: skip
    if not torch.cuda.is_available():
        res = run("segment", str(box), "--click", "3", "--device", "cuda", cache=tmp_path)
        assert "CUDA" in one_error_line(res, "unsupported")
        assert "CUDA" in one_error_line(run("info", "--device", "cuda", cache=tmp_path), "unsupported")


def test_eval_refuses_more_clicks_than_a_query_takes_before_any_work(tmp_path):
    """Each simulated query carries every click so far, so a count past the query limit would fail mid-run."""
    res = run("eval", "--method", "baseline", "--data", str(tmp_path), "--clicks", "9" * 30, cache=tmp_path)
    assert "1..64" in one_error_line(res, "bad_request")


def test_serve_checks_its_numbers_and_device_before_starting(tmp_path):
    """`segany serve` and `python -m segany.server` (what Blender starts) alike: one line, nothing served."""
    for args, want in ((["--port", "70000"], "--port"), (["--parent-pid", "9" * 30], "--parent-pid")):
        res = subprocess.run([*SEGANY, "serve", *args], capture_output=True, text=True, timeout=300)
        assert want in one_error_line(res, "bad_request")
    res = subprocess.run([sys.executable, "-m", "segany.server", "--device", "gpu"], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert "gpu" in one_error_line(res, "bad_request")
