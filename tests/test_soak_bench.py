"""The soak: clicks from four clients with prepares and cancels between, against a real backend.

The quick run (every tier) shows the bench works end to end: every click answered or refused with a
stable code, never `internal`, no client lost. The full run (10,000 clicks, `pytest -m soak`) also holds
the memory claim: the backend's resident memory over the last quarter of the clicks stays within 10%
of the second quarter's (the first quarter warms caches).
"""

from __future__ import annotations

import pytest

from segany.bench import run_bench
from segany.bench.soak import CLIENTS, PREPARES


def _check(doc: dict, clicks: int) -> dict[str, float]:
    extra = doc["extra"]
    assert extra["clicks"] == clicks and extra["backend_alive_after"] and extra["client_failures"] == []
    assert set(extra["error_codes"]) <= {"cancelled"}, extra["error_codes"]
    assert extra["rss_mib_by_clicks"][-1][0] == clicks, "every click was answered"
    return {r["metric"]: r for r in doc["rows"]}


def test_quick_soak_answers_every_click_without_internal(tmp_path) -> None:
    doc = run_bench("soak", tmp_path, quick=True)
    rows = _check(doc, 400)
    assert rows["internal errors"]["value"] == 0
    assert f"{CLIENTS * PREPARES} prepares" in doc["rows"][0]["case"]
    assert (tmp_path / "soak.md").is_file() and (tmp_path / "soak.png").stat().st_size > 0
    curve = doc["curves"][0]  # the memory plot's points are in the JSON too
    assert curve["x"] == [n for n, _ in doc["extra"]["rss_mib_by_clicks"]] and len(curve["y"]) == len(curve["x"])


@pytest.mark.soak
def test_ten_thousand_clicks_keep_memory_flat(tmp_path) -> None:
    doc = run_bench("soak", tmp_path)
    rows = _check(doc, 10_000)
    rss = rows["backend RSS, median of the last quarter"]
    assert rss["ratio"] <= 1.1, f"backend memory grew from {rss['baseline_value']:.0f} to {rss['value']:.0f} MiB"
