"""Read a Blender object as a SegAny scene: kind and arrays in the object's LOCAL space, one element per
original vertex / point (so scores map back to the object's own data, modifiers or not)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import splat_layout

PREVIEW_PREFIX = "segany"
_ITEM = {"FLOAT": ("value", 1), "INT": ("value", 1), "FLOAT_VECTOR": ("vector", 3), "QUATERNION": ("value", 4)}
_ITEM.update(
    {"FLOAT_COLOR": ("color", 4), "BYTE_COLOR": ("color", 4), "FLOAT2": ("vector", 2), "BOOLEAN": ("value", 1)}
)


@dataclass
class ObjectScene:
    """What we send for an object and what we need to map answers back."""

    kind: str  # mesh | splats | points
    arrays: dict[str, np.ndarray]
    n_elements: int
    layout: str = ""  # for splats: raw | decoded


def _layout(attr: object) -> tuple[str, int]:
    """foreach key and width of an attribute; types newer than this code are inspected on element 0."""
    if attr.data_type in _ITEM:
        return _ITEM[attr.data_type]
    first = attr.data[0]
    for key in ("vector", "value", "color"):
        if hasattr(first, key):
            v = getattr(first, key)
            return key, len(v) if hasattr(v, "__len__") else 1
    raise ValueError(f"attribute {attr.name!r} has an unreadable type {attr.data_type}")


def read_attribute(data: object, name: str) -> np.ndarray:
    """A POINT-domain attribute as (N,) or (N, C) numpy, through foreach_get (no per-element Python)."""
    attr = data.attributes[name]
    n = len(attr.data)
    if n == 0:
        return np.zeros(0, np.float32)
    key, width = _layout(attr)
    dtype = np.int32 if attr.data_type == "INT" else bool if attr.data_type == "BOOLEAN" else np.float32
    out = np.empty(n * width, dtype)
    attr.data.foreach_get(key, out)
    return out if width == 1 else out.reshape(n, width)


def element_count(obj: object) -> int:
    """How many elements (mesh vertices, point-cloud points) the object has now: cheap, no arrays read."""
    return len(obj.data.vertices) if obj.type == "MESH" else len(obj.data.points)


def positions(data: object) -> np.ndarray:
    return read_attribute(data, "position")


def _point_names(data: object) -> set[str]:
    return {a.name for a in data.attributes if a.domain == "POINT"}


def _colors(data: object, n: int) -> np.ndarray | None:
    """The active POINT colour attribute as rgb in [0, 1]. Point clouds have no active colour (Blender 4.2 has
    the property but it is always None), and showing a segment, labels or parts makes our own layer the active
    one: then the first POINT colour attribute that is not ours stands in, so the object's own colours (and so
    its scene id and cached work) stay what they were."""
    ca = getattr(data, "color_attributes", None)
    if ca is None:
        return None
    active = getattr(ca, "active_color", None)
    own = active is not None and active.name.startswith(PREVIEW_PREFIX)
    candidates = [active] if active is not None and not own else list(ca)
    usable = [a for a in candidates if a is not None and a.domain == "POINT" and not a.name.startswith(PREVIEW_PREFIX)]
    if not usable:
        return None
    active = usable[0]
    rgba = np.empty(n * 4, np.float32)
    active.data.foreach_get("color", rgba)
    return np.ascontiguousarray(rgba.reshape(n, 4)[:, :3])


def triangles(mesh: object) -> np.ndarray:
    """Original-vertex triangles (F, 3) int64 of a mesh, from Blender's own loop triangulation."""
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3).astype(np.int64)


def read_object(obj: object) -> ObjectScene:
    """The scene an object stands for: a mesh with faces, a splat object (either layout), or points."""
    data = obj.data
    if obj.type not in ("MESH", "POINTCLOUD"):
        raise ValueError(f"{obj.name!r} is a {obj.type.lower()}; SegAny works on meshes, splats and point clouds")
    names = _point_names(data)
    n = len(data.vertices) if obj.type == "MESH" else len(data.points)
    if n == 0:
        raise ValueError(f"{obj.name!r} has no vertices")
    xyz = positions(data)
    if obj.type == "MESH" and len(data.polygons) > 0:
        arrays = {"vertices": xyz, "faces": triangles(data)}
        rgb = _colors(data, n)
        if rgb is not None:
            arrays["vertex_colors"] = rgb
        return ObjectScene("mesh", arrays, n)
    layout = splat_layout.detect(names)
    if layout is not None:
        attrs = {a: read_attribute(data, a) for a in splat_layout.needed(layout, names)}
        convert = splat_layout.from_raw if layout == "raw" else splat_layout.from_decoded
        return ObjectScene("splats", convert(xyz, attrs), n, layout)
    arrays = {"xyz": xyz}
    rgb = _colors(data, n)
    if rgb is not None:
        arrays["rgb"] = rgb
    return ObjectScene("points", arrays, n)
