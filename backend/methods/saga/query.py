"""A SAGA click query: gated cosine similarity of every element to the clicked ones at one scale.

Positive clicks combine by their maximum (an element belongs when it is like any clicked element, as in
SAGA); an element at least as like a negative click as like every positive one is removed (a tie goes to
the removal: the same element clicked both ways ends unselected). Scores are the
similarity clipped to [0, 1] and the threshold is 0.5, halfway between the training targets (cosine 1 for
the same part, at most 0 for another).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from segany.kernels.similarity import scale_gated_similarity

from ...errors import SegAnyError
from ...options import shown
from ..base import State
from .features import gate_for

THRESHOLD = 0.5
AUTO_SCALES = 16  # candidate scales "auto" tries, log-spaced over the trained range
STABILITY_DELTA = 0.2  # how far either side of the threshold "auto" checks a selection's certainty


def checked_scale(value: Any) -> float | None:
    """The query's `scale` as a number of scene units, None for "auto"; anything else is a bad_request."""
    if isinstance(value, str) and value == "auto":
        return None
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if number and math.isfinite(float(value)) and float(value) > 0:
        return float(value)
    raise SegAnyError(
        "bad_request", f"saga query key 'scale' must be a number > 0 in scene units or \"auto\", got {shown(value)}"
    )


def scores_at(state: State, elements: np.ndarray, positive: np.ndarray, scale: float) -> np.ndarray:
    """(N,) float32 scores of every element for these clicks at `scale`."""
    features = state.tensors["features"]
    gate = torch.from_numpy(gate_for(state, scale))
    n = features.shape[0]
    best_pos = torch.full((n,), -1.0)
    best_neg = torch.full((n,), -1.0)
    for e, p in zip(elements.tolist(), positive.tolist(), strict=True):
        sim = scale_gated_similarity(features, features[e], gate)
        if p:
            best_pos = torch.maximum(best_pos, sim)
        else:
            best_neg = torch.maximum(best_neg, sim)
    scores = best_pos.clamp(0.0, 1.0)
    return torch.where(best_neg >= best_pos, torch.zeros_like(scores), scores).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def auto_scale(state: State, elements: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """The scale whose answer is most stable, and its scores. A first version, not yet compared with a
    fixed default on the eval.

    AUTO_SCALES log-spaced candidates over the trained scale range. A candidate's stability is the product
    of two IoUs: its selection against its neighbouring candidates' (mean of the two, one at either end),
    and its selection at threshold 0.5 + STABILITY_DELTA against the one at 0.5 - STABILITY_DELTA (SAM's
    stability score). The first alone prefers the finest scales, where a handful of elements around the
    click is selected at every scale the features cannot tell apart; the second marks such an answer as
    unsure, since most of what it touches scores near the threshold. The most stable candidate wins (the
    smaller scale on a tie).
    """
    lo, hi = state.meta["scale_range"]
    candidates = np.geomspace(lo, hi, AUTO_SCALES)
    scores = [scores_at(state, elements, positive, float(s)) for s in candidates]
    masks = [s >= THRESHOLD for s in scores]
    stability = []
    for i, s in enumerate(scores):
        near = float(np.mean([_iou(masks[i], masks[j]) for j in (i - 1, i + 1) if 0 <= j < len(masks)]))
        sure = _iou(s >= THRESHOLD + STABILITY_DELTA, s >= THRESHOLD - STABILITY_DELTA)
        stability.append(near * sure)
    best = int(np.argmax(stability))
    return float(candidates[best]), scores[best]


def click_scores(
    state: State, elements: np.ndarray, positive: np.ndarray, scale: float | None
) -> tuple[float, np.ndarray]:
    """The scale used and the scores. A click on an element no view showed answers like a click on its
    nearest shown element, whose feature it carries (`fill_hidden`): scripts click by index, and a picker
    may hit a Gaussian hidden inside a part; the part around it is the likely intent."""
    if scale is None:
        return auto_scale(state, elements, positive)
    return scale, scores_at(state, elements, positive, scale)
