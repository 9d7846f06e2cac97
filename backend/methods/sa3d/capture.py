"""Views captured once per scene: what the prior looks at plus who contributes to every pixel.

SA3D lifts 2D masks by inverse rendering: each pixel's mask value is credited to the Gaussians that
blended into it, in proportion to their blending weights. Keeping the k largest weights per pixel (ids
and weights) makes both directions cheap at query time — crediting a mask to elements, and rendering
the current 3D mask back into a view — without running the rasterizer again.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ...cameras import Cameras, cameras_for_scene
from ...render import Renders, Views, render
from ...scene import PointScene, SplatScene


def capture(
    scene: SplatScene | PointScene,
    n_views: int,
    resolution: int,
    top_k: int,
    fov_deg: float,
    seed: int,
    device: str,
    progress: Callable[[float, str], None],
) -> Renders:
    """Render `n_views` orbit views with their top-k contributors (points render as small Gaussians)."""
    cams = cameras_for_scene(scene, n_views, resolution, resolution, fov_deg=fov_deg, seed=seed)
    return render(scene, cams, device=device, contributors=top_k, progress=progress)


def to_tensors(renders: Renders) -> dict[str, torch.Tensor]:
    """Compact tensors for the State (rgb as bytes, weights and normals as half floats)."""
    v = renders.views
    return {
        "viewmats": torch.as_tensor(v.cameras.viewmats),
        "Ks": torch.as_tensor(v.cameras.Ks),
        "rgb": torch.as_tensor(np.round(np.clip(v.rgb, 0, 1) * 255).astype(np.uint8)),
        "depth": torch.as_tensor(v.depth.astype(np.float32)),
        "normals": torch.as_tensor(v.normals.astype(np.float16)),
        "alpha": torch.as_tensor(renders.alpha.astype(np.float16)),
        "contrib_ids": torch.as_tensor(renders.contrib_ids.astype(np.int32)),
        "contrib_weights": torch.as_tensor(renders.contrib_weights.astype(np.float16)),
    }


def from_tensors(tensors: dict[str, torch.Tensor], key: str) -> Renders:
    """The inverse of `to_tensors` (views keyed by `key` so per-view prior caches keep working)."""
    rgb = tensors["rgb"].numpy()
    cams = Cameras(tensors["viewmats"].numpy(), tensors["Ks"].numpy(), int(rgb.shape[2]), int(rgb.shape[1]))
    ids = tensors["contrib_ids"].numpy()
    views = Views(
        rgb=rgb.astype(np.float32) / 255.0,
        depth=tensors["depth"].numpy().astype(np.float32),
        normals=tensors["normals"].numpy().astype(np.float32),
        ids=np.where(tensors["alpha"].numpy() > 0.5, ids[..., 0], -1).astype(np.int64),
        cameras=cams,
        key=key,
    )
    return Renders(
        views=views,
        alpha=tensors["alpha"].numpy().astype(np.float32),
        contrib_ids=ids,
        contrib_weights=tensors["contrib_weights"].numpy().astype(np.float32),
    )
