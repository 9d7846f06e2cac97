"""The geometric-prior benchmark runs end to end in quick mode and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench import priors


def test_quick_bench_writes_the_report(tmp_path: Path) -> None:
    doc = priors.run(tmp_path, quick=True)
    saved = json.loads((tmp_path / "priors.json").read_text())
    assert (tmp_path / "priors.png").is_file() and saved["rows"] == doc["rows"]
    rows = {r["case"]: r for r in doc["rows"]}
    assert 0.4 < rows["all categories"]["value"] <= 1.0
    assert rows["all categories"]["value"] > rows["all categories"]["baseline_value"]
    assert rows["128² view"]["unit"] == "ms"
