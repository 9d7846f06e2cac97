"""Labelled splat scenes and point clouds made from labelled meshes, so every scene kind can be evaluated.

Samples are area-weighted points on the surface; each inherits the label of its face. Colours come
from shading a neutral grey albedo with the face normal under a fixed light — geometry only, so the
labels cannot leak into what a 2D model sees (tests check that relabelling changes no colour).
Splats lie flat along their face: the Gaussian's shortest axis is the face normal, in-plane size from
the sampling density. Output, written by `segany.formats.write_labelled_ply`: `<out>/splats/<id>.ply`
(3DGS layout plus an int `label` per Gaussian) and `<out>/points/<id>.ply` (xyz, normals, uchar rgb,
`label`), each folder with a categories.json so `segany eval --data <out>/splats` knows the categories.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import SegAnyError
from ..formats import write_labelled_ply
from ..scene import MeshScene, PointScene, SplatScene
from .data import CATEGORIES_FILE, NAMES_FILE, Shape, iter_shapes

SH_C0 = 0.28209479177387814
ALBEDO = 0.7
AMBIENT = 0.3
LIGHT = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
KINDS = ("splats", "points")


def shade(normals: np.ndarray) -> np.ndarray:
    """Grey Lambert shading (two-sided) of unit normals: rgb in [0, 1], the same for every label."""
    lambert = np.abs(normals @ LIGHT)
    value = ALBEDO * (AMBIENT + (1.0 - AMBIENT) * lambert)
    return np.repeat(value[:, None], 3, axis=1).astype(np.float32)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n area-weighted samples: positions, the face of each, the unit face normals (F, 3)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(area2, 1e-30)[:, None]
    rng = np.random.default_rng(seed)
    face = rng.choice(len(faces), size=n, p=area2 / area2.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    xyz = np.einsum("ni,nij->nj", bary, tri[face])
    return xyz, face, normals


def _quats_from_frames(x_axis: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """wxyz quaternions of rotations whose columns are (x, normal × x, normal)."""
    z = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
    x = x_axis - np.sum(x_axis * z, axis=1, keepdims=True) * z
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    y = np.cross(z, x)
    m = np.stack([x, y, z], axis=2)  # columns: a proper rotation (x × y = z)
    return Rotation.from_matrix(m).as_quat()[:, [3, 0, 1, 2]]


def splats_from_mesh(mesh: MeshScene, labels: np.ndarray, n: int, seed: int = 0) -> tuple[SplatScene, np.ndarray]:
    xyz, face, fn = sample_surface(mesh.vertices, mesh.faces, n, seed)
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    spacing = np.sqrt(area / n)
    quats = _quats_from_frames(tri[face, 1] - tri[face, 0], fn[face])
    log_scales = np.log(np.array([0.6 * spacing, 0.6 * spacing, 0.02 * spacing]))[None].repeat(n, 0)
    rgb = shade(fn[face])
    scene = SplatScene(
        means=xyz,
        quats=quats,
        log_scales=log_scales,
        logit_opacities=np.full(n, np.log(0.95 / 0.05)),
        sh=((rgb - 0.5) / SH_C0)[:, None, :],
    )
    return scene, np.asarray(labels)[face].astype(np.int32)


def points_from_mesh(mesh: MeshScene, labels: np.ndarray, n: int, seed: int = 0) -> tuple[PointScene, np.ndarray]:
    xyz, face, fn = sample_surface(mesh.vertices, mesh.faces, n, seed)
    scene = PointScene(xyz=xyz, rgb=shade(fn[face]), normals=fn[face])
    return scene, np.asarray(labels)[face].astype(np.int32)


def _count(shape: Shape, n: int | None) -> int:
    """Default sample count: about one per face, within 5k..200k."""
    return n if n else int(np.clip(len(shape.scene.faces), 5_000, 200_000))


def generate_labelled(
    source: Path,
    out_dir: Path,
    kinds: Iterable[str] = KINDS,
    ids: list[str] | None = None,
    n: int | None = None,
) -> dict[str, list[Path]]:
    """Turn every labelled mesh in `source` (PSB layout or labelled mesh PLYs) into labelled splats / points."""
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SegAnyError("bad_request", f"unknown kinds {sorted(unknown)}; expected some of {KINDS}")
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {k: [] for k in kinds}
    categories: dict[str, str] = {}
    for k in kinds:
        (out_dir / k).mkdir(parents=True, exist_ok=True)
    for shape in iter_shapes(Path(source), ids):
        if not isinstance(shape.scene, MeshScene):
            continue
        seed = zlib.crc32(shape.id.encode())
        count = _count(shape, n)
        categories[shape.id] = shape.category
        if "splats" in kinds:
            scene, labels = splats_from_mesh(shape.scene, shape.labels, count, seed)
            written["splats"].append(write_labelled_ply(out_dir / "splats" / f"{shape.id}.ply", scene, labels))
        if "points" in kinds:
            scene, labels = points_from_mesh(shape.scene, shape.labels, count, seed)
            written["points"].append(write_labelled_ply(out_dir / "points" / f"{shape.id}.ply", scene, labels))
    names = Path(source) / NAMES_FILE  # the samples keep their mesh's labels, so its part names too
    for k in kinds:
        (out_dir / k / CATEGORIES_FILE).write_text(json.dumps(categories, indent=1))
        if names.is_file():
            (out_dir / k / NAMES_FILE).write_bytes(names.read_bytes())
    return written
