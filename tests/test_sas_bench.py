"""The sas benchmark in quick mode writes the shared report with its queries timed against a read of their features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segany.bench import run_bench
from segany.bench.sas import NAMES, WORDS, _replicated
from segany.eval.generate import splats_from_mesh
from segany.jobs import JobContext
from segany.methods.sas import SAS
from segany.methods.sas.options import SASOptions
from segany.options import parse_options
from segany.priors import get_prior
from segany.samples import sample_mesh


def test_quick_sas_bench_writes_report(tmp_path: Path) -> None:
    doc = run_bench("sas", tmp_path, quick=True)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"sas.{ext}").is_file()
    assert json.loads((tmp_path / "sas.json").read_text())["name"] == "sas"
    timed = [r for r in doc["rows"] if r["case"].startswith("query") and r["baseline"]]
    assert len(timed) == 4 and all(r["value"] > 0 and r["baseline_value"] > 0 for r in timed)
    assert all("10,000 G" in r["case"] and "streaming read" in r["baseline"] for r in timed)
    assert all(r["value"] > 0 for r in doc["rows"])
    case = next(iter(doc["extra"]["bytes_per_element"]))
    assert "2,000 G" in case and doc["extra"]["prepare_timings"][case]["render"] > 0


def test_replicated_state_answers_each_copy_alike(tmp_path: Path) -> None:
    """The bench's million-element state is copies of a prepared one: each copy labels as the original does."""
    mesh = sample_mesh()
    scene, labels = splats_from_mesh(mesh, mesh.face_parts, 600, seed=0)
    prior = get_prior("oracle_text", labels=labels, names=NAMES)
    state = SAS().prepare(scene, prior, parse_options(SASOptions, {"preset": "tiny"}), JobContext())
    big, _ = splats_from_mesh(mesh, mesh.face_parts, 1800, seed=0)
    copies = _replicated(state, 3)
    for query in ({"words": WORDS}, {"words": WORDS, "superpoints": False}):
        one = SAS().query(scene, state, query).extras["labels"]
        three = SAS().query(big, copies, query).extras["labels"]
        np.testing.assert_array_equal(three, np.tile(one, 3))


def test_clip_prepare_rows_time_each_stage_against_the_oracle_prepare(tmp_path: Path) -> None:
    """The CLIP prepare rows (left out of --quick), on a tiny ViT and a small splat scene: every stage of the
    CLIP prepare beside the same stage of the oracle prepare, the total against the issue's 5 minutes."""
    from segany.bench.sas import _clip_rows
    from tests.clip_tiny import TINY_NAME, tiny_checkpoint

    tiny_checkpoint(tmp_path)  # registers the tiny architecture with open_clip
    mesh = sample_mesh()
    scene, _ = splats_from_mesh(mesh, mesh.face_parts, 600, seed=0)
    extra: dict = {}
    rows = _clip_rows(scene, "stool", TINY_NAME, parse_options(SASOptions, {"preset": "tiny"}), extra)
    total = next(r for r in rows if r.metric == "wall time, total")
    assert total.target == "≤ 300 s" and total.value > 0 and total.baseline_value > 0
    stages = ["render", "lift clip", "lift clip_crops", "graph"]
    assert list(extra["clip_prepare"]["timings"]) == stages
    for stage, base in zip(stages, ["render", "lift oracle_a", "lift oracle_b", "graph"], strict=True):
        wall = next(r for r in rows if r.metric == f"wall time, {stage}")
        cpu = next(r for r in rows if r.metric == f"CPU time, {stage}")
        assert wall.baseline == cpu.baseline == f"oracle prepare: {base}" and cpu.baseline_value >= 0
    assert extra["clip_prepare"]["prior"]["clip"]["model_name"] == TINY_NAME
