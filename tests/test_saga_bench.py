"""The saga benchmark in quick mode writes the shared report: prepare, peak memory, queries against the
same-run streaming read, and segment everything."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import run_bench


def test_quick_saga_bench_writes_report(tmp_path: Path) -> None:
    doc = run_bench("saga", tmp_path, quick=True)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"saga.{ext}").is_file()
    assert json.loads((tmp_path / "saga.json").read_text())["name"] == "saga"
    rows = doc["rows"]
    assert all(r["value"] >= 0 for r in rows)  # a one-time cost the extrapolation finds negligible may be 0
    assert all(r["value"] > 0 for r in rows if "once" not in r["metric"])
    queries = [r for r in rows if r["metric"] == "wall time (median)"]
    labels = {r["case"].split(",")[0]: r for r in queries}
    assert set(labels) == {"click query", "scale-slider step", "similarity kernel", "three clicks (+ − +)"}
    assert all(r["baseline"].startswith("streaming read") for k, r in labels.items() if not k.startswith("three"))
    assert labels["three clicks (+ − +)"]["baseline"] == "a read per click, combined in torch"
    assert all(r["baseline_value"] > 0 for r in queries)
    peak = next(r for r in rows if r["metric"].startswith("peak memory") and r["baseline_value"] is not None)
    assert peak["value"] >= peak["baseline_value"]  # the peak includes what was resident before
    assert any(r["metric"] == "wall time, training step" for r in rows)
    assert any(r["metric"] == "CPU time, training step" for r in rows)
    assert doc["extra"]["everything"]["parts"] >= 1
    assert doc["curves"] and len(doc["curves"][0]["x"]) == len(doc["curves"][0]["y"])
