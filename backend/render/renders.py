"""What the render stage returns: the views a prior looks at, and who contributes to every pixel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..cameras import Cameras
from ..scene import Scene, scene_id


@dataclass
class Views:
    """Rendered views of a scene, what a 2D model looks at (numpy, CPU).

    `ids` holds the element under each pixel (triangle for meshes, dominant Gaussian / point
    for splats and points), -1 for background. `depth` is camera z (0 on background),
    `normals` are world-space unit vectors (0 on background). `key` identifies the scene and
    cameras so per-view results (e.g. SAM embeddings) can be cached.
    """

    rgb: np.ndarray  # (B, H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (B, H, W) float32
    normals: np.ndarray  # (B, H, W, 3) float32
    ids: np.ndarray  # (B, H, W) int64
    cameras: Cameras
    key: str | None = None

    def __len__(self) -> int:
        return len(self.rgb)


@dataclass
class Renders:
    """The views plus what lifting needs: coverage, and on request barycentrics and top-k contributors.

    Contributors are the scene's elements (`scene.n_elements`) blended into each pixel, by decreasing
    weight: for splats and points the Gaussians with their alpha-blending weights (they sum to at most
    `alpha`; exactly `alpha` when K covers every Gaussian the pixel blends); for meshes the three vertices
    of the covering triangle with their barycentric weights (they sum to `alpha`, 1 on the mesh). So a
    per-element quantity renders as Σ weight · value, and a per-pixel one registers back onto elements
    through the same weights, for every scene kind alike.
    """

    views: Views
    alpha: np.ndarray  # (B, H, W) float32 coverage: accumulated opacity, 0 / 1 for meshes
    bary: np.ndarray | None = None  # (B, H, W, 3) float32 barycentrics of views.ids' triangle (meshes), 0 off it
    contrib_ids: np.ndarray | None = None  # (B, H, W, K) int32 element ids, -1 padding
    contrib_weights: np.ndarray | None = None  # (B, H, W, K) float32 their weights, 0 padding

    def __len__(self) -> int:
        return len(self.views)


def views_key(scene: Scene, cameras: Cameras) -> str:
    """Identifies a scene seen through these cameras, for per-view caches (e.g. SAM embeddings)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(cameras.viewmats.tobytes())
    h.update(cameras.Ks.tobytes())
    h.update(f"{cameras.width}x{cameras.height}".encode())
    return f"{scene_id(scene)}:{h.hexdigest()}"
