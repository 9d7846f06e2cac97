"""Named-part assets made here: procedural furniture and household objects whose every face carries a part
name, in the spirit of PartNet-Mobility (which cannot be downloaded on this machine).

Each shape is built from trimesh primitives, one per part instance (a table's top and four legs), with seeded
random proportions, so a set of shapes varies the way a category does without any two being alike. The
parts overlap where they join (a leg runs into the top) instead of being welded: a renderer only sees the
outside, and each face keeps the one name of the primitive it came from. Faces are subdivided to at most
`MAX_EDGE` of the shape's diagonal so a part has enough vertices to carry per-vertex features.

Written as the label evaluation reads it: `<out>/meshes/<id>.ply` (a `label` per face: the part instance),
`categories.json` (id → category) and `part_names.json` (category → id → the name of each label value),
plus splat and point versions through `generate_labelled` (`<out>/splats`, `<out>/points`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from ..errors import SegAnyError
from ..formats import write_labelled_ply
from ..scene import MeshScene
from .data import CATEGORIES_FILE, NAMES_FILE
from .generate import generate_labelled

MAX_EDGE = 0.03  # of the shape's diagonal: 10-40k faces per shape, the thinnest part still ~100 vertices
Part = tuple[str, trimesh.Trimesh]


def _box(extents: tuple[float, float, float], centre: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def _rod(radius: float, bottom: tuple[float, float, float], top: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=[bottom, top], sections=16)


def _lathe(profile: list[tuple[float, float]], z: float = 0.0) -> trimesh.Trimesh:
    """A surface of revolution about z from (radius, height) points, moved up by z."""
    mesh = trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=32)
    mesh.apply_translation((0.0, 0.0, z))
    return mesh


def _legs(rng: np.random.Generator, w: float, d: float, h: float, inset: float) -> list[Part]:
    radius = rng.uniform(0.02, 0.04)
    corners = [(sx * (w / 2 - inset), sy * (d / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    return [("leg", _rod(radius, (x, y, 0.0), (x, y, h))) for x, y in corners]


def table(rng: np.random.Generator) -> list[Part]:
    w, d, h, t = rng.uniform(1.0, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.6, 0.8), rng.uniform(0.03, 0.06)
    inset = rng.uniform(0.05, 0.12)
    parts: list[Part] = [("top", _box((w, d, t), (0, 0, h + t / 2)))]
    parts += _legs(rng, w, d, h, inset)
    if rng.random() < 0.5:  # an apron: four boards under the top, between the legs
        a = rng.uniform(0.06, 0.12)
        for sign in (-1, 1):
            parts.append(("apron", _box((w - 2 * inset, 0.02, a), (0, sign * (d / 2 - inset), h - a / 2))))
            parts.append(("apron", _box((0.02, d - 2 * inset, a), (sign * (w / 2 - inset), 0, h - a / 2))))
    return parts


def chair(rng: np.random.Generator) -> list[Part]:
    w, d, h, t = rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.5), rng.uniform(0.03, 0.06)
    back = rng.uniform(0.35, 0.6)
    parts: list[Part] = [("seat", _box((w, d, t), (0, 0, h + t / 2)))]
    parts.append(("back", _box((w, 0.03, back), (0, -d / 2 + 0.015, h + t + back / 2))))
    parts += _legs(rng, w, d, h, 0.04)
    if rng.random() < 0.5:  # arms: a rest on a post at each side
        z = h + t + rng.uniform(0.15, 0.25)
        for sign in (-1, 1):
            x = sign * (w / 2 + 0.02)
            parts.append(("arm", _box((0.05, d * 0.9, 0.03), (x, 0, z))))
            parts.append(("arm", _rod(0.015, (x, d * 0.3, h + t), (x, d * 0.3, z))))
    return parts


def lamp(rng: np.random.Generator) -> list[Part]:
    base_r, base_h = rng.uniform(0.12, 0.2), rng.uniform(0.03, 0.06)
    pole_h = rng.uniform(0.5, 0.9)
    low_r, high_r, shade_h = rng.uniform(0.15, 0.25), rng.uniform(0.06, 0.12), rng.uniform(0.15, 0.25)
    z = base_h + pole_h
    return [
        ("base", _lathe([(0, 0), (base_r, 0), (base_r * 0.9, base_h), (0, base_h)])),
        ("pole", _rod(rng.uniform(0.01, 0.02), (0, 0, base_h * 0.5), (0, 0, z + shade_h * 0.3))),
        ("shade", _lathe([(low_r, 0), (high_r, shade_h), (high_r * 0.97, shade_h), (low_r * 0.97, 0)], z)),
    ]


def mug(rng: np.random.Generator) -> list[Part]:
    r, h, wall = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0), rng.uniform(0.02, 0.04)
    body = _lathe([(0, 0), (r, 0), (r, h), (r - wall, h), (r - wall, wall), (0, wall)])
    ring = rng.uniform(0.18, 0.28) * h
    handle = trimesh.creation.torus(major_radius=ring, minor_radius=rng.uniform(0.03, 0.05), major_sections=32)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    handle.apply_translation((r, 0, h * rng.uniform(0.45, 0.55)))
    return [("body", body), ("handle", handle)]


def bottle(rng: np.random.Generator) -> list[Part]:
    r, h = rng.uniform(0.15, 0.25), rng.uniform(0.5, 0.8)
    neck_r, neck_h, cap_h = r * rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.1)
    shoulder = rng.uniform(0.05, 0.12)
    top, cap_r, cap_low = h + shoulder + neck_h, neck_r * 1.2, h + shoulder + neck_h - 0.3 * cap_h
    return [
        ("body", _lathe([(0, 0), (r, 0), (r, h), (neck_r, h + shoulder), (0, h + shoulder)])),
        ("neck", _lathe([(neck_r, h + shoulder * 0.5), (neck_r, top), (0, top)])),
        ("cap", _lathe([(0, cap_low), (cap_r, cap_low), (cap_r, top + cap_h), (0, top + cap_h)])),
    ]


CATEGORIES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "table": table, "chair": chair, "lamp": lamp, "mug": mug, "bottle": bottle,
}  # fmt: skip


def build(category: str, seed: int) -> tuple[MeshScene, np.ndarray, list[str]]:
    """One shape: the mesh, a label per face (the part instance) and the name of each label value."""
    rng = np.random.default_rng([zlib.crc32(category.encode()), seed])
    parts = CATEGORIES[category](rng)
    size = float(np.linalg.norm(np.ptp(np.vstack([m.vertices for _, m in parts]), axis=0)))
    vertices, faces, labels = [], [], []
    offset = 0
    for value, (_, mesh) in enumerate(parts):
        v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=MAX_EDGE * size)
        vertices.append(v)
        faces.append(f + offset)
        labels.append(np.full(len(f), value, dtype=np.int32))
        offset += len(v)
    scene = MeshScene(vertices=np.vstack(vertices), faces=np.vstack(faces).astype(np.int64))
    return scene, np.concatenate(labels), [name for name, _ in parts]


def generate_named_parts(
    out_dir: Path, per_category: int = 4, seed: int = 0, kinds: tuple[str, ...] = ("splats", "points")
) -> dict[str, list[Path]]:
    """`per_category` shapes of every category (seeds seed, seed + 1, …) as meshes, and as `kinds` too."""
    if per_category < 1:
        raise SegAnyError("bad_request", f"--per-category must be at least 1, got {per_category}")
    out_dir = Path(out_dir)
    meshes = out_dir / "meshes"
    meshes.mkdir(parents=True, exist_ok=True)
    categories: dict[str, str] = {}
    names: dict[str, dict[str, list[str]]] = {}
    written: dict[str, list[Path]] = {"meshes": []}
    for category in CATEGORIES:
        for k in range(per_category):
            shape_id = f"{category}_{seed + k}"
            scene, labels, part_names = build(category, seed + k)
            written["meshes"].append(write_labelled_ply(meshes / f"{shape_id}.ply", scene, labels))
            categories[shape_id] = category
            names.setdefault(category, {})[shape_id] = part_names
    (meshes / CATEGORIES_FILE).write_text(json.dumps(categories, indent=1))
    (meshes / NAMES_FILE).write_text(json.dumps(names, indent=1))
    if kinds:
        written.update(generate_labelled(meshes, out_dir, kinds=kinds))
    return written
