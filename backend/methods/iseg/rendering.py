"""Views of the mesh for iSeg: cameras around it, the raster (ids + barycentrics) and what the prior sees."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ...cameras import Cameras
from ...priors import Views
from ...scene import MeshScene, scene_id

FOV_DEGREES = 50.0


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World → camera (OpenCV: x right, y down, z forward) for a camera at `eye` looking at `target`."""
    fwd = (target - eye) / np.linalg.norm(target - eye)
    up = np.array([0.0, 1.0, 0.0]) if abs(fwd[1]) < 0.95 else np.array([1.0, 0.0, 0.0])
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ eye
    return m


def orbit_cameras(vertices: np.ndarray, n: int, size: int) -> Cameras:
    """n cameras spread evenly over a sphere around the mesh (Fibonacci lattice), framing its bounding sphere."""
    v = np.asarray(vertices, dtype=np.float64)
    centre = v.mean(axis=0)
    radius = max(float(np.linalg.norm(v - centre, axis=1).max()), 1e-9)
    half = np.radians(FOV_DEGREES) / 2
    dist = 1.05 * radius / np.sin(half)
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azim = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sin(polar) * np.cos(azim), np.cos(polar), np.sin(polar) * np.sin(azim)], axis=1)
    viewmats = np.stack([_look_at(centre + dist * d, centre) for d in dirs])
    f = size / 2 / np.tan(half)
    k = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    return Cameras(viewmats, np.repeat(k[None], n, axis=0), size, size)


def rasterize(scene: MeshScene, cameras: Cameras):
    """The mesh raster (tri ids, barycentrics, depth, normals) for these cameras, on the CPU."""
    from segany.kernels.mesh_raster import rasterize_mesh

    return rasterize_mesh(
        torch.as_tensor(scene.vertices), torch.as_tensor(scene.faces), torch.as_tensor(cameras.viewmats),
        torch.as_tensor(cameras.Ks), cameras.width, cameras.height,
    )  # fmt: skip


def embed_raster(scene: MeshScene, cameras: Cameras, raster, height: int, width: int):
    """The raster at the prior's embedding resolution (the same raster when it matches)."""
    if (height, width) == (cameras.height, cameras.width):
        return raster
    ks = cameras.Ks.copy()
    ks[:, 0] *= width / cameras.width
    ks[:, 1] *= height / cameras.height
    return rasterize(scene, Cameras(cameras.viewmats, ks, width, height))


def render_views(scene: MeshScene, cameras: Cameras, raster) -> Views:
    """Shaded renders plus the raster's buffers, keyed by scene and cameras for per-view caches."""
    from segany.kernels.mesh_raster import shade

    colors = None if scene.vertex_colors is None else torch.as_tensor(scene.vertex_colors)
    rgb = shade(raster, colors, torch.as_tensor(scene.faces) if colors is not None else None)
    h = hashlib.blake2b(digest_size=8)
    h.update(cameras.viewmats.tobytes())
    h.update(cameras.Ks.tobytes())
    return Views(
        rgb=rgb.cpu().numpy().astype(np.float32),
        depth=raster.depth.cpu().numpy(),
        normals=raster.normals.cpu().numpy(),
        ids=raster.tri_ids.cpu().numpy(),
        cameras=cameras,
        key=f"{scene_id(scene)}:{h.hexdigest()}",
    )
