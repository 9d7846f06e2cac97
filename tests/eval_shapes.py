"""Small labelled shapes and a perfect scorer for the evaluation-harness tests (test_eval_*)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import trimesh

from segany.eval.data import Shape
from segany.eval.geometry import Geometry
from segany.methods.base import Selection
from segany.samples import shared_data_dir
from segany.scene import MeshScene

PSB = shared_data_dir() / "psb"


def split_box(subdivisions: int = 3) -> Shape:
    """A unit box, midpoint-subdivided so the plane x = 0 runs along edges; label 1 where x > 0."""
    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    v, f = box.vertices, box.faces
    for _ in range(subdivisions):
        v, f = trimesh.remesh.subdivide(v, f)
    labels = (v[f].mean(axis=1)[:, 0] > 0).astype(np.int64)
    return Shape("box", "synthetic", MeshScene(vertices=v, faces=f), labels, "generated")


def tower_on_slab(res: int = 2) -> Shape:
    """One watertight mesh: a square slab with a tower on top, joined along a concave crease.

    Label 1 = tower (faces above the slab's top), 0 = slab. Made by marching cubes on voxels.
    """
    occ = np.zeros((12 * res, 12 * res, 10 * res), dtype=bool)
    occ[res : 11 * res, res : 11 * res, res : 4 * res] = True
    occ[4 * res : 8 * res, 4 * res : 8 * res, 4 * res : 9 * res] = True
    mesh = trimesh.voxel.ops.matrix_to_marching_cubes(occ, pitch=1.0 / res)
    labels = (mesh.triangles_center[:, 2] > 4.0).astype(np.int64)
    return Shape("tower", "synthetic", MeshScene(vertices=mesh.vertices, faces=mesh.faces), labels, "generated")


def table_with_legs(res: int = 2) -> Shape:
    """One watertight mesh: a table top on four thin legs, each joined along a concave crease.

    Label 0 = top (faces above z = 7), 1–4 = the legs. Made by marching cubes on voxels.
    """
    occ = np.zeros((14 * res, 14 * res, 10 * res), dtype=bool)
    occ[res : 13 * res, res : 13 * res, 7 * res : 8 * res] = True
    for x in (2 * res, 11 * res):
        for y in (2 * res, 11 * res):
            occ[x : x + res, y : y + res, res : 7 * res] = True
    mesh = trimesh.voxel.ops.matrix_to_marching_cubes(occ, pitch=1.0 / res)
    c = mesh.triangles_center
    labels = np.where(c[:, 2] > 7.0, 0, 1 + 2 * (c[:, 0] > 7) + (c[:, 1] > 7)).astype(np.int64)
    return Shape("table", "synthetic", MeshScene(vertices=mesh.vertices, faces=mesh.faces), labels, "generated")


def write_psb(root: Path, shapes: list[Shape]) -> Path:
    """Write shapes in the Princeton Segmentation Benchmark layout (real OFF and .seg files)."""
    (root / "off").mkdir(parents=True, exist_ok=True)
    for s in shapes:
        v, f = s.scene.vertices, s.scene.faces
        lines = ["OFF", f"{len(v)} {len(f)} 0"]
        lines += [f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
        lines += [f"3 {a} {b} {c}" for a, b, c in f]
        (root / "off" / f"{s.id}.off").write_text("\n".join(lines) + "\n")
        seg = root / "seg" / s.id
        seg.mkdir(parents=True, exist_ok=True)
        (seg / f"{s.id}_0.seg").write_text("\n".join(str(int(x)) for x in s.labels) + "\n")
    return root


class PerfectScorer:
    """Test fixture, not a method: knows the ground truth and answers with the clicked segment.

    Vertex score = share of the vertex's incident face area in the segment under the first positive
    click, threshold 0.5 — exact on meshes whose part boundaries run along a regular grid. It proves
    the metrics (IoU 100 %, NoC 1) independently of any real method.
    """

    name = "perfect"

    def prepare(self, shape: Shape, geom: Geometry) -> str:
        self.shape, self.geom = shape, geom
        return "fixture"

    def query(self, clicks: list[tuple[int, int]]) -> Selection:
        faces = self.shape.scene.faces
        vertex = next(e for e, s in clicks if s > 0)
        label = np.bincount(self.shape.labels[np.any(faces == vertex, axis=1)]).argmax()
        share = self.geom.fraction_in(self.shape.labels == label)
        return Selection(scores=share.astype(np.float32), threshold=0.5)

    def release(self) -> None:
        self.shape = None


class PerfectEngine:
    """Test fixture standing in for the Engine (no product method exists in the harness tests):
    the same calls as segany.engine.Engine, answering like PerfectScorer from the oracle labels."""

    def __init__(self) -> None:
        self.scenes: dict[str, MeshScene] = {}
        self.labels: dict[str, np.ndarray] = {}
        self.prepared: list[tuple[str, str, str | None]] = []
        self.options: list[dict] = []
        self.query_keys: set[str] = set()

    def add_scene(self, scene: MeshScene) -> str:
        sid = f"s{len(self.scenes)}"
        self.scenes[sid] = scene
        return sid

    def prepare(self, method: str, sid: str, prior=None, options=None, prior_options=None) -> dict:
        self.labels[sid] = np.asarray(prior_options["labels"])
        self.prepared.append((method, sid, prior))
        self.options.append(dict(options or {}))
        return {"status": "done", "message": "prepared"}

    def query(self, method: str, sid: str, query: dict, prior=None) -> Selection:
        from segany.eval.geometry import mesh_geometry

        self.query_keys |= set(query)
        scene = self.scenes[sid]
        scorer = PerfectScorer()
        scorer.prepare(Shape(sid, "", scene, self.labels[sid], ""), mesh_geometry(scene.vertices, scene.faces))
        return scorer.query([(int(e), int(s)) for e, s in query["clicks"]])

    def drop_scene(self, sid: str) -> None:
        del self.scenes[sid]

    def method(self, name: str) -> SimpleNamespace:
        """What the harness asks the Engine's catalogue: the scene kinds a method works on (meshes here)."""
        return SimpleNamespace(scene_kinds=("mesh",))
