"""SAGA's correspondence distillation on the captured pixels: per-element features and the scale gate.

Each step takes one view (mask ids mean something only within their view), samples pixels and scales,
renders the pixel features through the frozen contributor map (Σ_k w_k · f[id_k]) and compares every
pair under the gate of each scale. At scale s a pixel's part is the largest of its masks no larger than s
(masks larger than s are ignored); two pixels correspond when that part is the same mask. Corresponding
pairs are pulled to cosine 1, the others pushed to at most 0. The two terms are averaged separately, so
the many non-corresponding pairs do not drown the few corresponding ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from segany.kernels.knn import knn

from ...errors import SegAnyError
from .features import ScaleGate
from .options import SAGAOptions
from .pixels import Pixels

SCALE_MARGIN = 1.5  # scales are sampled a little past the smallest and largest mask, so both ends are trained
REPORT_EVERY = 25  # steps between progress reports (each may raise `cancelled`)


def scale_range(scales: np.ndarray) -> tuple[float, float]:
    """The scales training covers (and "auto" searches): the masks' extent, widened by SCALE_MARGIN."""
    return float(scales.min()) / SCALE_MARGIN, float(scales.max()) * SCALE_MARGIN


def parts_at(mask_ids: torch.Tensor, mask_scales: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(S, P) each pixel's part at each scale: the id of its largest mask no larger than the scale, -1 none."""
    fits = mask_scales[None] <= scales[:, None, None]  # (S, P, L)
    key = torch.where(fits, mask_scales[None], torch.tensor(-1.0))
    pick = key.argmax(dim=-1, keepdim=True)  # (S, P, 1)
    ids = torch.gather(mask_ids[None].expand(len(scales), -1, -1), 2, pick)[..., 0]
    return torch.where(fits.any(-1), ids, torch.tensor(-1))


def correspondence_loss(features: torch.Tensor, gates: torch.Tensor, parts: torch.Tensor) -> torch.Tensor | None:
    """Pixel features (P, D), gates (S, D), parts (S, P) → the pull / push loss over all pixel pairs; None
    when no pair has a part to judge by. Masks multiply instead of indexing: boolean indexing of the
    (S, P, P) similarities took half of a step's time."""
    h = torch.nn.functional.normalize(features[None] * gates[:, None], dim=-1)  # (S, P, D)
    sim = h @ h.transpose(1, 2)  # (S, P, P)
    a, b = parts[:, :, None], parts[:, None, :]
    equal = a == b
    same = equal & (a >= 0)
    same.diagonal(dim1=1, dim2=2).fill_(False)
    differ = ~equal & ((a >= 0) | (b >= 0))
    n_same, n_differ = int(same.sum()), int(differ.sum())
    if n_same + n_differ == 0:
        return None
    pull = ((1.0 - sim) * same).sum() / max(n_same, 1)
    push = (torch.relu(sim) * differ).sum() / max(n_differ, 1)
    return pull + push


def neighbours(positions: np.ndarray, k: int) -> torch.Tensor:
    """(N, k) int64: every element's k nearest elements by position, itself first (k clipped to N)."""
    k = min(k, len(positions))
    pts = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float32))
    return knn(pts, pts, k)[1].to(torch.int64)


def smoothed(features: torch.Tensor, near: torch.Tensor) -> torch.Tensor:
    """SAGA's KNN smoothing: the mean of the unit features of the neighbours `near` (..., k) holds, one mean
    per row. Unit features make every neighbour count alike; the mean ties an element seen in few pixels to
    the part around it and lets a hidden element learn from the pixels of its neighbours. Only the gathered
    rows are normalised, not all N features."""
    return torch.nn.functional.normalize(features[near], dim=-1).mean(dim=-2)


