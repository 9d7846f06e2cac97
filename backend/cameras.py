"""Cameras inside the backend use the OpenCV convention.

x right, y down, z forward; `viewmats` are world-to-camera 4×4; `Ks` are pixel intrinsics
[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with pixel centres at +0.5 (pixel (0, 0) covers [0, 1)²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SegAnyError


@dataclass
class Cameras:
    """A batch of B pinhole cameras sharing one image size."""

    viewmats: np.ndarray  # (B, 4, 4) float32, world -> camera (OpenCV)
    Ks: np.ndarray  # (B, 3, 3) float32
    width: int
    height: int

    def __post_init__(self) -> None:
        self.viewmats = np.ascontiguousarray(np.asarray(self.viewmats, dtype=np.float32).reshape(-1, 4, 4))
        self.Ks = np.ascontiguousarray(np.asarray(self.Ks, dtype=np.float32).reshape(-1, 3, 3))
        if len(self.viewmats) != len(self.Ks):
            raise SegAnyError("invalid_array", f"{len(self.viewmats)} viewmats but {len(self.Ks)} intrinsics")
        if not (0 < self.width <= 16384 and 0 < self.height <= 16384):
            raise SegAnyError("invalid_array", f"image size {self.width}×{self.height} is out of range")
        if not (np.isfinite(self.viewmats).all() and np.isfinite(self.Ks).all()):
            raise SegAnyError("invalid_array", "camera matrices contain NaN or Inf")

    def __len__(self) -> int:
        return len(self.viewmats)

    def __getitem__(self, idx: int | slice | np.ndarray) -> Cameras:
        vm, ks = self.viewmats[idx], self.Ks[idx]
        return Cameras(vm, ks, self.width, self.height)

    @property
    def centers(self) -> np.ndarray:
        """Camera centres in world space, (B, 3)."""
        r, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -np.einsum("bji,bj->bi", r, t)
