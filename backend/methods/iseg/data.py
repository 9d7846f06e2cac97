"""Training data for iSeg, read off the raster's id and barycentric buffers (no per-pixel Python loops).

- `PixelCorners`: for every covered pixel, the three vertices of its triangle and their barycentric
  weights, so any per-vertex quantity (features, probabilities) renders into the view as a weighted sum
  — differentiable, and only over the vertices a batch actually touches.
- `VisibleVertices`: which vertex shows in which view, and at which pixel (where its weight is largest,
  away from the silhouette), for placing clicks.
- `make_samples`: iSeg's decoder data: a first positive click on a farthest-point-sampled vertex in
  views that see it, the prior's mask for it, then second positive / negative clicks on other sampled
  vertices outside / inside that mask, kept only when they grow / shrink the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_erosion

from ...jobs import JobContext
from ...priors import Prior, PromptResult, Views

SINGLE, SECOND_POSITIVE, SECOND_NEGATIVE = 0, 1, 2


@dataclass
class PixelCorners:
    """Covered pixels of B views, view after view: `offsets[b]:offsets[b+1]` are view b's rows."""

    offsets: torch.Tensor  # (B + 1,) long
    pixel: torch.Tensor  # (N,) long, y * W + x within its view
    vertices: torch.Tensor  # (N, 3) long
    weights: torch.Tensor  # (N, 3) float32

    @property
    def view(self) -> torch.Tensor:
        """The view of each row, (N,)."""
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(counts)), counts)