def smooth_all(features: torch.Tensor, near: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """`smoothed` over every element with all its neighbours, in chunks (the (N, k, D) gather of a
    million elements would take gigabytes)."""
    with torch.no_grad():
        return torch.cat([smoothed(features, near[i : i + chunk]) for i in range(0, len(near), chunk)])


def train(
    pixels: Pixels,
    positions: np.ndarray,
    n_elements: int,
    options: SAGAOptions,
    progress: Callable[[float, str], None],
) -> tuple[torch.Tensor, ScaleGate, dict[str, float]]:
    """Trained features (N, D) float32 (KNN-smoothed, see `smoothed`) and gate, plus the mean loss of the
    first and the last tenth of steps."""
    gen = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    lo, hi = scale_range(pixels.scales)
    reference = float(np.median(pixels.scales))
    near = neighbours(positions, options.smooth_k)
    keep = max(1, near.shape[1] // 2)  # SAGA averages a random half of the neighbours each step (a dropout)
    features = torch.nn.Parameter(torch.randn(n_elements, options.dim, generator=gen) * 0.1)
    torch.manual_seed(options.seed)  # the gate's initial weights
    gate = ScaleGate(options.dim, reference)
    # fused: one pass over the (N, D) features per step instead of one per Adam op (the step's other half)
    opt = torch.optim.Adam([features, *gate.parameters()], lr=options.lr, fused=True)
    ids = torch.from_numpy(pixels.ids)
    weights = torch.from_numpy(pixels.weights)
    mask_ids = torch.from_numpy(pixels.mask_ids)
    mask_scales = torch.from_numpy(pixels.mask_scales)
    sizes = np.diff(pixels.starts)
    view_p = sizes / sizes.sum()
    losses: list[float] = []
    for step in range(options.steps):
        if step % REPORT_EVERY == 0:
            progress(step / options.steps, f"training step {step + 1} of {options.steps}")
        v = int(rng.choice(len(sizes), p=view_p))
        take = min(options.pixels, int(sizes[v]))
        pix = torch.from_numpy(pixels.starts[v] + rng.choice(int(sizes[v]), size=take, replace=False))
        scales = torch.from_numpy(np.exp(rng.uniform(np.log(lo), np.log(hi), options.scales_per_step)))
        half = torch.from_numpy(rng.choice(near.shape[1], size=keep, replace=False))
        # each touched element smoothed once: neighbouring pixels share most contributors (and padding)
        touched, where = torch.unique(ids[pix], return_inverse=True)
        pixel_f = (weights[pix, :, None] * smoothed(features, near[touched][:, half])[where]).sum(1)
        loss = correspondence_loss(pixel_f, gate(scales), parts_at(mask_ids[pix], mask_scales[pix], scales))
        if loss is None:  # no pixel had a part at any of the scales: nothing to learn from this step
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if not losses:
        raise SegAnyError(
            "unsupported", "no sampled pixel lay in any of the prior's masks, so nothing was learnt; render more views"
        )
    tenth = max(1, len(losses) // 10)
    return (
        smooth_all(features.detach(), near),
        gate,
        {"loss_first": float(np.mean(losses[:tenth])), "loss_last": float(np.mean(losses[-tenth:]))},
    )


def seen_elements(pixels: Pixels, n_elements: int) -> np.ndarray:
    """(N,) bool: the elements that are the strongest contributor of some trained pixel (what a view shows
    there, as `Views.ids` says). An element only ever blended in faintly gets too little gradient for its
    feature to mean anything, so it counts as hidden too."""
    seen = np.zeros(n_elements, dtype=bool)
    seen[pixels.ids[:, 0][pixels.weights[:, 0] > 0]] = True
    return seen


def element_scales(pixels: Pixels, n_elements: int) -> torch.Tensor:
    """(N, L) float32: per prior level, the geometric mean scale of the masks that held an element's pixels
    (those it is the strongest contributor of); NaN where no such mask exists. It is the size the prior
    saw a part around that element as, at each granularity, which `"auto"` starts from."""
    owner = pixels.ids[:, 0]
    levels = pixels.mask_scales.shape[1]
    out = np.full((n_elements, levels), np.nan, dtype=np.float32)
    for lvl in range(levels):
        scale = pixels.mask_scales[:, lvl]
        ok = np.isfinite(scale) & (scale > 0) & (pixels.weights[:, 0] > 0)
        count = np.bincount(owner[ok], minlength=n_elements)
        logs = np.bincount(owner[ok], weights=np.log(scale[ok]), minlength=n_elements)
        has = count > 0
        out[has, lvl] = np.exp(logs[has] / count[has])
    return torch.from_numpy(out)


def fill_hidden(features: torch.Tensor, seen: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """Each element no view shows takes the feature of its nearest seen element: a hidden element (inside
    a blob, in a crease) most likely belongs to the part around it, and clustering and similarity then
    treat it like that part instead of like noise."""
    hidden = np.flatnonzero(~seen)
    if len(hidden) == 0 or not seen.any():
        return features
    shown_idx = np.flatnonzero(seen)
    _, nearest = knn(torch.from_numpy(positions[shown_idx]), torch.from_numpy(positions[hidden]), 1)
    out = features.clone()
    out[torch.from_numpy(hidden)] = features[torch.from_numpy(shown_idx[nearest[:, 0].numpy()])]
    return out
