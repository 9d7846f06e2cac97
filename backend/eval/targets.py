"""Which ground-truth segments become click targets: those covering ≥ 2% of the surface, largest first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FRACTION = 0.02
MAX_TARGETS = 8


@dataclass
class Target:
    label: int
    mask: np.ndarray  # (L,) bool over labelled elements
    fraction: float  # share of the total weight (surface area on meshes)


def select_targets(
    labels: np.ndarray, weights: np.ndarray, min_fraction: float = MIN_FRACTION, max_targets: int = MAX_TARGETS
) -> list[Target]:
    """Segments by decreasing weight; ties broken by the smaller label so the order is stable."""
    labels = np.asarray(labels)
    total = float(weights.sum())
    uniq, inv = np.unique(labels, return_inverse=True)
    share = np.bincount(inv, weights=weights, minlength=len(uniq)) / max(total, 1e-30)
    order = sorted(range(len(uniq)), key=lambda i: (-share[i], int(uniq[i])))
    chosen = [i for i in order if share[i] >= min_fraction][:max_targets]
    return [Target(int(uniq[i]), inv == i, float(share[i])) for i in chosen]
