"""PLY in (meshes, 3DGS splats, point clouds) through plyfile, with the header checked before any data.

The header's element counts are compared with the file's size and the configured limits before plyfile
allocates anything, so a 200-byte file that promises a billion faces is refused at once as corrupt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured
from plyfile import PlyData, PlyElement, PlyElementParseError, PlyListProperty, PlyParseError

from ..errors import SegAnyError
from ..scene import MeshScene, PointScene, Scene, check_limits
from .gaussians import SPLAT_REQUIRED, is_splat_fields, missing_splat_fields, splats_from_fields
from .reasons import failure

FACE_LISTS = ("vertex_indices", "vertex_index")
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


def read_header(path: Path) -> tuple[PlyData, int]:
    """The parsed header (elements without data) and its length in bytes."""
    with open(path, "rb") as f:
        try:
            # plyfile has no public header-only reader; _parse_header is the one read() uses
            header = PlyData._parse_header(f)
        except (PlyParseError, UnicodeDecodeError, ValueError, KeyError) as e:
            raise SegAnyError("corrupt_file", f"{path.name}: malformed PLY header ({failure(e)})") from e
        return header, f.tell()


def _min_bytes(elt: PlyElement, text: bool) -> int:
    """A lower bound on the bytes `elt` needs, so truncation is caught before allocation."""
    if text:
        return elt.count * 2 * len(elt.properties)  # every value needs a digit and a separator
    row = 0
    for p in elt.properties:
        if isinstance(p, PlyListProperty):
            row += np.dtype(p.list_dtype()[0]).itemsize  # the list length; the list may be empty
        else:
            row += np.dtype(p.dtype()).itemsize
    return elt.count * row


def header_kind(header: PlyData) -> str:
    """mesh (has faces), splats (3DGS vertex properties) or points."""
    names = [e.name for e in header.elements]
    if "vertex" not in names:
        raise SegAnyError("corrupt_file", "the PLY has no 'vertex' element")
    if "face" in names and header["face"].count > 0:
        return "mesh"
    props = [p.name for p in header["vertex"].properties]
    missing = missing_splat_fields(props)
    if missing:
        raise SegAnyError(
            "corrupt_file",
            f"the vertex element has 3DGS splat properties but lacks {', '.join(missing)}; a splat PLY needs "
            f"{', '.join(SPLAT_REQUIRED)} (and f_rest_0, f_rest_1, ... without gaps)",
        )
    if is_splat_fields(props):
        return "splats"
    return "points"


def check_header(path: Path, limits: dict[str, int] | None) -> tuple[PlyData, str]:
    """Refuse truncated or oversized PLY files from the header alone; return the header and scene kind."""
    header, header_len = read_header(path)
    kind = header_kind(header)
    n_v = header["vertex"].count
    counts = {"mesh": {"vertices": n_v, "faces": header["face"].count if kind == "mesh" else 0},
              "splats": {"means": n_v}, "points": {"xyz": n_v}}[kind]  # fmt: skip
    check_limits(kind, counts, limits)
    need = sum(_min_bytes(e, header.text) for e in header.elements)
    if header.text:
        need = max(need - 1, 0)  # the last line may lack its newline
    have = path.stat().st_size - header_len
    if need > have:
        raise SegAnyError(
            "corrupt_file",
            f"{path.name} is truncated: its header promises at least {need:,} bytes of data but the file has {have:,}",
        )
    return header, kind


def _read(path: Path, header: PlyData) -> PlyData:
    """Read the data; triangle faces are memory-mapped (fast), other polygons go row by row."""
    known = {}
    if "face" in header:
        lists = [p.name for p in header["face"].properties if isinstance(p, PlyListProperty)]
        if len(lists) == 1 and lists[0] in FACE_LISTS:
            known = {"face": {lists[0]: 3}}
    try:
        try:
            return PlyData.read(str(path), known_list_len=known)
        except PlyElementParseError as e:
            if not known or e.message != "unexpected list length":
                raise
            return PlyData.read(str(path))
    except (PlyParseError, ValueError, UnicodeDecodeError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: malformed PLY data ({failure(e)})") from e


def _fields(data: np.ndarray) -> list[str]:
    return list(data.dtype.names or ())


def _xyz(v: np.ndarray, path: Path) -> np.ndarray:
    if not {"x", "y", "z"} <= set(_fields(v)):
        raise SegAnyError("corrupt_file", f"{path.name}: the vertex element has no x, y, z properties")
    return np.stack([np.asarray(v[k], dtype=np.float32) for k in "xyz"], axis=1)


def _colors(v: np.ndarray) -> np.ndarray | None:
    names = set(_fields(v))
    for keys in _COLOR_NAMES:
        if set(keys) <= names:
            rgb = np.stack([np.asarray(v[k]) for k in keys], axis=1)
            if rgb.dtype.kind in "ui" or rgb.max(initial=0) > 1.0:
                return (rgb.astype(np.float32) / 255.0).clip(0, 1)
            return rgb.astype(np.float32)
    return None


def _ints(v: np.ndarray, name: str) -> np.ndarray | None:
    return np.asarray(v[name]).astype(np.int32) if name in _fields(v) else None


def _triangulate(faces: np.ndarray, per_face: list[np.ndarray | None]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Fan-triangulate a polygon list (object array or (F, 3)); per-face arrays are repeated to match."""
    if faces.dtype != object:
        return faces.astype(np.int64).reshape(-1, 3), per_face
    sizes = np.fromiter((len(f) for f in faces), dtype=np.int64, count=len(faces))
    if (sizes < 3).any():
        bad = int(np.flatnonzero(sizes < 3)[0])
        raise SegAnyError("invalid_geometry", f"face {bad} has {sizes[bad]} vertices; a face needs at least 3")
    tris, owner = [], []
    for n in np.unique(sizes):
        idx = np.flatnonzero(sizes == n)
        poly = np.stack(faces[idx]).astype(np.int64)  # (M, n)
        for j in range(1, n - 1):
            tris.append(poly[:, [0, j, j + 1]])
            owner.append(idx)
    owner_all = np.concatenate(owner)
    order = np.argsort(owner_all, kind="stable")  # keep the file's face order
    out = np.concatenate(tris)[order]
    return out, [None if a is None else a[owner_all[order]] for a in per_face]


