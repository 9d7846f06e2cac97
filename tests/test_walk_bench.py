"""The walk benchmark in quick mode writes the shared report with its timed rows against the same-run baseline."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import run_bench


def test_quick_walk_bench_writes_report(tmp_path: Path) -> None:
    doc = run_bench("walk", tmp_path, quick=True)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"walk.{ext}").is_file()
    assert json.loads((tmp_path / "walk.json").read_text())["name"] == "walk"
    clicks = [r for r in doc["rows"] if "click" in r["metric"] and r["unit"] == "ms"]
    assert len(clicks) == 6 and all(r["value"] > 0 and r["baseline_value"] > 0 for r in clicks)
    assert any("graph build" in r["metric"] and r["value"] > 0 for r in doc["rows"])
    assert all(r["value"] > 0 for r in doc["rows"] if "paired" in r["metric"])
    case = next(iter(doc["extra"]["build"]))
    assert "→ 2,000 nodes" in case  # the quick scene is coarsened, so that path is run too
    assert doc["extra"]["differing_selected_elements"][case] == 0
