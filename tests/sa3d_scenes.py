"""Small labelled splat and point scenes for the SA3D tests, written to real files and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segany.formats import load_scene
from segany.formats.writers import write_point_ply, write_splat_ply
from segany.scene import PointScene, SplatScene

BLOB_X = 1.0  # blob centres at x = ±BLOB_X: apart enough that the geometric prior tells them apart


def blob_layout(n_per_blob: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two balls of elements (radius 0.4) around x = ∓BLOB_X, red and blue; labels 0 / 1. Element 0 is in blob 1."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((2 * n_per_blob, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radius = 0.4 * rng.random(2 * n_per_blob) ** (1 / 3)
    labels = np.repeat([1, 0], n_per_blob)
    centres = np.where(labels[:, None] == 0, [[-BLOB_X, 0.0, 0.0]], [[BLOB_X, 0.0, 0.0]])
    xyz = (centres + dirs * radius[:, None]).astype(np.float32)
    rgb = np.where(labels[:, None] == 0, [[0.9, 0.2, 0.2]], [[0.2, 0.3, 0.9]]).astype(np.float32)
    return xyz, rgb, labels


def splat_blobs(tmp: Path) -> tuple[SplatScene, np.ndarray]:
    """The blobs as 3D Gaussians, through a standard 3DGS PLY file."""
    xyz, rgb, labels = blob_layout()
    n = len(xyz)
    scene = SplatScene(
        means=xyz,
        quats=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
        log_scales=np.full((n, 3), np.log(0.07), np.float32),
        logit_opacities=np.full(n, 3.0, np.float32),
        sh=((rgb - 0.5) / 0.28209479177387814)[:, None, :].astype(np.float32),
    )
    loaded = load_scene(write_splat_ply(tmp / "blobs.ply", scene))
    assert isinstance(loaded, SplatScene)
    return loaded, labels


def point_blobs(tmp: Path) -> tuple[PointScene, np.ndarray]:
    """The blobs as a coloured point cloud, through a point PLY file."""
    xyz, rgb, labels = blob_layout(n_per_blob=400, seed=1)
    loaded = load_scene(write_point_ply(tmp / "blob_points.ply", PointScene(xyz=xyz, rgb=rgb)))
    assert isinstance(loaded, PointScene)
    return loaded, labels


def one_gaussian() -> SplatScene:
    """A scene of one Gaussian, visible by its own extent: too few elements for SAGA to contrast."""
    return SplatScene(
        means=np.zeros((1, 3), np.float32),
        quats=np.array([[1, 0, 0, 0]], np.float32),
        log_scales=np.full((1, 3), -2.0, np.float32),
        logit_opacities=np.full(1, 3.0, np.float32),
        sh=np.zeros((1, 1, 3), np.float32),
    )


def centre_element(positions: np.ndarray, labels: np.ndarray, label: int) -> int:
    """The element of a blob nearest the blob's outer side (visible from most views around it)."""
    idx = np.flatnonzero(labels == label)
    pts = positions[idx]
    outward = pts[:, 0] * np.sign(pts[:, 0].mean())
    return int(idx[np.argmax(outward)])