def read_ply(path: Path, limits: dict[str, int] | None = None) -> tuple[Scene, np.ndarray | None]:
    """Scene plus the integer `label` per element when the file has one (faces first for meshes)."""
    header, kind = check_header(path, limits)
    ply = _read(path, header)
    v = ply["vertex"].data
    if kind == "splats":
        names = _fields(v)
        # one (N, P) float32 matrix (a view when the file is all float32), then contiguous column blocks:
        # far faster than P strided copies out of the record array
        mat = structured_to_unstructured(v, dtype=np.float32)
        col = {name: i for i, name in enumerate(names)}

        def block(keys: list[str]) -> np.ndarray:
            idx = [col[k] for k in keys]
            if idx == list(range(idx[0], idx[0] + len(idx))):  # the usual layout: a slice, no gather
                return mat[:, idx[0] : idx[0] + len(idx)]
            return mat[:, idx]

        scene: Scene = splats_from_fields(block, names)
        return scene, _ints(v, "label")
    xyz = _xyz(v, path)
    if kind == "points":
        names = set(_fields(v))
        normals = np.stack([v[k] for k in ("nx", "ny", "nz")], axis=1) if {"nx", "ny", "nz"} <= names else None
        labels = _ints(v, "label")
        return PointScene(xyz=xyz, rgb=_colors(v), normals=normals, labels=labels), labels
    f = ply["face"].data
    name = next((n for n in FACE_LISTS if n in _fields(f)), None)
    if name is None:
        raise SegAnyError("corrupt_file", f"{path.name}: the face element has no vertex_indices list")
    faces, (parts, face_labels) = _triangulate(f[name], [_ints(f, "part"), _ints(f, "label")])
    scene = MeshScene(vertices=xyz, faces=faces, vertex_colors=_colors(v), face_parts=parts)
    return scene, face_labels if face_labels is not None else _ints(v, "label")
