"""Normals for scenes without surfaces (splats, points): from the rendered depth map."""

from __future__ import annotations

import numpy as np

from ..cameras import Cameras


def normals_from_depth(depth: np.ndarray, cameras: Cameras) -> np.ndarray:
    """World-space unit normals from a depth map by cross products of neighbouring back-projected points."""
    b, h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    out = np.zeros((b, h, w, 3), np.float32)
    for i in range(b):
        k, vm = cameras.Ks[i], cameras.viewmats[i]
        z = depth[i]
        pts = np.stack([(xs - k[0, 2]) / k[0, 0] * z, (ys - k[1, 2]) / k[1, 1] * z, z], axis=-1)
        dx = np.gradient(pts, axis=1)
        dy = np.gradient(pts, axis=0)
        n = np.cross(dx, dy)
        n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
        n = n @ vm[:3, :3]  # camera → world: R^T n, written as n R for row vectors
        out[i] = np.where((z > 0)[..., None], n, 0.0)
    return out
