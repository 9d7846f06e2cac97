"""The iSeg benchmark in quick mode writes the shared report format with the three timed rows."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import run_bench


def test_quick_bench_writes_report(tmp_path: Path):
    doc = run_bench("iseg", tmp_path, quick=True)
    assert (tmp_path / "iseg.json").is_file() and (tmp_path / "iseg.png").is_file()
    assert json.loads((tmp_path / "iseg.json").read_text())["name"] == "iseg"
    metrics = [r["metric"] for r in doc["rows"]]
    assert any("light decoder" in m for m in metrics) and any("full decoder" in m for m in metrics)
    assert any("crease refinement" in m for m in metrics) and any("first refined click" in m for m in metrics)
    assert any("prepare" in m for m in metrics)
    for row in doc["rows"]:
        assert row["value"] > 0
    click_rows = [r for r in doc["rows"] if "per click" in r["metric"]]
    assert all(r["baseline_value"] > 0 for r in click_rows)
