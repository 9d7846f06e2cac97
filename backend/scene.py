"""The three scene kinds, their array contracts, validation and content hashing.

Every array is numpy, C-contiguous, with the dtype given here; loaders and the wire convert to these.
Colours are float32 in [0, 1]. Quaternions are (w, x, y, z) like the 3DGS PLY.
"""

from __future__ import annotations

import hashlib
from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

import numpy as np

from .errors import SegAnyError

DEFAULT_LIMITS = {"max_elements": 20_000_000, "max_faces": 40_000_000}
# float32 kernels form squared distances (|a|² − 2a·b + |b|²) and products of coordinates: past ~1.8e19 they
# overflow to Inf and every method fails far from the cause, so positions and sizes are refused above this
MAX_COORDINATE = 1e18


def _check(name: str, arr: np.ndarray | None, shape: tuple, dtype: type, required: bool = True) -> np.ndarray | None:
    """Coerce to dtype and check shape; `shape` uses -1 for free dims and None for 'same as N'."""
    if arr is None:
        if required:
            raise SegAnyError("invalid_array", f"{name} is missing")
        return None
    arr = np.asarray(arr)
    if arr.ndim != len(shape) or any(s not in (-1, None) and s != d for s, d in zip(shape, arr.shape, strict=False)):
        want = "×".join("N" if s in (-1, None) else str(s) for s in shape)
        raise SegAnyError("invalid_array", f"{name} has shape {arr.shape}, expected {want}")
    if arr.dtype.kind not in "fiub":
        raise SegAnyError("invalid_array", f"{name} has dtype {arr.dtype}, expected numbers")
    return np.ascontiguousarray(arr, dtype=dtype)


def _finite(name: str, arr: np.ndarray | None) -> None:
    if arr is not None and not np.isfinite(arr).all():
        bad = (
            int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum())
            if arr.ndim > 1
            else int((~np.isfinite(arr)).sum())
        )
        raise SegAnyError("invalid_geometry", f"{name} has {bad} rows with NaN or Inf values")


def _in_range(name: str, arr: np.ndarray, limit: float = MAX_COORDINATE) -> None:
    """Refuse magnitudes whose squares overflow float32 (see MAX_COORDINATE), naming the largest."""
    big = float(np.abs(arr).max(initial=0.0))
    if big > limit:
        raise SegAnyError(
            "invalid_geometry",
            f"{name} reach {big:.3g}; SegAny needs magnitudes up to {limit:.0e} so that squared distances fit "
            "in float32: scale the scene down or move it nearer the origin",
        )


def _spread_out(pts: np.ndarray, what: str) -> None:
    """Refuse elements that all sit at one place: no view can show them and no method can tell them apart."""
    if not np.ptp(pts, axis=0).any():
        raise SegAnyError(
            "invalid_geometry", f"all {len(pts):,} {what} sit at the same point: there is no shape to segment"
        )


def _same_n(n: int, **arrs: np.ndarray | None) -> None:
    for name, a in arrs.items():
        if a is not None and a.shape[0] != n:
            raise SegAnyError("invalid_array", f"{name} has {a.shape[0]} rows, expected {n}")


@dataclass
class MeshScene:
    """Triangle mesh. `face_parts` keeps the part of each face for multi-part files."""

    kind: ClassVar[str] = "mesh"
    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    face_parts: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        self.vertices = _check("vertices", self.vertices, (-1, 3), np.float32)
        self.faces = _check("faces", self.faces, (-1, 3), np.int64)
        self.vertex_colors = _check("vertex_colors", self.vertex_colors, (-1, 3), np.float32, required=False)
        self.face_parts = _check("face_parts", self.face_parts, (-1,), np.int32, required=False)
        v, f = len(self.vertices), len(self.faces)
        if v == 0 or f == 0:
            raise SegAnyError("invalid_geometry", f"the mesh is empty ({v} vertices, {f} faces)")
        _finite("vertices", self.vertices)
        _in_range("vertex coordinates", self.vertices)
        _same_n(v, vertex_colors=self.vertex_colors)
        _same_n(f, face_parts=self.face_parts)
        lo, hi = int(self.faces.min()), int(self.faces.max())
        if lo < 0 or hi >= v:
            raise SegAnyError("invalid_geometry", f"face indices span {lo}..{hi} but the mesh has {v} vertices")
        # a face is degenerate when its edges are parallel to within float32 rounding (sine of the angle under
        # 1e-6, about 8 ulp): scale-free, and computed on coordinates divided by the extent so that a tiny
        # mesh's squared lengths do not underflow
        lo, extent = self.vertices.min(axis=0), float(np.ptp(self.vertices, axis=0).max())
        tri = ((self.vertices - lo) / (extent or 1.0))[self.faces]
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
        degenerate = int((area2 <= 1e-6 * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)).sum())
        if degenerate == f:  # identical or collinear vertices, or faces that only join such vertices
            raise SegAnyError(
                "invalid_geometry", f"all {f:,} faces have zero area (their vertices coincide or lie on one line)"
            )
        if degenerate:
            self.warnings.append(f"{degenerate} degenerate faces (zero area) kept")

    @property
    def n_elements(self) -> int:
        return len(self.vertices)