def pixel_corners(tri_ids: torch.Tensor, bary: torch.Tensor, faces: torch.Tensor) -> PixelCorners:
    """From a raster's (B, H, W) triangle ids and (B, H, W, 3) barycentrics."""
    b, h, w = tri_ids.shape
    flat = tri_ids.reshape(b, h * w)
    view, pixel = torch.nonzero(flat >= 0, as_tuple=True)
    tri = flat[view, pixel]
    counts = torch.bincount(view, minlength=b)
    offsets = torch.zeros(b + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    weights = bary.reshape(b, h * w, 3)[view, pixel].float()
    return PixelCorners(offsets, pixel, faces[tri], weights)


def render(values: torch.Tensor, corners: PixelCorners, rows: torch.Tensor) -> torch.Tensor:
    """Per-vertex values (V, C) interpolated at corner rows (...,) → (..., C); differentiable."""
    v = values[corners.vertices[rows]]
    return (v * corners.weights[rows].unsqueeze(-1)).sum(dim=-2)


@dataclass
class VisibleVertices:
    """Sorted keys view * V + vertex of visible vertices, with the pixel that shows each best."""

    n_vertices: int
    keys: np.ndarray  # (K,) int64, ascending
    x: np.ndarray  # (K,) int64
    y: np.ndarray  # (K,) int64

    def find(self, view: int, vertices: np.ndarray) -> np.ndarray:
        """Row into keys/x/y for each vertex in `view`, -1 where it is not visible."""
        q = view * self.n_vertices + np.asarray(vertices, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return np.where(self.keys[i] == q, i, -1) if len(self.keys) else np.full(q.shape, -1)

    def views_of(self, vertex: int, n_views: int) -> np.ndarray:
        """Views in which `vertex` is visible."""
        q = np.arange(n_views, dtype=np.int64) * self.n_vertices + vertex
        i = np.minimum(np.searchsorted(self.keys, q), max(len(self.keys) - 1, 0))
        return np.flatnonzero(self.keys[i] == q) if len(self.keys) else np.zeros(0, dtype=np.int64)


def visible_vertices(tri_ids: np.ndarray, bary: np.ndarray, faces: np.ndarray, n_vertices: int) -> VisibleVertices:
    """A vertex shows in a view where a triangle of it covers a pixel inside the silhouette; its pixel is
    the one where its barycentric weight is largest (a dense mesh has several vertices per pixel, so
    asking for the dominant corner alone would hide most of a thin part)."""
    fg = tri_ids >= 0
    interior = binary_erosion(fg, structure=np.ones((1, 3, 3), dtype=bool))
    b, y, x = np.nonzero(interior)
    vert = faces[tri_ids[b, y, x]].reshape(-1)
    weight = bary[b, y, x].reshape(-1)
    key = np.repeat(b.astype(np.int64), 3) * n_vertices + vert
    order = np.lexsort((weight, key))
    key_sorted = key[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = key_sorted[1:] != key_sorted[:-1]
    best = order[last]
    pix = best // 3
    return VisibleVertices(n_vertices, key[best], x[pix].astype(np.int64), y[pix].astype(np.int64))


@dataclass
class Samples:
    """Decoder training samples: up to two clicks each, and the prior's mask in one view."""

    view: np.ndarray  # (n,) int64
    clicks: np.ndarray  # (n, 2) int64 vertex ids
    positive: np.ndarray  # (n, 2) bool
    valid: np.ndarray  # (n, 2) bool (single-click samples use one slot)
    kind: np.ndarray  # (n,) SINGLE / SECOND_POSITIVE / SECOND_NEGATIVE
    masks: np.ndarray  # (n, H, W) bool

    def __len__(self) -> int:
        return len(self.view)

    def counts(self) -> dict[str, int]:
        names = ("single", "second_positive", "second_negative")
        return {n: int((self.kind == k).sum()) for k, n in enumerate(names)}


def choose_mask(result: PromptResult, how: str) -> int:
    """Index of one of the prior's candidates: the smallest non-empty (iSeg's choice) or the best-scored."""
    if how == "best":
        return int(np.argmax(result.scores))
    filled = np.flatnonzero(np.asarray(result.masks).reshape(len(result.masks), -1).any(axis=1))
    return int(filled[0]) if len(filled) else 0


def _candidate(result: PromptResult, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Candidate i as (mask copy, logits to feed back as `prev`)."""
    logits = None if result.logits is None else result.logits[i : i + 1]
    return np.asarray(result.masks[i], dtype=bool).copy(), logits


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def make_samples(
    prior: Prior,
    views: Views,
    visible: VisibleVertices,
    positions: np.ndarray,
    click_vertices: np.ndarray,
    opts: dict[str, Any],
    rng: np.random.Generator,
    ctx: JobContext,
) -> Samples:
    """iSeg's data generation, with the prior as the 2D model (see the module docstring)."""
    n_views = len(views)
    how, per_click, n_second = opts["mask"], int(opts["views_per_click"]), int(opts["second_clicks"])
    min_pixels = int(opts["min_mask_pixels"])
    rows: list[tuple[int, int, int, int, int]] = []  # view, first, second (-1), second positive, kind
    masks: list[np.ndarray] = []
    for ci, c in enumerate(click_vertices):
        ctx.progress(ci / max(len(click_vertices), 1), f"decoder data: click vertex {ci + 1}/{len(click_vertices)}")
        seen = visible.views_of(int(c), n_views)
        if len(seen) > per_click:
            seen = rng.choice(seen, per_click, replace=False)
        for b in seen:
            b = int(b)
            at = visible.find(b, np.array([c]))[0]
            px, py = int(visible.x[at]), int(visible.y[at])
            answer = prior.prompt(views, b, np.array([[px + 0.5, py + 0.5]], np.float32), np.array([1]))
            pick = choose_mask(answer, how)
            first, logits = _candidate(answer, pick)
            first[py, px] = True
            if first.sum() < min_pixels:
                continue
            rows.append((b, int(c), -1, 1, SINGLE))
            masks.append(first)
            if n_second <= 0:
                continue
            # Negative clicks start from the next larger candidate: a part-level prior cannot go finer
            # than the part, so "click A, un-click its neighbour B" is how it teaches removal.
            larger, larger_logits = _candidate(answer, min(pick + 1, len(answer.masks) - 1))
            larger |= first
            others = click_vertices[click_vertices != c]
            found = visible.find(b, others)
            others, found = others[found >= 0], found[found >= 0]
            if not len(others):
                continue
            ox, oy = visible.x[found], visible.y[found]
            d2 = ((positions[others] - positions[c]) ** 2).sum(axis=1)
            near = d2 < 0.5 * d2.max()
            inside = first[oy, ox]
            in_larger = larger[oy, ox] & ~inside
            neg_pool, neg_base, neg_prev = (
                (in_larger, larger, larger_logits) if in_larger.any() else (inside, first, logits)
            )
            for sign, kind, pool, base, prev in (
                (1, SECOND_POSITIVE, ~inside & near, first, logits),
                (0, SECOND_NEGATIVE, neg_pool & near, neg_base, neg_prev),
            ):
                chosen = np.flatnonzero(pool)
                if len(chosen) > n_second:
                    chosen = rng.choice(chosen, n_second, replace=False)
                for j in chosen:
                    sx, sy = int(ox[j]), int(oy[j])
                    points = np.array([[px + 0.5, py + 0.5], [sx + 0.5, sy + 0.5]], np.float32)
                    again = prior.prompt(views, b, points, np.array([1, sign]), prev=prev)
                    second, _ = _candidate(again, choose_mask(again, how))
                    second[py, px] = True
                    second[sy, sx] = bool(sign)
                    changed = second.sum() > base.sum() if sign else second.sum() < base.sum()
                    if changed and _iou(base, second) < 0.9 and second.sum() >= min_pixels:
                        rows.append((b, int(c), int(others[j]), sign, kind))
                        masks.append(second)
    if not rows:
        h, w = views.cameras.height, views.cameras.width
        return Samples(
            np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros((0, 2), bool), np.zeros((0, 2), bool),
            np.zeros(0, np.int64), np.zeros((0, h, w), bool),
        )  # fmt: skip
    arr = np.asarray(rows, dtype=np.int64)
    second = arr[:, 2]
    return Samples(
        view=arr[:, 0],
        clicks=np.stack([arr[:, 1], np.where(second >= 0, second, arr[:, 1])], axis=1),
        positive=np.stack([np.ones(len(arr), bool), arr[:, 3] > 0], axis=1),
        valid=np.stack([np.ones(len(arr), bool), second >= 0], axis=1),
        kind=arr[:, 4],
        masks=np.stack(masks),
    )
