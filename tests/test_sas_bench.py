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
