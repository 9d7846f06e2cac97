"""Views of the mesh for iSeg: cameras all around it, rendered once with barycentrics for the prior and
for lifting, and the rendered pixels under a coarser embedding map's cells."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...cameras import cameras_for_scene
from ...render import Renders, render
from ...scene import MeshScene

FOV_DEGREES = 50.0
ELEVATIONS = (-80.0, 80.0)  # from below too: undersides (chair seats, table tops) are parts as well


def views_around(
    scene: MeshScene, n: int, size: int, seed: int, progress: Callable[[float, str], None] | None = None
) -> Renders:
    """n square views spread over the whole sphere around the mesh, with barycentrics."""
    cameras = cameras_for_scene(scene, n, size, size, fov_deg=FOV_DEGREES, elevation_range=ELEVATIONS, seed=seed)
    return render(scene, cameras, barycentrics=True, progress=progress)


def at_cells(tri_ids: torch.Tensor, bary: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The raster's (B, H, W) ids and (B, H, W, 3) barycentrics at the pixels under the centres of a
    (height, width) grid of cells spanning the image (a prior's coarser embedding map), so each cell's
    embedding pairs with the surface point it was computed from, without rendering again."""
    h, w = tri_ids.shape[1:]
    if (height, width) == (h, w):
        return tri_ids, bary
    ys = ((torch.arange(height) + 0.5) * h / height).long().clamp(max=h - 1)
    xs = ((torch.arange(width) + 0.5) * w / width).long().clamp(max=w - 1)
    return tri_ids[:, ys][:, :, xs], bary[:, ys][:, :, xs]
