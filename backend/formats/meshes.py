"""OBJ, OFF, STL, GLB and glTF meshes through trimesh, one MeshScene per file with a part id per face.

Files are loaded with `process=False` so a single-part file keeps the file's vertex and face order.
Multi-part files (OBJ objects and groups, glTF nodes) become one mesh, parts in the order trimesh lists
them (by name for OBJ): each part's transform is applied, its unused vertices dropped, and `face_parts`
records the part of every face. The size limits are
checked from the file's own counts (OFF and STL headers, glTF accessors, OBJ line counts) before
trimesh parses anything.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import trimesh

from ..errors import SegAnyError
from ..scene import MeshScene, check_limits
from .reasons import failure
from .sniff import count_occurrences


def _off_counts(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(4096).decode("ascii", errors="replace")
    tokens = []
    for line in head.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.extend(line.split())
        if len(tokens) >= 4:
            break
    try:
        start = 1 if tokens[0].endswith("OFF") else 0
        return int(tokens[start]), int(tokens[start + 1])
    except (IndexError, ValueError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: malformed OFF header") from e


def _stl_faces(path: Path) -> int:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(84)
    if len(head) == 84:
        (n,) = struct.unpack("<I", head[80:84])
        if 84 + 50 * n == size:
            return n
    if head.lstrip().startswith(b"solid"):
        return count_occurrences(path, (b"endfacet",))[0]
    raise SegAnyError("corrupt_file", f"{path.name}: neither a binary STL of the right size nor an ASCII STL")


def _gltf_json(path: Path, fmt: str) -> dict:
    with open(path, "rb") as f:
        if fmt == "gltf":
            text = f.read()
        else:
            head = f.read(20)
            if len(head) < 20:
                raise SegAnyError("corrupt_file", f"{path.name}: GLB header is truncated")
            _magic, _version, total, json_len, json_type = struct.unpack("<4sIIII", head)
            if json_type != 0x4E4F534A or 20 + json_len > path.stat().st_size or total > path.stat().st_size:
                raise SegAnyError("corrupt_file", f"{path.name}: GLB chunks run past the end of the file")
            text = f.read(json_len)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: the glTF JSON is malformed ({failure(e)})") from e


def _gltf_counts(path: Path, fmt: str) -> tuple[int, int]:
    """Vertices and triangles summed over every mesh primitive (an upper bound when meshes are reused)."""
    doc = _gltf_json(path, fmt)
    acc = doc.get("accessors", [])
    n_v = n_f = 0
    try:
        for mesh in doc.get("meshes", []):
            for prim in mesh.get("primitives", []):
                pos = acc[prim["attributes"]["POSITION"]]["count"]
                n_v += pos
                n_f += (acc[prim["indices"]]["count"] if "indices" in prim else pos) // 3
    except (KeyError, IndexError, TypeError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: the glTF accessors are malformed ({failure(e)})") from e
    return n_v, n_f


def precheck_counts(path: Path, fmt: str, limits: dict[str, int] | None) -> None:
    """Refuse oversized meshes from their headers / line counts, before trimesh allocates."""
    if fmt == "off":
        n_v, n_f = _off_counts(path)
    elif fmt == "stl":
        n_f = _stl_faces(path)
        n_v = 3 * n_f
    elif fmt in ("glb", "gltf"):
        n_v, n_f = _gltf_counts(path, fmt)
    else:
        n_v, n_f = count_occurrences(path, (b"\nv ", b"\nf "), start=b"\n")
    check_limits("mesh", {"vertices": n_v, "faces": n_f}, limits)


def _colors(m: trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex rgb in [0, 1] when the file has vertex colours or a texture to sample, else None."""
    kind = m.visual.kind
    if kind == "texture":
        colors = m.visual.to_color().vertex_colors
    elif kind == "vertex":
        colors = m.visual.vertex_colors
    else:
        return None
    colors = np.asarray(colors)
    return colors[:, :3].astype(np.float32) / 255.0 if len(colors) == len(m.vertices) else None


