"""Views captured once per scene: what the prior looks at plus who contributes to every pixel.

SA3D lifts 2D masks by inverse rendering: each pixel's mask value is credited to the Gaussians that
blended into it, in proportion to their blending weights. Keeping the k largest weights per pixel (ids
and weights) makes both directions cheap at query time — crediting a mask to elements, and rendering
the current 3D mask back into a view — without running the rasterizer again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from segany.kernels.splat_raster import rasterize_splats

from ...cameras import Cameras, cameras_for_scene
from ...priors.base import Views
from ...scene import PointScene, SplatScene
from ...views import gaussian_params, normals_from_depth, views_key

VIEW_BATCH = 4  # views per rasterizer call: progress and cancel between batches, bounded memory


@dataclass
class Capture:
    """N views of a scene: the prior's inputs and the per-pixel top-k contributors (numpy, CPU)."""

    views: Views
    alpha: np.ndarray  # (B, H, W) float32 accumulated opacity
    contrib_ids: np.ndarray  # (B, H, W, K) int32 element ids by decreasing weight, -1 padding
    contrib_weights: np.ndarray  # (B, H, W, K) float32 blending weights, 0 padding

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Compact tensors for the State (rgb as bytes, weights and normals as half floats)."""
        v = self.views
        return {
            "viewmats": torch.as_tensor(v.cameras.viewmats),
            "Ks": torch.as_tensor(v.cameras.Ks),
            "rgb": torch.as_tensor(np.round(np.clip(v.rgb, 0, 1) * 255).astype(np.uint8)),
            "depth": torch.as_tensor(v.depth.astype(np.float32)),
            "normals": torch.as_tensor(v.normals.astype(np.float16)),
            "alpha": torch.as_tensor(self.alpha.astype(np.float16)),
            "contrib_ids": torch.as_tensor(self.contrib_ids.astype(np.int32)),
            "contrib_weights": torch.as_tensor(self.contrib_weights.astype(np.float16)),
        }

    @staticmethod
    def from_tensors(tensors: dict[str, torch.Tensor], key: str) -> Capture:
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
        return Capture(
            views=views,
            alpha=tensors["alpha"].numpy().astype(np.float32),
            contrib_ids=ids,
            contrib_weights=tensors["contrib_weights"].numpy().astype(np.float32),
        )


def capture(
    scene: SplatScene | PointScene,
    n_views: int,
    resolution: int,
    top_k: int,
    fov_deg: float,
    seed: int,
    device: str,
    progress: Callable[[float, str], None],
) -> Capture:
    """Render `n_views` orbit views with their top-k contributors (points render as small Gaussians)."""
    cams = cameras_for_scene(scene, n_views, resolution, resolution, fov_deg=fov_deg, seed=seed)
    p = {
        k: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32), device=device)
        for k, v in gaussian_params(scene).items()
    }
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("rgb", "depth", "alpha", "ids", "weights")}
    for b0 in range(0, n_views, VIEW_BATCH):
        progress(b0 / n_views, f"rendering views {b0 + 1}-{min(b0 + VIEW_BATCH, n_views)} of {n_views}")
        sub = cams[b0 : b0 + VIEW_BATCH]
        with torch.no_grad():
            out = rasterize_splats(
                p["means"], p["quats"], p["scales"], p["opacities"],
                torch.as_tensor(sub.viewmats, device=device), torch.as_tensor(sub.Ks, device=device),
                resolution, resolution, sh=p["sh"], background=torch.ones(3, device=device), return_contrib=top_k,
            )  # fmt: skip
        alpha = out.alpha.float()
        parts["rgb"].append(out.rgb.float().cpu().numpy())
        parts["depth"].append(torch.where(alpha > 0.5, out.depth.float(), torch.zeros_like(alpha)).cpu().numpy())
        parts["alpha"].append(alpha.cpu().numpy())
        parts["ids"].append(out.contrib_ids.to(torch.int32).cpu().numpy())
        parts["weights"].append(out.contrib_weights.float().cpu().numpy())
    progress(1.0, "views rendered")
    arr = {k: np.concatenate(v) for k, v in parts.items()}
    ids = arr["ids"]
    depth = arr["depth"]
    views = Views(
        rgb=arr["rgb"],
        depth=depth,
        normals=normals_from_depth(depth, cams),
        ids=np.where(arr["alpha"] > 0.5, ids[..., 0], -1).astype(np.int64),
        cameras=cams,
        key=views_key(scene, cams),
    )
    return Capture(views=views, alpha=arr["alpha"], contrib_ids=arr["ids"], contrib_weights=arr["weights"])
