"""What SAGA trains on, captured once: each foreground pixel's contributors (a frozen sparse linear map from
element features to the pixel's feature) and, per granularity level, the prior's mask holding it with that
mask's physical scale.

The geometry does not change while the features train, so the render stage runs once (top-k contributors
and weights) and training never rasterises again. For meshes the contributors are the covering triangle's
three vertices with barycentric weights, for splats and points the blended Gaussians: one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...cameras import cameras_for_scene
from ...errors import SegAnyError
from ...priors import Prior
from ...render import Renders, render
from ...scene import Scene

COVERED = 0.5  # a pixel trains when the scene covers at least half of it (its blend is mostly elements)
# Elements × views one render call projects: the rasterizer's scratch grows with both (per-Gaussian
# projections of every view in the call), so a large scene renders fewer views per call.
ELEMENT_VIEWS = 2_000_000


@dataclass
class Pixels:
    """Foreground pixels of every view, grouped by view (`starts[v]:starts[v+1]`)."""

    ids: np.ndarray  # (P, K) int64 contributing elements; padding points at element 0 with weight 0
    weights: np.ndarray  # (P, K) float32 blend weights
    mask_ids: np.ndarray  # (P, L) int64 the level's mask holding the pixel, unique over views; -1 none
    mask_scales: np.ndarray  # (P, L) float32 that mask's scale in scene units; inf none
    starts: np.ndarray  # (V + 1,) int64
    scales: np.ndarray  # (M,) float32 every mask's scale


def mask_scale(depth: np.ndarray, mask: np.ndarray, k: np.ndarray) -> float:
    """A mask's physical size: 2·sqrt(σx² + σy² + σz²) of its back-projected pixels (SAGA's rule as we recall
    it from its repository: twice the spread, so a ball of radius r measures about 1.5 r). Rotation-free, so
    camera coordinates do. NaN when under two pixels have depth."""
    v, u = np.nonzero(mask & (depth > 0))
    if len(u) < 2:
        return float("nan")
    z = depth[v, u].astype(np.float64)
    x = (u + 0.5 - k[0, 2]) / k[0, 0] * z
    y = (v + 0.5 - k[1, 2]) / k[1, 1] * z
    pts = np.stack([x, y, z], axis=1)
    return float(2.0 * np.sqrt(pts.var(axis=0).sum()))


def capture_pixels(
    scene: Scene,
    prior: Prior,
    views: int,
    resolution: int,
    top_k: int,
    fov_deg: float,
    seed: int,
    device: str,
    progress: Callable[[float, str], None],
) -> Pixels:
    """Render the views with contributors, ask the prior for its automatic masks per view, measure them.

    Views go through the render stage a few at a time and only their foreground pixels are kept, so memory
    holds the pixels and one batch of renders, not every view's full renders (a 1M-Gaussian scene with 200
    views stays within a few GB; figures in docs/performance.md)."""
    prior.require("auto")
    cams = cameras_for_scene(scene, views, resolution, resolution, fov_deg=fov_deg, seed=seed)
    n = len(cams)
    per_call = max(1, min(n, ELEMENT_VIEWS // max(scene.n_elements, 1)))
    collected = _Collected()
    for b0 in range(0, n, per_call):
        b1 = min(b0 + per_call, n)

        def report(f: float, m: str, b0: int = b0, b1: int = b1) -> None:
            progress((b0 + f * (b1 - b0)) / n, m)

        renders = render(
            scene, cams[b0:b1], device=device, contributors=top_k, progress=lambda f, m: report(0.5 * f, m)
        )
        collected.add(renders, prior, b0, n, lambda f, m: report(0.5 + 0.5 * f, m))
    return collected.pixels()


class _Collected:
    """Foreground pixels of the views rendered so far; mask ids keep counting across batches."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.scales: list[float] = []
        self.levels: int | None = None

    def add(
        self, renders: Renders, prior: Prior, first: int, total: int, progress: Callable[[float, str], None]
    ) -> None:
        assert renders.contrib_ids is not None and renders.contrib_weights is not None
        views = renders.views
        for v in range(len(views)):
            progress(v / len(views), f"automatic masks of view {first + v + 1} of {total}")
            fg = (renders.alpha[v] >= COVERED) & (renders.contrib_weights[v].sum(-1) > 0)
            masks = prior.auto_masks(views, v)
            self.levels = len(masks) if self.levels is None else self.levels
            ids = np.full((*fg.shape, self.levels), -1, dtype=np.int64)
            scl = np.full((*fg.shape, self.levels), np.inf, dtype=np.float32)
            for lvl, level in enumerate(masks):
                for m in level:  # a pixel in two masks of a level (a prior that overlaps them) keeps the first
                    s = mask_scale(views.depth[v], m, views.cameras.Ks[v])
                    if not np.isfinite(s) or s <= 0:
                        continue
                    free = m & (ids[..., lvl] < 0)
                    ids[..., lvl][free] = len(self.scales)
                    scl[..., lvl][free] = s
                    self.scales.append(s)
            cid = renders.contrib_ids[v][fg].astype(np.int64)
            cw = renders.contrib_weights[v][fg].astype(np.float32)
            cw = np.where(cid >= 0, cw, 0.0)
            self.parts.append((np.where(cid >= 0, cid, 0), cw, ids[fg], scl[fg]))

    def pixels(self) -> Pixels:
        if not self.scales:
            raise SegAnyError(
                "unsupported",
                "the prior found no measurable masks in any view (is the scene empty, or too small to see?); "
                "render more or larger views",
            )
        counts = np.array([len(p[0]) for p in self.parts], dtype=np.int64)
        return Pixels(
            ids=np.concatenate([p[0] for p in self.parts]),
            weights=np.concatenate([p[1] for p in self.parts]),
            mask_ids=np.concatenate([p[2] for p in self.parts]),
            mask_scales=np.concatenate([p[3] for p in self.parts]),
            starts=np.concatenate([[0], np.cumsum(counts)]),
            scales=np.asarray(self.scales, dtype=np.float32),
        )
