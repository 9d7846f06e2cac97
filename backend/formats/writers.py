"""PLY writers for selections and labels: mesh with per-vertex score, 3DGS subset, labelled points.

Every file is binary little-endian. plyfile builds the header; the data are written straight from
numpy (a triangle list is a fixed (uchar 3, int32 × 3) record), which keeps a million faces well under a
second where a row-by-row writer takes many. Writes are atomic: the bytes go to a temporary file in
the same folder, are fsynced, then renamed over the target, so a full disk or a crash never leaves a
half-written file behind; any failure is raised as io_error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from plyfile import PlyData, PlyElement

from ..errors import SegAnyError
from ..scene import MeshScene, PointScene, Scene, SplatScene
from .gaussians import splat_matrix

Columns = list[tuple[str, np.ndarray]]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Run `write` on a temp file next to `path`, fsync, then rename it into place."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise SegAnyError("io_error", f"cannot write in {path.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise SegAnyError("io_error", f"writing {path} failed: {e.strerror or e}") from e
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _structured(cols: Columns, n: int) -> np.ndarray:
    """Named columns -> one little-endian structured array (an (n, k) column becomes a k-list)."""
    dtype = [(name, a.dtype.newbyteorder("<"), a.shape[1:]) if a.ndim > 1 else (name, a.dtype.newbyteorder("<"))
             for name, a in cols]  # fmt: skip
    out = np.empty(n, dtype=dtype)
    for name, a in cols:
        out[name] = a
    return out


def _packed(arr: np.ndarray) -> np.ndarray:
    """The PLY binary record: every fixed-size list field gets its uchar length in front."""
    if not any(arr.dtype[name].shape for name in arr.dtype.names):
        return arr
    fields, values = [], []
    for name in arr.dtype.names:
        base, shape = arr.dtype[name].base, arr.dtype[name].shape
        if shape:
            fields += [(name + "_len", "u1"), (name, base, shape)]
            values += [(name + "_len", np.full(len(arr), shape[0], np.uint8)), (name, arr[name])]
        else:
            fields.append((name, base))
            values.append((name, arr[name]))
    out = np.empty(len(arr), dtype=fields)
    for name, v in values:
        out[name] = v
    return out


def _write_ply(path: str | os.PathLike, elements: list[tuple[str, np.ndarray]], comment: str) -> Path:
    ply = PlyData([PlyElement.describe(a, name) for name, a in elements], byte_order="<", comments=[comment])

    def write(f: BinaryIO) -> None:
        f.write(ply.header.encode("ascii") + b"\n")
        for _, a in elements:
            f.write(np.ascontiguousarray(_packed(a)).view(np.uint8))

    return atomic_write(path, write)


def _per(name: str, a: np.ndarray | None, n: int, what: str, dtype: type) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a)
    if a.shape != (n,) or a.dtype.kind not in "fiub":
        raise SegAnyError("invalid_array", f"{name} must be {n} numbers, one per {what}; got {a.shape} {a.dtype}")
    return a.astype(dtype)


def _rgb8(colors: np.ndarray | None, n: int) -> Columns:
    if colors is None:
        return []
    c = np.asarray(colors)
    if c.shape != (n, 3) or c.dtype.kind not in "fiu":
        raise SegAnyError("invalid_array", f"colors must be ({n}, 3); got {c.shape} {c.dtype}")
    c8 = c.clip(0, 255).astype(np.uint8) if c.dtype.kind in "ui" else (c.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return [("red", c8[:, 0]), ("green", c8[:, 1]), ("blue", c8[:, 2])]


def _xyz(p: np.ndarray) -> Columns:
    return [("x", p[:, 0]), ("y", p[:, 1]), ("z", p[:, 2])]


def _mesh_ply(
    path: str | os.PathLike,
    scene: MeshScene,
    scores: np.ndarray | None,
    colors: np.ndarray | None,
    face_labels: np.ndarray | None,
    vertex_labels: np.ndarray | None,
) -> Path:
    v, f = len(scene.vertices), len(scene.faces)
    vcols = _xyz(scene.vertices)
    score = _per("scores", scores, v, "vertex", np.float32)
    if score is not None:
        vcols.append(("score", score))
    vcols += _rgb8(colors if colors is not None else scene.vertex_colors, v)
    if vertex_labels is not None:
        vcols.append(("label", vertex_labels))
    fcols: Columns = [("vertex_indices", scene.faces.astype(np.int32))]
    if scene.face_parts is not None:
        fcols.append(("part", scene.face_parts))
    if face_labels is not None:
        fcols.append(("label", face_labels))
    elements = [("vertex", _structured(vcols, v)), ("face", _structured(fcols, f))]
    return _write_ply(path, elements, "SegAny mesh")


def write_mesh_ply(
    path: str | os.PathLike, scene: MeshScene, scores: np.ndarray | None = None, colors: np.ndarray | None = None
) -> Path:
    """Mesh PLY with an optional float `score` and uchar colour per vertex (the scene's colours by default)."""
    return _mesh_ply(path, scene, scores, colors, None, None)


def _splat_subset(scene: SplatScene, mask: np.ndarray | None) -> SplatScene:
    if mask is None:
        return scene
    m = np.asarray(mask)
    if m.dtype == bool and m.shape != (scene.n_elements,):
        raise SegAnyError("invalid_array", f"mask has shape {m.shape}; expected ({scene.n_elements},) booleans")
    if m.dtype != bool:
        if m.ndim != 1 or m.dtype.kind not in "iu":
            raise SegAnyError("invalid_array", f"mask must be booleans or integer indices; got {m.shape} {m.dtype}")
        if len(m) and (m.min() < 0 or m.max() >= scene.n_elements):
            raise SegAnyError("invalid_array", f"mask indices must lie in 0..{scene.n_elements - 1}")
    selected = int(m.sum()) if m.dtype == bool else len(m)
    if selected == 0:
        raise SegAnyError("invalid_geometry", "the mask selects no Gaussians; nothing to write")
    return SplatScene(
        means=scene.means[m],
        quats=scene.quats[m],
        log_scales=scene.log_scales[m],
        logit_opacities=scene.logit_opacities[m],
        sh=scene.sh[m],
    )


def write_splat_ply(path: str | os.PathLike, scene: SplatScene, mask: np.ndarray | None = None) -> Path:
    """Standard 3DGS PLY (all float32: x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*) of the selection.

    `mask` is a boolean per Gaussian or an index array; None writes them all.
    """
    sub = _splat_subset(scene, mask)
    names, mat = splat_matrix(sub)
    records = mat.view(np.dtype([(name, "<f4") for name in names])).reshape(-1)  # the same bytes, no copy
    return _write_ply(path, [("vertex", records)], "SegAny 3DGS")


def write_point_ply(path: str | os.PathLike, scene: PointScene, labels: np.ndarray | None = None) -> Path:
    """Point PLY: x y z, nx ny nz and uchar colour when present, int `label` (given or the scene's)."""
    n = scene.n_elements
    cols = _xyz(scene.xyz)
    if scene.normals is not None:
        cols += [("nx", scene.normals[:, 0]), ("ny", scene.normals[:, 1]), ("nz", scene.normals[:, 2])]
    cols += _rgb8(scene.rgb, n)
    lab = _per("labels", labels if labels is not None else scene.labels, n, "point", np.int32)
    if lab is not None:
        cols.append(("label", lab))
    return _write_ply(path, [("vertex", _structured(cols, n))], "SegAny points")


def write_labelled_ply(path: str | os.PathLike, scene: Scene, labels: np.ndarray) -> Path:
    """Any scene with an int `label` per element: per face for meshes (per vertex if len == vertices)."""
    if isinstance(scene, MeshScene):
        n_f, n_v = len(scene.faces), len(scene.vertices)
        if np.shape(labels) == (n_v,) and n_v != n_f:
            return _mesh_ply(path, scene, None, None, None, _per("labels", labels, n_v, "vertex", np.int32))
        return _mesh_ply(path, scene, None, None, _per("labels", labels, n_f, "face", np.int32), None)
    if isinstance(scene, SplatScene):
        lab = _per("labels", labels, scene.n_elements, "Gaussian", np.int32)
        names, mat = splat_matrix(scene)
        cols = [*zip(names, mat.T, strict=True), ("label", lab)]
        return _write_ply(path, [("vertex", _structured(cols, scene.n_elements))], "SegAny 3DGS labelled")
    return write_point_ply(path, scene, labels)


def write_parts_ply(path: str | os.PathLike, scene: Scene, parts: np.ndarray, colours: np.ndarray) -> Path:
    """Any scene with an int `part` per element (vertex, Gaussian, point; -1: none, drawn grey) and its part's
    colour (`colours` (K, 3) in [0, 1], row k for part k). A splat scene keeps the 3DGS layout and its own
    appearance, so the file still opens as splats; the part colours ride along as red / green / blue."""
    n = scene.n_elements
    part = _per("parts", parts, n, "element", np.int32)
    table = np.asarray(colours, np.float32).reshape(-1, 3)
    if len(part) and part.max() >= len(table):
        raise SegAnyError("invalid_array", f"part {int(part.max())} has no colour: only {len(table)} given")
    cols = [*_rgb8(np.where((part >= 0)[:, None], table[part.clip(0)], 0.5), n), ("part", part)]
    if isinstance(scene, MeshScene):
        faces = _structured([("vertex_indices", scene.faces.astype(np.int32))], len(scene.faces))
        elements = [("vertex", _structured(_xyz(scene.vertices) + cols, n)), ("face", faces)]
        return _write_ply(path, elements, "SegAny mesh parts")
    if isinstance(scene, SplatScene):
        names, mat = splat_matrix(scene)
        return _write_ply(
            path, [("vertex", _structured([*zip(names, mat.T, strict=True), *cols], n))], "SegAny 3DGS parts"
        )
    normals = [] if scene.normals is None else [(f"n{a}", scene.normals[:, i]) for i, a in enumerate("xyz")]
    return _write_ply(path, [("vertex", _structured(_xyz(scene.xyz) + normals + cols, n))], "SegAny point parts")
