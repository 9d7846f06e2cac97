"""SAGA's scale-gated similarity query: score_i = cos(g ⊙ f_i, g ⊙ q) for every Gaussian i.

g = g(s) is the gate SAGA's scale MLP gives for the physical scale s of the click, f_i the per-Gaussian
affinity feature, q the query feature. With gq = g ⊙ q:

    score_i = (f_i · (g ⊙ gq)) / (sqrt((f_i ⊙ f_i) · g²) · ‖gq‖)

so the query is two matrix-vector products against (C,) vectors. Memory bandwidth is the limit (a
click scores millions of Gaussians), so the features are read once: block by block (sized to stay in
cache), each block is widened to float32 once (fp16 / bf16 features accumulate in fp32), and both
products run on the cached block. No (N, C) temporary is ever made. A zero gated feature scores 0.
"""

from __future__ import annotations

import torch

from segany.errors import SegAnyError

_CPU_BLOCK_ROWS = 16384
_CUDA_BLOCK_ROWS = 1 << 18


def scale_gated_similarity(
    features: torch.Tensor, query: torch.Tensor, gate: torch.Tensor, block_rows: int | None = None
) -> torch.Tensor:
    """Scores (N,) float32 in [-1, 1] of `features` (N, C) (float32, float16 or bfloat16) against `query`
    (C,) under the scale gate `gate` (C,)."""
    if features.dim() != 2:
        raise SegAnyError("invalid_array", f"features must be (N, C), got {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise SegAnyError("invalid_array", f"features must be float32, float16 or bfloat16, not {features.dtype}")
    n, c = features.shape
    dev = features.device
    query = torch.as_tensor(query, device=dev).to(torch.float32).reshape(-1)
    gate = torch.as_tensor(gate, device=dev).to(torch.float32).reshape(-1)
    if len(query) != c or len(gate) != c:
        raise SegAnyError("invalid_array", f"query and gate must have {c} channels, got {len(query)} and {len(gate)}")
    gq = gate * query
    weight = gate * gq  # divided by ‖gq‖ below, so the products give the score directly
    gate_sq = gate * gate
    rows = block_rows or (_CUDA_BLOCK_ROWS if dev.type == "cuda" else _CPU_BLOCK_ROWS)
    gq_norm = float(gq.norm())
    scores = torch.empty(n, dtype=torch.float32, device=dev)
    if n == 0 or gq_norm == 0.0:
        return scores.zero_()
    weight = weight / gq_norm
    den = torch.empty(min(rows, n), dtype=torch.float32, device=dev)
    widened = torch.empty((min(rows, n), c), dtype=torch.float32, device=dev)
    squares = torch.empty((min(rows, n), c), dtype=torch.float32, device=dev)
    for start in range(0, n, rows):
        block = features[start : start + rows]
        m = len(block)
        if block.dtype != torch.float32 or not block.is_contiguous():
            block = widened[:m].copy_(block)
        out = scores[start : start + m]
        torch.mv(block, weight, out=out)
        torch.mv(torch.mul(block, block, out=squares[:m]), gate_sq, out=den[:m])
        # a zero gated feature has a zero numerator too: 0 · rsqrt(tiny) = 0
        out.mul_(den[:m].clamp_min_(1e-30).rsqrt_()).clamp_(-1.0, 1.0)
    return scores
