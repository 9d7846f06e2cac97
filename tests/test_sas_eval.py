"""`segany eval --task label`: every variant scored per name, the capability ranking, the three outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_shapes import table_with_legs, write_psb

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.data import Shape
from segany.eval.label import part_names, ranking, run_label_eval, word_ious

VARIANTS = ["source:oracle_a", "source:oracle_b", "average", "fused:sas", "fused", "fused+superpoints"]


def test_word_ious_weigh_by_area() -> None:
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    area = np.array([3.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(word_ious(truth, pred, area, 3), [3 / 4, 2 / 3, 0.0])


def test_part_names_fall_back_to_numbers() -> None:
    assert part_names("chair", "101", np.array([0, 5, 1]))[:2] == ["seat", "leg"]
    assert part_names("chair", "101", np.array([0, 5, 1]))[5] == "back"
    assert part_names("synthetic", "x", np.array([0, 2])) == ["part 0", "part 1", "part 2"]


def test_ranking_counts_pairs_the_truth_tells_apart() -> None:
    cap = {"a": {"leg": 0.9, "seat": 0.2, "top": 0.5}, "b": {"leg": 0.1, "seat": 0.8, "top": 0.6}}
    true = {"a": {"leg": 0.7, "seat": 0.9, "top": 0.50}, "b": {"leg": 0.2, "seat": 0.3, "top": 0.52}}
    assert ranking(cap, true) == (1, 2)  # leg agrees, seat does not, top is a tie within the margin


@pytest.fixture(scope="module")
def table_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = table_with_legs()
    return write_psb(tmp_path_factory.mktemp("psb"), [Shape("141", "table", shape.scene, shape.labels, "generated")])


def test_label_eval_writes_every_variant(table_data: Path, tmp_path: Path) -> None:
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        results = run_label_eval(
            "sas", "oracle_text", table_data, None, tmp_path / "out", engine, method_options={"preset": "tiny"}
        )
    finally:
        engine.close()
    assert list(results["summary"]) == VARIANTS
    (shape,) = results["shapes"]
    assert shape["words"] == ["leg", "top"]  # the table's names in part_names.json: top, then four legs
    for v in VARIANTS:
        assert 0.0 <= results["summary"][v]["miou"] <= 100.0
        assert set(shape["variants"][v]["iou"]) == {"leg", "top"}
    assert set(shape["capability"]) == {"oracle_a", "oracle_b"}
    assert results["capability_ranking"]["cases"] >= 0
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["task"] == "label" and written["config"]["command"]
    assert "| fused+superpoints |" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "label_miou.png").stat().st_size > 1000


def test_cli_label_task(table_data: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "segany.cli", "eval", "--task", "label", "--method", "sas", "--prior", "oracle_text"]
    args = ["--data", str(table_data), "--options", '{"preset": "tiny"}', "--out", str(tmp_path / "out")]
    args += ["--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    res = subprocess.run([*cli, *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "fused+superpoints" in res.stdout


def test_label_eval_needs_a_language_prior(table_data: Path, tmp_path: Path) -> None:
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        with pytest.raises(SegAnyError) as err:
            run_label_eval("sas", "geometric", table_data, None, tmp_path / "out", engine, {}, {"preset": "tiny"})
    finally:
        engine.close()
    assert err.value.code == "unsupported" and "oracle_text" in err.value.message
