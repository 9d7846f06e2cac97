"""`segany everything` and `segany segment --scale` as a user runs them: real subprocesses, real files.

The scene is the SAGA tests' two blobs of Gaussians as a 3DGS PLY, prepared with the tiny preset; the two
commands share one cache, so the second reuses the first one's prepare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData
from sa3d_scenes import splat_blobs

from segany.eval.rand_index import rand_index
from segany.formats import load_scene
from segany.scene import SplatScene

SEGANY = [sys.executable, "-m", "segany.cli"]
TINY = '{"preset": "tiny"}'


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SEGANY, *args, "--cache-dir", str(cache)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("everything_cli")
    scene, labels = splat_blobs(tmp)
    return tmp / "blobs.ply", scene, labels, tmp / "cache"


def test_everything_writes_a_3dgs_ply_with_parts_and_a_picture(blobs, tmp_path: Path):
    path, scene, labels, cache = blobs
    out = tmp_path / "parts"
    res = run("everything", str(path), "--scale", "1.0", "--options", TINY, "--out", str(out), cache=cache)
    assert res.returncode == 0, res.stderr
    assert f"parts of {scene.n_elements:,} elements (splats) at scale 1" in res.stdout
    ply = PlyData.read(str(out / "parts.ply"))
    names = {p.name for p in ply["vertex"].properties}
    assert {"f_dc_0", "opacity", "scale_0", "rot_0", "part", "red", "green", "blue"} <= names
    parts = np.asarray(ply["vertex"]["part"])
    assert parts.shape == (scene.n_elements,) and parts.min() >= 0
    assert rand_index(parts, labels) > 0.8  # the blobs are split (one part would score 0.5), as in the op tests
    again = load_scene(out / "parts.ply")  # still a splat file with the scene's own appearance
    assert isinstance(again, SplatScene)
    np.testing.assert_allclose(again.sh, scene.sh, atol=1e-6)
    colours = np.stack([np.asarray(ply["vertex"][c]) for c in ("red", "green", "blue")], axis=1)
    for k in np.unique(parts):  # one colour per part, different parts different colours
        assert len(np.unique(colours[parts == k], axis=0)) == 1
    assert len({tuple(colours[parts == k][0]) for k in np.unique(parts)}) == len(np.unique(parts))
    with Image.open(out / "parts.png") as png:
        assert png.width == 4 * 320 and png.height > 320  # four views over a legend


def test_everything_merges_adjacent_parts_only_down_to_a_given_count(blobs, tmp_path: Path):
    """Asked for one part, the two blobs stay two: only parts that touch merge (a part count is a bound)."""
    path, scene, labels, cache = blobs
    res = run("everything", str(path), "--scale", "1.0", "--parts", "1", "--options", TINY, "--out", str(tmp_path),
              cache=cache)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"2 parts of {scene.n_elements:,} elements" in res.stdout
    parts = np.asarray(PlyData.read(str(tmp_path / "parts.ply"))["vertex"]["part"])
    assert rand_index(parts, labels) > 0.99


def test_segment_takes_a_scale(blobs, tmp_path: Path):
    path, _, labels, cache = blobs
    click = int(np.flatnonzero(labels == 0)[0])
    out = tmp_path / "seg"
    res = run("segment", str(path), "--click", str(click), "--method", "saga", "--scale", "1.0",
              "--options", TINY, "--out", str(out), cache=cache)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (out / "result.ply").is_file() and (out / "result.png").is_file()
    res = run("segment", str(path), "--click", str(click), "--method", "saga", "--scale", "0", cache=cache)
    assert res.returncode == 2 and "[bad_request] --scale '0' must be a number > 0" in res.stderr
    res = run("segment", str(path), "--click", str(click), "--method", "walk", "--scale", "0.05", cache=cache)
    assert res.returncode == 2 and "[bad_request] unknown walk query keys" in res.stderr and "scale" in res.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scale", "-1"], "[bad_request] --scale '-1' must be a number > 0"),
        (["--scale", "nan"], "[bad_request] --scale 'nan' must be a number > 0"),
        (["--scale", "0.5,zero"], "[bad_request] --scale 'zero'"),
        (["--method", "walk"], "[bad_request] walk cannot segment everything; methods that can: ['saga']"),
        (["--min-cluster-size", "500", "--sample", "100"], "[bad_request] min_cluster_size (500) must not exceed"),
        (["--scale", "0.5,1", "--parts", "2"], "[bad_request] saga everything query key 'parts' takes one scale"),
        (["--parts", "-1"], "[bad_request]"),
    ],
)
def test_everything_refuses_clearly(blobs, tmp_path: Path, args: list[str], says: str):
    path, _, _, cache = blobs
    res = run("everything", str(path), *args, "--options", TINY, "--out", str(tmp_path), cache=cache)
    assert res.returncode == 2 and says in res.stderr, res.stderr
    assert not (tmp_path / "parts.ply").exists()
