"""SA3D's cross-view self-prompting: point prompts drawn from the confident part of a rendered 3D mask.

The first point is the most confident pixel. Each next one is the most confident pixel left after
blanking a square around the previous point (half the radius of a disc with the confident area, at
least 2 px) and subtracting, scaled by the previous pick's score, the distance to the previous point in
normalised image x, y and depth — spread over the object, but on the same surface rather than on an
occluder or the background behind it. Picking stops when nothing confident is left.
"""

from __future__ import annotations

import numpy as np


def self_prompts(score: np.ndarray, depth: np.ndarray, n_points: int) -> np.ndarray:
    """Up to `n_points` prompt pixels (P, 2) as x, y pixel centres from `score` (H, W), confident where > 0."""
    h, w = score.shape
    left = score.astype(np.float64).copy()
    first = int(np.argmax(left))
    if left.flat[first] <= 0:
        return np.zeros((0, 2), dtype=np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    d = depth.astype(np.float64)
    fg = d > 0
    lo, hi = (float(d[fg].min()), float(d[fg].max())) if fg.any() else (0.0, 1.0)
    coords = np.stack([ys / h, xs / w, (d - lo) / max(hi - lo, 1e-12)], axis=-1)
    reach = max(int(np.sqrt((left > 0).sum() / np.pi)) // 2, 2)
    picks = [divmod(first, w)]
    prev_score = 0.0
    for _ in range(n_points - 1):
        y, x = picks[-1]
        left[max(y - reach, 0) : y + reach + 1, max(x - reach, 0) : x + reach + 1] = -np.inf
        dist = np.linalg.norm(coords - coords[y, x], axis=-1)
        dist = (dist - dist.min()) / max(float(dist.max() - dist.min()), 1e-12)
        left -= dist * max(prev_score, 0.0)
        nxt = int(np.argmax(left))
        prev_score = float(left.flat[nxt])
        if prev_score <= 0:
            break
        picks.append(divmod(nxt, w))
    return np.array([[x + 0.5, y + 0.5] for y, x in picks], dtype=np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
