"""`render`: a scene seen through cameras, batched over views so memory stays bounded and a job can stop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..cameras import Cameras
from ..errors import SegAnyError
from ..scene import MeshScene, Scene
from .gaussians import gaussian_drawer
from .mesh import mesh_drawer
from .renders import Renders, Views, views_key

# The rasterizers' working memory grows with the pixels of one call, so a call gets a pixel budget, not a view
# count: SA3D's capture drew 4 views a call, and 4 views of 256² is that at its default resolutions or more.
PIXELS_PER_BATCH = 4 * 256 * 256
MAX_CONTRIBUTORS = 64


def render(
    scene: Scene,
    cameras: Cameras,
    *,
    device: str = "cpu",
    contributors: int = 0,
    barycentrics: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> Renders:
    """Render every view (numpy on the CPU whatever `device` drew it).

    `contributors` > 0 adds each pixel's K strongest contributing elements and weights; `barycentrics`
    adds a mesh raster's barycentrics. `progress(fraction, message)` is called between batches; a
    JobContext's progress raises `cancelled` there when the job was cancelled.
    """
    if isinstance(contributors, bool) or not 0 <= contributors <= MAX_CONTRIBUTORS:
        raise SegAnyError("bad_request", f"contributors must be 0..{MAX_CONTRIBUTORS}, got {contributors!r}")
    if len(cameras) == 0:
        raise SegAnyError("bad_request", "no cameras to render")
    mesh = isinstance(scene, MeshScene)
    if barycentrics and not mesh:
        raise SegAnyError(
            "unsupported", f"barycentrics exist for mesh scenes only, not {scene.kind!r}; ask for contributors"
        )
    if mesh:
        draw = mesh_drawer(scene, device, contributors, barycentrics)
    else:
        draw = gaussian_drawer(scene, device, contributors)
    n = len(cameras)
    step = max(1, PIXELS_PER_BATCH // (cameras.width * cameras.height))
    parts: list[dict[str, np.ndarray]] = []
    for b0 in range(0, n, step):
        if progress is not None:
            progress(b0 / n, f"rendering views {b0 + 1}-{min(b0 + step, n)} of {n}")
        with torch.no_grad():
            parts.append(draw(cameras[b0 : b0 + step]))
    if progress is not None:
        progress(1.0, "views rendered")
    f = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    views = Views(
        rgb=f["rgb"], depth=f["depth"], normals=f["normals"], ids=f["ids"], cameras=cameras,
        key=views_key(scene, cameras),
    )  # fmt: skip
    return Renders(
        views=views,
        alpha=f["alpha"],
        bary=f.get("bary"),
        contrib_ids=f.get("contrib_ids"),
        contrib_weights=f.get("contrib_weights"),
    )
