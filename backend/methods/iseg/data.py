"""Training data for iSeg, read off the raster's id and barycentric buffers (no per-pixel Python loops).

- `PixelCorners`: for every covered pixel, the three vertices of its triangle and their barycentric
  weights, so any per-vertex quantity (features, probabilities) renders into the view as a weighted sum
  — differentiable, and only over the vertices a batch actually touches.
- `VisibleVertices`: which vertex shows in which view, and at which pixel (where its weight is largest,
  away from the silhouette), for placing clicks.
- `make_samples`: iSeg's decoder data: a first positive click on a farthest-point-sampled vertex in
  views that see it, the prior's mask for it, then second positive / negative clicks on other sampled
  vertices outside / inside that mask, kept only when they grow / shrink the mask. Beyond iSeg:
  corrective clicks along the mask's edge and three-click samples (see `make_samples`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion, distance_transform_edt

from ...jobs import JobContext
from ...priors import Prior, PromptResult
from ...render import Views
from .options import ISegOptions

KINDS = ("single", "second_positive", "second_negative", "boundary_positive", "boundary_negative", "third_negative")
SINGLE, SECOND_POSITIVE, SECOND_NEGATIVE, BOUNDARY_POSITIVE, BOUNDARY_NEGATIVE, THIRD_NEGATIVE = range(len(KINDS))
MAX_CLICKS = 3
BOUNDARY_BAND = 3.0  # pixels: how close to the mask's edge a boundary click lands


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
    """Decoder training samples: up to MAX_CLICKS clicks each (padded), and the prior's mask in one view."""

    view: np.ndarray  # (n,) int64
    clicks: np.ndarray  # (n, MAX_CLICKS) int64 vertex ids (padding repeats the first click)
    positive: np.ndarray  # (n, MAX_CLICKS) bool
    valid: np.ndarray  # (n, MAX_CLICKS) bool
    kind: np.ndarray  # (n,) index into KINDS
    masks: np.ndarray  # (n, H, W) bool

    def __len__(self) -> int:
        return len(self.view)

    def counts(self) -> dict[str, int]:
        return {name: int((self.kind == k).sum()) for k, name in enumerate(KINDS)}


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


def _keeps(mask: np.ndarray, first: np.ndarray, min_pixels: int) -> bool:
    """A two- or three-click answer must keep most of the first click's own mask.

    A prior may answer a negative click by removing nearly everything (the geometric prior removes the
    largest region around the negative point that holds no positive point, which can swallow the rest
    of the object); trained on such answers the decoder learns that any negative click empties the
    selection, and no later positive click brings it back.
    """
    return mask.sum() >= min_pixels and (mask & first).sum() >= 0.5 * first.sum()


@dataclass
class _View:
    """What the sample generator knows about one (click vertex, view) pair."""

    prior: Prior
    views: Views
    index: int
    how: str

    def ask(self, clicks: list[tuple[int, int, int]], prev: np.ndarray | None) -> np.ndarray:
        """The prior's mask for clicks (x, y, sign) in this view; clicked pixels forced to their sign."""
        points = np.array([[x + 0.5, y + 0.5] for x, y, _ in clicks], np.float32)
        labels = np.array([1 if sign > 0 else 0 for _, _, sign in clicks])
        answer = self.prior.prompt(self.views, self.index, points, labels, prev=prev)
        mask, _ = _candidate(answer, choose_mask(answer, self.how))
        for x, y, sign in clicks:
            mask[y, x] = sign > 0
        return mask


