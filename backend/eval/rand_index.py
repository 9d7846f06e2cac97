"""The Princeton Segmentation Benchmark's Rand Index between two segmentations of the same faces.

Source: Chen, Golovinskiy and Funkhouser, "A Benchmark for 3D Mesh Segmentation" (SIGGRAPH 2009),
section 4.4: RI(S1, S2) = C(N, 2)⁻¹ Σ_{i<j} [C_ij P_ij + (1 − C_ij)(1 − P_ij)] over the N faces, where
C_ij (P_ij) says faces i and j share a segment in S1 (S2); the benchmark reports 1 − RI, averaged over
every human segmentation of the shape. The benchmark's released evaluation code counts face pairs without
weights too (`EvaluateRandIndex` in src/apps/include/EvaluationMethods.h of its 2009 release: a contingency
table of face counts, no areas; checked in session 10), so that is the default here. `weights` (e.g. face
areas) gives an area-weighted variant, pair (i, j) counting w_i·w_j, which the benchmark does not use.

Counted through the contingency table instead of the O(N²) pairs: with weighted cell masses n_kl, row
masses a_k and column masses b_l, the pairs sharing a segment in S1 weigh (Σ a_k² − Σ w_i²) / 2, and
likewise for S2 and for both; pairs on which the two disagree are those shared in exactly one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SegAnyError


def _labels(name: str, labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise SegAnyError(
            "invalid_array", f"{name} must be a 1-D integer array of segment ids, got {arr.dtype} {arr.shape}"
        )
    return np.unique(arr, return_inverse=True)[1].reshape(-1)


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise SegAnyError("invalid_array", f"weights must have one value per face ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise SegAnyError("invalid_array", "weights must be finite and non-negative (e.g. face areas)")
    return w


def _same_pairs(codes: np.ndarray, w: np.ndarray, self_pairs: float) -> float:
    """Weight of the pairs i < j that share a code: (Σ_groups mass² − Σ w_i²) / 2."""
    mass = np.bincount(codes, weights=w)
    return (float(mass @ mass) - self_pairs) / 2.0


def rand_index(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Fraction of face pairs (weighted by w_i·w_j) on which segmentations `a` and `b` agree."""
    la, lb = _labels("a", a), _labels("b", b)
    if la.shape != lb.shape:
        raise SegAnyError("invalid_array", f"segmentations differ in length: {la.shape[0]} vs {lb.shape[0]} faces")
    w = _weights(weights, la.shape[0])
    self_pairs = float(w @ w)
    total = (float(w.sum()) ** 2 - self_pairs) / 2.0
    if total <= 0:  # fewer than two faces, or fewer than two with positive weight
        raise SegAnyError("invalid_array", "the Rand Index needs at least two faces with positive weight")
    same_a = _same_pairs(la, w, self_pairs)
    same_b = _same_pairs(lb, w, self_pairs)
    cells = np.unique(la * (int(lb.max()) + 1) + lb, return_inverse=True)[1].reshape(-1)  # compact, not N² bins
    same_both = _same_pairs(cells, w, self_pairs)
    disagree = (same_a - same_both) + (same_b - same_both)
    return float(np.clip(1.0 - disagree / total, 0.0, 1.0))


def rand_index_error(pred: np.ndarray, humans: Sequence[np.ndarray], weights: np.ndarray | None = None) -> float:
    """The benchmark's figure: 1 − Rand Index, averaged over every human segmentation of the shape."""
    if len(humans) == 0:
        raise SegAnyError("invalid_array", "the Rand Index error needs at least one human segmentation")
    return float(np.mean([1.0 - rand_index(pred, human, weights) for human in humans]))
