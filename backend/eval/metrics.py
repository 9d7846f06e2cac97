"""IoU and the standard interactive-segmentation summaries (mIoU@k, NoC@t).

A curve holds the IoU (0..1) after click 1, 2, …, n. mIoU@k is the mean over targets of the IoU after
k clicks, in percent. NoC@t is the first click count whose IoU reaches t (percent), capped at the
click budget n when a target never reaches it — the RITM / AGILE3D definition. Aggregates are
means over targets (not over shapes), the convention of those papers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIOU_AT = (1, 3, 5)
NOC_AT = (80, 85, 90)


def iou(gt: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    """Weighted IoU of two boolean masks (weights = face areas on meshes, 1 on points); 1 when both are empty."""
    union = float(weights[gt | pred].sum())
    if union <= 0:
        return 1.0
    return float(weights[gt & pred].sum()) / union


def noc(curve: Sequence[float], threshold_percent: float, cap: int) -> int:
    for k, value in enumerate(curve, start=1):
        if value * 100.0 >= threshold_percent - 1e-9:
            return k
    return cap


def iou_at(curve: Sequence[float], k: int) -> float:
    """IoU after k clicks; a shorter curve (budget < k) keeps its last value."""
    return float(curve[min(k, len(curve)) - 1])


def summarize(curves: Sequence[Sequence[float]], cap: int) -> dict[str, float]:
    """mIoU@1/3/5 (percent) and NoC@80/85/90 over a set of per-target curves."""
    out: dict[str, float] = {}
    if not curves:
        return out
    for k in MIOU_AT:
        out[f"miou@{k}"] = 100.0 * float(np.mean([iou_at(c, k) for c in curves]))
    for t in NOC_AT:
        out[f"noc@{t}"] = float(np.mean([noc(c, t, cap) for c in curves]))
    return out


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Mean IoU (percent) after each click, over targets."""
    if not curves:
        return []
    n = max(len(c) for c in curves)
    return [100.0 * float(np.mean([iou_at(c, k) for c in curves])) for k in range(1, n + 1)]