def _edge_vertices(visible: VisibleVertices, b: int, mask: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Visible vertices of view b within BOUNDARY_BAND pixels inside / outside the mask's edge."""
    v = visible.n_vertices
    lo, hi = np.searchsorted(visible.keys, [b * v, (b + 1) * v])
    verts, xs, ys = visible.keys[lo:hi] - b * v, visible.x[lo:hi], visible.y[lo:hi]
    depth_in = distance_transform_edt(mask)[ys, xs]
    depth_out = distance_transform_edt(~mask)[ys, xs]
    inner = (depth_in >= 1) & (depth_in <= BOUNDARY_BAND)
    outer = (depth_out >= 1) & (depth_out <= BOUNDARY_BAND) & fg[ys, xs]
    return verts, xs, ys, inner, outer


def _pick(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    chosen = np.flatnonzero(pool)
    return rng.choice(chosen, n, replace=False) if len(chosen) > n else chosen


def make_samples(
    prior: Prior,
    views: Views,
    visible: VisibleVertices,
    positions: np.ndarray,
    click_vertices: np.ndarray,
    opts: ISegOptions,
    rng: np.random.Generator,
    ctx: JobContext,
) -> Samples:
    """iSeg's data generation with the prior as the 2D model, plus edge and three-click samples.

    iSeg: first click on a sampled vertex; second positive clicks on sampled vertices outside the mask
    and negative ones inside it, within half the largest distance, kept when they grow / shrink the
    mask by more than 10% IoU (and, beyond iSeg, keep at least half of the first mask: `_keeps`).
    A part-level prior cannot go finer than the part, so negative clicks
    start from the next larger candidate (part + neighbour) and take the neighbour back out.

    Added: corrective clicks land in thin error bands along a part's edge (in interactive use and in
    the evaluation protocol), where features blend into the neighbour's. Edge samples put a second click
    just inside (positive) or just outside (negative) the mask, target = the prior's answer (usually the
    mask unchanged); three-click samples add, after an inside-edge positive, a negative click on the
    neighbour, so the decoder learns that a negative click overrides a positive click's spill-over.
    """
    n_views = len(views)
    per_click, n_second, min_pixels = opts.views_per_click, opts.second_clicks, opts.min_mask_pixels
    rows: list[tuple[int, list[tuple[int, int]], int]] = []  # view, [(vertex, sign)], kind
    masks: list[np.ndarray] = []

    def add(b: int, clicks: list[tuple[int, int]], kind: int, mask: np.ndarray) -> None:
        rows.append((b, clicks, kind))
        masks.append(mask)

    for ci, c in enumerate(click_vertices):
        ctx.progress(ci / max(len(click_vertices), 1), f"decoder data: click vertex {ci + 1}/{len(click_vertices)}")
        c = int(c)
        seen = visible.views_of(c, n_views)
        if len(seen) > per_click:
            seen = rng.choice(seen, per_click, replace=False)
        for b in seen:
            b = int(b)
            at = visible.find(b, np.array([c]))[0]
            px, py = int(visible.x[at]), int(visible.y[at])
            view = _View(prior, views, b, opts.mask)
            answer = prior.prompt(views, b, np.array([[px + 0.5, py + 0.5]], np.float32), np.array([1]))
            pick = choose_mask(answer, opts.mask)
            first, logits = _candidate(answer, pick)
            first[py, px] = True
            if first.sum() < min_pixels:
                continue
            add(b, [(c, 1)], SINGLE, first)
            if n_second <= 0:
                continue
            larger, larger_logits = _candidate(answer, min(pick + 1, len(answer.masks) - 1))
            larger |= first

            others = click_vertices[click_vertices != c]
            found = visible.find(b, others)
            others, found = others[found >= 0], found[found >= 0]
            ox, oy = visible.x[found], visible.y[found]
            d2 = ((positions[others] - positions[c]) ** 2).sum(axis=1)
            near = d2 < 0.5 * d2.max() if len(d2) else np.zeros(0, bool)
            inside = first[oy, ox]
            in_larger = larger[oy, ox] & ~inside
            if in_larger.any():
                neg_pool, neg_base, neg_prev = in_larger, larger, larger_logits
            else:
                neg_pool, neg_base, neg_prev = inside, first, logits
            for sign, kind, pool, base, prev in (
                (1, SECOND_POSITIVE, ~inside & near, first, logits),
                (-1, SECOND_NEGATIVE, neg_pool & near, neg_base, neg_prev),
            ):
                for j in _pick(pool, n_second, rng):
                    second = view.ask([(px, py, 1), (int(ox[j]), int(oy[j]), sign)], prev)
                    changed = second.sum() > base.sum() if sign > 0 else second.sum() < base.sum()
                    if changed and _iou(base, second) < 0.9 and _keeps(second, first, min_pixels):
                        add(b, [(c, 1), (int(others[j]), sign)], kind, second)

            verts, ex, ey, inner, outer = _edge_vertices(visible, b, first, views.ids[b] >= 0)
            neighbours = _pick(in_larger, n_second, rng)
            for sign, kind, pool in ((1, BOUNDARY_POSITIVE, inner & (verts != c)), (-1, BOUNDARY_NEGATIVE, outer)):
                for j in _pick(pool, n_second, rng):
                    edge = (int(ex[j]), int(ey[j]), sign)
                    second = view.ask([(px, py, 1), edge], logits)
                    if _iou(second, first) >= 0.5:
                        add(b, [(c, 1), (int(verts[j]), sign)], kind, second)
                    if sign > 0 and len(neighbours):
                        k = int(rng.choice(neighbours))
                        third = view.ask([(px, py, 1), edge, (int(ox[k]), int(oy[k]), -1)], logits)
                        if _keeps(third, first, min_pixels):
                            add(b, [(c, 1), (int(verts[j]), 1), (int(others[k]), -1)], THIRD_NEGATIVE, third)
    return _pack(rows, masks, views)


def _pack(rows: list[tuple[int, list[tuple[int, int]], int]], masks: list[np.ndarray], views: Views) -> Samples:
    n = len(rows)
    clicks = np.zeros((n, MAX_CLICKS), np.int64)
    positive = np.ones((n, MAX_CLICKS), bool)
    valid = np.zeros((n, MAX_CLICKS), bool)
    for i, (_, cl, _) in enumerate(rows):
        clicks[i] = cl[0][0]
        for j, (vertex, sign) in enumerate(cl):
            clicks[i, j], positive[i, j], valid[i, j] = vertex, sign > 0, True
    shape = (n, views.cameras.height, views.cameras.width)
    return Samples(
        view=np.array([r[0] for r in rows], np.int64),
        clicks=clicks,
        positive=positive,
        valid=valid,
        kind=np.array([r[2] for r in rows], np.int64),
        masks=np.stack(masks) if masks else np.zeros(shape, bool),
    )
