"""Torch's thread count is process-wide: `torch_threads` applies one for a block and gives the old one back, and
`run_asset` (which may run in the caller's own process) leaves the caller's count as it found it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sa3d_scenes import splat_blobs

from segany.batch import collect_assets, parse_spec
from segany.batch.asset import Where, run_asset
from segany.threads import bench_threads, torch_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_the_block_runs_with_n_and_the_count_comes_back_after_a_raise(restore_threads) -> None:
    torch.set_num_threads(3)
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="boom"), torch_threads(2):
        assert torch.get_num_threads() == 2
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 3


def test_run_asset_gives_the_callers_thread_count_back(restore_threads, tmp_path: Path) -> None:
    """A real asset run in this process with a budget of one thread, once answered and once refused."""
    path = tmp_path / "blobs.ply"
    splat_blobs(tmp_path)
    torch.set_num_threads(3)
    statuses = []
    for spec in ({"task": "clicks", "clicks": [[0, 1]], "method": "walk"},
                 {"task": "everything", "scale": 1.0, "method": "walk"}):  # walk cannot: refused  # fmt: skip
        (asset,) = collect_assets([str(path)], parse_spec(spec))
        record = run_asset(asset, Where(tmp_path / "out", tmp_path / "cache", "cpu", threads=1))
        statuses.append(record["status"])
        assert torch.get_num_threads() == 3, record
    assert statuses == ["ok", "failed"]


def test_benches_run_one_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGANY_BENCH_THREADS", raising=False)
    assert bench_threads() == 1
    monkeypatch.setenv("SEGANY_BENCH_THREADS", "4")
    assert bench_threads() == 4
