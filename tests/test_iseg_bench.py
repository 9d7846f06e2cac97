"""The iSeg benchmark in quick mode writes the shared report format: a prepare row, and per click position
iSeg's and the baseline's times and their paired ratio."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import run_bench
from segany.bench.iseg import LABELS


def test_quick_bench_writes_report(tmp_path: Path):
    doc = run_bench("iseg", tmp_path, quick=True)
    assert (tmp_path / "iseg.json").is_file() and (tmp_path / "iseg.png").is_file()
    assert json.loads((tmp_path / "iseg.json").read_text())["name"] == "iseg"
    metrics = [r["metric"] for r in doc["rows"]]
    assert any("prepare" in m for m in metrics)
    for label in LABELS:
        assert f"wall time, {label}" in metrics and f"CPU time, {label}" in metrics
        assert f"paired wall ratio, {label}" in metrics
    for row in doc["rows"]:
        assert row["value"] > 0
    assert all(r["baseline_value"] > 0 for r in doc["rows"] if "time," in r["metric"])
