"""Mask inverse rendering and its forward direction, on the per-pixel top-k contributors.

SA3D-GS optimises a per-Gaussian mask value m with the loss −Σ M·render(m) + λ·Σ (1 − M)·render(m) over
the 2D masks M it accepted. Its gradient for one Gaussian is the sum over the pixels it blends into of
its blending weight times (λ·(1 − M) − M), so the sign that decides membership has a closed form: a
Gaussian belongs to the object when the weight it puts inside the masks, over all the weight it puts
anywhere in those views, exceeds λ / (1 + λ). That ratio is the confidence kept here; no optimiser runs.
"""

from __future__ import annotations

import numpy as np


def membership_threshold(negative_weight: float) -> float:
    """The confidence above which SA3D's loss pulls a Gaussian into the object: λ / (1 + λ)."""
    return negative_weight / (1.0 + negative_weight)


class MaskVotes:
    """Running weighted votes per element: blending weight inside accepted masks, and in all their pixels."""

    def __init__(self, n_elements: int) -> None:
        self.inside = np.zeros(n_elements, dtype=np.float64)
        self.total = np.zeros(n_elements, dtype=np.float64)

    def add(self, ids: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> None:
        """Credit one view's mask (H, W) bool to the contributors ids / weights (H, W, K)."""
        valid = ids >= 0
        n = len(self.total)
        self.total += np.bincount(ids[valid], weights=weights[valid], minlength=n)
        inside = valid & mask[..., None]
        self.inside += np.bincount(ids[inside], weights=weights[inside], minlength=n)

    def confidence(self) -> np.ndarray:
        """Share of each element's weight that fell inside the masks, (N,) in [0, 1]; 0 where never seen."""
        return np.divide(self.inside, self.total, out=np.zeros_like(self.total), where=self.total > 0)


def render_values(ids: np.ndarray, weights: np.ndarray, alpha: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Alpha-blend per-element values (N,) into a view, (H, W).

    The top-k weights cover most but not all of a pixel's opacity, so the blend is taken as the
    weighted mean over the kept contributors, scaled by the pixel's full alpha.
    """
    valid = ids >= 0
    vals = np.where(valid, values[np.maximum(ids, 0)], 0.0)
    wsum = weights.sum(axis=-1)
    mean = np.divide((weights * vals).sum(axis=-1), wsum, out=np.zeros_like(wsum), where=wsum > 0)
    return alpha * mean


def element_pixels(ids: np.ndarray, weights: np.ndarray, element: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where one element shows in every view: its strongest pixel (B, 2) as x, y; that weight (B,);
    and whether it is the front (largest-weight) contributor there (B,)."""
    b, _, w, _ = ids.shape
    own = np.where(ids == element, weights, 0.0).sum(axis=-1).reshape(b, -1)
    flat = own.argmax(axis=1)
    ys, xs = np.divmod(flat, w)
    best = own[np.arange(b), flat]
    front = (ids[np.arange(b), ys, xs, 0] == element) & (best > 0)
    return np.stack([xs, ys], axis=1), best, front
