"""Views of the mesh for iSeg: cameras all around it, the raster (ids + barycentrics), what the prior sees."""

from __future__ import annotations

import torch

from ...cameras import Cameras, cameras_for_scene
from ...priors import Views
from ...scene import MeshScene
from ...views import render_views

FOV_DEGREES = 50.0
ELEVATIONS = (-80.0, 80.0)  # from below too: undersides (chair seats, table tops) are parts as well


def views_around(scene: MeshScene, n: int, size: int, seed: int) -> tuple[Cameras, Views]:
    """n square views spread over the whole sphere around the mesh, and their renders for the prior."""
    cameras = cameras_for_scene(scene, n, size, size, fov_deg=FOV_DEGREES, elevation_range=ELEVATIONS, seed=seed)
    return cameras, render_views(scene, cameras)


def rasterize(scene: MeshScene, cameras: Cameras):
    """The mesh raster (tri ids, barycentrics, depth, normals) for these cameras, on the CPU."""
    from segany.kernels.mesh_raster import rasterize_mesh

    return rasterize_mesh(
        torch.as_tensor(scene.vertices), torch.as_tensor(scene.faces), torch.as_tensor(cameras.viewmats),
        torch.as_tensor(cameras.Ks), cameras.width, cameras.height,
    )  # fmt: skip


def resized(cameras: Cameras, height: int, width: int) -> Cameras:
    """The same cameras at another image size (the prior's embedding maps may be coarser)."""
    ks = cameras.Ks.copy()
    ks[:, 0] *= width / cameras.width
    ks[:, 1] *= height / cameras.height
    return Cameras(cameras.viewmats, ks, width, height)