@dataclass
class SplatScene:
    """3D Gaussians in the 3DGS parameterisation: log-scales, logit-opacities, SH coefficients (N, K, 3)."""

    kind: ClassVar[str] = "splats"
    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    logit_opacities: np.ndarray
    sh: np.ndarray
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        self.means = _check("means", self.means, (-1, 3), np.float32)
        self.quats = _check("quats", self.quats, (-1, 4), np.float32)
        self.log_scales = _check("log_scales", self.log_scales, (-1, 3), np.float32)
        self.logit_opacities = _check("logit_opacities", self.logit_opacities, (-1,), np.float32)
        self.sh = _check("sh", self.sh, (-1, -1, 3), np.float32)
        n = len(self.means)
        if n == 0:
            raise SegAnyError("invalid_geometry", "the splat scene has no Gaussians")
        _same_n(n, quats=self.quats, log_scales=self.log_scales, logit_opacities=self.logit_opacities, sh=self.sh)
        k = self.sh.shape[1]
        if k not in (1, 4, 9, 16, 25):
            raise SegAnyError("invalid_array", f"sh has {k} coefficients per channel; expected (degree+1)^2")
        for name in ("means", "quats", "log_scales", "logit_opacities", "sh"):
            _finite(name, getattr(self, name))
        _in_range("Gaussian centres", self.means)
        largest = float(self.log_scales.max())
        if largest > np.log(MAX_COORDINATE):
            raise SegAnyError(
                "invalid_geometry",
                f"a Gaussian has log-scale {largest:.3g}, a size of {np.exp(np.float64(largest)):.3g}; SegAny needs "
                f"sizes up to {MAX_COORDINATE:.0e} so that squared sizes fit in float32",
            )

    @property
    def sh_degree(self) -> int:
        return round(self.sh.shape[1] ** 0.5) - 1

    @property
    def n_elements(self) -> int:
        return len(self.means)


@dataclass
class PointScene:
    """Point cloud with optional colours, normals and integer labels (labels never feed a method)."""

    kind: ClassVar[str] = "points"
    xyz: np.ndarray
    rgb: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        self.xyz = _check("xyz", self.xyz, (-1, 3), np.float32)
        self.rgb = _check("rgb", self.rgb, (-1, 3), np.float32, required=False)
        self.normals = _check("normals", self.normals, (-1, 3), np.float32, required=False)
        self.labels = _check("labels", self.labels, (-1,), np.int32, required=False)
        n = len(self.xyz)
        if n == 0:
            raise SegAnyError("invalid_geometry", "the point cloud is empty")
        _same_n(n, rgb=self.rgb, normals=self.normals, labels=self.labels)
        _finite("xyz", self.xyz)
        _finite("normals", self.normals)
        _in_range("point coordinates", self.xyz)
        _spread_out(self.xyz, "points")

    @property
    def n_elements(self) -> int:
        return len(self.xyz)


Scene = MeshScene | SplatScene | PointScene
SCENE_TYPES: dict[str, type] = {t.kind: t for t in (MeshScene, SplatScene, PointScene)}


def scene_arrays(scene: Scene) -> dict[str, np.ndarray]:
    """The scene's arrays by field name (None fields left out): what the wire and the hash see."""
    return {f.name: getattr(scene, f.name) for f in fields(scene) if isinstance(getattr(scene, f.name), np.ndarray)}


def scene_from_arrays(kind: str, arrays: dict[str, np.ndarray], limits: dict[str, int] | None = None) -> Scene:
    """Build and validate a scene from named arrays (the wire form), enforcing size limits first."""
    if kind not in SCENE_TYPES:
        raise SegAnyError("bad_request", f"unknown scene kind {kind!r}; expected one of {sorted(SCENE_TYPES)}")
    cls = SCENE_TYPES[kind]
    allowed = {f.name for f in fields(cls) if f.name != "warnings"}
    unknown = set(arrays) - allowed
    if unknown:
        raise SegAnyError(
            "invalid_array", f"unknown arrays for a {kind} scene: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    if required - set(arrays):
        raise SegAnyError(
            "invalid_array",
            f"a {kind} scene needs the arrays {sorted(required)}; missing: {sorted(required - set(arrays))}",
        )
    check_limits(kind, {k: np.shape(v)[0] if np.ndim(v) else 0 for k, v in arrays.items()}, limits)
    return cls(**arrays)


def check_limits(kind: str, counts: dict[str, int], limits: dict[str, int] | None = None) -> None:
    """Refuse scenes over the configured size before anything big is allocated."""
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    for name, n in counts.items():
        cap = lim["max_faces"] if name in ("faces", "face_parts") else lim["max_elements"]
        if n > cap:
            raise SegAnyError(
                "too_large", f"{kind} scene: {name} has {n:,} rows, over the limit of {cap:,} (raise it in the config)"
            )


def scene_id(scene: Scene) -> str:
    """Content hash: the same geometry sent twice maps to the same cached work."""
    h = hashlib.blake2b(digest_size=16)
    h.update(scene.kind.encode())
    for name, arr in sorted(scene_arrays(scene).items()):
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(np.asarray(arr.shape, dtype=np.int64).tobytes())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def element_positions(scene: Scene) -> np.ndarray:
    """Where each selectable element sits: vertices, Gaussian means or points, (N, 3)."""
    if isinstance(scene, MeshScene):
        return scene.vertices
    if isinstance(scene, SplatScene):
        return scene.means
    return scene.xyz


def splat_normals(scene: SplatScene) -> np.ndarray:
    """Each Gaussian's shortest axis (unit, sign arbitrary): the normal of a flat splat."""
    w, x, y, z = (scene.quats / np.maximum(np.linalg.norm(scene.quats, axis=1, keepdims=True), 1e-30)).T.astype(
        np.float64
    )
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )
    axis = np.argmin(scene.log_scales, axis=1)
    return rot[np.arange(len(axis)), :, axis]
