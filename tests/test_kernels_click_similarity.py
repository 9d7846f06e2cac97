"""The fused click scores (`click_similarity`) against the click rule written out directly in float64: the
largest gated cosine to a positive click clamped to [0, 1], zero where a negative click is at least as like.
Both engines (the numba one and the torch one CUDA and numba-less CPUs run), every feature dtype, channel
counts with and without whole 8-float vectors, and click counts within one pass and over several."""

from __future__ import annotations

import pytest
import torch

from segany.errors import SegAnyError
from segany.kernels import similarity
from segany.kernels.similarity import CLICK_GROUP, click_similarity


def direct(features: torch.Tensor, queries: torch.Tensor, positive: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    h = features.double() * gate.double()
    best = {True: torch.full((len(h),), -torch.inf, dtype=torch.float64)}
    best[False] = best[True].clone()
    for q, p in zip(queries.double(), positive.tolist(), strict=True):
        gq = gate.double() * q
        cos = (h @ gq) / (h.norm(dim=1) * gq.norm()).clamp_min(1e-300)
        best[p] = torch.maximum(best[p], cos)
    return torch.where(best[False] >= best[True], 0.0, best[True].clamp(0.0, 1.0))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch-blocks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels", [32, 6], ids=["8-row-tiles", "plain-loop"])
@pytest.mark.parametrize("clicks", [1, 3, CLICK_GROUP, 2 * CLICK_GROUP + 1])
def test_click_scores_match_the_rule(
    fused: bool, dtype: torch.dtype, channels: int, clicks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fused:
        assert similarity.HAVE_NUMBA, "numba is a dependency: the fused CPU engine must be tested"
    else:
        monkeypatch.setattr(similarity, "HAVE_NUMBA", False)
    gen = torch.Generator().manual_seed(clicks * channels)
    features = torch.randn(1003, channels, generator=gen).to(dtype)  # 8-row tiles and a 3-row tail
    features[[5, 1001]] = 0  # a zero feature is like nothing: score 0
    gate = torch.rand(channels, generator=gen)
    gate[:2] = 0  # gated-off channels
    queries = features[torch.randint(0, 1003, (clicks,), generator=gen)].float()
    positive = torch.arange(clicks) % 3 != 1  # positives and negatives mixed, the first positive
    out = click_similarity(features, queries, positive, gate)
    assert out.dtype == torch.float32 and out.shape == (1003,)
    torch.testing.assert_close(out.double(), direct(features, queries, positive, gate), atol=1e-5, rtol=0)
    assert (out[[5, 1001]] == 0).all()


def test_a_click_both_ways_and_only_negative_clicks_select_nothing() -> None:
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(64, 32, generator=gen).to(torch.float16)
    gate = torch.rand(32, generator=gen)
    both = click_similarity(features, features[[3, 3]].float(), torch.tensor([True, False]), gate)
    assert (both == 0).all()  # the tie goes to the removal
    only_negative = click_similarity(features, features[[3]].float(), torch.tensor([False]), gate)
    assert (only_negative == 0).all()
    alone = click_similarity(features, features[[3]].float(), torch.tensor([True]), gate)
    assert alone[3] == pytest.approx(1.0, abs=1e-5)
    zero_query = click_similarity(features, torch.zeros(1, 32), torch.tensor([True]), gate)
    assert (zero_query == 0).all()


def test_mismatched_shapes_are_invalid_arrays() -> None:
    with pytest.raises(SegAnyError, match="must match"):
        click_similarity(torch.zeros(4, 8), torch.zeros(2, 7), torch.tensor([True, True]), torch.zeros(8))
    with pytest.raises(SegAnyError, match="must match"):
        click_similarity(torch.zeros(4, 8), torch.zeros(2, 8), torch.tensor([True]), torch.zeros(8))