class _NoOtherFiles(trimesh.resolvers.Resolver):
    """What trimesh asks when a file names another (OBJ mtllib, glTF buffer or image URI): refused, and counted.

    trimesh swallows the refusal where the other file is optional (materials, textures) and the mesh
    loads without it; a glTF buffer holds the geometry itself, so there the refusal reaches the caller.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.refused = 0

    def get(self, key: str) -> bytes:
        self.refused += 1
        raise SegAnyError(
            "unsupported",
            f"{self.name} keeps part of its data (a buffer, texture or material library) in another file, and SegAny "
            "reads only the file it is given unless references are allowed (allow_references=True, or "
            "--allow-references on the command line)",
        )

    def write(self, name: str, data: bytes) -> None:
        raise SegAnyError("unsupported", "loading never writes files")

    def namespaced(self, namespace: str) -> _NoOtherFiles:
        return self

    def keys(self) -> list[str]:
        return []


def _parts(path: Path, fmt: str, allow_references: bool) -> tuple[list[trimesh.Trimesh], int]:
    """The file's triangle meshes, and how many references to other files were refused."""
    obj = {"split_objects": True, "split_groups": True, "group_material": False, "maintain_order": True}
    kw = obj if fmt == "obj" else {}
    # trimesh resolves references next to a named path by itself, so it gets the bytes and a resolver instead
    resolver = trimesh.resolvers.FilePathResolver(str(path)) if allow_references else _NoOtherFiles(path.name)
    with open(path, "rb") as f:
        loaded = trimesh.load(f, file_type=fmt, resolver=resolver, force="scene", process=False, **kw)
    meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    return meshes, getattr(resolver, "refused", 0)


def read_mesh(path: Path, fmt: str, limits: dict[str, int] | None = None, allow_references: bool = False) -> MeshScene:
    """A MeshScene from any trimesh-readable mesh file; a part id per face when the file has several.

    Other files the mesh names (materials, textures, buffers) are read only with `allow_references`.
    """
    precheck_counts(path, fmt, limits)
    try:
        parts, refused = _parts(path, fmt, allow_references)
    except SegAnyError:
        raise
    except Exception as e:  # trimesh raises many types for malformed input
        if isinstance(e, (IndexError, ValueError)) and any(w in str(e) for w in ("out of bounds", "outside the range")):
            raise SegAnyError("invalid_geometry", f"{path.name}: a face index is out of range") from e
        raise SegAnyError(
            "corrupt_file", f"{path.name}: trimesh could not read it as {fmt.upper()} ({failure(e)})"
        ) from e
    if not parts:
        raise SegAnyError("invalid_geometry", f"{path.name} holds no triangles")
    if fmt == "stl":  # STL stores each triangle's corners separately; weld them into a connected mesh
        for m in parts:
            m.merge_vertices()
    # the pre-check counted polygons and instanced meshes once; check the triangles actually produced
    check_limits(
        "mesh", {"vertices": sum(len(m.vertices) for m in parts), "faces": sum(len(m.faces) for m in parts)}, limits
    )
    scene = _one_mesh(parts)
    if refused:
        scene.warnings.append(
            f"{path.name} names {refused} other file(s) (materials, textures) that were not read; "
            "allow references to read them"
        )
    return scene


def _one_mesh(parts: list[trimesh.Trimesh]) -> MeshScene:
    """The parts as one MeshScene, with a part id per face when there are several."""
    if len(parts) == 1:
        m = parts[0]
        return MeshScene(vertices=m.vertices, faces=m.faces, vertex_colors=_colors(m))
    verts, faces, cols, ids = [], [], [], []
    offset = 0
    for i, m in enumerate(parts):
        m.remove_unreferenced_vertices()
        verts.append(m.vertices)
        faces.append(m.faces + offset)
        cols.append(_colors(m))
        ids.append(np.full(len(m.faces), i, np.int32))
        offset += len(m.vertices)
    colors = None
    if any(c is not None for c in cols):
        grey = np.float32(0.8)
        colors = np.concatenate(
            [c if c is not None else np.full((len(v), 3), grey) for c, v in zip(cols, verts, strict=True)]
        )
    return MeshScene(
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        vertex_colors=colors,
        face_parts=np.concatenate(ids),
    )
