"""Meshes through the mesh rasterizer: ids are triangles, contributors the covering triangle's vertices."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch

from segany.kernels.mesh_raster import rasterize_mesh, shade

from ..cameras import Cameras, near_plane
from ..scene import MeshScene

# the rasterizer's own near plane, which near_plane() keeps for every scene but a very small one
KERNEL_NEAR = inspect.signature(rasterize_mesh).parameters["near"].default


def mesh_drawer(
    scene: MeshScene, device: str, contributors: int, barycentrics: bool
) -> Callable[[Cameras], dict[str, np.ndarray]]:
    """A function drawing a batch of cameras into the Renders fields; the mesh goes to `device` once."""
    vertices = torch.as_tensor(scene.vertices, device=device)
    faces = torch.as_tensor(scene.faces, device=device)
    colors = None if scene.vertex_colors is None else torch.as_tensor(scene.vertex_colors, device=device)
    near = near_plane(scene, KERNEL_NEAR)

    def draw(cameras: Cameras) -> dict[str, np.ndarray]:
        raster = rasterize_mesh(
            vertices, faces, torch.as_tensor(cameras.viewmats, device=device),
            torch.as_tensor(cameras.Ks, device=device), cameras.width, cameras.height, near=near,
        )  # fmt: skip
        out = {
            "rgb": shade(raster, colors, faces).float(),
            "depth": raster.depth,
            "normals": raster.normals,
            "ids": raster.tri_ids,
            "alpha": raster.mask.float(),
        }
        if barycentrics:
            out["bary"] = raster.bary
        if contributors:
            out["contrib_ids"], out["contrib_weights"] = _corners(raster.tri_ids, raster.bary, faces, contributors)
        return {k: v.cpu().numpy() for k, v in out.items()}

    return draw


def _corners(
    tri_ids: torch.Tensor, bary: torch.Tensor, faces: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The covering triangle's vertices by decreasing barycentric weight, cut or padded (-1, 0) to k."""
    covered = tri_ids >= 0
    weights, order = bary.sort(dim=-1, descending=True, stable=True)
    ids = faces[tri_ids.clamp(min=0)].gather(-1, order)
    ids = torch.where(covered[..., None], ids, -1).to(torch.int32)
    if k > 3:
        pad = (0, k - 3)
        return torch.nn.functional.pad(ids, pad, value=-1), torch.nn.functional.pad(weights, pad, value=0.0)
    return ids[..., :k].contiguous(), weights[..., :k].contiguous()
