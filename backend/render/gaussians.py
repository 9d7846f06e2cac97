"""Splats and points through the splat rasterizer; points are drawn as small isotropic Gaussians."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree

from segany.kernels.splat_raster import rasterize_splats

from ..cameras import Cameras, near_plane
from ..scene import PointScene, SplatScene
from .normals import normals_from_depth

# the rasterizer's own near plane, which near_plane() keeps for every scene but a very small one
KERNEL_NEAR = inspect.signature(rasterize_splats).parameters["near"].default

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic: rgb = 0.5 + SH_C0 · sh0
POINT_SCALE = 0.6  # a point's Gaussian sigma in units of its neighbour spacing: neighbours overlap, no holes
POINT_OPACITY = 0.95


def gaussian_params(scene: SplatScene | PointScene) -> dict[str, np.ndarray]:
    """Renderable Gaussians: splats as they are; points as isotropic blobs sized by neighbour spacing."""
    if isinstance(scene, SplatScene):
        return {
            "means": scene.means,
            "quats": scene.quats,
            "scales": np.exp(scene.log_scales),
            "opacities": 1.0 / (1.0 + np.exp(-scene.logit_opacities)),
            "sh": scene.sh,
        }
    k = min(5, len(scene.xyz))
    dist, _ = cKDTree(scene.xyz).query(scene.xyz, k=k)
    spacing = np.median(dist[:, 1:], axis=1) if k > 1 else np.ones(len(scene.xyz))
    rgb = scene.rgb if scene.rgb is not None else np.full_like(scene.xyz, 0.7)
    n = len(scene.xyz)
    return {
        "means": scene.xyz,
        "quats": np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
        "scales": np.repeat((POINT_SCALE * spacing).astype(np.float32)[:, None], 3, axis=1),
        "opacities": np.full(n, POINT_OPACITY, np.float32),
        "sh": ((rgb - 0.5) / SH_C0)[:, None, :].astype(np.float32),
    }


def gaussian_drawer(
    scene: SplatScene | PointScene, device: str, contributors: int
) -> Callable[[Cameras], dict[str, np.ndarray]]:
    """A function drawing a batch of cameras into the Renders fields; the Gaussians go to `device` once.

    A pixel's id is its strongest contributor where the accumulated opacity passes one half (else
    background), so ids and depth describe the surface a person would see there.
    """
    p = {
        k: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32), device=device)
        for k, v in gaussian_params(scene).items()
    }
    near = near_plane(scene, KERNEL_NEAR)

    def draw(cameras: Cameras) -> dict[str, np.ndarray]:
        out = rasterize_splats(
            p["means"], p["quats"], p["scales"], p["opacities"], torch.as_tensor(cameras.viewmats, device=device),
            torch.as_tensor(cameras.Ks, device=device), cameras.width, cameras.height, sh=p["sh"],
            background=torch.ones(3, device=device), return_contrib=max(contributors, 1), near=near,
        )  # fmt: skip
        alpha = out.alpha.float()
        solid = alpha > 0.5
        fields = {
            "rgb": out.rgb.float(),
            "depth": torch.where(solid, out.depth.float(), torch.zeros_like(alpha)),
            "ids": torch.where(solid, out.contrib_ids[..., 0], -1),
            "alpha": alpha,
        }
        if contributors:
            fields["contrib_ids"] = out.contrib_ids.to(torch.int32)
            fields["contrib_weights"] = out.contrib_weights.float()
        arrays = {k: v.cpu().numpy() for k, v in fields.items()}
        arrays["normals"] = normals_from_depth(arrays["depth"], cameras)
        return arrays

    return draw
