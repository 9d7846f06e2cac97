"""Screen-space picking in numpy (no bpy): splats and points have no faces for a ray cast, so we project
every element with the region's perspective matrix — the vectorised form of
`bpy_extras.view3d_utils.location_3d_to_region_2d` — and take the front-most one near the mouse."""

from __future__ import annotations

import numpy as np


def project(points: np.ndarray, perspective: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Region pixel coordinates (N, 2) and a depth (N,) that grows away from the eye; NaN depth = behind it.

    Same formula as location_3d_to_region_2d: x = w/2 + w/2 · X/W, y = h/2 + h/2 · Y/W. The depth is
    the clip-space W for a perspective view and clip-space Z for an orthographic one (where W is 1).
    """
    p = np.asarray(points, np.float32)
    m = np.asarray(perspective, np.float32)
    clip = p @ m[:3, :3].T + m[:3, 3]
    w = p @ m[3, :3] + m[3, 3]
    safe = np.where(np.abs(w) > 1e-12, w, 1e-12)
    xy = np.empty((len(p), 2), np.float32)
    xy[:, 0] = (width / 2.0) * (1.0 + clip[:, 0] / safe)
    xy[:, 1] = (height / 2.0) * (1.0 + clip[:, 1] / safe)
    orthographic = not np.any(m[3, :3])
    depth = clip[:, 2] if orthographic else np.where(w > 0, w, np.nan)
    return xy, depth


def pick_projected(
    points: np.ndarray,
    perspective: np.ndarray,
    width: int,
    height: int,
    mouse: tuple[float, float],
    radius_px: float = 12.0,
    depth_band: float = 0.05,
) -> int:
    """Index of the front-most element within radius_px of the mouse, or -1.

    Among the elements under the cursor we keep those in the front `depth_band` of their depth range and
    return the one closest to the cursor in pixels — the surface the artist sees, not a stray far splat.
    """
    xy, depth = project(points, perspective, width, height)
    d2 = (xy[:, 0] - mouse[0]) ** 2 + (xy[:, 1] - mouse[1]) ** 2
    near = np.flatnonzero(np.isfinite(depth) & (d2 <= radius_px * radius_px))
    if len(near) == 0:
        return -1
    dn = depth[near]
    lo, hi = float(dn.min()), float(dn.max())
    front = near[dn <= lo + depth_band * max(hi - lo, 1e-9)]
    return int(front[np.argmin(d2[front])])


def nearest_corner(tri_vertices: np.ndarray, hit: np.ndarray, corners: np.ndarray) -> int:
    """The vertex of a hit face nearest to the hit point (indices into the original mesh)."""
    d = np.linalg.norm(np.asarray(tri_vertices, np.float64) - np.asarray(hit, np.float64), axis=1)
    return int(np.asarray(corners)[int(np.argmin(d))])
