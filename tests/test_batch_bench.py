"""`segany bench batch --quick`: the pool with 1 and 2 workers and a local Ray cluster on three small scenes,
written in the shared report format (a smoke test of the bench, not a measurement)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segany.bench import run_bench

pytest.importorskip("ray")


def test_quick_batch_bench_writes_its_report(tmp_path: Path) -> None:
    doc = run_bench("batch", tmp_path, quick=True)
    assert {f.name for f in tmp_path.iterdir()} >= {"batch.json", "batch.md", "batch.png"}
    assert json.loads((tmp_path / "batch.json").read_text())["name"] == "batch"
    rows = {r["metric"]: r for r in doc["rows"]}
    for config in ("pool 1 worker", "pool 2 workers", "Ray 2 workers"):
        assert rows[f"throughput, {config}"]["value"] > 0
    assert rows["throughput, Ray 2 workers"]["baseline"] == "pool 2 workers"
    assert {r["case"] for r in doc["rows"] if "CPU time per asset" in r["metric"]} == {
        "mesh assets", "splats assets", "points assets"}  # fmt: skip
    assert doc["extra"]["assets_by_kind"] == {"mesh": 1, "points": 1, "splats": 1}
