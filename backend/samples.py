"""Built-in sample scenes, generated (no download, no shared data): a stool-like shape with obvious parts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

from .scene import MeshScene

SAMPLES = ("stool",)


def _parts_stool() -> list[trimesh.Trimesh]:
    seat = trimesh.creation.cylinder(radius=0.5, height=0.12, sections=48)
    seat.apply_translation([0, 0, 0.9])
    back = trimesh.creation.box(extents=[0.9, 0.1, 0.6])
    back.apply_translation([0, 0.42, 1.28])
    parts = [seat, back]
    for angle in np.linspace(0, 2 * np.pi, 4, endpoint=False) + np.pi / 4:
        leg = trimesh.creation.cylinder(radius=0.05, height=0.86, sections=16)
        leg.apply_translation([0.33 * np.cos(angle), 0.33 * np.sin(angle), 0.43])
        parts.append(leg)
    ring = trimesh.creation.annulus(r_min=0.3, r_max=0.36, height=0.04, sections=48)
    ring.apply_translation([0, 0, 0.35])
    parts.append(ring)
    return parts


def sample_mesh(name: str = "stool", max_edge: float = 0.06) -> MeshScene:
    """The sample mesh, subdivided so vertex-based methods have enough vertices; face_parts = primitive id."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; available: {SAMPLES}")
    verts, faces, parts, offset = [], [], [], 0
    for pid, part in enumerate(_parts_stool()):
        v, f = trimesh.remesh.subdivide_to_size(part.vertices, part.faces, max_edge=max_edge)[:2]
        verts.append(v)
        faces.append(f + offset)
        parts.append(np.full(len(f), pid, dtype=np.int32))
        offset += len(v)
    vertices = np.concatenate(verts).astype(np.float32)
    colors = np.tile(np.array([[0.72, 0.55, 0.38]], dtype=np.float32), (len(vertices), 1))
    return MeshScene(vertices, np.concatenate(faces), vertex_colors=colors, face_parts=np.concatenate(parts))


def shared_data_dir() -> Path:
    """The development data set ($SEGANY_SHARED_DATA, else ../shared/data beside the repository checkout)."""
    env = os.environ.get("SEGANY_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
