"""`segany bench addon` in quick mode (a 5K-vertex click mesh, 100K writes, 100K Gaussians): the report
has every figure of the add-on issue with its target, each a real measurement."""

from __future__ import annotations

import json
import math
from pathlib import Path

from segany.bench import run_bench


def test_quick_bench_reports_every_figure_with_its_target(tmp_path: Path) -> None:
    doc = run_bench("addon", tmp_path, quick=True)
    assert (tmp_path / "addon.png").is_file() and json.loads((tmp_path / "addon.json").read_text())["name"] == "addon"
    rows = {r["metric"]: r for r in doc["rows"]}
    assert {m: r["target"] for m, r in rows.items() if r["target"]} == {
        "event → coloured, minus method": "< 30 ms",
        "float attribute (foreach_set)": "< 100 ms",
        "import + read + send": "< 3 s",
    }
    assert all(r["value"] > 0 and math.isfinite(r["value"]) for r in doc["rows"])
    pieces = ("pick", "send (", "receive", "worker → main", "write live")
    click = sum(r["value"] for m, r in rows.items() if m.startswith(pieces))
    assert math.isclose(rows["event → coloured, minus method"]["value"], click, rel_tol=1e-9)
    for metric in (
        "vertex group, 1.0 above threshold",
        "vertex group, weights = scores",
        "send to backend (scene.add)",
    ):
        assert rows[metric]["baseline_value"] > 0
    extra = doc["extra"]
    assert extra["write_elements"] >= 99_000 and extra["splats"] == 100_000 and extra["quick"] is True
