"""Farthest-point sampling: a spread-out subset of points (click candidates, anchors, seeds).

Greedy: start at `start`, then repeatedly take the point farthest (Euclidean) from everything taken so
far. Each step is one vectorized O(N) update of the running nearest-sample distance, so the whole run is
O(N·n) on any device; the index of each step stays on the device (no host round trip per sample on CUDA).
Ties go to the lowest index (torch.argmax returns the first maximum).
"""

from __future__ import annotations

import torch

from segany.errors import SegAnyError


def farthest_point_sampling(points: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Indices (n,) int64 of `n` farthest-point samples of `points` (N, D), beginning with `start`."""
    points = torch.as_tensor(points)
    if points.dim() != 2 or len(points) == 0:
        raise SegAnyError("invalid_array", f"points must be a non-empty (N, D) array, got {tuple(points.shape)}")
    if not 0 < n <= len(points):
        raise SegAnyError("invalid_array", f"cannot sample {n} of {len(points)} points")
    if not 0 <= start < len(points):
        raise SegAnyError("invalid_array", f"start index {start} is outside [0, {len(points)})")
    pts = points.to(torch.float64 if points.dtype == torch.float64 else torch.float32)
    cols = list(pts.T.contiguous())  # one contiguous column per coordinate: the fastest update on CPU
    out = torch.empty(n, dtype=torch.int64, device=pts.device)
    current = torch.tensor([start], dtype=torch.int64, device=pts.device)
    nearest = torch.full((len(pts),), torch.inf, dtype=pts.dtype, device=pts.device)
    for i in range(n):
        out[i : i + 1] = current
        dist = torch.zeros_like(nearest)
        for col in cols:
            diff = col - col.index_select(0, current)
            dist.addcmul_(diff, diff)
        torch.minimum(nearest, dist, out=nearest)
        current = torch.argmax(nearest).reshape(1)
    return out
