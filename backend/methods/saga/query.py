"""A SAGA click query's similarity answer: gated cosine similarity of every element to the clicked ones at one
scale (what a click at a number answers; refine.py snaps it to the scene's creases for "auto" and later clicks).

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

from segany.kernels.similarity import click_similarity

from ...errors import SegAnyError
from ...options import shown
from ..base import State
from .features import gate_for

THRESHOLD = 0.5
# Training's final loss below which the features fitted their prior's masks (fitted: the 24 generated splat
# states of session 11, oracle 0.036-0.154, geometric 0.210-0.266; geometric meshes and points 0.128-0.255).
FIT_LOSS = 0.18


def checked_scale(value: Any) -> float | None:
    """The query's `scale` as a number of scene units, None for "auto"; anything else is a bad_request
    (the click query takes "reference" too, which `SAGA.query` turns into a number first)."""
    if isinstance(value, str) and value == "auto":
        return None
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if number and math.isfinite(float(value)) and float(value) > 0:
        return float(value)
    raise SegAnyError(
        "bad_request",
        f'saga query key \'scale\' must be a number > 0 in scene units, "auto" or "reference", got {shown(value)}',
    )


def scores_at(state: State, elements: np.ndarray, positive: np.ndarray, scale: float) -> np.ndarray:
    """(N,) float32 scores of every element for these clicks at `scale` (the rule in the module docstring,
    formed by the fused kernel in one read of the features per few clicks)."""
    features = state.tensors["features"]
    gate = torch.from_numpy(gate_for(state, scale))
    queries = features[torch.from_numpy(np.asarray(elements, np.int64))].float()
    return click_similarity(features, queries, torch.from_numpy(np.asarray(positive, bool)), gate).numpy()


def similarity(state: State, clicks: list[tuple[int, int]], scale: float) -> np.ndarray:
    """`scores_at` for (element, ±1) clicks: the similarity answer the crease refinement is guided by."""
    elements = np.array([e for e, _ in clicks], np.int64)
    return scores_at(state, elements, np.array([s > 0 for _, s in clicks]), scale)


def prior_scale(state: State, elements: np.ndarray) -> float:
    """The size the prior saw the parts around these elements as: the geometric mean, over the elements and
    the prior's granularity levels, of the scales of the masks that held them (`element_scales`); the
    state's scale reference (the median of all masks) where the prior said nothing about them."""
    scales = state.tensors["element_scales"][torch.from_numpy(elements)].numpy().astype(np.float64)
    known = np.isfinite(scales) & (scales > 0)
    if not known.any():
        return reference_scale(state)
    return float(np.exp(np.log(scales[known]).mean()))


def auto_scale(state: State, elements: np.ndarray, positive: np.ndarray) -> float:
    """The scale for "auto": the prior's scale around the first positive click (`prior_scale`), kept for
    every later click; the state's reference before any positive click.

    The median of all masks (the state's reference) is one size for the whole scene; the masks around the
    click say how large a part is there (a leg's masks are smaller than a seat's). Later clicks keep that
    scale: moving it with later clicks changes the whole answer and undid what earlier clicks had fixed
    (re-deriving it from every positive click, or shrinking it until the positive clicks alone left out
    every negative one, both lowered mIoU@5: docs/journal.md, session 9).
    """
    pos = elements[positive]
    return prior_scale(state, pos[:1]) if len(pos) else reference_scale(state)


def fits_its_prior(state: State) -> bool:
    """Whether the features fitted their prior's masks: the last tenth of training's mean loss at most
    `FIT_LOSS`. Where they did, an answer is right nearly everywhere and a later click should change only
    what it asked for (refine.py)."""
    return float(state.meta["losses"]["loss_last"]) <= FIT_LOSS


def coarser_scales(state: State, element: int, scale: float) -> list[float]:
    """The scales above `scale` that the prior saw a part around `element` at (one per granularity level,
    `element_scales`), smallest first: where a first "auto" click on a mesh may climb to when the features'
    answer at `scale` follows no crease (refine.py)."""
    scales = state.tensors["element_scales"][int(element)].numpy().astype(np.float64)
    return sorted(float(s) for s in scales[np.isfinite(scales) & (scales > scale)])


def reference_scale(state: State) -> float:
    """The state's scale reference, the median scale of every mask of the prepare: one size for the whole
    scene (`"scale": "reference"`, the fixed default `"auto"` is measured against)."""
    return float(state.meta["scale_reference"])


def click_scale(state: State, elements: np.ndarray, positive: np.ndarray, scale: float | None) -> float:
    """The scale a query uses: its own, or "auto"'s (None)."""
    return auto_scale(state, elements, positive) if scale is None else scale


def click_scores(state: State, elements: np.ndarray, positive: np.ndarray, scale: float) -> np.ndarray:
    """The similarity answer alone (the rule in the module docstring); nothing without a positive click. A
    click on an element no view showed answers like a click on its nearest shown element, whose feature it
    carries (`fill_hidden`): scripts click by index, and a picker may hit a Gaussian hidden inside a part;
    the part around it is the likely intent."""
    if not positive.any():
        return np.zeros(state.tensors["features"].shape[0], dtype=np.float32)
    return scores_at(state, elements, positive, scale)
