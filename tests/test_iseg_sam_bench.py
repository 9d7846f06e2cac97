"""The iSeg + SAM prepare benchmark: quick mode runs iSeg's prepare end to end with the real vit_b
architecture at random weights (one small view, about 40 s on a 2-core CPU); the full one needs CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from segany.bench import run_bench
from segany.errors import SegAnyError


def test_quick_bench_prepares_iseg_with_sam_and_times_the_encoder_baseline(tmp_path: Path) -> None:
    doc = run_bench("iseg_sam", tmp_path, quick=True)
    assert json.loads((tmp_path / "iseg_sam.json").read_text())["name"] == "iseg_sam"
    assert (tmp_path / "iseg_sam.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prepare, *stages = doc["rows"]
    assert prepare["metric"] == "wall time of prepare" and prepare["value"] > 0 and prepare["baseline_value"] > 0
    assert [r["metric"].removeprefix("prepare stage: ") for r in stages] == list(doc["extra"]["prepare_stages_s"])
    assert doc["extra"]["model_type"] == "vit_b" and doc["extra"]["views"] == 1
    assert sum(doc["extra"]["training_samples"].values()) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the full benchmark would run (minutes)")
def test_full_bench_refuses_without_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(SegAnyError) as info:
        run_bench("iseg_sam", tmp_path)
    assert info.value.code == "unsupported" and "--quick" in info.value.message
