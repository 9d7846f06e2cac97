"""`segany bench kernels --quick` runs end to end and every row carries its same-run baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segany.bench.kernels import paired_ratio, run


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
    paired = doc["extra"]["mesh_cpu"]["paired_ratio_to_embree"]
    assert paired["pairs"] == 3 and paired["min"] <= paired["median"] <= paired["max"]


def test_paired_ratio_takes_the_ratio_within_each_turn() -> None:
    # Turn 2 ran under a load spike on both sides: the ratio of the medians says 1.5, the turns say 0.5.
    times = np.array([[1.0, 10.0, 3.0], [2.0, 20.0, 2.0]])
    assert np.median(times[0]) / np.median(times[1]) == 1.5
    paired = paired_ratio(times)
    assert (paired["median"], paired["min"], paired["max"], paired["pairs"]) == (0.5, 0.5, 1.5, 3)
    assert paired["q25"] == 0.5 and paired["q75"] == 1.0
