"""SAS's capability-guided fusion of several sources' scores per element.

feat_fusion/fusion_scannet.py of SAS: each source predicts a class; a source's weight is its capability for
both candidate classes (its own prediction's and the other source's), the weights are normalised to sum 1,
then sharpened by a softmax with temperature 0.05, and the fused feature is the weighted sum of the
sources' features. With more than two sources a source's weight sums its capability over every source's
prediction. Cosine scores are linear in the feature, so fusing each source's scores against the words is
fusing the features, and the sources need not share one embedding space.
"""

from __future__ import annotations

import torch


def fuse(
    scores: list[torch.Tensor], seen: list[torch.Tensor], capability: torch.Tensor, n_words: int, temperature: float
) -> torch.Tensor:
    """Fused scores (N, C) from per-source scores (N, C) (the first `n_words` columns are the words, the rest
    the canonical negatives), per-source seen masks (N,) and capability (S, n_words). A source that never saw
    an element gets no weight there; an element no source saw keeps zero scores."""
    seen_all = torch.stack(seen)  # (S, N)
    preds = torch.stack([s[:, :n_words].argmax(dim=1) for s in scores])  # (S, N)
    # weight[s, n] = Σ over sources t that saw n of capability[s, prediction of t at n]
    gathered = capability[:, preds]  # (S, S, N): capability of s for t's prediction
    weight = (gathered * seen_all[None].to(gathered.dtype)).sum(dim=1)
    total = weight.sum(dim=0, keepdim=True)
    weight = torch.where(total > 0, weight / total.clamp_min(1e-30), torch.full_like(weight, 1.0 / len(scores)))
    logits = torch.where(seen_all, weight / temperature, torch.full_like(weight, -torch.inf))
    soft = torch.softmax(logits, dim=0).nan_to_num(0.0)  # all -inf (nobody saw it): zero weights
    fused = scores[0] * soft[0, :, None]
    for s in range(1, len(scores)):
        fused.addcmul_(scores[s], soft[s, :, None])
    return fused


def average(scores: list[torch.Tensor], seen: list[torch.Tensor]) -> torch.Tensor:
    """The plain mean over the sources that saw each element (SAS's "average" baseline)."""
    stacked = torch.stack(scores)
    seen_all = torch.stack(seen).to(stacked.dtype)
    return (stacked * seen_all[:, :, None]).sum(dim=0) / seen_all.sum(dim=0).clamp_min(1.0)[:, None]
