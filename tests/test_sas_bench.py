"""The sas benchmark in quick mode writes the shared report with its query timed against the one-source baseline."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import run_bench


def test_quick_sas_bench_writes_report(tmp_path: Path) -> None:
    doc = run_bench("sas", tmp_path, quick=True)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"sas.{ext}").is_file()
    assert json.loads((tmp_path / "sas.json").read_text())["name"] == "sas"
    timed = [r for r in doc["rows"] if r["metric"].startswith("query") and r["baseline"]]
    assert len(timed) == 2 and all(r["value"] > 0 and r["baseline_value"] > 0 for r in timed)
    assert all(r["value"] > 0 for r in doc["rows"])
    case = next(iter(doc["extra"]["bytes_per_element"]))
    assert "5,000 G" in case and doc["extra"]["prepare_timings"][case]["render"] > 0
