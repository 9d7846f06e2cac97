"""`segany bench kernels --quick` runs end to end and every row carries its same-run baseline."""

from __future__ import annotations

import json
from pathlib import Path

from segany.bench.kernels import run


def test_kernels_bench_quick(tmp_path: Path) -> None:
    doc = run(tmp_path, quick=True)
    saved = json.loads((tmp_path / "kernels.json").read_text())
    assert (tmp_path / "kernels.png").stat().st_size > 0
    assert saved["rows"] == doc["rows"]
    cases = [r["case"] for r in doc["rows"]]
    for prefix in ("mesh raster", "interpolate", "similarity", "knn", "fps", "scatter"):
        assert any(c.startswith(prefix) for c in cases), prefix
    mesh_rows = [r for r in doc["rows"] if not r["case"].startswith(("splat", "volume"))]
    for row in mesh_rows:
        assert row["baseline"] and row["baseline_value"] > 0 and row["value"] > 0, row
    assert doc["extra"]["mesh_cpu"]["ids_equal_to_embree"] > 0.99
