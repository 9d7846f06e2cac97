"""`segany eval --task everything`: SAGA's parts of a small PSB-layout shape (the tiny preset), scored by the
benchmark's Rand Index against every human segmentation, with the humans' own figure and one part beside it.

The shape is the built-in stool written in the PSB layout under id 1 (so its category is "human" by the PSB
numbering), with two "human" segmentations: its primitives, and the same with the legs merged into one part.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from budgets import TINY

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.everything import human_error, run_everything_eval, scored_labels
from segany.eval.published import PUBLISHED
from segany.eval.rand_index import rand_index, rand_index_error
from segany.samples import sample_mesh


def legs_merged(parts: np.ndarray) -> np.ndarray:
    """The stool's primitives with every leg (parts 2 and up) as one part: a coarser person's segmentation."""
    return np.minimum(parts, 2)


@pytest.fixture(scope="module")
def psb_stool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    data = tmp_path_factory.mktemp("psb_stool")
    mesh = sample_mesh()
    (data / "off").mkdir()
    (data / "seg" / "1").mkdir(parents=True)
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(data / "off" / "1.off")
    humans = [mesh.face_parts.astype(np.int64), legs_merged(mesh.face_parts).astype(np.int64)]
    for k, h in enumerate(humans):
        np.savetxt(data / "seg" / "1" / f"1_{k}.seg", h, fmt="%d")
    return data, humans


def test_human_error_scores_each_human_against_the_others() -> None:
    a, b, c = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3])
    # by hand: a and b disagree on pairs (0,2), (1,2), (2,3) of 6, so 1 − RI = 0.5; a and c on (0,1), (2,3)
    assert rand_index(a, b) == pytest.approx(0.5) and rand_index(a, c) == pytest.approx(4 / 6)
    assert human_error([a, b]) == pytest.approx(0.5)
    expected = np.mean([rand_index_error(a, [b, c]), rand_index_error(b, [a, c]), rand_index_error(c, [a, b])])
    assert human_error([a, b, c]) == pytest.approx(expected)
    assert human_error([a]) is None


def test_a_face_takes_the_part_its_corners_share() -> None:
    from segany.eval.data import Shape
    from segany.scene import MeshScene

    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    shape = Shape("t", "t", MeshScene(np.random.default_rng(0).random((5, 3)), faces), np.zeros(3, np.int64), "t")
    np.testing.assert_array_equal(scored_labels(shape, np.array([0, 0, 1, 1, 1])), [0, 1, 1])


def test_everything_eval_writes_the_rand_index_per_category(psb_stool, tmp_path: Path) -> None:
    data, humans = psb_stool
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        results = run_everything_eval("saga", None, data, None, tmp_path / "out", engine, method_options=TINY)
    finally:
        engine.close()
    summary = results["summary"]
    saga = summary["saga"]
    assert 0.0 <= saga["rand_index_error"] <= 1.0 and saga["shapes"] == 1 and saga["parts"] >= 1
    assert saga["rand_index_error_by_category"] == {"human": saga["rand_index_error"]}
    assert summary["human"]["rand_index_error"] == pytest.approx(1 - rand_index(humans[0], humans[1]))
    one = np.zeros_like(humans[0])
    assert summary["one part"]["rand_index_error"] == pytest.approx(rand_index_error(one, humans))
    shape = results["shapes"][0]
    assert shape["humans"] == 2 and shape["kind"] == "mesh" and shape["methods"]["saga"]["scales"]
    assert results["published"] == PUBLISHED and results["config"]["prior"] == "geometric"
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["summary"]["saga"]["rand_index_error"] == pytest.approx(saga["rand_index_error"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Written by" in report and "| saga | 1 |" in report and "Randomized Cuts" in report
    assert PUBLISHED["protocol"] in report  # the published algorithms were told the part count: said beside them
    assert (tmp_path / "out" / "rand_index.png").stat().st_size > 0
    assert Path(shape["methods"]["saga"]["picture"]).is_file()


def test_a_method_that_cannot_segment_everything_is_refused_before_any_work(psb_stool, tmp_path: Path) -> None:
    data, _ = psb_stool
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        with pytest.raises(SegAnyError, match="iseg cannot segment everything") as exc:
            run_everything_eval("iseg", None, data, None, tmp_path / "out", engine)
    finally:
        engine.close()
    assert exc.value.code == "bad_request" and not (tmp_path / "out").exists()


def test_cli_task_is_checked(psb_stool, tmp_path: Path) -> None:
    data, _ = psb_stool
    cmd = [sys.executable, "-m", "segany.cli", "eval", "--data", str(data), "--out", str(tmp_path / "o"),
           "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    res = subprocess.run([*cmd, "--task", "nope"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "[bad_request] --task must be clicks" in res.stderr
    res = subprocess.run(
        [*cmd, "--task", "everything", "--method", "walk"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2 and "[bad_request] walk cannot segment everything" in res.stderr
